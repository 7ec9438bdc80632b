//! What the end-to-end tests of the table backends under the daemon share
//! (`backend_sqlite.rs`, `backend_postgres.rs`, `backend_ldap.rs`): the
//! backend binary found next to the daemon's (built when missing, as
//! `cargo test -p smtpd` alone does not build it), the accounts and
//! directories the deliveries use, a daemon whose domains, users, aliases
//! and AUTH credentials all come from the one backend table, and swaks
//! authenticating over STARTTLS.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::mail::{free_port, self_signed, swaks, Client, Smtpd, LOCAL};
use super::{is_root, Scratch, DEADLINE};

/// The built backend `name` (a binary of the package of the same name),
/// beside the daemon's binary; built with cargo when missing.
pub(crate) fn binary(name: &str) -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_smtpd"))
        .parent()
        .expect("the daemon's directory")
        .join(name);
    if !bin.exists() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace");
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "-p", name]);
        if bin
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|p| p == "release")
        {
            cargo.arg("--release");
        }
        let status = cargo.current_dir(workspace).status().expect("cargo runs");
        assert!(status.success(), "building {name} failed");
    }
    bin
}

/// The uid, gid of the deliveries: `nobody` as root, else ours.
pub(crate) fn account() -> (u32, u32) {
    if is_root() {
        (65534, 65534)
    } else {
        // SAFETY: getuid and getgid have no preconditions.
        unsafe { (libc::getuid(), libc::getgid()) }
    }
}

/// A directory under the scratch directory anyone may write into.
pub(crate) fn writable(dir: &Scratch, name: &str) -> PathBuf {
    let path = dir.0.join(name);
    std::fs::create_dir_all(&path).expect("mkdir");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    path
}

/// The contents of the files in `MAILDIR/new`, sorted, waited for until
/// there are `n`.
pub(crate) fn maildir_files(maildir: &Path, n: usize) -> Vec<String> {
    let end = Instant::now() + DEADLINE;
    loop {
        let files: Vec<PathBuf> = std::fs::read_dir(maildir.join("new"))
            .map(|entries| entries.map(|e| e.expect("maildir entry").path()).collect())
            .unwrap_or_default();
        if files.len() >= n {
            let mut texts: Vec<String> = files
                .iter()
                .map(|f| std::fs::read_to_string(f).expect("read a message"))
                .collect();
            texts.sort();
            return texts;
        }
        assert!(Instant::now() < end, "{} files in {maildir:?}", files.len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A daemon with one table `<db>` served by `backend CONF`: a plain
/// listener on `smtpd.port`, an AUTH listener (implicit TLS off, STARTTLS
/// with a self-signed certificate for mx.test, credentials from `<db>`) on
/// the port returned, and mail for the domains of `<db>` delivered into
/// `MAILDIRS/USER` through `users` (`virtual <db>` or `alias <db>`) and
/// `userbase <db>`.
pub(crate) fn start_daemon(
    dir: &Scratch,
    backend: &Path,
    conf: &Path,
    maildirs: &Path,
    users: &str,
) -> (Smtpd, u16) {
    let (crt, key) = self_signed(dir, "mx.test");
    let auth_port = free_port();
    let smtpd = Smtpd::start(dir, |port| {
        // The AUTH listener comes first: it listens before the line that
        // `start` waits for.
        format!(
            "pki mx.test cert \"{crt}\"\npki mx.test key \"{key}\"\n\
             table db proc-exec \"{backend} {conf}\"\n\
             listen on 127.0.0.1 port {auth_port} tls pki mx.test auth <db> hostname mx.test\n\
             listen on 127.0.0.1 port {port}\n\
             action \"deliver\" maildir \"{m}/%{{user.username}}\" {users} userbase <db>\n\
             match from any for domain <db> action \"deliver\"\n",
            crt = crt.display(),
            key = key.display(),
            backend = backend.display(),
            conf = conf.display(),
            m = maildirs.display(),
        )
    });
    (smtpd, auth_port)
}

/// A session from the host itself to the plain listener, with its first
/// two recipients accepted: `info@virtual.test` (an alias of bob) and
/// `sales@virtual.test` (of alice and bob).
pub(crate) fn session_to_info_and_sales(smtpd: &Smtpd) -> Client {
    let mut c = smtpd.connect(LOCAL);
    c.expect_code("EHLO client.test", "250");
    c.expect_code("MAIL FROM:<sender@client.test>", "250");
    c.expect_code("RCPT TO:<info@virtual.test>", "250");
    c.expect_code("RCPT TO:<sales@virtual.test>", "250");
    c
}

/// Ends a session `c` whose recipients so far expand to bob twice and
/// alice once: a recipient of a domain the table does not hold is refused
/// (550), a message with `subject` is accepted, and the three deliveries
/// land in `MAILDIRS/bob` and `MAILDIRS/alice`.
pub(crate) fn deliver_to_bob_twice_and_alice(
    smtpd: &Smtpd,
    mut c: Client,
    maildirs: &Path,
    subject: &str,
) {
    c.expect_code("RCPT TO:<someone@elsewhere.test>", "550");
    let reply = c.data(&format!("Subject: {subject}\r\n\r\nHello.\r\n"));
    assert!(reply.starts_with("250 "), "{reply}");
    c.expect_code("QUIT", "221");
    for _ in 0..3 {
        smtpd.wait_for("result=Ok");
    }
    let header = format!("Subject: {subject}");
    let bob = maildir_files(&maildirs.join("bob"), 2);
    assert!(bob.iter().all(|m| m.contains(&header)), "{bob:?}");
    let alice = maildir_files(&maildirs.join("alice"), 1);
    assert!(alice[0].contains(&header), "{alice:?}");
}

/// swaks on `port`: STARTTLS, AUTH PLAIN as `user` with `password`, then
/// a message from `from` to `to` with the subject "authenticated". swaks's
/// transcript and exit status.
pub(crate) fn auth(
    port: u16,
    user: &str,
    password: &str,
    from: &str,
    to: &str,
) -> (String, Option<i32>) {
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
            from,
            "--to",
            to,
            "--header",
            "Subject: authenticated",
        ],
    )
}

/// Asserts that swaks authenticated over TLS and had its message accepted.
pub(crate) fn assert_authenticated((out, code): &(String, Option<i32>)) {
    assert_eq!(*code, Some(0), "{out}");
    assert!(out.contains("=== TLS started with cipher TLSv1."), "{out}");
    assert!(
        out.contains("<~  235 2.0.0 Authentication succeeded"),
        "{out}"
    );
}

/// Asserts that the daemon refused swaks's credentials (swaks's status 28).
pub(crate) fn assert_refused((out, code): &(String, Option<i32>)) {
    assert_eq!(*code, Some(28), "{out}");
    assert!(out.contains("<~* 535 5.7.8 Authentication failed"), "{out}");
}
