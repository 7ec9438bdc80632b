//! Rule evaluation speed: how many `match` rules per second the rules
//! engine tests, over the daemon's own tables, for three configurations:
//!
//! - `office`: a small office (5 rules: local mail, the office domain, the
//!   LAN and authenticated users relaying, the rest rejected);
//! - `virtual_hosting`: 50 rules, most of them `for domain <customerN>`
//!   with a `file:` table per customer, a sender block list and a
//!   blocked-networks table in front, a table of every hosted domain near
//!   the end;
//! - `worst_case`: 50 rules whose `from` and `for` hold and whose
//!   `mail-from <t>` misses, so that every table is asked and only the
//!   last rule matches.
//!
//! ```text
//! cargo bench -p smtpd --bench rules
//! ```
//!
//! Each iteration decides a fixed set of envelopes; the throughput is
//! counted in rules tested (every rule up to and including the one that
//! matched), so criterion's `elem/s` reads as rules/s. The rules tested per
//! decision are printed at start, to turn it into decisions/s. Tables are
//! built with `smtpd::table::build`, as the daemon builds them.

use std::path::Path;
use std::str::FromStr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use smtpd::config::Config;
use smtpd::rules::{decide, Address, Decision, Envelope, Source};
use smtpd::table::{build, BuildOptions, Tables};
use tokio::runtime::Runtime;

/// One configuration under test and the envelopes decided in each
/// iteration.
struct Scenario {
    name: &'static str,
    config: Config,
    tables: Tables,
    envelopes: Vec<Envelope>,
}

/// `key=value` words: `src=IP|socket`, `auth=USER`, `tag=TAG`,
/// `from=ADDR`, `to=ADDR`.
fn envelope(spec: &str) -> Envelope {
    let mut envelope = Envelope::new(
        Source::Ip("203.0.113.5".parse().expect("an address")),
        Address::parse("sender@example.com"),
        Address::default(),
    );
    for word in spec.split_whitespace() {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        match key {
            "src" if value == "socket" => envelope.source = Source::Socket,
            "src" => envelope.source = Source::Ip(value.parse().expect("an address")),
            "auth" => envelope.auth_user = Some(value.to_owned()),
            "tag" => envelope.tag = Some(value.to_owned()),
            "from" => envelope.mail_from = Address::parse(value),
            "to" => envelope.rcpt_to = Address::parse(value),
            _ => panic!("unknown envelope word {word:?}"),
        }
    }
    envelope
}

fn write(dir: &Path, name: &str, lines: impl IntoIterator<Item = String>) {
    let text: String = lines.into_iter().map(|l| l + "\n").collect();
    std::fs::write(dir.join(name), text).expect("the bench directory is writable");
}

fn office(dir: &Path) -> (String, Vec<Envelope>) {
    write(
        dir,
        "aliases",
        ["postmaster: root", "abuse: root", "root: alice"].map(str::to_owned),
    );
    let conf = format!(
        r#"
table aliases file:{dir}/aliases
table lan {{ 192.168.1.0/24, 127.0.0.0/8, "[::1]" }}
listen on socket
listen on lo
action "local" mbox alias <aliases>
action "outbound" relay
match from local for local action "local"
match from any for domain "office.example" action "local"
match from src <lan> for any action "outbound"
match from any auth for any action "outbound"
match from any for any reject
"#,
        dir = dir.display()
    );
    let envelopes = [
        "src=127.0.0.1 to=alice@localhost",
        "src=socket to=bob@localhost",
        "src=203.0.113.9 to=bob@office.example",
        "src=203.0.113.9 to=carol@office.example",
        "src=192.168.1.20 to=x@example.com",
        "src=198.51.100.3 auth=carol to=x@example.net",
        "src=198.51.100.3 to=x@example.net",
    ];
    (conf, envelopes.iter().map(|s| envelope(s)).collect())
}

/// The number of customers of the virtual hosting configuration.
const CUSTOMERS: usize = 44;

