//! Source text: files, positions, statements and macros.
//!
//! This is the lexical layer that sits in front of the pest grammar, doing
//! what OpenSMTPD's hand-written lexer does before tokens reach its yacc
//! grammar (smtpd-conf.md section 1):
//!
//! - [`split`] cuts a file into logical statements: a backslash before a
//!   newline joins lines (inside quotes too), `#` outside quotes starts a
//!   comment that runs to the end of the logical line, a newline inside
//!   quotes is dropped, and a newline ends a statement unless it is inside
//!   braces (where lists may span lines).
//! - [`Macros::expand`] replaces each unquoted token that starts with `$`
//!   by the macro's value, which the grammar then reads as text (so a value
//!   may hold several tokens). Expanded text is never expanded again.
//!
//! Every character keeps the [`Pos`] it came from, so that errors found by
//! the grammar or the checks point at the original file, line and column
//! (an expanded macro points at its `$`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::Issue;

/// A file known to the loader (the configuration, an include, a table file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FileId(u32);

/// A place in a source file. Lines and columns count from 1; columns count
/// characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub(crate) file: FileId,
    pub(crate) line: u32,
    pub(crate) col: u32,
}

impl Pos {
    /// The position `n` characters to the right.
    pub(crate) fn right(self, n: u32) -> Self {
        Self {
            col: self.col + n,
            ..self
        }
    }
}

/// A piece of source text: from `start` up to (not including) `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: Pos,
    pub(crate) end: Pos,
}

impl Span {
    /// A span of one character.
    pub(crate) fn at(pos: Pos) -> Self {
        Self {
            start: pos,
            end: pos.right(1),
        }
    }
}

/// One file's name (as written by the user) and content.
#[derive(Debug)]
pub(crate) struct SourceFile {
    pub(crate) name: PathBuf,
    pub(crate) text: String,
}

/// Every file read while loading, so that diagnostics can quote them.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    pub(crate) fn add(&mut self, name: PathBuf, text: String) -> FileId {
        let id = u32::try_from(self.files.len()).unwrap_or(u32::MAX);
        self.files.push(SourceFile { name, text });
        FileId(id)
    }

    pub(crate) fn file(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// The text of line `line` (from 1) of a file, without its newline.
    pub(crate) fn line(&self, id: FileId, line: u32) -> &str {
        let text = &self.file(id).text;
        let line = text
            .split('\n')
            .nth(line.saturating_sub(1) as usize)
            .unwrap_or("");
        line.strip_suffix('\r').unwrap_or(line)
    }

    /// The position just after the last character of a file.
    pub(crate) fn end_of(&self, id: FileId) -> Pos {
        let text = &self.file(id).text;
        let body = text.strip_suffix('\n').unwrap_or(text);
        let line = body.split('\n').count().max(1);
        let col = body.rsplit('\n').next().map_or(0, |l| l.chars().count());
        Pos {
            file: id,
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX) + 1,
        }
    }
}

/// One character of a statement and where it came from.
#[derive(Debug, Clone, Copy)]
struct SrcChar {
    c: char,
    pos: Pos,
    /// Inside a quoted string (quotes included): never a macro.
    quoted: bool,
}

/// A logical statement as cut from a file, before macro expansion.
#[derive(Debug)]
pub(crate) struct RawStatement {
    chars: Vec<SrcChar>,
    /// Where the statement ends (its newline, or the end of the file).
    end: Pos,
}

/// A statement ready for the grammar: text and the position of each byte.
#[derive(Debug)]
pub(crate) struct Statement {
    pub(crate) text: String,
    /// The position of every byte of `text`, then one for the end.
    map: Vec<Pos>,
}

impl Statement {
    /// The position of byte `offset` of the text.
    pub(crate) fn pos(&self, offset: usize) -> Pos {
        self.map[offset.min(self.map.len() - 1)]
    }

    /// The source span of bytes `start..end` of the text.
    pub(crate) fn span(&self, start: usize, end: usize) -> Span {
        let first = self.pos(start);
        if end <= start {
            return Span::at(first);
        }
        let last = self.pos(end - 1);
        let end = if last.line == first.line && last.file == first.file {
            last.right(1)
        } else {
            first.right(1)
        };
        Span { start: first, end }
    }
}

/// Cuts a file into logical statements (see the module documentation).
/// Lexical errors (an unterminated quote, a NUL byte) are reported and the
/// statement holding them is dropped; `true` is returned with the
/// statements when that happened.
pub(crate) fn split(
    file: FileId,
    text: &str,
    issues: &mut Vec<Issue>,
) -> (Vec<RawStatement>, bool) {
    let before = issues.len();
    let statements = Splitter::new(file, text).run(issues);
    (statements, issues.len() > before)
}

struct Splitter<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    pos: Pos,
    statements: Vec<RawStatement>,
    current: Vec<SrcChar>,
    depth: u32,
    broken: bool,
    /// The opening quote of the first quoted string that ran over a line.
    multiline_quote: Option<Pos>,
}

