//! Reading: single records, iterators, and blocking tailers. Readers never go past
//! the durable LSN, so they never see a partial or unpersisted record.

use super::{Inner, Log, Lsn};
use crate::error::{Error, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Log {
    /// The record at `lsn`, if it is durable and not purged.
    pub fn read(&self, lsn: Lsn) -> Result<Vec<u8>> {
        self.inner.read(lsn)
    }

    /// Records from `from` up to the durable end as it is at each step.
    pub fn iter(&self, from: Lsn) -> Iter {
        Iter { inner: self.inner.clone(), next: from.max(self.first_lsn()), end: None, upto: Upto::Durable }
    }

    /// Records in `from..to` (stops early at the durable end).
    pub fn range(&self, from: Lsn, to: Lsn) -> Iter {
        Iter { inner: self.inner.clone(), next: from.max(self.first_lsn()), end: Some(to), upto: Upto::Durable }
    }

    /// Records in `from..to` as this process appended them, durable or not yet:
    /// stops early at the last appended record. For the writer's own use, where a
    /// record must be readable as soon as `append` returns, before the persist that
    /// makes it durable (a Raft engine reading its log while the flush is under way).
    /// A crash may lose what was not yet durable; readers in other processes, and
    /// every other read, see durable records only. On a read-only log it is
    /// [`Log::range`].
    pub fn range_appended(&self, from: Lsn, to: Lsn) -> Iter {
        Iter { inner: self.inner.clone(), next: from.max(self.first_lsn()), end: Some(to), upto: Upto::Appended }
    }

    /// A reader that waits for new records after reaching the end.
    pub fn tail(&self, from: Lsn) -> Tailer {
        Tailer { inner: self.inner.clone(), next: from.max(self.first_lsn()) }
    }
}

impl Log {
    /// For a read-only log: picks up what the writer (in another process) has made
    /// durable since the last look: new records in the tail, new segments, purges.
    /// A no-op for the writer's own log.
    pub fn refresh(&self) -> Result<()> {
        self.inner.refresh()
    }
}

impl Inner {
    pub(crate) fn refresh(&self) -> Result<()> {
        if !self.read_only {
            return Ok(());
        }
        if self.follow_tail()? {
            return Ok(());
        }
        let mut segs = self.segments.write().unwrap_or_else(|e| e.into_inner());
        // Records the writer dropped since the last look (a truncation, a restart, a
        // recovery that cut) may be rewritten at other offsets: forget them.
        if let Some(s) = &self.shared {
            let (cut, epoch) = s.cuts_since(self.cut_epoch.load(Ordering::SeqCst));
            match cut {
                super::shared::Cut::None => {}
                super::shared::Cut::From(lsn) => forget_from(&mut segs, lsn),
                super::shared::Cut::All => segs.clear(),
            }
            self.cut_epoch.store(epoch, Ordering::SeqCst);
        }
        if segs.last().is_some_and(|s| !self.store.holds(s)) || segs.is_empty() {
            // The writer removed the tail this reader knew (a truncation into an
            // earlier segment, or a restart past the end): start over from what the
            // directory holds now, and from the purge point recorded now.
            segs.clear();
            if let Some(m) = super::meta::Meta::load(&self.dir)? {
                *self.meta.lock().unwrap_or_else(|e| e.into_inner()) = m;
            }
        }
        // Purged segments are gone from the front.
        while segs.len() > 1 && !self.store.holds(&segs[0]) {
            segs.remove(0);
        }
        if let Some(last) = segs.last() {
            extend_scan(last, self.opts.max_record)?;
        }
        // Segments the writer created since.
        let last_base = segs.last().map(|s| s.base());
        let fresh = self.store.list()?.0.into_iter().filter(|f| last_base.is_none_or(|l| f.base > l));
        for found in fresh {
            let base = found.base;
            let expect = segs.last().map_or(base, |s| s.base() + s.count());
            if base != expect {
                break; // The writer is mid-rotation or truncated: look again later.
            }
            let file = match found.open(true) {
                Ok(f) => f,
                Err(Error::NotFound { .. }) => break, // Purged or truncated meanwhile: look again later.
                Err(e) => return Err(e),
            };
            let mut head = [0u8; super::HEADER_LEN];
            let n = file.read_at(&mut head, 0)?;
            let Ok((header, frames)) = super::SegmentHeader::decode_version(&head[..n]) else { break };
            let seg = super::segment::Segment::new(
                found.path,
                found.offset,
                found.span,
                header,
                frames,
                file,
                super::segment::Index::dense(Vec::new(), super::HEADER_LEN as u64),
                false,
                &self.files,
            );
            extend_scan(&seg, self.opts.max_record)?;
            if let Some(prev) = segs.last() {
                prev.sealed.store(true, Ordering::Release);
                prev.pin(false);
                // A tailer that follows the writer for days keeps a byte per
                // record of what it saw sealed, like the writer.
                prev.sparsify();
            }
            segs.push(seg);
        }
        let valid_end = segs.last().map_or(0, |s| s.base() + s.count());
        drop(segs);
        let durable = match &self.shared {
            Some(s) if super::writer_alive(&self.dir) => valid_end.min(s.durable()),
            _ => valid_end,
        };
        self.durable.store(durable, Ordering::SeqCst);
        Ok(())
    }

    /// The common case of [`Inner::refresh`], for a tailer woken by the writer: the
    /// writer published a durable LSN past what this reader knows, dropped nothing
    /// since (no new cut), and the records up to it are in the tail this reader
    /// follows. Then only the tail's new frames are indexed: no directory listing, no
    /// look at the lock (which cost a tailer in another process about 230 µs per
    /// record). False when anything else may have happened: the full refresh runs.
    fn follow_tail(&self) -> Result<bool> {
        let Some(s) = &self.shared else { return Ok(false) };
        let published = s.durable();
        let epoch = self.cut_epoch.load(Ordering::SeqCst);
        if published <= self.durable.load(Ordering::SeqCst)
            || !matches!(s.cuts_since(epoch), (super::shared::Cut::None, e) if e == epoch)
        {
            return Ok(false);
        }
        let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
        let Some(last) = segs.last() else { return Ok(false) };
        if !self.store.holds(last) {
            return Ok(false);
        }
        extend_scan(last, self.opts.max_record)?;
        if last.base() + last.count() < published {
            return Ok(false); // a new segment, or the writer's frames not all visible yet
        }
        drop(segs);
        self.durable.fetch_max(published, Ordering::SeqCst);
        Ok(true)
    }

    /// One past the last record a reader of `upto` may see.
    pub(crate) fn visible_end(&self, upto: Upto) -> Lsn {
        let durable = self.durable.load(Ordering::SeqCst);
        match upto {
            Upto::Appended if !self.read_only => {
                // The writer stores a tail's record count after each frame is written
                // (release), so every record below this is whole.
                let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
                segs.last().map_or(durable, |s| s.base() + s.count()).max(durable)
            }
            _ => durable,
        }
    }

    fn read(&self, lsn: Lsn) -> Result<Vec<u8>> {
        self.read_below(lsn, self.visible_end(Upto::Durable), Upto::Durable)
    }

    /// Record `lsn`, if it lies below `end` (what a reader of `upto` sees now) and is
    /// not purged.
    pub(crate) fn read_below(&self, lsn: Lsn, end: Lsn, upto: Upto) -> Result<Vec<u8>> {
        let seg = self.segment_in_log(lsn, end, upto)?;
        self.unstage_for(lsn, upto)?;
        let read = super::segment::read_stable(&seg, || {
            self.offset_in(&seg, lsn, None).and_then(|off| seg.read_record(lsn, off, self.opts.max_record))
        });
        // Purged while it was read (its slot may hold another segment now): say so,
        // rather than report damage.
        read.map_err(|e| match self.vanished(lsn, upto) {
            Some(super::view::Vanished::Purged(p)) => p,
            _ => e,
        })
    }
}

impl Inner {
    /// Before the writer's own read of appended record `lsn` (`Upto::Appended`): a
    /// cached tail may still hold it staged in memory, not in its file (see
    /// `writer::Staging`), if it is not durable yet; the staged frames are written
    /// to the file first (not durably).
    pub(crate) fn unstage_for(&self, lsn: Lsn, upto: Upto) -> Result<()> {
        if upto == Upto::Appended && !self.read_only && lsn >= self.durable.load(Ordering::SeqCst) {
            let media = self.writer.lock().unwrap_or_else(|e| e.into_inner()).guard.clone();
            if let Some(m) = media {
                m.write_staged()?;
            }
        }
        Ok(())
    }
}

/// Drops what a reader indexed from `lsn` on: segments from there go (they are
/// listed again, as the writer has them now), the one holding `lsn` forgets its
/// records from it and is a tail again.
fn forget_from(segs: &mut Vec<std::sync::Arc<super::segment::Segment>>, lsn: Lsn) {
    while segs.last().is_some_and(|s| s.base() >= lsn) {
        segs.pop().expect("non-empty").reset_file(); // a cursor in it must not read on
    }
    if let Some(seg) = segs.last() {
        let keep = lsn - seg.base();
        let mut idx = seg.index.write().unwrap_or_else(|e| e.into_inner());
        idx.truncate(keep, None);
        idx.holes.retain(|(r, _)| r.start < lsn);
        let (n, next) = (idx.len(), idx.next);
        drop(idx);
        seg.records.store(n, Ordering::Release);
        seg.end.store(next, Ordering::Release);
        seg.sealed.store(false, Ordering::Release);
        seg.pin(true);
        // The writer may have replaced the file (a cut into a sealed segment): read
        // it at its path again.
        seg.reset_file();
    }
}

/// Indexes the records written to `seg` after its known end (a read-only reader
/// following a live writer). Reads a window at a time; a partial record at the end
/// (the writer is mid-copy) is left for the next look.
fn extend_scan(seg: &std::sync::Arc<super::segment::Segment>, max: usize) -> Result<()> {
    use super::format::Decoded;
    let frames = seg.frames;
    let file = seg.file()?;
    let mut idx = seg.index.write().unwrap_or_else(|e| e.into_inner());
    let mut at = idx.next;
    // Small at first: a tailer woken for a record or two reads a few KiB (a window of
    // 256 KiB cost a tailer in another process 110 µs per record on tmpfs); it grows
    // while a long stretch of new records is being indexed.
    let mut window = 16usize << 10;
    loop {
        let len = file.len()?;
        if at >= len {
            break;
        }
        let mut buf = vec![0u8; window.min((len - at) as usize)];
        let n = file.read_at(&mut buf, at)?;
        buf.truncate(n);
        let mut c = 0usize;
        let mut progressed = false;
        let stop = loop {
            let lsn = seg.base() + idx.len();
            match frames.decode(&buf, c, lsn, max) {
                Decoded::Record { len, .. } => {
                    let off = at + c as u64;
                    c += frames.frame_len(len);
                    idx.push(off as u32, at + c as u64);
                    progressed = true;
                }
                Decoded::End => break true,
                Decoded::Invalid(_) | Decoded::TooLarge { .. } => break (buf.len() as u64) >= len - at,
            }
        };
        at += c as u64;
        if stop {
            break;
        }
        if !progressed {
            window *= 2; // A record longer than the window: read more at once.
        } else {
            window = (window * 2).min(1 << 20);
        }
    }
    idx.next = at;
    seg.records.store(idx.len(), Ordering::Release);
    seg.end.store(at, Ordering::Release);
    Ok(())
}

/// Which records a reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upto {
    /// Durable ones: every reader, in any process.
    Durable,
    /// Every one appended, durable or not: the writer's own reads.
    Appended,
}

