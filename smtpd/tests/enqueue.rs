//! Local submission end to end: the built `smtpctl` run as `sendmail`
//! (a symbolic link, as cron and local programs find it) hands a message
//! to the built `smtpd` over its control socket; the daemon's rules see
//! the source `local`, its envelopes say `sockaddr: local`, and its
//! scheduler delivers the message into a maildir with the `Received:`
//! header of a local session and the `Message-ID:` a local submission
//! gets. With the daemon down, the message waits in the offline queue and
//! is delivered when the daemon starts. `newaliases` and `mailq` run as
//! OpenSMTPD's do.
//!
//! As root (CI), deliveries run as `nobody`, the way a root daemon
//! delivers as the mailbox's owner. Every wait is on a log line.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use common::enqueue::{
    maildir, outcome, queued_envelopes, run_as, sendmail, wait_delivered, Daemon,
};
use common::{is_root, Scratch};
use smtpd::enqueue::account::Account;
use smtpd::table::static_table::LocalHost;

/// The uid, gid of the deliveries: `nobody` as root, else ours.
fn delivery_account() -> (u32, u32) {
    if is_root() {
        (65534, 65534)
    } else {
        // SAFETY: getuid and getgid have no preconditions.
        unsafe { (libc::getuid(), libc::getgid()) }
    }
}

/// A directory under the scratch directory that deliveries may write to.
fn writable(dir: &Scratch, name: &str) -> PathBuf {
    let path = dir.0.join(name);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    path
}

/// Writes `DIR/smtpd.conf`: local mail for example.org into maildirs,
/// relay.smtpd.test relayed (which stays queued: its MX hosts, on
/// loopback, refuse port 25), and
/// rules that only a `local` source passes. Returns the maildirs' parent.
fn configure(dir: &Scratch) -> PathBuf {
    let (uid, gid) = delivery_account();
    let home = writable(dir, "home");
    let maildirs = writable(dir, "maildir");
    let aliases = dir.write(
        "aliases",
        "postmaster: alice\nabuse: alice, bob@example.org\n",
    );
    dir.write(
        "smtpd.conf",
        &format!(
            "table users {{ alice = \"{uid}:{gid}:{h}\", bob = \"{uid}:{gid}:{h}\", \
             carol = \"{uid}:{gid}:{h}\", dave = \"{uid}:{gid}:{h}\" }}\n\
             table aliases file:{a}\n\
             action \"local\" maildir \"{m}/%{{dest.user}}\" alias <aliases> userbase <users>\n\
             action \"out\" relay\n\
             match from local for domain example.org action \"local\"\n\
             match from local for domain relay.smtpd.test action \"out\"\n\
             match from local for domain refused.test reject\n\
             match ! from local for domain notlocal.test action \"local\"\n",
            h = home.display(),
            a = aliases.display(),
            m = maildirs.display(),
        ),
    );
    maildirs
}

/// This user's name and the server name, as sendmail and smtpd see them.
fn user_and_host() -> (String, String) {
    let host = LocalHost::detect().unwrap().server_name;
    (Account::current().name, host)
}

