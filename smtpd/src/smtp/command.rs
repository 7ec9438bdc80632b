//! The SMTP command parser: one line (CRLF already stripped by the codec)
//! to a [`Command`], pure.
//!
//! Verbs are case-insensitive. `MAIL FROM:` and `RCPT TO:` take a path in
//! angle brackets (a space after the colon is tolerated, as OpenSMTPD and
//! Postfix tolerate it), validated by [`Mailbox::parse`], then ESMTP
//! parameters: SIZE, BODY, SMTPUTF8, RET, ENVID and AUTH for MAIL; NOTIFY
//! and ORCPT for RCPT (RFC 1870, 6152, 6531, 3461, 4954). Whether the
//! listener offers an extension is the session's business; here only the
//! syntax is checked. Arguments are refused where the RFC allows none
//! (DATA, RSET, QUIT, STARTTLS), trailing garbage never passes.
//!
//! A [`SyntaxError`] says what was expected; `Reply::from(&error)` gives
//! the reply: 500 for an unknown verb, 501 for bad arguments, 553 for a
//! sender address and 501 5.1.3 for a recipient (a path without its
//! brackets too, as OpenSMTPD's `smtp_mailaddr` has it), 555 for a
//! parameter, 504 for an AUTH mechanism. HELO and EHLO tell a missing
//! domain from an invalid one with OpenSMTPD's texts.

use std::fmt;

use super::address::{Domain, Mailbox, ReversePath};
use super::auth::{decode_base64, encode_base64};
use super::reply::Reply;

/// One SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `HELO domain`.
    Helo(Domain),
    /// `EHLO domain`.
    Ehlo(Domain),
    /// `MAIL FROM:<path> params`.
    Mail(MailFrom),
    /// `RCPT TO:<path> params`.
    Rcpt(RcptTo),
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP [text]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `HELP [topic]`.
    Help,
    /// `VRFY string`.
    Vrfy(String),
    /// `EXPN string`.
    Expn(String),
    /// `STARTTLS`.
    StartTls,
    /// `AUTH mechanism [initial-response]`.
    Auth(Auth),
}

/// The BODY parameter of MAIL FROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// The RET parameter of MAIL FROM (DSN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// `RET=FULL`: return the whole message in a bounce.
    Full,
    /// `RET=HDRS`: return its headers only.
    Headers,
}

/// `MAIL FROM:` with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFrom {
    /// The sender, or the null path.
    pub sender: ReversePath,
    /// `SIZE=n`: the announced message size.
    pub size: Option<u64>,
    /// `BODY=`.
    pub body: Option<Body>,
    /// `SMTPUTF8` was given.
    pub smtputf8: bool,
    /// `RET=`.
    pub ret: Option<Ret>,
    /// `ENVID=`, kept as the xtext given.
    pub envid: Option<String>,
    /// `AUTH=`, kept as the xtext given (`<>` included).
    pub auth: Option<String>,
}

/// The NOTIFY parameter of RCPT TO (DSN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// `NOTIFY=NEVER`.
    Never,
    /// `NOTIFY=` a list of SUCCESS, FAILURE, DELAY.
    On {
        /// SUCCESS was listed.
        success: bool,
        /// FAILURE was listed.
        failure: bool,
        /// DELAY was listed.
        delay: bool,
    },
}

/// `RCPT TO:` with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptTo {
    /// The recipient.
    pub recipient: Mailbox,
    /// `NOTIFY=`.
    pub notify: Option<Notify>,
    /// `ORCPT=type;xtext`, kept as given.
    pub orcpt: Option<String>,
}

/// An AUTH mechanism this server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// PLAIN (RFC 4616).
    Plain,
    /// LOGIN (draft-murchison-sasl-login).
    Login,
}

