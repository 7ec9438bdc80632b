//! The rules engine against real smtpd.conf text: each case is a
//! configuration, an envelope written as `key=value` words, and the
//! expected decision.
//!
//! Envelope words: `src=IP|socket` (default `203.0.113.5`, a stranger),
//! `rdns=NAME`, `helo=NAME`, `auth=USER`, `tls`, `tag=TAG`, `from=ADDR`
//! (`from=<>` for the null sender; default `sender@example.com`),
//! `to=ADDR`, `internal`. Expected decisions: an action name, `reject`,
//! `none` (no rule matched).

use std::str::FromStr;
use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::table::static_table::{LocalHost, StaticTable};
use crate::table::unavailable::UnavailableTable;
use crate::table::Table;

/// This machine, as the built-in tables see it in these tests.
fn host() -> LocalHost {
    LocalHost {
        server_name: "mx.example.org".to_owned(),
        host_name: "mx".to_owned(),
        addresses: vec![
            "127.0.0.1".parse().unwrap(),
            "192.0.2.25".parse().unwrap(),
            "::1".parse().unwrap(),
            "2001:db8::25".parse().unwrap(),
        ],
    }
}

fn load(conf: &str) -> Config {
    Config::from_str(conf).unwrap_or_else(|e| panic!("configuration should load:\n{conf}\n{e}"))
}

/// The live tables of `config`, every one static.
fn tables(config: &Config) -> Tables {
    let host = host();
    Tables::new(
        config
            .tables
            .iter()
            .map(|t| {
                let table = StaticTable::from_config_with(t, &host)
                    .unwrap()
                    .with_sub_addr_delim(config.smtp.sub_addr_delim);
                Arc::new(table) as Arc<dyn Table>
            })
            .collect(),
    )
}

/// Reads the envelope words described at the top of this file.
fn envelope(spec: &str) -> Envelope {
    let mut envelope = Envelope::new(
        Source::Ip("203.0.113.5".parse().unwrap()),
        Address::parse("sender@example.com"),
        Address::default(),
    );
    for word in spec.split_whitespace() {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        match key {
            "src" if value == "socket" => envelope.source = Source::Socket,
            "src" => envelope.source = Source::Ip(value.parse().unwrap()),
            "rdns" => envelope.rdns = Some(value.to_owned()),
            "helo" => envelope.helo = value.to_owned(),
            "auth" => envelope.auth_user = Some(value.to_owned()),
            "tls" => envelope.tls = true,
            "tag" => envelope.tag = Some(value.to_owned()),
            "from" if value == "<>" => envelope.mail_from = Address::null(),
            "from" => envelope.mail_from = Address::parse(value),
            "to" => envelope.rcpt_to = Address::parse(value),
            "internal" => envelope.internal = true,
            _ => panic!("unknown envelope word {word:?}"),
        }
    }
    envelope
}

/// The decision as the cases write it.
fn shown(config: &Config, decision: Decision) -> String {
    match decision {
        Decision::Action { action, .. } => config[action].name.clone(),
        Decision::Reject { .. } => "reject".to_owned(),
        Decision::NoMatch => "none".to_owned(),
    }
}

/// Runs every case against one configuration.
async fn check(conf: &str, cases: &[(&str, &str)]) {
    let config = load(conf);
    let tables = tables(&config);
    for (spec, expected) in cases {
        let decision = decide(&config.rules, &envelope(spec), &tables)
            .await
            .unwrap_or_else(|e| panic!("{spec}: {e}\nin:\n{conf}"));
        assert_eq!(
            shown(&config, decision),
            *expected,
            "envelope {spec:?} in:\n{conf}"
        );
    }
}

#[tokio::test]
async fn a_small_office() {
    check(
        r#"
listen on socket
listen on lo
action "local" mbox
action "outbound" relay
match from local for local action "local"
match from local for any action "outbound"
"#,
        &[
            ("src=socket to=alice@localhost", "local"),
            ("src=127.0.0.1 to=alice@localhost", "local"),
            ("src=127.0.0.1 to=alice@mx.example.org", "local"),
            ("src=::1 to=bob@MX.Example.ORG", "local"),
            ("src=192.0.2.25 to=bob@192.0.2.25", "local"),
            ("src=2001:db8::25 to=carol@example.com", "outbound"),
            ("src=::ffff:127.0.0.1 to=carol@example.com", "outbound"),
            ("src=127.0.0.1 to=carol@example.com", "outbound"),
            ("src=203.0.113.5 to=alice@localhost", "none"),
            ("src=192.0.2.26 to=carol@example.com", "none"),
            // Expanded addresses come from "local".
            ("src=203.0.113.5 internal to=alice@localhost", "local"),
            ("src=203.0.113.5 internal to=carol@example.com", "outbound"),
        ],
    )
    .await;
}

