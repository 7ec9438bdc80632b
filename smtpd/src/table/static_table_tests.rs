//! Tests of the tables the daemon serves itself.

use std::path::{Path, PathBuf};

use super::*;
use crate::config::ProcCommand;

fn list(name: &str, keys: &[&str]) -> StaticTable {
    let table = config::Table {
        name: name.to_owned(),
        backend: TableBackend::Inline(StaticContent::List(
            keys.iter().map(|k| (*k).to_owned()).collect(),
        )),
    };
    StaticTable::from_config(&table).unwrap()
}

fn mapping(name: &str, pairs: &[(&str, &str)]) -> StaticTable {
    let table = config::Table {
        name: name.to_owned(),
        backend: TableBackend::Inline(StaticContent::Mapping(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )),
    };
    StaticTable::from_config(&table).unwrap()
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "smtpd-static-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn file_table(path: &Path) -> StaticTable {
    let file = TableFile::parse(&std::fs::read(path).unwrap()).unwrap();
    let content = match file.form() {
        Form::List => StaticContent::List(file.entries().iter().map(|e| e.key.clone()).collect()),
        Form::Mapping => StaticContent::Mapping(
            file.entries()
                .iter()
                .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
                .collect(),
        ),
    };
    let table = config::Table {
        name: "file".to_owned(),
        backend: TableBackend::File {
            path: path.to_owned(),
            content,
        },
    };
    StaticTable::from_config(&table).unwrap()
}

#[tokio::test]
async fn check_uses_the_service_comparison() {
    let table = list(
        "mixed",
        &[
            "example.org",
            "*.example.net",
            "192.0.2.0/24",
            "[2001:db8::]/32",
            "local",
            "alice@example.com",
            "@example.edu",
            "^mx[0-9]+\\.",
            "Upper",
        ],
    );
    let cases: &[(Service, &str, bool)] = &[
        (Service::Domain, "example.org", true),
        (Service::Domain, "EXAMPLE.ORG", true),
        (Service::Domain, "mx.example.org", false),
        (Service::Domain, "mx.example.net", true),
        (Service::Domain, "a.b.example.net", true),
        (Service::Domain, "example.net", false),
        (Service::Netaddr, "192.0.2.7", true),
        (Service::Netaddr, "192.0.3.7", false),
        (Service::Netaddr, "[2001:db8::25]", true),
        (Service::Netaddr, "[2001:db9::25]", false),
        (Service::Netaddr, "local", true),
        (Service::Netaddr, "LOCAL", true),
        (Service::Mailaddr, "alice@example.com", true),
        (Service::Mailaddr, "Alice+tag@Example.com", true),
        (Service::Mailaddr, "bob@example.com", false),
        (Service::Mailaddr, "bob@example.edu", true),
        (Service::Regex, "mx12.example.org", true),
        (Service::Regex, "MX12.example.org", true),
        // Every entry is an expression: `example.org` is found in this one.
        (Service::Regex, "smtp.example.org", true),
        (Service::Regex, "smtp.example.com", false),
        (Service::String, "upper", true),
        (Service::String, "UPPER", true),
        (Service::String, "example", false),
        (Service::Credentials, "example.org", true),
        (Service::Alias, "*.example.net", true),
        (Service::Alias, "a.example.net", false),
    ];
    for (service, key, expected) in cases {
        assert_eq!(
            table.check(*service, key).await.unwrap(),
            *expected,
            "{service} {key:?}"
        );
    }
}

#[tokio::test]
async fn regex_entries_are_compiled_once_and_invalid_ones_never_match() {
    let table = list("re", &["(", "(?i)^bad", "\\.example\\.org$"]);
    let cases: &[(&str, bool)] = &[
        ("a.example.org", true),
        ("bad.example.com", true),
        ("(", false),
        ("good.example.com", false),
    ];
    for _ in 0..2 {
        for (key, expected) in cases {
            assert_eq!(
                table.check(Service::Regex, key).await.unwrap(),
                *expected,
                "{key:?}"
            );
        }
    }
}

#[tokio::test]
async fn lookups() {
    let table = mapping(
        "aliases",
        &[
            ("postmaster", "root"),
            ("Abuse", "root, security@example.net"),
            ("@example.org", "catchall"),
            ("alice@example.org", "alice"),
        ],
    );
    let cases: &[(Service, &str, Option<&str>)] = &[
        (Service::Alias, "postmaster", Some("root")),
        (Service::Alias, "POSTMASTER", Some("root")),
        (Service::Alias, "abuse", Some("root, security@example.net")),
        (Service::Alias, "nobody", None),
        (Service::Alias, "alice@example.org", Some("alice")),
        // Lookups of pattern services match as checks do; the first entry
        // in key order wins.
        (Service::Mailaddr, "bob@example.org", Some("catchall")),
        (Service::Mailaddr, "alice@example.org", Some("catchall")),
    ];
    for (service, key, expected) in cases {
        assert_eq!(
            table.lookup(*service, key).await.unwrap().as_deref(),
            *expected,
            "{service} {key:?}"
        );
    }
    let hosts = list("hosts", &["example.org"]);
    assert_eq!(
        hosts
            .lookup(Service::Domain, "EXAMPLE.org")
            .await
            .unwrap()
            .as_deref(),
        Some("example.org")
    );
}

