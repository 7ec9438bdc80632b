//! The queue layers' end-to-end cases (`queue_layers/cases.rs`) on
//! queue-postgres: `queue compression` and `queue encryption` above a
//! proc-exec backend whose store is a real PostgreSQL 15 server started
//! by each test (table-postgres's harness, `tests/pg/mod.rs`); the stored
//! blobs are read and damaged here with `psql`.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// Tests: a failed unwrap is a failed test (the shared harness unwraps).
#![allow(clippy::unwrap_used)]

// The shared cases' fs store is not used here.
#[allow(dead_code)]
#[path = "queue_layers/cases.rs"]
mod cases;
mod common;

#[path = "../../backends/table-postgres/tests/pg/mod.rs"]
mod pg;

use std::path::PathBuf;

use cases::{KeyFrom, Layers, Store};
use common::backend::binary;
use common::Scratch;
use pg::PgServer;

/// The schema of the queue's tables.
const SCHEMA: &str = "layers";

/// A queue-postgres store in schema [`SCHEMA`] of its own server.
struct PgStore {
    conf: PathBuf,
    pg: PgServer,
}

impl PgStore {
    /// A server named `name` and the backend's configuration.
    fn new(dir: &Scratch, name: &str) -> Self {
        let pg = PgServer::start(&format!("queue-layers-{name}"));
        let conf = dir.write(
            "queue-postgres.conf",
            &format!("conninfo {}\nschema {SCHEMA}\n", pg.conninfo()),
        );
        Self { conf, pg }
    }

    /// The rows `sql` returns, one line each.
    fn query(&self, sql: &str) -> Vec<String> {
        self.pg.psql(sql).lines().map(str::to_owned).collect()
    }

    fn id(msgid: &str) -> u32 {
        u32::from_str_radix(msgid, 16).unwrap()
    }

    /// The message's chunks: offset and bytes.
    fn chunks(&self, msgid: &str) -> Vec<(u64, Vec<u8>)> {
        let sql = format!(
            "SELECT off || '|' || encode(data, 'hex') FROM {SCHEMA}.chunks \
             WHERE msgid = {} ORDER BY off;",
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
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store for PgStore {
    fn queue_lines(&self) -> String {
        format!(
            "queue proc-exec \"{} {}\"\n",
            binary("queue-postgres").display(),
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
            "SELECT encode(data, 'hex') FROM {SCHEMA}.envelopes WHERE msgid = {};",
            Self::id(msgid)
        );
        let mut blobs = vec![content];
        blobs.extend(self.query(&sql).iter().map(|h| unhex(h)));
        assert!(blobs.len() > 1, "no envelope of {msgid} in the store");
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
            "UPDATE {SCHEMA}.chunks SET data = decode('{}', 'hex') \
             WHERE msgid = {} AND off = {offset};",
            hex(&data),
            Self::id(msgid)
        ));
    }

    fn is_corrupt(&self, msgid: &str) -> bool {
        let sql = format!(
            "SELECT corrupt FROM {SCHEMA}.messages WHERE msgid = {};",
            Self::id(msgid)
        );
        self.query(&sql) == ["t"]
    }

    fn is_queued(&self, msgid: &str) -> bool {
        let sql = format!(
            "SELECT count(*) FROM {SCHEMA}.messages \
             WHERE msgid = {} AND committed AND NOT corrupt;",
            Self::id(msgid)
        );
        self.query(&sql) == ["1"]
    }
}

#[test]
fn compression_alone() {
    let dir = Scratch::new("layers-postgres", "compress");
    let layers = Layers {
        compress: true,
        encrypt: None,
    };
    cases::round_trip(&dir, &PgStore::new(&dir, "compress"), layers);
}

#[test]
fn encryption_alone_with_a_key_file() {
    let dir = Scratch::new("layers-postgres", "encrypt");
    let layers = Layers {
        compress: false,
        encrypt: Some(KeyFrom::File),
    };
    cases::round_trip(&dir, &PgStore::new(&dir, "encrypt"), layers);
}

#[test]
fn compression_and_encryption_with_the_key_on_standard_input() {
    let dir = Scratch::new("layers-postgres", "both");
    let layers = Layers {
        compress: true,
        encrypt: Some(KeyFrom::Stdin),
    };
    cases::round_trip(&dir, &PgStore::new(&dir, "both"), layers);
}

#[test]
fn a_damaged_message_is_moved_aside_and_not_delivered() {
    let dir = Scratch::new("layers-postgres", "tamper");
    let layers = Layers {
        compress: true,
        encrypt: Some(KeyFrom::Config),
    };
    cases::tampered(&dir, &PgStore::new(&dir, "tamper"), layers);
}

#[test]
fn another_key_refuses_to_start() {
    let dir = Scratch::new("layers-postgres", "other-key");
    let layers = Layers {
        compress: false,
        encrypt: Some(KeyFrom::Env),
    };
    cases::other_key(&dir, &PgStore::new(&dir, "other-key"), layers);
}
