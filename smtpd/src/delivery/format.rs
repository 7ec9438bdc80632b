//! `%{...}` format specifiers (delivery.md section 4): the expansion
//! OpenSMTPD's `mda_expand_format` and `mda_expand_token` apply to MDA
//! commands, maildir paths, lmtp destinations, `mda wrapper` commands and
//! the commands and files of aliases before they reach `/bin/sh -c`.
//!
//! [`expand`] follows OpenSMTPD 7.8 step by step: `%%` is a literal `%`, a
//! leading `~/` becomes the home directory, each `%{TOKEN[SLICE][:MOD|...]}`
//! is replaced by its value after the modifiers, the sanitising and the
//! slice, and any malformed or unknown element fails the whole expansion
//! (the delivery then fails). Sanitising replaces each of
//! ``! # $ % & ' * ? ` { | } ~`` with `:` (OpenSMTPD's `MAILADDR_ESCAPE`)
//! in every value but `user.directory`, `mda` and those read with `:raw`.
//!
//! Where this is stricter than OpenSMTPD: OpenSMTPD relies on the SMTP
//! layer never accepting an address holding a shell metacharacter that the
//! replacement above leaves alone (`;`, blanks, quotes, `\`, `<`, `>`,
//! `(`, `)`, control characters); CVE-2020-7247 was a hole in that check.
//! Here a sanitised value still holding one of those fails the expansion
//! ([`FormatError::Unsafe`]) instead of reaching the shell, so a hole in an
//! earlier check cannot turn into command execution.

use crate::rules::Address;

/// OpenSMTPD's `EXPAND_BUFFER`: results and values are shorter than this.
const EXPAND_BUFFER: usize = 1024;
/// OpenSMTPD's `MAXTOKENLEN`: token texts are shorter than this.
const MAX_TOKEN_LEN: usize = 128;
/// Characters sanitising replaces with `:` (`MAILADDR_ESCAPE`).
const MAILADDR_ESCAPE: &[u8] = b"!#$%&'*?`{|}~";
/// Characters a sanitised value may not hold at all (see the module doc).
const SHELL_UNSAFE: &[u8] = b";\"\\<>() \t";

/// What a format is expanded with: one delivery's addresses and account.
#[derive(Debug, Clone)]
pub struct FormatContext<'a> {
    /// The envelope sender ([`Address::null`] for `MAIL FROM:<>`).
    pub sender: &'a Address,
    /// The original recipient.
    pub rcpt: &'a Address,
    /// The recipient after expansion.
    pub dest: &'a Address,
    /// The userbase account name (`user.username`).
    pub username: &'a str,
    /// Its home directory (`user.directory`, and a leading `~/`).
    pub directory: &'a str,
    /// The expanded MDA command, only set when expanding a wrapper.
    pub mda: Option<&'a str>,
    /// `smtp sub-addr-delim`, for the `strip` modifier.
    pub sub_addr_delim: char,
}

/// Why a format could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// `%{` without a closing `}`.
    #[error("unterminated format specifier")]
    Unterminated,
    /// A token text of 128 characters or more.
    #[error("format token too long")]
    TokenTooLong,
    /// A token name OpenSMTPD does not know, or `mda` outside a wrapper.
    #[error("unknown format token {0:?}")]
    UnknownToken(String),
    /// A modifier OpenSMTPD does not know (a modifier after a slice is
    /// one: 7.8 does not skip the colon there).
    #[error("unknown format modifier {0:?}")]
    UnknownModifier(String),
    /// A slice that is malformed or out of the value's range.
    #[error("invalid format slice in {0:?}")]
    Slice(String),
    /// A value, or the whole result, of 1024 bytes or more.
    #[error("format expansion too long")]
    TooLong,
    /// A sanitised value still holding a character the shell interprets.
    #[error("format token {token:?} expands to a value holding {byte:?}")]
    Unsafe {
        /// The token.
        token: String,
        /// The offending character.
        byte: char,
    },
}

