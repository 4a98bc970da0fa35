//! Zero-copy reads: record bytes lent out where they lie, in a read-only mapping of
//! a sealed segment (on a cached segment, the page cache), with each frame's CRC
//! checked when it is read.
//!
//! **Why a lent slice never changes.** A segment file whose seal has finished is
//! final: nothing writes it, shrinks it or switches its mode again. It is only
//! unlinked (a purge, a truncation before it) or replaced by a rename (a truncation
//! into it: `Store::replace_prefix`), and a mapping of an unlinked or replaced file
//! keeps the old inode's bytes. Every lent slice holds its mapping alive (an
//! `Arc<SealedMap>`), so it stays valid and unchanged for as long as it is borrowed,
//! whatever the writer does meanwhile. The writer's paths that could break this rule
//! are the ones that cut records: `retention.rs` (truncation) replaces a sealed file;
//! recovery, which cuts only a tail or, in a salvage an operator asked for, a damaged
//! segment, runs before this process reads.
//!
//! **Where a reader copies instead**, behind the same API: records of the tail
//! (still appended to; trimmed and switched at its seal), of a segment a reader in
//! another process cannot yet see trimmed (the writer is sealing it), and of the
//! single-file layout, whose ring reuses a purged segment's slot in place.
//!
//! **Unreadable pages.** A mapped page that cannot be read (a bad sector) is not
//! touched through the mapping: a page fault on it raises SIGBUS, and on Linux 6.1
//! `MADV_POPULATE_READ` over it does not return (the fault is retried for ever; the
//! lab's dm-error test hung on it). So every 4 MiB window of a mapping is first read
//! with `pread`, which reports the I/O error, and only then faulted in, once per
//! mapping: before any read lends from it (a cursor, [`Log::read_with`], the sparse
//! index's steps). The copying API ([`Log::read`], [`Log::iter`]) reads with `pread`
//! and turns every I/O error into an error.

use super::format::Decoded;
use super::reader::Upto;
use super::segment::Segment;
use super::{Inner, Log, Lsn};
use crate::error::{Error, Result};
use crate::sys::FrozenMap;
use std::ops::Range;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A read-only mapping of a sealed segment's records (`0..end` of its file).
pub(crate) struct SealedMap {
    map: FrozenMap,
    /// The file, for the `pread` that checks a window before it is faulted in.
    file: std::fs::File,
    path: PathBuf,
    /// One bit per [`WINDOW`]: read and faulted in (by any reader). A page the
    /// kernel reclaims later is read again when touched.
    ready: Vec<AtomicU64>,
}

/// The unit in which a mapping is checked and faulted in.
const WINDOW: u64 = 4 << 20;

