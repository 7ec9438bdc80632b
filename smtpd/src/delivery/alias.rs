//! Alias values (tables.md section 2.1, aliases(5), forward(5)): the comma
//! lists that `alias` and `virtual` tables map keys to, and that
//! `.forward` and `:include:` files hold one per line.
//!
//! [`parse_value`] is OpenSMTPD's `expand_line`: the list is split at
//! commas outside quotes (a backslash escapes the next character and is
//! removed; quotes stay), each element is trimmed, empty ones are skipped,
//! and each must be one of the [`AliasNode`] forms, tried in
//! `text_to_expandnode`'s order; one element that fits none makes the
//! whole value invalid, which the caller treats as a table error (a
//! temporary failure). [`logical_lines`] is the `fparseln(3)` reading of
//! `.forward` and include files (`#` comments, backslash continuation).

use std::fmt;

use crate::rules::Address;

/// OpenSMTPD's `LINE_MAX` buffer for one value.
const LINE_MAX: usize = 2048;
/// OpenSMTPD's `EXPAND_BUFFER`: commands, paths and error texts are
/// shorter than this.
const EXPAND_BUFFER: usize = 1024;
/// OpenSMTPD's `SMTPD_VUSERNAME_SIZE`: user names are shorter than this.
const USERNAME_SIZE: usize = 256;

/// One element of an alias value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AliasNode {
    /// `error:NNN text`: fail the recipient with this reply (`NNN text`).
    Error(String),
    /// `:include:/path`: the file's lines are more alias values.
    Include(String),
    /// `|command`: pipe the message to this command.
    Filter(String),
    /// `/path`: append the message to this file in mbox format.
    File(String),
    /// `user@domain`: another address, which goes through the rules again.
    Address(Address),
    /// `name`: a local user name.
    Username(String),
}

impl fmt::Display for AliasNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Error(text) => write!(f, "error:{text}"),
            Self::Include(path) => write!(f, ":include:{path}"),
            Self::Filter(command) => write!(f, "|{command}"),
            Self::File(path) => f.write_str(path),
            Self::Address(address) => write!(f, "{address}"),
            Self::Username(name) => f.write_str(name),
        }
    }
}

/// Why an alias value is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AliasError {
    /// The value is 2048 bytes or longer.
    #[error("alias value too long")]
    TooLong,
    /// A quote is left open, or the value ends with a backslash.
    #[error("unbalanced quote or trailing backslash in alias value")]
    Unbalanced,
    /// An element fits none of the forms.
    #[error("invalid alias element {0:?}")]
    Element(String),
}

/// Parses a whole alias value, `:include:` elements kept
/// (`expand_line(..., 1)`).
pub fn parse_value(value: &str) -> Result<Vec<AliasNode>, AliasError> {
    if value.len() >= LINE_MAX {
        return Err(AliasError::TooLong);
    }
    let mut nodes = Vec::new();
    let mut rest = value;
    loop {
        let (element, next, last) = split_element(rest)?;
        let element = element.trim_matches(|c: char| c.is_ascii_whitespace());
        if !element.is_empty() {
            let node =
                parse_element(element).ok_or_else(|| AliasError::Element(element.to_owned()))?;
            nodes.push(node);
        }
        if last {
            return Ok(nodes);
        }
        rest = next;
    }
}

/// Parses one line of a `.forward` or include file: like [`parse_value`],
/// with `:include:` elements dropped (includes are one level only).
pub fn parse_forward_line(line: &str) -> Result<Vec<AliasNode>, AliasError> {
    let mut nodes = parse_value(line)?;
    nodes.retain(|n| !matches!(n, AliasNode::Include(_)));
    Ok(nodes)
}

/// The next element of `s` (`expand_line_split`): the element with
/// escapes resolved, the rest after the comma, and whether it was the last.
fn split_element(s: &str) -> Result<(String, &str, bool), AliasError> {
    let mut element = String::new();
    let (mut escaped, mut double, mut single) = (false, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            element.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' if !double && !single => return Ok((element, &s[i + 1..], false)),
            _ => {
                element.push(c);
                if c == '"' && !single {
                    double = !double;
                }
                if c == '\'' && !double {
                    single = !single;
                }
            }
        }
    }
    if escaped || double || single {
        return Err(AliasError::Unbalanced);
    }
    Ok((element, "", true))
}

