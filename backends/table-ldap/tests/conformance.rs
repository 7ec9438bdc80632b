//! The conformance runner (`smtpd-conformance table`) against table-ldap
//! serving a real slapd loaded with the standard fixture.
//!
//! Each fixture line `KEY VALUE` becomes an entry `cn=KEY` (object classes
//! `device` and `extensibleObject`) with `description: VALUE`; every
//! service but two is configured as `(&(objectClass=device)(cn=%u))` with
//! attribute `description`, so check and lookup by exact key answer the
//! fixture's value for every service. The two that need more than one
//! attribute are mapped onto extra attributes of the entries whose values
//! have that shape: `credentials` reads `uid,userPassword` (set on
//! `alice`: `alice` and the bcrypt hash) and `userinfo` reads
//! `uidNumber,gidNumber,homeDirectory` (set on `bob`: 1001, 1001,
//! /home/bob). `auth` is not configurable (a search filter cannot check
//! a password) and is not registered.
//!
//! What does not apply, and is asserted to fail rather than skipped
//! silently (see `NOT_APPLICABLE`): the fixture's `fetch` cases expect
//! values cycled in file order; a directory has no such order, and
//! table-ldap cycles through what the filter lists in sorted order
//! (tests/recovery.rs checks that). The `auth` case expects the fixture's values for `auth`
//! requests, which no search filter can check. The stress phase looks up
//! every fixture key in every registered service, so its credentials and
//! userinfo lookups of keys other than alice and bob cannot match; it is
//! therefore run a second time with those two services left out, and then
//! passes. Everything else passes, with the fixture and without it.

#![allow(clippy::disallowed_methods)]

mod slapd;

use std::path::{Path, PathBuf};
use std::process::Command;

use smtpd_sdk::tablefile::TableFile;

/// The cases that cannot hold for an LDAP table, and why.
const NOT_APPLICABLE: &[(&str, &str)] = &[
    (
        "stress",
        "its lookups ask every registered service for every fixture key; \
         credentials and userinfo values come from two and three attributes \
         that only alice and bob have",
    ),
    (
        "table/fetch.txt fetch-cycles-in-file-order",
        "a directory has no file order: fetch cycles in sorted order",
    ),
    (
        "table/fetch.txt fetch-first-value",
        "a directory has no file order: fetch starts at the smallest value",
    ),
    (
        "table/services.txt auth-check-and-lookup",
        "auth (user:password checked by the backend) cannot be a search filter",
    ),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The runner binary, next to this crate's binary.
fn runner() -> PathBuf {
    smtpd_conformance::locate::runner_next_to(Path::new(env!("CARGO_BIN_EXE_table-ldap")))
}

fn fixture_ldif() -> String {
    let path = workspace().join("protocol-spec/vectors/fixtures/standard.table");
    let text = std::fs::read(&path).expect("fixture");
    let table = TableFile::parse(&text).expect("fixture parses");
    let mut ldif = String::from(
        "dn: ou=fixture,dc=example,dc=org\nobjectClass: organizationalUnit\nou: fixture\n\n",
    );
    for entry in table.entries() {
        let value = entry.value.clone().unwrap_or_else(|| entry.key.clone());
        ldif.push_str(&slapd::ldif_line(
            "dn",
            &format!("cn={},ou=fixture,dc=example,dc=org", entry.key),
        ));
        ldif.push_str("objectClass: device\nobjectClass: extensibleObject\n");
        ldif.push_str(&slapd::ldif_line("cn", &entry.key));
        ldif.push_str(&slapd::ldif_line("description", &value));
        match entry.key.as_str() {
            "alice" => {
                let (user, hash) = value.split_once(':').expect("user:hash");
                ldif.push_str(&slapd::ldif_line("uid", user));
                ldif.push_str(&slapd::ldif_line("userPassword", hash));
            }
            "bob" => {
                let mut parts = value.split(':');
                for attr in ["uidNumber", "gidNumber", "homeDirectory"] {
                    let v = parts.next().expect("uid:gid:home");
                    ldif.push_str(&slapd::ldif_line(attr, v));
                }
            }
            _ => {}
        }
        ldif.push('\n');
    }
    ldif
}

fn fixture_config() -> String {
    let mut body = String::new();
    for service in [
        "alias",
        "domain",
        "netaddr",
        "source",
        "mailaddr",
        "addrname",
        "mailaddrmap",
        "relayhost",
        "string",
        "regex",
    ] {
        body.push_str(&format!(
            "{service}_filter (&(objectClass=device)(cn=%u))\n{service}_attributes description\n"
        ));
    }
    body.push_str("credentials_filter (&(objectClass=device)(cn=%s)(uid=*))\n");
    body.push_str("credentials_attributes uid,userPassword\n");
    body.push_str("userinfo_filter (&(objectClass=device)(cn=%u)(uidNumber=*))\n");
    body.push_str("userinfo_attributes uidNumber,gidNumber,homeDirectory\n");
    body
}

struct Run {
    code: Option<i32>,
    stdout: String,
}

fn run(args: &[&str], config: &Path) -> Run {
    let out = Command::new(runner())
        .args(args)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_table-ldap"))
        .arg(config)
        .current_dir(workspace())
        .output()
        .expect("run smtpd-conformance");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    Run {
        code: out.status.code(),
        stdout,
    }
}

fn failed_cases(stdout: &str) -> Vec<String> {
    let mut names: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL "))
        .map(|l| l.split(':').next().unwrap_or(l).to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn conformance_against_slapd() {
    let slapd = slapd::Slapd::start();
    slapd.add(&fixture_ldif());
    let config = slapd.config("fixture.conf", &fixture_config());

    // Without the fixture: every case that holds for any data passes.
    let plain = run(&["table"], &config);
    assert_eq!(plain.code, Some(0), "runner without fixture failed");
    assert!(plain.stdout.contains("PASS "), "no case ran");

    // With it: everything but the cases that cannot apply to LDAP.
    let loaded = run(&["table", "--fixture", "standard.table"], &config);
    let mut expected: Vec<String> = NOT_APPLICABLE
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    expected.sort();
    assert_eq!(
        failed_cases(&loaded.stdout),
        expected,
        "the failures should be exactly the fetch cases ({NOT_APPLICABLE:?})"
    );
    // The stress problems are all credentials or userinfo lookups.
    let problems: Vec<&str> = loaded
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("FAIL stress"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .collect();
    assert!(!problems.is_empty());
    for p in problems {
        let p = p.trim_start();
        assert!(
            p.starts_with("lookup credentials ") || p.starts_with("lookup userinfo "),
            "unexpected stress problem: {p}"
        );
    }

    // The stress phase with only the one-attribute services: all passes.
    let one_attribute: String = fixture_config()
        .lines()
        .filter(|l| !l.starts_with("credentials_") && !l.starts_with("userinfo_"))
        .map(|l| format!("{l}\n"))
        .collect();
    let config = slapd.config("single.conf", &one_attribute);
    let single = run(&["table", "--fixture", "standard.table"], &config);
    assert!(single.stdout.contains("PASS stress"), "stress did not pass");
    for name in [
        "credentials-check-and-lookup",
        "userinfo-check-and-lookup",
        "lookup-value-with-pipes",
        "alias-check-and-lookup",
    ] {
        assert!(
            loaded
                .stdout
                .lines()
                .any(|l| l.starts_with("PASS ") && l.ends_with(&format!(" {name}"))),
            "{name} did not pass"
        );
    }
    assert!(!loaded.stdout.contains("SKIP "), "cases were skipped");
}
