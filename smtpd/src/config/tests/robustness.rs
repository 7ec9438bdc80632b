//! No input makes loading panic: arbitrary text, and text assembled from
//! the language's own words and punctuation (which reaches deeper into the
//! grammar and the checks), gives a configuration or errors.

use proptest::prelude::*;

use crate::config::{Config, LoadOptions};

/// Pieces of smtpd.conf: keywords, values, punctuation, quotes, macros.
const PIECES: &[&str] = &[
    "action",
    "match",
    "from",
    "for",
    "any",
    "local",
    "src",
    "rdns",
    "auth",
    "tls",
    "table",
    "listen",
    "on",
    "socket",
    "port",
    "filter",
    "chain",
    "phase",
    "connect",
    "helo",
    "reject",
    "junk",
    "relay",
    "host",
    "domain",
    "maildir",
    "mbox",
    "alias",
    "virtual",
    "userbase",
    "pki",
    "ca",
    "cert",
    "key",
    "queue",
    "ttl",
    "encryption",
    "bounce",
    "warn-interval",
    "smtp",
    "limit",
    "mta",
    "mda",
    "wrapper",
    "srs",
    "admd",
    "include",
    "proc",
    "proc-exec",
    "regex",
    "mail-from",
    "rcpt-to",
    "tag",
    "smtps",
    "verify",
    "lo",
    "127.0.0.1",
    "::1",
    "\"a\"",
    "'b'",
    "\"x y\"",
    "25",
    "-1",
    "4h",
    "35M",
    "10.0.0.0/8",
    "smtp://h",
    "m",
    "$m",
    "$",
    "{",
    "}",
    "<",
    ">",
    "!",
    ",",
    "=",
    "=>",
    "#",
    "\\",
    "\n",
    " ",
    "\t",
    "\"",
    "'",
    "\\\n",
    "m = x\n",
    "action \"a\" mbox\n",
    "match from any action \"a\"\n",
];

fn assembled() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..60).prop_map(|pieces| pieces.join(" "))
}

fn load(text: &str) {
    let _ = Config::parse_str("fuzz.conf", text, &LoadOptions::default());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn assembled_text_never_panics(text in assembled()) {
        load(&text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        load(&text);
    }

    #[test]
    fn errors_always_render(text in assembled()) {
        if let Err(e) = Config::parse_str("fuzz.conf", &text, &LoadOptions::default()) {
            let rendered = e.to_string();
            prop_assert!(rendered.ends_with("in the configuration"));
        }
    }
}
