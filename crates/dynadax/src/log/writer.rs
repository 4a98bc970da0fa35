//! Appends, group commit, sealing and rotation, and the background preparer.
//!
//! Lock order: `Inner::sync` (one persist leader) before `Inner::writer` (the tail
//! state) before `Inner::segments`. An append holds `writer` only to copy its frame;
//! with `Durability::Group` it persists afterwards as or behind a leader.

use super::format::{self, HEADER_LEN};
use super::frontier::Frontier;
use super::segment::{put_record, put_record_persisted, Media, Segment};
use super::{Durability, Inner, Log, LogOptions, Lsn, TailMode, PREPARE_PREFIX};
use crate::error::{Error, IoContext, Result};
use crate::fsops;
use crate::{File, MapGuard, Mode, SwitchOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Condvar, Mutex, Weak};
use std::time::Instant;

/// The tail's write state. Guarded by `Inner::writer`.
pub(crate) struct Writer {
    /// The segment taking appends (`None` only for read-only logs).
    pub tail: Option<Arc<Segment>>,
    /// How appends reach the tail (see [`TailMedia`]). Shared with a group-commit
    /// leader while it persists; dropped before sealing.
    pub guard: Option<Arc<TailMedia>>,
    pub next_lsn: Lsn,
    /// Offset of the next frame in the tail.
    pub write_off: u64,
    /// Offset up to which the tail is known persisted (group commit, rotation).
    pub persisted_upto: u64,
    /// When the tail was opened, for `max_segment_age`.
    pub opened: Instant,
    /// Bumped whenever `tail` changes (rotation, truncation), so a group-commit leader
    /// can tell whether the range it persisted still belongs to the current tail.
    pub generation: u64,
    /// Frame encoding buffer, reused.
    scratch: Vec<u8>,
    /// The offset of each record in the tail, pushed by each append (a push under the
    /// lock already held): at the seal it becomes the sealed segment's index, in
    /// memory and in its index file, with no scan.
    offsets: Vec<u32>,
}

/// A log closed with staged frames (`Durability::None` without a sync, or pipelined
/// appends not waited for) writes them, as a `pwrite` per append would have: not
/// durable, but in the page cache. (A truncation writes them before it cuts; a purge
/// past the end drops them with the tail's media: they belong to purged records, and
/// the tail's file may be gone or its slot freed.)
impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(g) = &self.guard {
            let _ = g.write_staged();
        }
    }
}

impl Writer {
    pub fn for_tail(tail: Arc<Segment>, next_lsn: Lsn, opts: &LogOptions) -> Result<Writer> {
        let mut w = Writer::none(next_lsn);
        w.open_tail(tail, next_lsn, opts)?;
        Ok(w)
    }

    pub fn none(next_lsn: Lsn) -> Writer {
        Writer {
            tail: None,
            guard: None,
            next_lsn,
            write_off: 0,
            persisted_upto: 0,
            opened: Instant::now(),
            generation: 0,
            scratch: Vec::new(),
            offsets: Vec::new(),
        }
    }

    /// Makes `tail` (whose records up to its `end` are persisted) the segment taking
    /// appends, the next of which gets `next_lsn`: at open, and after a truncation or
    /// a restart replaced the tail. (Rotation opens a fresh segment the same way, but
    /// keeps the new media it made before the old tail was sealed.)
    pub fn open_tail(&mut self, tail: Arc<Segment>, next_lsn: Lsn, opts: &LogOptions) -> Result<()> {
        let end = tail.end.load(Ordering::Acquire);
        // The records already in it (recovered, or kept by a truncation): the index is
        // completed first (readers extend it lazily), a damaged last record aside.
        if let Some(last) = tail.count().checked_sub(1) {
            let _ = tail.offset_of(tail.base() + last);
        }
        self.offsets = tail
            .index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .dense_offsets()
            .map(<[u32]>::to_vec)
            .unwrap_or_default();
        self.guard = Some(tail_media(&tail, opts)?);
        self.tail = Some(tail);
        self.generation += 1;
        self.next_lsn = next_lsn;
        self.write_off = end;
        self.persisted_upto = end;
        self.opened = Instant::now();
        Ok(())
    }
}

/// How the writer stores records into the tail.
pub(crate) enum TailMedia {
    /// Stores into a mapping of the whole tail (direct mode) and a cache-line flush
    /// (kernel DAX) or `msync`: no system call per append on kernel DAX. The live
    /// guard also keeps the tail's mode from being switched under the writer.
    Mapped { guard: MapGuard, frontier: Frontier },
    /// `pwrite` and `fdatasync` through the tail's cached vector (at the tail's offset
    /// `base` in its file), with a hold on its mode (no other process may switch or
    /// trim the live tail, as for a mapping). Stores are staged in memory and written
    /// by whoever persists (see [`Staging`]).
    Through { file: File, base: u64, staging: Staging, _hold: crate::Hold },
}

