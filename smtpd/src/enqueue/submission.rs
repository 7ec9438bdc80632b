//! From `sendmail`'s options, its standard input and the submitting
//! account to what is sent: the [`Envelope`] and the DATA payload.
//!
//! As OpenSMTPD's `enqueue.c`: the envelope sender is `-f` (angle brackets
//! removed, `-f '<>'` the null sender), else the address of the message's
//! `From:` header, else `LOGIN@HOST`; the name of an added `From:` is
//! `-F`, else (without `-f`) the account's full name. Recipients are the
//! arguments (each a comma list) and, with `-t`, the addresses of the
//! `To:`, `Cc:` and `Bcc:` headers; a bare name gets `@HOST`. An address
//! holding a control character is refused here (it could end the SMTP
//! command it is sent in); everything else is the server's to judge.

use super::account::Account;
use super::address::{self, AddressError};
use super::args::Options;
use super::dialogue::Envelope;
use super::message::Message;
use super::{EX_DATAERR, EX_SOFTWARE};

/// Why nothing can be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    /// A header's addresses cannot be read.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// `-f <...` without the closing bracket.
    #[error("leading < but no trailing >")]
    UnclosedSender,
    /// An address with a control character.
    #[error("invalid address: {0:?}")]
    Invalid(String),
    /// No recipient in the arguments nor (with `-t`) in the headers.
    #[error("no recipients")]
    NoRecipients,
}

impl PrepareError {
    /// The exit status: `EX_SOFTWARE` for no recipients, as OpenSMTPD;
    /// `EX_DATAERR` for an address with a control character; 1 for the
    /// errors OpenSMTPD exits 1 on.
    pub fn exit_status(&self) -> i32 {
        match self {
            Self::NoRecipients => EX_SOFTWARE,
            Self::Invalid(_) => EX_DATAERR,
            Self::Address(_) | Self::UnclosedSender => 1,
        }
    }
}

/// What one submission sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The envelope.
    pub envelope: Envelope,
    /// The DATA payload (CRLF lines, dot-stuffed, no final dot).
    pub data: Vec<u8>,
}

/// Builds the submission of `input` by `account` on `host`, with `date`
/// for an added `Date:` header.
pub fn prepare(
    options: &Options,
    input: &[u8],
    account: &Account,
    host: &str,
    date: &str,
) -> Result<Submission, PrepareError> {
    let message = Message::read(input, host, options.header_recipients)?;
    let sender = match &options.from {
        Some(from) => address::qualify(&strip_brackets(from)?, host),
        None => message
            .from_header
            .clone()
            .unwrap_or_else(|| address::qualify(&account.name, host)),
    };
    let full_name = match (&options.full_name, &options.from) {
        (Some(name), _) => Some(name.clone()),
        (None, None) => account.full_name(),
        (None, Some(_)) => None,
    };
    let mut recipients: Vec<String> = options
        .recipients
        .iter()
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|rcpt| !rcpt.is_empty())
        .map(|rcpt| address::qualify(rcpt, host))
        .collect();
    recipients.extend(message.header_recipients.iter().cloned());
    if recipients.is_empty() {
        return Err(PrepareError::NoRecipients);
    }
    for address in recipients.iter().chain([&sender]) {
        if address.chars().any(char::is_control) {
            return Err(PrepareError::Invalid(address.clone()));
        }
    }
    let data = message.data(&sender, full_name.as_deref(), date);
    Ok(Submission {
        envelope: Envelope {
            sender,
            recipients,
            dsn_notify: options.dsn_notify.clone(),
            dsn_ret: options.dsn_ret.clone(),
            dsn_envid: options.dsn_envid.clone(),
        },
        data,
    })
}

