//! The resolver against the tests' own nameserver on 127.0.0.1
//! (`common/dns.rs`): reverse names, FCrDNS, MX and addresses as the
//! daemon's [`smtpd::dns::Resolver`] finds them, a nameserver that never
//! answers bounded by the lookup time, and the built `smtpd` greeting a
//! client, then taking its mail as `<unknown>`, when its nameserver is
//! dead. (The reverse name in the `Received:` header of a message from a
//! client with one is checked by `intake.rs`.)

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};

use common::dns::{self as test_dns, DeadDns, Zone, CLIENT_NAME, LIAR_IP, LIAR_NAME};
use common::{smtpd_command_asking, Process, Scratch};
use smtpd::dns::{Error, Fcrdns, Mx, PeerName, Resolver, Settings, MAX_LOOKUP_TIME};

const LOCALHOST4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LOCALHOST6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A resolver asking the shared test nameserver.
fn resolver() -> Resolver {
    Resolver::new(&Settings::with_nameservers(vec![test_dns::shared().addr]))
}

#[tokio::test]
async fn reverse_names_and_fcrdns() {
    let resolver = resolver();
    for ip in [LOCALHOST4, LOCALHOST6] {
        assert_eq!(
            resolver.peer_name(ip).await,
            PeerName {
                rdns: Some(CLIENT_NAME.to_owned()),
                fcrdns: Fcrdns::Pass,
            },
            "{ip}"
        );
    }
    // A name whose address is another.
    assert_eq!(
        resolver.peer_name(LIAR_IP).await,
        PeerName {
            rdns: Some(LIAR_NAME.to_owned()),
            fcrdns: Fcrdns::Fail,
        }
    );
    // No reverse name: nothing, and no error.
    let nameless: IpAddr = "127.0.0.9".parse().unwrap();
    assert_eq!(resolver.lookup_ptr(nameless).await, Ok(None));
    let peer = resolver.peer_name(nameless).await;
    assert_eq!(
        (peer.rdns_or_unknown(), peer.fcrdns),
        ("<unknown>", Fcrdns::Fail)
    );
    // FCrDNS asks the client's own family only.
    assert_eq!(resolver.fcrdns(LIAR_NAME, LOCALHOST4).await, Fcrdns::Fail);
    assert_eq!(
        resolver.fcrdns("no-such.smtpd.test", LOCALHOST4).await,
        Fcrdns::Fail
    );
}

#[tokio::test]
async fn mail_exchangers_and_addresses() {
    let resolver = resolver();
    assert_eq!(
        resolver.lookup_mx(test_dns::RELAY_DOMAIN).await.unwrap(),
        [
            Mx {
                preference: 10,
                exchange: "mx1.relay.smtpd.test".to_owned(),
            },
            Mx {
                preference: 20,
                exchange: "mx2.relay.smtpd.test".to_owned(),
            },
        ]
    );
    assert_eq!(
        resolver.lookup_mx(test_dns::NULL_MX_DOMAIN).await.unwrap(),
        [Mx {
            preference: 0,
            exchange: String::new(),
        }]
    );
    // A name with addresses and no MX, and a name that does not exist.
    assert_eq!(resolver.lookup_mx(CLIENT_NAME).await, Ok(Vec::new()));
    assert_eq!(
        resolver.lookup_mx("no-such.smtpd.test").await,
        Ok(Vec::new())
    );
    // Relaying tells them apart: no MX (the implicit MX) or no domain.
    assert_eq!(
        resolver.lookup_domain_mx(CLIENT_NAME).await,
        Ok(Some(Vec::new()))
    );
    assert_eq!(
        resolver.lookup_domain_mx("no-such.smtpd.test").await,
        Ok(None)
    );
    let mut both = resolver.lookup_ip("mx2.relay.smtpd.test").await.unwrap();
    both.sort();
    assert_eq!(both, [LOCALHOST4, LOCALHOST6]);
    assert_eq!(
        resolver.lookup_ip("no-such.smtpd.test").await,
        Ok(Vec::new())
    );
    assert!(matches!(
        resolver.lookup_ip("bad..name").await,
        Err(Error::BadName { .. })
    ));
}

#[tokio::test]
async fn a_server_of_its_own_and_answers_too_big_for_udp() {
    // 100 addresses do not fit the 1232 bytes the resolver accepts over
    // UDP: the answer comes truncated and is asked again over TCP.
    let many: Vec<IpAddr> = (1..=100)
        .map(|n| IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)))
        .collect();
    let zone = many
        .iter()
        .fold(Zone::new(), |zone, &ip| zone.address("many.smtpd.test", ip));
    let server = zone.serve();
    let resolver = Resolver::new(&Settings::with_nameservers(vec![server.addr]));
    let mut found = resolver.lookup_ip("many.smtpd.test").await.unwrap();
    found.sort();
    assert_eq!(found, many);
}

#[tokio::test(start_paused = true)]
async fn a_dead_nameserver_costs_the_lookup_time_and_gives_no_name() {
    let dead = DeadDns::bind();
    let resolver = Resolver::new(&Settings::with_nameservers(vec![dead.addr]));
    assert_eq!(resolver.lookup_time(), MAX_LOOKUP_TIME);
    assert_eq!(
        resolver.lookup_ptr(LOCALHOST4).await,
        Err(Error::Timeout {
            query: "PTR 127.0.0.1".to_owned(),
            seconds: MAX_LOOKUP_TIME.as_secs(),
        })
    );
    assert_eq!(resolver.peer_name(LOCALHOST4).await, PeerName::unknown());
    assert_eq!(
        resolver.fcrdns(CLIENT_NAME, LOCALHOST4).await,
        Fcrdns::Error
    );
    assert!(matches!(
        resolver.lookup_mx("example.org").await,
        Err(Error::Timeout { .. })
    ));
}

