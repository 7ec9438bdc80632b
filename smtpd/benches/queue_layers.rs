//! The CPU cost of the queue layers per piece, without any disk: sealing
//! and opening an envelope, a 4 KiB message (one last record) and a full
//! 64 KiB segment, for compression, encryption and both. Next to the
//! fs queue's durable commit (`cargo bench -p smtpd --bench fs_queue`,
//! about a millisecond on common disks), this is what the layers add to
//! each message at intake; `bench/queue-layers.sh` measures the whole
//! daemon.
//!
//! ```text
//! cargo bench -p smtpd --bench queue_layers
//! ```
//!
//! criterion's `time` is per piece; `thrpt` in bytes/s of plaintext.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use smtpd::queue::layers::format::{Codec, RecordKind};
use smtpd::queue::layers::Key;
use smtpd::queue::MsgId;

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

const MSGID: MsgId = MsgId(0x0bad_cafe);

fn text(len: usize) -> Vec<u8> {
    let line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n";
    (0..len).map(|i| line[i % line.len()]).collect()
}

fn bench(c: &mut Criterion) {
    let key = Key::from_bytes(b"5f1c0a2e9b7d4e6f8a3b2c1d0e9f8a7b").expect("32 bytes");
    let modes = [
        ("compressed", Codec::new(true, None)),
        ("encrypted", Codec::new(false, Some(&key))),
        ("both", Codec::new(true, Some(&key))),
    ];
    let mut group = c.benchmark_group("queue_layers");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for (name, codec) in &modes {
        let codec = codec.as_ref().expect("a layer is on");
        group.throughput(Throughput::Bytes(ENVELOPE.len() as u64));
        group.bench_function(BenchmarkId::new("seal_envelope", name), |b| {
            b.iter(|| codec.seal_envelope(MSGID, ENVELOPE));
        });
        let sealed = codec.seal_envelope(MSGID, ENVELOPE);
        group.bench_function(BenchmarkId::new("open_envelope", name), |b| {
            b.iter(|| codec.open_envelope(MSGID, &sealed).expect("opens"));
        });
        let header = codec.message_header();
        for (size, kind) in [(4096, RecordKind::Last), (64 * 1024, RecordKind::Data)] {
            let plain = text(size);
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(BenchmarkId::new(format!("seal_{size}"), name), |b| {
                b.iter(|| codec.seal_record(&header, MSGID, 0, kind, &plain));
            });
            let record = codec.seal_record(&header, MSGID, 0, kind, &plain);
            let body = &record[5..];
            group.bench_function(BenchmarkId::new(format!("open_{size}"), name), |b| {
                b.iter(|| {
                    codec
                        .open_record(&header, MSGID, 0, kind, body)
                        .expect("opens")
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
