//! Why a session or a transaction with a next hop failed: the stage, the
//! kind (temporary or permanent) and the peer's reply when it gave one.
//!
//! Network errors, timeouts, TLS failures and 4xx replies are
//! [`Kind::Temporary`]; 5xx replies and what this side refuses for good
//! (a message larger than the peer's SIZE, 8-bit content for a peer
//! without 8BITMIME) are [`Kind::Permanent`]. Failures at the stages
//! before a transaction ([`Stage::is_session`]) concern the host, not the
//! message: OpenSMTPD 7.8 counts them against the MX and tries the next
//! one, whatever the code, and the engine decides the same way.

use std::fmt;

use super::reply::PeerReply;
use crate::smtp::Enhanced;

/// Whether trying again later can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A 4xx reply, a network or TLS error, a timeout: retry later.
    Temporary,
    /// A 5xx reply, or a refusal made here for good: bounce.
    Permanent,
}

/// Where in the dialogue a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Opening the TCP connection.
    Connect,
    /// Waiting for, or reading, the 220 greeting.
    Greeting,
    /// `EHLO` or `LHLO`.
    Ehlo,
    /// `HELO`, after a refused `EHLO`.
    Helo,
    /// `STARTTLS`, the handshake (also smtps'), or TLS being required.
    Tls,
    /// `AUTH`.
    Auth,
    /// `RSET`.
    Reset,
    /// `MAIL FROM`, or a refusal of the message before it (size, 8-bit,
    /// SMTPUTF8, an unsendable address).
    MailFrom,
    /// `RCPT TO`.
    RcptTo,
    /// `DATA` and its 354.
    Data,
    /// Sending the message.
    Body,
    /// The reply to the final dot.
    DataEnd,
}

impl Stage {
    /// Whether the stage comes before any transaction: a failure there is
    /// an error of the host (try another MX), not a verdict on a message.
    pub const fn is_session(self) -> bool {
        matches!(
            self,
            Self::Connect | Self::Greeting | Self::Ehlo | Self::Helo | Self::Tls | Self::Auth
        )
    }

    /// The stage's name in logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Greeting => "greeting",
            Self::Ehlo => "EHLO",
            Self::Helo => "HELO",
            Self::Tls => "TLS",
            Self::Auth => "AUTH",
            Self::Reset => "RSET",
            Self::MailFrom => "MAIL FROM",
            Self::RcptTo => "RCPT TO",
            Self::Data => "DATA",
            Self::Body => "message",
            Self::DataEnd => "end of DATA",
        }
    }
}

/// A failure of the session or of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Temporary or permanent.
    pub kind: Kind,
    /// Where it happened.
    pub stage: Stage,
    /// The enhanced status code: the peer's, or ours for local refusals.
    pub status: Option<Enhanced>,
    /// The peer's reply, when the failure is one.
    pub reply: Option<PeerReply>,
    /// What happened, in words (for replies: the reply on one line).
    pub detail: String,
}

impl Failure {
    /// A refusal by the peer: the kind follows the code (5xx permanent,
    /// anything else temporary).
    pub fn refused(stage: Stage, reply: PeerReply) -> Self {
        let kind = match reply.class() {
            5 => Kind::Permanent,
            _ => Kind::Temporary,
        };
        Self {
            kind,
            stage,
            status: reply.status(),
            detail: reply.one_line(),
            reply: Some(reply),
        }
    }

    /// A temporary failure without a reply (network, timeout, TLS,
    /// protocol violations by the peer).
    pub fn temporary(stage: Stage, detail: impl Into<String>) -> Self {
        Self {
            kind: Kind::Temporary,
            stage,
            status: None,
            reply: None,
            detail: detail.into(),
        }
    }

    /// A permanent refusal made on this side, with its status code.
    pub fn local(stage: Stage, status: Enhanced, detail: impl Into<String>) -> Self {
        let kind = match status.class {
            5 => Kind::Permanent,
            _ => Kind::Temporary,
        };
        Self {
            kind,
            stage,
            status: Some(status),
            reply: None,
            detail: detail.into(),
        }
    }

    /// Whether retrying later can help.
    pub const fn is_temporary(&self) -> bool {
        matches!(self.kind, Kind::Temporary)
    }

    /// The text an envelope keeps (its `errorline`) and a bounce shows:
    /// the peer's reply, else the status code and the detail.
    pub fn errorline(&self) -> String {
        match (&self.reply, self.status) {
            (Some(reply), _) => reply.one_line(),
            (None, Some(status)) => {
                let code = if status.class == 5 { 550 } else { 421 };
                format!("{code} {status} {}", self.detail)
            }
            (None, None) => self.detail.clone(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.stage.name(), self.errorline())
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_follows_the_code() {
        let reply = |code| PeerReply::new(code, None, vec!["x".to_owned()]);
        assert!(Failure::refused(Stage::MailFrom, reply(451)).is_temporary());
        assert!(!Failure::refused(Stage::MailFrom, reply(550)).is_temporary());
        assert!(Failure::temporary(Stage::Connect, "refused").is_temporary());
        let big = Failure::local(Stage::MailFrom, Enhanced::new(5, 3, 4), "too big");
        assert!(!big.is_temporary());
        assert_eq!(big.errorline(), "550 5.3.4 too big");
        assert_eq!(big.to_string(), "MAIL FROM: 550 5.3.4 too big");
    }

    #[test]
    fn session_stages() {
        assert!(Stage::Greeting.is_session());
        assert!(Stage::Auth.is_session());
        assert!(!Stage::RcptTo.is_session());
        assert!(!Stage::DataEnd.is_session());
    }
}
