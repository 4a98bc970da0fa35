//! One segment file: its header, its in-memory record index, and the scan that
//! rebuilds that index at recovery.

use super::format::{self, Decoded, Frames, SegmentHeader, ALIGN, HEADER_LEN};
use crate::error::{Error, Result};
use crate::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

/// Where records are stored and made durable: the seam between the log's write
/// protocol and the media. The real implementation is a dynadax [`File`] (a copy into
/// the direct window, then a cache-line flush or `msync`); tests implement it with a
/// persistent-memory crash model, in which a store not yet persisted may or may not
/// reach the media, in 8-byte pieces, in any combination.
pub trait Media {
    /// Stores `data` at `off`. Not durable until a `persist` covering it returns.
    fn store(&self, off: u64, data: &[u8]) -> Result<()>;
    /// Makes `off..off+len` durable (flush, then fence).
    fn persist(&self, off: u64, len: u64) -> Result<()>;
    /// Stores and persists in one step (the media may do it faster than a store and
    /// a persist, e.g. with non-temporal stores).
    fn store_persist(&self, off: u64, data: &[u8]) -> Result<()> {
        self.store(off, data)?;
        self.persist(off, data.len() as u64)
    }
}

impl Media for File {
    fn store(&self, off: u64, data: &[u8]) -> Result<()> {
        self.write_at(data, off)
    }
    fn persist(&self, off: u64, len: u64) -> Result<()> {
        File::persist(self, off, len)
    }
}

/// The log's writer stores through a mapping guard of the whole tail: plain stores
/// and a cache-line flush, no lock per append. The live guard is also what keeps the
/// tail's mode from being switched under the writer (the switch protocol's rule 2).
impl Media for crate::MapGuard {
    fn store(&self, off: u64, data: &[u8]) -> Result<()> {
        self.write(off as usize, data)
    }
    fn persist(&self, off: u64, len: u64) -> Result<()> {
        crate::MapGuard::persist(self, off as usize, len as usize)
    }
    #[inline]
    fn store_persist(&self, off: u64, data: &[u8]) -> Result<()> {
        self.write_persist(off as usize, data)
    }
}

/// Stores the frame of record `lsn` at `off`; returns the frame's length. The one
/// place that defines how a record reaches the media; it is durable (and may be
/// acknowledged) only after a `persist` that covers `off..off+len` returns. `acked`
/// is the writer's durable LSN now: every LSN below it is acknowledged (what lets
/// recovery tell damage from a torn write).
pub fn put_record(
    media: &impl Media,
    off: u64,
    lsn: u64,
    acked: u64,
    payload: &[u8],
    scratch: &mut Vec<u8>,
) -> Result<u64> {
    media.store(off, frame(lsn, acked, payload, scratch))?;
    Ok(scratch.len() as u64)
}

/// The frame of record `lsn`, encoded in `scratch`.
fn frame<'a>(lsn: u64, acked: u64, payload: &[u8], scratch: &'a mut Vec<u8>) -> &'a [u8] {
    scratch.resize(format::frame_len(payload.len()), 0);
    format::encode_record(lsn, acked, payload, scratch);
    scratch
}

/// [`put_record`] and the persist that covers it, in one step (`Durability::Each`):
/// the record is durable, and may be acknowledged, when this returns.
#[inline]
pub fn put_record_persisted(
    media: &impl Media,
    off: u64,
    lsn: u64,
    acked: u64,
    payload: &[u8],
    scratch: &mut Vec<u8>,
) -> Result<u64> {
    media.store_persist(off, frame(lsn, acked, payload, scratch))?;
    Ok(scratch.len() as u64)
}

/// A segment's bytes: a whole segment file (the files layout), or a slot of the
/// single-file layout's data file (`offset..offset + span`). Every offset the log
/// uses within a segment is relative to its start; errors name the file and the
/// absolute offset, so an operator finds the bytes.
pub(crate) struct SegFile {
    io: SegIo,
    /// Where the segment starts in the file.
    base: u64,
    /// Its length in the file (`u64::MAX`: to the end of the file).
    span: u64,
}

/// How a segment's file is open.
enum SegIo {
    /// Through dynadax, by the log's writer: the tail direct, sealed segments cached.
    Dax(File),
    /// Plain `pread`s, by a read-only log in another process than the writer. Such a
    /// reader does not own the file: the writer may trim it while sealing, which a
    /// `pread` survives and a mapping would not (SIGBUS).
    Plain(std::fs::File, PathBuf),
}

impl SegFile {
    /// The segment at `base..base + span` of the file at `path`.
    pub fn open_at(path: &Path, base: u64, span: u64, read_only: bool) -> Result<SegFile> {
        let io = if read_only {
            let f = std::fs::File::open(path).map_err(|e| Error::io(path, "open segment", e))?;
            SegIo::Plain(f, path.to_path_buf())
        } else {
            SegIo::Dax(File::open(path)?)
        };
        Ok(SegFile { io, base, span })
    }

    /// A writer's segment file opened through dynadax.
    pub fn of_dax(file: File, base: u64, span: u64) -> SegFile {
        SegFile { io: SegIo::Dax(file), base, span }
    }

    /// The dynadax file of a writer's segment (offsets in it are the file's, see
    /// [`SegFile::base`]). Only the writer's paths call this, and a writer opens
    /// every segment through dynadax.
    pub fn dax(&self) -> &File {
        match &self.io {
            SegIo::Dax(f) => f,
            SegIo::Plain(_, p) => unreachable!("{}: read-only segment used for writing", p.display()),
        }
    }

    /// Where the segment starts in its file.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Whether the segment is a slot of a larger file (the single-file layout).
    pub fn is_slot(&self) -> bool {
        self.span != u64::MAX
    }

