//! The queue layers: `queue compression` and `queue encryption` above any
//! [`QueueBackend`], so that the fs queue and every proc-exec backend
//! store only sealed blobs and get both for free.
//!
//! [`open`] is called once by the daemon on the backend it opened: it
//! checks that the queue was written with the configured layers and key
//! (refusing to start when it was not, rather than losing every message)
//! and wraps the backend in a [`LayeredQueue`], through which intake, the
//! scheduler, deliveries and `smtpctl show` all go. Envelopes are sealed
//! whole; message content as segments ([`message`]) so that memory stays
//! bounded and callers keep seeing plaintext offsets. The format is in
//! [`format`] (SPEC.md 4.13), the pieces in [`compress`] and [`encrypt`],
//! the key's sources in [`key`].
//!
//! A blob that does not open (tampered, truncated, not decompressible) is
//! not retried: its message is moved aside with `message_corrupt`, the
//! reason logged with its id, and the caller is told it is gone
//! (`envelope_load` and `message_read` answer `None`, `envelope_walk`
//! goes on with the next envelope), so it is never delivered. A blob
//! written with other layers or another key is not damage but a
//! configuration problem (a queue shared by daemons configured apart, a
//! key changed): it is left where it is, never delivered, and every use
//! of it is an [`Error::Layers`] naming the difference (a walk logs it
//! and goes on), until the daemon runs with the settings it was written
//! with.

pub mod compress;
pub mod encrypt;
pub mod format;
pub mod key;
pub mod message;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

pub use encrypt::{Key, KeyId};
use format::{Codec, OpenError};
pub use key::{resolve, KeyError, KEY_ENV};
use message::{Cursor, ReadError, Writer};

use super::{Claim, Error, EvpId, MsgId, QueueBackend, MAX_READ_LENGTH};

/// How many read cursors are kept between reads (each holds up to a
/// read-ahead window and a segment, about 320 KiB).
const CURSORS: usize = 16;

/// How many envelopes the start-up check looks at, at most.
const CHECKED_ENVELOPES: usize = 32;

/// Checks the queue against the layers configured (`compress`, and
/// encryption when `key` is given) and answers the queue to use: the
/// backend itself when neither layer is on, else the backend wrapped in a
/// [`LayeredQueue`]. A queue written with other layers or another key is
/// refused with an [`Error::Layers`] naming the problem.
pub async fn open(
    inner: Arc<dyn QueueBackend>,
    compress: bool,
    key: Option<&Key>,
) -> Result<Arc<dyn QueueBackend>, Error> {
    let codec = Codec::new(compress, key);
    check(inner.as_ref(), codec.as_ref()).await?;
    Ok(match codec {
        Some(codec) => Arc::new(LayeredQueue::new(inner, codec)),
        None => inner,
    })
}

/// Walks the first envelopes: when none of them opens and one was
/// written under other settings, the queue is refused. Damaged envelopes
/// do not stop the start (they are moved aside later). A backend that
/// fails during the walk is logged and the check skipped.
async fn check(inner: &dyn QueueBackend, codec: Option<&Codec>) -> Result<(), Error> {
    let mut after = EvpId::new(MsgId(0), 0);
    let mut foreign = None;
    for _ in 0..CHECKED_ENVELOPES {
        let (evpid, blob) = match inner.envelope_walk(after).await {
            Ok(Some(found)) => found,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("queue layers: cannot check the queue's envelopes: {e}");
                return Ok(());
            }
        };
        after = evpid;
        let opened = match codec {
            Some(codec) => codec.open_envelope(evpid.msgid(), &blob).map(drop),
            None if blob.starts_with(&format::MAGIC) => Err(OpenError::Layers {
                found: blob
                    .get(4)
                    .and_then(|&bits| format::Layers::from_bits(bits))
                    .unwrap_or(format::Layers {
                        compress: true,
                        encrypt: true,
                    }),
                configured: format::Layers {
                    compress: false,
                    encrypt: false,
                },
            }),
            None => Ok(()),
        };
        match opened {
            Ok(()) => return Ok(()),
            Err(e) if e.is_foreign() => {
                foreign.get_or_insert((evpid, e));
            }
            Err(_) => {}
        }
    }
    match foreign {
        None => Ok(()),
        Some((evpid, e)) => Err(Error::Layers {
            backend: inner.name().to_owned(),
            reason: format!(
                "envelope {evpid} is {e}: refusing to start rather than lose the queue; \
                 start with the settings and key the queue was written with \
                 (smtpd.conf, --queue-key-file or {KEY_ENV}), or move the queue aside"
            ),
        }),
    }
}

/// What a stored envelope opened to.
enum Opened {
    /// Its plaintext.
    Plain(Vec<u8>),
    /// Damaged: its message was moved aside.
    Gone,
    /// Written with other layers or another key: left alone.
    Foreign(Error),
}

