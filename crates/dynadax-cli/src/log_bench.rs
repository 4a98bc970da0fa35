//! `dynadax log bench DIR`: the log's own benchmarks on the file system of DIR.
//!
//! - append: one appender, records of 64 and 256 bytes, each persisted (`each`), for
//!   a fixed time; and `group` with 1 and 8 appenders;
//! - seal: the time to seal a full segment of each size (trim + switch to cached),
//!   against copying the same segment to a plain file and fsyncing it (what a user
//!   without run-time switching does to move a sealed segment out of DAX);
//! - read: sequential (iterator; the zero-copy cursor, cold and warm, and with two
//!   readers) and random (`read(lsn)`, the zero-copy `read_with`) reads of a sealed
//!   segment, with bare loops beside them on the same file (`pread` + CRC32C, CRC32C
//!   in place over a mapping, random `pread`);
//! - recover: reopening the log, i.e. the scan that rebuilds the index (GB/s).
//!
//! With `--layout single-file` every log is made with the single-file layout (a data
//! file of a few segments reused as a ring: the appenders purge the sealed ones when
//! it is full, as a user of a ring does), sealing is a range switch, and the
//! sequential read is done twice (the second pass is warm: on kernel DAX, from the
//! DRAM cache). Each result is one JSON object per line with `--json`.

use anyhow::Context;
use dynadax::log::{Durability, Layout, Log, LogOptions};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Scratch directory; the benchmark works in `DIR/dynadax-log-bench` and removes it.
    pub dir: PathBuf,
    /// Segment sizes for the sealing and reading benchmarks (suffixes K, M, G).
    #[arg(long, value_delimiter = ',', default_values = ["1M", "64M", "1G"], value_parser = crate::log_cmd::parse_size)]
    pub seal_sizes: Vec<u64>,
    /// Record size for filling segments.
    #[arg(long, default_value_t = 4000)]
    pub fill_record: usize,
    /// Seconds per append measurement.
    #[arg(long, default_value_t = 2.0)]
    pub secs: f64,
    /// Layout of the logs benchmarked (files: one file per segment; single-file:
    /// the segments as ranges of one data file).
    #[arg(long, value_enum, default_value_t = crate::log_cmd::LayoutArg::Files)]
    pub layout: crate::log_cmd::LayoutArg,
    /// Log sizes for the open benchmark (suffixes K, M, G): a log of that many bytes
    /// of sealed 64 MiB segments, opened with a scan of every segment and from their
    /// index files (the default; `--scan-sealed` scans).
    #[arg(long, value_delimiter = ',', default_values = ["1G"], value_parser = crate::log_cmd::parse_size)]
    pub open_sizes: Vec<u64>,
    /// Print one JSON object per result.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// The layout for a log of `slots` segments of `segment_size`.
    fn layout(&self, segment_size: u64, slots: u64) -> Layout {
        match self.layout {
            crate::log_cmd::LayoutArg::Files => Layout::Files,
            crate::log_cmd::LayoutArg::SingleFile => {
                Layout::SingleFile { capacity: dynadax::log::SUPER_LEN + slots * segment_size }
            }
        }
    }
}

/// Appends `rec`; a full single-file ring first drops every sealed segment.
fn append_or_purge(log: &Log, rec: &[u8]) -> dynadax::Result<u64> {
    match log.append(rec) {
        Err(dynadax::Error::Full { .. }) => {
            if let Some(tail) = log.segments()?.pop() {
                let _ = log.purge_before(tail.first_lsn.min(log.durable_lsn()));
            }
            log.append(rec)
        }
        r => r,
    }
}

