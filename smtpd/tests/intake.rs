//! SMTP intake, end to end: the built `smtpd` listening on a free port of
//! 127.0.0.1 with a scratch data directory, spoken to by Python's smtplib
//! and by a raw TCP client. A 250 after DATA means the message and its
//! envelopes are in the spool; refused recipients, oversized messages,
//! hostile senders and smuggled end-of-data are answered as SMTP says.
//!
//! Nothing sleeps to synchronise: the harness waits for the daemon's log
//! lines and for replies, each with a bounded deadline.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{smtpd_command, Process, Scratch, DEADLINE};

/// The size limit of the test configuration, whose local deliveries
/// always fail temporarily (`mda "exit 75"`), so that accepted messages
/// stay in the spool for the tests to read.
const MAX_SIZE: usize = 4096;

/// Where the daemon of `dir` keeps its queue.
fn spool(dir: &Scratch) -> PathBuf {
    dir.0.join("data").join("spool")
}

/// A running `smtpd` and the free port it listens on.
struct Daemon {
    process: Process,
    port: u16,
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
    /// Starts smtpd in `dir` and waits until it listens.
    fn start(dir: &Scratch) -> Self {
        Self::start_with(dir, |_| String::new())
    }

    /// Starts smtpd in `dir`, its configuration followed by what `extra`
    /// gives for a second free port, and waits until it listens.
    fn start_with(dir: &Scratch, extra: impl FnOnce(u16) -> String) -> Self {
        let port = free_port();
        let extra = extra(free_port());
        let config = dir.write(
            "smtpd.conf",
            &format!(
                "smtp max-message-size {MAX_SIZE}\n\
                 listen on 127.0.0.1 port {port}\n\
                 table users {{ bob = \"65534:65534:/\", carol = \"65534:65534:/\", \
                 dave = \"65534:65534:/\" }}\n\
                 action \"local\" mda \"exit 75\" userbase <users>\n\
                 action \"out\" relay\n\
                 match from any for domain example.org action \"local\"\n\
                 match from any for domain relay.smtpd.test action \"out\"\n\
                 match from any for domain refused.test reject\n{extra}"
            ),
        );
        let daemon = Self {
            process: Process::spawn(smtpd_command(dir, &config)),
            port,
        };
        daemon.wait_for(&format!("listening on 127.0.0.1:{port}"));
        daemon
    }

    fn connect(&self) -> Client {
        Client::connect(self.port)
    }
}

/// A port nobody listens on now: bound once, then released.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A raw SMTP client.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let writer = stream.try_clone().unwrap();
        let mut client = Self {
            reader: BufReader::new(stream),
            writer,
        };
        assert!(client.reply().starts_with("220 "));
        client
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// One whole reply (every line of a multi-line one).
    fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).unwrap();
            assert!(n > 0, "connection closed; so far {reply:?}");
            reply.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return reply;
            }
        }
    }

    /// Sends a command and returns its reply.
    fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }
}

/// The committed messages of the spool: `queue/BB/MSGID/`.
fn committed(spool: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(buckets) = std::fs::read_dir(spool.join("queue")) else {
        return found;
    };
    for bucket in buckets {
        for message in std::fs::read_dir(bucket.unwrap().path()).unwrap() {
            found.push(message.unwrap().path());
        }
    }
    found.sort();
    found
}

/// The message id of a `250 2.0.0 MSGID Message accepted` reply.
fn accepted_id(reply: &str) -> String {
    assert!(reply.starts_with("250 "), "{reply}");
    reply.split_whitespace().nth(2).unwrap().to_owned()
}

/// The envelope files of a committed message directory.
fn envelopes(dir: &Path) -> Vec<String> {
    let mut texts: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "message")
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    texts.sort();
    texts
}

