//! Two daemons sharing one queue in PostgreSQL: `queue proc-exec
//! "queue-postgres CONF"` on the same schema of a real server that the test
//! starts (table-postgres's harness, `tests/pg/mod.rs`). The backend
//! registers `lease`, so each daemon claims an envelope before delivering
//! it and walks the store for what the other accepted (SPEC.md 4.12).
//! Leases of 5 s and a walk every second keep the test short
//! (`--queue-lease`, `--queue-rewalk`).
//!
//! - 1,000 messages sent with Python's smtplib, half to each daemon, from
//!   four concurrent senders: every acknowledged message is delivered
//!   exactly once (counted by Message-ID over both daemons' maildirs) and
//!   the store is empty at the end.
//! - The same with one daemon killed with SIGKILL mid-run, while it
//!   delivers the mail of both (the other's deliveries paused until then):
//!   the other takes over its envelopes once their leases expire, every
//!   acknowledged message is delivered, and the duplicates are at most the
//!   envelopes the dead daemon held a live lease on when it died (the
//!   window of SPEC.md 4.12: delivered, not yet deleted).

// A test harness: running the built binaries is its whole point, and a
// failed unwrap is a failed test.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

mod common;

#[path = "../../backends/table-postgres/tests/pg/mod.rs"]
mod pg;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::backend::{account, binary, writable};
use common::mail::{free_port, Smtpd, Spool};
use common::{smtpd_command, Process, Scratch, DEADLINE};
use pg::PgServer;

/// The lease of the test's daemons, in seconds.
const LEASE: u64 = 5;

