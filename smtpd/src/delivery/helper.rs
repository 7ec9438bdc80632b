//! The delivery helpers run as the mailbox's owner when the daemon is
//! root: the daemon's own executable called as
//!
//! ```text
//! smtpd mail.maildir [-j] [-x EXTENSION] DIR
//! smtpd mail.local -f SENDER MAILBOX
//! smtpd mail.mboxfile -f SENDER FILE
//! ```
//!
//! with the message on stdin, like OpenSMTPD's `mail.maildir`,
//! `mail.local` and `mail.mboxfile` (delivery.md section 5.3), and the
//! same exit statuses: 0 delivered, 75 (`EX_TEMPFAIL`) to try again, 1 or
//! 64 for a permanent failure. The daemon runs them through
//! [`super::mda::run`], which switches to the account, so the files are
//! created by the user who reads them. They refuse to run as root.
//!
//! [`command_line`] writes the command the daemon runs; [`main`] is the
//! helper side, called by the `smtpd` binary when its first argument is
//! one of the names above.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::{chown, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::local::{self, LocalResult, Write};
use super::mda::Account;

/// `EX_USAGE`: bad arguments.
const EX_USAGE: u8 = 64;
/// `EX_TEMPFAIL`: try again later.
const EX_TEMPFAIL: u8 = 75;

/// The helper names the `smtpd` binary answers to as its first argument.
pub const NAMES: [&str; 3] = ["mail.maildir", "mail.local", "mail.mboxfile"];

/// The shell command that performs `write` as the account.
pub fn command_line(executable: &Path, write: &Write, sender: &str) -> String {
    let exe = quote(&executable.to_string_lossy());
    let sender = quote(&local::mbox_sender(sender));
    match write {
        Write::Maildir {
            dir,
            junk,
            extension,
        } => {
            let mut line = format!("{exe} mail.maildir");
            if *junk {
                line.push_str(" -j");
            }
            if let Some(extension) = extension {
                line.push_str(&format!(" -x {}", quote(extension)));
            }
            line.push_str(&format!(" {}", quote(&dir.to_string_lossy())));
            line
        }
        Write::Mbox(path) => format!(
            "{exe} mail.local -f {sender} {}",
            quote(&path.to_string_lossy())
        ),
        Write::MboxFile(path) => format!(
            "{exe} mail.mboxfile -f {sender} {}",
            quote(&path.to_string_lossy())
        ),
    }
}

/// `text` in single quotes for `/bin/sh`.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Creates the system mailbox `path` for `account` if it is missing
/// (mode 0600, owned by the account), as OpenSMTPD does before mail.local.
pub fn prepare_mailbox(path: &Path, account: Account) -> io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(_) => chown(path, Some(account.uid), Some(account.gid)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The helper's arguments.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    write: Write,
    sender: String,
}

fn parse(name: &str, args: &[String]) -> Result<Request, String> {
    let mut junk = false;
    let mut extension = None;
    let mut sender = None;
    let mut rest = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-j" if name == "mail.maildir" => junk = true,
            "-x" if name == "mail.maildir" => {
                extension = Some(args.next().ok_or("-x needs a value")?.clone());
            }
            "-f" if name != "mail.maildir" => {
                sender = Some(args.next().ok_or("-f needs a value")?.clone());
            }
            _ => rest.push(arg.clone()),
        }
    }
    let [target] = rest.as_slice() else {
        return Err(format!("usage: {name} [options] PATH"));
    };
    let path = PathBuf::from(target);
    let write = match name {
        "mail.maildir" => Write::Maildir {
            dir: path,
            junk,
            extension,
        },
        "mail.local" => Write::Mbox(path),
        "mail.mboxfile" => Write::MboxFile(path),
        _ => return Err(format!("unknown helper {name}")),
    };
    Ok(Request {
        write,
        sender: sender.unwrap_or_else(|| "MAILER-DAEMON".to_owned()),
    })
}

/// Runs the helper named by `args[1]`, or returns `None` when `args[1]` is
/// not a helper name.
pub fn main(args: &[OsString]) -> Option<ExitCode> {
    let name = args.get(1)?.to_str()?;
    if !NAMES.contains(&name) {
        return None;
    }
    let rest: Vec<String> = args[2..]
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let request = match parse(name, &rest) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("{name}: {e}");
            return Some(ExitCode::from(EX_USAGE));
        }
    };
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        eprintln!("{name}: refusing to run as root");
        return Some(ExitCode::from(EX_USAGE));
    }
    let stdin = io::stdin().lock();
    Some(
        match local::perform(&request.write, stdin, &request.sender, None) {
            LocalResult::Delivered => ExitCode::SUCCESS,
            LocalResult::Temporary(e) => {
                println!("{e}");
                ExitCode::from(EX_TEMPFAIL)
            }
            LocalResult::Permanent(e) => {
                println!("{e}");
                ExitCode::from(1)
            }
            LocalResult::Loop => ExitCode::from(1),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_quote_every_argument() {
        let exe = Path::new("/usr/sbin/smtpd");
        let write = Write::Maildir {
            dir: PathBuf::from("/home/o'neil/Maildir"),
            junk: true,
            extension: Some("lists".to_owned()),
        };
        assert_eq!(
            command_line(exe, &write, "a@b.org"),
            r"'/usr/sbin/smtpd' mail.maildir -j -x 'lists' '/home/o'\''neil/Maildir'"
        );
        let mbox = Write::Mbox(PathBuf::from("/var/mail/bob"));
        assert_eq!(
            command_line(exe, &mbox, ""),
            "'/usr/sbin/smtpd' mail.local -f 'MAILER-DAEMON' '/var/mail/bob'"
        );
    }

    #[test]
    fn arguments_parse_back() {
        let args: Vec<String> = ["-j", "-x", "lists", "/m"].map(String::from).to_vec();
        assert_eq!(
            parse("mail.maildir", &args),
            Ok(Request {
                write: Write::Maildir {
                    dir: PathBuf::from("/m"),
                    junk: true,
                    extension: Some("lists".to_owned())
                },
                sender: "MAILER-DAEMON".to_owned()
            })
        );
        let args: Vec<String> = ["-f", "a@b", "/f"].map(String::from).to_vec();
        assert_eq!(
            parse("mail.mboxfile", &args).map(|r| r.sender),
            Ok("a@b".to_owned())
        );
        assert!(parse("mail.local", &[]).is_err());
    }
}