/// Frames stored into a cached tail but not yet written to its file: an append copies
/// its frame here (no system call), and the persist that makes it durable writes the
/// whole run with one `pwrite` before its `fdatasync`. Group commit's followers so
/// return to their next append in a copy's time, and one `pwrite` carries a flush's
/// group (measured in docs/benchmarks.md). Nothing is read from the file beyond the
/// durable LSN, and everything below it was written before it was published, so
/// readers never miss a staged byte. A run longer than [`STAGE_MAX`] is written at
/// once by the appender, so an unsynced log (`Durability::None`) stays at most that
/// far behind in the page cache, as it was with a `pwrite` per append.
pub(crate) struct Staging {
    /// The staged run: bytes for `off..off + buf.len()` of the tail.
    run: Mutex<Run>,
    /// Held while a run is taken and written: runs reach the file in order, and a
    /// persist that follows a write in progress waits for it. Holds the spare buffer.
    /// Lock order: `out` before `run`.
    out: Mutex<Vec<u8>>,
}

#[derive(Default)]
struct Run {
    off: u64,
    buf: Vec<u8>,
}

/// The longest staged run before the appender writes it itself.
const STAGE_MAX: usize = 256 << 10;

impl Staging {
    fn new() -> Staging {
        Staging { run: Mutex::new(Run::default()), out: Mutex::new(Vec::new()) }
    }

    /// Stages `data` for `off` (just after the run, as appends are; anything else,
    /// after a truncation, writes the run first).
    fn store(&self, file: &File, base: u64, off: u64, data: &[u8]) -> Result<()> {
        let full = {
            let mut r = self.run.lock().unwrap_or_else(|e| e.into_inner());
            if r.buf.is_empty() {
                r.off = off;
            } else if r.off + r.buf.len() as u64 != off {
                drop(r);
                self.write_out(file, base)?;
                return self.store(file, base, off, data);
            }
            r.buf.extend_from_slice(data);
            r.buf.len() >= STAGE_MAX
        };
        if full {
            self.write_out(file, base)?;
        }
        Ok(())
    }

    /// Writes the staged run to the file (not durably). On failure the run's bytes
    /// are lost to the file: the caller poisons the log (as for a failed persist).
    fn write_out(&self, file: &File, base: u64) -> Result<()> {
        let mut spare = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let (off, mut buf) = {
            let mut r = self.run.lock().unwrap_or_else(|e| e.into_inner());
            if r.buf.is_empty() {
                return Ok(());
            }
            let off = r.off;
            (off, std::mem::replace(&mut r.buf, std::mem::take(&mut *spare)))
        };
        let res = file.write_at(&buf, base + off);
        buf.clear();
        *spare = buf;
        res
    }
}

impl Media for TailMedia {
    fn store(&self, off: u64, data: &[u8]) -> Result<()> {
        match self {
            TailMedia::Mapped { guard, .. } => {
                self.prepare_upto(off + data.len() as u64);
                guard.store(off, data)
            }
            TailMedia::Through { file: f, base, staging, .. } => staging.store(f, *base, off, data),
        }
    }
    #[inline]
    fn store_persist(&self, off: u64, data: &[u8]) -> Result<()> {
        match self {
            TailMedia::Mapped { guard, .. } => {
                self.prepare_upto(off + data.len() as u64);
                guard.store_persist(off, data)
            }
            TailMedia::Through { file: f, base, staging, .. } => {
                staging.store(f, *base, off, data)?;
                staging.write_out(f, *base)?;
                f.persist(base + off, data.len() as u64)
            }
        }
    }
    fn persist(&self, off: u64, len: u64) -> Result<()> {
        match self {
            TailMedia::Mapped { guard, .. } => Media::persist(guard, off, len),
            TailMedia::Through { file: f, base, staging, .. } => {
                staging.write_out(f, *base)?;
                f.persist(base + off, len)
            }
        }
    }
}

impl TailMedia {
    /// Writes the frames a cached tail has staged (not durably).
    pub(crate) fn write_staged(&self) -> Result<()> {
        match self {
            TailMedia::Mapped { .. } => Ok(()),
            TailMedia::Through { file, base, staging, .. } => staging.write_out(file, *base),
        }
    }

    /// Whether persisting is a cache-line flush and fence (no system call).
    fn persists_by_cache_flush(&self) -> bool {
        match self {
            TailMedia::Mapped { guard, .. } => matches!(guard.persistence(), crate::Persistence::CacheLineFlush(_)),
            TailMedia::Through { .. } => false,
        }
    }

    /// Makes sure a mapped tail is faulted in below `end` before the appender stores
    /// there (the frontier's invariant), helping the preparer if it is behind.
    #[inline]
    fn prepare_upto(&self, end: u64) {
        if let TailMedia::Mapped { frontier, .. } = self {
            if frontier.ready() < end {
                frontier.ensure(end, |r| self.populate(r));
            }
        }
    }

