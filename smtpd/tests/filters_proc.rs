//! Proc-exec filters end to end: the built `smtpd` with filter processes
//! in Rust (the SDK's `filter_guard` example), Python (`smtpd_sdk`'s
//! `filter_guard`) and plain shell (`tests/filters/tag.sh`, a `while read`
//! loop), and a raw SMTP client.
//!
//! - every decision: reject (HELO, MAIL FROM), rewrite (the envelope
//!   sender), junk (`X-Spam: Yes` in the queued message), report (a
//!   `filter-report` line seen by the reporting shell filter), disconnect
//!   (421 and the connection closed), proceed; data-lines rewritten (a
//!   body line redacted, the Subject changed), dot-stuffing kept;
//! - a chain of three processes applied in order;
//! - a filter on `listen on socket` decides for sendmail's submissions
//!   and rewrites their data-lines;
//! - the `tx-*` reports of a transaction carry the queue message's id (it
//!   is created at MAIL FROM), that of `tx-envelope` too, and a
//!   transaction reset before DATA leaves no message behind;
//! - a filter killed with SIGKILL in the middle of a message: the client
//!   gets 451, nothing is queued, and after the restart the next message
//!   goes through;
//! - a filter that answers a malformed line: 451, and the line logged with
//!   the filter's name; one that never answers: 451 after the filter
//!   timeout, and the daemon goes on; one that writes a line after the
//!   request and then stalls is found hung and restarted all the same;
//! - a message of several megabytes streams through a data-line filter;
//!   40 MB through one that holds all of it until the final dot (as
//!   filter-dkimsign does) leave the daemon's peak memory a few MB higher;
//!   a client pausing mid-message longer than the filter timeout is no
//!   filter failure;
//!   one given up midway (too large) leaves nothing in the next.
//!
//! Nothing sleeps to synchronise: waits are on the daemon's log lines and
//! on replies.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::mail::{accepted_id, free_port, Client, Spool, OUTSIDER, TEMPFAIL};
use common::{is_root, smtpd_command, Process, Scratch};

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn workspace() -> PathBuf {
    crate_dir().parent().unwrap().to_path_buf()
}

/// The shell filter.
fn tag_script() -> PathBuf {
    crate_dir().join("tests/filters/tag.sh")
}

/// The Rust SDK's `filter_guard` example of this build's profile, built
/// when missing.
fn rust_guard() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // target/PROFILE/deps/filters_proc-HASH
        let exe = std::env::current_exe().unwrap();
        let profile = exe.parent().unwrap().parent().unwrap();
        let example = profile.join("examples/filter_guard");
        if !example.exists() {
            let mut cargo = std::process::Command::new(env!("CARGO"));
            cargo.args(["build", "-p", "smtpd-sdk", "--example", "filter_guard"]);
            if profile.file_name().is_some_and(|p| p == "release") {
                cargo.arg("--release");
            }
            let status = cargo.current_dir(workspace()).status().unwrap();
            assert!(status.success(), "building the filter_guard example failed");
        }
        example
    })
}

/// The Python SDK's `filter_guard`.
fn python_guard() -> String {
    let python = workspace().join("sdk-python/src");
    format!(
        "/usr/bin/env PYTHONPATH={} python3 -m smtpd_sdk.examples.filter_guard",
        python.display()
    )
}

/// A file the filters (run as `_smtpd` when the tests run as root) may
/// write.
fn shared_file(dir: &Scratch, name: &str) -> PathBuf {
    let path = dir.write(name, "");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    path
}

/// A `filter NAME proc-exec` line running the shell filter as NAME; its log
/// and pid files.
fn tag_filter(dir: &Scratch, name: &str) -> (String, PathBuf, PathBuf) {
    let log = shared_file(dir, &format!("{name}.log"));
    let pid = shared_file(dir, &format!("{name}.pid"));
    let line = format!(
        "filter {name} proc-exec \"/bin/sh {} {name} {} {}\"\n",
        tag_script().display(),
        log.display(),
        pid.display()
    );
    (line, log, pid)
}

