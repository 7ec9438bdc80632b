//! The queue layers' end-to-end cases, for any queue store: a [`Store`]
//! says which `queue ...` lines select it and how to reach its stored
//! bytes, and each case takes the layer lines (`queue compression`,
//! `queue encryption ...`) and how the key is given ([`Layers`]).
//! `queue_layers.rs` runs them on the fs queue; a test of another queue
//! backend can include this file (`#[path = "queue_layers/cases.rs"]
//! mod cases;`) and run them on its store.
//!
//! Mail goes in with real clients (swaks, Python's smtplib) while local
//! deliveries are paused (`smtpctl pause mda`), so the stored form can be
//! inspected, then comes out into a maildir.

use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::backend::{account, maildir_files, writable};
use crate::common::mail::{free_port, python, swaks, Smtpd, Spool};
use crate::common::{is_root, smtpd_command, Process, Scratch, DEADLINE};

/// The environment variable the daemon takes the key from.
pub(crate) const KEY_ENV: &str = "SMTPD_QUEUE_KEY";

/// A queue store under test.
pub(crate) trait Store {
    /// The smtpd.conf lines that select it (none for the fs queue).
    fn queue_lines(&self) -> String;
    /// Every stored blob of message `msgid`: content and envelopes.
    fn blobs(&self, msgid: &str) -> Vec<Vec<u8>>;
    /// Damages the stored content of message `msgid` (one byte, in the
    /// part that every layer checks).
    fn tamper(&self, msgid: &str);
    /// Whether message `msgid` was moved aside as corrupt.
    fn is_corrupt(&self, msgid: &str) -> bool;
    /// Whether message `msgid` is still queued (not moved aside).
    fn is_queued(&self, msgid: &str) -> bool;
}

/// The fs queue of the daemon run in `dir`.
pub(crate) struct FsStore {
    spool: PathBuf,
}

impl FsStore {
    /// The spool of a daemon run with `--data-dir DIR/data`.
    pub(crate) fn new(dir: &Scratch) -> Self {
        Self {
            spool: dir.0.join("data").join("spool"),
        }
    }

    fn message_dir(&self, msgid: &str) -> PathBuf {
        Spool(self.spool.clone()).message_dir(msgid)
    }
}

impl Store for FsStore {
    fn queue_lines(&self) -> String {
        String::new()
    }

    fn blobs(&self, msgid: &str) -> Vec<Vec<u8>> {
        std::fs::read_dir(self.message_dir(msgid))
            .expect("message directory")
            .map(|e| std::fs::read(e.expect("entry").path()).expect("blob"))
            .collect()
    }

    fn tamper(&self, msgid: &str) {
        let path = self.message_dir(msgid).join("message");
        let mut bytes = std::fs::read(&path).expect("message file");
        // In the last record's tag (or gzip CRC), which every mode checks.
        let at = bytes.len() - 6;
        bytes[at] ^= 0x20;
        std::fs::write(&path, bytes).expect("write the message file");
    }

    fn is_corrupt(&self, msgid: &str) -> bool {
        self.spool
            .join("corrupt")
            .join(msgid)
            .join("message")
            .exists()
    }

    fn is_queued(&self, msgid: &str) -> bool {
        Spool(self.spool.clone())
            .committed()
            .iter()
            .any(|d| d.file_name().is_some_and(|n| n == msgid))
    }
}

/// Where the encryption key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyFrom {
    /// `queue encryption KEY` in smtpd.conf.
    Config,
    /// `--queue-key-file PATH` (smtpd.conf: `queue encryption`).
    File,
    /// The environment (smtpd.conf: `queue encryption`).
    Env,
    /// One line of standard input (smtpd.conf: `queue encryption stdin`).
    Stdin,
}

/// The layers of a daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layers {
    /// `queue compression`.
    pub(crate) compress: bool,
    /// `queue encryption`, and where its key comes from.
    pub(crate) encrypt: Option<KeyFrom>,
}

/// A key of 32 bytes, as `openssl rand -hex 16` prints one.
pub(crate) const KEY: &str = "5f1c0a2e9b7d4e6f8a3b2c1d0e9f8a7b";

/// Another one.
pub(crate) const OTHER_KEY: &str = "00112233445566778899aabbccddeeff";

