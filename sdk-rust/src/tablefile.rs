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
//! A file is either a **list** (one value a line) or a **mapping** (`key
//! value`), read line by line as OpenSMTPD 7.8's `parse_table_line` reads
//! it (tables.md section 1.1):
//! - blanks (`isspace`: space, tab, `\r`, `\v`, `\f`) are removed from both
//!   ends, so lines may end in `\r\n`; empty lines are skipped;
//! - a line whose first character is `#` is a comment (a `#` later in a
//!   line is data). While the form is still undecided, a comment whose text
//!   after `#` and blanks is exactly `@list` makes the file a list;
//! - the key ends at the first space, tab or `:`; in a line starting with
//!   `[`, it ends at the first `]` instead (bracketed IPv6 addresses), and a
//!   `[` without a `]` is an error;
//! - the **first data line decides the form**: nothing after its key makes
//!   a list, anything after it a mapping. Later lines are read with that
//!   form, never compared with it:
//!   - in a list, the whole trimmed line is the value, so `[2001:db8::]/32`
//!     and lines holding spaces are single values;
//!   - in a mapping, the one character after the key (the separator) is
//!     dropped, then any spaces and tabs; the rest of the line is the
//!     value, which may hold `|`, inner spaces, `#`, `:` and any UTF-8
//!     text. A mapping line without a value is an error;
//! - an empty file (or one of comments only) is an empty mapping, unless
//!   it says `# @list`;
//! - keys are lower-cased (ASCII), since the daemon lower-cases what it
//!   looks up; values are kept as written;
//! - a key given twice keeps the place of its first line and takes the
//!   value (and line number) of the last one: the last one wins, as in
//!   OpenSMTPD, whose dictionary has no order of its own.
//!
//! Beyond OpenSMTPD, a line that is not UTF-8 or holds a carriage return or
//! a NUL byte inside it is an error, since no protocol line could carry it.
//! Any error fails the whole file, as a malformed line does in OpenSMTPD.
//!
//! Entries keep the file's order. Errors name the line.

use std::collections::HashMap;
use std::fmt;

