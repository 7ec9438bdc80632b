//! Invalid configurations and the exact errors they give
//! (`file:line:column: message`), every error of a file, in order.

use super::{failure, headlines, TempDir};
use crate::config::*;

/// A valid action and rule, for cases about something else.
const OK: &str = "action \"a\" mbox\nmatch from any action \"a\"\n";

fn check(cases: &[(&str, &[&str])]) {
    for (text, expected) in cases {
        let got = headlines(text, &LoadOptions::default());
        assert_eq!(&got, expected, "for:\n{text}");
    }
}

#[test]
fn syntax_errors() {
    // Each case is followed by a valid action and rule.
    let cases: &[(&str, &[&str])] = &[
        (
            "listen on lo prot 25\n",
            &["smtpd.conf:1:14: syntax error: unexpected `prot`"],
        ),
        (
            "listen on lo port\n",
            &["smtpd.conf:1:18: syntax error: unexpected end of line"],
        ),
        (
            "lisen on lo\n",
            &["smtpd.conf:1:1: syntax error: unexpected `lisen`"],
        ),
        (
            "action local mbox\n",
            &["smtpd.conf:1:8: syntax error: unexpected keyword `local`"],
        ),
        (
            "match from any action\n",
            &["smtpd.conf:1:22: syntax error: unexpected end of line"],
        ),
        (
            "match from anywhere action \"a\"\n",
            &["smtpd.conf:1:12: syntax error: unexpected `anywhere`"],
        ),
        (
            "table t { a = b, c }\n",
            &["smtpd.conf:1:20: syntax error: unexpected `}`"],
        ),
        (
            "table t { a, b\n",
            &["smtpd.conf:1:15: syntax error: unexpected end of line"],
        ),
        (
            "table t { }\n",
            &["smtpd.conf:1:11: syntax error: unexpected `}`"],
        ),
        (
            "action \"a\" mbox ttl\n",
            &["smtpd.conf:1:20: syntax error: unexpected end of line"],
        ),
        (
            "queue encryption -\n",
            &["smtpd.conf:1:18: syntax error: unexpected `-`"],
        ),
        (
            "port = 25\n",
            &["smtpd.conf:1:1: syntax error: unexpected keyword `port`"],
        ),
        (
            "s = \"abc\n",
            &["smtpd.conf:3:25: syntax error: unterminated quoted string"],
        ),
        (
            "a = \"x\0y\"\n",
            &["smtpd.conf:1:7: syntax error: NUL byte in the configuration"],
        ),
        (
            "filter f phase connect match rdns\n",
            &["smtpd.conf:1:34: syntax error: unexpected end of line"],
        ),
        (
            "smtp limit max-mails\n",
            &["smtpd.conf:1:21: syntax error: unexpected end of line"],
        ),
        (
            "mta limit max-conn-per-host 4h\n",
            &["smtpd.conf:1:29: syntax error: unexpected `4h`"],
        ),
    ];
    for (text, expected) in cases {
        let text = format!("{text}{OK}");
        assert_eq!(
            &headlines(&text, &LoadOptions::default()),
            expected,
            "for:\n{text}"
        );
    }
}

#[test]
fn every_error_is_reported() {
    let text = "listen on lo prot 25\naction \"a\" mbox alias <missing>\nqueue ttl 0s\n\
                match from any action \"b\"\nlisten on lo port 0\n";
    check(&[(
        text,
        &[
            "smtpd.conf:1:14: syntax error: unexpected `prot`",
            "smtpd.conf:2:24: no table named \"missing\"",
            "smtpd.conf:3:11: invalid ttl delay: 0s",
            "smtpd.conf:4:23: no action named \"b\"",
            "smtpd.conf:5:19: invalid port: 0",
        ],
    )]);
}

#[test]
fn rules_are_required() {
    check(&[
        ("", &["smtpd.conf:1:1: no rules, nothing to do"]),
        (
            "action \"a\" mbox\n",
            &["smtpd.conf:1:16: no rules, nothing to do"],
        ),
        (
            "# nothing\n\n",
            &["smtpd.conf:2:1: no rules, nothing to do"],
        ),
    ]);
}

