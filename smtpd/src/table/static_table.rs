//! Tables the daemon serves itself: inline tables, `file:` tables, the
//! built-in `<localhost>`, `<anyhost>`, `<localnames>` and
//! `<anydestination>`, and `getpwnam`.
//!
//! [`StaticTable::from_config`] makes one from a configuration table; the
//! table construction in `build.rs` calls it for every table that is not a
//! program. A static table holds its entries sorted by key (the order of
//! OpenSMTPD's dictionary), keys lower-cased, and answers:
//!
//! - `check`: whether an entry matches the key with the service's
//!   comparison (`matching.rs`: domain patterns, networks, mail address
//!   patterns, regular expressions, else exact text);
//! - `lookup`: the value of the first entry, in key order, that matches the
//!   same way (for the services that are looked up, alias, credentials,
//!   userinfo, addrname, mailaddrmap, relayhost, that is the exact key). A
//!   list's entries are their own values;
//! - `fetch`: the keys one after the other, wrapping around, one position
//!   for the whole table, as OpenSMTPD's static tables fetch;
//! - `update`: a `file:` table reads its file again and keeps its old
//!   content (and answers an error naming `file:line`) when the file has
//!   become unreadable or malformed; the built-in tables look at the
//!   machine again; inline tables and `getpwnam` have nothing to reload.
//!
//! Every key is lower-cased and at most 1023 bytes long first
//! (`matching::normalize_key`); a longer key is an error, not a miss.
//! Static tables serve every service but `auth`; `getpwnam` serves
//! `userinfo` only (`static_getpwnam.rs`).
//!
//! `db:` tables (Berkeley DB files made by makemap) are not supported:
//! [`StaticTable::from_config`] refuses them with an error, which the
//! daemon reports at start-up. The text a `db:` file is made from loads as
//! a `file:` table with the same content.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use smtpd_sdk::tablefile::{Form, TableFile};

use super::matching::{normalize_key, Comparison, Key, Pattern};
pub(crate) use super::static_host::address_text;
pub use super::static_host::LocalHost;
use super::{static_getpwnam, Error, Service, Table};
use crate::config::{self, BuiltinTable, StaticContent, TableBackend};

/// A table served from memory (or, for `getpwnam`, from the system).
pub struct StaticTable {
    name: String,
    kind: Kind,
    sub_addr_delim: char,
}

/// What serves the table.
enum Kind {
    /// Entries in memory.
    Entries {
        origin: Origin,
        content: RwLock<Arc<Content>>,
        next: AtomicUsize,
    },
    /// The system password database.
    Getpwnam,
}

/// Where a table's entries come from, for `update`.
enum Origin {
    Inline,
    File(PathBuf),
    Builtin(BuiltinTable),
}

/// The entries of a table, sorted by key.
struct Content {
    entries: Vec<Entry>,
    /// Key to position in `entries`.
    index: HashMap<String, usize>,
    /// Positions of the keys holding `*` (domain patterns).
    wildcards: Vec<usize>,
}

/// One entry: its key (with what the comparisons make of it) and value.
struct Entry {
    key: Pattern,
    value: Option<String>,
}

impl Entry {
    fn key(&self) -> &str {
        self.key.text()
    }

    /// The value a lookup answers: a list's entries are their own values.
    fn value(&self) -> String {
        self.value.clone().unwrap_or_else(|| self.key().to_owned())
    }
}

