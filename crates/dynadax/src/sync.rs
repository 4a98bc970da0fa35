//! The crate's locks, in one place so a model checker can replace them.
//!
//! Normal builds use `crossbeam_utils::sync::ShardedLock` for the ops lock: its read
//! side locks one of several shards picked by thread, so readers on different cores
//! never write the same cache line (the thread's "overhead on hot paths" objection),
//! and its write side locks every shard. With the test-only `shuttle` feature, the
//! same names resolve to shuttle's primitives so `tests/shuttle_model.rs` can explore
//! interleavings of readers, mappers and switchers. With the bench-only
//! `bench-no-lock` feature the ops lock is no lock at all, to measure its cost.

#[cfg(not(feature = "shuttle"))]
pub(crate) use std::sync::{Condvar, Mutex};
#[cfg(not(any(feature = "shuttle", feature = "bench-no-lock")))]
pub(crate) type RwLock<T> = crossbeam_utils::sync::ShardedLock<T>;
#[cfg(all(feature = "bench-no-lock", not(feature = "shuttle")))]
pub(crate) type RwLock<T> = crate::sys::NoLock<T>;

#[cfg(feature = "shuttle")]
pub(crate) use shuttle::sync::{Condvar, Mutex, RwLock};

/// Ignore poisoning: every critical section in this crate leaves its data consistent
/// at each step (a panic mid-operation cannot leave a half-swapped vector).
pub(crate) fn unpoison<G>(r: Result<G, std::sync::PoisonError<G>>) -> G {
    r.unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Backs off before polling a cross-process lock again: a short sleep; under shuttle
/// a yield, so the model's other threads (its other "processes") run meanwhile.
pub(crate) fn backoff(d: std::time::Duration) {
    #[cfg(feature = "shuttle")]
    {
        let _ = d;
        shuttle::thread::yield_now();
    }
    #[cfg(not(feature = "shuttle"))]
    std::thread::sleep(d);
}
