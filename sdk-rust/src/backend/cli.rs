//! The command line shared by backends configured from one file:
//! `NAME CONFIG`, `NAME -f CONFIG` or `NAME --help` (`-h`), logs on stderr.
//!
//! [`start`] does the whole start-up: it installs a `tracing` subscriber
//! writing to stderr (level from `RUST_LOG`, `info` when unset), then reads
//! the arguments. `--help` prints the usage text on stdout and exits 0; any
//! other command line that is not a configuration path prints
//! `NAME: reason` and the usage text on stderr and exits 1. [`refuse`]
//! reports a configuration the backend could not load, before it registers.
//!
//! ```no_run
//! # async fn serve(_: std::path::PathBuf) -> Result<(), String> { Ok(()) }
//! # async fn main_() -> std::process::ExitCode {
//! use smtpd_sdk::backend::cli;
//! let path = match cli::start("table-example", "usage: table-example [-f] FILE") {
//!     Ok(path) => path,
//!     Err(code) => return code,
//! };
//! match serve(path).await {
//!     Ok(()) => std::process::ExitCode::SUCCESS,
//!     Err(e) => cli::refuse("table-example", e),
//! }
//! # }
//! ```

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `--help` or `-h`: print the usage text and exit successfully.
    Help,
    /// `CONFIG` or `-f CONFIG`: serve with the configuration at this path.
    Serve(PathBuf),
}

/// A command line that is neither `--help` nor a configuration path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArgsError {
    /// No argument at all.
    Missing,
    /// Anything else (an unknown flag, `-f` alone, two paths...): the
    /// arguments joined with spaces.
    Unexpected(String),
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("a configuration file is required"),
            Self::Unexpected(args) => write!(f, "unexpected arguments: {args}"),
        }
    }
}

impl std::error::Error for ArgsError {}

/// Parses the arguments after the program name: `CONFIG`, `-f CONFIG`,
/// `--help` or `-h`. A lone argument starting with `-` is not a path.
pub fn parse_args(args: &[String]) -> Result<Command, ArgsError> {
    match args {
        [flag] if flag == "--help" || flag == "-h" => Ok(Command::Help),
        [flag, path] if flag == "-f" => Ok(Command::Serve(PathBuf::from(path))),
        [path] if !path.starts_with('-') => Ok(Command::Serve(PathBuf::from(path))),
        [] => Err(ArgsError::Missing),
        _ => Err(ArgsError::Unexpected(args.join(" "))),
    }
}

/// Installs the subscriber every backend uses: plain text on stderr, no
/// colours, no targets, the level from `RUST_LOG` (`info` when unset or
/// invalid). Does nothing if a global subscriber is already set.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // An error only means a subscriber is already installed.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_env_filter(filter)
        .try_init();
}

/// What [`start`] does for a command line, apart from logging: the path to
/// serve, or the text to print and where, with the exit status.
#[derive(Debug, PartialEq, Eq)]
enum Start {
    Serve(PathBuf),
    /// Printed on stdout, exit 0.
    Help(String),
    /// Printed on stderr, exit 1.
    Usage(String),
}

fn decide(name: &str, usage: &str, args: &[String]) -> Start {
    let usage = usage.trim_end();
    match parse_args(args) {
        Ok(Command::Serve(path)) => Start::Serve(path),
        Ok(Command::Help) => Start::Help(usage.to_owned()),
        Err(e) => Start::Usage(format!("{name}: {e}\n{usage}")),
    }
}

/// Starts a backend named `name`: installs the logging subscriber
/// ([`init_logging`]) and parses the process arguments. Returns the
/// configuration path to serve, or the exit status once `--help` printed
/// `usage` on stdout (success) or a bad command line printed `NAME: reason`
/// and `usage` on stderr (failure).
pub fn start(name: &str, usage: &str) -> Result<PathBuf, ExitCode> {
    init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match decide(name, usage, &args) {
        Start::Serve(path) => Ok(path),
        Start::Help(text) => {
            println!("{text}");
            Err(ExitCode::SUCCESS)
        }
        Start::Usage(text) => {
            eprintln!("{text}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Reports a configuration the backend refused, as `NAME: error` on
/// stderr, and returns the failure exit status.
pub fn refuse(name: &str, error: impl fmt::Display) -> ExitCode {
    eprintln!("{name}: {error}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn paths_and_help() {
        let serve = Ok(Command::Serve(PathBuf::from("/etc/mail/t.conf")));
        assert_eq!(parse_args(&args(&["/etc/mail/t.conf"])), serve);
        assert_eq!(parse_args(&args(&["-f", "/etc/mail/t.conf"])), serve);
        assert_eq!(parse_args(&args(&["--help"])), Ok(Command::Help));
        assert_eq!(parse_args(&args(&["-h"])), Ok(Command::Help));
    }

    #[test]
    fn bad_command_lines() {
        assert_eq!(parse_args(&args(&[])), Err(ArgsError::Missing));
        for bad in [&["-x"][..], &["-f"], &["a", "b"], &["-f", "a", "b"]] {
            let joined = bad.join(" ");
            assert_eq!(
                parse_args(&args(bad)),
                Err(ArgsError::Unexpected(joined)),
                "{bad:?}"
            );
        }
        assert_eq!(
            ArgsError::Missing.to_string(),
            "a configuration file is required"
        );
        assert_eq!(
            ArgsError::Unexpected("-x y".to_owned()).to_string(),
            "unexpected arguments: -x y"
        );
    }

    #[test]
    fn what_start_prints() {
        let usage = "usage: t [-f] FILE\n";
        assert_eq!(
            decide("t", usage, &args(&["-f", "c"])),
            Start::Serve(PathBuf::from("c"))
        );
        assert_eq!(
            decide("t", usage, &args(&["--help"])),
            Start::Help("usage: t [-f] FILE".to_owned())
        );
        assert_eq!(
            decide("t", usage, &args(&[])),
            Start::Usage("t: a configuration file is required\nusage: t [-f] FILE".to_owned())
        );
    }

    #[test]
    fn logging_can_be_initialised_twice() {
        init_logging();
        assert!(tracing::dispatcher::has_been_set());
        // A second call (another backend helper, a test) is not an error.
        init_logging();
        assert!(tracing::dispatcher::has_been_set());
    }
}
