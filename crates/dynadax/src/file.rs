//! The public face of files and directories: [`File`], [`MapGuard`], [`Status`], and
//! the path-level calls ([`stat`], [`set_mode`], [`create_dir`]).

use crate::aops::{Advice, Extent, Persistence};
use crate::error::{Error, IoContext, Result};
use crate::flags::FlagStore;
use crate::inode::{Inode, SwitchOptions};
use crate::mode::{decide, Backing, Mode, Policy};
use crate::mount::fs_info;
use crate::sync::unpoison;
use crate::sys::{self, Mapping};
use crate::volume::Volume;
use serde::Serialize;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
}

/// Physical and effective mode of a file or directory, and why they are what they are.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The path asked about.
    pub path: PathBuf,
    /// File or directory.
    pub kind: Kind,
    /// The persistent mode recorded for it.
    pub physical: Mode,
    /// The mode in force now; `None` for directories (the kernel never puts a
    /// directory in DAX: their mode only says what new children inherit).
    pub effective: Option<Mode>,
    /// What backs the effective mode; `None` for directories.
    pub backing: Option<Backing>,
    /// True when physical and effective differ only until the last holder closes the
    /// file (kernel DAX under `dax=inode`).
    pub pending: bool,
    /// Why the effective mode is what it is.
    pub reason: String,
    /// Where the physical mode is kept.
    pub flag_store: FlagStore,
    /// The policy of the volume the path belongs to.
    pub policy: Policy,
    /// That volume's root; `None` for the default volume.
    pub volume: Option<PathBuf>,
    /// How `persist` makes data durable in the effective mode; `None` for directories.
    pub persistence: Option<String>,
    /// Mapping guards of this file alive in this process.
    pub live_mappings: usize,
    /// Ranges whose physical mode differs from the file's (see [`File::set_range_mode`]),
    /// in order; empty for most files and for directories.
    pub ranges: Vec<RangeStatus>,
    /// What the DRAM cache of `cached` ranges of a kernel-DAX file has done, if it has one.
    pub cache: Option<crate::CacheStats>,
}

/// A range of a file with its own mode.
#[derive(Debug, Clone, Serialize)]
pub struct RangeStatus {
    /// First byte.
    pub offset: u64,
    /// Length in bytes; `None`: to the end of the file, whatever it grows to.
    pub len: Option<u64>,
    /// The persistent mode recorded for it.
    pub physical: Mode,
    /// The mode in force there now.
    pub effective: Mode,
    /// What backs it.
    pub backing: Backing,
    /// Why.
    pub reason: String,
    /// Mapping guards overlapping it, alive in this process.
    pub live_mappings: usize,
}

/// A file opened through dynadax. Cheap to clone; every handle to the same file in a
/// process shares one inode, one ops lock and one operations vector.
#[derive(Clone)]
pub struct File {
    inode: Arc<Inode>,
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File").field("path", &self.inode.path).finish()
    }
}

impl File {
    /// Opens an existing regular file (read-write if permitted, else read-only). Its
    /// effective mode is decided now, from its physical mode, its volume's policy and
    /// what the kernel says.
    pub fn open(path: impl AsRef<Path>) -> Result<File> {
        Ok(File { inode: Inode::get(path.as_ref())? })
    }

    /// Test only (feature `shuttle`): opens the file as another process would, with
    /// its own ops lock, mapping registry and open file description, so that one
    /// model can run two "processes" of the two-level ops lock. Not for use.
    #[cfg(feature = "shuttle")]
    #[doc(hidden)]
    pub fn open_as_another_process(path: impl AsRef<Path>) -> Result<File> {
        Ok(File { inode: Inode::get_as_another_process(path.as_ref())? })
    }

    /// Opens `path`, creating it empty if it does not exist. A new file inherits its
    /// parent directory's physical mode (the kernel does it for `fs-xflag`; dynadax
    /// does it for the other stores).
    pub fn create(path: impl AsRef<Path>) -> Result<File> {
        let path = path.as_ref();
        match fs::OpenOptions::new().read(true).write(true).create_new(true).open(path) {
            Ok(f) => {
                crate::fsops::record!(crate::fsops::trace::Event::Create(path.to_path_buf()));
                inherit(path, &f, false)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(path, "create", e)),
        }
        File::open(path)
    }

    /// The path the file was first opened by in this process.
    pub fn path(&self) -> &Path {
        &self.inode.path
    }

