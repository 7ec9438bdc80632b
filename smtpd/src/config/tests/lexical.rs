//! The lexical layer: macros, `-D`, includes, continuations, comments and
//! quoting.

use super::{failure, headlines, load, load_with, TempDir, CLOSING, PRELUDE};
use crate::config::*;

fn opts_with_macros(macros: &[(&str, &str)], verbose: bool) -> LoadOptions {
    LoadOptions {
        macros: macros
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        verbose,
        ..LoadOptions::default()
    }
}

#[test]
fn macros_expand_to_one_or_more_tokens() {
    let text = "lo = \"127.0.0.1\"\nopts = \"port 2525 mask-src\"\nmy_act = '\"deliver\"'\n\
                listen on $lo $opts\naction $my_act mbox\nmatch from any action $my_act\n";
    let c = load(text).config;
    let l = &c.listeners[0];
    assert_eq!(l.address, ListenAddress::Ip("127.0.0.1".parse().unwrap()));
    assert_eq!(l.port, 2525);
    assert!(l.mask_src);
    assert_eq!(c.actions[0].name, "deliver");
}

#[test]
fn macros_are_not_expanded_in_quotes_or_inside_words() {
    let text = format!(
        "{PRELUDE}m = x\ntable t {{ \"$m\", a$m, $m }}\nmatch tag <t> action \"a\"{CLOSING}"
    );
    let c = load(&text).config;
    let t = c.table_named("t").unwrap();
    assert_eq!(
        c[t].backend,
        TableBackend::Inline(StaticContent::List(vec![
            "$m".into(),
            "a$m".into(),
            "x".into()
        ]))
    );
}

#[test]
fn a_macro_can_be_redefined_and_takes_effect_after_its_definition() {
    let text =
        format!("{PRELUDE}p = 25\nlisten on lo port $p\np = 26\nlisten on lo port $p{CLOSING}");
    let c = load(&text).config;
    assert_eq!((c.listeners[0].port, c.listeners[1].port), (25, 26));
}

#[test]
fn command_line_macros_win_over_the_file() {
    let text = format!("{PRELUDE}p = 25\nlisten on lo port $p{CLOSING}");
    let c = load_with(&text, &opts_with_macros(&[("p", "2525")], false)).config;
    assert_eq!(c.listeners[0].port, 2525);
}

#[test]
fn unused_macros_warn_with_verbose() {
    let text = format!("{PRELUDE}unused = 1\n{CLOSING}");
    let quiet = load_with(&text, &opts_with_macros(&[("cli", "x")], false));
    assert!(quiet.warnings.is_empty());
    let loud = load_with(&text, &opts_with_macros(&[("cli", "x")], true));
    let lines: Vec<String> = loud.warnings.iter().map(Diagnostic::headline).collect();
    assert_eq!(
        lines,
        vec![
            "warning: macro 'cli' not used".to_owned(),
            "smtpd.conf:2:1: warning: macro 'unused' not used".to_owned(),
        ]
    );
}

#[test]
fn macro_definition_arguments() {
    assert_eq!(
        parse_macro_definition("a=b=c"),
        Ok(("a".to_owned(), "b=c".to_owned()))
    );
    assert_eq!(
        parse_macro_definition("a="),
        Ok(("a".to_owned(), String::new()))
    );
    assert!(parse_macro_definition("novalue").is_err());
    assert!(parse_macro_definition("=x").is_err());
}

#[test]
fn continuations_comments_and_blank_lines() {
    let text = "# a comment\n\n   \naction \"a\" \\\n   mbox # trailing comment\n\
                listen on lo \\\n port 2525 # comment \\\n still the comment\n\
                match from any \\\n  action \"a\"\n";
    let c = load(text).config;
    assert_eq!(c.listeners[0].port, 2525);
    assert!(!c.listeners[0].mask_src);
    assert_eq!(c.rules.len(), 1);
}

