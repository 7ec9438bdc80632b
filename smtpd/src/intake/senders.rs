//! `listen on ... senders <t>`: which MAIL FROM addresses an
//! authenticated user may use, as OpenSMTPD 7.8 decides it
//! (`smtp_tx_mail_from`, `lka_mailaddrmap`, `mailaddr_line`).
//!
//! Only sessions that authenticated are checked (others are not, even
//! on this listener), after the MAIL FROM parameters. The table's
//! `mailaddrmap` value for the login is a comma-separated list; each
//! element, trimmed (empty ones skipped), is a mailaddr pattern: `user`
//! (any domain), `@domain` (any user of the domain, `*` patterns
//! allowed), `user@domain`, or `@` (anything), matched as tables.md 1.4
//! matches mailaddr entries (users case-insensitively, the sender's
//! `+tag` removed when the pattern's user has none). The sender must
//! match one. A login the table does not list, or a sender that matches
//! nothing, is refused with OpenSMTPD's `530 Sender rejected` (given an
//! enhanced code, `5.7.1`, as every reply of this daemon has one). A
//! table that cannot answer, or a value that is no list of addresses, is
//! a temporary failure: `451 4.3.0 Temporary failure` (OpenSMTPD says
//! `421 4.3.0 Temporary Error` there but keeps the session open).

use crate::config::Senders;
use crate::smtp::{Reply, ReversePath};
use crate::table::{mailaddr_matches, Service, Tables};

/// OpenSMTPD's `LINE_MAX`: a longer value is refused whole.
const MAX_VALUE: usize = 2047;
/// The longest local part of a pattern.
const MAX_USER: usize = 64;
/// The longest domain of a pattern.
const MAX_DOMAIN: usize = 255;

/// A `mailaddrmap` value that is no list of mail addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid mailaddrmap value: {0}")]
pub(super) struct InvalidValue(String);

/// The patterns of a `mailaddrmap` value, in order.
pub(super) fn patterns(value: &str) -> Result<Vec<&str>, InvalidValue> {
    if value.len() > MAX_VALUE {
        return Err(InvalidValue(format!("longer than {MAX_VALUE} bytes")));
    }
    let mut found = Vec::new();
    for element in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (user, domain) = element.rsplit_once('@').unwrap_or((element, ""));
        if user.len() > MAX_USER || domain.len() > MAX_DOMAIN {
            return Err(InvalidValue(format!("{element:?} is too long")));
        }
        found.push(element);
    }
    Ok(found)
}

/// The sender as a table key: `user@domain`, empty for the null sender.
pub(super) fn sender_text(sender: &ReversePath) -> String {
    match sender {
        ReversePath::Null => String::new(),
        ReversePath::Mailbox(mailbox) => mailbox.to_string(),
    }
}

/// Whether `value` lets its login send as `sender`.
pub(super) fn allows(value: &str, sender: &ReversePath, delim: char) -> Result<bool, InvalidValue> {
    let key = sender_text(sender);
    Ok(patterns(value)?
        .iter()
        .any(|pattern| mailaddr_matches(&key, pattern, delim)))
}

