//! Lines per second parsed and formatted by the codec, for a representative
//! line of each family.
//!
//! ```text
//! cargo bench -p smtpd-sdk --bench codec
//! ```
//!
//! Each benchmark handles one line per iteration, so criterion's element
//! throughput reads as lines per second.

use std::hint::black_box;

use base64::Engine as _;
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smtpd_sdk::proto::{filter, queue, table, Line};

/// One line of each kind, without its `\n`.
fn lines() -> Vec<(&'static str, Vec<u8>)> {
    let chunk = vec![b'x'; queue::DEFAULT_CHUNK_SIZE];
    let chunk = base64::engine::general_purpose::STANDARD.encode(chunk);
    vec![
        (
            "table request",
            b"table|0.1|1731000001.000412|aliases|lookup|alias|5e3a91c0|postmaster".to_vec(),
        ),
        (
            "table response",
            b"lookup-result|5e3a91c0|found|root, security@example.net".to_vec(),
        ),
        (
            "filter report",
            b"report|0.7|1731000000.100000|smtp-in|link-connect|a1b2c3d4e5f60718|host.example.net|pass|192.0.2.7:50123|198.51.100.2:25".to_vec(),
        ),
        (
            "filter data-line",
            b"filter|0.7|1731000004.000100|smtp-in|data-line|a1b2c3d4e5f60718|5d0a000100000002|The quick brown fox jumps over the lazy dog, again and again.".to_vec(),
        ),
        (
            "queue write 32 KiB",
            format!("queue|0.1|1731000001.000413|message-write|0000000000000002|0badcafe|0|{chunk}")
                .into_bytes(),
        ),
    ]
}

/// Benchmarks parse and format of one line type.
fn bench_line<L: Line>(c: &mut Criterion, name: &str, line: &[u8]) {
    let parsed = L::parse(line).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse", |b| b.iter(|| L::parse(black_box(line))));
    let mut out = BytesMut::with_capacity(line.len() + 1);
    group.bench_function("format", |b| {
        b.iter(|| {
            out.clear();
            black_box(&parsed)
                .format(&mut out)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            black_box(out.len())
        })
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    for (name, line) in lines() {
        match name {
            "table request" => bench_line::<table::Request>(c, name, &line),
            "table response" => bench_line::<table::Response>(c, name, &line),
            "filter report" | "filter data-line" => bench_line::<filter::Input>(c, name, &line),
            _ => bench_line::<queue::Request>(c, name, &line),
        }
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
