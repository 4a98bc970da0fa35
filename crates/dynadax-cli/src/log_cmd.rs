//! `dynadax log ...`: append, read, tail, stat, verify, bench.

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use dynadax::log::{Durability, Layout, Log, LogOptions, RecoveryMode, TailMode};
use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

/// Work with a segmented log: a directory of segment files whose tail is written in
/// direct mode and whose full segments are sealed to cached.
#[derive(Subcommand, Debug)]
pub enum LogCommand {
    /// Append records from standard input, one per line (without the newline).
    ///
    /// For each record, once it is durable, prints its LSN in decimal on its own line
    /// and flushes standard output, so a consumer can trust every printed LSN to
    /// survive a crash. End of input ends cleanly. Creates the log if needed.
    ///
    /// With `--pipelined`, records are appended without waiting and made durable in
    /// the background; LSNs are still printed only once durable, in order, at the
    /// latest when standard input has nothing more ready to read (or 65,536 records
    /// are in flight). Faster on a disk (one flush for many records), but records in flight together cannot vouch for each other at
    /// recovery: damage to one of the last of them reads as a torn tail (cut, its
    /// bytes kept beside the segment, reported) rather than refused.
    Append {
        /// The log directory.
        dir: PathBuf,
        #[command(flatten)]
        opts: WriteOpts,
        /// Keep appends in flight (see above); not with `--durability none`.
        #[arg(long)]
        pipelined: bool,
    },
    /// Print records as `LSN<TAB>record`, one per line, in order.
    ///
    /// A damaged log is refused (exit 1, naming the file and offset); with
    /// `--recovery skip-damaged`, every intact record is printed and each damaged
    /// one is named on standard error (exit 1 at the end).
    Read {
        /// The log directory.
        dir: PathBuf,
        /// First LSN to print (default: the log's first).
        #[arg(long)]
        from: Option<u64>,
        /// Print at most this many records.
        #[arg(long)]
        limit: Option<u64>,
        /// tolerate-torn-tail (refuse damage) or skip-damaged (read around it).
        /// Nothing is changed either way.
        #[arg(long, value_enum, default_value_t = ReadRecoveryArg::TolerateTornTail)]
        recovery: ReadRecoveryArg,
    },
    /// Like `read`, then follow the log, printing records as they become durable.
    ///
    /// Works from another process than the writer: it waits on the futex word in
    /// the log's `tail.state` file, so it uses no CPU while nothing is appended.
    Tail {
        /// The log directory.
        dir: PathBuf,
        /// First LSN to print (default: the log's first).
        #[arg(long)]
        from: Option<u64>,
    },
    /// Segments with their modes (physical and effective), sizes, LSNs, records.
    Stat {
        /// The log directory.
        dir: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Purge every record below an LSN: the sealed segments wholly below it go (a
    /// single-file log's slots are freed for new segments).
    ///
    /// Refused while another process is the log's writer (exit 1, naming it).
    #[command(after_help = "Example:
  dynadax log purge data/wal --before 30000 --json")]
    Purge {
        /// The log directory.
        dir: PathBuf,
        /// Every record below this LSN goes.
        #[arg(long)]
        before: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Check every record's frame and checksum, the LSN chain, and the bytes past
    /// the tail's records.
    ///
    /// Tells apart a torn tail (a crash's partial last write: recovery cuts it),
    /// damage (a bad record with intact records after it, or in a sealed segment:
    /// recovery refuses it; see `log repair`), and non-zero bytes past the end of
    /// the records. Exit 0 if clean, 1 if anything is wrong (each problem named by
    /// file, byte offset and LSN). Shows a progress bar on a terminal.
    Verify {
        /// The log directory.
        dir: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Repair a damaged log, saying exactly what it drops.
    ///
    /// point-in-time keeps every record before the first damage and drops the rest;
    /// skip-damaged keeps every intact record at its own LSN and records the damaged
    /// LSNs as holes in log.meta (reads of them fail with a clear error; later opens
    /// accept exactly those holes). Either way the bytes dropped are first copied
    /// beside their segment ({segment}.cut-{offset}, or a whole segment renamed to
    /// {segment}.cut-0), and a torn tail is cut. With --dry-run, only says what it
    /// would do. Refused while a writer has the log open.
    #[command(after_help = "Examples:
  dynadax log verify data/wal                                      # what is wrong
  dynadax log repair data/wal --recovery skip-damaged --dry-run    # what a salvage would drop
  dynadax log repair data/wal --recovery skip-damaged              # do it")]
    Repair {
        /// The log directory.
        dir: PathBuf,
        /// What to do with damage.
        #[arg(long, value_enum)]
        recovery: RepairArg,
        /// Change nothing; print what would be done.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Benchmark the log on DIR's file system: appends, sealing (vs copying),
    /// sequential and random reads of sealed segments, recovery scan rate.
    ///
    /// Set DYNADAX_FORCE_CACHE_FLUSH=1 to persist by cache-line flush on a
    /// DRAM-backed file system (/dev/shm), as PMEM_IS_PMEM_FORCE=1 does for PMDK;
    /// on a real disk that setting is not durable.
    Bench(crate::log_bench::BenchArgs),
}

/// Options of a writing open.
#[derive(Args, Debug, Clone)]
pub struct WriteOpts {
    /// When an append is durable: each (persist per append), group (concurrent
    /// appends share a persist), none (only at end of input and every 4096 records).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Group)]
    pub durability: DurabilityArg,
    /// Bytes per segment (suffixes K, M, G) [default for a new log: 64M; an existing
    /// log keeps its own unless this is given].
    #[arg(long, value_parser = parse_size)]
    pub segment_size: Option<u64>,
    /// Largest record in bytes (suffixes K, M, G) [default for a new log: 1M; for an
    /// existing one, the largest its segments hold, unless this is given].
    #[arg(long, value_parser = parse_size)]
    pub max_record: Option<u64>,
    /// First LSN of a new log.
    #[arg(long, default_value_t = 0)]
    pub first_lsn: u64,
    /// What to do with what recovery finds at open: strict (change nothing, refuse
    /// anything but a clean log), tolerate-torn-tail (cut a crash's partial last
    /// write, refuse damage), point-in-time (keep what precedes the first damage),
    /// skip-damaged (keep every intact record, the damaged ones as holes).
    #[arg(long, value_enum, default_value_t = RecoveryArg::TolerateTornTail)]
    pub recovery: RecoveryArg,
    /// How the tail is written: auto (direct on kernel DAX and memory file systems,
    /// cached on block devices without DAX), direct (through a mapping), cached.
    #[arg(long, value_enum, default_value_t = TailArg::Auto)]
    pub tail_mode: TailArg,
    /// How a new log keeps its segments: files (one file per segment), or
    /// single-file (every segment a range of one preallocated data file, log.data,
    /// of --capacity bytes, reused as a ring: the tail range is written through its
    /// mapping and sealed by a range switch while the next one stays mapped). An
    /// existing log keeps its own.
    #[arg(long, value_enum, default_value_t = LayoutArg::Files)]
    pub layout: LayoutArg,
    /// Bytes of a single-file log's data file (suffixes K, M, G): at least two
    /// segments and a 4 KiB superblock.
    #[arg(long, value_parser = parse_size, required_if_eq("layout", "single-file"))]
    pub capacity: Option<u64>,
    /// Scan every sealed segment at open, checking every record's CRC, instead of
    /// opening it from its index file (`{segment}.idx`, written after each seal),
    /// which reads the tail only and finds damage in sealed segments when a record is
    /// read. `log verify` checks everything without opening the log.
    #[arg(long)]
    pub scan_sealed: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutArg {
    Files,
    SingleFile,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum TailArg {
    Auto,
    Direct,
    Cached,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum DurabilityArg {
    Each,
    Group,
    None,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum RecoveryArg {
    Strict,
    TolerateTornTail,
    PointInTime,
    SkipDamaged,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ReadRecoveryArg {
    TolerateTornTail,
    SkipDamaged,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum RepairArg {
    PointInTime,
    SkipDamaged,
}

impl WriteOpts {
    /// The options to open `dir` with: what was given, else the log's own (an existing
    /// log), else the defaults for a new one.
    pub fn log_options(&self, dir: &std::path::Path) -> LogOptions {
        let own = LogOptions::of(dir).ok();
        let (segment, record) = own.map_or((64 << 20, 1 << 20), |o| (o.segment_size, o.max_record as u64));
        LogOptions {
            segment_size: self.segment_size.unwrap_or(segment),
            max_record: self.max_record.unwrap_or(record.min(1 << 20)) as usize,
            durability: match self.durability {
                DurabilityArg::Each => Durability::Each,
                DurabilityArg::Group => Durability::Group,
                DurabilityArg::None => Durability::None,
            },
            recovery: match self.recovery {
                RecoveryArg::Strict => RecoveryMode::Strict,
                RecoveryArg::TolerateTornTail => RecoveryMode::TolerateTornTail,
                RecoveryArg::PointInTime => RecoveryMode::PointInTime,
                RecoveryArg::SkipDamaged => RecoveryMode::SkipDamaged,
            },
            first_lsn: self.first_lsn,
            max_segment_age: None,
            tail_mode: match self.tail_mode {
                TailArg::Auto => TailMode::Auto,
                TailArg::Direct => TailMode::Direct,
                TailArg::Cached => TailMode::Cached,
            },
            layout: match (self.layout, self.capacity) {
                (LayoutArg::SingleFile, Some(capacity)) => Layout::SingleFile { capacity },
                _ => Layout::Files,
            },
            scan_sealed: self.scan_sealed,
        }
    }
}

/// `4096`, `64K`, `64M`, `1G`: a positive size.
pub fn parse_size(s: &str) -> Result<u64, String> {
    parse_bytes(s)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?} is not a size (a positive number, optionally with K, M or G)"))
}

/// Like [`parse_size`], but 0 is allowed: an offset.
pub fn parse_offset(s: &str) -> Result<u64, String> {
    parse_bytes(s).ok_or_else(|| format!("{s:?} is not an offset (a number, optionally with K, M or G)"))
}

fn parse_bytes(s: &str) -> Option<u64> {
    let (num, mul) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(mul))
}

/// Options for opening a log only to read it: limits as large as any writer's.
fn reading() -> LogOptions {
    LogOptions { max_record: 1 << 30, segment_size: u32::MAX as u64, ..LogOptions::default() }
}

pub fn run(cmd: LogCommand) -> anyhow::Result<()> {
    match cmd {
        LogCommand::Append { dir, opts, pipelined } => append(&dir, &opts, pipelined),
        LogCommand::Read { dir, from, limit, recovery } => {
            let recovery = match recovery {
                ReadRecoveryArg::TolerateTornTail => RecoveryMode::TolerateTornTail,
                ReadRecoveryArg::SkipDamaged => RecoveryMode::SkipDamaged,
            };
            let log = Log::open_read_only(&dir, LogOptions { recovery, ..reading() })?;
            let from = from.unwrap_or_else(|| log.first_lsn());
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let end = limit.map_or(u64::MAX, |l| from.saturating_add(l));
            let mut damaged = 0u64;
            // Zero-copy: each record goes from the segment's mapping to the output.
            let mut records = log.cursor_range(from, end);
            while let Some(r) = records.next() {
                match r {
                    Ok(e) => write_record(&mut out, e.lsn, e.bytes)?,
                    Err(e @ dynadax::Error::Damaged { .. }) => {
                        out.flush()?;
                        eprintln!("dynadax: {e}");
                        damaged += 1;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            out.flush()?;
            if damaged > 0 {
                bail!("{}: {damaged} damaged record(s) not printed", dir.display());
            }
            Ok(())
        }
        LogCommand::Tail { dir, from } => {
            let log = Log::open_read_only(&dir, reading())?;
            let mut t = log.tail(from.unwrap_or_else(|| log.first_lsn()));
            let mut out = std::io::stdout().lock();
            loop {
                if let Some(rec) = t.next_ref_timeout(None)? {
                    write_record(&mut out, rec.lsn(), &rec)?;
                    out.flush()?;
                }
            }
        }
        LogCommand::Stat { dir, json } => stat(&dir, json),
        LogCommand::Verify { dir, json } => verify(&dir, json),
        LogCommand::Purge { dir, before, json } => purge(&dir, before, json),
        LogCommand::Repair { dir, recovery, dry_run, json } => repair(&dir, recovery, dry_run, json),
        LogCommand::Bench(args) => crate::log_bench::run(&args),
    }
}

fn write_record(out: &mut impl Write, lsn: u64, rec: &[u8]) -> std::io::Result<()> {
    write!(out, "{lsn}\t")?;
    out.write_all(rec)?;
    out.write_all(b"\n")
}

fn append(dir: &std::path::Path, opts: &WriteOpts, pipelined: bool) -> anyhow::Result<()> {
    let log_opts = opts.log_options(dir);
    let max_record = log_opts.max_record;
    let log = Log::open(dir, log_opts)?;
    let report = log.recovery_report();
    for r in &report.repairs {
        eprintln!("dynadax: recovery: {r}");
    }
    let none = matches!(opts.durability, DurabilityArg::None);
    if none && pipelined {
        bail!("{}: --pipelined makes records durable in the background; --durability none never does", dir.display());
    }
    // Our own buffer over standard input, to know when what was read is used up and
    // the next read may block: then pipelined LSNs appended so far are waited for.
    let stdin = std::io::stdin();
    let mut input = std::io::BufReader::with_capacity(1 << 16, stdin.lock());
    // Standard output is line-buffered: one write per LSN without our own buffer.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut line = Vec::new();
    let mut pending: VecDeque<u64> = VecDeque::new();
    let mut n = 0u64;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).context("read standard input")? == 0 {
            break;
        }
        n += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.is_empty() {
            bail!("{}: input line {n} is empty: a record is 1 to {max_record} bytes", dir.display());
        }
        if pipelined {
            pending.push_back(log.append_nowait(&line)?);
            print_durable(&mut pending, log.durable_lsn(), &mut out)?;
            if input.buffer().is_empty() && !input_ready(&stdin) {
                // Nothing more to append until the producer writes: acknowledge all.
                let last = *pending.back().expect("one was just appended");
                log.wait_durable(last)?;
                print_durable(&mut pending, log.durable_lsn(), &mut out)?;
            } else if pending.len() >= PIPELINE_WINDOW {
                // A full window: wait for its older half while the newer is flushed.
                log.wait_durable(pending[PIPELINE_WINDOW / 2 - 1])?;
                print_durable(&mut pending, log.durable_lsn(), &mut out)?;
            }
        } else if none {
            pending.push_back(log.append(&line)?);
            if pending.len() >= 4096 {
                log.sync()?;
                print_durable(&mut pending, u64::MAX, &mut out)?;
            }
        } else {
            writeln!(out, "{}", log.append(&line)?)?;
            out.flush()?;
        }
    }
    match pending.back().copied() {
        Some(last) if pipelined => log.wait_durable(last)?,
        Some(_) => drop(log.sync()?),
        None => {}
    }
    print_durable(&mut pending, u64::MAX, &mut out)
}

/// Pipelined appends `log append` keeps in flight at most.
const PIPELINE_WINDOW: usize = 1 << 16;

/// Whether standard input has bytes (or its end) ready: a read would not block.
fn input_ready(stdin: &std::io::Stdin) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(stdin, PollFlags::IN)];
    // A regular file is always ready; on an error, reading tells what it is.
    poll(&mut fds, Some(&rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 })).map_or(true, |n| n > 0)
}

/// Prints (and flushes) the pending LSNs below `durable`, oldest first.
fn print_durable(pending: &mut VecDeque<u64>, durable: u64, out: &mut impl Write) -> anyhow::Result<()> {
    if pending.front().is_none_or(|&l| l >= durable) {
        return Ok(());
    }
    while let Some(lsn) = pending.front().copied().filter(|&l| l < durable) {
        writeln!(out, "{lsn}")?;
        pending.pop_front();
    }
    out.flush()?;
    Ok(())
}

fn stat(dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let log = Log::open_read_only(dir, reading())?;
    let segs = log.segments()?;
    let records: u64 = segs.iter().map(|s| s.records).sum();
    let bytes: u64 = segs.iter().map(|s| s.bytes).sum();
    // Sealed ranges of a single-file log on kernel DAX are read through DRAM caches:
    // what every process's did, from the file's shared page.
    let dram = segs
        .first()
        .filter(|s| s.path.ends_with(dynadax::log::DATA_FILE))
        .and_then(|s| dynadax::dram_cache_totals(&s.path));
    if json {
        let v = serde_json::json!({
            "dir": dir,
            "first_lsn": log.first_lsn(),
            "durable_lsn": log.durable_lsn(),
            "records": records,
            "bytes": bytes,
            "layout": log.layout(),
            "dram_cache": dram,
            "segments": segs,
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "log {}: LSNs {}..{} ({records} records, {bytes} bytes) in {} segments",
        dir.display(),
        log.first_lsn(),
        log.durable_lsn(),
        segs.len()
    );
    if let Some(d) = dram {
        println!("DRAM cache of the sealed ranges (all processes): {} page hits, {} misses", d.hits, d.misses);
    }
    println!(
        "{:<26} {:>12} {:>12} {:>9} {:>11} {:>11}  {:<8} {:<8} state",
        "segment", "first LSN", "last LSN", "records", "bytes", "file size", "physical", "effective"
    );
    for s in &segs {
        println!(
            "{:<26} {:>12} {:>12} {:>9} {:>11} {:>11}  {:<8} {:<8} {}",
            {
                let name = s.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if s.path.ends_with(dynadax::log::DATA_FILE) {
                    format!("{name}@{}", s.offset)
                } else {
                    name
                }
            },
            s.first_lsn,
            s.last_lsn.map_or("-".into(), |l| l.to_string()),
            s.records,
            s.bytes,
            s.file_size,
            s.physical,
            s.effective.map_or("-".into(), |m| format!("{m}")),
            if s.sealed { "sealed" } else { "tail" }
        );
    }
    Ok(())
}

fn purge(dir: &std::path::Path, before: u64, json: bool) -> anyhow::Result<()> {
    let log = Log::open(dir, LogOptions::of(dir)?)?;
    let removed = log.purge_before(before)?;
    if json {
        println!("{}", serde_json::json!({"dir": dir, "first_lsn": log.first_lsn(), "segments_removed": removed}));
    } else {
        println!("{}: log starts at LSN {}; {removed} segment(s) removed", dir.display(), log.first_lsn());
    }
    Ok(())
}

fn verify(dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let bar = (std::io::stderr().is_terminal() && !json).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} verifying [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b
    });
    let mut progress = |done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    };
    let rep = dynadax::log::verify(dir, 1 << 30, &mut progress)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if json {
        println!("{}", serde_json::to_string(&rep)?);
    } else {
        for p in &rep.problems {
            let kind = match p.kind {
                dynadax::log::ProblemKind::TornTail => "torn tail",
                dynadax::log::ProblemKind::PastEnd => "past the end",
                dynadax::log::ProblemKind::Damage => "DAMAGE",
                dynadax::log::ProblemKind::Structure => "structure",
                dynadax::log::ProblemKind::TooLarge => "too large",
                dynadax::log::ProblemKind::Index => "index",
            };
            println!("{}: at byte {}: {kind}: {}", p.path.display(), p.offset, p.what);
        }
        for (a, b) in &rep.known_holes {
            println!("known hole (salvaged): LSNs {a}..{b}");
        }
        println!(
            "{}: {} segments, {} records, {} bytes: {}",
            dir.display(),
            rep.segments,
            rep.records,
            rep.bytes,
            if rep.problems.is_empty() { "clean".to_string() } else { format!("{} problem(s)", rep.problems.len()) }
        );
    }
    if !rep.problems.is_empty() {
        bail!("{}: corruption found", dir.display());
    }
    Ok(())
}

fn repair(dir: &std::path::Path, recovery: RepairArg, dry_run: bool, json: bool) -> anyhow::Result<()> {
    let mode = match recovery {
        RepairArg::PointInTime => RecoveryMode::PointInTime,
        RepairArg::SkipDamaged => RecoveryMode::SkipDamaged,
    };
    let rep = if dry_run { Log::plan_recovery(dir, mode)? } else { Log::repair(dir, mode)? };
    if json {
        println!("{}", serde_json::to_string(&rep)?);
        return Ok(());
    }
    let verb = if dry_run { "would drop" } else { "dropped" };
    for d in &rep.dropped {
        let lsns = d.lsns.map_or_else(|| "no record".to_string(), dynadax::log::lsn_span);
        let kept = d.evidence.as_ref().map_or_else(String::new, |e| format!(", kept in {}", e.display()));
        println!("{verb}: {}: {} bytes from byte {} ({}), {lsns}{kept}", d.path.display(), d.bytes, d.offset, d.why);
    }
    let verb = if dry_run { "would keep as a hole" } else { "kept as a hole" };
    for h in &rep.holes {
        println!("{verb}: LSNs {}..{} ({} at byte {})", h.lsns.0, h.lsns.1, h.path.display(), h.offset);
    }
    for r in &rep.repairs {
        println!("{}{r}", if dry_run { "would: " } else { "" });
    }
    println!(
        "{}: {} segments, {} records{}",
        dir.display(),
        rep.segments,
        rep.records,
        if rep.dropped.is_empty() && rep.holes.is_empty() && rep.repairs.is_empty() {
            ": nothing to repair"
        } else {
            ""
        }
    );
    Ok(())
}