    /// Reads at `off` until `buf` is full or the segment ends; the count read. An I/O
    /// error (a bad sector, poisoned persistent memory) names the file and offset.
    pub fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        let room = self.span.saturating_sub(off);
        let n = (buf.len() as u64).min(room) as usize;
        let buf = &mut buf[..n];
        // Failpoint `log-read(AT)`: reads reaching past the segment's byte AT fail.
        #[cfg(feature = "failpoints")]
        fail::fail_point!("log-read", |at: Option<String>| {
            let at: u64 = at.and_then(|a| a.parse().ok()).unwrap_or(0);
            if off + buf.len() as u64 > at {
                Err(Error::IoAt {
                    path: self.path().to_path_buf(),
                    offset: self.base + off.max(at),
                    op: "read segment",
                    source: std::io::Error::from_raw_os_error(libc::EIO),
                })
            } else {
                self.read_plain(buf, self.base + off)
            }
        });
        self.read_plain(buf, self.base + off)
    }

    /// Reads at the file's offset `off`.
    fn read_plain(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        match &self.io {
            // Until full or the end: a read cut short by an I/O error further on must
            // come back as that error at its offset, never as the end of the file
            // (a scan would take it for a torn tail).
            SegIo::Dax(f) => {
                let mut done = 0;
                while done < buf.len() {
                    match f.read_at(&mut buf[done..], off + done as u64) {
                        Ok(0) => break,
                        Ok(n) => done += n,
                        Err(e) => return Err(e.at(off + done as u64)),
                    }
                }
                Ok(done)
            }
            SegIo::Plain(f, p) => read_full(f, p, buf, off, "read segment"),
        }
    }

    pub fn path(&self) -> &Path {
        match &self.io {
            SegIo::Dax(f) => f.path(),
            SegIo::Plain(_, p) => p,
        }
    }

    /// The segment's length: its file's, or as much of its slot as the file holds.
    pub fn len(&self) -> Result<u64> {
        let file_len = match &self.io {
            SegIo::Dax(f) => f.len()?,
            SegIo::Plain(f, p) => f.metadata().map(|m| m.len()).map_err(|e| Error::io(p, "stat segment", e))?,
        };
        Ok(file_len.saturating_sub(self.base).min(self.span))
    }

    /// The status of its file (a slot's own modes are in its `ranges`).
    pub fn status(&self) -> Result<crate::Status> {
        match &self.io {
            SegIo::Dax(f) => f.status(),
            SegIo::Plain(_, p) => crate::stat(p),
        }
    }

    /// Zeroes the segment from `at` to its end, durably: a cut, so that nothing stale
    /// after the new end can ever be read as a record.
    pub fn zero_from(&self, at: u64) -> Result<()> {
        let len = self.len()?;
        if len > at {
            let f = self.dax();
            f.zero_range(self.base + at, len - at)?;
            f.persist(self.base + at, len - at)?;
        }
        Ok(())
    }

    /// A `Corrupt` error at the segment's offset `off`, naming the file and where in
    /// it the bytes are.
    pub fn corrupt(&self, off: u64, why: String) -> Error {
        corrupt(self.path(), self.base + off, why)
    }
}

/// Reads `f` at `off` until `buf` is full or the file ends; the count read. An error
/// names the file and the offset it happened at.
pub(crate) fn read_full(f: &std::fs::File, path: &Path, buf: &mut [u8], off: u64, op: &'static str) -> Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::IoAt { path: path.to_path_buf(), offset: off + done as u64, op, source: e }),
        }
    }
    Ok(done)
}

/// The segment files a log keeps open. A log of 100,000 segments must open under
/// the default `ulimit -n` of 1,024, so sealed segments are opened on demand and at
/// most `max` stay open, chosen by CLOCK (a segment read since the hand last passed
/// is spared once); the tail is pinned. A reader holding a file keeps it open until
/// it is done, whatever the cache does.
pub(crate) struct FileCache {
    read_only: bool,
    max: usize,
    /// The log's maximum record size (what a scan of a segment accepts).
    max_record: usize,
    /// What went wrong loading a sealed segment's index file on its first read (after
    /// the open): reported with the open's own repairs (`Log::recovery_report`).
    pub notes: Mutex<Vec<String>>,
    /// Segments whose file is open (dead weak references are dropped as found).
    open: Mutex<Vec<Weak<Segment>>>,
    hand: AtomicUsize,
}

impl FileCache {
    /// A cache for a log opened for writing or for reading only: a quarter of the
    /// process's descriptor limit, at least 8 and at most 1,024 files.
    pub fn new(read_only: bool, max_record: usize) -> Arc<FileCache> {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(1024);
        let max = ((limit / 4) as usize).clamp(8, 1024);
        Arc::new(FileCache {
            read_only,
            max,
            max_record,
            notes: Mutex::new(Vec::new()),
            open: Mutex::new(Vec::new()),
            hand: AtomicUsize::new(0),
        })
    }

    /// Records that `seg`'s file is open, and closes others beyond the bound.
    fn admit(&self, seg: &Arc<Segment>) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.push(Arc::downgrade(seg));
        let mut looked = 0;
        while open.len() > self.max && looked < 2 * open.len() {
            looked += 1;
            let i = self.hand.fetch_add(1, Ordering::Relaxed) % open.len();
            let Some(victim) = open[i].upgrade() else {
                open.swap_remove(i);
                continue;
            };
            if victim.pinned.load(Ordering::Acquire) || victim.used.swap(false, Ordering::AcqRel) {
                continue;
            }
            *victim.file.lock().unwrap_or_else(|e| e.into_inner()) = None;
            *victim.map.lock().unwrap_or_else(|e| e.into_inner()) = None;
            open.swap_remove(i);
        }
    }
}

/// A segment of the log.
pub(crate) struct Segment {
    /// Its file: the segment file, or the single-file layout's data file.
    pub path: PathBuf,
    /// Where it starts in that file (0 for a segment file), and how long its slot
    /// is (`u64::MAX` for a segment file).
    pub offset: u64,
    pub span: u64,
    pub header: SegmentHeader,
    /// Its record framing (format version 1 or 2).
    pub frames: Frames,
    /// The open file, when it is open (see [`FileCache`]); through [`Segment::file`].
    file: Mutex<Option<Arc<SegFile>>>,
    /// A read-only mapping of the sealed segment for zero-copy reads, when made (and
    /// not yet closed by the cache); through [`Segment::frozen`].
    map: Mutex<Option<Arc<super::view::SealedMap>>>,
    /// Moves when the file behind this segment is replaced or its records from some
    /// LSN on are dropped: a reader's mapping made before no longer shows the log. Odd
    /// while a truncation cuts the segment in place ([`Segment::begin_cut`]): a read
    /// that failed meanwhile, or across a change, raced the cut and is tried again.
    pub reset: AtomicU64,
    cache: Arc<FileCache>,
    /// Never closed by the cache (the tail).
    pinned: AtomicBool,
    /// Used since the cache's hand last passed.
    used: AtomicBool,
    /// Records written to this segment. Stored by the writer (the only appender) after
    /// each frame; readers never look at records past the durable LSN anyway.
    pub records: AtomicU64,
    /// Offsets of the first records and the offset just past them. Built whole by the
    /// recovery scan; for the tail, extended lazily by readers (decoding forward from
    /// the last known record), so appends never touch it.
    pub index: RwLock<Index>,
    /// Offset just past the last record written.
    pub end: AtomicU64,
    /// Sealed: trimmed, immutable, switched to cached.
    pub sealed: AtomicBool,
    /// Opened from its index file at recovery, not scanned.
    pub from_index: AtomicBool,
}

/// A cut of a segment in progress (see [`Segment::begin_cut`]).
pub(crate) struct CutGuard<'a>(&'a Segment);

