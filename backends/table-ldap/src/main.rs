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

use std::process::ExitCode;

use smtpd_sdk::backend::cli;

const USAGE: &str = "usage: table-ldap [-f] FILE

Serves the table protocol 0.1 on stdin/stdout from an LDAP directory.
FILE holds OpenSMTPD table-ldap keys: url, username, password, basedn,
ca_file, SERVICE_filter, SERVICE_attributes; and starttls yes|no,
timeout SECONDS.";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let path = match cli::start("table-ldap", USAGE) {
        Ok(path) => path,
        Err(code) => return code,
    };
    match config::Config::load(&path) {
        Ok(config) => smtpd_sdk::table::run(table::LdapTable::new(path, config)).await,
        Err(e) => cli::refuse("table-ldap", e),
    }
}
