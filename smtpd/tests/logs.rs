//! The daemon's log and process life, against the built `smtpd`:
//!
//! - a session's OpenSMTPD-style lines come in order (`smtp connected`,
//!   `smtp message`, one `smtp envelope` per recipient, `smtp
//!   disconnected`), each with the session's 16-hex-digit id, and the
//!   delivery is an `mda delivery ... result=Ok stat=Delivered` line;
//! - refused commands are `smtp failed-command` lines that fail2ban's
//!   `opensmtpd` filter expressions match, AUTH data never shown;
//! - without `-d` the daemon detaches: the command returns once the
//!   daemon listens, the pid file holds the daemon's pid, the daemon leads
//!   its own session with its standard streams on /dev/null, and SIGTERM
//!   ends it with status 0, the pid file removed; a failed start is the
//!   command's status 1 and error;
//! - SIGTERM during a DATA transfer: the client finishes and gets its 250,
//!   an idle session gets 421 at once, the next command 421, and the
//!   daemon exits 0.
//!
//! Syslog itself needs a system logger, which CI lacks: the syslog lines'
//! format is tested in `smtpd::log`. Nothing sleeps to synchronise: lines
//! are waited for on the log; only the detached daemon, which is no child
//! of the test, is polled for, within [`DEADLINE`].

// A test harness: running the built binary is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::mail::{accepted_id, free_port, Client, Site, DELIVER, LOCAL, OUTSIDER, TEMPFAIL};
use common::{dns, is_root, Process, Scratch, DEADLINE};
use regex::Regex;

/// The event part of a log line (after the `smtpd::log: ` of `-d`).
fn event(line: &str) -> &str {
    line.split_once("smtpd::log: ")
        .map_or(line, |(_, event)| event)
}

/// The session id that starts an event line.
fn session_of(line: &str) -> String {
    let id = event(line).split(' ').next().unwrap().to_owned();
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{line}"
    );
    id
}

fn matches(pattern: &str, line: &str) {
    let re = Regex::new(pattern).unwrap();
    assert!(
        re.is_match(event(line)),
        "{pattern:?} does not match {line:?}"
    );
}

#[test]
fn a_session_logs_its_events_in_order_then_the_deliveries() {
    let dir = Scratch::new("logs", "session");
    let site = Site::start_with(&dir, DELIVER, "", "");
    let mut c = site.smtpd.connect(LOCAL);
    c.expect_code("EHLO client.test", "250");
    c.expect_code("MAIL FROM:<alice@sender.test>", "250");
    c.expect_code("RCPT TO:<bob@example.org>", "250");
    c.expect_code("RCPT TO:<carol@example.org>", "250");
    let msgid = accepted_id(&c.data("Subject: logged\r\n\r\nHello.\r\n"));
    c.expect_code("QUIT", "221");

    let smtpd = &site.smtpd;
    let connected = smtpd.wait_for(" smtp connected ");
    let id = session_of(&connected);
    matches(
        &format!(
            "^{id} smtp connected address=127.0.0.1 host={}$",
            dns::CLIENT_NAME
        ),
        &connected,
    );
    let message = smtpd.wait_for(&format!("{id} smtp message "));
    matches(
        &format!("^{id} smtp message msgid={msgid} size=[0-9]+ nrcpt=2 proto=ESMTP$"),
        &message,
    );
    for rcpt in ["bob", "carol"] {
        let envelope = smtpd.wait_for(&format!("{id} smtp envelope "));
        matches(
            &format!(
                "^{id} smtp envelope evpid={msgid}[0-9a-f]{{8}} \
                 from=<alice@sender.test> to=<{rcpt}@example.org>$"
            ),
            &envelope,
        );
    }
    let disconnected = smtpd.wait_for(&format!("{id} smtp disconnected "));
    assert_eq!(
        event(&disconnected),
        format!("{id} smtp disconnected reason=quit")
    );
    for line in smtpd.wait_deliveries(&[&msgid, &msgid]) {
        matches(
            &format!(
                "^[0-9a-f]{{16}} mda delivery evpid={msgid}[0-9a-f]{{8}} \
                 from=<alice@sender.test> to=<[^>]+> rcpt=<(bob|carol)@example.org> \
                 user=vmail delay=[0-9]+s result=Ok stat=Delivered$"
            ),
            &line,
        );
    }
}

