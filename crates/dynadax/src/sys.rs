//! The one fenced place for `unsafe` code and raw kernel interfaces.
//!
//! Everything the rest of the crate needs from the kernel that is not already a safe
//! call in `std` or `rustix` lives here: the `FS_IOC_FS[GS]ETXATTR` ioctls, shared
//! mappings (with `MAP_SYNC` when the file is kernel DAX), CPU cache-line flushes
//! and fences, and page-aligned buffers for `O_DIRECT`.
//!
//! ## Safety model for mappings
//!
//! A [`Mapping`] is raw shared memory backed by a file. Two hazards exist, and the
//! callers (the operations vectors and the mapping guard) are what rule them out:
//!
//! * **SIGBUS**: touching a mapped page that lies beyond the file's end kills the
//!   process. Every access here is bounds-checked against the mapping, and the
//!   callers keep the *file* at least as long as the bytes they touch (the inode's
//!   ops lock makes shrinking exclusive; shrinking under a live mapping guard is
//!   refused). Another process truncating the file behind dynadax's back breaks this,
//!   which is why creating a mapping is `unsafe` (the same contract as `memmap2`).
//! * **Concurrent writers**: two threads writing the same bytes at once race, as two
//!   `pwrite`s of the same range race. Copies go through raw pointers, never through
//!   `&mut [u8]`, so no Rust reference ever claims exclusive access to shared memory.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::ptr::{self, NonNull};

/// `FS_XFLAG_DAX` from `include/uapi/linux/fs.h`: "use DAX for IO".
pub const FS_XFLAG_DAX: u32 = 0x0000_8000;
/// `STATX_ATTR_DAX` from `include/uapi/linux/stat.h` (0x2000 on 5.8/5.9 was a bug:
/// it collided with `STATX_ATTR_MOUNT_ROOT`; we accept only the fixed value).
pub const STATX_ATTR_DAX: u64 = 0x0020_0000;

/// `struct fsxattr` from `include/uapi/linux/fs.h`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct FsXattr {
    fsx_xflags: u32,
    fsx_extsize: u32,
    fsx_nextents: u32,
    fsx_projid: u32,
    fsx_cowextsize: u32,
    fsx_pad: [u8; 8],
}

// _IOR('X', 31, struct fsxattr) and _IOW('X', 32, struct fsxattr); the struct is 28 bytes.
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;
const _: () = assert!(std::mem::size_of::<FsXattr>() == 28);

