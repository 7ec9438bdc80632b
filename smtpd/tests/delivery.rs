//! Local delivery, end to end: mail accepted over SMTP by the built
//! `smtpd` is delivered by its scheduler into maildirs, mbox files, mda
//! commands and an LMTP server run by the test; aliases, virtual
//! catch-alls and `error:` aliases are applied at RCPT TO; a permanent
//! failure comes back to the sender as an RFC 3464 bounce; and mail
//! acknowledged before a `kill -9` is delivered, once, after a restart.
//!
//! As root (CI), deliveries run as `nobody` (uid 65534), the way a root
//! daemon delivers as the mailbox's owner; otherwise as the test's own
//! user. Every wait is on a log line or a file, with a bounded deadline.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use common::mail::{free_port, Client};
use common::{is_root, smtpd_command, Process, Scratch, DEADLINE};

/// The uid, gid of the deliveries: `nobody` as root, else ours.
fn account() -> (u32, u32) {
    if is_root() {
        (65534, 65534)
    } else {
        // SAFETY: getuid and getgid have no preconditions.
        unsafe { (libc::getuid(), libc::getgid()) }
    }
}

/// A directory under the scratch directory that the delivery account
/// may write into.
fn writable(dir: &Scratch, name: &str) -> PathBuf {
    let path = dir.0.join(name);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    path
}

/// The userbase table of the tests: alice and bob, homes in the scratch
/// directory, and `_smtpd`, the account of files and commands from
/// aliases.
fn users(dir: &Scratch) -> String {
    let (uid, gid) = account();
    let home = writable(dir, "home");
    format!(
        "table users {{ alice = \"{uid}:{gid}:{h}\", bob = \"{uid}:{gid}:{h}\", \
         _smtpd = \"{uid}:{gid}:/\" }}\n",
        h = home.display()
    )
}

/// A daemon running `config` (given its port) with `extra` arguments.
struct Daemon {
    process: Process,
    port: u16,
}

impl Daemon {
    fn start(dir: &Scratch, port: u16, config: &str, extra: &[&str]) -> Self {
        let path = dir.write("smtpd.conf", config);
        let mut cmd = smtpd_command(dir, &path);
        cmd.args(extra);
        let process = Process::spawn(cmd);
        process.wait_for(&format!("listening on 127.0.0.1:{port}"));
        Self { process, port }
    }

    /// Sends one message from `from` to `to`; returns the reply to the
    /// end of data.
    fn send(&self, from: &str, to: &[&str], body: &str) -> String {
        let mut c = Client::connect(self.port, Ipv4Addr::LOCALHOST);
        c.expect_code("EHLO client.test", "250");
        c.expect_code(&format!("MAIL FROM:<{from}>"), "250");
        for rcpt in to {
            c.expect_code(&format!("RCPT TO:<{rcpt}>"), "250");
        }
        let reply = c.data(body);
        c.expect_code("QUIT", "221");
        reply
    }

    /// Waits for `n` log lines holding `needle`.
    fn wait_n(&self, needle: &str, n: usize) {
        for _ in 0..n {
            self.process.wait_for(needle);
        }
    }
}

