//! Expansion against real smtpd.conf text with static tables: each case is
//! a configuration, a recipient, the `.forward` and include files that
//! exist, and the expected deliveries or reply.
//!
//! Deliveries are written `ACTION DEST USER[+TAG] [file:PATH|cmd:CMD]`,
//! relays `ACTION relay DEST`, with `*` after DEST when the address was
//! produced by expansion; a failure is its SMTP reply.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;

use super::*;
use crate::config::Config;
use crate::rules::Source;
use crate::table::static_table::{LocalHost, StaticTable};
use crate::table::unavailable::UnavailableTable;
use crate::table::Table;

const USERS: &str = r#"
table users { bob = "1000:1000:/home/bob", alice = "1001:1001:/home/alice", root = "0:0:/root", vmail = "2000:2000:/var/vmail", carol = "1002:1002:/home/carol", dave = "1003:1003:/home/dave" }
"#;

const ALIASES: &str = r#"
table aliases { postmaster = root, root = bob, list = "bob, alice, carol@remote.example", \
  gone = "error:550 Gone away", later = "error:450 Try later", alice = "alice, bob", \
  loop1 = loop2, loop2 = loop1, prog = "|/usr/bin/vacation bob", archive = "/var/mail/archive", \
  staff = ":include:/etc/mail/staff", broken = ":include:/nonexistent", \
  bob+list = carol, both = "bob, bob@example.org", \
  d0 = d1, d1 = d2, d2 = d3, d3 = d4, d4 = d5, d5 = d6, d6 = d7, d7 = d8, d8 = d9, d9 = bob }
action "local" maildir alias <aliases> userbase <users>
action "out" relay
match from any for domain "example.org" action "local"
match from any for any action "out"
"#;

const VIRTUAL: &str = r#"
table vmap { "bob@example.org" = vmail, "@example.org" = "catchall@example.net", "list@example.org" = "bob@example.org, alice", \
  "sales+eu@example.org" = carol, "sales@example.org" = alice, "info" = alice, "@" = nobody }
table vmap2 { "known@example.com" = vmail }
action "virt" maildir virtual <vmap> userbase <users>
action "virt2" maildir virtual <vmap2> userbase <users>
action "out" relay
match from any for domain "example.org" action "virt"
match from any for domain "example.com" action "virt2"
match from any for domain "example.net" action "out"
"#;

/// This machine, as the built-in tables see it in these tests.
fn host() -> LocalHost {
    LocalHost {
        server_name: "mx.example.org".to_owned(),
        host_name: "mx".to_owned(),
        addresses: vec!["127.0.0.1".parse().unwrap()],
    }
}

/// A table serving `RAW_VALUES` unchecked, as a program could: it stands
/// in for every table whose name starts with `raw`.
struct Raw(String);

/// What `Raw` tables hold.
const RAW_VALUES: &[(&str, &str)] = &[
    ("bad", "bob, not valid"),
    ("quote", "bob, \"alice"),
    ("good", "bob"),
];

#[async_trait]
impl Table for Raw {
    fn name(&self) -> &str {
        &self.0
    }

    fn backend(&self) -> String {
        "raw".to_owned()
    }

    async fn check(&self, _: Service, key: &str) -> Result<bool, TableError> {
        Ok(RAW_VALUES.iter().any(|(k, _)| *k == key))
    }

    async fn lookup(&self, _: Service, key: &str) -> Result<Option<String>, TableError> {
        Ok(RAW_VALUES
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| (*v).to_owned()))
    }

    async fn update(&self) -> Result<(), TableError> {
        Ok(())
    }
}

/// `.forward` files by user name and include files by path.
#[derive(Default)]
struct Files {
    forwards: HashMap<String, ForwardFile>,
    includes: HashMap<String, String>,
}

#[async_trait]
impl ExpansionFiles for Files {
    async fn forward(&self, user: &UserInfo) -> ForwardFile {
        self.forwards
            .get(&user.username)
            .cloned()
            .unwrap_or(ForwardFile::Missing)
    }

    async fn include(&self, path: &str) -> Option<String> {
        self.includes.get(path).cloned()
    }
}

impl Files {
    fn forward(mut self, user: &str, text: &str) -> Self {
        self.forwards
            .insert(user.to_owned(), ForwardFile::Content(text.to_owned()));
        self
    }

    fn forward_file(mut self, user: &str, file: ForwardFile) -> Self {
        self.forwards.insert(user.to_owned(), file);
        self
    }

    fn include(mut self, path: &str, text: &str) -> Self {
        self.includes.insert(path.to_owned(), text.to_owned());
        self
    }
}

