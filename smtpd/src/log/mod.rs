//! Logging: the OpenSMTPD-style event lines, and where log lines go.
//!
//! The lines that log tooling reads (fail2ban's `opensmtpd` filter,
//! pflogsumm-style reports) come only from here: `event.rs` is the closed
//! catalogue of their formats ([`Event`], OpenSMTPD 7.x's wording, each
//! line tested), `session.rs` the lines of one SMTP session under its
//! random 64-bit id ([`SessionLog`], used by intake and by the session
//! driver's [`crate::smtp::conn::Handler::replied`] hook), `delivery.rs`
//! the scheduler driver's lines (delivery results, expiry, removal,
//! injected bounces). Every other line of the daemon is free text through
//! `tracing`.
//!
//! `output.rs` installs the subscriber ([`init`]): standard error with
//! `-d`, else syslog (`syslog.rs`: facility `mail`, ident `smtpd`); its
//! level can change at run time with [`set_verbose`] (`smtpctl log
//! verbose` / `log brief`).

mod delivery;
mod event;
mod output;
mod session;
mod syslog;

pub use delivery::{bounce_injected, delivery, expired, relay_delivery, removed, Attempt};
pub use event::{
    escape, AuthResult, Delay, Delivery, DeliveryResult, Event, QueueAction, Reason, SessionId,
};
pub use output::{init, set_verbose, Output, VerboseError};
pub use session::{shown_command, SessionLog};
pub use syslog::{priority, Libc, Sink, SyslogLayer};

/// Logs `event` (at level info, target `smtpd::log`).
pub fn emit(event: &Event<'_>) {
    tracing::info!(target: "smtpd::log", "{event}");
}

/// A random 64-bit session id, never zero (OpenSMTPD's `generate_uid`).
pub fn new_session_id() -> SessionId {
    loop {
        let id = random_u64();
        if id != 0 {
            return SessionId(id);
        }
    }
}

/// 64 bits from the kernel's random source (a clock-seeded hash if it
/// fails, which only a kernel without `getrandom(2)` does).
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most the buffer's length into it.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if usize::try_from(n) == Ok(bytes.len()) {
        return u64::from_ne_bytes(bytes);
    }
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}
