//! The measurement loop shared by every implementation: `writers` threads append
//! `record`-byte records until `max_ops` records in all or `secs` seconds, whichever
//! comes first, after an untimed warm-up on the same log.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

/// What one timed run did.
pub struct Outcome {
    /// Records appended in the timed phase (all writers).
    pub ops: u64,
    /// Seconds from the start of the timed phase until the last writer stopped.
    pub secs: f64,
    /// Records appended in the warm-up (all writers).
    pub warmup_ops: u64,
    /// Records appended by each writer, warm-up included.
    pub per_writer: Vec<u64>,
    /// With `LOG_COMPARE_LATENCY` set (diagnostics): the timed appends of writer 0 by
    /// latency bucket: (bucket, count, total milliseconds in that bucket).
    pub latency: Option<Vec<(&'static str, u64, f64)>>,
    /// With `Bounds::timed`: the p50 and p99 of every writer's timed appends, in µs.
    pub percentiles: Option<(f64, f64)>,
}

/// Latency buckets of the diagnostic histogram (upper bounds in ns; the last is open).
const BUCKETS: [(&str, u128); 8] = [
    ("<1us", 1_000),
    ("1-2us", 2_000),
    ("2-5us", 5_000),
    ("5-10us", 10_000),
    ("10-100us", 100_000),
    ("0.1-1ms", 1_000_000),
    ("1-10ms", 10_000_000),
    (">=10ms", u128::MAX),
];

/// Bounds of one run.
#[derive(Clone, Copy)]
pub struct Bounds {
    pub writers: usize,
    pub record: usize,
    pub secs: f64,
    pub max_ops: u64,
    pub warmup_ops: u64,
    /// Time every append of every writer (for the durable runs, where an append takes
    /// 100 µs or more and two clock reads cost tens of ns).
    pub timed: bool,
}

/// Runs `append(writer, seq, record)` from `writers` threads. `seq` counts from 1 per
/// writer (warm-up included) and is also stored in the record's first 8 bytes. Every
/// append must be as durable as the benchmark requires when it returns.
pub fn drive<F>(b: Bounds, append: F) -> std::io::Result<Outcome>
where
    F: Fn(usize, u64, &[u8]) -> std::io::Result<()> + Sync,
{
    drive_then(b, append, |_| Ok(()))
}

/// [`drive`] for appends that become durable later (pipelined): each writer calls
/// `finish(writer)` after its last append, inside the timed phase, to wait until
/// everything it appended is durable.
pub fn drive_then<F, G>(b: Bounds, append: F, finish: G) -> std::io::Result<Outcome>
where
    F: Fn(usize, u64, &[u8]) -> std::io::Result<()> + Sync,
    G: Fn(usize) -> std::io::Result<()> + Sync,
{
    // Diagnostics only: let background work after open (segment preparation, page
    // population) finish before the warm-up.
    if let Some(s) = std::env::var("LOG_COMPARE_SETTLE_SECS").ok().and_then(|s| s.parse::<f64>().ok()) {
        std::thread::sleep(Duration::from_secs_f64(s));
    }
    let lat = std::env::var_os("LOG_COMPARE_LATENCY").is_some();
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let barrier = Barrier::new(b.writers + 1);
    let err: Mutex<Option<std::io::Error>> = Mutex::new(None);
    let ends: Mutex<Vec<Instant>> = Mutex::new(Vec::new());
    let per_writer_max = b.max_ops / b.writers as u64;
    let per_writer_warm = b.warmup_ops / b.writers as u64;
    let main = std::thread::current();
    let mut counts = vec![(0u64, 0u64); b.writers];
    let mut latency = None;
    let mut times: Vec<u64> = Vec::new();
    let start = std::thread::scope(|s| {
        let handles: Vec<_> = (0..b.writers)
            .map(|w| {
                let (stop, done, barrier, err, ends, append, finish, main) =
                    (&stop, &done, &barrier, &err, &ends, &append, &finish, &main);
                s.spawn(move || {
                    let mut rec = vec![0u8; b.record];
                    for (i, x) in rec.iter_mut().enumerate() {
                        *x = (i as u8).wrapping_mul(31).wrapping_add(w as u8);
                    }
                    let mut seq = 0u64;
                    let one = |seq: u64, rec: &mut Vec<u8>| -> bool {
                        rec[..8].copy_from_slice(&seq.to_le_bytes());
                        if let Err(e) = append(w, seq, rec) {
                            err.lock().unwrap().get_or_insert(e);
                            stop.store(true, Ordering::Relaxed);
                            return false;
                        }
                        true
                    };
                    while seq < per_writer_warm && !stop.load(Ordering::Relaxed) {
                        seq += 1;
                        if !one(seq, &mut rec) {
                            break;
                        }
                    }
                    let warm = seq;
                    barrier.wait();
                    let mut n = 0u64;
                    let mut hist = None;
                    if lat && w == 0 {
                        // Diagnostics: where the time of the slow appends goes. Reading
                        // the clock twice adds some tens of ns to every append.
                        let mut h = [(0u64, 0u128); 8];
                        while n < per_writer_max && !stop.load(Ordering::Relaxed) {
                            seq += 1;
                            let t = Instant::now();
                            if !one(seq, &mut rec) {
                                break;
                            }
                            let d = t.elapsed().as_nanos();
                            let i = BUCKETS.iter().position(|&(_, l)| d < l).unwrap_or(7);
                            h[i].0 += 1;
                            h[i].1 += d;
                            n += 1;
                        }
                        hist = Some(
                            BUCKETS.iter().zip(h).map(|(b, (c, ns))| (b.0, c, ns as f64 / 1e6)).collect::<Vec<_>>(),
                        );
                    }
                    let mut times: Vec<u64> = Vec::new();
                    while n < per_writer_max && !stop.load(Ordering::Relaxed) {
                        seq += 1;
                        let t = b.timed.then(Instant::now);
                        if !one(seq, &mut rec) {
                            break;
                        }
                        if let Some(t) = t {
                            times.push(t.elapsed().as_nanos() as u64);
                        }
                        n += 1;
                    }
                    if let Err(e) = finish(w) {
                        err.lock().unwrap().get_or_insert(e);
                    }
                    ends.lock().unwrap().push(Instant::now());
                    done.fetch_add(1, Ordering::SeqCst);
                    main.unpark();
                    (warm, n, hist, times)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(b.secs);
        while done.load(Ordering::SeqCst) < b.writers {
            let now = Instant::now();
            if now >= deadline {
                stop.store(true, Ordering::Relaxed);
                break;
            }
            std::thread::park_timeout(deadline - now);
        }
        for (w, h) in handles.into_iter().enumerate() {
            let (warm, n, hist, t) = h.join().expect("writer thread panicked");
            counts[w] = (warm, n);
            if hist.is_some() {
                latency = hist;
            }
            times.extend(t);
        }
        start
    });
    if let Some(e) = err.into_inner().unwrap() {
        return Err(e);
    }
    let end = ends.into_inner().unwrap().into_iter().max().unwrap_or(start);
    Ok(Outcome {
        ops: counts.iter().map(|c| c.1).sum(),
        secs: (end - start).as_secs_f64(),
        warmup_ops: counts.iter().map(|c| c.0).sum(),
        per_writer: counts.iter().map(|c| c.0 + c.1).collect(),
        latency,
        percentiles: percentiles(&mut times),
    })
}

/// p50 and p99 of `ns`, in µs (nearest rank).
fn percentiles(ns: &mut [u64]) -> Option<(f64, f64)> {
    if ns.is_empty() {
        return None;
    }
    ns.sort_unstable();
    let at = |q: f64| ns[((q * ns.len() as f64).ceil() as usize).clamp(1, ns.len()) - 1] as f64 / 1e3;
    Some((at(0.50), at(0.99)))
}
