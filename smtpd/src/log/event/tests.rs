//! Every line of the catalogue, checked against OpenSMTPD 7.x's format.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::log::shown_command;
use crate::smtp::{AuthStage, Enhanced};

const S: SessionId = SessionId(0x3a2f_1b0c_4d5e_6f70);
const EVP: EvpId = EvpId(0x0bad_cafe_0000_0001);

fn addr(user: &str, domain: &str) -> MailAddr {
    MailAddr {
        user: user.to_owned(),
        domain: domain.to_owned(),
    }
}

#[test]
fn smtp_session_lines() {
    let sender = addr("alice", "example.net");
    let null = MailAddr::default();
    let rcpt = addr("bob", "example.org");
    let invalid = Reply::invalid_recipient("x@example.org");
    let too_long = Reply::line_too_long();
    let refused = Reply::new(553, Enhanced::new(5, 1, 0), "Sender \"q\" refused");
    let v6 = IpAddr::V6("2001:db8::7".parse().unwrap());
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
    let cases: Vec<(Event<'_>, &str)> = vec![
        (
            Event::Connected {
                session: S,
                address: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
                host: "mx.example.net",
            },
            "3a2f1b0c4d5e6f70 smtp connected address=192.0.2.7 host=mx.example.net",
        ),
        (
            Event::Connected {
                session: S,
                address: Some(v6),
                host: "<unknown>",
            },
            "3a2f1b0c4d5e6f70 smtp connected address=IPv6:2001:db8::7 host=<unknown>",
        ),
        (
            Event::Connected {
                session: S,
                address: Some(mapped),
                host: "<unknown>",
            },
            "3a2f1b0c4d5e6f70 smtp connected address=192.0.2.7 host=<unknown>",
        ),
        (
            Event::Connected {
                session: S,
                address: None,
                host: "mx.example.org",
            },
            "3a2f1b0c4d5e6f70 smtp connected address=local host=mx.example.org",
        ),
        (
            Event::Tls {
                session: S,
                version: "TLSv1.3",
                cipher: "TLS_AES_256_GCM_SHA384",
                bits: 256,
            },
            "3a2f1b0c4d5e6f70 smtp tls ciphers=TLSv1.3:TLS_AES_256_GCM_SHA384:256",
        ),
        (
            Event::Authentication {
                session: S,
                user: "alice",
                result: AuthResult::Ok,
            },
            "3a2f1b0c4d5e6f70 smtp authentication user=alice result=ok",
        ),
        (
            Event::Authentication {
                session: S,
                user: "eve\tx",
                result: AuthResult::Permfail,
            },
            "3a2f1b0c4d5e6f70 smtp authentication user=eve\\tx result=permfail",
        ),
        (
            Event::Authentication {
                session: S,
                user: "carol",
                result: AuthResult::Tempfail,
            },
            "3a2f1b0c4d5e6f70 smtp authentication user=carol result=tempfail",
        ),
        (
            Event::FailedCommand {
                session: S,
                command: b"RCPT TO:<x@example.org>",
                result: &invalid,
            },
            "3a2f1b0c4d5e6f70 smtp failed-command command=\"RCPT TO:<x@example.org>\" \
             result=\"550 5.1.1 Invalid recipient: <x@example.org>\"",
        ),
        (
            Event::FailedCommand {
                session: S,
                command: b"MAIL FROM:<\"q\"@x\xff>",
                result: &refused,
            },
            "3a2f1b0c4d5e6f70 smtp failed-command command=\"MAIL FROM:<\\\"q\\\"@x\\377>\" \
             result=\"553 5.1.0 Sender \\\"q\\\" refused\"",
        ),
        (
            Event::BadInput {
                session: S,
                result: &too_long,
            },
            "3a2f1b0c4d5e6f70 smtp bad-input result=\"500 5.5.2 Line too long\"",
        ),
        (
            Event::Message {
                session: S,
                msgid: MsgId(0x0bad_cafe),
                size: 1234,
                nrcpt: 2,
                esmtp: true,
            },
            "3a2f1b0c4d5e6f70 smtp message msgid=0badcafe size=1234 nrcpt=2 proto=ESMTP",
        ),
        (
            Event::Message {
                session: S,
                msgid: MsgId(0x0000_00ff),
                size: 0,
                nrcpt: 1,
                esmtp: false,
            },
            "3a2f1b0c4d5e6f70 smtp message msgid=000000ff size=0 nrcpt=1 proto=SMTP",
        ),
        (
            Event::Envelope {
                session: S,
                evpid: EVP,
                from: &sender,
                to: &rcpt,
            },
            "3a2f1b0c4d5e6f70 smtp envelope evpid=0badcafe00000001 \
             from=<alice@example.net> to=<bob@example.org>",
        ),
        (
            Event::Envelope {
                session: S,
                evpid: EVP,
                from: &null,
                to: &rcpt,
            },
            "3a2f1b0c4d5e6f70 smtp envelope evpid=0badcafe00000001 from=<> to=<bob@example.org>",
        ),
    ];
    for (event, expected) in cases {
        assert_eq!(event.to_string(), expected);
    }
}

