//! The pid file: the daemon's process id in a file, for rc scripts and
//! `kill $(cat smtpd.pid)`, removed when the daemon exits.
//!
//! [`PidFile::create`] writes it once the control socket is bound (so a
//! second daemon, which fails there, never overwrites the first one's).
//! The file stays open: as root the daemon later drops its privileges
//! ([`crate::privsep`]) and may lose the right to remove the file from a
//! root-owned directory such as `/var/run`; it then empties the file
//! through the descriptor it kept, so no stale pid is left behind.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The pid file as root.
pub const ROOT_PIDFILE: &str = "/var/run/smtpd.pid";

/// Its name in the data directory otherwise.
pub const PIDFILE_NAME: &str = "smtpd.pid";

/// The default pid file: [`ROOT_PIDFILE`] as root, else [`PIDFILE_NAME`]
/// in `data_dir`.
pub fn pidfile_path(data_dir: &Path) -> PathBuf {
    if crate::control::effective_uid() == 0 {
        PathBuf::from(ROOT_PIDFILE)
    } else {
        data_dir.join(PIDFILE_NAME)
    }
}

/// A pid file written by this process; removed (or emptied) when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    file: File,
}

/// The pid file cannot be written.
#[derive(Debug, thiserror::Error)]
#[error("pid file {}: {source}", path.display())]
pub struct PidFileError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl PidFile {
    /// Writes this process's id and a newline to `path` (mode 0644),
    /// replacing what was there.
    pub fn create(path: &Path) -> Result<Self, PidFileError> {
        let error = |source| PidFileError {
            path: path.to_owned(),
            source,
        };
        let mut file = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(path)
            .map_err(error)?;
        writeln!(file, "{}", std::process::id()).map_err(error)?;
        file.sync_all().map_err(error)?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                // Privileges dropped: empty it through the open descriptor;
                // the privileged helper removes it once the daemon is gone
                // (crate::privsep).
                if let Err(e2) = self.file.set_len(0) {
                    tracing::warn!(
                        "cannot remove pid file {} ({e}) nor empty it ({e2})",
                        self.path.display()
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn holds_the_pid_and_goes_away_when_dropped() {
        let dir = std::env::temp_dir().join(format!("smtpd-pidfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("smtpd.pid");
        std::fs::write(&path, "12345\nstale\n").unwrap();
        let pidfile = PidFile::create(&path).unwrap();
        assert_eq!(pidfile.path(), path);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        drop(pidfile);
        assert!(!path.exists());
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_file() {
        let path = Path::new("/nonexistent/smtpd.pid");
        let err = PidFile::create(path).unwrap_err().to_string();
        assert!(
            err.starts_with("pid file /nonexistent/smtpd.pid: "),
            "{err}"
        );
    }

    #[test]
    fn the_default_follows_the_user() {
        let data = Path::new("/srv/smtpd-data");
        let expected = if crate::control::effective_uid() == 0 {
            PathBuf::from(ROOT_PIDFILE)
        } else {
            data.join(PIDFILE_NAME)
        };
        assert_eq!(pidfile_path(data), expected);
    }
}
