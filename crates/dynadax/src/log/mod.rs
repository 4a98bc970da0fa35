//! A segmented, append-only log built on the access-mode layer: the tail segment is
//! written in `direct` mode (a copy and a persist per append: cache-line flush on
//! kernel DAX), full segments are sealed (trimmed, switched to `cached` in constant
//! time), readers read any durable record, and recovery rebuilds the in-memory index
//! by a scan and repairs a torn tail.
//!
//! Files in a log directory (whose physical mode is `direct`, so segments inherit it):
//! `{base_lsn:020}.dlog` segments (format in `format.rs` and `docs/log-format.md`), or
//! with the single-file layout one `log.data` holding every segment (`layout.rs`),
//! `log.meta` (the durable metadata record), `LOCK` (one writer at a time, `flock`),
//! and `.prepare.N.tmp` (the next segment, preallocated in the background).

mod flusher;
mod format;
mod frontier;
mod group;
mod layout;
mod meta;
mod reader;
mod recovery;
mod retention;
mod segment;
mod shared;
mod verify;
mod view;
mod writer;

pub use format::{
    decode_record, encode_record, frame_len, index_path, DataSuper, Decoded, Frames, SegmentHeader, SegmentIndex,
    FRAME_HEADER, HEADER_LEN, SUPER_LEN, VERSION,
};
pub use group::FlushStats;
pub use layout::{Layout, DATA_FILE};
pub use meta::META_FILE;
pub use reader::{Iter, Tailer};
pub use recovery::{lsn_span, recover_tail_image, Dropped, Hole};
pub use retention::Retention;
pub use segment::{put_record, put_record_persisted, scan_bytes, Gap, Media, Run, Scan};
pub use shared::STATE_FILE;
pub use verify::{verify, Problem, ProblemKind, VerifyReport};
pub use view::{Cursor, Entry, RecordRef};

use crate::error::{Error, IoContext, Result};
use crate::mode::Mode;
use crate::{Backing, SwitchOptions};
use meta::{sync_dir, Meta};
use segment::Segment;
use serde::Serialize;
use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// A log sequence number: the position of a record, counted from the log's first LSN.
pub type Lsn = u64;

/// The lock file that makes a process the log's one writer.
pub const LOCK_FILE: &str = "LOCK";
/// Prefix of segments being prepared (`.prepare.N.tmp`); leftovers are removed at open.
const PREPARE_PREFIX: &str = ".prepare.";

/// When an append is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Each append persists its own record before returning (cache-line flush on
    /// kernel DAX, `msync` when emulated). Appends from many threads are serialised.
    Each,
    /// Group commit: an append returns once durable, but concurrent appenders share
    /// one persist (the default: much faster for many appenders where a persist is a
    /// system call). Where the tail persists by cache-line flush (kernel DAX), each
    /// append flushes its own lines as with `Each`, which costs less than sharing.
    #[default]
    Group,
    /// Appends are not persisted; the caller calls [`Log::sync`].
    None,
}

/// How the tail segment is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TailMode {
    /// Direct where it pays: kernel DAX, memory file systems, or cache-line flushing
    /// forced; cached on block devices without DAX (the default).
    #[default]
    Auto,
    /// Always direct: stores into a mapping of the tail (emulated with `msync` where
    /// the kernel has no DAX).
    Direct,
    /// Always cached: `pwrite` and `fdatasync`.
    Cached,
}

/// What recovery does with what it finds when the log is opened. A *torn tail* is a
/// bad record at the very end of the log that nothing after it proves was ever
/// acknowledged (what a crash leaves); *damage* is any other bad record: in a sealed
/// segment, or followed by records written after it was acknowledged (see
/// `docs/log-format.md`). Whatever a repair drops is copied beside its segment first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecoveryMode {
    /// Anything but a clean log is an error naming the file and byte offset; no byte
    /// of any file is changed.
    Strict,
    /// A torn tail is cut (its bytes kept in `{segment}.cut-{offset}`) and reported;
    /// damage is an error naming the file, the offset, the first damaged LSN and the
    /// intact records after it, with nothing changed (the default).
    #[default]
    TolerateTornTail,
    /// Keep everything before the first damage anywhere and drop the rest (kept as
    /// evidence, reported), like RocksDB's point-in-time recovery.
    PointInTime,
    /// Salvage: keep every intact record at its own LSN and the damaged LSNs as holes
    /// (reads of them are [`Error::Damaged`]); the holes are recorded in `log.meta`, so
    /// later opens accept exactly them. A torn tail is cut as by the default.
    SkipDamaged,
}

