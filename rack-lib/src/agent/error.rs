//! What ends or refuses an agent.

use std::path::PathBuf;

use crate::passport::PassportError;

/// Why an agent cannot start, or why it stopped on its own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The rack's name cannot go into a subject.
    #[error("invalid rack name")]
    Name(#[source] snake::Error),
    /// A setting of the [`AgentConfig`](super::AgentConfig) cannot work.
    #[error("invalid agent configuration: {0}")]
    Config(&'static str),
    /// The state directory or a file in it cannot be read or written.
    #[error("state directory: cannot {action} {path}")]
    Io {
        /// What was tried: `create`, `read`, `write`.
        action: &'static str,
        /// The directory or file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A file of the state directory does not hold what the agent wrote there.
    #[error("state file {path} is not valid: {reason}")]
    BadState {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The saved passport does not verify against the pinned (or configured) cluster key, or
    /// belongs to another rack.
    #[error("the saved passport in {path} is refused")]
    BadPassport {
        /// The file.
        path: PathBuf,
        /// Why.
        source: PassportError,
    },
    /// The mixer answered `conflict`: another identity holds this rack's name. Nothing the
    /// agent can do fixes it; an operator must.
    #[error("the mixer refuses rack {name:?}: the name is held by another identity ({message})")]
    Conflict {
        /// The rack's name.
        name: String,
        /// What the mixer said.
        message: String,
    },
    /// The transport is closed for good.
    #[error("the transport is closed")]
    Bus(#[source] snake::Error),
    /// The agent's task ended without a result (it panicked or was cancelled).
    #[error("the agent task ended abnormally: {0}")]
    Task(String),
}
