//! Tables: the one interface through which the rules, delivery, AUTH and the
//! relay ask for data, whatever serves it.
//!
//! A [`Table`] answers `check`, `lookup` and `fetch` for a [`Service`] and can
//! be told to `update`. Tables the daemon serves itself (inline, `file:`, the
//! built-in ones and `getpwnam`, in `static_table.rs`) do the
//! service-specific matching of tables.md section 1.4 themselves, with the
//! comparisons of `matching.rs`; proc-exec tables (`proc_exec.rs`) send the
//! request to their program through the child supervisor in `crate::proc`
//! and the program decides. [`Tables`]
//! holds one live table per configured table, indexed by the configuration's
//! `TableId`.
//!
//! Every failure is an [`Error`], and every `Error` is temporary: callers
//! turn it into a 4xx reply or a later retry, never into a 5xx or a miss.

pub mod bench;
mod build;
mod matching;
pub mod proc_exec;
pub(crate) mod static_getpwnam;
mod static_host;
pub mod static_table;
#[cfg(test)]
pub(crate) mod unavailable;

use std::sync::Arc;

use async_trait::async_trait;
pub use smtpd_sdk::proto::table::Service;

pub use build::{build, BuildError, BuildFailure, BuildOptions, TABLE_REQUEST_TIMEOUT};
// The mailaddr comparison, for the listeners' `senders` check.
pub(crate) use matching::mailaddr_matches;
pub use proc_exec::ProcExecTable;

/// Why a table could not answer. Always a temporary failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend answered `error` (with its message, if any).
    #[error("table {table}: backend error{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Backend {
        /// The table's name.
        table: String,
        /// What the backend said.
        message: Option<String>,
    },
    /// No answer within the request timeout.
    #[error("table {table}: no answer within {seconds} s")]
    Timeout {
        /// The table's name.
        table: String,
        /// The timeout that expired.
        seconds: u64,
    },
    /// The backend is not running (starting, dead, restarting, overloaded).
    #[error("table {table}: backend unavailable: {reason}")]
    Unavailable {
        /// The table's name.
        table: String,
        /// Why.
        reason: String,
    },
    /// The key cannot be sent (over 1023 bytes, or holding `\r` or `\n`).
    #[error("table {table}: invalid key: {reason}")]
    InvalidKey {
        /// The table's name.
        table: String,
        /// Why.
        reason: &'static str,
    },
    /// The value found does not have the service's format (tables.md §2).
    #[error("table {table}: invalid {service} value: {reason}")]
    InvalidValue {
        /// The table's name.
        table: String,
        /// The service asked for.
        service: Service,
        /// Why.
        reason: String,
    },
    /// The table's content cannot be loaded: a `file:` table whose file
    /// became unreadable or malformed (on update; the old content stays in
    /// use), or a kind of table this daemon does not serve (at start-up).
    #[error("table {table}: {reason}")]
    Load {
        /// The table's name.
        table: String,
        /// What went wrong, with `file:line` when a file is at fault.
        reason: String,
    },
    /// The table cannot serve this service or operation.
    #[error("table {table}: {service} not supported by this table")]
    Unsupported {
        /// The table's name.
        table: String,
        /// The service asked for.
        service: Service,
    },
}

/// Counters of a table served by a program, for `smtpctl show tables`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcStats {
    /// The running child's pid, if one runs.
    pub pid: Option<u32>,
    /// Requests sent since start-up.
    pub requests: u64,
    /// Requests that failed (error answers, timeouts, unavailable backend).
    pub errors: u64,
    /// Times the child was restarted.
    pub restarts: u64,
    /// 99th percentile of answer latency over recent requests, in microseconds.
    pub p99_micros: Option<u64>,
}

/// A live table.
#[async_trait]
pub trait Table: Send + Sync {
    /// The table's configured name.
    fn name(&self) -> &str;

    /// How it is served, for `smtpctl show tables` (`static`, `file:/path`,
    /// `proc-exec "cmd"`, ...).
    fn backend(&self) -> String;

    /// Whether `key` matches an entry, with the service's comparison.
    async fn check(&self, service: Service, key: &str) -> Result<bool, Error>;

    /// The value for `key`, if any. The caller parses it per service.
    async fn lookup(&self, service: Service, key: &str) -> Result<Option<String>, Error>;

    /// The next value, round-robin (relay `src` and `host` tables).
    async fn fetch(&self, service: Service) -> Result<Option<String>, Error> {
        Err(Error::Unsupported {
            table: self.name().to_owned(),
            service,
        })
    }

    /// Reloads the content (static) or forwards `update` (programs).
    async fn update(&self) -> Result<(), Error>;

    /// Counters, for tables served by a program.
    fn proc_stats(&self) -> Option<ProcStats> {
        None
    }

    /// For a table served by a program, the services the running program
    /// registered (a table that registered `auth` is asked `check|auth`
    /// instead of a `credentials` lookup, SPEC.md 2.1); `None` otherwise, or
    /// while the program is down.
    fn registered_services(&self) -> Option<Vec<Service>> {
        None
    }

    /// Stops serving, at daemon shutdown: a table served by a program
    /// closes the program's stdin and returns once it has exited (SIGTERM
    /// after 10 s, SIGKILL 5 s later, SPEC.md section 1.1). Static tables
    /// have nothing to stop.
    async fn shutdown(&self) {}
}

/// The live tables of a configuration, indexed like `Config::tables`.
#[derive(Clone, Default)]
pub struct Tables {
    tables: Vec<Arc<dyn Table>>,
}

impl Tables {
    /// Wraps tables given in `Config::tables` order.
    pub fn new(tables: Vec<Arc<dyn Table>>) -> Self {
        Self { tables }
    }

    /// The table of a configuration `TableId`.
    pub fn get(&self, id: crate::config::TableId) -> &Arc<dyn Table> {
        &self.tables[id.index()]
    }

    /// The table with this name, if any.
    pub fn by_name(&self, name: &str) -> Option<&Arc<dyn Table>> {
        self.tables.iter().find(|t| t.name() == name)
    }

    /// Every table, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Table>> {
        self.tables.iter()
    }

    /// Shuts every table down at once and returns when all are stopped.
    pub async fn shutdown(&self) {
        futures::future::join_all(self.tables.iter().map(|t| t.shutdown())).await;
    }
}
