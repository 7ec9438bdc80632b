//! The conformance runner (`smtpd-conformance queue`) against the built
//! `queue-sqlite`, on a fresh database at each start: every case must pass. Also checks
//! that a configuration error stops the backend before it registers, with
//! the file and line on stderr, and that what was committed is still there
//! after the backend was killed.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn runner() -> PathBuf {
    smtpd_conformance::locate::runner_next_to(Path::new(env!("CARGO_BIN_EXE_queue-sqlite")))
}

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("queue.conf");
    let text = format!("dbpath {}\n", dir.join("queue.sqlite").display());
    std::fs::write(&path, text).expect("write the configuration");
    path
}

#[test]
fn conformance_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The runner starts the backend afresh for each case and expects an
    // empty queue each time: the database file goes before each start.
    let config = config(dir.path());
    let fresh = format!(
        "rm -f {db} {db}-wal {db}-shm; exec {bin} {config}",
        db = dir.path().join("queue.sqlite").display(),
        bin = env!("CARGO_BIN_EXE_queue-sqlite"),
        config = config.display()
    );
    let out = Command::new(runner())
        .args(["queue", "--", "sh", "-c"])
        .arg(fresh)
        .current_dir(smtpd_conformance::locate::workspace().join("protocol-spec"))
        .output()
        .expect("running smtpd-conformance");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "conformance failed:\n{stdout}\n--- stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn config_errors_stop_it_before_it_registers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("queue.conf");
    std::fs::write(&path, "dbpath /tmp/x.sqlite\nsynchronous off\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_queue-sqlite"))
        .arg("-f")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("running queue-sqlite");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing registered");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:2: unknown key synchronous", path.display());
    assert!(stderr.contains(&expected), "{stderr}");
}

/// A running backend, spoken to line by line.
struct Backend {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    next: u64,
}

impl Backend {
    fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_queue-sqlite"))
            .arg(config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        stdin
            .write_all(b"config|smtpd-version|0.1.0\nconfig|protocol|0.1\nconfig|ready\n")
            .expect("handshake");
        let mut line = String::new();
        stdout.read_line(&mut line).expect("register");
        assert_eq!(line, "register|ready\n");
        Self {
            child,
            stdin,
            stdout,
            next: 1,
        }
    }

    /// Sends `queue|0.1|TS|OP|ID|ARGS` and returns the answer's fields
    /// after the id.
    fn ask(&mut self, op: &str, args: &str) -> String {
        let id = format!("{:016x}", self.next);
        self.next += 1;
        let sep = if args.is_empty() { "" } else { "|" };
        writeln!(
            self.stdin,
            "queue|0.1|1731000001.000001|{op}|{id}{sep}{args}"
        )
        .expect("request");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("answer");
        let prefix = format!("{op}-result|{id}|");
        line.trim_end()
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{line:?} does not answer {op} {id}"))
            .to_owned()
    }

    fn kill_9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }
}

#[test]
fn committed_messages_survive_kill_9_and_uncommitted_ones_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let mut q = Backend::start(&config);
    let pending = q.ask("message-create", "").replace("ok|", "");
    assert_eq!(
        q.ask("message-write", &format!("{pending}|0|aGFsZg==")),
        "ok"
    );
    let msgid = q.ask("message-create", "").replace("ok|", "");
    let evpid = q
        .ask("envelope-create", &format!("{msgid}|dmVyc2lvbjogMwo="))
        .replace("ok|", "");
    assert_eq!(q.ask("message-write", &format!("{msgid}|0|aGVsbG8=")), "ok");
    assert_eq!(q.ask("message-commit", &format!("{msgid}|5")), "ok");
    q.kill_9();

    let mut q = Backend::start(&config);
    assert_eq!(
        q.ask("envelope-walk", "0000000000000000"),
        format!("found|{evpid}|dmVyc2lvbjogMwo=")
    );
    assert_eq!(q.ask("envelope-walk", &evpid), "done");
    assert_eq!(
        q.ask("message-read", &format!("{msgid}|0|32768")),
        "found|aGVsbG8="
    );
    assert_eq!(
        q.ask("message-read", &format!("{pending}|0|32768")),
        "not-found"
    );
    assert!(q
        .ask("message-write", &format!("{pending}|4|aGFsZg=="))
        .starts_with("error|"));
    q.kill_9();
}