#[test]
fn undefined_names() {
    check(&[
        (
            "match from any action \"x\"\n",
            &["smtpd.conf:1:23: no action named \"x\""],
        ),
        (
            "match from any action \"x\"\naction \"x\" mbox\n",
            &["smtpd.conf:1:23: no action named \"x\""],
        ),
        (
            "action \"a\" mbox alias <aliases>\nmatch action \"a\"\n",
            &["smtpd.conf:1:24: no table named \"aliases\""],
        ),
        (
            "action \"a\" mbox userbase <getpwnam>\nmatch action \"a\"\n",
            &["smtpd.conf:1:27: no table named \"getpwnam\""],
        ),
        (
            &*format!("{OK}listen on lo filter f\n"),
            &["smtpd.conf:3:21: no filter named \"f\""],
        ),
        (
            &*format!("{OK}filter f proc p\n"),
            &["smtpd.conf:3:15: no proc named \"p\""],
        ),
        (
            &*format!("{OK}filter c chain {{ x }}\n"),
            &["smtpd.conf:3:18: no filter named \"x\""],
        ),
        (
            &*format!("{OK}listen on lo smtps pki mail\n"),
            &["smtpd.conf:3:24: no pki named \"mail\""],
        ),
        (
            &*format!("{OK}listen on lo ca myca\n"),
            &["smtpd.conf:3:17: no ca named \"myca\""],
        ),
        (
            "action \"a\" mda \"x\" wrapper w\nmatch action \"a\"\n",
            &["smtpd.conf:1:28: no mda wrapper named \"w\""],
        ),
        (
            &*format!("{OK}action r relay tls pki mail\n"),
            &["smtpd.conf:3:24: no pki named \"mail\""],
        ),
        (
            &*format!("{OK}action r relay ca myca\n"),
            &["smtpd.conf:3:19: no ca named \"myca\""],
        ),
    ]);
    let e = failure(
        "match from any action \"x\"\naction \"x\" mbox\n",
        &LoadOptions::default(),
    );
    assert_eq!(
        e.diagnostics[0].expected.as_deref(),
        Some("an action declared before use: \"x\" is declared later, at smtpd.conf:2")
    );
}

#[test]
fn duplicate_names() {
    check(&[
        (
            &*format!("table t {{ a }}\ntable t {{ b }}\n{OK}"),
            &["smtpd.conf:2:7: table \"t\" is already declared"],
        ),
        (
            &*format!("{OK}action \"a\" maildir\n"),
            &["smtpd.conf:3:8: action \"a\" is already declared"],
        ),
        (
            &*format!("{OK}filter f proc-exec x\nfilter f proc-exec y\n"),
            &["smtpd.conf:4:8: filter \"f\" is already declared"],
        ),
        (
            &*format!("{OK}proc p x\nproc p y\n"),
            &["smtpd.conf:4:6: proc \"p\" is already declared"],
        ),
        (
            &*format!("{OK}proc f x\nfilter f proc-exec y\n"),
            &["smtpd.conf:4:8: proc \"f\" is already declared"],
        ),
        (
            &*format!("{OK}mda wrapper w x\nmda wrapper w y\n"),
            &["smtpd.conf:4:13: mda wrapper \"w\" is already declared"],
        ),
    ]);
}

#[test]
fn tables_used_for_what_they_cannot_serve() {
    check(&[
        (
            "table d { example.org }\naction \"a\" mbox alias <d>\nmatch action \"a\"\n",
            &["smtpd.conf:2:23: table \"d\" may not be used for alias lookups: it is a list"],
        ),
        (
            "action \"a\" mbox virtual \"x\"\nmatch action \"a\"\n",
            &["smtpd.conf:1:25: this inline table may not be used for virtual lookups: it is a list"],
        ),
        (
            &*format!("table m {{ a = b }}\n{OK}match from src <m> action \"a\"\n"),
            &["smtpd.conf:4:16: table \"m\" may not be used for from src lookups: it is a mapping"],
        ),
        (
            &*format!("{OK}match for domain {{ a = b }} action \"a\"\n"),
            &["smtpd.conf:3:18: this inline table may not be used for for domain lookups: it is a mapping"],
        ),
        (
            &*format!("{OK}action r relay host {{ a = \"smtp://x\" }}\n"),
            &["smtpd.conf:3:21: this inline table may not be used for relay host lookups: it is a mapping"],
        ),
        (
            &*format!("{OK}action r relay domain {{ x }}\n"),
            &["smtpd.conf:3:23: this inline table may not be used for relay domain lookups: it is a list"],
        ),
        (
            &*format!("table pw getpwnam\n{OK}action \"b\" mbox alias <pw>\n"),
            &["smtpd.conf:4:23: table \"pw\" may not be used for alias lookups: its backend does not serve alias"],
        ),
        (
            &*format!("{OK}listen on lo senders {{ alice }}\n"),
            &["smtpd.conf:3:22: this inline table may not be used for senders lookups: it is a list"],
        ),
        (
            &*format!("{OK}match from src regex {{ a = b }} action \"a\"\n"),
            &["smtpd.conf:3:22: this inline table may not be used for from src lookups: it is a mapping"],
        ),
        (
            &*format!("{OK}match tag {{ a = b }} action \"a\"\n"),
            &["smtpd.conf:3:11: this inline table may not be used for tag lookups: it is a mapping"],
        ),
    ]);
}

