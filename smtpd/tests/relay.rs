//! Relaying, end to end: the built `smtpd` accepts mail over SMTP and its
//! MTA engine relays it to next hops on loopback: the scripted test peer
//! (`common/peer.rs`: STARTTLS with a generated CA, AUTH, 4xx and 5xx on
//! demand), or a second instance of this daemon. MX records come from the
//! tests' nameserver (`common/dns.rs`); MX hosts listen on a free port,
//! which the relaying daemon is told with `--mx-port`.
//!
//! Covered: delivery via MX with STARTTLS verified through `ca`; a dead
//! primary MX falling over to the backup; a 4xx retried and delivered
//! later; a 5xx and a null MX bounced to the sender's maildir; a
//! smarthost with AUTH by label; `smtp+tls://` to a peer without
//! STARTTLS sending nothing in clear; source addresses cycling through
//! `src <t>`; and `smtpctl show hosts|relays|routes`.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::dns::{self as test_dns, Zone, NULL_MX_DOMAIN, RELAY_DOMAIN};
use common::mail::{accepted_id, free_port, Client, Site, TEMPFAIL};
use common::peer::{Answer, Peer, PeerTls, Script};
use common::{is_root, smtpd_command_asking, Process, Scratch, DEADLINE};

const BODY: &str = "Subject: relayed\r\n\r\nHello over there.\r\n..leading dot\r\n";

/// A relaying daemon: local.test is local (maildirs), anything else from
/// the host itself goes through the action `relay`.
struct Relay {
    process: Process,
    port: u16,
    socket: PathBuf,
    maildirs: PathBuf,
}

impl Relay {
    /// Starts a daemon whose `relay` action has `options`, with `top`
    /// before the listener, asking `nameserver`, relaying to MX hosts on
    /// `mx_port`.
    fn start(
        dir: &Scratch,
        top: &str,
        options: &str,
        nameserver: SocketAddr,
        mx_port: u16,
    ) -> Self {
        Self::start_with(dir, top, "", options, nameserver, mx_port)
    }

    /// [`Relay::start`] with `local` appended to the local action.
    fn start_with(
        dir: &Scratch,
        top: &str,
        local: &str,
        options: &str,
        nameserver: SocketAddr,
        mx_port: u16,
    ) -> Self {
        Self::start_args(dir, top, local, options, nameserver, mx_port, &[])
    }

    /// [`Relay::start_with`] with `args` added to the daemon's command.
    fn start_args(
        dir: &Scratch,
        top: &str,
        local: &str,
        options: &str,
        nameserver: SocketAddr,
        mx_port: u16,
        args: &[&str],
    ) -> Self {
        let port = free_port();
        let (uid, gid) = account();
        let maildirs = writable(dir, "maildir");
        let config = format!(
            "table users {{ alice = \"{uid}:{gid}:/\" }}\n\
             {top}\
             listen on 127.0.0.1 port {port}\n\
             action \"local\" maildir \"{m}/%{{dest.user}}\" userbase <users> {local}\n\
             action \"relay\" relay {options}\n\
             match from any for domain local.test action \"local\"\n\
             match from local for any action \"relay\"\n",
            m = maildirs.display(),
        );
        let path = dir.write("smtpd.conf", &config);
        let mut cmd = smtpd_command_asking(dir, &path, nameserver);
        cmd.arg("--mx-port").arg(mx_port.to_string());
        cmd.args(args);
        let process = Process::spawn(cmd);
        process.wait_for(&format!("listening on 127.0.0.1:{port}"));
        let needle = "listening on control socket ";
        let line = process.wait_for(needle);
        let socket = PathBuf::from(&line[line.find(needle).unwrap() + needle.len()..]);
        Self {
            process,
            port,
            socket,
            maildirs,
        }
    }

    /// Sends a message from alice@local.test to `to`; its id.
    fn send(&self, to: &[&str]) -> String {
        self.send_body(to, BODY)
    }

    /// [`Relay::send`] with `body` as the message.
    fn send_body(&self, to: &[&str], body: &str) -> String {
        let mut c = Client::connect(self.port, Ipv4Addr::LOCALHOST);
        c.expect_code("EHLO client.test", "250");
        c.expect_code("MAIL FROM:<alice@local.test>", "250");
        for rcpt in to {
            c.expect_code(&format!("RCPT TO:<{rcpt}>"), "250");
        }
        let id = accepted_id(&c.data(body));
        c.expect_code("QUIT", "221");
        id
    }

    /// The next `mta delivery` line of message `msgid`.
    fn wait_relayed(&self, msgid: &str) -> String {
        loop {
            let line = self.process.wait_for(" mta delivery evpid=");
            if line.contains(&format!("evpid={msgid}")) {
                return line;
            }
        }
    }

