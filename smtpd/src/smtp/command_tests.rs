//! Table-driven tests of the command parser, with the security battery.

use std::net::{IpAddr, Ipv4Addr};

use super::*;

fn mailbox(local: &str, domain: &str) -> Mailbox {
    Mailbox {
        local: local.to_owned(),
        domain: Some(Domain::Name(domain.to_owned())),
    }
}

fn mail(sender: ReversePath) -> MailFrom {
    MailFrom {
        sender,
        size: None,
        body: None,
        smtputf8: false,
        ret: None,
        envid: None,
        auth: None,
    }
}

fn rcpt(recipient: Mailbox) -> RcptTo {
    RcptTo {
        recipient,
        notify: None,
        orcpt: None,
    }
}

fn kind(line: &str) -> ErrorKind {
    Command::parse(line.as_bytes()).expect_err(line).kind
}

#[test]
fn simple_commands() {
    let cases: &[(&str, Command)] = &[
        ("DATA", Command::Data),
        ("data", Command::Data),
        ("RSET", Command::Rset),
        ("Quit", Command::Quit),
        ("QUIT ", Command::Quit),
        ("NOOP", Command::Noop),
        ("NOOP anything at all", Command::Noop),
        ("HELP", Command::Help),
        ("HELP MAIL", Command::Help),
        ("STARTTLS", Command::StartTls),
        ("VRFY postmaster", Command::Vrfy("postmaster".to_owned())),
        ("EXPN staff", Command::Expn("staff".to_owned())),
        (
            "HELO mx.example.org",
            Command::Helo(Domain::Name("mx.example.org".to_owned())),
        ),
        (
            "ehlo client",
            Command::Ehlo(Domain::Name("client".to_owned())),
        ),
        (
            "EHLO [192.0.2.7]",
            Command::Ehlo(Domain::Literal(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)))),
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(
            Command::parse(line.as_bytes()).as_ref(),
            Ok(expected),
            "{line}"
        );
    }
}

