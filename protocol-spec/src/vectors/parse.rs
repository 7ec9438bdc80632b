//! Reading vector files: directives to cases, with `file:line` errors.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::pattern::placeholder_name;
use super::{
    Case, Direction, Exchange, Expected, Family, Pattern, Refused, Sent, Step, VectorError,
    VectorFile,
};

/// Reads every `*.txt` file of the family directories under `dir`, sorted
/// by family then file name. A case naming a fixture that is not in
/// `dir/fixtures/` is an error.
pub fn load_dir(dir: &Path) -> Result<Vec<VectorFile>, VectorError> {
    let unreadable = |line, message: String| VectorError {
        path: dir.to_path_buf(),
        line,
        message,
    };
    if !dir.is_dir() {
        return Err(unreadable(0, "not a vectors directory".into()));
    }
    let mut files = Vec::new();
    for family in Family::ALL {
        let sub = dir.join(family.name());
        if !sub.is_dir() {
            continue;
        }
        let entries = std::fs::read_dir(&sub).map_err(|e| unreadable(0, e.to_string()))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "txt") && p.is_file())
            .collect();
        paths.sort();
        for path in paths {
            let file = load_file(&path, family)?;
            check_fixtures(&file, &dir.join("fixtures"))?;
            files.push(file);
        }
    }
    Ok(files)
}

fn check_fixtures(file: &VectorFile, fixtures: &Path) -> Result<(), VectorError> {
    for case in &file.cases {
        if let Some(name) = &case.fixture {
            if !fixtures.join(name).is_file() {
                return Err(VectorError {
                    path: file.path.clone(),
                    line: case.line + 1,
                    message: format!("fixture {name:?} is not in {}", fixtures.display()),
                });
            }
        }
    }
    Ok(())
}

/// Reads one vector file of `family`.
pub fn load_file(path: &Path, family: Family) -> Result<VectorFile, VectorError> {
    let content = std::fs::read(path).map_err(|e| VectorError {
        path: path.to_path_buf(),
        line: 0,
        message: e.to_string(),
    })?;
    parse_file(path, family, &content)
}

/// Parses the content of a vector file; `path` is used in errors only.
pub fn parse_file(path: &Path, family: Family, content: &[u8]) -> Result<VectorFile, VectorError> {
    let mut reader = Reader {
        path,
        family,
        cases: Vec::new(),
        names: HashSet::new(),
        open: None,
    };
    let mut lines: Vec<&[u8]> = content.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    for (index, line) in lines.into_iter().enumerate() {
        reader.line(index + 1, line)?;
    }
    reader.close_case()?;
    Ok(VectorFile {
        path: path.to_path_buf(),
        family,
        cases: reader.cases,
    })
}

/// The case being read.
struct OpenCase {
    case: Case,
    /// Index in `case.steps` of the exchange that `<` lines extend.
    exchange: Option<usize>,
    /// Names captured so far.
    captured: HashSet<String>,
}

struct Reader<'a> {
    path: &'a Path,
    family: Family,
    cases: Vec<Case>,
    names: HashSet<String>,
    open: Option<OpenCase>,
}