fn get_fsxattr(fd: BorrowedFd<'_>) -> io::Result<FsXattr> {
    let mut attr = FsXattr::default();
    // SAFETY: `fd` is a live descriptor for the borrow's duration, and `attr` is a
    // properly sized and aligned `struct fsxattr` the kernel writes into.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSGETXATTR, &mut attr as *mut FsXattr) };
    if rc == 0 {
        Ok(attr)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The kernel's persistent per-inode flags (`fsx_xflags`), as `xfs_io -c lsattr` shows them.
pub fn get_xflags(fd: BorrowedFd<'_>) -> io::Result<u32> {
    get_fsxattr(fd).map(|a| a.fsx_xflags)
}

/// Sets or clears `FS_XFLAG_DAX`, keeping every other field as the kernel reported it
/// (a read-modify-write, as `xfs_io -c 'chattr +x'` does).
pub fn set_xflag_dax(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let mut attr = get_fsxattr(fd)?;
    let want = if on { attr.fsx_xflags | FS_XFLAG_DAX } else { attr.fsx_xflags & !FS_XFLAG_DAX };
    if want == attr.fsx_xflags {
        return Ok(()); // Nothing to change: avoid touching ctime.
    }
    attr.fsx_xflags = want;
    // SAFETY: as in `get_fsxattr`; the kernel only reads `attr`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSSETXATTR, &attr as *const FsXattr) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A byte-range lock of an open file description (`F_OFD_SETLK`): it belongs to the
/// open file, not the process, so it excludes other opens of the file in this process
/// as in others, and the kernel drops it when the file's last descriptor closes, a
/// `kill -9` included: a dead holder can never leave one behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeLock {
    /// Many holders at once (`F_RDLCK`).
    Shared,
    /// One holder (`F_WRLCK`).
    Exclusive,
}

fn flock_of(kind: Option<RangeLock>, off: u64, len: u64) -> libc::flock {
    // SAFETY: `flock` is a plain C struct; all zeros is a valid value.
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = match kind {
        Some(RangeLock::Shared) => libc::F_RDLCK,
        Some(RangeLock::Exclusive) => libc::F_WRLCK,
        None => libc::F_UNLCK,
    } as libc::c_short;
    l.l_whence = libc::SEEK_SET as libc::c_short;
    l.l_start = off as libc::off_t;
    l.l_len = len as libc::off_t;
    l
}

/// Takes (`Some(kind)`) or drops (`None`) the lock of `off..off+len` without waiting;
/// `false` if another open file description holds a conflicting one.
pub fn ofd_lock(fd: BorrowedFd<'_>, kind: Option<RangeLock>, off: u64, len: u64) -> io::Result<bool> {
    let l = flock_of(kind, off, len);
    // SAFETY: `l` is a valid `struct flock` the kernel only reads; `l_pid` is 0 as
    // `F_OFD_SETLK` requires.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &l as *const libc::flock) };
    if rc == 0 {
        return Ok(true);
    }
    match io::Error::last_os_error() {
        e if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
        e => Err(e),
    }
}

/// Whether another open file description holds a lock over `off..off+len` that
/// conflicts with taking `kind` there (`F_OFD_GETLK`).
pub fn ofd_conflict(fd: BorrowedFd<'_>, kind: RangeLock, off: u64, len: u64) -> io::Result<bool> {
    let mut l = flock_of(Some(kind), off, len);
    // SAFETY: `l` is a valid `struct flock` the kernel reads and overwrites in place.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut l as *mut libc::flock) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(l.l_type != libc::F_UNLCK as libc::c_short)
}

/// The system page size.
pub fn page_size() -> usize {
    rustix::param::page_size()
}

/// How a mapping is made: plain shared, or shared-validate with `MAP_SYNC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKind {
    /// `MAP_SHARED`: page cache (or kernel DAX without the synchronous-fault promise).
    Shared,
    /// `MAP_SHARED_VALIDATE | MAP_SYNC`: kernel DAX with synchronous page faults, so a
    /// cache-line flush and fence persist stores with no system call.
    Sync,
}

/// Mappings of at least this size start on a multiple of it, so the kernel can map
/// them with 2 MiB page-table entries (PMD faults on DAX, transparent huge pages):
/// fewer faults, fewer TLB misses, and 512 times fewer entries to tear down.
const HUGE: usize = 2 << 20;

/// Maps `len` bytes of `fd` at file offset `off` at an address aligned to `HUGE`, by
/// reserving `len + HUGE` bytes of address space and mapping the file over the
/// aligned part of it (as PMDK does).
///
/// # Safety
///
/// As [`Mapping::new`].
unsafe fn map_huge_aligned(
    fd: BorrowedFd<'_>,
    off: u64,
    len: usize,
    prot: rustix::mm::ProtFlags,
    flags: rustix::mm::MapFlags,
) -> io::Result<*mut std::ffi::c_void> {
    use rustix::mm::{MapFlags, ProtFlags};
    let span = len + HUGE;
    // SAFETY: an inaccessible anonymous reservation at a kernel-chosen address.
    let base = unsafe {
        rustix::mm::mmap_anonymous(ptr::null_mut(), span, ProtFlags::empty(), MapFlags::PRIVATE | MapFlags::NORESERVE)
    }?;
    let start = (base as usize).div_ceil(HUGE) * HUGE;
    let head = start - base as usize;
    // SAFETY: `start..start+len` lies inside the reservation just made, which nothing
    // else uses; MAP_FIXED replaces that part of it with the file mapping.
    let mapped = unsafe { rustix::mm::mmap(start as *mut _, len, prot, flags | MapFlags::FIXED, fd, off) };
    // SAFETY (both unmaps): sub-ranges of our own reservation outside the file mapping.
    unsafe {
        match mapped {
            Ok(_) => {
                if head > 0 {
                    let _ = rustix::mm::munmap(base, head);
                }
                let tail = span - head - len;
                if tail > 0 {
                    let _ = rustix::mm::munmap((start + len) as *mut _, tail);
                }
                Ok(start as *mut _)
            }
            Err(e) => {
                let _ = rustix::mm::munmap(base, span);
                Err(e.into())
            }
        }
    }
}

/// A shared mapping of part of a file. Unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    /// Length of the whole mapping in bytes (page-aligned start, so `offset_in_page`
    /// bytes precede the first byte the caller asked for).
    map_len: usize,
    offset_in_page: usize,
    len: usize,
    writable: bool,
    /// For a view into another mapping ([`Mapping::view`]): that mapping, kept alive
    /// (mapped) by the view, which is never unmapped itself.
    owner: Option<std::sync::Arc<Mapping>>,
}

