//! The offline queue's drain: at start, the submissions `sendmail` left in
//! the spool's `offline/` directory while the daemon was down
//! ([`crate::enqueue::offline`]) are sent through the socket listener,
//! each as a local session of its file's owner, oldest first.
//!
//! Each file is untrusted input, as in OpenSMTPD's `offline_enqueue`: it
//! is opened without following links and without blocking, and must be a
//! regular file with one link, owned by a user of the password database,
//! no larger than the message size limit plus the argument line. An empty
//! file is removed. Its arguments are read with `-S` as sendmail reads
//! them (only a submission is accepted), the message prepared as sendmail
//! prepares it (`crate::enqueue::submission`), and the SMTP dialogue runs
//! on one end of a socket pair whose other end is the local session. The
//! file is removed once the message is queued; on any failure it stays
//! (logged), to be tried at the next start.
//!
//! The directory is created mode 1733 when missing: anyone who can reach
//! it may leave a file, nobody may list or remove other users' files.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::date;
use super::local::LocalListener;
use crate::enqueue::account::Account;
use crate::enqueue::args::{self, Mode};
use crate::enqueue::offline::{self, MAX_ARGUMENTS};
use crate::enqueue::{dialogue, submission};

/// The offline directory's mode.
const OFFLINE_MODE: u32 = 0o1733;

/// How long a replayed dialogue waits for each reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

/// One offline file, read and checked.
#[derive(Debug)]
struct Pending {
    owner: Account,
    content: Vec<u8>,
}

/// Sends every file of `dir` through `local`, then returns. Files over
/// the message size limit (plus the argument line) are refused.
pub(super) async fn drain(dir: PathBuf, local: LocalListener) {
    let (host, max_message_size) = (local.host_name(), local.max_message_size());
    let names = match tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || list(&dir)
    })
    .await
    {
        Ok(Ok(names)) => names,
        Ok(Err(e)) => {
            tracing::warn!("offline queue {}: {e}", dir.display());
            return;
        }
        Err(e) => {
            tracing::warn!("offline queue {}: {e}", dir.display());
            return;
        }
    };
    let limit = max_message_size.saturating_add(MAX_ARGUMENTS as u64 + 1);
    for name in names {
        let path = dir.join(&name);
        match replay(&path, &local, &host, limit).await {
            Ok(Some(user)) => {
                tracing::info!("offline message {name} of {user} enqueued");
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!("offline message {name}: cannot remove: {e}");
                }
            }
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!("could not enqueue offline message {name}: {reason}");
            }
        }
    }
}

/// Creates the directory if needed and lists its entries, sorted.
fn list(dir: &Path) -> io::Result<Vec<String>> {
    match DirBuilder::new().mode(OFFLINE_MODE).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(OFFLINE_MODE))?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other("not a directory"));
    }
    if meta.uid() != crate::control::effective_uid() {
        return Err(io::Error::other(format!(
            "owned by uid {}, not by this user",
            meta.uid()
        )));
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(name) = entry?.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Sends one file; `Some(user)` once queued, `None` for an empty file
/// (removed).
async fn replay(
    path: &Path,
    local: &LocalListener,
    host: &str,
    limit: u64,
) -> Result<Option<String>, String> {
    let read = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || read(&path, limit))
    };
    let pending = match read.await.map_err(|e| e.to_string())? {
        Ok(Some(pending)) => pending,
        Ok(None) => {
            std::fs::remove_file(path).map_err(|e| format!("empty, cannot remove: {e}"))?;
            return Ok(None);
        }
        Err(reason) => return Err(reason),
    };
    let (arguments, message) = offline::decode(&pending.content).map_err(|e| e.to_string())?;
    let mut replayed = vec!["-S".to_owned()];
    replayed.extend(arguments);
    let options = match args::parse(&replayed) {
        Ok(Mode::Send(options)) => options,
        Ok(_) => return Err("the arguments ask for no submission".to_owned()),
        Err(e) => return Err(format!("bad arguments: {e}")),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let prepared =
        submission::prepare(&options, message, &pending.owner, host, &date::rfc5322(now))
            .map_err(|e| e.to_string())?;
    let user = pending.owner.name.clone();
    let (client, server) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
    server.set_nonblocking(true).map_err(|e| e.to_string())?;
    let server = tokio::net::UnixStream::from_std(server).map_err(|e| e.to_string())?;
    let session = tokio::spawn({
        let (local, user) = (local.clone(), user.clone());
        async move { local.serve(Box::new(server), user).await }
    });
    let dialogue = tokio::task::spawn_blocking(move || {
        client.set_read_timeout(Some(REPLY_TIMEOUT))?;
        let reader = BufReader::new(client.try_clone()?);
        dialogue::submit(reader, client, &prepared.envelope, &prepared.data, None)
    });
    let result = dialogue.await.map_err(|e| e.to_string())?;
    let _ = session.await;
    result.map(|()| Some(user)).map_err(|e| e.to_string())
}

