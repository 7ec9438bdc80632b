//! The offline queue: where `sendmail` leaves a submission when the daemon
//! is not running, for the daemon to send at its next start.
//!
//! As OpenSMTPD's: one file per submission in the spool's `offline/`
//! directory, named `UNIXTIME.RANDOM`, mode 0600, owned by the submitting
//! user. Its first line is sendmail's arguments joined by `|` (so an
//! argument holding `|` or a newline cannot be saved), the rest is the
//! message exactly as it came on standard input. The daemon reads each
//! file as untrusted input (`crate::intake`'s offline drain), replays the
//! arguments with `-S` as a local session of the file's owner, and removes
//! the file once the message is queued.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The directory's name in the spool.
pub const OFFLINE_DIR: &str = "offline";

/// The longest first line (the arguments) a file may have.
pub const MAX_ARGUMENTS: usize = 64 * 1024;

/// How many names are tried before giving up.
const NAME_ATTEMPTS: usize = 100;

/// Why a submission could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// An argument holds `|` or a newline.
    #[error("{0} contains illegal character")]
    IllegalArgument(String),
    /// No file could be created or written.
    #[error("cannot save the message in the offline queue {}: {source}", dir.display())]
    Io {
        /// The offline directory.
        dir: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

/// Why an offline file cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No newline ends the arguments within [`MAX_ARGUMENTS`] bytes.
    #[error("no argument line")]
    NoArguments,
    /// The arguments are not UTF-8.
    #[error("the argument line is not UTF-8")]
    NotText,
}

/// The file content for `args` (without the program name) and `input`.
pub fn encode(args: &[String], input: &[u8]) -> Result<Vec<u8>, SaveError> {
    if let Some(bad) = args.iter().find(|a| a.contains(['|', '\n', '\r'])) {
        return Err(SaveError::IllegalArgument(bad.clone()));
    }
    let mut content = args.join("|").into_bytes();
    if content.len() >= MAX_ARGUMENTS {
        return Err(SaveError::IllegalArgument("the argument list".to_owned()));
    }
    content.push(b'\n');
    content.extend_from_slice(input);
    Ok(content)
}

/// The arguments and the message of a file's content.
pub fn decode(content: &[u8]) -> Result<(Vec<String>, &[u8]), DecodeError> {
    let newline = content
        .iter()
        .take(MAX_ARGUMENTS)
        .position(|&b| b == b'\n')
        .ok_or(DecodeError::NoArguments)?;
    let line = std::str::from_utf8(&content[..newline]).map_err(|_| DecodeError::NotText)?;
    let args = match line {
        "" => Vec::new(),
        _ => line.split('|').map(str::to_owned).collect(),
    };
    Ok((args, &content[newline + 1..]))
}

/// Saves a submission in `dir`; returns the file's path.
pub fn save(dir: &Path, args: &[String], input: &[u8]) -> Result<PathBuf, SaveError> {
    let content = encode(args, input)?;
    let io_error = |source| SaveError::Io {
        dir: dir.to_owned(),
        source,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
    for _ in 0..NAME_ATTEMPTS {
        let path = dir.join(format!("{now}.{}", random_suffix()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path);
        let mut file = match file {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                last = e;
                continue;
            }
            Err(e) => return Err(io_error(e)),
        };
        let written = file.write_all(&content).and_then(|()| file.sync_all());
        return match written {
            Ok(()) => Ok(path),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(io_error(e))
            }
        };
    }
    Err(io_error(last))
}

/// Ten letters and digits, as mkstemp's `XXXXXXXXXX`.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 10];
    // SAFETY: the buffer is valid for writes of its length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if usize::try_from(n).ok() != Some(bytes.len()) {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            ^ std::process::id();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed.rotate_left(u32::try_from(i * 3).unwrap_or(0)) & 0xff) as u8;
        }
    }
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn round_trip() {
        let args = strings(&["-t", "-f", "me@x", "bob"]);
        let content = encode(&args, b"Subject: s\n\nbody|with|pipes\n").unwrap();
        assert!(content.starts_with(b"-t|-f|me@x|bob\nSubject: s\n"));
        let (decoded, message) = decode(&content).unwrap();
        assert_eq!(decoded, args);
        assert_eq!(message, b"Subject: s\n\nbody|with|pipes\n");
        let empty = encode(&[], b"x").unwrap();
        let (none, message) = decode(&empty).unwrap();
        assert!(none.is_empty());
        assert_eq!(message, b"x");
    }

    #[test]
    fn what_cannot_be_saved_or_read() {
        for bad in ["a|b", "a\nb", "a\rb"] {
            let err = encode(&strings(&["-t", bad]), b"").unwrap_err();
            assert_eq!(err.to_string(), format!("{bad} contains illegal character"));
        }
        assert_eq!(decode(b"no newline"), Err(DecodeError::NoArguments));
        assert_eq!(decode(b"\xff\xfe\nbody"), Err(DecodeError::NotText));
        let long = vec![b'a'; MAX_ARGUMENTS + 1];
        assert_eq!(decode(&long), Err(DecodeError::NoArguments));
    }

    #[test]
    fn saved_files_are_private_and_distinct() {
        let dir = std::env::temp_dir().join(format!("smtpd-offline-save-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let args = strings(&["bob"]);
        let first = save(&dir, &args, b"one\n").unwrap();
        let second = save(&dir, &args, b"two\n").unwrap();
        assert_ne!(first, second);
        let mode = std::fs::metadata(&first).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&second).unwrap(), b"bob\ntwo\n");
        let missing = dir.join("missing");
        let err = save(&missing, &args, b"x").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot save the message in the offline queue"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
