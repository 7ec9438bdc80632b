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

use std::process::ExitCode;

use smtpd_sdk::backend::cli;

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

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let path = match cli::start("table-postgres", USAGE) {
        Ok(path) => path,
        Err(code) => return code,
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
