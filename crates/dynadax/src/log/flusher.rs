//! The background flusher behind pipelined appends ([`Log::append_nowait`]): one
//! thread per log, started by the first such append, that makes everything written
//! durable (a group-commit lead, so one persist covers all written meanwhile) and
//! sleeps when nothing is pending. The appender only stores; its caller waits for
//! durability when it must ([`Log::wait_durable`]), so one thread keeps many appends
//! in flight and the disk's bandwidth, not its flush latency, bounds it.
//!
//! [`Log::append_nowait`]: super::Log::append_nowait
//! [`Log::wait_durable`]: super::Log::wait_durable

use super::Inner;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

#[derive(Default)]
pub(crate) struct Flusher {
    signal: Arc<Signal>,
    /// The thread has been started (once; it ends when the log closes or is poisoned).
    started: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct Signal {
    state: Mutex<State>,
    cv: Condvar,
    /// The flusher is (about to be) asleep: an appender must wake it. Set before the
    /// flusher's last look at what is written, read after the appender's store of it
    /// and a fence (all SeqCst), so one of the two sees the other.
    asleep: AtomicBool,
}

#[derive(Default)]
struct State {
    kicked: bool,
    closed: bool,
}

/// How long the flusher sleeps at most between looks (a missed wake-up, which the
/// protocol above rules out, would cost no more than this).
const NAP: Duration = Duration::from_millis(50);

impl Flusher {
    /// Called after a pipelined append stored its records: wakes the flusher if it
    /// sleeps, starts it if none runs. Costs two atomic loads when it is busy.
    #[inline]
    pub fn kick(&self, inner: &Arc<Inner>) {
        // Orders the appender's store of `written` before its look at `asleep`,
        // against the flusher's store of `asleep` before its look at `written`.
        std::sync::atomic::fence(Ordering::SeqCst);
        if !self.started.load(Ordering::Acquire) {
            self.start(inner);
        } else if self.signal.asleep.load(Ordering::SeqCst) {
            let mut s = self.signal.state.lock().unwrap_or_else(|e| e.into_inner());
            s.kicked = true;
            self.signal.cv.notify_one();
        }
    }

    #[cold]
    fn start(&self, inner: &Arc<Inner>) {
        let mut t = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let (weak, signal) = (Arc::downgrade(inner), self.signal.clone());
        // Without the thread, pipelined appends still become durable at the next
        // `wait_durable`, `sync` or synchronous append; so a failed spawn is not an error.
        if let Ok(h) = std::thread::Builder::new().name("dynadax-log-flush".into()).spawn(move || run(&weak, &signal)) {
            *t = Some(h);
        }
        self.started.store(true, Ordering::Release);
    }
}

fn pending(inner: &Inner) -> Option<u64> {
    let written = inner.group.written_lsn();
    (written > inner.durable.load(Ordering::SeqCst)).then_some(written)
}

fn run(weak: &Weak<Inner>, signal: &Signal) {
    loop {
        {
            let Some(inner) = weak.upgrade() else { return };
            if let Some(written) = pending(&inner) {
                if inner.commit(written).is_err() {
                    return; // poisoned (or read-only): appends fail from now on
                }
                continue;
            }
        } // the log is not kept alive while the flusher sleeps
        let mut s = signal.state.lock().unwrap_or_else(|e| e.into_inner());
        signal.asleep.store(true, Ordering::SeqCst);
        let work = s.kicked || weak.upgrade().is_some_and(|i| pending(&i).is_some());
        if !work && !s.closed {
            s = signal.cv.wait_timeout(s, NAP).unwrap_or_else(|e| e.into_inner()).0;
        }
        signal.asleep.store(false, Ordering::SeqCst);
        s.kicked = false;
        if s.closed {
            return;
        }
    }
}

/// A closed log's flusher ends (after the persist it may be in) and is joined, unless
/// the flusher itself let go of the log last.
impl Drop for Flusher {
    fn drop(&mut self) {
        self.signal.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.signal.cv.notify_all();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}
