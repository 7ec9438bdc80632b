//! Built-in filters against real smtpd.conf text: each case is a filter
//! definition, the session's facts written as `key=value` words, and the
//! expected outcome.
//!
//! Fact words: `src=IP|socket` (default `203.0.113.5`), `rdns=NAME`,
//! `fcrdns`, `helo=NAME`, `auth=USER`, `from=ADDR` (`from=<>` for the null
//! sender), `to=ADDR`. Outcomes: `proceed`, `bypass`, `junk`,
//! `reject:REPLY`, `disconnect:REPLY`, `rewrite:VALUE`, `report:TEXT`.

use std::str::FromStr;
use std::sync::Arc;

use super::*;
use crate::config::{Config, FilterKind};
use crate::table::static_table::{LocalHost, StaticTable};
use crate::table::unavailable::UnavailableTable;
use crate::table::Table;

/// This machine, as the built-in tables see it in these tests.
fn host() -> LocalHost {
    LocalHost {
        server_name: "mx.example.org".to_owned(),
        host_name: "mx".to_owned(),
        addresses: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
    }
}

/// The configuration of `filter f ...` (and any tables before it), with
/// a listener using it and a rule.
fn load(conf: &str) -> Config {
    let text =
        format!("{conf}\nlisten on lo filter f\naction \"a\" mbox\nmatch from any action \"a\"\n");
    Config::from_str(&text).unwrap_or_else(|e| panic!("configuration should load:\n{text}\n{e}"))
}

/// The live tables of `config`, every one static.
fn tables(config: &Config) -> Tables {
    let host = host();
    Tables::new(
        config
            .tables
            .iter()
            .map(|t| Arc::new(StaticTable::from_config_with(t, &host).unwrap()) as Arc<dyn Table>)
            .collect(),
    )
}

/// The built-in filter named `f`.
fn filter_f(config: &Config) -> &BuiltinFilter {
    let filter = config
        .filters
        .iter()
        .find(|f| f.name == "f")
        .expect("a filter named f");
    match &filter.kind {
        FilterKind::Builtin(builtin) => builtin,
        other => panic!("f is not built-in: {other:?}"),
    }
}

/// Owned facts, read from the words described at the top of this file.
#[derive(Default)]
struct Session {
    src: Option<Source>,
    rdns: Option<String>,
    fcrdns: bool,
    helo: Option<String>,
    auth: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

impl Session {
    fn parse(spec: &str) -> Self {
        let mut s = Self::default();
        for word in spec.split_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            let value = Some(value.to_owned());
            match key {
                "src" if value.as_deref() == Some("socket") => s.src = Some(Source::Socket),
                "src" => s.src = Some(Source::Ip(word[4..].parse().unwrap())),
                "rdns" => s.rdns = value,
                "fcrdns" => s.fcrdns = true,
                "helo" => s.helo = value,
                "auth" => s.auth = value,
                "from" if value.as_deref() == Some("<>") => s.from = Some(String::new()),
                "from" => s.from = value,
                "to" => s.to = value,
                _ => panic!("unknown fact word {word:?}"),
            }
        }
        s
    }

    fn facts(&self) -> Facts<'_> {
        Facts {
            src: self
                .src
                .unwrap_or_else(|| Source::Ip("203.0.113.5".parse().unwrap())),
            rdns: self.rdns.as_deref(),
            fcrdns: self.fcrdns,
            helo: self.helo.as_deref(),
            auth_user: self.auth.as_deref(),
            mail_from: self.from.as_deref(),
            rcpt_to: self.to.as_deref(),
        }
    }
}

/// The outcome as the cases write it.
fn shown(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Proceed => "proceed".to_owned(),
        Outcome::Bypass => "bypass".to_owned(),
        Outcome::Junk => "junk".to_owned(),
        Outcome::Reject(r) => format!("reject:{r}"),
        Outcome::Disconnect(r) => format!("disconnect:{r}"),
        Outcome::Rewrite(v) => format!("rewrite:{v}"),
        Outcome::Report(t) => format!("report:{t}"),
    }
}

/// Runs every case against the filter `f` of `conf`.
async fn check(conf: &str, cases: &[(&str, &str)]) {
    let config = load(conf);
    let tables = tables(&config);
    let filter = filter_f(&config);
    for (spec, expected) in cases {
        let session = Session::parse(spec);
        let outcome = evaluate(filter, &session.facts(), &tables)
            .await
            .unwrap_or_else(|e| panic!("{spec}: {e}\nin:\n{conf}"));
        assert_eq!(shown(&outcome), *expected, "facts {spec:?} in:\n{conf}");
    }
}