/// A daemon over `store` with `layers` (key `key`), delivering mail for
/// example.org into `DIR/maildirs/vmail`, with local deliveries paused.
pub(crate) struct Daemon {
    pub(crate) smtpd: Smtpd,
    pub(crate) maildir: PathBuf,
    dir: PathBuf,
}

/// The smtpd.conf of a daemon, and the extra arguments and environment.
fn setup(
    dir: &Scratch,
    store: &dyn Store,
    layers: Layers,
    key: &str,
    port: u16,
) -> (PathBuf, Vec<String>, Vec<(String, String)>) {
    let (uid, gid) = account();
    let home = writable(dir, "home");
    let maildirs = writable(dir, "maildirs");
    let vusers = dir.write("vusers", "@example.org vmail\n");
    let users = dir.write("users", &format!("vmail {uid}:{gid}:{}\n", home.display()));
    let mut lines = store.queue_lines();
    let (mut args, mut env) = (Vec::new(), Vec::new());
    if layers.compress {
        lines.push_str("queue compression\n");
    }
    match layers.encrypt {
        None => {}
        Some(KeyFrom::Config) => lines.push_str(&format!("queue encryption {key}\n")),
        Some(KeyFrom::File) => {
            lines.push_str("queue encryption\n");
            let path = dir.0.join("queue.key");
            std::fs::write(&path, format!("{key}\n")).expect("key file");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            args.push("--queue-key-file".to_owned());
            args.push(path.display().to_string());
        }
        Some(KeyFrom::Env) => {
            lines.push_str("queue encryption\n");
            env.push((KEY_ENV.to_owned(), key.to_owned()));
        }
        Some(KeyFrom::Stdin) => lines.push_str("queue encryption stdin\n"),
    }
    let conf = dir.write(
        "smtpd.conf",
        &format!(
            "{lines}\
             table vusers file:{vusers}\n\
             table users file:{users}\n\
             listen on 127.0.0.1 port {port} hostname mx.test\n\
             action \"deliver\" maildir \"{m}/%{{user.username}}\" virtual <vusers> userbase <users>\n\
             match from any for domain example.org action \"deliver\"\n",
            vusers = vusers.display(),
            users = users.display(),
            m = maildirs.display(),
        ),
    );
    (conf, args, env)
}

/// The daemon's command line; with the key on standard input, through
/// `sh`, which gives it a here-document and becomes the daemon (the
/// harness gives the daemon no input).
fn command(dir: &Scratch, store: &dyn Store, layers: Layers, key: &str, port: u16) -> Command {
    let (conf, args, env) = setup(dir, store, layers, key, port);
    let mut cmd = smtpd_command(dir, &conf);
    cmd.args(args).env_remove(KEY_ENV);
    for (k, v) in env {
        cmd.env(k, v);
    }
    if layers.encrypt != Some(KeyFrom::Stdin) {
        return cmd;
    }
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("exec \"$0\" \"$@\" <<EOF\n$KEY\nEOF\n")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env("KEY", key)
        .env_remove(KEY_ENV);
    sh
}

impl Daemon {
    /// Starts the daemon and pauses local deliveries.
    pub(crate) fn start(dir: &Scratch, store: &dyn Store, layers: Layers, key: &str) -> Self {
        let port = free_port();
        let process = Process::spawn(command(dir, store, layers, key, port));
        process.wait_for(&format!("listening on 127.0.0.1:{port}"));
        let smtpd = Smtpd {
            process,
            port,
            spool: Spool(dir.0.join("data").join("spool")),
        };
        let daemon = Self {
            smtpd,
            maildir: dir.0.join("maildirs").join("vmail"),
            dir: dir.0.clone(),
        };
        assert_eq!(daemon.ctl(&["pause", "mda"]), "command succeeded\n");
        daemon
    }

    /// Starts a daemon that must refuse to start; its status and log.
    pub(crate) fn refused(
        dir: &Scratch,
        store: &dyn Store,
        layers: Layers,
        key: &str,
    ) -> (ExitStatus, String) {
        let mut process = Process::spawn(command(dir, store, layers, key, free_port()));
        let status = process.wait_exit();
        let log = process.log.lock().expect("log").clone();
        (status, log)
    }