/// Opens and checks one file; `None` when it is empty.
fn read(path: &Path, limit: u64) -> Result<Option<Pending>, String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("open: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("fstat: {e}"))?;
    if !meta.is_file() {
        return Err(format!("not a regular file (uid {})", meta.uid()));
    }
    if meta.nlink() != 1 {
        return Err("is a hard link".to_owned());
    }
    if meta.len() == 0 {
        return Ok(None);
    }
    if meta.len() > limit {
        return Err(format!("{} bytes, over the limit of {limit}", meta.len()));
    }
    let owner = match Account::of_uid(meta.uid()) {
        Ok(Some(owner)) => owner,
        Ok(None) => return Err(format!("owner uid {} has no account", meta.uid())),
        Err(e) => return Err(format!("owner uid {}: {e}", meta.uid())),
    };
    let content = read_limited(file, limit).map_err(|e| format!("read: {e}"))?;
    Ok(Some(Pending { owner, content }))
}

/// The content of `file`, refusing more than `limit` bytes (the file may
/// grow after its size was checked).
fn read_limited(file: File, limit: u64) -> io::Result<Vec<u8>> {
    let mut content = Vec::new();
    file.take(limit + 1).read_to_end(&mut content)?;
    if content.len() as u64 > limit {
        return Err(io::Error::other("grew over the limit"));
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("smtpd-offline-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn files_are_checked_before_they_are_read() {
        let dir = Dir::new("checks");
        let good = dir.0.join("1.good");
        std::fs::write(&good, "bob\nSubject: s\n\nbody\n").unwrap();
        let pending = read(&good, 1000).unwrap().unwrap();
        assert_eq!(pending.content, b"bob\nSubject: s\n\nbody\n");
        assert_eq!(pending.owner.uid, crate::control::effective_uid());

        assert!(read(&good, 5).unwrap_err().contains("over the limit"));

        let empty = dir.0.join("2.empty");
        std::fs::write(&empty, "").unwrap();
        assert!(read(&empty, 1000).unwrap().is_none());

        let link = dir.0.join("3.link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert!(read(&link, 1000).unwrap_err().starts_with("open:"));

        let hard = dir.0.join("4.hard");
        std::fs::hard_link(&good, &hard).unwrap();
        assert_eq!(read(&hard, 1000).unwrap_err(), "is a hard link");

        let fifo = dir.0.join("5.fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read(&fifo, 1000)
            .unwrap_err()
            .starts_with("not a regular file"));
    }

    #[test]
    fn the_directory_is_created_and_listed_in_order() {
        let dir = Dir::new("list");
        let offline = dir.0.join("offline");
        assert!(list(&offline).unwrap().is_empty());
        let mode = std::fs::metadata(&offline).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, OFFLINE_MODE);
        for name in ["20.b", "10.a", "30.c"] {
            std::fs::write(offline.join(name), "x").unwrap();
        }
        assert_eq!(list(&offline).unwrap(), ["10.a", "20.b", "30.c"]);
        let file = dir.0.join("file");
        std::fs::write(&file, "").unwrap();
        assert!(list(&file).is_err());
    }
}
