//! Addresses in the `From:`, `To:`, `Cc:` and `Bcc:` headers of a message
//! given to `sendmail`, read as OpenSMTPD's `parse_addr` reads them.
//!
//! [`parse_list`] takes a header's value (continuation lines joined) and
//! returns its addresses: the list is split at `,` and `;`; a `:` starts
//! a group (what came before it is the group's name); in `Name <addr>`
//! only what is between the angle brackets counts, and what follows `>`
//! up to the next separator is ignored; elsewhere spaces are dropped.
//! Comments in parentheses are dropped; quoted strings and
//! backslash-escaped characters are kept as written. An unclosed quote,
//! comment or escape is [`AddressError::Syntax`]. [`qualify`] gives a bare
//! user name the host's name, as OpenSMTPD's `qualify_addr` does.

/// The longest address kept (OpenSMTPD's `SMTP_LINELEN` buffer).
const MAX_ADDRESS: usize = 1000;

/// A header whose addresses cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// An unclosed quote, comment or escape.
    #[error("syntax error in address")]
    Syntax,
    /// An address longer than [`MAX_ADDRESS`] bytes.
    #[error("address exceeds buffer size")]
    TooLong,
}

/// The addresses of a header value, in order.
pub fn parse_list(value: &str) -> Result<Vec<String>, AddressError> {
    let mut parser = Parser::default();
    for c in value.chars() {
        parser.push(c)?;
    }
    if parser.quote || parser.comment > 0 || parser.escape {
        return Err(AddressError::Syntax);
    }
    parser.finish()?;
    Ok(parser.addresses)
}

/// `user@host` for a bare `user`; other addresses (and the empty one) as
/// they are.
pub fn qualify(address: &str, host: &str) -> String {
    if address.is_empty() || address.contains('@') {
        address.to_owned()
    } else {
        format!("{address}@{host}")
    }
}

#[derive(Default)]
struct Parser {
    addresses: Vec<String>,
    word: String,
    quote: bool,
    comment: u32,
    escape: bool,
    /// Inside `<...>`.
    angle: bool,
    /// After `>`: ignore up to the next separator.
    closed: bool,
}

impl Parser {
    fn push(&mut self, c: char) -> Result<(), AddressError> {
        if self.comment > 0 {
            match c {
                _ if self.escape => self.escape = false,
                '\\' => self.escape = true,
                '(' => self.comment += 1,
                ')' => self.comment -= 1,
                _ => {}
            }
            return Ok(());
        }
        if self.escape || self.quote {
            if self.escape {
                self.escape = false;
            } else if c == '"' {
                self.quote = false;
            } else if c == '\\' {
                self.escape = true;
            }
            return self.keep(c);
        }
        match c {
            ',' | ';' => self.finish()?,
            '(' => self.comment = 1,
            _ if self.closed => {}
            '"' => {
                self.quote = true;
                self.keep(c)?;
            }
            '\\' => {
                self.escape = true;
                self.keep(c)?;
            }
            ':' => self.word.clear(),
            '<' => {
                self.word.clear();
                self.angle = true;
            }
            '>' if self.angle => {
                self.finish()?;
                self.closed = true;
            }
            ' ' | '\t' | '\r' | '\n' => {}
            _ => self.keep(c)?,
        }
        Ok(())
    }

    fn keep(&mut self, c: char) -> Result<(), AddressError> {
        if self.closed {
            return Ok(());
        }
        if self.word.len() + c.len_utf8() >= MAX_ADDRESS {
            return Err(AddressError::TooLong);
        }
        self.word.push(c);
        Ok(())
    }

    /// Ends the current address at a separator, `>` or the end.
    fn finish(&mut self) -> Result<(), AddressError> {
        if !self.word.is_empty() {
            self.addresses.push(std::mem::take(&mut self.word));
        }
        self.angle = false;
        self.closed = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists() {
        let cases: &[(&str, &[&str])] = &[
            ("bob@example.org", &["bob@example.org"]),
            (" bob@example.org , carol", &["bob@example.org", "carol"]),
            ("Bob <bob@example.org>", &["bob@example.org"]),
            ("\"Doe, John\" <john@x>, jane@y", &["john@x", "jane@y"]),
            ("<a@x> trailing words, b@y", &["a@x", "b@y"]),
            (
                "bob@x (Bob Smith), carol@y (C (nested) D)",
                &["bob@x", "carol@y"],
            ),
            ("friends: a@x, b@y;, c@z", &["a@x", "b@y", "c@z"]),
            ("undisclosed-recipients:;", &[]),
            ("\"odd user\"@x", &["\"odd user\"@x"]),
            ("a\\,b@x", &["a\\,b@x"]),
            ("Name <a@x>\n\t, b@y", &["a@x", "b@y"]),
            ("", &[]),
            (" , ;", &[]),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_list(value).unwrap(), *expected, "{value:?}");
        }
    }

    #[test]
    fn unclosed_parts_are_errors() {
        for value in ["\"open quote@x", "a@x (open comment", "a@x\\"] {
            assert_eq!(parse_list(value), Err(AddressError::Syntax), "{value:?}");
        }
        let long = "a".repeat(MAX_ADDRESS);
        assert_eq!(parse_list(&long), Err(AddressError::TooLong));
    }

    #[test]
    fn bare_names_get_the_host() {
        assert_eq!(qualify("bob", "mx.example.org"), "bob@mx.example.org");
        assert_eq!(qualify("bob@x", "mx.example.org"), "bob@x");
        assert_eq!(qualify("", "mx.example.org"), "");
    }
}