/// How a log is opened.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Bytes preallocated for each segment (header included).
    pub segment_size: u64,
    /// Largest record payload; must fit in a segment.
    pub max_record: usize,
    /// When appends are durable.
    pub durability: Durability,
    /// What recovery does with damage.
    pub recovery: RecoveryMode,
    /// LSN of the first record of a new log (ignored for an existing one).
    pub first_lsn: Lsn,
    /// Seal the tail once it is this old, even if not full.
    pub max_segment_age: Option<Duration>,
    /// How the tail is written.
    pub tail_mode: TailMode,
    /// Where the segments live, for a new log (an existing one keeps its own).
    pub layout: Layout,
    /// Scan every sealed segment at open, checking every record's CRC. `false` (the
    /// default): a sealed segment file with a valid index file (`{segment}.idx`,
    /// written after each seal) is opened from the index's head without reading its
    /// records, so an open reads the segment headers, the index heads and the tail,
    /// whatever the log's size; the index's offsets are read (their checksum checked)
    /// on the segment's first read. Damage in such a segment is found when a record
    /// is read (every read checks its CRC), by [`verify`], and by an open with
    /// `scan_sealed`, `RecoveryMode::Strict` or a salvage, which always scan. A missing or
    /// damaged index is reported ([`Log::recovery_report`]) and the segment scanned.
    /// Files layout only (the single-file layout scans).
    pub scan_sealed: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_size: 64 << 20,
            max_record: 1 << 20,
            durability: Durability::default(),
            recovery: RecoveryMode::default(),
            first_lsn: 0,
            max_segment_age: None,
            tail_mode: TailMode::Auto,
            layout: Layout::Files,
            scan_sealed: false,
        }
    }
}

impl LogOptions {
    /// The options to open the existing log in `dir` with, as it was made: its
    /// segment size (from its segments), the largest record that fits one.
    pub fn of(dir: impl AsRef<Path>) -> Result<LogOptions> {
        options_of(dir.as_ref())
    }
}

/// One segment, as `Log::segments` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentInfo {
    /// The segment file (with the single-file layout, the data file).
    pub path: PathBuf,
    /// Where the segment starts in it (0 for a segment file).
    pub offset: u64,
    /// LSN of its first record.
    pub first_lsn: Lsn,
    /// LSN of its last record, if it has any.
    pub last_lsn: Option<Lsn>,
    /// Number of records.
    pub records: u64,
    /// Bytes of records and header.
    pub bytes: u64,
    /// File size (the preallocated capacity for the tail); with the single-file
    /// layout, the size of its slot.
    pub file_size: u64,
    /// Sealed (immutable, cached) or the tail.
    pub sealed: bool,
    /// Physical mode of the file (of its slot, with the single-file layout).
    pub physical: Mode,
    /// Effective mode of the file (of its slot).
    pub effective: Option<Mode>,
    /// What backs it.
    pub backing: Option<Backing>,
    /// Creation time, ns since the Unix epoch.
    pub created_ns: u64,
    /// Bytes of RAM its record index takes now: 4 per record for the tail, about
    /// a byte per record for a sealed segment once read, 0 before.
    pub index_ram: usize,
    /// Its index file (written after its seal): `{segment}.idx`, or
    /// `{data}.{offset}.idx` for the single-file layout. `None` for the tail.
    pub index_file: Option<PathBuf>,
}

/// What recovery did when the log was opened.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoveryReport {
    /// Segments scanned.
    pub segments: usize,
    /// Records indexed.
    pub records: u64,
    /// Bytes scanned.
    pub bytes: u64,
    /// Time the scan took.
    pub micros: u128,
    /// Repairs made (torn tails cut, half-made segments removed, truncations finished),
    /// one line each.
    pub repairs: Vec<String>,
    /// The bytes repairs dropped, with the LSNs lost and where the bytes were kept.
    pub dropped: Vec<Dropped>,
    /// Damaged LSNs kept as holes by this open (`RecoveryMode::SkipDamaged`).
    pub holes: Vec<Hole>,
    /// Sealed segments opened from their index file, not scanned (`scan_sealed` false).
    pub indexed: usize,
}

