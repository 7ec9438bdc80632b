//! The daemon and smtpctl, run as an administrator runs them: `smtpd`
//! with a `file:` table and a proc-exec table (the shell backend of
//! protocol-spec/examples) in a scratch directory, steered by `smtpctl`
//! over the control socket, then stopped with SIGTERM.
//!
//! Nothing here sleeps to synchronise: the harness waits for the daemon's
//! log lines (read by a thread) and for its standard error to close when
//! it exits, each with a bounded deadline.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::ops::{Deref, DerefMut};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{is_root, smtpd_command, Process, Scratch};

/// A running `smtpd` and the control socket it listens on.
struct Daemon {
    process: Process,
    socket: PathBuf,
}

impl Deref for Daemon {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.process
    }
}

impl DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

impl Daemon {
    /// Starts smtpd on `config` and waits until its control socket listens.
    fn start(dir: &Scratch, config: &Path) -> Self {
        let mut daemon = Self::spawn(smtpd_command(dir, config));
        let line = daemon.wait_for("listening on control socket ");
        let at = line.find("listening on control socket ").unwrap();
        daemon.socket = PathBuf::from(&line[at + "listening on control socket ".len()..]);
        daemon
    }

    fn spawn(cmd: Command) -> Self {
        Self {
            process: Process::spawn(cmd),
            socket: PathBuf::new(),
        }
    }

    fn ctl(&self, words: &[&str]) -> Output {
        smtpctl(&self.socket, words, None)
    }
}