/// `-f <addr>` as `addr`.
fn strip_brackets(from: &str) -> Result<String, PrepareError> {
    match from.strip_prefix('<') {
        Some(inner) => inner
            .strip_suffix('>')
            .map(str::to_owned)
            .ok_or(PrepareError::UnclosedSender),
        None => Ok(from.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "host.test";
    const DATE: &str = "Thu, 1 Jan 1970 00:00:00 +0000";

    fn alice() -> Account {
        Account {
            uid: 1000,
            name: "alice".into(),
            gecos: "Alice Liddell,,,".into(),
        }
    }

    fn options(from: Option<&str>, recipients: &[&str]) -> Options {
        Options {
            from: from.map(str::to_owned),
            recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
            ..Options::default()
        }
    }

    fn prepared(options: &Options, input: &str) -> Result<Submission, PrepareError> {
        prepare(options, input.as_bytes(), &alice(), HOST, DATE)
    }

    #[test]
    fn the_sender() {
        let cases = [
            (None, "Subject: s\n\nb\n", "alice@host.test"),
            (Some("bob"), "Subject: s\n\nb\n", "bob@host.test"),
            (Some("<bob@x>"), "Subject: s\n\nb\n", "bob@x"),
            (Some("<>"), "Subject: s\n\nb\n", ""),
            (None, "From: Carol <carol@y>\n\nb\n", "carol@y"),
            // -f wins over the header.
            (Some("bob@x"), "From: carol@y\n\nb\n", "bob@x"),
        ];
        for (from, input, sender) in cases {
            let s = prepared(&options(from, &["r@x"]), input).unwrap();
            assert_eq!(s.envelope.sender, sender, "{from:?} {input:?}");
        }
        assert_eq!(
            prepared(&options(Some("<bob"), &["r@x"]), "x"),
            Err(PrepareError::UnclosedSender)
        );
    }

    #[test]
    fn the_added_from_header_names_the_user() {
        let data = |o: &Options| {
            String::from_utf8(prepared(o, "Subject: s\n\nb\n").unwrap().data).unwrap()
        };
        assert!(
            data(&options(None, &["r@x"])).starts_with("From: Alice Liddell <alice@host.test>\r\n")
        );
        assert!(data(&options(Some("bob@x"), &["r@x"])).starts_with("From: <bob@x>\r\n"));
        let named = Options {
            full_name: Some("The Bot".into()),
            ..options(Some("bot@x"), &["r@x"])
        };
        assert!(data(&named).starts_with("From: The Bot <bot@x>\r\n"));
    }

    #[test]
    fn recipients_from_arguments_and_headers() {
        let s = prepared(&options(None, &["bob, carol@y", "", "dave"]), "x\n").unwrap();
        assert_eq!(
            s.envelope.recipients,
            ["bob@host.test", "carol@y", "dave@host.test"]
        );
        let t = Options {
            header_recipients: true,
            ..options(None, &["first@x"])
        };
        let s = prepared(&t, "To: a@x\nBcc: b@y\n\nbody\n").unwrap();
        assert_eq!(s.envelope.recipients, ["first@x", "a@x", "b@y"]);
        assert!(!String::from_utf8(s.data).unwrap().contains("b@y"));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            prepared(&options(None, &[]), "To: a@x\n\nb\n"),
            Err(PrepareError::NoRecipients)
        );
        assert_eq!(PrepareError::NoRecipients.exit_status(), EX_SOFTWARE);
        let injected = prepared(&options(None, &["a@x>\r\nRCPT TO:<b@y"]), "x\n").unwrap_err();
        assert!(matches!(injected, PrepareError::Invalid(_)), "{injected:?}");
        assert_eq!(injected.exit_status(), EX_DATAERR);
        let t = Options {
            header_recipients: true,
            ..options(None, &[])
        };
        let bad = prepared(&t, "To: \"unclosed\n\nb\n").unwrap_err();
        assert_eq!(bad, PrepareError::Address(AddressError::Syntax));
        assert_eq!(bad.exit_status(), 1);
    }

    #[test]
    fn dsn_parameters_pass_through() {
        let o = Options {
            dsn_notify: Some("NEVER".into()),
            dsn_ret: Some("FULL".into()),
            dsn_envid: Some("id".into()),
            ..options(None, &["r@x"])
        };
        let e = prepared(&o, "x").unwrap().envelope;
        assert_eq!(
            (
                e.dsn_notify.as_deref(),
                e.dsn_ret.as_deref(),
                e.dsn_envid.as_deref()
            ),
            (Some("NEVER"), Some("FULL"), Some("id"))
        );
    }
}
