//! The table: each served service runs its configured search and turns
//! the entries into the value OpenSMTPD's table-ldap returns.
//!
//! - `check`: found when the search returns at least one entry.
//! - `lookup`: `alias` and `mailaddrmap` join every value of every entry
//!   with `", "`; `credentials` is `user:hash` and `userinfo`
//!   `uid:gid:home` from the first entry's attributes in configured order;
//!   every other service answers the first entry's first value.
//! - `fetch` (for `source` and `relayhost`, the services the daemon
//!   fetches) runs the service's filter with the key replaced by `*`,
//!   lists the first value of every entry found, sorted, and hands them
//!   out round-robin; the list is searched again once it has gone round,
//!   so entries added or removed are seen within one cycle. (OpenSMTPD's
//!   table-ldap answers `error` to every fetch.)
//! - `update` re-reads the configuration file: on success the new settings
//!   are used and the directory is reconnected; on error the old ones stay.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use smtpd_sdk::table::{Config as DaemonConfig, Error, Service, Table};

use crate::config::Config;
use crate::directory::{Directory, Values};

/// The configuration in force and its directory.
struct State {
    config: Config,
    directory: Rc<Directory>,
}

/// The table-ldap table.
pub(crate) struct LdapTable {
    path: PathBuf,
    table_name: String,
    state: RefCell<Rc<State>>,
    /// Per fetched service: the values listed and the next to hand out.
    cycles: RefCell<Vec<(Service, Vec<String>, usize)>>,
}

impl LdapTable {
    /// A table from the configuration `config` read from `path`.
    pub(crate) fn new(path: PathBuf, config: Config) -> Self {
        let directory = Rc::new(Directory::new(&config));
        Self {
            path,
            table_name: String::new(),
            state: RefCell::new(Rc::new(State { config, directory })),
            cycles: RefCell::new(Vec::new()),
        }
    }

    fn state(&self) -> Rc<State> {
        Rc::clone(&self.state.borrow())
    }

    /// The next value of the current fetch cycle of `service`; `None` once
    /// the cycle has gone round (the directory is searched again then).
    fn next_in_cycle(&self, service: Service) -> Option<String> {
        let mut cycles = self.cycles.borrow_mut();
        let (_, values, next) = cycles.iter_mut().find(|(s, _, _)| *s == service)?;
        let value = values.get(*next).cloned();
        *next += 1;
        value
    }

    async fn search(&self, service: Service, key: &str) -> Result<Vec<Values>, Error> {
        let state = self.state();
        let Some(query) = state.config.query(service) else {
            return Err(Error::Unsupported);
        };
        let filter = query.filter.expand(key, &self.table_name);
        state
            .directory
            .search(&filter, &query.attributes)
            .await
            .map_err(Error::Failed)
    }
}

/// The first value of attribute `index` of `entry`, or an error naming it.
fn first<'a>(entry: &'a Values, index: usize, names: &[String]) -> Result<&'a str, Error> {
    entry
        .get(index)
        .and_then(|values| values.first())
        .map(String::as_str)
        .ok_or_else(|| {
            let name = names.get(index).map_or("?", String::as_str);
            Error::failed(format!("entry has no value for attribute {name}"))
        })
}

/// The lookup value of `service` from the search result `entries`.
pub(crate) fn lookup_value(
    service: Service,
    attributes: &[String],
    entries: &[Values],
) -> Result<Option<String>, Error> {
    let Some(entry) = entries.first() else {
        return Ok(None);
    };
    let value = match service {
        Service::Alias | Service::Mailaddrmap => {
            let all: Vec<&str> = entries
                .iter()
                .flat_map(|e| e.iter().flatten())
                .map(String::as_str)
                .collect();
            if all.is_empty() {
                return Err(Error::failed(format!(
                    "entries have no value for attribute {}",
                    attributes.join(",")
                )));
            }
            all.join(", ")
        }
        Service::Credentials => format!(
            "{}:{}",
            first(entry, 0, attributes)?,
            first(entry, 1, attributes)?
        ),
        Service::Userinfo => format!(
            "{}:{}:{}",
            first(entry, 0, attributes)?,
            first(entry, 1, attributes)?,
            first(entry, 2, attributes)?
        ),
        _ => first(entry, 0, attributes)?.to_owned(),
    };
    Ok(Some(value))
}

