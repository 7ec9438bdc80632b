//! In-memory session tests with a small script language:
//! `s.send("RCPT TO:<a@b>").expect("250 2.1.5")`.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use super::*;
use crate::smtp::codec::{Frame, LineCodec};
use crate::smtp::settings::Limits;

/// Drives a session as the connection task would, answering its requests
/// from a fixed policy, and keeps the last reply.
struct Script {
    session: Session,
    last: Option<Reply>,
    in_data: bool,
    /// Requests seen, in order, as short strings (`sender a@b`...).
    requests: Vec<String>,
    /// The last message received, lines joined with CRLF.
    message: Vec<u8>,
    next_id: u32,
}

impl Script {
    fn new(config: SessionConfig) -> Self {
        let session = Session::new(Arc::new(config), "[192.0.2.1]");
        let greeting = session.greeting();
        Self {
            session,
            last: Some(greeting),
            in_data: false,
            requests: Vec::new(),
            message: Vec::new(),
            next_id: 0x0a0b_0c01,
        }
    }

    fn plain() -> Self {
        Self::new(SessionConfig::new("mx.example.org"))
    }

    /// Carries out requests until a reply comes.
    fn run(&mut self, mut step: Step) {
        loop {
            step = match step {
                Step::Reply(reply) => {
                    self.last = Some(reply);
                    return;
                }
                Step::Close(reply) => {
                    assert!(self.session.is_closed());
                    self.last = Some(reply);
                    return;
                }
                Step::StartTls(reply) => {
                    self.session.tls_established();
                    self.last = Some(reply);
                    return;
                }
                Step::StartData(reply) => {
                    self.in_data = true;
                    self.last = Some(reply);
                    return;
                }
                Step::CheckSender(mail) => {
                    self.requests.push(format!("sender {}", mail.sender));
                    let verdict = match mail.sender.to_string().as_str() {
                        "spammer@evil.example" => Err(Reply::refused()),
                        _ => Ok(()),
                    };
                    self.session.sender_checked(verdict)
                }
                Step::CheckRecipient(rcpt) => {
                    let address = rcpt.recipient.to_string();
                    self.requests.push(format!("recipient {address}"));
                    let verdict = match rcpt.recipient.local.as_str() {
                        "unknown" => Err(Reply::invalid_recipient(&address)),
                        "tempfail" => Err(Reply::temporary_failure()),
                        _ => Ok(()),
                    };
                    self.session.recipient_checked(verdict)
                }
                Step::OpenMessage => {
                    self.requests.push("open".to_owned());
                    self.session.message_opened(Ok(()))
                }
                Step::Authenticate(credentials) => {
                    self.requests.push(format!("auth {}", credentials.user));
                    let verdict = if credentials.user == "tempfail" {
                        Err(Reply::auth_temporary_failure())
                    } else {
                        Ok(credentials.user == "user" && credentials.password == "secret")
                    };
                    self.session.authenticated(verdict)
                }
                Step::Commit { size } => {
                    self.requests.push(format!("commit {size}"));
                    let id = self.next_id;
                    self.next_id += 1;
                    self.session
                        .committed(Ok::<_, Reply>(format_args!("{id:08x}").to_string()))
                }
            }
        }
    }

    fn send(&mut self, line: &str) -> &mut Self {
        self.send_bytes(line.as_bytes())
    }

    fn send_bytes(&mut self, line: &[u8]) -> &mut Self {
        assert!(!self.in_data, "send during DATA");
        let step = self.session.on_line(line);
        self.run(step);
        self
    }

