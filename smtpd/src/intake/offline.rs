//! The offline queue's drain: at start, the submissions `sendmail` left in
//! the spool's `offline/` directory while the daemon was down
//! ([`crate::enqueue::offline`]) are sent through the socket listener,
//! each as a local session of its file's owner, oldest first.
//!
//! It runs in two steps. [`OfflineQueue::open`] runs early, while the
//! daemon may still read every user's files (before a daemon started as
//! root drops its privileges, and before the spool is handed to the
//! unprivileged user): it creates the directory if missing (mode 1733:
//! anyone who can reach it may leave a file, nobody may list or remove
//! other users' files), and opens and checks each file, keeping it open
//! with its owner. [`OfflineQueue::drain`] then reads and sends them, in
//! the background, once intake runs.
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
//! (logged), to be tried at the next start. At most `MAX_OPEN` files are
//! taken at one start; the others wait for the next.

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

/// The most files taken at one start.
const MAX_OPEN: usize = 256;

/// How long a replayed dialogue waits for each reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

/// One offline file, opened and checked.
#[derive(Debug)]
struct Pending {
    name: String,
    owner: Account,
    file: File,
}

/// The files of the offline queue, open, waiting to be sent.
#[derive(Debug)]
pub struct OfflineQueue {
    dir: PathBuf,
    limit: u64,
    pending: Vec<Pending>,
}

impl OfflineQueue {
    /// Creates `dir` if it is missing and opens the files waiting in it,
    /// oldest first, for messages up to `max_message_size` bytes. An
    /// unusable directory or file is logged and left alone.
    pub async fn open(dir: PathBuf, max_message_size: u64) -> Self {
        let limit = max_message_size.saturating_add(MAX_ARGUMENTS as u64 + 1);
        let opened = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || open_all(&dir, limit)
        })
        .await
        .map_err(io::Error::other)
        .and_then(|opened| opened);
        let pending = match opened {
            Ok(pending) => pending,
            Err(e) => {
                tracing::warn!("offline queue {}: {e}", dir.display());
                Vec::new()
            }
        };
        if !pending.is_empty() {
            tracing::info!("offline queue: {} message(s) to send", pending.len());
        }
        Self {
            dir,
            limit,
            pending,
        }
    }

    /// Whether no file waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Sends the files through `local`, one after the other, removing each
    /// once its message is queued.
    pub(super) async fn drain(self, local: LocalListener) {
        let host = local.host_name();
        for pending in self.pending {
            let (name, user) = (pending.name.clone(), pending.owner.name.clone());
            match replay(pending, &local, &host, self.limit).await {
                Ok(()) => {
                    tracing::info!("offline message {name} of {user} enqueued");
                    if let Err(e) = std::fs::remove_file(self.dir.join(&name)) {
                        tracing::warn!("offline message {name}: cannot remove: {e}");
                    }
                }
                Err(reason) => {
                    tracing::warn!("could not enqueue offline message {name}: {reason}");
                }
            }
        }
    }
}

/// Creates the directory if needed, checks it, and opens its files.
fn open_all(dir: &Path, limit: u64) -> io::Result<Vec<Pending>> {
    let mut names = list(dir)?;
    if names.len() > MAX_OPEN {
        tracing::info!(
            "offline queue: {} message(s) left for the next start",
            names.len() - MAX_OPEN
        );
        names.truncate(MAX_OPEN);
    }
    let mut pending = Vec::new();
    for name in names {
        let path = dir.join(&name);
        match open_checked(&path, limit) {
            Ok(Some((owner, file))) => pending.push(Pending { name, owner, file }),
            Ok(None) => {
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!("offline message {name}: empty, cannot remove: {e}");
                }
            }
            Err(reason) => tracing::warn!("could not enqueue offline message {name}: {reason}"),
        }
    }
    Ok(pending)
}

