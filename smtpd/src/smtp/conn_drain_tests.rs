//! The driver during the daemon's shutdown ([`Drain`]), and the replies
//! it reports for the log ([`Handler::replied`]).

use tokio::sync::watch;

use super::*;

/// A session over duplex whose shutdown the test steers.
fn draining() -> (Harness, watch::Sender<Drain>) {
    let (drain, rx) = watch::channel(Drain::Serve);
    (start_following(rx), drain)
}

fn start_following(rx: watch::Receiver<Drain>) -> Harness {
    let (client, server) = tokio::io::duplex(1 << 16);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut handler = Recorder {
        seen: Arc::clone(&seen),
        fail_data: false,
    };
    let session = Session::new(
        Arc::new(SessionConfig::new("mx.example.org")),
        "[192.0.2.1]",
    );
    let conn = ConnConfig::default();
    let server = tokio::spawn(async move {
        run_draining(Box::new(server), session, &mut handler, conn, rx).await
    });
    Harness {
        client: Client {
            io: BufReader::new(client),
        },
        seen,
        server,
    }
}

const SHUTTING_DOWN: &str = "421 4.3.2 mx.example.org Service shutting down";

#[tokio::test]
async fn an_idle_session_gets_421_at_once() {
    let (mut h, drain) = draining();
    h.client.expect("220").await;
    h.client.write("EHLO client.example\r\n").await;
    h.client.expect("250-mx.example.org").await;
    drain.send_replace(Drain::Finish);
    h.client.expect(SHUTTING_DOWN).await;
    assert_eq!(h.client.reply().await, "", "then the connection closes");
    assert_eq!(h.outcome().await, Outcome::Shutdown);
}

#[tokio::test]
async fn a_transaction_in_progress_finishes_then_new_commands_get_421() {
    let (mut h, drain) = draining();
    h.client.expect("220").await;
    h.client
        .write("EHLO c.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        .await;
    h.client.expect("250-").await;
    h.client.expect("250 2.0.0 Ok").await;
    h.client.expect("250 2.1.5").await;
    h.client.expect("354").await;
    drain.send_replace(Drain::Finish);
    h.client.write("Subject: late\r\n\r\nbody\r\n.\r\n").await;
    h.client
        .expect("250 2.0.0 0000abcd Message accepted for delivery")
        .await;
    h.client.write("MAIL FROM:<a@example.org>\r\n").await;
    h.client.expect(SHUTTING_DOWN).await;
    assert_eq!(h.client.reply().await, "");
    let calls = h.calls();
    assert_eq!(calls.last().map(String::as_str), Some("commit 23 to 1"));
    assert_eq!(h.outcome().await, Outcome::Shutdown);
}

#[tokio::test]
async fn quit_is_still_answered_while_draining() {
    let (mut h, drain) = draining();
    h.client.expect("220").await;
    h.client
        .write("HELO c.example\r\nMAIL FROM:<a@example.org>\r\n")
        .await;
    h.client.expect("250 ").await;
    h.client.expect("250 2.0.0 Ok").await;
    drain.send_replace(Drain::Finish);
    h.client.write("RSET\r\nQUIT\r\n").await;
    h.client.expect("250 2.0.0 Reset state").await;
    h.client.expect("221 2.0.0 Bye").await;
    assert_eq!(h.outcome().await, Outcome::Closed);
}

#[tokio::test]
async fn closing_drops_the_message_in_progress() {
    let (mut h, drain) = draining();
    h.client.expect("220").await;
    h.client
        .write("HELO c.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        .await;
    for prefix in ["250 ", "250 ", "250 ", "354"] {
        h.client.expect(prefix).await;
    }
    h.client.write("Subject: never ends\r\n").await;
    drain.send_replace(Drain::Finish);
    drain.send_replace(Drain::Close);
    h.client.expect(SHUTTING_DOWN).await;
    assert_eq!(h.client.reply().await, "");
    assert_eq!(h.seen.lock().unwrap().messages.len(), 0);
    assert_eq!(h.calls().last().map(String::as_str), Some("abort"));
    assert_eq!(h.outcome().await, Outcome::Shutdown);
}

#[tokio::test]
async fn a_session_that_starts_during_shutdown_is_greeted_with_421() {
    let (_drain, rx) = watch::channel(Drain::Finish);
    let mut h = start_following(rx);
    h.client.expect(SHUTTING_DOWN).await;
    assert_eq!(h.outcome().await, Outcome::Shutdown);
}

#[tokio::test]
async fn failures_reach_the_handler_with_credentials_hidden() {
    let mut h = start(tls_config(), false, ConnConfig::default());
    h.client.expect("220").await;
    h.client.write("EHLO c.example\r\nSTARTTLS\r\n").await;
    h.client.expect("250-").await;
    h.client.expect("220").await;
    h.client
        .write("EHLO c.example\r\nAUTH PLAIN AGFsaWNlAHdyb25n\r\nAUTH LOGIN\r\n")
        .await;
    h.client.expect("250-").await;
    h.client.expect("535").await;
    h.client.expect("334 VXNlcm5hbWU6").await;
    h.client.write("YWxpY2U=\r\nd3Jvbmc=\r\n").await;
    h.client.expect("334 UGFzc3dvcmQ6").await;
    h.client.expect("535").await;
    h.client
        .write("MAIL FROM:<a@example.org>\r\nRCPT TO:<unknown@example.org>\r\n")
        .await;
    h.client.expect("250").await;
    h.client.expect("550").await;
    h.client
        .write(&format!("NOOP {}\r\n", "x".repeat(70_000)))
        .await;
    h.client.expect("500").await;
    h.client.write("QUIT\r\n").await;
    h.client.expect("221").await;
    let failures = std::mem::take(&mut h.seen.lock().unwrap().failures);
    assert_eq!(h.outcome().await, Outcome::Closed);
    assert_eq!(
        failures,
        [
            "AUTH PLAIN (...) => 535",
            "AUTH LOGIN (password) => 535",
            "RCPT TO:<unknown@example.org> => 550",
            "- => 500",
        ]
    );
}
