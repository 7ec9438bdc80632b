//! The fs queue, the default [`QueueBackend`]: messages and envelopes as
//! files in a spool directory the daemon owns.
//!
//! ```text
//! SPOOL/                 0700, owned by the daemon's user
//! ├── lock               flock'ed by the running daemon: one owner at a time
//! ├── incoming/MSGID/    uncommitted: `message` and one file per envelope
//! ├── queue/BB/MSGID/    committed (BB = top byte of MSGID): the same files
//! ├── corrupt/MSGID/     moved aside by `message_corrupt`
//! ├── temporary/         scratch files of atomic envelope writes
//! └── purge/             trash: deleted messages, emptied at once and at start
//! ```
//!
//! A message is written into `incoming/MSGID/message`; its envelopes go
//! beside it. The commit fsyncs the content, every envelope and the
//! directory, then renames `incoming/MSGID` to `queue/BB/MSGID` and fsyncs
//! the bucket: the rename is the atomic commit point, so the message and
//! all its envelopes appear together or not at all. Envelopes of committed
//! messages are written to `temporary/`, fsynced, then linked or renamed
//! into place and the directory fsynced. Deletions rename into `purge/`
//! before removing and are not fsynced: they follow a delivery that is
//! durable already, and a deletion lost in a crash only brings an envelope
//! back to be delivered again (at least once, as OpenSMTPD, which fsyncs
//! nothing). At start-up, `incoming/` and `temporary/`
//! go to the trash (nothing uncommitted is resumed) and `queue/` is read
//! into an index of envelope ids that serves `envelope_walk` in id order.
//!
//! Blocking file work runs on tokio's blocking pool; every I/O error,
//! ENOSPC and EIO included, is an [`Error`], never a panic.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::{Error, EvpId, MsgId, QueueBackend, MAX_ENVELOPE_SIZE, MAX_READ_LENGTH};

mod spool;

/// How many random ids are drawn before giving up.
const ID_ATTEMPTS: usize = 100;

/// The fs queue over one spool directory. Cloning shares the queue.
#[derive(Clone)]
pub struct FsQueue {
    inner: Arc<Inner>,
}

/// An uncommitted message.
struct Incoming {
    /// `incoming/MSGID/message`, open for writing.
    file: File,
    /// Bytes written so far.
    size: u64,
    /// Envelopes created so far.
    envelopes: Vec<EvpId>,
    /// A failed write could not be undone: the content is unknown.
    broken: bool,
}

type IncomingMap = HashMap<MsgId, Arc<Mutex<Incoming>>>;

struct Inner {
    root: PathBuf,
    /// Holds the spool's `flock` while the queue lives.
    _lock: File,
    incoming: Mutex<IncomingMap>,
    /// Ids of committed envelopes.
    index: Mutex<BTreeSet<u64>>,
    rng: AtomicU64,
    counter: AtomicU64,
    faults: Faults,
}

/// A step where a failure can be injected by tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Write,
    SyncFile,
    SyncDir,
    Rename,
}

/// Failures injected by tests: every call at `Step` fails with the errno.
#[derive(Default)]
struct Faults(Mutex<Option<(Step, i32)>>);

impl Faults {
    fn check(&self, step: Step) -> io::Result<()> {
        match *lock(&self.0) {
            Some((s, errno)) if s == step => Err(io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        }
    }
}

/// Locks a mutex, going on with the data if a holder panicked (the state
/// it guards is only ever changed by whole assignments).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FsQueue {
    /// Opens (creating if needed) the spool at `root`: checks ownership and
    /// permissions, takes the lock, purges what was left uncommitted and
    /// indexes the committed envelopes. Blocking: call it before serving.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, Error> {
        let root = root.into();
        let lock = spool::prepare_root(&root)?;
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()) << 32;
        let inner = Inner {
            root,
            _lock: lock,
            incoming: Mutex::default(),
            index: Mutex::default(),
            rng: AtomicU64::new(seed),
            counter: AtomicU64::new(0),
            faults: Faults::default(),
        };
        for dir in ["incoming", "queue", "corrupt", "temporary", "purge"] {
            inner.mkdir(&inner.root.join(dir))?;
        }
        inner.purge_leftovers()?;
        let index = inner.scan()?;
        *lock_index(&inner) = index;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The spool directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Makes every later call at `step` fail with `errno`, or stops
    /// failing (`None`).
    #[cfg(test)]
    fn inject(&self, fault: Option<(Step, i32)>) {
        *lock(&self.inner.faults.0) = fault;
    }

    async fn run<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, Error> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::Task {
                reason: e.to_string(),
            })?
    }
}

