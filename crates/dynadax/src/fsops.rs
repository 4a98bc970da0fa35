//! The file-system operations whose order makes the log crash-safe (renames,
//! removals, file and directory syncs, the small writes that go around dynadax's
//! `File`), in one place. With the test-only `crash-trace` feature each of them, and
//! every write, persist and size change of a dynadax [`File`](crate::File) or
//! mapping, is recorded in order with its bytes: `tests/crash_model_log.rs` rebuilds
//! from that trace every state a crash could leave (what was synced, plus any part of
//! what was not) and recovers each with the real `Log::open`. Without the feature the
//! recording compiles to nothing.

use crate::error::{IoContext, Result};
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Records `$e` (a [`trace::Event`]) when the crash trace is on.
macro_rules! record {
    ($e:expr) => {
        #[cfg(feature = "crash-trace")]
        $crate::fsops::trace::record(|| $e);
    };
}
pub(crate) use record;

/// `rename(2)`.
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    record!(trace::Event::Rename(from.to_path_buf(), to.to_path_buf()));
    Ok(())
}

/// `unlink(2)`.
pub(crate) fn remove_file(p: &Path) -> io::Result<()> {
    fs::remove_file(p)?;
    record!(trace::Event::Remove(p.to_path_buf()));
    Ok(())
}

/// `fsync(2)` of an open file: its data and size are durable.
pub(crate) fn sync_file(f: &fs::File, p: &Path) -> io::Result<()> {
    f.sync_all()?;
    record!(trace::Event::SyncFile(p.to_path_buf()));
    let _ = p;
    Ok(())
}

/// `fsync(2)` of the file at `p`.
pub(crate) fn sync_path(p: &Path) -> io::Result<()> {
    sync_file(&fs::File::open(p)?, p)
}

/// `pwrite(2)` of all of `data` at `off`, around dynadax's `File`.
pub(crate) fn write_all_at(f: &fs::File, p: &Path, data: &[u8], off: u64) -> io::Result<()> {
    f.write_all_at(data, off)?;
    record!(trace::Event::Write(p.to_path_buf(), off, data.to_vec()));
    let _ = p;
    Ok(())
}

/// fsync of a directory, so creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all()).ctx(dir, "fsync directory")?;
    record!(trace::Event::SyncDir(dir.to_path_buf()));
    Ok(())
}

/// The crash trace (test-only feature `crash-trace`).
#[cfg(feature = "crash-trace")]
#[doc(hidden)]
pub mod trace {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    /// One operation, as it happened (after it returned).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Event {
        /// A new file at this path (its directory entry is not yet durable).
        Create(PathBuf),
        /// Bytes written (not yet durable).
        Write(PathBuf, u64, Vec<u8>),
        /// The size set (not yet durable).
        SetLen(PathBuf, u64),
        /// `off..off+len` and the size made durable (cache-line flush, `msync`,
        /// `fdatasync`).
        Persist(PathBuf, u64, u64),
        /// Every byte and the size made durable.
        SyncFile(PathBuf),
        /// A rename (not yet durable).
        Rename(PathBuf, PathBuf),
        /// A removal (not yet durable).
        Remove(PathBuf),
        /// The directory's entries made durable.
        SyncDir(PathBuf),
        /// A point the test marked (between its operations).
        Mark(u64),
    }

    static ON: AtomicBool = AtomicBool::new(false);
    static TRACE: Mutex<Option<(PathBuf, Vec<Event>)>> = Mutex::new(None);

    /// Starts recording the operations on paths under `root`.
    pub fn start(root: &Path) {
        *TRACE.lock().unwrap_or_else(|e| e.into_inner()) = Some((root.to_path_buf(), Vec::new()));
        ON.store(true, Ordering::SeqCst);
    }

    /// Stops recording; the trace.
    pub fn stop() -> Vec<Event> {
        ON.store(false, Ordering::SeqCst);
        TRACE.lock().unwrap_or_else(|e| e.into_inner()).take().map(|t| t.1).unwrap_or_default()
    }

    /// Marks a point between the test's operations.
    pub fn mark(n: u64) {
        record(|| Event::Mark(n));
    }

    pub(crate) fn record(e: impl FnOnce() -> Event) {
        if !ON.load(Ordering::Relaxed) {
            return;
        }
        let e = e();
        let mut t = TRACE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((root, events)) = t.as_mut() {
            let under = match &e {
                Event::Create(p)
                | Event::Write(p, ..)
                | Event::SetLen(p, _)
                | Event::Persist(p, ..)
                | Event::SyncFile(p)
                | Event::Remove(p)
                | Event::SyncDir(p)
                | Event::Rename(p, _) => p.starts_with(&*root),
                Event::Mark(_) => true,
            };
            if under {
                events.push(e);
            }
        }
    }
}
