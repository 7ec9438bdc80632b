//! What a use of a table asks of it, and whether the table can give it
//! (OpenSMTPD's `table_check_use`).
//!
//! A use names the lookups it makes ([`Usage`]): the table types it accepts
//! (static lists, static mappings; backend tables always pass) and the
//! services it asks for. For static tables, whose content is known now, the
//! entries are also checked against what the service expects (addresses
//! for netaddr, relay URLs for relayhost, aliases(5) values for alias, ...),
//! and a bad entry is reported at its own line, in the configuration or in
//! the table file.

use smtpd_sdk::proto::table::Service;

use super::tables::inline_content;
use super::{Checker, Namespace};
use crate::config::ast::{TableExpr, TableMatch as AstTableMatch, Tables};
use crate::config::model::{
    RelayUrl, StaticContent, Table, TableBackend, TableId, TableKind, TableMatch,
};
use crate::config::values;

/// Which table types a use accepts (backend tables always pass).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kinds {
    List,
    Mapping,
    Both,
}

/// How the entries of a static table are checked for a use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validate {
    /// Keys are addresses or networks.
    Netaddr,
    /// Keys are source addresses.
    Source,
    /// Relay URLs: keys of a list, values of a mapping.
    Relayhost,
    /// Values are aliases(5) expansions.
    Alias,
    /// Values are `uid:gid:home`.
    Userinfo,
    /// Values are `user:password` or passwords.
    Credentials,
}

/// What a use of a table asks of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Usage {
    /// The lookups, as in "may not be used for ... lookups".
    pub(crate) what: &'static str,
    pub(crate) kinds: Kinds,
    /// The use passes when the backend serves any of these; empty means no
    /// check at all (built-in filters, as in OpenSMTPD).
    pub(crate) services: &'static [Service],
    pub(crate) validate: Option<Validate>,
}

const fn usage(
    what: &'static str,
    kinds: Kinds,
    services: &'static [Service],
    validate: Option<Validate>,
) -> Usage {
    Usage {
        what,
        kinds,
        services,
        validate,
    }
}

pub(crate) const LISTEN_AUTH: Usage = usage(
    "auth",
    Kinds::Mapping,
    &[Service::Credentials],
    Some(Validate::Credentials),
);
pub(crate) const HOSTNAMES: Usage = usage("hostnames", Kinds::Mapping, &[Service::Addrname], None);
pub(crate) const SENDERS: Usage = usage("senders", Kinds::Mapping, &[Service::Mailaddrmap], None);
pub(crate) const ALIAS: Usage = usage(
    "alias",
    Kinds::Mapping,
    &[Service::Alias],
    Some(Validate::Alias),
);
pub(crate) const VIRTUAL: Usage = usage(
    "virtual",
    Kinds::Mapping,
    &[Service::Alias],
    Some(Validate::Alias),
);
pub(crate) const USERBASE: Usage = usage(
    "userbase",
    Kinds::Mapping,
    &[Service::Userinfo],
    Some(Validate::Userinfo),
);
pub(crate) const RELAY_HOST: Usage = usage(
    "relay host",
    Kinds::List,
    &[Service::Relayhost],
    Some(Validate::Relayhost),
);
pub(crate) const RELAY_DOMAIN: Usage = usage(
    "relay domain",
    Kinds::Mapping,
    &[Service::Relayhost],
    Some(Validate::Relayhost),
);
pub(crate) const RELAY_AUTH: Usage = usage(
    "relay auth",
    Kinds::Mapping,
    &[Service::Credentials],
    Some(Validate::Credentials),
);
pub(crate) const HELO_SRC: Usage = usage("helo-src", Kinds::Mapping, &[Service::Addrname], None);
pub(crate) const RELAY_SRC: Usage = usage(
    "relay src",
    Kinds::Both,
    &[Service::Source],
    Some(Validate::Source),
);
pub(crate) const FROM_SRC: Usage = usage(
    "from src",
    Kinds::List,
    &[Service::Netaddr],
    Some(Validate::Netaddr),
);
pub(crate) const FROM_RDNS: Usage = usage("from rdns", Kinds::List, &[Service::Domain], None);
pub(crate) const FROM_AUTH: Usage = usage(
    "from auth",
    Kinds::List,
    &[Service::String, Service::Credentials],
    None,
);
pub(crate) const FOR_DOMAIN: Usage = usage("for domain", Kinds::List, &[Service::Domain], None);
pub(crate) const TAG: Usage = usage("tag", Kinds::List, &[Service::String], None);
pub(crate) const HELO: Usage = usage("helo", Kinds::List, &[Service::Domain], None);
pub(crate) const AUTH: Usage = usage(
    "auth",
    Kinds::Both,
    &[Service::String, Service::Credentials],
    None,
);
pub(crate) const MAIL_FROM: Usage = usage("mail-from", Kinds::Both, &[Service::Mailaddr], None);
pub(crate) const RCPT_TO: Usage = usage("rcpt-to", Kinds::Both, &[Service::Mailaddr], None);
pub(crate) const REGEX: Usage = usage("regex", Kinds::List, &[Service::Regex], None);
pub(crate) const FILTER: Usage = usage("filter", Kinds::Both, &[], None);