fn lock_index(inner: &Inner) -> MutexGuard<'_, BTreeSet<u64>> {
    lock(&inner.index)
}

impl Inner {
    fn incoming_dir(&self, msgid: MsgId) -> PathBuf {
        self.root.join("incoming").join(msgid.to_string())
    }

    fn bucket_dir(&self, msgid: MsgId) -> PathBuf {
        self.root
            .join("queue")
            .join(format!("{:02x}", msgid.0 >> 24))
    }

    fn queue_dir(&self, msgid: MsgId) -> PathBuf {
        self.bucket_dir(msgid).join(msgid.to_string())
    }

    fn corrupt_dir(&self, msgid: MsgId) -> PathBuf {
        self.root.join("corrupt").join(msgid.to_string())
    }

    fn envelope_path(&self, evpid: EvpId) -> PathBuf {
        self.queue_dir(evpid.msgid()).join(evpid.to_string())
    }

    /// A unique name for a scratch file or a trash entry.
    fn unique(&self, prefix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}.{}.{n}", std::process::id())
    }

    /// A random non-zero 32-bit value (splitmix64).
    fn draw(&self) -> u32 {
        loop {
            let mut z = self
                .rng
                .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
                .wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let v = (z ^ (z >> 31)) as u32;
            if v != 0 {
                return v;
            }
        }
    }

    fn incoming_entry(&self, msgid: MsgId) -> Option<Arc<Mutex<Incoming>>> {
        lock(&self.incoming).get(&msgid).cloned()
    }

    fn mkdir(&self, path: &Path) -> Result<(), Error> {
        match DirBuilder::new().mode(0o700).create(path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(Error::io("mkdir", path, e)),
            _ => Ok(()),
        }
    }

    fn sync_file(&self, file: &File, path: &Path) -> Result<(), Error> {
        self.faults
            .check(Step::SyncFile)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("fsync", path, e))
    }

    fn sync_dir(&self, path: &Path) -> Result<(), Error> {
        self.faults
            .check(Step::SyncDir)
            .and_then(|()| File::open(path))
            .and_then(|dir| dir.sync_all())
            .map_err(|e| Error::io("fsync", path, e))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.check(Step::Rename)?;
        fs::rename(from, to)
    }

    /// Writes a whole new file (`create_new`, 0600), optionally fsynced.
    /// A failed write removes the file.
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> Result<(), Error> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io("create", path, e))?;
        let written = self
            .faults
            .check(Step::Write)
            .and_then(|()| file.write_all(data))
            .map_err(|e| Error::io("write", path, e));
        let result = written.and_then(|()| match sync {
            true => self.sync_file(&file, path),
            false => Ok(()),
        });
        if result.is_err() {
            let _ = fs::remove_file(path);
        }
        result
    }

    fn message_create(&self) -> Result<MsgId, Error> {
        for _ in 0..ID_ATTEMPTS {
            let msgid = MsgId(self.draw());
            let dir = self.incoming_dir(msgid);
            match DirBuilder::new().mode(0o700).create(&dir) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("mkdir", dir, e)),
                Ok(()) => {}
            }
            let taken = [self.queue_dir(msgid), self.corrupt_dir(msgid)]
                .iter()
                .map(|p| p.try_exists())
                .collect::<io::Result<Vec<bool>>>();
            match taken {
                Ok(t) if !t.contains(&true) => {}
                other => {
                    let _ = fs::remove_dir(&dir);
                    other.map_err(|e| Error::io("stat", &dir, e))?;
                    continue;
                }
            }
            let path = dir.join("message");
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path);
            let file = match file {
                Ok(file) => file,
                Err(e) => {
                    let _ = fs::remove_dir(&dir);
                    return Err(Error::io("create", path, e));
                }
            };
            let entry = Incoming {
                file,
                size: 0,
                envelopes: Vec::new(),
                broken: false,
            };
            lock(&self.incoming).insert(msgid, Arc::new(Mutex::new(entry)));
            return Ok(msgid);
        }
        Err(Error::IdsExhausted { what: "message" })
    }

    fn uncommitted(&self, msgid: MsgId) -> Result<Arc<Mutex<Incoming>>, Error> {
        self.incoming_entry(msgid).ok_or(Error::UnknownMessage {
            msgid,
            expected: "uncommitted",
        })
    }

    fn message_write(&self, msgid: MsgId, offset: u64, data: &[u8]) -> Result<(), Error> {
        let entry = self.uncommitted(msgid)?;
        let mut m = lock(&entry);
        if m.broken || offset != m.size {
            return Err(Error::BadOffset {
                msgid,
                offset,
                size: if m.broken { u64::MAX } else { m.size },
            });
        }
        let written = self
            .faults
            .check(Step::Write)
            .and_then(|()| m.file.write_all_at(data, offset));
        if let Err(e) = written {
            // Cut back to what was acknowledged; if even that fails, the
            // message can no longer be committed.
            m.broken = m.file.set_len(m.size).is_err();
            return Err(Error::io(
                "write",
                self.incoming_dir(msgid).join("message"),
                e,
            ));
        }
        m.size += data.len() as u64;
        Ok(())
    }

    fn message_commit(&self, msgid: MsgId, size: u64) -> Result<(), Error> {
        let entry = self.uncommitted(msgid)?;
        let m = lock(&entry);
        if m.broken || m.size != size {
            return Err(Error::SizeMismatch {
                msgid,
                announced: size,
                size: m.size,
            });
        }
        let dir = self.incoming_dir(msgid);
        self.sync_file(&m.file, &dir.join("message"))?;
        for evpid in &m.envelopes {
            let path = dir.join(evpid.to_string());
            let file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
            self.sync_file(&file, &path)?;
        }
        self.sync_dir(&dir)?;
        let bucket = self.bucket_dir(msgid);
        let target = self.queue_dir(msgid);
        let mut renamed = self.rename(&dir, &target);
        if matches!(&renamed, Err(e) if e.kind() == io::ErrorKind::NotFound) {
            self.mkdir(&bucket)?;
            self.sync_dir(&self.root.join("queue"))?;
            renamed = self.rename(&dir, &target);
        }
        renamed.map_err(|e| Error::io("rename", &dir, e))?;
        lock(&self.incoming).remove(&msgid);
        if let Err(e) = self.sync_dir(&bucket) {
            // Committed but perhaps not durable: take it back, so that a
            // message the client was refused is not delivered.
            let _ = self.rename(
                &target,
                &self.root.join("purge").join(self.unique("failed")),
            );
            return Err(e);
        }
        lock_index(self).extend(m.envelopes.iter().map(|e| e.0));
        Ok(())
    }

    fn message_read(
        &self,
        msgid: MsgId,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, Error> {
        if length > MAX_READ_LENGTH {
            return Err(Error::ReadTooLarge { length });
        }
        let path = self.queue_dir(msgid).join("message");
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", path, e)),
        };
        let mut buf = vec![0; length as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read", path, e)),
            }
        }
        buf.truncate(filled);
        Ok(Some(buf))
    }

    /// Removes an uncommitted message from the map, waiting for any
    /// operation on it to finish. Its envelopes, if asked.
    fn take_incoming(&self, msgid: MsgId) -> Option<Vec<EvpId>> {
        let entry = lock(&self.incoming).remove(&msgid)?;
        let m = lock(&entry);
        Some(m.envelopes.clone())
    }

    fn forget_message(&self, msgid: MsgId) {
        let low = u64::from(msgid.0) << 32;
        let mut index = lock_index(self);
        let ids: Vec<u64> = index.range(low..=low | 0xffff_ffff).copied().collect();
        for id in ids {
            index.remove(&id);
        }
    }

    fn message_delete(&self, msgid: MsgId) -> Result<(), Error> {
        let trash = self
            .root
            .join("purge")
            .join(self.unique(&msgid.to_string()));
        if self.take_incoming(msgid).is_some() {
            let dir = self.incoming_dir(msgid);
            match self.rename(&dir, &trash) {
                Ok(()) => {
                    let _ = fs::remove_dir_all(&trash);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("rename", dir, e)),
            }
        }
        let dir = self.queue_dir(msgid);
        match self.rename(&dir, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget_message(msgid);
                return Ok(());
            }
            Err(e) => return Err(Error::io("rename", dir, e)),
        }
        self.forget_message(msgid);
        // Not fsynced (see the module doc): a deletion lost in a crash
        // brings the message back, it is never lost.
        // What stays after a failure here is emptied at the next start.
        let _ = fs::remove_dir_all(&trash);
        Ok(())
    }

    fn message_corrupt(&self, msgid: MsgId) -> Result<bool, Error> {
        let target = self.corrupt_dir(msgid);
        let (from, parent) = match self.take_incoming(msgid) {
            Some(_) => (self.incoming_dir(msgid), self.root.join("incoming")),
            None => (self.queue_dir(msgid), self.bucket_dir(msgid)),
        };
        match self.rename(&from, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("rename", from, e)),
        }
        self.forget_message(msgid);
        self.sync_dir(&self.root.join("corrupt"))?;
        self.sync_dir(&parent)?;
        Ok(true)
    }

    fn envelope_create(&self, msgid: MsgId, data: &[u8]) -> Result<EvpId, Error> {
        check_envelope_size(data)?;
        if let Some(entry) = self.incoming_entry(msgid) {
            let mut m = lock(&entry);
            for _ in 0..ID_ATTEMPTS {
                let evpid = EvpId::new(msgid, self.draw());
                if m.envelopes.contains(&evpid) {
                    continue;
                }
                let path = self.incoming_dir(msgid).join(evpid.to_string());
                match self.write_new(&path, data, false) {
                    Err(Error::Io { source, .. })
                        if source.kind() == io::ErrorKind::AlreadyExists =>
                    {
                        continue
                    }
                    Err(e) => return Err(e),
                    Ok(()) => {}
                }
                m.envelopes.push(evpid);
                return Ok(evpid);
            }
            return Err(Error::IdsExhausted { what: "envelope" });
        }
        let dir = self.queue_dir(msgid);
        if !dir.try_exists().map_err(|e| Error::io("stat", &dir, e))? {
            return Err(Error::UnknownMessage {
                msgid,
                expected: "known",
            });
        }
        let tmp = self.root.join("temporary").join(self.unique("create"));
        self.write_new(&tmp, data, true)?;
        let result = self.link_new_envelope(msgid, &tmp, &dir);
        let _ = fs::remove_file(&tmp);
        let evpid = result?;
        self.sync_dir(&dir)?;
        lock_index(self).insert(evpid.0);
        Ok(evpid)
    }

    /// Links the durable scratch file `tmp` into `dir` under a new id.
    fn link_new_envelope(&self, msgid: MsgId, tmp: &Path, dir: &Path) -> Result<EvpId, Error> {
        for _ in 0..ID_ATTEMPTS {
            let evpid = EvpId::new(msgid, self.draw());
            if lock_index(self).contains(&evpid.0) {
                continue;
            }
            let path = dir.join(evpid.to_string());
            let linked = self
                .faults
                .check(Step::Rename)
                .and_then(|()| fs::hard_link(tmp, &path));
            match linked {
                Ok(()) => return Ok(evpid),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::UnknownMessage {
                        msgid,
                        expected: "known",
                    })
                }
                Err(e) => return Err(Error::io("link", path, e)),
            }
        }
        Err(Error::IdsExhausted { what: "envelope" })
    }

    fn envelope_update(&self, evpid: EvpId, data: &[u8]) -> Result<bool, Error> {
        check_envelope_size(data)?;
        let path = self.envelope_path(evpid);
        match fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("stat", path, e)),
        }
        let tmp = self.root.join("temporary").join(self.unique("update"));
        self.write_new(&tmp, data, true)?;
        if let Err(e) = self.rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return match e.kind() {
                io::ErrorKind::NotFound => Ok(false),
                _ => Err(Error::io("rename", &tmp, e)),
            };
        }
        self.sync_dir(&self.queue_dir(evpid.msgid()))?;
        Ok(true)
    }

    fn envelope_load(&self, evpid: EvpId) -> Result<Option<Vec<u8>>, Error> {
        let path = self.envelope_path(evpid);
        match fs::read(&path) {
            Ok(data) if data.is_empty() || data.len() > MAX_ENVELOPE_SIZE => Err(Error::io(
                "load",
                path,
                io::Error::new(io::ErrorKind::InvalidData, "envelope file of a bad size"),
            )),
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", path, e)),
        }
    }

    fn envelope_delete(&self, evpid: EvpId) -> Result<(), Error> {
        let msgid = evpid.msgid();
        if let Some(entry) = self.incoming_entry(msgid) {
            let mut m = lock(&entry);
            m.envelopes.retain(|e| *e != evpid);
            let path = self.incoming_dir(msgid).join(evpid.to_string());
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("unlink", path, e)),
                _ => Ok(()),
            };
        }
        let path = self.envelope_path(evpid);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                lock_index(self).remove(&evpid.0);
                return Ok(());
            }
            Err(e) => return Err(Error::io("unlink", path, e)),
        }
        lock_index(self).remove(&evpid.0);
        // Not fsynced, as message deletions.
        Ok(())
    }

    fn envelope_walk(&self, after: EvpId) -> Result<Option<(EvpId, Vec<u8>)>, Error> {
        let mut after = after.0;
        loop {
            let next = lock_index(self)
                .range(after.saturating_add(1)..)
                .next()
                .copied();
            let Some(id) = next.filter(|_| after != u64::MAX) else {
                return Ok(None);
            };
            let evpid = EvpId(id);
            match self.envelope_load(evpid) {
                Ok(Some(data)) => return Ok(Some((evpid, data))),
                Ok(None) => {
                    lock_index(self).remove(&id);
                }
                Err(Error::Io { source, path, .. })
                    if source.kind() == io::ErrorKind::InvalidData =>
                {
                    tracing::warn!(path = %path.display(), "fs queue: skipping an envelope file of a bad size");
                }
                Err(e) => return Err(e),
            }
            after = id;
        }
    }
}

