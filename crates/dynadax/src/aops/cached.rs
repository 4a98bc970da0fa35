//! The cached vector: the page cache through `pread`/`pwrite`, durable by `fdatasync`.

use super::{fallocate, seek_extents, unsupported, Advice, Aops, Extent, Persistence};
use crate::mode::{Backing, Mode};
use crate::sys::{self, AlignedBuf, MapKind};
use rustix::fs::FallocateFlags;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

pub(crate) struct CachedOps {
    file: Arc<File>,
    path: Arc<PathBuf>,
    writable: bool,
    /// A second descriptor opened with `O_DIRECT` on first use (errno if that failed).
    odirect: OnceLock<Result<File, i32>>,
}

impl CachedOps {
    pub(crate) fn new(file: Arc<File>, path: Arc<PathBuf>, writable: bool) -> CachedOps {
        CachedOps { file, path, writable, odirect: OnceLock::new() }
    }

    /// The file it reads and writes.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    fn odirect(&self) -> io::Result<&File> {
        let r = self.odirect.get_or_init(|| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(self.writable)
                .custom_flags(libc::O_DIRECT)
                .open(&*self.path)
                .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
        });
        match r {
            Ok(f) => Ok(f),
            Err(libc::EINVAL) => Err(unsupported("this file system does not support O_DIRECT")),
            Err(e) => Err(io::Error::from_raw_os_error(*e)),
        }
    }
}

impl Aops for CachedOps {
    fn mode(&self) -> Mode {
        Mode::Cached
    }
    fn backing(&self) -> Backing {
        Backing::PageCache
    }
    fn persistence(&self) -> Persistence {
        Persistence::Fdatasync
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
    fn write_at(&self, data: &[u8], off: u64) -> io::Result<()> {
        self.file.write_all_at(data, off)
    }
    fn persist(&self, _off: u64, _len: u64) -> io::Result<()> {
        self.file.sync_data()
    }
    fn zero_range(&self, off: u64, len: u64) -> io::Result<()> {
        match fallocate(&self.file, FallocateFlags::ZERO_RANGE, off, len) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                // tmpfs and others lack ZERO_RANGE: write the zeros.
                let zeros = vec![0u8; 64 << 10];
                let mut at = off;
                while at < off + len {
                    let n = (off + len - at).min(zeros.len() as u64) as usize;
                    self.file.write_all_at(&zeros[..n], at)?;
                    at += n as u64;
                }
                Ok(())
            }
            r => r,
        }
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn allocate(&self, off: u64, len: u64) -> io::Result<()> {
        fallocate(&self.file, FallocateFlags::empty(), off, len)
    }
    fn map(&self, off: u64, len: usize, writable: bool) -> io::Result<sys::Mapping> {
        // SAFETY: the inode checked `off + len <= file length` under the ops lock and
        // refuses to shrink the file below a live guard's range.
        unsafe { sys::Mapping::new(self.file.as_fd(), off, len, writable, MapKind::Shared) }
    }
    fn advise(&self, off: u64, len: u64, advice: Advice) -> io::Result<()> {
        use rustix::fs::Advice as A;
        let a = match advice {
            Advice::Normal => A::Normal,
            Advice::Sequential => A::Sequential,
            Advice::Random => A::Random,
            Advice::WillNeed | Advice::PopulateWrite => A::WillNeed,
            Advice::DontNeed => A::DontNeed,
        };
        rustix::fs::fadvise(&*self.file, off, std::num::NonZeroU64::new(len), a).map_err(Into::into)
    }
    fn extents(&self, off: u64, len: u64) -> io::Result<Vec<Extent>> {
        seek_extents(&self.file, off, len, self.len()?)
    }
    fn direct_read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let f = self.odirect()?;
        // O_DIRECT wants aligned offset, length and memory: read the aligned span
        // covering the request into an aligned buffer and copy out.
        let page = sys::page_size() as u64;
        let start = off - off % page;
        let end = (off + buf.len() as u64).div_ceil(page) * page;
        let mut bounce = AlignedBuf::new((end - start) as usize);
        let span = bounce.as_mut_slice();
        let mut got = 0;
        while got < span.len() {
            match f.read_at(&mut span[got..], start + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let skip = (off - start) as usize;
        let n = got.saturating_sub(skip).min(buf.len());
        buf[..n].copy_from_slice(&span[skip..skip + n]);
        Ok(n)
    }
    fn direct_write_at(&self, data: &[u8], off: u64) -> io::Result<()> {
        let page = sys::page_size() as u64;
        if off % page != 0 || data.len() as u64 % page != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("direct I/O in cached mode needs offset and length in multiples of {page} bytes"),
            ));
        }
        let f = self.odirect()?;
        let mut bounce = AlignedBuf::new(data.len());
        bounce.as_mut_slice()[..data.len()].copy_from_slice(data);
        f.write_all_at(&bounce.as_mut_slice()[..data.len()], off)
    }
}