impl Drop for CutGuard<'_> {
    fn drop(&mut self) {
        self.0.reset.fetch_add(1, Ordering::AcqRel);
    }
}

/// Reads `read` of `seg` again (a few times, yielding between) while it fails and
/// `seg` was being cut or was cut since it began: a reader racing a truncation in
/// place then sees the segment before or after it, never a half-cut one.
pub(crate) fn read_stable<T>(seg: &Segment, mut read: impl FnMut() -> Result<T>) -> Result<T> {
    let mut tries = 0;
    loop {
        let before = seg.reset.load(Ordering::Acquire);
        match read() {
            Ok(v) => return Ok(v),
            Err(e) => {
                let raced = before % 2 == 1 || seg.reset.load(Ordering::Acquire) != before;
                if !raced || tries == 100 {
                    return Err(e);
                }
                tries += 1;
                std::thread::yield_now();
            }
        }
    }
}

/// Known record offsets of a segment, and where the record after them starts.
///
/// One of three shapes, kept by these methods alone:
/// - **dense**: `marks[i]` is record `i`'s offset, for each record known. A segment
///   that grows (the tail, extended lazily by readers) or has holes (a salvage).
/// - **sparse**: a complete, hole-free sealed segment keeps the offset of every
///   [`SPARSE`]-th record only (a byte of RAM per record); a record between
///   two marks is found by stepping over the frames from the mark before it.
/// - **unloaded**: a sealed segment opened from its index file, whose offsets are
///   read (and their checksum checked) on its first read, then kept sparse.
#[derive(Debug)]
pub(crate) struct Index {
    marks: Vec<u32>,
    /// 1 (dense) or [`SPARSE`].
    stride: u32,
    /// Records indexed.
    len: u64,
    loaded: bool,
    pub next: u64,
    /// Damaged LSNs kept as holes (`RecoveryMode::SkipDamaged`), with where the
    /// damage begins.
    pub holes: Vec<(std::ops::Range<u64>, u64)>,
}

/// The index entry of a damaged record.
pub(crate) const HOLE: u32 = u32::MAX;

/// One mark per this many records in a sealed segment's index: a byte of RAM per
/// record, and a random read steps over at most 3 frame headers (in the mapping, just
/// before the record it reads). Measured with 4,000 B records (docs/benchmarks.md):
/// each step is a dependent miss, about 170 ns: 4 cost a fifth of the random read
/// rate against a dense index, 8 (half the RAM) a quarter.
pub(crate) const SPARSE: u32 = 4;

/// Where [`Index::lookup`] says a record is.
pub(crate) enum Lookup {
    At(u64),
    /// `frames` frames after the record at `from`.
    Step {
        from: u64,
        frames: u32,
    },
    Hole,
    /// The index file is not read yet.
    Unloaded,
    /// Past what is indexed.
    Unknown,
}

impl Index {
    /// Every record's offset, as a scan or the writer found them.
    pub fn dense(offsets: Vec<u32>, next: u64) -> Index {
        Index { len: offsets.len() as u64, marks: offsets, stride: 1, loaded: true, next, holes: Vec::new() }
    }

    /// `records` records ending at `next`, their offsets in the index file.
    pub fn unloaded(records: u64, next: u64) -> Index {
        Index { marks: Vec::new(), stride: SPARSE, len: records, loaded: false, next, holes: Vec::new() }
    }

    /// Records indexed.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Bytes of RAM the offsets take.
    pub fn ram(&self) -> usize {
        self.marks.capacity() * 4
    }

    /// Every record's offset, if this index is dense.
    pub fn dense_offsets(&self) -> Option<&[u32]> {
        (self.stride == 1).then_some(&self.marks[..])
    }

    pub fn lookup(&self, i: u64) -> Lookup {
        if !self.loaded {
            return Lookup::Unloaded;
        }
        if i >= self.len {
            return Lookup::Unknown;
        }
        let (m, frames) = ((i / self.stride as u64) as usize, (i % self.stride as u64) as u32);
        match self.marks[m] {
            HOLE => Lookup::Hole,
            o if frames == 0 => Lookup::At(o as u64),
            o => Lookup::Step { from: o as u64, frames },
        }
    }

    /// Indexes the next record, at `off` (dense only: a sparse index is complete).
    pub fn push(&mut self, off: u32, next: u64) {
        debug_assert_eq!(self.stride, 1, "a sparse index does not grow");
        self.marks.push(off);
        self.len += 1;
        self.next = next;
    }

    /// Holes for the records from the last indexed to the `upto`-th.
    pub fn push_holes(&mut self, upto: u64) {
        debug_assert_eq!(self.stride, 1);
        self.marks.resize(upto as usize, HOLE);
        self.len = upto;
    }

    /// Forgets the records from the `keep`-th on; the next then starts at `new_end`
    /// (`None`: where the `keep`-th did). A sparse or unloaded index forgets every
    /// record (even with nothing to cut) and is dense again, to be extended record by
    /// record from the first: the segment grows again.
    pub fn truncate(&mut self, keep: u64, new_end: Option<u64>) {
        if self.stride == 1 {
            if self.len > keep {
                self.next = new_end.unwrap_or(self.marks[keep as usize] as u64);
                self.marks.truncate(keep as usize);
                self.len = keep;
            }
        } else {
            *self = Index { holes: std::mem::take(&mut self.holes), ..Index::dense(Vec::new(), HEADER_LEN as u64) };
        }
    }

    /// Makes the dense, complete (`records` long), hole-free index of a sealed
    /// segment sparse; returns the dense offsets it had (for its index file).
    pub fn sparsify(&mut self, records: u64) -> Option<Vec<u32>> {
        if self.stride != 1 || !self.holes.is_empty() || self.len != records || records == 0 {
            return None;
        }
        let dense = std::mem::take(&mut self.marks);
        self.load(&dense);
        Some(dense)
    }

    /// Keeps every [`SPARSE`]-th of the complete offsets `dense`.
    fn load(&mut self, dense: &[u32]) {
        self.marks = dense.iter().step_by(SPARSE as usize).copied().collect();
        self.stride = SPARSE;
        self.len = dense.len() as u64;
        self.loaded = true;
    }
}