#[test]
fn disconnection_reasons() {
    let cases = [
        (Reason::Quit, "reason=quit"),
        (Reason::Disconnect, "reason=disconnect"),
        (Reason::Timeout, "reason=timeout"),
        (Reason::Shutdown, "reason=shutdown"),
        (Reason::Injection, "reason=injection"),
        (
            Reason::IoError("Connection reset by peer"),
            "reason=\"io-error: Connection reset by peer\"",
        ),
    ];
    for (reason, expected) in cases {
        let line = Event::Disconnected { session: S, reason }.to_string();
        assert_eq!(
            line,
            format!("3a2f1b0c4d5e6f70 smtp disconnected {expected}")
        );
    }
}

#[test]
fn delivery_lines() {
    let from = addr("alice", "example.net");
    let to = addr("bob", "example.org");
    let rcpt = addr("postmaster", "example.org");
    let null = MailAddr::default();
    let delivered = Delivery {
        evpid: EVP,
        from: &from,
        to: &to,
        rcpt: &rcpt,
        delay: 2,
        result: DeliveryResult::Ok,
        stat: "Delivered",
    };
    let mda = Event::MdaDelivery {
        session: SessionId(0x77ab_0c1d_2e3f_4051),
        delivery: delivered,
        user: "bob",
    };
    assert_eq!(
        mda.to_string(),
        "77ab0c1d2e3f4051 mda delivery evpid=0badcafe00000001 from=<alice@example.net> \
         to=<bob@example.org> rcpt=<postmaster@example.org> user=bob delay=2s \
         result=Ok stat=Delivered"
    );
    let failed = Event::MdaDelivery {
        session: SessionId(1),
        delivery: Delivery {
            from: &null,
            delay: 3725,
            result: DeliveryResult::TempFail,
            stat: "Error (mda exited with status 75)",
            ..delivered
        },
        user: "bob",
    };
    assert_eq!(
        failed.to_string(),
        "0000000000000001 mda delivery evpid=0badcafe00000001 from=<> to=<bob@example.org> \
         rcpt=<postmaster@example.org> user=bob delay=1h2m5s result=TempFail \
         stat=Error (mda exited with status 75)"
    );
    let mta = Event::MtaDelivery {
        session: SessionId(2),
        delivery: Delivery {
            result: DeliveryResult::TempFail,
            stat: "451 4.3.0 Relaying is not available on this server",
            ..delivered
        },
        source: None,
        relay: "-",
    };
    assert_eq!(
        mta.to_string(),
        "0000000000000002 mta delivery evpid=0badcafe00000001 from=<alice@example.net> \
         to=<bob@example.org> rcpt=<postmaster@example.org> source=\"-\" relay=\"-\" \
         delay=2s result=\"TempFail\" stat=\"451 4.3.0 Relaying is not available on this server\""
    );
}

#[test]
fn queue_lines() {
    let from = addr("alice", "example.net");
    let to = addr("bob", "example.org");
    let alias = addr("team", "example.org");
    let null = MailAddr::default();
    let expired = Event::Queue {
        action: QueueAction::Expire,
        evpid: EVP,
        local: true,
        from: &from,
        to: &to,
        rcpt: &to,
        delay: 4 * 86_400 + 1,
        stat: "Envelope expired",
    };
    assert_eq!(
        expired.to_string(),
        "delivery: Expire for 0badcafe00000001: from=<alice@example.net>, \
         to=<bob@example.org>, rcpt=<->, delay=4d1s, stat=Envelope expired"
    );
    let removed = Event::Queue {
        action: QueueAction::Remove,
        evpid: EVP,
        local: false,
        from: &null,
        to: &to,
        rcpt: &alias,
        delay: 0,
        stat: "Removed by administrator",
    };
    assert_eq!(
        removed.to_string(),
        "relay: Remove for 0badcafe00000001: from=<@>, to=<bob@example.org>, \
         rcpt=<team@example.org>, delay=0s, stat=Removed by administrator"
    );
}