#[test]
fn smtplib_message_is_in_the_spool_when_250_comes() {
    let dir = Scratch::new("intake", "smtplib");
    let daemon = Daemon::start(&dir);
    let script = format!(
        "import smtplib\n\
         s = smtplib.SMTP('127.0.0.1', {port}, timeout=30)\n\
         s.ehlo('client.test')\n\
         s.mail('alice@sender.test')\n\
         print(s.rcpt('bob@example.org')[0])\n\
         print(s.rcpt('carol@relay.smtpd.test')[0])\n\
         code, text = s.data(b'Subject: hello\\r\\n\\r\\nHello Bob.\\r\\n.dot line\\r\\n')\n\
         print(code, text.decode())\n\
         s.quit()\n",
        port = daemon.port
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[..2], ["250", "250"], "{stdout}");
    let msgid = accepted_id(lines[2]);
    let messages = committed(&spool(&dir));
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].file_name().unwrap(), msgid.as_str());
    let message = std::fs::read_to_string(messages[0].join("message")).unwrap();
    // The reverse name served by the tests' nameserver.
    assert!(
        message.starts_with(&format!(
            "Received: from client.test ({} [127.0.0.1])\r\n",
            common::dns::CLIENT_NAME
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("with ESMTP id {msgid}")),
        "{message}"
    );
    assert!(
        message.ends_with("\r\n\r\nHello Bob.\r\n.dot line\r\n"),
        "{message:?}"
    );
    // A loopback listener is local: missing Date: and Message-ID: are
    // added after the client's headers.
    let headers = message.split("\r\n\r\n").next().unwrap();
    assert!(
        headers.contains("\r\nSubject: hello\r\nDate: "),
        "{message:?}"
    );
    assert!(headers.contains("\r\nMessage-ID: <"), "{message:?}");
    let envelopes = envelopes(&messages[0]);
    assert_eq!(envelopes.len(), 2);
    let local = envelopes
        .iter()
        .find(|e| e.contains("rcpt: bob@example.org"))
        .unwrap();
    assert!(
        local.contains("dispatcher: local\n") && local.contains("type: mda\n"),
        "{local}"
    );
    assert!(
        local.contains("sender: alice@sender.test\n") && local.contains("helo: client.test\n"),
        "{local}"
    );
    assert!(
        local.contains(&format!("hostname: {}\n", common::dns::CLIENT_NAME)),
        "{local}"
    );
    let relay = envelopes
        .iter()
        .find(|e| e.contains("rcpt: carol@relay.smtpd.test"))
        .unwrap();
    assert!(
        relay.contains("dispatcher: out\n") && relay.contains("type: mta\n"),
        "{relay}"
    );
}

#[test]
fn refused_recipients_senders_and_oversized_messages() {
    let dir = Scratch::new("intake", "refused");
    let daemon = Daemon::start(&dir);
    let mut c = daemon.connect();
    assert!(c.command("EHLO client.test").starts_with("250-"));
    assert!(c.command("MAIL FROM:<;sleep 66;>").starts_with("553 "));
    assert!(c
        .command("MAIL FROM:<alice@sender.test>")
        .starts_with("250 "));
    assert_eq!(
        c.command("RCPT TO:<bob@nowhere.test>"),
        "550 5.1.1 Invalid recipient: <bob@nowhere.test>\r\n"
    );
    assert_eq!(
        c.command("RCPT TO:<bob@refused.test>"),
        "550 5.1.1 Invalid recipient: <bob@refused.test>\r\n"
    );
    // A local user the userbase does not know is refused at RCPT TO.
    assert_eq!(
        c.command("RCPT TO:<nobody-here@example.org>"),
        "550 5.1.1 Invalid recipient: <nobody-here@example.org>\r\n"
    );
    assert!(c.command("DATA").starts_with("503 "), "no recipient yet");
    assert!(c.command("RCPT TO:<bob@example.org>").starts_with("250 "));
    assert!(c.command("DATA").starts_with("354 "));
    let line = "x".repeat(78);
    for _ in 0..(MAX_SIZE / 80 + 10) {
        c.send(format!("{line}\r\n").as_bytes());
    }
    assert!(c.command(".").starts_with("552 "));
    assert!(c.command("QUIT").starts_with("221 "));
    assert!(committed(&spool(&dir)).is_empty());
}

