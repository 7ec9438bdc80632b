//! Every line of every vector file through the smtpd-sdk codec.
//!
//! - `>` and `<` lines without placeholders parse as the right line type for
//!   their family and direction and format back to the same bytes;
//! - `!>` and `!<` lines are refused by every parser of their direction;
//! - `~>` lines fail to parse but say how to answer them (`reply_to`).
//!
//! All problems are collected and reported together, each as `file:line`.

use std::path::Path;

use smtpd_conformance::vectors::{self, Direction, Family, Step, VectorFile};
use smtpd_conformance::wire::{parse_backend_line, parse_daemon_line, refused_by_all};

/// What was checked, to make sure the test is not vacuous.
#[derive(Debug, Default)]
struct Counts {
    round_trips: usize,
    refused: usize,
    unknown: usize,
    skipped_placeholders: usize,
}

fn load() -> Vec<VectorFile> {
    vectors::load_dir(&vectors::default_dir()).unwrap_or_else(|e| panic!("{e}"))
}

fn quote(line: &[u8]) -> String {
    let cut = line.len().min(120);
    format!("{:?}", String::from_utf8_lossy(&line[..cut]))
}

fn round_trip(family: Family, to_backend: bool, line: &[u8]) -> Result<(), String> {
    let formatted = if to_backend {
        let parsed = parse_daemon_line(family, line).map_err(|e| e.to_string())?;
        parsed.to_line()
    } else {
        let parsed = parse_backend_line(family, line).map_err(|e| e.to_string())?;
        parsed.to_line()
    };
    let mut formatted = formatted.map_err(|e| format!("parsed, but formatting fails: {e}"))?;
    if formatted.pop() != Some(b'\n') {
        return Err("formatted without its newline".into());
    }
    if formatted != line {
        return Err(format!("formats back as {}", quote(&formatted)));
    }
    Ok(())
}

fn check_file(file: &VectorFile, counts: &mut Counts, problems: &mut Vec<String>) {
    let at = |line: usize| format!("{}:{line}", file.path.display());
    for case in &file.cases {
        for step in &case.steps {
            match step {
                Step::Refused(r) => {
                    counts.refused += 1;
                    let to_backend = r.direction == Direction::ToBackend;
                    if !refused_by_all(file.family, to_backend, &r.text) {
                        problems.push(format!("{}: accepted {}", at(r.line), quote(&r.text)));
                    }
                }
                Step::Exchange(exchange) => {
                    for sent in &exchange.sent {
                        if sent.unknown {
                            counts.unknown += 1;
                            match parse_daemon_line(file.family, &sent.text) {
                                Ok(_) => problems.push(format!(
                                    "{}: ~> line parses: {}",
                                    at(sent.line),
                                    quote(&sent.text)
                                )),
                                Err(e) if e.reply_to.is_none() => problems.push(format!(
                                    "{}: ~> line cannot be answered (no reply_to): {e}",
                                    at(sent.line)
                                )),
                                Err(_) => {}
                            }
                        } else if sent.has_placeholders() {
                            counts.skipped_placeholders += 1;
                        } else {
                            counts.round_trips += 1;
                            if let Err(e) = round_trip(file.family, true, &sent.text) {
                                problems.push(format!("{}: {e}", at(sent.line)));
                            }
                        }
                    }
                    for expected in &exchange.expected {
                        if expected.pattern.has_placeholders() {
                            counts.skipped_placeholders += 1;
                            continue;
                        }
                        counts.round_trips += 1;
                        if let Err(e) = round_trip(file.family, false, expected.pattern.text()) {
                            problems.push(format!("{}: {e}", at(expected.line)));
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn every_vector_line_goes_through_the_codec() {
    let files = load();
    let mut counts = Counts::default();
    let mut problems = Vec::new();
    for file in &files {
        check_file(file, &mut counts, &mut problems);
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    for family in Family::ALL {
        assert!(
            files.iter().any(|f| f.family == family),
            "no vector file for {family}"
        );
    }
    assert!(counts.round_trips > 0 && counts.refused > 0, "{counts:?}");
}

#[test]
fn the_vector_directory_is_found_from_the_manifest_dir() {
    let dir = vectors::default_dir();
    assert_eq!(dir, Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors"));
    assert!(dir.join("README.md").is_file(), "{}", dir.display());
    assert!(dir.join("fixtures/standard.table").is_file());
}

#[test]
fn the_checks_catch_bad_vectors() {
    let path = Path::new("bad/x.txt");
    let text = "=== bad\n> table|0.1|1.000000|t|lookup|alias|0000000A|k\n\
                !< check-result|00000001|found\n\
                ~> table|0.1|1.000000|t|lookup|alias|00000001|k\n\
                < lookup-result|00000001|found|x\n";
    let file = vectors::parse_file(path, Family::Table, text.as_bytes()).unwrap();
    let mut counts = Counts::default();
    let mut problems = Vec::new();
    check_file(&file, &mut counts, &mut problems);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    for want in [
        "bad/x.txt:2: invalid request id",
        "bad/x.txt:3: accepted",
        "bad/x.txt:4: ~> line parses",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "{want}: {problems:#?}"
        );
    }
}
