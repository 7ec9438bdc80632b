//! `queue-sqlite CONFIG`: the whole queue in one SQLite file, served over
//! queue protocol 0.1.
//!
//! ```text
//! queue proc-exec "queue-sqlite /etc/mail/queue-sqlite.conf"
//! ```
//!
//! The configuration ([`config`]) names the database file; the store
//! ([`store`]) keeps messages in chunks, envelopes as blobs, and answers
//! `ok` to a state-changing request only once the change is durable (WAL,
//! `synchronous=FULL`). Each request runs on a blocking thread, one at a
//! time on the one connection, so that the protocol loop keeps reading
//! while SQLite waits for the disk.
//!
//! A configuration or database that cannot be used is reported on stderr
//! (`FILE:LINE: message`) before the backend registers, and it exits
//! non-zero.

mod config;
mod store;

use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use smtpd_sdk::backend::cli;
use smtpd_sdk::queue::{self, Error, EvpId, MsgId, Queue};

use crate::store::{Failure, Store};

const USAGE: &str = "usage: queue-sqlite [-f] CONFIG\n\
    Serves a queue kept in one SQLite file over queue protocol 0.1; CONFIG \
    holds dbpath (the database file) and optionally busy_timeout.";

/// The queue: the store, shared with the blocking threads.
struct SqliteQueue {
    store: Arc<Mutex<Store>>,
}

impl SqliteQueue {
    /// Runs `op` on the store on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Store) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, Error> {
        let store = Arc::clone(&self.store);
        let done = tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
            op(&mut store)
        })
        .await;
        match done {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(failure)) => {
                tracing::warn!("{failure}");
                Err(Error::failed(failure))
            }
            Err(e) => Err(Error::failed(format!("store task: {e}"))),
        }
    }
}

impl Queue for SqliteQueue {
    async fn message_create(&self) -> Result<MsgId, Error> {
        self.with(Store::message_create).await.map(MsgId)
    }

    async fn message_write(&self, msgid: MsgId, offset: u64, data: &[u8]) -> Result<(), Error> {
        let data = data.to_vec();
        self.with(move |s| s.message_write(msgid.0, offset, &data))
            .await
    }

    async fn message_commit(&self, msgid: MsgId, size: u64) -> Result<(), Error> {
        self.with(move |s| s.message_commit(msgid.0, size)).await
    }

    async fn message_read(
        &self,
        msgid: MsgId,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, Error> {
        if length > READ_LIMIT {
            return Err(Error::failed(format!(
                "message-read: length {length} above {READ_LIMIT}"
            )));
        }
        self.with(move |s| s.message_read(msgid.0, offset, length))
            .await
    }

    async fn message_delete(&self, msgid: MsgId) -> Result<(), Error> {
        self.with(move |s| s.message_delete(msgid.0)).await
    }

    async fn message_corrupt(&self, msgid: MsgId) -> Result<bool, Error> {
        self.with(move |s| s.message_corrupt(msgid.0)).await
    }

    async fn envelope_create(&self, msgid: MsgId, data: &[u8]) -> Result<EvpId, Error> {
        let data = data.to_vec();
        self.with(move |s| s.envelope_create(msgid.0, &data))
            .await
            .map(EvpId)
    }

    async fn envelope_update(&self, evpid: EvpId, data: &[u8]) -> Result<bool, Error> {
        let data = data.to_vec();
        self.with(move |s| s.envelope_update(evpid.0, &data)).await
    }

    async fn envelope_load(&self, evpid: EvpId) -> Result<Option<Vec<u8>>, Error> {
        self.with(move |s| s.envelope_load(evpid.0)).await
    }

    async fn envelope_delete(&self, evpid: EvpId) -> Result<(), Error> {
        self.with(move |s| s.envelope_delete(evpid.0)).await
    }

    async fn envelope_walk(&self, after: EvpId) -> Result<Option<(EvpId, Vec<u8>)>, Error> {
        self.with(move |s| s.envelope_walk(after.0))
            .await
            .map(|found| found.map(|(evpid, data)| (EvpId(evpid), data)))
    }
}

/// The largest read served (SPEC.md 4.4: at least 262,144 bytes); above,
/// `error`, so that one request cannot make the backend allocate without
/// bound.
const READ_LIMIT: u64 = 1 << 20;

fn open(path: &std::path::Path) -> Result<SqliteQueue, String> {
    let config = config::load(path).map_err(|e| e.to_string())?;
    let store = Store::open(&config)?;
    Ok(SqliteQueue {
        store: Arc::new(Mutex::new(store)),
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let path = match cli::start("queue-sqlite", USAGE) {
        Ok(path) => path,
        Err(code) => return code,
    };
    match open(&path) {
        Ok(q) => queue::run(q).await,
        Err(e) => cli::refuse("queue-sqlite", e),
    }
}
