//! mbox delivery, as OpenSMTPD's `mail.local` and `mail.mboxfile` do it
//! (delivery.md sections 5.2 and 5.3): the message is appended to a
//! mailbox file after a `From SENDER DATE` line, with body lines starting
//! with `From ` written `>From `, and a blank line after it.
//!
//! [`deliver`] runs in the delivery process as the target user. It takes
//! the dotlock `PATH.lock` (as mail.local does, waiting for a holder and
//! breaking a lock older than five minutes; skipped when the user may not
//! create files in the spool directory) and an exclusive `fcntl` lock on
//! the whole file (an open-file-description lock on Linux, which conflicts
//! with the classic record locks other mail programs take and also
//! separates threads of one process). It refuses a mailbox that is a
//! symbolic link, not a regular file, or hard-linked elsewhere. Should any
//! write or the final fsync fail, the file is truncated back to where the
//! message began, so a mailbox never holds half a message.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A dotlock older than this is left over by a crashed program.
const STALE_LOCK: Duration = Duration::from_secs(300);
/// How often a held dotlock is tried again.
const LOCK_RETRY: Duration = Duration::from_millis(100);

/// How a message is appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MboxOptions {
    /// Take the `PATH.lock` dotlock too (mail.local does).
    pub dotlock: bool,
    /// How long to wait for a dotlock someone else holds.
    pub lock_timeout: Duration,
}

impl Default for MboxOptions {
    fn default() -> Self {
        Self {
            dotlock: true,
            lock_timeout: Duration::from_secs(60),
        }
    }
}

/// Why an mbox delivery failed. Every failure is temporary (exit 75).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MboxError {
    /// A file system operation failed.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The mailbox is not a plain file of its own.
    #[error("{path}: {reason}")]
    Unsafe {
        /// The mailbox.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Another program kept the dotlock for too long.
    #[error("{0}: mailbox locked by another program")]
    Locked(PathBuf),
}

impl MboxError {
    /// mail.local's exit status: always `EX_TEMPFAIL`.
    pub fn exit_code(&self) -> i32 {
        75
    }
}

fn io_error(context: &'static str, path: &Path) -> impl FnOnce(io::Error) -> MboxError {
    let path = path.to_owned();
    move |source| MboxError::Io {
        context,
        path,
        source,
    }
}

/// Appends `message` to the mailbox `path` (created with mode 0600 if
/// missing), `sender` being the `From ` line's address (`MAILER-DAEMON`
/// for the null sender).
pub fn deliver(
    message: impl Read,
    path: &Path,
    sender: &str,
    options: &MboxOptions,
) -> Result<(), MboxError> {
    let _dotlock = if options.dotlock {
        DotLock::acquire(path, options.lock_timeout)?
    } else {
        None
    };
    let mut file = open_mailbox(path)?;
    lock_file(&file).map_err(io_error("locking", path))?;
    let start = file
        .seek(SeekFrom::End(0))
        .map_err(io_error("seeking", path))?;
    let written =
        write_message(message, &file, sender, SystemTime::now()).and_then(|()| file.sync_all());
    if let Err(source) = written {
        // Best effort: the error reported is the write's.
        let _ = file.set_len(start).and_then(|()| file.sync_all());
        return Err(MboxError::Io {
            context: "appending to",
            path: path.to_owned(),
            source,
        });
    }
    Ok(())
}

/// Opens (or creates) the mailbox for appending, refusing links.
fn open_mailbox(path: &Path) -> Result<File, MboxError> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => MboxError::Unsafe {
                path: path.to_owned(),
                reason: "is a symbolic link",
            },
            _ => io_error("opening", path)(e),
        })?;
    let meta = file.metadata().map_err(io_error("checking", path))?;
    let unsafe_file = |reason| MboxError::Unsafe {
        path: path.to_owned(),
        reason,
    };
    if !meta.is_file() {
        return Err(unsafe_file("not a regular file"));
    }
    if meta.nlink() != 1 {
        return Err(unsafe_file("has several hard links"));
    }
    let now = fs::symlink_metadata(path).map_err(io_error("checking", path))?;
    if now.dev() != meta.dev() || now.ino() != meta.ino() {
        return Err(unsafe_file("was replaced while being opened"));
    }
    Ok(file)
}

/// Takes an exclusive write lock on the whole file, waiting for it.
fn lock_file(file: &File) -> io::Result<()> {
    // SAFETY: flock is plain data; all-zero is a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    #[cfg(target_os = "linux")]
    let command = libc::F_OFD_SETLKW;
    #[cfg(not(target_os = "linux"))]
    let command = libc::F_SETLKW;
    loop {
        // SAFETY: the descriptor is open for the call's duration and
        // `lock` is a valid flock.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), command, &lock) };
        if rc == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// `PATH.lock`, removed when dropped.
struct DotLock(PathBuf);

impl DotLock {
    /// Creates the dotlock, waiting up to `timeout` for a holder and
    /// breaking a stale lock; `None` when the directory does not let this
    /// user create it.
    fn acquire(path: &Path, timeout: Duration) -> Result<Option<Self>, MboxError> {
        let mut lock = path.as_os_str().to_owned();
        lock.push(".lock");
        let lock = PathBuf::from(lock);
        let mut waited = Duration::ZERO;
        loop {
            let created = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&lock);
            match created {
                Ok(_) => return Ok(Some(Self(lock))),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EACCES | libc::EPERM | libc::EROFS)
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(io_error("creating", &lock)(e)),
            }
            if is_stale(&lock) {
                let _ = fs::remove_file(&lock);
                continue;
            }
            if waited >= timeout {
                return Err(MboxError::Locked(path.to_owned()));
            }
            std::thread::sleep(LOCK_RETRY);
            waited += LOCK_RETRY;
        }
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Whether a dotlock was last touched more than `STALE_LOCK` ago.
fn is_stale(lock: &Path) -> bool {
    fs::symlink_metadata(lock)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .is_some_and(|age| age > STALE_LOCK)
}

/// Writes the `From ` line, the escaped message and the closing blank
/// line.
fn write_message(message: impl Read, file: &File, sender: &str, now: SystemTime) -> io::Result<()> {
    let mut reader = BufReader::new(message);
    let mut out = io::BufWriter::new(file);
    writeln!(out, "From {sender} {}", ctime(now))?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.starts_with(b"From ") {
            out.write_all(b">")?;
        }
        out.write_all(&line)?;
        if line.last() != Some(&b'\n') {
            out.write_all(b"\n")?;
        }
    }
    out.write_all(b"\n")?;
    out.flush()
}

/// `ctime(3)` without its newline, in local time:
/// `Wed Jun 30 21:49:08 1993`.
fn ctime(time: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let secs = libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX);
    // SAFETY: tm is plain data; all-zero is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is the
    // reentrant form.
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        return "Thu Jan  1 00:00:00 1970".to_owned();
    }
    let day = usize::try_from(tm.tm_wday).unwrap_or(0) % 7;
    let month = usize::try_from(tm.tm_mon).unwrap_or(0) % 12;
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        DAYS[day],
        MONTHS[month],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        i64::from(tm.tm_year) + 1900
    )
}

#[cfg(test)]
mod tests;