/// An iterator over records: `(lsn, payload)`; durable ones, unless it came from
/// [`Log::range_appended`].
pub struct Iter {
    inner: Arc<Inner>,
    next: Lsn,
    end: Option<Lsn>,
    upto: Upto,
}

impl Iterator for Iter {
    type Item = Result<(Lsn, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let visible = self.inner.visible_end(self.upto);
        if self.next >= visible || self.end.is_some_and(|e| self.next >= e) {
            return None;
        }
        let lsn = self.next;
        self.next += 1;
        Some(self.inner.read_below(lsn, visible, self.upto).map(|r| (lsn, r)))
    }
}

/// A reader that follows the log: [`Tailer::next_timeout`] waits (without polling)
/// for the next record to become durable.
pub struct Tailer {
    inner: Arc<Inner>,
    next: Lsn,
}

impl Tailer {
    /// The LSN this tailer returns next.
    pub fn position(&self) -> Lsn {
        self.next
    }

    /// How many durable records it has not returned yet: how far it lags the writer
    /// (for a tailer of another process's log, as of its last look, which every
    /// `next_timeout` at the end takes).
    pub fn lag(&self) -> u64 {
        self.inner.durable.load(Ordering::SeqCst).saturating_sub(self.next)
    }

    /// The next record, waiting up to `timeout` for it (`None` waits forever).
    /// `Ok(None)` if the timeout passed first.
    pub fn next_timeout(&mut self, timeout: Option<Duration>) -> Result<Option<(Lsn, Vec<u8>)>> {
        if !self.wait(timeout)? {
            return Ok(None);
        }
        self.take(|i, lsn| i.read(lsn))
    }