    /// Sends a message body (raw wire bytes, final `.` included) through
    /// the codec in DATA mode.
    fn data(&mut self, body: &str) -> &mut Self {
        assert!(self.in_data, "data outside DATA");
        let mut codec = LineCodec::new(1000);
        codec.start_data(self.session.max_message_size());
        let mut buf = BytesMut::from(body.as_bytes());
        self.message.clear();
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            match frame {
                Frame::Data(line) => {
                    self.message.extend_from_slice(&line);
                    self.message.extend_from_slice(b"\r\n");
                }
                Frame::DataEnd(end) => {
                    self.in_data = false;
                    let step = self.session.on_data_end(end);
                    self.run(step);
                }
                other => panic!("unexpected frame {other:?}"),
            }
        }
        assert!(!self.in_data, "no end of data in {body:?}");
        self
    }

    fn reply(&self) -> String {
        self.last
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// The last reply starts with `prefix`.
    #[track_caller]
    fn expect(&mut self, prefix: &str) -> &mut Self {
        let reply = self.reply();
        assert!(
            reply.starts_with(prefix),
            "expected {prefix:?}, got {reply:?}"
        );
        self
    }

    /// The last reply has a line equal to `line` (code and separator
    /// included).
    #[track_caller]
    fn expect_line(&mut self, line: &str) -> &mut Self {
        let reply = self.reply();
        assert!(
            reply.split("\r\n").any(|l| l == line),
            "no {line:?} in {reply:?}"
        );
        self
    }

    /// No line of the last reply contains `text`.
    #[track_caller]
    fn expect_no(&mut self, text: &str) -> &mut Self {
        let reply = self.reply();
        assert!(!reply.contains(text), "{text:?} in {reply:?}");
        self
    }

    fn ehlo(&mut self) -> &mut Self {
        self.send("EHLO client.example")
            .expect("250-mx.example.org Hello client.example [192.0.2.1], pleased to meet you")
    }
}

fn tls_config(tls: TlsMode, auth: AuthMode) -> SessionConfig {
    SessionConfig {
        tls,
        auth,
        ..SessionConfig::new("mx.example.org")
    }
}

#[test]
fn a_whole_transaction() {
    let mut s = Script::plain();
    s.expect("220 mx.example.org ESMTP")
        .ehlo()
        .expect_line("250-8BITMIME")
        .expect_line("250-ENHANCEDSTATUSCODES")
        .expect_line("250-SIZE 36700160")
        .expect_line("250-DSN")
        .expect_line("250-PIPELINING")
        .expect_line("250-SMTPUTF8")
        .expect_line("250 HELP")
        .expect_no("STARTTLS")
        .expect_no("AUTH")
        .send("MAIL FROM:<alice@example.org> SIZE=100 BODY=8BITMIME")
        .expect("250 2.0.0 Ok")
        .send("RCPT TO:<bob@example.org>")
        .expect("250 2.1.5 Destination address valid: Recipient ok")
        .send("RCPT TO:<carol@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;carol@example.org")
        .expect("250 2.1.5")
        .send("DATA")
        .expect("354 Enter mail")
        .data("Subject: hi\r\n\r\n..dot\r\n.\r\n")
        .expect("250 2.0.0 0a0b0c01 Message accepted for delivery")
        .send("QUIT")
        .expect("221 2.0.0 Bye");
    assert_eq!(
        s.requests,
        [
            "sender alice@example.org",
            "recipient bob@example.org",
            "recipient carol@example.org",
            "open",
            "commit 21",
        ]
    );
    assert_eq!(s.message, b"Subject: hi\r\n\r\n.dot\r\n");
    assert!(s.session.transaction().is_none());
}

#[test]
fn transaction_state_is_kept_for_the_driver() {
    let mut s = Script::plain();
    s.ehlo()
        .send("MAIL FROM:<> RET=HDRS ENVID=abc")
        .expect("250")
        .send("RCPT TO:<postmaster>")
        .expect("250 2.1.5");
    let tx = s.session.transaction().expect("transaction");
    assert_eq!(tx.mail.sender, ReversePath::Null);
    assert_eq!(tx.mail.envid.as_deref(), Some("abc"));
    // A bare local part gets the host name, as OpenSMTPD gives it.
    assert_eq!(
        tx.recipients[0].recipient.to_string(),
        "postmaster@mx.example.org"
    );
    assert_eq!(
        s.session.helo().map(ToString::to_string).as_deref(),
        Some("client.example")
    );
}

