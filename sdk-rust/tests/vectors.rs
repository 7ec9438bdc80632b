//! Replays protocol-spec/vectors/{table,filter,queue}/*.txt through the
//! example backends, in-process: each case gets a fresh backend
//! (`run_with` over in-memory pipes), the handshake, then its exchanges;
//! answers are matched with the conformance kit's rules (by id, or by
//! session and token with data-lines in order).

// The examples are compiled here as modules; their `main` is not used.
#[allow(dead_code)]
#[path = "../examples/filter_guard.rs"]
mod filter_guard;
#[allow(dead_code)]
#[path = "../examples/queue_memory.rs"]
mod queue_memory;
#[allow(dead_code)]
#[path = "../examples/table_static.rs"]
mod table_static;

mod common;

use std::future::Future;
use std::path::PathBuf;

use smtpd_conformance::vectors::{
    self, match_answers, Captures, Case, Family, Mismatch, VectorFile,
};
use smtpd_sdk::{filter, queue, table};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../protocol-spec/vectors")
}

fn files(family: Family) -> Vec<VectorFile> {
    let files: Vec<VectorFile> = vectors::load_dir(&vectors_dir())
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|f| f.family == family)
        .collect();
    assert!(!files.is_empty(), "no {family} vectors");
    files
}

/// One mismatch, readable.
fn describe(m: &Mismatch) -> String {
    let text = |b: &[u8]| {
        let t = String::from_utf8_lossy(b);
        let mut cut: String = t.chars().take(200).collect();
        if cut.len() < t.len() {
            cut.push_str("...");
        }
        cut
    };
    match m {
        Mismatch::Missing { line, expected } => {
            format!("line {line}: no answer, expected {:?}", text(expected))
        }
        Mismatch::Different {
            line,
            expected,
            got,
        } => format!(
            "line {line}: expected {:?}, got {:?}",
            text(expected),
            text(got)
        ),
        Mismatch::Unexpected { got } => format!("unexpected answer {:?}", text(got)),
    }
}

/// Plays one case against a backend; the error says what went wrong.
async fn play<B>(
    family: Family,
    case: &Case,
    backend: B,
    mut daemon: common::Daemon,
) -> Result<(), String>
where
    B: Future<Output = Result<(), smtpd_sdk::backend::RunError>>,
{
    // The script owns the daemon's pipes, so that they close (and the
    // backend ends) as soon as it stops, on failure too.
    let script = async move {
        daemon
            .handshake(family.version(), &[("tablename", "standard")])
            .await;
        let mut captures = Captures::new();
        for exchange in case.exchanges() {
            for sent in &exchange.sent {
                let line = sent
                    .substitute(&captures)
                    .map_err(|name| format!("line {}: {{{name}}} was never captured", sent.line))?;
                daemon
                    .send(&String::from_utf8(line).map_err(|e| e.to_string())?)
                    .await;
            }
            let answers: Vec<Vec<u8>> = daemon
                .recv_n(exchange.expected.len())
                .await
                .into_iter()
                .map(String::into_bytes)
                .collect();
            let mismatches = match_answers(family, &exchange.expected, &answers, &mut captures);
            if !mismatches.is_empty() {
                let text: Vec<String> = mismatches.iter().map(describe).collect();
                return Err(text.join("; "));
            }
        }
        daemon.close();
        match daemon.recv().await {
            None => Ok(()),
            Some(extra) => Err(format!("unexpected answer {extra:?}")),
        }
    };
    let (ran, played) = tokio::join!(backend, script);
    ran.map_err(|e| format!("the backend failed: {e}"))?;
    played
}

/// Plays every case of `family` whose fixture is `fixture` (or none), each
/// against a backend made by `start`; fails listing every failed case.
async fn replay<B, S>(family: Family, fixture: &str, start: S)
where
    B: Future<Output = Result<(), smtpd_sdk::backend::RunError>>,
    S: Fn(tokio::io::DuplexStream, tokio::io::DuplexStream) -> B,
{
    let mut failures = Vec::new();
    let mut played = 0;
    for file in files(family) {
        for case in &file.cases {
            let wanted = case.fixture.as_deref().map_or(true, |f| f == fixture);
            if case.is_codec_only() || !wanted {
                continue;
            }
            let (daemon, input, output) = common::pipes();
            if let Err(e) = play(family, case, start(input, output), daemon).await {
                failures.push(format!("{} {}: {e}", file.display_name(), case.name));
            }
            played += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(played > 0, "no {family} case was played");
}

#[tokio::test]
async fn table_static_passes_the_table_vectors() {
    let fixture = vectors_dir().join("fixtures/standard.table");
    replay(Family::Table, "standard.table", |input, output| {
        let t = table_static::StaticTable::open(fixture.clone()).unwrap();
        table::run_with(t, input, output)
    })
    .await;
}

#[tokio::test]
async fn filter_guard_passes_the_filter_vectors() {
    replay(Family::Filter, "standard.filter", |input, output| {
        filter::run_with(filter_guard::Guard, input, output)
    })
    .await;
}

#[tokio::test]
async fn queue_memory_passes_the_queue_vectors() {
    replay(Family::Queue, "none", |input, output| {
        queue::run_with(queue_memory::MemoryQueue::new(), input, output)
    })
    .await;
}