    /// Runs `smtpctl WORDS`; its standard output.
    fn smtpctl(&self, words: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_smtpctl"))
            .arg("-s")
            .arg(&self.socket)
            .args(words)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "smtpctl {words:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// The bounce that reaches alice's maildir.
    fn bounce(&self) -> String {
        maildir_files(&self.maildirs.join("alice"), 1).remove(0)
    }
}

/// The uid, gid of local deliveries: `nobody` as root, else ours.
fn account() -> (u32, u32) {
    if is_root() {
        (65534, 65534)
    } else {
        // SAFETY: getuid and getgid have no preconditions.
        unsafe { (libc::getuid(), libc::getgid()) }
    }
}

/// A directory the delivery account may write into.
fn writable(dir: &Scratch, name: &str) -> PathBuf {
    let path = dir.0.join(name);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    path
}

/// The files in `MAILDIR/new`, waited for until there are `n`.
fn maildir_files(maildir: &Path, n: usize) -> Vec<String> {
    let end = Instant::now() + DEADLINE;
    loop {
        let files: Vec<PathBuf> = std::fs::read_dir(maildir.join("new"))
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        if files.len() >= n {
            let mut texts: Vec<String> = files
                .iter()
                .map(|f| std::fs::read_to_string(f).unwrap())
                .collect();
            texts.sort();
            return texts;
        }
        assert!(Instant::now() < end, "{} files in {maildir:?}", files.len());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A `ca` entry named `peerca` for the peer's CA.
fn ca_line(tls: &PeerTls) -> String {
    format!("ca peerca cert \"{}\"\n", tls.ca_file.display())
}

#[test]
fn mx_delivery_with_starttls_verified_through_ca() {
    let dir = Scratch::new("relay", "mx-tls");
    let tls = PeerTls::new(&dir, "mx1.relay.smtpd.test");
    let peer = Peer::start(Script::accept().starttls(tls.clone()));
    let relay = Relay::start(
        &dir,
        &ca_line(&tls),
        "tls ca peerca helo relay.local.test",
        test_dns::shared().addr,
        peer.port(),
    );
    let rcpt = format!("bob@{RELAY_DOMAIN}");
    let msgid = relay.send(&[&rcpt]);
    let messages = peer.wait_messages(1);
    let message = &messages[0];
    assert!(message.tls, "STARTTLS was used");
    assert_eq!(message.sender, "alice@local.test");
    assert_eq!(message.rcpts, [rcpt]);
    assert_eq!(message.helo, "relay.local.test");
    assert!(
        message
            .data
            .ends_with("Hello over there.\r\n.leading dot\r\n"),
        "{:?}",
        message.data
    );
    let line = relay.wait_relayed(&msgid);
    assert!(
        line.contains("relay=\"127.0.0.1 (mx1.relay.smtpd.test)\""),
        "{line}"
    );
    assert!(line.contains("result=\"Ok\""), "{line}");
    assert!(line.contains("stat=\"250 2.0.0 Ok: queued\""), "{line}");
    assert!(line.contains("source=\"127.0.0.1\""), "{line}");

    let hosts = relay.smtpctl(&["show", "hosts"]);
    assert!(hosts.contains("127.0.0.1 mx1.relay.smtpd.test"), "{hosts}");
    let relays = relay.smtpctl(&["show", "relays"]);
    assert!(
        relays.contains(&format!("[relay:{RELAY_DOMAIN},port={},smtp", peer.port())),
        "{relays}"
    );
    let routes = relay.smtpctl(&["show", "routes"]);
    assert!(routes.contains("1. [] <-> 127.0.0.1 "), "{routes}");
}

#[test]
fn a_dead_primary_mx_falls_over_to_the_backup() {
    let dir = Scratch::new("relay", "failover");
    let dns = Zone::new()
        .mx("failover.test", 10, "mx1.failover.test")
        .mx("failover.test", 20, "mx2.failover.test")
        // Nothing listens on 127.0.0.5: connections are refused.
        .address("mx1.failover.test", IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5)))
        .address("mx2.failover.test", IpAddr::V4(Ipv4Addr::LOCALHOST))
        .serve();
    let peer = Peer::start(Script::accept());
    let relay = Relay::start(&dir, "", "", dns.addr, peer.port());
    let msgid = relay.send(&["carol@failover.test"]);
    let messages = peer.wait_messages(1);
    assert_eq!(messages[0].rcpts, ["carol@failover.test"]);
    let line = relay.wait_relayed(&msgid);
    assert!(
        line.contains("relay=\"127.0.0.1 (mx2.failover.test)\""),
        "{line}"
    );
    assert!(line.contains("result=\"Ok\""), "{line}");
    let hosts = relay.smtpctl(&["show", "hosts"]);
    assert!(hosts.contains("127.0.0.5 mx1.failover.test"), "{hosts}");
    // Two more refusals mark the primary broken: it is skipped for a
    // while, the backup taking the mail at once.
    for _ in 0..2 {
        let msgid = relay.send(&["carol@failover.test"]);
        assert!(relay.wait_relayed(&msgid).contains("result=\"Ok\""));
    }
    let log = relay.process.log.lock().unwrap().clone();
    assert!(
        log.contains("127.0.0.5 (mx1.failover.test): marked broken"),
        "{log}"
    );
    let routes = relay.smtpctl(&["show", "routes"]);
    let dead = routes
        .lines()
        .find(|l| l.contains("<-> 127.0.0.5 "))
        .unwrap();
    assert!(
        dead.contains(" -D-- nconn=0 nerror=0 penalty=1 timeout="),
        "{routes}"
    );
    let refusals = relay
        .process
        .log
        .lock()
        .unwrap()
        .matches("127.0.0.5")
        .count();
    let msgid = relay.send(&["carol@failover.test"]);
    assert!(relay.wait_relayed(&msgid).contains("result=\"Ok\""));
    assert_eq!(peer.wait_messages(4).len(), 4);
    let after = relay
        .process
        .log
        .lock()
        .unwrap()
        .matches("127.0.0.5")
        .count();
    assert_eq!(refusals, after, "the broken MX is not tried");
}

#[test]
fn a_temporary_failure_is_retried_and_delivered_later() {
    let dir = Scratch::new("relay", "retry");
    let peer = Peer::start(Script::accept().rcpt(Answer::reply("451 4.7.1 Greylisted")));
    let relay = Relay::start(&dir, "", "", test_dns::shared().addr, peer.port());
    let rcpt = format!("dave@{RELAY_DOMAIN}");
    let msgid = relay.send(&[&rcpt]);
    let line = relay.wait_relayed(&msgid);
    assert!(line.contains("result=\"TempFail\""), "{line}");
    assert!(line.contains("451 4.7.1 Greylisted"), "{line}");
    assert!(peer.messages().is_empty());
    // The next attempt (now rather than after the backoff) is accepted.
    peer.set_script(Script::accept());
    relay.smtpctl(&["schedule", "all"]);
    let line = relay.wait_relayed(&msgid);
    assert!(line.contains("result=\"Ok\""), "{line}");
    assert_eq!(peer.wait_messages(1)[0].rcpts, [rcpt]);
}

#[test]
fn a_permanent_failure_bounces_to_the_sender() {
    let dir = Scratch::new("relay", "bounce");
    let peer = Peer::start(Script::accept().rcpt_for(
        &format!("nobody@{RELAY_DOMAIN}"),
        Answer::reply("550 5.1.1 No such user here"),
    ));
    let relay = Relay::start(&dir, "", "", test_dns::shared().addr, peer.port());
    let good = format!("erin@{RELAY_DOMAIN}");
    let bad = format!("nobody@{RELAY_DOMAIN}");
    let msgid = relay.send(&[&good, &bad]);
    // One transaction for both recipients.
    let messages = peer.wait_messages(1);
    assert_eq!(messages[0].rcpts, [good]);
    let bounce = relay.bounce();
    assert!(
        bounce.contains("multipart/report; report-type=delivery-status"),
        "{bounce}"
    );
    assert!(
        bounce.contains(&format!("Final-Recipient: rfc822; {bad}")),
        "{bounce}"
    );
    assert!(bounce.contains("550 5.1.1 No such user here"), "{bounce}");
    assert!(
        !bounce.contains("erin@"),
        "only the failed recipient: {bounce}"
    );
    let _ = msgid;
}

#[test]
fn a_null_mx_bounces() {
    let dir = Scratch::new("relay", "null-mx");
    let relay = Relay::start(&dir, "", "", test_dns::shared().addr, free_port());
    let rcpt = format!("frank@{NULL_MX_DOMAIN}");
    let msgid = relay.send(&[&rcpt]);
    let line = relay.wait_relayed(&msgid);
    assert!(line.contains("result=\"PermFail\""), "{line}");
    let bounce = relay.bounce();
    assert!(
        bounce.contains(&format!("Final-Recipient: rfc822; {rcpt}")),
        "{bounce}"
    );
    assert!(bounce.contains("null MX"), "{bounce}");
}

#[test]
fn a_smarthost_with_auth_by_label() {
    let dir = Scratch::new("relay", "auth");
    let tls = PeerTls::new(&dir, "mx1.relay.smtpd.test");
    let peer = Peer::start(Script::accept().starttls(tls.clone()).auth("joe", "s3cret"));
    let top = format!(
        "{}table secrets {{ outbound = \"joe:s3cret\" }}\n",
        ca_line(&tls)
    );
    let options = format!(
        "host \"smtp+tls://outbound@mx1.relay.smtpd.test:{}\" auth <secrets> ca peerca",
        peer.port()
    );
    let relay = Relay::start(&dir, &top, &options, test_dns::shared().addr, free_port());
    let msgid = relay.send(&["grace@elsewhere.test"]);
    let messages = peer.wait_messages(1);
    assert_eq!(messages[0].auth.as_deref(), Some("joe"));
    assert!(messages[0].tls);
    assert_eq!(messages[0].rcpts, ["grace@elsewhere.test"]);
    let line = relay.wait_relayed(&msgid);
    assert!(line.contains("result=\"Ok\""), "{line}");
}

#[test]
fn smtp_tls_to_a_peer_without_starttls_sends_nothing_in_clear() {
    let dir = Scratch::new("relay", "no-starttls");
    let peer = Peer::start(Script::accept());
    let options = format!("host \"smtp+tls://127.0.0.1:{}\"", peer.port());
    let relay = Relay::start(&dir, "", &options, test_dns::shared().addr, free_port());
    let msgid = relay.send(&["heidi@elsewhere.test"]);
    let line = relay.wait_relayed(&msgid);
    assert!(line.contains("result=\"TempFail\""), "{line}");
    let commands = peer.commands();
    assert!(
        !commands
            .iter()
            .any(|c| c.starts_with("MAIL") || c.starts_with("RCPT")),
        "{commands:?}"
    );
    assert!(peer.messages().is_empty());
}

#[test]
fn source_addresses_cycle() {
    let dir = Scratch::new("relay", "src");
    // The next hop: a second instance of this daemon, whose log names
    // each client's address.
    let next_dir = Scratch::new("relay", "src-next");
    let next = Site::start_with(&next_dir, TEMPFAIL, "", "");
    let top = "table sources { 127.0.0.2, 127.0.0.3 }\n";
    let options = format!(
        "host \"smtp://127.0.0.1:{}\" src <sources>",
        next.smtpd.port
    );
    let relay = Relay::start(&dir, top, &options, test_dns::shared().addr, free_port());
    let mut seen = Vec::new();
    for _ in 0..2 {
        let msgid = relay.send(&["ivan@example.org"]);
        let line = relay.wait_relayed(&msgid);
        assert!(line.contains("result=\"Ok\""), "{line}");
        let source = line
            .split("source=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned();
        seen.push(source);
    }
    seen.sort();
    assert_eq!(seen, ["127.0.0.2", "127.0.0.3"]);
    let mut clients: Vec<String> = (0..2)
        .map(|_| {
            let line = next.smtpd.wait_for("smtp connected address=");
            let rest = line.split("address=").nth(1).unwrap();
            rest.split(' ').next().unwrap().to_owned()
        })
        .collect();
    clients.sort();
    assert_eq!(clients, ["127.0.0.2", "127.0.0.3"]);
}

#[test]
fn smtp_out_reports_reach_the_relay_filter() {
    let dir = Scratch::new("relay", "smtp-out");
    let peer = Peer::start(Script::accept());
    let out = writable(&dir, "reports").join("events");
    let script = dir.write(
        "report.sh",
        &format!(
            "while IFS= read -r line; do\n\
             case \"$line\" in\n\
             'config|ready') echo 'register|report|smtp-out|*'; echo 'register|ready' ;;\n\
             report*) printf '%s\\n' \"$line\" >> {} ;;\n\
             esac\n\
             done\n",
            out.display()
        ),
    );
    let script = {
        let readable = writable(&dir, "filters").join("report.sh");
        std::fs::rename(&script, &readable).unwrap();
        std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o755)).unwrap();
        readable
    };
    let top = format!("filter out proc-exec \"/bin/sh {}\"\n", script.display());
    let options = format!("host \"smtp://127.0.0.1:{}\" filter out", peer.port());
    let relay = Relay::start(&dir, &top, &options, test_dns::shared().addr, free_port());
    let msgid = relay.send(&["judy@elsewhere.test"]);
    let line = relay.wait_relayed(&msgid);
    assert!(line.contains("result=\"Ok\""), "{line}");
    let end = Instant::now() + DEADLINE;
    let events = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.contains("|tx-commit|") || Instant::now() > end {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let names: Vec<&str> = events
        .lines()
        .map(|l| l.split('|').nth(4).unwrap_or_default())
        .filter(|name| !name.starts_with("protocol-"))
        .collect();
    assert_eq!(
        names,
        [
            "link-connect",
            "link-greeting",
            "link-identify",
            "tx-begin",
            "tx-mail",
            "tx-rcpt",
            "tx-data",
            "tx-commit"
        ],
        "{events}"
    );
    assert!(events.contains("|smtp-out|link-connect|"), "{events}");
    let field = |name: &str| {
        events
            .lines()
            .find(|l| l.split('|').nth(4) == Some(name))
            .map(|l| l.split('|').skip(6).collect::<Vec<_>>().join("|"))
            .unwrap()
    };
    assert_eq!(field("tx-mail"), format!("{msgid}|ok|alice@local.test"));
    assert_eq!(field("tx-rcpt"), format!("{msgid}|ok|judy@elsewhere.test"));
    assert_eq!(field("link-greeting"), "peer.smtpd.test");
    // The session's lines, as sent and received, in order.
    let protocol: Vec<String> = events
        .lines()
        .filter(|l| {
            l.split('|')
                .nth(4)
                .is_some_and(|n| n.starts_with("protocol-"))
        })
        .map(|l| {
            let direction = if l.contains("|protocol-client|") {
                ">"
            } else {
                "<"
            };
            format!(
                "{direction} {}",
                l.split('|').skip(6).collect::<Vec<_>>().join("|")
            )
        })
        .collect();
    let expected = [
        "< 220 peer.smtpd.test ESMTP test peer",
        "> EHLO ",
        "< 250-peer.smtpd.test hello",
        "> MAIL FROM:<alice@local.test>",
        "> RCPT TO:<judy@elsewhere.test>",
        "> DATA",
        "< 250 2.1.0 Ok",
        "< 250 2.1.5 Ok",
        "< 354 End data with <CR><LF>.<CR><LF>",
        "> .",
        "< 250 2.0.0 Ok: queued",
    ];
    let mut rest = protocol.iter();
    for want in expected {
        assert!(
            rest.any(|line| line.starts_with(want)),
            "{want:?} in order in {protocol:#?}"
        );
    }
}

#[test]
fn srs_rewrites_the_sender_of_forwarded_mail() {
    let dir = Scratch::new("relay", "srs");
    let peer = Peer::start(Script::accept());
    let top = "srs key \"s3cret\"\ntable aliases { fwd = \"kim@example.net\" }\n";
    let options = format!("host \"smtp://127.0.0.1:{}\" srs", peer.port());
    let relay = Relay::start_with(
        &dir,
        top,
        "alias <aliases>",
        &options,
        test_dns::shared().addr,
        free_port(),
    );
    relay.send(&["fwd@local.test", "lee@example.net"]);
    let mut messages = peer.wait_messages(2);
    messages.sort_by(|a, b| a.rcpts.cmp(&b.rcpts));
    // The forwarded recipient's sender is rewritten for local.test ...
    assert_eq!(messages[0].rcpts, ["kim@example.net"]);
    let srs = &messages[0].sender;
    assert!(srs.starts_with("SRS0="), "{srs}");
    assert!(srs.ends_with("=local.test=alice@local.test"), "{srs}");
    // ... the one sent directly keeps it.
    assert_eq!(messages[1].rcpts, ["lee@example.net"]);
    assert_eq!(messages[1].sender, "alice@local.test");
}

#[test]
fn a_backup_mx_relays_only_to_more_preferred_mxs() {
    let dir = Scratch::new("relay", "backup");
    let dns = Zone::new()
        .mx("backup.test", 10, "mx1.backup.test")
        .mx("backup.test", 20, "me.backup.test")
        .mx("backup.test", 30, "mx3.backup.test")
        // The primary is down; the less preferred mx3 works but is not
        // for a backup of preference 20.
        .address("mx1.backup.test", IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5)))
        .address("me.backup.test", IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6)))
        .address("mx3.backup.test", IpAddr::V4(Ipv4Addr::LOCALHOST))
        .serve();
    let peer = Peer::start(Script::accept());
    let relay = Relay::start(
        &dir,
        "",
        "backup mx \"me.backup.test\"",
        dns.addr,
        peer.port(),
    );
    let msgid = relay.send(&["mia@backup.test"]);
    let line = relay.wait_relayed(&msgid);
    assert!(line.contains("result=\"TempFail\""), "{line}");
    assert!(line.contains("127.0.0.5 (mx1.backup.test)"), "{line}");
    assert_eq!(peer.connections(), 0, "mx3 is never tried");
}

