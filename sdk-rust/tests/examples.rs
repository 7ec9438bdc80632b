//! The example backends, run as real processes and driven through their
//! stdin and stdout.
//!
//! The binaries are those `cargo test -p smtpd-sdk` builds in
//! target/PROFILE/examples (a run limited with `--test examples` does not
//! build them: use `cargo build -p smtpd-sdk --examples` first).

// Spawning the example binaries is what these tests are about, and in this
// harness a failed unwrap is a failed test.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

/// The directory of the example binaries built with this test.
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/PROFILE/deps/examples-HASH -> target/PROFILE/examples
    exe.parent().unwrap().parent().unwrap().join("examples")
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol-spec/vectors/fixtures")
        .join(name)
}

/// A running example and the lines it wrote.
struct Backend {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Backend {
    fn spawn(name: &str, args: &[&std::ffi::OsStr]) -> Self {
        let binary = examples_dir().join(name);
        let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.rs"));
        let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        assert!(
            modified(&binary) >= modified(&source),
            "{} is missing or older than its source: build it with \
             `cargo build -p smtpd-sdk --examples` (`cargo test -p smtpd-sdk` does)",
            binary.display()
        );
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).unwrap();
            text
        });
        Self {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// The next line, or `None` once the backend closed its output.
    fn recv(&mut self) -> Option<String> {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the backend said nothing"),
        }
    }

    fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.recv().expect("no answer")
    }

    fn handshake(&mut self, protocol: &str) -> Vec<String> {
        self.send("config|smtpd-version|0.1.0");
        self.send(&format!("config|protocol|{protocol}"));
        self.send("config|tablename|standard");
        self.send("config|ready");
        let mut lines = Vec::new();
        while lines.last().map(String::as_str) != Some("register|ready") {
            lines.push(self.recv().expect("EOF during the handshake"));
        }
        lines
    }

    /// Closes stdin and returns the exit status and what went to stderr.
    fn finish(mut self) -> (ExitStatus, String) {
        self.stdin = None;
        assert_eq!(self.recv(), None, "output after the last answer");
        let status = self.child.wait().unwrap();
        (status, self.stderr.join().unwrap())
    }
}

fn table_request(op: &str, id: &str, rest: &str) -> String {
    format!("table|0.1|1731000001.000412|standard|{op}|{id}{rest}")
}

#[test]
fn every_example_refuses_an_unknown_version() {
    let table = fixture("standard.table");
    for (name, args, speaks) in [
        ("table_static", vec![table.as_os_str()], "0.1"),
        ("filter_guard", vec![], "0.7"),
        ("queue_memory", vec![], "0.1"),
    ] {
        let mut backend = Backend::spawn(name, &args);
        backend.send("config|smtpd-version|0.1.0");
        backend.send("config|protocol|9.9");
        backend.send("config|ready");
        let (status, stderr) = backend.finish();
        assert_eq!(status.code(), Some(1), "{name}");
        assert_eq!(
            stderr,
            format!("unsupported protocol version 9.9 (this backend speaks {speaks})\n"),
            "{name}"
        );
    }
}