#[test]
fn bad_table_entries() {
    check(&[
        (
            &*format!("{OK}match from src {{ 10.0.0.0/8, 10.0.0.0/33, \"local\" }} action \"a\"\n"),
            &["smtpd.conf:3:30: invalid address or network \"10.0.0.0/33\""],
        ),
        (
            &*format!("{OK}action r relay host \"ftp://mx.example.org\"\n"),
            &["smtpd.conf:3:21: invalid relay URL \"ftp://mx.example.org\": unknown scheme ftp:// (expected smtp, smtp+tls, smtp+notls, lmtp or smtps)"],
        ),
        (
            &*format!("{OK}action r relay host \"smtp://label@mx.example.org\"\n"),
            &["smtpd.conf:3:21: invalid relay URL \"smtp://label@mx.example.org\": a label (LABEL@) is only allowed with smtp+tls:// or smtps://"],
        ),
        (
            &*format!("{OK}action r relay src {{ mx.example.org }}\n"),
            &["smtpd.conf:3:22: invalid source address \"mx.example.org\""],
        ),
        (
            "action \"a\" mbox alias { root = \"alice, bad value\" }\nmatch action \"a\"\n",
            &["smtpd.conf:1:32: invalid alias target \"bad value\""],
        ),
        (
            "action \"a\" maildir userbase { alice = \"x:1:/home\" }\nmatch action \"a\"\n",
            &["smtpd.conf:1:39: invalid userinfo \"x:1:/home\""],
        ),
        (
            &*format!("{OK}listen on lo smtps pki x auth {{ alice = \":pw\" }}\n"),
            &["smtpd.conf:3:24: no pki named \"x\"", "smtpd.conf:3:41: invalid credentials \":pw\" (empty user or password)"],
        ),
    ]);
}

#[test]
fn listeners() {
    check(&[
        (
            &*format!("{OK}listen on lo port 0\n"),
            &["smtpd.conf:3:19: invalid port: 0"],
        ),
        (
            &*format!("{OK}listen on lo port 65536\n"),
            &["smtpd.conf:3:19: invalid port: 65536"],
        ),
        (
            &*format!("{OK}listen on lo port -1\n"),
            &["smtpd.conf:3:19: invalid port: -1"],
        ),
        (
            &*format!("{OK}listen on lo port \"no-such-service\"\n"),
            &["smtpd.conf:3:19: invalid port: no-such-service"],
        ),
        (
            &*format!("{OK}listen on 300.1.2.3\n"),
            &["smtpd.conf:3:11: invalid virtual ip or interface \"300.1.2.3\""],
        ),
        (
            &*format!("{OK}listen on \"::1::2\"\n"),
            &["smtpd.conf:3:11: invalid virtual ip or interface \"::1::2\""],
        ),
        (
            &*format!("{OK}listen on \"bad name\"\n"),
            &["smtpd.conf:3:11: invalid virtual ip or interface \"bad name\""],
        ),
        (
            &*format!("{OK}listen on lo auth\n"),
            &["smtpd.conf:3:14: auth requires tls/smtps"],
        ),
        (
            &*format!("{OK}listen on lo tls\n"),
            &["smtpd.conf:3:14: pki required for tls/smtps"],
        ),
        (
            &*format!("{OK}listen on lo port 25 port 26\n"),
            &["smtpd.conf:3:22: port already specified for this listener"],
        ),
        (
            &*format!("{OK}listen on lo tls smtps\n"),
            &[
                "smtpd.conf:3:14: pki required for tls/smtps",
                "smtpd.conf:3:18: TLS mode already specified",
            ],
        ),
        (
            &*format!("{OK}listen on lo auth auth-optional\n"),
            &[
                "smtpd.conf:3:14: auth requires tls/smtps",
                "smtpd.conf:3:19: auth mode already specified",
            ],
        ),
        (
            &*format!("{OK}listen on socket\nlisten on socket\n"),
            &["smtpd.conf:4:1: socket listener already configured"],
        ),
        (
            &*format!("{OK}listen on socket no-dsn no-dsn\n"),
            &["smtpd.conf:3:25: no-dsn already specified for this listener"],
        ),
        (
            &*format!("{OK}listen on lo tag abcdefghijklmnopqrstuvwxyz0123456\n"),
            &["smtpd.conf:3:18: tag name too long"],
        ),
    ]);
}