/// `AUTH mechanism [initial-response]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The initial response, base64-decoded (`=` is an empty one).
    pub initial: Option<Vec<u8>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The initial response may hold a password.
        f.debug_struct("Auth")
            .field("mechanism", &self.mechanism)
            .field("initial", &self.initial.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// What went wrong, which decides the reply code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such command (500).
    UnknownCommand,
    /// Arguments missing, extra or malformed (501).
    Arguments,
    /// HELO or EHLO (the verb given) without a domain (501 5.5.1).
    MissingDomain(&'static str),
    /// HELO or EHLO with an invalid domain (501 5.5.4).
    InvalidDomain,
    /// The MAIL FROM address is invalid (553).
    Sender,
    /// The RCPT TO address is invalid (501 5.1.3).
    Recipient,
    /// A parameter this server does not know (555).
    UnknownParameter(String),
    /// A known parameter with a bad value, or given twice (555).
    BadParameter(String),
    /// An AUTH mechanism other than PLAIN and LOGIN (504).
    Mechanism,
}

/// A command that does not parse, with the syntax that was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error ({kind:?}), expected {syntax}")]
pub struct SyntaxError {
    /// What was wrong.
    pub kind: ErrorKind,
    /// The expected form, e.g. `MAIL FROM:<address>`.
    pub syntax: &'static str,
}

impl From<&SyntaxError> for Reply {
    fn from(error: &SyntaxError) -> Self {
        match &error.kind {
            ErrorKind::UnknownCommand => Self::unknown_command(),
            ErrorKind::Arguments => Self::syntax(error.syntax),
            ErrorKind::MissingDomain(verb) => Self::domain_required(verb),
            ErrorKind::InvalidDomain => Self::invalid_domain(),
            ErrorKind::Sender => Self::bad_sender(),
            ErrorKind::Recipient => Self::bad_recipient(),
            ErrorKind::UnknownParameter(name) => Self::unsupported_parameter(name),
            ErrorKind::BadParameter(name) => Self::bad_parameter(name),
            ErrorKind::Mechanism => Self::unsupported_mechanism(),
        }
    }
}

const MAIL_SYNTAX: &str = "MAIL FROM:<address>";
const RCPT_SYNTAX: &str = "RCPT TO:<address>";
const AUTH_SYNTAX: &str = "AUTH mechanism [initial-response]";
/// RFC 3461: ENVID at most 100 characters, ORCPT at most 500.
const MAX_ENVID: usize = 100;
const MAX_ORCPT: usize = 500;

const fn error(kind: ErrorKind, syntax: &'static str) -> SyntaxError {
    SyntaxError { kind, syntax }
}

impl Command {
    /// Parses one command line, without its CRLF.
    pub fn parse(line: &[u8]) -> Result<Self, SyntaxError> {
        let (verb, rest) = match line.iter().position(|&b| b == b' ') {
            Some(space) => (&line[..space], Some(&line[space + 1..])),
            None => (line, None),
        };
        let verb = std::str::from_utf8(verb)
            .map_err(|_| error(ErrorKind::UnknownCommand, "a command"))?
            .to_ascii_uppercase();
        let rest = rest.map(trim).filter(|r| !r.is_empty());
        match verb.as_str() {
            "HELO" => parse_hello(rest, "HELO").map(Self::Helo),
            "EHLO" => parse_hello(rest, "EHLO").map(Self::Ehlo),
            "MAIL" => parse_mail(rest.unwrap_or_default()).map(Self::Mail),
            "RCPT" => parse_rcpt(rest.unwrap_or_default()).map(Self::Rcpt),
            "DATA" => no_arguments(rest, "DATA", Self::Data),
            "RSET" => no_arguments(rest, "RSET", Self::Rset),
            "QUIT" => no_arguments(rest, "QUIT", Self::Quit),
            "STARTTLS" => no_arguments(rest, "STARTTLS", Self::StartTls),
            "NOOP" => printable(rest.unwrap_or_default(), "NOOP [string]").map(|_| Self::Noop),
            "HELP" => printable(rest.unwrap_or_default(), "HELP [topic]").map(|_| Self::Help),
            "VRFY" => required(rest, "VRFY string").map(Self::Vrfy),
            "EXPN" => required(rest, "EXPN string").map(Self::Expn),
            "AUTH" => parse_auth(rest).map(Self::Auth),
            _ => Err(error(ErrorKind::UnknownCommand, "a command")),
        }
    }
}

/// Drops trailing spaces (some clients send them).
fn trim(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|&b| b != b' ').map_or(0, |p| p + 1);
    &bytes[..end]
}

fn no_arguments(
    rest: Option<&[u8]>,
    syntax: &'static str,
    command: Command,
) -> Result<Command, SyntaxError> {
    match rest {
        None => Ok(command),
        Some(_) => Err(error(ErrorKind::Arguments, syntax)),
    }
}

/// Printable ASCII or UTF-8 text without control characters.
fn printable(bytes: &[u8], syntax: &'static str) -> Result<String, SyntaxError> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.chars().any(char::is_control))
        .map(str::to_owned)
        .ok_or_else(|| error(ErrorKind::Arguments, syntax))
}

