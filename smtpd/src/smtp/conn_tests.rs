//! The connection driver over `tokio::io::duplex`, with a recording handler.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

use super::*;
use crate::smtp::settings::{AuthMode, SessionConfig, TlsMode};

/// What the handler saw.
#[derive(Debug, Default)]
struct Seen {
    calls: Vec<String>,
    message: Vec<u8>,
    messages: Vec<Vec<u8>>,
    /// The 4xx and 5xx replies, after the command as logs show it.
    failures: Vec<String>,
}

struct Recorder {
    seen: Arc<Mutex<Seen>>,
    fail_data: bool,
}

impl Recorder {
    fn log(&self, call: String) {
        self.seen.lock().unwrap().calls.push(call);
    }
}

#[async_trait]
impl Handler for Recorder {
    async fn check_sender(&mut self, _: &Session, mail: &MailFrom) -> Result<(), Reply> {
        self.log(format!("sender {}", mail.sender));
        Ok(())
    }

    async fn check_recipient(&mut self, _: &Session, rcpt: &RcptTo) -> Result<(), Reply> {
        self.log(format!("recipient {}", rcpt.recipient));
        match rcpt.recipient.local.as_str() {
            "unknown" => Err(Reply::invalid_recipient(&rcpt.recipient.to_string())),
            _ => Ok(()),
        }
    }

    async fn open_message(&mut self, _: &Transaction) -> Result<(), Reply> {
        self.log("open".to_owned());
        self.seen.lock().unwrap().message.clear();
        Ok(())
    }

    async fn data_line(&mut self, line: &[u8]) -> Result<(), Reply> {
        if self.fail_data {
            return Err(Reply::insufficient_storage());
        }
        let mut seen = self.seen.lock().unwrap();
        seen.message.extend_from_slice(line);
        seen.message.extend_from_slice(b"\r\n");
        Ok(())
    }

    async fn abort_message(&mut self) {
        self.log("abort".to_owned());
    }

    async fn commit(&mut self, tx: &Transaction, size: u64) -> Result<String, Reply> {
        self.log(format!("commit {size} to {}", tx.recipients.len()));
        let mut seen = self.seen.lock().unwrap();
        let message = std::mem::take(&mut seen.message);
        seen.messages.push(message);
        Ok("0000abcd".to_owned())
    }

    async fn authenticate(&mut self, credentials: &Credentials) -> Result<bool, Reply> {
        self.log(format!("auth {}", credentials.user));
        Ok(credentials.password == "secret")
    }

    /// A stand-in for the handshake: the same stream, "secured".
    async fn start_tls(&mut self, stream: BoxStream) -> io::Result<BoxStream> {
        self.log("tls".to_owned());
        Ok(stream)
    }

    fn replied(&mut self, command: Option<&[u8]>, reply: &Reply) {
        if !reply.is_positive() {
            let command = command.map_or_else(|| "-".into(), String::from_utf8_lossy);
            let failure = format!("{command} => {}", reply.code());
            self.seen.lock().unwrap().failures.push(failure);
        }
    }
}

/// The client end: write raw bytes, read whole replies.
struct Client {
    io: BufReader<DuplexStream>,
}

impl Client {
    async fn write(&mut self, bytes: &str) {
        self.io.get_mut().write_all(bytes.as_bytes()).await.unwrap();
    }

    /// One reply, lines joined by CRLF (the last without it); empty at EOF.
    async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.io.read_line(&mut line).await.unwrap() == 0 {
                return lines.join("\r\n");
            }
            let line = line.trim_end_matches("\r\n").to_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\r\n");
            }
        }
    }

    async fn expect(&mut self, prefix: &str) {
        let reply = self.reply().await;
        assert!(
            reply.starts_with(prefix),
            "expected {prefix:?}, got {reply:?}"
        );
    }
}

struct Harness {
    client: Client,
    seen: Arc<Mutex<Seen>>,
    server: tokio::task::JoinHandle<io::Result<Outcome>>,
}

fn start(config: SessionConfig, fail_data: bool, conn: ConnConfig) -> Harness {
    let (client, server) = tokio::io::duplex(1 << 16);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut handler = Recorder {
        seen: Arc::clone(&seen),
        fail_data,
    };
    let session = Session::new(Arc::new(config), "[192.0.2.1]");
    let server =
        tokio::spawn(async move { run(Box::new(server), session, &mut handler, conn).await });
    Harness {
        client: Client {
            io: BufReader::new(client),
        },
        seen,
        server,
    }
}

fn plain() -> Harness {
    start(
        SessionConfig::new("mx.example.org"),
        false,
        ConnConfig::default(),
    )
}

