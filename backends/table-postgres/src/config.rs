//! The configuration file: OpenSMTPD table-postgres's keys and syntax.
//!
//! One `KEY VALUE` a line; blank lines and `#` lines are ignored; the key
//! ends at the first space, tab or `:`, after which blanks and a `:`
//! followed by a blank are skipped. A key without a value, a key given
//! twice and an unknown key are errors, each reported as `FILE:LINE:
//! message`. `main` loads it before registering; `update` loads it again.
//!
//! Keys: `conninfo` (required, a libpq connection string or URL), one
//! `query_SERVICE` per service (`$1` is the key, as text), `fetch_source`
//! with `fetch_source_expire` and `fetch_source_refresh`. Beyond
//! OpenSMTPD's keys: `query_relayhost`, `query_string`, `query_regex`,
//! `query_auth`, `fetch_relayhost` (with its `_expire` and `_refresh`),
//! and `connections`, the size of the connection pool (default 4).
//! Connections are plain TCP or a Unix socket (`host=/run/postgresql`):
//! `sslmode=require` is refused, as no TLS is built in.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use smtpd_sdk::table::Service;

/// The pool size when `connections` is not given.
pub(crate) const DEFAULT_CONNECTIONS: usize = 4;
/// The most connections `connections` may ask for.
const MAX_CONNECTIONS: usize = 64;
/// `fetch_*_expire` when not given, in seconds (OpenSMTPD's default).
const DEFAULT_EXPIRE: u64 = 60;
/// `fetch_*_refresh` when not given (OpenSMTPD's default).
const DEFAULT_REFRESH: u64 = 1000;
/// How long a connection attempt may take when `conninfo` sets no
/// `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A loaded configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The file it was read from (`update` reads it again).
    pub(crate) path: PathBuf,
    /// Where to connect.
    pub(crate) conninfo: tokio_postgres::Config,
    /// The per-service queries, by service.
    pub(crate) queries: HashMap<Service, Query>,
    /// The list queries of `fetch`, by service.
    pub(crate) fetches: HashMap<Service, Fetch>,
    /// How many connections the pool keeps.
    pub(crate) connections: usize,
}

/// A `query_SERVICE` key: SQL taking the key as `$1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pub(crate) sql: String,
    /// Its line in the file, for error messages.
    pub(crate) line: usize,
}

/// A `fetch_SERVICE` key: SQL without parameter listing the values, and
/// when to run it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fetch {
    pub(crate) sql: String,
    pub(crate) line: usize,
    /// The list is queried again once this old.
    pub(crate) expire: Duration,
    /// ... or after this many fetches.
    pub(crate) refresh: u64,
}

/// Why a configuration cannot be used: `FILE:LINE: message`, or
/// `FILE: message` for the file as a whole.
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

/// The numbers of columns a service's query may return: OpenSMTPD's
/// (`credentials`: user and hash; `userinfo`: uid, gid and home), or one
/// column holding the whole value (`user:hash` or a bare hash,
/// `uid:gid:home`).
pub(crate) fn columns(service: Service) -> &'static [usize] {
    match service {
        Service::Credentials => &[2, 1],
        Service::Userinfo => &[3, 1],
        _ => &[1],
    }
}

/// The services whose list `fetch` may cycle through.
const FETCHABLE: [Service; 2] = [Service::Source, Service::Relayhost];

