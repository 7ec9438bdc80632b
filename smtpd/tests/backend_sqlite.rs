//! The `table-sqlite` backend under the daemon, end to end: a database made
//! here holds the virtual domain, the aliases, the users and the AUTH
//! credentials; mail to the domain is expanded through the aliases and
//! delivered into maildirs, unknown recipients are refused, and a client
//! authenticates over STARTTLS (swaks) with a password checked against the
//! hash in the database.
//!
//! The backend binary is found next to the daemon's (`cargo test
//! --workspace` builds both; alone: `cargo build -p table-sqlite` first).
//! As root (CI), deliveries run as `nobody`, and the backend, a child of
//! the unprivileged table process, reads world-readable files only.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::mail::{self_signed, smtpctl_encrypt, swaks, Smtpd, LOCAL};
use common::{is_root, Scratch, DEADLINE};

/// The built `table-sqlite`, next to `smtpd`.
fn backend() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_smtpd"))
        .parent()
        .unwrap()
        .join("table-sqlite");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p table-sqlite` first",
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
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

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
    let (crt, key) = self_signed(&dir, "mx.test");
    let auth_port = common::mail::free_port();
    let smtpd = Smtpd::start(&dir, |port| {
        // The AUTH listener comes first: it listens before the line that
        // `start` waits for.
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
            conf = sqlite_conf.display(),
            m = maildirs.display(),
        )
    });

    // Aliases (one row, several rows) and the domain, from the database.
    let mut c = smtpd.connect(LOCAL);
    c.expect_code("EHLO client.test", "250");
    c.expect_code("MAIL FROM:<sender@client.test>", "250");
    c.expect_code("RCPT TO:<info@virtual.test>", "250");
    c.expect_code("RCPT TO:<sales@virtual.test>", "250");
    // A virtual domain's unknown user: nothing to expand to (OpenSMTPD's
    // reply).
    c.expect(
        "RCPT TO:<nobody@virtual.test>",
        "524 5.2.4 Mailing list expansion problem: <nobody@virtual.test>",
    );
    c.expect_code("RCPT TO:<someone@elsewhere.test>", "550");
    let reply = c.data("Subject: from sqlite\r\n\r\nHello.\r\n");
    assert!(reply.starts_with("250 "), "{reply}");
    c.expect_code("QUIT", "221");
    for _ in 0..3 {
        smtpd.wait_for("result=Ok");
    }
    let bob = maildir_files(&maildirs.join("bob"), 2);
    assert!(
        bob.iter().all(|m| m.contains("Subject: from sqlite")),
        "{bob:?}"
    );
    let alice = maildir_files(&maildirs.join("alice"), 1);
    assert!(alice[0].contains("Subject: from sqlite"), "{alice:?}");

    // AUTH over STARTTLS against the hash in the database.
    let (out, code) = swaks(
        auth_port,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice",
            "--auth-password",
            "secret",
            "--helo",
            "client.test",
            "--from",
            "alice@virtual.test",
            "--to",
            "postmaster@virtual.test",
            "--header",
            "Subject: authenticated",
        ],
    );
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

    // A wrong password fails: the hash comes from the database.
    let (out, code) = swaks(
        auth_port,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice",
            "--auth-password",
            "wrong",
            "--from",
            "alice@virtual.test",
            "--to",
            "postmaster@virtual.test",
        ],
    );
    assert_eq!(code, Some(28), "{out}");
    assert!(out.contains("<~* 535 5.7.8 Authentication failed"), "{out}");
    // An unknown user, absent from the database, fails the same way.
    let (out, code) = swaks(
        auth_port,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "mallory",
            "--auth-password",
            "secret",
            "--from",
            "mallory@virtual.test",
            "--to",
            "postmaster@virtual.test",
        ],
    );
    assert_eq!(code, Some(28), "{out}");
    assert!(out.contains("<~* 535 5.7.8 Authentication failed"), "{out}");
}