/// A read cursor kept between reads.
struct CachedCursor {
    cursor: Cursor,
    used: u64,
}

/// A backend behind compression and/or encryption.
pub struct LayeredQueue {
    inner: Arc<dyn QueueBackend>,
    codec: Arc<Codec>,
    /// Uncommitted messages being written.
    writers: Mutex<HashMap<MsgId, Arc<tokio::sync::Mutex<Writer>>>>,
    /// Read positions, taken out while in use (so concurrent readers of
    /// one message each get their own).
    cursors: Mutex<(Vec<(MsgId, CachedCursor)>, u64)>,
}

/// Locks a mutex, going on with the data if a holder panicked (maps and
/// counters changed by whole operations only).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LayeredQueue {
    /// `inner` behind `codec`.
    pub fn new(inner: Arc<dyn QueueBackend>, codec: Codec) -> Self {
        Self {
            inner,
            codec: Arc::new(codec),
            writers: Mutex::new(HashMap::new()),
            cursors: Mutex::new((Vec::new(), 0)),
        }
    }

    fn writer(&self, msgid: MsgId) -> Result<Arc<tokio::sync::Mutex<Writer>>, Error> {
        lock(&self.writers)
            .get(&msgid)
            .cloned()
            .ok_or(Error::UnknownMessage {
                msgid,
                expected: "uncommitted",
            })
    }

    /// Forgets what is kept of `msgid`.
    fn forget(&self, msgid: MsgId) {
        lock(&self.writers).remove(&msgid);
        lock(&self.cursors).0.retain(|(m, _)| *m != msgid);
    }

    /// The kept cursor of `msgid` that reaches `offset` soonest, if any
    /// does without going back to the start.
    fn take_cursor(&self, msgid: MsgId, offset: u64) -> Option<Cursor> {
        let mut cache = lock(&self.cursors);
        let best = cache
            .0
            .iter()
            .enumerate()
            .filter(|(_, (m, c))| *m == msgid && c.cursor.position() <= offset)
            .max_by_key(|(_, (_, c))| c.cursor.position())
            .map(|(i, _)| i)?;
        Some(cache.0.swap_remove(best).1.cursor)
    }

    fn keep_cursor(&self, msgid: MsgId, cursor: Cursor) {
        let mut guard = lock(&self.cursors);
        let (cache, clock) = &mut *guard;
        *clock += 1;
        if cache.len() >= CURSORS {
            if let Some(oldest) = (0..cache.len()).min_by_key(|&i| cache[i].1.used) {
                cache.swap_remove(oldest);
            }
        }
        cache.push((
            msgid,
            CachedCursor {
                cursor,
                used: *clock,
            },
        ));
    }

    /// Moves `msgid` aside because `why`; `Ok` once it is (or was
    /// already) gone.
    async fn quarantine(&self, msgid: MsgId, why: String) -> Result<(), Error> {
        self.forget(msgid);
        let backend = self.inner.name();
        match self.inner.message_corrupt(msgid).await {
            Ok(moved) => {
                let done = if moved {
                    "moved aside as corrupt"
                } else {
                    "no longer there"
                };
                tracing::warn!(
                    "msg:{msgid}: {why}; queue {backend}: message {done}, not delivered"
                );
                Ok(())
            }
            Err(e) => {
                tracing::warn!("msg:{msgid}: {why}; cannot move it aside, tried again later: {e}");
                Err(e)
            }
        }
    }

    /// Opens a stored envelope: its plaintext; `None` when it was damaged
    /// (its message is then moved aside); [`Opened::Foreign`] when it was
    /// written with other layers or another key, which is left where it
    /// is (a configuration problem, not damage).
    async fn open_envelope(&self, evpid: EvpId, blob: &[u8]) -> Result<Opened, Error> {
        match self.codec.open_envelope(evpid.msgid(), blob) {
            Ok(plain) => Ok(Opened::Plain(plain)),
            Err(e) if e.is_foreign() => Ok(Opened::Foreign(
                self.foreign(format!("envelope {evpid} is {e}; left in the queue")),
            )),
            Err(e) => {
                self.quarantine(evpid.msgid(), format!("envelope {evpid} {e}"))
                    .await?;
                Ok(Opened::Gone)
            }
        }
    }

    /// The temporary error of a blob written under other settings.
    fn foreign(&self, reason: String) -> Error {
        Error::Layers {
            backend: self.inner.name().to_owned(),
            reason,
        }
    }

    async fn read(&self, msgid: MsgId, offset: u64, length: u64) -> Result<Vec<u8>, ReadError> {
        let mut cursor = match self.take_cursor(msgid, offset) {
            Some(cursor) => cursor,
            None => Cursor::open(self.inner.as_ref(), &self.codec, msgid).await?,
        };
        let data = cursor
            .read(self.inner.as_ref(), &self.codec, offset, length)
            .await?;
        // Readers go on until a read answers nothing: that one is their
        // last.
        if !data.is_empty() {
            self.keep_cursor(msgid, cursor);
        }
        Ok(data)
    }
}