    /// Reads up to `buf.len()` bytes at `off`; fewer only at the end of the file.
    #[inline]
    pub fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        self.read_runs(buf, off, "read", |v, b, o| v.read_at(b, o))
    }

    /// Writes all of `data` at `off`, extending the file if needed. Not durable until
    /// [`File::persist`].
    pub fn write_at(&self, data: &[u8], off: u64) -> Result<()> {
        self.write_runs(data, off, "write", |v, d, o| v.write_at(d, o))?;
        crate::fsops::record!(crate::fsops::trace::Event::Write(self.inode.path.clone(), off, data.to_vec()));
        Ok(())
    }

    /// Reads into `buf` from `off` run by run (see `Inode::over`), stopping at a short
    /// read (the end of the file).
    #[inline]
    fn read_runs(
        &self,
        buf: &mut [u8],
        off: u64,
        op: &'static str,
        read: impl Fn(&dyn crate::aops::Aops, &mut [u8], u64) -> std::io::Result<usize>,
    ) -> Result<usize> {
        let mut done = 0;
        self.inode.over(off, buf.len() as u64, None, op, |v, o, n, _| {
            let at = (o - off) as usize;
            let got = read(v, &mut buf[at..at + n as usize], o)?;
            done += got;
            Ok(got == n as usize)
        })?;
        Ok(done)
    }

    /// Writes `data` at `off` run by run, telling the other vector of a longer file.
    fn write_runs(
        &self,
        data: &[u8],
        off: u64,
        op: &'static str,
        write: impl Fn(&dyn crate::aops::Aops, &[u8], u64) -> std::io::Result<()>,
    ) -> Result<()> {
        let end = end(&self.inode.path, off, data.len() as u64)?;
        self.inode.over(off, data.len() as u64, Some(end), op, |v, o, n, other| {
            let at = (o - off) as usize;
            write(v, &data[at..at + n as usize], o)?;
            grew(other, o + n);
            Ok(true)
        })
    }

    /// Makes `off..off+len` durable: cache-line flush and fence (kernel DAX), `msync`
    /// (emulated direct) or `fdatasync` (cached), range by range if it has ranges of
    /// other modes.
    pub fn persist(&self, off: u64, len: u64) -> Result<()> {
        self.inode.over(off, len, None, "persist", |v, o, n, _| v.persist(o, n).map(|()| true))?;
        crate::fsops::record!(crate::fsops::trace::Event::Persist(self.inode.path.clone(), off, len));
        Ok(())
    }

    /// Sets `off..off+len` to zeros, extending the file if needed.
    pub fn zero_range(&self, off: u64, len: u64) -> Result<()> {
        let end = end(&self.inode.path, off, len)?;
        self.inode.over(off, len, Some(end), "zero range", |v, o, n, other| {
            v.zero_range(o, n)?;
            grew(other, o + n);
            Ok(true)
        })?;
        crate::fsops::record!(crate::fsops::trace::Event::Write(self.inode.path.clone(), off, vec![0; len as usize]));
        Ok(())
    }

    /// Truncates or extends the file. Shrinking below a live mapping guard's range is
    /// refused with [`Error::Busy`].
    pub fn set_len(&self, len: u64) -> Result<()> {
        self.inode.set_len(len)?;
        crate::fsops::record!(crate::fsops::trace::Event::SetLen(self.inode.path.clone(), len));
        Ok(())
    }

    /// Current length.
    pub fn len(&self) -> Result<u64> {
        self.inode.with("stat", |v| v.len())
    }

    /// True if the file is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Reserves blocks for `off..off+len` (`fallocate`), extending the file if needed.
    pub fn allocate(&self, off: u64, len: u64) -> Result<()> {
        let end = end(&self.inode.path, off, len)?;
        #[cfg(feature = "crash-trace")]
        let before = self.len()?;
        self.inode.over(off, len, Some(end), "allocate", |v, o, n, other| {
            v.allocate(o, n)?;
            grew(other, o + n);
            Ok(true)
        })?;
        crate::fsops::record!(crate::fsops::trace::Event::SetLen(self.inode.path.clone(), before.max(end)));
        Ok(())
    }

    /// Access-pattern advice.
    pub fn advise(&self, off: u64, len: u64, advice: Advice) -> Result<()> {
        self.inode.over(off, len, None, "advise", |v, o, n, _| v.advise(o, n, advice).map(|()| true))
    }

    /// Data and hole runs of `off..off+len`.
    pub fn extents(&self, off: u64, len: u64) -> Result<Vec<Extent>> {
        self.inode.with("query extents", |v| v.extents(off, len))
    }

    /// Reads bypassing the page cache (`O_DIRECT` in cached mode) and dynadax's DRAM
    /// cache.
    pub fn direct_read_at(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        self.read_runs(buf, off, "direct read", |v, b, o| v.direct_read_at(b, o))
    }

    /// Writes bypassing the page cache. In cached mode `off` and `data.len()` must be
    /// multiples of the page size, as `O_DIRECT` requires.
    pub fn direct_write_at(&self, data: &[u8], off: u64) -> Result<()> {
        self.write_runs(data, off, "direct write", |v, d, o| v.direct_write_at(d, o))
    }

    /// Maps `off..off+len` (inside the file) for loads and stores. While the guard
    /// lives, the file's mode cannot be switched and the file cannot shrink below it.
    pub fn map(&self, off: u64, len: usize, writable: bool) -> Result<MapGuard> {
        self.map_as(off, len, writable, false)
    }

    /// As [`File::map`], with a mapping of the guard's own (never a view of the
    /// direct vector's window), so that [`MapGuard::detach`] can end it while its
    /// addresses stay valid. For mappings whose addresses escape to code dynadax
    /// cannot stop (the Java binding's direct buffers). Costs an `mmap` and `munmap`.
    pub fn map_detachable(&self, off: u64, len: usize, writable: bool) -> Result<MapGuard> {
        self.map_as(off, len, writable, true)
    }

    fn map_as(&self, off: u64, len: usize, writable: bool, own: bool) -> Result<MapGuard> {
        let (id, map, persistence, lock) = self.inode.map(off, len, writable, own)?;
        Ok(MapGuard { inode: self.inode.clone(), id, map: Some(map), off, persistence, lock })
    }

    /// Holds the mode of `off..off+len` (`len` `None`: to the end, whatever the file
    /// grows to) without mapping it: while the [`Hold`] lives, a switch of an
    /// overlapping range is refused (or waits) as for a mapping, in this process and
    /// in every other dynadax process, and so is a shrink under it. For writers that
    /// go through the vector but need the mode to stay what they chose (the log's
    /// cached tail).
    pub fn hold(&self, off: u64, len: Option<u64>) -> Result<Hold> {
        let len = len.unwrap_or(u64::MAX - off);
        let (id, lock) = self.inode.hold(off, len)?;
        Ok(Hold { inode: self.inode.clone(), id, lock })
    }

    /// Switches the file's mode: records the physical mode and swaps the operations
    /// vector, under the ops lock's write side. Refused with [`Error::Busy`] while a
    /// mapping guard is alive (or waits, per `opts`). Its cost does not depend on the
    /// file's size. On kernel DAX the result may be pending (see [`Status::pending`]).
    /// It sets the whole file: range modes are cleared.
    pub fn set_mode(&self, mode: Mode, opts: SwitchOptions) -> Result<Status> {
        self.inode.set_mode(mode, opts)?;
        self.status()
    }

    /// Sets the mode of `off..off+len` of the file (`len` `None`: from `off` to the
    /// end, whatever the file grows to), overriding the file's own mode there, so
    /// one file can hold segments of both modes (a direct tail after cached, sealed
    /// parts). Offset and length are whole pages. Refused with [`Error::Busy`] (or
    /// waits, per `opts`) only while a mapping guard overlaps the range: mappings of
    /// the rest of the file stay alive and usable. Metadata only, whatever the range's
    /// size. The kernel decides DAX per file, so a range follows the file's backing:
    /// in a kernel-DAX file a cached range is served from dynadax's DRAM cache, in
    /// any other file a direct range is emulated (see [`RangeStatus`]). Kept in the
    /// extended attribute [`crate::RANGES_XATTR`]; file systems without user extended
    /// attributes refuse it.
    pub fn set_range_mode(&self, off: u64, len: Option<u64>, mode: Mode, opts: SwitchOptions) -> Result<Status> {
        self.inode.set_range_mode(off, len, mode, opts)?;
        self.status()
    }

    /// How a write in the file's own mode (not in a range of the other mode) is made
    /// durable now: a cache-line flush on kernel DAX (or forced), `msync`, `fdatasync`.
    pub fn persistence(&self) -> Result<Persistence> {
        self.inode.with("persistence", |v| Ok(v.persistence()))
    }

    /// The file's status now. If a kernel switch was pending and no mapping is alive,
    /// first gives the kernel the chance to apply it.
    pub fn status(&self) -> Result<Status> {
        self.inode.refresh()?;
        let i = &self.inode;
        let st = unpoison(i.ops.read());
        let persistence = st.vector.as_ref().map(|v| v.persistence().to_string());
        let ranges = match &st.range_decision {
            Some(d) => range_statuses(&st.ranges, d, |s, e| i.maps.overlapping(s, e)),
            None => Vec::new(),
        };
        Ok(Status {
            path: i.path.clone(),
            kind: Kind::File,
            physical: st.physical,
            effective: Some(st.decision.effective),
            backing: Some(st.decision.backing),
            pending: st.decision.pending,
            reason: st.decision.reason.clone(),
            flag_store: i.store,
            policy: i.policy,
            volume: i.volume_root.clone(),
            persistence,
            live_mappings: i.maps.count(),
            ranges,
            cache: st.alt.as_ref().and_then(|a| a.cache_stats()),
        })
    }

    /// Mapping guards of this file alive in this process.
    pub fn live_mappings(&self) -> usize {
        self.inode.maps.count()
    }
}