/// Creates the directory if needed and lists its entries, sorted. It must
/// be a directory of the same owner as the spool above it.
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
    let parent = std::fs::metadata(dir.parent().unwrap_or_else(|| Path::new("/")))?;
    if meta.uid() != parent.uid() {
        return Err(io::Error::other(format!(
            "owned by uid {}, not by the spool's owner (uid {})",
            meta.uid(),
            parent.uid()
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

/// Opens and checks one file; `None` when it is empty.
fn open_checked(path: &Path, limit: u64) -> Result<Option<(Account, File)>, String> {
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
    match Account::of_uid(meta.uid()) {
        Ok(Some(owner)) => Ok(Some((owner, file))),
        Ok(None) => Err(format!("owner uid {} has no account", meta.uid())),
        Err(e) => Err(format!("owner uid {}: {e}", meta.uid())),
    }
}

/// Sends one file.
async fn replay(
    pending: Pending,
    local: &LocalListener,
    host: &str,
    limit: u64,
) -> Result<(), String> {
    let Pending { owner, file, .. } = pending;
    let content = tokio::task::spawn_blocking(move || read_limited(file, limit))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("read: {e}"))?;
    let (arguments, message) = offline::decode(&content).map_err(|e| e.to_string())?;
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
    let prepared = submission::prepare(&options, message, &owner, host, &date::rfc5322(now))
        .map_err(|e| e.to_string())?;
    let (client, server) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
    server.set_nonblocking(true).map_err(|e| e.to_string())?;
    let server = tokio::net::UnixStream::from_std(server).map_err(|e| e.to_string())?;
    let session = tokio::spawn({
        let local = local.clone();
        async move { local.serve(Box::new(server), owner.name).await }
    });
    let dialogue = tokio::task::spawn_blocking(move || {
        client.set_read_timeout(Some(REPLY_TIMEOUT))?;
        let reader = BufReader::new(client.try_clone()?);
        dialogue::submit(reader, client, &prepared.envelope, &prepared.data, None)
    });
    let result = dialogue.await.map_err(|e| e.to_string())?;
    let _ = session.await;
    result.map_err(|e| e.to_string())
}

/// The content of `file`, refusing more than `limit` bytes (the file may
/// have grown since its size was checked).
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
        let (owner, file) = open_checked(&good, 1000).unwrap().unwrap();
        assert_eq!(owner.uid, crate::control::effective_uid());
        assert_eq!(
            read_limited(file, 1000).unwrap(),
            b"bob\nSubject: s\n\nbody\n"
        );

        let over = |path: &Path| open_checked(path, 5).map(|_| ()).unwrap_err();
        assert!(over(&good).contains("over the limit"));
        let (_, file) = open_checked(&good, 1000).unwrap().unwrap();
        assert!(read_limited(file, 5).is_err());

        let empty = dir.0.join("2.empty");
        std::fs::write(&empty, "").unwrap();
        assert!(open_checked(&empty, 1000).unwrap().is_none());

        let refused = |path: &Path| open_checked(path, 1000).map(|_| ()).unwrap_err();
        let link = dir.0.join("3.link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert!(refused(&link).starts_with("open:"));

        let hard = dir.0.join("4.hard");
        std::fs::hard_link(&good, &hard).unwrap();
        assert_eq!(refused(&hard), "is a hard link");

        let fifo = dir.0.join("5.fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(refused(&fifo).starts_with("not a regular file"));
    }

    #[test]
    fn the_directory_is_created_and_listed_in_order() {
        let dir = Dir::new("list");
        let offline = dir.0.join("offline");
        assert!(list(&offline).unwrap().is_empty());
        let mode = std::fs::metadata(&offline).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, OFFLINE_MODE);
        for name in ["20.b", "10.a", "30.c", "40.empty"] {
            std::fs::write(
                offline.join(name),
                if name == "40.empty" { "" } else { "x" },
            )
            .unwrap();
        }
        assert_eq!(
            list(&offline).unwrap(),
            ["10.a", "20.b", "30.c", "40.empty"]
        );
        let opened = open_all(&offline, 100).unwrap();
        let names: Vec<&str> = opened.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["10.a", "20.b", "30.c"]);
        assert!(!offline.join("40.empty").exists());
        let file = dir.0.join("file");
        std::fs::write(&file, "").unwrap();
        assert!(list(&file).is_err());
    }
}