impl Config {
    /// Reads and checks `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            line: None,
            message: e.to_string(),
        })?;
        Self::parse(path, &String::from_utf8_lossy(&text))
    }

    /// Checks `text`, the content of `path`.
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let error = |line: Option<usize>, message: String| ConfigError {
            path: path.to_owned(),
            line,
            message,
        };
        let mut keys: HashMap<String, (String, usize)> = HashMap::new();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let Some((key, value)) = split_line(raw) else {
                continue;
            };
            if value.is_empty() {
                return Err(error(Some(line), format!("{key}: missing value")));
            }
            if !known_key(key) {
                return Err(error(Some(line), format!("unknown key {key}")));
            }
            if let Some((_, first)) = keys.get(key) {
                return Err(error(
                    Some(line),
                    format!("{key}: given twice (first on line {first})"),
                ));
            }
            keys.insert(key.to_owned(), (value.to_owned(), line));
        }

        let Some((conninfo, line)) = keys.get("conninfo") else {
            return Err(error(None, "conninfo: missing".to_owned()));
        };
        let mut conninfo = tokio_postgres::Config::from_str(conninfo)
            .map_err(|e| error(Some(*line), format!("conninfo: {e}")))?;
        if conninfo.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(error(
                Some(*line),
                "conninfo: sslmode=require: TLS to the server is not supported \
                 (connect over a local socket or a trusted network)"
                    .to_owned(),
            ));
        }
        if conninfo.get_connect_timeout().is_none() {
            conninfo.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if conninfo.get_application_name().is_none() {
            conninfo.application_name("table-postgres");
        }

        let number = |key: &str, default: u64| -> Result<u64, ConfigError> {
            match keys.get(key) {
                None => Ok(default),
                Some((v, line)) => v.parse::<u64>().map_err(|_| {
                    error(
                        Some(*line),
                        format!("{key}: {v:?} is not a non-negative integer"),
                    )
                }),
            }
        };

        let mut queries = HashMap::new();
        for service in Service::ALL {
            if let Some((sql, line)) = keys.get(&format!("query_{service}")) {
                let query = Query {
                    sql: sql.clone(),
                    line: *line,
                };
                queries.insert(service, query);
            }
        }
        let mut fetches = HashMap::new();
        for service in FETCHABLE {
            let key = format!("fetch_{service}");
            let expire = number(&format!("{key}_expire"), DEFAULT_EXPIRE)?;
            let refresh = number(&format!("{key}_refresh"), DEFAULT_REFRESH)?;
            if let Some((sql, line)) = keys.get(&key) {
                let fetch = Fetch {
                    sql: sql.clone(),
                    line: *line,
                    expire: Duration::from_secs(expire),
                    refresh: refresh.max(1),
                };
                fetches.insert(service, fetch);
            }
        }

        let connections = number("connections", DEFAULT_CONNECTIONS as u64)?;
        let Ok(connections @ 1..=MAX_CONNECTIONS) = usize::try_from(connections) else {
            let line = keys.get("connections").map(|(_, l)| *l);
            return Err(error(
                line,
                format!("connections: must be between 1 and {MAX_CONNECTIONS}"),
            ));
        };

        Ok(Self {
            path: path.to_owned(),
            conninfo,
            queries,
            fetches,
            connections,
        })
    }

    /// An error about the key on `line`.
    pub(crate) fn error_at(&self, line: usize, message: String) -> ConfigError {
        ConfigError {
            path: self.path.clone(),
            line: Some(line),
            message,
        }
    }
}

/// A line's key and value, or `None` for a blank or comment line.
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