/// Tells the file's other vector, if any, that a write made the file reach `end`.
fn grew(other: Option<&dyn crate::aops::Aops>, end: u64) {
    if let Some(o) = other {
        o.note_len(end);
    }
}

/// The status of each range of `ranges`, all in the effective state `d`.
fn range_statuses(
    ranges: &crate::ranges::RangeMap,
    d: &crate::mode::Decision,
    live: impl Fn(u64, u64) -> usize,
) -> Vec<RangeStatus> {
    ranges
        .iter()
        .map(|(s, e, m)| RangeStatus {
            offset: s,
            len: (e != u64::MAX).then(|| e - s),
            physical: m,
            effective: d.effective,
            backing: d.backing,
            reason: d.reason.clone(),
            live_mappings: live(s, e),
        })
        .collect()
}

fn end(path: &Path, off: u64, len: u64) -> Result<u64> {
    off.checked_add(len).ok_or_else(|| Error::invalid(path, format!("offset {off} + length {len} overflows")))
}

/// A hold on the mode of part of a file (see [`File::hold`]): counted as a mapping by
/// switches and shrinks, here and in other processes, until dropped.
pub struct Hold {
    inode: Arc<Inode>,
    id: u64,
    lock: Arc<std::fs::File>,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold").field("path", &self.inode.path).finish()
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.inode.maps.remove(&self.lock, self.id);
    }
}

