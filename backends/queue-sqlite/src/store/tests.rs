//! The store on real database files in a temporary directory.

use std::path::Path;
use std::time::Duration;

use super::*;

fn config(dir: &Path) -> Config {
    Config {
        dbpath: dir.join("queue.sqlite"),
        busy_timeout: Duration::from_secs(1),
    }
}

/// A committed message with `content` written in chunks of `chunk` bytes
/// and one envelope.
fn committed(s: &mut Store, content: &[u8], chunk: usize) -> (u32, u64) {
    let msgid = s.message_create().expect("create");
    let evpid = s.envelope_create(msgid, b"rcpt").expect("envelope");
    let mut offset = 0u64;
    for part in content.chunks(chunk) {
        s.message_write(msgid, offset, part).expect("write");
        offset += part.len() as u64;
    }
    s.message_commit(msgid, content.len() as u64)
        .expect("commit");
    (msgid, evpid)
}

#[test]
fn envelope_keys_keep_the_protocols_order() {
    let ids = [1u64, 0x7fff_ffff_ffff_ffff, 0x8000_0000_0000_0000, u64::MAX];
    for pair in ids.windows(2) {
        assert!(evkey(pair[0]) < evkey(pair[1]), "{pair:x?}");
    }
    for id in ids {
        assert_eq!(evpid_of(evkey(id)), id);
    }
}

#[test]
fn reads_cut_across_chunks_and_stop_at_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Store::open(&config(dir.path())).expect("open");
    let content: Vec<u8> = (0..10_000u32).map(|i| (i % 256) as u8).collect();
    let (msgid, _) = committed(&mut s, &content, 777);
    for (offset, length) in [
        (0, 10_000),
        (0, 1),
        (776, 2),
        (777, 777),
        (5_000, 100_000),
        (9_999, 5),
    ] {
        let got = s
            .message_read(msgid, offset, length)
            .expect("read")
            .expect("found");
        let end = (offset + length).min(10_000) as usize;
        assert_eq!(got, content[offset as usize..end], "{offset} {length}");
    }
    assert_eq!(
        s.message_read(msgid, 10_000, 10).expect("read"),
        Some(Vec::new())
    );
    assert_eq!(s.message_read(msgid, 0, 0).expect("read"), Some(Vec::new()));
    assert_eq!(s.message_read(msgid ^ 1, 0, 1).expect("read"), None);
}

#[test]
fn writes_and_commits_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Store::open(&config(dir.path())).expect("open");
    let msgid = s.message_create().expect("create");
    s.message_write(msgid, 0, b"abc").expect("write");
    let e = s.message_write(msgid, 2, b"d").expect_err("bad offset");
    assert!(e.contains("offset 2, but 3 bytes are stored"), "{e}");
    let e = s.message_commit(msgid, 4).expect_err("size");
    assert!(e.contains("commit of 4 bytes, but 3 are stored"), "{e}");
    assert_eq!(
        s.message_read(msgid, 0, 3).expect("read"),
        None,
        "uncommitted"
    );
    s.message_commit(msgid, 3).expect("commit");
    assert!(s.message_commit(msgid, 3).is_err(), "committed twice");
    assert!(
        s.message_write(msgid, 3, b"d").is_err(),
        "written after commit"
    );
    assert!(s.message_write(0x0bad_cafe, 0, b"d").is_err(), "unknown");
    assert!(
        s.envelope_create(0x0bad_cafe, b"x").is_err(),
        "unknown message"
    );
    let empty = s.message_create().expect("create");
    s.message_commit(empty, 0).expect("an empty message");
    assert_eq!(
        s.message_read(empty, 0, 10).expect("read"),
        Some(Vec::new())
    );
}

#[test]
fn envelopes_show_with_their_commit_and_hide_when_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Store::open(&config(dir.path())).expect("open");
    let msgid = s.message_create().expect("create");
    let evpid = s.envelope_create(msgid, b"one").expect("envelope");
    assert_eq!(evpid >> 32, u64::from(msgid));
    assert_ne!(evpid & 0xffff_ffff, 0);
    assert_eq!(s.envelope_walk(0).expect("walk"), None, "not committed yet");
    assert_eq!(s.envelope_load(evpid).expect("load"), None);
    s.message_commit(msgid, 0).expect("commit");
    assert_eq!(
        s.envelope_walk(0).expect("walk"),
        Some((evpid, b"one".to_vec()))
    );
    assert!(s.envelope_update(evpid, b"two").expect("update"));
    assert_eq!(s.envelope_load(evpid).expect("load"), Some(b"two".to_vec()));
    assert!(!s.envelope_update(evpid ^ 1, b"x").expect("update"));
    let second = s
        .envelope_create(msgid, b"bounce")
        .expect("on a committed message");
    let (first, last) = (evpid.min(second), evpid.max(second));
    assert_eq!(s.envelope_walk(0).expect("walk").map(|e| e.0), Some(first));
    assert_eq!(
        s.envelope_walk(first).expect("walk").map(|e| e.0),
        Some(last)
    );
    assert_eq!(s.envelope_walk(last).expect("walk"), None);
    assert!(s.message_corrupt(msgid).expect("corrupt"));
    assert!(!s.message_corrupt(0x0bad_cafe).expect("corrupt"));
    assert_eq!(s.envelope_walk(0).expect("walk"), None);
    assert_eq!(s.envelope_load(evpid).expect("load"), None);
    assert!(!s.envelope_update(evpid, b"x").expect("update"));
    assert_eq!(s.message_read(msgid, 0, 1).expect("read"), None);
    s.message_delete(msgid).expect("delete");
    s.message_delete(msgid).expect("delete again");
    s.envelope_delete(evpid)
        .expect("delete an unknown envelope");
}

#[test]
fn committed_data_survives_a_reopen_and_uncommitted_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let content = vec![0x5a; 100_000];
    let (msgid, evpid, pending) = {
        let mut s = Store::open(&config(dir.path())).expect("open");
        let (msgid, evpid) = committed(&mut s, &content, 32_768);
        let pending = s.message_create().expect("create");
        s.message_write(pending, 0, b"half").expect("write");
        s.envelope_create(pending, b"x").expect("envelope");
        (msgid, evpid, pending)
    };
    let mut s = Store::open(&config(dir.path())).expect("reopen");
    assert_eq!(
        s.envelope_walk(0).expect("walk"),
        Some((evpid, b"rcpt".to_vec()))
    );
    assert_eq!(s.envelope_walk(evpid).expect("walk"), None);
    let got = s
        .message_read(msgid, 0, 200_000)
        .expect("read")
        .expect("found");
    assert_eq!(got, content);
    assert_eq!(
        s.message(pending).expect("message"),
        None,
        "removed at open"
    );
    let mode: String = s
        .conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
}
