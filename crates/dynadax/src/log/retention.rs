//! Retention (dropping the oldest sealed segments), prefix purge, and crash-safe
//! suffix truncation.

use super::format::HEADER_LEN;
use super::meta::Meta;
use super::{Log, Lsn};
use crate::error::{Error, Result};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Which old segments [`Log::apply_retention`] drops. Only sealed segments are ever
/// dropped, oldest first.
#[derive(Debug, Clone, Copy, Default)]
pub struct Retention {
    /// Keep the log's total size at most this (the tail always stays).
    pub max_bytes: Option<u64>,
    /// Drop sealed segments created longer ago than this.
    pub max_age: Option<Duration>,
}

impl Log {
    /// Purges every record below `lsn` (Raft's log compaction): the new first LSN is
    /// recorded durably, then the sealed segments wholly below it are removed.
    /// Returns how many segments were removed.
    ///
    /// `lsn` may lie beyond the last record (a Raft follower that installed a
    /// snapshot newer than its log): then every record goes and the log restarts
    /// empty, its next append taking LSN `lsn`. Records between the durable end and
    /// the last one cannot be purged alone: [`Log::sync`] them first.
    pub fn purge_before(&self, lsn: Lsn) -> Result<usize> {
        let inner = &self.inner;
        inner.check_writable()?;
        if lsn > self.next_lsn() {
            if let Some(removed) = self.restart_at(lsn)? {
                return Ok(removed);
            }
        }
        let durable = self.durable_lsn();
        if lsn > durable {
            return Err(Error::invalid(
                &inner.dir,
                format!("cannot purge before {lsn}: only {durable} records are durable"),
            ));
        }
        if !self.record_purge_point(lsn)? {
            return Ok(0);
        }
        let mut segs = inner.segments.write().unwrap_or_else(|e| e.into_inner());
        let mut removed = 0;
        // A segment goes when the next one starts at or below `lsn` (so all of its
        // records are below it); the tail never goes.
        while segs.len() > 1 && segs[1].base() <= lsn {
            let s = segs.remove(0);
            inner.store.remove(&s.path, s.offset)?;
            removed += 1;
        }
        drop(segs);
        if removed > 0 {
            inner.store.synced()?;
            // A full ring has room again: ready the next slot ahead of the rotation.
            inner.prep.prepare_next(inner);
        }
        Ok(removed)
    }

    /// Records durably that every LSN below `lsn` is purged; false if it already was.
    fn record_purge_point(&self, lsn: Lsn) -> Result<bool> {
        let inner = &self.inner;
        let mut m = inner.meta.lock().unwrap_or_else(|e| e.into_inner());
        if lsn <= m.purged_before {
            return Ok(false);
        }
        let mut next = m.clone();
        next.purged_before = lsn;
        next.store(&inner.dir)?;
        *m = next;
        Ok(true)
    }

