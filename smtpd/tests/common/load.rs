//! Crashes under load, for the queue backends' end-to-end tests: several
//! concurrent Python smtplib senders ([`Load`]) that record which messages
//! were acknowledged, a probe that sends one message on a new connection
//! and records its reply ([`probe`]), and the checks that follow a crash:
//! every acknowledged message in the maildir ([`wait_all_delivered`],
//! [`assert_all_delivered_once`]), and nothing there that was never sent
//! ([`assert_only_sent`]). Messages are told apart by their subject; a
//! message delivered in part is counted apart.
//!
//! Also smtpctl on a daemon's control socket and the pids of a backend
//! process, to kill it with SIGKILL.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::mail::{Smtpd, LOCAL};
use super::{is_root, Scratch, DEADLINE};

/// smtpctl `words` on the control socket of the daemon run in `dir`; its
/// output.
pub(crate) fn smtpctl(dir: &Scratch, words: &[&str]) -> String {
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
    if is_root() {
        dir.0.join("smtpd.sock")
    } else {
        dir.0.join("data").join("smtpd.sock")
    }
}

/// The `Subject:` of every message in `MAILDIR/new`, counted; a message
/// cut short counts as `(cut short) SUBJECT`, one without a subject as
/// `(none)`.
pub(crate) fn delivered(maildir: &Path) -> HashMap<String, usize> {
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
/// now and then); the deliveries, duplicates included.
pub(crate) fn wait_all_delivered(
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

/// [`wait_all_delivered`], then asserts that none is there twice.
pub(crate) fn assert_all_delivered_once(
    maildir: &Path,
    acked: &[String],
    kick: impl FnMut(),
) -> HashMap<String, usize> {
    let found = wait_all_delivered(maildir, acked, kick);
    let twice: Vec<_> = found.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    found
}

/// Asserts that every message delivered is one a sender sent (the
/// unacknowledged ones may or may not have been delivered).
pub(crate) fn assert_only_sent(found: &HashMap<String, usize>, lines: &[String]) {
    for subject in found.keys() {
        let suffix = format!(" {subject}");
        assert!(
            lines.iter().any(|l| l.ends_with(&suffix)),
            "{subject} delivered but never sent"
        );
    }
}

/// The subjects of the lines `ACK SUBJECT`.
pub(crate) fn acked_in(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("ACK ").map(str::to_owned))
        .collect()
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
pub(crate) struct Load {
    senders: Vec<Child>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Load {
    /// `senders` senders to `port`, `count` messages each, with the
    /// subjects `sS-N`.
    pub(crate) fn start(port: u16, senders: usize, count: usize) -> Self {
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
    pub(crate) fn acked(&self) -> Vec<String> {
        acked_in(&self.lines.lock().expect("lines"))
    }

    /// Waits until `n` messages were acknowledged.
    pub(crate) fn wait_acked(&self, n: usize) {
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

    /// Waits for every sender to finish; every line they printed.
    pub(crate) fn finish(mut self) -> Vec<String> {
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

/// The pids of the processes whose command line holds both `program` and
/// `needle` (a backend's name and its configuration file).
pub(crate) fn pids_with(program: &str, needle: &str) -> Vec<i32> {
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
        if cmdline.contains(needle) && cmdline.contains(program) {
            pids.push(pid);
        }
    }
    pids
}

/// Sends SIGKILL to `pid`.
pub(crate) fn kill_9(pid: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
}

/// One message with the subject `probe-N` on a new connection: the reply
/// to DATA when it is not 354, else to the final dot. Records it in
/// `probes` as the senders do (`ACK SUBJECT` or `TEMP CODE SUBJECT`).
pub(crate) fn probe(smtpd: &Smtpd, probes: &mut Vec<String>) -> String {
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

/// Probes (see [`probe`]) until one is acknowledged, each refused one
/// answered 451; fails after [`DEADLINE`].
pub(crate) fn probe_until_accepted(smtpd: &Smtpd, probes: &mut Vec<String>, what: &str) {
    let end = Instant::now() + DEADLINE;
    loop {
        let reply = probe(smtpd, probes);
        if reply.starts_with("250") {
            return;
        }
        assert!(reply.starts_with("451"), "{reply}");
        assert!(Instant::now() < end, "{what} never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
}