/// An append-only segmented log. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    dir: PathBuf,
    opts: LogOptions,
    /// Where the segments live (see `layout.rs`).
    store: layout::Store,
    read_only: bool,
    /// Held for the life of the log: the `flock` that makes this the one writer.
    _lock: Option<fs::File>,
    /// Segments, oldest first; the last is the tail (unless read-only).
    /// Lock order: `writer`, then `sync`... see `writer.rs`; `segments` is taken last.
    segments: RwLock<Vec<Arc<Segment>>>,
    writer: Mutex<writer::Writer>,
    /// Held while persisting written records: by the group-commit leader, by sealing
    /// and by truncation. Lock order: `sync` before `writer`.
    sync: Mutex<()>,
    /// Group commit (see `group.rs`), and the flush counters.
    group: group::GroupCommit,
    /// Makes pipelined appends durable in the background (see `flusher.rs`); holds
    /// the log only weakly, so a closing log ends and joins it.
    flusher: flusher::Flusher,
    /// Every LSN below this is durable; readers never go past it.
    durable: AtomicU64,
    meta: Mutex<Meta>,
    poisoned: AtomicBool,
    poison_why: Mutex<String>,
    /// Tailers waiting for `durable` to move, and how many there are (appends signal
    /// only when someone waits, so an append makes no system call for it).
    waiters: AtomicUsize,
    wait_lock: Mutex<()>,
    moved: Condvar,
    prep: writer::Preparer,
    report: Mutex<RecoveryReport>,
    /// `tail.state`, shared with readers in other processes (see `shared.rs`).
    shared: Option<shared::SharedState>,
    /// The segment files kept open (bounded; the tail pinned).
    files: Arc<segment::FileCache>,
    /// A reader's place in the writer's cuts (`tail.state`'s epoch) as of its last
    /// look: what it indexed since then is still what the writer wrote.
    cut_epoch: AtomicU64,
}

impl Log {
    /// Opens the log in `dir` as its writer, creating it if needed, and recovers it.
    pub fn open(dir: impl AsRef<Path>, opts: LogOptions) -> Result<Log> {
        Self::open_inner(dir.as_ref(), opts, false)
    }

    /// Opens the log for reading only: no lock, no repair, nothing written. It sees
    /// the records that were valid when it was opened (see [`Log::refresh`]).
    pub fn open_read_only(dir: impl AsRef<Path>, opts: LogOptions) -> Result<Log> {
        Self::open_inner(dir.as_ref(), opts, true)
    }

