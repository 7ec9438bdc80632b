//! Maildir delivery, as OpenSMTPD's `mail.maildir` does it (delivery.md
//! section 5.3): the maildir tree is created if needed (mode 0700), the
//! message is written under a unique name in `tmp/`, synced, renamed into
//! `new/`, and the directories are synced before success is reported.
//!
//! [`deliver`] is called by the delivery process, running as the target
//! user, with the message stream (LF line endings, `Return-Path` and
//! `Delivered-To` already prepended) and the maildir path. With
//! [`MaildirOptions::junk`], a message whose header block holds a line
//! equal (ignoring case) to `X-Spam: yes` or `X-Spam-Flag: yes` goes to
//! the `.Junk` folder; with an [`MaildirOptions::extension`] (the
//! sub-address), it goes to the folder `.EXTENSION` when that exists.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// OpenSMTPD's `PATH_MAX`: longer maildir paths are refused.
const PATH_MAX: usize = 1024;

/// How a message is delivered into a maildir.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaildirOptions {
    /// `maildir junk`: spam goes to `.Junk`.
    pub junk: bool,
    /// The sub-address (`EXTENSION`): the message goes to `.EXTENSION` when
    /// that folder exists.
    pub extension: Option<String>,
    /// The host name used in file names; `None` asks the system.
    pub hostname: Option<String>,
}

/// Why a maildir delivery failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaildirError {
    /// The path is not absolute or too long (mail.maildir exits 1).
    #[error("invalid maildir path {0:?}")]
    InvalidPath(PathBuf),
    /// A file system operation failed (mail.maildir exits 75).
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
}

impl MaildirError {
    /// Whether the delivery should be tried again later (everything but an
    /// invalid path).
    pub fn is_temporary(&self) -> bool {
        matches!(self, Self::Io { .. })
    }

    /// mail.maildir's exit status for this error.
    pub fn exit_code(&self) -> i32 {
        if self.is_temporary() {
            75
        } else {
            1
        }
    }
}

fn io_error(context: &'static str, path: &Path) -> impl FnOnce(io::Error) -> MaildirError {
    let path = path.to_owned();
    move |source| MaildirError::Io {
        context,
        path,
        source,
    }
}

/// Delivers `message` into the maildir at `dir`; returns the file's final
/// path.
pub fn deliver(
    message: impl Read,
    dir: &Path,
    options: &MaildirOptions,
) -> Result<PathBuf, MaildirError> {
    if !dir.is_absolute() || dir.as_os_str().len() >= PATH_MAX {
        return Err(MaildirError::InvalidPath(dir.to_owned()));
    }
    create_maildir(dir)?;
    let junk_dir = dir.join(".Junk");
    if options.junk {
        create_maildir(&junk_dir)?;
    }
    let folder = options
        .extension
        .as_deref()
        .and_then(extension_folder)
        .map(|name| dir.join(name))
        .filter(|path| path.is_dir())
        .unwrap_or_else(|| dir.to_owned());
    if folder != dir {
        create_maildir(&folder)?;
    }

    let hostname = options.hostname.clone().unwrap_or_else(system_hostname);
    let (tmp_path, file, name) = create_unique(&folder.join("tmp"), &hostname)?;
    let junk = match write_message(message, file, options.junk) {
        Ok(junk) => junk,
        Err(source) => {
            let _ = fs::remove_file(&tmp_path);
            return Err(MaildirError::Io {
                context: "writing",
                path: tmp_path,
                source,
            });
        }
    };
    let target_dir = if junk { &junk_dir } else { &folder }.join("new");
    let target = target_dir.join(&name);
    if let Err(source) = fs::rename(&tmp_path, &target) {
        let _ = fs::remove_file(&tmp_path);
        return Err(MaildirError::Io {
            context: "renaming into",
            path: target,
            source,
        });
    }
    // The rename is durable once `new/` is synced; what `tmp/` holds
    // after a crash does not matter.
    sync_dir(&target_dir)?;
    Ok(target)
}

/// Creates `dir` (and its parents) and its `cur`, `tmp` and `new`, mode
/// 0700.
fn create_maildir(dir: &Path) -> Result<(), MaildirError> {
    let mut builder = DirBuilder::new();
    builder.recursive(true).mode(0o700);
    for sub in ["cur", "tmp", "new"] {
        let path = dir.join(sub);
        builder.create(&path).map_err(io_error("creating", &path))?;
    }
    Ok(())
}

/// The folder name of a sub-address: `.EXT` with the characters formats
/// sanitise (and `/`) replaced by `:`; `None` for an empty, `.` or `..`
/// extension.
fn extension_folder(extension: &str) -> Option<String> {
    if extension.is_empty() || extension == "." || extension == ".." {
        return None;
    }
    let clean: String = extension
        .chars()
        .map(|c| if "!#$%&'*?`{|}~/".contains(c) { ':' } else { c })
        .collect();
    Some(format!(".{clean}"))
}

/// The host name, with `/` and `:` written `\057` and `\072` as the
/// maildir convention asks.
fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length, which is passed.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".to_owned()
    };
    name.replace('/', "\\057").replace(':', "\\072")
}

/// Four random bytes from the system.
fn random_u32() -> u32 {
    let mut buf = [0u8; 4];
    // SAFETY: the buffer is valid for the 4 bytes requested.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != 4 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        return nanos ^ std::process::id();
    }
    u32::from_ne_bytes(buf)
}

