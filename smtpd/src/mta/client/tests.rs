//! Client sessions against scripted in-process servers over tokio duplex
//! pipes: each script is the exact dialogue the server expects (a line
//! the client must send, a reply to give, a TLS handshake to accept), so
//! a pipelining client that waited for a reply too early would hang, and
//! the paused clock turns that hang into a timeout failure.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::smtp::Enhanced;

/// One step of a scripted server.
enum Step {
    /// Send these reply lines (CRLF added to each).
    Reply(&'static str),
    /// Read one line; it must equal this.
    Expect(&'static str),
    /// Read one line; it must start with this.
    Prefix(&'static str),
    /// Read message lines up to the final dot; they must equal this
    /// (lines joined by LF, dot-stuffing kept).
    Data(&'static str),
    /// Accept a TLS handshake with this acceptor.
    Tls(TlsAcceptor),
    /// Wait for the client to close the connection.
    Eof,
}

use Step::{Data, Eof, Expect, Prefix, Reply, Tls};

/// Runs `steps` over the server end; returns every line the client sent.
async fn serve(stream: DuplexStream, steps: Vec<Step>) -> Vec<String> {
    let mut reader = BufReader::new(Box::new(stream) as BoxIo);
    let mut seen = Vec::new();
    for step in steps {
        match step {
            Reply(text) => {
                let mut out = String::new();
                for line in text.split('\n') {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
                reader.get_mut().write_all(out.as_bytes()).await.unwrap();
            }
            Expect(expected) => {
                let line = read_line(&mut reader).await;
                assert_eq!(line, expected);
                seen.push(line);
            }
            Prefix(expected) => {
                let line = read_line(&mut reader).await;
                assert!(
                    line.starts_with(expected),
                    "{line:?} starts with {expected:?}"
                );
                seen.push(line);
            }
            Data(expected) => {
                let mut lines = Vec::new();
                loop {
                    let line = read_line(&mut reader).await;
                    if line == "." {
                        break;
                    }
                    lines.push(line);
                }
                assert_eq!(lines.join("\n"), expected);
            }
            Tls(acceptor) => {
                assert!(
                    reader.buffer().is_empty(),
                    "nothing pipelined after STARTTLS"
                );
                let stream = acceptor.accept(reader.into_inner()).await.unwrap();
                reader = BufReader::new(Box::new(stream) as BoxIo);
            }
            Eof => {
                let mut rest = String::new();
                let n = reader.read_line(&mut rest).await.unwrap_or(0);
                assert_eq!(n, 0, "client closed, sent {rest:?}");
            }
        }
    }
    seen
}

async fn read_line(reader: &mut BufReader<BoxIo>) -> String {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).await.unwrap();
    assert!(line.ends_with(b"\r\n"), "{line:?} ends with CRLF");
    line.truncate(line.len() - 2);
    String::from_utf8(line).unwrap()
}

/// A server running `steps`, and the client's end of the pipe.
fn server(steps: Vec<Step>) -> (DuplexStream, JoinHandle<Vec<String>>) {
    let (client, server) = tokio::io::duplex(256 * 1024);
    (client, tokio::spawn(serve(server, steps)))
}

fn params() -> Params {
    Params {
        helo: "out.example.org".to_owned(),
        tls: TlsPolicy::Off,
        verify: false,
        server_name: "mx.example.net".to_owned(),
        tls_config: None,
        auth: None,
        lmtp: false,
        timeouts: Timeouts::default(),
        transcript: None,
    }
}

fn outgoing(rcpts: &[&str]) -> Outgoing {
    Outgoing {
        sender: "alice@example.org".to_owned(),
        recipients: rcpts.iter().map(|r| Recipient::new(*r)).collect(),
        ..Outgoing::default()
    }
}

const EHLO_FULL: &str = "250-mx.example.net hello\n250-PIPELINING\n250-SIZE 1000000\n\
    250-8BITMIME\n250-DSN\n250-SMTPUTF8\n250 ENHANCEDSTATUSCODES";

#[tokio::test(start_paused = true)]
async fn pipelined_transaction_with_extensions() {
    let (stream, peer) = server(vec![
        Reply("220 mx.example.net ESMTP"),
        Expect("EHLO out.example.org"),
        Reply(EHLO_FULL),
        Expect("MAIL FROM:<alice@example.org> SIZE=26 BODY=8BITMIME RET=HDRS ENVID=abc"),
        Expect("RCPT TO:<bob@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.net"),
        Expect("RCPT TO:<nobody@example.net>"),
        Expect("DATA"),
        Reply("250 2.1.0 Ok"),
        Reply("250 2.1.5 Ok"),
        Reply("550-5.1.1 No such user\n550 5.1.1 here"),
        Reply("354 go ahead"),
        Data("Subject: x\n\n..dot\nend"),
        Reply("250 2.0.0 Ok: queued as 1234"),
        Expect("QUIT"),
        Reply("221 bye"),
        Eof,
    ]);
    let mut client = Client::open(stream, &params()).await.unwrap();
    let info = client.peer_info();
    assert_eq!(info.hello, "EHLO");
    assert!(info.extensions.pipelining && info.extensions.dsn);
    assert_eq!(info.extensions.size, Some(1_000_000));
    let mut tx = outgoing(&["bob@example.net", "nobody@example.net"]);
    tx.size = Some(26);
    tx.dsn_ret = Some(DsnRet::Hdrs);
    tx.dsn_envid = "abc".to_owned();
    tx.recipients[0].notify = Notify(Notify::SUCCESS | Notify::FAILURE);
    tx.recipients[0].orcpt = Some("rfc822;bob@example.net".to_owned());
    let results = client
        .send(&tx, &b"Subject: x\n\n.dot\nend"[..])
        .await
        .unwrap();
    assert_eq!(
        results[0].as_ref().unwrap().one_line(),
        "250 2.0.0 Ok: queued as 1234"
    );
    let refused = results[1].as_ref().unwrap_err();
    assert_eq!(refused.kind, Kind::Permanent);
    assert_eq!(refused.stage, Stage::RcptTo);
    assert_eq!(refused.errorline(), "550 5.1.1 No such user here");
    assert!(client.is_usable());
    client.quit().await;
    peer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn helo_fallback_and_one_command_at_a_time() {
    let (stream, peer) = server(vec![
        Reply("220 old.example.net"),
        Expect("EHLO out.example.org"),
        Reply("502 command not recognized"),
        Expect("HELO out.example.org"),
        Reply("250 old.example.net"),
        Expect("MAIL FROM:<alice@example.org>"),
        Reply("250 ok"),
        Expect("RCPT TO:<bob@example.net>"),
        Reply("250 ok"),
        Expect("DATA"),
        Reply("354 send it"),
        Data("line 1\nline 2"),
        Reply("250 ok"),
    ]);
    let mut client = Client::open(stream, &params()).await.unwrap();
    assert_eq!(client.peer_info().hello, "HELO");
    let mut tx = outgoing(&["bob@example.net"]);
    // Without DSN and SIZE from the peer, no parameters are sent.
    tx.size = Some(100);
    tx.dsn_ret = Some(DsnRet::Full);
    let results = client
        .send(&tx, &b"line 1\r\nline 2\r\n"[..])
        .await
        .unwrap();
    assert!(results[0].is_ok());
    peer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn refusals_at_each_stage_keep_their_kind() {
    struct Case {
        greeting: &'static str,
        mail: &'static str,
        rcpt: &'static str,
        data: &'static str,
        end: &'static str,
        stage: Stage,
        kind: Kind,
    }
    let cases = [
        ("421 busy", "", "", "", "", Stage::Greeting, Kind::Temporary),
        (
            "554 go away",
            "",
            "",
            "",
            "",
            Stage::Greeting,
            Kind::Permanent,
        ),
        (
            "hello there",
            "",
            "",
            "",
            "",
            Stage::Greeting,
            Kind::Temporary,
        ),
        (
            "220 ok",
            "451 4.3.0 later",
            "",
            "",
            "",
            Stage::MailFrom,
            Kind::Temporary,
        ),
        (
            "220 ok",
            "553 5.1.8 bad sender",
            "",
            "",
            "",
            Stage::MailFrom,
            Kind::Permanent,
        ),
        (
            "220 ok",
            "250 ok",
            "450 4.2.0 full",
            "",
            "",
            Stage::RcptTo,
            Kind::Temporary,
        ),
        (
            "220 ok",
            "250 ok",
            "250 ok",
            "554 5.5.1 no",
            "",
            Stage::Data,
            Kind::Permanent,
        ),
        (
            "220 ok",
            "250 ok",
            "250 ok",
            "354 go",
            "452 4.3.1 disk",
            Stage::DataEnd,
            Kind::Temporary,
        ),
        (
            "220 ok",
            "250 ok",
            "250 ok",
            "354 go",
            "554 5.7.1 spam",
            Stage::DataEnd,
            Kind::Permanent,
        ),
    ]
    .map(|(greeting, mail, rcpt, data, end, stage, kind)| Case {
        greeting,
        mail,
        rcpt,
        data,
        end,
        stage,
        kind,
    });
    for case in cases {
        let mut steps = vec![Reply(case.greeting)];
        if case.greeting.starts_with('2') {
            steps.push(Expect("EHLO out.example.org"));
            steps.push(Reply("250 mx"));
            steps.push(Prefix("MAIL FROM:"));
            steps.push(Reply(case.mail));
        }
        if case.mail.starts_with('2') {
            steps.push(Prefix("RCPT TO:"));
            steps.push(Reply(case.rcpt));
        }
        if case.rcpt.starts_with('2') {
            steps.push(Expect("DATA"));
            steps.push(Reply(case.data));
        }
        if case.data.starts_with('3') {
            steps.push(Data("hi"));
            steps.push(Reply(case.end));
        }
        let (stream, peer) = server(steps);
        let failure = match Client::open(stream, &params()).await {
            Err(failure) => failure,
            Ok(mut client) => {
                let tx = outgoing(&["bob@example.net"]);
                match client.send(&tx, &b"hi\n"[..]).await {
                    Err(failure) => failure,
                    Ok(mut results) => results.remove(0).unwrap_err(),
                }
            }
        };
        assert_eq!(
            (failure.stage, failure.kind),
            (case.stage, case.kind),
            "{failure}"
        );
        peer.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_transaction_is_reset_before_the_next() {
    let (stream, peer) = server(vec![
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("250-mx\n250 PIPELINING"),
        Expect("MAIL FROM:<alice@example.org>"),
        Expect("RCPT TO:<bob@example.net>"),
        Expect("DATA"),
        Reply("451 4.7.1 greylisted"),
        Reply("503 5.5.1 no sender"),
        Reply("503 5.5.1 no recipients"),
        Expect("RSET"),
        Expect("MAIL FROM:<alice@example.org>"),
        Expect("RCPT TO:<bob@example.net>"),
        Expect("DATA"),
        Reply("250 reset"),
        Reply("250 ok"),
        Reply("250 ok"),
        Reply("354 go"),
        Data("again"),
        Reply("250 ok"),
        Expect("RSET"),
        Reply("250 ok"),
    ]);
    let mut client = Client::open(stream, &params()).await.unwrap();
    let tx = outgoing(&["bob@example.net"]);
    let failure = client.send(&tx, &b"first"[..]).await.unwrap_err();
    assert_eq!(failure.stage, Stage::MailFrom);
    assert!(failure.is_temporary());
    assert!(client.is_usable());
    let results = client.send(&tx, &b"again"[..]).await.unwrap();
    assert!(results[0].is_ok());
    client.reset().await.unwrap();
    peer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_421_closing_the_pipeline_is_the_reason_given() {
    let (stream, peer) = server(vec![
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("250-mx\n250 PIPELINING"),
        Prefix("MAIL"),
        Prefix("RCPT"),
        Expect("DATA"),
        Reply("421 4.3.2 shutting down"),
    ]);
    let mut client = Client::open(stream, &params()).await.unwrap();
    let failure = client
        .send(&outgoing(&["b@example.net"]), &b"x"[..])
        .await
        .unwrap_err();
    assert_eq!(failure.errorline(), "421 4.3.2 shutting down");
    assert_eq!(
        (failure.stage, failure.kind),
        (Stage::MailFrom, Kind::Temporary)
    );
    assert!(!client.is_usable());
    peer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn without_pipelining_rset_waits_for_its_reply() {
    let (stream, peer) = server(vec![
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("502 no"),
        Expect("HELO out.example.org"),
        Reply("250 mx"),
        Prefix("MAIL"),
        Reply("250 ok"),
        Prefix("RCPT"),
        Reply("550 5.1.1 unknown"),
        Expect("RSET"),
        Reply("250 ok"),
        Prefix("MAIL"),
        Reply("250 ok"),
        Prefix("RCPT"),
        Reply("250 ok"),
        Expect("DATA"),
        Reply("354 go"),
        Data("second"),
        Reply("250 ok"),
    ]);
    let mut client = Client::open(stream, &params()).await.unwrap();
    let tx = outgoing(&["b@example.net"]);
    let results = client.send(&tx, &b"first"[..]).await.unwrap();
    assert_eq!(results[0].as_ref().unwrap_err().kind, Kind::Permanent);
    let results = client.send(&tx, &b"second"[..]).await.unwrap();
    assert!(results[0].is_ok());
    peer.await.unwrap();
    // HELO refused too: the session fails at HELO.
    let (stream, peer) = server(vec![
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("500 no"),
        Expect("HELO out.example.org"),
        Reply("550 go away"),
        Expect("QUIT"),
    ]);
    let failure = Client::open(stream, &params()).await.unwrap_err();
    assert_eq!(
        (failure.stage, failure.kind),
        (Stage::Helo, Kind::Permanent)
    );
    assert!(failure.stage.is_session());
    peer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn lmtp_gives_one_reply_per_recipient() {
    let (stream, peer) = server(vec![
        Reply("220 lmtp"),
        Expect("LHLO out.example.org"),
        Reply("250-lmtp\n250-PIPELINING\n250 ENHANCEDSTATUSCODES"),
        Expect("MAIL FROM:<alice@example.org>"),
        Expect("RCPT TO:<a@example.net>"),
        Expect("RCPT TO:<b@example.net>"),
        Expect("RCPT TO:<c@example.net>"),
        Expect("DATA"),
        Reply("250 ok\n250 ok\n550 5.1.1 unknown\n250 ok\n354 go"),
        Data("body"),
        Reply("250 2.0.0 a delivered"),
        Reply("452 4.2.2 c over quota"),
    ]);
    let mut params = params();
    params.lmtp = true;
    let mut client = Client::open(stream, &params).await.unwrap();
    let tx = outgoing(&["a@example.net", "b@example.net", "c@example.net"]);
    let results = client.send(&tx, &b"body\n"[..]).await.unwrap();
    assert_eq!(
        results[0].as_ref().unwrap().one_line(),
        "250 2.0.0 a delivered"
    );
    assert_eq!(results[1].as_ref().unwrap_err().stage, Stage::RcptTo);
    let c = results[2].as_ref().unwrap_err();
    assert_eq!((c.stage, c.kind), (Stage::DataEnd, Kind::Temporary));
    peer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn lmtp_connection_lost_midway_keeps_the_replies_received() {
    let (stream, peer) = server(vec![
        Reply("220 lmtp"),
        Expect("LHLO out.example.org"),
        Reply("250 lmtp"),
        Prefix("MAIL"),
        Reply("250 ok"),
        Prefix("RCPT"),
        Reply("250 ok"),
        Prefix("RCPT"),
        Reply("250 ok"),
        Expect("DATA"),
        Reply("354 go"),
        Data("body"),
        Reply("250 first delivered"),
    ]);
    let mut params = params();
    params.lmtp = true;
    let mut client = Client::open(stream, &params).await.unwrap();
    let tx = outgoing(&["a@example.net", "b@example.net"]);
    let results = client.send(&tx, &b"body"[..]).await.unwrap();
    assert!(results[0].is_ok());
    assert!(results[1].as_ref().unwrap_err().is_temporary());
    assert!(!client.is_usable());
    peer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn size_is_refused_here_before_and_while_sending() {
    let (stream, peer) = server(vec![
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("250-mx\n250 SIZE 10"),
        Expect("MAIL FROM:<alice@example.org>"),
        Reply("250 ok"),
        Prefix("RCPT"),
        Reply("250 ok"),
        Expect("DATA"),
        Reply("354 go"),
    ]);
    let mut client = Client::open(stream, &params()).await.unwrap();
    let mut tx = outgoing(&["bob@example.net"]);
    tx.size = Some(11);
    let failure = client.send(&tx, &b"0123456789"[..]).await.unwrap_err();
    assert_eq!(failure.status, Some(Enhanced::new(5, 3, 4)));
    assert_eq!(failure.kind, Kind::Permanent);
    assert!(client.is_usable(), "nothing was sent");
    // Size unknown: found while streaming, the session is dropped.
    tx.size = None;
    let failure = client.send(&tx, &b"0123456789\n"[..]).await.unwrap_err();
    assert_eq!(failure.status, Some(Enhanced::new(5, 3, 4)));
    assert!(!client.is_usable());
    peer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn eight_bit_needs_8bitmime() {
    let (stream, peer) = server(vec![
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("250-mx\n250 PIPELINING"),
        Expect("MAIL FROM:<alice@example.org>"),
        Prefix("RCPT"),
        Expect("DATA"),
        Reply("250 ok\n250 ok\n354 go"),
        Eof,
    ]);
    let mut client = Client::open(stream, &params()).await.unwrap();
    let mut tx = outgoing(&["bob@example.net"]);
    tx.body = BodyType::EightBit;
    let failure = client.send(&tx, &b"caf\xc3\xa9"[..]).await.unwrap_err();
    assert_eq!(failure.status, Some(Enhanced::new(5, 6, 3)));
    assert!(client.is_usable());
    tx.body = BodyType::Unknown;
    let failure = client.send(&tx, &b"caf\xc3\xa9"[..]).await.unwrap_err();
    assert_eq!(
        (failure.stage, failure.kind),
        (Stage::Body, Kind::Permanent)
    );
    assert!(!client.is_usable());
    client.quit().await;
    peer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn newlines_never_reach_the_wire() {
    let (stream, peer) = server(vec![
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("250 mx"),
        Expect("MAIL FROM:<alice@example.org>"),
        Reply("250 ok"),
        Expect("RCPT TO:<ok@example.net>"),
        Reply("250 ok"),
        Expect("DATA"),
        Reply("354 go"),
        Data("x"),
        Reply("250 ok"),
    ]);
    let mut client = Client::open(stream, &params()).await.unwrap();
    let mut tx = outgoing(&["evil@example.net>\r\nRSET", "ok@example.net"]);
    let results = client.send(&tx, &b"x"[..]).await.unwrap();
    assert_eq!(results[0].as_ref().unwrap_err().kind, Kind::Permanent);
    assert!(results[1].is_ok());
    tx.sender = "a@b\r\nDATA".to_owned();
    assert!(client.send(&tx, &b"x"[..]).await.is_err());
    assert!(client.is_usable());
    peer.await.unwrap();
    let mut bad = params();
    bad.helo = "x\r\nMAIL".to_owned();
    let (stream, _peer) = server(vec![]);
    assert_eq!(
        Client::open(stream, &bad).await.unwrap_err().stage,
        Stage::Ehlo
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_times_out() {
    let (stream, peer) = server(vec![Eof]);
    let failure = Client::open(stream, &params()).await.unwrap_err();
    assert_eq!(
        (failure.stage, failure.kind),
        (Stage::Greeting, Kind::Temporary)
    );
    assert!(failure.detail.contains("timeout"), "{failure}");
    peer.abort();
    // A peer that stops answering after DATA's 354 and the message.
    let (stream, peer) = server(vec![
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("250 mx"),
        Prefix("MAIL"),
        Reply("250 ok"),
        Prefix("RCPT"),
        Reply("250 ok"),
        Expect("DATA"),
        Reply("354 go"),
        Data("x"),
        Eof,
    ]);
    let mut client = Client::open(stream, &params()).await.unwrap();
    let failure = client
        .send(&outgoing(&["b@example.net"]), &b"x"[..])
        .await
        .unwrap_err();
    assert_eq!(
        (failure.stage, failure.kind),
        (Stage::DataEnd, Kind::Temporary)
    );
    drop(client);
    peer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn large_messages_stream_in_blocks() {
    let line = "x".repeat(99);
    let body: String = (0..5000).map(|i| format!("{i}{line}\n.{i}\n")).collect();
    let (client_end, server_end) = tokio::io::duplex(4096);
    let peer = tokio::spawn(async move {
        let mut reader = BufReader::new(Box::new(server_end) as BoxIo);
        let script = [
            "220 mx",
            "250-mx\r\n250-PIPELINING\r\n250 8BITMIME",
            "250 ok\r\n250 ok\r\n354 go",
        ];
        reader.get_mut().write_all(b"220 mx\r\n").await.unwrap();
        read_line(&mut reader).await;
        reader
            .get_mut()
            .write_all(format!("{}\r\n", script[1]).as_bytes())
            .await
            .unwrap();
        for _ in 0..3 {
            read_line(&mut reader).await;
        }
        reader
            .get_mut()
            .write_all(format!("{}\r\n", script[2]).as_bytes())
            .await
            .unwrap();
        let mut received = 0usize;
        loop {
            let line = read_line(&mut reader).await;
            if line == "." {
                break;
            }
            assert!(!line.starts_with('.') || line.starts_with(".."), "{line}");
            received += 1;
        }
        reader.get_mut().write_all(b"250 ok\r\n").await.unwrap();
        received
    });
    let mut client = Client::open(client_end, &params()).await.unwrap();
    let results = client
        .send(&outgoing(&["b@example.net"]), body.as_bytes())
        .await
        .unwrap();
    assert!(results[0].is_ok());
    assert_eq!(peer.await.unwrap(), 10_000);
}

#[tokio::test(start_paused = true)]
async fn a_read_failure_midway_never_sends_the_final_dot() {
    let (client_end, server_end) = tokio::io::duplex(4096);
    let peer = tokio::spawn(async move {
        let mut reader = BufReader::new(Box::new(server_end) as BoxIo);
        reader.get_mut().write_all(b"220 mx\r\n").await.unwrap();
        read_line(&mut reader).await;
        let ehlo = b"250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n";
        reader.get_mut().write_all(ehlo).await.unwrap();
        for _ in 0..3 {
            read_line(&mut reader).await;
        }
        let replies = b"250 ok\r\n250 ok\r\n354 go\r\n";
        reader.get_mut().write_all(replies).await.unwrap();
        // Everything up to the client's close: never a lone dot.
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        rest
    });
    // 200 kB of lines, then the queue fails.
    let line = "y".repeat(99);
    let good: String = (0..2000).map(|i| format!("{i}{line}\n")).collect();
    let chunks = vec![
        Ok(bytes::Bytes::from(good.clone())),
        Err(std::io::Error::other("queue: read error")),
    ];
    let body = tokio_util::io::StreamReader::new(futures::stream::iter(chunks));
    let mut client = Client::open(client_end, &params()).await.unwrap();
    let failure = client
        .send(&outgoing(&["b@example.net"]), body)
        .await
        .unwrap_err();
    assert_eq!(
        (failure.stage, failure.kind),
        (Stage::Body, Kind::Temporary)
    );
    assert!(failure.detail.contains("queue: read error"), "{failure}");
    assert!(!client.is_usable());
    client.quit().await;
    let received = peer.await.unwrap();
    let text = String::from_utf8(received).unwrap();
    assert!(!text.contains("\r\n.\r\n"), "no final dot");
    assert!(
        !text.contains("QUIT"),
        "the transaction is abandoned, not ended"
    );
    assert!(text.len() < good.len() + 2000, "no more than was read");
}

#[tokio::test(start_paused = true)]
async fn the_transcript_gets_every_line_in_order() {
    let (stream, peer) = server(vec![
        Reply("220 mx ready"),
        Expect("EHLO out.example.org"),
        Reply("250-mx\n250 PIPELINING"),
        Prefix("MAIL"),
        Prefix("RCPT"),
        Expect("DATA"),
        Reply("250 ok\n250 ok\n354 go"),
        Data("line"),
        Reply("250 queued"),
    ]);
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&lines);
    let params = Params {
        transcript: Some(Transcript::new(move |said| {
            let line = match said {
                Said::Client(line) => format!("> {line}"),
                Said::Server(line) => format!("< {line}"),
            };
            seen.lock().unwrap().push(line);
        })),
        ..params()
    };
    let mut client = Client::open(stream, &params).await.unwrap();
    let results = client
        .send(&outgoing(&["b@example.net"]), &b"line\n"[..])
        .await
        .unwrap();
    assert!(results[0].is_ok());
    peer.await.unwrap();
    assert_eq!(
        *lines.lock().unwrap(),
        [
            "< 220 mx ready",
            "> EHLO out.example.org",
            "< 250-mx",
            "< 250 PIPELINING",
            "> MAIL FROM:<alice@example.org>",
            "> RCPT TO:<b@example.net>",
            "> DATA",
            "< 250 ok",
            "< 250 ok",
            "< 354 go",
            "> .",
            "< 250 queued",
        ]
    );
}

/// A CA, and a server certificate for `mx.example.net` it signed.
struct Pki {
    ca_file: std::path::PathBuf,
    acceptor: TlsAcceptor,
}

impl Pki {
    fn new(tag: &str) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["mx.example.net".to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let ca_file =
            std::env::temp_dir().join(format!("smtpd-mta-client-{tag}-{}.pem", std::process::id()));
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], der)
        .unwrap();
        Self {
            ca_file,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        }
    }

    fn params(&self, policy: TlsPolicy, verify: bool) -> Params {
        let tls = ClientTls::new(&TlsSettings {
            ca_file: Some(&self.ca_file),
            ..TlsSettings::default()
        })
        .unwrap();
        Params {
            tls: policy,
            verify,
            tls_config: Some(tls),
            ..params()
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

#[tokio::test]
async fn starttls_required_verified_then_auth() {
    let pki = Pki::new("verified");
    let (stream, peer) = server(vec![
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("250-mx\n250-STARTTLS\n250 AUTH PLAIN"),
        Expect("STARTTLS"),
        Reply("220 go ahead"),
        Tls(pki.acceptor.clone()),
        Expect("EHLO out.example.org"),
        Reply("250-mx\n250-AUTH LOGIN PLAIN\n250 PIPELINING"),
        // base64("\0user\0secret")
        Expect("AUTH PLAIN AHVzZXIAc2VjcmV0"),
        Reply("235 2.7.0 ok"),
        Expect("QUIT"),
        Reply("221 bye"),
    ]);
    let mut params = pki.params(TlsPolicy::Required, true);
    params.auth = Some(Login {
        user: "user".to_owned(),
        password: "secret".to_owned(),
    });
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&lines);
    params.transcript = Some(Transcript::new(move |said| {
        if let Said::Client(line) = said {
            seen.lock().unwrap().push(line.to_owned());
        }
    }));
    let client = Client::open(stream, &params).await.unwrap();
    let info = client.peer_info();
    let tls = info.tls.as_ref().unwrap();
    assert!(tls.verified);
    assert!(tls.version.starts_with("TLSv1."));
    assert!(info.authenticated && info.extensions.pipelining);
    client.quit().await;
    peer.await.unwrap();
    // The transcript goes on after STARTTLS; credentials are masked.
    assert_eq!(
        *lines.lock().unwrap(),
        [
            "EHLO out.example.org",
            "STARTTLS",
            "EHLO out.example.org",
            "AUTH PLAIN ********",
            "QUIT"
        ]
    );
}

#[tokio::test]
async fn auth_login_when_plain_is_not_offered() {
    let pki = Pki::new("login");
    let (stream, peer) = server(vec![
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("250-mx\n250 STARTTLS"),
        Expect("STARTTLS"),
        Reply("220 go ahead"),
        Tls(pki.acceptor.clone()),
        Expect("EHLO out.example.org"),
        Reply("250-mx\n250 AUTH LOGIN"),
        Expect("AUTH LOGIN"),
        Reply("334 VXNlcm5hbWU6"),
        Expect("dXNlcg=="),
        Reply("334 UGFzc3dvcmQ6"),
        Expect("c2VjcmV0"),
        Reply("535 5.7.8 bad credentials"),
    ]);
    let mut params = pki.params(TlsPolicy::Opportunistic, false);
    params.auth = Some(Login {
        user: "user".to_owned(),
        password: "secret".to_owned(),
    });
    let failure = Client::open(stream, &params).await.unwrap_err();
    assert_eq!(failure.stage, Stage::Auth);
    assert!(failure.stage.is_session());
    peer.await.unwrap();
}

#[tokio::test]
async fn verification_fails_for_another_name() {
    let pki = Pki::new("wrong-name");
    let (stream, peer) = server(vec![
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("250-mx\n250 STARTTLS"),
        Expect("STARTTLS"),
        Reply("220 go ahead"),
    ]);
    let mut params = pki.params(TlsPolicy::Required, true);
    params.server_name = "other.example.net".to_owned();
    let failure = Client::open(stream, &params).await.unwrap_err();
    assert_eq!((failure.stage, failure.kind), (Stage::Tls, Kind::Temporary));
    peer.await.unwrap();
    // Opportunistic STARTTLS takes the certificate, and says it is not
    // valid for the name.
    let (stream, peer) = server(vec![
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("250-mx\n250 STARTTLS"),
        Expect("STARTTLS"),
        Reply("220 go ahead"),
        Tls(pki.acceptor.clone()),
        Expect("EHLO out.example.org"),
        Reply("250 mx"),
    ]);
    let mut params = pki.params(TlsPolicy::Opportunistic, false);
    params.server_name = "other.example.net".to_owned();
    let client = Client::open(stream, &params).await.unwrap();
    assert!(!client.peer_info().tls.as_ref().unwrap().verified);
    peer.await.unwrap();
}

#[tokio::test]
async fn tls_is_never_silently_dropped() {
    let pki = Pki::new("required");
    // Required, not offered: a failure, nothing sent in clear.
    let (stream, peer) = server(vec![
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("250 mx"),
    ]);
    let failure = Client::open(stream, &pki.params(TlsPolicy::Required, true))
        .await
        .unwrap_err();
    assert_eq!((failure.stage, failure.kind), (Stage::Tls, Kind::Temporary));
    peer.await.unwrap();
    // Required, refused.
    let (stream, peer) = server(vec![
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("250-mx\n250 STARTTLS"),
        Expect("STARTTLS"),
        Reply("454 4.7.0 TLS not available"),
    ]);
    let failure = Client::open(stream, &pki.params(TlsPolicy::Required, true))
        .await
        .unwrap_err();
    assert_eq!(failure.stage, Stage::Tls);
    peer.await.unwrap();
    // Required, EHLO refused: no HELO fallback.
    let (stream, peer) = server(vec![
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("500 what"),
    ]);
    let failure = Client::open(stream, &pki.params(TlsPolicy::Required, true))
        .await
        .unwrap_err();
    assert_eq!(failure.stage, Stage::Ehlo);
    peer.await.unwrap();
    // Opportunistic, not offered: clear text.
    let (stream, peer) = server(vec![
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("250 mx"),
    ]);
    let client = Client::open(stream, &pki.params(TlsPolicy::Opportunistic, false))
        .await
        .unwrap();
    assert!(client.peer_info().tls.is_none());
    peer.await.unwrap();
    // AUTH never goes in clear.
    let (stream, peer) = server(vec![
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("250-mx\n250 AUTH PLAIN"),
    ]);
    let mut params = pki.params(TlsPolicy::Opportunistic, false);
    params.auth = Some(Login {
        user: "u".to_owned(),
        password: "p".to_owned(),
    });
    let failure = Client::open(stream, &params).await.unwrap_err();
    assert_eq!(failure.stage, Stage::Auth);
    peer.await.unwrap();
}

#[tokio::test]
async fn implicit_tls_comes_before_the_greeting() {
    let pki = Pki::new("smtps");
    let (stream, peer) = server(vec![
        Tls(pki.acceptor.clone()),
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("250-mx\n250 STARTTLS"),
    ]);
    let client = Client::open(stream, &pki.params(TlsPolicy::Implicit, true))
        .await
        .unwrap();
    assert!(client.peer_info().tls.as_ref().unwrap().verified);
    peer.await.unwrap();
}

#[tokio::test]
async fn ciphers_and_protocols_limit_the_handshake() {
    let pki = Pki::new("ciphers");
    let (stream, peer) = server(vec![
        Tls(pki.acceptor.clone()),
        Reply("220 mx"),
        Expect("EHLO out.example.org"),
        Reply("250 mx"),
    ]);
    let settings = TlsSettings {
        ca_file: Some(&pki.ca_file),
        protocols: Some("tlsv1.2"),
        ..TlsSettings::default()
    };
    let tls = ClientTls::with_ciphers(&settings, Some("ECDHE-ECDSA-CHACHA20-POLY1305")).unwrap();
    let params = Params {
        tls_config: Some(tls),
        ..pki.params(TlsPolicy::Implicit, true)
    };
    let client = Client::open(stream, &params).await.unwrap();
    let info = client.peer_info().tls.clone().unwrap();
    assert_eq!(info.version, "TLSv1.2");
    assert_eq!(info.cipher, "ECDHE-ECDSA-CHACHA20-POLY1305");
    assert_eq!(info.bits, 256);
    peer.await.unwrap();
    let refused = ClientTls::with_ciphers(&settings, Some("RC4"));
    assert!(matches!(refused, Err(TlsError::Ciphers(..))), "{refused:?}");
}

#[test]
fn extensions_of_an_ehlo_reply() {
    let reply = PeerReply::new(
        250,
        None,
        [
            "mx",
            "pipelining",
            "SIZE",
            "AUTH=LOGIN",
            "AUTH plain login",
            "DSN",
        ]
        .map(str::to_owned)
        .to_vec(),
    );
    let ext = Extensions::parse(&reply);
    assert!(ext.pipelining && ext.dsn);
    assert_eq!(ext.size, Some(0));
    assert_eq!(ext.auth, ["LOGIN", "PLAIN"]);
}