fn known_key(key: &str) -> bool {
    if matches!(key, "conninfo" | "connections") {
        return true;
    }
    if let Some(service) = key.strip_prefix("query_") {
        return Service::from_name(service.as_bytes()).is_some();
    }
    FETCHABLE.iter().any(|s| {
        let base = format!("fetch_{s}");
        key == base || key == format!("{base}_expire") || key == format!("{base}_refresh")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/mail/pg.conf"), text)
    }

    fn message(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_full_file_is_read() {
        let c = parse(
            "# the mail database\n\
             conninfo host=127.0.0.1 port=5433 user=smtpd dbname=mail\n\
             \n\
             query_alias   SELECT target FROM aliases WHERE name = $1\n\
             query_credentials: SELECT login, hash FROM accounts WHERE login = $1\n\
             query_userinfo\tSELECT uid, gid, home FROM accounts WHERE login = $1\n\
             fetch_source SELECT address FROM sources\n\
             fetch_source_expire 30\n\
             fetch_source_refresh 10\n\
             connections 2\n",
        )
        .unwrap();
        assert_eq!(c.conninfo.get_ports(), &[5433]);
        assert_eq!(c.conninfo.get_dbname(), Some("mail"));
        assert_eq!(
            c.conninfo.get_connect_timeout(),
            Some(&Duration::from_secs(5))
        );
        assert_eq!(
            c.queries[&Service::Alias],
            Query {
                sql: "SELECT target FROM aliases WHERE name = $1".into(),
                line: 4
            }
        );
        assert_eq!(
            c.queries[&Service::Credentials].sql,
            "SELECT login, hash FROM accounts WHERE login = $1"
        );
        assert_eq!(c.queries[&Service::Userinfo].line, 6);
        assert_eq!(c.queries.len(), 3);
        let f = &c.fetches[&Service::Source];
        assert_eq!(f.sql, "SELECT address FROM sources");
        assert_eq!(f.expire, Duration::from_secs(30));
        assert_eq!(f.refresh, 10);
        assert!(!c.fetches.contains_key(&Service::Relayhost));
        assert_eq!(c.connections, 2);
    }

    #[test]
    fn defaults_and_urls() {
        let c = parse(
            "conninfo postgresql://smtpd@127.0.0.1:5432/mail?connect_timeout=2\n\
             fetch_relayhost SELECT url FROM relays\n",
        )
        .unwrap();
        assert_eq!(
            c.conninfo.get_connect_timeout(),
            Some(&Duration::from_secs(2))
        );
        assert_eq!(c.connections, DEFAULT_CONNECTIONS);
        let f = &c.fetches[&Service::Relayhost];
        assert_eq!(f.expire, Duration::from_secs(DEFAULT_EXPIRE));
        assert_eq!(f.refresh, DEFAULT_REFRESH);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let cases = [
            (
                "query_alias SELECT 1\n",
                "/etc/mail/pg.conf: conninfo: missing",
            ),
            (
                "conninfo dbname=mail\nquery_alias\n",
                "/etc/mail/pg.conf:2: query_alias: missing value",
            ),
            (
                "conninfo dbname=mail\n\nquery_domain SELECT 1\nquery_domain SELECT 2\n",
                "/etc/mail/pg.conf:4: query_domain: given twice (first on line 3)",
            ),
            (
                "conninfo dbname=mail\nquery_nothing SELECT 1\n",
                "/etc/mail/pg.conf:2: unknown key query_nothing",
            ),
            (
                "conninfo dbname=mail\nfetch_alias SELECT 1\n",
                "/etc/mail/pg.conf:2: unknown key fetch_alias",
            ),
            (
                "conninfo dbname=mail\nfetch_source_expire soon\n",
                "/etc/mail/pg.conf:2: fetch_source_expire: \"soon\" is not a non-negative integer",
            ),
            (
                "conninfo dbname=mail\nconnections 0\n",
                "/etc/mail/pg.conf:2: connections: must be between 1 and 64",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(message(text), expected, "{text:?}");
        }
        let tls = message("conninfo host=db sslmode=require\n");
        assert!(
            tls.starts_with("/etc/mail/pg.conf:1: conninfo: sslmode=require: TLS"),
            "{tls}"
        );
        let bad = message("# x\nconninfo host=a port=notaport\n");
        assert!(bad.starts_with("/etc/mail/pg.conf:2: conninfo: "), "{bad}");
    }

    #[test]
    fn line_splitting_follows_opensmtpd() {
        let cases = [
            ("key value", Some(("key", "value"))),
            (
                "  key\t\tvalue with  spaces  ",
                Some(("key", "value with  spaces")),
            ),
            ("key: value", Some(("key", "value"))),
            ("key:value", Some(("key", "value"))),
            ("key : value", Some(("key", "value"))),
            ("key :value", Some(("key", ":value"))),
            ("key:: value", Some(("key", "value"))),
            ("key", Some(("key", ""))),
            ("key:", Some(("key", ""))),
            ("# comment", None),
            ("   ", None),
        ];
        for (line, expected) in cases {
            assert_eq!(split_line(line), expected, "{line:?}");
        }
    }

    #[test]
    fn a_missing_file_is_reported() {
        let e = Config::load(Path::new("/nonexistent/pg.conf")).unwrap_err();
        assert_eq!(e.line, None);
        assert!(e.to_string().starts_with("/nonexistent/pg.conf: "), "{e}");
    }
}
