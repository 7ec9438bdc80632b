use proptest::prelude::*;

use super::*;

const EXAMPLE: &str = "version: 3
dispatcher: outbound
type: mta
smtpname: mx.example.org
helo: laptop.example.net
hostname: laptop.example.net
username: alice
errorline: 421 mx.example.com: Connection refused
sockaddr: 192.0.2.44
sender: alice@example.org
rcpt: bob@example.com
dest: bob@example.com
ctime: 1731000000
last-try: 1731000401
last-bounce: 0
ttl: 0
retry: 1
flags: authenticated
dsn-notify: 0
esc-class: 4
esc-code: 42
";

fn addr(user: &str, domain: &str) -> MailAddr {
    MailAddr {
        user: user.into(),
        domain: domain.into(),
    }
}

fn local() -> Envelope {
    Envelope {
        id: None,
        dispatcher: "local".into(),
        tag: String::new(),
        kind: Kind::Mda(Mda {
            exec: String::new(),
            subaddress: "lists".into(),
            user: "bob".into(),
        }),
        smtpname: "mx.example.org".into(),
        helo: "client.example.net".into(),
        hostname: "<unknown>".into(),
        username: String::new(),
        errorline: String::new(),
        source: Source::V6("2001:db8::1".parse().unwrap()),
        sender: MailAddr::default(),
        rcpt: addr("bob+lists", "example.org"),
        dest: addr("bob", "example.org"),
        ctime: 1_731_000_000,
        last_try: 0,
        last_bounce: 0,
        ttl: 0,
        retry: 0,
        flags: Flags::default(),
        dsn_notify: Notify(Notify::FAILURE | Notify::DELAY),
        dsn_ret: Some(DsnRet::Hdrs),
        dsn_envid: "QQ314159".into(),
        dsn_orcpt: "rfc822;bob+lists@example.org".into(),
        status: None,
    }
}

#[test]
fn reads_the_reference_example_and_writes_it_back_identically() {
    let e = Envelope::parse(EXAMPLE.as_bytes(), None).unwrap();
    assert_eq!(e.kind, Kind::Mta);
    assert_eq!(e.dispatcher, "outbound");
    assert_eq!(e.source, Source::V4("192.0.2.44".parse().unwrap()));
    assert_eq!(e.sender, addr("alice", "example.org"));
    assert_eq!(e.retry, 1);
    assert!(e.flags.authenticated && !e.flags.bounce);
    assert_eq!(e.status, Some(Status { class: 4, code: 42 }));
    assert_eq!(e.status.unwrap().to_string(), "4.4.2");
    assert_eq!(e.errorline, "421 mx.example.com: Connection refused");
    assert_eq!(String::from_utf8(e.to_bytes().unwrap()).unwrap(), EXAMPLE);
}

#[test]
fn writes_fields_in_opensmtpd_order_and_omits_empty_ones() {
    let mut e = local();
    e.id = Some(EvpId(0x0bad_cafe_0000_0001));
    assert_eq!(e.msgid(), Some(MsgId(0x0bad_cafe)));
    let text = String::from_utf8(e.to_bytes().unwrap()).unwrap();
    assert_eq!(
        text,
        "version: 3
dispatcher: local
type: mda
smtpname: mx.example.org
helo: client.example.net
hostname: <unknown>
sockaddr: [2001:db8::1]
sender: @
rcpt: bob+lists@example.org
dest: bob@example.org
ctime: 1731000000
last-try: 0
last-bounce: 0
ttl: 0
retry: 0
dsn-notify: 6
dsn-ret: HDRS
dsn-envid: QQ314159
dsn-orcpt: rfc822;bob+lists@example.org
mda-subaddress: lists
mda-user: bob
"
    );
    let back = Envelope::parse(text.as_bytes(), e.id).unwrap();
    assert_eq!(back, e);
}

#[test]
fn bounces_round_trip_and_old_bounce_names_are_read() {
    let mut e = local();
    e.kind = Kind::Bounce(Bounce::Delayed {
        ttl: 345_600,
        delay: 14_400,
    });
    e.flags = Flags {
        bounce: true,
        internal: true,
        authenticated: false,
    };
    e.ttl = 604_800;
    let bytes = e.to_bytes().unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.contains("flags: bounce internal\n"));
    assert!(text.ends_with("bounce-ttl: 345600\nbounce-delay: 14400\nbounce-type: delayed\n"));
    assert_eq!(Envelope::parse(&bytes, None).unwrap(), e);

    let base = "version: 3\ndispatcher: d\ntype: bounce\nhelo: h\nhostname: h\n";
    for (name, expected) in [
        ("error", Bounce::Failed),
        ("failed", Bounce::Failed),
        ("dsn", Bounce::Delivered),
        ("DELIVERED", Bounce::Delivered),
        ("warn", Bounce::Delayed { ttl: 0, delay: 0 }),
    ] {
        let text = format!("{base}bounce-type: {name}\n");
        let e = Envelope::parse(text.as_bytes(), None).unwrap();
        assert_eq!(e.kind, Kind::Bounce(expected), "{name}");
    }
    let zeros = format!("{base}bounce-type: failed\nbounce-ttl: 0\nbounce-delay: 0\n");
    assert!(Envelope::parse(zeros.as_bytes(), None).is_ok());
}