#[test]
fn delays_as_opensmtpd_writes_them() {
    let cases = [
        (0, "0s"),
        (1, "1s"),
        (60, "1m"),
        (65, "1m5s"),
        (3600, "1h"),
        (86_400, "1d"),
        (90_061, "1d1h1m1s"),
        (4 * 86_400 + 7200, "4d2h"),
    ];
    for (secs, text) in cases {
        assert_eq!(Delay(secs).to_string(), text, "{secs}");
    }
}

#[test]
fn escapes() {
    let cases: [(&[u8], &str); 6] = [
        (b"RCPT TO:<a@b>", "RCPT TO:<a@b>"),
        (b"a\"b\\c", "a\\\"b\\\\c"),
        (b"tab\there", "tab\\there"),
        (b"cr\rlf\n", "cr\\rlf\\n"),
        (b"nul\0del\x7f", "nul\\000del\\177"),
        ("caf\u{e9}".as_bytes(), "caf\\303\\251"),
    ];
    for (bytes, text) in cases {
        assert_eq!(escape(bytes), text);
    }
}

#[test]
fn commands_as_the_log_shows_them() {
    let cases: [(&[u8], Option<AuthStage>, &[u8]); 9] = [
        (b"RCPT TO:<x@example.org>", None, b"RCPT TO:<x@example.org>"),
        (b"AUTH LOGIN", None, b"AUTH LOGIN"),
        (b"AUTH PLAIN", None, b"AUTH PLAIN"),
        (
            b"AUTH PLAIN AGFsaWNlAHNlY3JldA==",
            None,
            b"AUTH PLAIN (...)",
        ),
        (b"auth login YWxpY2U=", None, b"auth login (username)"),
        (b"AUTH CRAM-MD5 abc", None, b"AUTH CRAM-MD5 (...)"),
        (
            b"AGFsaWNlAHNlY3JldA==",
            Some(AuthStage::Plain),
            b"AUTH PLAIN (...)",
        ),
        (
            b"YWxpY2U=",
            Some(AuthStage::Username),
            b"AUTH LOGIN (username)",
        ),
        (
            b"c2VjcmV0",
            Some(AuthStage::Password),
            b"AUTH LOGIN (password)",
        ),
    ];
    for (line, stage, shown) in cases {
        assert_eq!(
            shown_command(line, stage),
            shown,
            "{}",
            String::from_utf8_lossy(line)
        );
    }
}

/// fail2ban's `opensmtpd` filter ties lines together by session id (its
/// `<F-MLFID>`): `smtp connected address=<ADDR>` gives the host, and a
/// later `smtp failed-command ... result="5xx ..."` or `smtp
/// authentication ... result=permfail` of the same session counts as a
/// failure. The same expressions, over our lines.
#[test]
fn fail2ban_reads_the_failures() {
    let connected = regex::Regex::new(
        r"^(?P<mlfid>[0-9a-f]{16}) smtp connected address=(?P<host>\S+) host=\S+$",
    )
    .unwrap();
    let failed = regex::Regex::new(
        r#"^(?P<mlfid>[0-9a-f]{16}) smtp (?:failed-command command="(?:[^"\\]|\\.)*" result="5\d\d [^"]*"|authentication user=\S+ result=permfail)$"#,
    )
    .unwrap();
    let reply = Reply::invalid_recipient("nobody@example.org");
    let lines = [
        Event::Connected {
            session: S,
            address: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9))),
            host: "<unknown>",
        }
        .to_string(),
        Event::FailedCommand {
            session: S,
            command: b"RCPT TO:<nobody@example.org>",
            result: &reply,
        }
        .to_string(),
        Event::Authentication {
            session: S,
            user: "admin",
            result: AuthResult::Permfail,
        }
        .to_string(),
    ];
    let host = connected.captures(&lines[0]).unwrap();
    assert_eq!(&host["host"], "198.51.100.9");
    for line in &lines[1..] {
        let failure = failed.captures(line).unwrap();
        assert_eq!(failure["mlfid"], host["mlfid"], "{line}");
    }
    let ipv6 = Event::Connected {
        session: S,
        address: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        host: "<unknown>",
    }
    .to_string();
    assert_eq!(&connected.captures(&ipv6).unwrap()["host"], "IPv6:::1");
}
