//! The table(5) file format, as OpenSMTPD's static tables read it.
//!
//! The runner reads a table fixture with it to know what a backend loaded
//! with that file must answer (its stress pass looks up every key). Rules:
//! leading and trailing blanks are removed; empty lines and `#` comments are
//! skipped; a key ends at the first space, tab or `:`, or at the `]` of a
//! line starting with `[`; the first data line decides whether the file is
//! a list (nothing after the key) or a mapping; a mapping consumes one
//! separator and the blanks after it, the rest being the value. Keys are
//! lower-cased; for a duplicate key the last value wins.

use std::fmt;

/// A loaded table file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableFile {
    /// True for a list (keys only).
    pub is_list: bool,
    /// Keys and values in file order; for a list the value is the key.
    pub entries: Vec<(String, String)>,
}

/// A malformed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFileError {
    /// The line number.
    pub line: usize,
    /// What is wrong.
    pub message: &'static str,
}

impl fmt::Display for TableFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for TableFileError {}

impl TableFile {
    /// Parses the content of a table file.
    pub fn parse(content: &str) -> Result<Self, TableFileError> {
        let mut table = Self::default();
        let mut decided = false;
        for (index, raw) in content.lines().enumerate() {
            let line = raw.trim_matches([' ', '\t', '\r']);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |message| TableFileError {
                line: index + 1,
                message,
            };
            let key_end = if line.starts_with('[') {
                line.find(']')
                    .map(|n| n + 1)
                    .ok_or_else(|| error("a '[' without its ']'"))?
            } else {
                line.find([' ', '\t', ':']).unwrap_or(line.len())
            };
            let (key, rest) = line.split_at(key_end);
            if !decided {
                table.is_list = rest.is_empty();
                decided = true;
            }
            let (key, value) = if table.is_list {
                (line.to_lowercase(), line.to_owned())
            } else {
                let mut chars = rest.chars();
                if !matches!(chars.next(), Some(' ' | '\t' | ':')) {
                    return Err(error("a key without a separator after it"));
                }
                let value = chars.as_str().trim_start_matches([' ', '\t']);
                if value.is_empty() {
                    return Err(error("a mapping line without a value"));
                }
                (key.to_lowercase(), value.to_owned())
            };
            table.entries.retain(|(k, _)| *k != key);
            table.entries.push((key, value));
        }
        Ok(table)
    }

    /// The value of `key`, by exact match.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_follow_table5() {
        let t = TableFile::parse(
            "# comment\n\n  postmaster:   root\nabuse\troot, sec@example.net\n\
             [2001:db8::1]   mx6.example.org\nspaced   value with  two spaces  \n\
             Upper  x\npostmaster again\n",
        )
        .unwrap();
        assert!(!t.is_list);
        assert_eq!(t.get("postmaster"), Some("again"));
        assert_eq!(t.get("abuse"), Some("root, sec@example.net"));
        assert_eq!(t.get("[2001:db8::1]"), Some("mx6.example.org"));
        assert_eq!(t.get("spaced"), Some("value with  two spaces"));
        assert_eq!(t.get("upper"), Some("x"));
        assert_eq!(t.entries.last().map(|e| e.0.as_str()), Some("postmaster"));
    }

    #[test]
    fn lists_and_errors() {
        let t = TableFile::parse("192.0.2.1\n# x\n198.51.100.0/24\n").unwrap();
        assert!(t.is_list);
        assert_eq!(t.get("192.0.2.1"), Some("192.0.2.1"));
        assert_eq!(TableFile::parse("a b\nc\n").unwrap_err().line, 2);
        assert_eq!(TableFile::parse("[::1 x\n").unwrap_err().line, 1);
    }
}
