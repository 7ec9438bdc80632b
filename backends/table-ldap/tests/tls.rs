//! TLS to the directory: `ldaps://` and StartTLS on `ldap://`, trusting the
//! test server's self-signed certificate through `ca_file`; without it the
//! certificate is refused and lookups answer error.

#![allow(clippy::disallowed_methods)]

mod slapd;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

const SEED: &str = "\
dn: cn=virtual.test,dc=example,dc=org
objectClass: device
cn: virtual.test
";

/// Runs table-ldap with `config` for one lookup of `virtual.test`; returns
/// the result field(s).
fn lookup(config: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_table-ldap"))
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run table-ldap");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(
            b"config|smtpd-version|0.1.0\nconfig|protocol|0.1\nconfig|tablename|t\nconfig|ready\n\
              table|0.1|1731000000.000000|t|lookup|domain|00000001|virtual.test\n",
        )
        .expect("write");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let answer = loop {
        let line = lines.next().expect("an answer").expect("read");
        if let Some(rest) = line.strip_prefix("lookup-result|00000001|") {
            break rest.to_owned();
        }
    };
    drop(stdin);
    let _ = child.wait();
    answer
}

#[test]
fn ldaps_and_starttls() {
    let slapd = slapd::Slapd::start_tls();
    slapd.add(SEED);
    let ca = slapd.ca_file();
    let ldaps = slapd.ldaps_url().expect("ldaps");
    let services =
        "timeout 5\ndomain_filter (&(objectClass=device)(cn=%u))\ndomain_attributes cn\n";

    // The configuration's url line comes first; a second one would be an
    // error, so the ldaps configurations are written whole.
    let write = |name: &str, text: &str| {
        let path = slapd.dir().join(name);
        std::fs::write(&path, text).expect("config");
        path
    };
    let ldaps_conf = write(
        "ldaps.conf",
        &format!(
            "url {ldaps}\nusername {}\npassword {}\nbasedn {}\nca_file {}\n{services}",
            slapd::ROOT_DN,
            slapd::ROOT_PW,
            slapd::SUFFIX,
            ca.display()
        ),
    );
    assert_eq!(lookup(&ldaps_conf), "found|virtual.test");

    let starttls_conf = slapd.config(
        "starttls.conf",
        &format!("starttls yes\nca_file {}\n{services}", ca.display()),
    );
    assert_eq!(lookup(&starttls_conf), "found|virtual.test");

    // Without the CA, the self-signed certificate is not trusted.
    let untrusted = slapd.config("untrusted.conf", &format!("starttls yes\n{services}"));
    let got = lookup(&untrusted);
    assert!(got.starts_with("error|"), "{got}");
    let untrusted = write(
        "untrusted-ldaps.conf",
        &format!(
            "url {ldaps}\nusername {}\npassword {}\nbasedn {}\n{services}",
            slapd::ROOT_DN,
            slapd::ROOT_PW,
            slapd::SUFFIX
        ),
    );
    let got = lookup(&untrusted);
    assert!(got.starts_with("error|"), "{got}");
}
