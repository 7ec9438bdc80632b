//! The configuration file, with the keys of OpenSMTPD's table-sqlite.
//!
//! One `KEY VALUE` a line; blank lines and `#` comment lines are ignored;
//! the key ends at the first space, tab or `:`, after which blanks and one
//! `:` are skipped. A key without a value, a key given twice or an unknown
//! key is an error, reported with the file and line.
//!
//! Keys: `dbpath` (required), `query_alias`, `query_domain`,
//! `query_credentials`, `query_netaddr`, `query_userinfo`, `query_source`,
//! `query_mailaddr`, `query_addrname`, `query_mailaddrmap`, and
//! `fetch_source` with `fetch_source_expire` (seconds, default 60) and
//! `fetch_source_refresh` (fetches, default 1000). Beyond OpenSMTPD's keys,
//! `query_relayhost`, `query_string`, `query_regex`, `query_auth` and
//! `fetch_relayhost` (with `_expire` and `_refresh`) serve the other
//! services of the protocol.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use smtpd_sdk::table::Service;

/// How the rows of a lookup query make a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One column; the first row is the value.
    Single,
    /// One column; every row, joined with `", "` (alias, mailaddrmap).
    Joined,
    /// This many columns of the first row, joined with `:` (credentials
    /// `user:hash`, userinfo `uid:gid:home`); a query of one column gives
    /// the value whole instead (an extension: OpenSMTPD needs the columns).
    Fields(usize),
}

impl Shape {
    /// The number of columns the query must return.
    pub(crate) fn columns(self) -> usize {
        match self {
            Self::Single | Self::Joined => 1,
            Self::Fields(n) => n,
        }
    }
}

/// The lookup keys: config key, service, shape, and whether OpenSMTPD's
/// table-sqlite has the key (those services are always registered).
const LOOKUP_KEYS: [(&str, Service, Shape, bool); 13] = [
    ("query_alias", Service::Alias, Shape::Joined, true),
    ("query_domain", Service::Domain, Shape::Single, true),
    (
        "query_credentials",
        Service::Credentials,
        Shape::Fields(2),
        true,
    ),
    ("query_netaddr", Service::Netaddr, Shape::Single, true),
    ("query_userinfo", Service::Userinfo, Shape::Fields(3), true),
    ("query_source", Service::Source, Shape::Single, true),
    ("query_mailaddr", Service::Mailaddr, Shape::Single, true),
    ("query_addrname", Service::Addrname, Shape::Single, true),
    (
        "query_mailaddrmap",
        Service::Mailaddrmap,
        Shape::Joined,
        true,
    ),
    ("query_relayhost", Service::Relayhost, Shape::Single, false),
    ("query_string", Service::String, Shape::Single, false),
    ("query_regex", Service::Regex, Shape::Single, false),
    ("query_auth", Service::Auth, Shape::Single, false),
];

/// The fetch keys: config key prefix and service.
const FETCH_KEYS: [(&str, Service); 2] = [
    ("fetch_source", Service::Source),
    ("fetch_relayhost", Service::Relayhost),
];

/// The services OpenSMTPD's table-sqlite registers, configured or not.
pub(crate) fn base_services() -> impl Iterator<Item = Service> {
    LOOKUP_KEYS.iter().filter(|k| k.3).map(|k| k.1)
}

/// An SQL statement and where it was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    /// The config key (`query_alias`, `fetch_source`).
    pub(crate) key: &'static str,
    /// The line of the config file.
    pub(crate) line: usize,
    /// The SQL text.
    pub(crate) sql: String,
}

/// A lookup query (`query_*`): one `?` parameter, the lookup key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lookup {
    pub(crate) service: Service,
    pub(crate) shape: Shape,
    pub(crate) query: Query,
}

/// A fetch query (`fetch_*`): no parameter, one column; its rows are cached
/// and served round-robin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fetch {
    pub(crate) service: Service,
    pub(crate) query: Query,
    /// Re-query after this long.
    pub(crate) expire: Duration,
    /// Re-query after this many fetches.
    pub(crate) refresh: u64,
}

