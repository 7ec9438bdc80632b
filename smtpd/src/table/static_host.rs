//! What the built-in tables hold (smtpd-conf.md section 3.3): the server
//! name, the host name and the addresses of the local interfaces, found at
//! start-up (and again when a built-in table is updated).
//!
//! [`LocalHost::detect`] reads the first line of `/etc/mail/mailname` for
//! the server name, else uses `gethostname(3)`, and lists the interface
//! addresses with `getifaddrs(3)`. Unlike OpenSMTPD, a host name without a
//! dot is not canonicalised through the resolver: that would be a DNS query
//! at start-up, and the name only matters to `for local` rules, where the
//! short name is what local mail uses anyway. `static_table.rs` turns a
//! [`LocalHost`] into the content of each built-in table.

use std::ffi::CStr;
use std::io;
use std::net::IpAddr;
use std::path::Path;

use crate::config::BuiltinTable;
use crate::interfaces;

/// Where OpenSMTPD reads the server name from, when the file exists.
const MAILNAME_FILE: &str = "/etc/mail/mailname";

/// The local facts the built-in tables are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalHost {
    /// The server name: `/etc/mail/mailname`'s first line, else the host
    /// name.
    pub server_name: String,
    /// The host name as `gethostname(3)` gives it.
    pub host_name: String,
    /// The addresses of every local interface.
    pub addresses: Vec<IpAddr>,
}

impl LocalHost {
    /// Finds the server name, host name and interface addresses of this
    /// machine.
    pub fn detect() -> io::Result<Self> {
        let host_name = host_name()?;
        let server_name = mailname(Path::new(MAILNAME_FILE)).unwrap_or_else(|| host_name.clone());
        Ok(Self {
            server_name,
            host_name,
            addresses: interface_addresses()?,
        })
    }

    /// The entries of a built-in table (a list), lower-cased.
    pub(crate) fn entries(&self, table: BuiltinTable) -> Vec<String> {
        let addresses = self.addresses.iter().map(|a| address_text(*a));
        let entries: Vec<String> = match table {
            BuiltinTable::Localhost => std::iter::once("local".to_owned())
                .chain(addresses)
                .collect(),
            BuiltinTable::Anyhost => vec!["local".into(), "0.0.0.0/0".into(), "::/0".into()],
            BuiltinTable::Localnames => ["localhost".to_owned(), self.server_name.clone()]
                .into_iter()
                .chain(addresses)
                .collect(),
            BuiltinTable::Anydestination => {
                let mut entries = vec!["*".to_owned()];
                if !self.host_name.eq_ignore_ascii_case(&self.server_name) {
                    entries.push(self.host_name.clone());
                }
                entries
            }
        };
        entries
            .into_iter()
            .filter(|e| !e.is_empty())
            .map(|e| e.to_ascii_lowercase())
            .collect()
    }
}

/// An address as OpenSMTPD writes a session's source: `1.2.3.4`, or IPv6
/// in brackets.
pub(crate) fn address_text(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The first line of the mailname file, if it exists and is not empty.
fn mailname(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

/// `gethostname(3)`.
fn host_name() -> io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for writes of its length; gethostname
    // writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Every IPv4 and IPv6 address of the local interfaces, each once, in the
/// order `getifaddrs(3)` gives them.
fn interface_addresses() -> io::Result<Vec<IpAddr>> {
    let mut addresses = Vec::new();
    for found in interfaces::all()? {
        if !addresses.contains(&found.address) {
            addresses.push(found.address);
        }
    }
    Ok(addresses)
}

/// A C string as text, for names from the system databases.
pub(crate) fn c_text(ptr: *const libc::c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: the system databases hand out NUL-terminated strings that
    // live as long as the buffer the caller still holds.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> LocalHost {
        LocalHost {
            server_name: "MX.Example.org".to_owned(),
            host_name: "mx".to_owned(),
            addresses: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
        }
    }

    #[test]
    fn builtin_entries() {
        let cases: &[(BuiltinTable, &[&str])] = &[
            (BuiltinTable::Localhost, &["local", "127.0.0.1", "[::1]"]),
            (BuiltinTable::Anyhost, &["local", "0.0.0.0/0", "::/0"]),
            (
                BuiltinTable::Localnames,
                &["localhost", "mx.example.org", "127.0.0.1", "[::1]"],
            ),
            (BuiltinTable::Anydestination, &["*", "mx"]),
        ];
        for (table, expected) in cases {
            assert_eq!(host().entries(*table), *expected, "{table:?}");
        }
        let same = LocalHost {
            host_name: "mx.example.org".to_owned(),
            ..host()
        };
        assert_eq!(same.entries(BuiltinTable::Anydestination), ["*"]);
    }

    #[test]
    fn this_machine_has_a_loopback_address_and_a_name() {
        let host = LocalHost::detect().unwrap();
        assert!(!host.host_name.is_empty());
        assert!(!host.server_name.is_empty());
        assert!(
            host.addresses.iter().any(IpAddr::is_loopback),
            "{:?}",
            host.addresses
        );
    }

    #[test]
    fn mailname_is_the_first_line() {
        let dir = std::env::temp_dir().join(format!("smtpd-mailname-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("mailname");
        std::fs::write(&file, "  mail.example.org \nother\n").unwrap();
        assert_eq!(mailname(&file).as_deref(), Some("mail.example.org"));
        std::fs::write(&file, "\n").unwrap();
        assert_eq!(mailname(&file), None);
        assert_eq!(mailname(&dir.join("missing")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
