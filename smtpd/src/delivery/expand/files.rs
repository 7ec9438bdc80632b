//! The files expansion reads: `~/.forward` (opened as root in OpenSMTPD's
//! parent process, with its safety checks) and `:include:` files.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{UserInfo, MAX_FORWARD_SIZE};

/// What opening a user's `.forward` gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardFile {
    /// No `.forward` (or no home directory).
    Missing,
    /// The file's content (empty means the same as missing).
    Content(String),
    /// A transient problem (sticky home, too many open files, I/O error,
    /// too large): the recipient is retried later.
    Temporary(String),
    /// The file exists but may not be used (symbolic link, unsafe
    /// ownership or permissions): the recipient fails.
    Refused(String),
}

/// Reads the files expansion needs.
#[async_trait]
pub trait ExpansionFiles: Send + Sync {
    /// The `.forward` of `user`'s home directory.
    async fn forward(&self, user: &UserInfo) -> ForwardFile;

    /// The content of an include file, `None` when it cannot be read.
    async fn include(&self, path: &str) -> Option<String>;
}

/// Reads the files from the file system, with OpenSMTPD's checks
/// (`parent_forward_open`, `secure_file`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemFiles;

#[async_trait]
impl ExpansionFiles for SystemFiles {
    async fn forward(&self, user: &UserInfo) -> ForwardFile {
        let user = user.clone();
        tokio::task::spawn_blocking(move || open_forward(Path::new(&user.directory), user.uid))
            .await
            .unwrap_or_else(|e| ForwardFile::Temporary(e.to_string()))
    }

    async fn include(&self, path: &str) -> Option<String> {
        let path = PathBuf::from(path);
        tokio::task::spawn_blocking(move || std::fs::read(path).ok())
            .await
            .ok()
            .flatten()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Opens `DIRECTORY/.forward` for the account `uid` as OpenSMTPD does.
pub fn open_forward(directory: &Path, uid: u32) -> ForwardFile {
    let dir = match std::fs::metadata(directory) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return ForwardFile::Missing,
        Err(e) => return ForwardFile::Refused(format!("{}: {e}", directory.display())),
    };
    if dir.mode() & libc::S_ISVTX != 0 {
        return ForwardFile::Temporary(format!("{} is sticky", directory.display()));
    }
    let path = directory.join(".forward");
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path);
    let file = match file {
        Ok(file) => file,
        Err(e) => return open_error(&path, &e),
    };
    if let Err(reason) = check_secure(&file, &dir, uid) {
        return ForwardFile::Refused(format!("{}: unsecure file: {reason}", path.display()));
    }
    read_forward(file, &path)
}

/// How an `open` error of `.forward` counts.
fn open_error(path: &Path, error: &io::Error) -> ForwardFile {
    match error.raw_os_error() {
        Some(libc::ENOENT) => ForwardFile::Missing,
        Some(libc::EMFILE | libc::ENFILE | libc::EIO) => {
            ForwardFile::Temporary(format!("{}: {error}", path.display()))
        }
        Some(libc::ELOOP) => {
            ForwardFile::Refused(format!("{}: cannot follow symbolic links", path.display()))
        }
        _ => ForwardFile::Refused(format!("{}: {error}", path.display())),
    }
}

/// `secure_file`: a regular file owned by the user (or root), writable by
/// nobody else, in a home directory owned by the user (or root) that no
/// one else may write to.
fn check_secure(file: &File, dir: &std::fs::Metadata, uid: u32) -> Result<(), &'static str> {
    let meta = file.metadata().map_err(|_| "cannot stat")?;
    if !meta.is_file() {
        return Err("not a regular file");
    }
    if meta.uid() != uid && meta.uid() != 0 {
        return Err("bad owner");
    }
    if meta.mode() & 0o022 != 0 {
        return Err("writable by group or others");
    }
    if dir.uid() != uid && dir.uid() != 0 {
        return Err("home directory has a bad owner");
    }
    if dir.mode() & 0o022 != 0 {
        return Err("home directory writable by group or others");
    }
    Ok(())
}

/// Reads an opened `.forward`, refusing one of `MAX_FORWARD_SIZE` bytes
/// or more.
fn read_forward(file: File, path: &Path) -> ForwardFile {
    let mut bytes = Vec::new();
    let limit = MAX_FORWARD_SIZE as u64;
    if let Err(e) = file.take(limit).read_to_end(&mut bytes) {
        return ForwardFile::Temporary(format!("{}: {e}", path.display()));
    }
    if bytes.len() >= MAX_FORWARD_SIZE {
        return ForwardFile::Temporary(format!("{}: exceeds max size", path.display()));
    }
    ForwardFile::Content(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::delivery::test_dir::TempDir;

    fn uid() -> u32 {
        // SAFETY: getuid has no preconditions and cannot fail.
        unsafe { libc::getuid() }
    }

    fn home() -> TempDir {
        let dir = TempDir::new();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    fn write_forward(dir: &Path, text: &str, mode: u32) {
        let path = dir.join(".forward");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn forward_files() {
        let dir = home();
        assert_eq!(open_forward(dir.path(), uid()), ForwardFile::Missing);
        assert_eq!(
            open_forward(&dir.path().join("nonexistent"), uid()),
            ForwardFile::Missing
        );
        write_forward(dir.path(), "bob\n", 0o644);
        assert_eq!(
            open_forward(dir.path(), uid()),
            ForwardFile::Content("bob\n".to_owned())
        );
        write_forward(dir.path(), "bob\n", 0o664);
        assert!(matches!(
            open_forward(dir.path(), uid()),
            ForwardFile::Refused(_)
        ));
        write_forward(dir.path(), &"x".repeat(MAX_FORWARD_SIZE), 0o600);
        assert!(matches!(
            open_forward(dir.path(), uid()),
            ForwardFile::Temporary(_)
        ));
        write_forward(dir.path(), "", 0o600);
        assert_eq!(
            open_forward(dir.path(), uid()),
            ForwardFile::Content(String::new())
        );
    }

    #[test]
    fn symlinks_and_sticky_homes() {
        let dir = home();
        let target = dir.path().join("real");
        std::fs::write(&target, "bob\n").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(".forward")).unwrap();
        assert!(matches!(
            open_forward(dir.path(), uid()),
            ForwardFile::Refused(_)
        ));

        let sticky = home();
        write_forward(sticky.path(), "bob\n", 0o600);
        std::fs::set_permissions(sticky.path(), std::fs::Permissions::from_mode(0o1755)).unwrap();
        assert!(matches!(
            open_forward(sticky.path(), uid()),
            ForwardFile::Temporary(_)
        ));

        let open = home();
        write_forward(open.path(), "bob\n", 0o600);
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(matches!(
            open_forward(open.path(), uid()),
            ForwardFile::Refused(_)
        ));
    }
}
