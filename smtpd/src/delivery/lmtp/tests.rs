//! LMTP sessions against a scripted server on a Unix socket and on
//! loopback TCP.

use tokio::net::{TcpListener, UnixListener};

use super::*;
use crate::delivery::test_dir::TempDir;

/// The server's replies, by step.
#[derive(Clone)]
struct Script {
    greeting: &'static str,
    lhlo: &'static str,
    mail: &'static str,
    rcpt: &'static str,
    data: &'static str,
    dot: &'static str,
}

const GOOD: Script = Script {
    greeting: "220 lmtp.example ready",
    lhlo: "250-lmtp.example\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES",
    mail: "250 2.1.0 ok",
    rcpt: "250 2.1.5 ok",
    data: "354 go ahead",
    dot: "250 2.0.0 delivered",
};

/// Serves one session; returns every line the client sent.
async fn serve(stream: impl AsyncRead + AsyncWrite + Unpin, script: Script) -> Vec<String> {
    let mut stream = BufReader::new(stream);
    let mut seen = Vec::new();
    let reply = |text: &str| format!("{text}\r\n");
    stream
        .write_all(reply(script.greeting).as_bytes())
        .await
        .unwrap();
    let mut in_data = false;
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap() == 0 {
            return seen;
        }
        assert!(line.ends_with("\r\n"), "{line:?} ends with CRLF");
        let line = line.trim_end_matches("\r\n").to_owned();
        seen.push(line.clone());
        let answer = if in_data {
            if line != "." {
                continue;
            }
            in_data = false;
            script.dot
        } else if line.starts_with("LHLO ") {
            script.lhlo
        } else if line.starts_with("MAIL FROM:") {
            script.mail
        } else if line.starts_with("RCPT TO:") {
            script.rcpt
        } else if line == "DATA" {
            in_data = script.data.starts_with('3');
            script.data
        } else if line == "QUIT" {
            "221 bye"
        } else {
            "500 what?"
        };
        stream.write_all(reply(answer).as_bytes()).await.unwrap();
    }
}

fn envelope() -> LmtpEnvelope {
    LmtpEnvelope {
        lhlo: "localhost".to_owned(),
        sender: "alice@example.net".to_owned(),
        recipient: "bob".to_owned(),
    }
}

/// Runs one delivery over a Unix socket against `script`.
async fn over_unix(script: Script, message: &str) -> (Result<(), LmtpError>, Vec<String>) {
    let dir = TempDir::new();
    let path = dir.path().join("lmtp.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve(stream, script).await
    });
    let result = deliver(
        &LmtpDestination::Unix(path),
        &envelope(),
        message.as_bytes(),
    )
    .await;
    (result, server.await.unwrap())
}

#[tokio::test]
async fn delivers_with_dot_stuffing() {
    let message = "Subject: x\n\n.hidden\n..two\nnormal\n.\nlast";
    let (result, seen) = over_unix(GOOD, message).await;
    assert_eq!(result, Ok(()));
    assert_eq!(
        seen,
        [
            "LHLO localhost",
            "MAIL FROM:<alice@example.net>",
            "RCPT TO:<bob>",
            "DATA",
            "Subject: x",
            "",
            "..hidden",
            "...two",
            "normal",
            "..",
            "last",
            ".",
            "QUIT",
        ]
    );
}

#[tokio::test]
async fn over_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve(stream, GOOD).await
    });
    let destination = LmtpDestination::parse(&format!("127.0.0.1:{port}")).unwrap();
    let result = deliver(&destination, &envelope(), &b"hello\n"[..]).await;
    assert_eq!(result, Ok(()));
    assert!(server.await.unwrap().contains(&"hello".to_owned()));
}

#[tokio::test]
async fn refusals() {
    let temporary = |s: &str| Err(LmtpError::Temporary(s.to_owned()));
    let permanent = |s: &str| Err(LmtpError::Permanent(s.to_owned()));
    let cases: Vec<(Script, Result<(), LmtpError>)> = vec![
        (
            Script {
                greeting: "421 busy",
                ..GOOD
            },
            temporary("421 busy"),
        ),
        (
            Script {
                lhlo: "250-a\r\n550 no",
                ..GOOD
            },
            permanent("550 no"),
        ),
        (
            Script {
                mail: "451 4.3.0 later",
                ..GOOD
            },
            temporary("451 4.3.0 later"),
        ),
        (
            Script {
                rcpt: "550 5.1.1 unknown user",
                ..GOOD
            },
            permanent("550 5.1.1 unknown user"),
        ),
        (
            Script {
                data: "250 not what DATA expects",
                ..GOOD
            },
            permanent("250 not what DATA expects"),
        ),
        (
            Script {
                dot: "452 4.2.2 over quota",
                ..GOOD
            },
            temporary("452 4.2.2 over quota"),
        ),
        (
            Script {
                dot: "552 5.2.2 over quota",
                ..GOOD
            },
            permanent("552 5.2.2 over quota"),
        ),
    ];
    for (script, expected) in cases {
        let (result, _) = over_unix(script, "x\n").await;
        assert_eq!(result, expected);
    }
    assert_eq!(temporary("x").unwrap_err().exit_code(), 75);
    assert_eq!(permanent("x").unwrap_err().exit_code(), 69);
}

#[tokio::test]
async fn unreachable_destinations_are_temporary() {
    let dir = TempDir::new();
    let missing = LmtpDestination::Unix(dir.path().join("nothing.sock"));
    let result = deliver(&missing, &envelope(), &b"x\n"[..]).await;
    assert!(matches!(result, Err(LmtpError::Temporary(_))), "{result:?}");
}

#[test]
fn destinations() {
    let tcp = |host: &str, port| {
        Ok(LmtpDestination::Tcp {
            host: host.to_owned(),
            port,
        })
    };
    let cases: Vec<(&str, Result<LmtpDestination, ()>)> = vec![
        (
            "/var/dovecot/lmtp",
            Ok(LmtpDestination::Unix(PathBuf::from("/var/dovecot/lmtp"))),
        ),
        ("localhost:24", tcp("localhost", 24)),
        ("mail.example.org", tcp("mail.example.org", 25)),
        ("[::1]:2424", tcp("::1", 2424)),
        ("[::1]", tcp("::1", 25)),
        ("127.0.0.1:24", tcp("127.0.0.1", 24)),
        ("host:0", Err(())),
        ("host:port", Err(())),
        ("host:70000", Err(())),
        (":24", Err(())),
        ("[::1", Err(())),
        ("[::1]x", Err(())),
        ("", Err(())),
    ];
    for (text, expected) in cases {
        assert_eq!(
            LmtpDestination::parse(text).map_err(|_| ()),
            expected,
            "{text}"
        );
    }
}