/// A live mapping of part of a file. While it lives the file's mode cannot change.
/// Dropping it unmaps, then unregisters (so a waiting switch may proceed).
pub struct MapGuard {
    inode: Arc<Inode>,
    id: u64,
    /// Always `Some` until drop, which unmaps before unregistering.
    map: Option<Mapping>,
    off: u64,
    persistence: Persistence,
    /// The descriptor the guard's cross-process lock is held through.
    lock: Arc<std::fs::File>,
}

impl std::fmt::Debug for MapGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapGuard")
            .field("path", &self.inode.path)
            .field("offset", &self.off)
            .field("len", &self.len())
            .finish()
    }
}

impl MapGuard {
    fn m(&self) -> &Mapping {
        self.map.as_ref().expect("mapping lives until drop")
    }

    /// File offset of the first mapped byte.
    pub fn offset(&self) -> u64 {
        self.off
    }

    /// Mapped length.
    pub fn len(&self) -> usize {
        self.m().len()
    }

    /// True if nothing is mapped (never: zero-length maps are refused).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Address of the first mapped byte, for callers that manage their own stores.
    pub fn as_ptr(&self) -> *mut u8 {
        self.m().as_ptr()
    }

    /// Copies mapped bytes at `at` (relative to the guard) into `buf`.
    pub fn read(&self, at: usize, buf: &mut [u8]) -> Result<()> {
        self.m().read(at, buf).ctx(&self.inode.path, "read mapping")
    }

