//! A small pool of PostgreSQL connections, each with every statement of
//! `sql.rs` prepared once, when it connects.
//!
//! A request takes one connection for itself (a free one if any, else it
//! waits for the next in turn), so that an operation made of several
//! statements can run them in one transaction. A connection found closed
//! (the server restarted, the network failed) is dropped and the next
//! request on its slot connects again; after a failed attempt a slot
//! answers at once with that failure for [`RETRY_AFTER`], so requests fail
//! fast (the daemon retries them later) while the server is away.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls, Statement};

use crate::sql::Q;

/// How long a slot whose connection attempt failed answers with that
/// failure before it tries again.
pub(crate) const RETRY_AFTER: Duration = Duration::from_millis(500);

/// One open connection and its statements.
pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: HashMap<Q, Statement>,
}

impl Conn {
    /// The prepared statement `q`.
    pub(crate) fn statement(&self, q: Q) -> &Statement {
        // Every statement of Q::ALL is prepared before a Conn exists.
        &self.statements[&q]
    }
}

/// A slot: its connection, or when and why the last attempt failed.
#[derive(Default)]
struct Slot {
    conn: Option<Conn>,
    failed: Option<(Instant, String)>,
}

/// A connection taken from the pool, for one request.
pub(crate) struct Taken<'a>(MutexGuard<'a, Slot>);

impl Taken<'_> {
    /// Drops the connection after an error that showed it unusable; the
    /// slot connects again on its next use.
    pub(crate) fn discard(mut self) {
        self.0.conn = None;
    }
}

impl Deref for Taken<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        // A Taken is only built around a connected slot.
        self.0.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for Taken<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.0.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

/// The pool.
pub(crate) struct Pool {
    conninfo: tokio_postgres::Config,
    schema: String,
    slots: Vec<Mutex<Slot>>,
    next: AtomicUsize,
}

impl Pool {
    /// A pool of `size` connections to `conninfo`, not connected yet.
    pub(crate) fn new(conninfo: tokio_postgres::Config, schema: &str, size: usize) -> Self {
        Self {
            conninfo,
            schema: schema.to_owned(),
            slots: (0..size.max(1))
                .map(|_| Mutex::new(Slot::default()))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// A connection of its own for one request: a free slot, else the
    /// next one in turn once it is free; connects the slot when it has no
    /// connection (or answers its last failure, for [`RETRY_AFTER`]).
    pub(crate) async fn get(&self) -> Result<Taken<'_>, String> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.slots.len();
        let free = (0..n).find_map(|i| self.slots[(start + i) % n].try_lock().ok());
        let mut slot = match free {
            Some(slot) => slot,
            None => self.slots[start % n].lock().await,
        };
        if slot.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            tracing::warn!("connection lost, reconnecting");
            slot.conn = None;
        }
        if slot.conn.is_none() {
            if let Some((at, why)) = &slot.failed {
                if at.elapsed() < RETRY_AFTER {
                    return Err(why.clone());
                }
            }
            match self.connect().await {
                Ok(conn) => {
                    slot.conn = Some(conn);
                    slot.failed = None;
                }
                Err(why) => {
                    slot.failed = Some((Instant::now(), why.clone()));
                    return Err(why);
                }
            }
        }
        Ok(Taken(slot))
    }

    /// Runs `sql` (several statements) on a connection of its own, before
    /// the pool is used: the statements of `sql.rs` need the schema.
    pub(crate) async fn setup(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        let client = self.open().await?;
        client.batch_execute(sql).await
    }

    async fn open(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.conninfo.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!("connection closed: {}", describe(&e));
            }
        });
        Ok(client)
    }

    /// Opens a connection and prepares every statement on it.
    async fn connect(&self) -> Result<Conn, String> {
        let client = self
            .open()
            .await
            .map_err(|e| format!("cannot connect: {}", describe(&e)))?;
        let mut statements = HashMap::new();
        for q in Q::ALL {
            let statement = client
                .prepare(&q.sql(&self.schema))
                .await
                .map_err(|e| format!("cannot prepare {q:?}: {}", describe(&e)))?;
            statements.insert(q, statement);
        }
        Ok(Conn { client, statements })
    }
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