    /// [`Tailer::next_timeout`] lending the record where it lies, as
    /// [`Log::read_ref`] does (a record of a sealed segment is not copied; one of the
    /// tail is).
    pub fn next_ref_timeout(&mut self, timeout: Option<Duration>) -> Result<Option<super::view::RecordRef>> {
        if !self.wait(timeout)? {
            return Ok(None);
        }
        self.take(|i, lsn| i.read_ref(lsn)).map(|r| r.map(|(_, rec)| rec))
    }

    /// Reads the record at `next` with `read` and moves past it; past a hole too.
    fn take<T>(&mut self, read: impl FnOnce(&Inner, Lsn) -> Result<T>) -> Result<Option<(Lsn, T)>> {
        let lsn = self.next;
        match read(&self.inner, lsn) {
            Ok(rec) => {
                self.next += 1;
                Ok(Some((lsn, rec)))
            }
            Err(e @ Error::Damaged { .. }) => {
                // A hole of a salvaged log: reported once, then the records after it.
                self.next += 1;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Waits up to `timeout` for the record at `next` to be durable; whether it is.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let i = &self.inner;
        if i.read_only {
            // Another process writes: wait on `tail.state`'s futex word, then refresh.
            while i.durable.load(Ordering::SeqCst) <= self.next {
                let seen = i.shared.as_ref().map(|s| s.current());
                i.refresh()?;
                if i.durable.load(Ordering::SeqCst) > self.next {
                    break;
                }
                let left = match deadline {
                    Some(d) if Instant::now() >= d => return Ok(false),
                    Some(d) => (d - Instant::now()).min(Duration::from_secs(1)),
                    None => Duration::from_secs(1),
                };
                match (&i.shared, seen) {
                    (Some(s), Some(seen)) => s.wait(seen, left),
                    // No writer has run yet: nothing to wait on but time.
                    _ => std::thread::sleep(left.min(Duration::from_millis(50))),
                }
            }
        } else if i.durable.load(Ordering::SeqCst) <= self.next {
            i.waiters.fetch_add(1, Ordering::SeqCst);
            let mut g = i.wait_lock.lock().unwrap_or_else(|e| e.into_inner());
            // Checked under the lock after announcing ourselves: the appender stores
            // `durable` before it looks at `waiters`, so no wake-up is lost.
            while i.durable.load(Ordering::SeqCst) <= self.next {
                g = match deadline {
                    None => i.moved.wait(g).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            break;
                        }
                        i.moved.wait_timeout(g, d - now).unwrap_or_else(|e| e.into_inner()).0
                    }
                };
            }
            drop(g);
            i.waiters.fetch_sub(1, Ordering::SeqCst);
            if i.durable.load(Ordering::SeqCst) <= self.next {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