// SAFETY: a `Mapping` is an address range owned by this value (or, for a view, by
// the mapping it holds alive); all accesses copy
// through raw pointers (see the module docs), so sharing it between threads is as
// safe as sharing a file descriptor used with pread/pwrite.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` methods never create Rust references into the memory.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` starting at `offset` (any offset: it is rounded down to
    /// a page and the difference hidden). `len` may exceed the file's current length
    /// (a window the file can grow into); touching those bytes before the file grows
    /// raises SIGBUS, so callers bound every access by the file's length.
    ///
    /// # Safety
    ///
    /// While the mapping lives, the caller must not let the file shrink below any byte
    /// it then accesses through this mapping, and must accept that other writers of
    /// the file (threads, processes) can change the bytes at any time.
    ///
    /// # Errors
    ///
    /// The `mmap` error; `EOPNOTSUPP` for [`MapKind::Sync`] when the file is not
    /// effectively DAX (or the device is not synchronous), `EINVAL` on kernels older
    /// than 4.15.
    pub unsafe fn new(
        fd: BorrowedFd<'_>,
        offset: u64,
        len: usize,
        writable: bool,
        kind: MapKind,
    ) -> io::Result<Mapping> {
        use rustix::mm::{MapFlags, ProtFlags};
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot map zero bytes"));
        }
        let page = page_size() as u64;
        let aligned = offset - offset % page;
        let offset_in_page = (offset - aligned) as usize;
        let map_len = len
            .checked_add(offset_in_page)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mapping too large"))?;
        let prot = if writable { ProtFlags::READ | ProtFlags::WRITE } else { ProtFlags::READ };
        let flags = match kind {
            MapKind::Shared => MapFlags::SHARED,
            MapKind::Sync => MapFlags::SHARED_VALIDATE | MapFlags::SYNC,
        };
        let raw = if map_len >= HUGE && aligned % HUGE as u64 == 0 {
            // SAFETY: as below; the address is one this function reserved.
            unsafe { map_huge_aligned(fd, aligned, map_len, prot, flags) }?
        } else {
            // SAFETY: a fresh mapping at a kernel-chosen address aliases no Rust
            // object; the file-length contract is the caller's (see `# Safety`).
            unsafe { rustix::mm::mmap(ptr::null_mut(), map_len, prot, flags, fd, aligned) }?
        };
        let ptr = NonNull::new(raw.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, map_len, offset_in_page, len, writable, owner: None })
    }

    /// A view of `len` bytes at `at` of `owner`: the same memory, with no new mapping
    /// made (so no `mmap` now and no `munmap` when it drops), kept mapped for as long as
    /// the view lives, whatever becomes of the owner's other holders. Writable only if
    /// `owner` is. The owner's `# Safety` contract covers the view's accesses.
    pub fn view(owner: &std::sync::Arc<Mapping>, at: usize, len: usize, writable: bool) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot map zero bytes"));
        }
        owner.check(at, len)?;
        if writable && !owner.writable {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "mapping is read-only"));
        }
        let page = page_size();
        // From the owner's page-aligned start.
        let start = owner.offset_in_page + at;
        let offset_in_page = start % page;
        // SAFETY: `start - offset_in_page <= start < owner.map_len` (bounds checked
        // above), so the address lies inside the owner's mapping.
        let ptr = unsafe { owner.ptr.as_ptr().add(start - offset_in_page) };
        Ok(Mapping {
            ptr: NonNull::new(ptr).ok_or_else(|| io::Error::other("null view"))?,
            map_len: offset_in_page + len,
            offset_in_page,
            len,
            writable,
            owner: Some(owner.clone()),
        })
    }

    /// Bytes the caller asked to map.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Address of the first requested byte.
    pub fn as_ptr(&self) -> *mut u8 {
        // SAFETY: `offset_in_page < page size <= map_len`, so the result stays inside
        // the mapping.
        unsafe { self.ptr.as_ptr().add(self.offset_in_page) }
    }

    fn check(&self, at: usize, n: usize) -> io::Result<()> {
        match at.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("range {at}+{n} outside mapping of {} bytes", self.len),
            )),
        }
    }

    /// Copies `buf.len()` bytes from the mapping at `at` into `buf`.
    pub fn read(&self, at: usize, buf: &mut [u8]) -> io::Result<()> {
        self.check(at, buf.len())?;
        // SAFETY: the range was bounds-checked against the mapping; the file-length
        // contract was accepted at `new`; `buf` is a distinct Rust allocation.
        unsafe { ptr::copy_nonoverlapping(self.as_ptr().add(at), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into the mapping at `at`.
    pub fn write(&self, at: usize, data: &[u8]) -> io::Result<()> {
        self.writable_or_err()?;
        self.check(at, data.len())?;
        // SAFETY: bounds-checked, writable mapping; see `read`.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), self.as_ptr().add(at), data.len()) };
        Ok(())
    }

    /// Sets `n` bytes at `at` to zero.
    pub fn zero(&self, at: usize, n: usize) -> io::Result<()> {
        self.writable_or_err()?;
        self.check(at, n)?;
        // SAFETY: bounds-checked, writable mapping.
        unsafe { ptr::write_bytes(self.as_ptr().add(at), 0, n) };
        Ok(())
    }

    fn writable_or_err(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::PermissionDenied, "mapping is read-only"))
        }
    }

    /// Page-aligned (address, length) covering `at..at+n` of this mapping.
    fn page_span(&self, at: usize, n: usize) -> io::Result<(*mut u8, usize)> {
        self.check(at, n)?;
        let page = page_size();
        let start = self.offset_in_page + at;
        let aligned = start - start % page;
        let end = self.offset_in_page + at + n;
        // SAFETY: `aligned <= start < map_len`, inside the mapping.
        Ok((unsafe { self.ptr.as_ptr().add(aligned) }, end - aligned))
    }

    /// Writes back `at..at+n` with `msync(MS_SYNC)`: the persistence of a page-cache
    /// mapping (PMDK's "page" granularity).
    pub fn msync(&self, at: usize, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let (addr, len) = self.page_span(at, n)?;
        // SAFETY: `addr..addr+len` is a page-aligned sub-range of this live mapping.
        unsafe { rustix::mm::msync(addr.cast(), len, rustix::mm::MsyncFlags::SYNC) }?;
        Ok(())
    }

    /// Flushes the CPU cache lines covering `at..at+n` with `insn`, then fences: the
    /// persistence of a `MAP_SYNC` mapping (PMDK's "cache line" granularity).
    pub fn flush(&self, at: usize, n: usize, insn: FlushInsn) -> io::Result<()> {
        self.check(at, n)?;
        // SAFETY: bounds-checked range of this live mapping.
        unsafe { flush_range(self.as_ptr().add(at), n, insn) };
        Ok(())
    }

    /// Copies `data` to `at` and makes it durable in one step: non-temporal 8-byte
    /// stores (`movnti`, which bypass the CPU caches) and a fence, as PMDK's
    /// `memcpy_persist` does for copies of 256 bytes and more; no cache-line flush is
    /// needed. Falls back to a copy and `flush` when `at` or the length is not a
    /// multiple of 8. Only for mappings persisted by cache-line flush.
    #[inline]
    pub fn write_persist_nt(&self, at: usize, data: &[u8], insn: FlushInsn) -> io::Result<()> {
        self.writable_or_err()?;
        self.check(at, data.len())?;
        #[cfg(target_arch = "x86_64")]
        {
            let dst = self.as_ptr().wrapping_add(at);
            if dst as usize % 8 == 0 && data.len() % 8 == 0 {
                for k in 0..data.len() / 8 {
                    // SAFETY: `dst + 8k .. +8` is inside the checked range and 8-aligned;
                    // the source read is in bounds of `data` (unaligned read allowed).
                    unsafe {
                        let word = ptr::read_unaligned(data.as_ptr().add(8 * k).cast::<i64>());
                        std::arch::x86_64::_mm_stream_si64(dst.add(8 * k).cast::<i64>(), word);
                    }
                }
                fence();
                return Ok(());
            }
        }
        self.write(at, data)?;
        self.flush(at, data.len(), insn)
    }

    /// `madvise` over `at..at+n`.
    pub fn advise(&self, at: usize, n: usize, advice: rustix::mm::Advice) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let (addr, len) = self.page_span(at, n)?;
        // SAFETY: page-aligned sub-range of this live mapping; advice never unmaps.
        unsafe { rustix::mm::madvise(addr.cast(), len, advice) }?;
        Ok(())
    }
}