/// Whether `line` is `Message-ID: <16 hex digits@host>`.
fn is_added_message_id(line: &str, host: &str) -> bool {
    let Some(id) = line
        .strip_prefix("Message-ID: <")
        .and_then(|rest| rest.strip_suffix(&format!("@{host}>")))
    else {
        return false;
    };
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn sendmail_delivers_a_local_submission() {
    let dir = Scratch::new("enqueue", "deliver");
    let maildirs = configure(&dir);
    let daemon = Daemon::start(&dir);
    let (_, host) = user_and_host();

    let out = sendmail(
        &dir,
        &["-oi", "-f", "cron@example.net", "alice@example.org"],
        "Subject: nightly report\nX-Job: backup\n\nAll done.\n.dotted line\n",
    );
    // Status 0: the daemon committed the message before its 250.
    assert_eq!(outcome(&out), (Some(0), String::new(), String::new()));
    wait_delivered(&daemon.process, 1);

    let mail = &maildir(&maildirs.join("alice"))[0];
    let (head, body) = mail.split_once("\n\n").unwrap();
    assert_eq!(body, "All done.\n.dotted line\n", "{mail}");
    let lines: Vec<&str> = head.lines().collect();
    assert_eq!(lines[0], "Return-Path: <cron@example.net>", "{mail}");
    assert_eq!(lines[1], "Delivered-To: alice@example.org", "{mail}");
    // A local session: HELO localhost, named after the server, `[local]`,
    // authenticated (ESMTPA).
    assert_eq!(
        lines[2],
        format!("Received: from localhost ({host} [local])"),
        "{mail}"
    );
    assert!(
        lines[3].starts_with(&format!("\tby {host} (smtpd) with ESMTPA id ")),
        "{mail}"
    );
    assert_eq!(lines[4], "\tfor <alice@example.org>;", "{mail}");
    // sendmail adds From: and Date:, the daemon the Message-ID: a local
    // submission lacks, at the end of the header.
    assert_eq!(lines[6], "From: <cron@example.net>", "{mail}");
    assert!(lines[7].starts_with("Date: "), "{mail}");
    assert_eq!(
        lines[8..10],
        ["Subject: nightly report", "X-Job: backup"],
        "{mail}"
    );
    assert!(is_added_message_id(lines[10], &host), "{mail}");
    assert_eq!(lines.len(), 11, "{mail}");
}

#[test]
fn recipients_from_the_headers_and_bcc_removed() {
    let dir = Scratch::new("enqueue", "headers");
    let maildirs = configure(&dir);
    let daemon = Daemon::start(&dir);
    let (user, host) = user_and_host();

    let out = sendmail(
        &dir,
        &["-t", "-F", "Cron Daemon"],
        "To: alice@example.org, Bob <bob@example.org>\r\nCc: dave@example.org\r\n\
         Bcc: carol@example.org\r\nSubject: to all\r\nMessage-ID: <given@example.org>\r\n\r\nHi all.\r\n",
    );
    assert_eq!(outcome(&out), (Some(0), String::new(), String::new()));
    wait_delivered(&daemon.process, 4);
    for name in ["alice", "bob", "carol", "dave"] {
        let copies = maildir(&maildirs.join(name));
        assert_eq!(copies.len(), 1, "{name}: {copies:?}");
        let mail = &copies[0];
        assert!(!mail.contains("Bcc"), "{mail}");
        let (_, after_delivered_to) = mail.split_once(&format!("Delivered-To: {name}@")).unwrap();
        assert!(!after_delivered_to.contains("carol"), "{mail}");
        assert!(
            mail.contains(&format!("From: Cron Daemon <{user}@{host}>\n")),
            "{mail}"
        );
        assert!(
            mail.contains(&format!("Return-Path: <{user}@{host}>\n")),
            "{mail}"
        );
        // The message's own Message-ID is kept, none added.
        assert_eq!(mail.matches("Message-I").count(), 1, "{mail}");
        assert!(mail.ends_with("Subject: to all\nMessage-ID: <given@example.org>\n\nHi all.\n"));
    }
}

#[test]
fn the_envelope_of_a_local_submission_says_local() {
    let dir = Scratch::new("enqueue", "envelope");
    configure(&dir);
    let daemon = Daemon::start(&dir);
    let (user, _) = user_and_host();

    let out = sendmail(
        &dir,
        &["-f", "<me@example.net>", "someone@relay.smtpd.test"],
        "x\n",
    );
    assert_eq!(outcome(&out), (Some(0), String::new(), String::new()));
    let envelopes = queued_envelopes(&daemon.data_dir);
    assert_eq!(envelopes.len(), 1, "{envelopes:?}");
    let envelope = &envelopes[0];
    for line in [
        "sockaddr: local\n",
        "type: mta\n",
        "helo: localhost\n",
        &format!("username: {user}\n"),
        "sender: me@example.net\n",
        "rcpt: someone@relay.smtpd.test\n",
        "dispatcher: out\n",
    ] {
        assert!(envelope.contains(line), "{line:?} in {envelope}");
    }
    assert!(envelope.contains("flags: authenticated"), "{envelope}");
}

#[test]
fn refusals_have_clear_statuses() {
    let dir = Scratch::new("enqueue", "refused");
    configure(&dir);
    let _daemon = Daemon::start(&dir);

    // `match from local ... reject`, and a rule for non-local sources only.
    for rcpt in ["someone@refused.test", "someone@notlocal.test"] {
        let (status, stdout, stderr) = outcome(&sendmail(&dir, &[rcpt], "x\n"));
        assert_eq!(
            (status, stdout.as_str()),
            (Some(67), ""),
            "{rcpt}: {stderr}"
        );
        assert!(
            stderr.starts_with("sendmail: command failed: 550 "),
            "{stderr}"
        );
    }
    // An address the server cannot read.
    let (status, _, stderr) = outcome(&sendmail(&dir, &["bad address@example.org"], "x\n"));
    assert_eq!(status, Some(67), "{stderr}");
    assert!(
        stderr.starts_with("sendmail: command failed: 5"),
        "{stderr}"
    );
    // An address that would end the SMTP command never leaves sendmail.
    let injected = "a@example.org>\r\nRCPT TO:<b@example.org";
    let (status, _, stderr) = outcome(&sendmail(&dir, &[injected], "x\n"));
    assert_eq!(status, Some(65));
    assert!(
        stderr.starts_with("sendmail: invalid address: "),
        "{stderr}"
    );
    // No recipient at all, a bad option, -q.
    let (status, _, stderr) = outcome(&sendmail(&dir, &["-oi"], "x\n"));
    assert_eq!(
        (status, stderr.as_str()),
        (Some(70), "sendmail: no recipients\n")
    );
    let (status, _, stderr) = outcome(&sendmail(&dir, &["-z", "a@example.org"], "x\n"));
    assert_eq!(
        (status, stderr.as_str()),
        (
            Some(1),
            "sendmail: unknown option -- z\nusage: sendmail [-tv] [-f from] [-F name] to ...\n"
        )
    );
    assert_eq!(sendmail(&dir, &["-q"], "").status.code(), Some(70));
}

#[test]
fn verbose_shows_the_dialogue() {
    let dir = Scratch::new("enqueue", "verbose");
    configure(&dir);
    let _daemon = Daemon::start(&dir);
    let (user, host) = user_and_host();
    let (status, stdout, stderr) = outcome(&sendmail(
        &dir,
        &["-v", "bob@example.org"],
        "Subject: s\n\nsecret body\n",
    ));
    assert_eq!((status, stderr.as_str()), (Some(0), ""));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("<<< 220 "), "{stdout}");
    assert_eq!(lines[1], ">>> EHLO localhost", "{stdout}");
    for expected in [
        format!(">>> MAIL FROM:<{user}@{host}>"),
        ">>> RCPT TO:<bob@example.org>".to_owned(),
        ">>> DATA".to_owned(),
        ">>> .".to_owned(),
        ">>> QUIT".to_owned(),
    ] {
        assert!(lines.contains(&expected.as_str()), "{expected} in {stdout}");
    }
    assert!(stdout.contains("<<< 250 2.0.0 "), "{stdout}");
    assert!(!stdout.contains("secret"), "{stdout}");
}

