//! smtpctl's queue, scheduler and status commands against the built
//! `smtpd`: mail whose local delivery fails temporarily (the mda command
//! exits 75) stays in the queue, where `show queue`, `show envelope`,
//! `show message`, `schedule`, `pause`/`resume`, `discover`, `remove`,
//! `show stats`, `show status`, `log verbose` and `monitor` act on it as
//! on OpenSMTPD;
//! with the daemon stopped, `show queue` reads the spool itself.
//!
//! As root (CI), deliveries run as `nobody` (uid 65534) and the daemon
//! itself as `_smtpd`; smtpctl run as `nobody` is refused. Every wait is
//! on a log line, an answer or a bounded deadline, never a sleep.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::mail::{accepted_id, free_port, Client, Spool};
use common::{is_root, smtpd_command, Process, Scratch, DEADLINE};

/// The local action: every delivery fails temporarily.
const TEMPFAIL: &str = "cat >/dev/null; exit 75";

/// A daemon delivering example.org to `bob` with [`TEMPFAIL`].
struct Daemon {
    process: Process,
    port: u16,
    socket: PathBuf,
    data_dir: PathBuf,
    spool: Spool,
}

impl Daemon {
    fn start(dir: &Scratch) -> Self {
        let port = free_port();
        let uid = if is_root() {
            65534
        } else {
            // SAFETY: getuid has no preconditions.
            unsafe { libc::getuid() }
        };
        let config = dir.write(
            "smtpd.conf",
            &format!(
                "table users {{ bob = \"{uid}:{uid}:/\" }}\n\
                 listen on 127.0.0.1 port {port}\n\
                 action \"x\" mda \"{TEMPFAIL}\" userbase <users>\n\
                 match from any for domain example.org action \"x\"\n"
            ),
        );
        let process = Process::spawn(smtpd_command(dir, &config));
        process.wait_for(&format!("listening on 127.0.0.1:{port}"));
        let needle = "listening on control socket ";
        let line = process.wait_for(needle);
        let socket = PathBuf::from(&line[line.find(needle).unwrap() + needle.len()..]);
        let data_dir = dir.0.join("data");
        Self {
            process,
            port,
            socket,
            spool: Spool(data_dir.join("spool")),
            data_dir,
        }
    }

    /// Sends a message to bob@example.org; its id.
    fn send(&self, subject: &str) -> String {
        let mut c = Client::connect(self.port, Ipv4Addr::LOCALHOST);
        c.expect_code("EHLO client.test", "250");
        c.expect_code("MAIL FROM:<alice@client.test>", "250");
        c.expect_code("RCPT TO:<bob@example.org>", "250");
        let body = format!("Subject: {subject}\r\n\r\nHello bob.\r\n");
        let id = accepted_id(&c.data(&body));
        c.expect_code("QUIT", "221");
        id
    }

    /// Waits for the next failed attempt of an envelope of `msgid`.
    fn wait_tempfail(&self, msgid: &str) -> String {
        loop {
            let line = self.process.wait_for("result=TempFail");
            if line.contains(msgid) {
                return line;
            }
        }
    }

    fn smtpctl(&self) -> Command {
        smtpctl(&self.socket, &self.data_dir)
    }

    /// Runs smtpctl with `words`; asserts it succeeded; its output.
    fn ctl(&self, words: &[&str]) -> String {
        let out = self.smtpctl().args(words).output().unwrap();
        assert!(out.status.success(), "smtpctl {words:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs smtpctl with `words`, expecting it to fail.
    fn ctl_fails(&self, words: &[&str]) -> Output {
        let out = self.smtpctl().args(words).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "smtpctl {words:?}: {out:?}");
        out
    }
}

fn smtpctl(socket: &std::path::Path, data_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smtpctl"));
    cmd.arg("-s").arg(socket).arg("--data-dir").arg(data_dir);
    cmd.stdin(Stdio::null());
    cmd
}

/// The fields of the one `show queue` line in `listing`.
fn only_line(listing: &str) -> Vec<String> {
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 1, "{listing}");
    lines[0].split('|').map(str::to_owned).collect()
}

