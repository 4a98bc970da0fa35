//! The flusher: a thread that makes appended entries durable and then tells
//! openraft, so `append` returns as soon as the entries are written. One persist
//! covers every append queued meanwhile (group commit), and callbacks fire in the
//! order their appends were made.

use crate::store::{Shared, COMMITTED_INTERVAL};
use openraft::storage::IOFlushed;
use openraft::RaftTypeConfig;
use std::io;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, Weak};
use std::thread::JoinHandle;

pub(crate) struct Flusher<C: RaftTypeConfig> {
    /// Closed (set to `None`) on drop, which ends the thread.
    tx: Mutex<Option<mpsc::Sender<IOFlushed<C>>>>,
    thread: Option<JoinHandle<()>>,
}

impl<C: RaftTypeConfig> Flusher<C> {
    /// Starts the thread. It holds the store weakly: the store's last clone going
    /// away closes the channel, and the thread ends.
    pub fn start(shared: Weak<Shared<C>>) -> Flusher<C> {
        let (tx, rx) = mpsc::channel::<IOFlushed<C>>();
        let thread = std::thread::Builder::new()
            .name("dynadax-raft-flush".into())
            .spawn(move || run(shared, rx))
            .expect("spawn the flusher thread");
        Flusher { tx: Mutex::new(Some(tx)), thread: Some(thread) }
    }

    /// Reports `callback` once everything appended so far is durable.
    pub fn flush(&self, callback: IOFlushed<C>) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Err(mpsc::SendError(cb))) = tx.as_ref().map(|t| t.send(callback)) {
            cb.io_completed(Err(io::Error::other("the log store is closing")));
        }
    }
}

fn run<C: RaftTypeConfig>(shared: Weak<Shared<C>>, rx: mpsc::Receiver<IOFlushed<C>>) {
    loop {
        // Wake at least every COMMITTED_INTERVAL, to write a committed log id that
        // moved while no append came.
        let first = match rx.recv_timeout(COMMITTED_INTERVAL) {
            Ok(cb) => Some(cb),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let Some(shared) = shared.upgrade() else { return };
        let batch: Vec<_> = first.into_iter().chain(rx.try_iter()).collect();
        if !batch.is_empty() {
            // Everything in `batch` was written before it was queued, so this one
            // persist covers it all.
            let r = shared.persist_appends();
            for cb in batch {
                cb.io_completed(r.as_ref().map(|_| ()).map_err(|e| io::Error::new(e.kind(), e.to_string())));
            }
        }
        // A failed write is retried next round; the committed log id is a hint.
        let _ = shared.write_committed_if_due(false);
    }
}

impl<C: RaftTypeConfig> Drop for Flusher<C> {
    fn drop(&mut self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.take() {
            // The thread itself may hold the store's last reference and drop it.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}
