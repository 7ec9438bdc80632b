//! The table: the SDK's [`Table`] answered from PostgreSQL.
//!
//! `check` is "the service's query returns a row", `lookup` builds the
//! value from its rows (`value.rs`), `fetch` cycles through the cached
//! result of `fetch_source` / `fetch_relayhost`, queried again after
//! `fetch_*_expire` seconds or `fetch_*_refresh` fetches. A query that
//! fails because its connection went away is retried once on a fresh
//! connection; every other failure (the server down, a query error) is
//! answered `error`, a temporary failure for the daemon. `update` reads the
//! configuration file again and starts a new pool with it; the old one
//! closes once its last request is answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use smtpd_sdk::table::{Error, Service, Table};
use tokio::time::Instant;
use tokio_postgres::Row;

use crate::config::{Config, ConfigError, Fetch};
use crate::pool::{describe, is_connection_error, Kind, Pool};
use crate::value;

/// The longest a query may take before it is answered `error` and its
/// connection dropped (a server that stopped answering).
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The services registered whatever the configuration holds, as
/// OpenSMTPD's table-postgres registers them (unconfigured ones answer
/// `error`).
const STANDARD: [Service; 9] = [
    Service::Alias,
    Service::Domain,
    Service::Credentials,
    Service::Netaddr,
    Service::Userinfo,
    Service::Source,
    Service::Mailaddr,
    Service::Addrname,
    Service::Mailaddrmap,
];

/// What one configuration runs on: the configuration, its pool and the
/// cached fetch lists.
struct State {
    config: Config,
    pool: Pool,
    lists: HashMap<Service, Mutex<List>>,
}

/// A cached fetch list and the position in it.
#[derive(Default)]
struct List {
    values: Vec<String>,
    next: usize,
    loaded: Option<Instant>,
    served: u64,
}

impl List {
    fn stale(&self, fetch: &Fetch) -> bool {
        match self.loaded {
            None => true,
            Some(at) => at.elapsed() >= fetch.expire || self.served >= fetch.refresh,
        }
    }

    /// The next value, cycling.
    fn take(&mut self) -> Option<String> {
        if self.values.is_empty() {
            return None;
        }
        let value = self.values[self.next % self.values.len()].clone();
        self.next = (self.next + 1) % self.values.len();
        self.served += 1;
        Some(value)
    }
}

impl State {
    fn new(config: Config) -> Self {
        let pool = Pool::new(&config);
        let lists = config
            .fetches
            .keys()
            .map(|s| (*s, Mutex::new(List::default())))
            .collect();
        Self {
            config,
            pool,
            lists,
        }
    }

    /// Runs statement `kind` with `params`: retried once on a new
    /// connection when the one it ran on was found lost.
    async fn rows(
        &self,
        kind: Kind,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        let mut retried = false;
        loop {
            let conn = self.pool.get().await.map_err(Error::Failed)?;
            let statement = conn.statement(kind).map_err(Error::Failed)?;
            let result =
                tokio::time::timeout(QUERY_TIMEOUT, conn.client.query(statement, params)).await;
            let e = match result {
                Ok(Ok(rows)) => return Ok(rows),
                Ok(Err(e)) => e,
                Err(_) => {
                    self.pool.discard(&conn).await;
                    return Err(Error::failed(format!(
                        "{}: no answer within {QUERY_TIMEOUT:?}",
                        kind.key()
                    )));
                }
            };
            if !is_connection_error(&e) {
                return Err(Error::failed(format!("{}: {}", kind.key(), describe(&e))));
            }
            self.pool.discard(&conn).await;
            if retried {
                return Err(Error::failed(format!("{}: {}", kind.key(), describe(&e))));
            }
            tracing::info!(
                "{}: connection lost ({}), retrying once",
                kind.key(),
                describe(&e)
            );
            retried = true;
        }
    }
}

/// The PostgreSQL table.
pub(crate) struct PgTable {
    state: RwLock<Arc<State>>,
}

impl PgTable {
    /// A table for `config`; connects at the first request.
    pub(crate) fn new(config: Config) -> Self {
        Self {
            state: RwLock::new(Arc::new(State::new(config))),
        }
    }

    /// Connects once and checks every statement: the errors of the
    /// statements that cannot be used (their shape, or SQL the server
    /// refuses). A server that cannot be reached is not an error here (it
    /// may come up later): that is logged and requests fail until it does.
    pub(crate) async fn check_statements(&self) -> Result<(), Vec<ConfigError>> {
        let state = self.state();
        let conn = match state.pool.get().await {
            Ok(conn) => conn,
            Err(why) => {
                tracing::warn!("statements not checked yet: {why}");
                return Ok(());
            }
        };
        let bad = conn.bad_statements();
        if bad.is_empty() {
            return Ok(());
        }
        Err(bad
            .into_iter()
            .map(|b| state.config.error_at(b.line, b.message))
            .collect())
    }

    fn state(&self) -> Arc<State> {
        // A poisoned lock still holds a complete state: it is only ever
        // replaced whole.
        match self.state.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

impl Table for PgTable {
    fn services(&self) -> Vec<Service> {
        let state = self.state();
        let mut services = STANDARD.to_vec();
        let configured = state
            .config
            .queries
            .keys()
            .chain(state.config.fetches.keys());
        for service in configured {
            if !services.contains(service) {
                services.push(*service);
            }
        }
        services
    }

    async fn check(&self, service: Service, key: &str) -> Result<bool, Error> {
        let rows = self.state().rows(Kind::Query(service), &[&key]).await?;
        Ok(!rows.is_empty())
    }

    async fn lookup(&self, service: Service, key: &str) -> Result<Option<String>, Error> {
        let kind = Kind::Query(service);
        let rows = self.state().rows(kind, &[&key]).await?;
        value::lookup_value(service, &rows)
            .map_err(|e| Error::failed(format!("{}: {e}", kind.key())))
    }

    async fn fetch(&self, service: Service) -> Result<Option<String>, Error> {
        let state = self.state();
        let (Some(fetch), Some(list)) = (
            state.config.fetches.get(&service),
            state.lists.get(&service),
        ) else {
            return Err(Error::failed(format!("no fetch_{service} configured")));
        };
        if !lock(list).stale(fetch) {
            return Ok(lock(list).take());
        }
        let kind = Kind::Fetch(service);
        let rows = state.rows(kind, &[]).await?;
        let values = value::fetch_values(&rows)
            .map_err(|e| Error::failed(format!("{}: {e}", kind.key())))?;
        let mut list = lock(list);
        *list = List {
            values,
            next: 0,
            loaded: Some(Instant::now()),
            served: 0,
        };
        Ok(list.take())
    }

    async fn update(&self) -> Result<(), Error> {
        let path = self.state().config.path.clone();
        let config = Config::load(&path).map_err(|e| Error::failed(e.to_string()))?;
        let fresh = Arc::new(State::new(config));
        match self.state.write() {
            Ok(mut guard) => *guard = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        tracing::info!(path = %path.display(), "configuration reloaded");
        Ok(())
    }
}

fn lock(list: &Mutex<List>) -> std::sync::MutexGuard<'_, List> {
    // The list is replaced whole or advanced by one step: a poisoned lock
    // still holds a usable list.
    list.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
