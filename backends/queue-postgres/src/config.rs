//! The configuration file: one `KEY VALUE` a line, as table-postgres's.
//!
//! Blank lines and `#` lines are ignored; the key ends at the first space,
//! tab or `:`, after which blanks and a `:` followed by a blank are
//! skipped. A key without a value, a key given twice and an unknown key
//! are errors, each reported as `FILE:LINE: message`; `main` loads the file
//! before registering.
//!
//! Keys: `conninfo` (required: a libpq connection string or URL; plain TCP
//! or a Unix socket, `sslmode=require` is refused as no TLS is built in),
//! `schema` (the PostgreSQL schema holding the queue's tables, created on
//! start; `smtpd_queue` by default), `connections` (the pool size, 4),
//! `lease` (`yes`, the default, registers the `lease` capability so that
//! several daemons can share the queue; `no` for a single daemon) and
//! `uncommitted_expire` (seconds after which an uncommitted message, left
//! by a daemon that died during a transaction, is removed at start; one
//! day by default).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// The pool size when `connections` is not given.
pub(crate) const DEFAULT_CONNECTIONS: usize = 4;
/// The most connections `connections` may ask for.
const MAX_CONNECTIONS: usize = 64;
/// The schema when `schema` is not given.
pub(crate) const DEFAULT_SCHEMA: &str = "smtpd_queue";
/// `uncommitted_expire` when not given, in seconds.
const DEFAULT_UNCOMMITTED_EXPIRE: u64 = 86_400;
/// How long a connection attempt may take when `conninfo` sets no
/// `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const KEYS: [&str; 5] = [
    "conninfo",
    "schema",
    "connections",
    "lease",
    "uncommitted_expire",
];

/// A loaded configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Where to connect.
    pub(crate) conninfo: tokio_postgres::Config,
    /// The schema of the queue's tables (a plain identifier).
    pub(crate) schema: String,
    /// How many connections the pool keeps.
    pub(crate) connections: usize,
    /// Whether to register the `lease` capability.
    pub(crate) lease: bool,
    /// Age after which uncommitted messages are removed at start.
    pub(crate) uncommitted_expire: Duration,
}

/// A configuration that cannot be used: `FILE[:LINE]: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) struct ConfigError {
    pub(crate) path: PathBuf,
    pub(crate) line: Option<usize>,
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// True for a schema name used without quoting: a lower-case letter or
/// `_`, then lower-case letters, digits or `_`, at most 63 bytes.
fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && name.len() <= 63
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

impl Config {
    /// Reads and checks the file at `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            line: None,
            message: e.to_string(),
        })?;
        Self::parse(path, &String::from_utf8_lossy(&text))
    }

    /// Checks `text`, read from `path` (named in errors).
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let error = |line: Option<usize>, message: String| ConfigError {
            path: path.to_owned(),
            line,
            message,
        };
        let mut keys: HashMap<&str, (&str, usize)> = HashMap::new();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let Some((key, value)) = split_line(raw) else {
                continue;
            };
            if !KEYS.contains(&key) {
                return Err(error(Some(line), format!("unknown key {key}")));
            }
            if value.is_empty() {
                return Err(error(Some(line), format!("{key}: missing value")));
            }
            if let Some((_, first)) = keys.get(key) {
                return Err(error(
                    Some(line),
                    format!("{key}: given twice (first on line {first})"),
                ));
            }
            keys.insert(key, (value, line));
        }

        let Some(&(conninfo, line)) = keys.get("conninfo") else {
            return Err(error(None, "conninfo: missing".to_owned()));
        };
        let mut conninfo = tokio_postgres::Config::from_str(conninfo)
            .map_err(|e| error(Some(line), format!("conninfo: {e}")))?;
        if conninfo.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(error(
                Some(line),
                "conninfo: sslmode=require: TLS to the server is not supported \
                 (connect over a local socket or a trusted network)"
                    .to_owned(),
            ));
        }
        if conninfo.get_connect_timeout().is_none() {
            conninfo.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if conninfo.get_application_name().is_none() {
            conninfo.application_name("queue-postgres");
        }

        let schema = match keys.get("schema") {
            None => DEFAULT_SCHEMA.to_owned(),
            Some(&(name, _)) if is_identifier(name) => name.to_owned(),
            Some(&(name, line)) => {
                return Err(error(
                    Some(line),
                    format!(
                        "schema: {name:?} is not a plain identifier \
                         (lower-case letters, digits and _, not starting with a digit)"
                    ),
                ))
            }
        };

        let number = |key: &str, default: u64| -> Result<u64, ConfigError> {
            match keys.get(key) {
                None => Ok(default),
                Some(&(v, line)) => v.parse::<u64>().map_err(|_| {
                    error(
                        Some(line),
                        format!("{key}: {v:?} is not a non-negative integer"),
                    )
                }),
            }
        };
        let connections = number("connections", DEFAULT_CONNECTIONS as u64)?;
        let Ok(connections @ 1..=MAX_CONNECTIONS) = usize::try_from(connections) else {
            let line = keys.get("connections").map(|&(_, l)| l);
            return Err(error(
                line,
                format!("connections: must be between 1 and {MAX_CONNECTIONS}"),
            ));
        };
        let lease = match keys.get("lease") {
            None | Some(("yes", _)) => true,
            Some(("no", _)) => false,
            Some(&(v, line)) => {
                return Err(error(Some(line), format!("lease: {v:?} is not yes or no")))
            }
        };
        let expire = number("uncommitted_expire", DEFAULT_UNCOMMITTED_EXPIRE)?;

        Ok(Self {
            conninfo,
            schema,
            connections,
            lease,
            uncommitted_expire: Duration::from_secs(expire),
        })
    }
}