/// A parsed configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    /// The config file, for messages.
    pub(crate) file: PathBuf,
    /// The database.
    pub(crate) dbpath: PathBuf,
    /// The line of `dbpath`.
    pub(crate) dbpath_line: usize,
    pub(crate) lookups: Vec<Lookup>,
    pub(crate) fetches: Vec<Fetch>,
}

/// A configuration error: `FILE:LINE: message` (or `FILE: message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    pub(crate) file: PathBuf,
    pub(crate) line: Option<usize>,
    pub(crate) message: String,
}

impl ConfigError {
    pub(crate) fn at(file: &Path, line: usize, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: Some(line),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Splits a line into key and value as OpenSMTPD's table backends do.
/// `None` for blank and comment lines.
fn split(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_matches([' ', '\t']);
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line.find([' ', '\t', ':']).unwrap_or(line.len());
    let (key, rest) = line.split_at(end);
    let rest = rest.trim_start_matches([' ', '\t']);
    let rest = rest.strip_prefix(':').unwrap_or(rest);
    Some((key, rest.trim_start_matches([' ', '\t'])))
}

/// Reads and parses the configuration file at `path`.
pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        message: e.to_string(),
    })?;
    parse(path, &text)
}

/// Parses the text of a configuration file; `file` names it in errors.
pub(crate) fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
    let mut seen: Vec<(String, usize)> = Vec::new();
    let mut dbpath = None;
    let mut lookups = Vec::new();
    let mut fetch_sql: Vec<(Service, Query)> = Vec::new();
    let mut numbers: Vec<(String, usize, u64)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let Some((key, value)) = split(raw) else {
            continue;
        };
        if value.is_empty() {
            return Err(ConfigError::at(file, line, format!("{key} has no value")));
        }
        if let Some((_, first)) = seen.iter().find(|(k, _)| k == key) {
            return Err(ConfigError::at(
                file,
                line,
                format!("{key} given twice (first on line {first})"),
            ));
        }
        seen.push((key.to_owned(), line));
        if key == "dbpath" {
            dbpath = Some((PathBuf::from(value), line));
        } else if let Some(&(name, service, shape, _)) = LOOKUP_KEYS.iter().find(|k| k.0 == key) {
            let sql = value.to_owned();
            let query = Query {
                key: name,
                line,
                sql,
            };
            lookups.push(Lookup {
                service,
                shape,
                query,
            });
        } else if let Some(&(name, service)) = FETCH_KEYS.iter().find(|k| k.0 == key) {
            let sql = value.to_owned();
            fetch_sql.push((
                service,
                Query {
                    key: name,
                    line,
                    sql,
                },
            ));
        } else if FETCH_KEYS
            .iter()
            .any(|(name, _)| key == format!("{name}_expire") || key == format!("{name}_refresh"))
        {
            let n = value.parse::<u64>().map_err(|_| {
                ConfigError::at(file, line, format!("{key}: {value:?} is not a number"))
            })?;
            numbers.push((key.to_owned(), line, n));
        } else {
            return Err(ConfigError::at(file, line, format!("unknown key {key}")));
        }
    }
    let number = |name: String, default: u64| -> Result<u64, ConfigError> {
        Ok(numbers
            .iter()
            .find(|(k, _, _)| *k == name)
            .map_or(default, |&(_, _, n)| n))
    };
    let mut fetches = Vec::new();
    for (service, query) in fetch_sql {
        let expire = Duration::from_secs(number(format!("{}_expire", query.key), 60)?);
        let refresh = number(format!("{}_refresh", query.key), 1000)?;
        fetches.push(Fetch {
            service,
            query,
            expire,
            refresh,
        });
    }
    for (key, line, _) in &numbers {
        let prefix = key.rsplit_once('_').map_or("", |(p, _)| p);
        if !fetches.iter().any(|f| f.query.key == prefix) {
            return Err(ConfigError::at(
                file,
                *line,
                format!("{key} without {prefix}"),
            ));
        }
    }
    let Some((dbpath, dbpath_line)) = dbpath else {
        return Err(ConfigError {
            file: file.to_path_buf(),
            line: None,
            message: "dbpath is missing".into(),
        });
    };
    Ok(Config {
        file: file.to_path_buf(),
        dbpath,
        dbpath_line,
        lookups,
        fetches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Config, String> {
        parse(Path::new("/etc/mail/sqlite.conf"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn keys_and_values() {
        let c = parse_text(
            "# a comment\n\
             \n\
             dbpath /var/db/mail.sqlite\n\
             query_alias\tSELECT target FROM forwards WHERE address = ?\n\
             query_credentials: SELECT login, hash FROM accounts WHERE login = ?\n\
             \x20 query_userinfo   SELECT 2000, 2000, '/var/vmail/' || login FROM accounts WHERE login = ?  \n\
             fetch_source SELECT addr FROM sources\n\
             fetch_source_expire 5\n",
        )
        .expect("valid");
        assert_eq!(c.dbpath, PathBuf::from("/var/db/mail.sqlite"));
        assert_eq!(c.dbpath_line, 3);
        assert_eq!(c.lookups.len(), 3);
        assert_eq!(c.lookups[0].service, Service::Alias);
        assert_eq!(c.lookups[0].shape, Shape::Joined);
        assert_eq!(
            c.lookups[0].query.sql,
            "SELECT target FROM forwards WHERE address = ?"
        );
        assert_eq!(c.lookups[1].shape.columns(), 2);
        assert_eq!(
            c.lookups[1].query.sql,
            "SELECT login, hash FROM accounts WHERE login = ?"
        );
        assert_eq!(c.lookups[2].query.line, 6);
        assert_eq!(c.lookups[2].shape.columns(), 3);
        assert!(c.lookups[2].query.sql.ends_with("login = ?"));
        assert_eq!(c.fetches.len(), 1);
        assert_eq!(c.fetches[0].service, Service::Source);
        assert_eq!(c.fetches[0].expire, Duration::from_secs(5));
        assert_eq!(c.fetches[0].refresh, 1000);
    }

    #[test]
    fn extension_keys() {
        let c = parse_text(
            "dbpath /db\nquery_string SELECT 1 WHERE ? = 'x'\nfetch_relayhost SELECT url FROM relays\nfetch_relayhost_refresh 3\n",
        )
        .expect("valid");
        assert_eq!(c.lookups[0].service, Service::String);
        assert_eq!(c.fetches[0].service, Service::Relayhost);
        assert_eq!(c.fetches[0].refresh, 3);
        assert_eq!(c.fetches[0].expire, Duration::from_secs(60));
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases = [
            (
                "dbpath /db\nquery_alias\n",
                "/etc/mail/sqlite.conf:2: query_alias has no value",
            ),
            (
                "dbpath /db\n\nquery_domain SELECT 1\nquery_domain SELECT 2\n",
                "/etc/mail/sqlite.conf:4: query_domain given twice (first on line 3)",
            ),
            (
                "dbpath /db\nquery_nothing x\n",
                "/etc/mail/sqlite.conf:2: unknown key query_nothing",
            ),
            (
                "dbpath /db\nfetch_source SELECT 1\nfetch_source_expire soon\n",
                "/etc/mail/sqlite.conf:3: fetch_source_expire: \"soon\" is not a number",
            ),
            (
                "dbpath /db\nfetch_source_refresh 10\n",
                "/etc/mail/sqlite.conf:2: fetch_source_refresh without fetch_source",
            ),
            (
                "query_domain SELECT 1\n",
                "/etc/mail/sqlite.conf: dbpath is missing",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_text(text).expect_err(text), expected);
        }
    }

    #[test]
    fn base_services_are_opensmtpd_s() {
        assert_eq!(base_services().count(), 9);
        assert!(!base_services().any(|s| s == Service::Relayhost));
    }
}