    /// Purges everything and restarts the log empty at `lsn`, past its last record:
    /// `Some(segments removed)`, or `None` if appends reached `lsn` meanwhile (an
    /// ordinary purge then). The purge point is recorded first, so a crash at any
    /// later step leaves segments wholly below it, which recovery removes before it
    /// starts the log at `lsn` (see `Log::open`).
    fn restart_at(&self, lsn: Lsn) -> Result<Option<usize>> {
        let inner = &self.inner;
        let _leader = inner.sync.lock().unwrap_or_else(|e| e.into_inner());
        let mut w = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        if lsn <= w.next_lsn {
            return Ok(None);
        }
        self.record_purge_point(lsn)?;
        let res = (|| {
            // Nothing maps what is removed, and the old tail's file is not prepared on.
            w.guard = None;
            let removed = {
                let mut segs = inner.segments.write().unwrap_or_else(|e| e.into_inner());
                let n = segs.len();
                remove_newest_first(&inner.store, &mut segs)?;
                n
            };
            inner.store.synced()?;
            let (prepared, slot) = match inner.store.slot_size() {
                Some(_) => (None, inner.prep.take_slot()),
                None => (inner.prep.take(), None),
            };
            let seg = inner.store.create(lsn, inner.opts.segment_size, prepared, slot, &[], &inner.files)?;
            inner.segments.write().unwrap_or_else(|e| e.into_inner()).push(seg.clone());
            w.open_tail(seg, lsn, &inner.opts)?;
            inner.group.written(lsn);
            if let Some(s) = &inner.shared {
                s.cut(0, lsn); // Every record readers knew is gone.
            }
            inner.advance_durable(&w, lsn);
            inner.prep.tail_opened(w.guard.as_ref(), inner);
            Ok::<_, Error>(removed)
        })();
        res.map(Some).map_err(|e| inner.poison(e))
    }
    /// Drops the oldest sealed segments as `policy` says; returns how many.
    pub fn apply_retention(&self, policy: Retention) -> Result<usize> {
        let segs = self.inner.segments.read().unwrap_or_else(|e| e.into_inner()).clone();
        let total: u64 = segs.iter().map(|s| s.end.load(Ordering::Acquire)).sum();
        let now = super::now_ns();
        let mut cut = None;
        let mut left = total;
        for (i, s) in segs.iter().enumerate().take(segs.len().saturating_sub(1)) {
            let too_big = policy.max_bytes.is_some_and(|m| left > m);
            let too_old = policy.max_age.is_some_and(|a| now.saturating_sub(s.header.created_ns) > a.as_nanos() as u64);
            if !(too_big || too_old) {
                break;
            }
            left -= s.end.load(Ordering::Acquire);
            cut = Some(segs[i + 1].base());
        }
        match cut {
            Some(lsn) => self.purge_before(lsn),
            None => Ok(0),
        }
    }

    /// Drops every record after `lsn` (Raft's conflict truncation): see
    /// [`Log::truncate_from`].
    pub fn truncate_after(&self, lsn: Lsn) -> Result<()> {
        match lsn.checked_add(1) {
            Some(from) => self.truncate_from(from),
            None => Ok(()),
        }
    }

    /// Drops record `lsn` and every later one, crash-safely: the intent is recorded in
    /// `log.meta` first, so recovery finishes it if a crash interrupts it. The bytes
    /// of dropped records are zeroed, so none of them can ever be read again, even if
    /// a new record of the same length follows. `truncate_from(first_lsn())` empties
    /// the log; the next append then takes `first_lsn()` again.
    pub fn truncate_from(&self, lsn: Lsn) -> Result<()> {
        self.truncate(lsn, false)
    }

    /// Recovery: finishes a truncation whose intent `log.meta` still holds, and
    /// clears the intent in every case, also when the log already ends at or before
    /// `lsn` (a crash after the zeroing and before the clearing): an intent left in
    /// place would cut whatever is appended after this open at the next one.
    pub(crate) fn finish_truncation(&self, lsn: Lsn) -> Result<()> {
        self.truncate(lsn.max(self.first_lsn()), true)
    }

