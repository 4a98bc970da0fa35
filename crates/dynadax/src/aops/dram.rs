//! The DRAM-cached vector: a `cached` range of a file the kernel serves by DAX.
//!
//! The kernel decides DAX per inode, so part of a DAX file cannot go to the page
//! cache. What the user of a sealed segment wants from `cached` is that hot data is
//! pulled into fast memory, which DAX will not do; this vector does it in the
//! process: reads are served from a bounded cache of whole pages (read-through,
//! CLOCK eviction), everything else is the cached vector's (`pread`/`pwrite` on the
//! DAX file, `fdatasync`).
//!
//! Coherence, within this process: every write through this vector invalidates the
//! pages it touches, before and after it reaches the file, with a generation count
//! that keeps a read that overlapped the write from caching what it read. A writable
//! mapping would store behind the cache's back, so one is refused; read-only mappings
//! see the file, which the write-through cache never differs from.
//!
//! Across processes: every process that serves a range of the file from its DRAM
//! cache maps one shared word for the file, its *shared generation*
//! (`/dev/shm/.dynadax-dram.{dev}.{ino}`, 4 KiB; in the temporary directory where
//! there is no `/dev/shm`), and every write through such a vector
//! bumps it before and after reaching the file. Each cached read first compares it
//! with the value this cache last saw (one atomic load, no system call): if another
//! process wrote meanwhile, the whole cache is dropped; and a page read from the file
//! is kept only if no write anywhere moved the word while it was read. So a range one
//! process caches and another writes through dynadax is never served stale. (Writes
//! by programs that do not use dynadax are not seen, as with any user-space cache.)
//! Where no shared word can be made at all, nothing is cached: every read goes to the
//! file, slower but never stale.
//! Why a word and not a lock: reads of sealed data are the path this cache exists
//! for, and a shared load costs nothing there, while a lock would cost a system call
//! per read; a write to a cached range is rare and already a `pwrite`.

use super::{Advice, Aops, CachedOps, Extent, Persistence};
use crate::mode::{Backing, Mode};
use crate::sys;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Page size of the cache.
const PAGE: u64 = 4096;
/// Default capacity, per file.
pub(crate) const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

pub(crate) struct DramOps {
    inner: CachedOps,
    cache: Mutex<Cache>,
    /// Bumped (under `cache`) before and after every write reaches the file.
    generation: AtomicU64,
    /// The file's generation shared with other processes (`None` where it cannot be
    /// made: no `/dev/shm`), and the value of it this cache is good for (under `cache`).
    shared: Option<SharedGen>,
    shared_seen: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Whole pages of the file, `capacity` at most.
struct Cache {
    /// page index → slot.
    index: HashMap<u64, usize>,
    slots: Vec<Slot>,
    capacity: usize,
    /// The CLOCK hand.
    hand: usize,
}

struct Slot {
    page: u64,
    data: Box<[u8]>,
    referenced: bool,
}

/// What the cache has done, for `Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct CacheStats {
    /// Pages held now.
    pub pages: u64,
    /// Page size in bytes.
    pub page_size: u64,
    /// Most pages it holds.
    pub capacity_pages: u64,
    /// Page reads served from the cache.
    pub hits: u64,
    /// Page reads that went to the file.
    pub misses: u64,
    /// Hits and misses of every process's DRAM cache of this file (this one's
    /// included), since the file's shared page was made: what `dynadax log stat`
    /// shows from another process than the readers.
    pub all: DramTotals,
}

/// The DRAM-cache reads of one file by every process, counted in its shared page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct DramTotals {
    /// Page reads served from a DRAM cache.
    pub hits: u64,
    /// Page reads a DRAM cache sent to the file.
    pub misses: u64,
}

/// The DRAM-cache totals of the file at `path` (every process's, see [`DramTotals`]),
/// or `None` if no process ever cached it (nothing is created to find out).
pub fn dram_cache_totals(path: &std::path::Path) -> Option<DramTotals> {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let m = std::fs::metadata(path).ok()?;
    let name = format!(".dynadax-dram.{}.{}", m.dev(), m.ino());
    let f = std::fs::File::open(std::path::Path::new("/dev/shm").join(&name))
        .or_else(|_| std::fs::File::open(std::env::temp_dir().join(&name)))
        .ok()?;
    let word = |at: u64| {
        let mut b = [0u8; 8];
        f.read_exact_at(&mut b, at).ok().map(|()| u64::from_ne_bytes(b))
    };
    Some(DramTotals { hits: word(HITS_AT as u64)?, misses: word(MISSES_AT as u64)? })
}

