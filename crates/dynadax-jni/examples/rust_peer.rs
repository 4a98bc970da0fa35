//! The Rust side of the Java binding's benchmarks (`scripts/java-bench`): the very
//! loops `io.dynadax.bench.JavaBench` runs, on the library directly, so the report
//! sets each Java figure beside the Rust one measured in the same run.
//!
//! ```text
//! cargo run --release -p dynadax-jni --example rust_peer -- append DIR RECORD SECS
//! cargo run --release -p dynadax-jni --example rust_peer -- durable DIR RECORD THREADS SECS
//! cargo run --release -p dynadax-jni --example rust_peer -- iterate DIR RECORD
//! cargo run --release -p dynadax-jni --example rust_peer -- crossing DIR SECS
//! ```
//! One JSON line per result, with the fields JavaBench prints.

use dynadax::log::{Durability, Log, LogOptions, TailMode};
use std::time::{Duration, Instant};

/// JavaBench's options: the library's defaults (64 MiB segments) but for what it sets.
fn opts(durability: Durability, tail_mode: TailMode) -> LogOptions {
    LogOptions { durability, tail_mode, ..LogOptions::default() }
}

fn row(bench: &str, dir: &std::path::Path, record: usize, threads: usize, n: u64, secs: f64) {
    let fs = dynadax::probe(dir).map_or("?".into(), |p| p.fs_type);
    println!(
        "{{\"bench\":\"{bench}\",\"impl\":\"rust\",\"api\":\"&[u8]\",\"record\":{record},\"threads\":{threads},\
         \"ops\":{n},\"secs\":{secs:.6},\"ops_per_s\":{:.1},\"ns_per_op\":{:.1},\"mb_per_s\":{:.1},\"fs\":\"{fs}\"}}",
        n as f64 / secs,
        secs * 1e9 / n as f64,
        (n * record as u64) as f64 / secs / 1e6
    );
}

/// Appends for `secs` from `threads` threads; purges what is sealed as it goes so a
/// long run stays within the disk (as JavaBench does).
fn run_appends(log: &Log, record: usize, threads: usize, secs: f64) -> (u64, f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let t = Instant::now();
    let n: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let rec = vec![0x5au8; record];
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        for _ in 0..64 {
                            log.append(&rec).expect("append");
                        }
                        n += 64;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("appender")).sum()
    });
    (n, t.elapsed().as_secs_f64())
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> f64 { a.get(i).and_then(|s| s.parse().ok()).expect("see the usage in the source") };
    let dir = std::path::PathBuf::from(a.get(1).expect("DIR"));
    let _ = std::fs::remove_dir_all(&dir);
    match a.first().map(String::as_str) {
        Some("append") => {
            let (record, secs) = (num(2) as usize, num(3));
            let log = Log::open(&dir, opts(Durability::Each, TailMode::Direct)).expect("open");
            run_appends(&log, record, 1, secs.min(0.5)); // warm-up
            let (n, el) = run_appends(&log, record, 1, secs);
            row("append", &dir, record, 1, n, el);
        }
        Some("durable") => {
            let (record, threads, secs) = (num(2) as usize, num(3) as usize, num(4));
            let log = Log::open(&dir, opts(Durability::Group, TailMode::Auto)).expect("open");
            run_appends(&log, record, threads, secs.min(0.5));
            let (n, el) = run_appends(&log, record, threads, secs);
            row("durable", &dir, record, threads, n, el);
        }
        Some("iterate") => {
            let record = num(2) as usize;
            // As JavaBench: one sealed 256 MiB segment, filled, then the log reopened.
            let segment = 256u64 << 20;
            let o = LogOptions { segment_size: segment, max_record: record, ..opts(Durability::None, TailMode::Auto) };
            let per = (segment as usize - 64) / (24 + record);
            {
                let log = Log::open(&dir, o.clone()).expect("open");
                let rec = vec![0xa5u8; record];
                for _ in 0..per {
                    log.append(&rec).expect("append");
                }
                log.sync().expect("sync");
                log.seal().expect("seal");
            }
            let log = Log::open(&dir, o).expect("reopen");
            let end = log.durable_lsn();
            for _ in 0..3 {
                let t = Instant::now();
                let mut bytes = 0usize;
                for r in log.range(0, end) {
                    bytes += r.expect("read").1.len();
                }
                assert_eq!(bytes, per * record);
                row("iterate", &dir, record, 1, per as u64, t.elapsed().as_secs_f64());
            }
        }
        Some("crossing") => {
            // As JavaBench's crossing: next_lsn in a loop, then 256 B appends that are
            // not persisted.
            let secs = num(2);
            let log = Log::open(&dir, opts(Durability::None, TailMode::Direct)).expect("open");
            let mut sink = 0u64;
            let n = 20_000_000u64;
            let t = Instant::now();
            for _ in 0..n {
                sink = sink.wrapping_add(std::hint::black_box(&log).next_lsn());
            }
            row("crossing", &dir, 0, 1, n, t.elapsed().as_secs_f64());
            std::hint::black_box(sink);
            // As JavaBench: six quarters of SECS, the first two a warm-up.
            for pass in 0..6 {
                let (n, el) = run_appends(&log, 256, 1, secs / 4.0);
                if pass >= 2 {
                    row("append-none", &dir, 256, 1, n, el);
                }
                log.purge_before(log.durable_lsn()).expect("purge");
            }
        }
        _ => panic!("usage: rust_peer append|durable|iterate|crossing DIR ... (see the source)"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
