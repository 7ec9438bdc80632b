//! The `listen on` options that act on a session, and the limits intake
//! enforces, against the built `smtpd`:
//!
//! - `senders <t> masquerade`: after STARTTLS and AUTH (Python's
//!   smtplib), MAIL FROM must be an address the table lists for the
//!   login (530 5.7.1 otherwise); the `From:` header becomes the envelope
//!   sender; sessions that did not authenticate are not checked;
//! - `hostnames <t>`: the server name by the local address connected to
//!   (127.0.0.1, ::1, an address the table does not list);
//! - `proxy-v2`: the header's client is the source the rules, the log,
//!   `Received:` and the envelope see; a connection without a header is
//!   closed unanswered;
//! - 100 `Received:` headers are a loop: the end of DATA is refused and
//!   nothing is queued (99 pass);
//! - with few descriptors, the daemon stops accepting at its session
//!   limit and accepts again when a session ends.
//!
//! Local deliveries fail temporarily (`mda "exit 75"`), so every message
//! stays in the spool to be read back. Nothing sleeps: the daemon's log
//! and its replies are waited for, within the harness's deadline.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::os::unix::process::CommandExt;

use common::mail::{
    accepted_id, free_port, python, self_signed, smtpctl_encrypt, Client, Smtpd, LOCAL,
};
use common::{smtpd_command, Process, Scratch, DEADLINE};

/// The local action and its users: deliveries fail temporarily, so
/// messages stay queued.
const ACTION: &str = "table users { bob = \"65534:65534:/\" }\n\
                      action \"x\" mda \"exit 75\" userbase <users>\n";

