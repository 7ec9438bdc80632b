//! `table-ldap`: a table backend (protocol 0.1) answering from an LDAP
//! directory, configured with the keys of OpenSMTPD's table-ldap.
//!
//! ```text
//! table users proc-exec "table-ldap /etc/mail/ldap.conf"
//! ```
//!
//! The configuration file is the one argument (or `-f FILE`); its errors
//! are reported as `FILE:LINE: message` before the backend registers.
//! Logs go to stderr (`RUST_LOG=debug` shows every search).

mod config;
mod directory;
mod filter;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: table-ldap [-f] FILE

Serves the table protocol 0.1 on stdin/stdout from an LDAP directory.
FILE holds OpenSMTPD table-ldap keys: url, username, password, basedn,
ca_file, SERVICE_filter, SERVICE_attributes; and starttls yes|no,
timeout SECONDS.";

/// The configuration path from the arguments, or the exit to take.
fn config_path(args: &[String]) -> Result<PathBuf, ExitCode> {
    match args {
        [flag] if flag == "--help" || flag == "-h" => {
            println!("{USAGE}");
            Err(ExitCode::SUCCESS)
        }
        [flag, path] if flag == "-f" => Ok(PathBuf::from(path)),
        [path] if !path.starts_with('-') => Ok(PathBuf::from(path)),
        _ => {
            eprintln!("{USAGE}");
            Err(ExitCode::FAILURE)
        }
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
    let path = match config_path(&args) {
        Ok(path) => path,
        Err(code) => return code,
    };
    match config::Config::load(&path) {
        Ok(config) => smtpd_sdk::table::run(table::LdapTable::new(path, config)).await,
        Err(e) => {
            eprintln!("table-ldap: {e}");
            ExitCode::FAILURE
        }
    }
}
