//! Start-up of the fs queue: the spool directory's checks (owner,
//! permissions), its lock, the purge of what was left uncommitted, and the
//! scan of `queue/` into the index of committed envelopes.

use std::collections::BTreeSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::{Error, Inner};

/// Creates the spool directory (0700) or checks an existing one, and takes
/// its lock.
pub(super) fn prepare_root(root: &Path) -> Result<File, Error> {
    let refuse = |reason: String| Error::Spool {
        path: root.to_owned(),
        reason,
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|e| Error::io("create", root, e))?;
    let meta = fs::symlink_metadata(root).map_err(|e| Error::io("stat", root, e))?;
    if !meta.is_dir() {
        return Err(refuse("not a directory".into()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    // Root opens a spool that belongs to the unprivileged user it is
    // about to become (crate::privsep); anyone else only their own.
    if meta.uid() != euid && euid != 0 {
        return Err(refuse(format!("owned by uid {}, not {euid}", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("chmod", root, e))?;
    }
    let path = root.join("lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => refuse("in use by another process".into()),
            _ => Error::io("lock", &path, e),
        });
    }
    Ok(file)
}

fn hex_u32(name: &str) -> Option<u32> {
    (name.len() == 8 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| u32::from_str_radix(name, 16).ok())
        .flatten()
}

fn hex_u64(name: &str) -> Option<u64> {
    (name.len() == 16 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| u64::from_str_radix(name, 16).ok())
        .flatten()
}

impl Inner {
    /// Moves `incoming/` and `temporary/` to the trash, then empties it.
    pub(super) fn purge_leftovers(&self) -> Result<(), Error> {
        let purge = self.root.join("purge");
        for dir in ["incoming", "temporary"] {
            let from = self.root.join(dir);
            let to = purge.join(self.unique(dir));
            fs::rename(&from, &to).map_err(|e| Error::io("rename", &from, e))?;
            self.mkdir(&from)?;
        }
        self.sync_dir(&self.root)?;
        let entries = fs::read_dir(&purge).map_err(|e| Error::io("read", &purge, e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io("read", &purge, e))?.path();
            let removed = match path.is_dir() {
                true => fs::remove_dir_all(&path),
                false => fs::remove_file(&path),
            };
            removed.map_err(|e| Error::io("remove", &path, e))?;
        }
        Ok(())
    }

    /// Reads `queue/` into the set of committed envelope ids.
    pub(super) fn scan(&self) -> Result<BTreeSet<u64>, Error> {
        let mut index = BTreeSet::new();
        let queue = self.root.join("queue");
        for bucket in read_names(&queue)? {
            let bucket_path = queue.join(&bucket);
            let top = (bucket.len() == 2)
                .then(|| u8::from_str_radix(&bucket, 16).ok())
                .flatten();
            let Some(top) = top.filter(|_| bucket_path.is_dir()) else {
                tracing::warn!(path = %bucket_path.display(), "fs queue: ignoring unexpected entry");
                continue;
            };
            for name in read_names(&bucket_path)? {
                let dir = bucket_path.join(&name);
                match hex_u32(&name).filter(|m| *m >> 24 == u32::from(top) && *m != 0) {
                    Some(msgid) if dir.is_dir() => scan_message(&dir, msgid, &mut index)?,
                    _ => {
                        tracing::warn!(path = %dir.display(), "fs queue: ignoring unexpected entry")
                    }
                }
            }
        }
        Ok(index)
    }
}

fn read_names(dir: &Path) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("read", dir, e))? {
        let entry = entry.map_err(|e| Error::io("read", dir, e))?;
        match entry.file_name().into_string() {
            Ok(name) => names.push(name),
            Err(name) => {
                tracing::warn!(dir = %dir.display(), ?name, "fs queue: ignoring a non-UTF-8 name")
            }
        }
    }
    Ok(names)
}

/// Adds the envelopes of one committed message directory to the index.
fn scan_message(dir: &Path, msgid: u32, index: &mut BTreeSet<u64>) -> Result<(), Error> {
    for name in read_names(dir)? {
        match hex_u64(&name) {
            Some(id) if id >> 32 == u64::from(msgid) && id as u32 != 0 => {
                index.insert(id);
            }
            _ if name == "message" => {}
            _ => {
                tracing::warn!(path = %dir.join(&name).display(), "fs queue: ignoring unexpected entry")
            }
        }
    }
    Ok(())
}
