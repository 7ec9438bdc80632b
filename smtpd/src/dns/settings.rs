//! Where the resolver sends its queries and how long it waits: the
//! nameservers and the `timeout` / `attempts` options of a resolv.conf
//! file, or the nameservers named on the command line.
//!
//! Only `nameserver` lines and `options timeout:N attempts:N` matter: the
//! daemon asks for absolute names only, so `search`, `domain` and `ndots`
//! change nothing. A line the parser does not understand is logged and
//! skipped, as the C library skips it. A file without nameservers means
//! the local host (127.0.0.1 and ::1, port 53), as for the C library and
//! OpenSMTPD's asr.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The resolv.conf read when no other is named.
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The port of a nameserver named without one.
pub const DNS_PORT: u16 = 53;

/// The longest a lookup may take, whatever resolv.conf says: a session
/// whose client has no answering nameserver is delayed by this much at
/// most before its greeting.
pub const MAX_LOOKUP_TIME: Duration = Duration::from_secs(5);

/// resolv.conf's default `timeout` (seconds), as the C library's.
const DEFAULT_TIMEOUT: u32 = 5;

/// resolv.conf's default `attempts`, as the C library's.
const DEFAULT_ATTEMPTS: u32 = 2;

/// How the resolver reaches the DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The nameservers, in order; each is asked over UDP, and over TCP when
    /// an answer does not fit in a datagram. Never empty.
    pub nameservers: Vec<SocketAddr>,
    /// How long one query waits for an answer (resolv.conf `timeout`).
    pub timeout: Duration,
    /// How many times a query is sent before giving up (resolv.conf
    /// `attempts`).
    pub attempts: u32,
}

/// Why the resolver's configuration cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {source}", path.display())]
pub struct ResolvConfError {
    /// The file named with `--resolv-conf`.
    pub path: PathBuf,
    /// The system's error.
    #[source]
    pub source: io::Error,
}

impl Settings {
    /// The settings the daemon runs with.
    ///
    /// With `nameservers`, only those are asked; resolv.conf is then read
    /// for its options only if `resolv_conf` names it. Otherwise the
    /// nameservers and options come from `resolv_conf`, by default
    /// [`DEFAULT_RESOLV_CONF`]. A file named explicitly must be readable;
    /// a missing default file is logged and means the local host.
    pub fn load(
        resolv_conf: Option<&Path>,
        nameservers: &[SocketAddr],
    ) -> Result<Self, ResolvConfError> {
        let mut settings = match resolv_conf {
            Some(path) => {
                let text = std::fs::read(path).map_err(|source| ResolvConfError {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::parse(path, &text)
            }
            None if nameservers.is_empty() => match std::fs::read(DEFAULT_RESOLV_CONF) {
                Ok(text) => Self::parse(Path::new(DEFAULT_RESOLV_CONF), &text),
                Err(e) => {
                    tracing::warn!("cannot read {DEFAULT_RESOLV_CONF}: {e}; using 127.0.0.1");
                    Self::parse(Path::new(DEFAULT_RESOLV_CONF), b"")
                }
            },
            None => Self::with_nameservers(nameservers.to_vec()),
        };
        if !nameservers.is_empty() {
            settings.nameservers = nameservers.to_vec();
        }
        Ok(settings)
    }

    /// The default options with `nameservers` (the local host if empty).
    pub fn with_nameservers(nameservers: Vec<SocketAddr>) -> Self {
        let mut settings = Self::from_resolv_conf(b"").0;
        if !nameservers.is_empty() {
            settings.nameservers = nameservers;
        }
        settings
    }

    /// The settings of a resolv.conf holding `text`, and a description of
    /// each line that was skipped.
    pub fn from_resolv_conf(text: &[u8]) -> (Self, Vec<String>) {
        let (parsed, errors) = resolv_conf::Config::parse_with_errors(text);
        let nameservers = parsed
            .get_nameservers_or_local()
            .iter()
            .map(|ip| SocketAddr::new(IpAddr::from(ip), DNS_PORT))
            .collect();
        let settings = Self {
            nameservers,
            timeout: Duration::from_secs(u64::from(non_zero(parsed.timeout, DEFAULT_TIMEOUT))),
            attempts: non_zero(parsed.attempts, DEFAULT_ATTEMPTS),
        };
        (settings, errors.iter().map(ToString::to_string).collect())
    }

    /// How long a lookup may take: `timeout` × `attempts`, at most
    /// [`MAX_LOOKUP_TIME`].
    pub fn lookup_time(&self) -> Duration {
        self.timeout
            .saturating_mul(self.attempts)
            .min(MAX_LOOKUP_TIME)
    }

    fn parse(path: &Path, text: &[u8]) -> Self {
        let (settings, skipped) = Self::from_resolv_conf(text);
        for line in skipped {
            tracing::warn!("{}: {line}, skipped", path.display());
        }
        settings
    }
}

/// The value of `--nameserver`: `IP` (port 53), `IP:PORT`, or `[IPv6]:PORT`.
pub fn parse_nameserver(text: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DNS_PORT));
    }
    text.parse::<SocketAddr>()
        .map_err(|_| format!("not an IP address or IP:PORT: {text:?}"))
}