/// Expands `rcpt` with `conf` (tables named in `broken` fail) and shows
/// the result as described at the top of this file.
async fn run(conf: &str, broken: &[&str], files: &Files, rcpt: &str) -> Vec<String> {
    let config = Config::from_str(conf)
        .unwrap_or_else(|e| panic!("configuration should load:\n{conf}\n{e}"));
    let host = host();
    let tables = Tables::new(
        config
            .tables
            .iter()
            .map(|t| {
                if broken.contains(&t.name.as_str()) {
                    return Arc::new(UnavailableTable(t.name.clone())) as Arc<dyn Table>;
                }
                if t.name.starts_with("raw") {
                    return Arc::new(Raw(t.name.clone())) as Arc<dyn Table>;
                }
                let table = StaticTable::from_config_with(t, &host)
                    .unwrap()
                    .with_sub_addr_delim(config.smtp.sub_addr_delim);
                Arc::new(table) as Arc<dyn Table>
            })
            .collect(),
    );
    let rcpt = Address::parse(rcpt);
    let envelope = Envelope::new(
        Source::Ip("203.0.113.5".parse().unwrap()),
        Address::parse("sender@example.com"),
        rcpt.clone(),
    );
    let expander = Expander::new(&config, &tables, files);
    match expander.expand(&envelope).await {
        Ok(deliveries) => deliveries.iter().map(|d| show(&config, d)).collect(),
        Err(failure) => vec![failure.reply(&rcpt)],
    }
}

fn show(config: &Config, delivery: &Delivery) -> String {
    let star = |internal: bool| if internal { "*" } else { "" };
    match delivery {
        Delivery::Relay {
            action,
            dest,
            internal,
        } => format!("{} relay {dest}{}", config[*action].name, star(*internal)),
        Delivery::Local {
            action,
            dest,
            internal,
            user,
            subaddress,
            exec,
        } => {
            let mut text = format!("{} {dest}{} {user}", config[*action].name, star(*internal));
            if !subaddress.is_empty() {
                text.push_str(&format!("+{subaddress}"));
            }
            match exec {
                Some(MdaExec::File(path)) => text.push_str(&format!(" file:{path}")),
                Some(MdaExec::Command(command)) => text.push_str(&format!(" cmd:{command}")),
                None => {}
            }
            text
        }
    }
}

async fn check(conf: &str, broken: &[&str], files: &Files, cases: &[(&str, &[&str])]) {
    for (rcpt, expected) in cases {
        let got = run(conf, broken, files, rcpt).await;
        assert_eq!(got, *expected, "{rcpt}");
    }
}

#[tokio::test]
async fn aliases() {
    let conf = format!("{USERS}{ALIASES}");
    let files = Files::default().include(
        "/etc/mail/staff",
        "bob\n# the boss\nalice, :include:/etc/mail/other\nnot valid\n",
    );
    let cases: &[(&str, &[&str])] = &[
        ("bob@example.org", &["local bob@example.org bob"]),
        ("BOB@Example.org", &["local BOB@Example.org bob"]),
        (
            "bob+Tag@example.org",
            &["local bob+Tag@example.org bob+tag"],
        ),
        (
            "bob+list@example.org",
            &["local bob+list@example.org carol"],
        ),
        (
            "bob+other@example.org",
            &["local bob+other@example.org bob+other"],
        ),
        (
            "postmaster@example.org",
            &["local postmaster@example.org bob"],
        ),
        (
            "list@example.org",
            &[
                "local list@example.org bob",
                "out relay carol@remote.example*",
                // alice's own alias lists alice, one level down.
                "local list@example.org alice",
            ],
        ),
        (
            "alice@example.org",
            &[
                "local alice@example.org alice",
                "local alice@example.org bob",
            ],
        ),
        (
            "both@example.org",
            &["local both@example.org bob", "local bob@example.org* bob"],
        ),
        (
            "prog@example.org",
            &["local prog@example.org _smtpd cmd:/usr/bin/vacation bob"],
        ),
        (
            "archive@example.org",
            &["local archive@example.org _smtpd file:/var/mail/archive"],
        ),
        (
            "staff@example.org",
            &[
                "local staff@example.org bob",
                "local staff@example.org alice",
            ],
        ),
        (
            "someone@elsewhere.example",
            &["out relay someone@elsewhere.example"],
        ),
        (
            "nobody@example.org",
            &["550 Invalid recipient: <nobody@example.org>"],
        ),
        ("gone@example.org", &["550 Gone away: <gone@example.org>"]),
        ("later@example.org", &["450 Try later: <later@example.org>"]),
        (
            "loop1@example.org",
            &["524 5.2.4 Mailing list expansion problem: <loop1@example.org>"],
        ),
        (
            "d0@example.org",
            &["524 5.2.4 Mailing list expansion problem: <d0@example.org>"],
        ),
        ("d2@example.org", &["local d2@example.org bob"]),
        (
            "d1@example.org",
            &["524 5.2.4 Mailing list expansion problem: <d1@example.org>"],
        ),
        // An include that cannot be read counts as no alias.
        (
            "broken@example.org",
            &["550 Invalid recipient: <broken@example.org>"],
        ),
    ];
    check(&conf, &[], &files, cases).await;
}