/// The files in `MAILDIR/new`, waited for until there are `n`.
fn maildir_files(maildir: &Path, n: usize) -> Vec<String> {
    let end = Instant::now() + DEADLINE;
    loop {
        let files: Vec<PathBuf> = std::fs::read_dir(maildir.join("new"))
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        if files.len() >= n {
            let mut texts: Vec<String> = files
                .iter()
                .map(|f| std::fs::read_to_string(f).unwrap())
                .collect();
            texts.sort();
            return texts;
        }
        assert!(Instant::now() < end, "{} files in {maildir:?}", files.len());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

const BODY: &str = "Subject: hello\r\n\r\nHello.\r\n..leading dot\r\n";

#[test]
fn maildir_aliases_virtual_and_error_aliases() {
    let dir = Scratch::new("delivery", "maildir");
    let port = free_port();
    let maildirs = writable(&dir, "maildir");
    let config = format!(
        "listen on 127.0.0.1 port {port}\n{users}\
         table aliases {{ postmaster = \"alice\", team = \"alice, bob\", \
         gone = \"error:550 5.1.1 This user left\", later = \"error:450 4.2.1 Try later\" }}\n\
         table virtuals {{ \"info@virtual.test\" = \"bob\", \"@virtual.test\" = \"alice\" }}\n\
         action \"local\" maildir \"{m}/%{{user.username}}\" alias <aliases> userbase <users>\n\
         action \"virtual\" maildir \"{m}/%{{user.username}}\" virtual <virtuals> userbase <users>\n\
         match from any for domain example.org action \"local\"\n\
         match from any for domain virtual.test action \"virtual\"\n",
        users = users(&dir),
        m = maildirs.display(),
    );
    let daemon = Daemon::start(&dir, port, &config, &[]);

    let reply = daemon.send("sender@client.test", &["alice@example.org"], BODY);
    assert!(reply.starts_with("250 2.0.0 "), "{reply}");
    daemon.wait_n("result=Ok", 1);
    let alice = maildir_files(&maildirs.join("alice"), 1);
    assert!(
        alice[0].starts_with(
            "Return-Path: <sender@client.test>\nDelivered-To: alice@example.org\nReceived: "
        ),
        "{}",
        alice[0]
    );
    assert!(
        alice[0].ends_with("Hello.\n.leading dot\n"),
        "{:?}",
        alice[0]
    );

    // Aliases: one to alice, a list to both.
    daemon.send(
        "sender@client.test",
        &["postmaster@example.org", "team@example.org"],
        BODY,
    );
    daemon.wait_n("result=Ok", 3);
    assert_eq!(maildir_files(&maildirs.join("alice"), 3).len(), 3);
    assert_eq!(maildir_files(&maildirs.join("bob"), 1).len(), 1);

    // Virtual: an exact key, then the catch-all.
    daemon.send(
        "sender@client.test",
        &["info@virtual.test", "anyone@virtual.test"],
        BODY,
    );
    daemon.wait_n("result=Ok", 2);
    assert_eq!(maildir_files(&maildirs.join("bob"), 2).len(), 2);
    assert_eq!(maildir_files(&maildirs.join("alice"), 4).len(), 4);

    // error: aliases and unknown users are refused at RCPT TO.
    let mut c = Client::connect(port, Ipv4Addr::LOCALHOST);
    c.expect_code("EHLO client.test", "250");
    c.expect_code("MAIL FROM:<sender@client.test>", "250");
    c.expect(
        "RCPT TO:<gone@example.org>",
        "550 5.1.1 This user left: <gone@example.org>",
    );
    c.expect(
        "RCPT TO:<later@example.org>",
        "450 4.2.1 Try later: <later@example.org>",
    );
    c.expect(
        "RCPT TO:<carol@example.org>",
        "550 5.1.1 Invalid recipient: <carol@example.org>",
    );
    c.expect_code("QUIT", "221");
}

#[test]
fn mbox_mda_and_alias_files_and_commands() {
    let dir = Scratch::new("delivery", "mbox");
    let port = free_port();
    let mailboxes = writable(&dir, "mail");
    let out = writable(&dir, "out");
    let config = format!(
        "listen on 127.0.0.1 port {port}\n{users}\
         table aliases {{ archive = \"{o}/archive.mbox\", pipe = \"|cat > {o}/piped.txt\" }}\n\
         action \"mbox\" mbox alias <aliases> userbase <users>\n\
         action \"mda\" mda \"cat > {o}/%{{dest.user}}-%{{rcpt.domain}}.txt\" userbase <users>\n\
         match from any for domain example.org action \"mbox\"\n\
         match from any for domain mda.test action \"mda\"\n",
        users = users(&dir),
        o = out.display(),
    );
    let mailbox_dir = mailboxes.to_string_lossy().into_owned();
    let daemon = Daemon::start(&dir, port, &config, &["--mailbox-dir", &mailbox_dir]);

    daemon.send("sender@client.test", &["alice@example.org"], BODY);
    daemon.send("", &["bob@example.org"], BODY);
    daemon.send("sender@client.test", &["alice@mda.test"], BODY);
    daemon.send(
        "sender@client.test",
        &["archive@example.org", "pipe@example.org"],
        BODY,
    );
    daemon.wait_n("result=Ok", 5);

    let alice = std::fs::read_to_string(mailboxes.join("alice")).unwrap();
    assert!(alice.starts_with("From sender@client.test "), "{alice}");
    assert!(
        alice.contains("\nReturn-Path: <sender@client.test>\nDelivered-To: alice@example.org\n")
    );
    assert!(alice.ends_with("Hello.\n.leading dot\n\n"), "{alice:?}");
    let bob = std::fs::read_to_string(mailboxes.join("bob")).unwrap();
    assert!(bob.starts_with("From MAILER-DAEMON "), "{bob}");
    assert!(!bob.contains("Return-Path"), "no Return-Path for <>: {bob}");

    let mda = std::fs::read_to_string(out.join("alice-mda.test.txt")).unwrap();
    assert!(mda.starts_with("Return-Path: <sender@client.test>\nDelivered-To: alice@mda.test\n"));
    let archive = std::fs::read_to_string(out.join("archive.mbox")).unwrap();
    assert!(archive.starts_with("From sender@client.test "), "{archive}");
    let piped = std::fs::read_to_string(out.join("piped.txt")).unwrap();
    assert!(
        piped.contains("Delivered-To: pipe@example.org\n"),
        "{piped}"
    );
}

/// An LMTP server for one session; sends back the envelope and data.
fn lmtp_server() -> (u16, mpsc::Receiver<(Vec<String>, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        writer.write_all(b"220 lmtp.test LMTP ready\r\n").unwrap();
        let mut commands = Vec::new();
        let mut data = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let line = line.trim_end().to_owned();
            let verb = line.split([' ', ':']).next().unwrap_or("").to_uppercase();
            commands.push(line);
            match verb.as_str() {
                "LHLO" => writer
                    .write_all(b"250-lmtp.test\r\n250 PIPELINING\r\n")
                    .unwrap(),
                "DATA" => {
                    writer.write_all(b"354 go ahead\r\n").unwrap();
                    loop {
                        let mut line = String::new();
                        reader.read_line(&mut line).unwrap();
                        if line == ".\r\n" {
                            break;
                        }
                        data.push_str(&line);
                    }
                    writer.write_all(b"250 2.0.0 delivered\r\n").unwrap();
                }
                "QUIT" => {
                    writer.write_all(b"221 bye\r\n").unwrap();
                    break;
                }
                _ => writer.write_all(b"250 ok\r\n").unwrap(),
            }
        }
        tx.send((commands, data)).unwrap();
    });
    (port, rx)
}