/// A running daemon with filters.
struct Filtered {
    process: Process,
    port: u16,
    spool: Spool,
}

impl Filtered {
    /// The daemon with the `filters` declarations and the listener's
    /// `filter NAME`; example.org is delivered locally (deliveries fail
    /// temporarily, so messages stay in the queue to be read), and
    /// `--filter-timeout` is `timeout` seconds.
    fn start(dir: &Scratch, filters: &str, filter: &str, timeout: u64) -> Self {
        let port = free_port();
        let vusers = dir.write("vusers", "@example.org vmail\n");
        let users = dir.write("users", "vmail 65534:65534:/nonexistent\n");
        let config = format!(
            "table vusers file:{}\n\
             table users file:{}\n\
             {filters}\
             listen on 127.0.0.1 port {port} hostname mx.test filter {filter}\n\
             action \"local\" mda \"{TEMPFAIL}\" virtual <vusers> userbase <users>\n\
             match from any for domain example.org action \"local\"\n",
            vusers.display(),
            users.display(),
        );
        let path = dir.write("smtpd.conf", &config);
        let mut command = smtpd_command(dir, &path);
        command.arg("--filter-timeout").arg(timeout.to_string());
        let process = Process::spawn(command);
        process.wait_for(&format!("listening on 127.0.0.1:{port}"));
        Self {
            process,
            port,
            spool: Spool(dir.0.join("data").join("spool")),
        }
    }

    fn client(&self) -> Client {
        let mut c = Client::connect(self.port, OUTSIDER);
        c.expect_code("EHLO client.test", "250");
        c
    }
}

/// Sends one message from `sender` to `rcpt` with `body` (CRLF lines,
/// dot-stuffed); the reply to its end.
fn send(c: &mut Client, sender: &str, rcpt: &str, body: &str) -> String {
    c.expect_code(&format!("MAIL FROM:<{sender}>"), "250");
    c.expect_code(&format!("RCPT TO:<{rcpt}>"), "250");
    c.data(body)
}

