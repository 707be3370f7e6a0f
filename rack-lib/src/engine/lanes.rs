//! Guaranteed lanes: a gear's output published to the `flux-msg` JetStream stream, and
//! durable consumers that deliver into a gear's input queue and ack after the gear handled
//! the message.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fluxmsg::{Codec, FluxMsg};
use sdk::{InPort, Stats};
use snake::{ConsumerConfig, Message, Pattern, Snake, StreamConfig, Subject};
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

/// Publishes what arrives on `rx` to `subject`, message by message, with the message id as
/// the dedup id. A failed publish is retried (with backoff) until it succeeds or the rack
/// stops: the lane waits, so back-pressure reaches the gear instead of losing messages.
pub(crate) fn spawn_publisher(
    snake: Snake,
    subject: Subject,
    mut rx: mpsc::Receiver<Vec<FluxMsg>>,
    in_flight: Arc<InFlight>,
    stats: Arc<Stats>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let codec = Codec::default();
        let mut publisher = snake.stream_publisher(256);
        let mut buf = Vec::new();
        while let Some(batch) = rx.recv().await {
            let n = batch.len();
            for msg in batch {
                buf.clear();
                if let Err(e) = codec.encode(&msg, &mut buf) {
                    tracing::warn!(subject = %subject, error = %e, "A message that cannot be encoded is dropped.");
                    stats.add_dropped("unencodable", 1);
                    continue;
                }
                let mut out = Message::new(subject.clone(), Bytes::copy_from_slice(&buf));
                if let Some(id) = &msg.id {
                    out = out.with_id(id.to_string());
                }
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

/// Where a subscriber delivers.
pub(crate) struct Inbound {
    pub(crate) snake: Snake,
    pub(crate) subject: Subject,
    pub(crate) durable: String,
    pub(crate) dead_letter: Subject,
    pub(crate) tx: mpsc::Sender<Delivery>,
    pub(crate) port: InPort,
    pub(crate) in_flight: Arc<InFlight>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) ack_wait: Duration,
    pub(crate) max_deliver: u32,
}

/// Pulls from a durable consumer and delivers into a gear's queue; the gear's node acks each
/// message after handling it. Aborting the task leaves unacked messages to be delivered again.
pub(crate) fn spawn_subscriber(inbound: Inbound) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Inbound {
            snake,
            subject,
            durable,
            dead_letter,
            tx,
            port,
            in_flight,
            stats,
            ack_wait,
            max_deliver,
        } = inbound;
        let codec = Codec::default();
        let mut backoff = retry();
        let mut consumer = loop {
            let cfg = ConsumerConfig::new(subject.clone().into())
                .durable(&durable)
                .map(|c| {
                    c.ack_wait(ack_wait)
                        .max_deliver(max_deliver)
                        .dead_letter(dead_letter.clone())
                });
            let cfg = match cfg {
                Ok(cfg) => cfg,
                Err(e) => {
                    tracing::error!(durable, error = %e, "Bad consumer name.");
                    return;
                }
            };
            match snake.consumer(STREAM, cfg).await {
                Ok(consumer) => break consumer,
                Err(e) => {
                    let wait = backoff.next_wait();
                    tracing::warn!(durable, error = %e, retry_in = ?wait, "Cannot open the consumer; retrying.");
                    tokio::time::sleep(wait).await;
                }
            }
        };
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