#[tokio::test]
async fn keys_over_1023_bytes_are_errors_not_misses() {
    let table = list("t", &["a"]);
    let long = "a".repeat(1024);
    let expected = Error::InvalidKey {
        table: "t".to_owned(),
        reason: "longer than 1023 bytes",
    };
    assert_eq!(
        table.check(Service::Domain, &long).await.unwrap_err(),
        expected
    );
    assert_eq!(
        table.lookup(Service::Alias, &long).await.unwrap_err(),
        expected
    );
    assert!(!table.check(Service::Domain, &long[..1023]).await.unwrap());
}

#[tokio::test]
async fn fetch_cycles_in_key_order() {
    let table = list("src", &["192.0.2.3", "192.0.2.1", "192.0.2.2"]);
    let mut fetched = Vec::new();
    for _ in 0..5 {
        fetched.push(table.fetch(Service::Source).await.unwrap().unwrap());
    }
    assert_eq!(
        fetched,
        [
            "192.0.2.1",
            "192.0.2.2",
            "192.0.2.3",
            "192.0.2.1",
            "192.0.2.2"
        ]
    );
    let hosts = mapping("relays", &[("b", "smtp://b"), ("a", "smtp://a")]);
    assert_eq!(
        hosts.fetch(Service::Relayhost).await.unwrap().as_deref(),
        Some("a")
    );
    assert_eq!(
        list("empty", &[]).fetch(Service::Source).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn duplicate_keys_keep_the_last_value() {
    let table = mapping("dup", &[("k", "first"), ("K", "second")]);
    assert_eq!(
        table.lookup(Service::Alias, "k").await.unwrap().as_deref(),
        Some("second")
    );
    assert_eq!(
        table.fetch(Service::Alias).await.unwrap().as_deref(),
        Some("k")
    );
    assert_eq!(
        table.fetch(Service::Alias).await.unwrap().as_deref(),
        Some("k")
    );
}

#[tokio::test]
async fn auth_is_not_served() {
    let table = list("t", &["a"]);
    let unsupported = Error::Unsupported {
        table: "t".to_owned(),
        service: Service::Auth,
    };
    assert_eq!(
        table.check(Service::Auth, "a:b").await.unwrap_err(),
        unsupported
    );
    assert_eq!(
        table.lookup(Service::Auth, "a").await.unwrap_err(),
        unsupported
    );
    assert_eq!(table.fetch(Service::Auth).await.unwrap_err(), unsupported);
}

#[tokio::test]
async fn the_sub_address_delimiter_is_configurable() {
    let plus = list("t", &["alice@example.org"]);
    let dash = list("t", &["alice@example.org"]).with_sub_addr_delim('-');
    assert!(plus
        .check(Service::Mailaddr, "alice+x@example.org")
        .await
        .unwrap());
    assert!(!plus
        .check(Service::Mailaddr, "alice-x@example.org")
        .await
        .unwrap());
    assert!(dash
        .check(Service::Mailaddr, "alice-x@example.org")
        .await
        .unwrap());
    assert!(!dash
        .check(Service::Mailaddr, "alice+x@example.org")
        .await
        .unwrap());
}

#[tokio::test]
async fn file_tables_reload_on_update() {
    let dir = TempDir::new("reload");
    let path = dir.write("domains", "example.org\nexample.net\n");
    let table = file_table(&path);
    assert_eq!(table.backend(), format!("file:{}", path.display()));
    assert!(table.check(Service::Domain, "example.net").await.unwrap());
    assert!(!table.check(Service::Domain, "example.com").await.unwrap());

    dir.write("domains", "# @list\nexample.com\n");
    table.update().await.unwrap();
    assert!(table.check(Service::Domain, "example.com").await.unwrap());
    assert!(!table.check(Service::Domain, "example.net").await.unwrap());
}

#[tokio::test]
async fn a_bad_file_keeps_the_old_content() {
    let dir = TempDir::new("bad");
    let path = dir.write("aliases", "root alice\n");
    let table = file_table(&path);

    dir.write("aliases", "root alice\n# fine\npostmaster\n");
    let e = table.update().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "table file: {}:3: a key without a value in a mapping of keys to values (the form \
             set by line 1)",
            path.display()
        )
    );
    assert_eq!(
        table
            .lookup(Service::Alias, "root")
            .await
            .unwrap()
            .as_deref(),
        Some("alice")
    );

    std::fs::remove_file(&path).unwrap();
    let e = table.update().await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("table file: cannot read {}: ", path.display())),
        "{e}"
    );
    assert_eq!(
        table
            .lookup(Service::Alias, "root")
            .await
            .unwrap()
            .as_deref(),
        Some("alice")
    );
}

