//! `smtpd-conformance`: runs a backend program through the protocol vectors.
//!
//! ```text
//! smtpd-conformance table|filter|queue [--fixture NAME] [--vectors DIR]
//!     [--timeout SECS] [--stress N] -- CMD ARGS...
//! ```
//!
//! The backend is started directly (no shell), handshaken, fed every case
//! of its family's vectors, stressed with pipelined requests, and started a
//! second time with an unknown protocol version. One report line per check,
//! then `N passed, N failed, N skipped`; the exit status is 1 when a check
//! failed and 2 when the runner itself could not run (bad arguments or
//! vector files). The work is in `runner/`.

mod runner;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use smtpd_conformance::vectors::{self, Family};

/// Checks a table, filter or queue backend against the smtpd protocol spec.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The protocol family the backend speaks.
    family: FamilyArg,
    /// The fixture the backend was started with (e.g. standard.table); cases
    /// that need it are skipped without it.
    #[arg(long, value_name = "NAME")]
    fixture: Option<String>,
    /// The vectors directory [default: this source tree's protocol-spec/vectors].
    #[arg(long, value_name = "DIR")]
    vectors: Option<PathBuf>,
    /// Seconds to wait for each exchange, for the handshake and for the
    /// backend to exit.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    timeout: Duration,
    /// Requests of the stress pass; 0 skips it.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    stress: usize,
    /// The backend program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FamilyArg {
    Table,
    Filter,
    Queue,
}

impl From<FamilyArg> for Family {
    fn from(arg: FamilyArg) -> Self {
        match arg {
            FamilyArg::Table => Self::Table,
            FamilyArg::Filter => Self::Filter,
            FamilyArg::Queue => Self::Queue,
        }
    }
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 3600.0 => Ok(Duration::from_secs_f64(secs)),
        _ => Err("expected a number of seconds between 0 and 3600".into()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let settings = runner::Settings {
        family: args.family.into(),
        fixture: args.fixture,
        vectors: args.vectors.unwrap_or_else(vectors::default_dir),
        timeout: args.timeout,
        stress: args.stress,
        command: args.command,
    };
    match runner::run(&settings).await {
        Ok(report) if report.failed() == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("smtpd-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}
