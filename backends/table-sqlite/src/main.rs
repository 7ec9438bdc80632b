//! `table-sqlite CONFIG`: an SQLite database as a proc-exec table, with the
//! configuration keys of OpenSMTPD's table-sqlite.
//!
//! ```text
//! table db proc-exec "table-sqlite /etc/mail/sqlite.conf"
//! ```
//!
//! The schema is the administrator's: each service has its own query
//! (`query_alias`, `query_credentials`, ...; see [`config`]) whose one `?`
//! parameter is the lookup key. `check` is "the query returns a row";
//! `lookup` shapes the rows as the service wants them (aliases and
//! mailaddrmap join every row with `", "`, credentials and userinfo join
//! the columns with `:`, or take the value whole from a one-column query);
//! `fetch source` cycles through the rows of
//! `fetch_source`, re-queried after `fetch_source_expire` seconds or
//! `fetch_source_refresh` fetches. A service without a query answers
//! `error`, as in OpenSMTPD. `update` re-reads the configuration and
//! reopens the database; if that fails the old configuration stays in use.
//!
//! Errors in the configuration (a bad key, a statement SQLite refuses, a
//! query returning the wrong number of columns) are reported as
//! `FILE:LINE: message` on stderr before the backend registers, and it
//! exits non-zero.

mod config;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use smtpd_sdk::backend::cli;
use smtpd_sdk::table::{self, Error, Service, Table};

use crate::store::Store;

const USAGE: &str = "usage: table-sqlite [-f] CONFIG\n\
    Serves an SQLite database over table protocol 0.1; CONFIG holds dbpath and \
    the query_* keys of OpenSMTPD's table-sqlite.";

/// The table: the configuration file and the store built from it.
struct SqliteTable {
    path: PathBuf,
    /// Replaced whole on `update`; requests clone the `Arc` first, so a
    /// request in flight finishes on the store it started with.
    store: RwLock<Arc<Store>>,
}

impl SqliteTable {
    fn open(path: PathBuf) -> Result<Self, String> {
        let store = Self::load(&path)?;
        Ok(Self {
            path,
            store: RwLock::new(Arc::new(store)),
        })
    }

    fn load(path: &std::path::Path) -> Result<Store, String> {
        let config = config::load(path).map_err(|e| e.to_string())?;
        Store::open(&config).map_err(|e| e.to_string())
    }

    fn store(&self) -> Arc<Store> {
        match self.store.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

impl Table for SqliteTable {
    fn services(&self) -> Vec<Service> {
        let mut services: Vec<Service> = config::base_services().collect();
        for s in self.store().services() {
            if !services.contains(&s) {
                services.push(s);
            }
        }
        services
    }

    async fn check(&self, service: Service, key: &str) -> Result<bool, Error> {
        self.store()
            .check(service, key)
            .await
            .map_err(Error::Failed)
    }

    async fn lookup(&self, service: Service, key: &str) -> Result<Option<String>, Error> {
        self.store()
            .lookup(service, key)
            .await
            .map_err(Error::Failed)
    }

    async fn fetch(&self, service: Service) -> Result<Option<String>, Error> {
        self.store().fetch(service).await.map_err(Error::Failed)
    }

    async fn update(&self) -> Result<(), Error> {
        let fresh = Arc::new(Self::load(&self.path).map_err(Error::Failed)?);
        match self.store.write() {
            Ok(mut guard) => *guard = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        tracing::info!(path = %self.path.display(), "configuration reloaded");
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let path = match cli::start("table-sqlite", USAGE) {
        Ok(path) => path,
        Err(code) => return code,
    };
    match SqliteTable::open(path) {
        Ok(t) => table::run(t).await,
        Err(e) => cli::refuse("table-sqlite", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn update_rereads_the_configuration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db.sqlite");
        let conn = rusqlite::Connection::open(&db).expect("create");
        conn.execute_batch(
            "CREATE TABLE domains (name TEXT);
             INSERT INTO domains VALUES ('example.org');",
        )
        .expect("schema");
        let conf = dir.path().join("sqlite.conf");
        let first = format!("dbpath {}\n", db.display());
        std::fs::write(&conf, &first).expect("write");
        let t = SqliteTable::open(conf.clone()).expect("open");
        assert_eq!(t.services().len(), 9, "OpenSMTPD's services");
        assert!(t.check(Service::Domain, "example.org").await.is_err());

        let second = format!("{first}query_domain SELECT name FROM domains WHERE name = ?\n");
        std::fs::write(&conf, &second).expect("write");
        t.update().await.expect("update");
        assert!(t
            .check(Service::Domain, "example.org")
            .await
            .expect("check"));

        std::fs::write(&conf, format!("{first}query_domain SELECT 1\n")).expect("write");
        let e = t.update().await.expect_err("no parameter");
        assert!(
            format!("{e}").contains("sqlite.conf:2: query_domain"),
            "{e}"
        );
        let kept = t.check(Service::Domain, "example.org").await;
        assert_eq!(kept, Ok(true), "the old configuration stays in use");
    }
}