impl Reader<'_> {
    fn error(&self, line: usize, message: impl Into<String>) -> VectorError {
        VectorError {
            path: self.path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    fn line(&mut self, n: usize, line: &[u8]) -> Result<(), VectorError> {
        if line.iter().all(|&b| b == b' ' || b == b'\t') || line.starts_with(b"#") {
            return Ok(());
        }
        if let Some(name) = line.strip_prefix(b"===") {
            return self.start_case(n, name);
        }
        for (prefix, header) in [(&b"fixture:"[..], true), (b"note:", false)] {
            if let Some(value) = line.strip_prefix(prefix) {
                return self.header(n, header, value);
            }
        }
        let (directive, text) = split_directive(line)
            .ok_or_else(|| self.error(n, format!("unknown directive: {}", quote(line))))?;
        if self.open.is_none() {
            return Err(self.error(n, "a line outside a case (no `=== NAME` before it)"));
        }
        let text = text.ok_or_else(|| {
            self.error(
                n,
                format!("`{directive}` must be followed by a space and the line"),
            )
        })?;
        match directive {
            ">" | "~>" => self.sent(n, text, directive == "~>"),
            "<" => self.expected(n, text),
            _ => {
                let direction = if directive == "!>" {
                    Direction::ToBackend
                } else {
                    Direction::FromBackend
                };
                self.push_refused(Refused {
                    line: n,
                    direction,
                    text: text.to_vec(),
                });
                Ok(())
            }
        }
    }

    fn start_case(&mut self, n: usize, rest: &[u8]) -> Result<(), VectorError> {
        self.close_case()?;
        let name = rest
            .strip_prefix(b" ")
            .and_then(|r| std::str::from_utf8(r).ok())
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .ok_or_else(|| self.error(n, "expected `=== NAME` with a UTF-8 name"))?;
        if !self.names.insert(name.to_owned()) {
            let first = self
                .cases
                .iter()
                .find(|c| c.name == name)
                .map_or(0, |c| c.line);
            return Err(self.error(n, format!("case {name:?} already defined at line {first}")));
        }
        self.open = Some(OpenCase {
            case: Case {
                name: name.to_owned(),
                line: n,
                fixture: None,
                note: None,
                steps: Vec::new(),
            },
            exchange: None,
            captured: HashSet::new(),
        });
        Ok(())
    }

    fn header(&mut self, n: usize, is_fixture: bool, value: &[u8]) -> Result<(), VectorError> {
        let what = if is_fixture { "fixture" } else { "note" };
        let value = std::str::from_utf8(value)
            .map(str::trim)
            .map_err(|_| self.error(n, format!("the {what} is not UTF-8")))?;
        if value.is_empty() {
            return Err(self.error(n, format!("empty {what}")));
        }
        let Some(open) = self.open.as_mut() else {
            return Err(self.error(n, format!("`{what}:` outside a case")));
        };
        if is_fixture {
            if !open.case.steps.is_empty() {
                return Err(self.error(n, "`fixture:` must come right after `=== NAME`"));
            }
            if open.case.fixture.is_some() {
                return Err(self.error(n, "a second `fixture:` in one case"));
            }
            open.case.fixture = Some(value.to_owned());
        } else {
            let note = match open.case.note.take() {
                Some(before) => format!("{before} {value}"),
                None => value.to_owned(),
            };
            open.case.note = Some(note);
        }
        Ok(())
    }

    fn sent(&mut self, n: usize, text: &[u8], unknown: bool) -> Result<(), VectorError> {
        let mut refs = Vec::new();
        let open = self.open.as_ref().map(|o| &o.captured);
        for field in text.split(|&b| b == b'|') {
            if field == b"{*}" {
                return Err(self.error(n, "`{*}` is only allowed in `<` lines"));
            }
            if let Some(name) = placeholder_name(field) {
                if !open.is_some_and(|c| c.contains(name)) {
                    return Err(self.error(
                        n,
                        format!("{{{name}}} is used before a `<` line of this case captures it"),
                    ));
                }
                refs.push(name.to_owned());
            }
        }
        let sent = Sent {
            line: n,
            text: text.to_vec(),
            unknown,
            refs,
        };
        let Some(open) = self.open.as_mut() else {
            return Err(self.error(n, "a line outside a case"));
        };
        let extends = open
            .exchange
            .and_then(|i| match open.case.steps.get_mut(i) {
                Some(Step::Exchange(e)) if e.expected.is_empty() => Some(e),
                _ => None,
            });
        match extends {
            Some(exchange) => exchange.sent.push(sent),
            None => {
                open.case.steps.push(Step::Exchange(Exchange {
                    sent: vec![sent],
                    expected: Vec::new(),
                }));
                open.exchange = Some(open.case.steps.len() - 1);
            }
        }
        Ok(())
    }

    fn expected(&mut self, n: usize, text: &[u8]) -> Result<(), VectorError> {
        let family = self.family;
        let Some(open) = self.open.as_mut() else {
            return Err(self.error(n, "a line outside a case"));
        };
        let pattern = Pattern::parse(text, &mut open.captured);
        let exchange = open
            .exchange
            .and_then(|i| match open.case.steps.get_mut(i) {
                Some(Step::Exchange(e)) => Some(e),
                _ => None,
            });
        let Some(exchange) = exchange else {
            return Err(self.error(n, "an answer with no `>` line before it in this case"));
        };
        if !text.starts_with(b"register|") {
            let keys: &[usize] = match family {
                Family::Table | Family::Queue => &[1],
                Family::Filter => &[1, 2],
            };
            if keys.iter().any(|&i| pattern.literal_field(i).is_none()) {
                let what = match family {
                    Family::Filter => "the session id and token (fields 2 and 3)",
                    _ => "the request id (field 2)",
                };
                return Err(self.error(
                    n,
                    format!("{what} of an answer must be literal: answers are matched by it"),
                ));
            }
        }
        exchange.expected.push(Expected { line: n, pattern });
        Ok(())
    }

    fn push_refused(&mut self, refused: Refused) {
        if let Some(open) = self.open.as_mut() {
            open.case.steps.push(Step::Refused(refused));
        }
    }

    fn close_case(&mut self) -> Result<(), VectorError> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        if open.case.steps.is_empty() {
            return Err(self.error(
                open.case.line,
                format!("case {:?} has no lines", open.case.name),
            ));
        }
        self.cases.push(open.case);
        Ok(())
    }
}

/// Splits `> LINE`, `~> LINE`, `< LINE`, `!> LINE`, `!< LINE` into the
/// directive and the line; the line is `None` when the space is missing.
fn split_directive(line: &[u8]) -> Option<(&'static str, Option<&[u8]>)> {
    for directive in ["~>", "!>", "!<", ">", "<"] {
        if let Some(rest) = line.strip_prefix(directive.as_bytes()) {
            return Some((directive, rest.strip_prefix(b" ")));
        }
    }
    None
}

/// A line for an error message, cut to 80 bytes.
fn quote(line: &[u8]) -> String {
    let cut = line.len().min(80);
    let mut text = format!("{:?}", String::from_utf8_lossy(&line[..cut]));
    if cut < line.len() {
        text.push_str("...");
    }
    text
}
