//! The direct vector: loads and stores through a shared mapping of the whole file.
//!
//! On a kernel DAX file the window is a `MAP_SYNC` mapping and `persist` is a
//! cache-line flush and fence, with no system call. Elsewhere (`emulated`) it is a
//! plain shared mapping of the page cache and `persist` is `msync`, as PMDK does on
//! files without DAX.

use super::{fallocate, seek_extents, Advice, Aops, Extent, Persistence};
use crate::mode::{Backing, Mode};
use crate::sys::{FlushInsn, MapKind, Mapping};
use rustix::fs::FallocateFlags;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Environment variable forcing cache-line-flush persistence (see `forced_flush`).
pub(crate) const FORCE_FLUSH_ENV: &str = "DYNADAX_FORCE_CACHE_FLUSH";

/// Smallest window: mapping address space is free until touched, so start roomy.
const MIN_WINDOW: u64 = 64 << 20;
/// Windows are whole 2 MiB units so DAX can use huge-page (PMD) faults.
const WINDOW_ALIGN: u64 = 2 << 20;

pub(crate) struct DirectOps {
    file: Arc<File>,
    writable: bool,
    backing: Backing,
    kind: MapKind,
    insn: FlushInsn,
    /// `DYNADAX_FORCE_CACHE_FLUSH=1`: persist by cache-line flush even on an emulated
    /// window, as `PMEM_IS_PMEM_FORCE=1` does for PMDK. For benchmarks on DRAM-backed
    /// file systems only: on a real disk it is NOT durable.
    forced_flush: bool,
    /// The mapping all reads and writes go through; at least `len` bytes long.
    /// Replaced only by `grow`, under the ops lock's write side. Mapping guards are
    /// views of it (`map`), each keeping the window it was cut from alive.
    window: Arc<Mapping>,
    /// The file's length as this process sees it. Every access is bounded by it, so
    /// no access touches a page past the end of the file (SIGBUS).
    len: AtomicU64,
    /// Serialises the `ftruncate`s that extend the file for writes past the end.
    extend: Mutex<()>,
}

impl DirectOps {
    /// A direct vector over `file`. `kernel_dax` asks for `MAP_SYNC`; if the kernel
    /// refuses it (non-synchronous DAX device), the window falls back to a plain
    /// shared mapping persisted by `msync`, and `backing` says `emulated`.
    pub(crate) fn new(file: Arc<File>, writable: bool, kernel_dax: bool) -> io::Result<DirectOps> {
        let len = file.metadata()?.len();
        let cap = window_for(len);
        let (window, kind) = if kernel_dax {
            // SAFETY: every access is bounded by `len`, and shrinking runs under the
            // ops lock's write side, so no access outlives the bytes it touches.
            match unsafe { Mapping::new(file.as_fd(), 0, cap as usize, writable, MapKind::Sync) } {
                Ok(m) => (m, MapKind::Sync),
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) || e.raw_os_error() == Some(libc::EINVAL) => {
                    // SAFETY: as above.
                    (
                        unsafe { Mapping::new(file.as_fd(), 0, cap as usize, writable, MapKind::Shared) }?,
                        MapKind::Shared,
                    )
                }
                Err(e) => return Err(e),
            }
        } else {
            // SAFETY: as above.
            (unsafe { Mapping::new(file.as_fd(), 0, cap as usize, writable, MapKind::Shared) }?, MapKind::Shared)
        };
        let insn = FlushInsn::detect();
        let forced_flush = std::env::var_os(FORCE_FLUSH_ENV).is_some_and(|v| v == "1");
        let backing = if kind == MapKind::Sync { Backing::KernelDax } else { Backing::Emulated };
        Ok(DirectOps {
            file,
            writable,
            backing,
            kind,
            insn,
            forced_flush,
            window: Arc::new(window),
            len: AtomicU64::new(len),
            extend: Mutex::new(()),
        })
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::PermissionDenied, "file is open read-only"))
        }
    }

    /// Extends the file to at least `end` bytes (never shrinks). The new range is
    /// allocated with `fallocate`, not just sized with `ftruncate`: a store into an
    /// unallocated page of a mapping on a full file system raises SIGBUS, so a full
    /// disk must surface here as `ENOSPC` instead.
    fn extend_to(&self, end: u64) -> io::Result<()> {
        if end <= self.len.load(Ordering::Acquire) {
            return Ok(());
        }
        let _g = self.extend.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.len.load(Ordering::Acquire);
        if end > cur {
            match fallocate(&self.file, FallocateFlags::empty(), cur, end - cur) {
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => self.file.set_len(end)?,
                r => r?,
            }
            self.len.store(end, Ordering::Release);
        }
        Ok(())
    }

    /// The window offset for file offset `off` (the window starts at 0).
    fn at(off: u64) -> io::Result<usize> {
        usize::try_from(off).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))
    }
}

/// Window size for a file of `len` bytes: room to double, whole 2 MiB units.
fn window_for(len: u64) -> u64 {
    len.saturating_mul(2).max(MIN_WINDOW).div_ceil(WINDOW_ALIGN) * WINDOW_ALIGN
}