fn required(rest: Option<&[u8]>, syntax: &'static str) -> Result<String, SyntaxError> {
    printable(
        rest.ok_or_else(|| error(ErrorKind::Arguments, syntax))?,
        syntax,
    )
}

/// The domain of HELO or EHLO (`verb`): missing and invalid are told
/// apart, as OpenSMTPD tells them apart.
fn parse_hello(rest: Option<&[u8]>, verb: &'static str) -> Result<Domain, SyntaxError> {
    let syntax = if verb == "HELO" {
        "HELO domain"
    } else {
        "EHLO domain"
    };
    let text = rest.ok_or_else(|| error(ErrorKind::MissingDomain(verb), syntax))?;
    Domain::parse(text).ok_or_else(|| error(ErrorKind::InvalidDomain, syntax))
}

/// Splits `KEYWORD:<path> params` after the verb: the path's content and
/// what follows its `>`. A wrong keyword is a syntax error (501); a path
/// without its brackets is a bad address (`address`: 553 for a sender,
/// 501 5.1.3 for a recipient), as OpenSMTPD's `smtp_mailaddr` refuses it.
fn split_path<'a>(
    rest: &'a [u8],
    keyword: &[u8],
    syntax: &'static str,
    address: &ErrorKind,
) -> Result<(&'a [u8], &'a [u8]), SyntaxError> {
    let head = rest
        .get(..keyword.len())
        .filter(|head| head.eq_ignore_ascii_case(keyword))
        .ok_or_else(|| error(ErrorKind::Arguments, syntax))?;
    let path = &rest[head.len()..];
    let bad_address = || error(address.clone(), syntax);
    let start = path.iter().position(|&b| b != b' ').unwrap_or(path.len());
    let path = path[start..].strip_prefix(b"<").ok_or_else(bad_address)?;
    let close = path
        .iter()
        .position(|&b| b == b'>')
        .ok_or_else(bad_address)?;
    Ok((&path[..close], &path[close + 1..]))
}

/// The parameters after a path's `>`: nothing, or a space first.
fn parameter_text<'a>(after: &'a [u8], syntax: &'static str) -> Result<&'a [u8], SyntaxError> {
    match after.first() {
        None | Some(b' ') => Ok(after),
        Some(_) => Err(error(ErrorKind::Arguments, syntax)),
    }
}

/// ESMTP parameters: upper-cased keyword and value, if any.
type Parameters<'a> = Vec<(String, Option<&'a [u8]>)>;

/// Splits parameters at spaces into `(KEYWORD, value)`, the keyword upper-
/// cased; checks the esmtp-keyword and esmtp-value grammar (RFC 5321 4.1.2).
fn parameters<'a>(text: &'a [u8], syntax: &'static str) -> Result<Parameters<'a>, SyntaxError> {
    let mut out = Vec::new();
    for param in text.split(|&b| b == b' ').filter(|p| !p.is_empty()) {
        let (keyword, value) = match param.iter().position(|&b| b == b'=') {
            Some(eq) => (&param[..eq], Some(&param[eq + 1..])),
            None => (param, None),
        };
        let keyword_ok = keyword.first().is_some_and(u8::is_ascii_alphanumeric)
            && keyword
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-');
        let value_ok = value.map_or(true, |v| {
            !v.is_empty() && v.iter().all(|&b| (33..=126).contains(&b) && b != b'=')
        });
        if !keyword_ok || !value_ok {
            return Err(error(ErrorKind::Arguments, syntax));
        }
        let keyword = String::from_utf8_lossy(keyword).to_ascii_uppercase();
        if out.iter().any(|(k, _)| *k == keyword) {
            return Err(error(ErrorKind::BadParameter(keyword), syntax));
        }
        out.push((keyword, value));
    }
    Ok(out)
}

/// xtext (RFC 3461 4): `!` to `~` but `+` and `=`, or `+` and two
/// upper-case hexadecimal digits.
fn is_xtext(value: &[u8]) -> bool {
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'+' => {
                let hex = |b: &u8| b.is_ascii_digit() || (b'A'..=b'F').contains(b);
                if !value.get(i + 1..i + 3).is_some_and(|h| h.iter().all(hex)) {
                    return false;
                }
                i += 3;
            }
            b'=' => return false,
            b if (33..=126).contains(&b) => i += 1,
            _ => return false,
        }
    }
    true
}