#[test]
fn sequence_errors() {
    let mut s = Script::plain();
    s.send("MAIL FROM:<a@example.org>")
        .expect("503 5.5.1 Invalid command: Command not allowed at this point.")
        .send("RCPT TO:<a@example.org>")
        .expect("503 5.5.1")
        .send("DATA")
        .expect("503 5.5.1")
        .ehlo()
        .send("EHLO again.example")
        .expect("503 5.5.1 Invalid command: Already identified")
        .send("RCPT TO:<a@example.org>")
        .expect("503 5.5.1 Invalid command: Command not allowed at this point.")
        .send("MAIL FROM:<a@example.org>")
        .expect("250")
        .send("MAIL FROM:<a@example.org>")
        .expect("503 5.5.1 Invalid command: Command not allowed at this point.")
        .send("DATA")
        .expect("503 5.5.4 Invalid command arguments: No recipient specified")
        .send("RSET")
        .expect("250 2.0.0 Reset state")
        .send("RCPT TO:<a@example.org>")
        .expect("503");
}

#[test]
fn other_commands() {
    let mut s = Script::plain();
    s.send("NOOP")
        .expect("250 2.0.0 Ok")
        .send("HELP")
        .expect("214-2.0.0")
        .expect_line("214 2.0.0 End of HELP info")
        .send("VRFY root")
        .expect("502 5.5.1")
        .send("EXPN staff")
        .expect("502 5.5.1")
        .send("RSET")
        .expect("503 5.5.1 Invalid command: Command not allowed at this point.")
        .send("BOGUS")
        .expect("500 5.5.1 Invalid command: Command unrecognized")
        .send("QUIT now")
        .expect("501 5.5.4 Syntax: QUIT")
        .send("STARTTLS")
        .expect("503 5.5.1 Invalid command: Command not allowed at this point.")
        .send("AUTH PLAIN")
        .expect("503 5.5.1 Invalid command: Command not allowed at this point.")
        .ehlo()
        .send("STARTTLS")
        .expect("503 5.5.1 Invalid command: Command not supported")
        .send("AUTH PLAIN")
        .expect("503 5.5.1 Invalid command: Command not supported")
        .send("RSET")
        .expect("250 2.0.0 Reset state")
        .send("quit")
        .expect("221 2.0.0 Bye");
    // After QUIT nothing more is accepted.
    let step = s.session.on_line(b"NOOP");
    assert!(matches!(step, Step::Close(_)));
}

#[test]
fn helo_has_no_extensions() {
    let mut s = Script::plain();
    s.send("HELO client.example")
        .expect("250 mx.example.org Hello client.example [192.0.2.1], pleased to meet you")
        .send("MAIL FROM:<a@example.org> SIZE=10")
        .expect("555 5.5.4 Invalid command arguments: Unsupported option SIZE")
        .send("MAIL FROM:<a@example.org>")
        .expect("250")
        .send("RCPT TO:<b@example.org> NOTIFY=NEVER")
        .expect("555 5.5.4 Invalid command arguments: Unsupported option NOTIFY")
        .send("RCPT TO:<b@example.org>")
        .expect("250 2.1.5");
}

#[test]
fn address_errors_and_rule_answers() {
    let mut s = Script::plain();
    s.ehlo()
        .send("MAIL FROM:<;sleep 66;>")
        .expect("553 5.1.0 Sender address syntax error")
        .send("MAIL FROM:<spammer@evil.example>")
        .expect("550 5.7.1")
        .send("MAIL FROM:<a@example.org>")
        .expect("250")
        .send("RCPT TO:<;sleep 66;>")
        .expect("501 5.1.3 Recipient address syntax error")
        .send("RCPT TO:<unknown@example.org>")
        .expect("550 5.1.1 Invalid recipient: <unknown@example.org>")
        .send("RCPT TO:<tempfail@example.org>")
        .expect("451 4.3.0")
        .send("RCPT TO:<b@example.org> XFOO=1")
        .expect("555 5.5.4 Invalid command arguments: Unsupported option XFOO")
        .send("RCPT TO:<b@example.org>")
        .expect("250 2.1.5");
    // No request reached the driver for the refused syntax.
    assert!(!s.requests.iter().any(|r| r.contains("sleep")));
}

