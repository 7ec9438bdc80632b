//! The layers over a real fs queue: round trips at segment boundaries,
//! plaintext offsets, damage moved aside, the start-up check.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::format::SEGMENT_SIZE;
use super::*;
use crate::queue::fs::FsQueue;

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("smtpd-layers-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn spool(&self) -> PathBuf {
        self.0.join("spool")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Counts the stored bytes read from the backend.
struct Counting {
    inner: FsQueue,
    read: AtomicU64,
}

#[async_trait]
impl QueueBackend for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    async fn message_create(&self) -> Result<MsgId, Error> {
        self.inner.message_create().await
    }
    async fn message_write(&self, m: MsgId, o: u64, d: &[u8]) -> Result<(), Error> {
        self.inner.message_write(m, o, d).await
    }
    async fn message_commit(&self, m: MsgId, s: u64) -> Result<(), Error> {
        self.inner.message_commit(m, s).await
    }
    async fn message_read(&self, m: MsgId, o: u64, l: u64) -> Result<Option<Vec<u8>>, Error> {
        let r = self.inner.message_read(m, o, l).await?;
        let n = r.as_ref().map_or(0, Vec::len) as u64;
        self.read.fetch_add(n, Ordering::Relaxed);
        Ok(r)
    }
    async fn message_delete(&self, m: MsgId) -> Result<(), Error> {
        self.inner.message_delete(m).await
    }
    async fn message_corrupt(&self, m: MsgId) -> Result<bool, Error> {
        self.inner.message_corrupt(m).await
    }
    async fn envelope_create(&self, m: MsgId, d: &[u8]) -> Result<EvpId, Error> {
        self.inner.envelope_create(m, d).await
    }
    async fn envelope_update(&self, e: EvpId, d: &[u8]) -> Result<bool, Error> {
        self.inner.envelope_update(e, d).await
    }
    async fn envelope_load(&self, e: EvpId) -> Result<Option<Vec<u8>>, Error> {
        self.inner.envelope_load(e).await
    }
    async fn envelope_delete(&self, e: EvpId) -> Result<(), Error> {
        self.inner.envelope_delete(e).await
    }
    async fn envelope_walk(&self, a: EvpId) -> Result<Option<(EvpId, Vec<u8>)>, Error> {
        self.inner.envelope_walk(a).await
    }
}

const ENVELOPE: &[u8] = b"version: 3\ndispatcher: local\nrcpt: secret-rcpt@example.org\n";

fn key(b: u8) -> Key {
    Key::from_bytes(&[b; 32]).unwrap()
}

/// Every combination of layers.
fn settings() -> [(bool, Option<Key>); 3] {
    [(true, None), (false, Some(key(1))), (true, Some(key(1)))]
}

async fn layered(t: &TempDir, compress: bool, key: Option<&Key>) -> Arc<dyn QueueBackend> {
    let fs: Arc<dyn QueueBackend> = Arc::new(FsQueue::open(t.spool()).unwrap());
    open(fs, compress, key).await.unwrap()
}

/// Text-like content that compresses, with a marker to look for.
fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| match i % 80 {
            79 => b'\n',
            n => b"plaintext-marker "[n % 17],
        })
        .collect()
}

async fn commit(q: &dyn QueueBackend, body: &[u8], chunk: usize) -> (MsgId, EvpId) {
    let msgid = q.message_create().await.unwrap();
    let evpid = q.envelope_create(msgid, ENVELOPE).await.unwrap();
    let mut offset = 0;
    for piece in body.chunks(chunk.max(1)) {
        q.message_write(msgid, offset, piece).await.unwrap();
        offset += piece.len() as u64;
    }
    q.message_commit(msgid, body.len() as u64).await.unwrap();
    (msgid, evpid)
}

async fn read_all(q: &dyn QueueBackend, msgid: MsgId, length: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let chunk = q
            .message_read(msgid, out.len() as u64, length)
            .await
            .unwrap()?;
        if chunk.is_empty() {
            return Some(out);
        }
        assert!(chunk.len() as u64 <= length);
        out.extend_from_slice(&chunk);
    }
}

fn stored(t: &TempDir, msgid: MsgId) -> PathBuf {
    let bucket = format!("{:02x}", msgid.0 >> 24);
    t.spool().join("queue").join(bucket).join(msgid.to_string())
}