#[tokio::test]
async fn a_port_where_no_nameserver_listens_refuses_at_once() {
    // Bound, then closed: the kernel answers "port unreachable", which the
    // connected UDP socket reports as a refusal instead of a timeout.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let resolver = Resolver::new(&Settings::with_nameservers(vec![closed]));
    let err = resolver.lookup_ptr(LOCALHOST4).await.unwrap_err();
    assert!(
        matches!(&err, Error::Failed { reason, .. } if reason.contains("refused")),
        "{err}"
    );
    assert_eq!(resolver.peer_name(LOCALHOST4).await, PeerName::unknown());
}

/// One reply of the daemon, all its lines (within the socket's timeout).
fn reply(reader: &mut BufReader<TcpStream>) -> String {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.len() >= 4, "short reply {line:?}");
        text.push_str(&line);
        if line.as_bytes()[3] == b' ' {
            return text;
        }
    }
}

#[test]
fn a_dead_nameserver_delays_the_greeting_then_mail_comes_from_unknown() {
    let dir = Scratch::new("dns", "dead");
    let dead = DeadDns::bind();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Deliveries fail temporarily, so the message stays in the spool.
    let config = dir.write(
        "smtpd.conf",
        &format!(
            "listen on 127.0.0.1 port {port}\n\
             table users {{ bob = \"65534:65534:/\" }}\n\
             action \"local\" mda \"exit 75\" userbase <users>\n\
             match from any for domain example.org action \"local\"\n"
        ),
    );
    // The file's options with the nameserver of the command line: each
    // lookup gives up after 1 s.
    let resolv_conf = dir.write(
        "resolv.conf",
        "nameserver 192.0.2.53\noptions timeout:1 attempts:1\n",
    );
    let mut cmd = smtpd_command_asking(&dir, &config, dead.addr);
    // Failed lookups are logged at debug level.
    cmd.arg("-v").arg("--resolv-conf").arg(&resolv_conf);
    let daemon = Process::spawn(cmd);
    daemon.wait_for(&format!("listening on 127.0.0.1:{port}"));

    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Far more than the lookup time, far less than the harness's deadline.
    stream.set_read_timeout(Some(MAX_LOOKUP_TIME * 2)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    assert!(reply(&mut reader).starts_with("220 "));
    let warning = daemon.wait_for("DNS: PTR 127.0.0.1");
    assert!(warning.contains("no answer within 1 s"), "{warning}");
    for (line, code) in [
        ("EHLO client.test", "250"),
        ("MAIL FROM:<alice@sender.test>", "250"),
        ("RCPT TO:<bob@example.org>", "250"),
        ("DATA", "354"),
        ("Subject: hi\r\n\r\nHello.\r\n.", "250"),
    ] {
        writer.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let answer = reply(&mut reader);
        assert!(answer.starts_with(code), "{line}: {answer}");
    }
    writer.write_all(b"QUIT\r\n").unwrap();

    let (message, envelope) = committed(&dir.0.join("data/spool/queue"));
    assert!(
        message.starts_with("Received: from client.test (<unknown> [127.0.0.1])\r\n"),
        "{message}"
    );
    assert!(envelope.contains("hostname: <unknown>\n"), "{envelope}");
}

/// The one committed message of the spool's `queue/` and its envelope.
fn committed(queue: &std::path::Path) -> (String, String) {
    let mut files = Vec::new();
    for bucket in std::fs::read_dir(queue).unwrap() {
        for message in std::fs::read_dir(bucket.unwrap().path()).unwrap() {
            for file in std::fs::read_dir(message.unwrap().path()).unwrap() {
                files.push(file.unwrap().path());
            }
        }
    }
    assert_eq!(files.len(), 2, "{files:?}");
    files.sort_by_key(|path| path.file_name().unwrap() == "message");
    let envelope = std::fs::read_to_string(&files[0]).unwrap();
    let message = std::fs::read_to_string(&files[1]).unwrap();
    (message, envelope)
}

#[test]
fn an_unreadable_resolv_conf_stops_the_start() {
    let dir = Scratch::new("dns", "no-resolv-conf");
    let config = dir.write(
        "smtpd.conf",
        "listen on 127.0.0.1 port 1\naction \"local\" maildir\nmatch from any action \"local\"\n",
    );
    let mut cmd = smtpd_command_asking(&dir, &config, test_dns::shared().addr);
    cmd.arg("--resolv-conf").arg(dir.0.join("missing.conf"));
    let mut daemon = Process::spawn(cmd);
    let line = daemon.wait_for("fatal: ");
    assert!(line.contains("missing.conf: No such file"), "{line}");
    assert_eq!(daemon.wait_exit().code(), Some(1));
}

#[test]
fn the_nameserver_option_refuses_what_is_no_address() {
    let dir = Scratch::new("dns", "bad-nameserver");
    let config = dir.write(
        "smtpd.conf",
        "action \"local\" maildir\nmatch from any action \"local\"\n",
    );
    let out = smtpd_command_asking(&dir, &config, test_dns::shared().addr)
        .arg("--nameserver")
        .arg("ns.example.org")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap refuses it");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not an IP address or IP:PORT"), "{stderr}");
}