#[test]
fn limits() {
    let config = SessionConfig {
        limits: Limits {
            max_message_size: 30,
            max_recipients: 2,
            max_mails: 1,
        },
        ..SessionConfig::new("mx.example.org")
    };
    let mut s = Script::new(config);
    s.ehlo()
        .expect_line("250-SIZE 30")
        .send("MAIL FROM:<a@example.org> SIZE=31")
        .expect("552 5.3.4 Message too big for system: Transaction failed")
        .send("MAIL FROM:<a@example.org> SIZE=30")
        .expect("250")
        .send("RCPT TO:<b@example.org>")
        .expect("250")
        .send("RCPT TO:<c@example.org>")
        .expect("250")
        .send("RCPT TO:<d@example.org>")
        .expect("452 4.5.3 Too many recipients: Too many recipients")
        .send("DATA")
        .expect("354")
        .data("0123456789\r\n0123456789\r\n0123456789\r\n.\r\n")
        .expect("552 5.3.4")
        .send("MAIL FROM:<a@example.org>")
        .expect("250")
        .send("RCPT TO:<b@example.org>")
        .expect("250")
        .send("DATA")
        .expect("354")
        .data("short\r\n.\r\n")
        .expect("250 2.0.0")
        .send("MAIL FROM:<a@example.org>")
        .expect("452 4.5.3 Too many recipients: Too many messages sent");
}

#[test]
fn refused_data() {
    let mut s = Script::plain();
    s.ehlo()
        .send("MAIL FROM:<a@example.org>")
        .expect("250")
        .send("RCPT TO:<b@example.org>")
        .expect("250")
        .send("DATA")
        .expect("354")
        .data("a\nb\r\n.\r\n")
        .expect("550 5.5.2 Bare CR or LF in message data")
        .send("DATA")
        .expect("503");
    assert!(!s.requests.iter().any(|r| r.starts_with("commit")));
}

#[test]
fn invalid_lines_and_bytes() {
    let mut s = Script::plain();
    let step = s.session.on_invalid(LineError::TooLong);
    s.run(step);
    s.expect("500 5.5.2 Line too long");
    let step = s.session.on_invalid(LineError::BareNewline);
    s.run(step);
    s.expect("500 5.5.2 Bare CR or LF in command line")
        .ehlo()
        .send_bytes(b"MAIL FROM:<a\0b@example.org>")
        .expect("553 5.1.0")
        .send_bytes(b"MAIL FROM:<a@example.org>\0")
        .expect("501 5.5.4");
}

#[test]
fn smtputf8() {
    let mut s = Script::plain();
    s.ehlo()
        .send("MAIL FROM:<j\u{f6}rg@example.org>")
        .expect("553 5.6.7")
        .send("MAIL FROM:<a@example.org>")
        .expect("250")
        .send("RCPT TO:<j\u{f6}rg@example.org>")
        .expect("553 5.6.7")
        .send("RSET")
        .send("MAIL FROM:<j\u{f6}rg@example.org> SMTPUTF8")
        .expect("250")
        .send("RCPT TO:<b\u{e9}a@\u{e9}t\u{e9}.example>")
        .expect("250 2.1.5");
    let config = SessionConfig {
        smtputf8: false,
        dsn: false,
        ..SessionConfig::new("mx.example.org")
    };
    let mut s = Script::new(config);
    s.ehlo()
        .expect_no("SMTPUTF8")
        .expect_no("DSN")
        .send("MAIL FROM:<a@example.org> SMTPUTF8")
        .expect("555 5.5.4 Invalid command arguments: Unsupported option SMTPUTF8")
        .send("MAIL FROM:<a@example.org> RET=FULL")
        .expect("555 5.5.4 Invalid command arguments: Unsupported option RET")
        .send("MAIL FROM:<a@example.org>")
        .expect("250")
        .send("RCPT TO:<b@example.org> ORCPT=rfc822;b@example.org")
        .expect("555 5.5.4 Invalid command arguments: Unsupported option ORCPT");
}

