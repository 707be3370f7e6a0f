//! Guaranteed lanes: a gear's output published to the `flux-msg` JetStream stream, and
//! durable consumers that deliver into a gear's input queue and ack after the gear handled
//! the message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fluxmsg::{Codec, FluxMsg};
use sdk::{InPort, Stats};
use sha2::{Digest, Sha256};
use snake::{Consumer, ConsumerConfig, Message, Pattern, Snake, StreamConfig, Subject};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::node::{Delivery, InFlight};

/// The stream every guaranteed lane rides.
pub(crate) const STREAM: &str = "flux-msg";

/// How the bus tasks retry: 50 ms doubling up to 2 s.
fn retry() -> sdk::Backoff {
    sdk::Backoff::new(Duration::from_millis(50), Duration::from_secs(2))
}

/// Creates the `flux-msg` stream if it is not there (two minutes of publish dedup).
pub(crate) async fn ensure_stream(snake: &Snake) -> Result<(), snake::Error> {
    let cfg =
        StreamConfig::new(STREAM, [Pattern::msg_all()])?.duplicate_window(Duration::from_secs(120));
    snake.create_stream(cfg).await
}

/// Publishes what arrives on `rx` to `subject`, message by message. A failed publish is
/// retried (with backoff) until it succeeds or the rack stops: the lane waits, so
/// back-pressure reaches the gear instead of losing messages.
///
/// Each publish carries a dedup id of its own hop (see [`dedup_id`]), so that a message
/// crossing several lanes, or coming back to a lane it crossed before, is never taken for a
/// duplicate; only a retry of the same publish is.
pub(crate) fn spawn_publisher(
    snake: Snake,
    subject: Subject,
    mut rx: mpsc::Receiver<Vec<FluxMsg>>,
    in_flight: Arc<InFlight>,
    stats: Arc<Stats>,
) -> JoinHandle<()> {
    let nonce = publisher_nonce();
    tokio::spawn(async move {
        let codec = Codec::default();
        let mut publisher = snake.stream_publisher(256);
        let mut buf = Vec::new();
        let mut seq: u64 = 0;
        while let Some(batch) = rx.recv().await {
            let n = batch.len();
            for msg in batch {
                buf.clear();
                if let Err(e) = codec.encode(&msg, &mut buf) {
                    tracing::warn!(subject = %subject, error = %e, "A message that cannot be encoded is dropped.");
                    stats.add_dropped("unencodable", 1);
                    continue;
                }
                seq += 1;
                let out = Message::new(subject.clone(), Bytes::copy_from_slice(&buf))
                    .with_id(dedup_id(&msg, &subject, &nonce, seq));
                let mut backoff = retry();
                while let Err(e) = publisher.publish(out.clone()).await {
                    if matches!(e, snake::Error::Closed) {
                        stats.add_dropped("bus_closed", 1);
                        break;
                    }
                    let wait = backoff.next_wait();
                    tracing::warn!(subject = %subject, error = %e, retry_in = ?wait, "Publish failed; retrying.");
                    tokio::time::sleep(wait).await;
                }
            }
            in_flight.done(n);
        }
        if let Err(e) = publisher.flush().await {
            tracing::warn!(subject = %subject, error = %e, "Flushing publishes at stop failed.");
        }
    })
}

/// The dedup id of one publish: the message's id (for people reading the stream), the
/// lane's subject (one per rack, gear and port in the fleet), the publisher's nonce (which
/// tells this run of the publisher from an earlier one, say before a crash) and its running
/// count. Two publishes share it only when they are retries of one publish, whatever lanes
/// the message crossed before and however often it comes back.
pub(crate) fn dedup_id(msg: &FluxMsg, subject: &Subject, nonce: &str, seq: u64) -> String {
    match &msg.id {
        Some(id) => format!("{id}:{subject}:{nonce}:{seq:x}"),
        None => format!("-:{subject}:{nonce}:{seq:x}"),
    }
}

/// A value no other publisher run of this subject has had: the start time in nanoseconds and
/// a count of the publishers this process started.
fn publisher_nonce() -> String {
    static STARTED: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = STARTED.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}.{n:x}")
}

/// The durable consumer name of a lane into `rack`: a readable prefix (the local gear and
/// port) and a hash of the lane's full identity, so that two lanes never share a name
/// (whatever `-` their names hold) and the name fits a subject token (64 bytes).
pub(crate) fn durable_name(rack: &str, sub: &super::Subscription) -> String {
    let mut hasher = Sha256::new();
    for part in [
        rack,
        &sub.to.gear,
        &sub.to.port,
        &sub.rack,
        &sub.from.gear,
        &sub.from.port,
    ] {
        // Length-prefixed, so that no two identities give the same bytes.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut prefix: String = format!("{}-{}", sub.to.gear, sub.to.port)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    prefix.truncate(40);
    let mut name = prefix;
    name.push('-');
    for byte in &digest[..8] {
        name.push_str(&format!("{byte:02x}"));
    }
    name
}

/// Opens (creating it if needed) the durable consumer of a lane into a gear.
pub(crate) async fn open_consumer(
    snake: &Snake,
    subject: &Subject,
    durable: &str,
    dead_letter: Subject,
    limits: &super::Limits,
) -> Result<Consumer, snake::Error> {
    let cfg = ConsumerConfig::new(subject.clone().into())
        .durable(durable)?
        .ack_wait(limits.ack_wait)
        .max_deliver(limits.max_deliver)
        .dead_letter(dead_letter);
    snake.consumer(STREAM, cfg).await
}

/// Where a subscriber delivers.
pub(crate) struct Inbound {
    pub(crate) consumer: Consumer,
    pub(crate) durable: String,
    pub(crate) tx: mpsc::Sender<Delivery>,
    pub(crate) port: InPort,
    pub(crate) in_flight: Arc<InFlight>,
    pub(crate) stats: Arc<Stats>,
}

/// Pulls from a durable consumer and delivers into a gear's queue; the gear's node acks each
/// message after handling it. Aborting the task leaves unacked messages to be delivered again.
pub(crate) fn spawn_subscriber(inbound: Inbound) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Inbound {
            mut consumer,
            durable,
            tx,
            port,
            in_flight,
            stats,
        } = inbound;
        let codec = Codec::default();
        loop {
            let delivery = match consumer.next().await {
                Ok(d) => d,
                Err(snake::Error::Closed) => return,
                Err(e) => {
                    tracing::warn!(durable, error = %e, "Consumer error.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let msg = match codec.decode_shared(&delivery.message.payload) {
                Ok(msg) => msg,
                Err(e) => {
                    stats.add_dropped("undecodable", 1);
                    let reason = format!("undecodable: {e}");
                    if let Err(e) = delivery.term(&reason).await {
                        tracing::warn!(durable, error = %e, "Term failed.");
                    }
                    continue;
                }
            };
            let Ok(permit) = tx.reserve().await else {
                return;
            };
            in_flight.add(1);
            permit.send(Delivery {
                port,
                msgs: vec![msg],
                acks: vec![delivery],
            });
        }
    })
}