impl Table for LdapTable {
    fn configure(&mut self, config: &DaemonConfig) -> Result<(), Error> {
        self.table_name = config.tablename().unwrap_or("").to_owned();
        Ok(())
    }

    fn services(&self) -> Vec<Service> {
        self.state()
            .config
            .queries
            .iter()
            .map(|q| q.service)
            .collect()
    }

    async fn check(&self, service: Service, key: &str) -> Result<bool, Error> {
        Ok(!self.search(service, key).await?.is_empty())
    }

    async fn lookup(&self, service: Service, key: &str) -> Result<Option<String>, Error> {
        let entries = self.search(service, key).await?;
        let state = self.state();
        let attributes = state
            .config
            .query(service)
            .map(|q| q.attributes.as_slice())
            .unwrap_or_default();
        lookup_value(service, attributes, &entries)
    }

    async fn fetch(&self, service: Service) -> Result<Option<String>, Error> {
        if !matches!(service, Service::Source | Service::Relayhost) {
            return Err(Error::Unsupported);
        }
        if let Some(value) = self.next_in_cycle(service) {
            return Ok(Some(value));
        }
        let state = self.state();
        let Some(query) = state.config.query(service) else {
            return Err(Error::Unsupported);
        };
        let filter = query.filter.expand_any(&self.table_name);
        let entries = state
            .directory
            .search(&filter, &query.attributes)
            .await
            .map_err(Error::Failed)?;
        let mut values: Vec<String> = entries
            .iter()
            .filter_map(|e| e.first().and_then(|v| v.first()).cloned())
            .collect();
        values.sort();
        values.dedup();
        let first = values.first().cloned();
        let mut cycles = self.cycles.borrow_mut();
        cycles.retain(|(s, _, _)| *s != service);
        if first.is_some() {
            cycles.push((service, values, 1));
        }
        Ok(first)
    }

    async fn update(&self) -> Result<(), Error> {
        let config = Config::load(&self.path).map_err(|e| Error::failed(e.to_string()))?;
        let old = self.state();
        let added: Vec<Service> = config
            .queries
            .iter()
            .map(|q| q.service)
            .filter(|s| old.config.query(*s).is_none())
            .collect();
        if !added.is_empty() {
            // Registrations happen once, at the handshake.
            tracing::warn!(
                ?added,
                "services added by the update are served after a restart"
            );
        }
        let directory = Rc::new(Directory::new(&config));
        *self.state.borrow_mut() = Rc::new(State { config, directory });
        self.cycles.borrow_mut().clear();
        tracing::info!(path = %self.path.display(), "configuration reloaded");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn entry(values: &[&[&str]]) -> Values {
        values
            .iter()
            .map(|v| v.iter().map(|s| (*s).to_owned()).collect())
            .collect()
    }

    #[test]
    fn values_per_service() {
        let one = names(&["mail"]);
        let entries = vec![entry(&[&["a@x", "b@x"]]), entry(&[&["c@x"]])];
        assert_eq!(
            lookup_value(Service::Alias, &one, &entries),
            Ok(Some("a@x, b@x, c@x".to_owned()))
        );
        assert_eq!(
            lookup_value(Service::Domain, &one, &entries),
            Ok(Some("a@x".to_owned()))
        );
        assert_eq!(lookup_value(Service::Alias, &one, &[]), Ok(None));
        let creds = names(&["uid", "userPassword"]);
        assert_eq!(
            lookup_value(
                Service::Credentials,
                &creds,
                &[entry(&[&["bob"], &["$2b$x"]])]
            ),
            Ok(Some("bob:$2b$x".to_owned()))
        );
        let info = names(&["uidNumber", "gidNumber", "homeDirectory"]);
        assert_eq!(
            lookup_value(
                Service::Userinfo,
                &info,
                &[entry(&[&["1"], &["2"], &["/h"]])]
            ),
            Ok(Some("1:2:/h".to_owned()))
        );
        let missing = lookup_value(Service::Userinfo, &info, &[entry(&[&["1"], &[], &["/h"]])]);
        assert_eq!(
            missing,
            Err(Error::failed("entry has no value for attribute gidNumber"))
        );
    }
}
