//! A segmented, append-only log built on the access-mode layer: the tail segment is
//! written in `direct` mode (a copy and a persist per append: cache-line flush on
//! kernel DAX), full segments are sealed (trimmed, switched to `cached` in constant
//! time), readers read any durable record, and recovery rebuilds the in-memory index
//! by a scan and repairs a torn tail.
//!
//! Files in a log directory (whose physical mode is `direct`, so segments inherit it):
//! `{base_lsn:020}.dlog` segments (format in `format.rs` and `docs/log-format.md`),
//! `log.meta` (the durable metadata record), `LOCK` (one writer at a time, `flock`),
//! and `.prepare.N.tmp` (the next segment, preallocated in the background).

mod format;
mod frontier;
mod meta;
mod reader;
mod retention;
mod segment;
mod shared;
mod verify;
mod writer;

pub use format::{decode_record, encode_record, frame_len, Decoded, SegmentHeader, FRAME_HEADER, HEADER_LEN};
pub use meta::META_FILE;
pub use reader::{Iter, Tailer};
pub use retention::Retention;
pub use segment::{put_record, put_record_persisted, scan_bytes, Media, Scan};
pub use shared::STATE_FILE;
pub use verify::{verify, Problem, VerifyReport};

use crate::error::{Error, IoContext, Result};
use crate::mode::Mode;
use crate::{Backing, SwitchOptions};
use meta::{sync_dir, Meta};
use segment::{scan, Segment};
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

/// What recovery does with damage it finds when the log is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecoveryMode {
    /// Any damage, even a torn tail, is an error naming the file and byte offset.
    Strict,
    /// A torn tail (partial record or bad checksum at the end of the tail segment) is
    /// cut off and reported; damage inside a sealed segment is an error (the default).
    #[default]
    TolerateTornTail,
    /// Keep everything before the first damage anywhere and drop the rest (reported),
    /// like RocksDB's point-in-time recovery.
    PointInTime,
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
        }
    }
}

/// One segment, as `Log::segments` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentInfo {
    /// The segment file.
    pub path: PathBuf,
    /// LSN of its first record.
    pub first_lsn: Lsn,
    /// LSN of its last record, if it has any.
    pub last_lsn: Option<Lsn>,
    /// Number of records.
    pub records: u64,
    /// Bytes of records and header.
    pub bytes: u64,
    /// File size (the preallocated capacity for the tail).
    pub file_size: u64,
    /// Sealed (immutable, cached) or the tail.
    pub sealed: bool,
    /// Physical mode of the file.
    pub physical: Mode,
    /// Effective mode of the file.
    pub effective: Option<Mode>,
    /// What backs it.
    pub backing: Option<Backing>,
    /// Creation time, ns since the Unix epoch.
    pub created_ns: u64,
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
    /// Repairs made (torn tails cut, half-made segments removed, truncations finished).
    pub repairs: Vec<String>,
}

