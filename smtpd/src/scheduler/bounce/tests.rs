use mail_parser::{MessageParser, MimeHeaders, PartType};

use super::message::{duration, rfc5322_date};
use super::*;
use crate::queue::envelope::{Flags, Mda};
use crate::scheduler::fixture::{addr, envelope};

const NOW: u64 = 1_764_085_209; // Tue, 25 Nov 2025 15:40:09 +0000
const MSG: u32 = 0x0bad_cafe;

const ORIGINAL: &str = "Received: from laptop.example.net (laptop.example.net [192.0.2.44])\r\n\
\tby mx.example.org (smtpd) with ESMTP id 0badcafe;\r\n\
\tMon, 24 Nov 2025 10:00:00 +0000\r\n\
Received: from elsewhere by laptop.example.net; Mon, 24 Nov 2025 09:59:00 +0000\r\n\
From: Alice <alice@example.org>\r\n\
To: bob@example.com, carol@example.com\r\n\
Subject: quarterly figures\r\n\
Message-ID: <1@example.org>\r\n\
\r\n\
Hello Bob,\r\n\
.\r\n\
the figures are attached.\r\n";

/// The bounce envelope of a failure for `dest`, with this error.
fn failed(low: u32, dest: &str, errorline: &str, status: (u8, u8)) -> Envelope {
    let mut e = envelope(MSG, low, Kind::Mda(Mda::default()), NOW - 3600);
    e.dest = addr(dest);
    e.rcpt = addr(dest);
    e.set_errorline(errorline);
    e.status = Some(Status {
        class: status.0,
        code: status.1,
    });
    let mut b = bounce_envelope(&e, Bounce::Failed, NOW).expect("bounced");
    b.id = Some(EvpId::new(MsgId(MSG), 0x100 + low));
    b
}

/// `Name: value` fields in order.
type Fields = Vec<(String, String)>;

fn parse_fields(block: &str) -> Fields {
    block
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(": ").expect("field");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The delivery-status part: the per-message fields, then one list of
/// fields per recipient.
fn delivery_status(text: &str) -> (Fields, Vec<Fields>) {
    let normalized = text.replace("\r\n", "\n");
    let mut blocks = normalized.split("\n\n").filter(|b| !b.trim().is_empty());
    let message = parse_fields(blocks.next().expect("per-message fields"));
    (message, blocks.map(parse_fields).collect())
}

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn failure_report_for_two_recipients_with_the_whole_message() {
    let mut second = failed(2, "carol@example.com", "Envelope expired", (5, 47));
    second.rcpt = addr("team@example.com");
    let envelopes = [
        failed(1, "bob@example.com", "550 5.1.1 Invalid recipient", (5, 11)),
        second,
    ];
    let groups = group(&envelopes);
    assert_eq!(groups.len(), 1);
    let built = groups[0]
        .build(ORIGINAL.as_bytes(), NOW, 42)
        .expect("built");
    assert_eq!(built.sender, MailAddr::default());
    assert_eq!(built.recipient, addr("alice@example.org"));
    assert_eq!(built.smtpname, "mx.example.org");
    assert_eq!(
        built.envelopes,
        vec![EvpId::new(MsgId(MSG), 0x101), EvpId::new(MsgId(MSG), 0x102)]
    );
    let text = String::from_utf8(built.data.clone()).unwrap();
    assert_eq!(text.matches('\n').count(), text.matches("\r\n").count());

    let msg = MessageParser::default().parse(&built.data).expect("parses");
    assert_eq!(msg.subject(), Some("Delivery status notification: failed"));
    let from = msg.from().and_then(|a| a.first()).expect("From");
    assert_eq!(from.address(), Some("MAILER-DAEMON@mx.example.org"));
    assert_eq!(from.name.as_deref(), Some("Mailer Daemon"));
    let to = msg.to().and_then(|a| a.first()).expect("To");
    assert_eq!(to.address(), Some("alice@example.org"));
    assert_eq!(msg.date().expect("Date").to_timestamp(), NOW as i64);
    assert_eq!(
        msg.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
    let ct = msg.root_part().content_type().expect("Content-Type");
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert_eq!(
        ct.attribute("boundary"),
        Some("0000000000000042/mx.example.org")
    );

    let PartType::Multipart(children) = &msg.root_part().body else {
        panic!("not multipart");
    };
    assert_eq!(children.len(), 3);
    let notice = &msg.parts[children[0] as usize];
    let ct = notice.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("plain")));
    assert_eq!(ct.attribute("charset"), Some("us-ascii"));
    assert_eq!(notice.content_description(), Some("Notification"));
    assert_eq!(
        notice.text_contents().unwrap().replace("\r\n", "\n"),
        "    Hi!\n\n    This is the MAILER-DAEMON, please DO NOT REPLY to this email.\n\n    \
An error has occurred while attempting to deliver a message for\n    \
the following list of recipients:\n\n\
bob@example.com: 550 5.1.1 Invalid recipient\n\
carol@example.com: Envelope expired\n\n    \
Below is a copy of the original message:\n"
    );

    let report = &msg.parts[children[1] as usize];
    let ct = report.content_type().unwrap();
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("message", Some("delivery-status"))
    );
    assert_eq!(report.content_description(), Some("Delivery Report"));
    let (per_message, recipients) =
        delivery_status(std::str::from_utf8(report.contents()).unwrap());
    assert_eq!(
        per_message,
        fields(&[
            ("Reporting-MTA", "dns; mx.example.org"),
            ("Arrival-Date", "Mon, 24 Nov 2025 10:00:00 +0000"),
        ])
    );
    assert_eq!(
        recipients,
        vec![
            fields(&[
                ("Final-Recipient", "rfc822; bob@example.com"),
                ("Action", "failed"),
                ("Status", "5.1.1"),
                ("Diagnostic-Code", "smtp; 550 5.1.1 Invalid recipient"),
            ]),
            fields(&[
                ("Final-Recipient", "rfc822; carol@example.com"),
                ("Original-Recipient", "rfc822; team@example.com"),
                ("Action", "failed"),
                ("Status", "5.4.7"),
                ("Diagnostic-Code", "X-Local; Envelope expired"),
            ]),
        ]
    );

    let original = &msg.parts[children[2] as usize];
    let ct = original.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("message", Some("rfc822")));
    assert_eq!(original.content_description(), Some("Undelivered Message"));
    let inner = original.message().expect("nested message");
    assert_eq!(inner.subject(), Some("quarterly figures"));
    assert_eq!(inner.message_id(), Some("1@example.org"));
    assert_eq!(
        inner.body_text(0).unwrap().replace("\r\n", "\n"),
        "Hello Bob,\n.\nthe figures are attached.\n"
    );
}

