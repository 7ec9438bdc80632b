//! The configuration file of table-ldap: OpenSMTPD's `table-ldap` keys.
//!
//! One `key value` per line; `#` starts a comment line, blank lines are
//! skipped; the value is the rest of the line, surrounding blanks removed.
//! Keys: `url`, `username`, `password`, `basedn`, `ca_file`, and per
//! service `SERVICE_filter` / `SERVICE_attributes`. Two keys of this
//! implementation come on top: `starttls yes|no` (upgrade a plain `ldap://`
//! connection with StartTLS) and `timeout SECONDS` (connect and per-query
//! deadline, 10 by default). Every error names the file and the line.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use smtpd_sdk::table::Service;

use crate::filter::Template;

/// The most attributes a service may list, as in OpenSMTPD.
const MAX_ATTRIBUTES: usize = 6;

/// The default connect and query deadline.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub(crate) url: String,
    /// Bind DN and password; anonymous when absent.
    pub(crate) bind: Option<(String, String)>,
    /// The search base (subtree scope).
    pub(crate) basedn: String,
    /// A PEM CA bundle for ldaps and StartTLS.
    pub(crate) ca_file: Option<PathBuf>,
    /// Upgrade `ldap://` with StartTLS.
    pub(crate) starttls: bool,
    /// Connect and query deadline.
    pub(crate) timeout: Duration,
    /// One query per served service, in protocol order.
    pub(crate) queries: Vec<Query>,
}

/// How one service is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    /// The service.
    pub(crate) service: Service,
    /// The search filter, with its placeholders.
    pub(crate) filter: Template,
    /// The attributes read from each entry.
    pub(crate) attributes: Vec<String>,
}

/// A configuration error: `FILE:LINE: message` (no line for whole-file
/// problems).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    file: String,
    line: Option<usize>,
    message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// The number of attributes each service needs (`None`: exactly one).
fn attribute_count(service: Service) -> usize {
    match service {
        Service::Credentials => 2,
        Service::Userinfo => 3,
        _ => 1,
    }
}