/// The read benchmarks of one sealed segment (`path`, its first `n` records of
/// `rec_len` bytes), with the bare loops that bound them run beside, on the same file:
/// `pread` of each frame and its CRC32C, the CRC32C of each payload in place in a
/// read-only mapping faulted in first, and random `pread`s of frames.
fn reads(
    log: &Log,
    path: &std::path::Path,
    n: u64,
    rec_len: usize,
    label: &str,
    single: bool,
    emit: &mut impl FnMut(Row),
) -> anyhow::Result<()> {
    // The background preparer (faulting in the new tail, then making the next file)
    // would take a core from the readers: the reads start once it is done.
    let t = Instant::now();
    while !log.next_segment_ready() && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let gbs = |bytes: u64, secs: f64| bytes as f64 / secs / 1e9;
    let detail =
        |what: &str, secs: f64| format!("{n} records of {rec_len} B, {:.0} records/s ({what})", n as f64 / secs);
    for pass in ["", "-warm"].iter().take(if single { 2 } else { 1 }) {
        let t = Instant::now();
        let mut bytes = 0u64;
        for r in log.range(0, n) {
            bytes += r?.1.len() as u64;
        }
        let secs = t.elapsed().as_secs_f64();
        emit(Row {
            bench: if pass.is_empty() { "read-seq" } else { "read-seq-warm" },
            case: label.to_string(),
            value: gbs(bytes, secs),
            unit: "GB/s",
            detail: detail("Log::range, a copy per record", secs),
        });
    }
    // Zero-copy: the first pass maps the segment and faults it in, the second reads
    // the same mapping. The sum of first bytes keeps the reads from being optimised out.
    let zero_copy = |log: &Log| -> anyhow::Result<(u64, u64)> {
        let (mut bytes, mut sum) = (0u64, 0u64);
        let mut c = log.cursor_range(0, n);
        while let Some(e) = c.next() {
            let e = e?;
            bytes += e.bytes.len() as u64;
            sum = sum.wrapping_add(e.bytes[0] as u64);
        }
        Ok((bytes, sum))
    };
    for bench in ["read-seq-zero-copy", "read-seq-zero-copy-warm"] {
        let t = Instant::now();
        let (bytes, sum) = zero_copy(log)?;
        let secs = t.elapsed().as_secs_f64();
        emit(Row {
            bench,
            case: label.to_string(),
            value: gbs(bytes, secs),
            unit: "GB/s",
            detail: detail(&format!("Log::cursor; sum {sum}"), secs),
        });
    }
    // Two readers at once, each reading all of it: their bytes over the time of both.
    let t = Instant::now();
    let both: Vec<u64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2).map(|_| s.spawn(|| zero_copy(log).map(|r| r.0))).collect();
        hs.into_iter().map(|h| h.join().expect("reader")).collect::<anyhow::Result<_>>()
    })?;
    let secs = t.elapsed().as_secs_f64();
    emit(Row {
        bench: "read-seq-zero-copy-2-readers",
        case: label.to_string(),
        value: gbs(both.iter().sum(), secs),
        unit: "GB/s",
        detail: format!("2 threads, each all {n} records through Log::cursor, in {secs:.3} s"),
    });
    if !single {
        let frame = dynadax::log::frame_len(rec_len);
        let head = dynadax::log::FRAME_HEADER;
        let f = std::fs::File::open(path).with_context(|| format!("{}: open", path.display()))?;
        let at = |i: u64| dynadax::log::HEADER_LEN as u64 + i * frame as u64;
        // Bare loop 1: pread + CRC32C of each payload.
        let mut buf = vec![0u8; frame];
        let (t, mut sum) = (Instant::now(), 0u32);
        for i in 0..n {
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, at(i))?;
            sum ^= crc32c::crc32c(&buf[head..head + rec_len]);
        }
        let secs = t.elapsed().as_secs_f64();
        emit(Row {
            bench: "bare-pread-crc",
            case: label.to_string(),
            value: gbs(n * rec_len as u64, secs),
            unit: "GB/s",
            detail: detail(&format!("a loop of pread + crc32c per frame; xor {sum:#x}"), secs),
        });
        // Bare loop 2: CRC32C in place over a read-only mapping, faulted in first.
        let len = at(n) as usize;
        // SAFETY: a read-only private view of a sealed segment that nothing writes or
        // shrinks while this benchmark runs; unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                std::os::fd::AsRawFd::as_raw_fd(&f),
                0,
            )
        };
        anyhow::ensure!(p != libc::MAP_FAILED, "{}: mmap: {}", path.display(), std::io::Error::last_os_error());
        // SAFETY: `p..p+len` is the mapping just made, readable, unchanged while it lives.
        let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, len) };
        let (t, mut sum) = (Instant::now(), 0u32);
        for i in 0..n {
            let o = at(i) as usize + head;
            sum ^= crc32c::crc32c(&bytes[o..o + rec_len]);
        }
        let secs = t.elapsed().as_secs_f64();
        emit(Row {
            bench: "bare-mmap-crc",
            case: label.to_string(),
            value: gbs(n * rec_len as u64, secs),
            unit: "GB/s",
            detail: detail(
                &format!("a loop of crc32c in place over a populated read-only mapping; xor {sum:#x}"),
                secs,
            ),
        });
        // Bare loop 2 on two threads at once, each over all of it: how far two readers
        // can scale on this machine (the bound for `read-seq-zero-copy-2-readers`).
        let crc_all = || (0..n).fold(0u32, |s, i| s ^ crc32c::crc32c(&bytes[at(i) as usize + head..][..rec_len]));
        let t = Instant::now();
        let sums: Vec<u32> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2).map(|_| s.spawn(crc_all)).collect();
            hs.into_iter().map(|h| h.join().expect("bare reader")).collect()
        });
        let secs = t.elapsed().as_secs_f64();
        emit(Row {
            bench: "bare-mmap-crc-2-threads",
            case: label.to_string(),
            value: gbs(2 * n * rec_len as u64, secs),
            unit: "GB/s",
            detail: format!(
                "2 threads, each the loop of crc32c in place over all {n} records, in {secs:.3} s; xor {:#x}",
                sums[0] ^ sums[1]
            ),
        });
        // Bare loop 3: random records, CRC32C in place over the same mapping (the floor
        // of a random zero-copy read: the record's cache misses and its checksum).
        let probes = n.clamp(1, 20_000);
        let (mut x, mut sum) = (0x9E37_79B9_7F4A_7C15u64, 0u32);
        let t = Instant::now();
        for _ in 0..probes {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let o = at(x % n) as usize + head;
            sum ^= crc32c::crc32c(&bytes[o..o + rec_len]);
        }
        let secs = t.elapsed().as_secs_f64();
        // SAFETY: mapped above; `bytes` is not used after this.
        unsafe { libc::munmap(p, len) };
        emit(Row {
            bench: "bare-mmap-random-crc",
            case: label.to_string(),
            value: probes as f64 / secs,
            unit: "reads/s",
            detail: format!("{probes} random records of {rec_len} B, crc32c in place over the mapping; xor {sum:#x}"),
        });
    }
    let probes = n.clamp(1, 20_000);
    for bench in ["read-random", "read-random-zero-copy", "bare-pread-random"] {
        if single && bench == "bare-pread-random" {
            continue;
        }
        let f = std::fs::File::open(path)?;
        let mut buf = vec![0u8; dynadax::log::frame_len(rec_len)];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut sum = 0u64;
        let t = Instant::now();
        for _ in 0..probes {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let lsn = x % n;
            match bench {
                "read-random" => sum = sum.wrapping_add(log.read(lsn)?[0] as u64),
                "read-random-zero-copy" => sum = sum.wrapping_add(log.read_with(lsn, |b| b[0] as u64)?),
                _ => {
                    let off = dynadax::log::HEADER_LEN as u64 + lsn * buf.len() as u64;
                    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, off)?;
                    sum = sum.wrapping_add(buf[dynadax::log::FRAME_HEADER] as u64);
                }
            }
        }
        let secs = t.elapsed().as_secs_f64();
        emit(Row {
            bench,
            case: label.to_string(),
            value: probes as f64 / secs,
            unit: "reads/s",
            detail: format!("{probes} random reads of {rec_len} B records (sum {sum})"),
        });
    }
    Ok(())
}