/// An append-only segmented log. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    dir: PathBuf,
    opts: LogOptions,
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
    /// Group commit: whether a leader is persisting now; followers wait on `led`
    /// instead of queueing on `sync`, so when the leader finishes they all wake at
    /// once and the next leader covers every record written meanwhile.
    leading: Mutex<bool>,
    led: Condvar,
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

    fn open_inner(dir: &Path, opts: LogOptions, read_only: bool) -> Result<Log> {
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
        let started = Instant::now();
        let mut report = RecoveryReport::default();
        let loaded = Meta::load(dir)?;
        if !read_only {
            for e in fs::read_dir(dir).ctx(dir, "list log directory")?.flatten() {
                if e.file_name().to_string_lossy().starts_with(PREPARE_PREFIX) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let mut segments = recover(dir, &opts, read_only, &mut report)?;
        let mut meta = match loaded {
            Some(m) => m,
            None if read_only && segments.is_empty() => {
                return Err(Error::invalid(dir, "not a dynadax log: it has no segment files and no log.meta"));
            }
            // A new log, or one whose first open was cut before it wrote `log.meta`
            // (its segments hold no record yet).
            None if segments.iter().all(|s| s.count() == 0) => {
                Meta { purged_before: segments.first().map_or(opts.first_lsn, |s| s.base()), ..Meta::default() }
            }
            // `log.meta` is replaced atomically, never removed: its absence beside
            // records is damage, and the segments, not `first_lsn` (an option for new
            // logs), say where the log starts.
            None if read_only || opts.recovery == RecoveryMode::PointInTime => {
                let first = segments[0].base();
                if !read_only {
                    report.repairs.push(format!(
                        "{}: missing: rebuilt from the segments (the log starts at LSN {first}; the \
                         application's metadata was lost with it)",
                        dir.join(META_FILE).display()
                    ));
                }
                Meta { purged_before: first, ..Meta::default() }
            }
            None => {
                return Err(Error::Corrupt {
                    path: dir.join(META_FILE),
                    what: "log metadata",
                    why: format!(
                        "missing, while {} segment(s) hold records from LSN {}: the application's metadata \
                         (e.g. a Raft vote) is lost; open with RecoveryMode::PointInTime to rebuild it from \
                         the segments",
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
                retention::remove_newest_first(&mut segments)?;
                sync_dir(dir)?;
                report.repairs.push(format!(
                    "finished a restart at LSN {}: removed {n} segment(s) wholly below it",
                    meta.purged_before
                ));
            }
            segments.clear();
        }
        if !read_only && Meta::load(dir)?.is_none() {
            // Written before the first segment of a new log is made.
            meta.store(dir)?;
        }
        let inner = Inner::assemble(dir, opts, read_only, lock, segments, meta, report, started)?;
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
            log.inner.prep.request(&log.inner);
        }
        Ok(log)
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

    /// What recovery did when this log was opened.
    pub fn recovery_report(&self) -> RecoveryReport {
        self.inner.report.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The segments, oldest first, with their modes.
    pub fn segments(&self) -> Result<Vec<SegmentInfo>> {
        let segs = self.inner.segments.read().unwrap_or_else(|e| e.into_inner()).clone();
        segs.iter()
            .map(|s| {
                let st = s.file.status()?;
                let records = s.count();
                Ok(SegmentInfo {
                    path: s.path.clone(),
                    first_lsn: s.base(),
                    last_lsn: (records > 0).then(|| s.base() + records - 1),
                    records,
                    bytes: s.end.load(Ordering::Acquire),
                    file_size: s.file.len()?,
                    sealed: s.sealed.load(Ordering::Acquire),
                    physical: st.physical,
                    effective: st.effective,
                    backing: st.backing,
                    created_ns: s.header.created_ns,
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
        read_only: bool,
        lock: Option<fs::File>,
        mut segments: Vec<Arc<Segment>>,
        meta: Meta,
        mut report: RecoveryReport,
        started: Instant,
    ) -> Result<Inner> {
        if segments.is_empty() && !read_only {
            // A new log (`purged_before` is `first_lsn` then) or a finished restart.
            segments.push(writer::create_segment(dir, meta.purged_before, opts.segment_size, None)?);
        }
        let next_lsn = segments.last().map_or(meta.purged_before, |s| s.end_lsn());
        report.segments = segments.len();
        report.records = segments.iter().map(|s| s.count()).sum();
        report.micros = started.elapsed().as_micros();
        let shared = shared::SharedState::open(dir, !read_only)?;
        let durable = match (&shared, read_only) {
            (Some(s), false) => {
                s.reset(next_lsn);
                next_lsn
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
            read_only,
            _lock: lock,
            segments: RwLock::new(segments),
            writer: Mutex::new(writer),
            sync: Mutex::new(()),
            leading: Mutex::new(false),
            led: Condvar::new(),
            durable: AtomicU64::new(durable),
            meta: Mutex::new(meta),
            poisoned: AtomicBool::new(false),
            poison_why: Mutex::new(String::new()),
            waiters: AtomicUsize::new(0),
            wait_lock: Mutex::new(()),
            moved: Condvar::new(),
            prep: writer::Preparer::default(),
            report: Mutex::new(report),
            shared,
        })
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::invalid(&self.dir, "log is open read-only"));
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned {
                path: self.dir.clone(),
                why: self.poison_why.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            });
        }
        Ok(())
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

    /// The segment holding `lsn`, if any.
    fn segment_of(&self, lsn: Lsn) -> Option<Arc<Segment>> {
        let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
        let i = segs.partition_point(|s| s.base() <= lsn);
        i.checked_sub(1).map(|i| segs[i].clone())
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

/// Lists, checks and indexes the segments; repairs the tail (unless read-only).
fn recover(dir: &Path, opts: &LogOptions, read_only: bool, report: &mut RecoveryReport) -> Result<Vec<Arc<Segment>>> {
    let mut names: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .ctx(dir, "list log directory")?
        .filter_map(|e| e.ok())
        .filter_map(|e| format::parse_segment_name(&e.path()).map(|b| (b, e.path())))
        .collect();
    names.sort();
    let mut out: Vec<Arc<Segment>> = Vec::with_capacity(names.len());
    let count = names.len();
    for (i, (base, path)) in names.into_iter().enumerate() {
        let is_tail = i + 1 == count;
        let file = segment::SegFile::open(&path, read_only)?;
        let mut head = [0u8; HEADER_LEN];
        let n = file.read_at(&mut head, 0)?;
        let header = match SegmentHeader::decode(&head[..n]) {
            Ok(h) if h.base_lsn == base => h,
            Ok(h) => {
                return Err(segment::corrupt(
                    &path,
                    16,
                    format!("header says base LSN {} but the name says {base}", h.base_lsn),
                ))
            }
            Err(why) => return Err(segment::corrupt(&path, 0, why)),
        };
        if let Some(prev) = out.last() {
            let expect = prev.base() + prev.count();
            if base != expect {
                let why =
                    format!("first LSN {base} does not follow the previous segment's last ({})", expect as i64 - 1);
                if opts.recovery == RecoveryMode::PointInTime && !read_only {
                    report.repairs.push(format!("{}: {why}; dropped it and everything after", path.display()));
                    drop_from(dir, &path)?;
                    break;
                }
                return Err(segment::corrupt(&path, 16, why));
            }
        }
        let scanned = scan(&path, &file, &header, opts.max_record)?;
        report.bytes += scanned.end;
        let seg = Arc::new(Segment::new(path.clone(), header, file, scanned.index, scanned.end, !is_tail));
        if let Some((at, why)) = scanned.damage.clone() {
            let torn_tail = is_tail;
            let cut = match (opts.recovery, torn_tail) {
                (RecoveryMode::Strict, _) | (RecoveryMode::TolerateTornTail, false) => {
                    return Err(segment::corrupt(&path, at, why));
                }
                (RecoveryMode::TolerateTornTail, true) | (RecoveryMode::PointInTime, _) => true,
            };
            if cut && !read_only {
                report.repairs.push(format!(
                    "{}: {} at byte {at} ({why}): cut there, {} bytes after it cleared",
                    path.display(),
                    if torn_tail { "torn tail" } else { "damage" },
                    seg.file.len()?.saturating_sub(at)
                ));
                clear_after(&seg, at)?;
                if !torn_tail {
                    // Point-in-time: everything after this segment goes.
                    out.push(seg);
                    if let Some(next) = next_segment_path(dir, base)? {
                        drop_from(dir, &next)?;
                    }
                    break;
                }
            }
        } else if scanned.dirty_after_end && is_tail && !read_only {
            report.repairs.push(format!(
                "{}: stale bytes after the last record at byte {}: cleared",
                path.display(),
                scanned.end
            ));
            clear_after(&seg, scanned.end)?;
        } else if scanned.dirty_after_end && !is_tail {
            return Err(segment::corrupt(&path, scanned.end, "sealed segment has bytes after its last record".into()));
        }
        out.push(seg);
    }
    // Sealed segments must be cached and trimmed (the tail's mode is set by
    // `tail_media`): a crash may have come after the next segment was created and
    // before the seal of this one finished.
    if !read_only {
        let n = out.len();
        for (i, s) in out.iter().enumerate() {
            if i + 1 < n {
                let f = s.file.dax();
                if f.status()?.physical != Mode::Cached {
                    f.set_mode(Mode::Cached, SwitchOptions::default())?;
                }
                let end = s.end.load(Ordering::Acquire);
                if f.len()? > end {
                    report.repairs.push(format!("{}: unfinished seal: trimmed to {end} bytes", s.path.display()));
                    f.set_len(end)?;
                    f.persist(0, end)?;
                }
            }
            s.sealed.store(i + 1 != n, Ordering::Release);
        }
    }
    Ok(out)
}

/// Zeroes a segment from `at` to its end and persists it, so nothing stale after the
/// new end can ever be read as a record.
fn clear_after(seg: &Segment, at: u64) -> Result<()> {
    let len = seg.file.len()?;
    if len > at {
        seg.file.dax().zero_range(at, len - at)?;
        seg.file.dax().persist(at, len - at)?;
    }
    seg.end.store(at, Ordering::Release);
    Ok(())
}

/// The segment after the one with base `base`, if any.
fn next_segment_path(dir: &Path, base: u64) -> Result<Option<PathBuf>> {
    let mut names: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .ctx(dir, "list log directory")?
        .filter_map(|e| e.ok())
        .filter_map(|e| format::parse_segment_name(&e.path()).map(|b| (b, e.path())))
        .filter(|(b, _)| *b > base)
        .collect();
    names.sort();
    Ok(names.into_iter().next().map(|(_, p)| p))
}

/// Removes the segment at `from` and every later one, newest first, then syncs the
/// directory.
fn drop_from(dir: &Path, from: &Path) -> Result<()> {
    let first = format::parse_segment_name(from).unwrap_or(0);
    let mut doomed: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .ctx(dir, "list log directory")?
        .filter_map(|e| e.ok())
        .filter_map(|e| format::parse_segment_name(&e.path()).map(|b| (b, e.path())))
        .filter(|(b, _)| *b >= first)
        .collect();
    doomed.sort();
    for (_, p) in doomed.iter().rev() {
        fs::remove_file(p).ctx(p, "remove segment")?;
    }
    sync_dir(dir)
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