#[test]
fn with_the_daemon_down_mail_waits_offline_until_it_starts() {
    let dir = Scratch::new("enqueue", "offline");
    let maildirs = configure(&dir);
    let (user, host) = user_and_host();
    let offline = dir.0.join("data/spool/offline");

    // No daemon has run here: there is no offline queue to write to.
    let (status, _, stderr) = outcome(&sendmail(&dir, &["alice@example.org"], "x\n"));
    assert_eq!(status, Some(75));
    assert!(stderr.contains("smtpd is not running"), "{stderr}");
    assert!(stderr.contains("the message is not saved"), "{stderr}");

    // A daemon made the directory; it is stopped.
    let mut daemon = Daemon::start(&dir);
    assert_eq!(
        std::fs::metadata(&offline).unwrap().permissions().mode() & 0o7777,
        0o1733
    );
    assert!(daemon.process.stop(libc::SIGTERM).success());

    let (status, _, stderr) = outcome(&sendmail(
        &dir,
        &["-F", "Night Job", "alice@example.org"],
        "Subject: while down\n\nQueued offline.\n",
    ));
    assert_eq!(status, Some(75), "{stderr}");
    assert!(stderr.contains("smtpd is not running"), "{stderr}");
    assert!(stderr.contains("to be sent when smtpd starts"), "{stderr}");
    let files: Vec<PathBuf> = std::fs::read_dir(&offline)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let meta = std::fs::metadata(&files[0]).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(&files[0]).unwrap(),
        "-F|Night Job|alice@example.org\nSubject: while down\n\nQueued offline.\n"
    );
    // A file that is no submission stays, logged.
    std::fs::write(offline.join("0.garbage"), "no argument line").unwrap();

    let daemon = Daemon::start(&dir);
    daemon
        .process
        .wait_for("could not enqueue offline message 0.garbage: no argument line");
    daemon.process.wait_for(&format!("of {user} enqueued"));
    wait_delivered(&daemon.process, 1);
    let mail = &maildir(&maildirs.join("alice"))[0];
    assert!(mail.contains("Received: from localhost ("), "{mail}");
    assert!(
        mail.contains(&format!("From: Night Job <{user}@{host}>\n")),
        "{mail}"
    );
    assert!(mail.contains("Subject: while down\n"), "{mail}");
    assert!(mail.ends_with("\n\nQueued offline.\n"), "{mail}");
    assert!(!files[0].exists());
    // What stays keeps its owner (a daemon started as root hands the rest
    // of the spool to its unprivileged user).
    let left = std::fs::metadata(offline.join("0.garbage")).unwrap();
    assert_eq!(left.uid(), Account::current().uid);
}