/// One trimmed element (`text_to_expandnode`), or `None` when it fits no
/// form.
pub fn parse_element(s: &str) -> Option<AliasNode> {
    parse_error(s)
        .or_else(|| parse_include(s))
        .or_else(|| parse_filter(s))
        .or_else(|| parse_file(s).map(AliasNode::File))
        .or_else(|| parse_address(s))
        .or_else(|| parse_username(s))
}

/// Strips an ASCII case-insensitive prefix.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `error:NNN text` / `:error:NNN text`: `[45][0-9][0-9] [alnum].*`.
fn parse_error(s: &str) -> Option<AliasNode> {
    let text =
        strip_prefix_ignore_case(s, ":error:").or_else(|| strip_prefix_ignore_case(s, "error:"))?;
    let b = text.as_bytes();
    let valid = text.len() < EXPAND_BUFFER
        && b.len() >= 5
        && matches!(b[0], b'4' | b'5')
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && b[3] == b' '
        && b[4].is_ascii_alphanumeric();
    valid.then(|| AliasNode::Error(text.to_owned()))
}

/// `include:/path` / `:include:/path`.
fn parse_include(s: &str) -> Option<AliasNode> {
    let path = strip_prefix_ignore_case(s, ":include:")
        .or_else(|| strip_prefix_ignore_case(s, "include:"))?;
    parse_file(path).map(AliasNode::Include)
}

/// `|command` / `"|command"`.
fn parse_filter(s: &str) -> Option<AliasNode> {
    let (quoted, rest) = match s.strip_prefix('"') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let command = rest.strip_prefix('|')?;
    if command.len() >= EXPAND_BUFFER {
        return None;
    }
    let command = if quoted {
        command.strip_suffix('"')?
    } else {
        command
    };
    Some(AliasNode::Filter(command.to_owned()))
}

/// `/absolute/path`.
fn parse_file(s: &str) -> Option<String> {
    (s.starts_with('/') && s.len() < EXPAND_BUFFER).then(|| s.to_owned())
}