impl Mapping {
    /// The 8 bytes at `at` (8-aligned) as an atomic shared with every process that maps
    /// the same file.
    #[inline]
    pub fn atomic_u64(&self, at: usize) -> io::Result<&std::sync::atomic::AtomicU64> {
        self.atomic_at(at)
    }

    /// As [`Mapping::atomic_u64`], for 4 bytes (a futex word).
    #[inline]
    pub fn atomic_u32(&self, at: usize) -> io::Result<&std::sync::atomic::AtomicU32> {
        self.atomic_at(at)
    }

    /// The bytes at `at` as the atomic integer type `A` (only instantiated with
    /// `AtomicU32` and `AtomicU64`, whose layout is that of the plain integer).
    fn atomic_at<A>(&self, at: usize) -> io::Result<&A> {
        let n = std::mem::size_of::<A>();
        self.check(at, n)?;
        let p = self.as_ptr().wrapping_add(at);
        if p as usize % n != 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "unaligned atomic"));
        }
        // SAFETY: in bounds and aligned to the type's size (checked); `A` is an atomic
        // integer with the layout of the plain integer; the mapping outlives the
        // borrow; every access to these bytes, in this and other processes, is atomic.
        Ok(unsafe { &*(p as *const A) })
    }
}

impl Mapping {
    /// Ends the file mapping but keeps its addresses: one `mmap(MAP_FIXED)` puts
    /// private anonymous zero pages where the file's pages were, atomically (at no
    /// moment is the range free for another mapping to take), and the returned
    /// [`Placeholder`] owns the range until it drops. For memory handed to code that
    /// cannot be stopped from touching it (a Java direct buffer): a late access reads
    /// zeros or writes to nothing instead of faulting or reaching another mapping.
    /// A view cannot be replaced (its memory is its owner's); it is handed back.
    pub fn into_placeholder(self) -> Result<Placeholder, (Mapping, io::Error)> {
        use rustix::mm::{MapFlags, ProtFlags};
        if self.owner.is_some() {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "a view of a shared mapping cannot be replaced");
            return Err((self, e));
        }
        // SAFETY: `ptr..ptr+map_len` is exactly the range this mapping owns (see
        // `Drop`), and nothing holds a Rust reference into it; MAP_FIXED replaces it
        // as a whole, and ownership of the range passes to the placeholder.
        let r = unsafe {
            rustix::mm::mmap_anonymous(
                self.ptr.as_ptr().cast(),
                self.map_len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::FIXED | MapFlags::NORESERVE,
            )
        };
        match r {
            Ok(_) => {
                let p = Placeholder { ptr: self.ptr, len: self.map_len };
                std::mem::forget(self);
                Ok(p)
            }
            Err(e) => Err((self, e.into())),
        }
    }
}

