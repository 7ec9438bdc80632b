//! `filter-prometheus ADDRESS`: a report-stream filter that counts what
//! smtpd's sessions do and serves the counts as Prometheus metrics over
//! HTTP at `http://ADDRESS/metrics`.
//!
//! ```text
//! filter metrics proc-exec "filter-prometheus 127.0.0.1:9187"
//! listen on eth0 filter metrics
//! action "relay" relay filter metrics
//! ```
//!
//! It registers every report event of each subsystem smtpd announces
//! (smtp-in for listeners, smtp-out for relay actions) and no filter phase,
//! so it never holds a session up. The metric families are listed in
//! [`metrics`]; [`exporter`] maps the events onto them and [`http`] serves
//! the scrape. The address is bound before the handshake: a busy or
//! invalid address stops the filter with one line on stderr.

mod exporter;
mod http;
mod metrics;

use std::process::ExitCode;
use std::sync::Arc;

use smtpd_sdk::backend::cli;
use smtpd_sdk::filter;
use tokio::net::TcpListener;

const NAME: &str = "filter-prometheus";
const USAGE: &str = "usage: filter-prometheus ADDRESS\n\
    Counts smtpd's report events (filter protocol 0.7) and serves them as\n\
    Prometheus metrics at http://ADDRESS/metrics (e.g. 127.0.0.1:9187).";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    cli::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let address = match args.as_slice() {
        [flag] if flag == "--help" || flag == "-h" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        [address] if !address.starts_with('-') => address.clone(),
        _ => {
            eprintln!("{NAME}: expected one listening address\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(&address).await {
        Ok(listener) => listener,
        Err(e) => return cli::refuse(NAME, format!("cannot listen on {address}: {e}")),
    };
    match listener.local_addr() {
        Ok(bound) => tracing::info!("serving metrics on http://{bound}/metrics"),
        Err(e) => return cli::refuse(NAME, format!("cannot listen on {address}: {e}")),
    }
    let metrics = Arc::new(metrics::Metrics::default());
    tokio::spawn(http::serve(listener, Arc::clone(&metrics)));
    filter::run(exporter::Exporter::new(metrics)).await
}
