//! `<` lines as patterns: literal fields, `{*}` and `{NAME}` placeholders.
//!
//! A placeholder is always a whole field. `{*}` matches any non-empty field,
//! or, as the last field, the non-empty rest of the line (`|` included).
//! `{*?}`, only as the last field, makes the rest of the line optional: the
//! line may end before it, or go on with any text (an `error` answer with or
//! without a message).
//! `{NAME}` (lower-case letters, digits and `-`) captures one field on its
//! first appearance in a case and stands for the captured text afterwards,
//! in `<` and `>` lines alike. Whether an appearance captures or refers is
//! decided when the file is read, in file order.

use std::collections::{HashMap, HashSet};

/// One field of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// Must equal these bytes.
    Literal(Vec<u8>),
    /// `{*}`: any non-empty text.
    Any,
    /// `{*?}` as the last field: nothing, or any text.
    Optional,
    /// `{NAME}` on its first appearance: takes the field's text.
    Capture(String),
    /// `{NAME}` after it was captured: must equal the captured text.
    Ref(String),
}

/// An expected answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: Vec<u8>,
    fields: Vec<Field>,
}

/// The values captured so far in a case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures(HashMap<String, Vec<u8>>);

impl Captures {
    /// No captured value yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The text captured as `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(Vec::as_slice)
    }

    /// Records `value` as `name`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.0.insert(name.into(), value.into());
    }
}

/// The name inside a `{NAME}` field, when `field` is one.
pub(crate) fn placeholder_name(field: &[u8]) -> Option<&str> {
    let inner = field.strip_prefix(b"{")?.strip_suffix(b"}")?;
    let valid = !inner.is_empty()
        && inner
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        std::str::from_utf8(inner).ok()
    } else {
        None
    }
}

impl Pattern {
    /// Reads a `<` line. `captured` holds the names captured earlier in the
    /// case; names captured by this line are added to it.
    pub fn parse(text: &[u8], captured: &mut HashSet<String>) -> Self {
        let fields = text
            .split(|&b| b == b'|')
            .map(|field| {
                if field == b"{*}" {
                    return Field::Any;
                }
                if field == b"{*?}" {
                    return Field::Optional;
                }
                match placeholder_name(field) {
                    Some(name) if captured.contains(name) => Field::Ref(name.to_owned()),
                    Some(name) => {
                        captured.insert(name.to_owned());
                        Field::Capture(name.to_owned())
                    }
                    None => Field::Literal(field.to_vec()),
                }
            })
            .collect();
        Self {
            text: text.to_vec(),
            fields,
        }
    }

    /// The line as written in the vector file.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// The fields, split at every `|`.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// True when the pattern holds a placeholder.
    pub fn has_placeholders(&self) -> bool {
        self.fields.iter().any(|f| !matches!(f, Field::Literal(_)))
    }

    /// The text of field `index` when it is literal.
    pub fn literal_field(&self, index: usize) -> Option<&[u8]> {
        match self.fields.get(index)? {
            Field::Literal(text) => Some(text),
            _ => None,
        }
    }

    /// True when `line` matches. On success the pattern's captures are added
    /// to `captures`; on failure `captures` is left as it was.
    pub fn matches(&self, line: &[u8], captures: &mut Captures) -> bool {
        // The text not consumed yet; `None` once the last field was taken.
        let mut rest = Some(line);
        let mut taken: Vec<(&str, &[u8])> = Vec::new();
        let last = self.fields.len().saturating_sub(1);
        for (i, field) in self.fields.iter().enumerate() {
            if i == last && *field == Field::Optional {
                // `{*?}` at the end: the line may stop here or go on.
                rest = None;
                break;
            }
            let Some(text) = rest else {
                return false;
            };
            if i == last && *field == Field::Any {
                // `{*}` at the end stands for the rest of the line.
                if text.is_empty() {
                    return false;
                }
                rest = None;
                break;
            }
            let value = match text.iter().position(|&b| b == b'|') {
                Some(n) => {
                    rest = Some(&text[n + 1..]);
                    &text[..n]
                }
                None => {
                    rest = None;
                    text
                }
            };
            let ok = match field {
                Field::Literal(expected) => value == expected.as_slice(),
                Field::Any => !value.is_empty(),
                // `{*?}` before the last field is taken literally.
                Field::Optional => value == b"{*?}",
                Field::Capture(name) => {
                    taken.push((name, value));
                    true
                }
                Field::Ref(name) => taken
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|&(_, v)| v)
                    .or_else(|| captures.get(name))
                    .is_some_and(|v| v == value),
            };
            if !ok {
                return false;
            }
        }
        if rest.is_some() {
            return false;
        }
        for (name, value) in taken {
            captures.insert(name, value);
        }
        true
    }

    /// The pattern with captured values filled in, for reports.
    pub fn render(&self, captures: &Captures) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len());
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(b'|');
            }
            match field {
                Field::Literal(text) => out.extend_from_slice(text),
                Field::Any => out.extend_from_slice(b"{*}"),
                Field::Optional => out.extend_from_slice(b"{*?}"),
                Field::Capture(name) | Field::Ref(name) => match captures.get(name) {
                    Some(value) if matches!(field, Field::Ref(_)) => out.extend_from_slice(value),
                    _ => {
                        out.push(b'{');
                        out.extend_from_slice(name.as_bytes());
                        out.push(b'}');
                    }
                },
            }
        }
        out
    }
}
