//! Real SMTP clients against the built `smtpd`: swaks (the Debian package
//! `swaks`, which .ci/run installs; without it these tests fail and say
//! so) and Python's smtplib (python3 from `PATH`).
//!
//! - swaks sends plain mail, delivered by the local `mda` action; a relay
//!   attempt from outside is refused.
//! - swaks does STARTTLS with a generated certificate, then AUTH PLAIN and
//!   AUTH LOGIN against a credentials table made with `smtpctl encrypt`;
//!   only then may it relay. A wrong password is 535.
//! - AUTH is never offered, and refused, before STARTTLS.
//! - smtplib sends several messages on one connection.
//!
//! Nothing sleeps: deliveries are waited for on the daemon's log.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::mail::{
    accepted_id, free_port, python, self_signed, smtpctl_encrypt, swaks, Site, DELIVER, OUTSIDER,
    TEMPFAIL,
};
use common::Scratch;

/// The message id in swaks' transcript of `250 2.0.0 ID Message accepted`.
fn swaks_msgid(out: &str) -> String {
    let line = out
        .lines()
        .find(|l| l.contains(" Message accepted for delivery"))
        .unwrap_or_else(|| panic!("no 250 for the message:\n{out}"));
    let reply = line.trim_start_matches(|c: char| !c.is_ascii_digit());
    accepted_id(&format!("{reply}\r\n"))
}

#[test]
fn swaks_sends_plain_mail_that_is_delivered() {
    let dir = Scratch::new("swaks", "plain");
    let site = Site::start_with(&dir, DELIVER, "", "");
    let port = site.smtpd.port;
    let (out, code) = swaks(
        port,
        &[
            "--helo",
            "client.test",
            "--from",
            "alice@sender.test",
            "--to",
            "bob@example.org",
            "--header",
            "Subject: swaks plain",
            "--body",
            "Hello from swaks.",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("<-  250-PIPELINING"), "{out}");
    let msgid = swaks_msgid(&out);
    let line = site.smtpd.wait_deliveries(&[&msgid]).remove(0);
    assert!(line.contains("result=Ok"), "{line}");
    assert!(line.contains(" mda delivery "), "{line}");
    let mbox = site.mbox();
    assert!(mbox.contains("Subject: swaks plain\n"), "{mbox}");
    assert!(mbox.contains("\nHello from swaks.\n"), "{mbox}");
    assert!(
        mbox.contains(&format!("by mx.test (smtpd) with ESMTP id {msgid}")),
        "{mbox}"
    );

    // From outside, relaying is refused; swaks gives up (no recipient).
    let (out, code) = swaks(
        port,
        &[
            "--local-interface",
            &OUTSIDER.to_string(),
            "--helo",
            "client.test",
            "--from",
            "alice@sender.test",
            "--to",
            "user@other.com",
        ],
    );
    assert_eq!(code, Some(24), "{out}");
    assert!(
        out.contains("<** 550 5.1.1 Invalid recipient: <user@other.com>"),
        "{out}"
    );
    assert!(site.smtpd.spool.committed().is_empty());
}

/// A site with a STARTTLS listener whose every MAIL needs AUTH against a
/// credentials table (`alice`, `secret`, hashed by `smtpctl encrypt`);
/// authenticated clients may relay. Its port.
fn submission_site(dir: &Scratch) -> (Site, u16) {
    let (crt, key) = self_signed(dir, "mx.test");
    let creds = dir.write("creds", &format!("alice {}\n", smtpctl_encrypt("secret")));
    let port = free_port();
    let site = Site::start_with(
        dir,
        TEMPFAIL,
        &format!(
            "pki mx.test cert \"{}\"\npki mx.test key \"{}\"\ntable creds file:{}\n\
             listen on 127.0.0.1 port {port} tls pki mx.test auth <creds> hostname mx.test\n",
            crt.display(),
            key.display(),
            creds.display()
        ),
        "match from any auth for any action \"relay\"\n",
    );
    // This listener comes first in the configuration: it was listening
    // before the line that `start` waited for.
    (site, port)
}

#[test]
fn swaks_starttls_then_auth_plain_and_login() {
    let dir = Scratch::new("swaks", "auth");
    let (site, port) = submission_site(&dir);
    let outsider = OUTSIDER.to_string();
    let mut msgids = Vec::new();
    for mechanism in ["PLAIN", "LOGIN"] {
        let subject = format!("Subject: relayed after AUTH {mechanism}");
        let (out, code) = swaks(
            port,
            &[
                "--local-interface",
                &outsider,
                "--tls",
                "--auth",
                mechanism,
                "--auth-user",
                "alice",
                "--auth-password",
                "secret",
                "--helo",
                "client.test",
                "--from",
                "alice@sender.test",
                "--to",
                // Its MX hosts (loopback) refuse port 25: the relayed
                // message stays queued to be inspected.
                "carol@relay.smtpd.test",
                "--header",
                &subject,
            ],
        );
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("=== TLS started with cipher TLSv1."), "{out}");
        assert!(out.contains("<~  250-AUTH PLAIN LOGIN"), "{out}");
        assert!(
            out.contains("<~  235 2.0.0 Authentication succeeded"),
            "{out}"
        );
        let msgid = swaks_msgid(&out);
        let message = site.smtpd.spool.message(&msgid);
        assert!(
            message.contains(&format!("by mx.test (smtpd) with ESMTPSA id {msgid}")),
            "{message}"
        );
        assert!(message.contains(&subject), "{message}");
        let envelope = site.smtpd.spool.only_envelope(&msgid);
        assert_eq!(
            envelope.get("dispatcher"),
            Some("relay"),
            "{}",
            envelope.text
        );
        assert_eq!(envelope.get("type"), Some("mta"), "{}", envelope.text);
        assert_eq!(envelope.get("username"), Some("alice"), "{}", envelope.text);
        msgids.push(msgid);
    }
    // A wrong password: 535, and nothing is sent.
    let (out, code) = swaks(
        port,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice",
            "--auth-password",
            "wrong",
            "--from",
            "alice@sender.test",
            "--to",
            "carol@other.com",
        ],
    );
    assert_eq!(code, Some(28), "{out}");
    assert!(out.contains("<~* 535 5.7.8 Authentication failed"), "{out}");
    assert_eq!(site.smtpd.spool.committed().len(), msgids.len());
}