impl SealedMap {
    /// Maps `0..end` of the sealed segment file at `path`, if the file is exactly
    /// `end` bytes long: its seal has finished (the trim is its last step), so the
    /// file is final. `None` if it is not (yet) that long: the caller copies.
    pub fn open(path: &Path, end: u64) -> Result<Option<SealedMap>> {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, "open sealed segment", e))?;
        let len = f.metadata().map_err(|e| Error::io(path, "stat sealed segment", e))?.len();
        if len != end || end == 0 {
            return Ok(None);
        }
        let len = usize::try_from(end).map_err(|_| Error::invalid(path, "segment larger than the address space"))?;
        // SAFETY: the file is a sealed segment whose seal has finished; by the rule in
        // this module's docs nothing writes or shrinks it while it is mapped.
        let map = unsafe { FrozenMap::new(f.as_fd(), len) }.map_err(|e| Error::io(path, "map sealed segment", e))?;
        let windows = end.div_ceil(WINDOW).div_ceil(64) as usize;
        let ready = (0..windows).map(|_| AtomicU64::new(0)).collect();
        Ok(Some(SealedMap { map, file: f, path: path.to_path_buf(), ready }))
    }

    fn bytes(&self) -> &[u8] {
        self.map.bytes()
    }

    /// The frame length field at `at`, if it lies in the mapping, made ready first.
    pub fn len_at(&self, at: u64) -> Result<Option<u32>> {
        self.populate(at, at.saturating_add(4))?;
        let Ok(at) = usize::try_from(at) else { return Ok(None) };
        Ok(self.bytes().get(at..at.saturating_add(4)).map(|h| u32::from_le_bytes(h.try_into().expect("4 bytes"))))
    }

    /// Makes sure `at..upto` (clamped to the mapping) can be touched: each window
    /// in it not yet ready is read with `pread` (an unreadable page is an error
    /// naming the file and offset) and then faulted in.
    fn populate(&self, at: u64, upto: u64) -> Result<()> {
        let len = self.bytes().len() as u64;
        let upto = upto.min(len);
        let mut w = at / WINDOW;
        while w * WINDOW < upto {
            let (word, bit) = ((w / 64) as usize, 1u64 << (w % 64));
            if self.ready[word].load(Ordering::Acquire) & bit == 0 {
                let (start, end) = (w * WINDOW, ((w + 1) * WINDOW).min(len));
                self.check(start, end)?;
                self.map.populate(start as usize, (end - start) as usize).map_err(|source| Error::IoAt {
                    path: self.path.clone(),
                    offset: start,
                    op: "read sealed segment",
                    source,
                })?;
                self.ready[word].fetch_or(bit, Ordering::AcqRel);
            }
            w += 1;
        }
        Ok(())
    }

    /// Reads `start..end` of the file with `pread` (into a scratch buffer, thrown
    /// away): the I/O error of an unreadable page, before the mapping touches it.
    fn check(&self, start: u64, end: u64) -> Result<()> {
        use std::os::unix::fs::FileExt;
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with(|b| {
            let mut b = b.borrow_mut();
            b.resize(256 << 10, 0);
            let mut at = start;
            while at < end {
                let n = (end - at).min(b.len() as u64) as usize;
                self.file.read_exact_at(&mut b[..n], at).map_err(|source| Error::IoAt {
                    path: self.path.clone(),
                    offset: at,
                    op: "read sealed segment",
                    source,
                })?;
                at += n as u64;
            }
            Ok(())
        })
    }
}

/// A record read without copying, owned: its bytes stay valid and unchanged for as
/// long as it lives (it keeps the segment's mapping alive), whatever the writer does
/// meanwhile. Dereferences to the payload. Records that could not be lent (see the
/// module docs) are copied into it.
pub struct RecordRef {
    lsn: Lsn,
    bytes: Bytes,
}

enum Bytes {
    Mapped(Arc<SealedMap>, Range<usize>),
    Copied(Vec<u8>),
}

impl RecordRef {
    /// The record's LSN.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// Whether the bytes are lent from a mapping (not copied).
    pub fn is_mapped(&self) -> bool {
        matches!(self.bytes, Bytes::Mapped(..))
    }
}

impl std::ops::Deref for RecordRef {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped(m, r) => &m.bytes()[r.clone()],
            Bytes::Copied(v) => v,
        }
    }
}

impl AsRef<[u8]> for RecordRef {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for RecordRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordRef")
            .field("lsn", &self.lsn)
            .field("len", &self.len())
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

/// A record lent by [`Cursor::next`]: valid until the cursor moves.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The record's LSN.
    pub lsn: Lsn,
    /// Its payload.
    pub bytes: &'a [u8],
}

/// A record a read missed because the writer dropped it meanwhile.
pub(crate) enum Vanished {
    /// Cut by a truncation: past the visible end now.
    Cut,
    /// Purged: the error to return.
    Purged(Error),
}

/// Where a record read lands: a span of a mapping, or the cursor's own buffer.
enum At {
    Mapped(Range<usize>),
    Copied,
}

/// What a cursor reads its current segment through.
struct SegView {
    seg: Arc<Segment>,
    /// `None`: the segment's records cannot be lent; each is copied.
    map: Option<Arc<SealedMap>>,
    /// `seg.reset` when the view was made: a different value means it is stale.
    reset: u64,
    /// Offset of the record `next` names, when known (the frames are walked in order:
    /// no index lookup per record); `None` to ask the index.
    off: Option<u64>,
    /// The segment keeps holes (a salvaged log): every offset comes from the index.
    holes: bool,
}