impl Segment {
    /// A segment and its index, as a scan found it, with its file open (and counted
    /// by `cache`; a tail is pinned open).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        path: PathBuf,
        offset: u64,
        span: u64,
        header: SegmentHeader,
        frames: Frames,
        file: SegFile,
        index: Index,
        sealed: bool,
        cache: &Arc<FileCache>,
    ) -> Arc<Segment> {
        let (records, end) = (index.len(), index.next);
        let seg = Arc::new(Segment {
            path,
            offset,
            span,
            header,
            frames,
            file: Mutex::new(Some(Arc::new(file))),
            map: Mutex::new(None),
            reset: AtomicU64::new(0),
            cache: cache.clone(),
            pinned: AtomicBool::new(!sealed),
            used: AtomicBool::new(true),
            records: AtomicU64::new(records),
            index: RwLock::new(index),
            end: AtomicU64::new(end),
            sealed: AtomicBool::new(sealed),
            from_index: AtomicBool::new(false),
        });
        cache.admit(&seg);
        seg
    }

    /// Its file, opened again if the cache closed it.
    pub fn file(self: &Arc<Self>) -> Result<Arc<SegFile>> {
        self.used.store(true, Ordering::Release);
        let mut slot = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = &*slot {
            return Ok(f.clone());
        }
        let f = Arc::new(SegFile::open_at(&self.path, self.offset, self.span, self.cache.read_only)?);
        *slot = Some(f.clone());
        drop(slot);
        self.cache.admit(self);
        Ok(f)
    }

    /// A read-only mapping of its records for zero-copy reads, if they are final (see
    /// `view.rs`): a segment file (not a slot of the single-file layout) whose seal
    /// has finished. `None` where a reader must copy instead.
    pub fn frozen(self: &Arc<Self>) -> Result<Option<Arc<super::view::SealedMap>>> {
        if self.span != u64::MAX || !self.sealed.load(Ordering::Acquire) {
            return Ok(None);
        }
        self.used.store(true, Ordering::Release);
        let mut slot = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = &*slot {
            return Ok(Some(m.clone()));
        }
        let end = self.end.load(Ordering::Acquire);
        let Some(m) = super::view::SealedMap::open(&self.path, end)? else { return Ok(None) };
        let m = Arc::new(m);
        *slot = Some(m.clone());
        drop(slot);
        self.cache.admit(self);
        Ok(Some(m))
    }

    /// Forgets the open file and mapping (the file was replaced, or records were
    /// dropped): the next use opens the file at its path again. Readers holding the
    /// old mapping keep it, and see by `reset` that it is stale.
    pub fn reset_file(&self) {
        *self.map.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.reset.fetch_add(2, Ordering::AcqRel); // parity kept: not a cut in progress
    }

    /// A truncation starts cutting this segment's records (in place): `reset` is odd
    /// until the returned guard drops.
    pub fn begin_cut(&self) -> CutGuard<'_> {
        self.reset.fetch_add(1, Ordering::AcqRel);
        CutGuard(self)
    }

    /// Keeps its file open for good (it is the tail) or lets the cache close it.
    pub fn pin(&self, tail: bool) {
        self.pinned.store(tail, Ordering::Release);
    }

    pub fn base(&self) -> u64 {
        self.header.base_lsn
    }

    /// Number of records written.
    pub fn count(&self) -> u64 {
        self.records.load(Ordering::Acquire)
    }

    /// One past its last record's LSN. (The scan never indexes a record whose LSN
    /// would pass `u64::MAX`, and appends stop before it, so this cannot overflow.)
    pub fn end_lsn(&self) -> u64 {
        self.base().saturating_add(self.count())
    }

    /// Offset of record `lsn`, if this segment has it; [`Error::Damaged`] for a hole.
    /// Loads an unloaded index; steps from a sparse index's mark; extends a dense one
    /// by decoding frame headers forward when a reader asks past it.
    pub fn offset_of(self: &Arc<Self>, lsn: u64) -> Result<Option<u64>> {
        self.offset_in(lsn, None)
    }

    /// [`Segment::offset_of`], stepping in `map` (this segment's mapping) if given.
    pub fn offset_in(self: &Arc<Self>, lsn: u64, map: Option<&super::view::SealedMap>) -> Result<Option<u64>> {
        let Some(i) = lsn.checked_sub(self.base()) else { return Ok(None) };
        if i >= self.count() {
            return Ok(None);
        }
        let idx = self.index.read().unwrap_or_else(|e| e.into_inner());
        match idx.lookup(i) {
            Lookup::At(o) => return Ok(Some(o)),
            Lookup::Step { from, frames } => {
                drop(idx);
                return self.step(from, frames, map).map(Some);
            }
            Lookup::Hole => return Err(self.hole(&idx, lsn)),
            Lookup::Unloaded | Lookup::Unknown => {}
        }
        drop(idx);
        let mut idx = self.index.write().unwrap_or_else(|e| e.into_inner());
        // Looked at again under the lock, with the file as it is now: a truncation may
        // have cut the records (and replaced the file) since.
        if i >= self.count() {
            return Ok(None);
        }
        if let Lookup::Unloaded = idx.lookup(i) {
            self.load_index(&mut idx)?;
        }
        let file = self.file()?;
        while idx.len() <= i {
            let at = idx.next;
            let mut head = [0u8; 4];
            if file.read_at(&mut head, at)? < 4 {
                return Err(self.corrupt(at, "record runs past the end of the file".into()));
            }
            let len = u32::from_le_bytes(head) as usize;
            if len == 0 {
                return Err(self.corrupt(at, format!("record {} expected, found the end", self.base() + idx.len())));
            }
            let off = u32::try_from(at).map_err(|_| self.corrupt(at, "offset past 4 GiB".into()))?;
            idx.push(off, at + self.frames.frame_len(len) as u64);
        }
        match idx.lookup(i) {
            Lookup::At(o) => Ok(Some(o)),
            Lookup::Step { from, frames } => {
                drop(idx);
                self.step(from, frames, map).map(Some)
            }
            Lookup::Hole => Err(self.hole(&idx, lsn)),
            Lookup::Unloaded | Lookup::Unknown => unreachable!("loaded and extended above"),
        }
    }

    /// The offset `frames` records after the one at `from`, by their lengths: read in
    /// the segment's mapping where it has one (a sealed segment file; the record to be
    /// read lies right after), else from the file a window at a time.
    fn step(self: &Arc<Self>, mut from: u64, frames: u32, map: Option<&super::view::SealedMap>) -> Result<u64> {
        let frozen = match map {
            Some(_) => None,
            None => self.frozen()?,
        };
        let map = map.or(frozen.as_deref());
        let mut buf = Vec::new();
        let mut buf_at = 0u64;
        for _ in 0..frames {
            let len = match map {
                Some(m) => m.len_at(from)?,
                None => {
                    if from < buf_at || from + 4 > buf_at + buf.len() as u64 {
                        buf.resize(16 << 10, 0);
                        let n = self.file()?.read_at(&mut buf, from)?;
                        buf.truncate(n);
                        buf_at = from;
                    }
                    let at = (from - buf_at) as usize;
                    buf.get(at..at + 4).map(|h| u32::from_le_bytes(h.try_into().expect("4 bytes")))
                }
            };
            match len {
                Some(l) if l != 0 => from += self.frames.frame_len(l as usize) as u64,
                _ => return Err(self.corrupt(from, "a record of the segment's index is not there".into())),
            }
        }
        Ok(from)
    }

    /// Reads the offsets of an unloaded index from the index file (checking its
    /// checksum), kept sparse. An index file that is gone or fails its checks now is
    /// reported, and the segment scanned (every record's CRC checked) instead; the
    /// writer then writes the index again.
    fn load_index(self: &Arc<Self>, idx: &mut Index) -> Result<()> {
        let end = idx.next;
        let why = match read_index(&self.index_file(), &self.header, self.extent(end), usize::MAX) {
            Ok((dense, e)) if e == end && dense.len() as u64 == idx.len() => {
                idx.load(&dense);
                return Ok(());
            }
            Ok((dense, _)) => format!("it lists {} records, its head said {}", dense.len(), idx.len()),
            Err(why) => why,
        };
        let scan = scan(&*self.file()?, &self.header, self.frames, self.cache.max_record)?;
        let whole = scan.gaps.is_empty() && scan.too_large.is_none() && scan.end == end;
        let ip = self.index_file();
        let mut note = format!(
            "{}: index {}: {why}: the segment was scanned on its first read",
            self.path.display(),
            ip.display()
        );
        if whole && scan.index.len() as u64 == idx.len() {
            idx.load(&scan.index);
            if !self.cache.read_only {
                match write_index(self, &scan.index, end) {
                    Ok(()) => note.push_str(", and its index written again"),
                    Err(e) => note.push_str(&format!(", and its index could not be written again: {e}")),
                }
            }
        } else {
            // Damage in the segment: what precedes it is readable, a read past it fails
            // its checks. `log verify` names it.
            let (n, at) = (scan.index.len(), scan.end);
            *idx = Index { holes: std::mem::take(&mut idx.holes), ..Index::dense(scan.index, at) };
            note.push_str(&format!(
                ", and is damaged after its first {n} records (byte {at}): reads past them fail; `dynadax log verify` names the damage"
            ));
        }
        self.cache.notes.lock().unwrap_or_else(|e| e.into_inner()).push(note);
        Ok(())
    }

    /// Its index file (see [`index_file`]).
    pub fn index_file(&self) -> PathBuf {
        index_file(&self.path, self.offset, self.span)
    }

    /// Where its records may end, sealed, with `end` its records' end now.
    pub fn extent(&self, end: u64) -> Extent {
        if self.span == u64::MAX {
            Extent::File(end)
        } else {
            Extent::Slot(self.span)
        }
    }

    /// Makes the index of this sealed segment sparse, if it is dense and complete;
    /// the dense offsets it had (for an index file).
    pub fn sparsify(&self) -> Option<Vec<u32>> {
        self.index.write().unwrap_or_else(|e| e.into_inner()).sparsify(self.count())
    }

    fn hole(&self, idx: &Index, lsn: u64) -> Error {
        let offset = idx.holes.iter().find(|(r, _)| r.contains(&lsn)).map_or(0, |h| h.1);
        Error::Damaged { lsn, path: self.path.clone(), offset: self.offset + offset }
    }

    /// Forgets records from the `keep`-th on (suffix truncation).
    pub fn truncate_index(&self, keep: u64, new_end: u64) {
        let mut idx = self.index.write().unwrap_or_else(|e| e.into_inner());
        idx.truncate(keep, Some(new_end));
        let base = self.base();
        idx.holes.retain(|(r, _)| r.start < base + keep);
        for (r, _) in idx.holes.iter_mut() {
            r.end = r.end.min(base + keep);
        }
        self.records.store(keep, Ordering::Release);
        self.end.store(new_end, Ordering::Release);
    }

    /// Reads record `lsn` at `off`, checking its frame again (media can rot).
    pub fn read_record(self: &Arc<Self>, lsn: u64, off: u64, max: usize) -> Result<Vec<u8>> {
        let fh = self.frames.header();
        let file = self.file()?;
        let mut head = [0u8; format::FRAME_HEADER];
        file.read_at(&mut head[..fh], off)?;
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        if len == 0 || len > max {
            return Err(self.corrupt(off, format!("record {lsn} has length {len}")));
        }
        let mut frame = vec![0u8; self.frames.frame_len(len)];
        let n = file.read_at(&mut frame, off)?;
        if n < frame.len() {
            return Err(self.corrupt(off, format!("record {lsn} is cut short by the end of the file")));
        }
        match self.frames.decode(&frame, 0, lsn, max) {
            Decoded::Record { len, .. } => {
                frame.truncate(fh + len);
                frame.drain(..fh);
                Ok(frame)
            }
            Decoded::End => Err(self.corrupt(off, format!("record {lsn} reads as the end of the log"))),
            Decoded::TooLarge { len } => Err(self.corrupt(off, format!("record {lsn} has length {len}"))),
            Decoded::Invalid(why) => Err(self.corrupt(off, format!("record {lsn}: {why}"))),
        }
    }

    pub fn corrupt(&self, off: u64, why: String) -> Error {
        corrupt(&self.path, self.offset + off, why)
    }
}