    /// smtpctl `words` on the daemon's control socket; its output.
    pub(crate) fn ctl(&self, words: &[&str]) -> String {
        let socket = if is_root() {
            self.dir.join("smtpd.sock")
        } else {
            self.dir.join("data").join("smtpd.sock")
        };
        let out = Command::new(env!("CARGO_BIN_EXE_smtpctl"))
            .arg("-s")
            .arg(socket)
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(words)
            .stdin(Stdio::null())
            .output()
            .expect("smtpctl runs");
        assert!(out.status.success(), "smtpctl {words:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends a message with swaks; its message id.
    pub(crate) fn swaks(&self, subject: &str, body: &str) -> String {
        let (out, code) = swaks(
            self.smtpd.port,
            &[
                "--from",
                "sender@client.test",
                "--to",
                "rcpt@example.org",
                "--helo",
                "client.test",
                "--header",
                &format!("Subject: {subject}"),
                "--body",
                body,
            ],
        );
        assert_eq!(code, Some(0), "{out}");
        msgid_of(&out)
    }

    /// Sends `body` (CRLF lines) with Python's smtplib; its message id.
    pub(crate) fn smtplib(&self, subject: &str, body: &str) -> String {
        let script = format!(
            "import smtplib\n\
             body = b'Subject: {subject}\\r\\n\\r\\n' + open({path:?}, 'rb').read()\n\
             s = smtplib.SMTP('127.0.0.1', {port}, timeout=30)\n\
             s.ehlo('client.test')\n\
             s.mail('sender@client.test')\n\
             s.rcpt('rcpt@example.org')\n\
             code, reply = s.data(body)\n\
             print(code, reply.decode())\n\
             s.quit()\n",
            path = self.write_body(body).display().to_string(),
            port = self.smtpd.port,
        );
        let out = python(&script);
        assert!(out.starts_with("250 "), "{out}");
        out.split_whitespace()
            .nth(2)
            .expect("message id")
            .to_owned()
    }

    fn write_body(&self, body: &str) -> PathBuf {
        let path = self.dir.join("body.txt");
        std::fs::write(&path, body).expect("body file");
        path
    }

    /// Resumes local deliveries.
    pub(crate) fn resume(&self) {
        assert_eq!(self.ctl(&["resume", "mda"]), "command succeeded\n");
    }

    /// Waits until the log holds `needle` (anywhere so far).
    pub(crate) fn wait_log(&self, needle: &str) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let log = self.smtpd.log.lock().expect("log").clone();
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            assert!(Instant::now() < end, "no log line with {needle:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The message id in swaks's `250 2.0.0 MSGID Message accepted` line.
fn msgid_of(transcript: &str) -> String {
    let line = transcript
        .lines()
        .find(|l| l.contains("Message accepted for delivery"))
        .unwrap_or_else(|| panic!("no acceptance in {transcript}"));
    line.split_whitespace()
        .find(|w| w.len() == 8 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .expect("message id")
        .to_owned()
}

/// A body of `lines` numbered, compressible lines (CRLF).
pub(crate) fn body(tag: &str, lines: usize) -> String {
    (0..lines)
        .map(|n| format!("Line {n:06} of {tag}: the quick brown fox jumps over the lazy dog\r\n"))
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Mail in with swaks (small) and smtplib (several segments), stored
/// without plaintext, shown decrypted by smtpctl, delivered intact.
pub(crate) fn round_trip(dir: &Scratch, store: &dyn Store, layers: Layers) {
    let daemon = Daemon::start(dir, store, layers, KEY);
    let small = daemon.swaks("small one", "a secret-marker line");
    let big_body = body("big-marker", 6000);
    let big = daemon.smtplib("big one", &big_body);

    for blob in store.blobs(&big) {
        assert!(!contains(&blob, b"Line 000100 of big-marker"), "{layers:?}");
        assert!(!contains(&blob, b"rcpt@example.org\n"), "{layers:?}");
    }
    if layers.encrypt.is_some() {
        for blob in store.blobs(&small) {
            assert!(!contains(&blob, b"secret-marker"), "{layers:?}");
            assert!(!contains(&blob, b"example.org"), "{layers:?}");
        }
    }
    if layers.compress {
        let stored: usize = store.blobs(&big).iter().map(Vec::len).sum();
        assert!(
            stored < big_body.len() / 5,
            "{stored} of {}",
            big_body.len()
        );
    }

    // smtpctl shows the plaintext.
    let shown = daemon.ctl(&["show", "message", &small]);
    assert!(shown.contains("a secret-marker line"), "{shown}");
    assert!(shown.contains("Subject: small one"), "{shown}");
    let shown = daemon.ctl(&["show", "message", &big]);
    assert!(
        shown.contains(&big_body.replace("\r\n", "\n")),
        "show message of the big one"
    );
    let listed = daemon.ctl(&["show", "queue"]);
    let evpid = listed
        .lines()
        .find(|l| l.starts_with(&big))
        .and_then(|l| l.split('|').next())
        .unwrap_or_else(|| panic!("{big} not in {listed}"))
        .to_owned();
    let envelope = daemon.ctl(&["show", "envelope", &evpid]);
    assert!(envelope.contains("rcpt: rcpt@example.org"), "{envelope}");
    assert!(envelope.contains("version: 3"), "{envelope}");

    daemon.resume();
    let files = maildir_files(&daemon.maildir, 2);
    assert_eq!(files.len(), 2, "{files:?}");
    let big_file = files
        .iter()
        .find(|f| f.contains("Subject: big one"))
        .expect("the big one delivered");
    assert!(
        big_file.contains(&big_body.replace("\r\n", "\n")),
        "big body intact"
    );
    assert!(files.iter().any(|f| f.contains("a secret-marker line")));
}

/// A message whose stored content was damaged is moved aside, logged and
/// never delivered; the other one is delivered.
pub(crate) fn tampered(dir: &Scratch, store: &dyn Store, layers: Layers) {
    let daemon = Daemon::start(dir, store, layers, KEY);
    let bad = daemon.smtplib("damaged", &body("damaged", 3000));
    let good = daemon.swaks("intact", "an intact message");
    store.tamper(&bad);
    daemon.resume();
    let files = maildir_files(&daemon.maildir, 1);
    assert!(files[0].contains("an intact message"), "{files:?}");
    let line = daemon.wait_log("moved aside as corrupt");
    assert!(line.contains(&format!("msg:{bad}")), "{line}");
    assert!(line.contains("does not d"), "{line}");
    assert!(store.is_corrupt(&bad), "{bad} moved aside");
    assert!(!store.is_queued(&bad));
    // Tried again at the next attempt: gone, not retried forever.
    daemon.ctl(&["schedule", "all"]);
    let end = Instant::now() + DEADLINE;
    while daemon.ctl(&["show", "queue"]).contains(&bad) {
        assert!(Instant::now() < end, "{bad} still scheduled");
        std::thread::sleep(Duration::from_millis(50));
        daemon.ctl(&["schedule", "all"]);
    }
    let files = maildir_files(&daemon.maildir, 1);
    assert_eq!(
        files.len(),
        1,
        "the damaged message was delivered: {files:?}"
    );
    // Removed from the queue once its delivery is durable.
    let end = Instant::now() + DEADLINE;
    while store.is_queued(&good) {
        assert!(
            Instant::now() < end,
            "{good} still queued after its delivery"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A queue written with one key: another key refuses to start, naming the
/// problem, and moves nothing aside; the right key delivers it all.
pub(crate) fn other_key(dir: &Scratch, store: &dyn Store, layers: Layers) {
    let msgid = {
        let mut daemon = Daemon::start(dir, store, layers, KEY);
        let msgid = daemon.swaks("kept", "kept across restarts");
        daemon.smtpd.stop(libc::SIGTERM);
        msgid
    };
    let (status, log) = Daemon::refused(dir, store, layers, OTHER_KEY);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("sealed with another key"), "{log}");
    assert!(log.contains("refusing to start"), "{log}");
    assert!(
        store.is_queued(&msgid) && !store.is_corrupt(&msgid),
        "{log}"
    );
    // Without encryption (or the other way round): refused as well.
    let plain = Layers {
        compress: false,
        encrypt: None,
    };
    let (status, log) = Daemon::refused(dir, store, plain, KEY);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("but the queue is configured with neither"),
        "{log}"
    );

    let daemon = Daemon::start(dir, store, layers, KEY);
    daemon.resume();
    let files = maildir_files(&daemon.maildir, 1);
    assert!(files[0].contains("kept across restarts"), "{files:?}");
}
