//! The child-process supervisor shared by proc-exec tables, filters and the
//! queue (SPEC.md sections 1.1 and 1.9).
//!
//! A [`Supervisor`] runs one backend program for one declaration and is the
//! only way the daemon talks to it. It spawns the program as OpenSMTPD does
//! (`/bin/sh -c "exec CMD"`, a relative command taken from the backends
//! directory, optionally as another user, in a new session: `spawn.rs`),
//! performs the `config|...` / `register|...` handshake with a timeout
//! (`child.rs`), then lets any number of callers send requests at once
//! ([`Supervisor::call`]): each request is registered under its key before
//! it is written, answers are matched back by key in any order
//! (`inflight.rs`), and a request unanswered within the timeout fails on
//! its own. Callers reach whichever child runs through the backend's link
//! (`link.rs`), which outlives the children and keeps shared locks and
//! counters off the path of each request. The program's stderr is logged
//! line by line with its name
//! (`stderr.rs`). When it dies, closes its output or hangs, every request
//! in flight fails temporarily and it is restarted with backoff
//! (`supervisor.rs`); a malformed line is logged and dropped. Counters for
//! `smtpctl show tables` live in `stats.rs`.
//!
//! The supervisor knows nothing of a protocol family: a [`Family`] supplies
//! the family's handshake lines, reads the registrations, and decodes answer
//! lines into a request key and an answer, using the `smtpd-sdk` codec.
//! Table requests are keyed by result type and id, queue requests by id,
//! filter requests by session and token.

mod child;
mod error;
mod inflight;
mod link;
mod padded;
mod spawn;
mod stats;
mod stderr;
mod supervisor;

use std::fmt;
use std::hash::Hash;
use std::path::PathBuf;
use std::time::Duration;

pub use smtpd_sdk::proto::ConfigLine;

pub use error::{Error, StartError};
pub(crate) use spawn::quote;
pub use spawn::shell_command;
pub use stats::Stats;
pub use supervisor::{State, Supervisor};

/// How long the handshake may take, up to `register|ready` (SPEC.md 1.6).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// How many bytes of requests may wait for a backend that does not read
/// (SPEC.md 1.9).
pub const MAX_BUFFERED: usize = 4 << 20;

/// What one protocol family tells the supervisor.
pub trait Family: Send + Sync + 'static {
    /// What matches an answer to its request (table: result type and id).
    type Key: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static;
    /// A decoded answer.
    type Answer: Send + 'static;
    /// What the backend registered during the handshake.
    type Registration: Default + fmt::Debug + Send + Sync + 'static;

    /// The protocol version announced in `config|protocol|VERSION`.
    fn protocol(&self) -> &'static str;

    /// The family's own `config|KEY|VALUE` lines, sent after
    /// `smtpd-version` and `protocol` and before `config|ready`.
    fn config(&self) -> Vec<ConfigLine>;

    /// Reads one line the backend wrote before `register|ready`. An error
    /// is a handshake failure; it says what was wrong with the line.
    fn register(
        &self,
        line: &[u8],
        registration: &mut Self::Registration,
    ) -> Result<Registered, String>;

    /// Reads one line the backend wrote after the handshake.
    fn decode(&self, line: &[u8]) -> Decoded<Self::Key, Self::Answer>;

    /// Waits, after each line read, until the family can take more (a
    /// filter's data-line stream whose reader lags behind): meanwhile
    /// nothing more is read, so the backend blocks on its output.
    fn relieve(&self) -> impl std::future::Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// Whether a well-formed answer reports a failure (a table's `error`),
    /// for the error counter.
    fn is_failure(&self, _answer: &Self::Answer) -> bool {
        false
    }
}

/// What a handshake line did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// A registration was recorded; more follow.
    More,
    /// The line registers something this daemon does not know (a later
    /// revision of the protocol): logged as a warning with this text, and
    /// ignored.
    Ignored(String),
    /// `register|ready`: the handshake is over.
    Ready,
}

/// What an answer line holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<K, A> {
    /// A well-formed answer to the request with this key.
    Answer {
        /// The request it answers.
        key: K,
        /// The answer.
        answer: A,
    },
    /// A line that does not parse, or an answer illegal for its request.
    /// When the line still names a request, that request fails.
    Malformed {
        /// The request it names, if it names one.
        key: Option<K>,
        /// What was wrong, without the line itself.
        reason: String,
    },
    /// A line the family dealt with itself, answering no request (a
    /// filter's data-line, handed to its session's stream).
    Handled,
}

/// What to run and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// How logs and errors name the backend (the table or filter name).
    pub name: String,
    /// The command as written in smtpd.conf; run as `/bin/sh -c "exec
    /// CMD"`, relative to [`Spec::backends_dir`] unless it starts with `/`.
    pub command: String,
    /// Where relative commands are found.
    pub backends_dir: PathBuf,
    /// Run as this user (with its groups); `None` keeps the daemon's.
    pub user: Option<String>,
    /// Run with this group instead of the user's primary group.
    pub group: Option<String>,
    /// Change root to this directory before dropping privileges.
    pub chroot: Option<PathBuf>,
    /// How long a request may wait for its answer.
    pub request_timeout: Duration,
    /// How long the handshake may take.
    pub handshake_timeout: Duration,
    /// How many bytes of requests may wait for a backend that does not
    /// read.
    pub max_buffered: usize,
}

impl Spec {
    /// A command run as the daemon's user, with the default handshake
    /// timeout and buffer limit.
    pub fn new(
        name: impl Into<String>,
        command: impl Into<String>,
        backends_dir: impl Into<PathBuf>,
        request_timeout: Duration,
    ) -> Self {
        Self {
            name: name.into(),
            command: command.into(),
            backends_dir: backends_dir.into(),
            user: None,
            group: None,
            chroot: None,
            request_timeout,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            max_buffered: MAX_BUFFERED,
        }
    }
}
