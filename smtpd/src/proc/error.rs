//! What can go wrong with a backend: at start-up ([`StartError`], which
//! stops the daemon from starting) and for one request ([`Error`], always
//! temporary).

use std::time::Duration;

/// Why a request to a backend failed. Every variant is a temporary failure:
/// the caller answers 4xx or retries later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No child is running (it died and waits for its restart, or was
    /// stopped).
    #[error("backend {backend} unavailable: {reason}")]
    Unavailable {
        /// The backend's name.
        backend: String,
        /// Why.
        reason: String,
    },
    /// The backend does not read its input and the buffer towards it is
    /// full.
    #[error("backend {backend} unavailable: {limit} bytes of requests already wait for it")]
    Overloaded {
        /// The backend's name.
        backend: String,
        /// The buffer limit.
        limit: usize,
    },
    /// No answer within the request timeout.
    #[error("backend {backend}: no answer within {} s", .after.as_secs())]
    Timeout {
        /// The backend's name.
        backend: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The backend answered with a malformed line naming the request.
    #[error("backend {backend}: malformed answer: {reason}")]
    Malformed {
        /// The backend's name.
        backend: String,
        /// What was wrong with the line.
        reason: String,
    },
    /// The child died, closed its output or hung with the request in
    /// flight.
    #[error("backend {backend} failed with the request in flight: {reason}")]
    Lost {
        /// The backend's name.
        backend: String,
        /// What happened to the child.
        reason: String,
    },
    /// The request cannot be put on the wire (a field holds a newline, or
    /// a `|` where only the last field may).
    #[error("backend {backend}: cannot send the request: {reason}")]
    Unsendable {
        /// The backend's name.
        backend: String,
        /// Why.
        reason: String,
    },
    /// A request with the same key is already in flight (the caller picks
    /// another id).
    #[error("backend {backend}: a request with this id is already in flight")]
    KeyInUse {
        /// The backend's name.
        backend: String,
    },
}

/// Why a backend could not be started. At start-up the daemon reports it
/// and exits; after a restart it is logged and retried with backoff.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The user to run the backend as does not exist.
    #[error("backend {backend}: no such user {user:?}")]
    NoSuchUser {
        /// The backend's name.
        backend: String,
        /// The user.
        user: String,
    },
    /// The group to run the backend with does not exist.
    #[error("backend {backend}: no such group {group:?}")]
    NoSuchGroup {
        /// The backend's name.
        backend: String,
        /// The group.
        group: String,
    },
    /// The shell could not be started (or the privilege change before it
    /// failed).
    #[error("backend {backend}: cannot run {command:?}: {source}")]
    Spawn {
        /// The backend's name.
        backend: String,
        /// The shell command line.
        command: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The backend does not speak the protocol version announced.
    #[error("backend {backend} does not speak protocol {protocol}: {line}")]
    UnsupportedVersion {
        /// The backend's name.
        backend: String,
        /// The version announced.
        protocol: &'static str,
        /// The line the backend wrote on stderr.
        line: String,
    },
    /// The backend went away or wrote something else than registrations
    /// before `register|ready`.
    #[error("backend {backend}: handshake failed: {reason}{}", stderr_note(.stderr))]
    Handshake {
        /// The backend's name.
        backend: String,
        /// What went wrong.
        reason: String,
        /// The last line the backend wrote on stderr, if any.
        stderr: Option<String>,
    },
    /// No `register|ready` within the handshake timeout.
    #[error("backend {backend}: no register|ready within {} s{}", .after.as_secs(), stderr_note(.stderr))]
    HandshakeTimeout {
        /// The backend's name.
        backend: String,
        /// The timeout.
        after: Duration,
        /// The last line the backend wrote on stderr, if any.
        stderr: Option<String>,
    },
}

fn stderr_note(line: &Option<String>) -> String {
    line.as_deref()
        .map(|l| format!(" (its last words: {l:?})"))
        .unwrap_or_default()
}

impl StartError {
    /// The backend's name.
    pub fn backend(&self) -> &str {
        match self {
            Self::NoSuchUser { backend, .. }
            | Self::NoSuchGroup { backend, .. }
            | Self::Spawn { backend, .. }
            | Self::UnsupportedVersion { backend, .. }
            | Self::Handshake { backend, .. }
            | Self::HandshakeTimeout { backend, .. } => backend,
        }
    }
}