/// `KEY VALUE` of a line, or `None` for a blank or comment line.
fn split_line(raw: &str) -> Option<(&str, &str)> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let Some(end) = line.find([' ', '\t', ':']) else {
        return Some((line, ""));
    };
    // The delimiter itself, then blanks and any `:` followed by a blank.
    let (key, mut rest) = (&line[..end], &line[end + 1..]);
    while let [b' ' | b'\t', ..] | [b':', b' ' | b'\t', ..] = rest.as_bytes() {
        rest = &rest[1..];
    }
    Some((key, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/mail/queue.conf"), text)
    }

    fn message(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_full_file_is_read() {
        let c = parse(
            "# the shared queue\n\
             conninfo host=127.0.0.1 port=5433 user=smtpd dbname=mail\n\
             schema: mx_queue\n\
             connections\t8\n\
             lease no\n\
             uncommitted_expire 600\n",
        )
        .unwrap();
        assert_eq!(c.conninfo.get_ports(), &[5433]);
        assert_eq!(c.conninfo.get_application_name(), Some("queue-postgres"));
        assert_eq!(
            c.conninfo.get_connect_timeout(),
            Some(&Duration::from_secs(5))
        );
        assert_eq!(c.schema, "mx_queue");
        assert_eq!(c.connections, 8);
        assert!(!c.lease);
        assert_eq!(c.uncommitted_expire, Duration::from_secs(600));
    }

    #[test]
    fn defaults() {
        let c = parse("conninfo host=/run/postgresql dbname=mail\n").unwrap();
        assert_eq!(c.schema, DEFAULT_SCHEMA);
        assert_eq!(c.connections, DEFAULT_CONNECTIONS);
        assert!(c.lease);
        assert_eq!(c.uncommitted_expire, Duration::from_secs(86_400));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        for (text, wanted) in [
            ("schema x\n", "/etc/mail/queue.conf: conninfo: missing"),
            (
                "conninfo host=h\nfrob 1\n",
                "/etc/mail/queue.conf:2: unknown key frob",
            ),
            (
                "conninfo host=h\nschema\n",
                "/etc/mail/queue.conf:2: schema: missing value",
            ),
            (
                "conninfo host=h\nconninfo host=i\n",
                "/etc/mail/queue.conf:2: conninfo: given twice (first on line 1)",
            ),
            (
                "conninfo host=h\nschema Mail-Queue\n",
                "/etc/mail/queue.conf:2: schema: \"Mail-Queue\" is not a plain identifier",
            ),
            (
                "conninfo host=h\nconnections 0\n",
                "/etc/mail/queue.conf:2: connections: must be between 1 and 64",
            ),
            (
                "conninfo host=h\nlease maybe\n",
                "/etc/mail/queue.conf:2: lease: \"maybe\" is not yes or no",
            ),
            (
                "conninfo host=h\nuncommitted_expire -1\n",
                "/etc/mail/queue.conf:2: uncommitted_expire: \"-1\" is not a non-negative integer",
            ),
            (
                "conninfo host=h sslmode=require\n",
                "/etc/mail/queue.conf:1: conninfo: sslmode=require",
            ),
            (
                "conninfo host=h port=x\n",
                "/etc/mail/queue.conf:1: conninfo: ",
            ),
        ] {
            let got = message(text);
            assert!(got.starts_with(wanted), "{text:?}: {got}");
        }
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("smtpd_queue"));
        assert!(is_identifier("_q1"));
        assert!(!is_identifier("1q"));
        assert!(!is_identifier("q;drop"));
        assert!(!is_identifier(""));
        assert!(!is_identifier(&"q".repeat(64)));
    }
}
