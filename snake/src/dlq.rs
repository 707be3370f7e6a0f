//! The operator's view of dead letters: read, count and replay what the
//! [`DLQ_STREAM`] keeps.
//!
//! A consumer with a dead-letter subject sends there, acknowledged by the stream that
//! captures it (for `flux.dlq.>`, the stream [`StreamConfig::dead_letters`](crate::StreamConfig::dead_letters) describes), every
//! message that gave up: delivered `max_deliver` times without an ack, or terminated by its
//! handler. The dead letter keeps the message's payload and headers, and says in
//! `Flux-Dlq-*` headers where it came from and why it gave up.
//!
//! [`Snake::replay_dead_letter`] publishes it again to the subject it was first published on,
//! under a new dedup id, and removes the dead letter only once the stream acknowledged that
//! publish; a replay cut short in between is repeated safely (the same dead letter replayed
//! twice within the duplicate window is stored once). A replay reaches every consumer of that
//! subject again, not only the one that gave up: guaranteed delivery is at least once.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), snake::Error> {
//! use snake::{ConsumerConfig, Message, Pattern, Snake, StreamConfig, Subject};
//!
//! let snake = Snake::memory();
//! snake.create_stream(StreamConfig::new("flux-msg", [Pattern::msg_all()])?).await?;
//! snake.create_stream(StreamConfig::dead_letters()).await?;
//! let from = Subject::msg("edge", "src", "out")?;
//! snake.stream_publish(Message::new(from.clone(), &b"poison"[..]).with_id("m1")).await?;
//!
//! let cfg = ConsumerConfig::new(from.clone().into())
//!     .dead_letter(Subject::dead_letter("edge", "sink", "in")?);
//! let mut consumer = snake.consumer("flux-msg", cfg).await?;
//! consumer.next().await?.term("cannot parse").await?;
//!
//! let filter = Pattern::dead_letters_of(Some("edge"), None)?;
//! assert_eq!(snake.count_dead_letters(&filter).await?, 1);
//! let letters = snake.dead_letters(&filter, 0, 10).await?;
//! assert_eq!(letters[0].reason, "terminated: cannot parse");
//! assert_eq!(letters[0].origin.as_ref(), Some(&from));
//!
//! let replayed = snake.replay_dead_letter(letters[0].sequence).await?;
//! assert_eq!(replayed.to, from);
//! assert_eq!(snake.count_dead_letters(&filter).await?, 0);
//! # Ok(())
//! # }
//! ```

use crate::message::header;
use crate::{DLQ_STREAM, Error, Message, Pattern, PubAck, Snake, Subject, token};

/// One dead letter, as [`DLQ_STREAM`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its sequence number in [`DLQ_STREAM`]: what [`Snake::dead_letter`] and
    /// [`Snake::replay_dead_letter`] take.
    pub sequence: u64,
    /// The dead-letter subject it was kept under, `flux.dlq.<rack>.<gear>.<port>`.
    pub subject: Subject,
    /// The subject it was first published on (where a replay sends it).
    pub origin: Option<Subject>,
    /// Why it gave up: `max_deliver`, or `terminated: <the handler's reason>`.
    pub reason: String,
    /// The stream it came from.
    pub stream: Option<String>,
    /// Its sequence number in that stream.
    pub origin_sequence: Option<u64>,
    /// How many times it was delivered before it gave up.
    pub deliveries: Option<u32>,
    /// When it gave up, in milliseconds since the Unix epoch.
    pub time_ms: Option<u64>,
    /// Which part of a pack it was (a lane publishes several messages as one pack; only this
    /// one gave up, the rest were handled), or `None` for a whole message.
    pub part: Option<u32>,
    /// The message as kept: the original payload and headers, plus the `Flux-Dlq-*` ones.
    pub message: Message,
}

impl DeadLetter {
    fn new(sequence: u64, message: Message) -> DeadLetter {
        let h = &message.headers;
        DeadLetter {
            sequence,
            subject: message.subject.clone(),
            origin: h
                .get(header::DLQ_SUBJECT)
                .and_then(|s| Subject::parse(s).ok()),
            reason: h.get(header::DLQ_REASON).unwrap_or_default().to_owned(),
            stream: h.get(header::DLQ_STREAM).map(str::to_owned),
            origin_sequence: h.get(header::DLQ_SEQUENCE).and_then(|s| s.parse().ok()),
            deliveries: h.get(header::DLQ_DELIVERIES).and_then(|s| s.parse().ok()),
            time_ms: h.get(header::DLQ_TIME).and_then(|s| s.parse().ok()),
            part: h.get(header::DLQ_PART).and_then(|s| s.parse().ok()),
            message,
        }
    }

    /// The rack whose consumer gave up (the third token of its subject).
    pub fn rack(&self) -> Option<&str> {
        self.subject.as_str().split('.').nth(2)
    }

    /// The gear whose input it was.
    pub fn gear(&self) -> Option<&str> {
        self.subject.as_str().split('.').nth(3)
    }

    /// The gear's input port.
    pub fn port(&self) -> Option<&str> {
        self.subject.as_str().split('.').nth(4)
    }