/// Where the shared page keeps the totals: each on a cache line of its own, away
/// from the generation word every cached read loads.
const HITS_AT: usize = 64;
const MISSES_AT: usize = 128;

impl DramOps {
    fn check_map(&self, writable: bool) -> io::Result<()> {
        if writable {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a range served from dynadax's DRAM cache cannot be mapped writable (stores would bypass \
                 the cache): map it read-only, or switch the range to direct",
            ));
        }
        Ok(())
    }

    pub(crate) fn new(inner: CachedOps, capacity_bytes: u64) -> DramOps {
        let capacity = (capacity_bytes / PAGE).max(1) as usize;
        let shared = SharedGen::open(inner.file());
        let shared_seen = AtomicU64::new(shared.as_ref().map_or(0, SharedGen::get));
        DramOps {
            inner,
            cache: Mutex::new(Cache { index: HashMap::new(), slots: Vec::new(), capacity, hand: 0 }),
            generation: AtomicU64::new(0),
            shared,
            shared_seen,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stats(&self) -> CacheStats {
        let c = self.cache();
        CacheStats {
            pages: c.index.len() as u64,
            page_size: PAGE,
            capacity_pages: c.capacity as u64,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            all: self.shared.as_ref().map_or(DramTotals::default(), SharedGen::totals),
        }
    }

    /// Forgets every cached page overlapping `off..off+len` (a range leaving this
    /// vector, a write, a truncation) and moves the generation on.
    pub(crate) fn invalidate(&self, off: u64, len: u64) {
        let mut c = self.cache();
        self.generation.fetch_add(1, Ordering::AcqRel);
        let (first, last) = (off / PAGE, off.saturating_add(len).div_ceil(PAGE));
        if last - first > c.index.len() as u64 {
            c.index.retain(|&p, _| p < first || p >= last);
        } else {
            for p in first..last {
                c.index.remove(&p);
            }
        }
    }

    /// Runs a write-like `op` on the file between two invalidations of its range,
    /// here and (the shared generation) in every other process caching the file.
    fn write_through(&self, off: u64, len: u64, op: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        self.bump_shared();
        self.invalidate(off, len);
        let r = op();
        self.bump_shared();
        self.invalidate(off, len);
        r
    }

    /// Moves the shared generation on for a write of this process: this cache stays
    /// good (its own invalidation covers the write) unless another process had moved
    /// it since this cache last looked.
    fn bump_shared(&self) {
        if let Some(s) = &self.shared {
            let _c = self.cache();
            let was = s.bump();
            let _ = self.shared_seen.compare_exchange(was, was + 1, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// The shared generation now, after dropping the whole cache if another process
    /// wrote since this cache last looked.
    fn sync_shared(&self) -> u64 {
        let Some(s) = &self.shared else { return 0 };
        let now = s.get();
        if now != self.shared_seen.load(Ordering::Acquire) {
            let mut c = self.cache();
            c.index.clear();
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.shared_seen.store(now, Ordering::Release);
        }
        now
    }

    /// Copies page `page` into `out` from the cache, or reads it from the file and
    /// caches it. `Ok(false)` if the page is not whole inside the file (not cached).
    fn read_page(&self, page: u64, out: &mut [u8]) -> io::Result<bool> {
        let shared = self.sync_shared();
        {
            let mut c = self.cache();
            if let Some(&i) = c.index.get(&page) {
                let s = &mut c.slots[i];
                s.referenced = true;
                out.copy_from_slice(&s.data);
                self.hits.fetch_add(1, Ordering::Relaxed);
                if let Some(s) = &self.shared {
                    s.count(HITS_AT);
                }
                return Ok(true);
            }
        }
        let seen = self.generation.load(Ordering::Acquire);
        if self.inner.read_at(out, page * PAGE)? < PAGE as usize {
            return Ok(false);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = &self.shared {
            s.count(MISSES_AT);
        }
        let mut c = self.cache();
        // A write that overlapped the read moved the generation (here, or the shared
        // one, in another process): what was read may be older than the file, so it
        // is not kept; nor is anything without a shared word (see the module comment).
        let unmoved = self.shared.as_ref().is_some_and(|s| s.get() == shared);
        if self.generation.load(Ordering::Acquire) == seen && unmoved && !c.index.contains_key(&page) {
            c.insert(page, out);
        }
        Ok(true)
    }
}

/// A file's shared generation: one word in a 4 KiB file in `/dev/shm` named by the
/// file's device and inode, mapped shared by every process caching the file.
struct SharedGen {
    map: sys::Mapping,
}

impl SharedGen {
    fn open(file: &std::fs::File) -> Option<SharedGen> {
        use std::os::fd::AsFd;
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata().ok()?;
        let name = format!(".dynadax-dram.{}.{}", m.dev(), m.ino());
        let open = |dir: &std::path::Path| {
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join(&name))
        };
        let f = open(std::path::Path::new("/dev/shm")).or_else(|_| open(&std::env::temp_dir())).ok()?;
        if f.metadata().ok()?.len() < PAGE {
            f.set_len(PAGE).ok()?;
        }
        // SAFETY: dynadax never shrinks these files, and only touches the word
        // through an atomic.
        let map = unsafe { sys::Mapping::new(f.as_fd(), 0, PAGE as usize, true, sys::MapKind::Shared) }.ok()?;
        map.atomic_u64(0).ok()?;
        Some(SharedGen { map })
    }
    fn word(&self) -> &AtomicU64 {
        self.map.atomic_u64(0).expect("in bounds, aligned")
    }
    fn get(&self) -> u64 {
        self.word().load(Ordering::Acquire)
    }
    /// The value before.
    fn bump(&self) -> u64 {
        self.word().fetch_add(1, Ordering::AcqRel)
    }
    fn count(&self, at: usize) {
        self.map.atomic_u64(at).expect("in bounds, aligned").fetch_add(1, Ordering::Relaxed);
    }
    fn totals(&self) -> DramTotals {
        let get = |at| self.map.atomic_u64(at).expect("in bounds, aligned").load(Ordering::Relaxed);
        DramTotals { hits: get(HITS_AT), misses: get(MISSES_AT) }
    }
}

impl Cache {
    fn insert(&mut self, page: u64, data: &[u8]) {
        if self.slots.len() < self.capacity {
            self.slots.push(Slot { page, data: data.into(), referenced: false });
            self.index.insert(page, self.slots.len() - 1);
            return;
        }
        // CLOCK: the first slot not referenced since the hand last passed goes.
        // Slots of invalidated pages (no longer in the index) go first.
        loop {
            let i = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            let live = self.index.get(&self.slots[i].page) == Some(&i);
            let s = &mut self.slots[i];
            if live && s.referenced {
                s.referenced = false;
                continue;
            }
            if live {
                let old = s.page;
                self.index.remove(&old);
            }
            let s = &mut self.slots[i];
            s.page = page;
            s.data.copy_from_slice(data);
            s.referenced = false;
            self.index.insert(page, i);
            return;
        }
    }
}

impl Aops for DramOps {
    fn mode(&self) -> Mode {
        Mode::Cached
    }
    fn backing(&self) -> Backing {
        Backing::DramCache
    }
    fn persistence(&self) -> Persistence {
        Persistence::Fdatasync
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let mut done = 0usize;
        let mut bounce = [0u8; PAGE as usize];
        while done < buf.len() {
            let at = off + done as u64;
            let (page, skip) = (at / PAGE, (at % PAGE) as usize);
            let n = (PAGE as usize - skip).min(buf.len() - done);
            // A whole page goes straight into the caller's buffer; part of one
            // through the bounce page.
            let whole = n == PAGE as usize;
            let dst = if whole { &mut buf[done..done + n] } else { &mut bounce[..] };
            if !self.read_page(page, dst)? {
                // The last, partial page of the file: straight from the file.
                return Ok(done + self.inner.read_at(&mut buf[done..], at)?);
            }
            if !whole {
                buf[done..done + n].copy_from_slice(&bounce[skip..skip + n]);
            }
            done += n;
        }
        Ok(done)
    }
    fn write_at(&self, data: &[u8], off: u64) -> io::Result<()> {
        self.write_through(off, data.len() as u64, || self.inner.write_at(data, off))
    }
    fn persist(&self, off: u64, len: u64) -> io::Result<()> {
        self.inner.persist(off, len)
    }
    fn zero_range(&self, off: u64, len: u64) -> io::Result<()> {
        self.write_through(off, len, || self.inner.zero_range(off, len))
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        // Pages from the one holding the new end on may change or go.
        self.write_through(len - len % PAGE, u64::MAX - (len - len % PAGE), || self.inner.set_len(len))
    }
    fn allocate(&self, off: u64, len: u64) -> io::Result<()> {
        self.inner.allocate(off, len)
    }
    fn map(&self, off: u64, len: usize, writable: bool) -> io::Result<sys::Mapping> {
        self.check_map(writable)?;
        self.inner.map(off, len, false)
    }
    fn map_own(&self, off: u64, len: usize, writable: bool) -> io::Result<sys::Mapping> {
        self.check_map(writable)?;
        self.inner.map_own(off, len, false)
    }
    fn advise(&self, off: u64, len: u64, advice: Advice) -> io::Result<()> {
        if advice == Advice::DontNeed {
            self.invalidate(off, len);
        }
        self.inner.advise(off, len, advice)
    }
    fn extents(&self, off: u64, len: u64) -> io::Result<Vec<Extent>> {
        self.inner.extents(off, len)
    }
    fn direct_read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        // Bypasses every cache, this one included.
        self.inner.direct_read_at(buf, off)
    }
    fn direct_write_at(&self, data: &[u8], off: u64) -> io::Result<()> {
        self.write_through(off, data.len() as u64, || self.inner.direct_write_at(data, off))
    }
    fn forget(&self, off: u64, len: u64) {
        self.invalidate(off, len);
    }
    fn cache_stats(&self) -> Option<CacheStats> {
        Some(self.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;
    use std::sync::Arc;

    fn ops(pages: u64, capacity_pages: u64) -> (tempfile::TempDir, Arc<std::fs::File>, DramOps) {
        let d = tempfile::tempdir_in("/dev/shm").unwrap();
        let p = d.path().join("f");
        let f =
            Arc::new(std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&p).unwrap());
        let body: Vec<u8> = (0..pages * PAGE).map(|i| (i / PAGE) as u8 ^ (i as u8)).collect();
        f.write_all_at(&body, 0).unwrap();
        let v = DramOps::new(CachedOps::new(f.clone(), Arc::new(p), true), capacity_pages * PAGE);
        (d, f, v)
    }

    fn raw(f: &std::fs::File, off: u64, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        f.read_exact_at(&mut b, off).unwrap();
        b
    }

    #[test]
    fn reads_through_then_hits_and_writes_are_seen() {
        let (_d, f, v) = ops(8, 16);
        let mut a = vec![0u8; 3 * PAGE as usize];
        v.read_at(&mut a, 100).unwrap();
        assert_eq!(a, raw(&f, 100, a.len()));
        let s = v.stats();
        assert_eq!((s.misses, s.hits, s.pages), (4, 0, 4));
        let mut b = vec![0u8; a.len()];
        v.read_at(&mut b, 100).unwrap();
        assert_eq!(a, b);
        assert_eq!(v.stats().hits, 4);
        // A write is seen by the next read, through the cache.
        v.write_at(b"fresh", PAGE + 10).unwrap();
        v.read_at(&mut b, 100).unwrap();
        assert_eq!(b, raw(&f, 100, b.len()));
        assert_eq!(&b[(PAGE + 10 - 100) as usize..][..5], b"fresh");
    }

    #[test]
    fn capacity_bounds_the_cache_and_reads_stay_right() {
        let (_d, f, v) = ops(64, 4);
        for round in 0..3 {
            for p in (0..64).rev() {
                let mut b = vec![0u8; PAGE as usize];
                v.read_at(&mut b, p * PAGE).unwrap();
                assert_eq!(b, raw(&f, p * PAGE, b.len()), "round {round} page {p}");
                assert!(v.stats().pages <= 4);
            }
        }
    }

    #[test]
    fn the_partial_last_page_is_read_from_the_file_and_truncation_forgets() {
        let (_d, f, v) = ops(2, 8);
        f.write_all_at(b"tail", 2 * PAGE).unwrap();
        let mut b = vec![0u8; PAGE as usize + 100];
        assert_eq!(v.read_at(&mut b, PAGE).unwrap(), PAGE as usize + 4);
        assert_eq!(&b[PAGE as usize..PAGE as usize + 4], b"tail");
        assert_eq!(v.stats().pages, 1, "only the whole page is cached");
        v.set_len(PAGE / 2).unwrap();
        let mut c = vec![0u8; PAGE as usize];
        assert_eq!(v.read_at(&mut c, 0).unwrap(), PAGE as usize / 2);
    }

    #[test]
    fn a_writable_mapping_is_refused_a_read_only_one_is_not() {
        let (_d, _f, v) = ops(2, 8);
        let err = v.map(0, PAGE as usize, true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert!(err.to_string().contains("DRAM cache"), "{err}");
        assert!(v.map(0, PAGE as usize, false).is_ok());
    }

    /// Two caches of one file, as two processes have (each maps the shared generation
    /// on its own): a page one caches is never served stale after the other writes it.
    #[test]
    fn a_write_through_another_cache_of_the_file_is_seen() {
        let (d, f, a) = ops(4, 8);
        let p = d.path().join("f");
        let b = DramOps::new(CachedOps::new(f.clone(), Arc::new(p), true), 8 * PAGE);
        let mut buf = vec![0u8; PAGE as usize];
        a.read_at(&mut buf, PAGE).unwrap();
        a.read_at(&mut buf, PAGE).unwrap();
        assert_eq!(a.stats().hits, 1, "A caches the page");
        b.write_at(b"written by B", PAGE + 7).unwrap();
        a.read_at(&mut buf, PAGE).unwrap();
        assert_eq!(&buf[7..19], b"written by B", "A served its stale copy");
        // A's own writes do not drop A's cache.
        a.read_at(&mut buf, 2 * PAGE).unwrap();
        a.write_at(b"A", 0).unwrap();
        let hits = a.stats().hits;
        a.read_at(&mut buf, 2 * PAGE).unwrap();
        assert_eq!(a.stats().hits, hits + 1, "A's own write dropped its cache");
        // Both caches count into the file's shared totals, seen from either.
        b.read_at(&mut buf, 2 * PAGE).unwrap();
        b.read_at(&mut buf, 2 * PAGE).unwrap();
        let all = a.stats().all;
        assert_eq!(all, b.stats().all);
        assert!(all.hits >= a.stats().hits + b.stats().hits, "{all:?}");
        assert!(all.misses >= a.stats().misses + b.stats().misses, "{all:?}");
        assert_eq!(dram_cache_totals(&d.path().join("f")), Some(all));
    }

    /// Readers racing a writer on the same pages never leave a stale page cached:
    /// once they stop, every page read through the cache equals the file.
    #[test]
    fn a_read_that_overlaps_a_write_is_not_cached() {
        let (_d, f, v) = ops(4, 8);
        let v = Arc::new(v);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (v, stop) = (v.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut b = vec![0u8; 4 * PAGE as usize];
                    while !stop.load(Ordering::Relaxed) {
                        v.read_at(&mut b, 0).unwrap();
                    }
                })
            })
            .collect();
        for i in 0..2000u32 {
            let data = vec![(i % 251) as u8; PAGE as usize];
            v.write_at(&data, u64::from(i % 4) * PAGE).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        let mut b = vec![0u8; 4 * PAGE as usize];
        v.read_at(&mut b, 0).unwrap();
        assert_eq!(b, raw(&f, 0, b.len()), "a stale page stayed in the cache");
        assert!(v.stats().hits + v.stats().misses > 0);
    }
}