/// Whether a file lists values or maps keys to values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// One value a line, no separate key (set by a first data line without
    /// anything after its key, or by a `# @list` comment before it).
    List,
    /// `key value` lines (also the form of an empty file).
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
    /// The key (in a list, the whole line), lower-cased.
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
    /// The line holds a carriage return or a NUL byte, which no protocol
    /// line may carry.
    ControlChar,
    /// The line starts with `[` and has no `]`.
    UnclosedBracket,
    /// A line of a mapping has a key but no value.
    EmptyValue {
        /// The line whose key and value made the file a mapping.
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
            Self::UnclosedBracket => f.write_str("a key starting with '[' has no ']'"),
            Self::EmptyValue { first_line } => write!(
                f,
                "a key without a value in a mapping of keys to values (the form set by line \
                 {first_line})"
            ),
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

/// The state of a file being read.
struct Reader {
    file: TableFile,
    /// The form, once decided, and the line that decided it (0 for a
    /// `# @list` comment).
    form: Option<(Form, usize)>,
}

impl TableFile {
    /// Parses the whole content of a file.
    pub fn parse(content: &[u8]) -> Result<Self, Error> {
        let mut reader = Reader {
            file: Self {
                form: Form::Mapping,
                entries: Vec::new(),
                index: HashMap::new(),
            },
            form: None,
        };
        for (n, raw) in content.split(|&b| b == b'\n').enumerate() {
            reader.line(raw, n + 1)?;
        }
        let mut file = reader.file;
        if let Some((form, _)) = reader.form {
            file.form = form;
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

    /// The entries, in the order of the first line of each key.
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
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\x0b' | '\x0c')
}

impl Reader {
    /// Reads one line (without its `\n`).
    fn line(&mut self, raw: &[u8], line: usize) -> Result<(), Error> {
        let fail = |kind| Error { line, kind };
        let text = std::str::from_utf8(raw).map_err(|_| fail(ErrorKind::NotUtf8))?;
        let text = text.trim_matches(is_blank);
        if text.is_empty() {
            return Ok(());
        }
        if let Some(comment) = text.strip_prefix('#') {
            if self.form.is_none() && comment.trim_start_matches(is_blank) == "@list" {
                self.form = Some((Form::List, 0));
            }
            return Ok(());
        }
        if text.contains(['\r', '\0']) {
            return Err(fail(ErrorKind::ControlChar));
        }
        let key_end = if text.starts_with('[') {
            text.find(']')
                .map(|close| close + 1)
                .ok_or_else(|| fail(ErrorKind::UnclosedBracket))?
        } else {
            text.find([' ', '\t', ':']).unwrap_or(text.len())
        };
        let (form, first_line) = *self.form.get_or_insert_with(|| {
            let form = if key_end == text.len() {
                Form::List
            } else {
                Form::Mapping
            };
            (form, line)
        });
        let entry = match form {
            Form::List => Entry {
                key: text.to_ascii_lowercase(),
                value: None,
                line,
            },
            Form::Mapping => {
                // Drop the separator, whatever it is, then spaces and tabs.
                let mut rest = text[key_end..].chars();
                rest.next();
                let value = rest.as_str().trim_start_matches([' ', '\t']);
                if value.is_empty() {
                    return Err(fail(ErrorKind::EmptyValue { first_line }));
                }
                Entry {
                    key: text[..key_end].to_ascii_lowercase(),
                    value: Some(value.to_owned()),
                    line,
                }
            }
        };
        self.file.insert(entry);
        Ok(())
    }
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
            ("key \t value", ("key", Some("value"))),
            ("key value\r", ("key", Some("value"))),
            ("key value\x0b\x0c", ("key", Some("value"))),
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
            // Whatever follows the `]` is the separator.
            ("[::1]x mx6", ("[::1]", Some("mx6"))),
            ("alice alice:$2b$09$x", ("alice", Some("alice:$2b$09$x"))),
            ("root: alice, bob", ("root", Some("alice, bob"))),
            ("root:alice", ("root", Some("alice"))),
            ("root::alice", ("root", Some(":alice"))),
            // One separator only: a later ':' belongs to the value.
            ("root :  alice", ("root", Some(":  alice"))),
            ("k :x", ("k", Some(":x"))),
            ("Postmaster Root", ("postmaster", Some("Root"))),
            ("a:b c", ("a", Some("b c"))),
        ];
        for (line, expected) in cases {
            let file = TableFile::parse(line.as_bytes()).unwrap();
            assert_eq!(file.form(), Form::Mapping, "{line:?}");
            assert_eq!(pairs(&file), vec![*expected], "{line:?}");
        }
    }

    #[test]
    fn list_lines_are_whole_lines() {
        let cases: &[(&str, &[&str])] = &[
            ("192.0.2.1\n", &["192.0.2.1"]),
            ("[::1]  \r\n", &["[::1]"]),
            ("Example.ORG\n", &["example.org"]),
            // The first line decides; later lines are whole values.
            ("a\nb c\nd:e\n", &["a", "b c", "d:e"]),
            (
                "# @list\n10.0.0.0/8\n[2001:db8::]/32\n",
                &["10.0.0.0/8", "[2001:db8::]/32"],
            ),
            ("#@list\nkey value\n", &["key value"]),
            ("  #\t@list\nkey: value\n", &["key: value"]),
            ("# @list\n", &[]),
        ];
        for (content, expected) in cases {
            let file = TableFile::parse(content.as_bytes()).unwrap();
            assert_eq!(file.form(), Form::List, "{content:?}");
            let keys: Vec<&str> = file.entries().iter().map(|e| e.key.as_str()).collect();
            assert_eq!(keys, *expected, "{content:?}");
            assert!(file.entries().iter().all(|e| e.value.is_none()));
        }
    }

    #[test]
    fn list_comment_only_counts_before_the_first_line() {
        let cases: &[(&str, Form)] = &[
            ("a b\n# @list\nc d\n", Form::Mapping),
            ("# @list please\na b\n", Form::Mapping),
            ("# @LIST\na b\n", Form::Mapping),
            ("# list\na b\n", Form::Mapping),
            ("# header\n\n# @list\na b\n", Form::List),
            // Without `# @list`, a bracketed network with a mask is a key
            // (`[2001:db8::]`) and a value (`32`), as in OpenSMTPD.
            ("[2001:db8::]/32\n", Form::Mapping),
        ];
        for (content, form) in cases {
            let file = TableFile::parse(content.as_bytes()).unwrap();
            assert_eq!(file.form(), *form, "{content:?}");
        }
        let file = TableFile::parse(b"[2001:db8::]/32\n").unwrap();
        assert_eq!(pairs(&file), vec![("[2001:db8::]", Some("32"))]);
    }

    #[test]
    fn comments_and_blank_lines() {
        let file = TableFile::parse(b"# head\n\n  a 1\n\t# indented comment\n\nb 2\n").unwrap();
        assert_eq!(pairs(&file), vec![("a", Some("1")), ("b", Some("2"))]);
        assert_eq!(file.entries()[1].line, 6);
    }

    #[test]
    fn empty_files_are_mappings() {
        for content in [&b""[..], b"\n\n", b"# nothing\n", b"  \t\r\n"] {
            let file = TableFile::parse(content).unwrap();
            assert!(file.is_empty());
            assert_eq!(file.form(), Form::Mapping, "{content:?}");
        }
    }

    #[test]
    fn order_is_kept_and_duplicates_take_the_later_value() {
        let file = TableFile::parse(b"b 1\na 2\nc 3\nA 4\n").unwrap();
        assert_eq!(
            pairs(&file),
            vec![("b", Some("1")), ("a", Some("4")), ("c", Some("3"))]
        );
        assert_eq!(file.get("a").unwrap().line, 4);
        assert!(file.contains_key("c"));
        assert!(!file.contains_key("A"));
        assert_eq!(file.len(), 3);
        let list = TableFile::parse(b"x\ny\nX\n").unwrap();
        assert_eq!(pairs(&list), vec![("x", None), ("y", None)]);
        assert_eq!(list.get("x").unwrap().line, 3);
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b"a 1\nb\n", 2, "line 2: a key without a value in a mapping of keys to values (the form set by line 1)"),
            (b"# c\na 1\n\nb:\n", 4, "line 4: a key without a value in a mapping of keys to values (the form set by line 2)"),
            (b"a:\n", 1, "line 1: a key without a value in a mapping of keys to values (the form set by line 1)"),
            (b"[::1]:\t\n", 1, "line 1: a key without a value in a mapping of keys to values (the form set by line 1)"),
            (b"a 1\nb \xff\n", 2, "line 2: not valid UTF-8"),
            (b"a 1\rx\n", 1, "line 1: control character (such as a carriage return) in a key or value"),
            (b"a\nb\0c\n", 2, "line 2: control character (such as a carriage return) in a key or value"),
            (b"a 1\n[::1 x\n", 2, "line 2: a key starting with '[' has no ']'"),
            (b"# @list\n[::1\n", 2, "line 2: a key starting with '[' has no ']'"),
        ];
        for (content, line, message) in cases {
            let e = TableFile::parse(content).unwrap_err();
            assert_eq!(e.line, *line, "{content:?}");
            assert_eq!(e.to_string(), *message, "{content:?}");
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