#[test]
fn connections_are_reused_and_host_tables_rotate() {
    let dir = Scratch::new("relay", "reuse");
    let first = Peer::start(Script::accept());
    let second = Peer::start(Script::accept());
    let top = format!(
        "table hosts {{ \"smtp://127.0.0.1:{}\", \"smtp://127.0.0.1:{}\" }}\n",
        first.port(),
        second.port()
    );
    let relay = Relay::start(
        &dir,
        &top,
        "host <hosts>",
        test_dns::shared().addr,
        free_port(),
    );
    for _ in 0..4 {
        let msgid = relay.send(&["noah@elsewhere.test"]);
        let line = relay.wait_relayed(&msgid);
        assert!(line.contains("result=\"Ok\""), "{line}");
    }
    // Round-robin over the table's URLs, two messages each, each peer's
    // over one connection kept open between them.
    assert_eq!(first.wait_messages(2).len(), 2);
    assert_eq!(second.wait_messages(2).len(), 2);
    assert_eq!((first.connections(), second.connections()), (1, 1));
    let relays = relay.smtpctl(&["show", "relays"]);
    assert_eq!(relays.lines().count(), 2, "{relays}");
}

#[test]
fn lmtp_relaying_gets_one_reply_per_recipient() {
    let dir = Scratch::new("relay", "lmtp");
    let peer = Peer::start(Script::accept().rcpt_for(
        "olga@elsewhere.test",
        Answer::reply("550 5.1.1 No such user"),
    ));
    let options = format!("host \"lmtp://127.0.0.1:{}\"", peer.port());
    let relay = Relay::start(&dir, "", &options, test_dns::shared().addr, free_port());
    relay.send(&["pia@elsewhere.test", "olga@elsewhere.test"]);
    let messages = peer.wait_messages(1);
    assert_eq!(messages[0].rcpts, ["pia@elsewhere.test"]);
    assert!(
        peer.commands().iter().any(|c| c.starts_with("LHLO ")),
        "{:?}",
        peer.commands()
    );
    let bounce = relay.bounce();
    assert!(
        bounce.contains("Final-Recipient: rfc822; olga@elsewhere.test"),
        "{bounce}"
    );
}