#[test]
fn the_loader_is_lenient_where_opensmtpd_is() {
    let text = "VERSION:3\nDispatcher :\tlocal\ntype: MTA\nhelo: a\nhostname: b\n\
                helo: c\nflags: authenticated,internal|enqueued\ndsn-ret: full\n\
                sockaddr: local\nsender: weird@local@example.org";
    let e = Envelope::parse(text.as_bytes(), None).unwrap();
    assert_eq!(e.dispatcher, "local");
    assert_eq!(e.kind, Kind::Mta);
    assert_eq!(e.helo, "c", "a repeated key keeps the last value");
    assert!(e.flags.authenticated && e.flags.internal && !e.flags.bounce);
    assert_eq!(e.dsn_ret, Some(DsnRet::Full));
    assert_eq!(e.source, Source::Local);
    assert_eq!(e.sender, addr("weird@local", "example.org"));
}

#[test]
fn strict_parse_names_the_line_or_field_at_fault() {
    let ok = "version: 3\ndispatcher: d\ntype: mta\nhelo: h\nhostname: h\n";
    let cases: &[(&str, &str)] = &[
        ("", "envelope field version is missing or empty"),
        (
            "version: 2\n",
            "envelope version 2 is not supported (expected 3)",
        ),
        ("version: 3\n\ntype: mta\n", "envelope line 2: blank line"),
        (
            "version: 3\nfoo: bar\n",
            "envelope line 2: unknown key \"foo\"",
        ),
        (
            "version: 3\nhelo h\n",
            "envelope line 2: expected ':' after the key",
        ),
        (
            ": x\n",
            "envelope line 1: expected a key of letters, digits and -",
        ),
        (
            "version: 3\ndispatcher: d\nhelo: h\nhostname: h\n",
            "envelope field type is missing or empty",
        ),
        (
            "version: 3\ndispatcher: d\ntype: lmtp\n",
            "envelope field type: invalid value \"lmtp\": expected mda, mta or bounce",
        ),
        (
            "version: 3\ntype: mta\nhelo: h\nhostname: h\n",
            "envelope field dispatcher is missing or empty",
        ),
        (
            "version: 3\ndispatcher: d\ntype: mta\nhostname: h\n",
            "envelope field helo is missing or empty",
        ),
        (
            "version: 3\ndispatcher: d\ntype: mta\nhelo: h\n",
            "envelope field hostname is missing or empty",
        ),
        (
            "version: 3\ndispatcher: d\ntype: mta\nmda-user: bob\n",
            "envelope field mda-user is not allowed for type mta",
        ),
        (
            "version: 3\ndispatcher: d\ntype: bounce\nbounce-type: failed\nbounce-delay: 5\n",
            "envelope field bounce-delay is not allowed for type bounce (not delayed)",
        ),
        (
            "version: 3\ndispatcher: d\ntype: bounce\n",
            "envelope field bounce-type is missing or empty",
        ),
    ];
    for (text, message) in cases {
        let err = Envelope::parse(text.as_bytes(), None).unwrap_err();
        assert_eq!(err.to_string(), *message, "{text:?}");
    }
    for (line, message) in [
        ("retry: 65536", "envelope field retry: invalid value \"65536\": expected a decimal number in range"),
        ("ctime: -1", "envelope field ctime: invalid value \"-1\": expected a decimal number in range"),
        ("ctime: +1", "envelope field ctime: invalid value \"+1\": expected a decimal number in range"),
        ("sockaddr: 300.1.1.1", "envelope field sockaddr: invalid value \"300.1.1.1\": expected local, an IPv4 address or [IPv6]"),
        ("sockaddr: ::1", "envelope field sockaddr: invalid value \"::1\": expected local, an IPv4 address or [IPv6]"),
        ("sender: nobody", "envelope field sender: invalid value \"nobody\": expected user@domain"),
        ("flags: trusted", "envelope field flags: invalid value \"trusted\": expected authenticated, bounce, internal"),
        ("dsn-ret: BODY", "envelope field dsn-ret: invalid value \"BODY\": expected FULL or HDRS"),
        ("dsn-notify: 16", "envelope field dsn-notify: invalid value \"16\": expected a decimal number in range"),
        ("esc-class: 3", "envelope field esc-class: invalid value \"3\": expected 2, 4 or 5"),
        ("esc-class: 5\nesc-code: 100", "envelope field esc-code: invalid value \"100\": expected a decimal number in range"),
    ] {
        let text = format!("{ok}{line}\n");
        let err = Envelope::parse(text.as_bytes(), None).unwrap_err();
        assert_eq!(err.to_string(), message, "{line}");
    }
    let err = Envelope::parse(b"version: 3\nhelo: \xff\n", None).unwrap_err();
    assert_eq!(err.to_string(), "envelope line 2: not UTF-8");
}