#[tokio::test]
async fn fcrdns_and_its_negation() {
    check(
        r#"filter f phase connect match fcrdns junk"#,
        &[
            ("fcrdns rdns=a.example", "junk"),
            ("rdns=a.example", "proceed"),
        ],
    )
    .await;
    check(
        r#"filter f phase connect match !fcrdns disconnect "550 no FCrDNS""#,
        &[
            ("fcrdns rdns=a.example", "proceed"),
            ("", "disconnect:550 no FCrDNS"),
        ],
    )
    .await;
}

#[tokio::test]
async fn rdns_is_a_name_not_an_address_literal() {
    check(
        r#"filter f phase connect match rdns report "named""#,
        &[
            ("rdns=host.example.net", "report:named"),
            ("", "proceed"),
            ("rdns=<unknown>", "proceed"),
            ("rdns=192.0.2.7", "proceed"),
            ("rdns=[192.0.2.7]", "proceed"),
            ("rdns=[IPv6:2001:db8::7]", "proceed"),
            ("rdns=2001:db8::7", "proceed"),
        ],
    )
    .await;
    check(
        r#"filter f phase helo match !rdns reject "550 no rDNS""#,
        &[
            ("rdns=host.example.net", "proceed"),
            ("", "reject:550 no rDNS"),
            ("rdns=[192.0.2.7]", "reject:550 no rDNS"),
        ],
    )
    .await;
}

#[tokio::test]
async fn rdns_table_domain_and_regex() {
    let conf = r#"
table dyn { "*.dyn.example" }
filter f phase connect match rdns <dyn> junk
"#;
    check(
        conf,
        &[
            ("rdns=h1.dyn.example", "junk"),
            ("rdns=H1.DYN.Example", "junk"),
            ("rdns=mail.example", "proceed"),
            ("", "proceed"),
        ],
    )
    .await;
    check(
        r#"filter f phase connect match ! rdns regex { "^[0-9-]+[.]pool[.]" } bypass"#,
        &[
            ("rdns=1-2-3-4.pool.isp.example", "proceed"),
            ("rdns=mx.isp.example", "bypass"),
            // Unknown is "not in the table": the negation holds.
            ("", "bypass"),
        ],
    )
    .await;
}

#[tokio::test]
async fn src_tables_netaddr_regex_and_the_socket() {
    check(
        r#"filter f phase connect match src { 10.0.0.0/8, "2001:db8::/32" } bypass"#,
        &[
            ("src=10.1.2.3", "bypass"),
            ("src=192.0.2.1", "proceed"),
            ("src=2001:db8::5", "bypass"),
            ("src=::ffff:10.9.9.9", "bypass"),
            ("src=socket", "proceed"),
        ],
    )
    .await;
    check(
        r#"
table locals { 127.0.0.0/8, "::1", "local" }
filter f phase mail-from match !src <locals> reject "550 local only"
"#,
        &[
            ("src=127.0.0.1", "proceed"),
            ("src=socket", "proceed"),
            ("src=192.0.2.1", "reject:550 local only"),
        ],
    )
    .await;
    check(
        r#"filter f phase connect match src regex { "^192[.]0[.]2[.]" } junk"#,
        &[("src=192.0.2.44", "junk"), ("src=198.51.100.1", "proceed")],
    )
    .await;
}

#[tokio::test]
async fn helo_tables() {
    check(
        r#"filter f phase helo match helo { localhost, "*.local" } disconnect "550 bad HELO""#,
        &[
            ("helo=localhost", "disconnect:550 bad HELO"),
            ("helo=box.LOCAL", "disconnect:550 bad HELO"),
            ("helo=mail.example.net", "proceed"),
        ],
    )
    .await;
    check(
        r#"filter f phase mail-from match !helo regex { "^mail[.]" } report "odd helo""#,
        &[
            ("helo=mail.example.net", "proceed"),
            ("helo=[192.0.2.7]", "report:odd helo"),
            ("", "report:odd helo"),
        ],
    )
    .await;
}

#[tokio::test]
async fn auth_with_and_without_a_table() {
    check(
        r#"filter f phase mail-from match auth bypass"#,
        &[("auth=alice", "bypass"), ("", "proceed")],
    )
    .await;
    check(
        r#"filter f phase rcpt-to match !auth reject "530 authenticate first""#,
        &[
            ("auth=alice", "proceed"),
            ("", "reject:530 authenticate first"),
        ],
    )
    .await;
    check(
        r#"filter f phase data match auth { alice, "bob@example.org" } junk"#,
        &[
            ("auth=alice", "junk"),
            ("auth=ALICE", "junk"),
            ("auth=bob@example.org", "junk"),
            ("auth=carol", "proceed"),
            ("", "proceed"),
        ],
    )
    .await;
    check(
        r#"filter f phase commit match ! auth regex { "^adm" } reject "554 not an admin""#,
        &[
            ("auth=admin", "proceed"),
            ("auth=carol", "reject:554 not an admin"),
            ("", "reject:554 not an admin"),
        ],
    )
    .await;
}