/// `value`, or `default` where resolv.conf says 0 (which would make every
/// query fail at once).
fn non_zero(value: u32, default: u32) -> u32 {
    if value == 0 {
        default
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn resolv_conf_nameservers_and_options() {
        let (settings, skipped) = Settings::from_resolv_conf(
            b"# comment\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n\
              search example.org\noptions timeout:1 attempts:3 ndots:2\n",
        );
        assert_eq!(
            settings,
            Settings {
                nameservers: vec![addr("192.0.2.53:53"), addr("[2001:db8::53]:53")],
                timeout: Duration::from_secs(1),
                attempts: 3,
            }
        );
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(settings.lookup_time(), Duration::from_secs(3));
    }

    #[test]
    fn defaults_bad_lines_and_the_bound() {
        let (settings, skipped) = Settings::from_resolv_conf(
            b"nameserver not-an-ip\nfrobnicate yes\noptions timeout:0\n",
        );
        assert_eq!(
            settings.nameservers,
            [addr("127.0.0.1:53"), addr("[::1]:53")],
            "no nameserver: the local host"
        );
        assert_eq!(settings.timeout, Duration::from_secs(5));
        assert_eq!(settings.attempts, 2);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert_eq!(settings.lookup_time(), MAX_LOOKUP_TIME);
    }

    #[test]
    fn nameserver_arguments() {
        for (text, expected) in [
            ("192.0.2.1", "192.0.2.1:53"),
            ("127.0.0.1:5353", "127.0.0.1:5353"),
            ("::1", "[::1]:53"),
            ("[::1]:5353", "[::1]:5353"),
        ] {
            assert_eq!(parse_nameserver(text), Ok(addr(expected)), "{text}");
        }
        for bad in [
            "",
            "localhost",
            "192.0.2.1:",
            "::1:5353x",
            "192.0.2.1:70000",
        ] {
            assert!(parse_nameserver(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn command_line_nameservers_override_the_file() {
        let dir = std::env::temp_dir().join(format!("smtpd-dns-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resolv.conf");
        std::fs::write(
            &path,
            "nameserver 192.0.2.53\noptions timeout:2 attempts:1\n",
        )
        .unwrap();
        let only_file = Settings::load(Some(&path), &[]).unwrap();
        assert_eq!(only_file.nameservers, [addr("192.0.2.53:53")]);
        let both = Settings::load(Some(&path), &[addr("127.0.0.1:5300")]).unwrap();
        assert_eq!(both.nameservers, [addr("127.0.0.1:5300")]);
        assert_eq!(
            both.timeout,
            Duration::from_secs(2),
            "the file's options stay"
        );
        let only_flag = Settings::load(None, &[addr("127.0.0.1:5300")]).unwrap();
        assert_eq!(
            only_flag,
            Settings::with_nameservers(vec![addr("127.0.0.1:5300")])
        );
        let err = Settings::load(Some(&dir.join("missing")), &[]).unwrap_err();
        assert!(err.to_string().starts_with("cannot read "), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