/// `user@domain`: at least 3 characters, an `@` neither first nor last,
/// the local part in OpenSMTPD's allowed set, the domain alnum, `-`, `.`.
fn parse_address(s: &str) -> Option<AliasNode> {
    if s.len() < 3 {
        return None;
    }
    let at = s.find('@')?;
    if at == 0 || at == s.len() - 1 {
        return None;
    }
    let (user, domain) = (&s[..at], &s[at + 1..]);
    let user_ok = user
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%*/?|^{}`~&'+-=_.".contains(&b));
    let domain_ok = domain
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    (user_ok && domain_ok).then(|| AliasNode::Address(Address::new(user, domain)))
}

/// A user name: alnum, `_`, `.`, `-`, `+`.
fn parse_username(s: &str) -> Option<AliasNode> {
    let valid = s.len() < USERNAME_SIZE
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-+".contains(&b));
    valid.then(|| AliasNode::Username(s.to_owned()))
}

/// The logical lines of a file as `fparseln(3)` returns them with the
/// default delimiters: a `#` not preceded by a backslash starts a comment,
/// a line ending with an unescaped backslash continues on the next one,
/// and lines left empty are skipped. Other backslashes are kept.
pub fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in text.split('\n') {
        let mut escaped = false;
        let mut piece = String::new();
        for c in raw.chars() {
            if c == '#' && !escaped {
                break;
            }
            escaped = c == '\\' && !escaped;
            piece.push(c);
        }
        let continued = escaped && piece.ends_with('\\');
        if continued {
            piece.pop();
        }
        current.push_str(&piece);
        if !continued {
            if !current.trim().is_empty() {
                lines.push(std::mem::take(&mut current));
            }
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        lines.push(current);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> AliasNode {
        AliasNode::Username(name.to_owned())
    }

    fn addr(text: &str) -> AliasNode {
        AliasNode::Address(Address::parse(text))
    }

    #[test]
    fn elements() {
        let cases: &[(&str, Option<AliasNode>)] = &[
            ("bob", Some(user("bob"))),
            ("bob.smith-jr_2+tag", Some(user("bob.smith-jr_2+tag"))),
            ("bob@example.org", Some(addr("bob@example.org"))),
            ("b@x", Some(addr("b@x"))),
            (
                "a!#$%*/?|^{}`~&'+-=_.z@ex-ample.org",
                Some(addr("a!#$%*/?|^{}`~&'+-=_.z@ex-ample.org")),
            ),
            ("@example.org", None),
            ("bob@", None),
            ("bob@exa_mple.org", None),
            ("bo;b@example.org", None),
            ("a@b@c", None),
            (
                "/var/mail/archive",
                Some(AliasNode::File("/var/mail/archive".to_owned())),
            ),
            (
                "/var/mail/dir/",
                Some(AliasNode::File("/var/mail/dir/".to_owned())),
            ),
            ("relative/path", None),
            (
                "|/usr/bin/vacation bob",
                Some(AliasNode::Filter("/usr/bin/vacation bob".to_owned())),
            ),
            (
                "\"|/usr/bin/x -a\"",
                Some(AliasNode::Filter("/usr/bin/x -a".to_owned())),
            ),
            ("\"|/usr/bin/x", None),
            ("'|/usr/bin/x'", None),
            (
                ":include:/etc/mail/list",
                Some(AliasNode::Include("/etc/mail/list".to_owned())),
            ),
            (
                "include:/etc/mail/list",
                Some(AliasNode::Include("/etc/mail/list".to_owned())),
            ),
            (
                ":INCLUDE:/etc/mail/list",
                Some(AliasNode::Include("/etc/mail/list".to_owned())),
            ),
            (":include:relative", None),
            (
                "error:550 No such user",
                Some(AliasNode::Error("550 No such user".to_owned())),
            ),
            (
                ":error:421 Try later",
                Some(AliasNode::Error("421 Try later".to_owned())),
            ),
            ("ERROR:500 x", Some(AliasNode::Error("500 x".to_owned()))),
            ("error:250 fine", None),
            ("error:55 x", None),
            ("error:550-No", None),
            ("error:550  x", None),
            ("error:5a0 x", None),
            ("error:550", None),
            ("bob smith", None),
            ("b\u{e9}b", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_element(text), *expected, "{text:?}");
        }
        let long = format!("/{}", "a".repeat(1023));
        assert_eq!(parse_element(&long), None);
        assert_eq!(parse_element(&"u".repeat(256)), None);
        assert_eq!(
            parse_element(&"u".repeat(255)),
            Some(user(&"u".repeat(255)))
        );
    }

    #[test]
    fn values() {
        let cases: &[(&str, Result<Vec<AliasNode>, AliasError>)] = &[
            ("root", Ok(vec![user("root")])),
            (
                "  root ,  bob@example.org ",
                Ok(vec![user("root"), addr("bob@example.org")]),
            ),
            ("a,,b,", Ok(vec![user("a"), user("b")])),
            ("", Ok(vec![])),
            (
                "\"|/usr/bin/x a,b\", bob",
                Ok(vec![
                    AliasNode::Filter("/usr/bin/x a,b".to_owned()),
                    user("bob"),
                ]),
            ),
            (
                "|/bin/echo a\\,b",
                Ok(vec![AliasNode::Filter("/bin/echo a,b".to_owned())]),
            ),
            ("/tmp/it's", Err(AliasError::Unbalanced)),
            ("bob, \"alice", Err(AliasError::Unbalanced)),
            ("bob\\", Err(AliasError::Unbalanced)),
            (
                "bob, not valid, alice",
                Err(AliasError::Element("not valid".to_owned())),
            ),
            (
                "bob, error:250 ok",
                Err(AliasError::Element("error:250 ok".to_owned())),
            ),
            (
                "error:550 Gone away, bob",
                Ok(vec![
                    AliasNode::Error("550 Gone away".to_owned()),
                    user("bob"),
                ]),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_value(text), *expected, "{text:?}");
        }
        assert_eq!(parse_value(&"a,".repeat(1024)), Err(AliasError::TooLong));
    }

    #[test]
    fn forward_lines_drop_includes() {
        assert_eq!(
            parse_forward_line(":include:/etc/list, bob"),
            Ok(vec![user("bob")])
        );
    }

    #[test]
    fn lines() {
        let cases: &[(&str, &[&str])] = &[
            ("bob\nalice\n", &["bob", "alice"]),
            ("# comment\n\nbob # trailing\n   \n", &["bob "]),
            ("bob,\\\nalice\n", &["bob,alice"]),
            ("a\\#b\n", &["a\\#b"]),
            ("last line without newline", &["last line without newline"]),
            ("x\\\\\ny", &["x\\\\", "y"]),
        ];
        for (text, expected) in cases {
            assert_eq!(logical_lines(text), *expected, "{text:?}");
        }
    }
}