impl Config {
    /// Reads and parses `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            message: e.to_string(),
        })?;
        Self::parse(&file, &text)
    }

    /// Parses the text of a configuration file named `file` (for messages).
    pub(crate) fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        let err = |line: Option<usize>, message: String| ConfigError {
            file: file.to_owned(),
            line,
            message,
        };
        let mut url = None;
        let mut username = None;
        let mut password = None;
        let mut basedn = None;
        let mut ca_file = None;
        let mut starttls = None;
        let mut timeout = None;
        // Per service: (filter, its line), (attributes, their line).
        let mut filters: Vec<(Service, Template, usize)> = Vec::new();
        let mut attributes: Vec<(Service, Vec<String>, usize)> = Vec::new();

        for (index, raw) in text.lines().enumerate() {
            let n = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = match line.split_once(char::is_whitespace) {
                Some((k, v)) => (k, v.trim()),
                None => (line, ""),
            };
            if value.is_empty() {
                return Err(err(Some(n), format!("{key}: missing value")));
            }
            let once = |slot: &Option<(String, usize)>| match slot {
                Some((_, first)) => Err(err(
                    Some(n),
                    format!("{key}: given twice (first at line {first})"),
                )),
                None => Ok(Some((value.to_owned(), n))),
            };
            match key {
                "url" => url = once(&url)?,
                "username" => username = once(&username)?,
                "password" => password = once(&password)?,
                "basedn" => basedn = once(&basedn)?,
                "ca_file" => ca_file = once(&ca_file)?,
                "starttls" => starttls = once(&starttls)?,
                "timeout" => timeout = once(&timeout)?,
                _ => {
                    let Some((service, kind)) = service_key(key) else {
                        return Err(err(Some(n), format!("unknown key {key:?}")));
                    };
                    match kind {
                        Kind::Filter => {
                            if let Some((_, _, first)) =
                                filters.iter().find(|(s, _, _)| *s == service)
                            {
                                return Err(err(
                                    Some(n),
                                    format!("{key}: given twice (first at line {first})"),
                                ));
                            }
                            let template = Template::parse(value)
                                .map_err(|e| err(Some(n), format!("{key}: {e}")))?;
                            filters.push((service, template, n));
                        }
                        Kind::Attributes => {
                            if let Some((_, _, first)) =
                                attributes.iter().find(|(s, _, _)| *s == service)
                            {
                                return Err(err(
                                    Some(n),
                                    format!("{key}: given twice (first at line {first})"),
                                ));
                            }
                            let list = parse_attributes(service, value)
                                .map_err(|e| err(Some(n), format!("{key}: {e}")))?;
                            attributes.push((service, list, n));
                        }
                    }
                }
            }
        }

        let (url, url_line) = url.ok_or_else(|| err(None, "url: missing".to_owned()))?;
        if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
            return Err(err(
                Some(url_line),
                format!("url: {url:?} is neither ldap:// nor ldaps://"),
            ));
        }
        let (basedn, _) = basedn.ok_or_else(|| err(None, "basedn: missing".to_owned()))?;
        let bind = match (username, password) {
            (Some((u, _)), Some((p, _))) => Some((u, p)),
            (None, None) => None,
            (Some((_, n)), None) => {
                return Err(err(Some(n), "username given without password".to_owned()))
            }
            (None, Some((_, n))) => {
                return Err(err(Some(n), "password given without username".to_owned()))
            }
        };
        let starttls = match starttls {
            None => false,
            Some((v, n)) => match v.as_str() {
                "yes" => true,
                "no" => false,
                _ => return Err(err(Some(n), format!("starttls: {v:?} is not yes or no"))),
            },
        };
        if starttls && url.starts_with("ldaps://") {
            return Err(err(
                Some(url_line),
                "url: starttls applies to ldap:// only".to_owned(),
            ));
        }
        let timeout = match timeout {
            None => DEFAULT_TIMEOUT,
            Some((v, n)) => match v.parse::<u64>() {
                Ok(secs) if secs > 0 => Duration::from_secs(secs),
                _ => {
                    return Err(err(
                        Some(n),
                        format!("timeout: {v:?} is not a positive number of seconds"),
                    ))
                }
            },
        };

        let mut queries = Vec::new();
        for service in Service::ALL {
            let filter = filters.iter().find(|(s, _, _)| *s == service);
            let attrs = attributes.iter().find(|(s, _, _)| *s == service);
            match (filter, attrs) {
                (Some((_, filter, _)), Some((_, attrs, _))) => queries.push(Query {
                    service,
                    filter: filter.clone(),
                    attributes: attrs.clone(),
                }),
                (None, None) => {}
                (Some((_, _, n)), None) => {
                    return Err(err(
                        Some(*n),
                        format!("{service}_filter given without {service}_attributes"),
                    ))
                }
                (None, Some((_, _, n))) => {
                    return Err(err(
                        Some(*n),
                        format!("{service}_attributes given without {service}_filter"),
                    ))
                }
            }
        }
        if queries.is_empty() {
            return Err(err(
                None,
                "no service configured (no SERVICE_filter and SERVICE_attributes)".to_owned(),
            ));
        }
        Ok(Self {
            url,
            bind,
            basedn,
            ca_file: ca_file.map(|(p, _)| PathBuf::from(p)),
            starttls,
            timeout,
            queries,
        })
    }

    /// The query of `service`, if it is served.
    pub(crate) fn query(&self, service: Service) -> Option<&Query> {
        self.queries.iter().find(|q| q.service == service)
    }
}

enum Kind {
    Filter,
    Attributes,
}

/// `alias_filter` → (Alias, Filter). Every service but `auth` (a
/// password check, which a search filter cannot do) may be configured.
fn service_key(key: &str) -> Option<(Service, Kind)> {
    let (name, kind) = if let Some(name) = key.strip_suffix("_filter") {
        (name, Kind::Filter)
    } else if let Some(name) = key.strip_suffix("_attributes") {
        (name, Kind::Attributes)
    } else {
        return None;
    };
    let service = Service::ALL
        .into_iter()
        .find(|s| s.name() == name && *s != Service::Auth)?;
    Some((service, kind))
}