#[test]
fn tls_material() {
    let dir = TempDir::new();
    let cert = dir.write("cert.pem", "x");
    let missing = dir.path().join("missing.pem");
    let (c, m) = (cert.display(), missing.display());
    let cases: Vec<(String, String)> = vec![
        (
            format!("pki \"bad name\" cert \"{c}\" key \"{c}\""),
            "3:5: invalid pki name \"bad name\"".into(),
        ),
        (
            format!("pki mail cert \"{c}\" key \"{c}\" dhe strong"),
            "3:{}: invalid dhe keyword \"strong\"".into(),
        ),
        (
            format!("pki mail cert \"{c}\""),
            "3:5: pki \"mail\" has no key".into(),
        ),
        (
            format!("pki mail key \"{c}\""),
            "3:5: pki \"mail\" has no certificate".into(),
        ),
        (
            format!("pki mail cert \"{m}\" key \"{c}\""),
            format!("3:15: cannot read certificate file {m}: No such file or directory"),
        ),
        (
            format!("ca myca cert \"{m}\""),
            format!("3:14: cannot read CA file {m}: No such file or directory"),
        ),
        (
            "listen on lo smtps pki \"*\"".into(),
            "3:24: no pki named \"*\"".into(),
        ),
    ];
    for (line, expected) in cases {
        let text = format!("{OK}{line}\n");
        // The dhe case's column depends on the path length.
        let col = line.find("strong").map_or(0, |i| i + 1);
        let expected = format!("smtpd.conf:{}", expected.replace("{}", &col.to_string()));
        assert_eq!(
            headlines(&text, &LoadOptions::default()),
            vec![expected],
            "for:\n{text}"
        );
    }
}

#[test]
fn actions() {
    check(&[
        (
            "action \"a\" mbox user bob\nmatch action \"a\"\n",
            &["smtpd.conf:1:17: user may not be specified for mbox actions"],
        ),
        (
            "action \"a\" expand-only user bob\nmatch action \"a\"\n",
            &["smtpd.conf:1:24: user may not be specified for expand-only actions"],
        ),
        (
            "action \"a\" maildir alias { a = b } virtual { c = d }\nmatch action \"a\"\n",
            &["smtpd.conf:1:36: alias mapping already specified for this action"],
        ),
        (
            "action \"a\" maildir user x user y\nmatch action \"a\"\n",
            &["smtpd.conf:1:27: user already specified for this action"],
        ),
        (
            "action \"a\" lmtp \"localhost\"\nmatch action \"a\"\n",
            &["smtpd.conf:1:17: invalid lmtp destination \"localhost\""],
        ),
        (
            "action \"a\" mbox ttl 1w\nmatch action \"a\"\n",
            &["smtpd.conf:1:21: invalid ttl delay: 1w"],
        ),
        (
            "action \"a\" mbox ttl 1h ttl 2h\nmatch action \"a\"\n",
            &["smtpd.conf:1:28: ttl already specified for this action"],
        ),
        (
            &*format!("{OK}action r relay backup host \"smtp://x.example.org\"\n"),
            &["smtpd.conf:3:23: backup and host are mutually exclusive"],
        ),
        (
            &*format!("{OK}action r relay host x.example.org backup\n"),
            &["smtpd.conf:3:35: backup and host are mutually exclusive"],
        ),
        (
            &*format!("{OK}action r relay auth {{ a = \"u:p\" }} host x.example.org\n"),
            &["smtpd.conf:3:16: auth may not be specified without host on an action"],
        ),
        (
            &*format!("{OK}action r relay srs\n"),
            &["smtpd.conf:3:16: an srs key is required for srs to be specified in an action"],
        ),
        (
            &*format!("{OK}action r relay mail-from \"a@\"\n"),
            &["smtpd.conf:3:26: invalid mail-from address \"a@\""],
        ),
        (
            &*format!("{OK}action r relay tls tls\n"),
            &["smtpd.conf:3:20: tls already specified for this action"],
        ),
        (
            &*format!("{OK}action r relay helo \"not a host\"\n"),
            &["smtpd.conf:3:21: invalid helo name \"not a host\""],
        ),
    ]);
}