/// Expands every `%{...}` of `format` (delivery.md section 4).
pub fn expand(format: &str, ctx: &FormatContext<'_>) -> Result<String, FormatError> {
    let bytes = format.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(format.len());
    let mut pos = 0;
    if bytes.starts_with(b"~/") {
        out.extend_from_slice(ctx.directory.as_bytes());
        out.push(b'/');
        pos = 2;
    }
    while pos < bytes.len() {
        if out.len() >= EXPAND_BUFFER {
            return Err(FormatError::TooLong);
        }
        match (bytes[pos], bytes.get(pos + 1)) {
            (b'%', Some(b'%')) => {
                out.push(b'%');
                pos += 2;
            }
            (b'%', Some(b'{')) => {
                let start = pos + 2;
                let Some(len) = bytes[start..].iter().position(|&b| b == b'}') else {
                    return Err(FormatError::Unterminated);
                };
                if len >= MAX_TOKEN_LEN {
                    return Err(FormatError::TokenTooLong);
                }
                let token = &format[start..start + len];
                out.extend_from_slice(&expand_token(token, ctx)?);
                pos = start + len + 1;
            }
            (byte, _) => {
                out.push(byte);
                pos += 1;
            }
        }
    }
    if out.len() >= EXPAND_BUFFER {
        return Err(FormatError::TooLong);
    }
    String::from_utf8(out).map_err(|_| FormatError::Slice(format.to_owned()))
}

/// A parsed `[B:E]` slice, as OpenSMTPD's offsets (`E` defaults past the
/// end).
#[derive(Debug, Clone, Copy)]
struct Slice {
    begin: i64,
    end: i64,
}

/// Splits `TOKEN[SLICE][:MODS]` the way `mda_expand_token` does: a `[`
/// and a `]` anywhere make a slice, and the modifiers then start at the
/// colon itself (which makes them fail).
fn split_token(token: &str) -> Result<(&str, Option<Slice>, Option<&str>), FormatError> {
    let bad_slice = || FormatError::Slice(token.to_owned());
    if let (Some(lb), Some(rb)) = (token.find('['), token.find(']')) {
        if rb < lb || rb - lb <= 1 {
            return Err(bad_slice());
        }
        let content = &token[lb + 1..rb];
        let number = |text: &str| parse_offset(text).ok_or_else(bad_slice);
        let slice = match content.split_once(':') {
            None => {
                let n = number(content)?;
                Slice { begin: n, end: n }
            }
            Some((b, e)) => Slice {
                begin: if b.is_empty() { 0 } else { number(b)? },
                end: if e.is_empty() {
                    EXPAND_BUFFER as i64
                } else {
                    number(e)?
                },
            },
        };
        let mods = token[rb + 1..].find(':').map(|c| &token[rb + 1 + c..]);
        return Ok((&token[..lb], Some(slice), mods));
    }
    Ok(match token.split_once(':') {
        Some((name, mods)) => (name, None, Some(mods)),
        None => (token, None, None),
    })
}

/// `strtonum(text, -1024, 1024)`: optional blanks, optional sign, digits.
fn parse_offset(text: &str) -> Option<i64> {
    let text = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = text.parse().ok()?;
    let limit = EXPAND_BUFFER as i64;
    (-limit..=limit).contains(&n).then_some(n)
}

/// `user@domain`, or `empty` for the null address.
fn address_value(address: &Address, empty: &str) -> String {
    if address.is_null() {
        empty.to_owned()
    } else {
        format!("{}@{}", address.user, address.domain)
    }
}