/// Creates `tmp/UNIXTIME.RANDOM8HEX.HOSTNAME`, a name no other file has.
fn create_unique(tmp: &Path, hostname: &str) -> Result<(PathBuf, File, String), MaildirError> {
    let mut attempts = 0;
    loop {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = format!("{secs}.{:08x}.{hostname}", random_u32());
        let path = tmp.join(&name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(file) => return Ok((path, file, name)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => {
                attempts += 1;
            }
            Err(e) => return Err(io_error("creating", &path)(e)),
        }
    }
}

/// Copies the message line by line (a missing final newline is added),
/// syncs the file, and tells whether its header block marks it as spam
/// (only looked at when `junk` is asked for).
fn write_message(message: impl Read, file: File, junk: bool) -> io::Result<bool> {
    let mut reader = BufReader::new(message);
    let mut out = io::BufWriter::new(file);
    let mut line = Vec::new();
    let (mut in_header, mut is_junk) = (true, false);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        let text = &line[..line.len() - 1];
        if text.is_empty() {
            in_header = false;
        }
        if junk
            && in_header
            && (text.eq_ignore_ascii_case(b"x-spam: yes")
                || text.eq_ignore_ascii_case(b"x-spam-flag: yes"))
        {
            is_junk = true;
        }
        out.write_all(&line)?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(is_junk)
}

/// fsync(2) on a directory, so a rename in it is durable.
fn sync_dir(dir: &Path) -> Result<(), MaildirError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("syncing", dir))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::delivery::test_dir::TempDir;

    fn options(junk: bool, extension: Option<&str>) -> MaildirOptions {
        MaildirOptions {
            junk,
            extension: extension.map(str::to_owned),
            hostname: Some("mx.example.org".to_owned()),
        }
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn creates_the_tree_and_delivers_into_new() {
        let home = TempDir::new();
        let dir = home.path().join("deep/Maildir");
        let path = deliver(&b"Subject: hi\n\nbody"[..], &dir, &options(false, None)).unwrap();
        assert_eq!(path.parent().unwrap(), dir.join("new"));
        assert_eq!(fs::read(&path).unwrap(), b"Subject: hi\n\nbody\n");
        assert_eq!(files(&dir), ["cur", "new", "tmp"]);
        assert!(files(&dir.join("tmp")).is_empty());
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let file_mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(file_mode, 0o600);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let parts: Vec<&str> = name.splitn(3, '.').collect();
        assert!(parts[0].parse::<u64>().is_ok(), "{name}");
        assert_eq!(parts[1].len(), 8, "{name}");
        assert!(u32::from_str_radix(parts[1], 16).is_ok(), "{name}");
        assert_eq!(parts[2], "mx.example.org");
    }

    #[test]
    fn names_are_unique() {
        let home = TempDir::new();
        let dir = home.path().join("Maildir");
        for n in 0..50 {
            deliver(format!("n: {n}\n").as_bytes(), &dir, &options(false, None)).unwrap();
        }
        assert_eq!(files(&dir.join("new")).len(), 50);
    }

    #[test]
    fn junk() {
        let cases: &[(&str, bool, bool)] = &[
            ("X-Spam: yes\n\nbody\n", true, true),
            ("Subject: x\nx-spam-flag: YES\n\nbody\n", true, true),
            ("X-Spam: yes\n\nbody\n", false, false),
            ("Subject: x\n\nX-Spam: yes\n", true, false),
            ("X-Spam: yes, really\n\nbody\n", true, false),
            ("X-Spam: no\n\n", true, false),
        ];
        for (message, junk, to_junk) in cases {
            let home = TempDir::new();
            let dir = home.path().join("Maildir");
            let path = deliver(message.as_bytes(), &dir, &options(*junk, None)).unwrap();
            let expected = if *to_junk {
                dir.join(".Junk/new")
            } else {
                dir.join("new")
            };
            assert_eq!(path.parent().unwrap(), expected, "{message:?}");
            assert_eq!(dir.join(".Junk/tmp").is_dir(), *junk, "{message:?}");
        }
    }

    #[test]
    fn extension_folders() {
        let home = TempDir::new();
        let dir = home.path().join("Maildir");
        fs::create_dir_all(dir.join(".lists")).unwrap();
        fs::create_dir_all(dir.join(".a:b")).unwrap();
        let cases: &[(&str, &str)] = &[
            ("lists", ".lists/new"),
            ("other", "new"),
            ("a/b", ".a:b/new"),
            ("a|b", ".a:b/new"),
            ("..", "new"),
            ("", "new"),
        ];
        for (extension, folder) in cases {
            let path = deliver(&b"x\n"[..], &dir, &options(false, Some(extension))).unwrap();
            assert_eq!(path.parent().unwrap(), dir.join(folder), "{extension:?}");
        }
        assert!(dir.join(".lists/cur").is_dir());
    }

    #[test]
    fn errors() {
        let err = deliver(
            &b"x\n"[..],
            Path::new("relative/Maildir"),
            &options(false, None),
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 1);
        let long = PathBuf::from(format!("/{}", "a".repeat(PATH_MAX)));
        assert_eq!(
            deliver(&b"x\n"[..], &long, &options(false, None))
                .unwrap_err()
                .exit_code(),
            1
        );

        let home = TempDir::new();
        fs::write(home.path().join("file"), "").unwrap();
        let err = deliver(
            &b"x\n"[..],
            &home.path().join("file/Maildir"),
            &options(false, None),
        )
        .unwrap_err();
        assert!(err.is_temporary());
        assert_eq!(err.exit_code(), 75);

        // A failing reader leaves nothing behind.
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("broken pipe"))
            }
        }
        let dir = home.path().join("Maildir");
        let err = deliver(Failing, &dir, &options(false, None)).unwrap_err();
        assert!(err.is_temporary());
        assert!(files(&dir.join("tmp")).is_empty());
        assert!(files(&dir.join("new")).is_empty());
    }
}
