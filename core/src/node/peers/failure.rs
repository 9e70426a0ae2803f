//! Why a request to a peer got no answer.

use crate::node::Error;

/// Why a request to a peer got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::node) enum Failure {
    /// The connection was refused or dropped.
    Closed,
    /// No answer (or no connection) in time.
    Timeout,
    /// The peer is backed off after failing.
    Down,
    /// The peer did not announce that it understands writes.
    NoWrites,
    /// The peer answered with an error of its own (it is shutting down).
    Refused,
    /// This node is shutting down.
    Shutdown,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Failure::Closed => "closed or refused the connection",
            Failure::Timeout => "did not answer in time",
            Failure::Down => "is backed off after failing",
            Failure::NoWrites => "does not understand writes",
            Failure::Refused => "refused the request",
            Failure::Shutdown => "was not asked: this node is shutting down",
        })
    }
}

impl Failure {
    /// The error a caller of `get_via` or `write_via` sees.
    pub(in crate::node) fn error(self, peer: &str) -> Error {
        let msg = format!("{peer} {self}").into();
        match self {
            Failure::NoWrites => Error::Write(msg),
            Failure::Shutdown => Error::Shutdown,
            _ => Error::Unreachable(msg),
        }
    }
}