#[tokio::test]
async fn invalid_alias_values_are_temporary() {
    let conf = format!(
        "{USERS}table rawaliases {{ good = bob }}\naction \"local\" maildir alias <rawaliases> userbase <users>\n\
         match from any for domain \"example.org\" action \"local\"\n"
    );
    let cases: &[(&str, &[&str])] = &[
        ("good@example.org", &["local good@example.org bob"]),
        (
            "bad@example.org",
            &["424 4.2.4 Mailing list expansion problem: <bad@example.org>"],
        ),
        (
            "quote@example.org",
            &["424 4.2.4 Mailing list expansion problem: <quote@example.org>"],
        ),
    ];
    check(&conf, &[], &Files::default(), cases).await;
}

#[tokio::test]
async fn tables_that_fail_are_temporary() {
    let conf = format!("{USERS}{ALIASES}");
    let files = Files::default();
    let cases: &[(&str, &[&str])] = &[(
        "bob@example.org",
        &["424 4.2.4 Mailing list expansion problem: <bob@example.org>"],
    )];
    check(&conf, &["aliases"], &files, cases).await;
    let cases: &[(&str, &[&str])] = &[
        (
            "bob@example.org",
            &["451 Temporary failure: <bob@example.org>"],
        ),
        (
            "someone@elsewhere.example",
            &["out relay someone@elsewhere.example"],
        ),
    ];
    check(&conf, &["users"], &files, cases).await;
    let conf = format!("{USERS}{VIRTUAL}");
    let cases: &[(&str, &[&str])] = &[(
        "bob@example.org",
        &["424 4.2.4 Mailing list expansion problem: <bob@example.org>"],
    )];
    check(&conf, &["vmap"], &files, cases).await;
    let conf = format!(
        "{USERS}table domains {{ example.org }}\naction \"local\" mbox userbase <users>\n\
         match from any for domain <domains> action \"local\"\n"
    );
    let cases: &[(&str, &[&str])] = &[(
        "bob@example.org",
        &["451 Temporary failure: <bob@example.org>"],
    )];
    check(&conf, &["domains"], &files, cases).await;
}

#[tokio::test]
async fn virtual_mappings() {
    let conf = format!("{USERS}{VIRTUAL}");
    let files = Files::default().forward("vmail", "# nothing\n");
    let cases: &[(&str, &[&str])] = &[
        ("bob@example.org", &["virt bob@example.org vmail"]),
        ("Bob+Tag@EXAMPLE.org", &["virt Bob+Tag@EXAMPLE.org vmail"]),
        ("sales+eu@example.org", &["virt sales+eu@example.org carol"]),
        ("sales+us@example.org", &["virt sales+us@example.org alice"]),
        ("info@example.org", &["virt info@example.org alice"]),
        ("other@example.org", &["out relay catchall@example.net*"]),
        (
            "list@example.org",
            &["virt list@example.org alice", "virt bob@example.org* vmail"],
        ),
        ("known@example.com", &["virt2 known@example.com vmail"]),
        (
            "unknown@example.com",
            &["524 5.2.4 Mailing list expansion problem: <unknown@example.com>"],
        ),
        (
            "x@elsewhere.example",
            &["550 Invalid recipient: <x@elsewhere.example>"],
        ),
    ];
    check(&conf, &[], &files, cases).await;
}

