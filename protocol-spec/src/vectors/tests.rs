use std::collections::HashSet;
use std::path::Path;

use super::*;

fn parse(family: Family, text: &str) -> Result<VectorFile, VectorError> {
    parse_file(Path::new("t/x.txt"), family, text.as_bytes())
}

fn error_of(family: Family, text: &str) -> String {
    parse(family, text).unwrap_err().to_string()
}

fn pattern(text: &str) -> Pattern {
    Pattern::parse(text.as_bytes(), &mut HashSet::new())
}

#[test]
fn vector_directory_is_found_from_the_manifest_dir() {
    let dir = default_dir();
    assert_eq!(dir, Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors"));
    assert!(dir.join("README.md").is_file(), "{}", dir.display());
    let files = load_dir(&dir).unwrap();
    assert!(files.iter().any(|f| f.family == Family::Table));
}

#[test]
fn cases_steps_and_exchanges() {
    let file = parse(
        Family::Table,
        "# comment\n\n=== first\nfixture: standard.table\nnote: a note\n\
         > table|0.1|1.000000|t|check|alias|00000001|a\n\
         > table|0.1|1.000000|t|check|alias|00000002|b\n\
         < check-result|00000002|found\n< check-result|00000001|not-found\n\
         !< check-result|00000001|bogus\n\
         > table|0.1|1.000000|t|update|00000003\n< update-result|00000003|ok\n\
         === second\n!> table|0.1|x\n~> table|0.1|1.000000|t|check|nope|00000004|k\n",
    )
    .unwrap();
    assert_eq!(file.cases.len(), 2);
    let first = &file.cases[0];
    assert_eq!((first.name.as_str(), first.line), ("first", 3));
    assert_eq!(first.fixture.as_deref(), Some("standard.table"));
    assert_eq!(first.note.as_deref(), Some("a note"));
    assert_eq!(first.steps.len(), 3);
    let exchanges: Vec<&Exchange> = first.exchanges().collect();
    assert_eq!(exchanges.len(), 2);
    assert_eq!(
        (exchanges[0].sent.len(), exchanges[0].expected.len()),
        (2, 2)
    );
    assert_eq!(exchanges[0].expected[1].line, 9);
    assert!(matches!(&first.steps[1], Step::Refused(r) if r.direction == Direction::FromBackend));
    let second = &file.cases[1];
    assert!(matches!(&second.steps[0], Step::Refused(r) if r.direction == Direction::ToBackend));
    let Step::Exchange(e) = &second.steps[1] else {
        panic!("expected an exchange");
    };
    assert!(e.sent[0].unknown);
    assert!(!first.is_codec_only());
}

#[test]
fn lines_are_verbatim() {
    let file = parse(
        Family::Filter,
        "=== v\n> report|0.7|1.000000|smtp-in|x|1|  a \r\n",
    )
    .unwrap();
    let sent = &file.cases[0].exchanges().next().unwrap().sent[0];
    assert_eq!(sent.text, b"report|0.7|1.000000|smtp-in|x|1|  a \r");
}

#[test]
fn answers_continue_an_exchange_across_codec_only_lines() {
    let file = parse(
        Family::Table,
        "=== c\n> table|0.1|1.000000|t|update|00000001\n!> x\n< update-result|00000001|ok\n",
    )
    .unwrap();
    let e = file.cases[0].exchanges().next().unwrap();
    assert_eq!(e.expected.len(), 1);
}

#[test]
fn handshake_and_refusal_only_cases_are_for_codecs() {
    let file = parse(
        Family::Table,
        "=== hs\n> config|protocol|0.1\n> config|ready\n< register|alias\n< register|ready\n\
         === bad\n!< register|\n",
    )
    .unwrap();
    assert!(file.cases.iter().all(Case::is_codec_only));
}

#[test]
fn malformed_files_name_file_and_line() {
    let cases = [
        ("> table|x\n", "t/x.txt:1: a line outside a case"),
        (
            "=== a\n> x\n=== a\n",
            "t/x.txt:3: case \"a\" already defined",
        ),
        ("===\n", "t/x.txt:1: expected `=== NAME`"),
        (
            "=== a\n>table\n",
            "t/x.txt:2: `>` must be followed by a space",
        ),
        ("=== a\n? what\n", "t/x.txt:2: unknown directive"),
        (
            "=== a\n< lookup-result|00000001|not-found\n",
            "t/x.txt:2: an answer with no",
        ),
        (
            "=== a\n> x\nfixture: f\n",
            "t/x.txt:3: `fixture:` must come right after",
        ),
        (
            "=== a\nfixture: f\nfixture: g\n> x\n",
            "t/x.txt:3: a second `fixture:`",
        ),
        ("fixture: f\n", "t/x.txt:1: `fixture:` outside a case"),
        ("=== a\n=== b\n> x\n", "t/x.txt:1: case \"a\" has no lines"),
        ("=== a\n> x|{msgid}\n", "t/x.txt:2: {msgid} is used before"),
        (
            "=== a\n> x|{*}\n",
            "t/x.txt:2: `{*}` is only allowed in `<` lines",
        ),
        (
            "=== a\n> x\n< lookup-result|{id}|found|x\n",
            "t/x.txt:3: the request id",
        ),
    ];
    for (text, want) in cases {
        let got = error_of(Family::Table, text);
        assert!(got.starts_with(want), "{text:?}: {got}");
    }
    let got = error_of(
        Family::Filter,
        "=== a\n> x\n< filter-result|{*}|1|proceed\n",
    );
    assert!(got.contains("session id and token"), "{got}");
}

#[test]
fn unknown_fixtures_are_refused_by_load_dir() {
    let dir = std::env::temp_dir().join(format!("vectors-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("table")).unwrap();
    std::fs::write(dir.join("table/a.txt"), "=== a\nfixture: nope\n> x\n").unwrap();
    let err = load_dir(&dir).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(err.line, 2);
    assert!(err.message.contains("fixture \"nope\""), "{err}");
}

#[test]
fn placeholders_are_whole_fields() {
    let table = [
        (
            "lookup-result|01|error|{*}",
            "lookup-result|01|error|a|b",
            true,
        ),
        (
            "lookup-result|01|error|{*}",
            "lookup-result|01|error|",
            false,
        ),
        (
            "lookup-result|01|error|{*}",
            "lookup-result|01|error",
            false,
        ),
        ("lookup-result|01|{*}", "lookup-result|01|not-found", true),
        ("lookup-result|01|{*}|x", "lookup-result|01|found|x", true),
        ("lookup-result|01|{*}|x", "lookup-result|01||x", false),
        ("lookup-result|01|{*}|x", "lookup-result|01|a|b|x", false),
        (
            "lookup-result|01|found|{Big}",
            "lookup-result|01|found|{Big}",
            true,
        ),
        (
            "lookup-result|01|found|a{x}",
            "lookup-result|01|found|a{x}",
            true,
        ),
        ("check-result|01|found", "check-result|01|found|", false),
        ("check-result|01|found", "check-result|01", false),
        ("check-result|01|found", "check-result|01|found", true),
        (
            "lookup-result|01|error|{*?}",
            "lookup-result|01|error",
            true,
        ),
        (
            "lookup-result|01|error|{*?}",
            "lookup-result|01|error|",
            true,
        ),
        (
            "lookup-result|01|error|{*?}",
            "lookup-result|01|error|a|b",
            true,
        ),
        (
            "lookup-result|01|error|{*?}",
            "lookup-result|01|errors",
            false,
        ),
        (
            "lookup-result|01|error|{*?}",
            "lookup-result|01|not-found",
            false,
        ),
    ];
    for (pat, line, want) in table {
        let got = pattern(pat).matches(line.as_bytes(), &mut Captures::new());
        assert_eq!(got, want, "{pat} vs {line}");
    }
    assert!(!pattern("a|b").has_placeholders());
    assert!(pattern("a|{*}").has_placeholders());
    assert!(pattern("a|{*?}").has_placeholders());
}

#[test]
fn captures_are_taken_once_then_referred_to() {
    let mut names = HashSet::new();
    let create = Pattern::parse(b"message-create-result|01|ok|{msgid}", &mut names);
    let again = Pattern::parse(b"x|02|{msgid}|{msgid}", &mut names);
    assert_eq!(create.fields()[3], Field::Capture("msgid".into()));
    assert_eq!(again.fields()[2], Field::Ref("msgid".into()));
    let mut caps = Captures::new();
    assert!(!create.matches(b"message-create-result|01|ok|a|b", &mut caps));
    assert_eq!(caps.get("msgid"), None);
    assert!(create.matches(b"message-create-result|01|ok|0badcafe", &mut caps));
    assert_eq!(caps.get("msgid"), Some(&b"0badcafe"[..]));
    assert!(again.matches(b"x|02|0badcafe|0badcafe", &mut caps));
    assert!(!again.matches(b"x|02|0badcafe|0badcaff", &mut caps));
    assert_eq!(again.render(&caps), b"x|02|0badcafe|0badcafe");
    let same_line = pattern("x|{a}|{a}");
    assert!(same_line.matches(b"x|1|1", &mut Captures::new()));
    assert!(!same_line.matches(b"x|1|2", &mut Captures::new()));
}

#[test]
fn sent_lines_substitute_captures() {
    let file = parse(
        Family::Queue,
        "=== q\n> queue|0.1|1.000000|message-create|0000000000000001\n\
         < message-create-result|0000000000000001|ok|{msgid}\n\
         > queue|0.1|1.000000|message-delete|0000000000000002|{msgid}\n\
         < message-delete-result|0000000000000002|ok\n",
    )
    .unwrap();
    let exchanges: Vec<&Exchange> = file.cases[0].exchanges().collect();
    let delete = &exchanges[1].sent[0];
    assert!(delete.has_placeholders());
    assert_eq!(delete.substitute(&Captures::new()), Err("msgid".to_owned()));
    let mut caps = Captures::new();
    caps.insert("msgid", "0badcafe");
    assert_eq!(
        delete.substitute(&caps).unwrap(),
        b"queue|0.1|1.000000|message-delete|0000000000000002|0badcafe"
    );
}

fn expected(family: Family, lines: &[&str]) -> Vec<Expected> {
    let mut names = HashSet::new();
    let _ = family;
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| Expected {
            line: i + 1,
            pattern: Pattern::parse(l.as_bytes(), &mut names),
        })
        .collect()
}

fn answers(lines: &[&str]) -> Vec<Vec<u8>> {
    lines.iter().map(|l| l.as_bytes().to_vec()).collect()
}

#[test]
fn table_answers_match_by_id_in_any_order() {
    let want = expected(
        Family::Table,
        &[
            "check-result|00000001|found",
            "lookup-result|00000002|found|root",
        ],
    );
    let got = answers(&[
        "lookup-result|00000002|found|root",
        "check-result|00000001|found",
    ]);
    assert!(match_answers(Family::Table, &want, &got, &mut Captures::new()).is_empty());
    let got = answers(&[
        "lookup-result|00000002|found|toor",
        "check-result|00000003|found",
    ]);
    let found = match_answers(Family::Table, &want, &got, &mut Captures::new());
    assert_eq!(
        found,
        vec![
            Mismatch::Missing {
                line: 1,
                expected: b"check-result|00000001|found".to_vec()
            },
            Mismatch::Different {
                line: 2,
                expected: b"lookup-result|00000002|found|root".to_vec(),
                got: b"lookup-result|00000002|found|toor".to_vec()
            },
            Mismatch::Unexpected {
                got: b"check-result|00000003|found".to_vec()
            },
        ]
    );
}

#[test]
fn filter_answers_match_by_session_and_token() {
    let want = expected(
        Family::Filter,
        &[
            "filter-result|0000000000000001|00000000000000aa|proceed",
            "filter-dataline|0000000000000002|00000000000000bb|one",
            "filter-dataline|0000000000000002|00000000000000bb|.",
        ],
    );
    let got = answers(&[
        "filter-dataline|0000000000000002|00000000000000bb|one",
        "filter-result|1|AA|proceed",
        "filter-dataline|0000000000000002|00000000000000bb|.",
    ]);
    let found = match_answers(Family::Filter, &want, &got, &mut Captures::new());
    // Associated by value, compared as text.
    assert_eq!(found.len(), 1);
    assert!(matches!(&found[0], Mismatch::Different { line: 1, .. }));
    let out_of_order = answers(&[
        "filter-dataline|0000000000000002|00000000000000bb|.",
        "filter-dataline|0000000000000002|00000000000000bb|one",
        "filter-result|0000000000000001|00000000000000aa|proceed",
    ]);
    let found = match_answers(Family::Filter, &want, &out_of_order, &mut Captures::new());
    assert_eq!(found.len(), 2, "{found:?}");
}

#[test]
fn a_wrong_line_type_is_reported_against_its_request() {
    let want = expected(
        Family::Filter,
        &["filter-result|0000000000000001|00000000000000aa|proceed"],
    );
    let got = answers(&["filter-dataline|0000000000000001|00000000000000aa|x"]);
    let found = match_answers(Family::Filter, &want, &got, &mut Captures::new());
    assert!(matches!(&found[..], [Mismatch::Different { .. }]));
}