    /// Stores `data` at `at` (relative to the guard). Not durable until [`MapGuard::persist`].
    pub fn write(&self, at: usize, data: &[u8]) -> Result<()> {
        self.m().write(at, data).ctx(&self.inode.path, "write mapping")?;
        crate::fsops::record!(crate::fsops::trace::Event::Write(
            self.inode.path.clone(),
            self.off + at as u64,
            data.to_vec()
        ));
        Ok(())
    }

    /// Stores `data` at `at` and makes it durable: non-temporal stores and a fence on
    /// a mapping persisted by cache-line flush (no flush needed), else a store and
    /// [`MapGuard::persist`].
    #[inline]
    pub fn write_persist(&self, at: usize, data: &[u8]) -> Result<()> {
        let r = match self.persistence {
            Persistence::CacheLineFlush(insn) => self.m().write_persist_nt(at, data, insn),
            _ => self.m().write(at, data).and_then(|()| self.m().msync(at, data.len())),
        };
        r.ctx(&self.inode.path, "write and persist mapping")?;
        let off = self.off + at as u64;
        crate::fsops::record!(crate::fsops::trace::Event::Write(self.inode.path.clone(), off, data.to_vec()));
        crate::fsops::record!(crate::fsops::trace::Event::Persist(self.inode.path.clone(), off, data.len() as u64));
        let _ = off;
        Ok(())
    }

    /// Makes `at..at+n` durable: cache-line flush and fence on a `MAP_SYNC` mapping,
    /// `msync` otherwise.
    pub fn persist(&self, at: usize, n: usize) -> Result<()> {
        let r = match self.persistence {
            Persistence::CacheLineFlush(insn) => self.m().flush(at, n, insn),
            _ => self.m().msync(at, n),
        };
        r.ctx(&self.inode.path, "persist mapping")?;
        crate::fsops::record!(crate::fsops::trace::Event::Persist(
            self.inode.path.clone(),
            self.off + at as u64,
            n as u64
        ));
        Ok(())
    }

    /// Faults `at..at+n` of the mapping in, writable, now (`MADV_POPULATE_WRITE`; a
    /// read-ahead hint on kernels before 5.14), so later stores there take no page
    /// fault.
    pub fn populate(&self, at: usize, n: usize) -> Result<()> {
        let m = self.m();
        match m.advise(at, n, rustix::mm::Advice::LinuxPopulateWrite) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => m.advise(at, n, rustix::mm::Advice::WillNeed),
            r => r,
        }
        .ctx(&self.inode.path, "populate mapping")
    }

    /// How [`MapGuard::persist`] works for this mapping.
    pub fn persistence(&self) -> Persistence {
        self.persistence
    }

    /// Ends the guard as a drop does (the file's mode may switch, in this process
    /// and others), but leaves the mapped addresses valid: private zero pages replace
    /// the file's, owned by the returned [`Detached`] until it drops. The file's pages
    /// are no longer reachable through these addresses. Only for guards made by
    /// [`File::map_detachable`]; any other, or a detach the kernel refuses (no memory
    /// for the zero pages), is handed back, still mapped, with the error.
    #[allow(clippy::result_large_err)]
    pub fn detach(mut self) -> std::result::Result<Detached, (MapGuard, Error)> {
        let map = self.map.take().expect("mapping lives until drop");
        match map.into_placeholder() {
            // `self` drops here: unregistered like any guard, with nothing to unmap.
            Ok(placeholder) => Ok(Detached { placeholder }),
            Err((map, e)) => {
                self.map = Some(map);
                let e = Error::io(&self.inode.path, "detach mapping (made by File::map_detachable?)", e);
                Err((self, e))
            }
        }
    }
}

/// The addresses of a detached mapping guard ([`MapGuard::detach`]): private zero
/// pages, unmapped when this drops.
#[derive(Debug)]
pub struct Detached {
    placeholder: crate::sys::Placeholder,
}

impl Detached {
    /// First byte of the range (page aligned: the guard's first byte, rounded down).
    pub fn as_ptr(&self) -> *mut u8 {
        self.placeholder.as_ptr()
    }

    /// Bytes in the range.
    pub fn len(&self) -> usize {
        self.placeholder.len()
    }

    /// Never true.
    pub fn is_empty(&self) -> bool {
        self.placeholder.is_empty()
    }
}