impl<'a> Splitter<'a> {
    fn new(file: FileId, text: &'a str) -> Self {
        Self {
            chars: text.chars().peekable(),
            pos: Pos {
                file,
                line: 1,
                col: 1,
            },
            statements: Vec::new(),
            current: Vec::new(),
            depth: 0,
            broken: false,
            multiline_quote: None,
        }
    }

    /// Takes the next character, advancing the position.
    fn bump(&mut self) -> Option<(char, Pos)> {
        let c = self.chars.next()?;
        let at = self.pos;
        if c == '\n' {
            self.pos.line += 1;
            self.pos.col = 1;
        } else {
            self.pos.col += 1;
        }
        Some((c, at))
    }

    /// Consumes a line continuation (backslash, optional CR, newline) if one
    /// starts at the backslash just read.
    fn continuation(&mut self) -> bool {
        match self.chars.peek() {
            Some('\n') => {
                self.bump();
                true
            }
            Some('\r') => {
                let mut ahead = self.chars.clone();
                ahead.next();
                if ahead.peek() == Some(&'\n') {
                    self.bump();
                    self.bump();
                    true
                } else {
                    false
                }
            }
            _ => false,
        }
    }

    fn push(&mut self, c: char, pos: Pos, quoted: bool) {
        self.current.push(SrcChar { c, pos, quoted });
    }

    fn finish(&mut self, end: Pos) {
        let chars = std::mem::take(&mut self.current);
        let blank = chars.iter().all(|c| c.c.is_whitespace());
        if !self.broken && !blank {
            self.statements.push(RawStatement { chars, end });
        }
        self.broken = false;
        self.depth = 0;
    }

    fn run(mut self, issues: &mut Vec<Issue>) -> Vec<RawStatement> {
        while let Some((c, at)) = self.bump() {
            match c {
                '\\' if self.continuation() => {}
                '#' => self.comment(),
                '"' | '\'' => self.quoted(c, at, issues),
                '\0' => self.nul(at, issues),
                '{' => {
                    self.depth += 1;
                    self.push(c, at, false);
                }
                '}' => {
                    self.depth = self.depth.saturating_sub(1);
                    self.push(c, at, false);
                }
                '\n' if self.depth == 0 || self.directive_follows() => self.finish(at),
                _ => self.push(c, at, false),
            }
        }
        let end = self.pos;
        self.finish(end);
        self.statements
    }

    /// True when the next line starts with a directive keyword. Inside
    /// braces such a line cannot belong to the list (a keyword there would
    /// need quotes), so a `{` left open ends at the newline before it rather
    /// than swallowing the rest of the file.
    fn directive_follows(&self) -> bool {
        let rest: String = self
            .chars
            .clone()
            .skip_while(|c| *c == ' ' || *c == '\t')
            .take_while(|c| is_word_char(*c))
            .collect();
        DIRECTIVES.contains(&rest.as_str())
    }

    /// Skips a comment up to (not including) the newline that ends it; a
    /// continuation inside the comment continues the comment.
    fn comment(&mut self) {
        while let Some(&c) = self.chars.peek() {
            if c == '\n' {
                return;
            }
            self.bump();
            if c == '\\' {
                self.continuation();
            }
        }
    }

    fn nul(&mut self, at: Pos, issues: &mut Vec<Issue>) {
        issues.push(
            Issue::new(Span::at(at), "syntax error: NUL byte in the configuration")
                .expected("text without NUL bytes"),
        );
        self.broken = true;
    }

    /// Copies a quoted string, opening quote already read.
    fn quoted(&mut self, quote: char, open: Pos, issues: &mut Vec<Issue>) {
        self.push(quote, open, true);
        loop {
            let Some((c, at)) = self.bump() else {
                let expected = match self.multiline_quote {
                    Some(first) if first != open => format!(
                        "a closing {quote} before the end of the file (the quoted string opened \
                         at line {}, column {} runs over several lines: is its closing quote \
                         missing?)",
                        first.line, first.col
                    ),
                    _ => format!("a closing {quote} before the end of the file"),
                };
                issues.push(
                    Issue::new(Span::at(open), "syntax error: unterminated quoted string")
                        .expected(expected),
                );
                self.broken = true;
                return;
            };
            match c {
                '\n' => {
                    self.multiline_quote.get_or_insert(open);
                }
                '\0' => self.nul(at, issues),
                '\\' if self.continuation() => {}
                '\\' => {
                    self.push(c, at, true);
                    let escaped = matches!(self.chars.peek(), Some(&n) if n == quote || n == ' ' || n == '\t');
                    if escaped {
                        if let Some((n, at)) = self.bump() {
                            self.push(n, at, true);
                        }
                    }
                }
                _ if c == quote => {
                    self.push(c, at, true);
                    return;
                }
                _ => self.push(c, at, true),
            }
        }
    }
}

/// The keywords that start a directive.
const DIRECTIVES: &[&str] = &[
    "action",
    "admd",
    "bounce",
    "ca",
    "filter",
    "include",
    "listen",
    "match",
    "mda",
    "mta",
    "pki",
    "proc",
    "queue",
    "scheduler",
    "smtp",
    "srs",
    "table",
];

