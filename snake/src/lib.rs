//! The transport that carries fluxMsgs between racks and between racks and the mixer.
//!
//! One async API ([`Snake`]) over backends with the same semantics:
//!
//! - **memory** ([`Snake::memory`]): in process, nothing to install; the embedded default,
//!   and what engine tests run on;
//! - **nats** ([`Snake::nats`] with [`NatsOptions`]): NATS JetStream through async-nats,
//!   across processes and machines, and the way to scale out on an existing NATS cluster;
//!   reconnects on its own, speaks TLS and mutual TLS, token and user/password auth.
//!
//! What the API offers:
//!
//! - core publish and subscribe on subject patterns, at most once ([`Snake::publish`],
//!   [`Snake::subscribe`]), and request/reply with a timeout ([`Snake::request`]);
//! - streams with limits ([`StreamConfig`]), publish with a message id for deduplication
//!   ([`Message::with_id`]) and a bounded window of pending acks ([`StreamPublisher`]);
//! - guaranteed consumers ([`Consumer`]): explicit ack, nak with delay, term, bounded
//!   redelivery, and a dead-letter subject for what still fails, with the reason in
//!   headers ([`header`]);
//! - key-value buckets ([`Kv`]): get, put, create, compare-and-set update and delete, delete,
//!   watch, TTL; [`Snake::kv`] creates a bucket, [`Snake::kv_open`] only opens an existing one;
//! - connection-state events ([`Snake::state`]);
//! - [`Subject`] and [`Pattern`]: the one table of fluxrig's subjects, typed builders, and
//!   validation that keeps any name from injecting a subject ([`token`]);
//! - [`NatsServer`]: a local `nats-server` with JetStream, started, supervised and stopped
//!   for tests and for a mixer that runs its own.
//!
//! snake is the only crate of the workspace that talks to async-nats.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), snake::Error> {
//! use std::time::Duration;
//! use snake::{ConsumerConfig, Message, Pattern, Snake, StreamConfig, Subject};
//!
//! let snake = Snake::memory();
//! snake.create_stream(StreamConfig::new("flux-msg", [Pattern::msg_all()])?).await?;
//!
//! let inbox = Subject::msg("edge-1", "acceptor", "in")?;
//! snake.stream_publish(Message::new(inbox.clone(), &b"0100"[..]).with_id("42")).await?;
//! // The same id again within the duplicate window is not stored twice.
//! assert!(snake.stream_publish(Message::new(inbox.clone(), &b"0100"[..]).with_id("42")).await?.duplicate);
//!
//! let cfg = ConsumerConfig::new(inbox.clone().into()).ack_wait(Duration::from_secs(5));
//! let mut consumer = snake.consumer("flux-msg", cfg).await?;
//! let delivery = consumer.next().await?;
//! assert_eq!(delivery.message.payload, &b"0100"[..]);
//! delivery.ack().await?;
//! # Ok(())
//! # }
//! ```
//!
//! The same calls over NATS (streams, consumers and buckets are JetStream's; dead letters
//! are snake's, as JetStream has none):
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), snake::Error> {
//! use snake::{Message, NatsOptions, Snake, Subject};
//!
//! let options = NatsOptions::new("tls://nats.example:4222")
//!     .user_and_password("rack-1", "s3cret")
//!     .root_certificate("/etc/fluxrig/ca.pem")
//!     .name("rack-1");
//! let snake = Snake::nats(options).await?;
//! let to = Subject::msg("edge-1", "acceptor", "in")?;
//! snake.publish(Message::new(to, &b"0100"[..])).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | feature | adds |
//! | --- | --- |
//! | `nats-server-tests` | the integration tests that start a real `nats-server` (`make test` turns it on after `make setup-nats`) |
//!
//! MSRV: the workspace's `rust-version`.
#![doc(test(attr(deny(warnings))))]

mod client;
mod config;
mod dlq;
mod error;
mod memory;
mod message;
mod nats;
mod publisher;
mod server;
mod state;
mod subject;

pub use crate::client::{
    Consumer, Delivery, Kv, KvEntry, KvOperation, KvWatch, PubAck, Snake, StreamPublisher,
    Subscription,
};
pub use crate::config::{
    ConsumerConfig, DEAD_LETTER_MAX_AGE, DEAD_LETTER_MAX_BYTES, DeliverPolicy, KvConfig, Storage,
    StreamConfig,
};
pub use crate::dlq::{DeadLetter, Replayed};
pub use crate::error::{BoxError, Error, NatsOp};
pub use crate::message::{Headers, Message, header};
pub use crate::nats::NatsOptions;
pub use crate::publisher::{Published, SendError, TrackedPublisher};
pub use crate::server::{
    NATS_SERVER_ENV, NatsServer, NatsServerBuilder, find_nats_server, nats_server_candidates,
};
pub use crate::state::{ConnectionState, StateWatch};
pub use crate::subject::{
    DLQ_STREAM, MAX_TOKEN_LEN, MSG_STREAM, Pattern, Subject, TELEMETRY_STREAM, token,
};
pub use bytes;