/// A reader that lends records without copying them: [`Cursor::next`] returns each
/// record's bytes where they lie in a sealed segment's mapping, its CRC checked.
/// Goes up to the durable end as it is at each step (or the appended end, for
/// [`Log::cursor_appended`]), like [`Log::iter`]. A cursor that is in a segment when
/// retention purges it reads on to that segment's end.
pub struct Cursor {
    inner: Arc<Inner>,
    next: Lsn,
    end: Option<Lsn>,
    upto: Upto,
    view: Option<SegView>,
    /// Copied records (the tail, the single-file layout).
    buf: Vec<u8>,
}

impl Log {
    /// A zero-copy reader from `from` to the durable end as it is at each step.
    pub fn cursor(&self, from: Lsn) -> Cursor {
        self.make_cursor(from, None, Upto::Durable)
    }

    /// A zero-copy reader of `from..to` (stops early at the durable end).
    pub fn cursor_range(&self, from: Lsn, to: Lsn) -> Cursor {
        self.make_cursor(from, Some(to), Upto::Durable)
    }

    /// [`Log::range_appended`] as a zero-copy reader: the writer's own reads of
    /// records appended, durable or not yet.
    pub fn cursor_appended(&self, from: Lsn, to: Lsn) -> Cursor {
        self.make_cursor(from, Some(to), Upto::Appended)
    }

    fn make_cursor(&self, from: Lsn, end: Option<Lsn>, upto: Upto) -> Cursor {
        Cursor { inner: self.inner.clone(), next: from.max(self.first_lsn()), end, upto, view: None, buf: Vec::new() }
    }

    /// Calls `f` with the bytes of record `lsn`, lent where they lie when they can be
    /// (see the module docs), its CRC checked; errors as [`Log::read`].
    pub fn read_with<R>(&self, lsn: Lsn, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let r = self.read_ref(lsn)?;
        Ok(f(&r))
    }

    /// Record `lsn` as an owned handle that lends its bytes without copying them
    /// (see [`RecordRef`]); errors as [`Log::read`].
    pub fn read_ref(&self, lsn: Lsn) -> Result<RecordRef> {
        self.inner.read_ref(lsn)
    }

    /// Copies consecutive records from `from` on into `buf` (cleared first), as many
    /// as its capacity holds (at least one, if any is durable), and lists each one's
    /// LSN and place in `buf` in `spans` (cleared first): a batch of reads with no
    /// allocation per record. Returns how many; 0 at the durable end.
    pub fn read_batch(&self, from: Lsn, buf: &mut Vec<u8>, spans: &mut Vec<(Lsn, Range<usize>)>) -> Result<usize> {
        buf.clear();
        spans.clear();
        let mut c = self.cursor(from);
        while let Some(r) = c.next() {
            match r {
                Ok(e) => {
                    // One that does not fit is left for the next batch (this cursor is
                    // ours: the caller's next batch starts at it).
                    if !spans.is_empty() && e.bytes.len() > buf.capacity() - buf.len() {
                        break;
                    }
                    let at = buf.len();
                    buf.extend_from_slice(e.bytes);
                    spans.push((e.lsn, at..buf.len()));
                }
                Err(e) if spans.is_empty() => return Err(e),
                // An error after some records: those are returned, the error comes
                // with the next batch, which starts at it.
                Err(_) => break,
            }
        }
        Ok(spans.len())
    }
}

impl Inner {
    /// [`Log::read_ref`].
    pub(crate) fn read_ref(&self, lsn: Lsn) -> Result<RecordRef> {
        let inner = self;
        let end = inner.visible_end(Upto::Durable);
        let seg = inner.segment_in_log(lsn, end, Upto::Durable)?;
        if let Some(map) = seg.frozen()? {
            let off = inner.offset_in(&seg, lsn, Some(&map))?;
            let max = inner.opts.max_record;
            let len = map.len_at(off)?.unwrap_or(0);
            map.populate(off, off + seg.frames.frame_len(len.min(max as u32) as usize) as u64)?;
            let r = decode_at(&seg, &map, off, lsn, max)?;
            return Ok(RecordRef { lsn, bytes: Bytes::Mapped(map, r) });
        }
        Ok(RecordRef { lsn, bytes: Bytes::Copied(inner.read_below(lsn, end, Upto::Durable)?) })
    }

