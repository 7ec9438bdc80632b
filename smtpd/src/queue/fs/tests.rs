use std::os::unix::fs::PermissionsExt;

use super::*;

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("smtpd-fsq-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn spool(&self) -> PathBuf {
        self.0.join("spool")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const ENVELOPE: &[u8] = b"version: 3\ndispatcher: local\n";

/// Creates, writes and commits a message with `rcpts` envelopes.
async fn commit(q: &FsQueue, body: &[u8], rcpts: usize) -> (MsgId, Vec<EvpId>) {
    let msgid = q.message_create().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..rcpts {
        let data = format!("envelope {i}\n");
        ids.push(q.envelope_create(msgid, data.as_bytes()).await.unwrap());
    }
    let mut offset = 0;
    for chunk in body.chunks(7) {
        q.message_write(msgid, offset, chunk).await.unwrap();
        offset += chunk.len() as u64;
    }
    q.message_commit(msgid, body.len() as u64).await.unwrap();
    (msgid, ids)
}

async fn walk_all(q: &FsQueue) -> Vec<(EvpId, Vec<u8>)> {
    let mut out = Vec::new();
    let mut after = EvpId(0);
    while let Some((id, data)) = q.envelope_walk(after).await.unwrap() {
        assert!(id > after, "walk goes up");
        out.push((id, data));
        after = id;
    }
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn creates_a_private_spool_with_its_layout() {
    let t = TempDir::new("layout");
    let q = FsQueue::open(t.spool()).unwrap();
    assert_eq!(q.root(), t.spool());
    let mode = fs::metadata(t.spool()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(
        names(&t.spool()),
        ["corrupt", "incoming", "lock", "purge", "queue", "temporary"]
    );
    assert_eq!(q.name(), "fs");
}

#[tokio::test]
async fn refuses_a_spool_in_use_or_writable_by_others() {
    let t = TempDir::new("refuse");
    let q = FsQueue::open(t.spool()).unwrap();
    let err = FsQueue::open(t.spool()).err().unwrap();
    assert!(
        err.to_string().ends_with("in use by another process"),
        "{err}"
    );
    drop(q);
    fs::set_permissions(t.spool(), fs::Permissions::from_mode(0o777)).unwrap();
    let err = FsQueue::open(t.spool()).err().unwrap();
    assert!(
        err.to_string()
            .contains("writable by group or others (mode 777)"),
        "{err}"
    );
    fs::set_permissions(t.spool(), fs::Permissions::from_mode(0o755)).unwrap();
    drop(FsQueue::open(t.spool()).unwrap());
    let mode = fs::metadata(t.spool()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "read access for others is taken away");
    let file = t.0.join("file");
    fs::write(&file, b"x").unwrap();
    let err = FsQueue::open(&file).err().unwrap();
    assert!(
        matches!(err, Error::Io { .. } | Error::Spool { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn message_lifecycle_write_commit_read_delete() {
    let t = TempDir::new("lifecycle");
    let q = FsQueue::open(t.spool()).unwrap();
    let body: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let msgid = q.message_create().await.unwrap();
    assert_ne!(msgid.0, 0);
    assert_eq!(
        q.message_read(msgid, 0, 10).await.unwrap(),
        None,
        "uncommitted"
    );
    q.message_write(msgid, 0, &body[..600]).await.unwrap();
    let err = q.message_write(msgid, 10, &body[600..]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadOffset {
                offset: 10,
                size: 600,
                ..
            }
        ),
        "{err}"
    );
    q.message_write(msgid, 600, &body[600..]).await.unwrap();
    let err = q.message_commit(msgid, 999).await.unwrap_err();
    assert!(matches!(
        err,
        Error::SizeMismatch {
            announced: 999,
            size: 1000,
            ..
        }
    ));
    q.message_commit(msgid, 1000).await.unwrap();
    let err = q.message_commit(msgid, 1000).await.unwrap_err();
    assert!(
        matches!(err, Error::UnknownMessage { .. }),
        "a second commit fails"
    );
    let err = q.message_write(msgid, 1000, b"x").await.unwrap_err();
    assert!(matches!(err, Error::UnknownMessage { .. }));

    assert_eq!(q.message_read(msgid, 0, 1000).await.unwrap().unwrap(), body);
    assert_eq!(
        q.message_read(msgid, 990, 64).await.unwrap().unwrap(),
        &body[990..]
    );
    assert_eq!(q.message_read(msgid, 1000, 64).await.unwrap().unwrap(), b"");
    assert_eq!(q.message_read(msgid, 5000, 64).await.unwrap().unwrap(), b"");
    assert_eq!(q.message_read(msgid, 3, 0).await.unwrap().unwrap(), b"");
    let err = q
        .message_read(msgid, 0, MAX_READ_LENGTH + 1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReadTooLarge { .. }));
    let bucket = format!("{:02x}", msgid.0 >> 24);
    assert!(t
        .spool()
        .join("queue")
        .join(&bucket)
        .join(msgid.to_string())
        .is_dir());

    q.message_delete(msgid).await.unwrap();
    assert_eq!(q.message_read(msgid, 0, 10).await.unwrap(), None);
    q.message_delete(msgid).await.unwrap();
    q.message_delete(MsgId(0x1234_5678)).await.unwrap();
    assert!(names(&t.spool().join("purge")).is_empty());
}

#[tokio::test]
async fn empty_message_and_rollback() {
    let t = TempDir::new("empty");
    let q = FsQueue::open(t.spool()).unwrap();
    let (msgid, _) = commit(&q, b"", 0).await;
    assert_eq!(q.message_read(msgid, 0, 10).await.unwrap().unwrap(), b"");

    let msgid = q.message_create().await.unwrap();
    let evpid = q.envelope_create(msgid, ENVELOPE).await.unwrap();
    q.message_write(msgid, 0, b"abc").await.unwrap();
    q.message_delete(msgid).await.unwrap();
    assert!(names(&t.spool().join("incoming")).is_empty());
    assert!(q.message_commit(msgid, 3).await.is_err());
    assert_eq!(q.envelope_load(evpid).await.unwrap(), None);
    assert!(walk_all(&q).await.is_empty());
}

#[tokio::test]
async fn envelopes_appear_with_the_commit_and_walk_in_id_order() {
    let t = TempDir::new("walk");
    let q = FsQueue::open(t.spool()).unwrap();
    let msgid = q.message_create().await.unwrap();
    let evpid = q.envelope_create(msgid, ENVELOPE).await.unwrap();
    assert_eq!(evpid.msgid(), msgid);
    assert_ne!(evpid.0 as u32, 0);
    assert!(walk_all(&q).await.is_empty(), "nothing before the commit");
    assert_eq!(q.envelope_load(evpid).await.unwrap(), None);
    q.message_write(msgid, 0, b"hello\n").await.unwrap();
    q.message_commit(msgid, 6).await.unwrap();
    assert_eq!(q.envelope_load(evpid).await.unwrap().unwrap(), ENVELOPE);

    let mut all = vec![evpid];
    for n in 0..5 {
        all.extend(commit(&q, b"body", n).await.1);
    }
    all.sort();
    let walked: Vec<EvpId> = walk_all(&q).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(walked, all);
    let middle = all[4];
    let (next, _) = q.envelope_walk(middle).await.unwrap().unwrap();
    assert_eq!(next, all[5], "the walk resumes strictly after the id given");
    assert_eq!(q.envelope_walk(EvpId(u64::MAX)).await.unwrap(), None);
}

#[tokio::test]
async fn envelope_update_load_delete() {
    let t = TempDir::new("envelope");
    let q = FsQueue::open(t.spool()).unwrap();
    let (msgid, ids) = commit(&q, b"body", 2).await;
    let evpid = ids[0];
    assert!(q.envelope_update(evpid, b"retry: 1\n").await.unwrap());
    assert_eq!(
        q.envelope_load(evpid).await.unwrap().unwrap(),
        b"retry: 1\n"
    );
    let unknown = EvpId::new(msgid, 7);
    assert!(!q.envelope_update(unknown, b"x").await.unwrap());
    assert_eq!(q.envelope_load(unknown).await.unwrap(), None);
    let err = q.envelope_update(evpid, b"").await.unwrap_err();
    assert!(matches!(err, Error::EnvelopeSize { size: 0 }));
    let big = vec![b'x'; MAX_ENVELOPE_SIZE + 1];
    assert!(q.envelope_update(evpid, &big).await.is_err());
    assert!(q.envelope_create(msgid, &big).await.is_err());

    q.envelope_delete(evpid).await.unwrap();
    q.envelope_delete(evpid).await.unwrap();
    q.envelope_delete(unknown).await.unwrap();
    assert_eq!(q.envelope_load(evpid).await.unwrap(), None);
    assert!(!q.envelope_update(evpid, b"x").await.unwrap());
    let walked: Vec<EvpId> = walk_all(&q).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(walked, [ids[1]]);
    assert!(names(&t.spool().join("temporary")).is_empty());

    // A bounce added to a committed message: visible at once.
    let bounce = q.envelope_create(msgid, b"type: bounce\n").await.unwrap();
    assert_eq!(
        q.envelope_load(bounce).await.unwrap().unwrap(),
        b"type: bounce\n"
    );
    assert_eq!(walk_all(&q).await.len(), 2);
    let err = q
        .envelope_create(MsgId(0x0101_0101), ENVELOPE)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownMessage { .. }));

    // An uncommitted message's envelope can be deleted before the commit.
    let m = q.message_create().await.unwrap();
    let gone = q.envelope_create(m, ENVELOPE).await.unwrap();
    let kept = q.envelope_create(m, ENVELOPE).await.unwrap();
    q.envelope_delete(gone).await.unwrap();
    q.message_commit(m, 0).await.unwrap();
    assert_eq!(q.envelope_load(gone).await.unwrap(), None);
    assert!(q.envelope_load(kept).await.unwrap().is_some());
}

#[tokio::test]
async fn corrupt_moves_a_message_aside() {
    let t = TempDir::new("corrupt");
    let q = FsQueue::open(t.spool()).unwrap();
    let (msgid, ids) = commit(&q, b"body", 2).await;
    let (other, other_ids) = commit(&q, b"other", 1).await;
    assert!(q.message_corrupt(msgid).await.unwrap());
    assert!(!q.message_corrupt(msgid).await.unwrap());
    assert!(!q.message_corrupt(MsgId(0x0202_0202)).await.unwrap());
    assert_eq!(q.message_read(msgid, 0, 10).await.unwrap(), None);
    assert_eq!(q.envelope_load(ids[0]).await.unwrap(), None);
    assert!(!q.envelope_update(ids[1], b"x").await.unwrap());
    let walked: Vec<EvpId> = walk_all(&q).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(walked, other_ids);
    let aside = t.spool().join("corrupt").join(msgid.to_string());
    assert_eq!(fs::read(aside.join("message")).unwrap(), b"body");
    assert_eq!(names(&aside).len(), 3);

    // An uncommitted message can be moved aside too; nothing walks it.
    let m = q.message_create().await.unwrap();
    q.envelope_create(m, ENVELOPE).await.unwrap();
    assert!(q.message_corrupt(m).await.unwrap());
    assert!(q.message_commit(m, 0).await.is_err());

    // Restarted: still aside, the rest still there.
    drop(q);
    let q = FsQueue::open(t.spool()).unwrap();
    assert_eq!(walk_all(&q).await.len(), 1);
    assert!(q.message_read(other, 0, 10).await.unwrap().is_some());
    assert_eq!(names(&t.spool().join("corrupt")).len(), 2);
}

#[tokio::test]
async fn restart_finds_every_committed_envelope_and_purges_the_rest() {
    let t = TempDir::new("restart");
    let q = FsQueue::open(t.spool()).unwrap();
    let mut committed = Vec::new();
    for n in 1..4 {
        committed.extend(commit(&q, b"kept", n).await.1);
    }
    // Interrupted transactions: created, written, never committed.
    let open = q.message_create().await.unwrap();
    q.envelope_create(open, ENVELOPE).await.unwrap();
    q.message_write(open, 0, b"half").await.unwrap();
    drop(q);
    // What a crash between steps leaves: scratch files of envelope writes,
    // a message directory never renamed, stray names in queue/.
    let spool = t.spool();
    fs::write(spool.join("temporary").join("update.1.1"), b"partial").unwrap();
    let half = spool.join("incoming").join("0badcafe");
    fs::create_dir(&half).unwrap();
    fs::write(half.join("message"), b"half a message").unwrap();
    fs::write(half.join("0badcafe00000001"), ENVELOPE).unwrap();
    fs::write(spool.join("queue").join("README"), b"stray").unwrap();

    let q = FsQueue::open(&spool).unwrap();
    committed.sort();
    let walked: Vec<EvpId> = walk_all(&q).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(walked, committed);
    assert!(names(&spool.join("incoming")).is_empty());
    assert!(names(&spool.join("temporary")).is_empty());
    assert!(names(&spool.join("purge")).is_empty());
    assert_eq!(q.message_read(open, 0, 10).await.unwrap(), None);
    assert!(q.message_commit(open, 4).await.is_err());
    // The ids of purged messages can be used again.
    assert_eq!(
        q.message_read(MsgId(0x0bad_cafe), 0, 1).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn concurrent_transactions_do_not_mix() {
    let t = TempDir::new("concurrent");
    let q = FsQueue::open(t.spool()).unwrap();
    let tasks: Vec<_> = (0..32u8)
        .map(|i| {
            let q = q.clone();
            tokio::spawn(async move {
                let body = vec![i; 100 + usize::from(i)];
                let (msgid, ids) = commit(&q, &body, 1 + usize::from(i % 3)).await;
                (msgid, ids, body)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let (msgid, ids, body) = task.await.unwrap();
        let len = body.len() as u64;
        assert_eq!(q.message_read(msgid, 0, len).await.unwrap().unwrap(), body);
        all.extend(ids);
    }
    all.sort();
    let walked: Vec<EvpId> = walk_all(&q).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(walked, all);
}

#[tokio::test]
async fn injected_io_errors_never_half_commit() {
    for (step, errno) in [
        (Step::Write, libc::ENOSPC),
        (Step::SyncFile, libc::EIO),
        (Step::SyncDir, libc::EIO),
        (Step::Rename, libc::ENOSPC),
    ] {
        let t = TempDir::new("faults");
        let q = FsQueue::open(t.spool()).unwrap();
        let msgid = q.message_create().await.unwrap();
        let evpid = q.envelope_create(msgid, ENVELOPE).await.unwrap();
        q.message_write(msgid, 0, b"hello").await.unwrap();
        q.inject(Some((step, errno)));
        let failed = match step {
            Step::Write => q.message_write(msgid, 5, b" world").await.map(|()| 5),
            _ => q.message_commit(msgid, 5).await.map(|()| 5),
        };
        let err = failed.unwrap_err();
        let expected = if errno == libc::ENOSPC { 452 } else { 451 };
        assert_eq!(err.smtp_status().code, expected, "{step:?}: {err}");
        assert_eq!(q.envelope_load(evpid).await.unwrap(), None, "{step:?}");
        assert!(walk_all(&q).await.is_empty(), "{step:?}");
        q.inject(None);
        // Whatever failed, the message is in one piece: committed now with
        // the bytes acknowledged, or refused and deletable.
        match step {
            Step::Write => {
                q.message_write(msgid, 5, b"!").await.unwrap();
                q.message_commit(msgid, 6).await.unwrap();
                let read = q.message_read(msgid, 0, 100).await.unwrap().unwrap();
                assert_eq!(read, b"hello!");
                assert_eq!(walk_all(&q).await.len(), 1);
            }
            _ => {
                q.message_delete(msgid).await.unwrap();
                assert_eq!(q.message_read(msgid, 0, 100).await.unwrap(), None);
            }
        }
        drop(q);
        let q = FsQueue::open(t.spool()).unwrap();
        let expected = usize::from(step == Step::Write);
        assert_eq!(walk_all(&q).await.len(), expected, "{step:?} after restart");
    }
}

#[tokio::test]
async fn injected_errors_on_committed_envelopes_keep_the_old_content() {
    let t = TempDir::new("faults-envelope");
    let q = FsQueue::open(t.spool()).unwrap();
    let (msgid, ids) = commit(&q, b"body", 1).await;
    for (step, errno) in [
        (Step::Write, libc::ENOSPC),
        (Step::SyncFile, libc::EIO),
        (Step::Rename, libc::EIO),
    ] {
        q.inject(Some((step, errno)));
        assert!(q.envelope_update(ids[0], b"new").await.is_err(), "{step:?}");
        assert!(
            q.envelope_create(msgid, b"bounce").await.is_err(),
            "{step:?}"
        );
        q.inject(None);
        let loaded = q.envelope_load(ids[0]).await.unwrap().unwrap();
        assert_eq!(loaded, b"envelope 0\n", "{step:?}");
        assert_eq!(walk_all(&q).await.len(), 1, "{step:?}");
        assert!(names(&t.spool().join("temporary")).is_empty(), "{step:?}");
    }
    // Deletions are not fsynced: a failing directory sync cannot fail them.
    q.inject(Some((Step::SyncDir, libc::EIO)));
    q.envelope_delete(ids[0]).await.unwrap();
    q.message_delete(msgid).await.unwrap();
    q.inject(None);
    assert!(walk_all(&q).await.is_empty());
}

/// The body of the tiny-filesystem test, run inside a mount namespace where
/// `dir` is a 256 KiB tmpfs.
async fn fill_tiny_filesystem(dir: &Path) {
    let q = FsQueue::open(dir.join("spool")).unwrap();
    let chunk = vec![b'x'; 16 * 1024];
    let mut committed = Vec::new();
    let mut full = None;
    'fill: for _ in 0..100 {
        let msgid = match q.message_create().await {
            Ok(m) => m,
            Err(e) => {
                full = Some(e);
                break;
            }
        };
        let evpid = match q.envelope_create(msgid, ENVELOPE).await {
            Ok(e) => e,
            Err(e) => {
                full = Some(e);
                break;
            }
        };
        let mut size = 0;
        for _ in 0..4 {
            if let Err(e) = q.message_write(msgid, size, &chunk).await {
                q.message_delete(msgid).await.unwrap();
                full = Some(e);
                break 'fill;
            }
            size += chunk.len() as u64;
        }
        if let Err(e) = q.message_commit(msgid, size).await {
            q.message_delete(msgid).await.unwrap();
            full = Some(e);
            break;
        }
        committed.push((msgid, evpid));
    }
    let err = full.expect("the filesystem fills up");
    assert!(matches!(err, Error::NoSpace { .. }), "{err}");
    assert_eq!(err.smtp_status().code, 452);
    assert!(!committed.is_empty());
    drop(q);
    let q = FsQueue::open(dir.join("spool")).unwrap();
    let walked: Vec<EvpId> = walk_all(&q).await.into_iter().map(|(id, _)| id).collect();
    let mut expected: Vec<EvpId> = committed.iter().map(|(_, e)| *e).collect();
    expected.sort();
    assert_eq!(walked, expected, "everything acknowledged is there");
    for (msgid, _) in &committed {
        let body = q.message_read(*msgid, 0, 1 << 17).await.unwrap().unwrap();
        assert_eq!(body.len(), 4 * chunk.len());
    }
}

const TINY_FS_ENV: &str = "SMTPD_FSQ_TINY_FS";

/// ENOSPC from a real full filesystem: the test binary runs itself again
/// under `unshare -rm` with a 256 KiB tmpfs mounted over a temp directory.
#[tokio::test]
async fn a_full_filesystem_is_a_clean_error() {
    if let Some(dir) = std::env::var_os(TINY_FS_ENV) {
        fill_tiny_filesystem(Path::new(&dir)).await;
        return;
    }
    let t = TempDir::new("tiny");
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "mount -t tmpfs -o size=256k none '{dir}' && exec '{exe}' --exact \
         queue::fs::tests::a_full_filesystem_is_a_clean_error --test-threads 1",
        dir = t.0.display(),
        exe = exe.display(),
    );
    #[allow(clippy::disallowed_methods)] // The test re-runs its own binary.
    let out = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .env(TINY_FS_ENV, &t.0)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

const CRASH_ENV: &str = "SMTPD_FSQ_CRASH_CHILD";

/// The child of the kill -9 test: commits messages and updates envelopes
/// forever, printing each one once it is acknowledged, with transactions
/// left open in between.
async fn crash_child(spool: &Path) {
    let q = FsQueue::open(spool).unwrap();
    let mut out = io::stdout();
    let mut committed: Vec<EvpId> = Vec::new();
    for i in 0..20_000usize {
        let byte = (i % 251) as u8;
        let len = 1 + i * 37 % 9000;
        let (msgid, ids) = commit(&q, &vec![byte; len], 2).await;
        writeln!(out, "commit {msgid} {len} {byte} {} {}", ids[0], ids[1]).unwrap();
        committed.extend(&ids);
        if i % 3 == 0 {
            let evpid = committed[i % committed.len()];
            q.envelope_update(evpid, format!("update {i}\n").as_bytes())
                .await
                .unwrap();
            writeln!(out, "update {evpid} {i}").unwrap();
        }
        let open = q.message_create().await.unwrap();
        q.envelope_create(open, ENVELOPE).await.unwrap();
        q.message_write(open, 0, b"never committed").await.unwrap();
        out.flush().unwrap();
    }
}

fn hex_evpid(text: &str) -> EvpId {
    EvpId(u64::from_str_radix(text, 16).unwrap())
}

/// A real crash: a child process commits through the fs queue and is
/// killed with SIGKILL in full flight; after a restart every acknowledged
/// message and envelope is there, with its acknowledged content.
#[tokio::test]
async fn acknowledged_work_survives_kill_9() {
    if let Some(dir) = std::env::var_os(CRASH_ENV) {
        crash_child(Path::new(&dir)).await;
        return;
    }
    use std::io::BufRead;
    let t = TempDir::new("kill9");
    #[allow(clippy::disallowed_methods)] // The test re-runs its own binary.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "queue::fs::tests::acknowledged_work_survives_kill_9",
        ])
        .args(["--test-threads", "1", "--nocapture"])
        .env(CRASH_ENV, t.spool())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.starts_with("commit ") || line.starts_with("update ") {
            lines.push(line);
        }
        if lines.len() >= 200 {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(lines.len() >= 200, "the child stopped early: {lines:?}");

    let q = FsQueue::open(t.spool()).unwrap();
    assert!(names(&t.spool().join("incoming")).is_empty());
    let walked: HashMap<EvpId, Vec<u8>> = walk_all(&q).await.into_iter().collect();
    let mut updates: HashMap<EvpId, usize> = HashMap::new();
    let mut envelopes = 0;
    for line in &lines {
        let words: Vec<&str> = line.split(' ').collect();
        if words[0] == "update" {
            updates.insert(hex_evpid(words[1]), words[2].parse().unwrap());
            continue;
        }
        let msgid = MsgId(u32::from_str_radix(words[1], 16).unwrap());
        let len: usize = words[2].parse().unwrap();
        let byte: u8 = words[3].parse().unwrap();
        let body = q.message_read(msgid, 0, 16 * 1024).await.unwrap().unwrap();
        assert_eq!(body, vec![byte; len], "message {msgid}");
        for id in &words[4..] {
            assert!(walked.contains_key(&hex_evpid(id)), "envelope {id} lost");
            envelopes += 1;
        }
    }
    assert!(walked.len() >= envelopes);
    for (evpid, n) in updates {
        let text = String::from_utf8(walked[&evpid].clone()).unwrap();
        let found: usize = text
            .strip_prefix("update ")
            .and_then(|t| t.trim_end().parse().ok())
            .unwrap_or_else(|| panic!("{evpid}: {text:?}"));
        assert!(
            found >= n,
            "{evpid}: update {n} acknowledged, {found} found"
        );
    }
}
