//! How far a mapped tail is faulted in, and the sharing of that work between the
//! background preparer and the appender.
//!
//! A fresh tail's pages cost more to fault in one at a time from the append path
//! (a trap per 4 KiB page) than in bulk (`MADV_POPULATE_WRITE` over 2 MiB). The
//! preparer populates the tail chunk by chunk ahead of the appender; when the appender
//! catches up, it populates the next unclaimed chunk itself, in bulk, rather than
//! faulting page by page, so the two cores share the work whatever their speeds.
//!
//! Invariant (enforced by `TailMedia::store`): the appender stores only below
//! [`Frontier::ready`]. Populating is an optimisation, not a safety measure: the
//! segment's space was allocated before it became the tail, so a chunk whose populate
//! failed is still counted as ready and its stores fault the pages in themselves.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Bytes populated at a time: one huge page (a PMD mapping on DAX).
pub const CHUNK: u64 = 2 << 20;

/// The prepared prefix of a tail of `len` bytes, in [`CHUNK`]s.
pub(crate) struct Frontier {
    len: u64,
    /// Chunks handed out, in order: `0..claimed` (in chunk numbers). Only grows.
    claimed: AtomicU64,
    /// Per chunk: its populate has finished. Set once, by the claimant.
    done: Box<[AtomicBool]>,
    /// Every byte below is prepared: the end of the longest run of done chunks from
    /// the start. Only grows; advanced by whoever finishes a chunk.
    ready: AtomicU64,
    /// Set by [`Frontier::stop`]: no more claims.
    stopped: AtomicBool,
}

impl Frontier {
    pub fn new(len: u64) -> Frontier {
        let n = len.div_ceil(CHUNK) as usize;
        Frontier {
            len,
            claimed: AtomicU64::new(0),
            done: (0..n).map(|_| AtomicBool::new(false)).collect(),
            ready: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    /// Every byte below this is prepared.
    pub fn ready(&self) -> u64 {
        self.ready.load(Ordering::Acquire)
    }

    /// Takes the next chunk nobody has claimed, if any is left.
    pub fn claim(&self) -> Option<Range<u64>> {
        if self.stopped.load(Ordering::Acquire) {
            return None;
        }
        let n = self.done.len() as u64;
        let c = self.claimed.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| (c < n).then_some(c + 1)).ok()?;
        Some(c * CHUNK..((c + 1) * CHUNK).min(self.len))
    }

    /// Hands out no more chunks (the tail is being sealed); those claimed finish.
    /// Stores after this fault their pages in themselves.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    /// Records that the claimed chunk `r` is prepared, and moves `ready` over every
    /// done chunk that now follows it without a gap.
    pub fn finish(&self, r: Range<u64>) {
        self.done[(r.start / CHUNK) as usize].store(true, Ordering::Release);
        loop {
            let at = self.ready.load(Ordering::Acquire);
            let i = (at / CHUNK) as usize;
            if at >= self.len || !self.done[i].load(Ordering::Acquire) {
                return;
            }
            let next = ((i as u64 + 1) * CHUNK).min(self.len);
            // A lost race means the other party moved `ready`: look again from there.
            let _ = self.ready.compare_exchange(at, next, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Returns once `upto` bytes (at most the tail's length) are prepared, preparing
    /// unclaimed chunks with `prepare` meanwhile, or yielding while another party
    /// finishes the ones it claimed; at once if stopped.
    pub fn ensure(&self, upto: u64, prepare: impl Fn(Range<u64>)) {
        let upto = upto.min(self.len);
        while self.ready() < upto {
            match self.claim() {
                Some(r) => {
                    prepare(r.clone());
                    self.finish(r);
                }
                None if self.stopped.load(Ordering::Acquire) => return,
                None => std::thread::yield_now(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn ready_only_covers_a_gapless_prefix_of_finished_chunks() {
        let f = Frontier::new(3 * CHUNK + 100);
        let (a, b, c) = (f.claim().unwrap(), f.claim().unwrap(), f.claim().unwrap());
        assert_eq!((a.start, b.start, c.start), (0, CHUNK, 2 * CHUNK));
        f.finish(b);
        assert_eq!(f.ready(), 0, "chunk 1 done but chunk 0 is not");
        f.finish(a);
        assert_eq!(f.ready(), 2 * CHUNK);
        let d = f.claim().unwrap();
        assert_eq!(d, 3 * CHUNK..3 * CHUNK + 100, "the last chunk stops at the tail's end");
        assert!(f.claim().is_none());
        f.finish(d);
        assert_eq!(f.ready(), 2 * CHUNK, "chunk 2 still missing");
        f.finish(c);
        assert_eq!(f.ready(), 3 * CHUNK + 100);
    }

    #[test]
    fn a_stopped_frontier_hands_out_nothing_and_never_blocks() {
        let f = Frontier::new(4 * CHUNK);
        let a = f.claim().unwrap();
        f.stop();
        assert!(f.claim().is_none());
        // Chunk 0 is claimed but unfinished: without the stop this would wait forever.
        f.ensure(3 * CHUNK, |_| panic!("nothing may be claimed after stop"));
        f.finish(a);
        assert_eq!(f.ready(), CHUNK);
    }

    #[test]
    fn two_parties_prepare_every_chunk_exactly_once() {
        let f = Frontier::new(64 * CHUNK);
        let seen = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            s.spawn(|| f.ensure(u64::MAX, |r| seen.lock().unwrap().push(r.start)));
            // The "appender": wants the tail bit by bit, helping when it catches up.
            let mut at = 0;
            while at < 64 * CHUNK {
                at += CHUNK / 3;
                f.ensure(at, |r| seen.lock().unwrap().push(r.start));
                assert!(f.ready() >= at.min(64 * CHUNK));
            }
        });
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (0..64).map(|c| c * CHUNK).collect::<Vec<_>>());
        assert_eq!(f.ready(), 64 * CHUNK);
    }
}