#[test]
fn newaliases_and_mailq() {
    let dir = Scratch::new("enqueue", "newaliases");
    configure(&dir);
    let mut daemon = Daemon::start(&dir);
    let config = dir.0.join("smtpd.conf");
    let (status, stdout, stderr) = outcome(&run_as(
        &dir,
        "newaliases",
        &["-f", config.to_str().unwrap()],
        "",
    ));
    assert_eq!(
        (status, stdout, stderr),
        (
            Some(0),
            format!("{}: 2 aliases\n", dir.0.join("aliases").display()),
            String::new()
        )
    );
    // The daemon was told to read them again.
    daemon
        .process
        .wait_for("table \"aliases\" successfully updated");

    // mailq is `show queue`: a message for relay.smtpd.test (whose MX
    // hosts, on loopback, refuse port 25) stays queued, from the family
    // `local`; with the daemon down, the spool is read.
    let out = sendmail(
        &dir,
        &["-f", "me@example.net", "someone@relay.smtpd.test"],
        "x\n",
    );
    assert_eq!(out.status.code(), Some(0));
    let (status, stdout, stderr) = outcome(&run_as(&dir, "mailq", &[], ""));
    assert_eq!((status, stderr.as_str()), (Some(0), ""));
    let fields: Vec<&str> = stdout.trim_end().split('|').collect();
    assert_eq!(
        fields[1..7],
        [
            "local",
            "mta",
            "auth",
            "me@example.net",
            "someone@relay.smtpd.test",
            "someone@relay.smtpd.test"
        ],
        "{stdout}"
    );
    // The relay attempt may be running.
    assert!(matches!(fields[11], "pending" | "inflight"), "{stdout}");
    assert!(daemon.process.stop(libc::SIGTERM).success());
    let (status, stdout, _) = outcome(&run_as(&dir, "mailq", &[], ""));
    assert_eq!(status, Some(0));
    assert!(
        stdout.contains("|local|mta|auth|me@example.net|"),
        "{stdout}"
    );
    assert!(stdout.contains("|offline||"), "{stdout}");

    let (status, _, stderr) = outcome(&run_as(&dir, "makemap", &["x"], ""));
    assert_eq!(status, Some(1));
    assert!(
        stderr.starts_with("makemap: db tables are not supported"),
        "{stderr}"
    );
}