/// The senders check of an authenticated `user` sending as `sender`:
/// `Err` is the reply refusing it.
pub(super) async fn check(
    tables: &Tables,
    senders: &Senders,
    user: &str,
    sender: &ReversePath,
    delim: char,
) -> Result<(), Reply> {
    let table = tables.get(senders.table);
    let value = match table.lookup(Service::Mailaddrmap, user).await {
        Ok(Some(value)) => value,
        Ok(None) => return Err(Reply::sender_rejected()),
        Err(e) => {
            tracing::warn!("senders of {user}: {e}");
            return Err(Reply::temporary_failure());
        }
    };
    match allows(&value, sender, delim) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Reply::sender_rejected()),
        Err(e) => {
            tracing::warn!("senders of {user}: table {}: {e}", table.name());
            Err(Reply::temporary_failure())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::smtp::Mailbox;
    use crate::table::unavailable::UnavailableTable;
    use crate::table::{self, BuildOptions, Table};

    fn sender(text: &str) -> ReversePath {
        match text {
            "" => ReversePath::Null,
            _ => ReversePath::Mailbox(Mailbox::parse(text.as_bytes()).unwrap()),
        }
    }

    #[test]
    fn the_forms_of_a_pattern() {
        let cases: &[(&str, &str, bool)] = &[
            ("alice@example.org", "alice@example.org", true),
            ("alice@example.org", "Alice@Example.ORG", true),
            ("alice@example.org", "bob@example.org", false),
            // A user alone: any domain.
            ("alice", "alice@elsewhere.test", true),
            ("alice", "bob@example.org", false),
            // A domain: any user of it; patterns allowed.
            ("@example.org", "anyone@example.org", true),
            ("@example.org", "anyone@sub.example.org", false),
            ("@*.example.org", "anyone@sub.example.org", true),
            // The sub-address is removed unless the pattern has one.
            ("alice@example.org", "alice+list@example.org", true),
            ("alice+list@example.org", "alice+list@example.org", true),
            ("alice+list@example.org", "alice+other@example.org", false),
            // `@` is anything, the null sender included.
            ("@", "x@y.test", true),
            ("@", "", true),
            ("@example.org", "", false),
            ("alice", "", false),
            // A list: one match is enough; blanks and empty items are
            // skipped.
            (" bob@a.test ,, alice@b.test ", "alice@b.test", true),
            ("bob@a.test, @c.test", "alice@b.test", false),
            ("", "alice@b.test", false),
        ];
        for (value, from, expected) in cases {
            assert_eq!(
                allows(value, &sender(from), '+').unwrap(),
                *expected,
                "{value:?} for {from:?}"
            );
        }
        assert!(allows("alice-x@a.test", &sender("alice-x@a.test"), '-').unwrap());
        assert!(allows("alice@a.test", &sender("alice-x@a.test"), '-').unwrap());
    }

    #[test]
    fn a_value_that_is_no_address_list_is_an_error() {
        let long_user = format!("{}@example.org", "u".repeat(65));
        let long_domain = format!("alice@{}", "d".repeat(256));
        let long_value = format!("alice@example.org,{}", " ".repeat(2048));
        for value in [long_user, long_domain, long_value] {
            assert!(allows(&value, &sender("alice@example.org"), '+').is_err());
        }
        assert_eq!(
            patterns("a@b.test, @c.test ,d").unwrap(),
            ["a@b.test", "@c.test", "d"]
        );
    }

    #[tokio::test]
    async fn logins_are_looked_up_in_the_table() {
        let config = crate::config::Config::parse_str(
            "smtpd.conf",
            "table owners { alice = \"alice@example.org, @alice.test\" }\n\
             listen on 127.0.0.1 senders <owners>\n\
             action \"l\" maildir\nmatch from any for any action \"l\"\n",
            &crate::config::LoadOptions::default(),
        )
        .unwrap()
        .config;
        let senders = config.listeners[0].senders.unwrap();
        let built = table::build(&config, &BuildOptions::default())
            .await
            .unwrap();
        let tables = Tables::new(built.iter().cloned().collect());
        let rejected = Err(Reply::sender_rejected());
        let cases: &[(&str, &str, &Result<(), Reply>)] = &[
            ("alice", "alice@example.org", &Ok(())),
            ("ALICE", "x@alice.test", &Ok(())),
            ("alice", "bob@example.org", &rejected),
            // A login the table does not list may send as nobody.
            ("bob", "bob@example.org", &rejected),
        ];
        for (user, from, expected) in cases {
            let got = check(&tables, &senders, user, &sender(from), '+').await;
            assert_eq!(&got, *expected, "{user} as {from}");
        }
        assert_eq!(
            Reply::sender_rejected().to_string(),
            "530 5.7.1 Sender rejected"
        );
        // A table that cannot answer: a temporary failure, not a refusal.
        let down = Tables::new(
            built
                .iter()
                .map(|t| match t.name() {
                    "owners" => Arc::new(UnavailableTable("owners".to_owned())) as Arc<dyn Table>,
                    _ => Arc::clone(t),
                })
                .collect(),
        );
        let failed = check(&down, &senders, "alice", &sender("alice@example.org"), '+').await;
        assert_eq!(failed, Err(Reply::temporary_failure()));
    }
}
