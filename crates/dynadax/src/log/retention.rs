//! Retention (dropping the oldest sealed segments), prefix purge, and crash-safe
//! suffix truncation.

use super::format::HEADER_LEN;
use super::meta::sync_dir;
use super::{Log, Lsn};
use crate::error::{Error, IoContext, Result};
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
    pub fn purge_before(&self, lsn: Lsn) -> Result<usize> {
        let inner = &self.inner;
        inner.check_writable()?;
        let durable = self.durable_lsn();
        if lsn > durable {
            return Err(Error::invalid(
                &inner.dir,
                format!("cannot purge before {lsn}: only {durable} records are durable"),
            ));
        }
        {
            let mut m = inner.meta.lock().unwrap_or_else(|e| e.into_inner());
            if lsn <= m.purged_before {
                return Ok(0);
            }
            let mut next = m.clone();
            next.purged_before = lsn;
            next.store(&inner.dir)?;
            *m = next;
        }
        let mut segs = inner.segments.write().unwrap_or_else(|e| e.into_inner());
        let mut removed = 0;
        // A segment goes when the next one starts at or below `lsn` (so all of its
        // records are below it); the tail never goes.
        while segs.len() > 1 && segs[1].base() <= lsn {
            let s = segs.remove(0);
            std::fs::remove_file(&s.path).ctx(&s.path, "remove purged segment")?;
            removed += 1;
        }
        drop(segs);
        if removed > 0 {
            sync_dir(&inner.dir)?;
        }
        Ok(removed)
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

    /// Drops every record after `lsn` (Raft's conflict truncation), crash-safely: the
    /// intent is recorded in `log.meta` first, so recovery finishes it if a crash
    /// interrupts it. The bytes of dropped records are zeroed, so none of them can
    /// ever be read again, even if a new record of the same length follows.
    pub fn truncate_after(&self, lsn: Lsn) -> Result<()> {
        let inner = &self.inner;
        inner.check_writable()?;
        let _leader = inner.sync.lock().unwrap_or_else(|e| e.into_inner());
        let mut w = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        let first = self.first_lsn();
        if lsn.checked_add(1).is_none_or(|n| n < first) || lsn >= w.next_lsn {
            if lsn >= w.next_lsn.saturating_sub(1) && lsn.checked_add(1).is_some_and(|n| n >= first) {
                return Ok(()); // Nothing after `lsn`.
            }
            return Err(Error::invalid(
                &inner.dir,
                format!("cannot truncate after {lsn}: the log holds {first}..{}", w.next_lsn),
            ));
        }
        let keep_end = lsn + 1;
        {
            let mut m = inner.meta.lock().unwrap_or_else(|e| e.into_inner());
            let mut next = m.clone();
            next.truncate_after = Some(lsn);
            next.store(&inner.dir)?;
            *m = next;
        }
        let res = (|| {
            let mut segs = inner.segments.write().unwrap_or_else(|e| e.into_inner());
            // Whole segments after the cut go, newest first.
            while segs.len() > 1 && segs.last().is_some_and(|s| s.base() >= keep_end) {
                let s = segs.pop().expect("non-empty");
                std::fs::remove_file(&s.path).ctx(&s.path, "remove truncated segment")?;
            }
            sync_dir(&inner.dir)?;
            let seg = segs.last().cloned().expect("a log keeps one segment");
            drop(segs);
            let kept = keep_end.saturating_sub(seg.base());
            let cut_at = match seg.offset_of(seg.base() + kept)? {
                Some(o) => o,
                None => seg.end.load(Ordering::Acquire),
            };
            // It becomes the tail again (`tail_media` below restores its capacity and
            // mode); the writer's old media goes first so nothing maps what is cut.
            w.guard = None;
            seg.sealed.store(false, Ordering::Release);
            let len = seg.file.len()?;
            if len > cut_at {
                seg.file.dax().zero_range(cut_at, len - cut_at)?;
                seg.file.dax().persist(cut_at, len - cut_at)?;
            }
            seg.truncate_index(kept, cut_at.max(HEADER_LEN as u64));
            w.guard = Some(super::writer::tail_media(&seg, &inner.opts)?);
            w.generation += 1;
            w.tail = Some(seg);
            w.next_lsn = keep_end;
            w.write_off = cut_at;
            w.persisted_upto = cut_at;
            let durable = keep_end.min(inner.durable.load(Ordering::SeqCst));
            inner.durable.store(durable, Ordering::SeqCst);
            // Readers in other processes must not go on showing the dropped records.
            if let Some(s) = &inner.shared {
                s.reset(durable);
            }
            inner.prep.tail_opened(w.guard.as_ref(), inner);
            Ok::<(), Error>(())
        })();
        res.map_err(|e| inner.poison(e))?;
        let mut m = inner.meta.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = m.clone();
        next.truncate_after = None;
        next.store(&inner.dir)?;
        *m = next;
        Ok(())
    }
}