/// CLOCK_MONOTONIC in ns: the same clock in every process of the machine.
fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Appends records 200 µs apart while a tailer follows: `Log::tail` on a thread, or
/// (`other`) `dynadax log tail` in a child process whose output is read from a pipe.
/// Returns the p50, p99 and p99.9 in µs of each record's receipt by the tailer less
/// the return of its `append` (0 where the tailer had it first), and the count.
fn tail_latency(dir: &std::path::Path, other: bool, layout: Layout) -> anyhow::Result<(f64, f64, f64, usize)> {
    use std::io::BufRead;
    const N: usize = 3000;
    let log = Log::open(dir, LogOptions { segment_size: 64 << 20, layout, ..LogOptions::default() })?;
    let first = log.append(b"first")?;
    // (LSN, receipt time) as the tailer saw them.
    let received: Vec<(u64, u64)> = std::thread::scope(|s| -> anyhow::Result<Vec<(u64, u64)>> {
        let reader = if other {
            let mut child = std::process::Command::new(std::env::current_exe()?)
                .args(["log", "tail"])
                .arg(dir)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .context("start dynadax log tail")?;
            let out = child.stdout.take().context("child's output")?;
            let mut lines = std::io::BufReader::new(out).lines();
            // The tailer is up once it printed the first record.
            lines.next().context("log tail ended")??;
            s.spawn(move || {
                let mut got = Vec::with_capacity(N);
                for line in lines.by_ref().take(N) {
                    let Ok(line) = line else { break };
                    let now = mono_ns();
                    if let Some(lsn) = line.split_once('\t').and_then(|(l, _)| l.parse().ok()) {
                        got.push((lsn, now));
                    }
                }
                let _ = child.kill();
                let _ = child.wait();
                got
            })
        } else {
            let mut t = log.tail(first + 1);
            s.spawn(move || {
                let mut got = Vec::with_capacity(N);
                while got.len() < N {
                    match t.next_timeout(Some(Duration::from_secs(5))) {
                        Ok(Some((lsn, _))) => got.push((lsn, mono_ns())),
                        _ => break,
                    }
                }
                got
            })
        };
        let mut returned = Vec::with_capacity(N);
        for i in 0..N {
            std::thread::sleep(Duration::from_micros(200));
            let lsn = log.append(format!("record {i}").as_bytes())?;
            returned.push((lsn, mono_ns()));
        }
        let got = reader.join().expect("tailer");
        Ok(got
            .into_iter()
            .zip(returned)
            .filter(|(g, r)| g.0 == r.0)
            .map(|(g, r)| (g.0, g.1.saturating_sub(r.1)))
            .collect())
    })?;
    anyhow::ensure!(received.len() == N, "the tailer saw {} of {N} appends in order", received.len());
    let mut lat: Vec<u64> = received.into_iter().map(|(_, d)| d).collect();
    lat.sort_unstable();
    let q = |p: f64| lat[((p * N as f64).ceil() as usize).clamp(1, N) - 1] as f64 / 1e3;
    Ok((q(0.5), q(0.99), q(0.999), N))
}