/// Writes the index file of the sealed segment `seg` from the offsets
/// of all its records, `dense`, which end at `end`.
/// Written to a temporary name, made durable and renamed (see [`format::SegmentIndex`]).
pub(crate) fn write_index(seg: &Segment, dense: &[u32], end: u64) -> Result<()> {
    let index = {
        // The longest payload, bounded from the frames' spacing (padding included).
        let header = seg.frames.header() as u64;
        let ends = dense.iter().skip(1).map(|&o| o as u64).chain(std::iter::once(end));
        let max_len = dense.iter().zip(ends).map(|(&o, e)| e.saturating_sub(o as u64 + header)).max().unwrap_or(0);
        format::SegmentIndex {
            base_lsn: seg.base(),
            created_ns: seg.header.created_ns,
            end,
            max_len: u32::try_from(max_len).unwrap_or(u32::MAX),
            offsets: dense.to_vec(),
        }
    };
    let path = seg.index_file();
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // Made durable before it is renamed: a renamed index is whole (a power cut before
    // the rename leaves a temporary file or no index, never a torn one).
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&index.encode())?;
        f.sync_data()
    };
    write().map_err(|e| Error::io(&tmp, "write segment index", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, "rename segment index", e))
}

/// Where a sealed segment's records may end, for checking its index: the sealed
/// file's length (exactly there: the trim is the seal's last step), or a slot's size
/// (anywhere in it: a slot is not trimmed).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Extent {
    File(u64),
    Slot(u64),
}