#[test]
fn writing_refuses_what_would_not_read_back() {
    let mut e = local();
    e.helo = "evil\nversion: 9".into();
    assert!(matches!(
        e.to_bytes(),
        Err(EnvelopeError::Invalid { key: "helo", .. })
    ));
    let mut e = local();
    e.tag = " padded".into();
    assert!(matches!(
        e.to_bytes(),
        Err(EnvelopeError::Invalid { key: "tag", .. })
    ));
    let mut e = local();
    e.hostname.clear();
    assert_eq!(
        e.to_bytes(),
        Err(EnvelopeError::Missing { key: "hostname" })
    );
    let mut e = local();
    e.dsn_envid = "x".repeat(MAX_DSN_ENVID + 1);
    assert!(e.to_bytes().is_err());
}

#[test]
fn errorline_is_kept_on_one_line_and_cut_as_opensmtpd_cuts_it() {
    let mut e = local();
    e.set_errorline("  451 try\r\nlater");
    assert_eq!(e.errorline, "451 try  later");
    e.set_errorline(&"é".repeat(MAX_ERRORLINE));
    assert!(e.errorline.len() <= MAX_ERRORLINE);
    assert!(e.errorline.ends_with("..."));
    let back = Envelope::parse(&e.to_bytes().unwrap(), None).unwrap();
    assert_eq!(back.errorline, e.errorline);
}

fn text() -> impl Strategy<Value = String> {
    "[^\n\r \t][^\n\r]{0,40}|"
}

fn nonempty() -> impl Strategy<Value = String> {
    "[^\n\r \t][^\n\r]{0,40}"
}

fn mailaddr() -> impl Strategy<Value = MailAddr> {
    ("[^\n\r]{0,20}", "[^\n\r@]{0,20}").prop_filter_map("no leading blank", |(user, domain)| {
        let a = MailAddr { user, domain };
        (!a.to_string().starts_with([' ', '\t'])).then_some(a)
    })
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Mta),
        (text(), text(), text()).prop_map(|(exec, subaddress, user)| Kind::Mda(Mda {
            exec,
            subaddress,
            user
        })),
        Just(Kind::Bounce(Bounce::Failed)),
        Just(Kind::Bounce(Bounce::Delivered)),
        (0..=i64::MAX as u64, 0..=i64::MAX as u64)
            .prop_map(|(ttl, delay)| Kind::Bounce(Bounce::Delayed { ttl, delay })),
    ]
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        Just(Source::Local),
        any::<[u8; 4]>().prop_map(|a| Source::V4(a.into())),
        any::<[u8; 16]>().prop_map(|a| Source::V6(a.into())),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    let strings = (nonempty(), text(), nonempty(), nonempty(), text(), text());
    let addrs = (mailaddr(), mailaddr(), mailaddr());
    let times = (
        0..=i64::MAX as u64,
        0..=i64::MAX as u64,
        0..=i64::MAX as u64,
        0..=i64::MAX as u64,
        any::<u16>(),
    );
    let dsn = (
        0u8..16,
        prop_oneof![
            Just(None),
            Just(Some(DsnRet::Full)),
            Just(Some(DsnRet::Hdrs))
        ],
        "[!-~]{0,100}",
        "[!-~]{0,100}",
        prop_oneof![
            Just(None),
            (prop_oneof![Just(2u8), Just(4), Just(5)], 0u8..100)
                .prop_map(|(class, code)| Some(Status { class, code })),
        ],
    );
    let flags = any::<(bool, bool, bool)>().prop_map(|(authenticated, bounce, internal)| Flags {
        authenticated,
        bounce,
        internal,
    });
    (
        strings,
        addrs,
        times,
        dsn,
        flags,
        kind(),
        source(),
        any::<Option<u64>>(),
    )
        .prop_map(|(s, a, t, d, flags, kind, source, id)| Envelope {
            id: id.map(EvpId),
            dispatcher: s.0,
            tag: s.1,
            kind,
            smtpname: s.2.clone(),
            helo: s.2,
            hostname: s.3,
            username: s.4,
            errorline: s.5,
            source,
            sender: a.0,
            rcpt: a.1,
            dest: a.2,
            ctime: t.0,
            last_try: t.1,
            last_bounce: t.2,
            ttl: t.3,
            retry: t.4,
            flags,
            dsn_notify: Notify(d.0),
            dsn_ret: d.1,
            dsn_envid: d.2,
            dsn_orcpt: d.3,
            status: d.4,
        })
}

proptest! {
    #[test]
    fn parse_of_to_bytes_is_identity(e in envelope()) {
        let bytes = e.to_bytes().unwrap();
        prop_assert_eq!(Envelope::parse(&bytes, e.id).unwrap(), e);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Envelope::parse(&bytes, None);
    }

    #[test]
    fn arbitrary_lines_never_panic(lines in proptest::collection::vec("[a-z-]{1,12} ?: ?[ -~]{0,20}", 0..30)) {
        let text = lines.join("\n");
        if let Ok(e) = Envelope::parse(text.as_bytes(), None) {
            // Whatever reads must write and read back the same.
            let bytes = e.to_bytes().unwrap();
            prop_assert_eq!(Envelope::parse(&bytes, None).unwrap(), e);
        }
    }
}