#[test]
fn ret_hdrs_returns_only_the_headers_and_dsn_fields_are_kept() {
    let mut e = failed(1, "bob@example.com", "550 no", (5, 0));
    e.dsn_ret = Some(DsnRet::Hdrs);
    e.dsn_envid = "QQ+2Bq1".to_owned();
    e.dsn_orcpt = "rfc822;b+2Bo@example.com".to_owned();
    let groups = group([&e]);
    assert!(!groups[0].returns_full_message());
    // LF line endings in the original come out as CRLF.
    let lf = ORIGINAL.replace("\r\n", "\n");
    let built = groups[0].build(lf.as_bytes(), NOW, 7).unwrap();
    let text = String::from_utf8(built.data.clone()).unwrap();
    assert_eq!(text.matches('\n').count(), text.matches("\r\n").count());
    assert!(!text.contains("Hello Bob"));

    let msg = MessageParser::default().parse(&built.data).unwrap();
    let PartType::Multipart(children) = &msg.root_part().body else {
        panic!("not multipart");
    };
    let report = &msg.parts[children[1] as usize];
    let (per_message, recipients) =
        delivery_status(std::str::from_utf8(report.contents()).unwrap());
    assert_eq!(
        per_message[1],
        ("Original-Envelope-Id".to_owned(), "QQ+q1".to_owned())
    );
    assert_eq!(
        recipients[0][..2],
        fields(&[
            ("Final-Recipient", "rfc822; bob@example.com"),
            ("Original-Recipient", "rfc822; b+o@example.com"),
        ])[..]
    );
    let headers = &msg.parts[children[2] as usize];
    let ct = headers.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("rfc822-headers")));
    assert_eq!(headers.content_description(), Some("Message headers"));
    let expected_headers = ORIGINAL.split("\r\n\r\n").next().unwrap();
    assert_eq!(
        headers.text_contents().unwrap().trim_end(),
        expected_headers
    );
}