#[test]
fn mail_from() {
    let plain = mail(ReversePath::Mailbox(mailbox("user", "example.org")));
    let cases: Vec<(&str, MailFrom)> = vec![
        ("MAIL FROM:<user@example.org>", plain.clone()),
        ("mail from:<user@example.org>", plain.clone()),
        ("MAIL FROM: <user@example.org>", plain.clone()),
        ("MAIL FROM:<user@example.org>  ", plain.clone()),
        ("MAIL FROM:<>", mail(ReversePath::Null)),
        // Both parts empty: OpenSMTPD's null path too.
        ("MAIL FROM:<@>", mail(ReversePath::Null)),
        // An empty domain is none: the session completes it, as OpenSMTPD.
        (
            "MAIL FROM:<user@>",
            mail(ReversePath::Mailbox(Mailbox {
                local: "user".to_owned(),
                domain: None,
            })),
        ),
        (
            "MAIL FROM:<@a.example,@b.example:user@example.org>",
            plain.clone(),
        ),
        (
            "MAIL FROM:<user@example.org> SIZE=1000 BODY=8BITMIME",
            MailFrom {
                size: Some(1000),
                body: Some(Body::EightBitMime),
                ..plain.clone()
            },
        ),
        (
            "MAIL FROM:<user@example.org> body=7bit smtputf8 RET=hdrs ENVID=QQ+2B314 AUTH=<>",
            MailFrom {
                body: Some(Body::SevenBit),
                smtputf8: true,
                ret: Some(Ret::Headers),
                envid: Some("QQ+2B314".to_owned()),
                auth: Some("<>".to_owned()),
                ..plain.clone()
            },
        ),
        (
            "MAIL FROM:<user@example.org> RET=FULL AUTH=user+40example.org",
            MailFrom {
                ret: Some(Ret::Full),
                auth: Some("user+40example.org".to_owned()),
                ..plain
            },
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(
            Command::parse(line.as_bytes()),
            Ok(Command::Mail(expected)),
            "{line}"
        );
    }
}

#[test]
fn rcpt_to() {
    let plain = rcpt(mailbox("user", "example.org"));
    let cases: Vec<(&str, RcptTo)> = vec![
        ("RCPT TO:<user@example.org>", plain.clone()),
        ("rcpt to: <user@example.org>", plain.clone()),
        (
            "RCPT TO:<postmaster>",
            rcpt(Mailbox {
                local: "postmaster".to_owned(),
                domain: None,
            }),
        ),
        (
            "RCPT TO:<user@example.org> NOTIFY=SUCCESS,failure ORCPT=rfc822;user+40example.org",
            RcptTo {
                notify: Some(Notify::On {
                    success: true,
                    failure: true,
                    delay: false,
                }),
                orcpt: Some("rfc822;user+40example.org".to_owned()),
                ..plain.clone()
            },
        ),
        (
            "RCPT TO:<user@example.org> NOTIFY=never",
            RcptTo {
                notify: Some(Notify::Never),
                ..plain
            },
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(
            Command::parse(line.as_bytes()),
            Ok(Command::Rcpt(expected)),
            "{line}"
        );
    }
}

#[test]
fn auth() {
    let cases: &[(&str, Mechanism, Option<&[u8]>)] = &[
        ("AUTH PLAIN", Mechanism::Plain, None),
        (
            "auth plain AHVzZXIAcGFzcw==",
            Mechanism::Plain,
            Some(b"\0user\0pass"),
        ),
        ("AUTH LOGIN", Mechanism::Login, None),
        ("AUTH LOGIN dXNlcg==", Mechanism::Login, Some(b"user")),
        ("AUTH PLAIN =", Mechanism::Plain, Some(b"")),
    ];
    for (line, mechanism, initial) in cases {
        let Ok(Command::Auth(auth)) = Command::parse(line.as_bytes()) else {
            panic!("{line}");
        };
        assert_eq!(auth.mechanism, *mechanism, "{line}");
        assert_eq!(auth.initial.as_deref(), *initial, "{line}");
    }
    assert!(!format!("{:?}", Command::parse(b"AUTH PLAIN AHVzZXIAcGFzcw==")).contains("pass"));
    assert_eq!(kind("AUTH CRAM-MD5"), ErrorKind::Mechanism);
    assert_eq!(kind("AUTH"), ErrorKind::Arguments);
    assert_eq!(kind("AUTH PLAIN not-base64!"), ErrorKind::Arguments);
    assert_eq!(kind("AUTH PLAIN Zm9v Zm9v"), ErrorKind::Arguments);
}

#[test]
fn syntax_errors() {
    use ErrorKind::*;
    let param = |name: &str| BadParameter(name.to_owned());
    let cases: Vec<(&str, ErrorKind)> = vec![
        ("", UnknownCommand),
        ("FOO", UnknownCommand),
        ("MAILFROM:<a@b>", UnknownCommand),
        ("WIZ", UnknownCommand),
        ("\u{ff}DATA", UnknownCommand),
        ("DATA now", Arguments),
        ("RSET x", Arguments),
        ("QUIT now", Arguments),
        ("STARTTLS x", Arguments),
        ("HELO", MissingDomain("HELO")),
        ("EHLO", MissingDomain("EHLO")),
        ("EHLO two words", InvalidDomain),
        ("EHLO bad;name", InvalidDomain),
        ("EHLO bad|name", InvalidDomain),
        ("EHLO nul\0name", InvalidDomain),
        ("VRFY", Arguments),
        ("NOOP \u{7}", Arguments),
        ("MAIL", Arguments),
        ("MAIL TO:<a@b>", Arguments),
        // A path without its brackets is a bad address, as in OpenSMTPD.
        ("MAIL FROM:", Sender),
        ("MAIL FROM:a@b", Sender),
        ("MAIL FROM:<a@b", Sender),
        ("MAIL FROM:<<>>", Sender),
        ("MAIL FROM:<a@b>SIZE=1", Arguments),
        ("MAIL FROM:<a@b>>", Arguments),
        ("MAIL FROM:<a@b> SIZE=", Arguments),
        ("MAIL FROM:<a@b> =1", Arguments),
        ("MAIL FROM:<a@b> SIZE=1=2", Arguments),
        ("RCPT TO:a@b", Recipient),
        ("RCPT TO:", Recipient),
        ("RCPT TO:<<a@b>>", Recipient),
        ("RCPT TO:<a@b>x", Arguments),
        ("RCPT FROM:<a@b>", Arguments),
        ("MAIL FROM:<a@b> SIZE=x", param("SIZE")),
        ("MAIL FROM:<a@b> SIZE=99999999999999999999", param("SIZE")),
        ("MAIL FROM:<a@b> SIZE=1 SIZE=2", param("SIZE")),
        ("MAIL FROM:<a@b> BODY=BINARYMIME", param("BODY")),
        ("MAIL FROM:<a@b> SMTPUTF8=yes", param("SMTPUTF8")),
        ("MAIL FROM:<a@b> RET=ALL", param("RET")),
        ("MAIL FROM:<a@b> ENVID=a+2", param("ENVID")),
        ("MAIL FROM:<a@b> ENVID=a+2b", param("ENVID")),
        (
            "MAIL FROM:<a@b> XFOO=1",
            UnknownParameter("XFOO".to_owned()),
        ),
        (
            "MAIL FROM:<a@b> NOTIFY=NEVER",
            UnknownParameter("NOTIFY".to_owned()),
        ),
        ("RCPT TO:<a@b> SIZE=1", UnknownParameter("SIZE".to_owned())),
        ("RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS", param("NOTIFY")),
        ("RCPT TO:<a@b> NOTIFY=SUCCESS,SUCCESS", param("NOTIFY")),
        ("RCPT TO:<a@b> NOTIFY=", Arguments),
        ("RCPT TO:<a@b> NOTIFY", param("NOTIFY")),
        ("RCPT TO:<a@b> ORCPT=rfc822", param("ORCPT")),
        ("RCPT TO:<a@b> ORCPT=;a@b", param("ORCPT")),
        ("RCPT TO:<>", Recipient),
        ("RCPT TO:<@>", Recipient),
        ("MAIL FROM:<@b>", Sender),
    ];
    for (line, expected) in cases {
        assert_eq!(kind(line), expected, "{line:?}");
    }
}

/// Addresses that must never pass: CVE-2020-7247 payloads and friends.
/// Each is tried as sender and as recipient.
#[test]
fn security_battery_refused() {
    let payloads: &[&[u8]] = &[
        b";sleep 66;",
        b";sleep 66;@example.org",
        b"$(id)@example.org",
        b"`id`@example.org",
        b"`echo${IFS}dG91Y2ggL3RtcC9wd25lZA==|base64${IFS}-d|sh`@evil.example",
        b"echo{IFS}dG91Y2ggL3RtcC9wd25lZA==|base64{IFS}-d|bash@evil.example",
        b"touch${IFS}/tmp/pwned@example.org",
        b"a|b@example.org",
        b"a;id@example.org",
        b"x&reboot&@example.org",
        b"a&&id@example.org",
        b"a b@example.org",
        b"a\tb@example.org",
        b";for i in 0 1 2 3 4 5 6 7 8 9 a b c d;do read r;done;sh;exit 0;",
        b"\"|sleep 66\"@example.org",
        b"\"a|b\"@example.org",
        b"\"a\nb\"@example.org",
        b"\"user@evil.example\"@example.org",
        b"\"\"@example.org",
        b"a\0b@example.org",
        b"user@example.org\0evil",
        b"user@exa\0mple.org",
        b"a\rb@example.org",
        b"a\nb@example.org",
        b"user@evil.example@example.org",
        b"a:b@example.org",
        b"@evil.example",
        b"@a.example:",
        b"@a.example,b.example:user@example.org",
        b"@a;b:user@example.org",
        b"user@[127.0.0.1]x",
        b"user@[127.0.0.1",
        b"user@[IPv6:::1",
        b"user@[evil:tag]",
        b"user@[300.0.0.1]",
        b"user@.example.org",
        b"user@example..org",
        b"user@exa mple.org",
        b"user@example.org;",
        b"user@(comment)example.org",
        b"user(comment)@example.org",
        b"user\\@example.org",
        b"\xc3\x28@example.org",
        b"user@\xff",
        b"..@example.org",
    ];
    for payload in payloads {
        for (verb, expected) in [
            (&b"MAIL FROM:<"[..], ErrorKind::Sender),
            (b"RCPT TO:<", ErrorKind::Recipient),
        ] {
            let mut line = verb.to_vec();
            line.extend_from_slice(payload);
            line.push(b'>');
            let error = Command::parse(&line).expect_err(&String::from_utf8_lossy(&line));
            // A `>` inside the payload ends the path early: then the rest
            // is garbage (501) rather than a bad address (553); both refuse.
            assert!(
                error.kind == expected || error.kind == ErrorKind::Arguments,
                "{:?} gave {:?}",
                String::from_utf8_lossy(&line),
                error
            );
        }
    }
    // CVE-2020-7247's exploit as sent, with its 553.
    let error = Command::parse(b"MAIL FROM:<;sleep 66;>").unwrap_err();
    assert_eq!(
        Reply::from(&error).to_string(),
        "553 5.1.0 Sender address syntax error"
    );
    let error = Command::parse(b"RCPT TO:<;sleep 66;>").unwrap_err();
    assert_eq!(
        Reply::from(&error).to_string(),
        "501 5.1.3 Recipient address syntax error"
    );
}

/// Classic relay tricks that parse, with the domain that decides routing:
/// always the part after the last `@`, so the rules see the real target.
#[test]
fn security_battery_routing_domain() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "RCPT TO:<user%evil.example@example.org>",
            "user%evil.example",
            "example.org",
        ),
        (
            "RCPT TO:<evil.example!user@example.org>",
            "evil.example!user",
            "example.org",
        ),
        (
            "RCPT TO:<@example.org:user@evil.example>",
            "user",
            "evil.example",
        ),
        (
            "RCPT TO:<@example.org,@b.example:user@evil.example>",
            "user",
            "evil.example",
        ),
        ("RCPT TO:<user@[192.0.2.1]>", "user", "[192.0.2.1]"),
        (
            "RCPT TO:<user@[IPv6:2001:db8::1]>",
            "user",
            "[IPv6:2001:db8::1]",
        ),
    ];
    for (line, local, domain) in cases {
        let Ok(Command::Rcpt(rcpt)) = Command::parse(line.as_bytes()) else {
            panic!("{line}");
        };
        assert_eq!(rcpt.recipient.local, *local, "{line}");
        let got = rcpt.recipient.domain.map(|d| d.to_string());
        assert_eq!(got.as_deref(), Some(*domain), "{line}");
    }
    // The percent hack and bang paths have no domain at all here: local.
    let Ok(Command::Rcpt(rcpt)) = Command::parse(b"RCPT TO:<user%evil.example>") else {
        panic!("percent hack without domain");
    };
    assert_eq!(rcpt.recipient.domain, None);
}

