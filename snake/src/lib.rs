//! The transport that carries fluxMsgs between racks and between racks and the mixer.
//!
//! snake will offer one async API with two backends: an in-process one (the embedded
//! default, nothing to install) and NATS JetStream through async-nats (across processes and
//! machines). It is the only crate of the workspace that talks to async-nats.
//!
//! What it holds today:
//!
//! - [`Subject`] and [`Pattern`]: the one table of fluxrig's subjects, typed builders, and
//!   validation that keeps any name from injecting a subject ([`token`]);
//!
//! The publish/subscribe API and its backends arrive next.
//!
//! # Example
//!
//! ```
//! use snake::{Pattern, Subject};
//!
//! let inbox = Subject::msg("edge-1", "acceptor", "in")?;
//! assert_eq!(inbox.to_string(), "flux.msg.edge-1.acceptor.in");
//! assert!(Pattern::msg_all().matches(&inbox));
//!
//! // A name can never widen a subject.
//! assert!(Subject::scenario("edge-1.>").is_err());
//! # Ok::<(), snake::Error>(())
//! ```
//!
//! # Features
//!
//! None yet. MSRV: the workspace's `rust-version`.

mod error;
mod server;
mod subject;

pub use crate::error::Error;
pub use crate::server::{
    NATS_SERVER_ENV, NatsServer, NatsServerBuilder, find_nats_server, nats_server_candidates,
};
pub use crate::subject::{
    DLQ_STREAM, MAX_TOKEN_LEN, MSG_STREAM, Pattern, Subject, TELEMETRY_STREAM, token,
};
