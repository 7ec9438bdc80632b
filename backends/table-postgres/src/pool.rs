//! A small pool of PostgreSQL connections, each with every configured
//! statement prepared once, when it connects.
//!
//! Requests take the connections in turn; each connection pipelines the
//! queries sent on it, so many requests are in flight at once. A
//! connection found closed (the server restarted, the network failed) is
//! dropped and the next request on its slot connects again; after a failed
//! attempt a slot answers at once with that failure for [`RETRY_AFTER`],
//! so requests fail fast (and the daemon retries them later) while the
//! server is away. `table.rs` calls [`Pool::get`] and [`Pool::discard`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smtpd_sdk::table::Service;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, Statement};

use crate::config::{self, Config};
use crate::value::column_type_ok;

/// How long a slot whose connection attempt failed answers with that
/// failure before it tries again.
pub(crate) const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Which statement: a service's query or its fetch list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Query(Service),
    Fetch(Service),
}

impl Kind {
    /// The configuration key of the statement.
    pub(crate) fn key(self) -> String {
        match self {
            Self::Query(s) => format!("query_{s}"),
            Self::Fetch(s) => format!("fetch_{s}"),
        }
    }
}

/// A statement to prepare: its SQL and its line in the configuration.
#[derive(Debug, Clone)]
struct Spec {
    kind: Kind,
    sql: String,
    line: usize,
}

/// Why a statement cannot be used: its line in the configuration and the
/// reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadStatement {
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// One open connection and its statements.
pub(crate) struct Conn {
    slot: usize,
    pub(crate) client: Client,
    statements: HashMap<Kind, Result<Statement, BadStatement>>,
}

impl Conn {
    /// The prepared statement of `kind`; an error when it could not be
    /// prepared, or is not configured.
    pub(crate) fn statement(&self, kind: Kind) -> Result<&Statement, String> {
        match self.statements.get(&kind) {
            Some(Ok(statement)) => Ok(statement),
            Some(Err(bad)) => Err(format!("{}: {}", kind.key(), bad.message)),
            None => Err(format!("no {} configured", kind.key())),
        }
    }

    /// The statements that could not be prepared.
    pub(crate) fn bad_statements(&self) -> Vec<BadStatement> {
        let mut bad: Vec<_> = self
            .statements
            .values()
            .filter_map(|s| s.as_ref().err().cloned())
            .collect();
        bad.sort_by_key(|b| b.line);
        bad
    }
}

/// A slot: its connection, or when and why the last attempt failed.
#[derive(Default)]
struct Slot {
    conn: Option<Arc<Conn>>,
    failed: Option<(Instant, String)>,
}

/// The pool.
pub(crate) struct Pool {
    conninfo: tokio_postgres::Config,
    specs: Vec<Spec>,
    slots: Vec<Mutex<Slot>>,
    next: AtomicUsize,
}

impl Pool {
    /// A pool for `config`, not connected yet.
    pub(crate) fn new(config: &Config) -> Self {
        let queries = config.queries.iter().map(|(s, q)| Spec {
            kind: Kind::Query(*s),
            sql: q.sql.clone(),
            line: q.line,
        });
        let fetches = config.fetches.iter().map(|(s, f)| Spec {
            kind: Kind::Fetch(*s),
            sql: f.sql.clone(),
            line: f.line,
        });
        Self {
            conninfo: config.conninfo.clone(),
            specs: queries.chain(fetches).collect(),
            slots: (0..config.connections)
                .map(|_| Mutex::new(Slot::default()))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// A connection, the slots taken in turn; connects the slot when it
    /// has none (or answers its last failure, for [`RETRY_AFTER`]).
    pub(crate) async fn get(&self) -> Result<Arc<Conn>, String> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[index].lock().await;
        if let Some(conn) = &slot.conn {
            if !conn.client.is_closed() {
                return Ok(Arc::clone(conn));
            }
            tracing::warn!(slot = index, "connection lost, reconnecting");
            slot.conn = None;
        }
        if let Some((at, why)) = &slot.failed {
            if at.elapsed() < RETRY_AFTER {
                return Err(why.clone());
            }
        }
        match self.connect(index).await {
            Ok(conn) => {
                let conn = Arc::new(conn);
                slot.conn = Some(Arc::clone(&conn));
                slot.failed = None;
                Ok(conn)
            }
            Err(why) => {
                slot.failed = Some((Instant::now(), why.clone()));
                Err(why)
            }
        }
    }

    /// Drops `conn` from its slot (if it is still there), after an error
    /// that showed it unusable.
    pub(crate) async fn discard(&self, conn: &Arc<Conn>) {
        let mut slot = self.slots[conn.slot].lock().await;
        if slot.conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            slot.conn = None;
        }
    }