#[tokio::test]
async fn mail_from_tables_and_the_null_sender() {
    check(
        r#"filter f phase mail-from match mail-from { "@spam.example" } reject "550 go away""#,
        &[
            ("from=anyone@spam.example", "reject:550 go away"),
            ("from=ok@example.org", "proceed"),
            ("from=<>", "proceed"),
        ],
    )
    .await;
    check(
        r#"filter f phase data match ! mail-from regex { "@example[.]org$" } junk"#,
        &[
            ("from=a@example.org", "proceed"),
            ("from=a@example.com", "junk"),
        ],
    )
    .await;
}

#[tokio::test]
async fn rcpt_to_tables() {
    check(
        r#"filter f phase rcpt-to match rcpt-to { "postmaster" } bypass"#,
        &[
            ("to=postmaster@example.org", "bypass"),
            ("to=alice@example.org", "proceed"),
        ],
    )
    .await;
    check(
        r#"filter f phase rcpt-to match rcpt-to regex { "^test" } rewrite "<sink@example.org>""#,
        &[
            ("to=test1@example.org", "rewrite:<sink@example.org>"),
            ("to=real@example.org", "proceed"),
        ],
    )
    .await;
}

#[tokio::test]
async fn replies_that_are_not_4xx_or_5xx_become_421_and_421_disconnects() {
    check(
        r#"filter f phase connect match !fcrdns reject "250 fine""#,
        &[("", "disconnect:421 Internal server error")],
    )
    .await;
    check(
        r#"filter f phase connect match !fcrdns reject "421 try later""#,
        &[("", "disconnect:421 try later")],
    )
    .await;
    check(
        r#"filter f phase connect match !fcrdns disconnect "no code""#,
        &[("", "disconnect:421 Internal server error")],
    )
    .await;
    for (message, expected) in [
        ("550 5.7.1 No", ("550 5.7.1 No", false)),
        ("451 x", ("451 x", false)),
        ("550 5", ("550 5", false)),
        ("550 ", (INTERNAL_ERROR_REPLY, true)),
        ("550", (INTERNAL_ERROR_REPLY, true)),
        ("55 0 x", (INTERNAL_ERROR_REPLY, true)),
        ("5500 x", (INTERNAL_ERROR_REPLY, true)),
        ("650 x", (INTERNAL_ERROR_REPLY, true)),
        ("354 go on", (INTERNAL_ERROR_REPLY, true)),
        ("421 4.7.0 bye", ("421 4.7.0 bye", true)),
    ] {
        assert_eq!(
            checked_reply(message),
            (expected.0.to_owned(), expected.1),
            "{message:?}"
        );
    }
}

#[tokio::test]
async fn phase_auth_runs_at_connect() {
    let config = load("filter f phase auth match auth junk");
    assert_eq!(run_phase(filter_f(&config)), Phase::Connect);
    let config = load("filter f phase ehlo match rdns junk");
    assert_eq!(run_phase(filter_f(&config)), Phase::Ehlo);
}

/// The live tables of `config`, the table `broken` down.
fn broken(config: &Config) -> Tables {
    let good = tables(config);
    Tables::new(
        config
            .tables
            .iter()
            .zip(good.iter())
            .map(|(t, live)| match t.name.as_str() {
                "broken" => Arc::new(UnavailableTable(t.name.clone())) as Arc<dyn Table>,
                _ => Arc::clone(live),
            })
            .collect(),
    )
}

#[tokio::test]
async fn a_table_error_is_an_error_negated_or_not() {
    for conf in [
        "table broken { x }\nfilter f phase mail-from match mail-from <broken> junk",
        "table broken { x }\nfilter f phase mail-from match ! mail-from <broken> junk",
        "table broken { x }\nfilter f phase mail-from match auth <broken> junk",
    ] {
        let config = load(conf);
        let tables = broken(&config);
        let session = Session::parse("from=a@example.org auth=alice");
        let outcome = evaluate(filter_f(&config), &session.facts(), &tables).await;
        assert_eq!(
            outcome,
            Err(Error::Unavailable {
                table: "broken".to_owned(),
                reason: "backend down".to_owned(),
            }),
            "{conf}"
        );
    }
    // Without a value to test, the table is not asked.
    let config = load("table broken { x }\nfilter f phase helo match helo <broken> junk");
    let tables = broken(&config);
    let outcome = evaluate(filter_f(&config), &Session::parse("").facts(), &tables).await;
    assert_eq!(outcome, Ok(Outcome::Proceed));
}
