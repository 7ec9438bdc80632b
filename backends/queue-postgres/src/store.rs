//! [`PgQueue`]: the queue operations of protocol 0.1, with the `lease`
//! capability, over the tables of `sql.rs`.
//!
//! Each operation is one statement (its own transaction, committed with
//! the server's `synchronous_commit`), except `envelope-delete`, which
//! locks the message row, deletes the envelope and, when it was the
//! message's last, the message, in one transaction: two daemons deleting
//! the last two envelopes of a message at once cannot both leave it
//! behind. Message ids are drawn at random below 2^31, envelope ids at
//! random under their message; a taken id is drawn again.
//!
//! A failed statement is answered `error` with the server's message; one
//! that showed the connection unusable also drops the connection, which
//! the next request opens again.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use smtpd_sdk::backend::queue::{Claim, Error, EvpId, MsgId, Queue, LEASE_CAPABILITY};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::pool::{describe, is_connection_error, Pool, Taken};
use crate::sql::{self, Q};

/// The largest `length` of a `message-read` served (SPEC.md 4.4 asks for
/// 256 KiB at least).
const MAX_READ: u64 = 1 << 20;

/// How many random ids are drawn before giving up.
const ID_ATTEMPTS: usize = 32;

/// The store.
pub(crate) struct PgQueue {
    pool: Pool,
    schema: String,
    lease: bool,
    seed: AtomicU64,
}

/// A statement's failure, as answered to the daemon.
fn failed(what: &str, e: &tokio_postgres::Error) -> Error {
    Error::failed(format!("{what}: {}", describe(e)))
}

impl PgQueue {
    /// A store over `pool`, in `schema`; `lease` registers the capability.
    pub(crate) fn new(pool: Pool, schema: &str, lease: bool) -> Self {
        Self {
            pool,
            schema: schema.to_owned(),
            lease,
            seed: AtomicU64::new(0),
        }
    }

    /// Creates the schema when missing and removes messages left
    /// uncommitted for longer than `expire`.
    pub(crate) async fn prepare(&self, expire: Duration) -> Result<(), String> {
        let result = self.pool.setup(&sql::schema(&self.schema)).await;
        if let Err(e) = result {
            return Err(format!("cannot create the schema: {}", describe(&e)));
        }
        let conn = self.pool.get().await?;
        let seconds = expire.as_secs_f64();
        match conn
            .client
            .execute(conn.statement(Q::ExpireUncommitted), &[&seconds])
            .await
        {
            Ok(0) => Ok(()),
            Ok(n) => {
                tracing::info!("removed {n} message(s) left uncommitted");
                Ok(())
            }
            Err(e) => Err(format!(
                "cannot remove old uncommitted messages: {}",
                describe(&e)
            )),
        }
    }

    /// A random number (ids are unique by the primary keys; this only
    /// needs to spread them).
    fn random(&self) -> u64 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(self.seed.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        hasher.finish()
    }