impl Aops for DirectOps {
    fn mode(&self) -> Mode {
        Mode::Direct
    }
    fn backing(&self) -> Backing {
        self.backing
    }
    fn persistence(&self) -> Persistence {
        match (self.kind, self.insn) {
            (_, FlushInsn::None) => Persistence::Msync,
            (MapKind::Shared, _) if !self.forced_flush => Persistence::Msync,
            (_, insn) => Persistence::CacheLineFlush(insn),
        }
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.len.load(Ordering::Acquire))
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let len = self.len.load(Ordering::Acquire);
        if off >= len {
            return Ok(0);
        }
        let n = (len - off).min(buf.len() as u64) as usize;
        self.window.read(Self::at(off)?, &mut buf[..n])?;
        Ok(n)
    }
    fn write_at(&self, data: &[u8], off: u64) -> io::Result<()> {
        self.check_writable()?;
        self.extend_to(off + data.len() as u64)?;
        self.window.write(Self::at(off)?, data)
    }
    fn persist(&self, off: u64, len: u64) -> io::Result<()> {
        let file_len = self.len.load(Ordering::Acquire);
        let end = off.saturating_add(len).min(file_len);
        if off >= end {
            return Ok(());
        }
        let (at, n) = (Self::at(off)?, (end - off) as usize);
        match self.persistence() {
            Persistence::CacheLineFlush(insn) => self.window.flush(at, n, insn),
            _ => self.window.msync(at, n),
        }
    }
    fn zero_range(&self, off: u64, len: u64) -> io::Result<()> {
        self.check_writable()?;
        self.extend_to(off + len)?;
        self.window.zero(Self::at(off)?, Self::at(len)?)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let _g = self.extend.lock().unwrap_or_else(|e| e.into_inner());
        self.file.set_len(len)?;
        self.len.store(len, Ordering::Release);
        Ok(())
    }
    fn allocate(&self, off: u64, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let _g = self.extend.lock().unwrap_or_else(|e| e.into_inner());
        fallocate(&self.file, FallocateFlags::empty(), off, len)?;
        self.len.fetch_max(off + len, Ordering::AcqRel);
        Ok(())
    }
    fn map(&self, off: u64, len: usize, writable: bool) -> io::Result<Mapping> {
        // A view of the window, which covers the file: every guard of the file shares
        // one mapping (MAP_SYNC on kernel DAX) for the file's life, and making or
        // dropping one costs no mmap or munmap. The inode checked that the range lies
        // inside the file under the ops lock, and refuses to shrink the file below a
        // live guard; a `grow` that replaces the window leaves the view's alive.
        let at = Self::at(off)?;
        if at.checked_add(len).is_some_and(|end| end <= self.window.len()) {
            return Mapping::view(&self.window, at, len, writable);
        }
        self.map_own(off, len, writable)
    }
    fn map_own(&self, off: u64, len: usize, writable: bool) -> io::Result<Mapping> {
        // SAFETY: the inode checked the range under the ops lock, as for `map`.
        unsafe { Mapping::new(self.file.as_fd(), off, len, writable, self.kind) }
    }
    fn advise(&self, off: u64, len: u64, advice: Advice) -> io::Result<()> {
        use rustix::mm::Advice as A;
        let a = match advice {
            Advice::Normal => A::Normal,
            Advice::Sequential => A::Sequential,
            Advice::Random => A::Random,
            Advice::WillNeed => A::WillNeed,
            // MADV_DONTNEED on a shared mapping only drops this process's page tables.
            Advice::DontNeed => A::LinuxDontNeed,
            Advice::PopulateWrite if self.writable => A::LinuxPopulateWrite,
            Advice::PopulateWrite => A::WillNeed,
        };
        let file_len = self.len.load(Ordering::Acquire);
        let end = off.saturating_add(len).min(file_len);
        if off >= end {
            return Ok(());
        }
        self.window.advise(Self::at(off)?, (end - off) as usize, a)
    }
    fn extents(&self, off: u64, len: u64) -> io::Result<Vec<Extent>> {
        seek_extents(&self.file, off, len, self.len.load(Ordering::Acquire))
    }
    fn direct_read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        // Loads through the window bypass the page cache on kernel DAX already.
        self.read_at(buf, off)
    }
    fn direct_write_at(&self, data: &[u8], off: u64) -> io::Result<()> {
        self.write_at(data, off)
    }
    fn fits(&self, end: u64) -> bool {
        end <= self.window.len() as u64
    }
    fn note_len(&self, len: u64) {
        self.len.fetch_max(len, Ordering::AcqRel);
    }
    fn grow(&mut self, end: u64) -> io::Result<()> {
        if self.fits(end) {
            return Ok(());
        }
        let cap = window_for(end);
        // SAFETY: as in `new`; the ops lock is held for write, so no reader is using
        // the old window while it is replaced (and unmapped when dropped here).
        self.window = Arc::new(unsafe { Mapping::new(self.file.as_fd(), 0, cap as usize, self.writable, self.kind) }?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_roomy_and_aligned() {
        assert_eq!(window_for(0), MIN_WINDOW);
        assert_eq!(window_for(100 << 20), 200 << 20);
        assert_eq!(window_for((100 << 20) + 1) % WINDOW_ALIGN, 0);
    }
}