#[test]
fn utf8_addresses_parse_and_are_flagged() {
    let line = "MAIL FROM:<j\u{f6}rg@b\u{fc}cher.example> SMTPUTF8";
    let Ok(Command::Mail(mail)) = Command::parse(line.as_bytes()) else {
        panic!("{line}");
    };
    assert!(mail.smtputf8);
    let ReversePath::Mailbox(sender) = mail.sender else {
        panic!("null sender");
    };
    assert!(!sender.is_ascii());
}

#[test]
fn errors_become_replies() {
    let cases: &[(&str, &str)] = &[
        ("BOGUS", "500 5.5.1 Invalid command: Command unrecognized"),
        ("MAIL FROM:x", "553 5.1.0 Sender address syntax error"),
        ("RCPT TO:x", "501 5.1.3 Recipient address syntax error"),
        ("RCPT", "501 5.5.4 Syntax: RCPT TO:<address>"),
        ("MAIL FROM:<a@b>x", "501 5.5.4 Syntax: MAIL FROM:<address>"),
        (
            "HELO",
            "501 5.5.1 Invalid command: HELO requires domain name",
        ),
        (
            "EHLO",
            "501 5.5.1 Invalid command: EHLO requires domain name",
        ),
        (
            "EHLO a;b",
            "501 5.5.4 Invalid command arguments: Invalid domain name",
        ),
        ("MAIL FROM:<a b>", "553 5.1.0 Sender address syntax error"),
        ("RCPT TO:<a b>", "501 5.1.3 Recipient address syntax error"),
        (
            "MAIL FROM:<a@b> FOO=1",
            "555 5.5.4 Invalid command arguments: Unsupported option FOO",
        ),
        (
            "MAIL FROM:<a@b> SIZE=x",
            "555 5.5.4 Invalid command arguments: Invalid value for SIZE",
        ),
        (
            "AUTH DIGEST-MD5",
            "504 5.5.4 Unsupported authentication mechanism",
        ),
    ];
    for (line, reply) in cases {
        let error = Command::parse(line.as_bytes()).unwrap_err();
        assert_eq!(Reply::from(&error).to_string(), *reply, "{line}");
        assert!(error.to_string().contains(error.syntax));
    }
}

