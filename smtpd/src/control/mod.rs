//! The control socket: how `smtpctl` steers a running daemon.
//!
//! - `protocol.rs`: the requests and answers, one JSON object per line,
//!   shared by both ends.
//! - `server.rs`: the daemon's end, called by `crate::daemon`; it answers
//!   from the live [`crate::table::Tables`].
//! - `admin.rs`: the daemon's answers to the queue, scheduler, status and
//!   log commands, through the scheduler's handle, the queue, intake's
//!   gate and the log filter ([`crate::log::set_verbose`]).
//! - `client.rs`, `command.rs`, `output.rs` and `listing.rs`: smtpctl's
//!   end (blocking client, OpenSMTPD-style command words, what is printed
//!   for each answer, the `show tables` columns); `envelopes.rs` and
//!   `stats.rs`: the `show queue` lines (and the spool read when no daemon
//!   runs), the `show stats` counters and the `monitor` lines; `cli.rs`:
//!   a command carried out, from connecting to what is printed.
//! - `enqueue.rs`: both ends of local submission: `sendmail` asks for an
//!   SMTP session and the connection becomes one, run by the socket
//!   listener ([`crate::intake::LocalListener`]).
//!
//! Where the socket lives is decided here for both ends:
//! [`socket_path`].

mod admin;
pub mod cli;
pub mod client;
pub mod command;
pub mod enqueue;
pub mod envelopes;
pub mod listing;
pub mod output;
pub mod protocol;
mod server;
pub mod stats;

use std::path::{Path, PathBuf};

pub use server::{run, BindError, Context, ControlSocket, IDLE_TIMEOUT};

/// The control socket of a daemon run by root (OpenSMTPD's).
pub const SYSTEM_SOCKET: &str = "/var/run/smtpd.sock";

/// The data directory of a daemon run by another user, relative to the
/// directory it starts in.
pub const DEFAULT_DATA_DIR: &str = "data";

/// The socket's name in the data directory.
pub const SOCKET_NAME: &str = "smtpd.sock";

/// The control socket's default path: [`SYSTEM_SOCKET`] for root, else
/// [`SOCKET_NAME`] in `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    if effective_uid() == 0 {
        PathBuf::from(SYSTEM_SOCKET)
    } else {
        data_dir.join(SOCKET_NAME)
    }
}

/// This process's effective uid.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