    fn open_inner(dir: &Path, mut opts: LogOptions, read_only: bool) -> Result<Log> {
        if !read_only && opts.segment_size < (HEADER_LEN + frame_len(opts.max_record)) as u64 {
            return Err(Error::invalid(
                dir,
                format!(
                    "segment size {} cannot hold a record of the maximum size {} (needs {} bytes)",
                    opts.segment_size,
                    opts.max_record,
                    HEADER_LEN + frame_len(opts.max_record)
                ),
            ));
        }
        if !read_only && opts.segment_size > u32::MAX as u64 {
            return Err(Error::invalid(dir, "segment size must be below 4 GiB"));
        }
        if read_only {
            if !dir.is_dir() {
                return Err(Error::NotFound { path: dir.to_path_buf() });
            }
        } else if !dir.exists() {
            create_log_dir(dir)?;
        } else if !dir.is_dir() {
            return Err(Error::invalid(dir, "not a directory: a log is a directory of segments"));
        }
        let lock = if read_only { None } else { Some(take_lock(dir)?) };
        if !read_only && crate::stat(dir)?.physical != Mode::Direct {
            // New segments inherit the directory's mode.
            crate::set_mode(dir, Mode::Direct, SwitchOptions::default())?;
        }
        let store = layout::Store::open(dir, opts.layout, opts.segment_size, !read_only)?;
        if let Some(slot) = store.slot_size() {
            // A single-file log's segments are its slots.
            opts.segment_size = slot;
            opts.layout = store.layout();
            if !read_only && slot < (HEADER_LEN + frame_len(opts.max_record)) as u64 {
                return Err(Error::invalid(
                    dir,
                    format!(
                        "its segments are {slot} bytes and cannot hold a record of the maximum size {}",
                        opts.max_record
                    ),
                ));
            }
        }
        let started = Instant::now();
        let mut report = RecoveryReport::default();
        if let Some(why) = shared::damage(dir).filter(|_| !read_only) {
            report.repairs.push(format!(
                "{}: damaged ({why}): rebuilt (it describes the running writer only)",
                dir.join(STATE_FILE).display()
            ));
        }
        // Before the scan: a reader must not miss a cut made while it scans.
        let shared = shared::SharedState::open(dir, !read_only)?;
        let cut_epoch = shared.as_ref().map_or(0, |s| s.epoch_now());
        let salvage = matches!(opts.recovery, RecoveryMode::PointInTime | RecoveryMode::SkipDamaged);
        // A damaged `log.meta` is refused like a missing one, unless told to rebuild it.
        let (loaded, meta_damage) = match Meta::load(dir) {
            Ok(m) => (m, None),
            Err(Error::Corrupt { why, .. }) if salvage && !read_only => (None, Some(why)),
            Err(e) => return Err(e),
        };
        if !read_only {
            for e in fs::read_dir(dir).ctx(dir, "list log directory")?.flatten() {
                if e.file_name().to_string_lossy().starts_with(PREPARE_PREFIX) {
                    let _ = crate::fsops::remove_file(&e.path());
                }
            }
        }
        let recorded = recovery::Recorded::of(loaded.as_ref());
        let files = segment::FileCache::new(read_only, opts.max_record);
        let mut segments = if read_only {
            recover_racing_writer(dir, &store, &opts, &recorded, &mut report, &files)?
        } else {
            recovery::recover(dir, &store, &opts, recovery::Apply::Write, &recorded, &mut report, &files)?
        };
        let meta_path = dir.join(META_FILE);
        let mut meta = match loaded {
            Some(m) => m,
            None if read_only && segments.is_empty() => {
                return Err(Error::invalid(dir, "not a dynadax log: it has no segment files and no log.meta"));
            }
            // A new log, or one whose first open was cut before it wrote `log.meta`
            // (its segments hold no record yet).
            None if meta_damage.is_none() && segments.iter().all(|s| s.count() == 0) => {
                Meta { purged_before: segments.first().map_or(opts.first_lsn, |s| s.base()), ..Meta::default() }
            }
            // `log.meta` is replaced atomically, never removed: its absence beside
            // records is damage, and the segments, not `first_lsn` (an option for new
            // logs), say where the log starts.
            None if read_only || salvage => {
                let first = segments.first().map_or(opts.first_lsn, |s| s.base());
                if !read_only {
                    let what = match &meta_damage {
                        Some(why) => {
                            let ev = dir.join(format!("{META_FILE}.cut-0"));
                            crate::fsops::rename(&meta_path, &ev).ctx(&meta_path, "set aside damaged log metadata")?;
                            format!("damaged ({why}), kept as {}", ev.display())
                        }
                        None => "missing".into(),
                    };
                    report.repairs.push(format!(
                        "{}: {what}: rebuilt from the segments (the log starts at LSN {first}; the \
                         application's metadata was lost with it)",
                        meta_path.display()
                    ));
                }
                Meta { purged_before: first, ..Meta::default() }
            }
            None => {
                return Err(Error::Corrupt {
                    path: meta_path,
                    what: "log metadata",
                    offset: None,
                    why: format!(
                        "missing, while {} segment(s) hold records from LSN {}: the application's metadata \
                         (e.g. a Raft vote) is lost; RecoveryMode::PointInTime or SkipDamaged rebuilds it \
                         from the segments",
                        segments.len(),
                        segments[0].base()
                    ),
                });
            }
        };
        // The in-memory record holds a truncation intent only while a truncation runs
        // (so no later metadata write can persist a stale one): this one is finished,
        // and cleared, once the log is assembled.
        let pending_truncation = meta.truncate_from.take();
        // Every record purged (a restart past the end, interrupted after its purge
        // point was recorded): the segments go, and the log starts at the purge point.
        if segments.last().is_some_and(|s| s.end_lsn() < meta.purged_before) {
            if !read_only {
                let n = segments.len();
                retention::remove_newest_first(&store, &mut segments)?;
                store.synced()?;
                report.repairs.push(format!(
                    "finished a restart at LSN {}: removed {n} segment(s) wholly below it",
                    meta.purged_before
                ));
            }
            segments.clear();
        }
        // The oldest segment must hold the log's first LSN: if it starts later, the
        // segments before it are gone (a file deleted, a slot's magic zeroed) and their
        // records with them. Refused; with a salvage mode the log starts at that
        // segment, the loss reported. (Not for a reader, whose `log.meta` may predate a
        // purge that removed them.)
        let mut moved_start = false;
        if let Some(first) = segments.first().filter(|_| !read_only) {
            let (start, base) = (meta.purged_before, first.base());
            if base > start && !meta.damaged.iter().any(|&(a, b)| a <= start && base <= b) {
                let at = if first.span == u64::MAX {
                    first.path.display().to_string()
                } else {
                    format!("{} (segment at byte {})", first.path.display(), first.offset)
                };
                let why = format!(
                    "log.meta says the log starts at LSN {start}, but its oldest segment, {at}, starts at LSN \
                     {base}: the segment(s) with LSNs {start}..{base} are missing"
                );
                if !salvage {
                    return Err(Error::Corrupt {
                        path: first.path.clone(),
                        what: "log",
                        offset: None,
                        why: format!(
                            "{why}; nothing was changed (RecoveryMode::PointInTime or SkipDamaged opens the log from \
                             LSN {base}, reporting the loss)"
                        ),
                    });
                }
                report.repairs.push(format!("{why}: the log starts at LSN {base} now"));
                report.dropped.push(Dropped {
                    path: first.path.clone(),
                    offset: first.offset,
                    bytes: 0,
                    lsns: Some((start, base)),
                    evidence: None,
                    why: "missing segments".into(),
                });
                meta.purged_before = base;
                moved_start = true;
            }
        }
        if !read_only && (moved_start || !report.holes.is_empty() || Meta::load(dir)?.is_none()) {
            // Salvaged holes are recorded before anything is appended after them; a new
            // log's record is written before its first segment is made.
            meta.damaged.extend(report.holes.iter().map(|h| h.lsns));
            meta.damaged.sort_unstable();
            Meta { truncate_from: pending_truncation, ..meta.clone() }.store(dir)?;
        }
        let inner = Inner::assemble(
            dir, opts, store, read_only, lock, segments, meta, report, started, shared, cut_epoch, files,
        )?;
        let log = Log { inner: Arc::new(inner) };
        if !read_only {
            if let Some(from) = pending_truncation {
                log.finish_truncation(from)?;
                log.inner
                    .report
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .repairs
                    .push(format!("finished an interrupted truncation from LSN {from}"));
            }
            log.adopt_tail()?;
            log.inner.prep.request(&log.inner);
        }
        // Sealed segments keep a sparse index in RAM. Those scanned (their index file
        // was missing or did not check, or the options asked for a scan) have their
        // index file written again if it is missing or wrong, in the background.
        let segs = log.inner.segments.read().unwrap_or_else(|e| e.into_inner()).clone();
        for s in segs.into_iter().filter(|s| s.sealed.load(Ordering::Acquire)) {
            let Some(dense) = s.sparsify() else { continue };
            if read_only || s.from_index.load(Ordering::Relaxed) {
                continue;
            }
            let end = s.end.load(Ordering::Acquire);
            let ok = segment::read_index_head(&s.index_file(), &s.header, s.extent(end), log.inner.opts.max_record)
                .is_ok_and(|(n, e)| n == dense.len() as u64 && e == end);
            if !ok {
                log.inner.prep.write_index(s, dense, end);
            }
        }
        Ok(log)
    }