    /// The segment holding `lsn`, if `lsn` is in the log and below `end`.
    pub(crate) fn segment_in_log(&self, lsn: Lsn, end: Lsn, upto: Upto) -> Result<Arc<Segment>> {
        let (mut first, seg, in_first) = {
            let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
            let i = segs.partition_point(|s| s.base() <= lsn);
            (segs.first().map_or(end, |s| s.base()), i.checked_sub(1).map(|i| segs[i].clone()), i <= 1)
        };
        // The purge point lies in the first segment (a purge removes every segment
        // wholly below it): `log.meta`'s lock only for a read there.
        if in_first {
            first = first.max(self.meta.lock().unwrap_or_else(|e| e.into_inner()).purged_before);
        }
        if lsn < first || lsn >= end {
            let which = match upto {
                Upto::Durable => "durable",
                Upto::Appended => "appended",
            };
            return Err(Error::invalid(
                &self.dir,
                format!("LSN {lsn} is not in the log ({which} records are {first}..{end})"),
            ));
        }
        seg.ok_or_else(|| Error::invalid(&self.dir, format!("LSN {lsn} has no segment")))
    }

    /// Why a read of `lsn` that failed may have failed through no damage: the writer
    /// cut it (a truncation, now below the visible end) or purged it (now below the
    /// first LSN; a purged slot of the single-file layout may already hold another
    /// segment). `None`: the record is still in the log, and the error stands.
    pub(crate) fn vanished(&self, lsn: Lsn, upto: Upto) -> Option<Vanished> {
        let end = self.visible_end(upto);
        if lsn >= end {
            return Some(Vanished::Cut);
        }
        let first = {
            let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
            segs.first().map_or(end, |s| s.base())
        }
        .max(self.meta.lock().unwrap_or_else(|e| e.into_inner()).purged_before);
        (lsn < first).then(|| {
            Vanished::Purged(Error::invalid(
                &self.dir,
                format!("LSN {lsn} is not in the log: it was purged while it was read (records are {first}..{end})"),
            ))
        })
    }

    /// Offset of record `lsn` in `seg`, from its index.
    pub(crate) fn offset_in(&self, seg: &Arc<Segment>, lsn: Lsn, map: Option<&SealedMap>) -> Result<u64> {
        seg.offset_in(lsn, map)?
            .ok_or_else(|| Error::invalid(&self.dir, format!("LSN {lsn} is past the end of {}", seg.path.display())))
    }
}

/// Checks the frame of record `lsn` at `off` in the mapping; the payload's span.
fn decode_at(seg: &Segment, map: &SealedMap, off: u64, lsn: Lsn, max: usize) -> Result<Range<usize>> {
    let at = off as usize;
    match seg.frames.decode(map.bytes(), at, lsn, max) {
        Decoded::Record { len, .. } => {
            let start = at + seg.frames.header();
            Ok(start..start + len)
        }
        Decoded::End => Err(seg.corrupt(off, format!("record {lsn} reads as the end of the log"))),
        Decoded::TooLarge { len } => Err(seg.corrupt(off, format!("record {lsn} has length {len}"))),
        Decoded::Invalid(why) => Err(seg.corrupt(off, format!("record {lsn}: {why}"))),
    }
}

impl Cursor {
    /// The LSN the cursor returns next.
    pub fn position(&self) -> Lsn {
        self.next
    }

    /// How many records it has not returned yet that a reader may see now: how far it
    /// lags the writer (for a read-only log, as of its last [`Log::refresh`]).
    pub fn lag(&self) -> u64 {
        let end = self.inner.visible_end(self.upto);
        self.end.map_or(end, |e| e.min(end)).saturating_sub(self.next)
    }

