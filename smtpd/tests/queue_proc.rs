//! The daemon over a proc-exec queue: `queue proc-exec "queue-sqlite
//! CONF"`, with the built `queue-sqlite` backend and a real SQLite file.
//!
//! Mail sent with swaks and Python's smtplib reaches a maildir, and
//! smtpctl lists, shows and schedules what the backend holds. Then two
//! crashes under load from several concurrent smtplib senders: the daemon
//! killed with SIGKILL and started again (every message acknowledged with
//! 250 is delivered, none twice), and the queue backend killed with
//! SIGKILL (intake answers 4xx while it is down, the supervisor restarts
//! it, the scheduler walks the queue again and delivery resumes; nothing
//! acknowledged is lost, nothing delivered twice).

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// Tests: a failed unwrap is a failed test (the shared harness unwraps).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::backend::{account, binary, writable};
use common::load::{
    acked_in, assert_all_delivered_once, assert_only_sent, kill_9, pids_with, probe,
    probe_until_accepted, smtpctl, Load,
};
use common::mail::{accepted_id, swaks, Smtpd, LOCAL};
use common::{Scratch, DEADLINE};

/// The queue backend's configuration, in a directory its user may write.
fn queue_conf(dir: &Scratch) -> PathBuf {
    let db = writable(dir, "queue").join("queue.sqlite");
    dir.write("queue-sqlite.conf", &format!("dbpath {}\n", db.display()))
}

/// A daemon whose queue is queue-sqlite with `conf`: mail for example.org
/// goes to `MAILDIRS/vmail`.
fn start(dir: &Scratch, conf: &Path, maildirs: &Path) -> Smtpd {
    start_with(dir, conf, maildirs, "")
}

/// [`start`] with `top` before the other lines.
fn start_with(dir: &Scratch, conf: &Path, maildirs: &Path, top: &str) -> Smtpd {
    let (uid, gid) = account();
    let home = writable(dir, "home");
    let vusers = dir.write("vusers", "@example.org vmail\n");
    let users = dir.write("users", &format!("vmail {uid}:{gid}:{}\n", home.display()));
    Smtpd::start(dir, |port| {
        format!(
            "{top}queue proc-exec \"{backend} {conf}\"\n\
             table vusers file:{vusers}\n\
             table users file:{users}\n\
             listen on 127.0.0.1 port {port} hostname mx.test\n\
             action \"deliver\" maildir \"{m}/%{{user.username}}\" virtual <vusers> userbase <users>\n\
             match from any for domain example.org action \"deliver\"\n",
            backend = binary("queue-sqlite").display(),
            conf = conf.display(),
            vusers = vusers.display(),
            users = users.display(),
            m = maildirs.display(),
        )
    })
}

