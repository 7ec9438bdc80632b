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

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mail::{free_port, self_signed, smtpctl_encrypt, swaks, Client};
use common::{is_root, smtpd_command, Process, Scratch, DEADLINE};
use pg::{literal, PgServer};

/// The built `table-postgres`, beside the daemon's binary (built when
/// missing, as `cargo test -p smtpd` alone does not build it).
fn backend() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_smtpd"))
        .parent()
        .unwrap()
        .join("table-postgres");
    if !bin.exists() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "-p", "table-postgres"]);
        if bin
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|p| p == "release")
        {
            cargo.arg("--release");
        }
        let status = cargo.current_dir(workspace).status().unwrap();
        assert!(status.success(), "building table-postgres failed");
    }
    bin
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

fn writable(dir: &Scratch, name: &str) -> PathBuf {
    let path = dir.0.join(name);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    path
}

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

/// The files in `MAILDIR/new`, waited for until there are `n`.
fn maildir_files(maildir: &Path, n: usize) -> Vec<PathBuf> {
    let end = Instant::now() + DEADLINE;
    loop {
        let files: Vec<PathBuf> = std::fs::read_dir(maildir.join("new"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        if files.len() >= n {
            return files;
        }
        assert!(Instant::now() < end, "{} files in {maildir:?}", files.len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One RCPT TO in a fresh session from the host itself: the reply.
fn rcpt_reply(port: u16, rcpt: &str) -> String {
    let mut c = Client::connect(port, Ipv4Addr::LOCALHOST);
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
    let (crt, key) = self_signed(&dir, "mx.test");
    let port = free_port();
    let submission = free_port();
    let config = format!(
        "pki mx.test cert \"{crt}\"\npki mx.test key \"{key}\"\n\
         table pg proc-exec \"{bin} {conf}\"\n\
         listen on 127.0.0.1 port {port} hostname mx.test\n\
         listen on 127.0.0.1 port {submission} tls pki mx.test auth <pg> hostname mx.test\n\
         action \"local\" maildir \"{m}/%{{user.username}}\" alias <pg> userbase <pg>\n\
         match from any for domain <pg> action \"local\"\n",
        crt = crt.display(),
        key = key.display(),
        bin = backend().display(),
        conf = conf.display(),
        m = maildirs.display(),
    );
    let path = dir.write("smtpd.conf", &config);
    let daemon = Process::spawn(smtpd_command(&dir, &path));
    daemon.wait_for(&format!("listening on 127.0.0.1:{submission}"));

    // Aliases and users from the database: sales is alice and bob.
    let mut c = Client::connect(port, Ipv4Addr::LOCALHOST);
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
        daemon.wait_for("result=Ok");
    }
    assert_eq!(maildir_files(&maildirs.join("alice"), 2).len(), 2);
    let bob = maildir_files(&maildirs.join("bob"), 1);
    let text = std::fs::read_to_string(&bob[0]).unwrap();
    assert!(text.contains("Subject: from postgres"), "{text}");

    // STARTTLS, then AUTH PLAIN against the hash in the database.
    let auth = |password: &str| {
        swaks(
            submission,
            &[
                "--tls",
                "--auth",
                "PLAIN",
                "--auth-user",
                "alice",
                "--auth-password",
                password,
                "--helo",
                "client.test",
                "--from",
                "alice@example.org",
                "--to",
                "bob@example.org",
                "--header",
                "Subject: authenticated",
            ],
        )
    };
    let (out, code) = auth("secret");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("=== TLS started with cipher"), "{out}");
    assert!(
        out.contains("<~  235 2.0.0 Authentication succeeded"),
        "{out}"
    );
    daemon.wait_for("result=Ok");
    assert_eq!(maildir_files(&maildirs.join("bob"), 2).len(), 2);
    let (out, code) = auth("wrong");
    assert_eq!(code, Some(28), "{out}");
    assert!(out.contains("<~* 535 5.7.8 Authentication failed"), "{out}");

    // PostgreSQL goes away: temporary failures only, then it is back.
    pg.stop();
    for _ in 0..3 {
        let reply = rcpt_reply(port, "alice@example.org");
        assert!(reply.starts_with('4'), "{reply}");
    }
    pg.start_again();
    let end = Instant::now() + DEADLINE;
    let mut replies = Vec::new();
    loop {
        let reply = rcpt_reply(port, "alice@example.org");
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
    assert_eq!(rcpt_reply(port, "nobody@example.org").get(..3), Some("550"));
    assert_eq!(rcpt_reply(port, "sales@example.org").get(..3), Some("250"));
}
