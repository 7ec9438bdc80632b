//! `listen on ... hostnames <t>`: the server name of a session chosen by
//! the local address its client connected to, as OpenSMTPD 7.8 chooses it
//! (`smtp_lookup_servername`, `lka_addrname`).
//!
//! Before the greeting, the table's `addrname` service is asked for the
//! listener's address (`192.0.2.1`, `[2001:db8::1]`, the form of
//! tables.md); the value found names the server in the greeting, the
//! HELO answer, the `Received:` header and the envelopes, and completes
//! bare local parts at MAIL FROM and RCPT TO. A miss keeps the listener's
//! `hostname` (or the server name), and so does a table that cannot
//! answer (logged), as in OpenSMTPD. A value that cannot be a host name
//! (empty, longer than 255 bytes, with spaces or control characters) is
//! logged and ignored.

use std::net::IpAddr;

use crate::config::TableId;
use crate::table::{Service, Tables};

/// The longest server name (OpenSMTPD's `HOST_NAME_MAX`).
const MAX_NAME: usize = 255;

/// The table key of a local address: `192.0.2.1` or `[2001:db8::1]`.
pub(super) fn key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Whether `value` may name the server.
fn usable(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_NAME
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The server name the `hostnames` table gives the local address `ip`,
/// if it gives a usable one.
pub(super) async fn lookup(tables: &Tables, table: TableId, ip: IpAddr) -> Option<String> {
    let table = tables.get(table);
    let key = key(ip);
    match table.lookup(Service::Addrname, &key).await {
        Ok(Some(name)) if usable(&name) => Some(name),
        Ok(Some(name)) => {
            tracing::warn!(
                "hostnames: table {}: {name:?} for {key} is no host name, ignored",
                table.name()
            );
            None
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("hostnames: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{Config, LoadOptions};
    use crate::table::unavailable::UnavailableTable;
    use crate::table::{self, BuildOptions, Table};

    #[test]
    fn keys_are_the_text_of_tables_md() {
        let cases = [
            ("192.0.2.1", "192.0.2.1"),
            ("2001:db8::1", "[2001:db8::1]"),
            ("::1", "[::1]"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
        ];
        for (ip, expected) in cases {
            assert_eq!(key(ip.parse().unwrap()), expected);
        }
    }

    #[tokio::test]
    async fn names_by_address_misses_and_failures() {
        let config = Config::parse_str(
            "smtpd.conf",
            "table names { 127.0.0.1 = mx1.test, \"[::1]\" = mx6.test, \
             127.0.0.3 = \"bad name\" }\n\
             listen on 127.0.0.1 hostnames <names>\n\
             action \"l\" maildir\nmatch from any for any action \"l\"\n",
            &LoadOptions::default(),
        )
        .unwrap()
        .config;
        let id = config.listeners[0].hostnames.unwrap();
        let tables = table::build(&config, &BuildOptions::default())
            .await
            .unwrap();
        let cases = [
            ("127.0.0.1", Some("mx1.test")),
            ("::1", Some("mx6.test")),
            ("127.0.0.2", None),
            ("127.0.0.3", None),
        ];
        for (ip, expected) in cases {
            let found = lookup(&tables, id, ip.parse().unwrap()).await;
            assert_eq!(found.as_deref(), expected, "{ip}");
        }
        let down = Tables::new(
            tables
                .iter()
                .map(|t| match t.name() {
                    "names" => Arc::new(UnavailableTable("names".to_owned())) as Arc<dyn Table>,
                    _ => Arc::clone(t),
                })
                .collect(),
        );
        assert_eq!(lookup(&down, id, "127.0.0.1".parse().unwrap()).await, None);
    }

    #[test]
    fn usable_names() {
        assert!(usable("mx.example.org"));
        for bad in ["", "a b", "a\tb", "a\u{7f}", &"x".repeat(256)] {
            assert!(!usable(bad), "{bad:?}");
        }
    }
}