impl Harness {
    fn calls(&self) -> Vec<String> {
        self.seen.lock().unwrap().calls.clone()
    }

    async fn outcome(self) -> Outcome {
        self.server.await.unwrap().unwrap()
    }
}

#[tokio::test]
async fn pipelined_transaction() {
    let mut h = plain();
    h.client.expect("220 mx.example.org ESMTP").await;
    h.client.write("EHLO client.example\r\n").await;
    h.client
        .expect("250-mx.example.org Hello client.example")
        .await;
    // Everything up to DATA in one write, as a pipelining client does.
    h.client
        .write("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<unknown@example.org>\r\nDATA\r\n")
        .await;
    h.client.expect("250 2.0.0 Ok").await;
    h.client.expect("250 2.1.5").await;
    h.client
        .expect("550 5.1.1 Invalid recipient: <unknown@example.org>")
        .await;
    h.client.expect("354").await;
    h.client
        .write("Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
        .await;
    h.client
        .expect("250 2.0.0 0000abcd Message accepted for delivery")
        .await;
    h.client.expect("221 2.0.0 Bye").await;
    assert_eq!(
        h.seen.lock().unwrap().messages,
        [b"Subject: x\r\n\r\n.dot\r\n".to_vec()]
    );
    assert_eq!(
        h.calls(),
        [
            "sender a@example.org",
            "recipient b@example.org",
            "recipient unknown@example.org",
            "open",
            "commit 20 to 1",
        ]
    );
    assert_eq!(h.outcome().await, Outcome::Closed);
}

/// SMTP smuggling over the wire: the commands after a bare-LF "end" are
/// part of the refused message, never run.
#[tokio::test]
async fn smuggled_commands_never_run() {
    let mut h = plain();
    h.client.expect("220").await;
    h.client
        .write("EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        .await;
    for prefix in ["250-", "250 ", "250 ", "354"] {
        h.client.expect(prefix).await;
    }
    h.client
        .write("Subject: x\r\n\n.\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n")
        .await;
    h.client
        .expect("550 5.5.2 Bare CR or LF in message data")
        .await;
    h.client.expect("250 2.0.0 Ok").await;
    h.client.write("QUIT\r\n").await;
    h.client.expect("221").await;
    let calls = h.calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.contains("evil") || c.contains("victim")),
        "{calls:?}"
    );
    assert!(calls.contains(&"abort".to_owned()));
    assert!(h.seen.lock().unwrap().messages.is_empty());
}

#[tokio::test]
async fn long_lines_and_bare_newlines() {
    let conn = ConnConfig {
        max_line: 64,
        ..ConnConfig::default()
    };
    let mut h = start(SessionConfig::new("mx.example.org"), false, conn);
    h.client.expect("220").await;
    h.client
        .write(&format!("NOOP {}\r\n", "x".repeat(100)))
        .await;
    h.client.expect("500 5.5.2 Line too long").await;
    h.client.write("NOOP\n").await;
    h.client.expect("500 5.5.2 Bare CR or LF").await;
    h.client.write("NOOP\r\n").await;
    h.client.expect("250 2.0.0 Ok").await;
    drop(h.client);
    assert_eq!(h.server.await.unwrap().unwrap(), Outcome::PeerGone);
}