#[tokio::test]
async fn without_from_or_for_a_rule_is_from_local_for_local() {
    check(
        r#"
action "local" mbox
match action "local"
"#,
        &[
            ("src=127.0.0.1 to=a@localhost", "local"),
            ("src=socket to=a@mx.example.org", "local"),
            ("src=203.0.113.5 to=a@localhost", "none"),
            ("src=127.0.0.1 to=a@example.com", "none"),
            ("src=203.0.113.5 internal to=a@localhost", "local"),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_forms_of_from() {
    check(
        r#"
table trusted { 198.51.100.0/24, "[2001:db8:1::]/48" }
action "sock" mbox
action "src" mbox
action "rdns-table" mbox
action "rdns" mbox
action "any" mbox
match from socket for any action "sock"
match from src <trusted> for any action "src"
match from rdns "*.example.net" for any action "rdns-table"
match from rdns for any action "rdns"
match from any for any action "any"
"#,
        &[
            ("src=socket to=a@example.com", "sock"),
            ("src=198.51.100.7 to=a@example.com", "src"),
            ("src=2001:db8:1::5 to=a@example.com", "src"),
            ("src=2001:db8:2::5 to=a@example.com", "any"),
            ("rdns=mail.example.net to=a@example.com", "rdns-table"),
            ("rdns=a.b.EXAMPLE.net to=a@example.com", "rdns-table"),
            ("rdns=example.net to=a@example.com", "rdns"),
            ("to=a@example.com", "any"),
            // An expanded address is "local": not the socket, not in
            // <trusted>, without a reverse name to test.
            ("src=socket internal to=a@example.com", "any"),
            (
                "src=198.51.100.7 internal rdns=a.example.net to=a@example.com",
                "any",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_forms_of_for() {
    check(
        r#"
table domains { example.org, "*.example.net" }
action "domains" mbox
action "test" mbox
action "local" mbox
action "relay" relay
match from any for domain <domains> action "domains"
match from any for domain regex "\.test$" action "test"
match from any for local action "local"
match from any for any action "relay"
"#,
        &[
            ("to=a@example.org", "domains"),
            ("to=a@EXAMPLE.ORG", "domains"),
            ("to=a@mx.example.net", "domains"),
            ("to=a@example.net", "relay"),
            ("to=a@www.test", "test"),
            ("to=a@WWW.TEST", "test"),
            ("to=a@test.org", "relay"),
            ("to=a@localhost", "local"),
            ("to=a@mx.example.org", "local"),
            ("to=postmaster", "relay"),
        ],
    )
    .await;
}

#[tokio::test]
async fn tag_helo_auth_tls_mail_from_and_rcpt_to() {
    check(
        r#"
table users { alice, "bob@example.org" }
action "tagged" mbox
action "helo" mbox
action "users" mbox
action "admins" mbox
action "authed" mbox
action "tls" mbox
action "bounces" mbox
action "org" mbox
action "pm" mbox
match tag "submission" from any for any action "tagged"
match from any for any helo "*.example.org" action "helo"
match from any auth <users> for any action "users"
match from auth regex "^adm" for any action "admins"
match from any auth for any action "authed"
match from any for any tls action "tls"
match from any mail-from regex "^@$" for any action "bounces"
match from mail-from "@example.org" for any action "org"
match from any for rcpt-to "postmaster" action "pm"
"#,
        &[
            ("tag=submission to=a@example.com", "tagged"),
            ("tag=SUBMISSION to=a@example.com", "tagged"),
            ("tag=other to=a@example.com", "none"),
            ("helo=mx.example.org to=a@example.com", "helo"),
            ("helo=example.org to=a@example.com", "none"),
            ("auth=alice to=a@example.com", "users"),
            ("auth=ALICE to=a@example.com", "users"),
            ("auth=bob@example.org to=a@example.com", "users"),
            ("auth=bob+lists@example.org to=a@example.com", "users"),
            ("auth=bob to=a@example.com", "authed"),
            ("auth=admin to=a@example.com", "admins"),
            ("auth=carol to=a@example.com", "authed"),
            ("tls to=a@example.com", "tls"),
            ("from=<> to=a@example.com", "bounces"),
            ("from=x@example.org to=a@example.com", "org"),
            ("from=x@example.net to=a@example.com", "none"),
            ("to=postmaster@example.com", "pm"),
            ("to=postmaster+x@example.com", "pm"),
            ("to=hostmaster@example.com", "none"),
        ],
    )
    .await;
}

#[tokio::test]
async fn negations() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "match ! from socket for any action \"hit\"",
            &[
                ("src=socket to=a@example.com", "none"),
                ("to=a@example.com", "hit"),
                // Table-less forms never match expanded addresses.
                ("internal to=a@example.com", "none"),
            ],
        ),
        (
            "match ! from rdns for any action \"hit\"",
            &[
                ("to=a@example.com", "hit"),
                ("rdns=mx.example.com to=a@example.com", "none"),
                ("internal to=a@example.com", "none"),
            ],
        ),
        (
            // Without a reverse name, `from rdns <t>` is false, `!` or not.
            "match ! from rdns \"*.example.net\" for any action \"hit\"",
            &[
                ("to=a@example.com", "none"),
                ("rdns=mx.example.net to=a@example.com", "none"),
                ("rdns=mx.example.com to=a@example.com", "hit"),
            ],
        ),
        (
            "match ! from src { 192.0.2.0/24 } for any action \"hit\"",
            &[
                ("src=192.0.2.1 to=a@example.com", "none"),
                ("to=a@example.com", "hit"),
                ("src=192.0.2.1 internal to=a@example.com", "hit"),
            ],
        ),
        (
            "match ! from local for any action \"hit\"",
            &[
                ("src=127.0.0.1 to=a@example.com", "none"),
                ("src=socket to=a@example.com", "none"),
                ("to=a@example.com", "hit"),
            ],
        ),
        (
            "match from any ! for domain example.org action \"hit\"",
            &[("to=a@example.org", "none"), ("to=a@example.com", "hit")],
        ),
        (
            "match from any ! for local action \"hit\"",
            &[("to=a@localhost", "none"), ("to=a@example.com", "hit")],
        ),
        (
            // `!` applies to the auth half; the implied `from any` holds.
            "match ! from auth for any action \"hit\"",
            &[
                ("to=a@example.com", "hit"),
                ("src=socket to=a@example.com", "hit"),
                ("auth=alice to=a@example.com", "none"),
            ],
        ),
        (
            "match from any ! auth alice for any action \"hit\"",
            &[
                ("auth=alice to=a@example.com", "none"),
                ("auth=bob to=a@example.com", "hit"),
                ("to=a@example.com", "hit"),
            ],
        ),
        (
            "match ! from mail-from \"@spam.example\" for any action \"hit\"",
            &[
                ("from=x@spam.example to=a@example.com", "none"),
                ("from=x@ok.example to=a@example.com", "hit"),
                ("from=<> to=a@example.com", "hit"),
            ],
        ),
        (
            "match from any ! for rcpt-to alice@example.org action \"hit\"",
            &[
                ("to=alice@example.org", "none"),
                ("to=alice+tag@example.org", "none"),
                ("to=bob@example.org", "hit"),
            ],
        ),
        (
            "match from any for any ! tag \"in\" action \"hit\"",
            &[
                ("tag=in to=a@example.com", "none"),
                ("tag=out to=a@example.com", "hit"),
                ("to=a@example.com", "hit"),
            ],
        ),
        (
            "match from any for any ! helo regex \"^\\[\" action \"hit\"",
            &[
                ("helo=[192.0.2.1] to=a@example.com", "none"),
                ("helo=mx.example.com to=a@example.com", "hit"),
            ],
        ),
        (
            "match from any for any ! tls action \"hit\"",
            &[
                ("tls to=a@example.com", "none"),
                ("to=a@example.com", "hit"),
            ],
        ),
        (
            "match from any for any ! mail-from regex \"^@$\" action \"hit\"",
            &[
                ("from=<> to=a@example.com", "none"),
                ("from=a@b to=a@example.com", "hit"),
            ],
        ),
    ];
    for (rule, cases) in cases {
        check(&format!("action \"hit\" mbox\n{rule}\n"), cases).await;
    }
}

#[tokio::test]
async fn the_first_matching_rule_wins_and_reject_refuses() {
    let config = load(
        r#"
action "all" relay
match from any for domain example.org reject
match from any for any action "all"
match from any for domain example.com action "all"
"#,
    );
    let tables = tables(&config);
    let run = |spec: &str| {
        let envelope = envelope(spec);
        let (config, tables) = (&config, &tables);
        async move { decide(&config.rules, &envelope, tables).await.unwrap() }
    };
    assert_eq!(run("to=a@example.org").await, Decision::Reject { rule: 0 });
    assert_eq!(
        run("to=a@example.com").await,
        Decision::Action {
            rule: 1,
            action: config.action_named("all").unwrap()
        }
    );
}

#[tokio::test]
async fn file_tables_and_the_sub_address_delimiter() {
    let dir = std::env::temp_dir().join(format!("smtpd-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("vdomains"),
        "# served\nexample.org\n*.example.net\n",
    )
    .unwrap();
    std::fs::write(dir.join("senders"), "@partner.example\nceo@example.org\n").unwrap();
    let conf = format!(
        r#"
smtp sub-addr-delim "-"
table vdomains file:{dir}/vdomains
table partners file:{dir}/senders
action "vmail" maildir
action "partners" relay
match from any mail-from <partners> for any action "partners"
match from any for domain <vdomains> action "vmail"
match from any for rcpt-to alice@example.com action "vmail"
"#,
        dir = dir.display()
    );
    check(
        &conf,
        &[
            ("to=a@example.org", "vmail"),
            ("to=a@lists.example.net", "vmail"),
            ("to=a@example.com", "none"),
            ("to=alice-news@example.com", "vmail"),
            ("to=alice+news@example.com", "none"),
            ("from=x@partner.example to=a@example.com", "partners"),
            ("from=ceo-private@example.org to=a@example.com", "partners"),
            ("from=cfo@example.org to=a@example.org", "vmail"),
        ],
    )
    .await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn table_errors_are_errors_not_misses() {
    let conf = r#"
table broken { x }
action "first" mbox
action "after" mbox
match from any for domain example.org action "first"
match from src { 10.0.0.0/8 } for rcpt-to <broken> action "after"
match from any for any tag <broken> action "after"
match from any for any ! mail-from <broken> action "after"
match from any for any action "after"
"#;
    let config = load(conf);
    let good = tables(&config);
    let tables = Tables::new(
        config
            .tables
            .iter()
            .zip(good.iter())
            .map(|(t, live)| match t.name.as_str() {
                "broken" => Arc::new(UnavailableTable(t.name.clone())) as Arc<dyn Table>,
                _ => Arc::clone(live),
            })
            .collect(),
    );
    let expected = Error::Unavailable {
        table: "broken".to_owned(),
        reason: "backend down".to_owned(),
    };
    // An earlier rule matches: the broken table is never asked.
    let first = decide(&config.rules, &envelope("to=a@example.org"), &tables).await;
    assert!(
        matches!(first, Ok(Decision::Action { rule: 0, .. })),
        "{first:?}"
    );
    // The second rule fails on `from src` before its rcpt-to is asked; the
    // third asks the tag and fails.
    let error = decide(&config.rules, &envelope("to=a@example.com"), &tables).await;
    assert_eq!(error, Err(expected.clone()));
    // A negated criterion fails the same way (`broken` is the first
    // declared table in both configurations, so the same TableId).
    let negated = Config::from_str(
        "table broken { x }\naction \"a\" mbox\nmatch from any for any ! mail-from <broken> action \"a\"\n",
    )
    .unwrap();
    let error = decide(&negated.rules, &envelope("to=a@example.com"), &tables).await;
    assert_eq!(error, Err(expected));
}

#[tokio::test]
async fn keys_too_long_for_a_table_are_errors() {
    let config = load("action \"a\" mbox\nmatch from any for rcpt-to alice action \"a\"\n");
    let tables = tables(&config);
    let long = format!("to={}@example.org", "x".repeat(1100));
    let error = decide(&config.rules, &envelope(&long), &tables).await;
    assert!(matches!(error, Err(Error::InvalidKey { .. })), "{error:?}");
}