#[test]
fn starttls_and_tls_require() {
    let mut s = Script::new(tls_config(TlsMode::Required, AuthMode::None));
    s.ehlo()
        .expect_line("250-STARTTLS")
        .send("MAIL FROM:<a@example.org>")
        .expect("530 5.5.1 Invalid command: Must issue a STARTTLS command first")
        .send("STARTTLS")
        .expect("220 2.0.0 Ready to start TLS");
    assert!(s.session.is_tls());
    // The session starts over: EHLO again, and STARTTLS is gone.
    s.send("MAIL FROM:<a@example.org>")
        .expect("503 5.5.1 Invalid command: Command not allowed at this point.")
        .ehlo()
        .expect_no("STARTTLS")
        .send("STARTTLS")
        .expect("503 5.5.1 Invalid command: Channel already secured")
        .send("MAIL FROM:<a@example.org>")
        .expect("250");
    let mut s = Script::new(tls_config(TlsMode::StartTls, AuthMode::None));
    s.ehlo()
        .send("MAIL FROM:<a@example.org>")
        .expect("250")
        .send("STARTTLS")
        .expect("503 5.5.1 Invalid command: Command not allowed at this point.");
}

#[test]
fn auth_only_after_tls() {
    let mut s = Script::new(tls_config(TlsMode::StartTls, AuthMode::Required));
    s.ehlo()
        .expect_no("AUTH")
        .send("AUTH PLAIN AHVzZXIAc2VjcmV0")
        .expect("503 5.5.1 Invalid command: Command not supported")
        .send("MAIL FROM:<a@example.org>")
        .expect("530 5.5.1 Invalid command: Must issue an AUTH command first")
        .send("STARTTLS")
        .expect("220")
        .ehlo()
        .expect_line("250-AUTH PLAIN LOGIN")
        .send("MAIL FROM:<a@example.org>")
        .expect("530 5.5.1 Invalid command: Must issue an AUTH command first")
        .send("AUTH PLAIN AHVzZXIAd3Jvbmc=")
        .expect("535 5.7.8 Authentication failed")
        // Credentials that could not be checked are a temporary failure.
        .send("AUTH PLAIN AHRlbXBmYWlsAHNlY3JldA==")
        .expect("454 4.7.0 Temporary authentication failure")
        .send("AUTH PLAIN AHVzZXIAc2VjcmV0")
        .expect("235 2.0.0 Authentication succeeded")
        .send("AUTH PLAIN AHVzZXIAc2VjcmV0")
        .expect("503 5.5.1 Invalid command: Already authenticated")
        .send("MAIL FROM:<a@example.org>")
        .expect("250");
    assert_eq!(s.session.user(), Some("user"));
    // No password ever appears in the requests the driver saw.
    assert!(!s.requests.iter().any(|r| r.contains("secret")));
}