#[tokio::test]
async fn storage_failure_during_data_is_answered_at_the_end() {
    let mut h = start(
        SessionConfig::new("mx.example.org"),
        true,
        ConnConfig::default(),
    );
    h.client.expect("220").await;
    h.client
        .write("EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        .await;
    for prefix in ["250-", "250 ", "250 ", "354"] {
        h.client.expect(prefix).await;
    }
    h.client.write("line 1\r\nline 2\r\n.\r\n").await;
    h.client
        .expect("452 4.3.1 Insufficient system storage")
        .await;
    assert!(!h.calls().iter().any(|c| c.starts_with("commit")));
    assert!(h.calls().contains(&"abort".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn silent_clients_time_out() {
    let mut h = plain();
    h.client.expect("220").await;
    h.client.expect("421 4.4.2 mx.example.org Timeout").await;
    assert_eq!(h.outcome().await, Outcome::Timeout);
    // In DATA too, and the message is dropped.
    let mut h = plain();
    h.client.expect("220").await;
    h.client
        .write("EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        .await;
    for prefix in ["250-", "250 ", "250 ", "354"] {
        h.client.expect(prefix).await;
    }
    h.client.write("partial").await;
    h.client.expect("421 4.4.2").await;
    assert_eq!(h.calls().last().map(String::as_str), Some("abort"));
    assert_eq!(h.outcome().await, Outcome::Timeout);
}

fn tls_config() -> SessionConfig {
    SessionConfig {
        tls: TlsMode::StartTls,
        auth: AuthMode::Optional,
        ..SessionConfig::new("mx.example.org")
    }
}

#[tokio::test]
async fn starttls_then_auth() {
    let mut h = start(tls_config(), false, ConnConfig::default());
    h.client.expect("220").await;
    h.client.write("EHLO c\r\n").await;
    let ehlo = h.client.reply().await;
    assert!(
        ehlo.contains("250-STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    h.client.write("STARTTLS\r\n").await;
    h.client.expect("220 2.0.0 Ready to start TLS").await;
    h.client.write("EHLO c\r\n").await;
    let ehlo = h.client.reply().await;
    assert!(
        ehlo.contains("250-AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    h.client.write("AUTH LOGIN\r\n").await;
    h.client.expect("334 VXNlcm5hbWU6").await;
    h.client.write("dXNlcg==\r\n").await;
    h.client.expect("334 UGFzc3dvcmQ6").await;
    h.client.write("c2VjcmV0\r\n").await;
    h.client.expect("235 2.0.0").await;
    h.client.write("QUIT\r\n").await;
    h.client.expect("221").await;
    assert_eq!(h.calls(), ["tls", "auth user"]);
}

/// Commands sent in plaintext right behind STARTTLS would be run as if
/// they came over TLS: the connection is closed instead.
#[tokio::test]
async fn starttls_injection_closes() {
    let mut h = start(tls_config(), false, ConnConfig::default());
    h.client.expect("220").await;
    h.client.write("EHLO c\r\n").await;
    h.client.expect("250-").await;
    h.client
        .write("STARTTLS\r\nMAIL FROM:<a@example.org>\r\n")
        .await;
    h.client.expect("220 2.0.0").await;
    assert_eq!(h.client.reply().await, "");
    assert!(h.calls().is_empty());
    assert_eq!(h.outcome().await, Outcome::TlsInjection);
}

#[tokio::test]
async fn no_tls_handler_means_an_error() {
    struct NoTls(Recorder);

    #[async_trait]
    impl Handler for NoTls {
        async fn check_sender(&mut self, s: &Session, m: &MailFrom) -> Result<(), Reply> {
            self.0.check_sender(s, m).await
        }
        async fn check_recipient(&mut self, s: &Session, r: &RcptTo) -> Result<(), Reply> {
            self.0.check_recipient(s, r).await
        }
        async fn open_message(&mut self, t: &Transaction) -> Result<(), Reply> {
            self.0.open_message(t).await
        }
        async fn data_line(&mut self, l: &[u8]) -> Result<(), Reply> {
            self.0.data_line(l).await
        }
        async fn abort_message(&mut self) {
            self.0.abort_message().await;
        }
        async fn commit(&mut self, t: &Transaction, s: u64) -> Result<String, Reply> {
            self.0.commit(t, s).await
        }
        async fn authenticate(&mut self, c: &Credentials) -> Result<bool, Reply> {
            self.0.authenticate(c).await
        }
    }

    let (client, server) = tokio::io::duplex(4096);
    let mut handler = NoTls(Recorder {
        seen: Arc::default(),
        fail_data: false,
    });
    let session = Session::new(Arc::new(tls_config()), "[192.0.2.1]");
    let task = tokio::spawn(async move {
        run(
            Box::new(server),
            session,
            &mut handler,
            ConnConfig::default(),
        )
        .await
    });
    let mut client = Client {
        io: BufReader::new(client),
    };
    client.expect("220").await;
    client.write("EHLO c\r\n").await;
    client.expect("250-").await;
    client.write("STARTTLS\r\n").await;
    client.expect("220 2.0.0").await;
    let error = task.await.unwrap().unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::Unsupported);
}

#[test]
fn debug_lines_hide_credentials() {
    assert_eq!(loggable(b"MAIL FROM:<a@b>", false), "MAIL FROM:<a@b>");
    assert_eq!(
        loggable(b"AUTH PLAIN AHVzZXIAc2VjcmV0", false),
        "AUTH PLAIN ********"
    );
    assert_eq!(
        loggable(b"auth login dXNlcg==", false),
        "auth login ********"
    );
    assert_eq!(loggable(b"AUTH LOGIN", false), "AUTH LOGIN");
    assert_eq!(loggable(b"c2VjcmV0", true), "********");
    assert_eq!(loggable(b"NOOP \x01\xff", false), "NOOP \\x01\\xff");
    let long = loggable(&[b'a'; 500], false);
    assert_eq!(long.len(), LOG_MAX + 3);
    assert!(long.ends_with("..."));
}

#[path = "conn_drain_tests.rs"]
mod drain;
