//! `table-postgres CONFIG`: a table backend (protocol 0.1) answered from
//! PostgreSQL, configured with OpenSMTPD table-postgres's keys.
//!
//! ```text
//! table users proc-exec "table-postgres /etc/mail/postgres.conf"
//! ```
//!
//! `main` parses the arguments (`CONFIG`, `-f CONFIG`, `--help`), loads the
//! configuration (`config.rs`; errors as `FILE:LINE: message`, exit 1,
//! before registering), connects once to check every statement when the
//! server can be reached, then hands a [`table::PgTable`] to the SDK's run
//! loop. Connections live in `pool.rs`, rows become values in `value.rs`.
//! Logs go to stderr (`RUST_LOG=debug` shows every protocol line).

mod config;
mod pool;
mod table;
mod value;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: table-postgres [-f] CONFIG

Serves an smtpd table (protocol 0.1) from PostgreSQL. CONFIG holds one
`KEY VALUE` per line:
  conninfo             libpq connection string or URL (required)
  query_SERVICE        SQL with $1 for the key, for each service served:
                       alias domain credentials netaddr userinfo source
                       mailaddr addrname mailaddrmap relayhost string
                       regex auth
  fetch_source         SQL listing the values `fetch source` cycles through
  fetch_source_expire  seconds before that list is queried again (60)
  fetch_source_refresh fetches before that list is queried again (1000)
  fetch_relayhost      (and its _expire, _refresh) the same for relayhost
  connections          connections kept open (4)
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Args {
    Help,
    Run(PathBuf),
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    match args {
        [flag] if flag == "--help" || flag == "-h" => Ok(Args::Help),
        [flag, path] if flag == "-f" => Ok(Args::Run(PathBuf::from(path))),
        [path] if !path.starts_with('-') => Ok(Args::Run(PathBuf::from(path))),
        [] => Err("a configuration file is required".to_owned()),
        _ => Err(format!("unexpected arguments: {}", args.join(" "))),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match parse_args(&args) {
        Ok(Args::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Args::Run(path)) => path,
        Err(e) => {
            eprintln!("table-postgres: {e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let config = match config::Config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let table = table::PgTable::new(config);
    if let Err(errors) = table.check_statements().await {
        for e in errors {
            eprintln!("{e}");
        }
        return ExitCode::FAILURE;
    }
    smtpd_sdk::table::run(table).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn arguments() {
        assert_eq!(
            args(&["/etc/pg.conf"]),
            Ok(Args::Run("/etc/pg.conf".into()))
        );
        assert_eq!(
            args(&["-f", "/etc/pg.conf"]),
            Ok(Args::Run("/etc/pg.conf".into()))
        );
        assert_eq!(args(&["--help"]), Ok(Args::Help));
        assert!(args(&[]).is_err());
        assert!(args(&["-x"]).is_err());
        assert!(args(&["a", "b"]).is_err());
    }
}