/// Private anonymous memory at the addresses of a former file mapping
/// ([`Mapping::into_placeholder`]), unmapped when it drops.
#[derive(Debug)]
pub struct Placeholder {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the placeholder only owns an address range; it never reads or writes it.
unsafe impl Send for Placeholder {}
// SAFETY: as above.
unsafe impl Sync for Placeholder {}

impl Placeholder {
    /// First byte of the range (the former mapping's page-aligned start).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the range in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: mappings are never empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Placeholder {
    fn drop(&mut self) {
        // SAFETY: the range the placeholder owns, unmapped once.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A read-only shared mapping of `0..len` of a file whose bytes do not change while
/// it lives, so that they may be lent out as `&[u8]` (zero-copy reads of the log's
/// sealed segments: `log/view.rs` says why theirs do not change).
#[derive(Debug)]
pub struct FrozenMap {
    map: Mapping,
}

impl FrozenMap {
    /// Maps `0..len` of `fd` for reading.
    ///
    /// # Safety
    ///
    /// For as long as the returned value lives, nothing may write `0..len` of the file
    /// (through any descriptor or mapping, in any process) nor shrink the file below
    /// `len`: [`FrozenMap::bytes`] hands out shared references into that memory, which
    /// Rust requires to stay unchanged, and a page past the file's end is SIGBUS.
    pub unsafe fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<FrozenMap> {
        // SAFETY: read-only; the caller upholds the no-write, no-shrink contract, which
        // is stronger than `Mapping::new`'s.
        let map = unsafe { Mapping::new(fd, 0, len, false, MapKind::Shared) }?;
        Ok(FrozenMap { map })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `as_ptr()..+len` is this live mapping, readable; the bytes do not
        // change while `self` lives (the contract of `new`), so a shared reference for
        // `self`'s lifetime is sound.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.map.len()) }
    }

    /// Faults `at..at+n` in with `MADV_POPULATE_READ` (Linux 5.14): a page that cannot
    /// be read (an I/O error, a media error) is this call's error rather than a SIGBUS
    /// when the bytes are touched. `Ok(false)` where the kernel lacks it.
    pub fn populate(&self, at: usize, n: usize) -> io::Result<bool> {
        match self.map.advise(at, n, rustix::mm::Advice::LinuxPopulateRead) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.owner.is_some() {
            return; // A view: the owner unmaps, once its last holder goes.
        }
        // SAFETY: `ptr..ptr+map_len` is exactly the range `mmap` returned, unmapped once.
        // Failure is impossible for a valid range; nothing useful to do if it happens.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.map_len) };
    }
}

/// The cache-line write-back instruction used for persistence, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushInsn {
    /// `clwb`: writes the line back and may keep it cached.
    Clwb,
    /// `clflushopt`: writes back and evicts, weakly ordered.
    Clflushopt,
    /// `clflush`: writes back and evicts, strongly ordered (slow).
    Clflush,
    /// No cache-line flush instruction on this CPU: persistence falls back to `msync`.
    None,
}

impl FlushInsn {
    /// Detects the best instruction with `cpuid` (leaf 7 EBX bit 24 `clwb`, bit 23
    /// `clflushopt`; leaf 1 EDX bit 19 `clflush`), as PMDK does.
    pub fn detect() -> FlushInsn {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{__cpuid, __cpuid_count};
            // cpuid is always present on x86_64.
            let max_leaf = __cpuid(0).eax;
            if max_leaf >= 7 {
                let ebx = __cpuid_count(7, 0).ebx;
                if ebx & (1 << 24) != 0 {
                    return FlushInsn::Clwb;
                }
                if ebx & (1 << 23) != 0 {
                    return FlushInsn::Clflushopt;
                }
            }
            if __cpuid(1).edx & (1 << 19) != 0 {
                return FlushInsn::Clflush;
            }
        }
        FlushInsn::None
    }