#[test]
fn delay_warning_wording_and_headers_only() {
    let mut e = envelope(MSG, 1, Kind::Mta, NOW - 5 * 3600);
    e.dsn_ret = Some(DsnRet::Full);
    e.set_errorline("421 mx.example.com: Connection refused");
    e.status = Some(Status { class: 4, code: 42 });
    let mut b = bounce_envelope(
        &e,
        Bounce::Delayed {
            ttl: 4 * 24 * 3600,
            delay: 4 * 3600,
        },
        NOW,
    )
    .unwrap();
    b.id = Some(EvpId::new(MsgId(MSG), 9));
    let groups = group([&b]);
    assert_eq!(groups[0].action, Action::Delayed);
    assert!(!groups[0].returns_full_message());
    let built = groups[0].build(ORIGINAL.as_bytes(), NOW, 1).unwrap();
    let msg = MessageParser::default().parse(&built.data).unwrap();
    assert_eq!(msg.subject(), Some("Delivery status notification: delayed"));
    let PartType::Multipart(children) = &msg.root_part().body else {
        panic!("not multipart");
    };
    let notice = msg.parts[children[0] as usize]
        .text_contents()
        .unwrap()
        .replace("\r\n", "\n");
    assert!(notice.contains(
        "    A message is delayed for more than 4 hours for the following\n    list of recipients:\n\n\
bob@example.com: 421 mx.example.com: Connection refused\n\n    \
Please note that this is only a temporary failure report.\n    \
The message is kept in the queue for up to 4 days.\n    \
You DO NOT NEED to re-send the message to these recipients.\n\n    \
Below is a copy of the original message:\n"
    ), "{notice}");
    let report = &msg.parts[children[1] as usize];
    let (_, recipients) = delivery_status(std::str::from_utf8(report.contents()).unwrap());
    assert_eq!(
        recipients[0],
        fields(&[
            ("Final-Recipient", "rfc822; bob@example.com"),
            ("Action", "delayed"),
            ("Status", "4.4.2"),
            (
                "Diagnostic-Code",
                "smtp; 421 mx.example.com: Connection refused"
            ),
        ])
    );
    let ct = msg.parts[children[2] as usize].content_type().unwrap();
    assert_eq!(ct.subtype(), Some("rfc822-headers"));
}

#[test]
fn success_and_relay_notices_and_remote_mta() {
    let mut e = envelope(MSG, 1, Kind::Mda(Mda::default()), NOW);
    e.dsn_notify = Notify(Notify::SUCCESS);
    e.set_errorline("250 Delivered");
    e.status = Some(Status { class: 2, code: 0 });
    let b = bounce_envelope(&e, Bounce::Delivered, NOW).unwrap();
    let mut groups = group([&b]);
    assert_eq!(groups[0].action, Action::Delivered);
    let built = groups[0].build(ORIGINAL.as_bytes(), NOW, 1).unwrap();
    let text = String::from_utf8(built.data).unwrap();
    assert!(text.contains("    Your message was successfully delivered to these recipients.\r\n"));
    assert!(text.contains("Action: delivered\r\nStatus: 2.0.0\r\n"));
    assert!(built.envelopes.is_empty());

    groups[0].action = Action::Relayed;
    groups[0].reports[0].remote_mta = Some("mx.example.com".to_owned());
    let built = groups[0].build(ORIGINAL.as_bytes(), NOW, 1).unwrap();
    let msg = MessageParser::default().parse(&built.data).unwrap();
    assert_eq!(msg.subject(), Some("Delivery status notification: relayed"));
    let text = String::from_utf8(built.data.clone()).unwrap();
    assert!(text.contains("    Your message was relayed to these recipients.\r\n"));
    assert!(
        text.contains("Action: relayed\r\nStatus: 2.0.0\r\nRemote-MTA: dns; mx.example.com\r\n")
    );
}