fn check_envelope_size(data: &[u8]) -> Result<(), Error> {
    match data.len() {
        0 => Err(Error::EnvelopeSize { size: 0 }),
        n if n > MAX_ENVELOPE_SIZE => Err(Error::EnvelopeSize { size: n }),
        _ => Ok(()),
    }
}

#[async_trait]
impl QueueBackend for FsQueue {
    fn name(&self) -> &str {
        "fs"
    }

    async fn message_create(&self) -> Result<MsgId, Error> {
        self.run(|q| q.message_create()).await
    }

    async fn message_write(&self, msgid: MsgId, offset: u64, data: &[u8]) -> Result<(), Error> {
        let data = data.to_vec();
        self.run(move |q| q.message_write(msgid, offset, &data))
            .await
    }

    async fn message_commit(&self, msgid: MsgId, size: u64) -> Result<(), Error> {
        self.run(move |q| q.message_commit(msgid, size)).await
    }

    async fn message_read(
        &self,
        msgid: MsgId,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.run(move |q| q.message_read(msgid, offset, length))
            .await
    }

    async fn message_delete(&self, msgid: MsgId) -> Result<(), Error> {
        self.run(move |q| q.message_delete(msgid)).await
    }

    async fn message_corrupt(&self, msgid: MsgId) -> Result<bool, Error> {
        self.run(move |q| q.message_corrupt(msgid)).await
    }

    async fn envelope_create(&self, msgid: MsgId, data: &[u8]) -> Result<EvpId, Error> {
        let data = data.to_vec();
        self.run(move |q| q.envelope_create(msgid, &data)).await
    }

    async fn envelope_update(&self, evpid: EvpId, data: &[u8]) -> Result<bool, Error> {
        let data = data.to_vec();
        self.run(move |q| q.envelope_update(evpid, &data)).await
    }

    async fn envelope_load(&self, evpid: EvpId) -> Result<Option<Vec<u8>>, Error> {
        self.run(move |q| q.envelope_load(evpid)).await
    }

    async fn envelope_delete(&self, evpid: EvpId) -> Result<(), Error> {
        self.run(move |q| q.envelope_delete(evpid)).await
    }

    async fn envelope_walk(&self, after: EvpId) -> Result<Option<(EvpId, Vec<u8>)>, Error> {
        self.run(move |q| q.envelope_walk(after)).await
    }
}

#[cfg(test)]
mod tests;