#[test]
fn auth_exchanges_on_smtps() {
    let config = tls_config(TlsMode::Smtps, AuthMode::Optional);
    let mut s = Script::new(config.clone());
    s.ehlo()
        .expect_line("250-AUTH PLAIN LOGIN")
        .expect_no("STARTTLS")
        .send("AUTH PLAIN")
        .expect("334 ")
        .send("AHVzZXIAc2VjcmV0")
        .expect("235 2.0.0");
    let mut s = Script::new(config.clone());
    s.ehlo()
        .send("AUTH LOGIN")
        .expect("334 VXNlcm5hbWU6")
        .send("dXNlcg==")
        .expect("334 UGFzc3dvcmQ6")
        .send("c2VjcmV0")
        .expect("235 2.0.0");
    let mut s = Script::new(config.clone());
    s.ehlo()
        .send("AUTH LOGIN dXNlcg==")
        .expect("334 UGFzc3dvcmQ6")
        .send("*")
        .expect("501 5.7.0 Authentication aborted")
        .send("AUTH LOGIN")
        .expect("334")
        .send("not base64!")
        .expect("501 5.5.2 Invalid authentication data")
        .send("AUTH PLAIN")
        .expect("334")
        .send("b3RoZXIAdXNlcgBzZWNyZXQ=")
        .expect("501 5.5.2")
        .send("AUTH CRAM-MD5")
        .expect("504 5.5.4")
        .send("MAIL FROM:<a@example.org>")
        .expect("250")
        .send("AUTH PLAIN AHVzZXIAc2VjcmV0")
        .expect("503 5.5.1 Invalid command: Command not allowed at this point.");
    // A bad line inside an exchange cancels it.
    let mut s = Script::new(config);
    s.ehlo().send("AUTH PLAIN").expect("334");
    let step = s.session.on_invalid(LineError::TooLong);
    s.run(step);
    s.send("NOOP").expect("250 2.0.0 Ok");
}

#[test]
fn local_socket_sessions_are_authenticated() {
    let config = SessionConfig {
        local: true,
        auth: AuthMode::Required,
        ..SessionConfig::new("mx.example.org")
    };
    let mut s = Script::new(config);
    assert_eq!(s.session.user(), Some("local"));
    s.ehlo()
        .expect_no("AUTH")
        .send("MAIL FROM:<a@example.org>")
        .expect("250");
}

#[test]
fn answers_out_of_turn_close_the_session() {
    let mut s = Script::plain();
    let step = s.session.recipient_checked(Ok(()));
    assert!(matches!(step, Step::Close(ref r) if r.code() == 451));
    assert!(s.session.is_closed());
    let mut s = Script::plain();
    s.ehlo();
    let step = s.session.on_line(b"MAIL FROM:<a@example.org>");
    assert!(matches!(step, Step::CheckSender(_)));
    // A command before the answer is a driver bug too.
    assert!(matches!(s.session.on_line(b"NOOP"), Step::Close(_)));
    let mut s = Script::plain();
    assert!(matches!(
        s.session.on_data_end(DataEnd::Complete { size: 0 }),
        Step::Close(_)
    ));
    let mut s = Script::plain();
    assert!(matches!(
        s.session.committed(Ok::<_, Reply>(1)),
        Step::Close(_)
    ));
    let mut s = Script::plain();
    assert!(matches!(s.session.authenticated(Ok(true)), Step::Close(_)));
    let mut s = Script::plain();
    assert!(matches!(s.session.message_opened(Ok(())), Step::Close(_)));
    let mut s = Script::plain();
    assert!(matches!(s.session.sender_checked(Ok(())), Step::Close(_)));
}

#[test]
fn failures_from_the_driver() {
    let mut s = Script::plain();
    s.ehlo().send("MAIL FROM:<a@example.org>").expect("250");
    s.send("RCPT TO:<b@example.org>").expect("250");
    let step = s.session.on_line(b"DATA");
    assert_eq!(step, Step::OpenMessage);
    let step = s.session.message_opened(Err(Reply::insufficient_storage()));
    s.run(step);
    s.expect("452 4.3.1 Insufficient system storage");
    assert!(s.session.transaction().is_none());
    s.send("MAIL FROM:<a@example.org>").expect("250");
    s.send("RCPT TO:<b@example.org>").expect("250");
    s.send("DATA").expect("354");
    s.in_data = false;
    let step = s.session.on_data_end(DataEnd::Complete { size: 3 });
    assert_eq!(step, Step::Commit { size: 3 });
    let step = s.session.committed::<u32>(Err(Reply::temporary_failure()));
    s.run(step);
    s.expect("451 4.3.0 Temporary failure");
    assert!(s.session.transaction().is_none());
    // A failed commit does not count against max-mails.
    s.send("MAIL FROM:<a@example.org>").expect("250");
}

