//! The process's `tracing` subscriber: where lines go and how many.
//!
//! [`init`] installs it once, from `main`: to standard error with the time
//! of each line ([`Output::Stderr`], `smtpd -d` and `smtpd -n`), or to
//! syslog ([`Output::Syslog`], the daemon detached). Its level filter sits
//! behind a reload handle, so that [`set_verbose`] (`smtpctl log verbose`
//! and `log brief`) can change it while the daemon runs.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

use super::syslog::{Libc, SyslogLayer};

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Standard error, each line with its time; `debug` adds the module
    /// of each line, and colours on a terminal.
    Stderr {
        /// Whether `-d` was given.
        debug: bool,
    },
    /// The system logger: facility `mail`, ident `smtpd`.
    Syslog,
}

/// The level filter and what it was at start.
struct Filter {
    handle: reload::Handle<EnvFilter, Registry>,
    /// The directives given at start (`RUST_LOG` or the level).
    brief: String,
}

static FILTER: OnceLock<Filter> = OnceLock::new();

/// Why the level could not change.
#[derive(Debug, thiserror::Error)]
pub enum VerboseError {
    /// No subscriber was installed by [`init`] (a test, a library user).
    #[error("logging is not set up by smtpd")]
    NotInstalled,
    /// The subscriber is gone.
    #[error("cannot change the log level: {0}")]
    Reload(#[from] reload::Error),
}

/// Installs the subscriber: `output`, and `level` (`info`, `debug`, ...)
/// unless `RUST_LOG` says otherwise. Later calls do nothing.
pub fn init(output: Output, level: &str) {
    let brief = std::env::var("RUST_LOG")
        .ok()
        .filter(|directives| EnvFilter::try_new(directives).is_ok())
        .unwrap_or_else(|| level.to_owned());
    let (filter, handle) = reload::Layer::new(EnvFilter::new(&brief));
    if FILTER.set(Filter { handle, brief }).is_err() {
        return;
    }
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match output {
        Output::Stderr { debug } => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(debug)
                    .with_ansi(debug && std::io::stderr().is_terminal()),
            )
            .try_init(),
        Output::Syslog => registry.with(SyslogLayer::new(Libc::open())).try_init(),
    };
    // Another subscriber was set first (only possible in tests): keep it.
    let _ = installed;
}

/// `smtpctl log verbose` (`true`: debug lines too) and `log brief`
/// (`false`: back to the level the daemon started with).
pub fn set_verbose(verbose: bool) -> Result<(), VerboseError> {
    let filter = FILTER.get().ok_or(VerboseError::NotInstalled)?;
    let directives = if verbose { "debug" } else { &filter.brief };
    filter.handle.reload(EnvFilter::new(directives))?;
    tracing::info!("logging {}", if verbose { "verbose" } else { "brief" });
    Ok(())
}