#[test]
fn auth_is_refused_before_starttls() {
    let dir = Scratch::new("swaks", "plaintext");
    let (site, port) = submission_site(&dir);
    // swaks finds no AUTH in the EHLO answer of a plaintext session.
    let (out, code) = swaks(
        port,
        &[
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice",
            "--auth-password",
            "secret",
            "--from",
            "alice@sender.test",
            "--to",
            "carol@other.com",
        ],
    );
    assert_eq!(code, Some(28), "{out}");
    assert!(out.contains("<-  250-STARTTLS"), "{out}");
    assert!(!out.contains("250-AUTH"), "{out}");
    assert!(
        out.contains("Host did not advertise authentication"),
        "{out}"
    );
    // Without AUTH, no MAIL: the listener requires it.
    let (out, code) = swaks(
        port,
        &["--from", "alice@sender.test", "--to", "carol@other.com"],
    );
    assert_eq!(code, Some(23), "{out}");
    assert!(
        out.contains("<** 530 5.5.1 Invalid command: Must issue an AUTH command first"),
        "{out}"
    );
    // A client that sends AUTH anyway is refused, credentials unread.
    let mut c = common::mail::Client::connect(port, OUTSIDER);
    c.expect_code("EHLO client.test", "250");
    c.expect(
        "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
        "503 5.5.1 Invalid command: Command not supported",
    );
    c.expect(
        "MAIL FROM:<alice@sender.test>",
        "530 5.5.1 Invalid command: Must issue an AUTH command first",
    );
    c.expect("QUIT", "221 2.0.0 Bye");
    assert!(site.smtpd.spool.committed().is_empty());
}

#[test]
fn smtplib_sends_several_messages_on_one_connection() {
    let dir = Scratch::new("swaks", "smtplib");
    let site = Site::start_with(&dir, DELIVER, "", "");
    let out = python(&format!(
        "import smtplib\n\
         s = smtplib.SMTP('127.0.0.1', {port}, timeout=30, source_address=('{outsider}', 0))\n\
         s.ehlo('client.test')\n\
         where = s.sock.getsockname()\n\
         for n, rcpts in ((1, ['bob']), (2, ['bob', 'carol']), (3, ['dave', 'eve@other.com'])):\n\
         \x20   print(s.mail('alice@sender.test')[0], end='')\n\
         \x20   for r in rcpts:\n\
         \x20       print('', s.rcpt(r if '@' in r else r + '@example.org')[0], end='')\n\
         \x20   print()\n\
         \x20   code, text = s.data(f'Subject: message {{n}}\\r\\n\\r\\nbody {{n}}\\r\\n'.encode())\n\
         \x20   print(code, text.decode())\n\
         print(s.noop()[0], s.sock.getsockname() == where)\n\
         s.quit()\n",
        port = site.smtpd.port,
        outsider = OUTSIDER
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    // The refused recipient of the third message does not stop it.
    assert_eq!(
        [lines[0], lines[2], lines[4], lines[6]],
        ["250 250", "250 250 250", "250 250 550", "250 True"],
        "{out}"
    );
    let msgids: Vec<String> = [lines[1], lines[3], lines[5]]
        .iter()
        .map(|line| accepted_id(&format!("{line}\r\n")))
        .collect();
    assert!(
        msgids[0] != msgids[1] && msgids[1] != msgids[2],
        "{msgids:?}"
    );
    // One delivery per recipient: the second message has two.
    let lines = site
        .smtpd
        .wait_deliveries(&[&msgids[0], &msgids[1], &msgids[1], &msgids[2]]);
    assert!(lines.iter().all(|l| l.contains("result=Ok")), "{lines:?}");
    assert!(lines[3].contains("rcpt=<dave@example.org>"), "{lines:?}");
    let mbox = site.mbox();
    for (n, copies) in [(1, 1), (2, 2), (3, 1)] {
        // Date: and Message-ID: are added after Subject: (a loopback
        // listener is local).
        let subject = format!("Subject: message {n}\n");
        assert_eq!(mbox.matches(&subject).count(), copies, "{mbox}");
        let body = format!("\n\nbody {n}\n");
        assert_eq!(mbox.matches(&body).count(), copies, "{mbox}");
    }
}
