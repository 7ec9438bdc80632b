//! `queue-postgres CONFIG`: a queue backend (protocol 0.1) storing messages
//! and envelopes in PostgreSQL, which several daemons can share.
//!
//! ```text
//! queue proc-exec "queue-postgres /etc/mail/queue-postgres.conf"
//! ```
//!
//! `main` parses the arguments (`CONFIG`, `-f CONFIG`, `--help`), loads the
//! configuration (`config.rs`; errors as `FILE:LINE: message`, exit 1,
//! before registering), connects, creates the schema when missing
//! (`sql.rs`) and removes messages left uncommitted for long, then hands a
//! [`store::PgQueue`] to the SDK's run loop. It registers `lease` unless
//! the configuration says `lease no`. Connections live in `pool.rs`. Logs
//! go to stderr.

mod config;
mod pool;
mod sql;
mod store;

use std::process::ExitCode;

use smtpd_sdk::backend::cli;

const USAGE: &str = "\
usage: queue-postgres [-f] CONFIG

Serves an smtpd queue (protocol 0.1) from PostgreSQL; several daemons may
share one database (capability lease). CONFIG holds one `KEY VALUE` per line:
  conninfo            libpq connection string or URL (required)
  schema              schema of the queue's tables, created when missing
                      (smtpd_queue)
  connections         connections kept open (4)
  lease               yes: register the lease capability (default); no
  uncommitted_expire  seconds after which uncommitted messages are removed
                      at start (86400)
";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let path = match cli::start("queue-postgres", USAGE) {
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
    let pool = pool::Pool::new(config.conninfo, &config.schema, config.connections);
    let queue = store::PgQueue::new(pool, &config.schema, config.lease);
    if let Err(e) = queue.prepare(config.uncommitted_expire).await {
        return cli::refuse("queue-postgres", e);
    }
    smtpd_sdk::queue::run(queue).await
}