/// The index file of the segment at `offset` of `path` whose slot is `span` bytes
/// (`u64::MAX` for a segment file).
pub(crate) fn index_file(path: &Path, offset: u64, span: u64) -> PathBuf {
    if span == u64::MAX {
        format::index_path(path)
    } else {
        format::slot_index_path(path, offset)
    }
}

/// The index file `ip`, if it is valid and describes this incarnation of its segment
/// (`header`, records ending as `extent` allows, at most `max` bytes each): its
/// offsets and the end of its records. Why not, otherwise.
pub(crate) fn read_index(
    ip: &Path,
    header: &SegmentHeader,
    extent: Extent,
    max: usize,
) -> std::result::Result<(Vec<u32>, u64), String> {
    let bytes = match std::fs::read(ip) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("no index file".into()),
        Err(e) => return Err(format!("cannot read {}: {e}", ip.display())),
    };
    let idx = format::SegmentIndex::decode(&bytes)?;
    let head = format::IndexHead::decode(&bytes)?;
    check_head(&head, header, extent, max)?;
    if idx.offsets.windows(2).any(|w| w[0] >= w[1])
        || idx.offsets.first().is_some_and(|&o| (o as usize) < HEADER_LEN)
        || idx.offsets.last().is_some_and(|&o| o as u64 >= idx.end)
    {
        return Err("its offsets are out of order or out of the segment".into());
    }
    Ok((idx.offsets, idx.end))
}

/// [`read_index`] reading the index file's head only (what an open needs): its
/// record count and the end of its records, if the head is valid, describes this
/// incarnation of the segment and the file is as long as it says. Its offsets are
/// checked when they are read.
pub(crate) fn read_index_head(
    ip: &Path,
    header: &SegmentHeader,
    extent: Extent,
    max: usize,
) -> std::result::Result<(u64, u64), String> {
    use std::io::Read;
    let cannot = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => "no index file".to_string(),
        _ => format!("cannot read {}: {e}", ip.display()),
    };
    let mut f = std::fs::File::open(ip).map_err(cannot)?;
    let mut b = [0u8; format::INDEX_HEAD];
    f.read_exact(&mut b).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "not a segment index (too short)".to_string(),
        _ => cannot(e),
    })?;
    let head = format::IndexHead::decode(&b)?;
    check_head(&head, header, extent, max)?;
    let len = f.metadata().map_err(cannot)?.len();
    if head.file_len() != Some(len) {
        return Err(format!("{len} bytes for {} records", head.records));
    }
    Ok((head.records, head.end))
}

fn check_head(
    head: &format::IndexHead,
    header: &SegmentHeader,
    extent: Extent,
    max: usize,
) -> std::result::Result<(), String> {
    if head.base_lsn != header.base_lsn || head.created_ns != header.created_ns {
        return Err("it describes another segment of the same name".into());
    }
    match extent {
        Extent::File(len) if head.end != len => {
            return Err(format!("it says the records end at byte {}, the file is {len} bytes", head.end));
        }
        Extent::Slot(span) if head.end < HEADER_LEN as u64 || head.end > span => {
            return Err(format!("it says the records end at byte {}, outside the {span}-byte slot", head.end));
        }
        _ => {}
    }
    // `max_len` is bounded from the frames' spacing, which includes up to 7 bytes of
    // padding: a record of exactly `max` bytes may show as a few more.
    if head.max_len as usize > max.saturating_add(ALIGN - 1) {
        return Err(format!("its records may be up to {} bytes, more than the {max} asked for", head.max_len));
    }
    Ok(())
}

pub(crate) fn corrupt(path: &Path, off: u64, why: String) -> Error {
    Error::Corrupt {
        path: path.to_path_buf(),
        what: "log segment",
        why: format!("at byte {off}: {why}"),
        offset: Some(off),
    }
}

/// What a scan of a segment found: the intact records from its header on, and, if
/// something else follows them, what (see `recovery.rs` for what is done with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Offset of each record of the intact prefix, in LSN order from the base LSN.
    pub index: Vec<u32>,
    /// Offset just past the prefix's last record.
    pub end: u64,
    /// Where the prefix stopped, if not at a clean end (a zero frame header and zeros
    /// to the end of the file), and each stretch of intact records found past it.
    pub gaps: Vec<Gap>,
    /// A whole, checksummed record longer than the limit: its offset, LSN and length.
    pub too_large: Option<(u64, u64, usize)>,
}

/// Bytes that are not records, where records or a clean end were expected, and the
/// intact records a resynchronising scan found after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Offset of the first byte that is not a record.
    pub at: u64,
    /// The LSN expected there: the first one missing.
    pub lsn: u64,
    /// Why it is not a record.
    pub why: String,
    /// It starts with a zero frame header (the end of the records) and non-zero bytes
    /// come later: bytes past the end, not a frame.
    pub past_end: bool,
    /// The intact records after it, or `None` if nothing valid follows to the end of
    /// the file (only the last gap).
    pub run: Option<Run>,
}

/// Intact records found past a gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// LSN of the first.
    pub first_lsn: u64,
    /// Their offsets.
    pub offsets: Vec<u32>,
    /// Offset just past the last.
    pub end: u64,
    /// The largest `acked` they carry: every LSN below it was acknowledged durable
    /// before one of them was written (0 in format version 1).
    pub max_acked: u64,
}

impl Scan {
    /// Records found past the prefix.
    pub fn records_after(&self) -> u64 {
        self.gaps.iter().filter_map(|g| g.run.as_ref()).map(|r| r.offsets.len() as u64).sum()
    }

    /// One past the last intact record's offset.
    pub fn last_end(&self) -> u64 {
        self.gaps.iter().rev().find_map(|g| g.run.as_ref().map(|r| r.end)).unwrap_or(self.end)
    }
}

/// Where a scan reads: a segment file, or an image in memory.
pub(crate) trait Source {
    fn size(&self) -> Result<u64>;
    fn read_into(&self, buf: &mut [u8], off: u64) -> Result<usize>;
}

impl Source for SegFile {
    fn size(&self) -> Result<u64> {
        self.len()
    }
    fn read_into(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        self.read_at(buf, off)
    }
}

impl Source for [u8] {
    fn size(&self) -> Result<u64> {
        Ok(self.len() as u64)
    }
    fn read_into(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        let from = (off as usize).min(self.len());
        let n = buf.len().min(self.len() - from);
        buf[..n].copy_from_slice(&self[from..from + n]);
        Ok(n)
    }
}

/// A window over a source: the bytes the scan looks at, read a window at a time
/// (memory stays bounded whatever the segment size).
struct Window<'a, S: Source + ?Sized> {
    src: &'a S,
    len: u64,
    at: u64,
    buf: Vec<u8>,
    window: usize,
}

