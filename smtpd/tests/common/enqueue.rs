//! Local submission for the end-to-end tests: the built `smtpctl` run as
//! `sendmail`, `newaliases`, `mailq` (symbolic links in the scratch
//! directory, as a system links `/usr/sbin/sendmail` to smtpctl), pointed
//! at the daemon under test through `SMTPD_SOCKET` and `SMTPD_DATA_DIR`,
//! and the daemon's spool read back.

use super::{smtpd_command, Process, Scratch};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The marker of the daemon's control socket in its log.
const CONTROL: &str = "listening on control socket ";

/// A running daemon and where sendmail finds it.
pub(crate) struct Daemon {
    pub(crate) process: Process,
    /// `DIR/data`: the data directory (`SMTPD_DATA_DIR`).
    pub(crate) data_dir: PathBuf,
    /// The control socket (`SMTPD_SOCKET`).
    pub(crate) socket: PathBuf,
}

impl Daemon {
    /// Starts smtpd on `DIR/smtpd.conf` and waits for its control socket.
    pub(crate) fn start(dir: &Scratch) -> Self {
        let process = Process::spawn(smtpd_command(dir, &dir.0.join("smtpd.conf")));
        let line = process.wait_for(CONTROL);
        let at = line.find(CONTROL).unwrap() + CONTROL.len();
        Self {
            process,
            data_dir: data_dir(dir),
            socket: PathBuf::from(&line[at..]),
        }
    }
}

/// The daemon's data directory in `dir`.
pub(crate) fn data_dir(dir: &Scratch) -> PathBuf {
    dir.0.join("data")
}

/// The control socket a daemon started in `dir` uses (`smtpd_command`
/// puts it in `DIR` as root, in the data directory otherwise).
pub(crate) fn socket_of(dir: &Scratch) -> PathBuf {
    if super::is_root() {
        dir.0.join("smtpd.sock")
    } else {
        data_dir(dir).join("smtpd.sock")
    }
}

/// `DIR/NAME`, a symbolic link to the built smtpctl.
pub(crate) fn link(dir: &Scratch, name: &str) -> PathBuf {
    let path = dir.0.join(name);
    if !path.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_smtpctl"), &path).unwrap();
    }
    path
}

/// Runs smtpctl as `name` with `args` and `input` on its standard input,
/// for the daemon of `dir`.
pub(crate) fn run_as(dir: &Scratch, name: &str, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(link(dir, name))
        .args(args)
        .env("SMTPD_DATA_DIR", data_dir(dir))
        .env("SMTPD_SOCKET", socket_of(dir))
        .current_dir(&dir.0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A program that fails early does not read its input.
    if let Err(e) = stdin.write_all(input.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// `sendmail ARGS < INPUT`.
pub(crate) fn sendmail(dir: &Scratch, args: &[&str], input: &str) -> Output {
    run_as(dir, "sendmail", args, input)
}

/// A program's standard output and error, and its status.
pub(crate) fn outcome(out: &Output) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The envelope files of the queue in the data directory `data`.
pub(crate) fn queued_envelopes(data: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let queue = data.join("spool").join("queue");
    for bucket in std::fs::read_dir(queue).into_iter().flatten() {
        for message in std::fs::read_dir(bucket.unwrap().path()).unwrap() {
            for file in std::fs::read_dir(message.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                if path.file_name().unwrap() != "message" {
                    found.push(std::fs::read_to_string(path).unwrap());
                }
            }
        }
    }
    found
}

/// Waits for `n` successful deliveries in the daemon's log.
pub(crate) fn wait_delivered(process: &Process, n: usize) {
    for _ in 0..n {
        process.wait_for("result=Ok");
    }
}

/// The messages in `MAILDIR/new`, sorted.
pub(crate) fn maildir(path: &Path) -> Vec<String> {
    let mut texts: Vec<String> = std::fs::read_dir(path.join("new"))
        .map(|entries| {
            entries
                .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    texts.sort();
    texts
}
