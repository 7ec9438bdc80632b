//! The `table-sqlite` backend under the daemon, end to end: a database made
//! here holds the virtual domain, the aliases, the users and the AUTH
//! credentials; mail to the domain is expanded through the aliases and
//! delivered into maildirs, unknown recipients are refused, and a client
//! authenticates over STARTTLS (swaks) with a password checked against the
//! hash in the database.
//!
//! The backend binary is found next to the daemon's (`cargo test
//! --workspace` builds both; `common/backend.rs` builds it when missing).
//! As root (CI), deliveries run as `nobody`, and the backend, a child of
//! the unprivileged table process, reads world-readable files only.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::backend::{
    account, assert_authenticated, assert_refused, auth, binary, deliver_to_bob_twice_and_alice,
    maildir_files, session_to_info_and_sales, start_daemon, writable,
};
use common::mail::smtpctl_encrypt;
use common::Scratch;

/// Makes `DIR/mail.sqlite` with the sqlite3 shell, world-readable.
fn database(dir: &Scratch, sql: &str) -> PathBuf {
    let path = dir.0.join("mail.sqlite");
    let out = std::process::Command::new("sqlite3")
        .arg(&path)
        .arg(sql)
        .output()
        .expect("the sqlite3 shell is on PATH (Debian package sqlite3)");
    assert!(out.status.success(), "{out:?}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

#[test]
fn aliases_domains_users_and_credentials_from_sqlite() {
    let dir = Scratch::new("backend_sqlite", "delivery");
    let maildirs = writable(&dir, "maildir");
    let home = writable(&dir, "home");
    let (uid, gid) = account();
    let hash = smtpctl_encrypt("secret");
    let db = database(
        &dir,
        &format!(
            "CREATE TABLE domains (name TEXT PRIMARY KEY);
             INSERT INTO domains VALUES ('virtual.test');
             CREATE TABLE users (login TEXT PRIMARY KEY, uid INTEGER, gid INTEGER, home TEXT);
             INSERT INTO users VALUES ('alice', {uid}, {gid}, '{h}'), ('bob', {uid}, {gid}, '{h}');
             CREATE TABLE aliases (address TEXT, target TEXT);
             INSERT INTO aliases VALUES ('info@virtual.test', 'bob'),
                 ('sales@virtual.test', 'alice'), ('sales@virtual.test', 'bob'),
                 ('postmaster@virtual.test', 'alice');
             CREATE TABLE credentials (login TEXT PRIMARY KEY, hash TEXT);
             INSERT INTO credentials VALUES ('alice', '{hash}');",
            h = home.display()
        ),
    );
    let sqlite_conf = dir.write(
        "sqlite.conf",
        &format!(
            "# OpenSMTPD table-sqlite keys\n\
             dbpath {}\n\
             query_domain SELECT name FROM domains WHERE name = ?\n\
             query_userinfo SELECT uid, gid, home FROM users WHERE login = ?\n\
             query_alias SELECT target FROM aliases WHERE address = ? ORDER BY target\n\
             query_credentials SELECT login, hash FROM credentials WHERE login = ?\n",
            db.display()
        ),
    );
    std::fs::set_permissions(&sqlite_conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (smtpd, auth_port) = start_daemon(
        &dir,
        &binary("table-sqlite"),
        &sqlite_conf,
        &maildirs,
        "virtual <db>",
    );

    // Aliases (one row, several rows) and the domain, from the database.
    let mut c = session_to_info_and_sales(&smtpd);
    // A virtual domain's unknown user: nothing to expand to (OpenSMTPD's
    // reply).
    c.expect(
        "RCPT TO:<nobody@virtual.test>",
        "524 5.2.4 Mailing list expansion problem: <nobody@virtual.test>",
    );
    deliver_to_bob_twice_and_alice(&smtpd, c, &maildirs, "from sqlite");

    // AUTH over STARTTLS against the hash in the database.
    let from = "alice@virtual.test";
    let to = "postmaster@virtual.test";
    assert_authenticated(&auth(auth_port, "alice", "secret", from, to));
    smtpd.wait_for("result=Ok");
    let alice = maildir_files(&maildirs.join("alice"), 2);
    assert!(
        alice.iter().any(|m| m.contains("Subject: authenticated")),
        "{alice:?}"
    );

    // A wrong password fails: the hash comes from the database.
    assert_refused(&auth(auth_port, "alice", "wrong", from, to));
    // An unknown user, absent from the database, fails the same way.
    let from = "mallory@virtual.test";
    assert_refused(&auth(auth_port, "mallory", "secret", from, to));
}
