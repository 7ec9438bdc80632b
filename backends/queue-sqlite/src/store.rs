//! The queue in one SQLite file: the schema, the durability rules and
//! every operation of queue protocol 0.1, synchronous (the caller runs
//! them off its event loop).
//!
//! Three tables: `messages` (id, size so far, committed and corrupt
//! flags), `chunks` (a row per chunk the daemon wrote, at most 32 KiB,
//! keyed by message and offset) and `envelopes` (the blob and its message).
//! Envelope ids are stored with their top bit flipped, so that SQLite's
//! signed integers sort them as the protocol compares them (as unsigned
//! numbers) and a walk is one indexed range query. A read touches only the
//! chunks it needs: memory stays bounded by the length asked for, whatever
//! the message's size.
//!
//! The database runs in WAL mode. Operations whose `ok` promises
//! durability (SPEC.md 4.7: commit, an envelope created on a committed
//! message, update, delete, corrupt) commit with `synchronous=FULL`, which
//! fsyncs the log; the others (create, write, an envelope of an
//! uncommitted message) commit with `synchronous=NORMAL`, and become
//! durable with the next full commit, which syncs the same log. At open,
//! messages left uncommitted by an earlier run are deleted: the daemon has
//! already failed their transactions.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::config::Config;

/// Why an operation failed; sent to the daemon as the `error` message.
pub(crate) type Failure = String;

/// How many random ids are tried before giving up.
const ID_ATTEMPTS: usize = 64;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    msgid INTEGER PRIMARY KEY,
    size INTEGER NOT NULL DEFAULT 0,
    committed INTEGER NOT NULL DEFAULT 0,
    corrupt INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS chunks (
    msgid INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (msgid, offset)
);
CREATE TABLE IF NOT EXISTS envelopes (
    evkey INTEGER PRIMARY KEY,
    msgid INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS envelopes_by_message ON envelopes (msgid);
";

/// An envelope id as stored: the top bit flipped, so that signed order is
/// the protocol's unsigned order.
fn evkey(evpid: u64) -> i64 {
    (evpid ^ (1 << 63)) as i64
}

fn evpid_of(evkey: i64) -> u64 {
    (evkey as u64) ^ (1 << 63)
}

/// What a message is, as far as an operation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MessageRow {
    size: u64,
    committed: bool,
    corrupt: bool,
}

/// The open database.
pub(crate) struct Store {
    conn: Connection,
    /// Whether the connection commits with `synchronous=FULL` now.
    full_sync: bool,
    random: u64,
}

fn failed(what: &str) -> impl Fn(rusqlite::Error) -> Failure + '_ {
    move |e| format!("{what}: {e}")
}

