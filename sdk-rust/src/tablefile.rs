//! A pure parser of OpenSMTPD table(5) files, for `file:` tables and for
//! table backends that serve a file.
//!
//! ```text
//! # comment lines start with '#' (after optional blanks)
//! postmaster      root
//! abuse           root, security@example.net
//! [2001:db8::1]   mx6.example.org
//! ```
//!
//! A file is either a **list** (one key a line) or a **mapping** (`key
//! value`). As in OpenSMTPD's static tables:
//! - leading and trailing blanks are removed, lines may end in `\r\n`; blank
//!   lines and lines starting with `#` are skipped (a `#` after the start of
//!   a line is data);
//! - the key ends at the first blank (space, tab) or `:` (so aliases files,
//!   `root: alice`, read as they do in OpenSMTPD), or at the `]` of a key
//!   starting with `[` (bracketed IPv6 addresses);
//! - the value is the rest of the line after the separator and the blanks
//!   (and a `:` followed by a blank) after it, trailing blanks trimmed: it
//!   may hold `|`, inner spaces, `#`, `:` and any UTF-8 text;
//! - keys are lower-cased (ASCII), since the daemon lower-cases what it
//!   looks up; values are kept as written;
//! - the first entry decides the form, and mixing the two is an error;
//! - a key given twice keeps its first place and takes the later value.
//!
//! Entries keep the file's order, which `fetch` cycles through. Errors name
//! the line.

use std::collections::HashMap;
use std::fmt;

/// Whether a file lists keys or maps keys to values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// One key a line, no values (also the form of an empty file).
    List,
    /// `key value` lines.
    Mapping,
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::List => "list",
            Self::Mapping => "mapping",
        })
    }
}

/// One key of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value; `None` in a list.
    pub value: Option<String>,
    /// The line (from 1) that gave the value.
    pub line: usize,
}

/// What is wrong with a table file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The line is not valid UTF-8.
    NotUtf8,
    /// The line holds a carriage return or another control character that
    /// no protocol line may carry.
    ControlChar,
    /// The line is of the other form than the first entry.
    MixedForms {
        /// The form of the file, set by its first entry.
        form: Form,
        /// The line of that first entry.
        first_line: usize,
    },
}

/// A table file that cannot be loaded: the line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct Error {
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8 => f.write_str("not valid UTF-8"),
            Self::ControlChar => {
                f.write_str("control character (such as a carriage return) in a key or value")
            }
            Self::MixedForms { form, first_line } => {
                let (this, other) = match form {
                    Form::List => ("a key with a value", "a list of keys"),
                    Form::Mapping => ("a key without a value", "a mapping of keys to values"),
                };
                write!(f, "{this} in {other} (the form set by line {first_line})")
            }
        }
    }
}

/// A parsed table file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFile {
    form: Form,
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
}

impl TableFile {
    /// Parses the whole content of a file.
    pub fn parse(content: &[u8]) -> Result<Self, Error> {
        let mut file = Self {
            form: Form::List,
            entries: Vec::new(),
            index: HashMap::new(),
        };
        let mut first_line = None;
        for (n, raw) in content.split(|&b| b == b'\n').enumerate() {
            let line = n + 1;
            let Some((key, value)) = split_line(raw, line)? else {
                continue;
            };
            let form = if value.is_some() {
                Form::Mapping
            } else {
                Form::List
            };
            match first_line {
                None => {
                    file.form = form;
                    first_line = Some(line);
                }
                Some(first_line) if form != file.form => {
                    return Err(Error {
                        line,
                        kind: ErrorKind::MixedForms {
                            form: file.form,
                            first_line,
                        },
                    })
                }
                Some(_) => {}
            }
            file.insert(Entry {
                key,
                value: value.map(str::to_owned),
                line,
            });
        }
        Ok(file)
    }

    fn insert(&mut self, entry: Entry) {
        match self.index.get(&entry.key) {
            Some(&i) => self.entries[i] = entry,
            None => {
                self.index.insert(entry.key.clone(), self.entries.len());
                self.entries.push(entry);
            }
        }
    }

    /// List or mapping.
    pub fn form(&self) -> Form {
        self.form
    }

    /// The entries, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry of `key` (exact match).
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.index.get(key).map(|&i| &self.entries[i])
    }

    /// True when `key` is in the file (exact match).
    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the file has no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Blanks as OpenSMTPD's `isspace` sees them, minus the line feed.
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | 0x0b | 0x0c)
}