fn virtual_hosting(dir: &Path) -> (String, Vec<Envelope>) {
    write(
        dir,
        "blocked-senders",
        (0..100).map(|i| format!("@spam{i}.example")),
    );
    write(
        dir,
        "blocked-nets",
        (0..50).map(|i| format!("198.18.{i}.0/24")),
    );
    write(
        dir,
        "all-domains",
        (0..CUSTOMERS).flat_map(|c| (0..5).map(move |d| format!("d{d}.customer{c}.example"))),
    );
    let mut conf = format!(
        r#"
table blocked-senders file:{dir}/blocked-senders
table blocked-nets file:{dir}/blocked-nets
table all-domains file:{dir}/all-domains
table users {{ alice, bob, carol }}
action "local" maildir
action "relay" relay
action "vmail" maildir "/var/vmail/%{{dest.domain}}/%{{dest.user}}"
match from any mail-from <blocked-senders> for any reject
match from src <blocked-nets> for any reject
match tag "submission" from any auth <users> for any action "relay"
match from local for local action "local"
"#,
        dir = dir.display()
    );
    for c in 0..CUSTOMERS {
        write(
            dir,
            &format!("customer{c}"),
            (0..5).map(|d| format!("d{d}.customer{c}.example")),
        );
        conf.push_str(&format!(
            "table customer{c} file:{dir}/customer{c}\n\
             action \"customer{c}\" maildir \"/var/vmail/customer{c}/%{{dest.user}}\"\n\
             match from any for domain <customer{c}> action \"customer{c}\"\n",
            dir = dir.display()
        ));
    }
    conf.push_str("match from any for domain <all-domains> action \"vmail\"\n");
    conf.push_str("match from any for any reject\n");
    let mut envelopes: Vec<Envelope> = (0..CUSTOMERS)
        .step_by(4)
        .map(|c| envelope(&format!("to=user@d{}.customer{c}.example", c % 5)))
        .collect();
    envelopes.extend(
        [
            "from=x@spam7.example to=user@d0.customer3.example",
            "src=198.18.20.1 to=user@d0.customer3.example",
            "tag=submission auth=alice to=friend@example.net",
            "src=127.0.0.1 to=root@localhost",
            "to=nobody@unknown.example",
        ]
        .iter()
        .map(|s| envelope(s)),
    );
    (conf, envelopes)
}

/// The number of rules of the worst case.
const WORST_RULES: usize = 50;

fn worst_case(dir: &Path) -> (String, Vec<Envelope>) {
    let mut conf = String::from("action \"relay\" relay\n");
    for r in 0..WORST_RULES - 1 {
        write(
            dir,
            &format!("senders{r}"),
            (0..20).map(|i| format!("user{i}@sender{r}.example")),
        );
        conf.push_str(&format!(
            "table senders{r} file:{dir}/senders{r}\n\
             match from any for any mail-from <senders{r}> action \"relay\"\n",
            dir = dir.display()
        ));
    }
    conf.push_str("match from any for any action \"relay\"\n");
    let envelopes = (0..4)
        .map(|i| {
            envelope(&format!(
                "from=someone{i}@elsewhere.example to=x@example.net"
            ))
        })
        .collect();
    (conf, envelopes)
}

fn scenarios(rt: &Runtime, dir: &Path) -> Vec<Scenario> {
    type Make = fn(&Path) -> (String, Vec<Envelope>);
    let makers: [(&str, Make); 3] = [
        ("office", office),
        ("virtual_hosting", virtual_hosting),
        ("worst_case", worst_case),
    ];
    makers
        .into_iter()
        .map(|(name, make)| {
            let sub = dir.join(name);
            std::fs::create_dir_all(&sub).expect("the bench directory is writable");
            let (text, envelopes) = make(&sub);
            let config = Config::from_str(&text)
                .unwrap_or_else(|e| panic!("the {name} configuration loads:\n{e}"));
            let tables = rt
                .block_on(build(&config, &BuildOptions::default()))
                .unwrap_or_else(|e| panic!("the {name} tables build: {e}"));
            Scenario {
                name,
                config,
                tables,
                envelopes,
            }
        })
        .collect()
}

/// Decides every envelope once; returns the number of rules tested.
async fn decide_all(s: &Scenario) -> u64 {
    let mut tested = 0;
    for envelope in &s.envelopes {
        let decision = decide(&s.config.rules, envelope, &s.tables)
            .await
            .expect("static tables do not fail");
        tested += match decision {
            Decision::Action { rule, .. } | Decision::Reject { rule } => rule + 1,
            Decision::NoMatch => s.config.rules.len(),
        };
    }
    u64::try_from(tested).unwrap_or(u64::MAX)
}

fn bench_rules(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = std::env::temp_dir().join(format!("smtpd-bench-rules-{}", std::process::id()));
    let scenarios = scenarios(&rt, &dir);
    let mut group = c.benchmark_group("rules");
    for s in &scenarios {
        let tested = rt.block_on(decide_all(s));
        eprintln!(
            "{}: {} rules, {} envelopes, {:.1} rules tested per decision",
            s.name,
            s.config.rules.len(),
            s.envelopes.len(),
            tested as f64 / s.envelopes.len() as f64
        );
        group.throughput(Throughput::Elements(tested));
        group.bench_with_input(BenchmarkId::from_parameter(s.name), s, |b, s| {
            b.iter(|| rt.block_on(decide_all(s)));
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_rules);
criterion_main!(benches);