/// A daemon on the shared queue, delivering mail for example.org into
/// `DIR/maildir/vmail`; its instance id from its log.
fn start(dir: &Scratch, pg: &PgServer, schema: &str) -> (Smtpd, String) {
    let conf = dir.write(
        "queue-postgres.conf",
        &format!("conninfo {}\nschema {schema}\n", pg.conninfo()),
    );
    let (uid, gid) = account();
    let home = writable(dir, "home");
    let maildirs = writable(dir, "maildir");
    let vusers = dir.write("vusers", "@example.org vmail\n");
    let users = dir.write("users", &format!("vmail {uid}:{gid}:{}\n", home.display()));
    let port = free_port();
    let config = dir.write(
        "smtpd.conf",
        &format!(
            "queue proc-exec \"{backend} {conf}\"\n\
             table vusers file:{vusers}\n\
             table users file:{users}\n\
             listen on 127.0.0.1 port {port} hostname mx.test\n\
             action \"deliver\" maildir \"{m}/%{{user.username}}\" virtual <vusers> userbase <users>\n\
             match from any for domain example.org action \"deliver\"\n",
            backend = binary("queue-postgres").display(),
            conf = conf.display(),
            vusers = vusers.display(),
            users = users.display(),
            m = maildirs.display(),
        ),
    );
    let mut cmd = smtpd_command(dir, &config);
    cmd.args(["--queue-lease", &LEASE.to_string(), "--queue-rewalk", "1"]);
    let smtpd = Smtpd {
        process: Process::spawn(cmd),
        port,
        spool: Spool(dir.0.join("data").join("spool")),
    };
    let shared = smtpd.wait_for("is shared: instance ");
    let instance = shared
        .split("instance ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap()
        .to_owned();
    // The listener may have logged before the scheduler.
    let listening = format!("listening on 127.0.0.1:{port}");
    let end = Instant::now() + DEADLINE;
    while !smtpd.log.lock().unwrap().contains(&listening) {
        assert!(Instant::now() < end, "smtpd does not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    (smtpd, instance)
}

/// smtpctl on the daemon's control socket.
fn smtpctl(dir: &Scratch, words: &[&str]) -> String {
    let socket = if common::is_root() {
        dir.0.join("smtpd.sock")
    } else {
        dir.0.join("data").join("smtpd.sock")
    };
    let out = Command::new(env!("CARGO_BIN_EXE_smtpctl"))
        .arg("-s")
        .arg(socket)
        .arg("--data-dir")
        .arg(dir.0.join("data"))
        .args(words)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "smtpctl {words:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn maildir(dir: &Scratch) -> PathBuf {
    dir.0.join("maildir").join("vmail")
}

/// The Message-ID of every message in the maildirs, counted.
fn delivered(maildirs: &[PathBuf]) -> HashMap<String, usize> {
    let mut found = HashMap::new();
    for maildir in maildirs {
        let Ok(entries) = std::fs::read_dir(maildir.join("new")) else {
            continue;
        };
        for entry in entries {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
            if let Some(id) = text.lines().find_map(|l| l.strip_prefix("Message-ID: ")) {
                *found.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    found
}

/// Waits until every Message-ID of `acked` is in the maildirs; the
/// deliveries.
fn wait_delivered(maildirs: &[PathBuf], acked: &[String]) -> HashMap<String, usize> {
    let end = Instant::now() + 4 * DEADLINE;
    loop {
        let found = delivered(maildirs);
        let missing: Vec<&String> = acked.iter().filter(|s| !found.contains_key(*s)).collect();
        if missing.is_empty() {
            return found;
        }
        assert!(
            Instant::now() < end,
            "{} of {} acknowledged messages never delivered, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One sender: Python's smtplib sending `count` messages with the
/// Message-IDs `<TAG-N@client.test>`, on a new connection after any
/// failure (the server also ends sessions after 100 messages); a message
/// answered 4xx is sent again. It prints `ACK` or `LOST` and the
/// Message-ID of each, and stops when the server refuses connections.
const SENDER: &str = r#"
import smtplib, sys, time
port, tag, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conn = None
for n in range(count):
    mid = "<%s-%d@client.test>" % (tag, n)
    body = "Message-ID: %s\r\nSubject: %s %d\r\n\r\n%s\r\n" % (mid, tag, n, "x" * 1000)
    for attempt in range(20):
        try:
            if conn is None:
                conn = smtplib.SMTP("127.0.0.1", port, timeout=30)
                conn.ehlo("client.test")
            conn.sendmail("sender@client.test", ["rcpt@example.org"], body)
            print("ACK", mid, flush=True)
            break
        except ConnectionRefusedError:
            print("LOST", mid, flush=True)
            sys.exit(0)
        except (OSError, smtplib.SMTPException):
            try:
                conn.close()
            except Exception:
                pass
            conn = None
            time.sleep(0.05)
    else:
        print("LOST", mid, flush=True)
"#;

/// Concurrent senders and the lines they printed.
struct Load {
    senders: Vec<Child>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Load {
    /// `per_port` senders to each port, `count` messages each.
    fn start(ports: &[u16], per_port: usize, count: usize) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut senders = Vec::new();
        for (p, port) in ports.iter().enumerate() {
            for n in 0..per_port {
                let mut child = Command::new("python3")
                    .args([
                        "-c",
                        SENDER,
                        &port.to_string(),
                        &format!("d{p}s{n}"),
                        &count.to_string(),
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("python3 is on PATH");
                let out = child.stdout.take().unwrap();
                let lines = Arc::clone(&lines);
                std::thread::spawn(move || {
                    for line in BufReader::new(out).lines().map_while(Result::ok) {
                        lines.lock().unwrap().push(line);
                    }
                });
                senders.push(child);
            }
        }
        Self { senders, lines }
    }

    fn acked(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("ACK ").map(str::to_owned))
            .collect()
    }

    /// Waits until `n` messages were acknowledged by daemon `p`.
    fn wait_acked_by(&self, p: usize, n: usize) {
        let end = Instant::now() + DEADLINE;
        let tag = format!("<d{p}s");
        while self.acked().iter().filter(|m| m.starts_with(&tag)).count() < n {
            assert!(
                Instant::now() < end,
                "only {} acknowledged",
                self.acked().len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for every sender; the acknowledged Message-IDs.
    fn finish(mut self) -> Vec<String> {
        for child in &mut self.senders {
            assert!(child.wait().unwrap().success());
        }
        std::thread::sleep(Duration::from_millis(100));
        self.acked()
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

/// `SELECT count(*) ...` on the server.
fn count(pg: &PgServer, sql: &str) -> usize {
    pg.psql(sql).trim().parse().unwrap()
}

/// Waits until the shared store holds no committed message and no envelope
/// of one (a daemon killed during a transaction leaves its message
/// uncommitted, removed by the backend's next start after a day).
fn wait_empty(pg: &PgServer, schema: &str) {
    let end = Instant::now() + DEADLINE;
    loop {
        let envelopes = count(
            pg,
            &format!(
                "SELECT count(*) FROM {schema}.envelopes e, {schema}.messages m \
                 WHERE m.msgid = e.msgid AND m.committed;"
            ),
        );
        let messages = count(
            pg,
            &format!("SELECT count(*) FROM {schema}.messages WHERE committed;"),
        );
        if envelopes == 0 && messages == 0 {
            return;
        }
        assert!(
            Instant::now() < end,
            "{envelopes} envelopes and {messages} messages left in the store"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_daemons_deliver_each_message_once_even_when_one_is_killed() {
    let pg = PgServer::start("queue-shared");

    // 1,000 messages, half to each daemon.
    let (da, db) = (
        Scratch::new("queue-shared", "a"),
        Scratch::new("queue-shared", "b"),
    );
    let (a, _) = start(&da, &pg, "shared");
    let (b, _) = start(&db, &pg, "shared");
    let started = Instant::now();
    let acked = Load::start(&[a.port, b.port], 2, 250).finish();
    assert_eq!(acked.len(), 1000, "every message acknowledged");
    let maildirs = [maildir(&da), maildir(&db)];
    let found = wait_delivered(&maildirs, &acked);
    let twice: Vec<_> = found.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(found.len(), 1000);
    let by_a = delivered(&maildirs[..1]).len();
    eprintln!(
        "1000 messages through two daemons in {:.1} s: {by_a} delivered by a, {} by b",
        started.elapsed().as_secs_f64(),
        1000 - by_a
    );
    wait_empty(&pg, "shared");
    drop((a, b));

    // Again, with daemon a killed mid-run.
    let (da, db) = (
        Scratch::new("queue-shared", "kill-a"),
        Scratch::new("queue-shared", "kill-b"),
    );
    let (mut a, instance_a) = start(&da, &pg, "killed");
    let (b, instance_b) = start(&db, &pg, "killed");
    assert_ne!(instance_a, instance_b);
    // b only accepts at first: a delivers the mail of both and has a
    // backlog of claimed envelopes when it dies.
    assert_eq!(smtpctl(&db, &["pause", "mda"]), "command succeeded\n");
    let load = Load::start(&[a.port, b.port], 2, 250);
    load.wait_acked_by(0, 150);
    let live = format!(
        "SELECT count(*) FROM killed.envelopes WHERE lease_owner = '{instance_a}' \
         AND lease_expires > now();"
    );
    let end = Instant::now() + DEADLINE;
    while count(&pg, &live) < 5 {
        assert!(Instant::now() < end, "a never had deliveries in flight");
        std::thread::sleep(Duration::from_millis(5));
    }
    a.stop(libc::SIGKILL);
    // What a held when it died: the only envelopes that may be delivered
    // twice (delivered by a, not yet deleted).
    let held = count(&pg, &live);
    assert!(held > 0, "a held no lease when it died");
    assert_eq!(smtpctl(&db, &["resume", "mda"]), "command succeeded\n");
    let acked = load.finish();
    let from_a = acked.iter().filter(|m| m.starts_with("<d0s")).count();
    assert!(from_a >= 150, "{from_a}");
    assert!(acked.len() > 500, "b went on accepting: {}", acked.len());
    let maildirs = [maildir(&da), maildir(&db)];
    let found = wait_delivered(&maildirs, &acked);
    let twice: Vec<(&String, &usize)> = found.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.iter().all(|(_, n)| **n == 2),
        "delivered more than twice: {twice:?}"
    );
    assert!(
        twice.len() <= held,
        "{} duplicates, but a held only {held} leases when it died: {twice:?}",
        twice.len()
    );
    // b took a's envelopes over: everything a accepted and had not
    // delivered reached b's maildir.
    let by_a = delivered(&maildirs[..1]);
    let taken_over = acked
        .iter()
        .filter(|m| m.starts_with("<d0s") && !by_a.contains_key(*m))
        .count();
    eprintln!(
        "kill -9 of a ({instance_a}) holding {held} leases: {from_a} accepted by a, \
         {} delivered by a (mail of both), {taken_over} of a's taken over by b \
         ({instance_b}), {} duplicates",
        by_a.len(),
        twice.len()
    );
    wait_empty(&pg, "killed");
    drop(b);
}