    /// What [`Log::repair`] with `recovery` would do to the log in `dir`, changing
    /// nothing: the repairs, the bytes and LSNs they would drop (and where they would
    /// be kept), the holes a salvage would keep. Refused while a writer has the log
    /// open (`dynadax log repair --dry-run`).
    pub fn plan_recovery(dir: impl AsRef<Path>, recovery: RecoveryMode) -> Result<RecoveryReport> {
        let dir = dir.as_ref();
        let opts = LogOptions { recovery, ..options_of(dir)? };
        if writer_alive(dir) {
            let holder = fs::read_to_string(dir.join(LOCK_FILE)).unwrap_or_default();
            return Err(Error::Locked { path: dir.join(LOCK_FILE), holder: format!("process {}", holder.trim()) });
        }
        let meta = Meta::load(dir);
        let recorded = recovery::Recorded::of(meta.as_ref().ok().and_then(|m| m.as_ref()));
        let mut report = RecoveryReport::default();
        if let Err(e) = &meta {
            if !matches!(recovery, RecoveryMode::PointInTime | RecoveryMode::SkipDamaged) {
                return Err(Error::Corrupt {
                    path: dir.join(META_FILE),
                    what: "log metadata",
                    why: e.to_string(),
                    offset: None,
                });
            }
            report.repairs.push(format!("{}: {e}: would be rebuilt from the segments", dir.join(META_FILE).display()));
        }
        let files = segment::FileCache::new(true, opts.max_record);
        let store = layout::Store::open(dir, Layout::Files, opts.segment_size, false)?;
        let segs = recovery::recover(dir, &store, &opts, recovery::Apply::DryRun, &recorded, &mut report, &files)?;
        report.segments = segs.len();
        report.records = segs.iter().map(|s| s.count()).sum();
        Ok(report)
    }