    async fn conn(&self) -> Result<Taken<'_>, Error> {
        self.pool.get().await.map_err(Error::Failed)
    }

    /// Runs `q` and returns the rows changed; drops the connection when the
    /// failure showed it unusable.
    async fn execute(
        &self,
        what: &str,
        q: Q,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Error> {
        let conn = self.conn().await?;
        match conn.client.execute(conn.statement(q), params).await {
            Ok(n) => Ok(n),
            Err(e) => Err(self.fail(conn, what, &e)),
        }
    }

    /// Runs `q` and returns its rows.
    async fn query(
        &self,
        what: &str,
        q: Q,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        let conn = self.conn().await?;
        match conn.client.query(conn.statement(q), params).await {
            Ok(rows) => Ok(rows),
            Err(e) => Err(self.fail(conn, what, &e)),
        }
    }

    fn fail(&self, conn: Taken<'_>, what: &str, e: &tokio_postgres::Error) -> Error {
        if is_connection_error(e) {
            conn.discard();
        }
        failed(what, e)
    }

    /// Why a message-write or message-commit changed nothing.
    async fn why_not(&self, msgid: MsgId, what: &str, size: Option<u64>) -> Error {
        let id = i64::from(msgid.0);
        let rows = match self.query(what, Q::MessageState, &[&id]).await {
            Ok(rows) => rows,
            Err(e) => return e,
        };
        let Some(row) = rows.first() else {
            return Error::failed(format!("{what}: unknown message {msgid}"));
        };
        let (committed, corrupt, stored): (bool, bool, i64) = (row.get(0), row.get(1), row.get(2));
        if corrupt {
            Error::failed(format!("{what}: message {msgid} was moved aside"))
        } else if committed {
            Error::failed(format!("{what}: message {msgid} is already committed"))
        } else {
            let wanted = size.map_or(String::new(), |s| s.to_string());
            Error::failed(format!(
                "{what}: message {msgid} holds {stored} bytes, not {wanted}"
            ))
        }
    }

    /// A visible envelope's id and data from a walk's row.
    fn walked(rows: &[Row]) -> Option<(EvpId, Vec<u8>)> {
        rows.first().map(|row| {
            let id: i64 = row.get(0);
            (EvpId(id as u64), row.get(1))
        })
    }

    async fn delete_envelope(&self, evpid: EvpId) -> Result<(), Error> {
        const WHAT: &str = "envelope-delete";
        let msgid = i64::from(evpid.msgid().0);
        let id = evpid_param(evpid);
        let mut conn = self.conn().await?;
        let result = async {
            let lock = conn.statement(Q::LockMessage).clone();
            let delete = conn.statement(Q::DeleteEnvelope).clone();
            let empty = conn.statement(Q::DeleteEmptyMessage).clone();
            let tx = conn.client.transaction().await?;
            tx.query(&lock, &[&msgid]).await?;
            tx.execute(&delete, &[&id]).await?;
            tx.execute(&empty, &[&msgid]).await?;
            tx.commit().await
        }
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(conn, WHAT, &e)),
        }
    }
}

/// An envelope id as the `bigint` column holds it: ids above `i64::MAX`
/// are never allocated (message ids stay below 2^31).
fn evpid_param(evpid: EvpId) -> i64 {
    i64::try_from(evpid.0).unwrap_or(i64::MAX)
}