    /// Name as printed by `probe`.
    pub fn name(self) -> &'static str {
        match self {
            FlushInsn::Clwb => "clwb",
            FlushInsn::Clflushopt => "clflushopt",
            FlushInsn::Clflush => "clflush",
            FlushInsn::None => "none",
        }
    }
}

/// Cache-line size assumed for flushing (x86_64).
pub const CACHE_LINE: usize = 64;

/// Writes back every cache line overlapping `addr..addr+len`, then fences so the
/// write-backs complete before any later store.
///
/// # Safety
///
/// `addr..addr+len` must be mapped memory (flushing faults on unmapped addresses).
pub unsafe fn flush_range(addr: *const u8, len: usize, insn: FlushInsn) {
    if len == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let start = addr as usize & !(CACHE_LINE - 1);
        let end = addr as usize + len;
        let mut line = start;
        while line < end {
            // SAFETY: `line` lies within a cache line that overlaps the caller's mapped
            // range, and flushing only writes back, it never changes memory contents.
            unsafe {
                match insn {
                    FlushInsn::Clwb => {
                        std::arch::asm!("clwb [{0}]", in(reg) line, options(nostack, preserves_flags))
                    }
                    FlushInsn::Clflushopt => {
                        std::arch::asm!("clflushopt [{0}]", in(reg) line, options(nostack, preserves_flags))
                    }
                    FlushInsn::Clflush | FlushInsn::None => {
                        std::arch::asm!("clflush [{0}]", in(reg) line, options(nostack, preserves_flags))
                    }
                }
            }
            line += CACHE_LINE;
        }
        fence();
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (addr, insn);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// Store fence: orders earlier cache-line write-backs before later stores.
pub fn fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` has no memory-safety preconditions; SSE is baseline on x86_64.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
    #[cfg(not(target_arch = "x86_64"))]
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

/// A zeroed heap buffer aligned for `O_DIRECT` (page size, which satisfies every
/// logical block size up to 4 KiB).
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    /// A buffer of `len` bytes (rounded up to the alignment), zero-filled.
    pub fn new(len: usize) -> AlignedBuf {
        let align = page_size();
        let size = len.max(1).div_ceil(align) * align;
        let layout = std::alloc::Layout::from_size_align(size, align).expect("page-size layout is valid");
        // SAFETY: `layout` has non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, layout }
    }

    /// The whole buffer.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` owns `layout.size()` initialised (zeroed) bytes, uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this exact layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Does this descriptor's file system accept user extended attributes? Reads only.
pub fn user_xattrs_supported<Fd: AsFd>(fd: Fd) -> bool {
    let mut buf = [0u8; 16];
    match rustix::fs::fgetxattr(fd, "user.dynadax.probe", &mut buf) {
        Ok(_) => true,
        Err(e) => e != rustix::io::Errno::NOTSUP && e != rustix::io::Errno::OPNOTSUPP,
    }
}

/// No lock at all, with the ops lock's API: for `benches/ops_lock.rs` to measure the
/// lock's cost against the same code without it (feature `bench-no-lock`).
#[cfg(feature = "bench-no-lock")]
pub struct NoLock<T>(std::cell::UnsafeCell<T>);

// SAFETY: none in general. The `bench-no-lock` feature exists only for a benchmark in
// which no thread ever takes the write side while others read.
#[cfg(feature = "bench-no-lock")]
unsafe impl<T: Send + Sync> Sync for NoLock<T> {}

#[cfg(feature = "bench-no-lock")]
impl<T> NoLock<T> {
    pub fn new(v: T) -> Self {
        NoLock(std::cell::UnsafeCell::new(v))
    }
    pub fn read(&self) -> std::sync::LockResult<NoLockGuard<'_, T>> {
        Ok(NoLockGuard(self))
    }
    pub fn write(&self) -> std::sync::LockResult<NoLockGuard<'_, T>> {
        Ok(NoLockGuard(self))
    }
    pub fn get_mut(&mut self) -> std::sync::LockResult<&mut T> {
        Ok(self.0.get_mut())
    }
}

/// What `NoLock` hands out for both sides.
#[cfg(feature = "bench-no-lock")]
pub struct NoLockGuard<'a, T>(&'a NoLock<T>);

// An explicit (empty) release, so code that drops a guard reads the same as with a lock.
#[cfg(feature = "bench-no-lock")]
impl<T> Drop for NoLockGuard<'_, T> {
    fn drop(&mut self) {}
}

