//! Backend helpers: turn a few callbacks into a complete backend program.
//!
//! Each family has a module with one trait and a `run` function:
//! [`table`], [`filter`] and [`queue`] (re-exported at the crate root as
//! `smtpd_sdk::table`, `smtpd_sdk::filter`, `smtpd_sdk::queue`). `run` takes
//! stdin and stdout, performs the handshake ([`Config`], version check), then
//! drives the request loop shared by the three families (`engine.rs`): many
//! requests in flight, answers written as soon as each one is ready, output
//! batched by a single writer and flushed when nothing more is ready, exit on
//! EOF once the work in flight is done.
//!
//! Handlers return [`Error`]; the run loop turns it into the family's
//! temporary failure (`error` for tables and queues, a 4xx reply for
//! filters), so every request is answered exactly once. Logs go through
//! `tracing`; the library installs no subscriber, a program does (see the
//! examples, or `cli` with the `cli` feature for backends configured
//! from one file).

#[cfg(feature = "cli")]
pub mod cli;
mod engine;
pub mod filter;
mod handshake;
pub mod queue;
mod stdio;
pub mod table;

pub use handshake::Config;

use std::fmt;

/// The outcome of a handler that could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The backend does not implement this operation or service.
    Unsupported,
    /// The operation failed; the text is sent to the daemon (tables and
    /// queues) and logged.
    Failed(String),
}

impl Error {
    /// A failure with a message.
    pub fn failed(message: impl fmt::Display) -> Self {
        Self::Failed(message.to_string())
    }

    /// The message as it may travel in the last field of a line: carriage
    /// returns and newlines become spaces.
    pub fn wire_message(&self) -> String {
        match self {
            Self::Unsupported => "unsupported".to_owned(),
            Self::Failed(m) => m.replace(['\r', '\n'], " "),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported => f.write_str("unsupported"),
            Self::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::failed(e)
    }
}

/// Why a backend's run loop stopped before a clean end of input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Reading stdin or writing stdout failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon announced a protocol version this backend does not speak.
    #[error("unsupported protocol version {got} (this backend speaks {speaks})")]
    UnsupportedVersion {
        /// The version announced by `config|protocol|...`.
        got: String,
        /// The version this backend implements.
        speaks: &'static str,
    },
    /// The handshake was not what the protocol prescribes.
    #[error("handshake: {0}")]
    Handshake(String),
    /// The backend refused the configuration it was given.
    #[error("configuration refused: {0}")]
    Configure(Error),
}

/// Turns the outcome of a run loop into the process exit status: success on
/// a clean end of input, failure with one diagnostic line on stderr
/// otherwise.
fn exit_code(result: Result<(), RunError>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The one diagnostic line the protocol policy asks for; printed
            // directly because the program may have installed no subscriber.
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