#[test]
fn mail_goes_through_queue_sqlite_to_a_maildir() {
    let dir = Scratch::new("queue-proc", "deliver");
    let conf = queue_conf(&dir);
    let maildirs = writable(&dir, "maildir");
    let smtpd = start(&dir, &conf, &maildirs);
    let maildir = maildirs.join("vmail");

    // Held in the queue while local deliveries are paused: smtpctl lists
    // and shows what the backend stores.
    assert_eq!(smtpctl(&dir, &["pause", "mda"]), "command succeeded\n");
    let mut c = smtpd.connect(LOCAL);
    c.expect_code("EHLO client.test", "250");
    c.expect_code("MAIL FROM:<alice@client.test>", "250");
    c.expect_code("RCPT TO:<bob@example.org>", "250");
    let msgid = accepted_id(&c.data("Subject: held\r\n\r\nHello bob.\r\n"));
    c.expect_code("QUIT", "221");
    let listing = smtpctl(&dir, &["show", "queue"]);
    let evpid = listing.split('|').next().expect("an envelope").to_owned();
    assert!(evpid.starts_with(&msgid), "{listing}");
    assert!(listing.contains("|bob@example.org|"), "{listing}");
    let shown = smtpctl(&dir, &["show", "message", &evpid]);
    assert!(shown.contains("Subject: held\n"), "{shown}");
    let envelope = smtpctl(&dir, &["show", "envelope", &evpid]);
    assert!(envelope.contains("rcpt: bob@example.org"), "{envelope}");
    assert_eq!(smtpctl(&dir, &["resume", "mda"]), "command succeeded\n");

    // swaks, then smtplib with a message of several chunks (the daemon
    // writes 32 KiB chunks to the backend).
    let (out, code) = swaks(
        smtpd.port,
        &[
            "--helo",
            "client.test",
            "--from",
            "carol@client.test",
            "--to",
            "dave@example.org",
            "--header",
            "Subject: from swaks",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    let big = "0123456789abcdef".repeat(4096 * 3 / 16 * 16);
    common::mail::python(&format!(
        "import smtplib\n\
         s = smtplib.SMTP('127.0.0.1', {port})\n\
         s.sendmail('erin@client.test', ['frank@example.org'], \
         'Subject: from smtplib\\r\\n\\r\\n' + '{big_line}\\r\\n' * 8)\n\
         s.quit()\n",
        port = smtpd.port,
        big_line = &big[..8000],
    ));
    let found = assert_all_delivered_once(
        &maildir,
        &["held".into(), "from swaks".into(), "from smtplib".into()],
        || {},
    );
    assert_eq!(found.len(), 3, "{found:?}");
    let big_message = std::fs::read_dir(maildir.join("new"))
        .expect("maildir")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
        .find(|t| t.contains("Subject: from smtplib"))
        .expect("the large message");
    assert_eq!(big_message.matches(&big[..8000]).count(), 8);
    // Everything delivered is gone from the queue.
    let end = Instant::now() + DEADLINE;
    while !smtpctl(&dir, &["show", "queue"]).is_empty() {
        assert!(Instant::now() < end, "the queue is not emptied");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kill_9_of_the_daemon_under_load_loses_nothing_acknowledged() {
    let dir = Scratch::new("queue-proc", "kill-daemon");
    let conf = queue_conf(&dir);
    let maildirs = writable(&dir, "maildir");
    let mut smtpd = start(&dir, &conf, &maildirs);
    // Deliveries wait, so that the kill interrupts intake only: a
    // delivery cut between the maildir and the envelope's deletion would
    // be delivered again after the restart (at least once, as in every
    // MTA), which is not what this test is about.
    assert_eq!(smtpctl(&dir, &["pause", "mda"]), "command succeeded\n");
    let load = Load::start(smtpd.port, 4, 150);
    load.wait_acked(40);
    smtpd.stop(libc::SIGKILL);
    let lines = load.finish();
    let acked = acked_in(&lines);
    assert!(acked.len() >= 40, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("LOST ")),
        "the kill cut some transactions"
    );

    let smtpd = start(&dir, &conf, &maildirs);
    let found = assert_all_delivered_once(&maildirs.join("vmail"), &acked, || {});
    assert_only_sent(&found, &lines);
    drop(smtpd);
}

#[test]
fn kill_9_of_the_queue_backend_under_load_gives_4xx_then_resumes() {
    let dir = Scratch::new("queue-proc", "kill-backend");
    let conf = queue_conf(&dir);
    let maildirs = writable(&dir, "maildir");
    let smtpd = start(&dir, &conf, &maildirs);
    let needle = conf.display().to_string();
    let backend = pids_with("queue-sqlite", &needle);
    assert_eq!(backend.len(), 1, "one queue-sqlite runs: {backend:?}");

    let load = Load::start(smtpd.port, 4, 200);
    load.wait_acked(40);
    kill_9(backend[0]);
    smtpd.wait_for("backend queue exited");
    // While it is down (the first restart waits 1 s), intake answers 4xx
    // (the message is created in the queue at DATA).
    let mut probes = Vec::new();
    let first = probe(&smtpd, &mut probes);
    assert!(first.starts_with("451 4.3.0"), "{first}");
    // It comes back: a new child, and messages are accepted again.
    probe_until_accepted(&smtpd, &mut probes, "the queue backend");
    let restarted = pids_with("queue-sqlite", &needle);
    assert!(
        restarted.len() == 1 && restarted[0] != backend[0],
        "{restarted:?}"
    );

    let mut lines = load.finish();
    lines.extend(probes);
    let acked = acked_in(&lines);
    assert!(acked.len() > 40, "{lines:?}");
    assert!(
        lines.iter().all(|l| !l.starts_with("TEMP 5")),
        "never a 5xx: {lines:?}"
    );
    // Deliveries that failed while the backend was down are retried;
    // `schedule all` spares the test the retry delay.
    let found = assert_all_delivered_once(&maildirs.join("vmail"), &acked, || {
        smtpctl(&dir, &["schedule", "all"]);
    });
    assert_only_sent(&found, &lines);
}

/// The daemon's peak resident memory (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap()
}

#[test]
fn a_50_mb_message_goes_through_in_chunks_with_bounded_memory() {
    let dir = Scratch::new("queue-proc", "big");
    let conf = queue_conf(&dir);
    let maildirs = writable(&dir, "maildir");
    let smtpd = start_with(&dir, &conf, &maildirs, "smtp max-message-size 60M\n");
    let before = peak_rss_kib(smtpd.child.id());
    // 50 MB: 655,360 lines of 78 characters and CRLF.
    let out = common::mail::python(&format!(
        "import smtplib\n\
         line = b'0123456789' * 7 + b'abcdefgh' + b'\\r\\n'\n\
         body = b'Subject: big\\r\\n\\r\\n' + line * 655360\n\
         s = smtplib.SMTP('127.0.0.1', {port})\n\
         print(s.sendmail('big@client.test', ['rcpt@example.org'], body))\n\
         s.quit()\n",
        port = smtpd.port
    ));
    assert_eq!(out.trim(), "{}", "accepted");
    let files = common::backend::maildir_files(&maildirs.join("vmail"), 1);
    let lines = files[0]
        .matches("0123456789012345678901234567890123456789012345678901234567890123456789abcdefgh\n")
        .count();
    assert_eq!(lines, 655_360, "delivered whole");
    let grown = peak_rss_kib(smtpd.child.id()).saturating_sub(before);
    eprintln!("the daemon's peak RSS grew by {grown} KiB for a 50 MB message");
    // Through intake (64 KiB buffers), the queue client (32 KiB chunks)
    // and the delivery (256 KiB reads), never the whole message.
    assert!(
        grown < 20 * 1024,
        "the daemon grew by {grown} KiB for a 50 MB message"
    );
}