#[cfg(feature = "bench-no-lock")]
impl<T> std::ops::Deref for NoLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: see the `Sync` impl: the benchmark never writes while reading.
        unsafe { &*self.0 .0.get() }
    }
}

#[cfg(feature = "bench-no-lock")]
impl<T> std::ops::DerefMut for NoLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above; writes happen only before the readers start.
        unsafe { &mut *self.0 .0.get() }
    }
}

// ---------------------------------------------------------------------------------
// CRC32C of a record, at low latency
//
// A log record's CRC sits on the append path, between the caller and the persist:
// its latency, not its throughput, is what an append waits for. The `crc32c` crate
// runs one dependent chain of `crc32` instructions (3 cycles each) for inputs under
// 768 bytes; here inputs up to 3 x MAX_LANE bytes run as three independent chains
// whose results are joined by carry-less multiplication, about 2.5x sooner at 256
// bytes. Larger inputs, and CPUs without SSE4.2 and PCLMULQDQ, use the crate.

/// Longest lane of the three-chain path, in 8-byte words (larger inputs use the crate,
/// whose own three-chain path starts at 768 bytes).
const CRC_MAX_LANE_WORDS: usize = 128;

/// CRC32C's reflected polynomial.
const CRC32C_POLY: u32 = 0x82F6_3B78;

/// `x^e mod P` in the CRC's reflected bit order (bit `i` is the coefficient of
/// `x^(31-i)`): repeated multiplication by `x`, which is a right shift with reduction.
fn crc_xpow_from(mut v: u32, e: u32) -> u32 {
    for _ in 0..e {
        v = (v >> 1) ^ if v & 1 != 0 { CRC32C_POLY } else { 0 };
    }
    v
}

/// `SHIFT[w]` = `x^(64w - 33) mod P`: multiplying a CRC state by it (carry-less, then
/// one `crc32` of the 64-bit product, which multiplies by `x^33` and reduces) advances
/// the state over `w` words of zeros, so lanes computed apart can be joined.
fn crc_shift_table() -> &'static [u32; 2 * CRC_MAX_LANE_WORDS + 1] {
    static T: std::sync::OnceLock<[u32; 2 * CRC_MAX_LANE_WORDS + 1]> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let mut t = [0u32; 2 * CRC_MAX_LANE_WORDS + 1];
        // w = 1: x^31, i.e. bit 0; then each further word multiplies by x^64.
        t[1] = 1;
        for w in 2..t.len() {
            t[w] = crc_xpow_from(t[w - 1], 64);
        }
        t
    })
}