#[test]
fn no_bounce_of_bounces_nor_to_the_null_sender() {
    let base = envelope(MSG, 1, Kind::Mta, NOW);
    let with = |f: &dyn Fn(&mut Envelope)| {
        let mut e = base.clone();
        f(&mut e);
        e
    };
    let n = |bits| Notify(bits);
    // (envelope, report, refusal)
    let cases: Vec<(Envelope, Bounce, Option<NoBounce>)> = vec![
        (base.clone(), Bounce::Failed, None),
        (
            with(&|e| e.sender = MailAddr::default()),
            Bounce::Failed,
            Some(NoBounce::NoReturnPath),
        ),
        (
            with(&|e| {
                e.flags = Flags {
                    bounce: true,
                    ..Flags::default()
                }
            }),
            Bounce::Failed,
            Some(NoBounce::DoubleBounce),
        ),
        (
            with(&|e| e.kind = Kind::Bounce(Bounce::Failed)),
            Bounce::Failed,
            Some(NoBounce::DoubleBounce),
        ),
        (
            with(&|e| e.dsn_notify = n(Notify::NEVER)),
            Bounce::Failed,
            Some(NoBounce::NotifyNever),
        ),
        (
            base.clone(),
            Bounce::Delivered,
            Some(NoBounce::NotRequested),
        ),
        (
            with(&|e| e.dsn_notify = n(Notify::SUCCESS)),
            Bounce::Failed,
            Some(NoBounce::NotRequested),
        ),
        (
            with(&|e| e.dsn_notify = n(Notify::FAILURE)),
            Bounce::Delayed { ttl: 1, delay: 1 },
            Some(NoBounce::NotRequested),
        ),
        (
            with(&|e| e.dsn_notify = n(Notify::FAILURE | Notify::DELAY)),
            Bounce::Delayed { ttl: 1, delay: 1 },
            None,
        ),
        (base.clone(), Bounce::Delayed { ttl: 1, delay: 1 }, None),
        (
            with(&|e| e.dsn_notify = n(Notify::SUCCESS)),
            Bounce::Delivered,
            None,
        ),
    ];
    for (e, report, expected) in cases {
        let got = bounce_envelope(&e, report, NOW + 5);
        assert_eq!(got.as_ref().err().copied(), expected, "{report:?} {:?}", e);
        if let Ok(b) = got {
            assert_eq!(b.id, None);
            assert_eq!(b.kind, Kind::Bounce(report));
            assert_eq!(
                (b.ctime, b.retry, b.last_try, b.ttl),
                (NOW + 5, 0, 0, BOUNCE_TTL)
            );
            assert_eq!((b.sender, b.dest), (e.sender, e.dest));
        }
    }
    assert_eq!(NoBounce::DoubleBounce.to_string(), "double bounce");
    assert_eq!(NoBounce::NoReturnPath.to_string(), "no return path");
}

/// A writer that keeps what the log subscriber writes.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn dropped_bounces_are_logged() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let mut e = envelope(MSG, 7, Kind::Mta, NOW);
    e.flags.bounce = true;
    tracing::subscriber::with_default(subscriber, || {
        assert_eq!(
            bounce_envelope(&e, Bounce::Failed, NOW),
            Err(NoBounce::DoubleBounce)
        );
    });
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("evp:0badcafe00000007: no bounce to <alice@example.org>: double bounce"),
        "{text}"
    );
}

