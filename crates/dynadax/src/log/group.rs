//! Group commit: appenders that wait for durability share one persist (an `fdatasync`
//! or `msync`), led by one of them; and the log's flush counters.
//!
//! One appender at a time leads: it persists everything written so far, for everyone;
//! the others wait for it and return if it covered them, or elect the next leader.
//!
//! A leader that persisted at once would carry only the records written before it was
//! elected. With synchronous writers that splits them into two groups that take turns
//! (the writers woken by a flush append during the next one), so each flush carries
//! half of them (measured: 4.3 records per `fdatasync` with 8 writers). So a new
//! leader first *gathers*: it waits until as many records are pending as there were
//! writers active around the last flush (that flush's group, plus the records appended
//! while it was in flight: their writers are the ones about to come back), for at most
//! one flush's duration (and 500 us): a wait for writers that do not come costs at most
//! what a second flush would have. One writer alone is never made to wait (its own
//! record is all it expects), and a writer that goes away costs one bounded wait, after
//! which the expectation is what actually came.

use super::Lsn;
use rustix::thread::futex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The longest a leader gathers, whatever the flush costs: a slow disk's flush
/// (milliseconds) is not worth a wait of the same length.
const MAX_GATHER: Duration = Duration::from_micros(500);

/// Group commit's state: atomics only, no lock. Followers sleep on a futex word
/// rather than a condition variable, so that the end of a flush wakes them all at once
/// without each queueing on a mutex to return (measured: with 8 writers on 2 cores
/// the woken writers' return was most of the time a leader gathers).
pub(crate) struct GroupCommit {
    /// An appender is leading: gathering or persisting. Set by the one that wins the
    /// election (compare-exchange), cleared by it (see `Lead`'s drop) before it bumps
    /// `epoch`.
    leading: AtomicBool,
    /// Bumped at the end of each lead; followers sleep while it is unchanged.
    epoch: AtomicU32,
    /// Followers asleep on `epoch` (a lead that finishes with none makes no call).
    sleepers: AtomicU32,
    /// One past the last record stored in the tail (records written, durable or not).
    /// Set by the appender, under the writer lock, after each batch.
    written: AtomicU64,
    /// Records the next leader expects to be pending: the writers active around the
    /// last flush.
    expect: AtomicU64,
    /// The last flushes' duration, smoothed (nanoseconds).
    flush_ns: AtomicU64,
    stats: Counters,
}

/// The lead, given up when dropped (also if the persist panics): followers must
/// never sleep on a leader that is gone.
struct Lead<'a>(&'a GroupCommit);

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let g = self.0;
        // Order matters (all SeqCst): `leading` cleared before `epoch` moves, and
        // `sleepers` read after it moved; a follower counts itself a sleeper before it
        // reads `leading`, then sleeps only while `epoch` is the value it read first.
        g.leading.store(false, Ordering::SeqCst);
        g.epoch.fetch_add(1, Ordering::SeqCst);
        if g.sleepers.load(Ordering::SeqCst) > 0 {
            let _ = futex::wake(&g.epoch, futex::Flags::PRIVATE, i32::MAX as u32);
        }
    }
}

#[derive(Default)]
struct Counters {
    /// The appender's own persists (`Durability::Each`, or a tail that persists by
    /// cache-line flush): counted under the writer lock, so plain stores (no locked
    /// instruction on the fastest path), and not timed (a flush of a few cache lines
    /// costs less than reading the clock twice).
    own_flushes: AtomicU64,
    own_records: AtomicU64,
    flushes: AtomicU64,
    records: AtomicU64,
    flush_ns_total: AtomicU64,
    gathers: AtomicU64,
    gather_ns_total: AtomicU64,
}

/// What the log's persists of its tail did so far (since it was opened): see
/// [`Log::flush_stats`](super::Log::flush_stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Persists of the tail made for appends: `fdatasync` calls on a cached tail,
    /// `msync` calls or cache-line flush runs on a direct one.
    pub flushes: u64,
    /// Records those persists made durable. `records / flushes` is the number of
    /// appends each persist carried.
    pub records: u64,
    /// Time spent in the group-commit leaders' persists (an appender's own persists,
    /// with `Durability::Each` or on a tail that persists by cache-line flush, are
    /// counted above but not timed).
    pub flush_time: Duration,
    /// Times a group-commit leader waited for more writers before persisting.
    pub gathers: u64,
    /// The time those waits took in all.
    pub gather_time: Duration,
}