/// Postfix's smtp-sink on 127.0.0.1:`port`, dumping each transaction
/// into a file of `dir`; killed on drop.
struct SmtpSink(std::process::Child);

impl SmtpSink {
    fn start(dir: &Path, port: u16) -> Self {
        let mut cmd = Command::new("/usr/sbin/smtp-sink");
        if is_root() {
            cmd.args(["-u", "nobody"]);
        }
        let template = format!("{}/%H%M%S.", dir.display());
        let child = cmd
            .args(["-d", &template, &format!("127.0.0.1:{port}"), "10"])
            .stdin(Stdio::null())
            .spawn()
            .expect("smtp-sink runs (Debian package postfix)");
        let end = Instant::now() + DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "smtp-sink does not listen");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Self(child)
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn postfix_smtp_sink_receives_relayed_mail() {
    let dir = Scratch::new("relay", "smtp-sink");
    let dumps = writable(&dir, "sink");
    let port = free_port();
    let _sink = SmtpSink::start(&dumps, port);
    let options = format!("host \"smtp://127.0.0.1:{port}\"");
    let relay = Relay::start(&dir, "", &options, test_dns::shared().addr, free_port());
    let first = relay.send(&["quinn@elsewhere.test", "rosa@elsewhere.test"]);
    let second = relay.send(&["sam@elsewhere.test"]);
    for msgid in [&first, &first, &second] {
        let line = relay.wait_relayed(msgid);
        assert!(line.contains("result=\"Ok\""), "{line}");
    }
    let end = Instant::now() + DEADLINE;
    let mut texts = loop {
        let texts: Vec<String> = std::fs::read_dir(&dumps)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        if texts.len() >= 2 || Instant::now() > end {
            break texts;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    texts.sort_by_key(|t| t.contains("sam@"));
    assert_eq!(texts.len(), 2, "one transaction per message: {texts:?}");
    assert!(
        texts[0].contains("X-Mail-Args: <alice@local.test>"),
        "{}",
        texts[0]
    );
    assert!(
        texts[0].contains("X-Rcpt-Args: <quinn@elsewhere.test>")
            && texts[0].contains("X-Rcpt-Args: <rosa@elsewhere.test>"),
        "{}",
        texts[0]
    );
    assert!(
        texts[0].contains("\n\nHello over there.\n.leading dot\n"),
        "{:?}",
        texts[0]
    );
    assert!(
        texts[1].contains("X-Rcpt-Args: <sam@elsewhere.test>"),
        "{}",
        texts[1]
    );
}

#[test]
fn helo_src_names_the_source_address() {
    let dir = Scratch::new("relay", "helo-src");
    let peer = Peer::start(Script::accept());
    let top = "table sources { 127.0.0.3 }\n\
               table helos { \"127.0.0.3\" = \"three.local.test\" }\n";
    let options = format!(
        "host \"smtp://127.0.0.1:{}\" src <sources> helo-src <helos>",
        peer.port()
    );
    let relay = Relay::start(&dir, top, &options, test_dns::shared().addr, free_port());
    let msgid = relay.send(&["tina@elsewhere.test"]);
    let line = relay.wait_relayed(&msgid);
    assert!(line.contains("source=\"127.0.0.3\""), "{line}");
    assert_eq!(peer.wait_messages(1)[0].helo, "three.local.test");
}

/// Sends one message from alice@local.test to `rcpt` with `NOTIFY=SUCCESS`.
fn send_notify_success(relay: &Relay, rcpt: &str) -> String {
    let mut c = Client::connect(relay.port, Ipv4Addr::LOCALHOST);
    c.expect_code("EHLO client.test", "250");
    c.expect_code("MAIL FROM:<alice@local.test>", "250");
    c.expect_code(&format!("RCPT TO:<{rcpt}> NOTIFY=SUCCESS"), "250");
    let id = accepted_id(&c.data(BODY));
    c.expect_code("QUIT", "221");
    id
}

#[test]
fn success_notifications_are_the_next_hops_when_it_offers_dsn() {
    let dir = Scratch::new("relay", "dsn");
    let with_dsn = Peer::start(Script::accept());
    let mut script = Script::accept();
    script.extensions.retain(|e| e != "DSN");
    let without_dsn = Peer::start(script);
    let top = "table routes { \"dsn.test\" = \"smtp://127.0.0.1:PORT1\", \
               \"nodsn.test\" = \"smtp://127.0.0.1:PORT2\" }\n"
        .replace("PORT1", &with_dsn.port().to_string())
        .replace("PORT2", &without_dsn.port().to_string());
    let relay = Relay::start(
        &dir,
        &top,
        "domain <routes>",
        test_dns::shared().addr,
        free_port(),
    );
    // A next hop without DSN: the success notification is ours.
    let msgid = send_notify_success(&relay, "uma@nodsn.test");
    assert!(relay.wait_relayed(&msgid).contains("result=\"Ok\""));
    let notification = relay.bounce();
    assert!(notification.contains("Action: delivered"), "{notification}");
    assert!(
        notification.contains("Final-Recipient: rfc822; uma@nodsn.test"),
        "{notification}"
    );
    // A next hop with DSN gets NOTIFY and sends it: none from us.
    let msgid = send_notify_success(&relay, "vic@dsn.test");
    assert!(relay.wait_relayed(&msgid).contains("result=\"Ok\""));
    let rcpt = with_dsn
        .commands()
        .into_iter()
        .find(|c| c.starts_with("RCPT TO:<vic@dsn.test>"))
        .unwrap();
    assert!(rcpt.contains("NOTIFY=SUCCESS"), "{rcpt}");
    // Mail delivered locally after it finds alice's maildir with the one
    // notification still.
    relay.send(&["alice@local.test"]);
    let files = maildir_files(&relay.maildirs.join("alice"), 2);
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(
        files
            .iter()
            .filter(|f| f.contains("Action: delivered"))
            .count(),
        1,
        "{files:?}"
    );
}

#[test]
fn a_multi_megabyte_message_is_relayed_intact() {
    let dir = Scratch::new("relay", "large");
    let peer = Peer::start(Script::accept());
    let relay = Relay::start(&dir, "", "", test_dns::shared().addr, peer.port());
    // 6 MB of numbered lines (some starting with a dot), far more than
    // one queue read: the relay streams it from the queue.
    let mut body = String::from("Subject: large\r\n\r\n");
    let mut n = 0;
    while body.len() < 6 * 1024 * 1024 {
        let lead = if n % 7 == 0 { "." } else { "" };
        body.push_str(&format!("{lead}{n:08} {}\r\n", "z".repeat(90)));
        n += 1;
    }
    let stuffed = body.replace("\r\n.", "\r\n..");
    let msgid = relay.send_body(&[&format!("big@{RELAY_DOMAIN}")], &stuffed);
    let line = relay.wait_relayed(&msgid);
    assert!(line.contains("result=\"Ok\""), "{line}");
    let messages = peer.wait_messages(1);
    let data = &messages[0].data;
    // The relay adds header lines; the body is as sent.
    let sent = &body[body.find("\r\n\r\n").unwrap()..];
    let got = &data[data.find("\r\n\r\n").unwrap()..];
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "the message arrived intact");
    let size = format!("SIZE={}", data.len());
    assert!(
        messages[0].mail_params.contains(&size),
        "{:?}",
        messages[0].mail_params
    );
}

#[test]
fn opportunistic_tls_that_fails_falls_back_to_clear_text() {
    let dir = Scratch::new("relay", "tls-fallback");
    let tls = PeerTls::new(&dir, "mx1.relay.smtpd.test");
    let peer = Peer::start(Script::accept().broken_tls(tls));
    let relay = Relay::start(&dir, "", "", test_dns::shared().addr, peer.port());
    let msgid = relay.send(&[&format!("opp@{RELAY_DOMAIN}")]);
    let line = relay.wait_relayed(&msgid);
    assert!(line.contains("result=\"Ok\""), "{line}");
    let messages = peer.wait_messages(1);
    assert!(!messages[0].tls);
    // The first connection tried STARTTLS, the second went on in clear.
    assert_eq!(peer.connections(), 2);
    let commands = peer.commands();
    assert_eq!(commands.iter().filter(|c| *c == "STARTTLS").count(), 1);
    let log = relay.process.log.lock().unwrap().clone();
    assert!(
        log.contains("opportunistic TLS failed, downgrading to plain"),
        "{log}"
    );
}

#[test]
fn required_tls_that_fails_is_never_downgraded() {
    let dir = Scratch::new("relay", "tls-required");
    let tls = PeerTls::new(&dir, "peer.smtpd.test");
    let peer = Peer::start(Script::accept().broken_tls(tls.clone()));
    let port = peer.port();
    let ca = ca_line(&tls);
    for (n, options) in [
        format!("host \"smtp+tls://127.0.0.1:{port}\" tls no-verify"),
        "tls no-verify".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let sub = Scratch::new("relay", &format!("tls-required-{n}"));
        let relay = Relay::start(&sub, &ca, options, test_dns::shared().addr, port);
        let msgid = relay.send(&[&format!("req{n}@{RELAY_DOMAIN}")]);
        let line = relay.wait_relayed(&msgid);
        assert!(line.contains("result=\"TempFail\""), "{options}: {line}");
    }
    let commands = peer.commands();
    assert!(
        !commands.iter().any(|c| c.starts_with("MAIL")),
        "{commands:?}"
    );
    assert!(peer.messages().is_empty());
    drop(dir);
}

#[test]
fn a_client_certificate_is_presented_when_the_peer_asks() {
    let dir = Scratch::new("relay", "client-cert");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "client CA");
    let client_ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["relay.local.test".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "relay.local.test");
    let cert = leaf.signed_by(&key, &client_ca, &ca_key).unwrap();
    let cert_file = dir.write("client.crt", &cert.pem());
    let key_file = dir.write("client.key", &key.serialize_pem());
    let tls =
        PeerTls::requesting_client_cert(&dir, "mx1.relay.smtpd.test", client_ca.der().clone());
    let peer = Peer::start(Script::accept().starttls(tls.clone()));
    let top = format!(
        "{}pki client cert \"{}\"\npki client key \"{}\"\n",
        ca_line(&tls),
        cert_file.display(),
        key_file.display()
    );
    let relay = Relay::start(
        &dir,
        &top,
        "tls ca peerca pki client",
        test_dns::shared().addr,
        peer.port(),
    );
    let msgid = relay.send(&[&format!("cert@{RELAY_DOMAIN}")]);
    let line = relay.wait_relayed(&msgid);
    assert!(line.contains("result=\"Ok\""), "{line}");
    let messages = peer.wait_messages(1);
    assert!(messages[0].tls);
    assert_eq!(
        messages[0].client_cert.as_deref(),
        Some(cert.der().as_ref()),
        "the pki's certificate was presented"
    );
}

#[test]
fn stalled_peers_time_out_and_are_retried() {
    for (name, script) in [
        ("greeting", Script::accept().greeting(Answer::Stall)),
        ("mail", Script::accept().mail(Answer::Stall)),
    ] {
        let dir = Scratch::new("relay", &format!("stall-{name}"));
        let peer = Peer::start(script);
        let relay = Relay::start_args(
            &dir,
            "",
            "",
            "",
            test_dns::shared().addr,
            peer.port(),
            &["--mta-timeout", "2"],
        );
        let started = Instant::now();
        let msgid = relay.send(&[&format!("slow@{RELAY_DOMAIN}")]);
        let line = relay.wait_relayed(&msgid);
        assert!(line.contains("result=\"TempFail\""), "{name}: {line}");
        let log = relay.process.log.lock().unwrap().clone();
        assert!(log.contains("timeout waiting for a reply"), "{name}: {log}");
        assert!(started.elapsed() >= std::time::Duration::from_secs(2));
        assert!(peer.messages().is_empty());
        // The peer recovers; the next attempt is delivered.
        peer.set_script(Script::accept());
        relay.smtpctl(&["schedule", "all"]);
        let line = relay.wait_relayed(&msgid);
        assert!(line.contains("result=\"Ok\""), "{name}: {line}");
        assert_eq!(peer.wait_messages(1).len(), 1);
    }
}

#[test]
fn relayed_messages_leave_the_queue_once_the_peer_took_them() {
    let dir = Scratch::new("relay", "drained");
    let peer = Peer::start(Script::accept());
    let relay = Relay::start(&dir, "", "", test_dns::shared().addr, peer.port());
    let count = 40;
    let ids: Vec<String> = (0..count)
        .map(|n| relay.send(&[&format!("drain{n}@{RELAY_DOMAIN}")]))
        .collect();
    assert_eq!(peer.wait_messages(count).len(), count);
    // Every envelope and message file goes once the peer said 250 (none
    // waits for the next hop again, none is left over).
    let queue = dir.0.join("data").join("spool").join("queue");
    assert!(queue.is_dir(), "{queue:?}");
    let files = |path: &Path| -> usize {
        fn walk(path: &Path) -> usize {
            std::fs::read_dir(path).map_or(0, |entries| {
                entries
                    .map_while(Result::ok)
                    .map(|e| match e.file_type() {
                        Ok(t) if t.is_dir() => walk(&e.path()),
                        _ => 1,
                    })
                    .sum()
            })
        }
        walk(path)
    };
    let end = Instant::now() + DEADLINE;
    while files(&queue) > 0 {
        assert!(
            Instant::now() < end,
            "{} files left in {queue:?}",
            files(&queue)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(relay.smtpctl(&["show", "queue"]).trim().is_empty());
    let log = relay.process.log.lock().unwrap().clone();
    for id in &ids {
        assert!(log.contains(&format!("evpid={id}")), "{id} was relayed");
    }
    assert!(!log.contains("cannot delete"), "{log}");
}

#[test]
fn domain_limits_apply_to_their_domain() {
    let dir = Scratch::new("relay", "domain-limits");
    let peer = Peer::start(Script::accept());
    // The peer listens on 127.0.0.1 only: IPv6 alone for the domain
    // leaves mx2's ::1, which refuses.
    let top = format!("mta limit for domain {RELAY_DOMAIN} inet6\n");
    let relay = Relay::start(&dir, &top, "", test_dns::shared().addr, peer.port());
    let msgid = relay.send(&[&format!("six@{RELAY_DOMAIN}")]);
    let line = relay.wait_relayed(&msgid);
    assert!(line.contains("result=\"TempFail\""), "{line}");
    assert!(
        line.contains("relay=\"::1 (mx2.relay.smtpd.test)\""),
        "{line}"
    );
    assert_eq!(peer.connections(), 0);

    // One message per connection for the domain: two connections.
    let dir = Scratch::new("relay", "domain-limits-mail-max");
    let top = format!("mta limit for domain {RELAY_DOMAIN} session-mail-max 1\n");
    let relay = Relay::start(&dir, &top, "", test_dns::shared().addr, peer.port());
    for n in 0..2 {
        let msgid = relay.send(&[&format!("one{n}@{RELAY_DOMAIN}")]);
        assert!(relay.wait_relayed(&msgid).contains("result=\"Ok\""));
    }
    let messages = peer.wait_messages(2);
    assert_ne!(messages[0].connection, messages[1].connection);
}

#[test]
fn ciphers_select_the_suites_offered() {
    let dir = Scratch::new("relay", "ciphers");
    let tls = PeerTls::new(&dir, "mx1.relay.smtpd.test");
    let peer = Peer::start(Script::accept().starttls(tls.clone()));
    let ca = ca_line(&tls);
    // The relay's own string, then the global one, then a string that
    // selects nothing (TLS unavailable: retried, nothing sent in clear).
    // TLS 1.2 only: as with OpenSSL, cipher strings leave TLS 1.3's
    // suites alone.
    let cases = [
        (
            String::new(),
            "tls ca peerca protocols \"tlsv1.2\" ciphers \"ECDHE-ECDSA-CHACHA20-POLY1305\"",
            Some("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
        ),
        (
            "smtp ciphers \"ECDHE-ECDSA-AES128-GCM-SHA256\"\n".to_owned(),
            "tls ca peerca protocols \"tlsv1.2\"",
            Some("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
        ),
        (
            String::new(),
            "tls ca peerca protocols \"tlsv1.2\" ciphers \"RC4\"",
            None,
        ),
    ];
    for (n, (smtp, options, suite)) in cases.into_iter().enumerate() {
        let sub = Scratch::new("relay", &format!("ciphers-{n}"));
        let top = format!("{ca}{smtp}");
        let relay = Relay::start(&sub, &top, options, test_dns::shared().addr, peer.port());
        let msgid = relay.send(&[&format!("c{n}@{RELAY_DOMAIN}")]);
        let line = relay.wait_relayed(&msgid);
        match suite {
            Some(suite) => {
                assert!(line.contains("result=\"Ok\""), "{options}: {line}");
                let messages = peer.wait_messages(n + 1);
                assert_eq!(messages[n].cipher.as_deref(), Some(suite), "{options}");
            }
            None => {
                assert!(line.contains("result=\"TempFail\""), "{line}");
                assert!(line.contains("TLS unavailable"), "{line}");
                assert_eq!(peer.messages().len(), n);
            }
        }
    }
}