fn parse_mail(rest: &[u8]) -> Result<MailFrom, SyntaxError> {
    let (path, after) = split_path(rest, b"FROM:", MAIL_SYNTAX, &ErrorKind::Sender)?;
    // `<@>` has both parts empty: the null path to OpenSMTPD too.
    let sender = if path.is_empty() || path == b"@" {
        ReversePath::Null
    } else {
        ReversePath::Mailbox(
            Mailbox::parse(path).ok_or_else(|| error(ErrorKind::Sender, MAIL_SYNTAX))?,
        )
    };
    let params = parameter_text(after, MAIL_SYNTAX)?;
    let mut mail = MailFrom {
        sender,
        size: None,
        body: None,
        smtputf8: false,
        ret: None,
        envid: None,
        auth: None,
    };
    for (keyword, value) in parameters(params, MAIL_SYNTAX)? {
        let bad = || error(ErrorKind::BadParameter(keyword.clone()), MAIL_SYNTAX);
        let upper = value.map(<[u8]>::to_ascii_uppercase);
        match (keyword.as_str(), upper.as_deref()) {
            ("SIZE", Some(digits))
                if digits.len() <= 20 && digits.iter().all(u8::is_ascii_digit) =>
            {
                let text = std::str::from_utf8(digits).map_err(|_| bad())?;
                mail.size = Some(text.parse().map_err(|_| bad())?);
            }
            ("BODY", Some(b"7BIT")) => mail.body = Some(Body::SevenBit),
            ("BODY", Some(b"8BITMIME")) => mail.body = Some(Body::EightBitMime),
            ("SMTPUTF8", None) => mail.smtputf8 = true,
            ("RET", Some(b"FULL")) => mail.ret = Some(Ret::Full),
            ("RET", Some(b"HDRS")) => mail.ret = Some(Ret::Headers),
            ("ENVID", Some(_)) => mail.envid = Some(xtext(value, MAX_ENVID).ok_or_else(bad)?),
            ("AUTH", Some(b"<>")) => mail.auth = Some("<>".to_owned()),
            ("AUTH", Some(_)) => mail.auth = Some(xtext(value, MAX_ORCPT).ok_or_else(bad)?),
            ("SIZE" | "BODY" | "SMTPUTF8" | "RET" | "ENVID" | "AUTH", _) => return Err(bad()),
            _ => return Err(error(ErrorKind::UnknownParameter(keyword), MAIL_SYNTAX)),
        }
    }
    Ok(mail)
}

/// A checked xtext value of at most `max` bytes.
fn xtext(value: Option<&[u8]>, max: usize) -> Option<String> {
    let value = value?;
    (value.len() <= max && is_xtext(value)).then(|| String::from_utf8_lossy(value).into_owned())
}

fn parse_notify(value: &[u8]) -> Option<Notify> {
    if value.eq_ignore_ascii_case(b"NEVER") {
        return Some(Notify::Never);
    }
    let (mut success, mut failure, mut delay) = (false, false, false);
    for word in value.split(|&b| b == b',') {
        let flag = match word.to_ascii_uppercase().as_slice() {
            b"SUCCESS" => &mut success,
            b"FAILURE" => &mut failure,
            b"DELAY" => &mut delay,
            _ => return None,
        };
        if *flag {
            return None;
        }
        *flag = true;
    }
    Some(Notify::On {
        success,
        failure,
        delay,
    })
}

/// `ORCPT=addr-type;xtext` with an atom for the type (RFC 3461 4.2).
fn parse_orcpt(value: &[u8]) -> Option<String> {
    let semicolon = value.iter().position(|&b| b == b';')?;
    let (kind, address) = (&value[..semicolon], &value[semicolon + 1..]);
    let kind_ok = !kind.is_empty() && kind.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-');
    (kind_ok && !address.is_empty() && value.len() <= MAX_ORCPT && is_xtext(address))
        .then(|| String::from_utf8_lossy(value).into_owned())
}

