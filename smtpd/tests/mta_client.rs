//! The MTA's SMTP client (`smtpd::mta::client`) over real TCP against the
//! scripted test peer (`common/peer.rs`), and the peer against a real
//! client (Python's smtplib): STARTTLS with a generated CA, AUTH, several
//! messages on one connection, refusals and dropped connections.

// A test harness: the shared modules run the built binaries and python3.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::peer::{Answer, Peer, PeerTls, Script};
use common::{mail::python, Scratch};
use smtpd::mta::client::{
    self, Client, ClientTls, Kind, Login, Outgoing, Params, Recipient, Stage, Timeouts, TlsPolicy,
    TlsSettings,
};

const MX: &str = "mx.smtpd.test";

fn params(tls: Option<&PeerTls>, policy: TlsPolicy) -> Params {
    let tls_config = tls.map(|tls| {
        ClientTls::new(&TlsSettings {
            ca_file: Some(&tls.ca_file),
            ..TlsSettings::default()
        })
        .unwrap()
    });
    Params {
        helo: "out.smtpd.test".to_owned(),
        tls: policy,
        verify: policy != TlsPolicy::Opportunistic,
        server_name: MX.to_owned(),
        tls_config,
        auth: None,
        lmtp: false,
        timeouts: Timeouts {
            command: Duration::from_secs(30),
            ..Timeouts::default()
        },
        transcript: None,
    }
}

fn message(rcpts: &[&str]) -> Outgoing {
    Outgoing {
        sender: "alice@example.org".to_owned(),
        recipients: rcpts.iter().map(|r| Recipient::new(*r)).collect(),
        ..Outgoing::default()
    }
}

async fn open(peer: &Peer, params: &Params) -> Result<Client, client::Failure> {
    let source = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let stream = client::connect(peer.addr(), source, Duration::from_secs(30)).await?;
    Client::open(stream, params).await
}

#[tokio::test]
async fn starttls_auth_and_two_messages_on_one_connection() {
    let dir = Scratch::new("mta-client", "starttls");
    let tls = PeerTls::new(&dir, MX);
    let peer = Peer::start(
        Script::accept()
            .starttls(tls.clone())
            .auth("relay", "s3cret"),
    );
    let mut params = params(Some(&tls), TlsPolicy::Required);
    params.auth = Some(Login {
        user: "relay".to_owned(),
        password: "s3cret".to_owned(),
    });
    let mut client = open(&peer, &params).await.unwrap();
    assert!(client.peer_info().tls.as_ref().unwrap().verified);
    assert!(client.peer_info().authenticated);
    let first = message(&["bob@example.net", "carol@example.net"]);
    let results = client
        .send(&first, &b"Subject: one\n\n.leading dot\n"[..])
        .await
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let second = message(&["dave@example.net"]);
    let results = client
        .send(&second, &b"Subject: two\r\n\r\nbody"[..])
        .await
        .unwrap();
    assert!(results[0].is_ok());
    client.quit().await;

    let messages = peer.wait_messages(2);
    assert_eq!(peer.connections(), 1);
    assert_eq!(messages[0].rcpts, ["bob@example.net", "carol@example.net"]);
    assert_eq!(messages[0].data, "Subject: one\r\n\r\n.leading dot\r\n");
    assert_eq!(messages[1].data, "Subject: two\r\n\r\nbody\r\n");
    assert_eq!(messages[1].helo, "out.smtpd.test");
    assert!(messages
        .iter()
        .all(|m| m.tls && m.auth.as_deref() == Some("relay")));
    assert!(
        messages[0].mail_params.contains("BODY=8BITMIME"),
        "{messages:?}"
    );
}

#[tokio::test]
async fn refusals_and_drops_from_the_peer() {
    let peer = Peer::start(Script::accept().greeting(Answer::reply("421 4.3.2 not now")));
    let failure = open(&peer, &params(None, TlsPolicy::Off))
        .await
        .unwrap_err();
    assert_eq!(
        (failure.stage, failure.kind),
        (Stage::Greeting, Kind::Temporary)
    );

    peer.set_script(
        Script::accept()
            .no_pipelining()
            .rcpt_for("gone@example.net", Answer::reply("550 5.1.1 no such user")),
    );
    let mut client = open(&peer, &params(None, TlsPolicy::Off)).await.unwrap();
    assert!(!client.peer_info().extensions.pipelining);
    let tx = message(&["gone@example.net", "here@example.net"]);
    let results = client.send(&tx, &b"hi\n"[..]).await.unwrap();
    assert_eq!(results[0].as_ref().unwrap_err().kind, Kind::Permanent);
    assert!(results[1].is_ok());

    peer.set_script(Script::accept().dot(Answer::Drop));
    let failure = client.send(&tx, &b"again\n"[..]).await.unwrap_err();
    assert_eq!(
        (failure.stage, failure.kind),
        (Stage::DataEnd, Kind::Temporary)
    );
    assert!(!client.is_usable());
    assert_eq!(peer.messages().len(), 1);
    assert_eq!(peer.wait_connections(2), 2);
}

#[tokio::test]
async fn peers_share_a_port_on_several_loopback_addresses() {
    let first = Peer::start(Script::accept().greeting(Answer::Drop));
    let addr = std::net::SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), first.port());
    let second = Peer::start_on(addr, Script::accept());
    let failure = open(&first, &params(None, TlsPolicy::Off))
        .await
        .unwrap_err();
    assert_eq!(
        (failure.stage, failure.kind),
        (Stage::Greeting, Kind::Temporary)
    );
    let mut client = open(&second, &params(None, TlsPolicy::Off)).await.unwrap();
    let results = client
        .send(&message(&["b@example.net"]), &b"x"[..])
        .await
        .unwrap();
    assert!(results[0].is_ok());
    assert_eq!(second.wait_messages(1)[0].rcpts, ["b@example.net"]);
    assert_eq!((first.connections(), second.connections()), (1, 1));
}

#[test]
fn the_peer_serves_a_real_client() {
    let dir = Scratch::new("mta-client", "smtplib");
    let tls = PeerTls::new(&dir, MX);
    let peer = Peer::start(Script::accept().starttls(tls.clone()).auth("u", "p"));
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
ctx.check_hostname = False
s = smtplib.SMTP("127.0.0.1", {port}, local_hostname="py.smtpd.test", timeout=30)
s.starttls(context=ctx)
s.login("u", "p")
s.sendmail("a@example.org", ["b@example.net"], b"Subject: py\r\n\r\n.x\r\n")
s.quit()
print("sent")
"#,
        ca = tls.ca_file.display().to_string(),
        port = peer.port()
    );
    assert_eq!(python(&script).trim(), "sent");
    let messages = peer.wait_messages(1);
    assert_eq!(messages[0].sender, "a@example.org");
    assert_eq!(messages[0].data, "Subject: py\r\n\r\n.x\r\n");
    assert!(messages[0].tls);
    assert_eq!(messages[0].auth.as_deref(), Some("u"));
    assert!(peer.commands().iter().any(|c| c == "STARTTLS"));
}
