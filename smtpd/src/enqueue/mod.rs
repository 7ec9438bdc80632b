//! The sendmail-compatible programs of the `smtpctl` binary: how cron
//! jobs and local programs send mail.
//!
//! As OpenSMTPD's smtpctl, the binary acts by the name it is run as
//! ([`Program::of`]): `sendmail` and `send-mail` enqueue the message on
//! standard input (`sendmail.rs`), `mailq` is `smtpctl show queue`,
//! `newaliases` checks the aliases file and has the daemon read it again
//! (`newaliases.rs`), `makemap` explains that database files are not used.
//!
//! - `args.rs`: sendmail's command line, getopt-compatible;
//! - `message.rs`, `address.rs`: the message read from standard input,
//!   its headers and addresses, and the DATA sent for it;
//! - `account.rs`: the submitting user (also the daemon's name for a
//!   local session's peer);
//! - `submission.rs`: options, message and account to envelope and data;
//! - `dialogue.rs`: the SMTP exchange over the session the daemon opens
//!   on its control socket ([`crate::control::enqueue`]);
//! - `offline.rs`: the offline queue, written here when the daemon is
//!   down, and replayed by the daemon at start ([`crate::intake`]);
//! - `paths.rs`: where the daemon's socket and offline queue are.
//!
//! Everything runs in the calling user's process with blocking I/O; the
//! daemon trusts none of it (the session is an ordinary SMTP session of
//! the socket listener, checked by the rules).

pub mod account;
pub mod address;
pub mod args;
pub mod dialogue;
pub mod message;
pub mod newaliases;
pub mod offline;
mod paths;
mod sendmail;
pub mod submission;

use std::path::Path;

pub use newaliases::newaliases;
pub use paths::{Paths, DATA_DIR_VAR, SOCKET_VAR};
pub use sendmail::{sendmail, Environment, Stdio};

/// sysexits(3): bad input data (an address with a control character).
pub const EX_DATAERR: i32 = 65;
/// sysexits(3): addressee unknown (a recipient refused for good).
pub const EX_NOUSER: i32 = 67;
/// sysexits(3): a service is unavailable (standard input unreadable).
pub const EX_UNAVAILABLE: i32 = 69;
/// sysexits(3): internal error (OpenSMTPD's status for most failures).
pub const EX_SOFTWARE: i32 = 70;
/// sysexits(3): temporary failure, try again later.
pub const EX_TEMPFAIL: i32 = 75;

/// What the binary does, by the name it runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// `smtpctl`: the control commands.
    Smtpctl,
    /// `sendmail`, `send-mail`: enqueue a message.
    Sendmail,
    /// `mailq`: `smtpctl show queue`.
    Mailq,
    /// `newaliases`: check the aliases, tell the daemon.
    Newaliases,
    /// `makemap`: database files are not used.
    Makemap,
}

impl Program {
    /// The program `argv0` names (its file name counts; anything unknown
    /// is smtpctl).
    pub fn of(argv0: &str) -> Self {
        let name = Path::new(argv0)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(argv0);
        match name {
            "sendmail" | "send-mail" => Self::Sendmail,
            "mailq" => Self::Mailq,
            "newaliases" => Self::Newaliases,
            "makemap" => Self::Makemap,
            _ => Self::Smtpctl,
        }
    }
}

impl Environment {
    /// The environment of this process: the daemon's paths from the
    /// environment variables, the real user's account, the server name
    /// (`/etc/mail/mailname`, else the host name) and the current date.
    pub fn detect(program: &str) -> Self {
        let host = crate::table::static_table::LocalHost::detect()
            .map(|h| h.server_name)
            .unwrap_or_else(|_| "localhost".to_owned());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self {
            program: program.to_owned(),
            paths: Paths::from_env(),
            account: account::Account::current(),
            host,
            date: crate::intake::date::rfc5322(now),
        }
    }
}

/// Runs the program `argv0` names, when it is `sendmail`, `send-mail`,
/// `newaliases` or `makemap`, with `args` on this process's standard
/// input, output and error, and returns its exit status; `None` for
/// smtpctl and mailq, which the binary runs itself.
pub fn run(argv0: &str, args: &[String]) -> Option<i32> {
    let (mut input, mut output, mut error) =
        (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let name = Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(argv0);
    Some(match Program::of(argv0) {
        Program::Sendmail => {
            let stdio = Stdio {
                input: &mut input,
                output: &mut output,
                error: &mut error,
            };
            sendmail(&Environment::detect(name), args, stdio)
        }
        Program::Newaliases => newaliases(name, args, &Paths::from_env(), &mut output, &mut error),
        Program::Makemap => {
            use std::io::Write;
            let _ = writeln!(
                error,
                "makemap: db tables are not supported; use file: tables, which smtpd reads as \
                 they are (smtpctl update table NAME reloads one)"
            );
            1
        }
        Program::Smtpctl | Program::Mailq => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_by_name() {
        let cases = [
            ("smtpctl", Program::Smtpctl),
            ("/usr/sbin/smtpctl", Program::Smtpctl),
            ("sendmail", Program::Sendmail),
            ("/usr/sbin/sendmail", Program::Sendmail),
            ("send-mail", Program::Sendmail),
            ("/usr/bin/mailq", Program::Mailq),
            ("newaliases", Program::Newaliases),
            ("makemap", Program::Makemap),
            ("something-else", Program::Smtpctl),
            ("", Program::Smtpctl),
        ];
        for (argv0, program) in cases {
            assert_eq!(Program::of(argv0), program, "{argv0}");
        }
    }
}