/// A raw client of any local address, whose greeting is read only when
/// asked (a PROXY header goes first).
struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    fn connect(ip: IpAddr, port: u16) -> Self {
        let stream = TcpStream::connect((ip, port)).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Self {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// One whole reply, CRLFs kept.
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

    fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Whether the server closed the connection without sending anything.
    fn closed_unanswered(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => rest.is_empty(),
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// Sends one message for bob@example.org with `body` (CRLF lines); the
/// reply to its end.
fn send_message(c: &mut Raw, body: &str) -> String {
    assert!(c
        .command("MAIL FROM:<alice@sender.test>")
        .starts_with("250 "));
    assert!(c.command("RCPT TO:<bob@example.org>").starts_with("250 "));
    assert!(c.command("DATA").starts_with("354 "));
    c.send(body.as_bytes());
    c.command(".")
}

#[test]
fn senders_are_checked_after_auth_and_from_is_masqueraded() {
    let dir = Scratch::new("listen", "senders");
    let (crt, key) = self_signed(&dir, "mx.test");
    let hash = smtpctl_encrypt("secret");
    let creds = dir.write("creds", &format!("alice {hash}\ncarol {hash}\n"));
    let owners = dir.write("owners", "alice alice@example.org, @alice.test\n");
    let smtpd = Smtpd::start(&dir, |port| {
        format!(
            "pki mx.test cert \"{}\"\npki mx.test key \"{}\"\n\
             table creds file:{}\ntable owners file:{}\n{ACTION}\
             listen on 127.0.0.1 port {port} tls pki mx.test auth-optional <creds> \
             senders <owners> masquerade hostname mx.test\n\
             match from any for domain example.org action \"x\"\n",
            crt.display(),
            key.display(),
            creds.display(),
            owners.display()
        )
    });
    let out = python(&format!(
        "import smtplib, ssl\n\
         ctx = ssl.create_default_context()\n\
         ctx.check_hostname = False\n\
         ctx.verify_mode = ssl.CERT_NONE\n\
         def session(user):\n\
         \x20   s = smtplib.SMTP('127.0.0.1', {port}, timeout=30)\n\
         \x20   s.starttls(context=ctx)\n\
         \x20   s.ehlo('client.test')\n\
         \x20   if user:\n\
         \x20       print(s.login(user, 'secret')[0])\n\
         \x20   return s\n\
         def show(reply):\n\
         \x20   print(reply[0], reply[1].decode())\n\
         def send(s, sender):\n\
         \x20   show(s.mail(sender))\n\
         \x20   show(s.rcpt('bob@example.org'))\n\
         \x20   show(s.data(b'From: \"Someone, Else\" <someone@else.test>\\r\\n\
         Subject: masqueraded\\r\\n\\r\\nHello.\\r\\n'))\n\
         s = session('alice')\n\
         send(s, 'alice@example.org')\n\
         send(s, 'alice+tag@example.org')\n\
         send(s, 'anyone@alice.test')\n\
         show(s.mail('bob@example.org'))\n\
         show(s.mail('alice@other.test'))\n\
         show(s.mail('<>'))\n\
         s.quit()\n\
         s = session('carol')\n\
         show(s.mail('carol@example.org'))\n\
         s.quit()\n\
         s = session(None)\n\
         send(s, 'bob@example.org')\n\
         s.quit()\n",
        port = smtpd.port
    ));
    let lines: Vec<&str> = out.lines().collect();
    let rejected = "530 5.7.1 Sender rejected";
    assert_eq!(lines[0], "235", "{out}");
    let mut accepted = Vec::new();
    for sent in [&lines[1..4], &lines[4..7], &lines[7..10]] {
        assert_eq!(sent[0], "250 2.0.0 Ok", "{out}");
        assert!(sent[1].starts_with("250 2.1.5"), "{out}");
        accepted.push(accepted_id(&format!("{}\r\n", sent[2])));
    }
    assert_eq!(lines[10..13], [rejected; 3], "{out}");
    // A login the table does not list may use no sender at all.
    assert_eq!(lines[13..15], ["235", rejected], "{out}");
    // Without AUTH, nothing is checked and nothing rewritten.
    assert_eq!(lines[15], "250 2.0.0 Ok", "{out}");
    let unchecked = accepted_id(&format!("{}\r\n", lines[17]));
    assert_eq!(lines.len(), 18, "{out}");

    let senders = [
        "alice@example.org",
        "alice+tag@example.org",
        "anyone@alice.test",
    ];
    for (msgid, sender) in accepted.iter().zip(senders) {
        let message = smtpd.spool.message(msgid);
        assert!(
            message.contains(&format!("\nFrom: \"Someone, Else\" <{sender}>\r\n")),
            "{message}"
        );
        assert!(!message.contains("someone@else.test"), "{message}");
        let envelope = smtpd.spool.only_envelope(msgid);
        assert_eq!(envelope.get("sender"), Some(sender), "{}", envelope.text);
        assert_eq!(envelope.get("username"), Some("alice"), "{}", envelope.text);
    }
    let message = smtpd.spool.message(&unchecked);
    assert!(
        message.contains("\nFrom: \"Someone, Else\" <someone@else.test>\r\n"),
        "{message}"
    );
    let refused = smtpd.wait_for("result=\"530 5.7.1 Sender rejected\"");
    // smtplib says `mail FROM:`.
    assert!(refused.contains("FROM:<bob@example.org>\""), "{refused}");
}

#[test]
fn hostnames_follow_the_local_address() {
    let dir = Scratch::new("listen", "hostnames");
    let names = dir.write(
        "names",
        "127.0.0.1 one.test\n[::1] six.test\n127.0.0.9 unused.test\n",
    );
    let other = free_port();
    let smtpd = Smtpd::start(&dir, |port| {
        format!(
            "table names file:{}\n{ACTION}\
             listen on 127.0.0.3 port {other} hostnames <names> hostname fallback.test\n\
             listen on lo port {port} hostnames <names> hostname default.test\n\
             match from any for any action \"x\"\n",
            names.display()
        )
    });
    let cases: [(IpAddr, u16, &str); 3] = [
        (IpAddr::V4(Ipv4Addr::LOCALHOST), smtpd.port, "one.test"),
        ("::1".parse().unwrap(), smtpd.port, "six.test"),
        // No name for this address: the listener's own.
        (
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
            other,
            "fallback.test",
        ),
    ];
    for (ip, port, name) in cases {
        let mut c = Raw::connect(ip, port);
        assert_eq!(c.reply(), format!("220 {name} ESMTP smtpd\r\n"));
        let ehlo = c.command("EHLO client.test");
        assert!(
            ehlo.starts_with(&format!("250-{name} Hello client.test ")),
            "{ehlo}"
        );
        // A bare local part is completed with the session's name.
        assert!(c.command("MAIL FROM:<alice>").starts_with("250 "));
        assert!(c.command("RCPT TO:<bob>").starts_with("250 "));
        assert!(c.command("DATA").starts_with("354 "));
        c.send(b"Subject: hostnames\r\n\r\nHello.\r\n");
        let msgid = accepted_id(&c.command("."));
        c.command("QUIT");
        let message = smtpd.spool.message(&msgid);
        assert!(
            message.contains(&format!("\tby {name} (smtpd) with ESMTP id {msgid}")),
            "{message}"
        );
        let envelope = smtpd.spool.only_envelope(&msgid);
        assert_eq!(envelope.get("smtpname"), Some(name), "{}", envelope.text);
        assert_eq!(
            envelope.get("sender"),
            Some(format!("alice@{name}").as_str())
        );
        assert_eq!(envelope.get("rcpt"), Some(format!("bob@{name}").as_str()));
    }
}

/// A PROXY v2 header: `command` (0x20 LOCAL, 0x21 PROXY) for a TCP/IPv4
/// client `src`:`port` of 127.0.0.1:25.
fn proxy_header(command: u8, src: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut bytes = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    bytes.extend_from_slice(&[command, 0x11, 0, 12]);
    bytes.extend_from_slice(&src.octets());
    bytes.extend_from_slice(&Ipv4Addr::LOCALHOST.octets());
    bytes.extend_from_slice(&port.to_be_bytes());
    bytes.extend_from_slice(&25u16.to_be_bytes());
    bytes
}

#[test]
fn proxy_v2_gives_the_source_or_closes() {
    let dir = Scratch::new("listen", "proxy");
    let smtpd = Smtpd::start(&dir, |port| {
        format!(
            "{ACTION}listen on 127.0.0.1 port {port} proxy-v2 hostname mx.test\n\
             match from src 203.0.113.0/24 for domain example.org action \"x\"\n"
        )
    });
    let client = Ipv4Addr::new(203, 0, 113, 9);
    let mut c = Raw::connect(IpAddr::V4(LOCAL), smtpd.port);
    c.send(&proxy_header(0x21, client, 51234));
    assert_eq!(c.reply(), "220 mx.test ESMTP smtpd\r\n");
    let ehlo = c.command("EHLO client.test");
    assert!(
        ehlo.starts_with("250-mx.test Hello client.test [203.0.113.9], pleased to meet you"),
        "{ehlo}"
    );
    // Only the proxied source may send to example.org.
    let msgid = accepted_id(&send_message(&mut c, "Subject: proxied\r\n\r\nHi.\r\n"));
    c.command("QUIT");
    let message = smtpd.spool.message(&msgid);
    assert!(
        message.starts_with("Received: from client.test (<unknown> [203.0.113.9])"),
        "{message}"
    );
    let envelope = smtpd.spool.only_envelope(&msgid);
    assert_eq!(
        envelope.get("sockaddr"),
        Some("203.0.113.9"),
        "{}",
        envelope.text
    );
    smtpd.wait_for("smtp event=proxy address=127.0.0.1");
    smtpd.wait_for("smtp connected address=203.0.113.9 host=<unknown>");

    // LOCAL: the proxy's own connection keeps its address, which the
    // rule does not accept.
    let mut c = Raw::connect(IpAddr::V4(LOCAL), smtpd.port);
    let mut local = proxy_header(0x20, client, 1);
    local[13] = 0;
    local[14..16].copy_from_slice(&[0, 0]);
    local.truncate(16);
    c.send(&local);
    assert_eq!(c.reply(), "220 mx.test ESMTP smtpd\r\n");
    let ehlo = c.command("EHLO client.test");
    assert!(ehlo.contains("Hello client.test [127.0.0.1]"), "{ehlo}");
    c.command("MAIL FROM:<alice@sender.test>");
    let refused = c.command("RCPT TO:<bob@example.org>");
    assert!(refused.starts_with("550 5.1.1 "), "{refused}");
    c.command("QUIT");

    // SMTP without a header, and a header of version 1: closed, unanswered.
    let mut c = Raw::connect(IpAddr::V4(LOCAL), smtpd.port);
    c.send(b"EHLO client.test\r\n");
    assert!(c.closed_unanswered());
    smtpd.wait_for("event=closed address=127.0.0.1 reason=\"protocol error (invalid signature)\"");
    let mut c = Raw::connect(IpAddr::V4(LOCAL), smtpd.port);
    let mut v1 = proxy_header(0x21, client, 1);
    v1[12] = 0x11;
    c.send(&v1);
    assert!(c.closed_unanswered());
    smtpd.wait_for("reason=\"protocol error (invalid version)\"");
    // A client that leaves before the end of the header.
    let mut c = Raw::connect(IpAddr::V4(LOCAL), smtpd.port);
    c.send(&proxy_header(0x21, client, 1)[..20]);
    c.writer.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(c.closed_unanswered());
    smtpd.wait_for("reason=\"disconnected\"");
    assert_eq!(smtpd.spool.committed().len(), 1);
}

#[test]
fn a_hundred_received_headers_are_a_loop() {
    let dir = Scratch::new("listen", "loop");
    let smtpd = Smtpd::start(&dir, |port| {
        format!(
            "{ACTION}listen on 127.0.0.1 port {port} hostname mx.test\n\
             match from any for domain example.org action \"x\"\n"
        )
    });
    let message = |hops: usize| -> String {
        let received: String = (0..hops)
            .map(|i| {
                format!(
                    "Received: from hop{i}.test (hop{i}.test [192.0.2.{i}])\r\n\tby mx.test\r\n"
                )
            })
            .collect();
        format!("{received}Subject: {hops} hops\r\n\r\nHello.\r\n")
    };
    let mut c = Raw::connect(IpAddr::V4(LOCAL), smtpd.port);
    c.reply();
    c.command("EHLO client.test");
    for hops in [100, 101] {
        let reply = send_message(&mut c, &message(hops));
        assert_eq!(
            reply, "500 5.4.6 Routing loop detected: Loop detected\r\n",
            "{hops}"
        );
        smtpd.wait_for("loop detected");
    }
    assert!(smtpd.spool.committed().is_empty());
    let msgid = accepted_id(&send_message(&mut c, &message(99)));
    c.command("QUIT");
    let text = smtpd.spool.message(&msgid);
    // The 99 and the daemon's own.
    assert_eq!(text.matches("Received: ").count(), 100, "{text}");
    assert_eq!(smtpd.spool.committed().len(), 1);
}

#[test]
fn sessions_wait_at_the_limit() {
    const NOFILE: u64 = 128;
    // OpenSMTPD's maxsessions is NOFILE / 2 - 5; it stops accepting when
    // one more session would reach it.
    let limit = usize::try_from(NOFILE / 2 - 6).unwrap();
    let dir = Scratch::new("listen", "limit");
    let port = free_port();
    let config = dir.write(
        "smtpd.conf",
        &format!(
            "{ACTION}listen on 127.0.0.1 port {port} hostname mx.test\n\
             match from any for domain example.org action \"x\"\n"
        ),
    );
    let mut cmd = smtpd_command(&dir, &config);
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let smtpd = Process::spawn(cmd);
    smtpd.wait_for(&format!("listening on 127.0.0.1:{port}"));
    let mut clients: Vec<Client> = (0..limit).map(|_| Client::connect(port, LOCAL)).collect();
    // One more: connected by the kernel, but not accepted.
    let mut waiting = Raw::connect(IpAddr::V4(LOCAL), port);
    smtpd.wait_for("warn: Disabling incoming SMTP connections: Client limit reached");
    // The sessions in progress go on.
    clients[0].expect_code("EHLO client.test", "250");
    // One ends: the waiting client is served.
    clients.pop().unwrap().expect("QUIT", "221 2.0.0 Bye");
    assert_eq!(waiting.reply(), "220 mx.test ESMTP smtpd\r\n");
    smtpd.wait_for("warn: smtp: fd exhaustion over, re-enabling incoming connections");
    assert!(waiting.command("EHLO client.test").starts_with("250-"));
}
