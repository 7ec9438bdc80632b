//! Where the queue encryption key comes from, resolved once before the
//! daemon detaches (standard input and the terminal are still there).
//!
//! `queue encryption` turns encryption on; the key is, in this order:
//! the file named by `--queue-key-file` (one line; it must not be
//! accessible to other users), the [`KEY_ENV`] environment variable, then
//! the configuration's own form as 7.8 has them: the key inline
//! (`queue encryption KEY`), one line of standard input (`queue
//! encryption stdin` or `"-"`), or a prompt on the terminal (`queue
//! encryption` alone, `queue key: `). The key file and the variable keep
//! the key out of smtpd.conf. Every key is exactly 32 bytes, used raw.

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::encrypt::{Key, KeyLengthError};
use crate::config::QueueKey;

/// The environment variable that may hold the queue encryption key.
pub const KEY_ENV: &str = "SMTPD_QUEUE_KEY";

/// The terminal prompt of `queue encryption` without a key, as 7.8's.
const PROMPT: &str = "queue key: ";

/// Why no key could be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `--queue-key-file` without `queue encryption`.
    #[error("--queue-key-file {}: smtpd.conf has no `queue encryption`", .0.display())]
    Unused(PathBuf),
    /// The key file cannot be read.
    #[error("queue key file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key file may be read or written by other users.
    #[error("queue key file {}: mode {mode:04o} lets other users at it (chmod 600)", path.display())]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Standard input or the terminal cannot be read.
    #[error("queue encryption key from {from}: {source}")]
    Read {
        /// "standard input" or "the terminal".
        from: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key of the wrong length.
    #[error("queue encryption key from {from}: {source}")]
    Length {
        /// Where it came from.
        from: String,
        /// Its length.
        #[source]
        source: KeyLengthError,
    },
}

/// The key to use: `None` when `encryption` (smtpd.conf's `queue
/// encryption`) is off. `key_file` is `--queue-key-file`, `env` the value
/// of [`KEY_ENV`].
pub fn resolve(
    encryption: Option<&QueueKey>,
    key_file: Option<&Path>,
    env: Option<OsString>,
) -> Result<Option<Key>, KeyError> {
    let Some(configured) = encryption else {
        return match key_file {
            Some(path) => Err(KeyError::Unused(path.to_owned())),
            None => Ok(None),
        };
    };
    let (bytes, from) = if let Some(path) = key_file {
        (read_file(path)?, format!("{}", path.display()))
    } else if let Some(value) = env.filter(|v| !v.is_empty()) {
        (value.into_vec(), KEY_ENV.to_owned())
    } else {
        match configured {
            QueueKey::Inline(secret) => (secret.0.as_bytes().to_vec(), "smtpd.conf".to_owned()),
            QueueKey::Stdin => (read_stdin()?, "standard input".to_owned()),
            QueueKey::Prompt => (prompt()?, "the terminal".to_owned()),
        }
    };
    Key::from_bytes(&bytes)
        .map(Some)
        .map_err(|source| KeyError::Length { from, source })
}