/// A defined macro.
#[derive(Debug)]
struct Macro {
    value: String,
    /// Given with `-D`: the file cannot redefine it.
    persistent: bool,
    used: bool,
    /// Where the file defined it (`None` for `-D`).
    defined_at: Option<Span>,
}

/// The macros defined so far.
#[derive(Debug, Default)]
pub(crate) struct Macros {
    defined: BTreeMap<String, Macro>,
}

impl Macros {
    /// Defines a macro from the command line (`-D NAME=VALUE`), which the
    /// file cannot override.
    pub(crate) fn define_persistent(&mut self, name: &str, value: &str) {
        self.defined.insert(
            name.to_owned(),
            Macro {
                value: value.to_owned(),
                persistent: true,
                used: false,
                defined_at: None,
            },
        );
    }

    /// Defines (or redefines) a macro from the file; a `-D` macro of the
    /// same name wins.
    pub(crate) fn define(&mut self, name: &str, value: &str, at: Span) {
        if self.defined.get(name).is_some_and(|m| m.persistent) {
            return;
        }
        self.defined.insert(
            name.to_owned(),
            Macro {
                value: value.to_owned(),
                persistent: false,
                used: false,
                defined_at: Some(at),
            },
        );
    }

    /// Macros that were never used: `(name, where the file defined it)`.
    pub(crate) fn unused(&self) -> impl Iterator<Item = (&str, Option<Span>)> {
        self.defined
            .iter()
            .filter(|(_, m)| !m.used)
            .map(|(name, m)| (name.as_str(), m.defined_at))
    }

    /// Expands the macros of a statement (see the module documentation).
    pub(crate) fn expand(&mut self, raw: &RawStatement) -> Result<Statement, Issue> {
        let chars = &raw.chars;
        let mut out = Statement {
            text: String::with_capacity(chars.len()),
            map: Vec::with_capacity(chars.len() + 1),
        };
        let mut i = 0;
        while i < chars.len() {
            let ch = chars[i];
            if ch.quoted || ch.c.is_whitespace() {
                out.push(ch.c, ch.pos);
                i += 1;
            } else if ch.c == '$' {
                i = self.expand_one(chars, i, &mut out)?;
            } else {
                let end = token_end(chars, i);
                for c in &chars[i..end] {
                    out.push(c.c, c.pos);
                }
                i = end;
            }
        }
        out.map.push(raw.end);
        Ok(out)
    }

    /// Expands the macro whose `$` is at `chars[at]`; returns the index
    /// after its name.
    fn expand_one(
        &mut self,
        chars: &[SrcChar],
        at: usize,
        out: &mut Statement,
    ) -> Result<usize, Issue> {
        let dollar = chars[at].pos;
        let end = chars[at + 1..]
            .iter()
            .position(|c| c.quoted || !(c.c.is_ascii_alphanumeric() || c.c == '_'))
            .map_or(chars.len(), |n| at + 1 + n);
        let name: String = chars[at + 1..end].iter().map(|c| c.c).collect();
        let span = Span {
            start: dollar,
            end: dollar.right(u32::try_from(end - at).unwrap_or(1)),
        };
        let Some(found) = self.defined.get_mut(&name) else {
            return Err(Issue::new(span, format!("macro '{name}' not defined"))
                .expected(format!("a definition `{name} = VALUE` before this line, or `-D {name}=VALUE` on the command line")));
        };
        found.used = true;
        for c in found.value.chars() {
            out.push(c, dollar);
        }
        Ok(end)
    }
}

impl Statement {
    fn push(&mut self, c: char, pos: Pos) {
        self.text.push(c);
        for _ in 0..c.len_utf8() {
            self.map.push(pos);
        }
    }
}

/// Characters a bare word may go on with (OpenSMTPD's `allowed_in_string`).
pub(crate) fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || (c.is_ascii_punctuation()
            && !matches!(c, '(' | ')' | '{' | '}' | '<' | '>' | '!' | '=' | '#' | ','))
}

/// The end of the unquoted token starting at `chars[i]`, as OpenSMTPD's
/// lexer reads it: a number, a word or a single character. A `$` inside a
/// word is literal.
fn token_end(chars: &[SrcChar], i: usize) -> usize {
    let at = |j: usize| chars.get(j).filter(|c| !c.quoted).map(|c| c.c);
    let first = chars[i].c;
    if first.is_ascii_digit() {
        let digits = (i..chars.len())
            .take_while(|&j| at(j).is_some_and(|c| c.is_ascii_digit()))
            .count();
        let next = at(i + digits);
        let number_ends = match next {
            None => true,
            Some(c) => c.is_whitespace() || matches!(c, ')' | ',' | '/' | '}' | '='),
        };
        if number_ends {
            return i + digits;
        }
    }
    if first.is_ascii_alphanumeric() || first == ':' || first == '_' {
        let len = (i..chars.len())
            .take_while(|&j| at(j).is_some_and(is_word_char))
            .count();
        return i + len;
    }
    i + 1
}
