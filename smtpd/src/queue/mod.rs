//! The queue: where messages and their envelopes wait until they are
//! delivered, bounced or expired.
//!
//! [`QueueBackend`] is the store every backend offers, over opaque blobs,
//! with exactly the operations of queue protocol 0.1 (SPEC.md section 4):
//! message create / write / commit / read / delete / corrupt, envelope
//! create / update / load / delete / walk. The fs queue ([`fs::FsQueue`],
//! the default) implements them in-process over a spool directory; a
//! proc-exec backend implements the same operations over the protocol. The
//! compression and encryption layers and the SMTP intake and scheduler sit
//! above this trait and never see where the bytes live.
//!
//! [`layers`] holds `queue compression` and `queue encryption`, a
//! [`QueueBackend`] wrapping any other, which the daemon puts above the
//! backend it opened.
//!
//! [`envelope`] holds the envelope type and its human-readable, versioned
//! serialisation (OpenSMTPD's ASCII format), which is what the daemon
//! stores in envelope blobs.
//!
//! Every failure is an [`Error`], and every `Error` is temporary: intake
//! answers 4xx ([`Error::smtp_status`]) and the scheduler retries later.

pub mod envelope;
pub mod fs;
pub mod layers;
pub mod proc_exec;

use std::io;
use std::path::PathBuf;

use async_trait::async_trait;
pub use smtpd_sdk::proto::{EvpId, MsgId};

/// The time now in Unix seconds, as envelopes record it (`ctime`,
/// `last-try`) and the scheduler counts it.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The largest envelope blob a backend stores, in bytes (SPEC.md 4.5).
pub const MAX_ENVELOPE_SIZE: usize = 48 * 1024;

/// The largest `length` a backend must serve in one `message_read`
/// (SPEC.md 4.4).
pub const MAX_READ_LENGTH: u64 = 256 * 1024;

/// Why a queue operation failed. Always a temporary failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The filesystem holding the spool is full (ENOSPC, EDQUOT).
    #[error("queue: no space left while trying to {op} {}", path.display())]
    NoSpace {
        /// What was being done ("write", "fsync", "rename", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
    },
    /// Any other I/O failure (EIO, EACCES, ...).
    #[error("queue: cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// The spool directory cannot be used (owned by another user, writable
    /// by others, locked by another process, not a directory).
    #[error("queue: spool {}: {reason}", path.display())]
    Spool {
        /// The spool directory.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// The message does not exist, or not in the state the operation
    /// needs (written or committed before it was created, or after its
    /// commit).
    #[error("queue: message {msgid} is not {expected}")]
    UnknownMessage {
        /// The message.
        msgid: MsgId,
        /// The state needed: "uncommitted" or "known".
        expected: &'static str,
    },
    /// A chunk was written at another offset than the current size.
    #[error("queue: message {msgid}: write at offset {offset}, but {size} bytes are stored")]
    BadOffset {
        /// The message.
        msgid: MsgId,
        /// The offset asked for.
        offset: u64,
        /// The bytes already stored.
        size: u64,
    },
    /// A commit announced another size than the bytes written.
    #[error("queue: message {msgid}: commit of {announced} bytes, but {size} are stored")]
    SizeMismatch {
        /// The message.
        msgid: MsgId,
        /// The size the commit announced.
        announced: u64,
        /// The bytes actually stored.
        size: u64,
    },
    /// An envelope blob is empty or larger than [`MAX_ENVELOPE_SIZE`].
    #[error("queue: envelope of {size} bytes refused (1 to {MAX_ENVELOPE_SIZE} bytes)")]
    EnvelopeSize {
        /// Its size.
        size: usize,
    },
    /// A read asked for more than [`MAX_READ_LENGTH`] bytes.
    #[error("queue: read of {length} bytes refused (at most {MAX_READ_LENGTH})")]
    ReadTooLarge {
        /// The length asked for.
        length: u64,
    },
    /// No free id was found after many random draws.
    #[error("queue: no free {what} id found")]
    IdsExhausted {
        /// "message" or "envelope".
        what: &'static str,
    },
    /// A backend program answered `error`, timed out, answered something
    /// malformed or is not running.
    #[error("queue backend {backend}: {reason}")]
    Backend {
        /// The backend's name.
        backend: String,
        /// What happened, with the backend's message if it gave one.
        reason: String,
    },
    /// The queue holds blobs written with other layers or another key
    /// than configured (`queue compression`, `queue encryption`): the
    /// daemon refuses to start.
    #[error("queue {backend}: {reason}")]
    Layers {
        /// The backend's name.
        backend: String,
        /// What does not match, and what to do.
        reason: String,
    },
    /// A blocking task of the queue could not finish (the runtime is
    /// shutting down).
    #[error("queue: background task failed: {reason}")]
    Task {
        /// What the runtime said.
        reason: String,
    },
}

