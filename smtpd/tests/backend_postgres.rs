//! The daemon with its domains, aliases, users and credentials in
//! PostgreSQL, through the `table-postgres` backend (backends/
//! table-postgres), against a real server that the test starts (the
//! backend's own harness, `tests/pg/mod.rs`, run as the `postgres` user;
//! stopped at the end of the test or when it panics).
//!
//! - Mail to example.org (a domain from the database) is expanded through
//!   aliases from the database (one address to two users: two rows) and
//!   delivered into maildirs whose users come from the database
//!   (`uid`, `gid` as integer columns).
//! - swaks does STARTTLS then AUTH PLAIN with a password whose hash
//!   (`smtpctl encrypt`) is in the database; a wrong password is 535.
//! - PostgreSQL is stopped: RCPT TO is answered 4xx, never 5xx; once it is
//!   started again, the same daemon (and backend) accepts again.

// A test harness: running the built binaries is its whole point, and a
// failed unwrap is a failed test.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

mod common;

#[path = "../../backends/table-postgres/tests/pg/mod.rs"]
mod pg;

use std::path::Path;
use std::time::{Duration, Instant};

use common::backend::{
    account, assert_authenticated, assert_refused, auth, binary, maildir_files, start_daemon,
    writable,
};
use common::mail::{smtpctl_encrypt, Smtpd, LOCAL};
use common::{Scratch, DEADLINE};
use pg::{literal, PgServer};

/// The mail schema and its data: example.org, aliases, alice and bob.
fn load_mail_data(pg: &PgServer, home: &Path) {
    let (uid, gid) = account();
    let hash = smtpctl_encrypt("secret");
    pg.psql(&format!(
        "CREATE TABLE domains (name text PRIMARY KEY);\n\
         CREATE TABLE aliases (name text NOT NULL, target text NOT NULL);\n\
         CREATE TABLE accounts (login text PRIMARY KEY, hash text NOT NULL, \
           uid integer NOT NULL, gid integer NOT NULL, home text NOT NULL);\n\
         INSERT INTO domains VALUES ('example.org');\n\
         INSERT INTO aliases VALUES ('postmaster', 'alice'), ('sales', 'alice'), ('sales', 'bob');\n\
         INSERT INTO accounts VALUES ('alice', {h}, {uid}, {gid}, {home}), \
           ('bob', {h}, {uid}, {gid}, {home}), ('_smtpd', '*', {uid}, {gid}, '/');\n",
        h = literal(&hash),
        home = literal(&home.display().to_string()),
    ));
}

/// The backend's configuration: OpenSMTPD's keys and column shapes.
fn backend_config(pg: &PgServer) -> String {
    format!(
        "conninfo {}\n\
         query_domain SELECT name FROM domains WHERE name = $1\n\
         query_alias SELECT target FROM aliases WHERE name = $1 ORDER BY target\n\
         query_userinfo SELECT uid, gid, home FROM accounts WHERE login = $1\n\
         query_credentials SELECT login, hash FROM accounts WHERE login = $1\n\
         connections 2\n",
        pg.conninfo()
    )
}

/// One RCPT TO in a fresh session from the host itself: the reply.
fn rcpt_reply(smtpd: &Smtpd, rcpt: &str) -> String {
    let mut c = smtpd.connect(LOCAL);
    c.expect_code("EHLO client.test", "250");
    c.expect_code("MAIL FROM:<sender@client.test>", "250");
    let reply = c.command(&format!("RCPT TO:<{rcpt}>"));
    c.command("QUIT");
    reply
}

#[test]
fn mail_users_and_credentials_from_postgresql() {
    let pg = PgServer::start("smtpd");
    let dir = Scratch::new("backend-postgres", "e2e");
    let home = writable(&dir, "home");
    let maildirs = writable(&dir, "maildir");
    load_mail_data(&pg, &home);
    let conf = dir.write("postgres.conf", &backend_config(&pg));
    let (smtpd, submission) = start_daemon(
        &dir,
        &binary("table-postgres"),
        &conf,
        &maildirs,
        "alias <db>",
    );

    // Aliases and users from the database: sales is alice and bob.
    let mut c = smtpd.connect(LOCAL);
    c.expect_code("EHLO client.test", "250");
    c.expect_code("MAIL FROM:<sender@client.test>", "250");
    c.expect_code("RCPT TO:<postmaster@example.org>", "250");
    c.expect_code("RCPT TO:<sales@example.org>", "250");
    c.expect_code("RCPT TO:<nobody@example.org>", "550");
    c.expect_code("RCPT TO:<alice@example.net>", "550");
    let reply = c.data("Subject: from postgres\r\n\r\nHello.\r\n");
    assert!(reply.starts_with("250 "), "{reply}");
    c.expect_code("QUIT", "221");
    for _ in 0..3 {
        smtpd.wait_for("result=Ok");
    }
    assert_eq!(maildir_files(&maildirs.join("alice"), 2).len(), 2);
    let bob = maildir_files(&maildirs.join("bob"), 1);
    assert!(bob[0].contains("Subject: from postgres"), "{bob:?}");

    // STARTTLS, then AUTH PLAIN against the hash in the database.
    let (from, to) = ("alice@example.org", "bob@example.org");
    assert_authenticated(&auth(submission, "alice", "secret", from, to));
    smtpd.wait_for("result=Ok");
    assert_eq!(maildir_files(&maildirs.join("bob"), 2).len(), 2);
    assert_refused(&auth(submission, "alice", "wrong", from, to));

    // PostgreSQL goes away: temporary failures only, then it is back.
    pg.stop();
    for _ in 0..3 {
        let reply = rcpt_reply(&smtpd, "alice@example.org");
        assert!(reply.starts_with('4'), "{reply}");
    }
    pg.start_again();
    let end = Instant::now() + DEADLINE;
    let mut replies = Vec::new();
    loop {
        let reply = rcpt_reply(&smtpd, "alice@example.org");
        let accepted = reply.starts_with("250");
        assert!(
            accepted || reply.starts_with('4'),
            "a reply that is neither 250 nor 4xx: {replies:?} {reply}"
        );
        replies.push(reply);
        if accepted {
            break;
        }
        assert!(Instant::now() < end, "never accepted again: {replies:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        rcpt_reply(&smtpd, "nobody@example.org").get(..3),
        Some("550")
    );
    assert_eq!(
        rcpt_reply(&smtpd, "sales@example.org").get(..3),
        Some("250")
    );
}