impl Drop for MapGuard {
    fn drop(&mut self) {
        let map = self.map.take();
        if self.inode.kernel_switches() {
            // The kernel re-decides DAX only once nothing maps the file: unmap first.
            drop(map);
            self.inode.maps.remove(&self.lock, self.id);
        } else {
            // Nothing can use the mapping once the guard is gone, so the switch may
            // proceed now; tearing down the page tables of a large populated mapping
            // costs time in proportion to its pages and happens off this thread.
            self.inode.maps.remove(&self.lock, self.id);
            crate::inode::retire(Box::new(map));
        }
    }
}

/// Status of a file or directory. A file open in this process reports its live
/// inode; otherwise the state is computed as opening it would, without mapping it.
pub fn stat(path: impl AsRef<Path>) -> Result<Status> {
    let path = path.as_ref();
    let meta = fs::metadata(path).ctx(path, "stat")?;
    if meta.is_file() {
        if let Some(inode) = Inode::cached(path) {
            return File { inode }.status();
        }
    } else if !meta.is_dir() {
        return Err(Error::invalid(path, "not a regular file or directory"));
    }
    let f = fs::File::open(path).ctx(path, "open")?;
    let fsi = fs_info(path, meta.dev());
    let store = FlagStore::for_fs(&fsi, f.as_fd());
    let volume = Volume::of(path)?;
    let physical = store.get(path, f.as_fd(), meta.is_dir())?;
    let base = Status {
        path: path.to_path_buf(),
        kind: Kind::Directory,
        physical,
        effective: None,
        backing: None,
        pending: false,
        reason: format!("directories have no effective mode; new children inherit physical {physical}"),
        flag_store: store,
        policy: volume.policy(),
        volume: volume.root().map(Path::to_path_buf),
        persistence: None,
        live_mappings: 0,
        ranges: Vec::new(),
        cache: None,
    };
    if meta.is_dir() {
        return Ok(base);
    }
    let d = decide(volume.policy(), physical, &crate::inode::kernel_view(&fsi, &f));
    let persistence = match d.backing {
        Backing::KernelDax => crate::Persistence::CacheLineFlush(sys::FlushInsn::detect()),
        Backing::Emulated => crate::Persistence::Msync,
        Backing::PageCache | Backing::DramCache => crate::Persistence::Fdatasync,
    };
    let mut ranges = store.get_ranges(path, f.as_fd())?;
    ranges.normalize(physical);
    let other = if physical == Mode::Direct { Mode::Cached } else { Mode::Direct };
    let rd = crate::mode::decide_range(volume.policy(), other, &d);
    Ok(Status {
        kind: Kind::File,
        effective: Some(d.effective),
        backing: Some(d.backing),
        pending: d.pending,
        reason: d.reason,
        persistence: Some(persistence.to_string()),
        ranges: range_statuses(&ranges, &rd, |_, _| 0),
        ..base
    })
}

/// Sets the physical mode of a file or directory. On a directory it changes what new
/// children inherit, never the existing children. On a file it is [`File::set_mode`].
pub fn set_mode(path: impl AsRef<Path>, mode: Mode, opts: SwitchOptions) -> Result<Status> {
    let path = path.as_ref();
    let meta = fs::metadata(path).ctx(path, "stat")?;
    if meta.is_file() {
        return File::open(path)?.set_mode(mode, opts);
    }
    if !meta.is_dir() {
        return Err(Error::invalid(path, "not a regular file or directory"));
    }
    let d = fs::File::open(path).ctx(path, "open")?;
    let store = FlagStore::for_fs(&fs_info(path, meta.dev()), d.as_fd());
    store.set(path, d.as_fd(), true, mode)?;
    stat(path)
}

/// Creates a directory that inherits its parent's physical mode.
pub fn create_dir(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    fs::create_dir(path).ctx(path, "create directory")?;
    let d = fs::File::open(path).ctx(path, "open")?;
    inherit(path, &d, true)
}

/// Copies the parent's physical mode to a just-created `path` when the store is not
/// the kernel's (the kernel already did it for `fs-xflag`).
fn inherit(path: &Path, f: &fs::File, is_dir: bool) -> Result<()> {
    let meta = f.metadata().ctx(path, "stat")?;
    let store = FlagStore::for_fs(&fs_info(path, meta.dev()), f.as_fd());
    if store == FlagStore::FsXflag {
        return Ok(());
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let pd = fs::File::open(parent).ctx(parent, "open parent directory")?;
    if store.get(parent, pd.as_fd(), true)? == Mode::Direct {
        store.set(path, f.as_fd(), is_dir, Mode::Direct)?;
    }
    Ok(())
}
