//! `tail.state`: how the writer tells readers in other processes how far the log is
//! durable, where it cut records, and wakes the ones that wait, without a system call
//! per append.
//!
//! ```text
//!   0  magic    8  b"DYNXTAI2"
//!   8  durable  8  one past the last durable LSN (atomic, written by the writer)
//!  16  seq      4  bumped on every publish: the futex word readers wait on
//!  20  waiters  4  readers waiting; the writer calls FUTEX_WAKE only when non-zero
//!  24  epoch    8  bumped whenever records a reader may have seen are dropped
//!  32  cuts    64  8 slots: cuts[e % 8] = the LSN from which epoch e dropped records
//! 128  slots  512  64 waiter registrations (a token, 0 when free)
//! ```
//! The file is a shared mapping, never fsynced: it describes the running writer only
//! (a damaged one is rebuilt at the writer's open). A reader in another process shows
//! records up to `durable` while a writer holds the log's lock (so it never shows an
//! unpersisted record), and everything valid when there is no writer.
//!
//! **Cuts.** A suffix truncation, a restart, or a recovery that cut records rewrites
//! LSNs a reader may have indexed at other offsets. The writer records the cut's LSN
//! in the ring and then bumps `epoch`; a reader that sees the epoch move drops what it
//! indexed from the lowest cut since its last look (or everything, if it missed more
//! than the ring holds).
//!
//! **Waiters heal themselves.** A reader registers in a slot only while it holds the
//! open-file-description lock of that slot's byte (offset `LOCK_BASE + slot`), which
//! the kernel drops when the reader dies, `kill -9` included. When a wake finds no one
//! to wake while `waiters` says some wait, the writer clears every registered slot
//! whose lock is free (its reader is gone) and corrects the count, so a killed reader
//! costs at most a few futex calls, not one per append for ever.

use crate::error::{IoContext, Result};
use crate::sys::{self, MapKind, Mapping, RangeLock};
use rustix::thread::futex;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// File name of the shared state.
pub const STATE_FILE: &str = "tail.state";
const MAGIC: &[u8; 8] = b"DYNXTAI2";
const LEN: usize = 4096;
const CUTS_AT: usize = 32;
const CUTS: u64 = 8;
const SLOTS_AT: usize = 128;
const SLOTS: usize = 64;
/// Byte offset of slot 0's lock (past the file's end: a lock needs no bytes there).
const LOCK_BASE: u64 = 1 << 20;

pub(crate) struct SharedState {
    map: Mapping,
    /// The open file: its OFD locks are this process's waiter registrations.
    file: std::fs::File,
}

/// What is wrong with `dir`'s `tail.state`, if it exists and is damaged (short, or
/// another magic). It only describes the running writer, so the writer rebuilds it.
pub(crate) fn damage(dir: &Path) -> Option<String> {
    let path = dir.join(STATE_FILE);
    let bytes = std::fs::read(&path).ok()?;
    if bytes.len() < LEN {
        return Some(format!("{} bytes, expected {LEN}", bytes.len()));
    }
    (&bytes[..8] != MAGIC).then(|| "bad magic".to_string())
}

/// Where a reader is in the writer's cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Nothing it may have seen was dropped.
    None,
    /// Records from this LSN on were dropped (and maybe rewritten).
    From(u64),
    /// More cuts than the ring holds: forget everything.
    All,
}

impl SharedState {
    /// Opens (the writer creates) the state file and maps it.
    pub fn open(dir: &Path, create: bool) -> Result<Option<SharedState>> {
        let path = dir.join(STATE_FILE);
        let f = match std::fs::OpenOptions::new().read(true).write(true).create(create).truncate(false).open(&path) {
            Ok(f) => f,
            Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(crate::Error::io(&path, "open tail state", e)),
        };
        if f.metadata().ctx(&path, "stat tail state")?.len() < LEN as u64 {
            if !create {
                return Ok(None);
            }
            f.set_len(LEN as u64).ctx(&path, "size tail state")?;
        }
        // SAFETY: the file is never shrunk by dynadax; it is LEN bytes and only
        // touched through atomics and the magic.
        let map = unsafe { Mapping::new(f.as_fd(), 0, LEN, true, MapKind::Shared) }.ctx(&path, "map tail state")?;
        let mut m = [0u8; 8];
        map.read(0, &mut m).ctx(&path, "read tail state")?;
        if &m != MAGIC {
            if !create {
                return Ok(None);
            }
            // Damaged or of another layout: rebuilt from nothing (the writer resets it).
            map.write(8, &[0u8; LEN - 8]).ctx(&path, "write tail state")?;
            map.write(0, MAGIC).ctx(&path, "write tail state")?;
        }
        Ok(Some(SharedState { map, file: f }))
    }

