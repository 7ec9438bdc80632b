//! `smtpd`: the mail server daemon.
//!
//! Command line as OpenSMTPD's: `smtpd [-dnv] [-D macro=value] [-f file]`.
//! With `-n` it checks the configuration and says `configuration OK`
//! (status 0) or prints every error (status 1). Serving mail is not part of
//! this build yet: without `-n` it loads and checks the configuration, then
//! says so and exits with status 2.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use smtpd::config::{self, Config, LoadOptions};

/// OpenSMTPD-compatible mail server.
#[derive(Debug, Parser)]
#[command(name = "smtpd", version, about)]
struct Args {
    /// Do not daemonize; log to standard error.
    #[arg(short = 'd')]
    debug: bool,
    /// Check the configuration only.
    #[arg(short = 'n')]
    check_only: bool,
    /// More verbose logging (may be repeated); warns about unused macros.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
    /// Define a macro that the configuration cannot redefine.
    #[arg(short = 'D', value_name = "macro=value", value_parser = config::parse_macro_definition)]
    define: Vec<(String, String)>,
    /// The configuration file.
    #[arg(
        short = 'f',
        value_name = "file",
        default_value = "/etc/mail/smtpd.conf"
    )]
    file: PathBuf,
    /// Where `table-NAME` backend programs live.
    #[arg(long, value_name = "dir", default_value = config::DEFAULT_BACKENDS_DIR)]
    backends_dir: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args);
    let opts = LoadOptions {
        macros: args.define.clone(),
        backends_dir: args.backends_dir.clone(),
        verbose: args.verbose > 0,
    };
    let loaded = match Config::load(&args.file, &opts) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    for warning in &loaded.warnings {
        eprintln!("{warning}");
    }
    tracing::debug!(
        listeners = loaded.config.listeners.len(),
        rules = loaded.config.rules.len(),
        "configuration loaded"
    );
    if args.check_only {
        eprintln!("configuration OK");
        return ExitCode::SUCCESS;
    }
    eprintln!("smtpd: serving mail is not implemented in this build");
    ExitCode::from(2)
}

/// Logs to standard error: warnings by default, more with `-v` or `-d`,
/// or what `RUST_LOG` asks for.
fn init_logging(args: &Args) {
    let level = match (args.debug, args.verbose) {
        (_, 2..) => "trace",
        (true, _) | (_, 1) => "debug",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
