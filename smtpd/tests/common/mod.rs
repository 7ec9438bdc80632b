//! The harness the daemon's end-to-end tests share: a scratch directory and
//! a running `smtpd` whose log a thread collects, waited on by log lines and
//! bounded deadlines (never by sleeping), killed when the test ends and its
//! log printed when the test failed. Every daemon it starts asks only the
//! tests' own nameserver on 127.0.0.1 (`dns.rs`), never the machine's.

// Each test binary uses a part of this module.
#![allow(dead_code)]

pub(crate) mod backend;

pub(crate) mod dns;

pub(crate) mod enqueue;

pub(crate) mod load;

pub(crate) mod mail;

pub(crate) mod peer;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the daemon may take for anything the tests wait for.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// Whether the tests run as root (CI does).
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A scratch directory that anyone may read (backend children run as
/// `_smtpd` when the tests run as root), removed at the end.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    /// `TMPDIR/smtpd-SUITE-NAME-PID`, empty.
    pub(crate) fn new(suite: &str, name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("smtpd-{suite}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self(dir)
    }

    /// Writes a world-readable file `name` holding `text`.
    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `smtpd -d -f CONFIG --data-dir DIR/data --nameserver ADDR`, asking the
/// test nameserver ([`dns::shared`]), with its control socket in `DIR` when
/// root (whose default, /var/run/smtpd.sock, tests must not share).
pub(crate) fn smtpd_command(dir: &Scratch, config: &Path) -> Command {
    smtpd_command_asking(dir, config, dns::shared().addr)
}

/// [`smtpd_command`] asking the nameserver at `nameserver` instead.
pub(crate) fn smtpd_command_asking(
    dir: &Scratch,
    config: &Path,
    nameserver: SocketAddr,
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smtpd"));
    cmd.arg("-d")
        .arg("-f")
        .arg(config)
        .arg("--data-dir")
        .arg(dir.0.join("data"))
        .arg("--nameserver")
        .arg(nameserver.to_string());
    if is_root() {
        cmd.arg("--control-socket").arg(dir.0.join("smtpd.sock"));
    }
    cmd
}

/// A running `smtpd` and the lines of its standard error.
pub(crate) struct Process {
    pub(crate) child: Child,
    lines: Receiver<String>,
    pub(crate) log: Arc<Mutex<String>>,
}

impl Process {
    /// Spawns `cmd`, its standard error read line by line by a thread.
    pub(crate) fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("smtpd starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let copy = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                copy.lock().unwrap().push_str(&format!("{line}\n"));
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines, log }
    }

    /// The first log line from now on that contains `needle`.
    pub(crate) fn wait_for(&self, needle: &str) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("no log line with {needle:?} in time"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("smtpd ended before logging {needle:?}")
                }
            }
        }
    }

    /// Sends `signal` and waits for the daemon to exit.
    pub(crate) fn stop(&mut self, signal: libc::c_int) -> ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        self.wait_exit()
    }

    /// Waits for the daemon to exit: its standard error closes (its
    /// children have their own), then it is reaped.
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("smtpd did not exit in time"),
                Err(RecvTimeoutError::Disconnected) => return self.child.wait().unwrap(),
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- smtpd log ---\n{}", self.log.lock().unwrap());
        }
    }
}