/// The SMTP reply an [`Error`] turns into at intake: always 4xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TempFailure {
    /// The reply code: 452 when the disk is full, 451 otherwise.
    pub code: u16,
    /// The enhanced status code (RFC 3463).
    pub enhanced: &'static str,
    /// The text of the reply.
    pub text: &'static str,
}

impl Error {
    /// The 4xx reply for the SMTP client: `452 4.3.1` for a full disk,
    /// `451 4.3.0` for everything else. Never a 5xx: a failing queue must
    /// not refuse mail that would otherwise be accepted.
    pub fn smtp_status(&self) -> TempFailure {
        match self {
            Self::NoSpace { .. } => TempFailure {
                code: 452,
                enhanced: "4.3.1",
                text: "Insufficient system storage",
            },
            _ => TempFailure {
                code: 451,
                enhanced: "4.3.0",
                text: "Temporary failure",
            },
        }
    }

    /// Wraps an I/O error, telling a full disk apart from other failures.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Self::NoSpace { op, path },
            _ => Self::Io { op, path, source },
        }
    }
}

/// The outcome of [`QueueBackend::envelope_claim`] (SPEC.md 4.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The lease is this daemon's for the time asked.
    Granted,
    /// Another daemon holds a live lease on the envelope.
    Busy,
    /// No such committed envelope (another daemon delivered it).
    NotFound,
}

/// A queue store: message content and envelopes as opaque blobs, with the
/// operations of queue protocol 0.1 (SPEC.md section 4).
///
/// `Ok` from a state-changing operation means the change is durable
/// (SPEC.md 4.7): after `message_commit`, the content and every envelope
/// created for the message survive a crash; `envelope_create` on a
/// committed message, `envelope_update`, `envelope_delete`,
/// `message_delete` and `message_corrupt` likewise. Methods take `&self`
/// and may be called concurrently.
#[async_trait]
pub trait QueueBackend: Send + Sync {
    /// The backend's name, for logs (`fs`, or a proc-exec backend's name).
    fn name(&self) -> &str;

    /// Allocates a new, empty, uncommitted message and returns its id
    /// (never zero, unique in the store).
    async fn message_create(&self) -> Result<MsgId, Error>;

    /// Appends `data` to an uncommitted message; `offset` must equal the
    /// number of bytes already stored.
    async fn message_write(&self, msgid: MsgId, offset: u64, data: &[u8]) -> Result<(), Error>;

    /// Makes an uncommitted message durable and visible together with its
    /// envelopes, after checking that exactly `size` bytes were written.
    /// On error the message stays uncommitted (or is gone): never half
    /// committed.
    async fn message_commit(&self, msgid: MsgId, size: u64) -> Result<(), Error>;