/// fail2ban's `opensmtpd` filter ties a session's lines by their id: the
/// host of `smtp connected address=<ADDR>`, and failures of the same
/// session (a `failed-command` answered 5xx, a `permfail` AUTH).
#[test]
fn refused_commands_are_failed_command_lines_fail2ban_reads() {
    let dir = Scratch::new("logs", "failed");
    let site = Site::start(&dir);
    let mut c = site.outsider();
    c.expect_code("MAIL FROM:<spammer@outside.test>", "250");
    c.expect_code("RCPT TO:<victim@elsewhere.test>", "550");
    c.expect_code("AUTH PLAIN AGFkbWluAHNlY3JldA==", "503");
    c.send(format!("NOOP {}\r\n", "x".repeat(70_000)).as_bytes());
    assert!(c.reply().starts_with("500 "));
    c.expect_code("QUIT", "221");

    let connected =
        Regex::new(r"^(?P<mlfid>[0-9a-f]{16}) smtp connected address=(?P<host>\S+) host=\S+$")
            .unwrap();
    let failed = Regex::new(
        r#"^(?P<mlfid>[0-9a-f]{16}) smtp failed-command command="(?P<cmd>(?:[^"\\]|\\.)*)" result="(?P<result>5\d\d [^"]*)"$"#,
    )
    .unwrap();
    let smtpd = &site.smtpd;
    let line = smtpd.wait_for(" smtp connected address=127.0.0.2 ");
    let session = connected.captures(event(&line)).unwrap();
    assert_eq!(&session["host"], OUTSIDER.to_string());
    assert!(event(&line).ends_with(" host=<unknown>"), "{line}");
    let id = session["mlfid"].to_owned();

    let rcpt = smtpd.wait_for(&format!("{id} smtp failed-command "));
    let rcpt = failed.captures(event(&rcpt)).unwrap();
    assert_eq!(&rcpt["cmd"], "RCPT TO:<victim@elsewhere.test>");
    assert!(rcpt["result"].starts_with("550 "), "{}", &rcpt["result"]);

    let auth = smtpd.wait_for(&format!("{id} smtp failed-command "));
    let auth = failed.captures(event(&auth)).unwrap();
    assert_eq!(&auth["cmd"], "AUTH PLAIN (...)");
    let bad = smtpd.wait_for(&format!("{id} smtp bad-input "));
    matches(
        &format!("^{id} smtp bad-input result=\"500 [^\"]*\"$"),
        &bad,
    );
    smtpd.wait_for(&format!("{id} smtp disconnected reason=quit"));
    assert!(
        !smtpd.log.lock().unwrap().contains("AGFkbWluAHNlY3JldA=="),
        "an AUTH payload was logged"
    );
}

/// `smtpd` without `-d`, with its control socket and pid file in `dir`.
fn detached(dir: &Scratch, config: &Path, pidfile: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smtpd"));
    cmd.arg("-f")
        .arg(config)
        .arg("--data-dir")
        .arg(dir.0.join("data"))
        .arg("--nameserver")
        .arg(dns::shared().addr.to_string())
        .arg("--pidfile")
        .arg(pidfile)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    if is_root() {
        cmd.arg("--control-socket").arg(dir.0.join("smtpd.sock"));
    }
    cmd
}

/// A directory anyone may create and remove files in, for a pid file the
/// daemon removes after dropping its privileges (from a root-owned one it
/// could only empty it).
fn run_dir(dir: &Scratch) -> PathBuf {
    let run = dir.0.join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
    run
}