    #[inline]
    fn word(&self, at: usize) -> &AtomicU64 {
        self.map.atomic_u64(at).expect("in bounds, aligned")
    }
    #[inline]
    fn durable_word(&self) -> &AtomicU64 {
        self.word(8)
    }
    #[inline]
    fn seq(&self) -> &AtomicU32 {
        self.map.atomic_u32(16).expect("in bounds, aligned")
    }
    #[inline]
    fn waiters(&self) -> &AtomicU32 {
        self.map.atomic_u32(20).expect("in bounds, aligned")
    }
    fn epoch(&self) -> &AtomicU64 {
        self.word(24)
    }
    fn slot(&self, i: usize) -> &AtomicU64 {
        self.word(SLOTS_AT + 8 * i)
    }

    /// Writer, under its lock (the only writer of these words): `durable` moved. Two
    /// plain stores; the caller then fences and calls [`SharedState::wake_waiters`].
    #[inline]
    pub fn publish(&self, durable: u64) {
        self.durable_word().store(durable, Ordering::Release);
        let seq = self.seq();
        seq.store(seq.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
    }

    /// Writer, after [`SharedState::publish`] and a sequentially consistent fence: a
    /// `FUTEX_WAKE` only if some reader waits (readers register before they look at
    /// `seq`, so either they see the new value or this sees them). A wake that finds
    /// no one while the count says some wait heals the registrations.
    #[inline]
    pub fn wake_waiters(&self) {
        let n = self.waiters().load(Ordering::Relaxed);
        if n > 0 {
            let woken = futex::wake(self.seq(), futex::Flags::empty(), i32::MAX as u32).unwrap_or(1);
            if woken == 0 {
                self.heal();
            }
        }
    }

    /// Clears the registrations of readers that are gone (their slot's lock is free)
    /// and, if no registration is left, a count that says otherwise.
    fn heal(&self) {
        let mut live = 0;
        for i in 0..SLOTS {
            let token = self.slot(i).load(Ordering::SeqCst);
            if token == 0 {
                continue;
            }
            match sys::ofd_conflict(self.file.as_fd(), RangeLock::Exclusive, LOCK_BASE + i as u64, 1) {
                Ok(false) => {
                    // The registering reader is gone: its claim goes, once.
                    if self.slot(i).compare_exchange(token, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                        let _ = self.waiters().fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| w.checked_sub(1));
                    }
                }
                _ => live += 1,
            }
        }
        if live == 0 {
            // Nothing registered: a count left by anything else is wrong. A reader
            // registers its slot before it counts itself, so one counted in `now`
            // shows in the second look at the slots, and is not cleared.
            let now = self.waiters().load(Ordering::SeqCst);
            if now > 0 && (0..SLOTS).all(|i| self.slot(i).load(Ordering::SeqCst) == 0) {
                let _ = self.waiters().compare_exchange(now, 0, Ordering::SeqCst, Ordering::SeqCst);
            }
        }
    }

    /// Writer at open: the durable point after recovery (may move backwards). Every
    /// record at or after `cut` a reader may have seen is dropped (the new writer's
    /// recovery may have cut a torn tail), and stale registrations are cleared.
    pub fn reset(&self, durable: u64, cut: u64) {
        self.record_cut(cut);
        self.durable_word().store(durable, Ordering::SeqCst);
        self.seq().fetch_add(1, Ordering::SeqCst);
        self.heal();
        if self.waiters().load(Ordering::SeqCst) > 0 {
            let _ = futex::wake(self.seq(), futex::Flags::empty(), i32::MAX as u32);
        }
    }

    /// Writer: records from `cut` on were dropped (a truncation, a restart); then the
    /// durable point moves back to `durable`, and waiters wake to look.
    pub fn cut(&self, cut: u64, durable: u64) {
        self.record_cut(cut);
        self.durable_word().store(durable, Ordering::SeqCst);
        self.seq().fetch_add(1, Ordering::SeqCst);
        if self.waiters().load(Ordering::SeqCst) > 0 {
            let _ = futex::wake(self.seq(), futex::Flags::empty(), i32::MAX as u32);
        }
    }

    fn record_cut(&self, cut: u64) {
        let e = self.epoch().load(Ordering::SeqCst) + 1;
        self.word(CUTS_AT + 8 * (e % CUTS) as usize).store(cut, Ordering::SeqCst);
        self.epoch().store(e, Ordering::SeqCst);
    }

    /// The current cut epoch.
    pub fn epoch_now(&self) -> u64 {
        self.epoch().load(Ordering::SeqCst)
    }