impl FlushStats {
    /// Appends per persist (0 before the first).
    pub fn records_per_flush(&self) -> f64 {
        if self.flushes == 0 {
            0.0
        } else {
            self.records as f64 / self.flushes as f64
        }
    }
}

impl GroupCommit {
    pub fn new(written: Lsn) -> GroupCommit {
        GroupCommit {
            leading: AtomicBool::new(false),
            epoch: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            written: AtomicU64::new(written),
            expect: AtomicU64::new(1),
            flush_ns: AtomicU64::new(0),
            stats: Counters::default(),
        }
    }

    /// The appender stored records below `end` (called with the writer lock held,
    /// or after a truncation moved the end).
    #[inline]
    pub fn written(&self, end: Lsn) {
        // Release, not SeqCst: this is on every append's path (a locked instruction
        // costs there); the flusher's handshake adds its own fence (`Flusher::kick`).
        self.written.store(end, Ordering::Release);
    }

    /// One past the last record stored.
    pub fn written_lsn(&self) -> Lsn {
        self.written.load(Ordering::SeqCst)
    }

    /// Returns once `durable` has reached `end`: as a follower, or as the leader,
    /// which gathers and then calls `persist` (which persists every record written
    /// so far and returns one past the last it made durable). `check` is asked before
    /// each election (a poisoned log stops here).
    pub fn commit(
        &self,
        end: Lsn,
        durable: &AtomicU64,
        check: impl Fn() -> crate::Result<()>,
        mut persist: impl FnMut() -> crate::Result<Lsn>,
    ) -> crate::Result<()> {
        loop {
            if durable.load(Ordering::SeqCst) >= end {
                return Ok(());
            }
            check()?;
            if self.leading.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                let _lead = Lead(self);
                let base = durable.load(Ordering::SeqCst);
                if base >= end {
                    return Ok(()); // covered by the lead that just ended
                }
                self.gather(base);
                let t0 = Instant::now();
                let upto = persist()?;
                self.flushed(base, upto, t0.elapsed());
                continue;
            }
            // Follow: sleep until the lead in progress ends.
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            let seen = self.epoch.load(Ordering::SeqCst);
            if self.leading.load(Ordering::SeqCst) && durable.load(Ordering::SeqCst) < end {
                // Returns at once if `epoch` moved since `seen` (the lead ended).
                let _ = futex::wait(&self.epoch, futex::Flags::PRIVATE, seen, None);
            }
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A new leader waits until the records it expects are written or its gathering
    /// time is up. It yields rather than sleeps: the writers it waits for are woken
    /// and need a core (two here), and a sleep and a wake-up for the last of them would
    /// cost more than the wait (measured: 10-16 us instead of 25-30 us with 2 writers,
    /// 46-52 instead of 60-76 with 8). It burns no more than the bounded wait, and
    /// only where no other thread wants the core.
    fn gather(&self, base: Lsn) {
        let target = base + self.expect.load(Ordering::Relaxed);
        if self.written.load(Ordering::Acquire) >= target {
            return;
        }
        let limit = Duration::from_nanos(self.flush_ns.load(Ordering::Relaxed)).min(MAX_GATHER);
        let t0 = Instant::now();
        while self.written.load(Ordering::Acquire) < target && t0.elapsed() < limit {
            std::thread::yield_now();
        }
        self.stats.gathers.fetch_add(1, Ordering::Relaxed);
        self.stats.gather_ns_total.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// A leader's persist made `base..upto` durable in `took`: counts it, and sets
    /// what the next leader expects.
    fn flushed(&self, base: Lsn, upto: Lsn, took: Duration) {
        let group = upto.saturating_sub(base);
        self.record(group, took);
        if group == 0 {
            return; // a sync with nothing to do says nothing about the writers
        }
        // Written while the flush was in flight: their writers wait for the next one.
        let arrived = self.written.load(Ordering::SeqCst).saturating_sub(upto);
        self.expect.store(group + arrived, Ordering::Relaxed);
        let ns = took.as_nanos() as u64;
        let old = self.flush_ns.load(Ordering::Relaxed);
        self.flush_ns.store(if old == 0 { ns } else { old - old / 8 + ns / 8 }, Ordering::Relaxed);
    }

    /// Counts a persist the appender made itself of `records` records. Called with the
    /// writer lock held (the only writer of these two counters).
    #[inline]
    pub fn own_persist(&self, records: u64) {
        let s = &self.stats;
        s.own_flushes.store(s.own_flushes.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        s.own_records.store(s.own_records.load(Ordering::Relaxed) + records, Ordering::Relaxed);
    }

    /// Counts a group-commit persist of `records` records that took `took`.
    fn record(&self, records: u64, took: Duration) {
        if records == 0 {
            return;
        }
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        self.stats.records.fetch_add(records, Ordering::Relaxed);
        self.stats.flush_ns_total.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn stats(&self) -> FlushStats {
        let s = &self.stats;
        FlushStats {
            flushes: s.flushes.load(Ordering::Relaxed) + s.own_flushes.load(Ordering::Relaxed),
            records: s.records.load(Ordering::Relaxed) + s.own_records.load(Ordering::Relaxed),
            flush_time: Duration::from_nanos(s.flush_ns_total.load(Ordering::Relaxed)),
            gathers: s.gathers.load(Ordering::Relaxed),
            gather_time: Duration::from_nanos(s.gather_ns_total.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the log: `durable` and a persist that makes all written durable.
    fn persist_all<'a>(g: &'a GroupCommit, durable: &'a AtomicU64) -> impl FnMut() -> crate::Result<Lsn> + 'a {
        move || {
            std::thread::sleep(Duration::from_millis(1));
            let upto = g.written.load(Ordering::SeqCst);
            durable.store(upto, Ordering::SeqCst);
            Ok(upto)
        }
    }

    #[test]
    fn the_next_leader_expects_the_last_group_and_those_who_arrived_during_its_flush() {
        let g = GroupCommit::new(0);
        g.written(8);
        g.flushed(0, 8, Duration::from_micros(100));
        assert_eq!(g.expect.load(Ordering::Relaxed), 8, "all eight in the flush, none arrived");
        // Four flushed; four more wrote while the flush was in flight.
        g.written(12);
        g.flushed(8, 8 + 4, Duration::from_micros(100));
        g.written(16);
        g.flushed(12, 12, Duration::from_micros(100)); // an empty sync changes nothing
        assert_eq!(g.expect.load(Ordering::Relaxed), 4);
        g.flushed(12, 14, Duration::from_micros(100));
        assert_eq!(g.expect.load(Ordering::Relaxed), 2 + 2, "two flushed, two written meanwhile");
        let s = g.stats();
        assert_eq!((s.flushes, s.records), (3, 8 + 4 + 2));
    }

    #[test]
    fn a_lone_writer_never_waits_and_a_leader_waits_only_so_long_for_writers_that_do_not_come() {
        let (g, durable) = (GroupCommit::new(0), AtomicU64::new(0));
        for end in 1..=20 {
            g.written(end);
            g.commit(end, &durable, || Ok(()), persist_all(&g, &durable)).unwrap();
        }
        let s = g.stats();
        assert_eq!((s.flushes, s.records, s.gathers), (20, 20, 0), "one writer: one record per flush, no wait");
        // Eight writers were active; seven went away.
        g.written(28);
        g.flushed(20, 28, Duration::from_millis(10));
        durable.store(28, Ordering::SeqCst);
        g.written(29);
        let t = Instant::now();
        g.commit(29, &durable, || Ok(()), persist_all(&g, &durable)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5), "the gathering wait is bounded");
        let s = g.stats();
        assert_eq!(s.gathers, 1);
        assert!(s.gather_time >= MAX_GATHER.min(Duration::from_millis(5)), "waited for the expected writers: {s:?}");
        assert_eq!(g.expect.load(Ordering::Relaxed), 1, "expects what came");
    }

    #[test]
    fn concurrent_writers_are_each_made_durable_and_counted_once() {
        let (g, durable) = (GroupCommit::new(0), AtomicU64::new(0));
        let next = std::sync::Mutex::new(0u64);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let end = {
                            let mut n = next.lock().unwrap();
                            *n += 1;
                            g.written(*n);
                            *n
                        };
                        g.commit(end, &durable, || Ok(()), persist_all(&g, &durable)).unwrap();
                        assert!(durable.load(Ordering::SeqCst) >= end);
                    }
                });
            }
        });
        let s = g.stats();
        assert_eq!(s.records, 400, "every record counted by exactly one flush: {s:?}");
        assert!(s.flushes <= 400);
    }
}