fn parse_attributes(service: Service, value: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = value.split(',').map(|a| a.trim().to_owned()).collect();
    if list.iter().any(String::is_empty) {
        return Err("empty attribute name".to_owned());
    }
    if let Some(bad) = list.iter().find(|a| {
        !a.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ';')
    }) {
        return Err(format!("{bad:?} is not an attribute name"));
    }
    if list.len() > MAX_ATTRIBUTES {
        return Err(format!("at most {MAX_ATTRIBUTES} attributes"));
    }
    let want = attribute_count(service);
    if list.len() != want {
        return Err(format!(
            "{service} needs {want} attribute{}, {} given",
            if want == 1 { "" } else { "s" },
            list.len()
        ));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
# a comment
url          ldap://127.0.0.1:389
username     cn=admin,dc=example,dc=org
password     secret
basedn       dc=example,dc=org

alias_filter        (&(objectClass=mailAlias)(mail=%u))
alias_attributes    mailForward
credentials_filter  (uid=%s)
credentials_attributes uid, userPassword
userinfo_filter     (uid=%u)
userinfo_attributes uidNumber,gidNumber,homeDirectory
";

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse("t.conf", text).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_opensmtpd_keys() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.url, "ldap://127.0.0.1:389");
        assert_eq!(
            c.bind,
            Some(("cn=admin,dc=example,dc=org".to_owned(), "secret".to_owned()))
        );
        assert_eq!(c.basedn, "dc=example,dc=org");
        assert!(!c.starttls);
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        let services: Vec<Service> = c.queries.iter().map(|q| q.service).collect();
        assert_eq!(
            services,
            [Service::Alias, Service::Credentials, Service::Userinfo]
        );
        let creds = c.query(Service::Credentials).expect("credentials");
        assert_eq!(creds.attributes, ["uid", "userPassword"]);
        assert_eq!(creds.filter.expand("a*", "t"), "(uid=a\\2a)");
        assert!(c.query(Service::Domain).is_none());
    }

    #[test]
    fn extension_keys() {
        let c = parse(&format!(
            "{GOOD}starttls yes\ntimeout 3\nca_file /etc/ca.pem\n"
        ))
        .expect("valid");
        assert!(c.starttls);
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert_eq!(c.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert!(Config::parse("t.conf", "").is_err());
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases: &[(&str, &str)] = &[
            ("url ldap://h\nbogus x\n", "t.conf:2: unknown key \"bogus\""),
            ("url\n", "t.conf:1: url: missing value"),
            ("url ldapi://x\nbasedn o=x\nalias_filter (a=%u)\nalias_attributes a\n", "t.conf:1: url: \"ldapi://x\" is neither"),
            ("url ldap://x\nurl ldap://y\n", "t.conf:2: url: given twice (first at line 1)"),
            ("url ldap://x\nbasedn o=x\nalias_filter (a=%z)\n", "t.conf:3: alias_filter: unknown placeholder %z"),
            ("url ldap://x\nbasedn o=x\ncredentials_filter (a=%u)\ncredentials_attributes a\n", "t.conf:4: credentials_attributes: credentials needs 2 attributes, 1 given"),
            ("url ldap://x\nbasedn o=x\nalias_attributes a,b,c,d,e,f,g\n", "t.conf:3: alias_attributes: at most 6 attributes"),
            ("url ldap://x\nbasedn o=x\nalias_filter (a=%u)\n", "t.conf:3: alias_filter given without alias_attributes"),
            ("url ldap://x\nbasedn o=x\nusername cn=x\nalias_filter (a=%u)\nalias_attributes a\n", "t.conf:3: username given without password"),
            ("url ldap://x\nbasedn o=x\ntimeout 0\n", "t.conf:3: timeout: \"0\" is not a positive"),
            ("url ldap://x\nbasedn o=x\nauth_filter (a=%u)\n", "t.conf:3: unknown key \"auth_filter\""),
            ("url ldap://x\nbasedn o=x\n", "t.conf: no service configured"),
            ("basedn o=x\n", "t.conf: url: missing"),
            ("url ldaps://x\nstarttls yes\nbasedn o=x\nalias_filter (a=%u)\nalias_attributes a\n", "t.conf:1: url: starttls applies to ldap:// only"),
        ];
        for (text, want) in cases {
            let got = parse(text).expect_err(text);
            assert!(
                got.starts_with(want),
                "{text:?}: got {got:?}, want {want:?}"
            );
        }
    }
}