#[test]
fn lmtp_delivery() {
    let dir = Scratch::new("delivery", "lmtp");
    let port = free_port();
    let (lmtp_port, received) = lmtp_server();
    let config = format!(
        "listen on 127.0.0.1 port {port}\n{users}\
         action \"lmtp\" lmtp \"127.0.0.1:{lmtp_port}\" rcpt-to userbase <users>\n\
         match from any for domain example.org action \"lmtp\"\n",
        users = users(&dir),
    );
    let daemon = Daemon::start(&dir, port, &config, &[]);
    daemon.send("sender@client.test", &["bob@example.org"], BODY);
    let (commands, data) = received.recv_timeout(DEADLINE).unwrap();
    assert_eq!(commands[0], "LHLO localhost");
    assert_eq!(commands[1], "MAIL FROM:<sender@client.test>");
    assert_eq!(commands[2], "RCPT TO:<bob@example.org>");
    assert!(
        data.starts_with("Return-Path: <sender@client.test>\r\nDelivered-To: bob@example.org\r\n"),
        "{data}"
    );
    assert!(
        data.ends_with("Hello.\r\n..leading dot\r\n"),
        "dot-stuffed again: {data:?}"
    );
    daemon.wait_n("result=Ok", 1);
}

#[test]
fn a_permanent_failure_bounces_to_the_sender() {
    let dir = Scratch::new("delivery", "bounce");
    let port = free_port();
    let maildirs = writable(&dir, "maildir");
    let config = format!(
        "listen on 127.0.0.1 port {port}\n{users}\
         action \"local\" maildir \"{m}/%{{dest.user}}\" userbase <users>\n\
         action \"fail\" mda \"cat >/dev/null; echo 'no such mailbox here'; exit 1\" userbase <users>\n\
         match from any for domain example.org action \"local\"\n\
         match from any for domain fail.test action \"fail\"\n",
        users = users(&dir),
        m = maildirs.display(),
    );
    let daemon = Daemon::start(&dir, port, &config, &[]);
    let reply = daemon.send("alice@example.org", &["bob@fail.test"], BODY);
    assert!(reply.starts_with("250 "), "{reply}");
    daemon.wait_n("result=PermFail", 1);
    // The bounce is injected as a message from the null sender.
    daemon.wait_n("smtp envelope evpid=", 1);
    daemon.wait_n("result=Ok", 1);
    let bounce = &maildir_files(&maildirs.join("alice"), 1)[0];
    assert!(!bounce.contains("Return-Path"), "from <>: {bounce}");
    assert!(
        bounce.contains("multipart/report; report-type=delivery-status"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Final-Recipient: rfc822; bob@fail.test"),
        "{bounce}"
    );
    assert!(bounce.contains("no such mailbox here"), "{bounce}");
    assert!(
        bounce.contains("Subject: hello"),
        "the original is returned: {bounce}"
    );
}

#[test]
fn acknowledged_mail_survives_kill_9() {
    let dir = Scratch::new("delivery", "kill9");
    let port = free_port();
    let out = writable(&dir, "out");
    let go = dir.0.join("go");
    // Deliveries fail temporarily until the file `go` exists.
    let config = format!(
        "listen on 127.0.0.1 port {port}\n{users}\
         action \"gate\" mda \"if [ -e {g} ]; then cat > $(mktemp {o}/m.XXXXXX); \
         else cat >/dev/null; exit 75; fi\" userbase <users>\n\
         match from any for domain example.org action \"gate\"\n",
        users = users(&dir),
        g = go.display(),
        o = out.display(),
    );
    let mut daemon = Daemon::start(&dir, port, &config, &[]);
    const N: usize = 20;
    for i in 0..N {
        let body = format!("Subject: message {i}\r\n\r\nbody {i}\r\n");
        let reply = daemon.send("sender@client.test", &["alice@example.org"], &body);
        assert!(reply.starts_with("250 "), "{reply}");
    }
    daemon.wait_n("result=TempFail", N);
    daemon.process.stop(libc::SIGKILL);
    std::fs::write(&go, "").unwrap();

    let daemon = Daemon::start(&dir, port, &config, &[]);
    daemon
        .process
        .wait_for(&format!("scheduler: {N} envelope(s) loaded from the queue"));
    daemon.wait_n("result=Ok", N);
    let mut subjects: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            text.lines()
                .find(|l| l.starts_with("Subject: "))
                .unwrap()
                .to_owned()
        })
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), N, "every message once: {subjects:?}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), N, "none twice");
}