    /// The next record, lent until the cursor moves again; `None` at the end.
    /// After an error (a damaged record, a hole of a salvaged log) the cursor is past
    /// that record, as [`Log::iter`] is.
    #[allow(clippy::should_implement_trait)] // lends from itself: not an `Iterator`
    pub fn next(&mut self) -> Option<Result<Entry<'_>>> {
        Some(self.step()?.map(|(lsn, at)| match at {
            At::Mapped(r) => {
                let map = self.view.as_ref().and_then(|v| v.map.as_ref()).expect("a mapped read has a mapped view");
                Entry { lsn, bytes: &map.bytes()[r] }
            }
            At::Copied => Entry { lsn, bytes: &self.buf },
        }))
    }

    /// The next record as an owned [`RecordRef`] (which may outlive the cursor).
    pub fn next_ref(&mut self) -> Option<Result<RecordRef>> {
        Some(self.step()?.map(|(lsn, at)| match at {
            At::Mapped(r) => {
                let map = self.view.as_ref().and_then(|v| v.map.clone()).expect("a mapped read has a mapped view");
                RecordRef { lsn, bytes: Bytes::Mapped(map, r) }
            }
            At::Copied => RecordRef { lsn, bytes: Bytes::Copied(std::mem::take(&mut self.buf)) },
        }))
    }

    /// Reads the record at `next` and moves past it; `None` at the end. A read that
    /// failed because the writer dropped the record meanwhile is the end (a cut: the
    /// cursor stays on it, new records may come) or a clean "not in the log" (purged),
    /// never damage.
    fn step(&mut self) -> Option<Result<(Lsn, At)>> {
        let visible = self.inner.visible_end(self.upto);
        let lsn = self.next;
        if lsn >= visible || self.end.is_some_and(|e| lsn >= e) {
            return None;
        }
        self.next += 1;
        match self.read_at(lsn, visible) {
            Ok(at) => Some(Ok((lsn, at))),
            Err(e) => {
                self.view = None;
                match self.inner.vanished(lsn, self.upto) {
                    Some(Vanished::Cut) => {
                        self.next = lsn;
                        None
                    }
                    Some(Vanished::Purged(e)) => Some(Err(e)),
                    None => Some(Err(e)),
                }
            }
        }
    }

    fn read_at(&mut self, lsn: Lsn, visible: Lsn) -> Result<At> {
        let max = self.inner.opts.max_record;
        let stale = self.view.as_ref().is_none_or(|v| {
            lsn < v.seg.base() || lsn >= v.seg.end_lsn() || v.seg.reset.load(Ordering::Acquire) != v.reset
        });
        if stale {
            self.view = None;
            let seg = self.inner.segment_in_log(lsn, visible, self.upto)?;
            let reset = seg.reset.load(Ordering::Acquire);
            let map = seg.frozen()?;
            let holes = !seg.index.read().unwrap_or_else(|e| e.into_inner()).holes.is_empty();
            self.view = Some(SegView { seg, map, reset, off: None, holes });
        }
        let v = self.view.as_mut().expect("made above");
        let Some(map) = &v.map else {
            // Copied: the tail, a slot of the single-file layout, an unfinished seal.
            let (inner, seg) = (&self.inner, &v.seg);
            inner.unstage_for(lsn, self.upto)?;
            self.buf = super::segment::read_stable(seg, || {
                inner.offset_in(seg, lsn, None).and_then(|off| seg.read_record(lsn, off, max))
            })?;
            return Ok(At::Copied);
        };
        let off = match v.off {
            Some(o) if !v.holes => o,
            _ => self.inner.offset_in(&v.seg, lsn, Some(map))?,
        };
        // Ready before it is touched: the header, then the whole frame.
        let len = map.len_at(off)?.unwrap_or(0);
        map.populate(off, off + v.seg.frames.frame_len(len.min(max as u32) as usize) as u64)?;
        let r = decode_at(&v.seg, map, off, lsn, max)?;
        v.off = Some(off + v.seg.frames.frame_len(r.len()) as u64);
        Ok(At::Mapped(r))
    }
}