#[tokio::test]
async fn builtin_tables() {
    let host = LocalHost {
        server_name: "mx.example.org".to_owned(),
        host_name: "mx".to_owned(),
        addresses: vec![
            "192.0.2.25".parse().unwrap(),
            "2001:db8::25".parse().unwrap(),
        ],
    };
    let builtin = |name: &str, kind| {
        let table = config::Table {
            name: name.to_owned(),
            backend: TableBackend::Builtin(kind),
        };
        StaticTable::from_config_with(&table, &host).unwrap()
    };
    let localhost = builtin("<localhost>", BuiltinTable::Localhost);
    let anyhost = builtin("<anyhost>", BuiltinTable::Anyhost);
    let localnames = builtin("<localnames>", BuiltinTable::Localnames);
    let anydestination = builtin("<anydestination>", BuiltinTable::Anydestination);
    let cases: &[(&StaticTable, Service, &str, bool)] = &[
        (&localhost, Service::Netaddr, "local", true),
        (&localhost, Service::Netaddr, "192.0.2.25", true),
        (&localhost, Service::Netaddr, "[2001:db8::25]", true),
        (&localhost, Service::Netaddr, "192.0.2.26", false),
        (&anyhost, Service::Netaddr, "local", true),
        (&anyhost, Service::Netaddr, "203.0.113.9", true),
        (&anyhost, Service::Netaddr, "[2001:db8:ffff::1]", true),
        (&localnames, Service::Domain, "localhost", true),
        (&localnames, Service::Domain, "MX.example.org", true),
        (&localnames, Service::Domain, "192.0.2.25", true),
        (&localnames, Service::Domain, "example.org", false),
        (&anydestination, Service::Domain, "example.org", true),
        (&anydestination, Service::Domain, "a.b.c", true),
    ];
    for (table, service, key, expected) in cases {
        assert_eq!(
            table.check(*service, key).await.unwrap(),
            *expected,
            "{} {service} {key:?}",
            table.name()
        );
    }
    assert_eq!(localhost.backend(), "builtin");
    // An update looks at this machine, which has a loopback address.
    localhost.update().await.unwrap();
    assert!(!localhost
        .check(Service::Netaddr, "192.0.2.25")
        .await
        .unwrap());
    assert!(localhost.check(Service::Netaddr, "local").await.unwrap());
}

#[tokio::test]
async fn builtin_tables_find_this_machine() {
    let table = config::Table {
        name: "<localhost>".to_owned(),
        backend: TableBackend::Builtin(BuiltinTable::Localhost),
    };
    let table = StaticTable::from_config(&table).unwrap();
    assert!(table.check(Service::Netaddr, "127.0.0.1").await.unwrap());
}

#[tokio::test]
async fn getpwnam_serves_userinfo_only() {
    let table = config::Table {
        name: "<getpwnam>".to_owned(),
        backend: TableBackend::Getpwnam,
    };
    let table = StaticTable::from_config(&table).unwrap();
    assert_eq!(table.backend(), "getpwnam");
    let root = table
        .lookup(Service::Userinfo, "ROOT")
        .await
        .unwrap()
        .unwrap();
    assert!(root.starts_with("0:0:/"), "{root}");
    assert!(table.check(Service::Userinfo, "root").await.unwrap());
    assert!(!table
        .check(Service::Userinfo, "no-such-user-0123")
        .await
        .unwrap());
    assert_eq!(
        table
            .lookup(Service::Userinfo, "no-such-user-0123")
            .await
            .unwrap(),
        None
    );
    let unsupported = |service| Error::Unsupported {
        table: "<getpwnam>".to_owned(),
        service,
    };
    assert_eq!(
        table.lookup(Service::Alias, "root").await.unwrap_err(),
        unsupported(Service::Alias)
    );
    assert_eq!(
        table.fetch(Service::Userinfo).await.unwrap_err(),
        unsupported(Service::Userinfo)
    );
    table.update().await.unwrap();
}

#[test]
fn db_and_program_tables_are_refused() {
    let db = config::Table {
        name: "aliases".to_owned(),
        backend: TableBackend::Db {
            path: "/etc/mail/aliases.db".into(),
        },
    };
    let e = StaticTable::from_config(&db).err().unwrap();
    assert_eq!(
        e.to_string(),
        "table aliases: db:/etc/mail/aliases.db: Berkeley DB tables are not supported; load the \
         text makemap reads as a file: table instead"
    );
    let program = config::Table {
        name: "users".to_owned(),
        backend: TableBackend::ProcExec(ProcCommand {
            command: "table-sqlite".to_owned(),
            user: None,
            group: None,
            chroot: None,
        }),
    };
    assert!(matches!(
        StaticTable::from_config(&program),
        Err(Error::Load { .. })
    ));
}

#[tokio::test]
async fn inline_tables_update_trivially() {
    let table = list("t", &["a"]);
    assert_eq!(table.backend(), "static");
    table.update().await.unwrap();
    assert!(table.check(Service::String, "a").await.unwrap());
}
