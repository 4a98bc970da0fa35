//! Operations vectors: one implementation of every file operation per effective mode,
//! as the kernel has one `address_space_operations` per DAX state.
//!
//! The trait is the seed thread's rule 1 made a compile-time fact: a vector that
//! lacks an operation (direct I/O included) does not compile. Callers reach a vector
//! only through the inode's ops lock (see `inode.rs`), never directly.

mod cached;
mod direct;
mod dram;

pub(crate) use cached::CachedOps;
pub(crate) use direct::{DirectOps, FORCE_FLUSH_ENV};
pub use dram::{dram_cache_totals, CacheStats, DramTotals};
pub(crate) use dram::{DramOps, DEFAULT_CACHE_BYTES};

use crate::mode::{Backing, Mode};
use crate::sys::{self, FlushInsn};
use serde::Serialize;
use std::fmt;
use std::fs::File;
use std::io;

/// Access-pattern advice, passed to `posix_fadvise` (cached) or `madvise` (direct).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advice {
    /// No special treatment.
    Normal,
    /// Sequential access: read ahead aggressively.
    Sequential,
    /// Random access: do not read ahead.
    Random,
    /// The range will be needed soon.
    WillNeed,
    /// The range will not be needed soon.
    DontNeed,
    /// Fault the range in writable now (`MADV_POPULATE_WRITE`), so later stores take
    /// no page fault. Direct mode only; a read-ahead hint in cached mode.
    PopulateWrite,
}

/// One run of a file, as the file system reports it (`SEEK_DATA` / `SEEK_HOLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Extent {
    /// First byte.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Whether the run holds data (`false`: a hole that reads as zeros).
    pub data: bool,
}

/// How a vector makes data durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Cache-line write-back with this instruction, then `sfence` (MAP_SYNC mappings).
    CacheLineFlush(FlushInsn),
    /// `msync(MS_SYNC)` of the pages (shared mapping of a non-DAX file).
    Msync,
    /// `fdatasync` (page cache).
    Fdatasync,
}

impl fmt::Display for Persistence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Persistence::CacheLineFlush(i) => write!(f, "cache-line-flush ({})", i.name()),
            Persistence::Msync => f.write_str("msync"),
            Persistence::Fdatasync => f.write_str("fdatasync"),
        }
    }
}

/// Every operation a file has. Offsets and lengths are in bytes; all methods take
/// `&self` because many threads run them at once under the ops lock's read side.
pub(crate) trait Aops: Send + Sync {
    /// The mode this vector implements.
    fn mode(&self) -> Mode;
    /// What backs it.
    fn backing(&self) -> Backing;
    /// How `persist` works here.
    fn persistence(&self) -> Persistence;
    /// Current file length.
    fn len(&self) -> io::Result<u64>;
    /// Reads up to `buf.len()` bytes at `off`; fewer only at end of file.
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize>;
    /// Writes all of `data` at `off`, extending the file if needed.
    fn write_at(&self, data: &[u8], off: u64) -> io::Result<()>;
    /// Makes `off..off+len` durable.
    fn persist(&self, off: u64, len: u64) -> io::Result<()>;
    /// Sets `off..off+len` to zeros, extending the file if needed.
    fn zero_range(&self, off: u64, len: u64) -> io::Result<()>;
    /// Truncates or extends the file. A shrink runs under the ops lock's write side.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserves blocks for `off..off+len` (`fallocate`), extending the file if needed.
    fn allocate(&self, off: u64, len: u64) -> io::Result<()>;
    /// A new mapping of `off..off+len` for a mapping guard. The caller has checked
    /// that the range lies inside the file and registers the guard.
    fn map(&self, off: u64, len: usize, writable: bool) -> io::Result<sys::Mapping>;
    /// As [`Aops::map`], but a mapping of its own, never a view of one shared with
    /// other guards, so it can become a placeholder ([`crate::MapGuard::detach`]).
    fn map_own(&self, off: u64, len: usize, writable: bool) -> io::Result<sys::Mapping> {
        self.map(off, len, writable)
    }
    /// Access-pattern advice for `off..off+len`.
    fn advise(&self, off: u64, len: u64, advice: Advice) -> io::Result<()>;
    /// Data and hole runs of `off..off+len`.
    fn extents(&self, off: u64, len: u64) -> io::Result<Vec<Extent>>;
    /// Reads bypassing the page cache (`O_DIRECT` when cached; the mapping when direct).
    fn direct_read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize>;
    /// Writes bypassing the page cache. Cached: offset and length must be multiples
    /// of the page size, as `O_DIRECT` requires.
    fn direct_write_at(&self, data: &[u8], off: u64) -> io::Result<()>;
    /// Whether the file can reach `end` bytes without changing the vector's state
    /// (the direct vector's window). When not, the inode takes the write side and calls
    /// [`Aops::grow`].
    fn fits(&self, _end: u64) -> bool {
        true
    }
    /// Makes room for `end` bytes. Called with the ops lock held for write.
    fn grow(&mut self, _end: u64) -> io::Result<()> {
        Ok(())
    }
    /// Another vector of the same file (a range of another mode) made the file at
    /// least `len` bytes long. For vectors that keep the length themselves.
    fn note_len(&self, _len: u64) {}
    /// Forgets what this vector keeps of `off..off+len` besides the file (a range
    /// leaving it). For vectors that cache data.
    fn forget(&self, _off: u64, _len: u64) {}
    /// What its DRAM cache has done, if it has one.
    fn cache_stats(&self) -> Option<CacheStats> {
        None
    }
}

/// The data and hole runs of `off..off+len` of `file`, from `SEEK_DATA`/`SEEK_HOLE`.
/// Both vectors ask the file system the same question, so they share this.
pub(crate) fn seek_extents(file: &File, off: u64, len: u64, file_len: u64) -> io::Result<Vec<Extent>> {
    use rustix::fs::{seek, SeekFrom};
    let end = off.saturating_add(len).min(file_len);
    let mut out = Vec::new();
    let mut at = off;
    while at < end {
        let data = match seek(file, SeekFrom::Data(at)) {
            Ok(d) => d.min(end),
            Err(rustix::io::Errno::NXIO) => end, // No data after `at`: the rest is a hole.
            Err(e) => return Err(e.into()),
        };
        if data > at {
            out.push(Extent { offset: at, len: data - at, data: false });
        }
        if data >= end {
            break;
        }
        let hole = seek(file, SeekFrom::Hole(data))?.min(end);
        out.push(Extent { offset: data, len: hole - data, data: true });
        at = hole;
    }
    Ok(out)
}

/// `fallocate` with `mode`; the shared core of `allocate` and `zero_range`.
pub(crate) fn fallocate(file: &File, mode: rustix::fs::FallocateFlags, off: u64, len: u64) -> io::Result<()> {
    rustix::fs::fallocate(file, mode, off, len).map_err(Into::into)
}

pub(crate) fn unsupported(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what.to_string())
}
