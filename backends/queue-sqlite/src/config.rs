//! The configuration file: one `KEY VALUE` a line; blank lines and `#`
//! comment lines are ignored. A key without a value, a key given twice or
//! an unknown key is an error naming the file and line.
//!
//! Keys: `dbpath` (required), the database file, created when missing;
//! `busy_timeout` (milliseconds, default 5000), how long a statement waits
//! for a lock held by another process (a backup tool, the `sqlite3`
//! shell).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The loaded configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    /// The database file.
    pub(crate) dbpath: PathBuf,
    /// How long to wait for a lock.
    pub(crate) busy_timeout: Duration,
}

/// A configuration that cannot be used: `FILE:LINE: message`, or
/// `FILE: message` without a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    path: PathBuf,
    line: Option<usize>,
    message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads and checks the file at `path`.
pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_owned(),
        line: None,
        message: e.to_string(),
    })?;
    parse(path, &text)
}

/// Parses the text of the file at `path`.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let error = |line, message: String| ConfigError {
        path: path.to_owned(),
        line,
        message,
    };
    let mut dbpath = None;
    let mut busy_timeout = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = Some(n + 1);
        let (key, value) = match line.split_once([' ', '\t']) {
            Some((key, value)) if !value.trim().is_empty() => (key, value.trim()),
            _ => return Err(error(at, format!("{line}: a value is required"))),
        };
        let twice = || error(at, format!("{key}: given twice"));
        match key {
            "dbpath" if dbpath.is_some() => return Err(twice()),
            "dbpath" => dbpath = Some(PathBuf::from(value)),
            "busy_timeout" if busy_timeout.is_some() => return Err(twice()),
            "busy_timeout" => {
                let ms: u64 = value.parse().map_err(|_| {
                    error(
                        at,
                        format!("busy_timeout: {value}: not a number of milliseconds"),
                    )
                })?;
                busy_timeout = Some(Duration::from_millis(ms));
            }
            other => {
                return Err(error(
                    at,
                    format!("unknown key {other} (expected dbpath or busy_timeout)"),
                ))
            }
        }
    }
    let dbpath = dbpath.ok_or_else(|| error(None, "dbpath is required".to_owned()))?;
    Ok(Config {
        dbpath,
        busy_timeout: busy_timeout.unwrap_or(Duration::from_secs(5)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_errors() {
        let p = Path::new("q.conf");
        assert_eq!(
            parse(
                p,
                "# queue\n\ndbpath /var/spool/q.sqlite\nbusy_timeout\t250\n"
            ),
            Ok(Config {
                dbpath: "/var/spool/q.sqlite".into(),
                busy_timeout: Duration::from_millis(250),
            })
        );
        assert_eq!(
            parse(p, "dbpath /q\n").map(|c| c.busy_timeout),
            Ok(Duration::from_secs(5))
        );
        for (text, message) in [
            ("", "q.conf: dbpath is required"),
            ("dbpath\n", "q.conf:1: dbpath: a value is required"),
            ("dbpath /a\ndbpath /b\n", "q.conf:2: dbpath: given twice"),
            (
                "dbpath /a\nbusy_timeout soon\n",
                "q.conf:2: busy_timeout: soon: not a number of milliseconds",
            ),
            (
                "\nsynchronous off\n",
                "q.conf:2: unknown key synchronous (expected dbpath or busy_timeout)",
            ),
        ] {
            let e = parse(p, text).expect_err(text);
            assert_eq!(e.to_string(), message);
        }
    }
}
