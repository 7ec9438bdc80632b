//! `filter-passthrough`: a filter that registers `data-line` only and sends
//! every message line back unchanged (the SDK adds `commit` and
//! `link-disconnect`, and forwards the final `.`).
//!
//! ```text
//! filter pass proc-exec "filter-passthrough"
//! listen on eth0 filter pass
//! ```
//!
//! It does nothing useful on purpose: it is the smallest filter that sees
//! every message, so `bench/filters.sh` measures with it what a data-line
//! filter in Rust costs the daemon's intake. Copy it to start a filter.

use std::process::ExitCode;

use smtpd_sdk::backend::cli;
use smtpd_sdk::filter::{self, Filter, Phase, Registrations};

/// The filter: the SDK's default data-line handler forwards each line.
struct Passthrough;

impl Filter for Passthrough {
    fn register(&self) -> Registrations {
        Registrations::new().phase(Phase::DataLine)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    cli::init_logging();
    if std::env::args().len() > 1 {
        eprintln!("usage: filter-passthrough (no arguments)");
        return ExitCode::FAILURE;
    }
    filter::run(Passthrough).await
}
