//! Publishing to streams with a window of pending acknowledgements, each tied to its publish.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::client::{Backend, PubAck, Snake};
use crate::nats::PendingAck;
use crate::{Error, Message};

/// Publishes to streams with up to `window` acknowledgements pending, and hands each
/// acknowledgement (or failure) back with the message and the caller's tag it belongs to, so
/// that a failed publish can be sent again as it was and nothing is forgotten.
///
/// ```
/// # async fn run() -> Result<(), snake::Error> {
/// use snake::{Message, Pattern, Snake, StreamConfig, Subject};
///
/// let snake = Snake::memory();
/// snake.create_stream(StreamConfig::new("orders", [Pattern::msg_all()])?).await?;
/// let to = Subject::msg("edge", "gen", "out")?;
/// let mut publisher = snake.tracked_publisher::<u32>(64);
/// publisher.send(Message::new(to, &b"one"[..]).with_id("1"), 7).await.map_err(|e| e.error)?;
/// let done = publisher.next().await.expect("one publish is pending");
/// assert_eq!(done.tag, 7);
/// assert!(!done.result?.duplicate);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
/// ```
pub struct TrackedPublisher<T> {
    snake: Snake,
    window: usize,
    /// Publishes whose acknowledgement is still to come (over the network), oldest first.
    pending: VecDeque<(PendingAck, Message, T)>,
    /// Publishes already answered (in process the answer is immediate), oldest first.
    done: VecDeque<Published<T>>,
}

impl<T> std::fmt::Debug for TrackedPublisher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackedPublisher")
            .field("snake", &self.snake)
            .field("window", &self.window)
            .field("outstanding", &self.outstanding())
            .finish()
    }
}

/// The answer to one publish of a [`TrackedPublisher`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Published<T> {
    /// The caller's tag.
    pub tag: T,
    /// The message as it was published (send it again, unchanged, to retry).
    pub message: Message,
    /// The stream's acknowledgement, or why the publish failed.
    pub result: Result<PubAck, Error>,
}

/// A publish refused before it was sent; the message and tag come back.
#[derive(Debug)]
#[non_exhaustive]
pub struct SendError<T> {
    /// Why.
    pub error: Error,
    /// The message.
    pub message: Message,
    /// The caller's tag.
    pub tag: T,
}

impl Snake {
    /// A publisher that keeps up to `window` acknowledgements pending and says which publish
    /// each one answers (see [`TrackedPublisher`]).
    pub fn tracked_publisher<T>(&self, window: usize) -> TrackedPublisher<T> {
        TrackedPublisher {
            snake: self.clone(),
            window: window.max(1),
            pending: VecDeque::new(),
            done: VecDeque::new(),
        }
    }
}

impl<T> TrackedPublisher<T> {
    /// Publishes `msg`; its answer comes later from [`next`](Self::next). When `window`
    /// answers are outstanding, call `next` first: `send` does not wait for room.
    ///
    /// # Errors
    ///
    /// The transport refused the message before sending it (closed, not connected, too
    /// large); the message and tag come back in the [`SendError`].
    pub async fn send(&mut self, msg: Message, tag: T) -> Result<(), SendError<T>> {
        match &self.snake.backend {
            Backend::Nats(n) => {
                let n = Arc::clone(n);
                match n.stream_send(&msg).await {
                    Ok(pending) => {
                        self.pending.push_back((pending, msg, tag));
                        Ok(())
                    }
                    Err(error) => Err(SendError {
                        error,
                        message: msg,
                        tag,
                    }),
                }
            }
            Backend::Memory(m) => {
                let result = m.stream_publish(msg.clone());
                self.done.push_back(Published {
                    tag,
                    message: msg,
                    result,
                });
                Ok(())
            }
        }
    }

    /// Publishes sent whose answer was not yet taken with [`next`](Self::next).
    pub fn outstanding(&self) -> usize {
        self.pending.len() + self.done.len()
    }

    /// Whether `window` answers are outstanding (take one with [`next`](Self::next) before
    /// sending more).
    pub fn is_full(&self) -> bool {
        self.outstanding() >= self.window
    }

    /// The answer to the oldest outstanding publish, waiting for it; `None` when nothing is
    /// outstanding.
    ///
    /// Not cancel-safe: a `next` dropped while it waits loses that publish's answer (the
    /// message may or may not be stored). Await it to the end.
    pub async fn next(&mut self) -> Option<Published<T>> {
        if let Some(done) = self.done.pop_front() {
            return Some(done);
        }
        let (pending, message, tag) = self.pending.pop_front()?;
        let result = pending.wait().await;
        Some(Published {
            tag,
            message,
            result,
        })
    }
}
