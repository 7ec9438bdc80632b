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
//! --workspace` builds both; `common/backend.rs` builds it when missing).

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../backends/table-ldap/tests/slapd/mod.rs"]
mod slapd;

use std::path::Path;
use std::time::{Duration, Instant};

use common::backend::{
    account, assert_authenticated, assert_refused, binary, deliver_to_bob_twice_and_alice,
    maildir_files, session_to_info_and_sales, start_daemon, writable,
};
use common::mail::{smtpctl_encrypt, LOCAL};
use common::{Scratch, DEADLINE};

/// swaks authenticating as `user` on `port`, from alice to postmaster.
fn auth(port: u16, user: &str, password: &str) -> (String, Option<i32>) {
    common::backend::auth(
        port,
        user,
        password,
        "alice@virtual.test",
        "postmaster@virtual.test",
    )
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
    let (smtpd, auth_port) = start_daemon(
        &dir,
        &binary("table-ldap"),
        &ldap_conf,
        &maildirs,
        "virtual <db>",
    );

    // Aliases (one value, two values) and the domain, from the directory;
    // a wildcard recipient is one escaped value and matches no alias.
    let mut c = session_to_info_and_sales(&smtpd);
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
    deliver_to_bob_twice_and_alice(&smtpd, c, &maildirs, "from ldap");

    // AUTH over STARTTLS against the hash in the directory.
    assert_authenticated(&auth(auth_port, "alice", "secret"));
    smtpd.wait_for("result=Ok");
    let alice = maildir_files(&maildirs.join("alice"), 2);
    assert!(
        alice.iter().any(|m| m.contains("Subject: authenticated")),
        "{alice:?}"
    );
    // A wrong password fails: the hash comes from the directory.
    assert_refused(&auth(auth_port, "alice", "wrong"));
    // User names that would match alice's entry if they were filter
    // syntax: with alice's password, they still fail.
    for user in ["*", "alice)(uid=*", "*)(|(uid=*"] {
        assert_refused(&auth(auth_port, user, "secret"));
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