impl Store {
    /// Opens (creating if needed) the database of `config`, sets WAL mode
    /// and deletes messages left uncommitted.
    pub(crate) fn open(config: &Config) -> Result<Self, Failure> {
        let path = config.dbpath.display().to_string();
        let conn = Connection::open(&config.dbpath).map_err(|e| format!("{path}: {e}"))?;
        conn.busy_timeout(config.busy_timeout)
            .map_err(|e| format!("{path}: {e}"))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| format!("{path}: journal_mode: {e}"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!(
                "{path}: cannot use WAL mode (journal_mode is {mode})"
            ));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| format!("{path}: synchronous: {e}"))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| format!("{path}: schema: {e}"))?;
        let mut store = Self {
            conn,
            full_sync: true,
            random: RandomState::new().build_hasher().finish() | 1,
        };
        let removed = store.remove_uncommitted()?;
        if removed > 0 {
            tracing::info!("{removed} uncommitted message(s) of an earlier run removed");
        }
        Ok(store)
    }

    fn remove_uncommitted(&mut self) -> Result<usize, Failure> {
        self.sync(true)?;
        let tx = self.conn.transaction().map_err(failed("cleanup"))?;
        tx.execute(
            "DELETE FROM chunks WHERE msgid IN (SELECT msgid FROM messages WHERE committed = 0)",
            [],
        )
        .map_err(failed("cleanup"))?;
        tx.execute(
            "DELETE FROM envelopes WHERE msgid IN (SELECT msgid FROM messages WHERE committed = 0)",
            [],
        )
        .map_err(failed("cleanup"))?;
        let n = tx
            .execute("DELETE FROM messages WHERE committed = 0", [])
            .map_err(failed("cleanup"))?;
        tx.commit().map_err(failed("cleanup"))?;
        Ok(n)
    }

    /// Sets how the next transactions commit: fsynced (`FULL`) or not.
    fn sync(&mut self, full: bool) -> Result<(), Failure> {
        if self.full_sync != full {
            let mode = if full { "FULL" } else { "NORMAL" };
            self.conn
                .pragma_update(None, "synchronous", mode)
                .map_err(failed("synchronous"))?;
            self.full_sync = full;
        }
        Ok(())
    }

    /// A random non-zero 32-bit number (xorshift, seeded at random).
    fn draw(&mut self) -> u32 {
        loop {
            let mut x = self.random;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.random = x;
            let n = (x >> 16) as u32;
            if n != 0 {
                return n;
            }
        }
    }

    fn message(&self, msgid: u32) -> Result<Option<MessageRow>, Failure> {
        self.conn
            .query_row(
                "SELECT size, committed, corrupt FROM messages WHERE msgid = ?1",
                [msgid],
                |row| {
                    Ok(MessageRow {
                        size: row.get::<_, i64>(0)? as u64,
                        committed: row.get(1)?,
                        corrupt: row.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(failed("message"))
    }

    /// `message-create`.
    pub(crate) fn message_create(&mut self) -> Result<u32, Failure> {
        self.sync(false)?;
        for _ in 0..ID_ATTEMPTS {
            let msgid = self.draw();
            let added = self
                .conn
                .execute(
                    "INSERT OR IGNORE INTO messages (msgid) VALUES (?1)",
                    [msgid],
                )
                .map_err(failed("message-create"))?;
            if added == 1 {
                return Ok(msgid);
            }
        }
        Err("message-create: no free message id".to_owned())
    }

    /// `message-write`: appends a chunk at the current end.
    pub(crate) fn message_write(
        &mut self,
        msgid: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<(), Failure> {
        self.sync(false)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed("message-write"))?;
        let size: Option<(i64, bool)> = tx
            .query_row(
                "SELECT size, committed FROM messages WHERE msgid = ?1",
                [msgid],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(failed("message-write"))?;
        match size {
            None => return Err(format!("message-write: no message {msgid:08x}")),
            Some((_, true)) => {
                return Err(format!("message-write: message {msgid:08x} is committed"))
            }
            Some((size, false)) if size as u64 != offset => {
                return Err(format!(
                "message-write: message {msgid:08x}: offset {offset}, but {size} bytes are stored"
            ))
            }
            Some(_) => {}
        }
        tx.execute(
            "INSERT INTO chunks (msgid, offset, data) VALUES (?1, ?2, ?3)",
            params![msgid, offset as i64, data],
        )
        .map_err(failed("message-write"))?;
        tx.execute(
            "UPDATE messages SET size = size + ?2 WHERE msgid = ?1",
            params![msgid, data.len() as i64],
        )
        .map_err(failed("message-write"))?;
        tx.commit().map_err(failed("message-write"))
    }

    /// `message-commit`: durable once it returns.
    pub(crate) fn message_commit(&mut self, msgid: u32, size: u64) -> Result<(), Failure> {
        match self.message(msgid)? {
            None => return Err(format!("message-commit: no message {msgid:08x}")),
            Some(m) if m.committed => {
                return Err(format!("message-commit: message {msgid:08x} is committed"))
            }
            Some(m) if m.size != size => {
                return Err(format!(
                "message-commit: message {msgid:08x}: commit of {size} bytes, but {} are stored",
                m.size
            ))
            }
            Some(_) => {}
        }
        self.sync(true)?;
        self.conn
            .execute(
                "UPDATE messages SET committed = 1 WHERE msgid = ?1 AND committed = 0",
                [msgid],
            )
            .map_err(failed("message-commit"))?;
        Ok(())
    }

    /// `message-read`: up to `length` bytes from `offset`; `None` when no
    /// such committed message is readable.
    pub(crate) fn message_read(
        &mut self,
        msgid: u32,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, Failure> {
        let m = match self.message(msgid)? {
            Some(m) if m.committed && !m.corrupt => m,
            _ => return Ok(None),
        };
        let end = m.size.min(offset.saturating_add(length));
        if offset >= end {
            return Ok(Some(Vec::new()));
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT offset, data FROM chunks WHERE msgid = ?1
                 AND offset >= (SELECT COALESCE(MAX(offset), 0) FROM chunks
                                WHERE msgid = ?1 AND offset <= ?2)
                 AND offset < ?3 ORDER BY offset",
            )
            .map_err(failed("message-read"))?;
        let mut rows = stmt
            .query(params![msgid, offset as i64, end as i64])
            .map_err(failed("message-read"))?;
        while let Some(row) = rows.next().map_err(failed("message-read"))? {
            let start = row.get::<_, i64>(0).map_err(failed("message-read"))? as u64;
            let data = row.get_ref(1).map_err(failed("message-read"))?;
            let data = data.as_blob().map_err(|e| format!("message-read: {e}"))?;
            let from = offset.saturating_sub(start) as usize;
            let to = ((end - start) as usize).min(data.len());
            if from < to {
                out.extend_from_slice(&data[from..to]);
            }
        }
        if out.len() as u64 != end - offset {
            return Err(format!(
                "message-read: message {msgid:08x}: {} bytes found for {}",
                out.len(),
                end - offset
            ));
        }
        Ok(Some(out))
    }

    /// `message-delete`: the message, its chunks and its envelopes.
    pub(crate) fn message_delete(&mut self, msgid: u32) -> Result<(), Failure> {
        self.sync(true)?;
        let tx = self.conn.transaction().map_err(failed("message-delete"))?;
        for sql in [
            "DELETE FROM envelopes WHERE msgid = ?1",
            "DELETE FROM chunks WHERE msgid = ?1",
            "DELETE FROM messages WHERE msgid = ?1",
        ] {
            tx.execute(sql, [msgid]).map_err(failed("message-delete"))?;
        }
        tx.commit().map_err(failed("message-delete"))
    }

    /// `message-corrupt`: marks the message; it and its envelopes stay in
    /// the file for an administrator, out of every read, load and walk.
    pub(crate) fn message_corrupt(&mut self, msgid: u32) -> Result<bool, Failure> {
        self.sync(true)?;
        let n = self
            .conn
            .execute("UPDATE messages SET corrupt = 1 WHERE msgid = ?1", [msgid])
            .map_err(failed("message-corrupt"))?;
        Ok(n == 1)
    }

    /// `envelope-create`: durable at once when the message is committed.
    pub(crate) fn envelope_create(&mut self, msgid: u32, data: &[u8]) -> Result<u64, Failure> {
        let m = match self.message(msgid)? {
            Some(m) if !m.corrupt => m,
            Some(_) => return Err(format!("envelope-create: message {msgid:08x} is corrupt")),
            None => return Err(format!("envelope-create: no message {msgid:08x}")),
        };
        self.sync(m.committed)?;
        for _ in 0..ID_ATTEMPTS {
            let evpid = (u64::from(msgid) << 32) | u64::from(self.draw());
            let added = self
                .conn
                .execute(
                    "INSERT OR IGNORE INTO envelopes (evkey, msgid, data) VALUES (?1, ?2, ?3)",
                    params![evkey(evpid), msgid, data],
                )
                .map_err(failed("envelope-create"))?;
            if added == 1 {
                return Ok(evpid);
            }
        }
        Err("envelope-create: no free envelope id".to_owned())
    }

    /// `envelope-update`: `false` when no such visible envelope exists.
    pub(crate) fn envelope_update(&mut self, evpid: u64, data: &[u8]) -> Result<bool, Failure> {
        self.sync(true)?;
        let n = self
            .conn
            .execute(
                "UPDATE envelopes SET data = ?2 WHERE evkey = ?1 AND msgid IN
                 (SELECT msgid FROM messages WHERE committed = 1 AND corrupt = 0)",
                params![evkey(evpid), data],
            )
            .map_err(failed("envelope-update"))?;
        Ok(n == 1)
    }

    /// `envelope-load`.
    pub(crate) fn envelope_load(&mut self, evpid: u64) -> Result<Option<Vec<u8>>, Failure> {
        self.conn
            .prepare_cached(
                "SELECT e.data FROM envelopes e JOIN messages m ON m.msgid = e.msgid
                 WHERE e.evkey = ?1 AND m.committed = 1 AND m.corrupt = 0",
            )
            .and_then(|mut stmt| stmt.query_row([evkey(evpid)], |row| row.get(0)).optional())
            .map_err(failed("envelope-load"))
    }

    /// `envelope-delete`.
    pub(crate) fn envelope_delete(&mut self, evpid: u64) -> Result<(), Failure> {
        self.sync(true)?;
        self.conn
            .execute("DELETE FROM envelopes WHERE evkey = ?1", [evkey(evpid)])
            .map_err(failed("envelope-delete"))?;
        Ok(())
    }

    /// `envelope-walk`: the visible envelope with the smallest id above
    /// `after`.
    pub(crate) fn envelope_walk(&mut self, after: u64) -> Result<Option<(u64, Vec<u8>)>, Failure> {
        self.conn
            .prepare_cached(
                "SELECT e.evkey, e.data FROM envelopes e JOIN messages m ON m.msgid = e.msgid
                 WHERE e.evkey > ?1 AND m.committed = 1 AND m.corrupt = 0
                 ORDER BY e.evkey LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row([evkey(after)], |row| {
                    Ok((evpid_of(row.get(0)?), row.get(1)?))
                })
                .optional()
            })
            .map_err(failed("envelope-walk"))
    }
}

#[cfg(test)]
mod tests;