/// Waits for process `pid` (a child of this process, which reaps
/// orphans) to exit; its status.
fn reap(pid: libc::pid_t) -> libc::c_int {
    let end = Instant::now() + DEADLINE;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into the given integer.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(rc >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if rc == pid {
            return status;
        }
        assert!(Instant::now() < end, "pid {pid} did not exit in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn without_d_the_daemon_detaches_writes_its_pid_and_exits_0_on_sigterm() {
    // The daemon's parent exits: it becomes this process's child, so that
    // its exit status can be read.
    // SAFETY: prctl with these arguments only sets a process attribute.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let dir = Scratch::new("logs", "detach");
    let port = free_port();
    let config = dir.write(
        "smtpd.conf",
        &format!(
            "listen on 127.0.0.1 port {port}\n\
             action \"local\" mda \"{TEMPFAIL}\"\n\
             match from any for domain example.org action \"local\"\n"
        ),
    );
    let pidfile = run_dir(&dir).join("smtpd.pid");
    let out = detached(&dir, &config, &pidfile).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty() && out.stdout.is_empty(), "{stderr}");

    // Listening before the command returned.
    let mut c = Client::connect(port, LOCAL);
    assert!(c.greeting.starts_with("220 "), "{}", c.greeting);
    let text = std::fs::read_to_string(&pidfile).unwrap();
    let pid: libc::pid_t = text.trim_end().parse().unwrap();
    assert_eq!(text, format!("{pid}\n"));
    // SAFETY: getsid has no memory-safety preconditions.
    assert_eq!(unsafe { libc::getsid(pid) }, pid, "a session leader");
    for fd in 0..=2 {
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(target, Path::new("/dev/null"), "fd {fd}");
    }
    c.expect_code("QUIT", "221");

    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = reap(pid);
    assert!(libc::WIFEXITED(status), "status {status:#x}");
    assert_eq!(libc::WEXITSTATUS(status), 0);
    assert!(!pidfile.exists(), "the pid file is removed");
}

#[test]
fn without_d_a_failed_start_is_status_1_with_the_error() {
    let dir = Scratch::new("logs", "detach-fail");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = dir.write(
        "smtpd.conf",
        &format!(
            "listen on 127.0.0.1 port {port}\n\
             action \"local\" mda \"{TEMPFAIL}\"\n\
             match from any for domain example.org action \"local\"\n"
        ),
    );
    let pidfile = run_dir(&dir).join("smtpd.pid");
    let out = detached(&dir, &config, &pidfile).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!("fatal: cannot listen on 127.0.0.1:{port}: ")),
        "{stderr}"
    );
    assert!(!pidfile.exists(), "no pid file is left");
}

#[test]
fn sigterm_during_data_lets_the_message_finish_then_the_daemon_exits_0() {
    let dir = Scratch::new("logs", "drain");
    let port = free_port();
    let config = dir.write(
        "smtpd.conf",
        &format!(
            "listen on 127.0.0.1 port {port} hostname mx.test\n\
             action \"local\" mda \"{TEMPFAIL}\"\n\
             match from any for domain example.org action \"local\"\n"
        ),
    );
    let mut daemon = Process::spawn(common::smtpd_command(&dir, &config));
    daemon.wait_for(&format!("listening on 127.0.0.1:{port}"));
    let mut idle = Client::connect(port, LOCAL);
    idle.expect_code("EHLO idle.test", "250");
    let mut c = Client::connect(port, LOCAL);
    c.expect_code("EHLO client.test", "250");
    c.expect_code("MAIL FROM:<alice@sender.test>", "250");
    c.expect_code("RCPT TO:<root@example.org>", "250");
    c.expect_code("DATA", "354");
    c.send(b"Subject: in flight\r\n\r\nfirst half\r\n");

    let pid = libc::pid_t::try_from(daemon.child.id()).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    daemon.wait_for("received SIGTERM, shutting down");
    // The idle session is told at once.
    let reply = idle.reply();
    assert!(reply.starts_with("421 4.3.2 mx.test "), "{reply}");
    assert!(idle.is_closed());
    // The transfer goes on, and is acknowledged.
    c.send(b"second half\r\n");
    let msgid = accepted_id(&c.command("."));
    // The next command is refused, and the session ends.
    let reply = c.command("MAIL FROM:<alice@sender.test>");
    assert!(reply.starts_with("421 4.3.2 mx.test "), "{reply}");
    assert!(c.is_closed());

    let line = daemon.wait_for(" smtp message ");
    assert!(event(&line).contains(&format!(" msgid={msgid} ")), "{line}");
    daemon.wait_for(" smtp disconnected reason=shutdown");
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(0), "SIGTERM ends smtpd with status 0");
    assert!(daemon.log.lock().unwrap().contains("smtpd exiting"));
}