#[test]
fn rules() {
    check(&[
        (
            &*format!("{OK}match from any from local action \"a\"\n"),
            &["smtpd.conf:3:16: from already specified for this rule"],
        ),
        (
            &*format!("{OK}match from auth auth action \"a\"\n"),
            &["smtpd.conf:3:17: auth already specified for this rule"],
        ),
        (
            &*format!("{OK}match for rcpt-to x for any action \"a\"\n"),
            &["smtpd.conf:3:21: for already specified for this rule"],
        ),
        (
            &*format!("{OK}match tls !tls action \"a\"\n"),
            &["smtpd.conf:3:11: tls already specified for this rule"],
        ),
    ]);
}

#[test]
fn filters() {
    check(&[
        (
            &*format!("{OK}filter a proc-exec x\nfilter c chain {{ a }}\nfilter d chain {{ c }}\n"),
            &["smtpd.conf:5:18: no filter chain allowed within a filter chain"],
        ),
        (
            &*format!("{OK}proc p x\nfilter a proc p\nfilter b proc p\nfilter c chain {{ a, b }}\n"),
            &["smtpd.conf:6:21: no proc allowed twice within a filter chain: \"b\" uses proc \"p\" again"],
        ),
        (
            &*format!("{OK}filter a proc-exec x\nlisten on lo filter {{ a, a }}\n"),
            &["smtpd.conf:4:26: filter \"a\" is already in this chain"],
        ),
        (
            &*format!("{OK}filter f phase connect match helo x reject \"550 no\"\n"),
            &["smtpd.conf:3:30: this condition cannot be used in phase connect"],
        ),
        (
            &*format!("{OK}filter f phase helo match rcpt-to x reject \"550 no\"\n"),
            &["smtpd.conf:3:27: this condition cannot be used in phase helo"],
        ),
        (
            &*format!("{OK}filter f phase connect match mail-from x junk\n"),
            &["smtpd.conf:3:30: this condition cannot be used in phase connect"],
        ),
        (
            &*format!("{OK}filter f phase commit match fcrdns bypass\n"),
            &["smtpd.conf:3:36: junk and bypass are not allowed in phase commit"],
        ),
        (&*format!("{OK}proc p \"\"\n"), &["smtpd.conf:3:8: empty command"]),
        (&*format!("{OK}proc p x user a user b\n"), &["smtpd.conf:3:17: user already specified for this process"]),
    ]);
}

#[test]
fn options() {
    check(&[
        (
            &*format!("{OK}queue ttl 4\n"),
            &["smtpd.conf:3:11: invalid ttl delay: 4"],
        ),
        (
            &*format!("{OK}queue encryption tooshort\n"),
            &["smtpd.conf:3:18: invalid key for queue encryption: 8 bytes long"],
        ),
        (
            &*format!("{OK}bounce warn-interval 1h, 0m\n"),
            &["smtpd.conf:3:26: invalid bounce delay: 0m"],
        ),
        (
            &*format!("{OK}smtp max-message-size 12X\n"),
            &["smtpd.conf:3:23: invalid size: 12X"],
        ),
        (
            &*format!("{OK}smtp max-message-size -5\n"),
            &["smtpd.conf:3:23: invalid size: -5"],
        ),
        (
            &*format!("{OK}smtp sub-addr-delim \"@\"\n"),
            &["smtpd.conf:3:21: sub-addr-delim uses an invalid character: '@'"],
        ),
        (
            &*format!("{OK}smtp sub-addr-delim \"\"\n"),
            &["smtpd.conf:3:21: sub-addr-delim must be one character"],
        ),
        (
            &*format!("{OK}smtp limit max-mail 5\n"),
            &["smtpd.conf:3:12: invalid session limit keyword: max-mail"],
        ),
        (
            &*format!("{OK}smtp limit max-mails -1\n"),
            &["smtpd.conf:3:22: invalid session limit: -1 is negative"],
        ),
        (
            &*format!("{OK}mta limit max-conns 5\n"),
            &["smtpd.conf:3:11: invalid mta limit keyword: max-conns"],
        ),
        (
            &*format!("{OK}mda limit max-sessions 5\n"),
            &["smtpd.conf:3:11: invalid mda limit keyword: max-sessions"],
        ),
        (
            &*format!("{OK}scheduler limit max 5\n"),
            &["smtpd.conf:3:17: invalid scheduler limit keyword: max"],
        ),
        (
            &*format!("{OK}mta max-deferred 99999999999999999999\n"),
            &["smtpd.conf:3:18: invalid max-deferred: 99999999999999999999 is out of range"],
        ),
        (
            &*format!("{OK}srs ttl 12h\n"),
            &["smtpd.conf:3:9: srs ttl must be at least one day"],
        ),
        (
            &*format!("{OK}admd \"a\tb\"\n"),
            &["smtpd.conf:3:6: invalid admd: it must hold printable characters only"],
        ),
    ]);
}