    /// Opens a connection and prepares every statement on it (pipelined).
    async fn connect(&self, slot: usize) -> Result<Conn, String> {
        let (client, connection) = self
            .conninfo
            .connect(NoTls)
            .await
            .map_err(|e| format!("cannot connect: {}", describe(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(slot, "connection closed: {}", describe(&e));
            }
        });
        let prepared =
            futures::future::join_all(self.specs.iter().map(|spec| prepare(&client, spec))).await;
        let mut statements = HashMap::new();
        for (spec, result) in self.specs.iter().zip(prepared) {
            let result = match result {
                Ok(statement) => Ok(statement),
                Err(Failure::Connection(why)) => return Err(why),
                Err(Failure::Statement(message)) => Err(BadStatement {
                    line: spec.line,
                    message,
                }),
            };
            statements.insert(spec.kind, result);
        }
        tracing::debug!(slot, "connected");
        Ok(Conn {
            slot,
            client,
            statements,
        })
    }
}

enum Failure {
    Connection(String),
    Statement(String),
}

/// Prepares one statement and checks its shape: the parameters (the key
/// for a query, none for a fetch list) and the columns (their number and
/// types).
async fn prepare(client: &Client, spec: &Spec) -> Result<Statement, Failure> {
    let prepared = match spec.kind {
        Kind::Query(_) => client.prepare_typed(&spec.sql, &[Type::TEXT]).await,
        Kind::Fetch(_) => client.prepare(&spec.sql).await,
    };
    let statement = prepared.map_err(|e| {
        if is_connection_error(&e) {
            Failure::Connection(describe(&e))
        } else {
            Failure::Statement(describe(&e))
        }
    })?;
    let wanted = match spec.kind {
        Kind::Query(service) => config::columns(service),
        Kind::Fetch(_) => &[1],
    };
    if let Kind::Fetch(_) = spec.kind {
        if !statement.params().is_empty() {
            return Err(Failure::Statement(format!(
                "takes {} parameters, a fetch list takes none",
                statement.params().len()
            )));
        }
    }
    let columns = statement.columns();
    if !wanted.contains(&columns.len()) {
        let wanted: Vec<String> = wanted.iter().map(ToString::to_string).collect();
        return Err(Failure::Statement(format!(
            "returns {} columns, {} wanted",
            columns.len(),
            wanted.join(" or ")
        )));
    }
    if let Some((i, c)) = columns
        .iter()
        .enumerate()
        .find(|(_, c)| !column_type_ok(c.type_()))
    {
        return Err(Failure::Statement(format!(
            "column {} ({}) is of type {}: cast it to text",
            i + 1,
            c.name(),
            c.type_()
        )));
    }
    Ok(statement)
}

/// Whether `e` means the connection is unusable: lost, closed, or a
/// server that is shutting down or restarting (SQLSTATE classes 08 and
/// 57P0x).
pub(crate) fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || code.starts_with("57P0")
        }
        // No SQLSTATE: an I/O error or a protocol failure.
        None => e.as_db_error().is_none(),
    }
}

/// `e` with its cause (tokio-postgres's own text is often just "db
/// error" or "error connecting to server").
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