proptest::proptest! {
    /// Any sequence of lines, on any listener kind: no panic, every step
    /// ends in a reply with a valid code, DATA is only entered with a
    /// sender and a recipient, and the driver is only asked about a
    /// recipient inside a transaction.
    #[test]
    fn arbitrary_scripts_hold_the_invariants(
        lines in proptest::collection::vec(proptest::sample::select(vec![
            "EHLO c", "HELO c", "MAIL FROM:<a@example.org>", "MAIL FROM:<>",
            "MAIL FROM:<spammer@evil.example>", "RCPT TO:<b@example.org>",
            "RCPT TO:<unknown@example.org>", "RCPT TO:<;id;>", "DATA", "RSET", "NOOP",
            "STARTTLS", "AUTH PLAIN", "AUTH LOGIN", "AHVzZXIAc2VjcmV0", "dXNlcg==", "*",
            "c2VjcmV0", "HELP", "VRFY x", "BOGUS", "", "QUIT",
        ]), 0..40),
        tls in proptest::sample::select(vec![TlsMode::None, TlsMode::StartTls, TlsMode::Required, TlsMode::Smtps]),
        auth in proptest::sample::select(vec![AuthMode::None, AuthMode::Optional, AuthMode::Required]),
    ) {
        let mut s = Script::new(tls_config(tls, auth));
        for line in lines {
            if s.session.is_closed() {
                break;
            }
            s.send(line);
            let reply = s.last.clone().expect("a reply");
            proptest::prop_assert!((200..600).contains(&reply.code()));
            if s.in_data {
                let tx = s.session.transaction().expect("a transaction in DATA");
                proptest::prop_assert!(!tx.recipients.is_empty());
                s.data("x\r\n.\r\n");
                proptest::prop_assert!(s.reply().starts_with("250 2.0.0"));
            }
        }
        let mut in_tx = false;
        for request in &s.requests {
            if request.starts_with("sender") {
                in_tx = true;
            }
            if request.starts_with("recipient") {
                proptest::prop_assert!(in_tx, "{:?}", s.requests);
            }
        }
    }
}

#[test]
fn filters_are_asked_only_about_commands_that_pass_the_sequence_checks() {
    let runs = |s: &Script, line: &str| {
        s.session
            .would_run(&Command::parse(line.as_bytes()).unwrap())
    };
    let mut s = Script::plain();
    for line in [
        "MAIL FROM:<a@example.org>",
        "RCPT TO:<a@example.org>",
        "DATA",
        "RSET",
    ] {
        assert!(!runs(&s, line), "{line}");
    }
    assert!(runs(&s, "EHLO client.example"));
    assert!(runs(&s, "NOOP"));
    assert!(runs(&s, "QUIT"));
    s.ehlo();
    assert!(!runs(&s, "EHLO again.example"));
    assert!(!runs(&s, "STARTTLS"), "not offered");
    assert!(runs(&s, "MAIL FROM:<a@example.org>"));
    assert!(!runs(&s, "RCPT TO:<a@example.org>"));
    s.send("MAIL FROM:<a@example.org>").expect("250");
    assert!(!runs(&s, "MAIL FROM:<b@example.org>"));
    assert!(!runs(&s, "DATA"), "no recipient yet");
    assert!(runs(&s, "RCPT TO:<a@example.org>"));
    s.send("RCPT TO:<a@example.org>").expect("250");
    assert!(runs(&s, "DATA"));
    assert!(runs(&s, "RSET"));
}