#[test]
fn table_static_serves_and_reloads_its_file() {
    let dir = std::env::temp_dir().join(format!("smtpd-sdk-examples-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("table");
    std::fs::copy(fixture("standard.table"), &path).unwrap();

    let mut t = Backend::spawn("table_static", &[path.as_os_str()]);
    let registered = t.handshake("0.1");
    assert_eq!(registered.len(), 14, "{registered:?}");
    let cases = [
        (
            "lookup",
            "00000001",
            "|alias|00000001|postmaster",
            "lookup-result|00000001|found|root",
        ),
        (
            "lookup",
            "00000002",
            "|string|00000002|pipe",
            "lookup-result|00000002|found|left|middle|right",
        ),
        (
            "lookup",
            "00000003",
            "|alias|00000003|nobody",
            "lookup-result|00000003|not-found",
        ),
        (
            "check",
            "00000004",
            "|netaddr|00000004|192.0.2.1",
            "check-result|00000004|found",
        ),
        (
            "check",
            "00000005",
            "|domain|00000005|example.com",
            "check-result|00000005|not-found",
        ),
        (
            "fetch",
            "00000006",
            "|source|00000006",
            "fetch-result|00000006|found|root",
        ),
        (
            "fetch",
            "00000007",
            "|source|00000007",
            "fetch-result|00000007|found|root, security@example.net",
        ),
        (
            "update",
            "00000008",
            "|00000008",
            "update-result|00000008|ok",
        ),
    ];
    for (op, _, rest, answer) in cases {
        let line = format!("table|0.1|1731000001.000412|standard|{op}{rest}");
        assert_eq!(t.ask(&line), answer);
    }
    // The file goes away: update fails, the old data stays.
    std::fs::remove_file(&path).unwrap();
    let answer = t.ask(&table_request("update", "00000009", ""));
    assert!(
        answer.starts_with("update-result|00000009|error|"),
        "{answer}"
    );
    assert_eq!(
        t.ask(&table_request("lookup", "alias", "|0000000a|postmaster")),
        "lookup-result|0000000a|found|root"
    );
    // A new file: update succeeds and serves it.
    std::fs::write(&path, "# new\nnewkey   new value\n").unwrap();
    assert_eq!(
        t.ask(&table_request("update", "0000000b", "")),
        "update-result|0000000b|ok"
    );
    assert_eq!(
        t.ask(&table_request("lookup", "alias", "|0000000c|newkey")),
        "lookup-result|0000000c|found|new value"
    );
    assert_eq!(
        t.ask(&table_request("lookup", "alias", "|0000000d|postmaster")),
        "lookup-result|0000000d|not-found"
    );
    let (status, _) = t.finish();
    assert!(status.success(), "{status}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn table_static_refuses_a_missing_file() {
    let (status, stderr) =
        Backend::spawn("table_static", &["/nonexistent/table".as_ref()]).finish();
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("/nonexistent/table"), "{stderr}");
}

#[test]
fn filter_guard_follows_the_standard_filter_fixture() {
    let mut f = Backend::spawn("filter_guard", &[]);
    let registered = f.handshake("0.7");
    assert!(registered.contains(&"register|filter|smtp-in|data-line".to_owned()));
    assert!(registered.contains(&"register|report|smtp-in|link-connect".to_owned()));
    let sid = "a1b2c3d4e5f60718";
    let t = "5d0a000100000001";
    let ask = |f: &mut Backend, phase: &str, param: &str| {
        f.ask(&format!(
            "filter|0.7|1731000003.250000|smtp-in|{phase}|{sid}|{t}|{param}"
        ))
    };
    f.send(&format!("report|0.7|1731000000.100000|smtp-in|link-connect|{sid}|host.example.net|pass|192.0.2.7:50123|198.51.100.2:25"));
    for (phase, param, decision) in [
        ("connect", "host.example.net|192.0.2.7", "proceed"),
        ("helo", "spammer.example", "reject|550 5.7.1 Go away"),
        ("ehlo", "client.example.net", "proceed"),
        (
            "mail-from",
            "spammer@example.com",
            "reject|550 5.7.1 Sender rejected",
        ),
        ("mail-from", "junk@example.com", "junk"),
        (
            "mail-from",
            "rewrite@example.com",
            "rewrite|<postmaster@example.org>",
        ),
        ("mail-from", "", "proceed"),
        (
            "rcpt-to",
            "drop@example.org",
            "disconnect|421 4.7.0 Too many recipients",
        ),
        ("rcpt-to", "report@example.org", "report|recipient noted"),
        ("rcpt-to", "bob@example.org", "proceed"),
        ("data", "", "proceed"),
    ] {
        assert_eq!(
            ask(&mut f, phase, param),
            format!("filter-result|{sid}|{t}|{decision}"),
            "{phase} {param}"
        );
    }
    let dt = "5d0a000100000002";
    for line in ["Subject: hi", "", "secret", "..dot", "not secret", "."] {
        f.send(&format!(
            "filter|0.7|1731000004.000100|smtp-in|data-line|{sid}|{dt}|{line}"
        ));
    }
    for line in ["Subject: hi", "", "[redacted]", "..dot", "not secret", "."] {
        assert_eq!(
            f.recv().unwrap(),
            format!("filter-dataline|{sid}|{dt}|{line}")
        );
    }
    assert_eq!(
        ask(&mut f, "commit", ""),
        format!("filter-result|{sid}|{t}|proceed")
    );
    let (status, _) = f.finish();
    assert!(status.success(), "{status}");
}

/// Sends a queue request and returns the answer without its result type
/// and id.
fn q(b: &mut Backend, op: &str, args: &str) -> String {
    let line = format!("queue|0.1|1731000001.000412|{op}|0000000000000001{args}");
    let answer = b.ask(&line);
    let prefix = format!("{op}-result|0000000000000001|");
    answer
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{line} -> {answer}"))
        .to_owned()
}

#[test]
fn queue_memory_keeps_messages_and_envelopes() {
    let mut b = Backend::spawn("queue_memory", &[]);
    assert_eq!(b.handshake("0.1"), ["register|lease", "register|ready"]);
    let created = q(&mut b, "message-create", "");
    let msgid = created.strip_prefix("ok|").unwrap().to_owned();
    let m = |rest: &str| format!("|{msgid}{rest}");
    // "hello " and "world\n" in two chunks; a write at another offset fails.
    assert_eq!(q(&mut b, "message-write", &m("|0|aGVsbG8g")), "ok");
    assert!(q(&mut b, "message-write", &m("|0|aGVsbG8g")).starts_with("error|"));
    assert_eq!(q(&mut b, "message-write", &m("|6|d29ybGQK")), "ok");
    let evp = q(&mut b, "envelope-create", &m("|ZW52ZWxvcGUgYQ=="));
    let evp_a = evp.strip_prefix("ok|").unwrap().to_owned();
    assert!(evp_a.starts_with(&msgid));
    // Nothing is visible before the commit.
    assert_eq!(q(&mut b, "message-read", &m("|0|100")), "not-found");
    assert_eq!(
        q(&mut b, "envelope-load", &format!("|{evp_a}")),
        "not-found"
    );
    assert_eq!(q(&mut b, "envelope-walk", "|0000000000000000"), "done");
    // The commit checks the size.
    assert!(q(&mut b, "message-commit", &m("|11")).starts_with("error|"));
    assert_eq!(q(&mut b, "message-commit", &m("|12")), "ok");
    assert!(q(&mut b, "message-commit", &m("|12")).starts_with("error|"));
    assert!(q(&mut b, "message-write", &m("|12|eA==")).starts_with("error|"));
    // Reads: a chunk, the rest, past the end.
    assert_eq!(q(&mut b, "message-read", &m("|0|5")), "found|aGVsbG8=");
    assert_eq!(q(&mut b, "message-read", &m("|6|32768")), "found|d29ybGQK");
    assert_eq!(q(&mut b, "message-read", &m("|12|32768")), "found|");
    assert_eq!(q(&mut b, "message-read", &m("|99|1")), "found|");
    // Envelopes: a second one, update, load, walk in id order.
    let evp_b = q(&mut b, "envelope-create", &m("|ZW52ZWxvcGUgYg=="))
        .strip_prefix("ok|")
        .unwrap()
        .to_owned();
    assert_eq!(
        q(&mut b, "envelope-update", &format!("|{evp_a}|dXBkYXRlZA==")),
        "ok"
    );
    assert_eq!(
        q(&mut b, "envelope-load", &format!("|{evp_a}")),
        "found|dXBkYXRlZA=="
    );
    let (first, second) = if evp_a < evp_b {
        ((&evp_a, "dXBkYXRlZA=="), (&evp_b, "ZW52ZWxvcGUgYg=="))
    } else {
        ((&evp_b, "ZW52ZWxvcGUgYg=="), (&evp_a, "dXBkYXRlZA=="))
    };
    assert_eq!(
        q(&mut b, "envelope-walk", "|0000000000000000"),
        format!("found|{}|{}", first.0, first.1)
    );
    assert_eq!(
        q(&mut b, "envelope-walk", &format!("|{}", first.0)),
        format!("found|{}|{}", second.0, second.1)
    );
    assert_eq!(
        q(&mut b, "envelope-walk", &format!("|{}", second.0)),
        "done"
    );
    // Deleting an envelope, twice.
    assert_eq!(q(&mut b, "envelope-delete", &format!("|{evp_b}")), "ok");
    assert_eq!(q(&mut b, "envelope-delete", &format!("|{evp_b}")), "ok");
    assert_eq!(
        q(&mut b, "envelope-load", &format!("|{evp_b}")),
        "not-found"
    );
    assert_eq!(
        q(&mut b, "envelope-update", &format!("|{evp_b}|eA==")),
        "not-found"
    );
    // Corrupt: moved aside, neither read, loaded nor walked.
    assert_eq!(q(&mut b, "message-corrupt", &m("")), "ok");
    assert_eq!(q(&mut b, "message-corrupt", &m("")), "not-found");
    assert_eq!(q(&mut b, "message-read", &m("|0|5")), "not-found");
    assert_eq!(
        q(&mut b, "envelope-load", &format!("|{evp_a}")),
        "not-found"
    );
    assert_eq!(q(&mut b, "envelope-walk", "|0000000000000000"), "done");
    // Delete: a second message with an envelope goes away with it.
    let msg2 = q(&mut b, "message-create", "")
        .strip_prefix("ok|")
        .unwrap()
        .to_owned();
    assert_ne!(msg2, msgid);
    let e2 = q(&mut b, "envelope-create", &format!("|{msg2}|ZQ=="))
        .strip_prefix("ok|")
        .unwrap()
        .to_owned();
    assert_eq!(q(&mut b, "message-commit", &format!("|{msg2}|0")), "ok");
    assert_eq!(
        q(&mut b, "message-read", &format!("|{msg2}|0|10")),
        "found|"
    );
    assert_eq!(
        q(&mut b, "envelope-walk", "|0000000000000000"),
        format!("found|{e2}|ZQ==")
    );
    assert_eq!(q(&mut b, "message-delete", &format!("|{msg2}")), "ok");
    assert_eq!(q(&mut b, "message-delete", &format!("|{msg2}")), "ok");
    assert_eq!(q(&mut b, "envelope-load", &format!("|{e2}")), "not-found");
    assert_eq!(q(&mut b, "envelope-walk", "|0000000000000000"), "done");
    // Unknown messages.
    assert!(q(&mut b, "envelope-create", &format!("|{msg2}|ZQ==")).starts_with("error|"));
    assert!(q(&mut b, "message-write", &format!("|{msg2}|0|ZQ==")).starts_with("error|"));
    let (status, _) = b.finish();
    assert!(status.success(), "{status}");
}