#[test]
fn a_tempfailing_envelope_is_listed_retried_paused_and_removed() {
    let dir = Scratch::new("queuectl", "flow");
    let daemon = Daemon::start(&dir);
    let msgid = daemon.send("first");
    daemon.wait_tempfail(&msgid);

    // show queue: the envelope, from the scheduler and its file (read
    // after the listing: the scheduler answers once the failure is
    // recorded in the file).
    let f = only_line(&daemon.ctl(&["show", "queue"]));
    let envelope = daemon.spool.only_envelope(&msgid);
    assert_eq!(f.len(), 14, "{f:?}");
    let evpid = f[0].clone();
    assert!(evpid.starts_with(&msgid) && evpid.len() == 16, "{f:?}");
    assert_eq!(
        &f[1..7],
        [
            "inet4",
            "mda",
            "",
            "alice@client.test",
            "bob@example.org",
            "bob@example.org"
        ]
    );
    assert_eq!(Some(f[7].as_str()), envelope.get("ctime"));
    assert_eq!(f[8], f[7], "expire is ctime + ttl, and ttl is 0");
    assert_eq!(Some(f[9].as_str()), envelope.get("last-try"));
    assert_eq!(f[10], "1");
    assert_eq!(f[11], "pending");
    let delay: i64 = f[12].parse().unwrap();
    assert!((-1..=10).contains(&delay), "next try within 10 s: {f:?}");
    assert_eq!(Some(f[13].as_str()), envelope.get("errorline"));
    assert!(f[13].contains("75"), "{f:?}");
    // Abbreviated, and for the message only.
    assert_eq!(
        daemon.ctl(&["sh", "q", &msgid]),
        daemon.ctl(&["show", "queue"])
    );
    assert_eq!(daemon.ctl(&["show", "queue", "0badcafe"]), "");

    // show envelope: the file as stored; show message: LF line ends.
    assert_eq!(daemon.ctl(&["show", "envelope", &evpid]), envelope.text);
    let stored = daemon.spool.message(&msgid);
    let shown = daemon.ctl(&["show", "message", &evpid]);
    assert_eq!(shown, stored.replace("\r\n", "\n"));
    assert!(shown.contains("Subject: first\n") && !shown.contains('\r'));
    assert_eq!(daemon.ctl(&["show", "message", &msgid]), shown);

    // schedule: a new attempt now, not in 10 s.
    assert_eq!(daemon.ctl(&["schedule", &evpid]), "1 envelope scheduled\n");
    daemon.wait_tempfail(&msgid);

    // pause mda: nothing is delivered, even when scheduled.
    assert_eq!(daemon.ctl(&["pause", "mda"]), "command succeeded\n");
    let again = daemon.ctl_fails(&["pause", "mda"]);
    assert_eq!(String::from_utf8_lossy(&again.stdout), "command failed\n");
    assert_eq!(
        daemon.ctl(&["show", "status"]),
        "MDA paused\nMTA running\nSMTP running\n"
    );
    assert_eq!(daemon.ctl(&["schedule", "all"]), "1 envelope scheduled\n");
    // The scheduler answers requests in order: had the schedule started
    // a delivery, this listing would show it in flight or retried.
    let f = only_line(&daemon.ctl(&["show", "queue"]));
    assert_eq!((f[10].as_str(), f[11].as_str()), ("2", "pending"), "{f:?}");
    assert_eq!(daemon.ctl(&["resume", "mda"]), "command succeeded\n");
    daemon.ctl_fails(&["resume", "mda"]);
    daemon.wait_tempfail(&msgid);
    assert_eq!(
        daemon.ctl(&["show", "status"]),
        "MDA running\nMTA running\nSMTP running\n"
    );

    // pause envelope: flagged `suspend` until resumed.
    assert_eq!(
        daemon.ctl(&["pause", "envelope", &msgid]),
        "1 envelope paused\n"
    );
    let f = only_line(&daemon.ctl(&["show", "queue"]));
    assert_eq!(f[3], "suspend", "{f:?}");
    assert_eq!(daemon.ctl(&["schedule", &evpid]), "0 envelope scheduled\n");
    assert_eq!(
        daemon.ctl(&["resume", "envelope", "all"]),
        "1 envelope resumed\n"
    );
    assert_eq!(only_line(&daemon.ctl(&["show", "queue"]))[3], "");

    // show stats: the counters touched so far, and the uptime.
    let stats = daemon.ctl(&["show", "stats"]);
    let value = |key: &str| -> i64 {
        let prefix = format!("{key}=");
        let line = stats.lines().find(|l| l.starts_with(&prefix));
        line.unwrap_or_else(|| panic!("no {key} in:\n{stats}"))[prefix.len()..]
            .parse()
            .unwrap()
    };
    assert!(value("scheduler.delivery.tempfail") >= 3, "{stats}");
    assert_eq!(value("scheduler.envelope"), 1, "{stats}");
    assert_eq!(value("scheduler.ramqueue.message"), 1, "{stats}");
    assert_eq!(value("smtp.session"), 0, "{stats}");
    assert_eq!(value("smtp.session.inet4"), 0, "{stats}");
    assert!(value("control.session") >= 1, "{stats}");
    assert!(value("uptime") >= 0);
    assert!(stats.contains("\nuptime.human="), "{stats}");
    assert!(
        !stats.contains("scheduler.delivery.ok"),
        "untouched: {stats}"
    );
    let keys: Vec<&str> = stats
        .lines()
        .map(|l| l.split('=').next().unwrap())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);

    // discover: an envelope file copied into the spool by hand is
    // scheduled (held back by pause mda, so that it stays listed).
    assert_eq!(daemon.ctl(&["pause", "mda"]), "command succeeded\n");
    let copy = format!("{msgid}0000abcd");
    let dir = daemon.spool.message_dir(&msgid);
    std::fs::copy(dir.join(&evpid), dir.join(&copy)).unwrap();
    // Owned as the spool is (by the daemon's unprivileged user as root).
    let owner = std::fs::metadata(&dir).unwrap();
    std::os::unix::fs::chown(dir.join(&copy), Some(owner.uid()), Some(owner.gid())).unwrap();
    assert_eq!(daemon.ctl(&["discover", &copy]), "1 envelope discovered\n");
    assert_eq!(daemon.ctl(&["discover", &copy]), "0 envelopes discovered\n");
    let listing = daemon.ctl(&["show", "queue", &msgid]);
    let ids: Vec<&str> = listing.lines().map(|l| &l[..16]).collect();
    let mut expected = [evpid.as_str(), copy.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected, "{listing}");

    // remove: gone from the scheduler and the spool, without a bounce.
    assert_eq!(daemon.ctl(&["remove", &msgid]), "2 envelopes removed\n");
    assert_eq!(daemon.ctl(&["resume", "mda"]), "command succeeded\n");
    assert_eq!(daemon.ctl(&["show", "queue"]), "");
    assert!(
        daemon.spool.committed().is_empty(),
        "{:?}",
        daemon.spool.committed()
    );
    assert_eq!(daemon.ctl(&["remove", "all"]), "0 envelope removed\n");
    let stats = daemon.ctl(&["show", "stats"]);
    assert!(stats.contains("scheduler.envelope.removed=2\n"), "{stats}");
    assert!(!stats.contains("queue.bounce"), "{stats}");
    let missing = daemon.ctl_fails(&["show", "envelope", &evpid]);
    assert_eq!(
        String::from_utf8_lossy(&missing.stdout),
        format!("command failed: no envelope {evpid} in the queue\n")
    );
}

