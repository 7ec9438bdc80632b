//! The `table-ldap` backend under the daemon, end to end, against a slapd
//! started here (backends/table-ldap/tests/slapd): the directory holds the
//! virtual domain, the aliases (nisMailAlias), the users (posixAccount:
//! userinfo and the AUTH credentials); mail to the domain is expanded
//! through the aliases and delivered into maildirs, unknown recipients are
//! refused, a client authenticates over STARTTLS (swaks) with a password
//! checked against the hash in the directory, and keys that try to inject
//! filter syntax (a `*` recipient, which the SMTP layer accepts; `*` and
//! `alice)(uid=*` as AUTH user names) find nothing: slapd's log shows the
//! filters it received with those characters escaped. The directory then
//! goes away (recipients get temporary failures) and comes back (mail is
//! accepted again).
//!
//! The backend binary is found next to the daemon's (`cargo test
//! --workspace` builds both; alone: `cargo build -p table-ldap` first).

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../backends/table-ldap/tests/slapd/mod.rs"]
mod slapd;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::mail::{self_signed, smtpctl_encrypt, swaks, Smtpd, LOCAL};
use common::{is_root, Scratch, DEADLINE};

/// The built `table-ldap`, next to `smtpd`.
fn backend() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_smtpd"))
        .parent()
        .unwrap()
        .join("table-ldap");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p table-ldap` first",
        path.display()
    );
    path
}

/// The uid, gid of the deliveries: `nobody` as root, else ours.
fn account() -> (u32, u32) {
    if is_root() {
        (65534, 65534)
    } else {
        // SAFETY: getuid and getgid have no preconditions.
        unsafe { (libc::getuid(), libc::getgid()) }
    }
}

/// A directory under the scratch directory anyone may write into.
fn writable(dir: &Scratch, name: &str) -> PathBuf {
    let path = dir.0.join(name);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    path
}

/// The files in `MAILDIR/new`, waited for until there are `n`.
fn maildir_files(maildir: &Path, n: usize) -> Vec<String> {
    let end = Instant::now() + DEADLINE;
    loop {
        let files: Vec<PathBuf> = std::fs::read_dir(maildir.join("new"))
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        if files.len() >= n {
            let mut texts: Vec<String> = files
                .iter()
                .map(|f| std::fs::read_to_string(f).unwrap())
                .collect();
            texts.sort();
            return texts;
        }
        assert!(Instant::now() < end, "{} files in {maildir:?}", files.len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn seed(uid: u32, gid: u32, home: &Path, hash: &str) -> String {
    let home = home.display();
    let mut ldif = String::from(
        "dn: ou=domains,dc=example,dc=org\nobjectClass: organizationalUnit\nou: domains\n\n\
         dn: cn=virtual.test,ou=domains,dc=example,dc=org\nobjectClass: device\ncn: virtual.test\n\n\
         dn: ou=aliases,dc=example,dc=org\nobjectClass: organizationalUnit\nou: aliases\n\n\
         dn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n",
    );
    for (address, members) in [
        ("info@virtual.test", &["bob"][..]),
        ("sales@virtual.test", &["alice", "bob"][..]),
        ("postmaster@virtual.test", &["alice"][..]),
    ] {
        ldif.push_str(&format!(
            "dn: cn={address},ou=aliases,dc=example,dc=org\nobjectClass: nisMailAlias\ncn: {address}\n"
        ));
        for m in members {
            ldif.push_str(&format!("rfc822MailMember: {m}\n"));
        }
        ldif.push('\n');
    }
    for user in ["alice", "bob"] {
        ldif.push_str(&format!(
            "dn: uid={user},ou=people,dc=example,dc=org\n\
             objectClass: inetOrgPerson\nobjectClass: posixAccount\n\
             uid: {user}\ncn: {user}\nsn: {user}\n\
             uidNumber: {uid}\ngidNumber: {gid}\nhomeDirectory: {home}\n"
        ));
        if user == "alice" {
            ldif.push_str(&slapd::ldif_line("userPassword", hash));
        }
        ldif.push('\n');
    }
    ldif
}

fn auth(port: u16, user: &str, password: &str) -> (String, Option<i32>) {
    swaks(
        port,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            user,
            "--auth-password",
            password,
            "--helo",
            "client.test",
            "--from",
            "alice@virtual.test",
            "--to",
            "postmaster@virtual.test",
            "--header",
            "Subject: authenticated",
        ],
    )
}

#[test]
fn aliases_domains_users_and_credentials_from_ldap() {
    let dir = Scratch::new("backend_ldap", "delivery");
    let maildirs = writable(&dir, "maildir");
    let home = writable(&dir, "home");
    let (uid, gid) = account();
    let hash = smtpctl_encrypt("secret");
    let mut slapd = slapd::Slapd::start();
    slapd.add(&seed(uid, gid, &home, &hash));
    let ldap_conf = slapd.config(
        "ldap.conf",
        "# OpenSMTPD table-ldap keys\n\
         timeout 3\n\
         domain_filter (&(objectClass=device)(cn=%u))\n\
         domain_attributes cn\n\
         alias_filter (&(objectClass=nisMailAlias)(cn=%u))\n\
         alias_attributes rfc822MailMember\n\
         credentials_filter (&(objectClass=posixAccount)(uid=%u))\n\
         credentials_attributes uid,userPassword\n\
         userinfo_filter (&(objectClass=posixAccount)(uid=%u))\n\
         userinfo_attributes uidNumber,gidNumber,homeDirectory\n",
    );
    let (crt, key) = self_signed(&dir, "mx.test");
    let auth_port = common::mail::free_port();
    let smtpd = Smtpd::start(&dir, |port| {
        format!(
            "pki mx.test cert \"{crt}\"\npki mx.test key \"{key}\"\n\
             table db proc-exec \"{backend} {conf}\"\n\
             listen on 127.0.0.1 port {auth_port} tls pki mx.test auth <db> hostname mx.test\n\
             listen on 127.0.0.1 port {port}\n\
             action \"virtual\" maildir \"{m}/%{{user.username}}\" virtual <db> userbase <db>\n\
             match from any for domain <db> action \"virtual\"\n",
            crt = crt.display(),
            key = key.display(),
            backend = backend().display(),
            conf = ldap_conf.display(),
            m = maildirs.display(),
        )
    });

    // Aliases (one value, two values) and the domain, from the directory;
    // a wildcard recipient is one escaped value and matches no alias.
    let mut c = smtpd.connect(LOCAL);
    c.expect_code("EHLO client.test", "250");
    c.expect_code("MAIL FROM:<sender@client.test>", "250");
    c.expect_code("RCPT TO:<info@virtual.test>", "250");
    c.expect_code("RCPT TO:<sales@virtual.test>", "250");
    // An unknown virtual user: no alias matches, a permanent failure (as
    // OpenSMTPD: 524, the expansion found nothing).
    let nobody = c.command("RCPT TO:<nobody@virtual.test>");
    assert!(nobody.starts_with("5"), "{nobody}");
    // The wildcard recipient fails exactly as the unknown user does.
    let star = c.command("RCPT TO:<*@virtual.test>");
    assert_eq!(star, nobody.replace("nobody@", "*@"));
    // Parentheses never reach a table: the address syntax refuses them.
    let reply = c.command("RCPT TO:<x)(cn=*@virtual.test>");
    assert!(reply.starts_with("5"), "{reply}");
    c.expect_code("RCPT TO:<someone@elsewhere.test>", "550");
    let reply = c.data("Subject: from ldap\r\n\r\nHello.\r\n");
    assert!(reply.starts_with("250 "), "{reply}");
    c.expect_code("QUIT", "221");
    for _ in 0..3 {
        smtpd.wait_for("result=Ok");
    }
    let bob = maildir_files(&maildirs.join("bob"), 2);
    assert!(
        bob.iter().all(|m| m.contains("Subject: from ldap")),
        "{bob:?}"
    );
    let alice = maildir_files(&maildirs.join("alice"), 1);
    assert!(alice[0].contains("Subject: from ldap"), "{alice:?}");

    // AUTH over STARTTLS against the hash in the directory.
    let (out, code) = auth(auth_port, "alice", "secret");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("=== TLS started with cipher TLSv1."), "{out}");
    assert!(
        out.contains("<~  235 2.0.0 Authentication succeeded"),
        "{out}"
    );
    smtpd.wait_for("result=Ok");
    let alice = maildir_files(&maildirs.join("alice"), 2);
    assert!(
        alice.iter().any(|m| m.contains("Subject: authenticated")),
        "{alice:?}"
    );
    // A wrong password fails: the hash comes from the directory.
    let (out, code) = auth(auth_port, "alice", "wrong");
    assert_eq!(code, Some(28), "{out}");
    assert!(out.contains("<~* 535 5.7.8 Authentication failed"), "{out}");
    // User names that would match alice's entry if they were filter
    // syntax: with alice's password, they still fail.
    for user in ["*", "alice)(uid=*", "*)(|(uid=*"] {
        let (out, code) = auth(auth_port, user, "secret");
        assert_eq!(code, Some(28), "{user}: {out}");
        assert!(out.contains("<~* 535 5.7.8 Authentication failed"), "{out}");
    }
    // slapd received those keys as escaped values.
    let log = slapd.log();
    let searched: Vec<&str> = log.lines().filter(|l| l.contains(" filter=")).collect();
    for want in [
        r"(cn=\2A@virtual.test)",
        r"(uid=\2A)",
        r"(uid=alice\29\28uid=\2A)",
        r"(uid=\2A\29\28|\28uid=\2A)",
    ] {
        assert!(
            searched
                .iter()
                .any(|l| l.to_ascii_uppercase().contains(&want.to_ascii_uppercase())),
            "slapd never searched {want}:\n{}",
            searched.join("\n")
        );
    }

    // The directory goes away: recipients get temporary failures only.
    slapd.stop();
    let mut c = smtpd.connect(LOCAL);
    c.expect_code("EHLO client.test", "250");
    c.expect_code("MAIL FROM:<sender@client.test>", "250");
    let reply = c.command("RCPT TO:<info@virtual.test>");
    assert!(
        reply.starts_with("4"),
        "while the directory is down: {reply}"
    );
    c.expect_code("QUIT", "221");

    // It comes back: the backend reconnects, mail is accepted again.
    slapd.resume();
    let end = Instant::now() + DEADLINE;
    loop {
        let mut c = smtpd.connect(LOCAL);
        c.expect_code("EHLO client.test", "250");
        c.expect_code("MAIL FROM:<sender@client.test>", "250");
        let reply = c.command("RCPT TO:<info@virtual.test>");
        if reply.starts_with("250") {
            let reply = c.data("Subject: after the restart\r\n\r\nHello.\r\n");
            assert!(reply.starts_with("250 "), "{reply}");
            c.expect_code("QUIT", "221");
            break;
        }
        assert!(reply.starts_with("4"), "after the restart: {reply}");
        assert!(Instant::now() < end, "the directory did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
    smtpd.wait_for("result=Ok");
    let bob = maildir_files(&maildirs.join("bob"), 3);
    assert!(
        bob.iter().any(|m| m.contains("Subject: after the restart")),
        "{bob:?}"
    );
}
