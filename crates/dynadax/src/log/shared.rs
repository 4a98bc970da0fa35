//! `tail.state`: how the writer tells readers in other processes how far the log is
//! durable, and wakes the ones that wait, without a system call per append.
//!
//! ```text
//! 0  magic    8  b"DYNXTAIL"
//! 8  durable  8  one past the last durable LSN (atomic, written by the writer)
//! 16 seq      4  bumped on every publish: the futex word readers wait on
//! 20 waiters  4  readers waiting; the writer calls FUTEX_WAKE only when non-zero
//! ```
//! The file is a shared mapping, never fsynced: it describes the running writer only.
//! A reader in another process shows records up to `durable` while a writer holds
//! the log's lock (so it never shows an unpersisted record), and everything valid when
//! there is no writer.

use crate::error::{IoContext, Result};
use crate::sys::{MapKind, Mapping};
use rustix::thread::futex;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// File name of the shared state.
pub const STATE_FILE: &str = "tail.state";
const MAGIC: &[u8; 8] = b"DYNXTAIL";
const LEN: usize = 64;

pub(crate) struct SharedState {
    map: Mapping,
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
        // SAFETY: the file is never shrunk by dynadax; it is 64 bytes and only touched
        // through atomics and the magic.
        let map = unsafe { Mapping::new(f.as_fd(), 0, LEN, true, MapKind::Shared) }.ctx(&path, "map tail state")?;
        if create {
            map.write(0, MAGIC).ctx(&path, "write tail state")?;
        } else {
            let mut m = [0u8; 8];
            map.read(0, &mut m).ctx(&path, "read tail state")?;
            if &m != MAGIC {
                return Ok(None);
            }
        }
        Ok(Some(SharedState { map }))
    }

    fn durable_word(&self) -> &std::sync::atomic::AtomicU64 {
        self.map.atomic_u64(8).expect("in bounds, aligned")
    }
    fn seq(&self) -> &std::sync::atomic::AtomicU32 {
        self.map.atomic_u32(16).expect("in bounds, aligned")
    }
    fn waiters(&self) -> &std::sync::atomic::AtomicU32 {
        self.map.atomic_u32(20).expect("in bounds, aligned")
    }

    /// Writer, under its lock (the only writer of these words): `durable` moved. Two
    /// plain stores; the caller then fences and calls [`SharedState::wake_waiters`].
    pub fn publish(&self, durable: u64) {
        self.durable_word().store(durable, Ordering::Release);
        let seq = self.seq();
        seq.store(seq.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
    }

    /// Writer, after [`SharedState::publish`] and a sequentially consistent fence: a
    /// `FUTEX_WAKE` only if some reader waits (readers count themselves before they
    /// look at `seq`, so either they see the new value or this sees them).
    pub fn wake_waiters(&self) {
        if self.waiters().load(Ordering::Relaxed) > 0 {
            let _ = futex::wake(self.seq(), futex::Flags::empty(), i32::MAX as u32);
        }
    }

    /// Writer at open: the durable point after recovery (may move backwards).
    pub fn reset(&self, durable: u64) {
        self.durable_word().store(durable, Ordering::SeqCst);
        self.seq().fetch_add(1, Ordering::SeqCst);
        if self.waiters().load(Ordering::SeqCst) > 0 {
            let _ = futex::wake(self.seq(), futex::Flags::empty(), i32::MAX as u32);
        }
    }

    pub fn durable(&self) -> u64 {
        self.durable_word().load(Ordering::SeqCst)
    }

    /// The current sequence number, to wait on.
    pub fn current(&self) -> u32 {
        self.seq().load(Ordering::SeqCst)
    }

    /// Waits until the sequence moves past `seen` or `timeout` passes.
    pub fn wait(&self, seen: u32, timeout: Duration) {
        self.waiters().fetch_add(1, Ordering::SeqCst);
        let ts =
            rustix::thread::futex::Timespec { tv_sec: timeout.as_secs() as i64, tv_nsec: timeout.subsec_nanos() as _ };
        // EAGAIN (already moved), ETIMEDOUT and EINTR all just mean: look again.
        let _ = futex::wait(self.seq(), futex::Flags::empty(), seen, Some(&ts));
        self.waiters().fetch_sub(1, Ordering::SeqCst);
    }
}
