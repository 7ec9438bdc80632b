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

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::backend::{account, binary, writable};
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

/// smtpctl on the daemon's control socket.
fn smtpctl(dir: &Scratch, words: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_smtpctl"))
        .arg("-s")
        .arg(control_socket(dir))
        .arg("--data-dir")
        .arg(dir.0.join("data"))
        .args(words)
        .stdin(Stdio::null())
        .output()
        .expect("smtpctl runs");
    assert!(out.status.success(), "smtpctl {words:?}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

fn control_socket(dir: &Scratch) -> PathBuf {
    if common::is_root() {
        dir.0.join("smtpd.sock")
    } else {
        dir.0.join("data").join("smtpd.sock")
    }
}

/// The `Subject:` of every message in `MAILDIR/new`, counted; a message
/// cut short counts as `(cut short) SUBJECT`, one without a subject as
/// `(none)`.
fn delivered(maildir: &Path) -> HashMap<String, usize> {
    let mut found = HashMap::new();
    let Ok(entries) = std::fs::read_dir(maildir.join("new")) else {
        return found;
    };
    for entry in entries {
        let text = std::fs::read_to_string(entry.expect("entry").path()).unwrap_or_default();
        // A message delivered in part would lose its end: the senders'
        // bodies are one line of 2000 x, the probes' the word probe.
        let whole = text.ends_with(&format!("\n{}\n", "x".repeat(2000)))
            || text.ends_with("\nprobe\n")
            || !text.contains("Subject: s");
        let subject = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or("(none)");
        let key = if whole {
            subject.to_owned()
        } else {
            format!("(cut short) {subject}")
        };
        *found.entry(key).or_default() += 1;
    }
    found
}

/// Waits until every subject of `acked` is in `maildir` (running `kick`
/// now and then), then asserts that none is there twice; the deliveries.
fn assert_all_delivered_once(
    maildir: &Path,
    acked: &[String],
    mut kick: impl FnMut(),
) -> HashMap<String, usize> {
    let end = Instant::now() + 3 * DEADLINE;
    let mut next_kick = Instant::now();
    loop {
        let found = delivered(maildir);
        let missing: Vec<&String> = acked.iter().filter(|s| !found.contains_key(*s)).collect();
        if missing.is_empty() {
            let twice: Vec<_> = found.iter().filter(|(_, n)| **n > 1).collect();
            assert!(twice.is_empty(), "delivered more than once: {twice:?}");
            return found;
        }
        assert!(
            Instant::now() < end,
            "{} of {} acknowledged messages never delivered, e.g. {:?}; delivered: {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)],
            found.keys().collect::<std::collections::BTreeSet<_>>()
        );
        if Instant::now() >= next_kick {
            kick();
            next_kick = Instant::now() + Duration::from_secs(2);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that every message delivered is one a sender sent (the
/// unacknowledged ones may or may not have been delivered).
fn assert_only_sent(found: &HashMap<String, usize>, lines: &[String]) {
    for subject in found.keys() {
        let suffix = format!(" {subject}");
        assert!(
            lines.iter().any(|l| l.ends_with(&suffix)),
            "{subject} delivered but never sent"
        );
    }
}

/// One concurrent sender: Python's smtplib sending `count` messages with
/// the subjects `TAG-N` over one connection, reconnecting after any
/// failure; it prints `ACK`, `TEMP CODE` or `LOST` and the subject for
/// each.
const SENDER: &str = r#"
import smtplib, sys, time
port, tag, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conn = None
for n in range(count):
    subject = "%s-%d" % (tag, n)
    body = "Subject: %s\r\n\r\n%s\r\n" % (subject, "x" * 2000)
    try:
        if conn is None:
            conn = smtplib.SMTP("127.0.0.1", port, timeout=30)
            conn.ehlo("client.test")
        conn.sendmail("sender@client.test", ["rcpt@example.org"], body)
        print("ACK", subject, flush=True)
    except smtplib.SMTPResponseException as e:
        print("TEMP", e.smtp_code, subject, flush=True)
        try:
            conn.rset()
        except Exception:
            conn = None
    except smtplib.SMTPRecipientsRefused as e:
        code = list(e.recipients.values())[0][0]
        print("TEMP", code, subject, flush=True)
        conn = None
    except (OSError, smtplib.SMTPException):
        print("LOST", subject, flush=True)
        conn = None
        time.sleep(0.05)
"#;

/// Several senders at once and the lines they printed so far.
struct Load {
    senders: Vec<Child>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Load {
    fn start(port: u16, senders: usize, count: usize) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let senders = (0..senders)
            .map(|n| {
                let mut child = Command::new("python3")
                    .args([
                        "-c",
                        SENDER,
                        &port.to_string(),
                        &format!("s{n}"),
                        &count.to_string(),
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("python3 is on PATH");
                let out = child.stdout.take().expect("stdout");
                let lines = Arc::clone(&lines);
                std::thread::spawn(move || {
                    for line in BufReader::new(out).lines().map_while(Result::ok) {
                        lines.lock().expect("lines").push(line);
                    }
                });
                child
            })
            .collect();
        Self { senders, lines }
    }

    /// The subjects acknowledged so far.
    fn acked(&self) -> Vec<String> {
        self.with_status("ACK ")
    }

    fn with_status(&self, prefix: &str) -> Vec<String> {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .filter_map(|l| l.strip_prefix(prefix).map(str::to_owned))
            .collect()
    }

    /// Waits until `n` messages were acknowledged.
    fn wait_acked(&self, n: usize) {
        let end = Instant::now() + DEADLINE;
        while self.acked().len() < n {
            assert!(
                Instant::now() < end,
                "only {} acknowledged",
                self.acked().len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for every sender to finish.
    fn finish(mut self) -> Vec<String> {
        for child in &mut self.senders {
            assert!(child.wait().expect("wait").success());
        }
        // The reader threads see the end of output right after.
        std::thread::sleep(Duration::from_millis(100));
        let lines = self.lines.lock().expect("lines").clone();
        lines
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for child in &mut self.senders {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The pids of the processes whose command line holds `needle`.
fn pids_with(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let entry = entry.expect("entry");
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && cmdline.contains("queue-sqlite") {
            pids.push(pid);
        }
    }
    pids
}

fn kill_9(pid: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
}

/// One message with the subject `probe-N` on a new connection: the reply
/// to DATA when it is not 354, else to the final dot. Records it in
/// `probes` as the senders do (`ACK SUBJECT` or `TEMP CODE SUBJECT`).
fn probe(smtpd: &Smtpd, probes: &mut Vec<String>) -> String {
    let subject = format!("probe-{}", probes.len());
    let mut c = smtpd.connect(LOCAL);
    c.expect_code("EHLO client.test", "250");
    c.expect_code("MAIL FROM:<probe@client.test>", "250");
    c.expect_code("RCPT TO:<rcpt@example.org>", "250");
    let mut reply = c.command("DATA");
    if reply.starts_with("354") {
        c.send(format!("Subject: {subject}\r\n\r\nprobe\r\n").as_bytes());
        reply = c.command(".");
    }
    let status = match &reply[..3] {
        "250" => "ACK".to_owned(),
        code => format!("TEMP {code}"),
    };
    probes.push(format!("{status} {subject}"));
    reply
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
    let acked: Vec<String> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("ACK ").map(str::to_owned))
        .collect();
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
    let backend = pids_with(&needle);
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
    let end = Instant::now() + DEADLINE;
    loop {
        let reply = probe(&smtpd, &mut probes);
        if reply.starts_with("250") {
            break;
        }
        assert!(reply.starts_with("451"), "{reply}");
        assert!(Instant::now() < end, "the queue backend never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
    let restarted = pids_with(&needle);
    assert!(
        restarted.len() == 1 && restarted[0] != backend[0],
        "{restarted:?}"
    );

    let mut lines = load.finish();
    lines.extend(probes);
    let acked: Vec<String> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("ACK ").map(str::to_owned))
        .collect();
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