impl Content {
    /// Sorts the entries by lower-cased key; a key given twice keeps the
    /// last value.
    fn new(pairs: impl IntoIterator<Item = (String, Option<String>)>) -> Self {
        let sorted: BTreeMap<String, Option<String>> = pairs
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let entries: Vec<Entry> = sorted
            .into_iter()
            .map(|(key, value)| Entry {
                key: Pattern::new(key),
                value,
            })
            .collect();
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key().to_owned(), i))
            .collect();
        let wildcards = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.key().contains('*'))
            .map(|(i, _)| i)
            .collect();
        Self {
            entries,
            index,
            wildcards,
        }
    }

    fn from_static(content: &StaticContent) -> Self {
        match content {
            StaticContent::List(keys) => Self::new(keys.iter().map(|k| (k.clone(), None))),
            StaticContent::Mapping(pairs) => {
                Self::new(pairs.iter().map(|(k, v)| (k.clone(), Some(v.clone()))))
            }
        }
    }

    fn from_file(file: &TableFile) -> Self {
        Self::new(file.entries().iter().map(|e| {
            let value = match file.form() {
                Form::List => None,
                Form::Mapping => e.value.clone(),
            };
            (e.key.clone(), value)
        }))
    }

    /// Whether an entry matches `key` (already normalised).
    fn check(&self, comparison: Comparison, key: &str, delim: char) -> bool {
        let exact = self.index.contains_key(key);
        match comparison {
            Comparison::Exact => exact,
            // Entries without `*` match their own text only.
            Comparison::Domain => {
                let key = Key::new(comparison, key);
                exact
                    || self
                        .wildcards
                        .iter()
                        .any(|&i| self.entries[i].key.matches(comparison, &key, delim))
            }
            // The same text is a netaddr match; other entries are networks.
            Comparison::Netaddr => exact || self.first(comparison, key, delim).is_some(),
            Comparison::Mailaddr | Comparison::Regex => {
                self.first(comparison, key, delim).is_some()
            }
        }
    }

    /// The first entry, in key order, that matches `key` (already
    /// normalised).
    fn first(&self, comparison: Comparison, key: &str, delim: char) -> Option<&Entry> {
        if comparison == Comparison::Exact {
            return self.index.get(key).map(|&i| &self.entries[i]);
        }
        let key = Key::new(comparison, key);
        self.entries
            .iter()
            .find(|e| e.key.matches(comparison, &key, delim))
    }
}

impl StaticTable {
    /// The live table of a configuration table that the daemon serves
    /// itself: inline, `file:` (with the content read when the
    /// configuration was loaded), built-in (the machine's names and
    /// addresses, found now) or `getpwnam`.
    ///
    /// Fails for `db:` tables, which are not supported, for tables served
    /// by a program (those are built by `build.rs`), and when the local
    /// interface addresses cannot be listed for a built-in table.
    pub fn from_config(table: &config::Table) -> Result<Self, Error> {
        Self::make(table, LocalHost::detect)
    }

    /// [`StaticTable::from_config`] with the local facts given rather than
    /// found, for tests (an update of a built-in table finds them anew).
    pub fn from_config_with(table: &config::Table, host: &LocalHost) -> Result<Self, Error> {
        Self::make(table, || Ok(host.clone()))
    }

    fn make(
        table: &config::Table,
        host: impl FnOnce() -> std::io::Result<LocalHost>,
    ) -> Result<Self, Error> {
        let name = table.name.clone();
        let entries = |origin, content| Kind::Entries {
            origin,
            content: RwLock::new(Arc::new(content)),
            next: AtomicUsize::new(0),
        };
        let kind = match &table.backend {
            TableBackend::Inline(content) => entries(Origin::Inline, Content::from_static(content)),
            TableBackend::File { path, content } => {
                entries(Origin::File(path.clone()), Content::from_static(content))
            }
            TableBackend::Builtin(builtin) => {
                let host = host().map_err(|e| local_host_error(&name, &e))?;
                let keys = host.entries(*builtin);
                entries(
                    Origin::Builtin(*builtin),
                    Content::new(keys.into_iter().map(|k| (k, None))),
                )
            }
            TableBackend::Getpwnam => Kind::Getpwnam,
            TableBackend::Db { path } => {
                return Err(Error::Load {
                    table: name,
                    reason: format!(
                        "db:{}: Berkeley DB tables are not supported; load the text makemap \
                         reads as a file: table instead",
                        path.display()
                    ),
                })
            }
            TableBackend::Program { .. } | TableBackend::ProcExec(_) => {
                return Err(Error::Load {
                    table: name,
                    reason: "served by a program, not by the daemon itself".to_owned(),
                })
            }
        };
        Ok(Self {
            name,
            kind,
            sub_addr_delim: '+',
        })
    }

    /// Sets the sub-address delimiter the mailaddr comparison strips
    /// (`smtp sub-addr-delim`, `+` by default).
    #[must_use]
    pub fn with_sub_addr_delim(mut self, delim: char) -> Self {
        self.sub_addr_delim = delim;
        self
    }