    /// The message as it was first published: the `Flux-Dlq-*` headers removed, its
    /// original dedup id back.
    pub fn original(&self) -> Message {
        let mut msg = self.message.clone();
        if let Some(origin) = &self.origin {
            msg.subject = origin.clone();
        }
        let id = msg.headers.get(header::DLQ_MSG_ID).map(str::to_owned);
        for name in [
            header::DLQ_REASON,
            header::DLQ_SUBJECT,
            header::DLQ_STREAM,
            header::DLQ_SEQUENCE,
            header::DLQ_DELIVERIES,
            header::DLQ_TIME,
            header::DLQ_MSG_ID,
            header::DLQ_PART,
            header::MSG_ID,
        ] {
            msg.headers.remove(name);
        }
        if let Some(id) = id {
            msg.headers.insert(header::MSG_ID, id);
        }
        msg
    }
}

/// A dead letter published again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Replayed {
    /// Its sequence number in [`DLQ_STREAM`] (now removed).
    pub sequence: u64,
    /// Where it went.
    pub to: Subject,
    /// The acknowledgement of the stream that stored it.
    pub ack: PubAck,
}

impl Pattern {
    /// The dead letters of one rack, one gear, or both: `flux.dlq.<rack>.<gear>.*`, with `*`
    /// for what is not given (`flux.dlq.>` when neither is).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when a name is not a valid [`token`].
    pub fn dead_letters_of(rack: Option<&str>, gear: Option<&str>) -> Result<Pattern, Error> {
        Ok(match (rack, gear) {
            (None, None) => Pattern::dead_letters(),
            (Some(r), None) => Pattern::parse(&format!("flux.dlq.{}.>", token("rack name", r)?))?,
            (r, Some(g)) => {
                let r = match r {
                    Some(r) => token("rack name", r)?,
                    None => "*",
                };
                Pattern::parse(&format!("flux.dlq.{r}.{}.*", token("gear name", g)?))?
            }
        })
    }
}

impl Snake {
    /// How many dead letters match `filter` (see [`Pattern::dead_letters_of`]).
    ///
    /// # Errors
    ///
    /// [`Error::StreamNotFound`] when there is no [`DLQ_STREAM`].
    pub async fn count_dead_letters(&self, filter: &Pattern) -> Result<u64, Error> {
        self.stream_count(DLQ_STREAM, filter).await
    }

    /// Up to `max` dead letters matching `filter`, oldest first, from sequence `from` on (0
    /// for the first): to page, ask again from the last one's sequence plus one.
    ///
    /// # Errors
    ///
    /// [`Error::StreamNotFound`] when there is no [`DLQ_STREAM`].
    pub async fn dead_letters(
        &self,
        filter: &Pattern,
        from: u64,
        max: usize,
    ) -> Result<Vec<DeadLetter>, Error> {
        let mut letters = Vec::new();
        let mut from = from;
        while letters.len() < max {
            let Some((sequence, message)) = self.stream_next(DLQ_STREAM, filter, from).await?
            else {
                break;
            };
            letters.push(DeadLetter::new(sequence, message));
            from = sequence + 1;
        }
        Ok(letters)
    }

    /// The dead letter at `sequence` in [`DLQ_STREAM`], if it is still there.
    ///
    /// # Errors
    ///
    /// [`Error::StreamNotFound`] when there is no [`DLQ_STREAM`].
    pub async fn dead_letter(&self, sequence: u64) -> Result<Option<DeadLetter>, Error> {
        Ok(self
            .stream_get(DLQ_STREAM, sequence)
            .await?
            .map(|m| DeadLetter::new(sequence, m)))
    }

    /// Publishes the dead letter at `sequence` again to the subject it was first published
    /// on, with a new dedup id, and removes it once the publish is acknowledged.
    ///
    /// # Errors
    ///
    /// [`Error::DeadLetterNotFound`] when it is not there (any more),
    /// [`Error::NotReplayable`] when it does not say where it came from, and the errors of
    /// [`Snake::stream_publish`]; on any error the dead letter stays.
    pub async fn replay_dead_letter(&self, sequence: u64) -> Result<Replayed, Error> {
        let letter = self
            .dead_letter(sequence)
            .await?
            .ok_or(Error::DeadLetterNotFound(sequence))?;
        let Some(to) = letter.origin.clone() else {
            return Err(Error::NotReplayable {
                sequence,
                reason: "it has no Flux-Dlq-Subject header",
            });
        };
        let mut msg = letter.original();
        // New, and the same for every replay of this dead letter: a replay repeated after a
        // crash between the publish and the removal is stored once.
        let id = format!(
            "replay:{sequence}:{}",
            msg.id()
                .unwrap_or_else(|| letter.stream.as_deref().unwrap_or("-"))
        );
        msg.headers.insert(header::MSG_ID, id);
        let ack = self.stream_publish(msg).await?;
        self.stream_delete(DLQ_STREAM, sequence).await?;
        tracing::info!(
            sequence,
            to = %to,
            stream = %ack.stream,
            stored_as = ack.sequence,
            duplicate = ack.duplicate,
            "Replayed a dead letter."
        );
        Ok(Replayed { sequence, to, ack })
    }
}