/// The text of `log` once `needle` is on `count` of its lines (a filter
/// writes it as it reads), polled until the deadline.
fn wait_for_lines(log: &Path, needle: &str, count: usize) -> String {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap();
        if text.lines().filter(|l| l.contains(needle)).count() >= count {
            return text;
        }
        assert!(
            std::time::Instant::now() < end,
            "{needle} not {count} times in {}:\n{text}",
            log.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Every decision of the guard filter (`guard`, a Rust or Python process)
/// chained with the shell filter `tag`, which reports every event.
fn decisions(name: &str, guard: &str) {
    let dir = Scratch::new("filters", name);
    let (tag, tag_log, _) = tag_filter(&dir, "stamp");
    let filters =
        format!("filter guard proc-exec \"{guard}\"\n{tag}filter both chain {{ guard, stamp }}\n");
    let smtpd = Filtered::start(&dir, &filters, "both", 60);

    let mut c = Client::connect(smtpd.port, OUTSIDER);
    c.expect("EHLO spammer.example", "550 5.7.1 Go away");
    c.expect_code("EHLO client.test", "250");
    c.expect(
        "MAIL FROM:<spammer@example.com>",
        "550 5.7.1 Sender rejected",
    );
    // The second filter of the chain decides too.
    c.expect(
        "MAIL FROM:<shellreject@example.net>",
        "550 5.7.1 stamp says no",
    );

    // rewrite, report, and data-lines rewritten by both filters in turn.
    c.expect_code("MAIL FROM:<rewrite@example.com>", "250");
    c.expect_code("RCPT TO:<report@example.org>", "250");
    let reply = c.data(
        "Subject: hello\r\nFrom: <rewrite@example.com>\r\n\r\nsecret\r\n..starts with a dot\r\nthe end\r\n",
    );
    let rewritten = accepted_id(&reply);
    let envelope = smtpd.spool.only_envelope(&rewritten);
    assert_eq!(
        envelope.get("sender"),
        Some("postmaster@example.org"),
        "{}",
        envelope.text
    );
    let message = smtpd.spool.message(&rewritten);
    assert!(message.contains("Subject: hello stamp\r\n"), "{message}");
    assert!(message.contains("\r\n[redacted]\r\n"), "{message}");
    assert!(!message.contains("secret"), "{message}");
    assert!(message.contains("\r\n.starts with a dot\r\n"), "{message}");
    assert!(message.contains("Received: from client.test"), "{message}");
    assert!(!message.contains("X-Spam"), "{message}");

    // junk: the header comes first.
    let reply = send(
        &mut c,
        "junk@example.com",
        "alice@example.org",
        "Subject: spam\r\n\r\nbuy\r\n",
    );
    let junk = accepted_id(&reply);
    let message = smtpd.spool.message(&junk);
    assert!(
        message.starts_with("X-Spam: Yes\r\nReceived: "),
        "{message}"
    );
    assert!(message.contains("Subject: spam stamp\r\n"), "{message}");

    // The next transaction is clean again.
    let reply = send(
        &mut c,
        "bob@example.net",
        "alice@example.org",
        "Subject: ham\r\n\r\nhi\r\n",
    );
    let clean = accepted_id(&reply);
    assert!(!smtpd.spool.message(&clean).contains("X-Spam"));

    // disconnect.
    c.expect_code("MAIL FROM:<bob@example.net>", "250");
    c.expect(
        "RCPT TO:<drop@example.org>",
        "421 4.7.0 Too many recipients",
    );
    assert!(c.is_closed());
    let mut d = smtpd.client();
    d.expect("QUIT", "221 2.0.0 Bye");
    smtpd.process.wait_for("smtp disconnected");

    // What the reporting filter saw, in 7.8's format, once it has read
    // the end of both sessions.
    let seen = wait_for_lines(&tag_log, "|smtp-in|link-disconnect|", 2);
    let has = |what: &str| seen.lines().any(|l| l.contains(what));
    let response = |what: &str| {
        seen.lines()
            .any(|l| l.contains("|smtp-in|filter-response|") && l.ends_with(what))
    };
    assert!(seen.starts_with("config|smtpd-version|"), "{seen}");
    for line in [
        "config|protocol|0.7",
        "config|smtp-session-timeout|300",
        "config|subsystem|smtp-in",
        "config|ready",
    ] {
        assert!(seen.lines().any(|l| l == line), "{line} missing:\n{seen}");
    }
    assert!(has("|smtp-in|link-connect|"), "{seen}");
    assert!(has(&format!("|127.0.0.1:{}", smtpd.port)), "{seen}");
    assert!(has("|smtp-in|filter-report|"), "{seen}");
    assert!(has("|proc|guard|recipient noted"), "{seen}");
    assert!(has("|smtp-in|link-identify|"), "{seen}");
    assert!(has("|EHLO|client.test"), "{seen}");
    assert!(has("|smtp-in|protocol-client|"), "{seen}");
    assert!(has("|MAIL FROM:<rewrite@example.com>"), "{seen}");
    assert!(has("|smtp-in|protocol-server|"), "{seen}");
    assert!(has("|smtp-in|tx-begin|"), "{seen}");
    assert!(has("|ok|rewrite@example.com"), "{seen}");
    assert!(has("|smtp-in|tx-envelope|"), "{seen}");
    assert!(has("|smtp-in|tx-commit|"), "{seen}");
    assert!(
        response("|mail-from|reject|550 5.7.1 Sender rejected"),
        "{seen}"
    );
    assert!(
        response("|rcpt-to|disconnect|421 4.7.0 Too many recipients"),
        "{seen}"
    );
    assert!(response("|mail-from|junk"), "{seen}");
    assert!(response("|rcpt-to|proceed"), "{seen}");
    assert!(response("|rcpt-to|report|recipient noted"), "{seen}");
    assert!(response("|connected|proceed"), "{seen}");
    assert!(
        seen.lines().any(|l| l.starts_with("report|0.7|")
            && l.contains("|smtp-in|link-disconnect|")
            && l.split('|').count() == 6),
        "{seen}"
    );
    // The data-lines it filtered: the Received header first, then the
    // client's lines still dot-stuffed, then the end.
    assert!(has("|data-line|"), "{seen}");
    assert!(has("|..starts with a dot"), "{seen}");
    assert!(
        seen.lines()
            .any(|l| l.contains("|smtp-in|data-line|") && l.ends_with("|.")),
        "{seen}"
    );
}

#[test]
fn every_decision_through_a_rust_filter() {
    decisions("rust", &rust_guard().display().to_string());
}

#[test]
fn every_decision_through_a_python_filter() {
    decisions("python", &python_guard());
}

#[test]
fn a_chain_of_three_runs_in_order() {
    let dir = Scratch::new("filters", "chain");
    let mut filters = String::new();
    for name in ["one", "two", "three"] {
        filters.push_str(&tag_filter(&dir, name).0);
    }
    filters.push_str("filter all chain { two, one, three }\n");
    let smtpd = Filtered::start(&dir, &filters, "all", 60);
    let mut c = smtpd.client();
    c.expect(
        "MAIL FROM:<shellreject@example.net>",
        "550 5.7.1 two says no",
    );
    let reply = send(
        &mut c,
        "a@example.net",
        "b@example.org",
        "Subject: x\r\n\r\nbody\r\n",
    );
    let message = smtpd.spool.message(&accepted_id(&reply));
    assert!(
        message.contains("Subject: x two one three\r\n"),
        "{message}"
    );
    c.expect("QUIT", "221 2.0.0 Bye");
}

/// `smtpctl show filters` against the daemon of `dir`.
fn show_filters(dir: &Scratch) -> String {
    let socket = match is_root() {
        true => dir.0.join("smtpd.sock"),
        false => dir.0.join("data").join("smtpd.sock"),
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smtpctl"))
        .arg("-s")
        .arg(socket)
        .args(["show", "filters"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn read_pid(path: &Path) -> libc::pid_t {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_filter_killed_mid_message_loses_nothing() {
    let dir = Scratch::new("filters", "killed");
    let (tag, _, pid_file) = tag_filter(&dir, "stamp");
    let smtpd = Filtered::start(&dir, &tag, "stamp", 60);
    let mut c = smtpd.client();
    c.expect_code("MAIL FROM:<a@example.net>", "250");
    c.expect_code("RCPT TO:<b@example.org>", "250");
    c.expect_code("DATA", "354");
    c.send(b"Subject: doomed\r\n\r\nfirst line\r\n");
    let pid = read_pid(&pid_file);
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    smtpd.process.wait_for("backend stamp exited");
    c.send(b"second line\r\n");
    let reply = c.command(".");
    assert!(reply.starts_with("451 "), "{reply}");
    assert!(smtpd.spool.committed().is_empty());
    // The session goes on; once the filter is back, mail flows again.
    c.expect_code("NOOP", "250");
    smtpd.process.wait_for("backend stamp restarted");
    assert_ne!(read_pid(&pid_file), pid);
    let reply = send(
        &mut c,
        "a@example.net",
        "b@example.org",
        "Subject: again\r\n\r\nok\r\n",
    );
    let message = smtpd.spool.message(&accepted_id(&reply));
    assert!(message.contains("Subject: again stamp\r\n"), "{message}");
    assert_eq!(smtpd.spool.committed().len(), 1);
    // The cut message was deleted before the next one began.
    let incoming = smtpd.spool.0.join("incoming");
    let left: Vec<_> = std::fs::read_dir(incoming).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    // smtpctl shows it running again, restarted once, with its counters.
    let listing = show_filters(&dir);
    let mut lines = listing.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "COMMAND",
            "STATE",
            "PID",
            "REQUESTS",
            "REPORTS",
            "DATA-LINES",
            "ERRORS",
            "RESTARTS",
            "P99"
        ]
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with("stamp  proc-exec \"/bin/sh "), "{listing}");
    let pid = read_pid(&pid_file).to_string();
    let after_command = row.rsplit('"').next().unwrap();
    let cells: Vec<&str> = after_command.split_whitespace().collect();
    assert_eq!(cells[..2], ["running", pid.as_str()], "{listing}");
    let count = |i: usize| cells[i].parse::<u64>().unwrap();
    // Requests: mail-from and commit of the message that went through.
    assert!(count(2) >= 2, "requests: {listing}");
    // Every event of both sessions' transactions, and both messages'
    // lines (the Received: header, the client's, the dot).
    assert!(count(3) >= 10, "reports: {listing}");
    assert!(count(4) >= 10, "data-lines: {listing}");
    // The message cut by the kill.
    assert!(count(5) >= 1, "errors: {listing}");
    assert_eq!(cells[6], "1", "restarts: {listing}");
}

#[test]
fn a_stalled_filter_times_out_with_a_temporary_failure() {
    let dir = Scratch::new("filters", "stalled");
    let (tag, _, _) = tag_filter(&dir, "stamp");
    let smtpd = Filtered::start(&dir, &tag, "stamp", 2);
    let mut c = smtpd.client();
    let reply = c.command("MAIL FROM:<stall@example.net>");
    assert!(reply.starts_with("451 4.7.0 "), "{reply}");
    smtpd.process.wait_for("no answer within 2 s");
    c.expect("QUIT", "221 2.0.0 Bye");
    // The silent child is replaced; the daemon serves on.
    smtpd.process.wait_for("backend stamp restarted");
    let mut c = smtpd.client();
    // A malformed answer: logged with the filter's name and the line.
    let reply = c.command("MAIL FROM:<garbage@example.net>");
    assert!(reply.starts_with("451 4.7.0 "), "{reply}");
    let logged = smtpd.process.wait_for("bad line from backend stamp");
    assert!(logged.contains("|maybe"), "{logged}");
    let reply = send(
        &mut c,
        "a@example.net",
        "b@example.org",
        "Subject: later\r\n\r\nok\r\n",
    );
    accepted_id(&reply);
}

#[test]
fn a_large_message_streams_through_a_data_line_filter() {
    let dir = Scratch::new("filters", "large");
    let guard = rust_guard().display().to_string();
    let filters = format!("filter guard proc-exec \"{guard}\"\n");
    let smtpd = Filtered::start(&dir, &filters, "guard", 60);
    let mut c = smtpd.client();
    c.expect_code("MAIL FROM:<a@example.net>", "250");
    c.expect_code("RCPT TO:<b@example.org>", "250");
    c.expect_code("DATA", "354");
    c.send(b"Subject: big\r\n\r\n");
    let line = format!("{}\r\n", "x".repeat(998));
    let chunk = line.repeat(1000);
    for i in 0..8 {
        c.send(chunk.as_bytes());
        if i == 4 {
            c.send(b"secret\r\n..dotted\r\n");
        }
    }
    let reply = c.command(".");
    let message = smtpd.spool.message(&accepted_id(&reply));
    assert_eq!(message.matches(&line).count(), 8000);
    assert!(message.contains(&format!("{line}[redacted]\r\n.dotted\r\n{line}")));
    assert!(message.ends_with(&line));
}

#[test]
fn a_filter_on_the_socket_listener_sees_local_submissions() {
    use common::enqueue::{outcome, sendmail, Daemon};
    let dir = Scratch::new("filters", "socket");
    let (tag, tag_log, _) = tag_filter(&dir, "stamp");
    let vusers = dir.write("vusers", "@example.org vmail\n");
    let users = dir.write("users", "vmail 65534:65534:/nonexistent\n");
    dir.write(
        "smtpd.conf",
        &format!(
            "table vusers file:{}\n\
             table users file:{}\n\
             {tag}\
             listen on socket filter stamp\n\
             action \"local\" mda \"{TEMPFAIL}\" virtual <vusers> userbase <users>\n\
             match from local for domain example.org action \"local\"\n",
            vusers.display(),
            users.display(),
        ),
    );
    let daemon = Daemon::start(&dir);
    let spool = Spool(daemon.data_dir.join("spool"));
    // The filter decides: a sender it refuses gets its reply through
    // sendmail.
    let out = sendmail(
        &dir,
        &["-f", "shellreject@example.net", "b@example.org"],
        "Subject: no\n\nno\n",
    );
    let (status, _, stderr) = outcome(&out);
    assert!(status.is_some_and(|s| s != 0), "{stderr}");
    assert_eq!(
        stderr, "sendmail: command failed: 550 5.7.1 stamp says no\n",
        "{stderr}"
    );
    assert!(spool.committed().is_empty());
    // Another goes through, its data-lines rewritten by the filter.
    let out = sendmail(
        &dir,
        &["-oi", "-f", "cron@example.net", "b@example.org"],
        "Subject: nightly\n\nAll done.\n",
    );
    assert_eq!(outcome(&out), (Some(0), String::new(), String::new()));
    let committed = spool.committed();
    assert_eq!(committed.len(), 1);
    let msgid = committed[0].file_name().unwrap().to_str().unwrap();
    let message = spool.message(msgid);
    assert!(
        message.contains("\r\nSubject: nightly stamp\r\n"),
        "{message}"
    );
    assert!(message.ends_with("\r\n\r\nAll done.\r\n"), "{message:?}");
    // The reports name the local socket and the transaction.
    let log = wait_for_lines(&tag_log, "|link-disconnect|", 2);
    let connects: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("|link-connect|"))
        .collect();
    assert_eq!(connects.len(), 2, "{log}");
    assert!(
        connects
            .iter()
            .all(|l| l.ends_with("|pass|unix:/var/run/smtpd.sock|unix:/var/run/smtpd.sock")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "|tx-mail|{}|{msgid}|ok|cron@example.net\n",
            sid(&log, 1)
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("|tx-commit|{}|{msgid}|", sid(&log, 1))),
        "{log}"
    );
    drop(daemon);
}

/// The session id of the `n`th (from 0) `link-connect` in `log`.
fn sid(log: &str, n: usize) -> String {
    let line = log
        .lines()
        .filter(|l| l.contains("|link-connect|"))
        .nth(n)
        .unwrap();
    line.split('|').nth(5).unwrap().to_owned()
}

/// The `tx-*` report lines of `log`: (event, msgid, the fields after).
fn tx_reports(log: &str) -> Vec<(String, String, String)> {
    log.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.splitn(8, '|').collect();
            (fields[0] == "report" && fields.get(4)?.starts_with("tx-")).then(|| {
                (
                    fields[4].to_owned(),
                    fields[6].to_owned(),
                    fields.get(7).copied().unwrap_or("").to_owned(),
                )
            })
        })
        .collect()
}

#[test]
fn every_transaction_report_carries_the_queue_message_id() {
    let dir = Scratch::new("filters", "txids");
    let (tag, tag_log, _) = tag_filter(&dir, "stamp");
    let smtpd = Filtered::start(&dir, &tag, "stamp", 60);
    let incoming = smtpd.spool.0.join("incoming");
    let mut c = smtpd.client();
    // A transaction reset before DATA: its message is created at MAIL
    // FROM and deleted at RSET.
    c.expect_code("MAIL FROM:<a@example.net>", "250");
    c.expect_code("RCPT TO:<b@example.org>", "250");
    c.expect_code("RSET", "250");
    let log = wait_for_lines(&tag_log, "|tx-reset|", 1);
    let reset = tx_reports(&log);
    let events: Vec<&str> = reset.iter().map(|(e, _, _)| e.as_str()).collect();
    assert_eq!(
        events,
        ["tx-begin", "tx-mail", "tx-rcpt", "tx-rollback", "tx-reset"]
    );
    assert!(reset.iter().all(|(_, id, _)| *id == reset[0].1), "{log}");
    // A committed one: one id from tx-begin to tx-commit, the queue's.
    let reply = send(
        &mut c,
        "a@example.net",
        "b@example.org",
        "Subject: ids\r\n\r\nok\r\n",
    );
    let msgid = accepted_id(&reply);
    c.expect("QUIT", "221 2.0.0 Bye");
    let log = wait_for_lines(&tag_log, "|tx-reset|", 2);
    let reports = tx_reports(&log);
    let committed = &reports[reset.len()..];
    let events: Vec<&str> = committed.iter().map(|(e, _, _)| e.as_str()).collect();
    assert_eq!(
        events,
        [
            "tx-begin",
            "tx-mail",
            "tx-rcpt",
            "tx-data",
            "tx-envelope",
            "tx-commit",
            "tx-reset"
        ],
        "{log}"
    );
    for (event, id, _) in committed {
        assert_eq!(*id, msgid, "{event}: {log}");
    }
    let envelopes = smtpd.spool.envelopes(&msgid);
    let (_, _, evpid) = &committed[4];
    assert_eq!(envelopes.len(), 1);
    assert!(evpid.starts_with(&msgid), "{evpid}");
    assert_ne!(reset[0].1, msgid, "each transaction its own id");
    // Nothing is left half-made in the queue.
    let left: Vec<_> = std::fs::read_dir(&incoming).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
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
fn a_filter_holding_the_whole_message_costs_the_daemon_no_memory() {
    let dir = Scratch::new("filters", "hold");
    let hold = crate_dir().join("tests/filters/hold.py");
    let filters = format!(
        "smtp max-message-size 60M\nfilter hold proc-exec \"/usr/bin/env python3 {}\"\n",
        hold.display()
    );
    let smtpd = Filtered::start(&dir, &filters, "hold", 60);
    let pid = smtpd.process.child.id();
    // A small message first, so that the peak measured from here on is
    // the large one's.
    let mut c = smtpd.client();
    accepted_id(&send(
        &mut c,
        "a@example.net",
        "b@example.org",
        "Subject: small\r\n\r\nsmall\r\n",
    ));
    let before = peak_rss_kib(pid);
    // 40 MB: 40,000 lines of 998 characters, each line numbered.
    let mut body = String::new();
    for i in 0..40_000 {
        body.push_str(&format!("{i:08}{}\r\n", "z".repeat(990)));
    }
    c.expect_code("MAIL FROM:<a@example.net>", "250");
    c.expect_code("RCPT TO:<b@example.org>", "250");
    c.expect_code("DATA", "354");
    c.send(b"Subject: big\r\n\r\n");
    c.send(body.as_bytes());
    let reply = c.command(".");
    let message = smtpd.spool.message(&accepted_id(&reply));
    // Headers (Date: and Message-ID: added on loopback), then the body
    // whole.
    let (headers, text) = message.split_once("\r\n\r\n").unwrap();
    assert!(headers.contains("\r\nSubject: big\r\n"), "{headers}");
    assert!(text == body, "the body arrives whole");
    let grown = peak_rss_kib(pid).saturating_sub(before);
    // The filter held 40 MB and gave it back at once; the daemon wrote it
    // to the queue as it came, a few bounded buffers at a time.
    assert!(grown < 10 * 1024, "peak memory grew by {grown} KiB");
}

#[test]
fn a_client_may_pause_longer_than_the_filter_timeout_mid_message() {
    let dir = Scratch::new("filters", "pause");
    let hold = crate_dir().join("tests/filters/hold.py");
    let filters = format!(
        "filter hold proc-exec \"/usr/bin/env python3 {}\"\n",
        hold.display()
    );
    let smtpd = Filtered::start(&dir, &filters, "hold", 1);
    let mut c = smtpd.client();
    c.expect_code("MAIL FROM:<a@example.net>", "250");
    c.expect_code("RCPT TO:<b@example.org>", "250");
    c.expect_code("DATA", "354");
    c.send(b"Subject: slow\r\n\r\nfirst\r\n");
    // The filter holds everything until the dot; the client's pause is
    // no filter failure (the client's own data timeout is minutes).
    std::thread::sleep(std::time::Duration::from_millis(2500));
    c.send(b"second\r\n");
    let reply = c.command(".");
    let message = smtpd.spool.message(&accepted_id(&reply));
    assert!(
        message.ends_with("\r\n\r\nfirst\r\nsecond\r\n"),
        "{message:?}"
    );
}

#[test]
fn a_message_given_up_midway_leaves_nothing_in_the_next() {
    let dir = Scratch::new("filters", "abandoned");
    let (tag, _, _) = tag_filter(&dir, "stamp");
    let filters = format!("smtp max-message-size 20000\n{tag}");
    let smtpd = Filtered::start(&dir, &filters, "stamp", 60);
    let mut c = smtpd.client();
    c.expect_code("MAIL FROM:<a@example.net>", "250");
    c.expect_code("RCPT TO:<b@example.org>", "250");
    c.expect_code("DATA", "354");
    let line = format!("{}\r\n", "y".repeat(500));
    c.send(line.repeat(100).as_bytes());
    let reply = c.command(".");
    assert!(reply.starts_with("552 "), "{reply}");
    assert!(smtpd.spool.committed().is_empty());
    // What the filter still had of the first message goes nowhere.
    let reply = send(
        &mut c,
        "a@example.net",
        "b@example.org",
        "Subject: small\r\n\r\nsmall\r\n",
    );
    let message = smtpd.spool.message(&accepted_id(&reply));
    assert!(!message.contains("yyy"), "{message}");
    assert!(message.contains("Subject: small stamp\r\n"), "{message}");
    assert!(message.ends_with("\r\n\r\nsmall\r\n"), "{message:?}");
    // The message given up was deleted before the next one began.
    let incoming = smtpd.spool.0.join("incoming");
    let left: Vec<_> = std::fs::read_dir(incoming).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_reject_at_connect_replaces_the_banner_and_refuses_helo() {
    use std::io::{BufRead, BufReader, Write};
    let dir = Scratch::new("filters", "connect");
    let filters = "filter gate phase connect match src regex { \"^127[.]\" } \
                   reject \"550 5.7.1 Not you\"\n";
    let smtpd = Filtered::start(&dir, filters, "gate", 60);
    let stream = std::net::TcpStream::connect(("127.0.0.1", smtpd.port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut exchange = |command: &str| {
        if !command.is_empty() {
            writer
                .write_all(format!("{command}\r\n").as_bytes())
                .unwrap();
        }
        line.clear();
        reader.read_line(&mut line).unwrap();
        line.clone()
    };
    assert_eq!(exchange(""), "550 5.7.1 Not you\r\n");
    assert!(exchange("EHLO client.test").starts_with("503 "));
    assert!(exchange("HELO client.test").starts_with("503 "));
    assert!(exchange("MAIL FROM:<a@example.net>").starts_with("503 "));
    assert_eq!(exchange("QUIT"), "221 2.0.0 Bye\r\n");
}
