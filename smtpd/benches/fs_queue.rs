//! fs queue intake speed: durable commits per second of 4 KiB messages with
//! one envelope each (message create, envelope create, one 4 KiB write,
//! commit: every commit fsynced before it returns), with 1 and 20
//! concurrent writers, as SMTP sessions would commit.
//!
//! ```text
//! cargo bench -p smtpd --bench fs_queue
//! ```
//!
//! criterion's `elem/s` reads as commits/s. The spool lives in the system
//! temp directory (`TMPDIR`), so the numbers are those of that filesystem
//! and disk.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use smtpd::queue::fs::FsQueue;
use smtpd::queue::QueueBackend;
use tokio::runtime::Runtime;

const ENVELOPE: &[u8] = b"version: 3
dispatcher: local
type: mda
smtpname: mx.example.org
helo: client.example.net
hostname: client.example.net
sockaddr: 192.0.2.44
sender: alice@example.net
rcpt: bob@example.org
dest: bob@example.org
ctime: 1731000000
last-try: 0
last-bounce: 0
ttl: 0
retry: 0
dsn-notify: 0
mda-user: bob
";

/// One SMTP transaction's queue work.
async fn commit_one(q: &FsQueue, body: &[u8]) {
    let msgid = q.message_create().await.expect("create");
    q.envelope_create(msgid, ENVELOPE).await.expect("envelope");
    q.message_write(msgid, 0, body).await.expect("write");
    q.message_commit(msgid, body.len() as u64)
        .await
        .expect("commit");
}

fn spool() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("smtpd-bench-fsq-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().expect("a runtime");
    let dir = spool();
    let queue = FsQueue::open(&dir).expect("the spool opens");
    let body: Vec<u8> = (0..4096)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz\r\n"[i % 28])
        .collect();
    let mut group = c.benchmark_group("fs_queue_commit_4k");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    for writers in [1u64, 20] {
        group.bench_with_input(BenchmarkId::from_parameter(writers), &writers, |b, &w| {
            b.iter_custom(|iters| {
                let queue = queue.clone();
                let body = body.clone();
                rt.block_on(async move {
                    let start = std::time::Instant::now();
                    let tasks: Vec<_> = (0..w)
                        .map(|i| {
                            let queue = queue.clone();
                            let body = body.clone();
                            let n = iters / w + u64::from(i < iters % w);
                            tokio::spawn(async move {
                                for _ in 0..n {
                                    commit_one(&queue, &body).await;
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("a writer");
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
    drop(queue);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
