//! Built-in filters: `filter NAME phase PHASE match CONDITION... DECISION`.
//!
//! A built-in filter tests what the session knows at its phase ([`Facts`])
//! and, when its condition holds, answers with its decision ([`Outcome`]).

use std::net::IpAddr;

/// What a session knows when a built-in filter runs.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The client's address.
    pub src: IpAddr,
    /// The client's reverse name, when it has one.
    pub rdns: Option<&'a str>,
    /// Whether the reverse name resolves back to the client's address.
    pub fcrdns: bool,
    /// The HELO/EHLO name, once given.
    pub helo: Option<&'a str>,
    /// The authenticated user, once authenticated.
    pub auth_user: Option<&'a str>,
    /// The sender (`user@domain`, empty for `<>`), once given.
    pub mail_from: Option<&'a str>,
    /// The recipient of the current RCPT TO.
    pub rcpt_to: Option<&'a str>,
}

/// What a built-in filter decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The condition does not hold: go on with the next filter.
    Proceed,
    /// Skip the rest of the chain for this phase.
    Bypass,
    /// Mark the transaction as spam (`X-Spam: yes`).
    Junk,
    /// Refuse the command with this reply.
    Reject(String),
    /// Refuse the command with this reply and close the session.
    Disconnect(String),
    /// Replace the command's parameter.
    Rewrite(String),
    /// Emit a `filter-report` event with this text, then go on.
    Report(String),
}