fn parse_rcpt(rest: &[u8]) -> Result<RcptTo, SyntaxError> {
    let (path, after) = split_path(rest, b"TO:", RCPT_SYNTAX, &ErrorKind::Recipient)?;
    let recipient = Mailbox::parse(path).ok_or_else(|| error(ErrorKind::Recipient, RCPT_SYNTAX))?;
    let params = parameter_text(after, RCPT_SYNTAX)?;
    let mut rcpt = RcptTo {
        recipient,
        notify: None,
        orcpt: None,
    };
    for (keyword, value) in parameters(params, RCPT_SYNTAX)? {
        let bad = || error(ErrorKind::BadParameter(keyword.clone()), RCPT_SYNTAX);
        match (keyword.as_str(), value) {
            ("NOTIFY", Some(value)) => rcpt.notify = Some(parse_notify(value).ok_or_else(bad)?),
            ("ORCPT", Some(value)) => rcpt.orcpt = Some(parse_orcpt(value).ok_or_else(bad)?),
            ("NOTIFY" | "ORCPT", None) => return Err(bad()),
            _ => return Err(error(ErrorKind::UnknownParameter(keyword), RCPT_SYNTAX)),
        }
    }
    Ok(rcpt)
}

fn parse_auth(rest: Option<&[u8]>) -> Result<Auth, SyntaxError> {
    let bad = || error(ErrorKind::Arguments, AUTH_SYNTAX);
    let rest = rest.ok_or_else(bad)?;
    let mut words = rest.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let name = words.next().ok_or_else(bad)?;
    let mechanism = if name.eq_ignore_ascii_case(b"PLAIN") {
        Mechanism::Plain
    } else if name.eq_ignore_ascii_case(b"LOGIN") {
        Mechanism::Login
    } else {
        return Err(error(ErrorKind::Mechanism, AUTH_SYNTAX));
    };
    let initial = match words.next() {
        None => None,
        Some(b"=") => Some(Vec::new()),
        Some(text) => Some(decode_base64(text).ok_or_else(bad)?),
    };
    if words.next().is_some() {
        return Err(bad());
    }
    Ok(Auth { mechanism, initial })
}

/// The wire form (without CRLF), as a client sends it: what the relay
/// client will write, and what `parse` reads back.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Helo(domain) => write!(f, "HELO {domain}"),
            Self::Ehlo(domain) => write!(f, "EHLO {domain}"),
            Self::Mail(mail) => mail.fmt(f),
            Self::Rcpt(rcpt) => rcpt.fmt(f),
            Self::Data => f.write_str("DATA"),
            Self::Rset => f.write_str("RSET"),
            Self::Noop => f.write_str("NOOP"),
            Self::Quit => f.write_str("QUIT"),
            Self::Help => f.write_str("HELP"),
            Self::Vrfy(text) => write!(f, "VRFY {text}"),
            Self::Expn(text) => write!(f, "EXPN {text}"),
            Self::StartTls => f.write_str("STARTTLS"),
            Self::Auth(auth) => {
                let name = match auth.mechanism {
                    Mechanism::Plain => "PLAIN",
                    Mechanism::Login => "LOGIN",
                };
                match auth.initial.as_deref() {
                    None => write!(f, "AUTH {name}"),
                    Some([]) => write!(f, "AUTH {name} ="),
                    Some(initial) => write!(f, "AUTH {name} {}", encode_base64(initial)),
                }
            }
        }
    }
}

impl fmt::Display for MailFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MAIL FROM:<{}>", self.sender)?;
        if let Some(size) = self.size {
            write!(f, " SIZE={size}")?;
        }
        match self.body {
            Some(Body::SevenBit) => f.write_str(" BODY=7BIT")?,
            Some(Body::EightBitMime) => f.write_str(" BODY=8BITMIME")?,
            None => {}
        }
        if self.smtputf8 {
            f.write_str(" SMTPUTF8")?;
        }
        match self.ret {
            Some(Ret::Full) => f.write_str(" RET=FULL")?,
            Some(Ret::Headers) => f.write_str(" RET=HDRS")?,
            None => {}
        }
        if let Some(envid) = &self.envid {
            write!(f, " ENVID={envid}")?;
        }
        if let Some(auth) = &self.auth {
            write!(f, " AUTH={auth}")?;
        }
        Ok(())
    }
}

impl fmt::Display for RcptTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RCPT TO:<{}>", self.recipient)?;
        match self.notify {
            Some(Notify::Never) => f.write_str(" NOTIFY=NEVER")?,
            Some(Notify::On {
                success,
                failure,
                delay,
            }) => {
                let words = [(success, "SUCCESS"), (failure, "FAILURE"), (delay, "DELAY")];
                let list: Vec<&str> = words.iter().filter(|w| w.0).map(|w| w.1).collect();
                write!(f, " NOTIFY={}", list.join(","))?;
            }
            None => {}
        }
        if let Some(orcpt) = &self.orcpt {
            write!(f, " ORCPT={orcpt}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