    /// Opens the log in `dir` as its writer with `recovery` (its segment size and
    /// record limit read from the log itself), which repairs it, and closes it: what
    /// it did (`dynadax log repair`).
    pub fn repair(dir: impl AsRef<Path>, recovery: RecoveryMode) -> Result<RecoveryReport> {
        let dir = dir.as_ref();
        let log = Log::open(dir, LogOptions { recovery, ..options_of(dir)? })?;
        Ok(log.recovery_report())
    }

    /// How the log keeps its segments.
    pub fn layout(&self) -> Layout {
        self.inner.store.layout()
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// First LSN still in the log.
    pub fn first_lsn(&self) -> Lsn {
        let segs = self.inner.segments.read().unwrap_or_else(|e| e.into_inner());
        let base = segs.first().map_or(0, |s| s.base());
        base.max(self.inner.meta.lock().unwrap_or_else(|e| e.into_inner()).purged_before)
    }

    /// One past the last durable LSN: readers see `first_lsn()..durable_lsn()`.
    pub fn durable_lsn(&self) -> Lsn {
        self.inner.durable.load(Ordering::SeqCst)
    }

    /// One past the last appended LSN (durable or not).
    pub fn next_lsn(&self) -> Lsn {
        self.inner.writer.lock().unwrap_or_else(|e| e.into_inner()).next_lsn
    }

    /// What the log's persists of its tail did since it was opened: how many, how many
    /// records they carried (appends per `fdatasync`), how long they and group commit's
    /// gathering took.
    pub fn flush_stats(&self) -> FlushStats {
        self.inner.group.stats()
    }

    /// What recovery did when this log was opened.
    /// Index files found damaged or missing when a sealed segment was first read
    /// (after the open) are in its `repairs` too.
    pub fn recovery_report(&self) -> RecoveryReport {
        let mut r = self.inner.report.lock().unwrap_or_else(|e| e.into_inner()).clone();
        r.repairs.extend(self.inner.files.notes.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned());
        r
    }

    /// The segments, oldest first, with their modes.
    pub fn segments(&self) -> Result<Vec<SegmentInfo>> {
        let segs = self.inner.segments.read().unwrap_or_else(|e| e.into_inner()).clone();
        segs.iter()
            .map(|s| {
                let file = s.file()?;
                let st = file.status()?;
                // A slot's modes are those of its range of the data file.
                let (physical, effective, backing) = match layout::range_at(&st, s.offset) {
                    Some(r) if file.is_slot() => (r.physical, Some(r.effective), Some(r.backing)),
                    _ => (st.physical, st.effective, st.backing),
                };
                let records = s.count();
                Ok(SegmentInfo {
                    path: s.path.clone(),
                    offset: s.offset,
                    first_lsn: s.base(),
                    last_lsn: (records > 0).then(|| s.base() + records - 1),
                    records,
                    bytes: s.end.load(Ordering::Acquire),
                    file_size: file.len()?,
                    sealed: s.sealed.load(Ordering::Acquire),
                    physical,
                    effective,
                    backing,
                    created_ns: s.header.created_ns,
                    index_ram: s.index.read().unwrap_or_else(|e| e.into_inner()).ram(),
                    index_file: s.sealed.load(Ordering::Acquire).then(|| s.index_file()),
                })
            })
            .collect()
    }

    /// The application's bytes in the durable metadata record (empty if never set).
    pub fn metadata(&self) -> Vec<u8> {
        self.inner.meta.lock().unwrap_or_else(|e| e.into_inner()).user_bytes()
    }

    /// Replaces the application's bytes in the metadata record, durably.
    pub fn set_metadata(&self, bytes: &[u8]) -> Result<()> {
        self.inner.check_writable()?;
        let mut m = self.inner.meta.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = m.clone();
        next.set_user_bytes(bytes);
        next.store(&self.inner.dir)?;
        *m = next;
        Ok(())
    }
}

impl Inner {
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        dir: &Path,
        opts: LogOptions,
        store: layout::Store,
        read_only: bool,
        lock: Option<fs::File>,
        mut segments: Vec<Arc<Segment>>,
        meta: Meta,
        mut report: RecoveryReport,
        started: Instant,
        shared: Option<shared::SharedState>,
        cut_epoch: u64,
        files: Arc<segment::FileCache>,
    ) -> Result<Inner> {
        if segments.is_empty() && !read_only {
            // A new log (`purged_before` is `first_lsn` then) or a finished restart.
            segments.push(store.create(meta.purged_before, opts.segment_size, None, None, &[], &files)?);
        }
        let next_lsn = segments.last().map_or(meta.purged_before, |s| s.end_lsn());
        report.segments = segments.len();
        report.records = segments.iter().map(|s| s.count()).sum();
        report.micros = started.elapsed().as_micros();
        let durable = match (&shared, read_only) {
            // The tail's records are published once this writer persisted them
            // (`Log::adopt_tail`); sealed segments were persisted whole. What readers
            // saw at or after the new end was cut by this recovery.
            (Some(s), false) => {
                let persisted = segments.last().map_or(next_lsn, |t| t.base());
                s.reset(persisted, next_lsn);
                persisted
            }
            (Some(s), true) if writer_alive(dir) => next_lsn.min(s.durable()),
            _ => next_lsn,
        };
        let tail = segments.last().cloned();
        let writer = match (&tail, read_only) {
            (Some(t), false) => writer::Writer::for_tail(t.clone(), next_lsn, &opts)?,
            _ => writer::Writer::none(next_lsn),
        };
        Ok(Inner {
            dir: dir.to_path_buf(),
            opts,
            store,
            read_only,
            _lock: lock,
            segments: RwLock::new(segments),
            writer: Mutex::new(writer),
            sync: Mutex::new(()),
            group: group::GroupCommit::new(next_lsn),
            flusher: flusher::Flusher::default(),
            durable: AtomicU64::new(durable),
            meta: Mutex::new(meta),
            poisoned: AtomicBool::new(false),
            poison_why: Mutex::new(String::new()),
            waiters: AtomicUsize::new(0),
            wait_lock: Mutex::new(()),
            moved: Condvar::new(),
            prep: writer::Preparer::default(),
            report: Mutex::new(report),
            cut_epoch: AtomicU64::new(cut_epoch),
            files,
            shared,
        })
    }