#[derive(Serialize)]
struct Row {
    bench: &'static str,
    case: String,
    value: f64,
    unit: &'static str,
    detail: String,
}

pub fn run(a: &BenchArgs) -> anyhow::Result<()> {
    let root = a.dir.join("dynadax-log-bench");
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("{}: cannot clear", root.display()))?;
    }
    std::fs::create_dir_all(&root).with_context(|| format!("{}: cannot create", root.display()))?;
    let probe = dynadax::probe(&root)?;
    let mut rows = Vec::new();
    let total_steps = 8 + a.seal_sizes.len() as u64 * (3 + SEAL_REPS as u64) + a.open_sizes.len() as u64;
    let bar = (std::io::stderr().is_terminal() && !a.json).then(|| {
        let b = indicatif::ProgressBar::new(total_steps);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg:40} [{bar:30}] {pos}/{len}").expect("template"),
        );
        b
    });
    let step = |msg: &str| {
        if let Some(b) = &bar {
            b.set_message(msg.to_string());
            b.inc(1);
        }
    };
    let mut emit = |r: Row| {
        if a.json {
            println!("{}", serde_json::to_string(&r).expect("row serializes"));
        }
        rows.push(r);
    };
    let where_ = format!("{} ({})", root.display(), probe.fs_type);

    // Appends.
    for (size, durability, writers) in [
        (64usize, Durability::Each, 1usize),
        (256, Durability::Each, 1),
        (256, Durability::Group, 1),
        (256, Durability::Group, 8),
    ] {
        step(&format!("append {size} B {durability:?} x{writers}"));
        let dir = root.join(format!("append-{size}-{durability:?}-{writers}"));
        let log = Log::open(
            &dir,
            LogOptions {
                segment_size: 256 << 20,
                max_record: 4096,
                durability,
                layout: a.layout(256 << 20, 4),
                ..LogOptions::default()
            },
        )?;
        let tail = log.segments()?.pop().context("log has a tail")?;
        let backing = tail.backing.map_or("-".into(), |b| b.to_string());
        // How the tail really persists (a forced cache-line flush shows here, not in
        // the probe of the directory).
        // (A cached tail persists by fdatasync, also when it is a cached range of a
        // single-file log's direct data file.)
        let persists = if tail.effective == Some(dynadax::Mode::Cached) {
            "fdatasync".to_string()
        } else {
            dynadax::File::open(&tail.path)?.status()?.persistence.map_or("-".into(), |p| p.to_string())
        };
        let deadline = Instant::now() + Duration::from_secs_f64(a.secs);
        let t = Instant::now();
        let counts: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..writers)
                .map(|_| {
                    let log = log.clone();
                    s.spawn(move || {
                        let rec = vec![0x5au8; size];
                        let mut n = 0u64;
                        while Instant::now() < deadline {
                            for _ in 0..64 {
                                append_or_purge(&log, &rec).expect("append");
                            }
                            n += 64;
                        }
                        n
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("appender")).collect()
        });
        let el = t.elapsed().as_secs_f64();
        let n: u64 = counts.iter().sum();
        emit(Row {
            bench: "append",
            case: format!("{size}B {durability:?} x{writers}").to_lowercase(),
            value: n as f64 / el,
            unit: "appends/s",
            detail: format!("{n} appends in {el:.2}s, tail backing {backing}, persists by {persists}, {where_}"),
        });
        drop(log);
        std::fs::remove_dir_all(&dir).ok();
    }

    // How soon a tailer sees an append: a thread of this process, and `dynadax log
    // tail` in another.
    for other in [false, true] {
        step(if other { "tail latency, other process" } else { "tail latency, same process" });
        let dir = root.join(format!("tail-{other}"));
        let (p50, p99, p999, n) = tail_latency(&dir, other, a.layout(64 << 20, 4))?;
        emit(Row {
            bench: "tail-latency",
            case: if other { "other-process".into() } else { "same-process".into() },
            value: p50,
            unit: "µs p50",
            detail: format!(
                "{n} appends 200 µs apart, from the append's return to the tailer's receipt: \
                 p99 {p99:.1} µs, p99.9 {p999:.1} µs ({})",
                if other {
                    "`dynadax log tail` in a child process, its output read from a pipe"
                } else {
                    "Log::tail, next_timeout"
                }
            ),
        });
        std::fs::remove_dir_all(&dir).ok();
    }

    // Opening a log of sealed segments: scanning them all, and from their indexes.
    for &size in &a.open_sizes {
        let label = human(size);
        step(&format!("open a {label} log"));
        let dir = root.join(format!("open-{label}"));
        let opts = LogOptions {
            segment_size: 64 << 20,
            max_record: a.fill_record,
            durability: Durability::None,
            layout: a.layout(64 << 20, size.div_ceil(64 << 20) + 2),
            ..LogOptions::default()
        };
        let log = Log::open(&dir, opts.clone())?;
        let rec = vec![0x3cu8; a.fill_record];
        let n = size / dynadax::log::frame_len(a.fill_record) as u64;
        for _ in 0..n {
            log.append(&rec)?;
        }
        log.seal()?;
        drop(log); // the index files are written by then
        for trust in [false, true] {
            let t = Instant::now();
            let log = Log::open(&dir, LogOptions { scan_sealed: !trust, ..opts.clone() })?;
            let el = t.elapsed();
            let rep = log.recovery_report();
            anyhow::ensure!(
                log.durable_lsn() == n,
                "{}: {} records after the open, {n} appended",
                dir.display(),
                log.durable_lsn()
            );
            emit(Row {
                bench: if trust { "open-indexed" } else { "open-scan" },
                case: label.clone(),
                value: el.as_secs_f64() * 1e3,
                unit: "ms",
                detail: format!(
                    "{n} records of {} B in {} segments: {} opened from their index, {} bytes scanned",
                    a.fill_record, rep.segments, rep.indexed, rep.bytes
                ),
            });
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    // Sealing, reading and recovery, per segment size.
    for &size in &a.seal_sizes {
        let label = human(size);
        step(&format!("fill a {label} segment"));
        let dir = root.join(format!("seal-{label}"));
        let opts = LogOptions {
            segment_size: size,
            max_record: a.fill_record.min(size as usize / 4),
            durability: Durability::None,
            layout: a.layout(size, SEAL_REPS as u64 + 2),
            ..LogOptions::default()
        };
        let single = matches!(opts.layout, Layout::SingleFile { .. });
        let rec_len = opts.max_record;
        let rec = vec![0xc3u8; rec_len];
        let per_seg = (size - 64) / dynadax::log::frame_len(rec_len) as u64;
        // Three full segments sealed one after another: the median is reported.
        let log = Log::open(&dir, opts.clone())?;
        let mut seals = Vec::new();
        let mut copies = Vec::new();
        let mut prep_waits = Vec::new();
        let mut before = String::new();
        for rep in 0..SEAL_REPS {
            for _ in 0..per_seg {
                log.append(&rec)?;
            }
            log.sync()?;
            // The seal, not the allocation of the next segment: when the fill outruns
            // the background preparer (large segments), wait for it first.
            let t = Instant::now();
            while !log.next_segment_ready() && t.elapsed() < Duration::from_secs(120) {
                std::thread::sleep(Duration::from_millis(1));
            }
            prep_waits.push(t.elapsed());
            let tail = log.segments()?.pop().context("log has a tail")?;
            before = tail.effective.map_or("-".into(), |m| m.to_string());
            step(&format!("seal {label} ({}/{SEAL_REPS})", rep + 1));
            let t = Instant::now();
            log.seal()?;
            seals.push(t.elapsed());
            if !single {
                let sealed = log.segments()?.into_iter().rev().nth(1).context("sealed segment")?;
                let copy_to = root.join(format!("copy-{label}"));
                let t = Instant::now();
                std::fs::copy(&sealed.path, &copy_to)?;
                std::fs::File::open(&copy_to)?.sync_all()?;
                copies.push(t.elapsed());
                std::fs::remove_file(&copy_to).ok();
            }
        }
        let sealed = log.segments()?.into_iter().next().context("sealed segment")?;
        emit(Row {
            bench: "seal",
            case: label.clone(),
            value: median(&mut seals).as_secs_f64() * 1e6,
            unit: "µs",
            detail: format!(
                "median of {SEAL_REPS}: {} records, {} bytes, {before} -> {} in place (waited {:.1} ms before it for \
                 the next segment's space)",
                sealed.records,
                sealed.bytes,
                sealed.effective.map_or("-".into(), |m| m.to_string()),
                median(&mut prep_waits).as_secs_f64() * 1e3
            ),
        });
        if !single {
            emit(Row {
                bench: "seal-by-copy",
                case: label.clone(),
                value: median(&mut copies).as_secs_f64() * 1e6,
                unit: "µs",
                detail: format!("median of {SEAL_REPS}: copy + fsync of {} bytes to a plain file", sealed.bytes),
            });
        }

        step(&format!("read {label} sealed"));
        let first = log.segments()?.into_iter().next().context("sealed segment")?;
        reads(&log, &first.path, sealed.records, rec_len, &label, single, &mut emit)?;
        drop(log);

        step(&format!("recover {label}"));
        let t = Instant::now();
        // The scan rate: every sealed segment scanned (the default open reads their
        // index files instead; see the open benchmark).
        let log = Log::open(&dir, LogOptions { scan_sealed: true, ..opts })?;
        let el = t.elapsed();
        let rep = log.recovery_report();
        emit(Row {
            bench: "recover",
            case: label.clone(),
            value: rep.bytes as f64 / (rep.micros.max(1) as f64 / 1e6) / 1e9,
            unit: "GB/s",
            detail: format!(
                "scan of {} records, {} bytes in {} µs (open took {:.0} µs)",
                rep.records,
                rep.bytes,
                rep.micros,
                el.as_secs_f64() * 1e6
            ),
        });
        drop(log);
        std::fs::remove_dir_all(&dir).ok();
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    std::fs::remove_dir_all(&root).ok();
    if !a.json {
        println!("log benchmarks in {where_}");
        for r in &rows {
            println!("{:<12} {:<22} {:>14.2} {:<10} {}", r.bench, r.case, r.value, r.unit, r.detail);
        }
    }
    Ok(())
}

const SEAL_REPS: usize = 3;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{}GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => format!("{n}B"),
    }
}