/// The first line of a key file, which only its owner (and group) may
/// use.
fn read_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let file_error = |source| KeyError::File {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(file_error)?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o007 != 0 {
        return Err(KeyError::Exposed {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read(path).map_err(file_error)?;
    Ok(first_line(text))
}

/// The bytes before the first line end.
fn first_line(mut text: Vec<u8>) -> Vec<u8> {
    if let Some(end) = text.iter().position(|&b| b == b'\n') {
        text.truncate(end);
    }
    if text.last() == Some(&b'\r') {
        text.pop();
    }
    text
}

fn read_stdin() -> Result<Vec<u8>, KeyError> {
    let mut line = Vec::new();
    std::io::stdin()
        .lock()
        .read_until(b'\n', &mut line)
        .map_err(|source| KeyError::Read {
            from: "standard input",
            source,
        })?;
    Ok(first_line(line))
}

/// Asks on the controlling terminal with echo off.
fn prompt() -> Result<Vec<u8>, KeyError> {
    let error = |source| KeyError::Read {
        from: "the terminal",
        source,
    };
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| {
            error(std::io::Error::new(
                e.kind(),
                format!(
                    "no terminal to ask on ({e}); give the key with --queue-key-file or {KEY_ENV}"
                ),
            ))
        })?;
    tty.write_all(PROMPT.as_bytes()).map_err(error)?;
    let echo = Echo::off(&tty);
    let mut line = Vec::new();
    let read = std::io::BufReader::new(&tty).read_until(b'\n', &mut line);
    drop(echo);
    let _ = tty.write_all(b"\n");
    read.map_err(error)?;
    Ok(first_line(line))
}

/// Terminal echo turned off until dropped.
struct Echo {
    fd: std::os::fd::RawFd,
    saved: Option<libc::termios>,
}

impl Echo {
    fn off(tty: &std::fs::File) -> Self {
        use std::os::fd::AsRawFd;
        let fd = tty.as_raw_fd();
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut term: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is an open terminal for the lifetime of `tty`.
        let saved = (unsafe { libc::tcgetattr(fd, &mut term) } == 0).then_some(term);
        if let Some(mut quiet) = saved {
            quiet.c_lflag &= !libc::ECHO;
            // SAFETY: as above; the settings come from tcgetattr.
            unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) };
        }
        Self { fd, saved }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // SAFETY: restores the settings read in `off` on the same fd.
            unsafe { libc::tcsetattr(self.fd, libc::TCSAFLUSH, saved) };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::Secret;

    const K1: &str = "0123456789abcdef0123456789abcdef";
    const K2: &str = "fedcba9876543210fedcba9876543210";

    fn key(s: &str) -> Key {
        Key::from_bytes(s.as_bytes()).unwrap()
    }

    fn temp_file(name: &str, content: &str, mode: u32) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("smtpd-key-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn off_unless_configured() {
        assert_eq!(resolve(None, None, Some(K1.into())).unwrap(), None);
        let path = temp_file("unused", K1, 0o600);
        let e = resolve(None, Some(&path), None).unwrap_err();
        assert!(e.to_string().contains("no `queue encryption`"), "{e}");
    }

    #[test]
    fn file_then_environment_then_configuration() {
        let inline = QueueKey::Inline(Secret(K1.to_owned()));
        assert_eq!(resolve(Some(&inline), None, None).unwrap(), Some(key(K1)));
        assert_eq!(
            resolve(Some(&inline), None, Some("".into())).unwrap(),
            Some(key(K1))
        );
        assert_eq!(
            resolve(Some(&inline), None, Some(K2.into())).unwrap(),
            Some(key(K2))
        );
        let path = temp_file("order", &format!("{K1}\n"), 0o600);
        let prompt = QueueKey::Prompt;
        assert_eq!(
            resolve(Some(&prompt), Some(&path), Some(K2.into())).unwrap(),
            Some(key(K1))
        );
        let crlf = temp_file("crlf", &format!("{K2}\r\nignored\n"), 0o640);
        assert_eq!(
            resolve(Some(&prompt), Some(&crlf), None).unwrap(),
            Some(key(K2))
        );
    }

    #[test]
    fn bad_keys_and_files_are_named() {
        let inline = QueueKey::Inline(Secret(K1.to_owned()));
        let e = resolve(Some(&inline), None, Some("short".into())).unwrap_err();
        assert!(
            e.to_string().contains(KEY_ENV) && e.to_string().contains("not 5"),
            "{e}"
        );
        let exposed = temp_file("exposed", K1, 0o644);
        let e = resolve(Some(&inline), Some(&exposed), None).unwrap_err();
        assert!(e.to_string().contains("0644"), "{e}");
        let missing = Path::new("/nonexistent/queue.key");
        let e = resolve(Some(&inline), Some(missing), None).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/queue.key"), "{e}");
        let long = temp_file("long", &format!("{K1}x\n"), 0o600);
        let e = resolve(Some(&inline), Some(&long), None).unwrap_err();
        assert!(e.to_string().contains("not 33"), "{e}");
    }
}