/// The value of a token name, and whether it is sanitised.
fn token_value(name: &str, ctx: &FormatContext<'_>) -> Option<(String, bool)> {
    let lower = name.to_ascii_lowercase();
    let value = match lower.as_str() {
        "sender" => address_value(ctx.sender, ""),
        "rcpt" => address_value(ctx.rcpt, ""),
        "dest" => address_value(ctx.dest, ""),
        "sender.user" => ctx.sender.user.clone(),
        "sender.domain" => ctx.sender.domain.clone(),
        "rcpt.user" => ctx.rcpt.user.clone(),
        "rcpt.domain" => ctx.rcpt.domain.clone(),
        "dest.user" => ctx.dest.user.clone(),
        "dest.domain" => ctx.dest.domain.clone(),
        "user.username" => ctx.username.to_owned(),
        "user.directory" => return Some((ctx.directory.to_owned(), false)),
        "mda" => return ctx.mda.map(|m| (m.to_owned(), false)),
        "mbox.from" => address_value(ctx.sender, "MAILER-DAEMON"),
        _ => return None,
    };
    Some((value, true))
}

/// Applies the `|`-separated modifiers; returns whether `raw` was among
/// them.
fn apply_modifiers(value: &mut Vec<u8>, mods: &str, delim: char) -> Result<bool, FormatError> {
    let mut raw = false;
    for modifier in mods.split('|') {
        match modifier.to_ascii_lowercase().as_str() {
            "lowercase" => value.make_ascii_lowercase(),
            "uppercase" => value.make_ascii_uppercase(),
            "strip" => strip_subaddress(value, delim),
            "raw" => raw = true,
            _ => return Err(FormatError::UnknownModifier(modifier.to_owned())),
        }
    }
    Ok(raw)
}

/// `gilles+hackers@poolp.org` becomes `gilles@poolp.org`, `gilles+hackers`
/// becomes `gilles`.
fn strip_subaddress(value: &mut Vec<u8>, delim: char) {
    let mut buf = [0; 4];
    let delim = delim.encode_utf8(&mut buf).as_bytes();
    let Some(tag) = value.windows(delim.len()).position(|w| w == delim) else {
        return;
    };
    match value[tag..].iter().position(|&b| b == b'@') {
        Some(at) => {
            value.drain(tag..tag + at);
        }
        None => value.truncate(tag),
    }
}

/// One `%{...}` token's expansion (`mda_expand_token`).
fn expand_token(token: &str, ctx: &FormatContext<'_>) -> Result<Vec<u8>, FormatError> {
    let (name, slice, mods) = split_token(token)?;
    let (value, sanitise) =
        token_value(name, ctx).ok_or_else(|| FormatError::UnknownToken(name.to_owned()))?;
    if value.len() >= EXPAND_BUFFER {
        return Err(FormatError::TooLong);
    }
    let mut value = value.into_bytes();
    let raw = match mods {
        Some(mods) => apply_modifiers(&mut value, mods, ctx.sub_addr_delim)?,
        None => false,
    };
    if sanitise && !raw {
        for byte in &mut value {
            if MAILADDR_ESCAPE.contains(byte) {
                *byte = b':';
            }
        }
        if let Some(&byte) = value
            .iter()
            .find(|b| SHELL_UNSAFE.contains(b) || b.is_ascii_control())
        {
            return Err(FormatError::Unsafe {
                token: name.to_owned(),
                byte: char::from(byte),
            });
        }
    }
    match slice {
        None => Ok(value),
        Some(slice) => apply_slice(value, slice, token),
    }
}

/// The slice rules of delivery.md section 4 (inclusive end, negative
/// offsets from the end, end clamped, begin past the end an error).
fn apply_slice(value: Vec<u8>, slice: Slice, token: &str) -> Result<Vec<u8>, FormatError> {
    let len = value.len() as i64;
    if len == 0 {
        return Ok(value);
    }
    let Slice { mut begin, mut end } = slice;
    if begin >= len {
        return Err(FormatError::Slice(token.to_owned()));
    }
    if begin < 0 {
        begin += len;
    }
    if end < 0 {
        end += len - 1;
    }
    if begin < 0 || end < 0 || end < begin {
        return Err(FormatError::Slice(token.to_owned()));
    }
    let end = end.min(len - 1);
    let (begin, end) = (begin as usize, end as usize);
    Ok(value[begin..=end].to_vec())
}

#[cfg(test)]
mod tests;
