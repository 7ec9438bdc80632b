//! The data directory of a daemon not run by root: where its control
//! socket (and later its queue) lives.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode a missing data directory is created with.
pub const DATA_DIR_MODE: u32 = 0o700;

/// A data directory that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("data directory {}: {reason}", path.display())]
pub struct DataDirError {
    path: PathBuf,
    reason: String,
}

/// Creates the data directory (mode 0700, parents as needed) if it is
/// missing, and checks that it is a directory this user owns and that
/// nobody else may write to.
pub fn prepare_data_dir(path: &Path) -> Result<(), DataDirError> {
    let error = |reason: String| DataDirError {
        path: path.to_owned(),
        reason,
    };
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(path)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(error(format!("cannot create: {e}"))),
    }
    let meta = std::fs::metadata(path).map_err(|e| error(e.to_string()))?;
    if !meta.is_dir() {
        return Err(error("not a directory".to_owned()));
    }
    // Root may find it handed to the unprivileged user (crate::privsep).
    let euid = crate::control::effective_uid();
    if meta.uid() != euid && euid != 0 {
        return Err(error(format!(
            "owned by uid {}, not by this user",
            meta.uid()
        )));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(error(format!(
            "writable by others (mode {:o})",
            meta.permissions().mode() & 0o777
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("smtpd-datadir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_missing_directory_is_created_private() {
        let top = scratch("create");
        let dir = top.join("nested/data");
        prepare_data_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, DATA_DIR_MODE);
        // Existing and fine: accepted again.
        prepare_data_dir(&dir).unwrap();
        std::fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    fn a_file_or_a_group_writable_directory_is_refused() {
        let top = scratch("refuse");
        std::fs::create_dir_all(&top).unwrap();
        let file = top.join("file");
        std::fs::write(&file, "").unwrap();
        let err = prepare_data_dir(&file).unwrap_err().to_string();
        assert!(err.ends_with("not a directory"), "{err}");
        let open = top.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o770)).unwrap();
        let err = prepare_data_dir(&open).unwrap_err().to_string();
        assert!(err.ends_with("writable by others (mode 770)"), "{err}");
        std::fs::remove_dir_all(&top).unwrap();
    }
}