mod strategies {
    use proptest::prelude::*;

    use super::*;

    fn mailbox() -> impl Strategy<Value = Mailbox> {
        let local = "[a-zA-Z0-9!#%'*/?^~+=_-]{1,12}(\\.[a-z0-9]{1,5}){0,2}";
        let domain = prop_oneof![
            "[a-z0-9]{1,10}(\\.[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?){0,3}"
                .prop_map(|d| Some(Domain::Name(d))),
            any::<[u8; 4]>().prop_map(|ip| Some(Domain::Literal(Ipv4Addr::from(ip).into()))),
            any::<[u16; 8]>()
                .prop_map(|ip| Some(Domain::Literal(std::net::Ipv6Addr::from(ip).into()))),
            Just(None),
        ];
        (local, domain).prop_map(|(local, domain)| Mailbox { local, domain })
    }

    fn xtext() -> impl Strategy<Value = String> {
        "([!-*,-<>-~]|\\+[0-9A-F]{2}){1,20}"
    }

    fn mail() -> impl Strategy<Value = MailFrom> {
        (
            prop_oneof![
                Just(ReversePath::Null),
                mailbox().prop_map(ReversePath::Mailbox)
            ],
            proptest::option::of(any::<u64>()),
            proptest::option::of(prop_oneof![Just(Body::SevenBit), Just(Body::EightBitMime)]),
            any::<bool>(),
            proptest::option::of(prop_oneof![Just(Ret::Full), Just(Ret::Headers)]),
            proptest::option::of(xtext()),
            proptest::option::of(prop_oneof![Just("<>".to_owned()), xtext()]),
        )
            .prop_map(
                |(sender, size, body, smtputf8, ret, envid, auth)| MailFrom {
                    sender,
                    size,
                    body,
                    smtputf8,
                    ret,
                    envid,
                    auth,
                },
            )
    }