impl<'a, S: Source + ?Sized> Window<'a, S> {
    /// `off..off+n` (fewer bytes at the end of the file).
    fn bytes(&mut self, off: u64, n: usize) -> Result<&[u8]> {
        if off >= self.len {
            return Ok(&[]);
        }
        let n = n.min((self.len - off) as usize);
        if off < self.at || off + n as u64 > self.at + self.buf.len() as u64 {
            let want = self.window.max(n).min((self.len - off) as usize);
            self.buf.resize(want, 0);
            let got = self.src.read_into(&mut self.buf, off)?;
            self.buf.truncate(got);
            self.at = off;
        }
        let s = (off - self.at) as usize;
        Ok(&self.buf[s..(s + n).min(self.buf.len())])
    }

    /// Decodes the frame at `off`, reading as much of it as the file holds.
    fn decode(&mut self, frames: Frames, off: u64, lsn: u64, max: usize) -> Result<Decoded> {
        let fh = frames.header();
        let head = self.bytes(off, fh)?;
        let need = match head.get(..4) {
            Some(l) => {
                let fl = frames.frame_len(u32::from_le_bytes(l.try_into().expect("4 bytes")) as usize) as u64;
                if off + fl <= self.len {
                    fl as usize
                } else {
                    fh
                }
            }
            None => fh,
        };
        let buf = self.bytes(off, need)?;
        Ok(frames.decode(buf, 0, lsn, max))
    }

    /// The first non-zero byte in `from..self.len`.
    fn first_nonzero(&mut self, from: u64) -> Result<Option<u64>> {
        let mut pos = from;
        while pos < self.len {
            let chunk = self.window.min((self.len - pos) as usize);
            let b = self.bytes(pos, chunk)?;
            if b.is_empty() {
                break;
            }
            if let Some(i) = b.iter().position(|&x| x != 0) {
                return Ok(Some(pos + i as u64));
            }
            pos += b.len() as u64;
        }
        Ok(None)
    }
}

/// Reads the segment and indexes its records from the header on, a window at a time,
/// giving exactly what [`scan_bytes`] gives on the whole file.
pub(crate) fn scan(file: &SegFile, header: &SegmentHeader, frames: Frames, max: usize) -> Result<Scan> {
    scan_source(file, header.base_lsn, frames, max, 8 << 20)
}

/// The scan of a segment image (header included, format written): the one routine
/// recovery uses, so the crash-model tests recover exactly as `Log::open` does.
pub fn scan_bytes(buf: &[u8], base_lsn: u64, max: usize) -> Scan {
    scan_source(buf, base_lsn, Frames::V2, max, buf.len().max(1)).expect("reading memory cannot fail")
}

/// The scan: the intact prefix; then, only if something other than zeros follows it,
/// a resynchronising search for intact records past each bad stretch. Records start
/// on 8-byte boundaries and carry their LSN and a CRC, so a candidate at each
/// boundary is accepted only if its length is possible, its LSN lies in the range
/// that fits between the gap's start and it, and its checksum matches.
fn scan_source<S: Source + ?Sized>(src: &S, base: u64, frames: Frames, max: usize, window: usize) -> Result<Scan> {
    let len = src.size()?;
    let mut w = Window { src, len, at: 0, buf: Vec::new(), window: window.max(64) };
    let mut scan = Scan { index: Vec::new(), end: HEADER_LEN as u64, gaps: Vec::new(), too_large: None };
    // The prefix.
    let (mut off, mut lsn) = (HEADER_LEN as u64, base);
    let mut stop = chain(&mut w, frames, max, &mut off, &mut lsn, &mut scan.index, &mut 0)?;
    scan.end = off;
    loop {
        let (why, past_end) = match stop {
            Stop::End => match w.first_nonzero(off)? {
                None => return Ok(scan),
                Some(p) => (format!("non-zero bytes after the end of the records (from byte {p})"), true),
            },
            Stop::TooLarge(n) => {
                scan.too_large = Some((off, lsn, n));
                return Ok(scan);
            }
            Stop::Invalid(why) => (why, false),
        };
        let gap_at = off;
        // Resynchronise: the next intact record after `gap_at`.
        let min_frame = frames.frame_len(1) as u64;
        let mut pos = gap_at + ALIGN as u64;
        let mut found = None;
        while pos + frames.header() as u64 <= len {
            let head = w.bytes(pos, frames.header())?;
            if head.len() < frames.header() {
                break;
            }
            let n = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
            let cand = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
            let most = lsn.saturating_add((pos - gap_at) / min_frame + 1);
            if n != 0 && cand > lsn && cand <= most && cand < u64::MAX {
                match w.decode(frames, pos, cand, max)? {
                    Decoded::Record { .. } => {
                        found = Some(cand);
                        break;
                    }
                    Decoded::TooLarge { len } => {
                        scan.too_large = Some((pos, cand, len));
                        return Ok(scan);
                    }
                    _ => {}
                }
            }
            pos += ALIGN as u64;
        }
        let Some(first) = found else {
            scan.gaps.push(Gap { at: gap_at, lsn, why, past_end, run: None });
            return Ok(scan);
        };
        let mut run = Run { first_lsn: first, offsets: Vec::new(), end: pos, max_acked: 0 };
        let (mut roff, mut rlsn) = (pos, first);
        stop = chain(&mut w, frames, max, &mut roff, &mut rlsn, &mut run.offsets, &mut run.max_acked)?;
        run.end = roff;
        scan.gaps.push(Gap { at: gap_at, lsn, why, past_end, run: Some(run) });
        off = roff;
        lsn = rlsn;
    }
}

enum Stop {
    End,
    TooLarge(usize),
    Invalid(String),
}

/// Decodes consecutive records from `*off` with LSNs from `*lsn`, pushing their
/// offsets, until something else; leaves `off`/`lsn` after the last one.
fn chain<S: Source + ?Sized>(
    w: &mut Window<'_, S>,
    frames: Frames,
    max: usize,
    off: &mut u64,
    lsn: &mut u64,
    offsets: &mut Vec<u32>,
    max_acked: &mut u64,
) -> Result<Stop> {
    loop {
        if *lsn == u64::MAX {
            // No record has this LSN (appends stop before it): only the end may follow.
            return Ok(match w.decode(frames, *off, *lsn, max)? {
                Decoded::End => Stop::End,
                _ => Stop::Invalid("a record past the end of the LSN space".into()),
            });
        }
        match w.decode(frames, *off, *lsn, max)? {
            Decoded::Record { len, acked } => {
                let at = u32::try_from(*off)
                    .map_err(|_| Error::invalid(Path::new("(segment)"), "segment larger than 4 GiB"))?;
                offsets.push(at);
                *max_acked = (*max_acked).max(acked);
                *off += frames.frame_len(len) as u64;
                *lsn += 1;
            }
            Decoded::End => return Ok(Stop::End),
            Decoded::TooLarge { len } => return Ok(Stop::TooLarge(len)),
            Decoded::Invalid(why) => return Ok(Stop::Invalid(why)),
        }
    }
}