#[test]
fn tables_and_files() {
    let dir = TempDir::new();
    let mixed = dir.write("mixed", "alice root\nbob\n");
    let missing = dir.path().join("nope");
    let backends = LoadOptions {
        backends_dir: dir.path().to_owned(),
        ..LoadOptions::default()
    };
    let cases: Vec<(String, Vec<String>, &LoadOptions)> = vec![
        (
            format!("table t file:{}\n{OK}", missing.display()),
            vec![format!("smtpd.conf:1:9: cannot read table file {}: No such file or directory", missing.display())],
            &backends,
        ),
        (
            format!("table t \"{}\"\n{OK}", mixed.display()),
            vec![format!(
                "{}:2:1: invalid table file: a key without a value in a mapping of keys to values (the form set by line 1)",
                mixed.display()
            )],
            &backends,
        ),
        (
            format!("include \"{}\"\n{OK}", missing.display()),
            vec![format!("smtpd.conf:1:9: cannot read include file {}: No such file or directory", missing.display())],
            &backends,
        ),
        (
            format!("table t sqlite:/etc/mail/sqlite.conf\n{OK}"),
            vec!["smtpd.conf:1:9: table backend \"sqlite\" does not exist".to_owned()],
            &backends,
        ),
        (
            format!("table t sqlite:relative.conf\n{OK}"),
            vec!["smtpd.conf:1:9: invalid backend parameter for table: t".to_owned()],
            &backends,
        ),
        (
            format!("table t file\n{OK}"),
            vec!["smtpd.conf:1:9: invalid backend parameter for table: t".to_owned()],
            &backends,
        ),
        (
            // A refused declaration is not reported again where it is used.
            format!("table t file:{}\naction \"b\" mbox alias <t>\n{OK}", missing.display()),
            vec![format!("smtpd.conf:1:9: cannot read table file {}: No such file or directory", missing.display())],
            &backends,
        ),
    ];
    for (text, expected, opts) in &cases {
        assert_eq!(&headlines(text, opts), expected, "for:\n{text}");
    }
}

#[test]
fn macros_and_includes() {
    let dir = TempDir::new();
    let loop_file = dir.write("loop.conf", "");
    std::fs::write(&loop_file, format!("include \"{}\"\n", loop_file.display())).unwrap();
    check(&[
        (
            &*format!("{OK}listen on $iface\n"),
            &["smtpd.conf:3:11: macro 'iface' not defined"],
        ),
        (
            &*format!("{OK}\"my macro\" = 1\n"),
            &["smtpd.conf:3:1: macro name cannot contain whitespace"],
        ),
    ]);
    let text = format!("include \"{}\"\n{OK}", loop_file.display());
    assert_eq!(
        headlines(&text, &LoadOptions::default()),
        vec![format!(
            "{}:1:9: include loop: {} is already being read",
            loop_file.display(),
            loop_file.display()
        )]
    );
}

#[test]
fn a_broken_declaration_is_reported_once() {
    // The table line has a syntax error; the action using it is not
    // reported as using an undefined table, nor the rule as missing.
    check(&[(
        "table t { a = b, c }\naction \"a\" mbox alias <t>\nmatch from any action \"a\" junk\n",
        &[
            "smtpd.conf:1:20: syntax error: unexpected `}`",
            "smtpd.conf:3:27: syntax error: unexpected keyword `junk`",
        ],
    )]);
}