fn corrupt_dir(t: &TempDir) -> PathBuf {
    t.spool().join("corrupt")
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn messages_round_trip_at_segment_boundaries() {
    let s = SEGMENT_SIZE;
    for (compress, key) in settings() {
        let t = TempDir::new("bounds");
        let q = layered(&t, compress, key.as_ref()).await;
        for size in [0, 1, s - 1, s, s + 1, 2 * s, 3 * s + 17] {
            for chunk in [7, s, 64 * 1024 + 1000] {
                if chunk == 7 && size > s + 1 {
                    continue;
                }
                let body = content(size);
                let (msgid, _) = commit(q.as_ref(), &body, chunk).await;
                for length in [MAX_READ_LENGTH, 1000, 32 * 1024] {
                    let back = read_all(q.as_ref(), msgid, length).await.unwrap();
                    assert!(back == body, "size {size} chunk {chunk} length {length}");
                }
            }
        }
    }
}

#[tokio::test]
async fn reads_at_any_offset_answer_plaintext_bytes() {
    let t = TempDir::new("offsets");
    let q = layered(&t, true, Some(&key(3))).await;
    let body = content(5 * SEGMENT_SIZE + 123);
    let (msgid, _) = commit(q.as_ref(), &body, 10_000).await;
    let size = body.len() as u64;
    let s = SEGMENT_SIZE as u64;
    // Forward, backward, across boundaries, at and past the end.
    for (offset, length) in [
        (3 * s - 5, 10),
        (0, 1),
        (s, MAX_READ_LENGTH),
        (s - 1, 2),
        (4 * s + 100, 1000),
        (2 * s, 0),
        (size - 1, 100),
        (size, 100),
        (size + 5, 100),
        (17, 3 * s),
    ] {
        let got = q
            .message_read(msgid, offset, length)
            .await
            .unwrap()
            .unwrap();
        let from = offset.min(size) as usize;
        let to = (offset + length).min(size) as usize;
        assert_eq!(
            got,
            &body[from..to.max(from)],
            "offset {offset} length {length}"
        );
    }
    assert!(matches!(
        q.message_read(msgid, 0, MAX_READ_LENGTH + 1).await,
        Err(Error::ReadTooLarge { .. })
    ));
    assert_eq!(
        q.message_read(MsgId(0x0101_0101), 0, 10).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn writes_take_plaintext_offsets_and_sizes() {
    let t = TempDir::new("writes");
    let q = layered(&t, false, Some(&key(1))).await;
    let msgid = q.message_create().await.unwrap();
    q.message_write(msgid, 0, b"hello ").await.unwrap();
    let e = q.message_write(msgid, 7, b"x").await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadOffset {
                offset: 7,
                size: 6,
                ..
            }
        ),
        "{e}"
    );
    q.message_write(msgid, 6, b"world").await.unwrap();
    let e = q.message_commit(msgid, 12).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::SizeMismatch {
                announced: 12,
                size: 11,
                ..
            }
        ),
        "{e}"
    );
    q.message_commit(msgid, 11).await.unwrap();
    assert_eq!(
        read_all(q.as_ref(), msgid, 4).await.unwrap(),
        b"hello world"
    );
    let e = q.message_write(msgid, 11, b"late").await.unwrap_err();
    assert!(matches!(e, Error::UnknownMessage { .. }), "{e}");
    // Deleted before commit: gone.
    let other = q.message_create().await.unwrap();
    q.message_write(other, 0, b"x").await.unwrap();
    q.message_delete(other).await.unwrap();
    assert!(q.message_commit(other, 1).await.is_err());
}

#[tokio::test]
async fn nothing_is_stored_in_plaintext() {
    for (compress, key) in settings() {
        let t = TempDir::new("opaque");
        let q = layered(&t, compress, key.as_ref()).await;
        let body = content(3 * SEGMENT_SIZE);
        let (msgid, evpid) = commit(q.as_ref(), &body, 64 * 1024).await;
        let dir = stored(&t, msgid);
        let message = std::fs::read(dir.join("message")).unwrap();
        let envelope = std::fs::read(dir.join(evpid.to_string())).unwrap();
        let has = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        assert!(!has(&message, &body[..80]), "{compress} {key:?}");
        assert_ne!(&envelope[..], ENVELOPE);
        if key.is_some() {
            // Compression alone hides nothing: deflate may keep literals.
            assert!(!has(&message, b"plaintext-marker"), "{compress} {key:?}");
            assert!(!has(&envelope, b"secret-rcpt"), "{compress} {key:?}");
        } else {
            assert_eq!(&envelope[format::HEADER_LEN..][..2], &[0x1f, 0x8b]);
        }
        if compress {
            assert!(message.len() < body.len() / 10, "{}", message.len());
        }
        assert_eq!(q.envelope_load(evpid).await.unwrap().unwrap(), ENVELOPE);
        let walked = q.envelope_walk(EvpId(0)).await.unwrap().unwrap();
        assert_eq!(walked, (evpid, ENVELOPE.to_vec()));
        assert!(q
            .envelope_update(evpid, b"version: 3\nretry: 1\n")
            .await
            .unwrap());
        assert_eq!(
            q.envelope_load(evpid).await.unwrap().unwrap(),
            b"version: 3\nretry: 1\n"
        );
    }
}