#[async_trait]
impl QueueBackend for LayeredQueue {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn message_create(&self) -> Result<MsgId, Error> {
        let msgid = self.inner.message_create().await?;
        lock(&self.writers).insert(msgid, Arc::default());
        Ok(msgid)
    }

    async fn message_write(&self, msgid: MsgId, offset: u64, data: &[u8]) -> Result<(), Error> {
        let writer = self.writer(msgid)?;
        let mut writer = writer.lock().await;
        writer
            .write(self.inner.as_ref(), &self.codec, msgid, offset, data)
            .await
    }

    async fn message_commit(&self, msgid: MsgId, size: u64) -> Result<(), Error> {
        let writer = self.writer(msgid)?;
        let mut writer = writer.lock().await;
        writer
            .commit(self.inner.as_ref(), &self.codec, msgid, size)
            .await?;
        lock(&self.writers).remove(&msgid);
        Ok(())
    }

    async fn message_read(
        &self,
        msgid: MsgId,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, Error> {
        if length > MAX_READ_LENGTH {
            return Err(Error::ReadTooLarge { length });
        }
        match self.read(msgid, offset, length).await {
            Ok(data) => Ok(Some(data)),
            Err(ReadError::Gone) => Ok(None),
            Err(ReadError::Backend(e)) => Err(e),
            Err(ReadError::Open(e)) if e.is_foreign() => {
                Err(self.foreign(format!("message {msgid} is {e}; left in the queue")))
            }
            Err(ReadError::Open(e)) => {
                let why = format!("message content {e} (read at offset {offset})");
                self.quarantine(msgid, why).await?;
                Ok(None)
            }
        }
    }

    async fn message_delete(&self, msgid: MsgId) -> Result<(), Error> {
        self.forget(msgid);
        self.inner.message_delete(msgid).await
    }

    async fn message_corrupt(&self, msgid: MsgId) -> Result<bool, Error> {
        self.forget(msgid);
        self.inner.message_corrupt(msgid).await
    }

    async fn envelope_create(&self, msgid: MsgId, data: &[u8]) -> Result<EvpId, Error> {
        let sealed = self.codec.seal_envelope(msgid, data);
        self.inner.envelope_create(msgid, &sealed).await
    }

    async fn envelope_update(&self, evpid: EvpId, data: &[u8]) -> Result<bool, Error> {
        let sealed = self.codec.seal_envelope(evpid.msgid(), data);
        self.inner.envelope_update(evpid, &sealed).await
    }

    async fn envelope_load(&self, evpid: EvpId) -> Result<Option<Vec<u8>>, Error> {
        let Some(blob) = self.inner.envelope_load(evpid).await? else {
            return Ok(None);
        };
        match self.open_envelope(evpid, &blob).await? {
            Opened::Plain(plain) => Ok(Some(plain)),
            Opened::Gone => Ok(None),
            Opened::Foreign(e) => Err(e),
        }
    }

    async fn envelope_delete(&self, evpid: EvpId) -> Result<(), Error> {
        self.inner.envelope_delete(evpid).await
    }

    fn recoveries(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.recoveries()
    }

    async fn shutdown(&self) {
        self.inner.shutdown().await;
    }

    fn shared(&self) -> bool {
        self.inner.shared()
    }

    async fn envelope_claim(
        &self,
        evpid: EvpId,
        instance: &str,
        seconds: u64,
    ) -> Result<Claim, Error> {
        self.inner.envelope_claim(evpid, instance, seconds).await
    }

    async fn envelope_release(&self, evpid: EvpId, instance: &str) -> Result<(), Error> {
        self.inner.envelope_release(evpid, instance).await
    }

    async fn envelope_walk_free(
        &self,
        mut after: EvpId,
        instance: &str,
    ) -> Result<Option<(EvpId, Vec<u8>)>, Error> {
        loop {
            let Some((evpid, blob)) = self.inner.envelope_walk_free(after, instance).await? else {
                return Ok(None);
            };
            match self.open_envelope(evpid, &blob).await? {
                Opened::Plain(plain) => return Ok(Some((evpid, plain))),
                Opened::Gone => {}
                Opened::Foreign(e) => tracing::warn!("{e}; not scheduled"),
            }
            after = evpid;
        }
    }

    async fn envelope_walk(&self, mut after: EvpId) -> Result<Option<(EvpId, Vec<u8>)>, Error> {
        loop {
            let Some((evpid, blob)) = self.inner.envelope_walk(after).await? else {
                return Ok(None);
            };
            match self.open_envelope(evpid, &blob).await? {
                Opened::Plain(plain) => return Ok(Some((evpid, plain))),
                Opened::Gone => {}
                Opened::Foreign(e) => tracing::warn!("{e}; not scheduled"),
            }
            after = evpid;
        }
    }
}