    fn truncate(&self, lsn: Lsn, finishing: bool) -> Result<()> {
        let inner = &self.inner;
        inner.check_writable()?;
        let _leader = inner.sync.lock().unwrap_or_else(|e| e.into_inner());
        let mut w = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        let first = self.first_lsn();
        if lsn >= w.next_lsn {
            // Nothing from `lsn` on; a stale intent on disk is cleared before any
            // append can land after it.
            if finishing {
                let mut m = inner.meta.lock().unwrap_or_else(|e| e.into_inner());
                m.truncate_from = None;
                m.store(&inner.dir).map_err(|e| inner.poison(e))?;
            }
            return Ok(());
        }
        if lsn < first {
            return Err(Error::invalid(
                &inner.dir,
                format!("cannot truncate from {lsn}: the log holds {first}..{} (records below are purged)", w.next_lsn),
            ));
        }
        let keep_end = lsn;
        {
            // Kept in the in-memory record for the truncation's duration only, so a
            // metadata write made meanwhile keeps it on disk too.
            let mut m = inner.meta.lock().unwrap_or_else(|e| e.into_inner());
            let next = Meta { truncate_from: Some(lsn), ..m.clone() };
            next.store(&inner.dir)?;
            *m = next;
        }
        let res = (|| {
            // Readers stop before the cut first: one that read the durable LSN before
            // this sees the record gone when its read fails, not damage (`view.rs`).
            inner.durable.store(keep_end.min(inner.durable.load(Ordering::SeqCst)), Ordering::SeqCst);
            // Frames the tail staged (appended, not yet durable) reach the file
            // first: records before the cut among them are kept, and the tail's
            // media, which holds them, is dropped below.
            if let Some(g) = &w.guard {
                g.write_staged()?;
            }
            let mut segs = inner.segments.write().unwrap_or_else(|e| e.into_inner());
            // Whole segments after the cut go, newest first.
            while segs.len() > 1 && segs.last().is_some_and(|s| s.base() >= keep_end) {
                let s = segs.pop().expect("non-empty");
                inner.store.remove(&s.path, s.offset)?;
                s.reset_file(); // a cursor in it must not read on
            }
            inner.store.synced()?;
            let seg = segs.last().cloned().expect("a log keeps one segment");
            drop(segs);
            // Readers of its records retry a read that fails until the cut is done.
            let _cutting = seg.begin_cut();
            let kept = keep_end.saturating_sub(seg.base());
            let cut_at = match seg.offset_of(seg.base() + kept)? {
                Some(o) => o,
                None => seg.end.load(Ordering::Acquire),
            };
            // It becomes the tail again (`open_tail` below restores its capacity and
            // mode); the writer's old media goes first so nothing maps what is cut.
            w.guard = None;
            let was_sealed = seg.sealed.swap(false, Ordering::AcqRel);
            seg.pin(true);
            inner.store.remove_index(&seg)?;
            if was_sealed && inner.store.slot_size().is_none() {
                // Zero-copy readers (here and in other processes) may map the sealed
                // file, and what they were lent must not change (`view.rs`): the kept
                // part goes to a new file that replaces it.
                inner.store.replace_prefix(&seg, cut_at, inner.opts.segment_size)?;
            } else {
                seg.file()?.zero_from(cut_at)?;
                seg.reset_file();
            }
            seg.truncate_index(kept, cut_at.max(HEADER_LEN as u64));
            w.open_tail(seg.clone(), keep_end, &inner.opts)?;
            inner.group.written(keep_end);
            let durable = keep_end.min(inner.durable.load(Ordering::SeqCst));
            inner.durable.store(durable, Ordering::SeqCst);
            // Readers in other processes must not go on showing the dropped records,
            // nor read the new ones at the old ones' offsets.
            if let Some(s) = &inner.shared {
                s.cut(keep_end, durable);
            }
            inner.prep.tail_opened(w.guard.as_ref(), inner);
            // The intent is cleared before any append can follow the cut (the writer
            // lock is still held): if that fails, the log is poisoned, and the next
            // open finishes the (then empty) truncation and clears it.
            let mut m = inner.meta.lock().unwrap_or_else(|e| e.into_inner());
            m.truncate_from = None;
            m.store(&inner.dir)
        })();
        res.map_err(|e| inner.poison(e))
    }
}

/// Removes every segment in `segs`, newest first (a crash never leaves a hole in the
/// LSN chain), and empties the list.
pub(crate) fn remove_newest_first(
    store: &super::layout::Store,
    segs: &mut Vec<std::sync::Arc<super::segment::Segment>>,
) -> Result<()> {
    while let Some(s) = segs.pop() {
        store.remove(&s.path, s.offset)?;
    }
    Ok(())
}