#[test]
fn grouping_follows_opensmtpd_keys() {
    let a = failed(1, "a@example.com", "550 a", (5, 0));
    let b = failed(2, "b@example.com", "550 b", (5, 0));
    let mut other_message = failed(3, "c@example.com", "550 c", (5, 0));
    other_message.id = Some(EvpId::new(MsgId(MSG + 1), 1));
    let mut delayed = failed(4, "d@example.com", "421 d", (4, 0));
    delayed.kind = Kind::Bounce(Bounce::Delayed { ttl: 10, delay: 5 });
    let mut hdrs = failed(5, "e@example.com", "550 e", (5, 0));
    hdrs.dsn_ret = Some(DsnRet::Hdrs);
    let mut other_name = failed(6, "f@example.com", "550 f", (5, 0));
    other_name.smtpname = "mx2.example.org".to_owned();
    let c = failed(7, "g@example.com", "550 g", (5, 0));
    let groups = group([&a, &b, &other_message, &delayed, &hdrs, &other_name, &c]);
    let shape: Vec<(Action, Vec<String>)> = groups
        .iter()
        .map(|g| {
            (
                g.action,
                g.reports.iter().map(|r| r.dest.to_string()).collect(),
            )
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        shape,
        vec![
            (
                Action::Failed,
                s(&["a@example.com", "b@example.com", "g@example.com"])
            ),
            (Action::Failed, s(&["c@example.com"])),
            (Action::Delayed, s(&["d@example.com"])),
            (Action::Failed, s(&["e@example.com"])),
            (Action::Failed, s(&["f@example.com"])),
        ]
    );
    assert_eq!((groups[2].delay, groups[2].ttl), (5, 10));
}

#[test]
fn action_is_derived_from_the_status_class() {
    let mut e = envelope(MSG, 1, Kind::Bounce(Bounce::Failed), NOW);
    // (status, kind, action)
    let cases = [
        (Some((2, 0)), Bounce::Failed, Action::Delivered),
        (Some((4, 46)), Bounce::Failed, Action::Delayed),
        (Some((5, 47)), Bounce::Delivered, Action::Failed),
        (None, Bounce::Failed, Action::Failed),
        (None, Bounce::Delayed { ttl: 0, delay: 0 }, Action::Delayed),
        (None, Bounce::Delivered, Action::Delivered),
    ];
    for (status, kind, action) in cases {
        e.status = status.map(|(class, code)| Status { class, code });
        e.kind = Kind::Bounce(kind);
        assert_eq!(Action::of(&e), action, "{status:?} {kind:?}");
    }
    // A loop is reported as a delay (OpenSMTPD 7.8), an expiry as 5.4.7.
    let mut l = envelope(MSG, 1, Kind::Mta, NOW);
    mark_loop(&mut l);
    assert_eq!(
        (l.errorline.as_str(), l.status.unwrap().to_string()),
        ("Loop detected", "4.4.6".to_owned())
    );
    assert_eq!(Action::of(&l), Action::Delayed);
    mark_expired(&mut l);
    assert_eq!(
        (l.errorline.as_str(), l.status.unwrap().to_string()),
        ("Envelope expired", "5.4.7".to_owned())
    );
    assert_eq!(Action::of(&l), Action::Failed);
}

#[test]
fn internal_reply_codes_are_cut_from_the_notice() {
    let e = failed(1, "bob@example.com", "600 internal trouble", (5, 0));
    let f = failed(2, "carol@example.com", "100 x", (5, 0));
    // Four characters or fewer are kept as they are.
    let g = failed(3, "dan@example.com", "6000", (5, 0));
    let built = group([&e, &f, &g])[0].build(&b""[..], NOW, 1).unwrap();
    let text = String::from_utf8(built.data).unwrap();
    assert!(
        text.contains("\r\nbob@example.com: internal trouble\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\ncarol@example.com: x\r\n"), "{text}");
    assert!(text.contains("\r\ndan@example.com: 6000\r\n"), "{text}");
    // No Received header in the original: no Arrival-Date.
    assert!(!text.contains("Arrival-Date"));
}

#[test]
fn durations_and_dates() {
    let cases = [
        (0, "0 seconds"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "1 minute"),
        (3599, "59 minutes"),
        (3600, "1 hour"),
        (4 * 3600, "4 hours"),
        (86_399, "23 hours"),
        (86_400, "1 day"),
        (4 * 86_400, "4 days"),
    ];
    for (secs, text) in cases {
        assert_eq!(duration(secs), text);
    }
    let dates = [
        (0, "Thu, 1 Jan 1970 00:00:00 +0000"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
        (NOW, "Tue, 25 Nov 2025 15:40:09 +0000"),
        (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 +0000"),
    ];
    for (secs, text) in dates {
        assert_eq!(rfc5322_date(secs), text);
    }
}

#[test]
fn eight_bit_originals_are_declared_8bit() {
    let e = failed(1, "bob@example.com", "550 no", (5, 0));
    let original = "Subject: caf\u{e9}\r\n\r\nd\u{e9}j\u{e0} vu\r\n";
    let built = group([&e])[0].build(original.as_bytes(), NOW, 1).unwrap();
    let msg = MessageParser::default().parse(&built.data).unwrap();
    let PartType::Multipart(children) = &msg.root_part().body else {
        panic!("not multipart");
    };
    let part = &msg.parts[children[2] as usize];
    assert_eq!(
        part.content_transfer_encoding(),
        Some("8bit"),
        "{:?}",
        part.headers
    );
    let inner = part.message().expect("nested message");
    assert_eq!(inner.subject(), Some("caf\u{e9}"));
    assert_eq!(inner.body_text(0).unwrap().trim_end(), "d\u{e9}j\u{e0} vu");
    // An ASCII original gets no such header.
    let built = group([&e])[0].build(ORIGINAL.as_bytes(), NOW, 1).unwrap();
    let text = String::from_utf8(built.data).unwrap();
    assert!(!text.contains("Content-Transfer-Encoding"));
}

#[test]
fn a_failing_reader_is_an_error() {
    struct Broken;
    impl io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }
    let e = failed(1, "bob@example.com", "550 no", (5, 0));
    let err = group([&e])[0]
        .build(io::BufReader::new(Broken), NOW, 1)
        .unwrap_err();
    assert_eq!(err.to_string(), "disk on fire");
}