#[tokio::test]
async fn sequential_reads_read_the_stored_bytes_about_once() {
    let t = TempDir::new("sequential");
    let counting = Arc::new(Counting {
        inner: FsQueue::open(t.spool()).unwrap(),
        read: AtomicU64::new(0),
    });
    let q = open(counting.clone(), false, Some(&key(1))).await.unwrap();
    let body = content(40 * SEGMENT_SIZE + 5);
    let (msgid, _) = commit(q.as_ref(), &body, 64 * 1024).await;
    let stored_size = std::fs::metadata(stored(&t, msgid).join("message"))
        .unwrap()
        .len();
    counting.read.store(0, Ordering::Relaxed);
    assert!(read_all(q.as_ref(), msgid, 32 * 1024).await.unwrap() == body);
    let read = counting.read.load(Ordering::Relaxed);
    assert!(
        read <= stored_size + MAX_READ_LENGTH,
        "{read} of {stored_size}"
    );
    // Two readers interleaved each keep their own place.
    counting.read.store(0, Ordering::Relaxed);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    loop {
        let x = q
            .message_read(msgid, a.len() as u64, 32 * 1024)
            .await
            .unwrap()
            .unwrap();
        let y = q
            .message_read(msgid, b.len() as u64, 32 * 1024)
            .await
            .unwrap()
            .unwrap();
        if x.is_empty() && y.is_empty() {
            break;
        }
        a.extend_from_slice(&x);
        b.extend_from_slice(&y);
    }
    assert!(a == body && b == body);
    let read = counting.read.load(Ordering::Relaxed);
    assert!(
        read <= 2 * (stored_size + MAX_READ_LENGTH),
        "{read} of {stored_size}"
    );
}

#[tokio::test]
async fn a_tampered_message_is_moved_aside_not_read() {
    for (compress, key) in settings() {
        let t = TempDir::new("tampered-msg");
        let q = layered(&t, compress, key.as_ref()).await;
        let body = content(2 * SEGMENT_SIZE + 10);
        let (msgid, evpid) = commit(q.as_ref(), &body, 64 * 1024).await;
        let (good, _) = commit(q.as_ref(), b"fine", 4).await;
        let path = stored(&t, msgid).join("message");
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        flip(&path, len - 30);
        assert_eq!(read_all(q.as_ref(), msgid, MAX_READ_LENGTH).await, None);
        assert!(corrupt_dir(&t)
            .join(msgid.to_string())
            .join("message")
            .exists());
        assert!(!stored(&t, msgid).exists());
        assert_eq!(q.envelope_load(evpid).await.unwrap(), None);
        assert_eq!(read_all(q.as_ref(), good, 10).await.unwrap(), b"fine");
    }
}

#[tokio::test]
async fn a_truncated_message_is_detected() {
    let t = TempDir::new("truncated");
    let q = layered(&t, true, None).await;
    let body = content(3 * SEGMENT_SIZE);
    let (msgid, _) = commit(q.as_ref(), &body, 64 * 1024).await;
    let path = stored(&t, msgid).join("message");
    let bytes = std::fs::read(&path).unwrap();
    // Cut after the second record: whole records, no last one.
    let mut at = format::MESSAGE_HEADER_LEN;
    for _ in 0..2 {
        let len = u32::from_be_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        at += 5 + len;
    }
    std::fs::write(&path, &bytes[..at]).unwrap();
    assert_eq!(read_all(q.as_ref(), msgid, MAX_READ_LENGTH).await, None);
    assert!(corrupt_dir(&t).join(msgid.to_string()).exists());
}