    fn rcpt() -> impl Strategy<Value = RcptTo> {
        let notify = prop_oneof![
            Just(Notify::Never),
            (any::<bool>(), any::<bool>(), any::<bool>())
                .prop_filter("one word at least", |w| w.0 || w.1 || w.2)
                .prop_map(|(success, failure, delay)| Notify::On {
                    success,
                    failure,
                    delay
                }),
        ];
        (
            mailbox(),
            proptest::option::of(notify),
            proptest::option::of(xtext().prop_map(|x| format!("rfc822;{x}"))),
        )
            .prop_map(|(recipient, notify, orcpt)| RcptTo {
                recipient,
                notify,
                orcpt,
            })
    }

    pub(super) fn command() -> impl Strategy<Value = Command> {
        let auth = (
            prop_oneof![Just(Mechanism::Plain), Just(Mechanism::Login)],
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..30)),
        )
            .prop_map(|(mechanism, initial)| Command::Auth(Auth { mechanism, initial }));
        prop_oneof![
            "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,2}".prop_map(|d| Command::Helo(Domain::Name(d))),
            "[a-z0-9]{1,10}".prop_map(|d| Command::Ehlo(Domain::Name(d))),
            mail().prop_map(Command::Mail),
            rcpt().prop_map(Command::Rcpt),
            Just(Command::Data),
            Just(Command::Rset),
            Just(Command::Noop),
            Just(Command::Quit),
            Just(Command::Help),
            Just(Command::StartTls),
            "[a-z]{1,10}".prop_map(Command::Vrfy),
            "[a-z]{1,10}".prop_map(Command::Expn),
            auth,
        ]
    }
}

proptest::proptest! {
    #[test]
    fn parse_of_format_is_identity(command in strategies::command()) {
        let line = command.to_string();
        proptest::prop_assert_eq!(Command::parse(line.as_bytes()), Ok(command), "{}", line);
    }

    #[test]
    fn arbitrary_lines_never_panic(line in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
        let _ = Command::parse(&line);
    }

    #[test]
    fn smtp_alphabet_never_panics(line in "(MAIL FROM:|RCPT TO:|EHLO |AUTH )[<>@.:,;\\[\\]a-zA-Z0-9 =+\"|\\\\-]{0,60}") {
        let _ = Command::parse(line.as_bytes());
    }

    #[test]
    fn accepted_mailboxes_print_back(local in "[a-z0-9!#%'*/?^~+=_-]{1,20}(\\.[a-z0-9]{1,5}){0,2}", domain in "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,3}") {
        let text = format!("{local}@{domain}");
        let mailbox = Mailbox::parse(text.as_bytes()).expect("valid address");
        proptest::prop_assert_eq!(mailbox.to_string(), text);
    }
}
