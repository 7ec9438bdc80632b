//! Each criterion of a `match` rule, tested against an envelope
//! (smtpd-conf.md section 7), in OpenSMTPD's order: tag, from, for, helo,
//! auth, tls, mail-from, rcpt-to, stopping at the first false one.
//!
//! A criterion with a table asks it `check` with the service of tables.md
//! section 2 (`regex` when written with `regex`). A `!` inverts the
//! criterion's answer; an error stays an error.

use super::envelope::{Envelope, Source};
use crate::config::{Criterion, ForDestination, FromSource, Rule, TableId, TableMatch};
use crate::table::{Error, Service, Tables};

/// The keys of an envelope that take some building, made once for all
/// rules.
pub(super) struct Keys {
    /// The source as tables see it (`local` for internal envelopes).
    source: String,
    /// `user@domain` of the sender (`@` for the null sender).
    mail_from: String,
    /// `user@domain` of the recipient.
    rcpt_to: String,
}

impl Keys {
    pub(super) fn new(envelope: &Envelope) -> Self {
        Self {
            source: if envelope.internal {
                Source::Socket.key()
            } else {
                envelope.source.key()
            },
            mail_from: envelope.mail_from.to_string(),
            rcpt_to: envelope.rcpt_to.to_string(),
        }
    }
}

/// Whether every criterion of `rule` holds for the envelope.
pub(super) async fn matches(
    rule: &Rule,
    envelope: &Envelope,
    keys: &Keys,
    tables: &Tables,
) -> Result<bool, Error> {
    let ask = Ask { tables };
    if let Some(tag) = &rule.tag {
        let key = envelope.tag.as_deref().unwrap_or_default();
        if !ask.criterion(tag, Service::String, key).await? {
            return Ok(false);
        }
    }
    if !from(&rule.from, envelope, keys, ask).await? {
        return Ok(false);
    }
    if !destination(&rule.destination, envelope, ask).await? {
        return Ok(false);
    }
    if let Some(helo) = &rule.helo {
        if !ask.criterion(helo, Service::Domain, &envelope.helo).await? {
            return Ok(false);
        }
    }
    if let Some(auth) = &rule.auth {
        if !authenticated(auth, envelope.auth_user.as_deref(), tables).await? {
            return Ok(false);
        }
    }
    if let Some(tls) = &rule.tls {
        if envelope.tls == tls.negated {
            return Ok(false);
        }
    }
    if let Some(mail_from) = &rule.mail_from {
        if !ask
            .criterion(mail_from, Service::Mailaddr, &keys.mail_from)
            .await?
        {
            return Ok(false);
        }
    }
    if let Some(rcpt_to) = &rule.rcpt_to {
        if !ask
            .criterion(rcpt_to, Service::Mailaddr, &keys.rcpt_to)
            .await?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Table checks.
#[derive(Clone, Copy)]
struct Ask<'a> {
    tables: &'a Tables,
}

impl Ask<'_> {
    /// Whether `key` is in `table` for `service`.
    async fn check(self, table: TableId, service: Service, key: &str) -> Result<bool, Error> {
        self.tables.get(table).check(service, key).await
    }

    /// `key` checked in the criterion's table, with `service` or `regex`,
    /// negated if written with `!`.
    async fn criterion(
        self,
        criterion: &Criterion<TableMatch>,
        service: Service,
        key: &str,
    ) -> Result<bool, Error> {
        let found = self
            .check(
                criterion.test.table,
                service_of(criterion.test, service),
                key,
            )
            .await?;
        Ok(found != criterion.negated)
    }
}

/// `key` checked in the table of `criterion` with `service` (`regex` when
/// written with `regex`), negated if written with `!`: the test of every
/// table criterion, shared with the built-in filters' conditions.
pub(crate) async fn table_criterion(
    criterion: &Criterion<TableMatch>,
    service: Service,
    key: &str,
    tables: &Tables,
) -> Result<bool, Error> {
    Ask { tables }.criterion(criterion, service, key).await
}

fn service_of(test: TableMatch, service: Service) -> Service {
    if test.regex {
        Service::Regex
    } else {
        service
    }
}

/// `from any|local|socket|src <t>|rdns [<t>]` (`from auth` and
/// `from mail-from` are `from any` here, their other half being in the
/// auth or mail-from slot).
///
/// An internal envelope is tested with the source `local`, and never
/// matches the forms without a table (`from socket`, bare `from rdns`),
/// negated or not. `from rdns <t>` without a reverse name is false, negated
/// or not (OpenSMTPD answers "no" before applying the `!`).
async fn from(
    from: &Criterion<FromSource>,
    envelope: &Envelope,
    keys: &Keys,
    ask: Ask<'_>,
) -> Result<bool, Error> {
    let source = keys.source.as_str();
    let (table, service, key) = match &from.test {
        FromSource::Socket | FromSource::Rdns(None) if envelope.internal => return Ok(false),
        FromSource::Socket => {
            return Ok((envelope.source == Source::Socket) != from.negated);
        }
        FromSource::Rdns(None) => return Ok(envelope.rdns.is_some() != from.negated),
        FromSource::Any => (TableId::ANYHOST, Service::Netaddr, source),
        FromSource::Local => (TableId::LOCALHOST, Service::Netaddr, source),
        FromSource::Src(t) => (t.table, service_of(*t, Service::Netaddr), source),
        FromSource::Rdns(Some(t)) => {
            let service = service_of(*t, Service::Domain);
            if envelope.internal {
                (t.table, service, source)
            } else {
                let Some(name) = envelope.rdns.as_deref() else {
                    return Ok(false);
                };
                (t.table, service, name)
            }
        }
    };
    Ok(ask.check(table, service, key).await? != from.negated)
}

/// `for any|local|domain <t>`: the recipient's domain.
async fn destination(
    destination: &Criterion<ForDestination>,
    envelope: &Envelope,
    ask: Ask<'_>,
) -> Result<bool, Error> {
    let (table, service) = match &destination.test {
        ForDestination::Any => (TableId::ANYDESTINATION, Service::Domain),
        ForDestination::Local => (TableId::LOCALNAMES, Service::Domain),
        ForDestination::Domain(t) => (t.table, service_of(*t, Service::Domain)),
    };
    let found = ask.check(table, service, &envelope.rcpt_to.domain).await?;
    Ok(found != destination.negated)
}

/// `auth` and `auth [regex] <t>`: false for a session that did not
/// authenticate (`user` is `None`); with a table, the user name is checked
/// as a mail address when it holds `@`, else as a string. Built-in filters
/// test their `auth` condition with it too.
pub(crate) async fn authenticated(
    auth: &Criterion<Option<TableMatch>>,
    user: Option<&str>,
    tables: &Tables,
) -> Result<bool, Error> {
    let found = match (user, auth.test) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(user), Some(t)) => {
            let service = if user.contains('@') {
                Service::Mailaddr
            } else {
                Service::String
            };
            Ask { tables }
                .check(t.table, service_of(t, service), user)
                .await?
        }
    };
    Ok(found != auth.negated)
}