/// Runs smtpctl with `-s socket`, as `uid` if given.
fn smtpctl(socket: &Path, words: &[&str], uid: Option<u32>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smtpctl"));
    cmd.arg("-s").arg(socket).args(words);
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    cmd.output().expect("smtpctl runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The shell table backend of protocol-spec/examples.
fn shell_backend() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol-spec/examples/table-shell.sh")
        .canonicalize()
        .unwrap()
}

/// A scratch directory with `aliases` (a `file:` table) and `users` (a
/// file served by the shell backend), and a configuration using both.
fn setup(name: &str) -> (Scratch, PathBuf) {
    let dir = Scratch::new("control", name);
    let aliases = dir.write("aliases", "root: admin\npostmaster: root\n");
    let users = dir.write("users", "alice alice@example.org\n");
    let config = dir.write(
        "smtpd.conf",
        &format!(
            "table aliases file:{}\n\
             table users proc-exec \"{} {}\"\n\
             action \"local\" mbox alias <aliases>\n\
             match from any for any action \"local\"\n",
            aliases.display(),
            shell_backend().display(),
            users.display(),
        ),
    );
    (dir, config)
}

/// The columns of the `show tables` line of table `name`.
fn table_row(listing: &str, name: &str) -> Vec<String> {
    let line = listing
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no table {name} in:\n{listing}"));
    // The backend column may hold spaces (a quoted command): split around it.
    let (head, rest) = line.split_once(char::is_whitespace).unwrap();
    let rest = rest.trim_start();
    let (backend, counters) = match rest.strip_prefix("proc-exec \"") {
        Some(tail) => {
            let end = tail.find('"').unwrap();
            (format!("proc-exec \"{}\"", &tail[..end]), &tail[end + 1..])
        }
        None => {
            let (backend, counters) = rest.split_once(char::is_whitespace).unwrap();
            (backend.to_owned(), counters)
        }
    };
    let mut row = vec![head.to_owned(), backend];
    row.extend(counters.split_whitespace().map(str::to_owned));
    row
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn show_tables_lists_both_tables_and_the_childs_pid() {
    let (dir, config) = setup("show");
    let mut daemon = Daemon::start(&dir, &config);
    if !is_root() {
        assert_eq!(daemon.socket, dir.0.join("data/smtpd.sock"));
        let mode = std::fs::metadata(dir.0.join("data"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o666);

    let out = daemon.ctl(&["show", "tables"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    assert!(
        listing.starts_with("NAME ") && listing.lines().next().unwrap().ends_with(" P99"),
        "{listing}"
    );
    let aliases = table_row(&listing, "aliases");
    assert_eq!(
        aliases[1],
        format!("file:{}", dir.0.join("aliases").display())
    );
    assert_eq!(aliases[2..], ["-", "-", "-", "-", "-"]);
    let users = table_row(&listing, "users");
    assert!(users[1].starts_with("proc-exec \""), "{users:?}");
    let pid: u32 = users[2]
        .parse()
        .unwrap_or_else(|_| panic!("a pid: {users:?}"));
    assert!(process_exists(pid));

    // The abbreviated form reads the same.
    let short = daemon.ctl(&["sh", "t"]);
    assert_eq!(table_row(&stdout(&short), "users")[2], users[2]);

    let status = daemon.stop(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "SIGTERM ends smtpd with status 0");
    assert!(!process_exists(pid), "the table's child {pid} is gone");
    assert!(!daemon.socket.exists(), "the control socket is removed");
    assert!(daemon
        .log
        .lock()
        .unwrap()
        .contains("received SIGTERM, shutting down"));
}

#[test]
fn update_table_reloads_a_file_table_and_forwards_update_to_a_program() {
    let (dir, config) = setup("update");
    let mut daemon = Daemon::start(&dir, &config);
    let lookup = |table: &str, service: &str, key: &str| {
        let out = daemon.ctl(&["lookup", "table", table, service, key]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    assert_eq!(lookup("aliases", "alias", "root"), "admin\n");
    assert_eq!(lookup("users", "mailaddr", "alice"), "alice@example.org\n");

    // Edited files are served only after `update table`.
    dir.write("aliases", "root: ops\n");
    dir.write("users", "alice alice@example.net\nbob bob@example.net\n");
    assert_eq!(lookup("aliases", "alias", "root"), "admin\n");
    let requests = |daemon: &Daemon| -> u64 {
        let listing = stdout(&daemon.ctl(&["show", "tables"]));
        table_row(&listing, "users")[3].parse().unwrap()
    };
    let before = requests(&daemon);

    for table in ["aliases", "users"] {
        let out = daemon.ctl(&["update", "table", table]);
        assert_eq!(stdout(&out), "command succeeded\n", "{}", stderr(&out));
        assert!(out.status.success());
    }
    daemon.wait_for("table \"users\" successfully updated");
    assert_eq!(lookup("aliases", "alias", "root"), "ops\n");
    assert_eq!(lookup("aliases", "alias", "postmaster"), "not found\n");
    assert_eq!(
        requests(&daemon),
        before + 1,
        "the update went to the program"
    );
    assert_eq!(lookup("users", "mailaddr", "bob"), "bob@example.net\n");
    let out = daemon.ctl(&["check", "table", "users", "mailaddr", "bob"]);
    assert_eq!(stdout(&out), "found\n");

    assert_eq!(daemon.stop(libc::SIGINT).code(), Some(0));
}

#[test]
fn errors_exit_1_with_a_clear_message() {
    let (dir, config) = setup("errors");
    let mut daemon = Daemon::start(&dir, &config);

    let out = daemon.ctl(&["update", "table", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "command failed: no table named \"nosuch\"\n");

    // A file table whose file became unreadable keeps its old content.
    std::fs::remove_file(dir.0.join("aliases")).unwrap();
    let out = daemon.ctl(&["update", "table", "aliases"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("command failed: table aliases: "),
        "{}",
        stdout(&out)
    );
    let out = daemon.ctl(&["lookup", "table", "aliases", "alias", "root"]);
    assert_eq!(stdout(&out), "admin\n");

    let out = daemon.ctl(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("possibilities are:\nshow\nupdate\n"),
        "{}",
        stderr(&out)
    );
    let out = daemon.ctl(&["update", "table"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "possibilities are:\nupdate table <name>\n");
    let out = daemon.ctl(&["show", "tables", "now"]);
    assert_eq!(
        (out.status.code(), stderr(&out)),
        (Some(1), "invalid command\n".into())
    );
    let out = daemon.ctl(&["lookup", "table", "users", "colour", "k"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("smtpctl: invalid service: colour"),
        "{}",
        stderr(&out)
    );

    // A second daemon on the same socket stops before starting anything.
    dir.write("aliases", "root: admin\n");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smtpd"));
    cmd.arg("-f")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.0.join("data"))
        .arg("--control-socket")
        .arg(&daemon.socket);
    let mut second = Daemon::spawn(cmd);
    second.wait_for("already in use");
    assert_eq!(second.wait_exit().code(), Some(1));
    assert!(daemon.ctl(&["show", "tables"]).status.success());

    assert_eq!(daemon.stop(libc::SIGTERM).code(), Some(0));
    let out = daemon.ctl(&["show", "tables"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("smtpctl: smtpd doesn't seem to be running"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn only_root_or_the_daemons_user_may_change_state() {
    let (dir, config) = setup("privileges");
    let mut daemon = Daemon::start(&dir, &config);
    // The daemon's own user (root here, or whoever runs the tests) may.
    let out = daemon.ctl(&["update", "table", "aliases"]);
    assert_eq!(stdout(&out), "command succeeded\n");
    if is_root() {
        // Another user may look but not touch.
        let nobody = 65534;
        let out = smtpctl(
            &daemon.socket,
            &["update", "table", "aliases"],
            Some(nobody),
        );
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(stderr(&out), "smtpctl: need root privileges\n");
        let out = smtpctl(
            &daemon.socket,
            &["lookup", "table", "aliases", "alias", "root"],
            Some(nobody),
        );
        assert_eq!(stderr(&out), "smtpctl: need root privileges\n");
        let out = smtpctl(&daemon.socket, &["show", "tables"], Some(nobody));
        assert!(out.status.success(), "{}", stderr(&out));
        // And the table's program runs as _smtpd.
        let listing = stdout(&out);
        let pid = &table_row(&listing, "users")[2];
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        let smtpd_uid = Command::new("id").args(["-u", "_smtpd"]).output().unwrap();
        let smtpd_uid = stdout(&smtpd_uid);
        assert_eq!(
            uid_line.split_whitespace().nth(1),
            Some(smtpd_uid.trim()),
            "{uid_line}"
        );
    }
    assert_eq!(daemon.stop(libc::SIGTERM).code(), Some(0));
}

#[test]
fn a_table_program_that_cannot_start_stops_the_daemon_with_status_1() {
    let dir = Scratch::new("control", "nostart");
    let config = dir.write(
        "smtpd.conf",
        "table users proc-exec \"/nonexistent/table-users\"\n\
         action \"local\" mbox alias <users>\n\
         match from any for any action \"local\"\n",
    );
    let socket = dir.0.join("smtpd.sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smtpd"));
    cmd.arg("-f")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.0.join("data"))
        .arg("--control-socket")
        .arg(&socket);
    let mut daemon = Daemon::spawn(cmd);
    let line = daemon.wait_for("fatal: ");
    assert!(line.contains("table users: "), "{line}");
    assert_eq!(daemon.wait_exit().code(), Some(1));
    assert!(!socket.exists(), "the control socket is removed");
}