    /// The entries now, for the entry kinds.
    fn content(&self) -> Option<Arc<Content>> {
        match &self.kind {
            // A poisoned lock still holds complete content: it is only
            // ever replaced whole.
            Kind::Entries { content, .. } => Some(match content.read() {
                Ok(guard) => Arc::clone(&guard),
                Err(poisoned) => Arc::clone(&poisoned.into_inner()),
            }),
            Kind::Getpwnam => None,
        }
    }

    fn unsupported(&self, service: Service) -> Error {
        Error::Unsupported {
            table: self.name.clone(),
            service,
        }
    }

    /// Reads a `file:` table's file again.
    async fn reload_file(&self, path: &std::path::Path) -> Result<Content, Error> {
        let load = |reason| Error::Load {
            table: self.name.clone(),
            reason,
        };
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| load(format!("cannot read {}: {e}", path.display())))?;
        let file = TableFile::parse(&bytes)
            .map_err(|e| load(format!("{}:{}: {}", path.display(), e.line, e.kind)))?;
        Ok(Content::from_file(&file))
    }

    /// `getpwnam_r` on the blocking pool.
    async fn userinfo(&self, service: Service, key: &str) -> Result<Option<String>, Error> {
        if service != Service::Userinfo {
            return Err(self.unsupported(service));
        }
        let key = normalize_key(&self.name, key)?.into_owned();
        let backend = |message: String| Error::Backend {
            table: self.name.clone(),
            message: Some(message),
        };
        tokio::task::spawn_blocking(move || static_getpwnam::userinfo(&key))
            .await
            .map_err(|e| backend(format!("getpwnam: {e}")))?
            .map_err(|e| backend(format!("getpwnam: {e}")))
    }
}

fn local_host_error(table: &str, e: &std::io::Error) -> Error {
    Error::Load {
        table: table.to_owned(),
        reason: format!("cannot list the local names and addresses: {e}"),
    }
}

#[async_trait]
impl Table for StaticTable {
    fn name(&self) -> &str {
        &self.name
    }

    fn backend(&self) -> String {
        match &self.kind {
            Kind::Entries { origin, .. } => match origin {
                Origin::Inline => "static".to_owned(),
                Origin::File(path) => format!("file:{}", path.display()),
                Origin::Builtin(_) => "builtin".to_owned(),
            },
            Kind::Getpwnam => "getpwnam".to_owned(),
        }
    }

    async fn check(&self, service: Service, key: &str) -> Result<bool, Error> {
        let Some(content) = self.content() else {
            return Ok(self.userinfo(service, key).await?.is_some());
        };
        if service == Service::Auth {
            return Err(self.unsupported(service));
        }
        let key = normalize_key(&self.name, key)?;
        Ok(content.check(Comparison::for_service(service), &key, self.sub_addr_delim))
    }

    async fn lookup(&self, service: Service, key: &str) -> Result<Option<String>, Error> {
        let Some(content) = self.content() else {
            return self.userinfo(service, key).await;
        };
        if service == Service::Auth {
            return Err(self.unsupported(service));
        }
        let key = normalize_key(&self.name, key)?;
        Ok(content
            .first(Comparison::for_service(service), &key, self.sub_addr_delim)
            .map(Entry::value))
    }

    async fn fetch(&self, service: Service) -> Result<Option<String>, Error> {
        let (Some(content), Kind::Entries { next, .. }) = (self.content(), &self.kind) else {
            return Err(self.unsupported(service));
        };
        if service == Service::Auth {
            return Err(self.unsupported(service));
        }
        if content.entries.is_empty() {
            return Ok(None);
        }
        let n = next.fetch_add(1, Ordering::Relaxed);
        Ok(Some(
            content.entries[n % content.entries.len()].key().to_owned(),
        ))
    }

    async fn update(&self) -> Result<(), Error> {
        let Kind::Entries {
            origin, content, ..
        } = &self.kind
        else {
            return Ok(());
        };
        let fresh = match origin {
            Origin::Inline => return Ok(()),
            Origin::File(path) => self.reload_file(path).await?,
            Origin::Builtin(builtin) => {
                let host = LocalHost::detect().map_err(|e| local_host_error(&self.name, &e))?;
                Content::new(host.entries(*builtin).into_iter().map(|k| (k, None)))
            }
        };
        let fresh = Arc::new(fresh);
        match content.write() {
            Ok(mut guard) => *guard = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "static_table_tests.rs"]
mod tests;
