//! The queue layers' end-to-end cases (`queue_layers/cases.rs`) on
//! queue-sqlite: `queue compression` and `queue encryption` above a
//! proc-exec backend, whose stored blobs are read and damaged here with
//! the `sqlite3` shell.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// Tests: a failed unwrap is a failed test (the shared harness unwraps).
#![allow(clippy::unwrap_used)]

// The shared cases' fs store is not used here.
#[allow(dead_code)]
#[path = "queue_layers/cases.rs"]
mod cases;
mod common;

use std::path::PathBuf;
use std::process::Command;

use cases::{KeyFrom, Layers, Store};
use common::backend::{binary, writable};
use common::Scratch;

/// A queue-sqlite store in `DIR/queue/queue.sqlite`.
struct SqliteStore {
    conf: PathBuf,
    db: PathBuf,
}

impl SqliteStore {
    fn new(dir: &Scratch) -> Self {
        let db = writable(dir, "queue").join("queue.sqlite");
        let conf = dir.write("queue-sqlite.conf", &format!("dbpath {}\n", db.display()));
        Self { conf, db }
    }

    /// The rows `sql` returns, one line each.
    fn query(&self, sql: &str) -> Vec<String> {
        let out = Command::new("sqlite3")
            .args(["-batch", "-noheader", "-cmd", ".timeout 5000"])
            .arg(&self.db)
            .arg(sql)
            .output()
            .expect("the sqlite3 shell runs (Debian package sqlite3)");
        assert!(out.status.success(), "sqlite3 {sql}: {out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn id(msgid: &str) -> u32 {
        u32::from_str_radix(msgid, 16).unwrap()
    }

    /// The message's chunks: offset and bytes.
    fn chunks(&self, msgid: &str) -> Vec<(u64, Vec<u8>)> {
        let sql = format!(
            "SELECT offset || '|' || hex(data) FROM chunks WHERE msgid = {} ORDER BY offset",
            Self::id(msgid)
        );
        self.query(&sql)
            .iter()
            .map(|row| {
                let (offset, hex) = row.split_once('|').unwrap();
                (offset.parse().unwrap(), unhex(hex))
            })
            .collect()
    }
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

impl Store for SqliteStore {
    fn queue_lines(&self) -> String {
        format!(
            "queue proc-exec \"{} {}\"\n",
            binary("queue-sqlite").display(),
            self.conf.display()
        )
    }

    fn blobs(&self, msgid: &str) -> Vec<Vec<u8>> {
        let content: Vec<u8> = self
            .chunks(msgid)
            .into_iter()
            .flat_map(|(_, data)| data)
            .collect();
        let sql = format!(
            "SELECT hex(data) FROM envelopes WHERE msgid = {}",
            Self::id(msgid)
        );
        let mut blobs = vec![content];
        blobs.extend(self.query(&sql).iter().map(|h| unhex(h)));
        blobs
    }

    fn tamper(&self, msgid: &str) {
        let chunks = self.chunks(msgid);
        let size: u64 = chunks.iter().map(|(_, d)| d.len() as u64).sum();
        // In the last record's tag (or gzip CRC), as for the fs queue.
        let at = size - 6;
        let (offset, mut data) = chunks
            .into_iter()
            .find(|(o, d)| *o <= at && at < o + d.len() as u64)
            .unwrap();
        data[(at - offset) as usize] ^= 0x20;
        self.query(&format!(
            "UPDATE chunks SET data = X'{}' WHERE msgid = {} AND offset = {offset}",
            hex(&data),
            Self::id(msgid)
        ));
    }

    fn is_corrupt(&self, msgid: &str) -> bool {
        let sql = format!(
            "SELECT corrupt FROM messages WHERE msgid = {}",
            Self::id(msgid)
        );
        self.query(&sql) == ["1"]
    }

    fn is_queued(&self, msgid: &str) -> bool {
        let sql = format!(
            "SELECT count(*) FROM messages WHERE msgid = {} AND committed = 1 AND corrupt = 0",
            Self::id(msgid)
        );
        self.query(&sql) == ["1"]
    }
}

#[test]
fn compression_alone() {
    let dir = Scratch::new("layers-sqlite", "compress");
    let layers = Layers {
        compress: true,
        encrypt: None,
    };
    cases::round_trip(&dir, &SqliteStore::new(&dir), layers);
}

#[test]
fn encryption_alone_with_a_key_file() {
    let dir = Scratch::new("layers-sqlite", "encrypt");
    let layers = Layers {
        compress: false,
        encrypt: Some(KeyFrom::File),
    };
    cases::round_trip(&dir, &SqliteStore::new(&dir), layers);
}

#[test]
fn compression_and_encryption_with_the_key_from_the_environment() {
    let dir = Scratch::new("layers-sqlite", "both");
    let layers = Layers {
        compress: true,
        encrypt: Some(KeyFrom::Env),
    };
    cases::round_trip(&dir, &SqliteStore::new(&dir), layers);
}

#[test]
fn a_damaged_message_is_moved_aside_and_not_delivered() {
    let dir = Scratch::new("layers-sqlite", "tamper");
    let layers = Layers {
        compress: true,
        encrypt: Some(KeyFrom::Config),
    };
    cases::tampered(&dir, &SqliteStore::new(&dir), layers);
}

#[test]
fn another_key_refuses_to_start() {
    let dir = Scratch::new("layers-sqlite", "other-key");
    let layers = Layers {
        compress: false,
        encrypt: Some(KeyFrom::Config),
    };
    cases::other_key(&dir, &SqliteStore::new(&dir), layers);
}