#[test]
fn quoting() {
    let text = format!(
        "{PRELUDE}table t {{ \"a\\\"b\", 'c\\'d', \"e\\ f\", \"g\\h\", \"long\\\n line\", \"multi\nline\", \"#not a comment\" }}\n\
         match tag <t> action \"a\"{CLOSING}"
    );
    let c = load(&text).config;
    let t = c.table_named("t").unwrap();
    let TableBackend::Inline(StaticContent::List(items)) = &c[t].backend else {
        panic!()
    };
    assert_eq!(
        items,
        &[
            "a\"b",
            "c'd",
            "e f",
            "g\\h",
            "long line",
            "multiline",
            "#not a comment"
        ]
    );
}

#[test]
fn keywords_need_quotes_to_be_values() {
    let c = load("action \"local\" mbox\nmatch from any for any action \"local\"\n").config;
    assert_eq!(c.actions[0].name, "local");
    let e = headlines(
        "action local mbox\nmatch from any action \"local\"\n",
        &LoadOptions::default(),
    );
    assert_eq!(
        e[0],
        "smtpd.conf:1:8: syntax error: unexpected keyword `local`"
    );
    let full = failure("action local mbox\n", &LoadOptions::default()).to_string();
    assert!(
        full.contains("(`local` is a keyword: write \"local\" to use it as a value)"),
        "{full}"
    );
}

#[test]
fn includes_are_read_in_place_relative_to_the_including_file() {
    let dir = TempDir::new();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    dir.write(
        "conf.d/actions.conf",
        "include \"more.conf\"\naction \"a\" maildir $dir\n",
    );
    dir.write(
        "conf.d/more.conf",
        "dir = '\"/var/mail/%{user.username}\"'\n",
    );
    let main = dir.write(
        "smtpd.conf",
        "include \"conf.d/actions.conf\"\nmatch from any action \"a\"\n",
    );
    let c = Config::load(&main, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    let ActionKind::Local(local) = &c.actions[0].kind else {
        panic!()
    };
    assert_eq!(
        local.method,
        LocalMethod::Maildir {
            path: Some("/var/mail/%{user.username}".into()),
            junk: false
        }
    );
}

#[test]
fn errors_in_included_files_name_that_file() {
    let dir = TempDir::new();
    dir.write("inc.conf", "\nlisten on lo port 0\n");
    let main = dir.write(
        "smtpd.conf",
        "include \"inc.conf\"\naction \"a\" mbox\nmatch action \"a\"\n",
    );
    let e = Config::load(&main, &LoadOptions::default()).unwrap_err();
    let heads: Vec<String> = e.errors().map(Diagnostic::headline).collect();
    assert_eq!(
        heads,
        vec![format!(
            "{}:2:19: invalid port: 0",
            dir.path().join("inc.conf").display()
        )]
    );
}

#[test]
fn numbers_and_words() {
    // `4h` and `35M` are words, `25` a number, `10.0.0.1` a word.
    let text = format!(
        "{PRELUDE}queue ttl 4h\nsmtp max-message-size 35M\nlisten on 10.0.0.1 port 25{CLOSING}"
    );
    let c = load(&text).config;
    assert_eq!(c.smtp.max_message_size, 35 << 20);
    assert_eq!(c.listeners[0].port, 25);
}

#[test]
fn diagnostics_render_the_line_a_caret_and_what_was_expected() {
    let e = failure(
        "action \"a\" mbox\nlisten on lo\tprot 25\nmatch action \"a\"\n",
        &LoadOptions::default(),
    );
    let text = e.to_string();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("smtpd.conf:2:14: syntax error: unexpected `prot`")
    );
    assert_eq!(lines.next(), Some("  listen on lo\tprot 25"));
    assert_eq!(lines.next(), Some("              \t^~~~"));
    let expected = lines.next().unwrap();
    assert!(
        expected.starts_with("  expected: a listener option (inet4, inet6, port,"),
        "{expected}"
    );
    assert!(expected.ends_with("or the end of the line"), "{expected}");
    assert_eq!(lines.last(), Some("1 error in the configuration"));
}
