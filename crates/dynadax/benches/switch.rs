//! Switch time against file size: the switch must be metadata only.
//!
//! For 1 MiB, 64 MiB and 1 GiB files full of data, on the work tree's file system
//! (ext4 here: the flag is FS_XFLAG_DAX) and on tmpfs (the xattr store):
//! - `fresh`: alternate direct <-> cached with no access in between;
//! - `populated`: before each timed direct -> cached switch, every page of the file
//!   is read through the direct window, so the old window has the file's whole size
//!   in page-table entries when it is dropped;
//! - `range-tail-mapped`: the first `size` bytes of a file switched as a range
//!   (`set_range_mode`), alternating, while a 4 MiB direct tail range after them
//!   stays mapped.
//!
//! `cargo bench -p dynadax --bench switch`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dynadax::{File, Mode, SwitchOptions};
use std::path::Path;
use std::time::{Duration, Instant};

const SIZES: [(u64, &str); 3] = [(1 << 20, "1MiB"), (64 << 20, "64MiB"), (1 << 30, "1GiB")];

fn make(dir: &Path, size: u64) -> File {
    let f = File::create(dir.join(format!("switch-{size}"))).unwrap();
    f.set_mode(Mode::Cached, SwitchOptions::default()).unwrap();
    let chunk = vec![0xabu8; 8 << 20];
    let mut at = 0;
    while at < size {
        let n = (size - at).min(chunk.len() as u64) as usize;
        f.write_at(&chunk[..n], at).unwrap();
        at += n as u64;
    }
    f.persist(0, size).unwrap();
    f
}

fn bench_switch(c: &mut Criterion) {
    let ext4 = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    for (fs_name, dir) in [("work-fs", ext4.path()), ("tmpfs", shm.path())] {
        let mut g = c.benchmark_group(format!("switch/{fs_name}"));
        g.sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
        for (size, label) in SIZES {
            let f = make(dir, size);
            g.bench_with_input(BenchmarkId::new("fresh", label), &f, |b, f| {
                let mut mode = Mode::Direct;
                b.iter(|| {
                    f.set_mode(mode, SwitchOptions::default()).unwrap();
                    mode = if mode == Mode::Direct { Mode::Cached } else { Mode::Direct };
                })
            });
            g.sampling_mode(criterion::SamplingMode::Flat);
            g.bench_with_input(BenchmarkId::new("populated", label), &f, |b, f| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut page = vec![0u8; 4096];
                    for _ in 0..iters {
                        f.set_mode(Mode::Direct, SwitchOptions::default()).unwrap();
                        let mut at = 0;
                        while at < size {
                            f.read_at(&mut page, at).unwrap();
                            at += 4096;
                        }
                        let t = Instant::now();
                        f.set_mode(Mode::Cached, SwitchOptions::default()).unwrap();
                        total += t.elapsed();
                    }
                    total
                })
            });
            g.sampling_mode(criterion::SamplingMode::Auto);
            // A range of `size` bytes of one file, switched while the file's tail
            // (a 4 MiB direct range after it) stays mapped: the range switch.
            f.set_len(size + (4 << 20)).unwrap();
            f.set_range_mode(size, None, Mode::Direct, SwitchOptions::default()).unwrap();
            let tail = f.map(size, 4 << 20, true).unwrap();
            g.bench_with_input(BenchmarkId::new("range-tail-mapped", label), &f, |b, f| {
                let mut mode = Mode::Direct;
                b.iter(|| {
                    f.set_range_mode(0, Some(size), mode, SwitchOptions::default()).unwrap();
                    mode = if mode == Mode::Direct { Mode::Cached } else { Mode::Direct };
                })
            });
            tail.write(0, b"alive").unwrap();
            drop(tail);
            drop(f);
            std::fs::remove_file(dir.join(format!("switch-{size}"))).unwrap();
        }
        g.finish();
    }
}

criterion_group!(benches, bench_switch);
criterion_main!(benches);