#[test]
fn pause_smtp_log_verbose_and_monitor() {
    let dir = Scratch::new("queuectl", "smtp");
    let daemon = Daemon::start(&dir);

    // log verbose: debug lines from now on, such as a client's name.
    assert_eq!(daemon.ctl(&["log", "verbose"]), "command succeeded\n");
    let mut c = Client::connect(daemon.port, Ipv4Addr::LOCALHOST);
    daemon.process.wait_for("127.0.0.1 is ");
    c.expect_code("QUIT", "221");
    assert_eq!(daemon.ctl(&["log", "brief"]), "command succeeded\n");
    let mut c = Client::connect(daemon.port, Ipv4Addr::LOCALHOST);
    c.expect_code("QUIT", "221");
    daemon.process.wait_for(" smtp disconnected ");
    daemon.process.wait_for(" smtp disconnected ");
    let log = daemon.process.log.lock().unwrap().clone();
    assert_eq!(log.matches("127.0.0.1 is ").count(), 1, "{log}");

    // pause smtp: connections wait for their greeting until resume.
    assert_eq!(daemon.ctl(&["pause", "smtp"]), "command succeeded\n");
    daemon.ctl_fails(&["pause", "smtp"]);
    assert_eq!(
        daemon.ctl(&["show", "status"]),
        "MDA running\nMTA running\nSMTP paused\n"
    );
    // Connected while paused (the kernel's backlog completes the
    // handshake), greeted once resumed.
    let stream = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    assert_eq!(daemon.ctl(&["resume", "smtp"]), "command succeeded\n");
    let mut greeting = String::new();
    BufReader::new(&stream).read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("220 "), "{greeting}");
    (&stream).write_all(b"QUIT\r\n").unwrap();
    daemon.ctl_fails(&["resume", "smtp"]);

    // monitor: the header, then a line each second until killed.
    let msgid = daemon.send("monitored");
    daemon.wait_tempfail(&msgid);
    let mut monitor = daemon
        .smtpctl()
        .arg("monitor")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(monitor.stdout.take().unwrap()).lines();
    let mut next = || lines.next().unwrap().unwrap();
    assert_eq!(
        next(),
        "--- client ---  -- envelope --   ---- relay/delivery --- ------- misc -------"
    );
    assert_eq!(
        next(),
        "curr conn disc  curr  enq  deq   ok tmpfail prmfail loop expire remove bounce"
    );
    let first = next();
    assert_eq!(first.len(), 4 * 13 + 13, "{first:?}");
    let columns: Vec<u64> = first
        .split_whitespace()
        .map(|c| c.parse().unwrap())
        .collect();
    // Totals since start: four sessions opened (the last one may still
    // be closing), one envelope queued, its attempt failed.
    assert_eq!(columns[1], 4, "{first:?}");
    assert_eq!(columns[0] + columns[2], 4, "{first:?}");
    assert_eq!(columns[3..6], [1, 1, 0], "{first:?}");
    assert!(columns[7] >= 1, "{first:?}");
    let second = next();
    let columns: Vec<u64> = second
        .split_whitespace()
        .map(|c| c.parse().unwrap())
        .collect();
    assert_eq!(
        (columns[1], columns[3], columns[4]),
        (0, 1, 0),
        "changes only: {second:?}"
    );
    monitor.kill().unwrap();
    monitor.wait().unwrap();
}

#[test]
fn without_a_daemon_show_queue_reads_the_spool_and_others_need_root() {
    let dir = Scratch::new("queuectl", "offline");
    let mut daemon = Daemon::start(&dir);
    let msgid = daemon.send("offline");
    daemon.wait_tempfail(&msgid);
    let live = only_line(&daemon.ctl(&["show", "queue"]));

    if is_root() {
        for words in [&["show", "queue"][..], &["pause", "mda"], &["monitor"]] {
            let out = daemon
                .smtpctl()
                .args(words)
                .uid(65534)
                .gid(65534)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "{words:?}");
            assert_eq!(
                String::from_utf8_lossy(&out.stderr),
                "smtpctl: need root privileges\n",
                "{words:?}"
            );
        }
    }

    daemon.process.stop(libc::SIGTERM);
    let offline = only_line(&daemon.ctl(&["show", "queue"]));
    assert_eq!(offline[..11], live[..11]);
    assert_eq!(offline[11..13], ["offline", ""]);
    assert_eq!(offline[13], live[13]);
    let out = daemon.ctl_fails(&["show", "stats"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("smtpctl: smtpd doesn't seem to be running"),
        "{stderr}"
    );
}