    #[inline]
    fn check_writable(&self) -> Result<()> {
        if self.read_only || self.poisoned.load(Ordering::Acquire) {
            return Err(self.not_writable());
        }
        Ok(())
    }

    #[cold]
    fn not_writable(&self) -> Error {
        if self.read_only {
            return Error::invalid(&self.dir, "log is open read-only");
        }
        Error::Poisoned {
            path: self.dir.clone(),
            why: self.poison_why.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Latches the log after a failed persist (see [`Error::Poisoned`]).
    fn poison(&self, e: Error) -> Error {
        *self.poison_why.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
        self.poisoned.store(true, Ordering::Release);
        e
    }

    /// Publishes a new durable LSN and wakes tailers if any wait.
    ///
    /// Takes the writer state as proof that the writer lock is held: every move of
    /// `durable` happens under it, so plain stores keep it monotonic, and a single
    /// full fence orders the publication before the looks at the waiter counts (the
    /// tailers count themselves with sequentially consistent operations, then read
    /// `durable`; so either they see the new value or the writer sees them). On the
    /// append path this fence is also where the persist's stores are waited for: one
    /// full barrier per append, not several.
    pub(crate) fn advance_durable(&self, _held: &writer::Writer, to: Lsn) {
        if to <= self.durable.load(Ordering::Relaxed) {
            return;
        }
        self.durable.store(to, Ordering::Release);
        if let Some(s) = &self.shared {
            s.publish(to);
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        if let Some(s) = &self.shared {
            s.wake_waiters();
        }
        if self.waiters.load(Ordering::Relaxed) > 0 {
            let _g = self.wait_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.moved.notify_all();
        }
    }
}

/// Options to open an existing log with as it was made: the segment size from its
/// last segment's header, the largest record that fits one.
fn options_of(dir: &Path) -> Result<LogOptions> {
    if !dir.is_dir() {
        return Err(Error::NotFound { path: dir.to_path_buf() });
    }
    let store = layout::Store::open(dir, Layout::Files, 0, false)?;
    let capacity = match store.slot_size() {
        Some(slot) => Some(slot),
        None => store.list()?.0.iter().rev().find_map(|f| {
            let mut head = [0u8; HEADER_LEN];
            let n = fs::File::open(&f.path).ok()?.read_at(&mut head, 0).ok()?;
            SegmentHeader::decode(&head[..n]).ok().map(|h| h.capacity)
        }),
    };
    let Some(segment_size) = capacity.filter(|&c| c >= 4096) else {
        return Err(Error::invalid(dir, "not a dynadax log, or no segment header can be read to size it"));
    };
    let max_record = (segment_size as usize).saturating_sub(HEADER_LEN + FRAME_HEADER + format::ALIGN);
    Ok(LogOptions { segment_size, max_record, ..LogOptions::default() })
}

/// A reader's recovery: the writer may seal, trim, purge or truncate while it
/// lists and scans, so what looks like damage or a missing file is looked at again
/// whenever the directory changed meanwhile (names and sizes); only what stays is
/// reported.
fn recover_racing_writer(
    dir: &Path,
    store: &layout::Store,
    opts: &LogOptions,
    recorded: &recovery::Recorded,
    report: &mut RecoveryReport,
    files: &Arc<segment::FileCache>,
) -> Result<Vec<Arc<Segment>>> {
    let look = || store.picture();
    let mut tries = 0;
    loop {
        let before = look();
        let mut r = RecoveryReport::default();
        match recovery::recover(dir, store, opts, recovery::Apply::ReadOnly, recorded, &mut r, files) {
            Ok(segs) => {
                report.bytes += r.bytes;
                report.indexed += r.indexed;
                report.repairs.extend(r.repairs);
                report.holes.extend(r.holes);
                return Ok(segs);
            }
            Err(e) if tries < 100 && look() != before => {
                tries += 1;
                let _ = e;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Creates a new log's directory durably (its entry in the parent is fsynced), with
/// an error that says what was tried when the parent is missing.
fn create_log_dir(dir: &Path) -> Result<()> {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Error::invalid(
            dir,
            format!("cannot create the log directory: its parent {} does not exist", parent.display()),
        ));
    }
    crate::create_dir(dir)?;
    sync_dir(parent)
}

/// Whether some process holds the writer lock of `dir` now.
pub(crate) fn writer_alive(dir: &Path) -> bool {
    use rustix::fs::{flock, FlockOperation};
    let Ok(f) = fs::File::open(dir.join(LOCK_FILE)) else { return false };
    match flock(&f, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = flock(&f, FlockOperation::Unlock);
            false
        }
        Err(_) => true,
    }
}

/// Takes the writer lock of `dir`, or says who holds it.
fn take_lock(dir: &Path) -> Result<fs::File> {
    use rustix::fs::{flock, FlockOperation};
    let path = dir.join(LOCK_FILE);
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .ctx(&path, "open lock file")?;
    // A lock held by a live writer is refused at once, after a short grace: a child
    // process being spawned by another thread of this process holds a copy of every
    // descriptor until its exec closes them, so a log closed and reopened at that
    // moment looks locked for a few hundred microseconds.
    let mut tries = 0;
    let locked = loop {
        match flock(&f, FlockOperation::NonBlockingLockExclusive) {
            Err(rustix::io::Errno::WOULDBLOCK) if tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(4));
            }
            r => break r,
        }
    };
    match locked {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            return Err(Error::Locked {
                path,
                holder: if holder.is_empty() { "unknown process".into() } else { format!("process {holder}") },
            });
        }
        Err(e) => return Err(Error::io(&path, "lock", e.into())),
    }
    f.set_len(0).ctx(&path, "write lock file")?;
    f.write_all_at(std::process::id().to_string().as_bytes(), 0).ctx(&path, "write lock file")?;
    let _ = f.flush();
    Ok(f)
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