    /// Faults `r` of a mapped tail in, writable. A failure is left to the stores
    /// there, which fault the pages in themselves (the space is allocated already).
    fn populate(&self, r: std::ops::Range<u64>) {
        if let TailMedia::Mapped { guard, .. } = self {
            let _ = guard.populate(r.start as usize, (r.end - r.start) as usize);
        }
    }
}

/// Readies a tail for appends: at least `segment_size` bytes allocated (a crash may
/// have left it trimmed), its mode set per [`TailMode`], and the media to store by.
pub(crate) fn tail_media(tail: &Arc<Segment>, opts: &LogOptions) -> Result<Arc<TailMedia>> {
    let file = tail.file()?;
    let f = file.dax();
    let (base, slot) = (file.base(), file.is_slot());
    // Its capacity back (a sealed segment that became the tail is trimmed), durably:
    // a last segment shorter than its capacity is a truncated one to recovery. (A
    // slot of the single-file layout is never trimmed.)
    let len = if slot { tail.span } else { f.len()?.max(opts.segment_size).max(tail.header.capacity) };
    if !slot && f.len()? < len {
        f.allocate(0, len)?;
        fsops::sync_path(&tail.path).ctx(&tail.path, "fsync segment size")?;
    }
    let direct = match opts.tail_mode {
        TailMode::Direct => true,
        TailMode::Cached => false,
        TailMode::Auto => auto_direct(&tail.path)?,
    };
    let want = if direct { Mode::Direct } else { Mode::Cached };
    if slot {
        // The tail's own slot: a range switch, which the mappings of other slots
        // (none are left by the writer) would not stand in the way of.
        if super::layout::range_physical(&f.status()?, base) != want {
            f.set_range_mode(base, Some(len), want, SwitchOptions::default())?;
        }
    } else if f.status()?.physical != want {
        f.set_mode(want, SwitchOptions::default())?;
    }
    Ok(Arc::new(if direct {
        // A view of the file's window (see `DirectOps::map`): for a slot of the
        // single-file layout, the one mapping of the data file, which every seal leaves
        // in place.
        TailMedia::Mapped { guard: f.map(base, len as usize, true)?, frontier: Frontier::new(len) }
    } else {
        TailMedia::Through {
            file: f.clone(),
            base,
            staging: Staging::new(),
            _hold: f.hold(base, if slot { Some(len) } else { None })?,
        }
    }))
}

/// `TailMode::Auto`: direct where the kernel can do DAX, on memory file systems
/// (no block device: `msync` costs nothing there) and when cache-line flushing is
/// forced; cached on block devices without DAX, where every store after an `msync`
/// takes a write-protect fault and a journal start (measured in docs/benchmarks.md).
fn auto_direct(path: &Path) -> Result<bool> {
    let p = crate::probe(path)?;
    let kernel_dax = p.device_dax && matches!(p.mount_dax, crate::MountDax::Inode | crate::MountDax::Always);
    let forced = std::env::var_os(crate::aops::FORCE_FLUSH_ENV).is_some_and(|v| v == "1");
    Ok(kernel_dax || p.device.is_none() || forced)
}