#[test]
fn pipelined_transactions() {
    let dir = Scratch::new("intake", "pipelining");
    let daemon = Daemon::start(&dir);
    let mut c = daemon.connect();
    assert!(c.command("EHLO client.test").contains("PIPELINING"));
    c.send(
        b"MAIL FROM:<alice@sender.test>\r\nRCPT TO:<bob@example.org>\r\n\
          RCPT TO:<eve@nowhere.test>\r\nDATA\r\n",
    );
    assert!(c.reply().starts_with("250 "));
    assert!(c.reply().starts_with("250 "));
    assert!(c.reply().starts_with("550 "));
    assert!(c.reply().starts_with("354 "));
    c.send(b"Subject: one\r\n\r\nfirst\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n");
    let first = accepted_id(&c.reply());
    assert!(c.reply().starts_with("250 "));
    assert!(c.reply().starts_with("250 "));
    assert!(c.reply().starts_with("354 "));
    c.send(b"Subject: two\r\n\r\nsecond\r\n.\r\nQUIT\r\n");
    let second = accepted_id(&c.reply());
    assert!(c.reply().starts_with("221 "));
    let messages = committed(&spool(&dir));
    let names: Vec<String> = messages
        .iter()
        .map(|m| m.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(names, expected);
    for m in &messages {
        assert_eq!(envelopes(m).len(), 1);
    }
}

#[test]
fn bare_lf_dot_lf_does_not_end_the_message() {
    let dir = Scratch::new("intake", "smuggling");
    let daemon = Daemon::start(&dir);
    let mut c = daemon.connect();
    assert!(c.command("EHLO client.test").starts_with("250"));
    assert!(c
        .command("MAIL FROM:<alice@sender.test>")
        .starts_with("250 "));
    assert!(c.command("RCPT TO:<bob@example.org>").starts_with("250 "));
    assert!(c.command("DATA").starts_with("354 "));
    c.send(
        b"Subject: smuggle\r\n\r\nhello\n.\nMAIL FROM:<mallory@sender.test>\n\
          RCPT TO:<carol@example.org>\nDATA\nSubject: smuggled\n\r\n",
    );
    // Only the real end of data answers, once: the LF.LF above ended
    // nothing, and the commands after it were message text.
    let reply = c.command(".");
    assert_eq!(reply, "550 5.5.2 Bare CR or LF in message data\r\n");
    assert!(c.command("NOOP").starts_with("250 "));
    assert!(c.command("QUIT").starts_with("221 "));
    assert!(committed(&spool(&dir)).is_empty());
}

#[test]
fn starttls_then_auth_then_mail() {
    let dir = Scratch::new("intake", "tls");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["mx.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (crt, pem) = (dir.0.join("mx.crt"), dir.0.join("mx.key"));
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&pem, key.serialize_pem()).unwrap();
    let hash = smtpd::smtp::credentials::encrypt(b"secret").unwrap();
    let creds = dir.0.join("creds");
    std::fs::write(&creds, format!("alice {hash}\n")).unwrap();
    let (mut tls_port, mut smtps_port) = (0, 0);
    let daemon = Daemon::start_with(&dir, |port| {
        (tls_port, smtps_port) = (port, free_port());
        format!(
            "pki mx.test cert \"{}\"\npki mx.test key \"{}\"\ntable creds file:{}\n\
             listen on 127.0.0.1 port {port} tls pki mx.test auth <creds> hostname mx.test\n\
             listen on 127.0.0.1 port {smtps_port} smtps pki mx.test\n",
            crt.display(),
            pem.display(),
            creds.display()
        )
    });
    daemon.wait_for(&format!("listening on 127.0.0.1:{tls_port}"));
    daemon.wait_for(&format!("listening on 127.0.0.1:{smtps_port}"));
    let script = format!(
        "import smtplib, ssl\n\
         ctx = ssl.create_default_context()\n\
         ctx.check_hostname = False\n\
         ctx.verify_mode = ssl.CERT_NONE\n\
         s = smtplib.SMTP('127.0.0.1', {tls_port}, timeout=30)\n\
         s.ehlo('client.test')\n\
         print('auth' in s.esmtp_features, 'starttls' in s.esmtp_features)\n\
         print(s.mail('alice@sender.test')[0])\n\
         s.starttls(context=ctx)\n\
         s.ehlo('client.test')\n\
         print('auth' in s.esmtp_features)\n\
         try:\n\
         \x20   s.login('alice', 'wrong')\n\
         except smtplib.SMTPAuthenticationError as e:\n\
         \x20   print(e.smtp_code)\n\
         print(s.login('alice', 'secret')[0])\n\
         s.mail('alice@sender.test')\n\
         s.rcpt('bob@example.org')\n\
         code, text = s.data(b'Subject: tls\\r\\n\\r\\nover TLS\\r\\n')\n\
         print(code, text.decode())\n\
         s.quit()\n\
         s = smtplib.SMTP_SSL('127.0.0.1', {smtps_port}, timeout=30, context=ctx)\n\
         s.ehlo('client.test')\n\
         print('starttls' in s.esmtp_features)\n\
         s.sendmail('carol@sender.test', ['dave@example.org'], b'Subject: smtps\\r\\n\\r\\nhi\\r\\n')\n\
         s.quit()\n"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[6], "False", "no STARTTLS inside smtps");
    // AUTH only once under TLS, and required before MAIL.
    assert_eq!(
        lines[..5],
        ["False True", "530", "True", "535", "235"],
        "{stdout}"
    );
    let msgid = accepted_id(lines[5]);
    let messages = committed(&spool(&dir));
    assert_eq!(messages.len(), 2);
    let mut texts: Vec<(PathBuf, String)> = messages
        .iter()
        .map(|m| {
            (
                m.clone(),
                std::fs::read_to_string(m.join("message")).unwrap(),
            )
        })
        .collect();
    texts.sort_by_key(|(_, text)| text.contains("Subject: smtps"));
    let (dir_tls, message) = &texts[0];
    assert_eq!(dir_tls.file_name().unwrap(), msgid.as_str());
    assert!(texts[1].1.contains(" with ESMTPS id "), "{}", texts[1].1);
    assert!(
        message.contains(&format!(
            "by mx.test (smtpd) with ESMTPSA id {msgid} (TLSv1.3:"
        )),
        "{message}"
    );
    let envelope = &envelopes(dir_tls)[0];
    assert!(envelope.contains("username: alice\n"), "{envelope}");
    assert!(envelope.contains("smtpname: mx.test\n"), "{envelope}");
}

#[test]
fn a_port_in_use_stops_the_start_and_sigterm_stops_the_daemon() {
    let dir = Scratch::new("intake", "busy");
    let daemon = Daemon::start(&dir);
    // A second daemon on the same port and data directory fails to start.
    let config = dir.0.join("busy.conf");
    std::fs::write(
        &config,
        format!(
            "listen on 127.0.0.1 port {}\naction \"local\" maildir\nmatch from any action \"local\"\n",
            daemon.port
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smtpd"));
    cmd.arg("-f")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.0.join("other"))
        .arg("--control-socket")
        .arg(dir.0.join("other.sock"));
    let out = cmd
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{}", daemon.port)),
        "{stderr}"
    );
    // SIGTERM: the daemon stops listening and exits cleanly.
    let pid = libc::pid_t::try_from(daemon.child.id()).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    daemon.wait_for("smtpd exiting");
    let mut daemon = daemon;
    assert!(daemon.child.wait().unwrap().success());
    assert!(TcpStream::connect(("127.0.0.1", daemon.port)).is_err());
}