    /// Up to `length` bytes of a committed message from `offset` (empty at
    /// or past the end); `None` when no such committed message exists.
    async fn message_read(
        &self,
        msgid: MsgId,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, Error>;

    /// Removes a message, committed or not, and all its envelopes. An
    /// unknown message is success.
    async fn message_delete(&self, msgid: MsgId) -> Result<(), Error>;

    /// Moves a message and its envelopes aside: they are no longer read,
    /// loaded, updated or walked. `false` when there is no such message.
    async fn message_corrupt(&self, msgid: MsgId) -> Result<bool, Error>;

    /// Stores a new envelope for an existing message and returns its id
    /// (the msgid in the upper half). On an uncommitted message it becomes
    /// visible and durable with the commit; on a committed one, now.
    async fn envelope_create(&self, msgid: MsgId, data: &[u8]) -> Result<EvpId, Error>;

    /// Replaces a committed envelope atomically (a crash leaves the old or
    /// the new content). `false` when there is no such envelope.
    async fn envelope_update(&self, evpid: EvpId, data: &[u8]) -> Result<bool, Error>;

    /// A committed envelope's content; `None` when there is none.
    async fn envelope_load(&self, evpid: EvpId) -> Result<Option<Vec<u8>>, Error>;

    /// Removes an envelope. An unknown envelope is success.
    async fn envelope_delete(&self, evpid: EvpId) -> Result<(), Error>;

    /// The committed envelope with the smallest id strictly above `after`
    /// (zero to start), with its content; `None` when there is none left.
    async fn envelope_walk(&self, after: EvpId) -> Result<Option<(EvpId, Vec<u8>)>, Error>;

    /// A counter that moves on each time the store comes back after it was
    /// unavailable (a proc-exec backend restarted, or answering again after
    /// failures): the scheduler then walks the envelopes again (SPEC.md
    /// 4.9). `None` for a store that is never away (the fs queue). A layer
    /// above a backend passes its backend's on.
    fn recoveries(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Stops what the store runs (a proc-exec backend's program), once
    /// intake and the scheduler are done with it. A layer passes it on.
    async fn shutdown(&self) {}

    /// Whether several daemons share the store (a backend that registered
    /// `lease`, SPEC.md 4.12): the scheduler then claims each envelope
    /// before acting on it, and walks the store again periodically. False
    /// by default; a layer passes its backend's on.
    fn shared(&self) -> bool {
        false
    }

    /// Leases an envelope to daemon `instance` for `seconds`, or renews
    /// its lease. A store only this daemon uses grants every claim.
    async fn envelope_claim(
        &self,
        evpid: EvpId,
        instance: &str,
        seconds: u64,
    ) -> Result<Claim, Error> {
        let _ = (evpid, instance, seconds);
        Ok(Claim::Granted)
    }

    /// Ends `instance`'s lease on an envelope (nothing for an unshared
    /// store).
    async fn envelope_release(&self, evpid: EvpId, instance: &str) -> Result<(), Error> {
        let _ = (evpid, instance);
        Ok(())
    }

    /// [`QueueBackend::envelope_walk`] skipping the envelopes another
    /// instance holds a live lease on (every envelope for an unshared
    /// store).
    async fn envelope_walk_free(
        &self,
        after: EvpId,
        instance: &str,
    ) -> Result<Option<(EvpId, Vec<u8>)>, Error> {
        let _ = instance;
        self.envelope_walk(after).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_a_temporary_failure() {
        let msgid = MsgId(0x0bad_cafe);
        let errors = [
            Error::io(
                "write",
                "/spool/x",
                io::Error::from_raw_os_error(libc::ENOSPC),
            ),
            Error::io("fsync", "/spool/x", io::Error::from_raw_os_error(libc::EIO)),
            Error::Spool {
                path: "/spool".into(),
                reason: "locked".into(),
            },
            Error::UnknownMessage {
                msgid,
                expected: "uncommitted",
            },
            Error::BadOffset {
                msgid,
                offset: 3,
                size: 2,
            },
            Error::SizeMismatch {
                msgid,
                announced: 3,
                size: 2,
            },
            Error::EnvelopeSize { size: 0 },
            Error::ReadTooLarge { length: 1 << 30 },
            Error::IdsExhausted { what: "message" },
            Error::Backend {
                backend: "pg".into(),
                reason: "timeout".into(),
            },
            Error::Task {
                reason: "cancelled".into(),
            },
            Error::Layers {
                backend: "fs".into(),
                reason: "sealed with another key".into(),
            },
        ];
        for e in &errors {
            let reply = e.smtp_status();
            assert_eq!(reply.code / 100, 4, "{e}");
            assert!(reply.enhanced.starts_with("4."), "{e}");
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(errors[0].smtp_status().code, 452);
        assert!(matches!(errors[0], Error::NoSpace { op: "write", .. }));
        assert_eq!(errors[1].smtp_status().code, 451);
        assert_eq!(
            errors[1].to_string(),
            "queue: cannot fsync /spool/x: Input/output error (os error 5)"
        );
    }
}
