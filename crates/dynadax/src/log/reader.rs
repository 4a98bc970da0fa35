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
        Iter { inner: self.inner.clone(), next: from.max(self.first_lsn()), end: None }
    }

    /// Records in `from..to` (stops early at the durable end).
    pub fn range(&self, from: Lsn, to: Lsn) -> Iter {
        Iter { inner: self.inner.clone(), next: from.max(self.first_lsn()), end: Some(to) }
    }

    /// A reader that waits for new records after reaching the end.
    pub fn tail(&self, from: Lsn) -> Tailer {
        Tailer { inner: self.inner.clone(), next: from.max(self.first_lsn()) }
    }
}

impl Inner {
    fn read(&self, lsn: Lsn) -> Result<Vec<u8>> {
        let durable = self.durable.load(Ordering::SeqCst);
        let first = {
            let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
            segs.first().map_or(durable, |s| s.base())
        }
        .max(self.meta.lock().unwrap_or_else(|e| e.into_inner()).purged_before);
        if lsn < first || lsn >= durable {
            return Err(Error::invalid(
                &self.dir,
                format!("LSN {lsn} is not in the log (durable records are {first}..{durable})"),
            ));
        }
        let seg = self.segment_of(lsn).ok_or_else(|| Error::invalid(&self.dir, format!("LSN {lsn} has no segment")))?;
        let off = seg
            .offset_of(lsn)
            .ok_or_else(|| Error::invalid(&self.dir, format!("LSN {lsn} is past the end of {}", seg.path.display())))?;
        seg.read_record(lsn, off, self.opts.max_record)
    }
}

/// An iterator over durable records: `(lsn, payload)`.
pub struct Iter {
    inner: Arc<Inner>,
    next: Lsn,
    end: Option<Lsn>,
}

impl Iterator for Iter {
    type Item = Result<(Lsn, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let durable = self.inner.durable.load(Ordering::SeqCst);
        if self.next >= durable || self.end.is_some_and(|e| self.next >= e) {
            return None;
        }
        let lsn = self.next;
        self.next += 1;
        Some(self.inner.read(lsn).map(|r| (lsn, r)))
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

    /// The next record, waiting up to `timeout` for it (`None` waits forever).
    /// `Ok(None)` if the timeout passed first.
    pub fn next_timeout(&mut self, timeout: Option<Duration>) -> Result<Option<(Lsn, Vec<u8>)>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let i = &self.inner;
        if i.durable.load(Ordering::SeqCst) <= self.next {
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
                return Ok(None);
            }
        }
        let lsn = self.next;
        let rec = i.read(lsn)?;
        self.next += 1;
        Ok(Some((lsn, rec)))
    }
}