#[test]
fn aliases_from_a_proc_exec_table_written_with_the_python_sdk() {
    let dir = Scratch::new("delivery", "pytable");
    let port = free_port();
    let maildirs = writable(&dir, "maildir");
    let aliases = dir.write(
        "aliases",
        "postmaster: alice\nsales: alice, bob\ngone: error:550 5.1.1 Left the company\n",
    );
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("sdk-python/src");
    let config = format!(
        "listen on 127.0.0.1 port {port}\n{users}\
         table aliases proc-exec \"/usr/bin/env PYTHONPATH={sdk} python3 -m \
         smtpd_sdk.examples.table_static {a}\"\n\
         action \"local\" maildir \"{m}/%{{user.username}}\" alias <aliases> userbase <users>\n\
         match from any for domain example.org action \"local\"\n",
        users = users(&dir),
        sdk = sdk.display(),
        a = aliases.display(),
        m = maildirs.display(),
    );
    let daemon = Daemon::start(&dir, port, &config, &[]);
    let reply = daemon.send(
        "sender@client.test",
        &["postmaster@example.org", "sales@example.org"],
        BODY,
    );
    assert!(reply.starts_with("250 "), "{reply}");
    daemon.wait_n("result=Ok", 3);
    assert_eq!(maildir_files(&maildirs.join("alice"), 2).len(), 2);
    assert_eq!(maildir_files(&maildirs.join("bob"), 1).len(), 1);
    let mut c = Client::connect(port, Ipv4Addr::LOCALHOST);
    c.expect_code("EHLO client.test", "250");
    c.expect_code("MAIL FROM:<sender@client.test>", "250");
    c.expect(
        "RCPT TO:<gone@example.org>",
        "550 5.1.1 Left the company: <gone@example.org>",
    );
    c.expect(
        "RCPT TO:<nobody@example.org>",
        "550 5.1.1 Invalid recipient: <nobody@example.org>",
    );
    c.expect_code("QUIT", "221");
}

