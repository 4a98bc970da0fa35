//! `dynadax log bench DIR`: the log's own benchmarks on the file system of DIR.
//!
//! - append: one appender, records of 64 and 256 bytes, each persisted (`each`), for
//!   a fixed time; and `group` with 1 and 8 appenders;
//! - seal: the time to seal a full segment of each size (trim + switch to cached),
//!   against copying the same segment to a plain file and fsyncing it (what a user
//!   without run-time switching does to move a sealed segment out of DAX);
//! - read: sequential (iterator, and the zero-copy cursor) and random (`read(lsn)`,
//!   and the zero-copy `read_with`) reads of sealed segments;
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
    let total_steps = 6 + a.seal_sizes.len() as u64 * (3 + SEAL_REPS as u64);
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
        let n = sealed.records;
        for pass in ["", "-warm"].iter().take(if single { 2 } else { 1 }) {
            let t = Instant::now();
            let mut bytes = 0u64;
            for r in log.range(0, n) {
                bytes += r?.1.len() as u64;
            }
            let seq = t.elapsed().as_secs_f64();
            emit(Row {
                bench: if pass.is_empty() { "read-seq" } else { "read-seq-warm" },
                case: label.clone(),
                value: bytes as f64 / seq / 1e9,
                unit: "GB/s",
                detail: format!("{n} records of {rec_len} B, {:.0} records/s", n as f64 / seq),
            });
        }
        // Zero-copy: the cursor lends each record from the sealed segment's mapping
        // (its CRC checked); the sum of the first bytes keeps the reads honest.
        let t = Instant::now();
        let (mut bytes, mut sum) = (0u64, 0u64);
        let mut c = log.cursor_range(0, n);
        while let Some(e) = c.next() {
            let e = e?;
            bytes += e.bytes.len() as u64;
            sum = sum.wrapping_add(e.bytes[0] as u64);
        }
        let seq = t.elapsed().as_secs_f64();
        emit(Row {
            bench: "read-seq-zero-copy",
            case: label.clone(),
            value: bytes as f64 / seq / 1e9,
            unit: "GB/s",
            detail: format!(
                "{n} records of {rec_len} B, {:.0} records/s (Log::cursor; checksum {sum})",
                n as f64 / seq
            ),
        });
        let probes = n.clamp(1, 20_000);
        for zero_copy in [false, true] {
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            let t = Instant::now();
            for _ in 0..probes {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if zero_copy {
                    sum = sum.wrapping_add(log.read_with(x % n, |b| b[0] as u64)?);
                } else {
                    log.read(x % n)?;
                }
            }
            let rnd = t.elapsed().as_secs_f64();
            emit(Row {
                bench: if zero_copy { "read-random-zero-copy" } else { "read-random" },
                case: label.clone(),
                value: probes as f64 / rnd,
                unit: "reads/s",
                detail: format!(
                    "{probes} random reads of {rec_len} B records{}",
                    if zero_copy { format!(" (Log::read_with; checksum {sum})") } else { String::new() }
                ),
            });
        }
        drop(log);

        step(&format!("recover {label}"));
        let t = Instant::now();
        let log = Log::open(&dir, opts)?;
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