/// An offset for SQL: offsets past `i64::MAX` are past every end.
fn offset_param(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

impl Queue for PgQueue {
    fn capabilities(&self) -> Vec<String> {
        if self.lease {
            vec![LEASE_CAPABILITY.to_owned()]
        } else {
            Vec::new()
        }
    }

    async fn message_create(&self) -> Result<MsgId, Error> {
        for _ in 0..ID_ATTEMPTS {
            let id = (self.random() % 0x7fff_ffff) as u32 + 1;
            let param = i64::from(id);
            if self
                .execute("message-create", Q::CreateMessage, &[&param])
                .await?
                == 1
            {
                return Ok(MsgId(id));
            }
        }
        Err(Error::failed("message-create: no free message id found"))
    }

    async fn message_write(&self, msgid: MsgId, offset: u64, data: &[u8]) -> Result<(), Error> {
        let id = i64::from(msgid.0);
        let off = offset_param(offset);
        match self
            .execute("message-write", Q::Write, &[&id, &off, &data])
            .await?
        {
            1 => Ok(()),
            _ => Err(self.why_not(msgid, "message-write", Some(offset)).await),
        }
    }

    async fn message_commit(&self, msgid: MsgId, size: u64) -> Result<(), Error> {
        let id = i64::from(msgid.0);
        let size_param = offset_param(size);
        match self
            .execute("message-commit", Q::Commit, &[&id, &size_param])
            .await?
        {
            1 => Ok(()),
            _ => Err(self.why_not(msgid, "message-commit", Some(size)).await),
        }
    }

    async fn message_read(
        &self,
        msgid: MsgId,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, Error> {
        if length > MAX_READ {
            return Err(Error::failed(format!(
                "message-read: {length} bytes asked, at most {MAX_READ} served"
            )));
        }
        let id = i64::from(msgid.0);
        let start = offset_param(offset);
        let end = offset_param(offset.saturating_add(length));
        let rows = self
            .query("message-read", Q::Read, &[&id, &start, &end])
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
        for row in &rows {
            let (Some(off), Some(data)) =
                (row.get::<_, Option<i64>>(0), row.get::<_, Option<&[u8]>>(1))
            else {
                continue;
            };
            let off = off as u64;
            let from = offset.saturating_sub(off).min(data.len() as u64) as usize;
            let to =
                (offset.saturating_add(length).saturating_sub(off)).min(data.len() as u64) as usize;
            if from < to {
                out.extend_from_slice(&data[from..to]);
            }
        }
        Ok(Some(out))
    }

    async fn message_delete(&self, msgid: MsgId) -> Result<(), Error> {
        let id = i64::from(msgid.0);
        self.execute("message-delete", Q::DeleteMessage, &[&id])
            .await
            .map(drop)
    }

    async fn message_corrupt(&self, msgid: MsgId) -> Result<bool, Error> {
        let id = i64::from(msgid.0);
        Ok(self.execute("message-corrupt", Q::Corrupt, &[&id]).await? == 1)
    }

    async fn envelope_create(&self, msgid: MsgId, data: &[u8]) -> Result<EvpId, Error> {
        if data.is_empty() {
            return Err(Error::failed(
                "envelope-create: an envelope cannot be empty",
            ));
        }
        let id = i64::from(msgid.0);
        for _ in 0..ID_ATTEMPTS {
            let low = (self.random() as u32).max(1);
            let evpid = EvpId::new(msgid, low);
            let param = evpid_param(evpid);
            if self
                .execute("envelope-create", Q::CreateEnvelope, &[&param, &id, &data])
                .await?
                == 1
            {
                return Ok(evpid);
            }
            let state = self
                .query("envelope-create", Q::MessageState, &[&id])
                .await?;
            match state.first() {
                None => {
                    return Err(Error::failed(format!(
                        "envelope-create: unknown message {msgid}"
                    )))
                }
                Some(row) if row.get::<_, bool>(1) => {
                    return Err(Error::failed(format!(
                        "envelope-create: message {msgid} was moved aside"
                    )))
                }
                Some(_) => {}
            }
        }
        Err(Error::failed("envelope-create: no free envelope id found"))
    }

    async fn envelope_update(&self, evpid: EvpId, data: &[u8]) -> Result<bool, Error> {
        if data.is_empty() {
            return Err(Error::failed(
                "envelope-update: an envelope cannot be empty",
            ));
        }
        let id = evpid_param(evpid);
        Ok(self
            .execute("envelope-update", Q::Update, &[&id, &data])
            .await?
            == 1)
    }

    async fn envelope_load(&self, evpid: EvpId) -> Result<Option<Vec<u8>>, Error> {
        let id = evpid_param(evpid);
        let rows = self.query("envelope-load", Q::Load, &[&id]).await?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    async fn envelope_delete(&self, evpid: EvpId) -> Result<(), Error> {
        self.delete_envelope(evpid).await
    }

    async fn envelope_walk(&self, after: EvpId) -> Result<Option<(EvpId, Vec<u8>)>, Error> {
        let Ok(after) = i64::try_from(after.0) else {
            return Ok(None);
        };
        let rows = self.query("envelope-walk", Q::Walk, &[&after]).await?;
        Ok(Self::walked(&rows))
    }

    async fn envelope_claim(
        &self,
        evpid: EvpId,
        instance: &str,
        seconds: u64,
    ) -> Result<Claim, Error> {
        if !self.lease {
            return Err(Error::Unsupported);
        }
        let id = evpid_param(evpid);
        let secs = seconds as f64;
        if self
            .execute("envelope-claim", Q::Claim, &[&id, &instance, &secs])
            .await?
            == 1
        {
            return Ok(Claim::Granted);
        }
        let rows = self.query("envelope-claim", Q::Load, &[&id]).await?;
        Ok(if rows.is_empty() {
            Claim::NotFound
        } else {
            Claim::Busy
        })
    }

    async fn envelope_release(&self, evpid: EvpId, instance: &str) -> Result<(), Error> {
        if !self.lease {
            return Err(Error::Unsupported);
        }
        let id = evpid_param(evpid);
        self.execute("envelope-release", Q::Release, &[&id, &instance])
            .await
            .map(drop)
    }

    async fn envelope_walk_free(
        &self,
        after: EvpId,
        instance: &str,
    ) -> Result<Option<(EvpId, Vec<u8>)>, Error> {
        if !self.lease {
            return Err(Error::Unsupported);
        }
        let Ok(after) = i64::try_from(after.0) else {
            return Ok(None);
        };
        let rows = self
            .query("envelope-walk-free", Q::WalkFree, &[&after, &instance])
            .await?;
        Ok(Self::walked(&rows))
    }
}