/// Makes a `.prepare.N.tmp`: created through dynadax (so it inherits the directory's
/// mode), its whole capacity allocated, synced.
pub(crate) fn prepare_file(dir: &Path, capacity: u64) -> Result<PathBuf> {
    let zero_fill = crate::probe(dir).is_ok_and(|p| p.device.is_some());
    // A unique name: the background preparer and a rotation that could not wait
    // for it may prepare at the same time.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!("{PREPARE_PREFIX}{}.{n}.tmp", std::process::id()));
    let made = (|| {
        let f = File::create(&tmp)?;
        if zero_fill {
            // On a block device, written zeros rather than `fallocate`d space: on
            // ext4/xfs an allocated but never written extent is "unwritten", and the
            // first write into it makes the next `fdatasync` (or DAX fault) commit the
            // journal to convert it. (On memory file systems both are the same.)
            let zeros = vec![0u8; 1 << 20];
            let mut at = 0;
            while at < capacity {
                let n = (capacity - at).min(zeros.len() as u64) as usize;
                f.write_at(&zeros[..n], at)?;
                at += n as u64;
            }
        } else {
            f.allocate(0, capacity)?;
        }
        drop(f);
        fsops::sync_path(&tmp).ctx(&tmp, "fsync prepared segment")
    })();
    match made {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fsops::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Background work kept off the append path: preparing the next segment file, and
/// faulting in a new tail's mapping.
#[derive(Default)]
pub(crate) struct Preparer {
    /// The next segment file, and whether the background thread is preparing one.
    next: Arc<(Mutex<NextFile>, Condvar)>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    /// The background thread, joined when the log closes.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct NextFile {
    /// The prepared next segment, when ready.
    ready: Option<PathBuf>,
    /// The single-file layout's next slot, switched to direct and zeroed, when ready.
    ready_slot: Option<u64>,
    /// A `Job::Prepare` is queued or running: a rotation waits for it rather than
    /// allocating a second file beside it.
    pending: bool,
    /// The log is closed: a file prepared from now on is removed, not kept.
    closed: bool,
}

/// A closed log leaves no prepared file behind (a crash may: the next open removes
/// it), and nothing of it touches the directory once it is closed: the background
/// thread finishes its job (a file it prepares now is removed) and is joined.
impl Drop for Preparer {
    fn drop(&mut self) {
        {
            let mut n = self.next.0.lock().unwrap_or_else(|e| e.into_inner());
            n.closed = true;
            if let Some(p) = n.ready.take() {
                let _ = fsops::remove_file(&p);
            }
        }
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// Ends a `Job::Prepare`: no longer pending, and the waiting rotation is woken.
struct PrepareDone<'a>(&'a (Mutex<NextFile>, Condvar));

impl Drop for PrepareDone<'_> {
    fn drop(&mut self) {
        let (slot, cv) = self.0;
        slot.lock().unwrap_or_else(|e| e.into_inner()).pending = false;
        cv.notify_all();
    }
}

enum Job {
    Prepare {
        dir: PathBuf,
        capacity: u64,
    },
    /// Ready a free slot of the single-file layout for the next segment.
    PrepareSlot {
        store: super::layout::Store,
        offset: u64,
    },
    Populate(Weak<TailMedia>),
    /// Write a sealed segment's index file (see [`super::format::SegmentIndex`]).
    WriteIndex(Arc<Segment>, Vec<u32>, u64),
}

/// Faults a new tail's mapping in ahead of the appender, a chunk at a time, holding
/// the mapping only for one chunk: sealing waits for every holder of the guard, so it
/// must never wait for the whole segment to be populated.
fn populate(media: &Weak<TailMedia>) {
    loop {
        let Some(m) = media.upgrade() else { return };
        let TailMedia::Mapped { frontier, .. } = &*m else { return };
        let Some(r) = frontier.claim() else { return };
        m.populate(r.clone());
        frontier.finish(r);
    }
}

impl Preparer {
    /// Queues `job` on the background thread (started on first use); false if there
    /// is no thread, and the work is left to the appender.
    fn send(&self, job: Job) -> bool {
        let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if tx.is_none() {
            let (t, rx) = mpsc::channel::<Job>();
            let next = self.next.clone();
            let spawned = std::thread::Builder::new().name("dynadax-log-prep".into()).spawn(move || {
                for job in rx {
                    match job {
                        Job::Prepare { dir, capacity } => {
                            // Clears `pending` however this ends, a panic included: a
                            // rotation waits for it.
                            let done = PrepareDone(&next);
                            // A failure here only means rotation prepares synchronously.
                            let made = prepare_file(&dir, capacity).ok();
                            let mut n = next.0.lock().unwrap_or_else(|e| e.into_inner());
                            let stale = if n.closed { made } else { std::mem::replace(&mut n.ready, made) };
                            if let Some(p) = stale {
                                let _ = fsops::remove_file(&p); // the log is closed (or a duplicate)
                            }
                            drop(n);
                            drop(done);
                        }
                        Job::PrepareSlot { store, offset } => {
                            let done = PrepareDone(&next);
                            // A failure only means the rotation zeroes the slot itself.
                            let made = store.prepare_slot(offset).ok().map(|()| offset);
                            next.0.lock().unwrap_or_else(|e| e.into_inner()).ready_slot = made;
                            drop(done);
                        }
                        Job::Populate(media) => populate(&media),
                        // Advisory: an index not written means a scan at the open that needs it.
                        Job::WriteIndex(seg, dense, end) => drop(super::segment::write_index(&seg, &dense, end)),
                    }
                }
            });
            match spawned {
                Ok(h) => *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(h),
                Err(_) => return false, // No thread: everything happens synchronously instead.
            }
            *tx = Some(t);
        }
        tx.as_ref().is_some_and(|t| t.send(job).is_ok())
    }

    /// At open: asks for the current tail to be faulted in, then for the next file.
    pub fn request(&self, inner: &Inner) {
        let guard = inner.writer.lock().unwrap_or_else(|e| e.into_inner()).guard.clone();
        self.tail_opened(guard.as_ref(), inner);
    }

    /// A new tail is in place: fault it in first (the appender is about to store
    /// there), then prepare the file after it.
    pub fn tail_opened(&self, guard: Option<&Arc<TailMedia>>, inner: &Inner) {
        if let Some(g) = guard {
            self.send(Job::Populate(Arc::downgrade(g)));
        }
        self.prepare_next(inner);
    }

    /// Asks for `seg`'s index file to be written in the background (files layout),
    /// from its records' offsets `dense`, which end at `end`.
    pub fn write_index(&self, seg: Arc<Segment>, dense: Vec<u32>, end: u64) {
        self.send(Job::WriteIndex(seg, dense, end));
    }

    /// Asks for the next segment file, unless one is ready or on its way.
    pub fn prepare_next(&self, inner: &Inner) {
        if inner.store.slot_size().is_some() {
            // The single-file layout: the free slot after the tail, if the ring has one
            // (after a purge otherwise), switched to direct and zeroed ahead of time.
            let Some(offset) = inner.store.next_free(&inner.segments.read().unwrap_or_else(|e| e.into_inner())) else {
                return;
            };
            let (slot, _) = &*self.next;
            let mut n = slot.lock().unwrap_or_else(|e| e.into_inner());
            if n.ready_slot != Some(offset) && !n.pending && !n.closed {
                n.ready_slot = None;
                n.pending = self.send(Job::PrepareSlot { store: inner.store.clone(), offset });
            }
            return;
        }
        let (slot, _) = &*self.next;
        let mut n = slot.lock().unwrap_or_else(|e| e.into_inner());
        if n.ready.is_none() && !n.pending {
            n.pending = self.send(Job::Prepare { dir: inner.dir.clone(), capacity: inner.opts.segment_size });
        }
    }

    /// The prepared next segment file: waits for one being prepared; `None` if none
    /// is ready or coming (the caller prepares one itself).
    pub fn take(&self) -> Option<PathBuf> {
        let (slot, cv) = &*self.next;
        let mut n = slot.lock().unwrap_or_else(|e| e.into_inner());
        while n.ready.is_none() && n.pending {
            n = cv.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        n.ready.take()
    }

    /// The slot the preparer readied (single-file layout): waits for one being
    /// readied; `None` if none is (the rotation readies its slot itself).
    pub fn take_slot(&self) -> Option<u64> {
        let (slot, cv) = &*self.next;
        let mut n = slot.lock().unwrap_or_else(|e| e.into_inner());
        while n.pending {
            n = cv.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        n.ready_slot.take()
    }

    /// Whether the next segment file (or slot) is prepared (a rotation now would not
    /// wait).
    pub fn next_ready(&self) -> bool {
        let n = self.next.0.lock().unwrap_or_else(|e| e.into_inner());
        n.ready.is_some() || n.ready_slot.is_some()
    }
}

/// The failpoint `log-persist`: tests inject an I/O error where the log persists.
fn persist_failpoint() -> Result<()> {
    #[cfg(feature = "failpoints")]
    fail::fail_point!("log-persist", |_| Err(Error::Io {
        path: std::path::PathBuf::from("(failpoint log-persist)"),
        op: "persist",
        source: std::io::Error::from_raw_os_error(libc::EIO),
    }));
    Ok(())
}

/// Persists `from..from+len` of the tail.
fn persist_tail(media: &TailMedia, from: u64, len: u64) -> Result<()> {
    persist_failpoint()?;
    media.persist(from, len)
}

impl Log {
    /// Appends one record and returns its LSN once it is as durable as the log's
    /// [`Durability`] says.
    pub fn append(&self, record: &[u8]) -> Result<Lsn> {
        Ok(self.append_batch(&[record])?.end - 1)
    }

    /// Appends records in order, all or none visible to readers until durable; returns
    /// their LSNs. One persist covers the batch.
    pub fn append_batch(&self, records: &[&[u8]]) -> Result<std::ops::Range<Lsn>> {
        self.append_records(records, true)
    }

    /// Pipelined durability: appends one record and returns its LSN at once, before
    /// it is durable (whatever the log's [`Durability`]). A background flusher makes
    /// what is appended durable, one persist for everything written meanwhile, while
    /// the caller goes on appending; [`Log::wait_durable`] waits for an LSN, and
    /// [`Log::durable_lsn`] tells how far it got. An LSN must not be acknowledged to
    /// anyone before it is durable: a crash may lose any record above `durable_lsn`.
    ///
    /// The cost, for damage detection: each frame claims the records durable when it
    /// was written (what tells recovery damage in the tail from a torn write), and
    /// records in flight together cannot claim each other. Damage to a pipelined
    /// record of the tail that no record written after it became durable claims reads
    /// as a torn tail: cut at the next open, its bytes kept beside the segment (not
    /// destroyed), and reported. Synchronous appends leave only the last group so.
    pub fn append_nowait(&self, record: &[u8]) -> Result<Lsn> {
        Ok(self.append_records(&[record], false)?.end - 1)
    }

    /// [`Log::append_nowait`] for a batch: all or none visible once durable.
    pub fn append_batch_nowait(&self, records: &[&[u8]]) -> Result<std::ops::Range<Lsn>> {
        self.append_records(records, false)
    }

    /// Returns once record `lsn` (and every one before it) is durable, persisting
    /// what is written if no one else is (group commit). An `lsn` not yet appended is
    /// an error.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        let next = self.next_lsn();
        if lsn >= next {
            return Err(Error::invalid(
                &self.inner.dir,
                format!("cannot wait for LSN {lsn} to be durable: the log's next LSN is {next}"),
            ));
        }
        self.inner.commit(lsn + 1)
    }

    fn append_records(&self, records: &[&[u8]], wait: bool) -> Result<std::ops::Range<Lsn>> {
        let inner = &self.inner;
        inner.check_writable()?;
        for r in records {
            if r.is_empty() || r.len() > inner.opts.max_record {
                return Err(Error::invalid(
                    &inner.dir,
                    format!("record of {} bytes: records are 1 to {} bytes", r.len(), inner.opts.max_record),
                ));
            }
        }
        if records.is_empty() {
            let n = self.next_lsn();
            return Ok(n..n);
        }
        let mut w = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        let first = w.next_lsn;
        // The last LSN is `u64::MAX - 1`: one past it must be representable.
        if first.checked_add(records.len() as u64).is_none() {
            return Err(Error::invalid(
                &inner.dir,
                format!(
                    "LSN space exhausted: the next LSN is {first} and {} record(s) would pass {}",
                    records.len(),
                    u64::MAX - 1
                ),
            ));
        }
        // All or nothing: the segment files for every rotation the batch needs are
        // had before any of its records is stored, so a full disk fails the batch
        // before it changed anything (and does not poison the log).
        let aged = inner.opts.max_segment_age.is_some_and(|a| w.opened.elapsed() >= a) && w.next_lsn > first_of(&w);
        let mut prepared = self.reserve_segments(rotations_needed(&w, records, inner.opts.segment_size, aged))?;
        for (i, r) in records.iter().enumerate() {
            let n = format::frame_len(r.len()) as u64;
            if w.write_off + n > inner.opts.segment_size || (i == 0 && aged) {
                let file = prepared.0.pop().expect("a segment reserved for each rotation");
                // Records of this batch in the old tail are not published by the seal.
                inner.rotate(&mut w, file, first)?;
            }
            // Split borrows of the writer's fields: no reference counting per append.
            let w = &mut *w;
            let (tail, guard) =
                (w.tail.as_ref().expect("writable log has a tail"), w.guard.as_ref().expect("tail is mapped"));
            let (off, lsn) = (w.write_off, w.next_lsn);
            // Moves only under the writer lock, which is held: what the frame claims.
            let acked = inner.durable.load(Ordering::Relaxed);
            if wait && persists_each(inner.opts.durability, guard) && records.len() == 1 {
                // One record to persist now: store and persist in one step.
                persist_failpoint()
                    .and_then(|()| put_record_persisted(&**guard, off, lsn, acked, r, &mut w.scratch))
                    .map_err(|e| inner.poison(e))?;
                w.persisted_upto = off + n;
            } else {
                put_record(&**guard, off, lsn, acked, r, &mut w.scratch).map_err(|e| inner.poison(e))?;
            }
            w.write_off = off + n;
            w.offsets.push(off as u32);
            w.next_lsn = lsn + 1;
            tail.records.store(w.next_lsn - tail.base(), Ordering::Release);
            tail.end.store(w.write_off, Ordering::Release);
        }
        let end = w.next_lsn;
        inner.group.written(end);
        let each = persists_each(inner.opts.durability, w.guard.as_deref().expect("tail is mapped"));
        match inner.opts.durability {
            _ if !wait => {
                drop(w);
                inner.flusher.kick(&self.inner);
            }
            _ if each => {
                // From the first byte not yet persisted: this batch (a rotation inside
                // it persisted the part before it).
                let (from, to) = (w.persisted_upto, w.write_off);
                if to > from {
                    let guard = w.guard.as_ref().expect("tail is mapped");
                    persist_tail(guard, from, to - from).map_err(|e| inner.poison(e))?;
                    w.persisted_upto = to;
                }
                inner.group.own_persist(end - first);
                inner.advance_durable(&w, end);
                drop(w);
            }
            Durability::Group => {
                drop(w);
                inner.commit(end)?;
            }
            Durability::Each | Durability::None => {}
        }
        Ok(first..end)
    }

    /// Makes every appended record durable; returns one past the last durable LSN.
    pub fn sync(&self) -> Result<Lsn> {
        self.inner.check_writable()?;
        let end = self.next_lsn();
        self.inner.commit(end)?;
        Ok(self.durable_lsn())
    }

    /// Whether the tail persists by a cache-line flush and fence (kernel DAX, or
    /// forced): then [`Log::sync`] makes no system call, and waiting for it costs less
    /// than handing it to another thread.
    pub fn persists_by_cache_flush(&self) -> bool {
        let w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        w.guard.as_deref().is_some_and(TailMedia::persists_by_cache_flush)
    }

    /// Whether the next segment's file is already prepared in the background, so that
    /// a rotation now would not wait for its space to be allocated.
    pub fn next_segment_ready(&self) -> bool {
        self.inner.prep.next_ready()
    }

    /// At open, before anything is published: the tail's records are persisted by
    /// this writer. A writer killed with frames written but not yet persisted leaves
    /// them in the page cache (or the CPU caches): they read back, and the next
    /// writer would acknowledge its own records after them; a power cut would then
    /// lose them and leave a hole before acknowledged records. And a tail of format
    /// 1 is sealed (or, empty, replaced) so that every frame appended carries `acked`.
    pub(crate) fn adopt_tail(&self) -> Result<()> {
        let inner = &self.inner;
        let _s = inner.sync.lock().unwrap_or_else(|e| e.into_inner());
        let mut w = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tail) = w.tail.clone() else { return Ok(()) };
        if let Some(g) = &w.guard {
            persist_tail(g, 0, w.write_off).map_err(|e| inner.poison(e))?;
        }
        w.persisted_upto = w.write_off;
        let next = w.next_lsn;
        inner.advance_durable(&w, next);
        if tail.frames == format::Frames::V1 {
            if tail.count() > 0 {
                inner.rotate(&mut w, None, next)?;
            } else {
                // Empty: a format-2 segment takes its place (by rename: atomic).
                w.guard = None;
                let earlier = inner.segments.read().unwrap_or_else(|e| e.into_inner());
                let earlier = earlier[..earlier.len() - 1].to_vec();
                let seg = inner.store.create(
                    tail.base(),
                    inner.opts.segment_size,
                    inner.prep.take(),
                    None,
                    &earlier,
                    &inner.files,
                )?;
                *inner.segments.write().unwrap_or_else(|e| e.into_inner()).last_mut().expect("the tail") = seg.clone();
                w.open_tail(seg, next, &inner.opts)?;
            }
        }
        Ok(())
    }

    /// Seals the tail now (trim, switch to cached) and starts a new one.
    pub fn seal(&self) -> Result<()> {
        self.inner.check_writable()?;
        let _s = self.inner.sync.lock().unwrap_or_else(|e| e.into_inner());
        let mut w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        if w.tail.as_ref().is_some_and(|t| t.count() > 0) {
            let next = w.next_lsn;
            self.inner.rotate(&mut w, None, next)?;
        }
        Ok(())
    }
}

/// Whether an append persists its own records before it returns, under the writer
/// lock: always with `Durability::Each`, and with `Durability::Group` when the tail
/// persists by cache-line flush. Group commit exists to share an expensive persist (an
/// `msync` or `fdatasync`); a flush and fence of an append's own lines costs less than
/// electing a leader (measured in docs/benchmarks.md).
fn persists_each(durability: Durability, media: &TailMedia) -> bool {
    match durability {
        Durability::Each => true,
        Durability::Group => media.persists_by_cache_flush(),
        Durability::None => false,
    }
}

/// How many rotations appending `records` takes from the writer's position now (the
/// first one at once if the tail is `aged`).
fn rotations_needed(w: &Writer, records: &[&[u8]], segment_size: u64, aged: bool) -> usize {
    let (mut off, mut n) = (w.write_off, 0);
    for (i, r) in records.iter().enumerate() {
        let len = format::frame_len(r.len()) as u64;
        if off + len > segment_size || (i == 0 && aged) {
            n += 1;
            off = HEADER_LEN as u64;
        }
        off += len;
    }
    n
}

impl Log {
    /// `n` prepared segment files (the background one first), or none and the error
    /// if the disk cannot hold them all.
    #[inline]
    fn reserve_segments(&self, n: usize) -> Result<Reserved> {
        if n == 0 {
            return Ok(Reserved(Vec::new())); // most appends: no rotation
        }
        let inner = &self.inner;
        if inner.store.slot_size().is_some() {
            // Slots of the data file: the batch fails before it changed anything if
            // the ring has not room for all of its rotations.
            let live = inner.segments.read().unwrap_or_else(|e| e.into_inner());
            inner.store.room(&live, n)?;
            return Ok(Reserved(vec![None; n]));
        }
        let mut files = Vec::with_capacity(n);
        for _ in 0..n {
            let next = match inner.prep.take() {
                Some(p) => Ok(p),
                None => prepare_file(&inner.dir, inner.opts.segment_size),
            };
            match next {
                Ok(p) => files.push(Some(p)),
                Err(e) => {
                    for p in files.into_iter().flatten() {
                        let _ = fsops::remove_file(&p);
                    }
                    return Err(e);
                }
            }
        }
        // Popped from the back: the background file goes to the first rotation.
        files.reverse();
        Ok(Reserved(files))
    }
}

/// Segment files reserved for a batch (`None` for the single-file layout's slots);
/// those it did not use (it failed) are removed.
struct Reserved(Vec<Option<PathBuf>>);

impl Drop for Reserved {
    #[inline]
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        for p in self.0.drain(..).flatten() {
            let _ = fsops::remove_file(&p);
        }
    }
}

fn first_of(w: &Writer) -> Lsn {
    w.tail.as_ref().map_or(w.next_lsn, |t| t.base())
}

impl Inner {
    /// Group commit (see `group.rs`): returns once every LSN below `end` is durable.
    pub(crate) fn commit(&self, end: Lsn) -> Result<()> {
        self.group.commit(end, &self.durable, || self.check_writable(), || self.persist_written())
    }

    /// Persists every record written but not yet persisted, and publishes them;
    /// returns one past the last LSN it published.
    fn persist_written(&self) -> Result<Lsn> {
        let _persisting = self.sync.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, generation, from, to, upto) = {
            let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            (w.guard.clone(), w.generation, w.persisted_upto, w.write_off, w.next_lsn)
        };
        if let Some(guard) = &guard {
            if to > from {
                persist_tail(guard, from, to - from).map_err(|e| self.poison(e))?;
            }
        }
        // Drop the clone before taking the writer lock again: a rotation holding that
        // lock waits for every clone of the guard to go before sealing.
        drop(guard);
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if w.generation == generation {
            w.persisted_upto = w.persisted_upto.max(to);
        }
        self.advance_durable(&w, upto);
        Ok(upto)
    }

    /// Seals the tail and opens the next segment (in `prepared`, or the preparer's,
    /// or one made now). Called with the writer lock held. The seal publishes records
    /// below `publish` as durable; the rest (the first part of a batch spanning
    /// segments) become visible with their batch.
    ///
    /// Order, for crash safety: persist everything written to the tail; create the next
    /// segment (see `Store::create`); then seal the old one (`Store::seal`). A crash at any point leaves a log whose
    /// last segment is a valid tail.
    pub(crate) fn rotate(&self, w: &mut Writer, prepared: Option<PathBuf>, publish: Lsn) -> Result<()> {
        let old = w.tail.clone().expect("writable log has a tail");
        // No more populating of the old tail: the preparer's next job is the file the
        // rotation waits for.
        if let Some(TailMedia::Mapped { frontier, .. }) = w.guard.as_deref() {
            frontier.stop();
        }
        // The next segment's space first: if the disk is full, this fails before
        // anything changed, and the log is not poisoned (appends fail with the disk
        // full error until space is freed).
        let (prepared, slot) = if self.store.slot_size().is_some() {
            // A full ring fails here too, before anything changed.
            self.store.room(&self.segments.read().unwrap_or_else(|e| e.into_inner()), 1)?;
            (None, self.prep.take_slot())
        } else {
            (
                Some(match prepared.or_else(|| self.prep.take()) {
                    Some(p) => p,
                    None => prepare_file(&self.dir, self.opts.segment_size)?,
                }),
                None,
            )
        };
        let res = (|| {
            // Everything written is persisted before the mode changes: stores made
            // through a DAX mapping are not flushed by the cached vector's fdatasync.
            // `persisted_upto` only moves once a persist has finished, so this range
            // also covers one a group-commit leader may have in flight.
            if let Some(g) = &w.guard {
                persist_tail(g, w.persisted_upto, w.write_off - w.persisted_upto)?;
            }
            w.persisted_upto = w.write_off;
            self.advance_durable(w, publish.min(w.next_lsn));
            // The next tail is created and mapped while the old one is still mapped:
            // where unmapping the old tail is left to a background thread (memory file
            // systems), that unmap holds the address space's lock while it tears the
            // page tables down, and a new mapping made after it would wait for all of
            // it. A crash from here to the end of the seal leaves the old segment
            // untrimmed and maybe direct; recovery finishes the seal.
            let live = self.segments.read().unwrap_or_else(|e| e.into_inner()).clone();
            let new = self.store.create(w.next_lsn, self.opts.segment_size, prepared, slot, &live, &self.files)?;
            let guard = tail_media(&new, &self.opts)?;
            // The switch waits (bounded) for the mapping guard to be dropped by whoever
            // still holds a clone (a group-commit leader, the background populater).
            w.guard = None;
            self.store.seal(&old, w.write_off)?;
            // The writer's offsets are the sealed segment's whole index (a salvaged
            // segment with holes keeps the one recovery made); kept sparse, and
            // written whole to its index file.
            let dense = {
                let mut idx = old.index.write().unwrap_or_else(|e| e.into_inner());
                // The next tail's, sized like this one's: no regrowth on the append path.
                let next = Vec::with_capacity(w.offsets.len());
                let offsets = std::mem::replace(&mut w.offsets, next);
                if idx.holes.is_empty() && offsets.len() as u64 == old.count() {
                    *idx = super::segment::Index::dense(offsets, w.write_off);
                    idx.sparsify(old.count())
                } else {
                    None
                }
            };
            old.sealed.store(true, Ordering::Release);
            old.pin(false);
            Ok::<_, Error>((new, guard, dense))
        })();
        let (new, guard, dense) = res.map_err(|e| self.poison(e))?;
        self.segments.write().unwrap_or_else(|e| e.into_inner()).push(new.clone());
        w.tail = Some(new);
        w.guard = Some(guard);
        w.generation += 1;
        w.write_off = HEADER_LEN as u64;
        w.persisted_upto = HEADER_LEN as u64;
        w.opened = Instant::now();
        w.offsets.clear();
        self.prep.tail_opened(w.guard.as_ref(), self);
        if let Some(dense) = dense {
            let end = old.end.load(Ordering::Acquire);
            self.prep.write_index(old, dense, end);
        }
        Ok(())
    }
}
