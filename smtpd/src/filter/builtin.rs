//! Built-in filters: `filter NAME phase PHASE match CONDITION... DECISION`
//! (smtpd-conf.md section 8.2).
//!
//! A built-in filter tests what the session knows at its phase ([`Facts`])
//! and, when its condition holds, answers with its decision ([`Outcome`]);
//! otherwise it answers [`Outcome::Proceed`] and the chain goes on. The
//! chain engine calls [`evaluate`] inline (built-in filters never appear on
//! a filter process's wire) at the phase [`run_phase`] gives.
//!
//! Table conditions are tested exactly as the `match` rules test theirs,
//! through `crate::rules` (the same services, `regex`, `!`, and a table
//! error is an error, for the caller to turn into a temporary failure,
//! never a miss). What OpenSMTPD 7.8 does and this module does too:
//! - `rdns` holds when the session has a reverse name that is not an
//!   address literal; `rdns <t>`, `helo <t>`, `mail-from <t>` and
//!   `rcpt-to <t>` are false while their value is unknown (no reverse name,
//!   no HELO yet), and `!` then makes them true;
//! - `mail-from <t>` asks about `@` for the null sender, as the rules do;
//! - `auth <t>` checks the user name as a mail address when it holds `@`,
//!   else as a string (the `match auth <t>` test);
//! - `phase auth` runs at connect ([`run_phase`]): 7.8's grammar drops the
//!   phase of `phase auth` filters and registers them for connect;
//! - a `reject` or `disconnect` message that is not a 4xx/5xx reply becomes
//!   `421 Internal server error`, and a 421 reply closes the session, as
//!   7.8 does with every filter reply ([`checked_reply`]).

use crate::config::{BuiltinFilter, Criterion, FilterDecision, FilterTest, Phase};
use crate::rules::{self, Source};
use crate::table::{Error, Service, Tables};

/// The reply sent for a filter's malformed reject or disconnect message.
pub const INTERNAL_ERROR_REPLY: &str = "421 Internal server error";

/// What a session knows when a built-in filter runs.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The client: an address, or the local socket (whose key is `local`).
    pub src: Source,
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

/// The phase whose chain runs `filter`: its own, but `connect` for
/// `phase auth`, as OpenSMTPD 7.8 registers those.
pub fn run_phase(filter: &BuiltinFilter) -> Phase {
    match filter.phase {
        Phase::Auth => Phase::Connect,
        phase => phase,
    }
}

/// What `filter` decides given `facts`: [`Outcome::Proceed`] when its
/// condition does not hold, its decision when it does.
///
/// Fails when a table the condition asks cannot answer.
pub async fn evaluate(
    filter: &BuiltinFilter,
    facts: &Facts<'_>,
    tables: &Tables,
) -> Result<Outcome, Error> {
    Ok(if holds(filter, facts, tables).await? {
        decide(&filter.decision)
    } else {
        Outcome::Proceed
    })
}

/// Whether the filter's condition holds, `!` applied.
async fn holds(filter: &BuiltinFilter, facts: &Facts<'_>, tables: &Tables) -> Result<bool, Error> {
    let condition = &filter.condition;
    let negated = condition.negated;
    let (test, service, key) = match &condition.test {
        FilterTest::Fcrdns => return Ok(facts.fcrdns != negated),
        FilterTest::Rdns(None) => return Ok(has_rdns(facts.rdns) != negated),
        FilterTest::Auth(test) => {
            let auth = Criterion {
                negated,
                test: *test,
            };
            return rules::authenticated(&auth, facts.auth_user, tables).await;
        }
        FilterTest::Rdns(Some(t)) => (*t, Service::Domain, facts.rdns.map(str::to_owned)),
        FilterTest::Src(t) => (*t, Service::Netaddr, Some(facts.src.key())),
        FilterTest::Helo(t) => (*t, Service::Domain, facts.helo.map(str::to_owned)),
        FilterTest::MailFrom(t) => (*t, Service::Mailaddr, facts.mail_from.map(sender_key)),
        FilterTest::RcptTo(t) => (*t, Service::Mailaddr, facts.rcpt_to.map(str::to_owned)),
    };
    let Some(key) = key else {
        return Ok(negated);
    };
    let criterion = Criterion { negated, test };
    rules::table_criterion(&criterion, service, &key, tables).await
}

/// Whether `rdns` is a reverse name: present, and not an address literal
/// (`192.0.2.1`, `[192.0.2.1]`, `[IPv6:2001:db8::1]`).
fn has_rdns(rdns: Option<&str>) -> bool {
    let Some(name) = rdns.filter(|n| !n.is_empty() && *n != crate::dns::UNKNOWN) else {
        return false;
    };
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    let bare = bare
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("ipv6:"))
        .map_or(bare, |_| &bare[5..]);
    bare.parse::<std::net::IpAddr>().is_err()
}

/// The key of a sender: `user@domain`, `@` for the null sender.
fn sender_key(mail_from: &str) -> String {
    if mail_from.is_empty() {
        "@".to_owned()
    } else {
        mail_from.to_owned()
    }
}

/// The outcome of a decision whose condition held.
fn decide(decision: &FilterDecision) -> Outcome {
    match decision {
        FilterDecision::Reject(message) => match checked_reply(message) {
            (reply, false) => Outcome::Reject(reply),
            (reply, true) => Outcome::Disconnect(reply),
        },
        FilterDecision::Disconnect(message) => Outcome::Disconnect(checked_reply(message).0),
        FilterDecision::Rewrite(value) => Outcome::Rewrite(value.clone()),
        FilterDecision::Report(message) => Outcome::Report(message.clone()),
        FilterDecision::Junk => Outcome::Junk,
        FilterDecision::Bypass => Outcome::Bypass,
    }
}

/// The reply a filter's reject or disconnect message becomes, and whether
/// the session then closes (OpenSMTPD 7.8, protocols.md section 2.6): a
/// message that is not `[45]NN ` followed by text is replaced by
/// [`INTERNAL_ERROR_REPLY`]; a `421` reply closes the session.
pub fn checked_reply(message: &str) -> (String, bool) {
    let bytes = message.as_bytes();
    let valid = bytes.len() >= 5
        && matches!(bytes[0], b'4' | b'5')
        && bytes[1].is_ascii_digit()
        && bytes[2].is_ascii_digit()
        && bytes[3] == b' ';
    let reply = if valid { message } else { INTERNAL_ERROR_REPLY };
    (reply.to_owned(), reply.starts_with("421"))
}

#[cfg(test)]
mod tests;