impl Checker<'_> {
    /// A table operand used for `usage`: resolved (or created when
    /// inline) and checked.
    pub(super) fn table(&mut self, tables: &Tables, usage: &Usage) -> Option<TableId> {
        let index = match &tables.expr {
            TableExpr::Named(name) => self.lookup(Namespace::Table, name, "table")?,
            expr => {
                let (content, entries) = inline_content(expr);
                let index = self.config.tables.len();
                self.entries.insert(index, entries);
                self.config.tables.push(Table {
                    name: format!("<dynamic:{}>", self.dynamic_tables),
                    backend: TableBackend::Inline(content),
                });
                self.dynamic_tables += 1;
                index
            }
        };
        self.check_use(index, tables, usage);
        Some(TableId::from_index(index))
    }

    /// A `[regex] <t>` operand: regex tables are checked for the regex
    /// service instead of `usage`.
    pub(super) fn table_match(
        &mut self,
        operand: &AstTableMatch,
        usage: &Usage,
    ) -> Option<TableMatch> {
        let usage = if operand.regex && !usage.services.is_empty() {
            Usage {
                what: usage.what,
                ..REGEX
            }
        } else {
            *usage
        };
        let table = self.table(&operand.tables, &usage)?;
        Some(TableMatch {
            table,
            regex: operand.regex,
        })
    }

    fn check_use(&mut self, index: usize, tables: &Tables, usage: &Usage) {
        if usage.services.is_empty() {
            return;
        }
        let table = &self.config.tables[index];
        let label = match &tables.expr {
            TableExpr::Named(_) => format!("table \"{}\"", table.name),
            _ => "this inline table".to_owned(),
        };
        let kind = table.kind();
        let kind_ok = matches!(
            (kind, usage.kinds),
            (TableKind::Dynamic, _)
                | (TableKind::List, Kinds::List | Kinds::Both)
                | (TableKind::Mapping, Kinds::Mapping | Kinds::Both)
        );
        if !kind_ok {
            let expected = match usage.kinds {
                Kinds::List => {
                    "a list (`{ a, b }` or a file of one value per line) or a backend table"
                }
                Kinds::Mapping => {
                    "a mapping (`{ key = value }` or a file of KEY VALUE lines) or a backend table"
                }
                Kinds::Both => "a list or a mapping",
            };
            self.error(
                tables.span,
                format!(
                    "{label} may not be used for {} lookups: it is {kind}",
                    usage.what
                ),
                expected,
            );
            return;
        }
        if !usage.services.iter().any(|s| table.serves(*s)) {
            let names: Vec<&str> = usage.services.iter().map(|s| s.name()).collect();
            self.error(
                tables.span,
                format!(
                    "{label} may not be used for {} lookups: its backend does not serve {}",
                    usage.what,
                    names.join(" or ")
                ),
                format!("a table whose backend serves {}", names.join(" or ")),
            );
            return;
        }
        if let Some(validate) = usage.validate {
            self.validate(index, validate);
        }
    }

    /// Checks the entries of a static table for a service, once.
    fn validate(&mut self, index: usize, validate: Validate) {
        let name = match validate {
            Validate::Netaddr => "netaddr",
            Validate::Source => "source",
            Validate::Relayhost => "relayhost",
            Validate::Alias => "alias",
            Validate::Userinfo => "userinfo",
            Validate::Credentials => "credentials",
        };
        if !self.validated.insert((index, name)) {
            return;
        }
        let content = match &self.config.tables[index].backend {
            TableBackend::Inline(c) | TableBackend::File { content: c, .. } => c.clone(),
            _ => return,
        };
        let Some(entries) = self.entries.get(&index).cloned() else {
            return;
        };
        let items: Vec<(&str, Option<&str>)> = match &content {
            StaticContent::List(keys) => keys.iter().map(|k| (k.as_str(), None)).collect(),
            StaticContent::Mapping(pairs) => pairs
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                .collect(),
        };
        for ((key, value), at) in items.into_iter().zip(entries) {
            let (text, span) = match (validate, value) {
                (Validate::Netaddr | Validate::Source, _) | (Validate::Relayhost, None) => {
                    (key, at.key)
                }
                (_, Some(value)) => (value, at.value),
                (_, None) => continue,
            };
            if let Err((message, expected)) = check_entry(validate, text) {
                self.error(span, message, expected);
            }
        }
    }
}

/// Checks one entry for a service: the error message and what was expected.
fn check_entry(validate: Validate, text: &str) -> Result<(), (String, &'static str)> {
    match validate {
        Validate::Netaddr => (text == "local" || values::is_netaddr(text)).then_some(()).ok_or_else(|| {
            (
                format!("invalid address or network \"{text}\""),
                "an address or a CIDR network, such as 192.0.2.0/24 or [2001:db8::]/32",
            )
        }),
        Validate::Source => values::is_source_address(text).then_some(()).ok_or_else(|| {
            (
                format!("invalid source address \"{text}\""),
                "an IPv4 or IPv6 address",
            )
        }),
        Validate::Relayhost => RelayUrl::parse(text).map(|_| ()).map_err(|why| {
            (
                format!("invalid relay URL \"{text}\": {why}"),
                "[SCHEME://][LABEL@]HOST[:PORT], SCHEME one of smtp, smtp+tls, smtp+notls, lmtp, smtps",
            )
        }),
        Validate::Alias => values::check_alias(text).map_err(|why| (why, values::ALIAS_FORMAT)),
        Validate::Userinfo => values::check_userinfo(text).map_err(|why| (why, "UID:GID:HOMEDIR")),
        Validate::Credentials => {
            values::check_credentials(text).map_err(|why| (why, "USER:PASSWORD-HASH or PASSWORD-HASH"))
        }
    }
}