/// One past the last non-zero byte of `file` at or after `from` (`from` if none): how
/// far the bytes a cut drops reach, for the evidence kept of them.
pub(crate) fn nonzero_extent(file: &SegFile, from: u64) -> Result<u64> {
    let len = file.len()?;
    let mut end = len;
    let mut buf = vec![0u8; 1 << 20];
    while end > from {
        let start = end.saturating_sub(buf.len() as u64).max(from);
        let n = (end - start) as usize;
        let got = file.read_at(&mut buf[..n], start)?;
        if let Some(i) = buf[..got].iter().rposition(|&b| b != 0) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A segment image of `recs` from LSN 9 (each claiming the LSNs before it were
    /// acknowledged), `trailing` zero bytes after; and each frame's byte range.
    fn image(recs: &[Vec<u8>], trailing: usize) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
        let total: usize = recs.iter().map(|r| format::frame_len(r.len())).sum();
        let mut img = vec![0u8; HEADER_LEN + total + trailing];
        img[..HEADER_LEN].copy_from_slice(&SegmentHeader { base_lsn: 9, created_ns: 0, capacity: 0 }.encode());
        let mut at = HEADER_LEN;
        let mut frames = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            let n = format::frame_len(r.len());
            format::encode_record(9 + i as u64, 9 + i as u64, r, &mut img[at..at + n]);
            frames.push(at..at + n);
            at += n;
        }
        (img, frames)
    }

    /// Every record a scan returns, by LSN, with its payload.
    fn found(img: &[u8], scan: &Scan) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut push = |lsn: u64, off: u32| {
            let off = off as usize;
            let len = u32::from_le_bytes(img[off..off + 4].try_into().unwrap()) as usize;
            out.push((lsn, img[off + format::FRAME_HEADER..off + format::FRAME_HEADER + len].to_vec()));
        };
        for (i, &o) in scan.index.iter().enumerate() {
            push(9 + i as u64, o);
        }
        for g in &scan.gaps {
            if let Some(r) = &g.run {
                for (i, &o) in r.offsets.iter().enumerate() {
                    push(r.first_lsn + i as u64, o);
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The windowed scan recovery uses gives exactly what the whole-image scan gives,
        /// for any window size, on images with torn or damaged tails and trailing bytes.
        #[test]
        fn windowed_scan_equals_whole_scan(
            recs in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..30),
            damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            trailing in 0usize..200,
            window in 1usize..700,
        ) {
            let (mut img, _) = image(&recs, trailing);
            // An empty body (no records, no trailing bytes) has nothing to damage.
            let body = img.len() - HEADER_LEN;
            for (i, b) in damage.iter().filter(|_| body > 0) {
                let k = HEADER_LEN + i.index(body);
                img[k] ^= b | 1;
            }
            let whole = scan_bytes(&img, 9, 4096);
            let mut f = tempfile::NamedTempFile::new().unwrap();
            std::io::Write::write_all(&mut f, &img).unwrap();
            let sf = SegFile::open_at(f.path(), 0, u64::MAX, true).unwrap();
            let windowed = scan_source(&sf, 9, Frames::V2, 4096, window).unwrap();
            prop_assert_eq!(windowed, whole);
        }

        /// The resynchronising scan, on an image with any bytes of any frames damaged
        /// (flipped, or a stretch zeroed): it never returns a record that was not
        /// written at that LSN, and it returns every frame the damage left whole
        /// (barring a CRC collision, which these sizes never meet).
        #[test]
        fn resync_never_accepts_garbage_nor_skips_an_intact_record(
            recs in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..200), 1..40),
            flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..6),
            zeroed in prop::option::of((any::<prop::sample::Index>(), 1usize..100)),
            trailing in 0usize..300,
        ) {
            let (mut img, frames) = image(&recs, trailing);
            let body = img.len() - HEADER_LEN;
            let mut touched = vec![false; img.len()];
            for (i, b) in &flips {
                let k = HEADER_LEN + i.index(body);
                img[k] ^= b;
                touched[k] = true;
            }
            if let Some((i, n)) = zeroed {
                let k = HEADER_LEN + i.index(body);
                for j in k..(k + n).min(img.len()) {
                    if img[j] != 0 { touched[j] = true; }
                    img[j] = 0;
                }
            }
            let scan = scan_bytes(&img, 9, 4096);
            let got = found(&img, &scan);
            for (lsn, data) in &got {
                let i = (lsn - 9) as usize;
                prop_assert!(i < recs.len(), "LSN {} was never written", lsn);
                prop_assert_eq!(data, &recs[i], "LSN {} holds other bytes", lsn);
            }
            for (i, f) in frames.iter().enumerate() {
                // Damage to padding is not damage to the record.
                let covered = f.start..f.start + format::FRAME_HEADER + recs[i].len();
                if !touched[covered].iter().any(|&t| t) {
                    prop_assert!(got.iter().any(|(l, _)| *l == 9 + i as u64), "intact record {} skipped", 9 + i);
                }
            }
            prop_assert_eq!(got.len(), got.iter().map(|g| g.0).collect::<std::collections::BTreeSet<_>>().len());
        }
    }

    #[test]
    fn a_clean_image_has_no_gaps_and_stale_bytes_are_past_the_end() {
        let recs: Vec<Vec<u8>> = (0..10).map(|i| vec![i as u8 + 1; 50]).collect();
        let (mut img, frames) = image(&recs, 512);
        let s = scan_bytes(&img, 9, 4096);
        assert_eq!((s.index.len(), s.gaps.len(), s.end), (10, 0, frames[9].end as u64));
        let n = img.len();
        img[n - 3] = 7;
        let s = scan_bytes(&img, 9, 4096);
        assert_eq!(s.index.len(), 10);
        assert!(s.gaps.len() == 1 && s.gaps[0].past_end && s.gaps[0].run.is_none(), "{s:?}");
        // A flip inside record 4: records 5.. are found after the gap, claiming LSNs
        // up to 13 were acknowledged when they were written.
        let (mut img, frames) = image(&recs, 64);
        img[frames[4].start + 30] ^= 0x10;
        let s = scan_bytes(&img, 9, 4096);
        assert_eq!(s.index.len(), 4);
        let g = &s.gaps[0];
        assert_eq!((g.at, g.lsn, g.past_end), (frames[4].start as u64, 13, false));
        let r = g.run.as_ref().unwrap();
        assert_eq!((r.first_lsn, r.offsets.len(), r.max_acked), (14, 5, 18));
        assert_eq!(s.records_after(), 5);
    }
}