    /// Reader: what was dropped since epoch `seen`, and the epoch it covers.
    pub fn cuts_since(&self, seen: u64) -> (Cut, u64) {
        let e1 = self.epoch().load(Ordering::SeqCst);
        if e1 == seen {
            return (Cut::None, e1);
        }
        if e1 < seen || e1 - seen > CUTS {
            return (Cut::All, e1);
        }
        let low = (seen + 1..=e1).map(|e| self.word(CUTS_AT + 8 * (e % CUTS) as usize).load(Ordering::SeqCst)).min();
        // A cut recorded meanwhile may have overwritten a slot read above.
        let e2 = self.epoch().load(Ordering::SeqCst);
        if e2 - seen >= CUTS {
            return (Cut::All, e2);
        }
        (low.map_or(Cut::None, Cut::From), e1)
    }

    pub fn durable(&self) -> u64 {
        self.durable_word().load(Ordering::SeqCst)
    }

    /// The current sequence number, to wait on.
    pub fn current(&self) -> u32 {
        self.seq().load(Ordering::SeqCst)
    }

    /// Waits until the sequence moves past `seen` or `timeout` passes. Registered in
    /// a slot whose lock this open file holds meanwhile (see the module's comment);
    /// with every slot taken, it only sleeps a little, unregistered.
    pub fn wait(&self, seen: u32, timeout: Duration) {
        let fd = self.file.as_fd();
        let Some(i) = (0..SLOTS)
            .find(|&i| sys::ofd_lock(fd, Some(RangeLock::Exclusive), LOCK_BASE + i as u64, 1).unwrap_or(false))
        else {
            std::thread::sleep(timeout.min(Duration::from_millis(10)));
            return;
        };
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let token = (u64::from(std::process::id()) << 32) | (NEXT.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff) | 1;
        // A token left by a reader that died in this slot is taken over, count and all.
        if self.slot(i).swap(token, Ordering::SeqCst) == 0 {
            self.waiters().fetch_add(1, Ordering::SeqCst);
        }
        let ts = futex::Timespec { tv_sec: timeout.as_secs() as i64, tv_nsec: timeout.subsec_nanos() as _ };
        // EAGAIN (already moved), ETIMEDOUT and EINTR all just mean: look again.
        let _ = futex::wait(self.seq(), futex::Flags::empty(), seen, Some(&ts));
        if self.slot(i).compare_exchange(token, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            let _ = self.waiters().fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| w.checked_sub(1));
        }
        let _ = sys::ofd_lock(fd, None, LOCK_BASE + i as u64, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_that_missed_cuts_is_told_the_lowest_or_everything() {
        let d = tempfile::tempdir().unwrap();
        let w = SharedState::open(d.path(), true).unwrap().unwrap();
        let r = SharedState::open(d.path(), false).unwrap().unwrap();
        let seen = r.epoch_now();
        assert_eq!(r.cuts_since(seen).0, Cut::None);
        w.cut(50, 50);
        w.cut(70, 70);
        w.cut(60, 60);
        let (c, e) = r.cuts_since(seen);
        assert_eq!(c, Cut::From(50));
        assert_eq!(r.cuts_since(e).0, Cut::None);
        for i in 0..9 {
            w.cut(100 + i, 100 + i);
        }
        assert_eq!(r.cuts_since(e).0, Cut::All);
    }

    #[test]
    fn a_registration_left_by_a_dead_reader_is_healed_by_the_next_wake() {
        let d = tempfile::tempdir().unwrap();
        let w = SharedState::open(d.path(), true).unwrap().unwrap();
        // A reader that registered and died: a token, a count, no lock.
        w.slot(3).store(0x77 << 32 | 1, Ordering::SeqCst);
        w.waiters().store(1, Ordering::SeqCst);
        w.publish(1);
        w.wake_waiters();
        assert_eq!((w.waiters().load(Ordering::SeqCst), w.slot(3).load(Ordering::SeqCst)), (0, 0));
        // A live reader's registration survives a heal.
        let r = std::sync::Arc::new(SharedState::open(d.path(), false).unwrap().unwrap());
        let seq = r.current();
        let r2 = r.clone();
        let t = std::thread::spawn(move || r2.wait(seq, Duration::from_secs(5)));
        while w.waiters().load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        w.heal();
        assert_eq!(w.waiters().load(Ordering::SeqCst), 1, "a live waiter's count was cleared");
        w.publish(2);
        w.wake_waiters();
        t.join().unwrap();
        assert_eq!(w.waiters().load(Ordering::SeqCst), 0);
    }
}