#[tokio::test]
async fn a_tampered_envelope_is_moved_aside_and_skipped_by_the_walk() {
    for (compress, key) in settings() {
        let t = TempDir::new("tampered-evp");
        let q = layered(&t, compress, key.as_ref()).await;
        let (first, first_evp) = commit(q.as_ref(), b"one", 3).await;
        let (second, second_evp) = commit(q.as_ref(), b"two", 3).await;
        // The first one walked is the damaged one.
        let (bad, bad_evp) = if first_evp < second_evp {
            (first, first_evp)
        } else {
            (second, second_evp)
        };
        let path = stored(&t, bad).join(bad_evp.to_string());
        // In the gzip trailer (CRC), or the tag: checked in every mode.
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        flip(&path, len - 6);
        let walked = q.envelope_walk(EvpId(0)).await.unwrap().unwrap();
        assert_ne!(walked.0, bad_evp);
        assert!(q.envelope_walk(walked.0).await.unwrap().is_none());
        assert!(corrupt_dir(&t).join(bad.to_string()).exists());
        assert_eq!(q.envelope_load(bad_evp).await.unwrap(), None);
        assert_eq!(q.message_read(bad, 0, 10).await.unwrap(), None);
    }
}

#[tokio::test]
async fn another_key_or_other_layers_refuse_to_start() {
    let t = TempDir::new("refuse");
    {
        let q = layered(&t, true, Some(&key(1))).await;
        commit(q.as_ref(), b"kept", 4).await;
    }
    let reopen = |compress, key: Option<Key>| {
        let spool = t.spool();
        async move {
            let fs: Arc<dyn QueueBackend> = Arc::new(FsQueue::open(spool).unwrap());
            open(fs, compress, key.as_ref()).await.map(drop)
        }
    };
    let e = reopen(true, Some(key(2))).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("another key") && text.contains(&key(1).id().to_string()),
        "{text}"
    );
    assert!(text.contains("refusing to start"), "{text}");
    let e = reopen(true, None).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("stored with compression and encryption"),
        "{e}"
    );
    let e = reopen(false, None).await.unwrap_err();
    assert!(
        e.to_string().contains("neither compression nor encryption"),
        "{e}"
    );
    // Nothing was moved aside, and the right key still reads it all.
    assert!(std::fs::read_dir(corrupt_dir(&t)).unwrap().next().is_none());
    reopen(true, Some(key(1))).await.unwrap();
}

#[tokio::test]
async fn a_plain_queue_refuses_layers_but_damage_alone_does_not() {
    let t = TempDir::new("plain");
    {
        let fs = FsQueue::open(t.spool()).unwrap();
        commit(&fs, b"plain", 5).await;
    }
    let fs: Arc<dyn QueueBackend> = Arc::new(FsQueue::open(t.spool()).unwrap());
    let e = open(fs, false, Some(&key(1))).await.map(drop).unwrap_err();
    assert!(e.to_string().contains("stored with neither"), "{e}");

    let t = TempDir::new("damaged-only");
    let evpid = {
        let q = layered(&t, false, Some(&key(1))).await;
        commit(q.as_ref(), b"x", 1).await.1
    };
    flip(&stored(&t, evpid.msgid()).join(evpid.to_string()), 40);
    let q = layered(&t, false, Some(&key(1))).await;
    assert_eq!(q.envelope_walk(EvpId(0)).await.unwrap(), None);
    assert!(corrupt_dir(&t).join(evpid.msgid().to_string()).exists());
}

#[tokio::test]
async fn a_blob_sealed_with_another_key_is_left_alone_and_reported() {
    let t = TempDir::new("foreign");
    let fs: Arc<dyn QueueBackend> = Arc::new(FsQueue::open(t.spool()).unwrap());
    let mine = open(Arc::clone(&fs), true, Some(&key(1))).await.unwrap();
    let theirs = LayeredQueue::new(Arc::clone(&fs), Codec::new(true, Some(&key(2))).unwrap());
    let (own, own_evp) = commit(mine.as_ref(), b"mine", 4).await;
    let (foreign, foreign_evp) = commit(&theirs, b"theirs", 6).await;
    let e = mine.envelope_load(foreign_evp).await.unwrap_err();
    assert!(matches!(e, Error::Layers { .. }), "{e}");
    assert!(e.to_string().contains("another key"), "{e}");
    let e = mine.message_read(foreign, 0, 10).await.unwrap_err();
    assert!(e.to_string().contains("another key"), "{e}");
    // The walk goes past it; nothing is moved aside.
    let mut walked = Vec::new();
    let mut after = EvpId(0);
    while let Some((evpid, _)) = mine.envelope_walk(after).await.unwrap() {
        walked.push(evpid);
        after = evpid;
    }
    assert_eq!(walked, vec![own_evp]);
    assert!(std::fs::read_dir(corrupt_dir(&t)).unwrap().next().is_none());
    assert_eq!(read_all(&theirs, foreign, 10).await.unwrap(), b"theirs");
    assert_eq!(read_all(mine.as_ref(), own, 10).await.unwrap(), b"mine");
}