#[tokio::test]
async fn forward_files() {
    let conf = format!(
        "{USERS}action \"local\" maildir userbase <users>\naction \"out\" relay\n\
         match from any for domain \"example.org\" action \"local\"\nmatch from any for any action \"out\"\n"
    );
    let files = Files::default()
        .forward(
            "bob",
            "bob, \"|/usr/bin/procmail -d bob\"\n/home/bob/mbox\n",
        )
        .forward("alice", "# away\nfriend@remote.example, \\\n alice\n")
        .forward("dave", "dave@example.org, friend@remote.example\n")
        .forward("root", "|/bin/sh -c reboot\n")
        .forward("carol", "not valid\n")
        .forward("vmail", "")
        .forward_file("sticky", ForwardFile::Temporary("sticky".to_owned()));
    let cases: &[(&str, &[&str])] = &[
        (
            "bob@example.org",
            &[
                "local bob@example.org bob",
                "local bob@example.org bob cmd:/usr/bin/procmail -d bob",
                "local bob@example.org bob file:/home/bob/mbox",
            ],
        ),
        (
            "alice@example.org",
            &[
                "out relay friend@remote.example*",
                "local alice@example.org alice",
            ],
        ),
        // An address that comes back to its own user is cut.
        ("dave@example.org", &["out relay friend@remote.example*"]),
        (
            "root@example.org",
            &["451 Temporary failure: <root@example.org>"],
        ),
        (
            "carol@example.org",
            &["451 Temporary failure: <carol@example.org>"],
        ),
        ("vmail@example.org", &["local vmail@example.org vmail"]),
    ];
    check(&conf, &[], &files, cases).await;

    let refused = Files::default().forward_file("bob", ForwardFile::Refused("mode".to_owned()));
    let cases: &[(&str, &[&str])] = &[(
        "bob@example.org",
        &["550 Invalid recipient: <bob@example.org>"],
    )];
    check(&conf, &[], &refused, cases).await;
    let temporary = Files::default().forward_file("bob", ForwardFile::Temporary("EIO".to_owned()));
    let cases: &[(&str, &[&str])] = &[(
        "bob@example.org",
        &["451 Temporary failure: <bob@example.org>"],
    )];
    check(&conf, &[], &temporary, cases).await;
    let large = Files::default().forward("bob", &"x".repeat(MAX_FORWARD_SIZE));
    check(&conf, &[], &large, cases).await;
    let many: Vec<String> = (0..120)
        .map(|n| format!("user{n}@remote.example"))
        .collect();
    let many = Files::default().forward("bob", &many.join("\n"));
    check(&conf, &[], &many, cases).await;
}

#[tokio::test]
async fn forward_only_expand_only_and_user() {
    let conf = format!(
        "{USERS}action \"fwd\" forward-only userbase <users>\naction \"exp\" expand-only userbase <users>\n\
         action \"as\" maildir userbase <users> user vmail\naction \"out\" relay\n\
         match from any for domain \"fwd.example\" action \"fwd\"\n\
         match from any for domain \"exp.example\" action \"exp\"\n\
         match from any for domain \"as.example\" action \"as\"\n\
         match from any for any action \"out\"\n"
    );
    let files = Files::default()
        .forward("bob", "bob@remote.example\n")
        .forward("alice", "|/usr/bin/true\n")
        .forward("carol", "error:550 No way\n");
    let cases: &[(&str, &[&str])] = &[
        ("bob@fwd.example", &["out relay bob@remote.example*"]),
        (
            "alice@fwd.example",
            &["451 Temporary failure: <alice@fwd.example>"],
        ),
        (
            "carol@fwd.example",
            &["451 Temporary failure: <carol@fwd.example>"],
        ),
        (
            "vmail@fwd.example",
            &["451 Temporary failure: <vmail@fwd.example>"],
        ),
        ("bob@exp.example", &["out relay bob@remote.example*"]),
        (
            "alice@exp.example",
            &["exp alice@exp.example alice cmd:/usr/bin/true"],
        ),
        ("carol@exp.example", &["550 No way: <carol@exp.example>"]),
        (
            "vmail@exp.example",
            &["550 Invalid recipient: <vmail@exp.example>"],
        ),
        ("bob@as.example", &["as bob@as.example bob"]),
        ("vmail@as.example", &["as vmail@as.example vmail"]),
    ];
    check(&conf, &[], &files, cases).await;
}

/// A userinfo value's uid, gid and directory, if valid.
type Parsed = Option<(u32, u32, &'static str)>;

#[test]
fn userinfo_values() {
    let cases: &[(&str, Parsed)] = &[
        ("1000:1000:/home/bob", Some((1000, 1000, "/home/bob"))),
        ("0:0:/weird:dir", Some((0, 0, "/weird:dir"))),
        ("1000:1000:", None),
        ("x:1000:/home", None),
        ("1000:/home", None),
        ("-1:0:/", None),
        ("4294967296:0:/", None),
    ];
    for (value, expected) in cases {
        let got = UserInfo::parse("bob", value).map(|u| (u.uid, u.gid, u.directory));
        let expected = expected.map(|(u, g, d)| (u, g, d.to_owned()));
        assert_eq!(got, expected, "{value}");
    }
}
