//! Read-side cost of the ops lock: 4 KiB reads through dynadax, with 1 and 2 threads,
//! in both vectors, against
//! - the very same dynadax code with the lock compiled out (`--features bench-no-lock`,
//!   reported as `dynadax-no-lock`): the lock's own cost, nothing else;
//! - plain `pread` / `memcpy` from a `memmap2` mapping (`unlocked-pread`,
//!   `unlocked-memcpy`): dynadax's whole overhead, lock plus vector.
//!
//! The file (1 MiB on tmpfs) stays in the CPU caches, so fixed costs show at their
//! most visible.
//!
//! And the cost of the cross-process side of the ops lock, which is paid at `map` and
//! at unmap only: `map(64 KiB)` + drop through dynadax (`dynadax`; with
//! `--features bench-no-xproc`, which takes no OFD lock, `dynadax-no-xproc`), against
//! `memmap2` map + unmap of the same range (`unlocked-memmap2`).
//!
//! ```text
//! cargo bench -p dynadax --bench ops_lock
//! cargo bench -p dynadax --bench ops_lock --features bench-no-lock
//! cargo bench -p dynadax --bench ops_lock --features bench-no-xproc -- map
//! ```

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dynadax::{File, Mode, SwitchOptions};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FILE: u64 = 1 << 20;
const READ: usize = 4096;
const PAGES: u64 = FILE / READ as u64;

/// Offsets visited: a fixed permutation-like stride over all pages.
fn offset(i: u64) -> u64 {
    (i.wrapping_mul(7919) % PAGES) * READ as u64
}

/// Runs `per_thread(iters)` on `threads` threads at once, returns wall time.
fn parallel(threads: usize, iters: u64, f: Arc<dyn Fn(u64) + Send + Sync>) -> Duration {
    let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (f, barrier) = (f.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                f(iters);
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    for h in hs {
        h.join().unwrap();
    }
    t.elapsed()
}

fn bench_reads(c: &mut Criterion) {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let path = dir.path().join("reads");
    std::fs::write(&path, vec![0x5au8; FILE as usize]).unwrap();
    let raw = Arc::new(std::fs::File::open(&path).unwrap());
    // SAFETY (bench): the file is not truncated while mapped.
    let map = Arc::new(unsafe { memmap2::Mmap::map(&*raw).unwrap() });
    let f = Arc::new(File::open(&path).unwrap());

    let me = if cfg!(feature = "bench-no-lock") { "dynadax-no-lock" } else { "dynadax" };
    for threads in [1usize, 2] {
        let mut g = c.benchmark_group(format!("read4k/{threads}-thread"));
        g.sample_size(40).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));

        let baseline_cached: Arc<dyn Fn(u64) + Send + Sync> = {
            let raw = raw.clone();
            Arc::new(move |n| {
                let mut buf = [0u8; READ];
                for i in 0..n {
                    black_box(raw.read_at(&mut buf, offset(i)).unwrap());
                }
            })
        };
        let baseline_direct: Arc<dyn Fn(u64) + Send + Sync> = {
            let map = map.clone();
            Arc::new(move |n| {
                let mut buf = [0u8; READ];
                for i in 0..n {
                    let o = offset(i) as usize;
                    buf.copy_from_slice(black_box(&map[o..o + READ]));
                    black_box(&buf);
                }
            })
        };
        let dynadax_reads: Arc<dyn Fn(u64) + Send + Sync> = {
            let f = f.clone();
            Arc::new(move |n| {
                let mut buf = [0u8; READ];
                for i in 0..n {
                    black_box(f.read_at(&mut buf, offset(i)).unwrap());
                }
            })
        };

        for (mode, baseline, name) in
            [(Mode::Cached, &baseline_cached, "pread"), (Mode::Direct, &baseline_direct, "memcpy")]
        {
            f.set_mode(mode, SwitchOptions::default()).unwrap();
            if !cfg!(feature = "bench-no-lock") {
                g.bench_function(BenchmarkId::new(format!("{mode}/unlocked-{name}"), threads), |b| {
                    b.iter_custom(|iters| parallel(threads, iters, baseline.clone()))
                });
            }
            g.bench_function(BenchmarkId::new(format!("{mode}/{me}"), threads), |b| {
                b.iter_custom(|iters| parallel(threads, iters, dynadax_reads.clone()))
            });
        }
        g.finish();
    }
}

fn bench_map(c: &mut Criterion) {
    const LEN: usize = 64 << 10;
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let path = dir.path().join("maps");
    std::fs::write(&path, vec![0x5au8; FILE as usize]).unwrap();
    let raw = std::fs::File::options().read(true).write(true).open(&path).unwrap();
    let f = File::open(&path).unwrap();
    let me = if cfg!(feature = "bench-no-xproc") { "dynadax-no-xproc" } else { "dynadax" };
    let mut g = c.benchmark_group("map-unmap-64k");
    g.sample_size(40).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    for mode in [Mode::Cached, Mode::Direct] {
        f.set_mode(mode, SwitchOptions::default()).unwrap();
        if !cfg!(feature = "bench-no-xproc") && !cfg!(feature = "bench-no-lock") {
            g.bench_function(BenchmarkId::new(format!("{mode}/unlocked-memmap2"), 1), |b| {
                let mut i = 0u64;
                b.iter(|| {
                    i += 1;
                    let off = (i % (FILE / LEN as u64)) * LEN as u64;
                    // SAFETY (bench): the file is not truncated while mapped.
                    let m = unsafe { memmap2::MmapOptions::new().offset(off).len(LEN).map_mut(&raw).unwrap() };
                    black_box(&m);
                })
            });
        }
        g.bench_function(BenchmarkId::new(format!("{mode}/{me}"), 1), |b| {
            let mut i = 0u64;
            b.iter(|| {
                i += 1;
                let off = (i % (FILE / LEN as u64)) * LEN as u64;
                black_box(f.map(off, LEN, true).unwrap());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_reads, bench_map);
criterion_main!(benches);