/// The key and optional value of one line; `None` for a blank or comment
/// line.
fn split_line(raw: &[u8], line: usize) -> Result<Option<(String, Option<&str>)>, Error> {
    let text = std::str::from_utf8(raw).map_err(|_| Error {
        line,
        kind: ErrorKind::NotUtf8,
    })?;
    let blank = |c: char| c.is_ascii() && is_blank(c as u8);
    let text = text.trim_matches(blank);
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    if text.bytes().any(|b| b == b'\r' || b == 0) {
        return Err(Error {
            line,
            kind: ErrorKind::ControlChar,
        });
    }
    let end = match text.find(']') {
        Some(close) if text.starts_with('[') => close + 1,
        _ => text
            .find(|c: char| blank(c) || c == ':')
            .unwrap_or(text.len()),
    };
    let key = text[..end].to_ascii_lowercase();
    // Skip one separator, then blanks and any ':' followed by a blank.
    let mut rest = text[end..].char_indices().skip(1).peekable();
    let start = loop {
        match rest.next() {
            None => return Ok(Some((key, None))),
            Some((_, c)) if blank(c) => {}
            Some((_, ':')) if rest.peek().is_some_and(|&(_, n)| blank(n)) => {}
            Some((i, _)) => break end + i,
        }
    };
    Ok(Some((key, Some(&text[start..]))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(file: &TableFile) -> Vec<(&str, Option<&str>)> {
        file.entries()
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_deref()))
            .collect()
    }

    #[test]
    fn mapping_lines() {
        let cases: &[(&str, (&str, Option<&str>))] = &[
            ("key value", ("key", Some("value"))),
            ("key\tvalue", ("key", Some("value"))),
            ("  key   value  ", ("key", Some("value"))),
            ("key value\r", ("key", Some("value"))),
            (
                "pipe left|middle|right",
                ("pipe", Some("left|middle|right")),
            ),
            (
                "spaced value with  two spaces",
                ("spaced", Some("value with  two spaces")),
            ),
            ("utf8  café über ☃", ("utf8", Some("café über ☃"))),
            (
                "hash a#b # not a comment",
                ("hash", Some("a#b # not a comment")),
            ),
            ("[2001:db8::1]   mx6", ("[2001:db8::1]", Some("mx6"))),
            ("[2001:db8::1]:mx6", ("[2001:db8::1]", Some("mx6"))),
            ("alice alice:$2b$09$x", ("alice", Some("alice:$2b$09$x"))),
            ("root: alice, bob", ("root", Some("alice, bob"))),
            ("root:alice", ("root", Some("alice"))),
            ("root :  alice", ("root", Some("alice"))),
            ("Postmaster Root", ("postmaster", Some("Root"))),
            ("k :x", ("k", Some(":x"))),
        ];
        for (line, expected) in cases {
            let file = TableFile::parse(line.as_bytes()).unwrap();
            assert_eq!(file.form(), Form::Mapping, "{line:?}");
            assert_eq!(pairs(&file), vec![*expected], "{line:?}");
        }
    }

    #[test]
    fn list_comments_and_blank_lines() {
        let file =
            TableFile::parse(b"# head\n\n  192.0.2.1\n\t# indented comment\n[::1]  \r\n").unwrap();
        assert_eq!(file.form(), Form::List);
        assert_eq!(pairs(&file), vec![("192.0.2.1", None), ("[::1]", None)]);
        assert_eq!(file.entries()[1].line, 5);
        let empty = TableFile::parse(b"# nothing\n").unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.form(), Form::List);
    }

    #[test]
    fn order_is_kept_and_duplicates_take_the_later_value() {
        let file = TableFile::parse(b"b 1\na 2\nc 3\na 4\n").unwrap();
        assert_eq!(
            pairs(&file),
            vec![("b", Some("1")), ("a", Some("4")), ("c", Some("3"))]
        );
        assert_eq!(file.get("a").unwrap().line, 4);
        assert!(file.contains_key("c"));
        assert!(!file.contains_key("A"));
        assert_eq!(file.len(), 3);
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b"a 1\nb\n", 2, "line 2: a key without a value in a mapping of keys to values (the form set by line 1)"),
            (b"# c\na\n\nb 2\n", 4, "line 4: a key with a value in a list of keys (the form set by line 2)"),
            (b"a 1\nb \xff\n", 2, "line 2: not valid UTF-8"),
            (b"a 1\rx\n", 1, "line 1: control character (such as a carriage return) in a key or value"),
        ];
        for (content, line, message) in cases {
            let e = TableFile::parse(content).unwrap_err();
            assert_eq!(e.line, *line);
            assert_eq!(e.to_string(), *message);
        }
    }

    #[test]
    fn the_standard_fixture_loads() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../protocol-spec/vectors/fixtures/standard.table"
        );
        let file = TableFile::parse(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(file.form(), Form::Mapping);
        assert_eq!(file.entries()[0].key, "postmaster");
        assert_eq!(
            file.get("pipe").unwrap().value.as_deref(),
            Some("left|middle|right")
        );
        assert_eq!(
            file.get("spaced").unwrap().value.as_deref(),
            Some("value with  two spaces")
        );
        assert_eq!(
            file.get("big").unwrap().value.as_ref().unwrap().len(),
            65536
        );
    }
}