/// Whether the three-chain path can run on this CPU (checked once).
fn crc_fast_cpu() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *OK.get_or_init(|| is_x86_feature_detected!("sse4.2") && is_x86_feature_detected!("pclmulqdq"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The CRC32C of a record frame's covered fields, as the record format orders them:
/// the LSN's (8) and length's (4) little-endian bytes, then (format 2) the acknowledged
/// LSN's (8), then `payload`: the same value as `crc32c_append(crc32c(head), payload)`.
pub fn crc32c_record(lsn: u64, len: u32, acked: Option<u64>, payload: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if crc_fast_cpu() && payload.len() <= 3 * 8 * CRC_MAX_LANE_WORDS {
        // SAFETY: the CPU has SSE4.2 and PCLMULQDQ (checked just above).
        return unsafe { crc32c_record_x86(lsn, len, acked, payload) };
    }
    let mut head = [0u8; 20];
    head[..8].copy_from_slice(&lsn.to_le_bytes());
    head[8..12].copy_from_slice(&len.to_le_bytes());
    let n = match acked {
        Some(a) => {
            head[12..].copy_from_slice(&a.to_le_bytes());
            20
        }
        None => 12,
    };
    crc32c::crc32c_append(crc32c::crc32c(&head[..n]), payload)
}

/// # Safety
/// The CPU must support SSE4.2 and PCLMULQDQ; `payload` at most `3 * 8 *
/// CRC_MAX_LANE_WORDS` bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2,pclmulqdq")]
unsafe fn crc32c_record_x86(lsn: u64, len: u32, acked: Option<u64>, payload: &[u8]) -> u32 {
    use std::arch::x86_64::{
        _mm_clmulepi64_si128, _mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8, _mm_cvtsi128_si64, _mm_cvtsi64_si128,
    };
    let word = |i: usize| -> u64 {
        // SAFETY (of the caller's loop bounds): `8i + 8 <= payload.len()`.
        u64::from_le_bytes(payload[8 * i..8 * i + 8].try_into().expect("8 bytes"))
    };
    let mut s = _mm_crc32_u64(u64::from(u32::MAX), lsn);
    s = u64::from(_mm_crc32_u32(s as u32, len));
    if let Some(a) = acked {
        s = _mm_crc32_u64(s, a);
    }
    let words = payload.len() / 8;
    let lane = words / 3;
    let mut done = 0;
    if lane >= 2 {
        let (mut a, mut b, mut c) = (s, 0u64, 0u64);
        for i in 0..lane {
            a = _mm_crc32_u64(a, word(i));
            b = _mm_crc32_u64(b, word(lane + i));
            c = _mm_crc32_u64(c, word(2 * lane + i));
        }
        let t = crc_shift_table();
        let shift = |v: u64, k: u32| -> u64 {
            let p = _mm_clmulepi64_si128(_mm_cvtsi64_si128(v as i64), _mm_cvtsi64_si128(i64::from(k)), 0x00);
            _mm_crc32_u64(0, _mm_cvtsi128_si64(p) as u64)
        };
        s = shift(a, t[2 * lane]) ^ shift(b, t[lane]) ^ c;
        done = 3 * lane;
    }
    for i in done..words {
        s = _mm_crc32_u64(s, word(i));
    }
    for &byte in &payload[8 * words..] {
        s = u64::from(_mm_crc32_u8(s as u32, byte));
    }
    !(s as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn large_mappings_are_huge_page_aligned_and_work() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(5 << 20).unwrap();
        // SAFETY: the file is private to this test and never shrunk.
        let m = unsafe { Mapping::new(f.as_fd(), 0, 5 << 20, true, MapKind::Shared) }.unwrap();
        assert_eq!(m.as_ptr() as usize % HUGE, 0);
        m.write((4 << 20) + 7, b"end").unwrap();
        let mut b = [0u8; 3];
        m.read((4 << 20) + 7, &mut b).unwrap();
        assert_eq!(&b, b"end");
        // SAFETY: as above.
        let small = unsafe { Mapping::new(f.as_fd(), 4096, 100, false, MapKind::Shared) }.unwrap();
        let mut c = [0u8; 1];
        small.read(0, &mut c).unwrap();
    }

    /// A view is the owner's memory at its offset (stores through either are seen by
    /// the other and the file), bounded and read-only as asked, and stays mapped
    /// after the owner's last other holder is gone.
    #[test]
    fn a_view_is_the_owners_memory_and_outlives_it() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(3 * 4096).unwrap();
        // SAFETY: the file is private to this test and never shrunk.
        let owner =
            std::sync::Arc::new(unsafe { Mapping::new(f.as_fd(), 0, 3 * 4096, true, MapKind::Shared) }.unwrap());
        let v = Mapping::view(&owner, 4096 + 100, 200, true).unwrap();
        v.write(0, b"through the view").unwrap();
        let mut b = [0u8; 16];
        owner.read(4096 + 100, &mut b).unwrap();
        assert_eq!(&b, b"through the view");
        assert!(v.write(195, b"too long").is_err(), "a view is bounded by its length");
        assert!(Mapping::view(&owner, 3 * 4096 - 10, 20, false).is_err(), "a view inside its owner only");
        let ro = Mapping::view(&owner, 0, 10, false).unwrap();
        assert!(ro.write(0, b"x").is_err(), "a read-only view refuses stores");
        v.msync(0, 200).unwrap();
        drop(owner);
        // The view keeps the memory mapped.
        v.write(16, b"!").unwrap();
        use std::os::unix::fs::FileExt;
        let mut c = [0u8; 17];
        f.read_exact_at(&mut c, 4096 + 100).unwrap();
        assert_eq!(&c, b"through the view!");
    }

    #[test]
    fn record_crc_equals_the_crate_for_every_length_and_alignment() {
        let data: Vec<u8> = (0..3 * 8 * super::CRC_MAX_LANE_WORDS + 40).map(|i| (i * 131 + 7) as u8).collect();
        for len in 0..=3 * 8 * super::CRC_MAX_LANE_WORDS + 17 {
            for skew in [0, 3] {
                let p = &data[skew..skew + len];
                let lsn = 0x0123_4567_89ab_cdef ^ len as u64;
                let acked = 0x0fed_cba9_8765_4321 ^ len as u64;
                let mut head = [0u8; 20];
                head[..8].copy_from_slice(&lsn.to_le_bytes());
                head[8..12].copy_from_slice(&(len as u32).to_le_bytes());
                head[12..].copy_from_slice(&acked.to_le_bytes());
                let want = crc32c::crc32c_append(crc32c::crc32c(&head[..12]), p);
                assert_eq!(super::crc32c_record(lsn, len as u32, None, p), want, "length {len}, skew {skew}");
                let want = crc32c::crc32c_append(crc32c::crc32c(&head), p);
                assert_eq!(super::crc32c_record(lsn, len as u32, Some(acked), p), want, "v2, length {len}");
            }
        }
    }
}
