//! Every directive and option of the grammar, and what it becomes.
//!
//! Each case is a snippet (loaded between an `action "a" mbox` line and a
//! closing `match from any action "a"` rule) and a check of the resulting
//! configuration.

use std::path::Path;
use std::time::Duration;

use super::{load_snippet, TempDir};
use crate::config::*;

type Case = (&'static str, fn(&Config));

fn run(cases: &[Case]) {
    for (snippet, check) in cases {
        let config = load_snippet(snippet, &LoadOptions::default());
        check(&config);
    }
}

fn table<'c>(c: &'c Config, name: &str) -> &'c Table {
    &c[c.table_named(name)
        .unwrap_or_else(|| panic!("no table {name}"))]
}

fn list(items: &[&str]) -> StaticContent {
    StaticContent::List(items.iter().map(|s| s.to_string()).collect())
}

fn mapping(items: &[(&str, &str)]) -> StaticContent {
    StaticContent::Mapping(
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn inline(c: &Config, id: TableId) -> &StaticContent {
    match &c[id].backend {
        TableBackend::Inline(content) => content,
        other => panic!("not inline: {other:?}"),
    }
}

/// The first rule (snippets put theirs before the closing one).
fn rule(c: &Config) -> &Rule {
    &c.rules[0]
}

fn listener(c: &Config) -> &Listener {
    &c.listeners[0]
}

fn local(c: &Config, name: &str) -> LocalDelivery {
    match &c[c.action_named(name).unwrap()].kind {
        ActionKind::Local(l) => l.clone(),
        other => panic!("not local: {other:?}"),
    }
}

fn relay(c: &Config, name: &str) -> Relay {
    match &c[c.action_named(name).unwrap()].kind {
        ActionKind::Relay(r) => r.clone(),
        other => panic!("not a relay: {other:?}"),
    }
}

#[test]
fn inline_tables() {
    run(&[
        ("table t { a, b, c }", |c| assert_eq!(table(c, "t").backend, TableBackend::Inline(list(&["a", "b", "c"])))),
        ("table t { a b c }", |c| assert_eq!(table(c, "t").backend, TableBackend::Inline(list(&["a", "b", "c"])))),
        ("table t {\n  a\n  b,\n\n  c\n}", |c| {
            assert_eq!(table(c, "t").backend, TableBackend::Inline(list(&["a", "b", "c"])))
        }),
        ("table t { Alice, ALICE, bob }", |c| {
            assert_eq!(table(c, "t").backend, TableBackend::Inline(list(&["alice", "bob"])))
        }),
        ("table t { k1 = v1, K2 => V2 }", |c| {
            assert_eq!(table(c, "t").backend, TableBackend::Inline(mapping(&[("k1", "v1"), ("k2", "V2")])));
            assert_eq!(table(c, "t").kind(), TableKind::Mapping);
        }),
        ("table t { a = 1 b = 2 a = 3 }", |c| {
            assert_eq!(table(c, "t").backend, TableBackend::Inline(mapping(&[("a", "3"), ("b", "2")])))
        }),
        ("table t { \"with space\" = 'x, y', \"domain\" = \"\" }", |c| {
            assert_eq!(
                table(c, "t").backend,
                TableBackend::Inline(mapping(&[("with space", "x, y"), ("domain", "")]))
            )
        }),
        ("table \"domain\" { x }", |c| assert!(c.table_named("domain").is_some())),
        ("table t getpwnam", |c| assert_eq!(table(c, "t").backend, TableBackend::Getpwnam)),
        ("table t proc-exec \"table-sqlite -f /etc/x.conf\" user _smtpd group _smtpd chroot \"/var/empty\"", |c| {
            let TableBackend::ProcExec(cmd) = &table(c, "t").backend else { panic!() };
            assert_eq!(cmd.command, "table-sqlite -f /etc/x.conf");
            assert_eq!(cmd.user.as_deref(), Some("_smtpd"));
            assert_eq!(cmd.group.as_deref(), Some("_smtpd"));
            assert_eq!(cmd.chroot.as_deref(), Some(Path::new("/var/empty")));
            assert_eq!(table(c, "t").kind(), TableKind::Dynamic);
        }),
    ]);
}

#[test]
fn builtin_tables_come_first() {
    run(&[("", |c| {
        assert_eq!(c.tables[TableId::LOCALHOST.index()].name, "<localhost>");
        assert_eq!(
            c[TableId::ANYHOST].backend,
            TableBackend::Builtin(BuiltinTable::Anyhost)
        );
        assert_eq!(
            c[TableId::LOCALNAMES].backend,
            TableBackend::Builtin(BuiltinTable::Localnames)
        );
        assert_eq!(
            c[TableId::ANYDESTINATION].backend,
            TableBackend::Builtin(BuiltinTable::Anydestination)
        );
        assert_eq!(c[TableId::GETPWNAM].backend, TableBackend::Getpwnam);
        assert!(!c[TableId::GETPWNAM].serves(smtpd_sdk::proto::table::Service::Alias));
    })]);
}

#[test]
fn file_tables() {
    let dir = TempDir::new();
    let list_path = dir.write("hosts", "# @list\n192.0.2.1\n[::1]\n");
    let map_path = dir.write("aliases", "postmaster: root\nAbuse  root, bob\n");
    let text = format!(
        "table l file:{}\ntable m \"{}\"\ntable r file:aliases\n\
         match from src <l> for any action \"a\"\naction \"b\" mbox alias <m>\naction \"c\" mbox alias <r>",
        list_path.display(),
        map_path.display()
    );
    let main = dir.write(
        "smtpd.conf",
        &format!("{}{text}{}", super::PRELUDE, super::CLOSING),
    );
    let config = Config::load(&main, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    let l = table(&config, "l");
    assert_eq!(
        l.backend,
        TableBackend::File {
            path: list_path,
            content: list(&["192.0.2.1", "[::1]"]),
        }
    );
    let m = table(&config, "m");
    assert_eq!(
        m.backend,
        TableBackend::File {
            path: map_path,
            content: mapping(&[("postmaster", "root"), ("abuse", "root, bob")]),
        }
    );
    // A relative file: path is taken from the configuration's directory.
    assert!(
        matches!(&table(&config, "r").backend, TableBackend::File { path, .. } if *path == dir.path().join("aliases"))
    );
}

#[test]
fn backend_tables() {
    let dir = TempDir::new();
    dir.write("table-sqlite", "#!/bin/sh\n");
    dir.write("table-passwd", "#!/bin/sh\n");
    let db = dir.write("aliases.db", "");
    let opts = LoadOptions {
        backends_dir: dir.path().to_owned(),
        ..LoadOptions::default()
    };
    let snippet = format!(
        "table s sqlite:/etc/mail/sqlite.conf\ntable p passwd\ntable d db:{}\n",
        db.display()
    );
    let config = load_snippet(&snippet, &opts);
    assert_eq!(
        table(&config, "s").backend,
        TableBackend::Program {
            backend: "sqlite".into(),
            program: dir.path().join("table-sqlite"),
            argument: Some("/etc/mail/sqlite.conf".into()),
        }
    );
    assert!(matches!(
        &table(&config, "p").backend,
        TableBackend::Program { argument: None, .. }
    ));
    assert_eq!(table(&config, "d").backend, TableBackend::Db { path: db });
    assert_eq!(table(&config, "s").kind(), TableKind::Dynamic);
}

#[test]
fn pki_and_ca() {
    let dir = TempDir::new();
    let cert = dir.write("cert.pem", "x");
    let key = dir.write("key.pem", "x");
    let snippet = format!(
        "pki Mail.Example.ORG cert \"{c}\"\npki mail.example.org key \"{k}\" dhe auto\n\
         pki \"*\" cert \"{c}\" key \"{k}\" dhe legacy\npki other cert \"{c}\" key \"{k}\" dhe none\n\
         ca myca cert \"{c}\"\n\
         listen on 127.0.0.1 port 465 smtps verify pki mail.example.org pki \"*\" ca MyCA\n\
         action r relay tls pki Other ca myca",
        c = cert.display(),
        k = key.display()
    );
    let config = load_snippet(&snippet, &LoadOptions::default());
    let pki = &config[config.pki_named("mail.example.org").unwrap()];
    assert_eq!(
        (pki.cert.as_path(), pki.key.as_path(), pki.dhe),
        (cert.as_path(), key.as_path(), Dhe::Auto)
    );
    assert_eq!(config[config.pki_named("*").unwrap()].dhe, Dhe::Legacy);
    assert_eq!(config.pkis.len(), 3);
    assert_eq!(config.cas[0].name, "myca");
    let l = &config.listeners[0];
    assert_eq!(
        (l.tls, l.verify_client, l.port),
        (ListenerTls::Smtps, true, 465)
    );
    assert_eq!(l.pkis, vec![PkiId(0), PkiId(1)]);
    assert_eq!(l.ca, Some(CaId(0)));
    let ActionKind::Relay(r) = &config[config.action_named("r").unwrap()].kind else {
        panic!()
    };
    assert_eq!(
        (r.pki.as_deref(), r.ca.as_deref()),
        (Some("other"), Some("myca"))
    );
}

#[test]
fn listen_on_socket() {
    run(&[
        ("listen on socket", |c| assert_eq!(c.socket, SocketListener::default())),
        ("filter f phase connect match rdns junk\nlisten on socket filter f mask-src no-dsn tag SOCK", |c| {
            assert_eq!(c.socket.filter, c.filter_named("f"));
            assert!(c.socket.mask_src && c.socket.no_dsn);
            assert_eq!(c.socket.tag.as_deref(), Some("SOCK"));
        }),
        ("", |c| assert_eq!(c.socket, SocketListener::default())),
    ]);
}

#[test]
fn listen_on_interfaces() {
    run(&[
        ("listen on lo0", |c| {
            let l = listener(c);
            assert_eq!(l.address, ListenAddress::Name("lo0".into()));
            assert_eq!((l.port, l.tls, l.family), (25, ListenerTls::None, None));
        }),
        ("listen on 127.0.0.1 port 2525 inet4", |c| {
            let l = listener(c);
            assert_eq!(l.address, ListenAddress::Ip("127.0.0.1".parse().unwrap()));
            assert_eq!((l.port, l.family), (2525, Some(AddressFamily::Inet4)));
        }),
        ("listen on ::1 inet6 port smtp", |c| {
            assert_eq!(listener(c).address, ListenAddress::Ip("::1".parse().unwrap()));
            assert_eq!(listener(c).port, 25);
        }),
        ("listen on \"[::1]\" port smtps", |c| assert_eq!(listener(c).port, 465)),
        ("listen on mx.example.org port submission", |c| assert_eq!(listener(c).port, 587)),
        ("listen on lo port \"587\"", |c| assert_eq!(listener(c).port, 587)),
        (
            "listen on lo mask-src no-dsn proxy-v2 received-auth tag T hostname mx.example.org \
             ciphers HIGH protocols \"tlsv1.2,tlsv1.3\"",
            |c| {
                let l = listener(c);
                assert!(l.mask_src && l.no_dsn && l.proxy_v2 && l.received_auth);
                assert_eq!(l.tag.as_deref(), Some("T"));
                assert_eq!(l.hostname.as_deref(), Some("mx.example.org"));
                assert_eq!(l.ciphers.as_deref(), Some("HIGH"));
                assert_eq!(l.protocols.as_deref(), Some("tlsv1.2,tlsv1.3"));
            },
        ),
        ("listen on lo hostnames { 127.0.0.1 = mx.example.org } senders { alice = \"alice@example.org\" } masquerade", |c| {
            let l = listener(c);
            assert!(l.hostnames.is_some());
            assert!(l.senders.unwrap().masquerade);
        }),
        ("listen on lo senders { alice = \"@example.org\" }", |c| assert!(!listener(c).senders.unwrap().masquerade)),
        ("filter f1 phase connect match !fcrdns disconnect \"550 no\"\nlisten on lo filter f1", |c| {
            assert_eq!(listener(c).filter, c.filter_named("f1"));
        }),
    ]);
}

#[test]
fn listen_tls_and_auth() {
    let dir = TempDir::new();
    let cert = dir.write("c.pem", "x");
    let pki = format!("pki \"mx\" cert \"{0}\" key \"{0}\"\n", cert.display());
    type ListenerCase = (&'static str, fn(&Listener));
    let cases: &[ListenerCase] = &[
        ("listen on lo tls pki \"mx\"", |l| {
            assert_eq!((l.tls, l.port), (ListenerTls::StartTls, 25))
        }),
        ("listen on lo tls-require pki \"mx\"", |l| {
            assert_eq!(l.tls, ListenerTls::StartTlsRequired)
        }),
        ("listen on lo tls-require verify pki \"mx\"", |l| {
            assert!(l.verify_client)
        }),
        ("listen on lo smtps pki \"mx\"", |l| {
            assert_eq!(
                (l.tls, l.port, l.verify_client),
                (ListenerTls::Smtps, 465, false)
            )
        }),
        ("listen on lo port 587 tls-require pki \"mx\" auth", |l| {
            assert_eq!(
                l.auth,
                Some(ListenerAuth {
                    required: true,
                    table: None
                })
            )
        }),
        ("listen on lo tls pki \"mx\" auth-optional", |l| {
            assert_eq!(
                l.auth,
                Some(ListenerAuth {
                    required: false,
                    table: None
                })
            )
        }),
        (
            "listen on lo tls pki \"mx\" auth { alice = \"$2b$09$abc\" }",
            |l| assert!(l.auth.unwrap().required && l.auth.unwrap().table.is_some()),
        ),
        (
            "listen on lo tls pki \"mx\" auth-optional { bob = \"bob:$2b$09$abc\" }",
            |l| assert!(!l.auth.unwrap().required && l.auth.unwrap().table.is_some()),
        ),
    ];
    for (snippet, check) in cases {
        let config = load_snippet(&format!("{pki}{snippet}"), &LoadOptions::default());
        check(&config.listeners[0]);
    }
}

#[test]
fn local_actions() {
    run(&[
        ("action m mbox", |c| assert_eq!(local(c, "m").method, LocalMethod::Mbox)),
        ("action m maildir", |c| assert_eq!(local(c, "m").method, LocalMethod::Maildir { path: None, junk: false })),
        ("action m maildir junk", |c| assert_eq!(local(c, "m").method, LocalMethod::Maildir { path: None, junk: true })),
        ("action m maildir \"junk\"", |c| {
            assert_eq!(local(c, "m").method, LocalMethod::Maildir { path: Some("junk".into()), junk: false })
        }),
        ("action m maildir \"~/Mail/%{dest.domain}\" junk", |c| {
            assert_eq!(
                local(c, "m").method,
                LocalMethod::Maildir { path: Some("~/Mail/%{dest.domain}".into()), junk: true }
            )
        }),
        ("action m lmtp \"/var/run/dovecot/lmtp\"", |c| {
            assert_eq!(local(c, "m").method, LocalMethod::Lmtp { destination: "/var/run/dovecot/lmtp".into(), rcpt_to: false })
        }),
        ("action m lmtp localhost:24 rcpt-to", |c| {
            assert_eq!(local(c, "m").method, LocalMethod::Lmtp { destination: "localhost:24".into(), rcpt_to: true })
        }),
        ("action m mda \"/usr/local/bin/procmail -f -\"", |c| {
            assert_eq!(local(c, "m").method, LocalMethod::Mda { command: "/usr/local/bin/procmail -f -".into() })
        }),
        ("action m forward-only", |c| assert_eq!(local(c, "m").method, LocalMethod::ForwardOnly)),
        ("action m expand-only", |c| assert_eq!(local(c, "m").method, LocalMethod::ExpandOnly)),
        ("table al { root = alice }\naction m mbox alias <al>", |c| {
            assert_eq!(local(c, "m").expansion, Some(Expansion::Alias(c.table_named("al").unwrap())))
        }),
        ("action m maildir virtual { \"@example.org\" = alice } userbase { alice = \"1000:1000:/home/alice\" } user vmail", |c| {
            let l = local(c, "m");
            assert!(matches!(l.expansion, Some(Expansion::Virtual(_))));
            assert_ne!(l.userbase, TableId::GETPWNAM);
            assert_eq!(l.user.as_deref(), Some("vmail"));
        }),
        ("action m mbox", |c| assert_eq!(local(c, "m").userbase, TableId::GETPWNAM)),
        ("mda wrapper w \"/usr/bin/env %{mda}\"\naction m mda \"/bin/cat\" wrapper w", |c| {
            assert_eq!(local(c, "m").wrapper, Some(WrapperId(0)));
            assert_eq!(c.mda_wrappers[0].command, "/usr/bin/env %{mda}");
        }),
        ("action m mbox ttl 2d", |c| {
            assert_eq!(c[c.action_named("m").unwrap()].ttl, Some(Duration::from_secs(2 * 86400)))
        }),
        ("action m maildir alias { a = b } ttl 30m", |c| {
            assert_eq!(c[c.action_named("m").unwrap()].ttl, Some(Duration::from_secs(1800)))
        }),
    ]);
}

#[test]
fn relay_actions() {
    run(&[
        ("action r relay", |c| assert_eq!(relay(c, "r"), Relay::default())),
        ("action r relay backup", |c| assert_eq!(relay(c, "r").backup, Some(Backup { mx: None }))),
        ("action r relay backup mx mx2.example.org", |c| {
            assert_eq!(relay(c, "r").backup, Some(Backup { mx: Some("mx2.example.org".into()) }))
        }),
        ("action r relay host smtp://smarthost.example.org:2525", |c| {
            let Some(RelayRoute::Host(t)) = relay(c, "r").route else { panic!() };
            assert_eq!(inline(c, t), &list(&["smtp://smarthost.example.org:2525"]));
        }),
        ("table routes { example.org = \"lmtp://[::1]:24\" }\naction r relay domain <routes>", |c| {
            assert_eq!(relay(c, "r").route, Some(RelayRoute::Domain(c.table_named("routes").unwrap())))
        }),
        ("table s { lab = \"user:pass\" }\naction r relay host \"smtp+tls://lab@mx.example.org\" auth <s> tls", |c| {
            let r = relay(c, "r");
            assert_eq!(r.auth, c.table_named("s"));
            assert_eq!(r.tls, Some(RelayTls::Verify));
        }),
        ("action r relay tls no-verify ciphers HIGH protocols all helo mx.example.org", |c| {
            let r = relay(c, "r");
            assert_eq!(r.tls, Some(RelayTls::NoVerify));
            assert_eq!((r.ciphers.as_deref(), r.protocols.as_deref()), (Some("HIGH"), Some("all")));
            assert_eq!(r.helo.as_deref(), Some("mx.example.org"));
        }),
        ("action r relay helo-src { 192.0.2.1 = mx1.example.org } src { 192.0.2.1, \"[2001:db8::1]\" }", |c| {
            let r = relay(c, "r");
            assert!(r.helo_src.is_some() && r.src.is_some());
        }),
        ("action r relay mail-from bounces@example.org", |c| {
            assert_eq!(
                relay(c, "r").mail_from,
                Some(MailFromRewrite::Address { user: "bounces".into(), domain: "example.org".into() })
            )
        }),
        ("action r relay mail-from \"@example.net\"", |c| {
            assert_eq!(relay(c, "r").mail_from, Some(MailFromRewrite::Domain("example.net".into())))
        }),
        ("action r relay mail-from noreply", |c| {
            assert_eq!(relay(c, "r").mail_from, Some(MailFromRewrite::User("noreply".into())))
        }),
        ("srs key s3cret\naction r relay srs", |c| assert!(relay(c, "r").srs)),
        ("filter f proc-exec \"filter-report\"\naction r relay filter f", |c| {
            assert_eq!(relay(c, "r").filter, c.filter_named("f"));
            assert_eq!(c.procs[0].subsystems.iter().copied().collect::<Vec<_>>(), vec![Subsystem::SmtpOut]);
        }),
        ("action r relay host \"smtp://a.example.org\" ttl 1h", |c| {
            assert_eq!(c[c.action_named("r").unwrap()].ttl, Some(Duration::from_secs(3600)))
        }),
    ]);
}

#[test]
fn match_defaults_and_verdicts() {
    run(&[
        ("match action \"a\"", |c| {
            let r = rule(c);
            assert_eq!(
                r.from,
                Criterion {
                    negated: false,
                    test: FromSource::Local
                }
            );
            assert_eq!(
                r.destination,
                Criterion {
                    negated: false,
                    test: ForDestination::Local
                }
            );
            assert_eq!(r.verdict, Verdict::Action(ActionId(0)));
            assert!(r.tag.is_none() && r.helo.is_none() && r.auth.is_none() && r.tls.is_none());
            assert!(r.mail_from.is_none() && r.rcpt_to.is_none());
        }),
        ("match from any for any reject", |c| {
            let r = rule(c);
            assert_eq!(
                (r.from.test.clone(), r.destination.test.clone()),
                (FromSource::Any, ForDestination::Any)
            );
            assert_eq!(r.verdict, Verdict::Reject);
        }),
    ]);
}

#[test]
fn match_sources() {
    run(&[
        ("match from local action \"a\"", |c| {
            assert_eq!(rule(c).from.test, FromSource::Local)
        }),
        ("match from socket action \"a\"", |c| {
            assert_eq!(rule(c).from.test, FromSource::Socket)
        }),
        ("match ! from socket action \"a\"", |c| {
            assert!(rule(c).from.negated)
        }),
        ("match from src 192.0.2.0/24 action \"a\"", |c| {
            let FromSource::Src(t) = rule(c).from.test else {
                panic!()
            };
            assert!(!t.regex);
            assert_eq!(inline(c, t.table), &list(&["192.0.2.0/24"]));
        }),
        (
            "match from src regex \"^192\\.0\\.2\\.\" action \"a\"",
            |c| {
                assert!(matches!(
                    rule(c).from.test,
                    FromSource::Src(TableMatch { regex: true, .. })
                ))
            },
        ),
        ("match from rdns action \"a\"", |c| {
            assert_eq!(rule(c).from.test, FromSource::Rdns(None))
        }),
        ("match !from rdns { \"*.example.org\" } action \"a\"", |c| {
            assert!(rule(c).from.negated);
            assert!(matches!(
                rule(c).from.test,
                FromSource::Rdns(Some(TableMatch { regex: false, .. }))
            ));
        }),
        (
            "match from rdns regex { \"\\.dyn\\.\" } action \"a\"",
            |c| {
                assert!(matches!(
                    rule(c).from.test,
                    FromSource::Rdns(Some(TableMatch { regex: true, .. }))
                ))
            },
        ),
        ("match from auth action \"a\"", |c| {
            assert_eq!(
                rule(c).from,
                Criterion {
                    negated: false,
                    test: FromSource::Any
                }
            );
            assert_eq!(
                rule(c).auth,
                Some(Criterion {
                    negated: false,
                    test: None
                })
            );
        }),
        ("match ! from auth { alice } action \"a\"", |c| {
            assert_eq!(
                rule(c).from,
                Criterion {
                    negated: false,
                    test: FromSource::Any
                }
            );
            assert!(rule(c).auth.as_ref().unwrap().negated);
            assert!(rule(c).auth.as_ref().unwrap().test.is_some());
        }),
        ("match from auth regex \"^adm\" action \"a\"", |c| {
            assert!(rule(c).auth.as_ref().unwrap().test.unwrap().regex)
        }),
        ("match from mail-from \"@example.org\" action \"a\"", |c| {
            assert_eq!(rule(c).from.test, FromSource::Any);
            assert!(rule(c).mail_from.is_some());
        }),
        ("match ! from mail-from regex \"spam\" action \"a\"", |c| {
            assert!(!rule(c).from.negated);
            let m = rule(c).mail_from.clone().unwrap();
            assert!(m.negated && m.test.regex);
        }),
    ]);
}

#[test]
fn match_destinations_and_other_criteria() {
    run(&[
        ("match for local action \"a\"", |c| assert_eq!(rule(c).destination.test, ForDestination::Local)),
        ("match for any action \"a\"", |c| assert_eq!(rule(c).destination.test, ForDestination::Any)),
        ("match for domain { example.org, \"*.example.net\" } action \"a\"", |c| {
            let ForDestination::Domain(t) = rule(c).destination.test else { panic!() };
            assert_eq!(inline(c, t.table), &list(&["example.org", "*.example.net"]));
        }),
        ("match ! for domain regex \"\\.test$\" action \"a\"", |c| {
            assert!(rule(c).destination.negated);
            assert!(matches!(rule(c).destination.test, ForDestination::Domain(TableMatch { regex: true, .. })));
        }),
        ("match for rcpt-to { alice@example.org } action \"a\"", |c| {
            assert_eq!(rule(c).destination.test, ForDestination::Any);
            assert!(rule(c).rcpt_to.is_some());
        }),
        ("match ! for rcpt-to regex \"^postmaster@\" action \"a\"", |c| {
            assert!(!rule(c).destination.negated && rule(c).rcpt_to.as_ref().unwrap().negated)
        }),
        ("match tag T1 action \"a\"", |c| assert!(!rule(c).tag.as_ref().unwrap().test.regex)),
        ("match ! tag regex \"^T\" action \"a\"", |c| {
            let t = rule(c).tag.clone().unwrap();
            assert!(t.negated && t.test.regex);
        }),
        ("match helo mx.example.org action \"a\"", |c| assert!(rule(c).helo.is_some())),
        ("match !helo regex \"^\\[\" action \"a\"", |c| assert!(rule(c).helo.as_ref().unwrap().negated)),
        ("match auth action \"a\"", |c| assert_eq!(rule(c).auth, Some(Criterion { negated: false, test: None }))),
        ("match !auth action \"a\"", |c| assert!(rule(c).auth.as_ref().unwrap().negated)),
        ("match auth { alice = x } action \"a\"", |c| assert!(rule(c).auth.as_ref().unwrap().test.is_some())),
        ("match auth regex \"^a\" action \"a\"", |c| assert!(rule(c).auth.as_ref().unwrap().test.unwrap().regex)),
        ("match tls action \"a\"", |c| assert_eq!(rule(c).tls, Some(Criterion { negated: false, test: () }))),
        ("match ! tls action \"a\"", |c| assert!(rule(c).tls.as_ref().unwrap().negated)),
        ("match mail-from { \"@example.org\" } action \"a\"", |c| assert!(rule(c).mail_from.is_some())),
        ("match rcpt-to { \"root\" = x } action \"a\"", |c| assert!(rule(c).rcpt_to.is_some())),
        ("match !rcpt-to regex \"^x\" action \"a\"", |c| assert!(rule(c).rcpt_to.as_ref().unwrap().negated)),
        (
            "match tag T from any for any helo h.example.org auth tls mail-from m rcpt-to r action \"a\"",
            |c| {
                let r = rule(c);
                assert!(r.tag.is_some() && r.helo.is_some() && r.auth.is_some() && r.tls.is_some());
                assert!(r.mail_from.is_some() && r.rcpt_to.is_some());
            },
        ),
    ]);
}

#[test]
fn filters() {
    run(&[
        ("proc p \"filter-x -a\" user _x group _y chroot \"/var/empty\"\nfilter f proc p", |c| {
            assert_eq!(c.procs[0].command.command, "filter-x -a");
            assert_eq!(c.procs[0].command.chroot.as_deref(), Some(Path::new("/var/empty")));
            assert_eq!(c[c.filter_named("f").unwrap()].kind, FilterKind::Proc(ProcId(0)));
        }),
        ("filter f proc-exec \"/usr/local/bin/filter-rspamd\" user _rspamd", |c| {
            assert_eq!(c.procs[0].name, "f");
            assert_eq!(c.procs[0].command.user.as_deref(), Some("_rspamd"));
        }),
        ("filter a proc-exec x\nfilter b phase helo match !helo { localhost } reject \"550 bad helo\"\n\
          filter c chain { a, b }\nlisten on lo filter c", |c| {
            let chain = c.filter_named("c").unwrap();
            assert_eq!(c[chain].kind, FilterKind::Chain(vec![FilterId(0), FilterId(1)]));
            assert_eq!(c.procs[0].subsystems.iter().copied().collect::<Vec<_>>(), vec![Subsystem::SmtpIn]);
        }),
        ("filter a proc-exec x\nfilter b proc-exec y\nlisten on lo filter { a\n b }", |c| {
            let l = listener(c);
            let f = &c[l.filter.unwrap()];
            assert_eq!(f.name, "<dynchain:00000000>");
            assert_eq!(f.kind, FilterKind::Chain(vec![FilterId(0), FilterId(1)]));
        }),
    ]);
}

#[test]
fn builtin_filters() {
    fn builtin(c: &Config) -> BuiltinFilter {
        match &c.filters[0].kind {
            FilterKind::Builtin(b) => b.clone(),
            other => panic!("{other:?}"),
        }
    }
    run(&[
        (
            "filter f phase connect match fcrdns disconnect \"421 go away\"",
            |c| {
                let b = builtin(c);
                assert_eq!(
                    (b.phase, b.condition.test, b.decision),
                    (
                        Phase::Connect,
                        FilterTest::Fcrdns,
                        FilterDecision::Disconnect("421 go away".into())
                    )
                );
            },
        ),
        (
            "filter f phase connect match !rdns reject \"550 no rdns\"",
            |c| {
                let b = builtin(c);
                assert!(b.condition.negated);
                assert_eq!(b.condition.test, FilterTest::Rdns(None));
            },
        ),
        (
            "filter f phase connect match rdns regex { \"dyn\" } junk",
            |c| {
                assert!(matches!(
                    builtin(c).condition.test,
                    FilterTest::Rdns(Some(TableMatch { regex: true, .. }))
                ));
                assert_eq!(builtin(c).decision, FilterDecision::Junk);
            },
        ),
        (
            "filter f phase connect match src { 10.0.0.0/8 } bypass",
            |c| assert_eq!(builtin(c).decision, FilterDecision::Bypass),
        ),
        (
            "filter f phase ehlo match helo regex \"^\\[\" report \"literal helo\"",
            |c| {
                assert_eq!(builtin(c).phase, Phase::Ehlo);
                assert_eq!(
                    builtin(c).decision,
                    FilterDecision::Report("literal helo".into())
                );
            },
        ),
        ("filter f phase auth match auth junk", |c| {
            assert_eq!(builtin(c).phase, Phase::Auth)
        }),
        (
            "filter f phase mail-from match auth { alice } rewrite \"alice@example.org\"",
            |c| {
                assert_eq!(
                    builtin(c).decision,
                    FilterDecision::Rewrite("alice@example.org".into())
                )
            },
        ),
        (
            "filter f phase data match mail-from \"@spam.example\" junk",
            |c| assert_eq!(builtin(c).phase, Phase::Data),
        ),
        (
            "filter f phase rcpt-to match rcpt-to regex \"^test\" reject \"550 no\"",
            |c| {
                assert!(matches!(
                    builtin(c).condition.test,
                    FilterTest::RcptTo(TableMatch { regex: true, .. })
                ))
            },
        ),
        (
            "filter f phase commit match !auth reject \"451 later\"",
            |c| assert_eq!(builtin(c).phase, Phase::Commit),
        ),
        (
            "filter f phase helo match helo localhost disconnect \"550 bye\"",
            |c| assert_eq!(builtin(c).phase, Phase::Helo),
        ),
    ]);
}

#[test]
fn queue_bounce_and_smtp_options() {
    run(&[
        ("", |c| {
            assert_eq!(c.queue, QueueOptions::default());
            assert_eq!(c.queue.ttl, Duration::from_secs(4 * 86400));
            assert_eq!(c.bounce.warn_intervals, vec![Duration::from_secs(4 * 3600)]);
            assert_eq!(
                (c.smtp.max_mails, c.smtp.max_rcpt, c.smtp.max_message_size),
                (100, 1000, 36_700_160)
            );
            assert_eq!(c.smtp.sub_addr_delim, '+');
        }),
        ("queue compression\nqueue encryption\nqueue ttl 2d", |c| {
            assert!(c.queue.compression);
            assert_eq!(c.queue.encryption, Some(QueueKey::Prompt));
            assert_eq!(c.queue.ttl, Duration::from_secs(2 * 86400));
        }),
        ("queue encryption 0123456789abcdef0123456789abcdef", |c| {
            assert_eq!(
                c.queue.encryption,
                Some(QueueKey::Inline(Secret(
                    "0123456789abcdef0123456789abcdef".into()
                )))
            )
        }),
        ("queue encryption stdin", |c| {
            assert_eq!(c.queue.encryption, Some(QueueKey::Stdin))
        }),
        ("queue encryption \"-\"", |c| {
            assert_eq!(c.queue.encryption, Some(QueueKey::Stdin))
        }),
        (
            "queue proc-exec \"queue-sqlite -f /var/spool/q.db\" user _smtpq",
            |c| {
                let QueueBackend::ProcExec(cmd) = &c.queue.backend else {
                    panic!()
                };
                assert_eq!(cmd.command, "queue-sqlite -f /var/spool/q.db");
                assert_eq!(cmd.user.as_deref(), Some("_smtpq"));
            },
        ),
        ("bounce warn-interval 1h, 6h, 2d", |c| {
            assert_eq!(
                c.bounce.warn_intervals,
                vec![
                    Duration::from_secs(3600),
                    Duration::from_secs(6 * 3600),
                    Duration::from_secs(2 * 86400)
                ]
            )
        }),
        (
            "smtp limit max-mails 10 max-rcpt 50\nsmtp ciphers \"HIGH:!aNULL\"",
            |c| {
                assert_eq!((c.smtp.max_mails, c.smtp.max_rcpt), (10, 50));
                assert_eq!(c.smtp.ciphers.as_deref(), Some("HIGH:!aNULL"));
            },
        ),
        ("smtp limit max-rcpt 5", |c| {
            assert_eq!((c.smtp.max_mails, c.smtp.max_rcpt), (100, 5))
        }),
        ("smtp max-message-size 10485760", |c| {
            assert_eq!(c.smtp.max_message_size, 10_485_760)
        }),
        ("smtp max-message-size 50M", |c| {
            assert_eq!(c.smtp.max_message_size, 50 << 20)
        }),
        ("smtp sub-addr-delim \"-\"", |c| {
            assert_eq!(c.smtp.sub_addr_delim, '-')
        }),
        ("smtp sub-addr-delim _", |c| {
            assert_eq!(c.smtp.sub_addr_delim, '_')
        }),
    ]);
}

#[test]
fn mta_mda_scheduler_srs_admd() {
    run(&[
        ("mta max-deferred 250", |c| assert_eq!(c.mta.max_deferred, 250)),
        ("mta limit max-conn-per-host 2 conn-delay-route 7 inet4", |c| {
            assert_eq!(c.mta.limits.values.max_conn_per_host, 2);
            assert_eq!(c.mta.limits.values.conn_delay_route, 7);
            assert_eq!(c.mta.limits.family, Some(AddressFamily::Inet4));
        }),
        ("mta limit session-keepalive 30\nmta limit for domain Example.ORG inet6 max-conn-per-domain 1", |c| {
            let (name, limits) = &c.mta.domain_limits[0];
            assert_eq!(name, "example.org");
            assert_eq!(limits.family, Some(AddressFamily::Inet6));
            assert_eq!(limits.values.max_conn_per_domain, 1);
            // A domain block starts from the defaults as set so far.
            assert_eq!(limits.values.session_keepalive, 30);
            assert_eq!(c.mta.limits.values.max_conn_per_domain, 100);
        }),
        ("mda limit max-session 10 max-session-per-user 2 task-hiwat 5 task-lowat 3 task-release 1", |c| {
            let m = &c.mda;
            assert_eq!((m.max_session, m.max_session_per_user, m.task_hiwat, m.task_lowat, m.task_release), (10, 2, 5, 3, 1));
        }),
        ("scheduler limit max-inflight 100 max-evp-batch-size 8 max-msg-batch-size 9 max-schedule 2", |c| {
            let s = &c.scheduler;
            assert_eq!((s.max_inflight, s.max_evp_batch_size, s.max_msg_batch_size, s.max_schedule), (100, 8, 9, 2));
        }),
        ("srs key s3cret\nsrs key backup old\nsrs ttl 50h", |c| {
            assert_eq!(c.srs.key, Some(Secret("s3cret".into())));
            assert_eq!(c.srs.backup_key, Some(Secret("old".into())));
            assert_eq!(c.srs.ttl, Duration::from_secs(2 * 86400));
        }),
        ("admd \"mx.example.org\"", |c| assert_eq!(c.admd.as_deref(), Some("mx.example.org"))),
        ("", |c| {
            assert_eq!(c.srs.ttl, Duration::from_secs(4 * 86400));
            assert!(c.admd.is_none());
            assert_eq!(c.mda.max_session, 50);
            assert_eq!(c.scheduler.max_inflight, 5000);
            assert_eq!(c.mta.limits.values.max_failures_per_session, 25);
        }),
    ]);
}

#[test]
fn secrets_are_not_printed() {
    let c = load_snippet(
        "srs key hunter2\nqueue encryption 0123456789abcdef0123456789abcdef",
        &LoadOptions::default(),
    );
    let debug = format!("{c:?}");
    assert!(!debug.contains("hunter2") && !debug.contains("0123456789abcdef"));
}
