//! The rules engine: which `match` rule, if any, applies to a recipient
//! (smtpd-conf.md section 7).
//!
//! [`decide`] goes through the configuration's rules in order and returns
//! the [`Decision`] of the first whose every criterion holds for the
//! [`Envelope`]; OpenSMTPD refuses a recipient no rule matches. It is pure
//! but for the table checks it makes through [`Tables`] (which may be
//! programs, hence `async`), and called by the SMTP session at RCPT TO and
//! by delivery for every address an alias or `.forward` expands to.
//!
//! - `criteria.rs` tests each criterion, in OpenSMTPD's order, with the
//!   table service tables.md section 2 gives it;
//! - `envelope.rs` holds what is tested.
//!
//! OpenSMTPD's defaults come with the checked [`Rule`]: no `from` is
//! `from local` (the source is `local`, the Unix socket, or an address of
//! this machine: `<localhost>`), no `for` is `for local` (`localhost`, the
//! server name or a local address: `<localnames>`); `from auth` and
//! `from mail-from` imply `from any`, `for rcpt-to` implies `for any`, and
//! their `!` applies to the other half only.
//!
//! A table error ends the evaluation with that error (a temporary failure
//! for the caller), never as a miss; tables are only asked while the rule
//! they belong to can still match, so an error in a later rule, or behind
//! a criterion that already failed, does not matter.
//!
//! Where this differs from OpenSMTPD 7.8: the `tls` criterion tests whether
//! the session uses TLS (7.8 answers a temporary failure for any rule that
//! uses it, its envelopes having no TLS flag); and `from rdns <t>` checks
//! the name with the domain service (wildcards), as tables.md describes,
//! where 7.8's code asks netaddr.

mod criteria;
mod envelope;

#[cfg(test)]
mod tests;

pub(crate) use criteria::{authenticated, table_criterion};
pub use envelope::{Address, Envelope, Source};

use crate::config::{ActionId, Rule, Verdict};
use crate::table::{Error, Tables};

/// What the rules decided for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Deliver with this action.
    Action {
        /// The position of the rule that matched.
        rule: usize,
        /// Its action.
        action: ActionId,
    },
    /// A `match ... reject` rule matched: refuse the recipient (550).
    Reject {
        /// The position of the rule that matched.
        rule: usize,
    },
    /// No rule matched: refuse the recipient (550 Invalid recipient), as
    /// OpenSMTPD does.
    NoMatch,
}

/// The decision of the first rule of `rules` that matches `envelope`, its
/// tables taken from `tables` (indexed like the configuration's).
pub async fn decide(
    rules: &[Rule],
    envelope: &Envelope,
    tables: &Tables,
) -> Result<Decision, Error> {
    let keys = criteria::Keys::new(envelope);
    for (index, rule) in rules.iter().enumerate() {
        if criteria::matches(rule, envelope, &keys, tables).await? {
            return Ok(match rule.verdict {
                Verdict::Action(action) => Decision::Action {
                    rule: index,
                    action,
                },
                Verdict::Reject => Decision::Reject { rule: index },
            });
        }
    }
    Ok(Decision::NoMatch)
}