#[test]
fn unprivileged_the_daemon_writes_maildirs_itself() {
    let dir = Scratch::new("delivery", "unprivileged");
    let port = free_port();
    let maildirs = writable(&dir, "maildir");
    let data = writable(&dir, "data");
    let (uid, gid) = if is_root() {
        let id = |flag: &str| {
            let out = std::process::Command::new("id")
                .args([flag, "_smtpd"])
                .output()
                .unwrap();
            String::from_utf8(out.stdout)
                .unwrap()
                .trim()
                .parse::<u32>()
                .unwrap()
        };
        (id("-u"), id("-g"))
    } else {
        account()
    };
    std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = dir.write(
        "smtpd.conf",
        &format!(
            "listen on 127.0.0.1 port {port}\n\
             table users {{ alice = \"{uid}:{gid}:{h}\" }}\n\
             action \"local\" maildir \"{m}/%{{user.username}}\" userbase <users>\n\
             match from any for domain example.org action \"local\"\n",
            h = dir.0.display(),
            m = maildirs.display(),
        ),
    );
    // As root, the daemon is started as _smtpd, as a non-root
    // installation runs: it delivers in its own process, no helper. The
    // identity is changed in the child itself (no `runuser` in between),
    // so stopping the process stops the daemon.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_smtpd"));
    if is_root() {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(gid);
    }
    cmd.arg("-d")
        .arg("-f")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .arg("--nameserver")
        .arg(common::dns::shared().addr.to_string());
    let process = Process::spawn(cmd);
    process.wait_for(&format!("listening on 127.0.0.1:{port}"));
    let daemon = Daemon { process, port };
    let reply = daemon.send("sender@client.test", &["alice@example.org"], BODY);
    assert!(reply.starts_with("250 "), "{reply}");
    daemon.wait_n("result=Ok", 1);
    let alice = maildir_files(&maildirs.join("alice"), 1);
    assert!(
        alice[0].ends_with("Hello.\n.leading dot\n"),
        "{:?}",
        alice[0]
    );
    use std::os::unix::fs::MetadataExt;
    let new = maildirs.join("alice").join("new");
    let file = std::fs::read_dir(&new)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(std::fs::metadata(file).unwrap().uid(), uid);
}
