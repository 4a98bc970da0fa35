//! In-memory inodes: one per file per process, its ops lock, its mapping registry,
//! and the mode-switch protocol.
//!
//! The protocol is the seed thread's four rules, in one process:
//! 1. every operations vector has every operation (`aops::Aops`);
//! 2. the mode does not change while a mapping of the file is alive (`set_mode`
//!    refuses with `Busy`, or waits);
//! 3. every use of the vector is under the ops lock's read side;
//! 4. a change of vector is under its write side.

use crate::aops::{Aops, CachedOps, DirectOps, DramOps, DEFAULT_CACHE_BYTES};
use crate::error::{Error, IoContext, Result};
use crate::flags::FlagStore;
use crate::mode::{decide, decide_range, Backing, Decision, KernelView, Mode, MountDax, Policy};
use crate::mount::{fs_info, FsInfo};
use crate::ranges::RangeMap;
use crate::sync::{unpoison, Condvar, Mutex, RwLock};
use crate::sys;
use crate::volume::Volume;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

/// The vectors and the mode state they implement. Guarded by `Inode::ops`.
pub(crate) struct State {
    /// The one descriptor this process holds for the file. `None` only while a
    /// kernel-DAX switch has closed it to let the kernel evict the inode, or if
    /// reopening afterwards failed (`dead` says why).
    file: Option<Arc<fs::File>>,
    /// The vector of the file's effective mode.
    pub(crate) vector: Option<Box<dyn Aops>>,
    /// The vector of its ranges (see `ranges.rs`), when their effective mode differs
    /// from the file's; `None` otherwise. Every range has the mode the file has not,
    /// so one vector serves them all.
    pub(crate) alt: Option<Box<dyn Aops>>,
    pub(crate) physical: Mode,
    /// Physical modes of ranges, overriding `physical` there.
    pub(crate) ranges: RangeMap,
    pub(crate) decision: Decision,
    /// The effective state of the ranges; `Some` exactly when there are ranges.
    pub(crate) range_decision: Option<Decision>,
    dead: Option<String>,
}

impl State {
    pub(crate) fn vector(&self, path: &Path) -> Result<&dyn Aops> {
        match &self.vector {
            Some(v) => Ok(v.as_ref()),
            None => Err(Error::invalid(path, self.dead.clone().unwrap_or_else(|| "file is closed".into()))),
        }
    }
}

/// One file, shared by every handle to it in this process (like the kernel's inode
/// cache: `File::open` twice gives the same `Inode`).
pub(crate) struct Inode {
    pub(crate) key: (u64, u64),
    pub(crate) path: PathBuf,
    pub(crate) fs: Arc<FsInfo>,
    pub(crate) policy: Policy,
    pub(crate) volume_root: Option<PathBuf>,
    pub(crate) store: FlagStore,
    writable: bool,
    /// The ops lock. Read side: every file operation. Write side: mode switches,
    /// window growth and shrinking the file. Lock order: `ops` before `maps.live`.
    pub(crate) ops: RwLock<State>,
    /// Live mapping guards. A guard is registered only while `ops` is held for read,
    /// so whoever holds `ops` for write sees a count that cannot rise.
    pub(crate) maps: MapRegistry,
}

/// The live mapping guards of one inode, and the switches waiting for them to drop.
#[derive(Default)]
pub(crate) struct MapRegistry {
    live: Mutex<Maps>,
    /// Signalled whenever a guard is dropped or a waiting switch gives up or succeeds.
    changed: Condvar,
}

#[derive(Default)]
struct Maps {
    next_id: u64,
    /// Live guards: id → (offset, length).
    ranges: BTreeMap<u64, (u64, u64)>,
    /// The byte ranges of switches waiting for the guards over them to drop. A new
    /// mapping overlapping one of them waits (like readers behind a waiting writer in
    /// the kernel's rwsem), so a stream of short-lived mappings cannot starve a
    /// switch. The wait is bounded by the switch's timeout, so a guard holder that
    /// maps again cannot deadlock it. A whole-file switch drains `0..u64::MAX`.
    draining: Vec<(u64, u64)>,
}

impl Maps {
    fn overlapping(&self, start: u64, end: u64) -> usize {
        self.ranges.values().filter(|&&(o, l)| o < end && o.saturating_add(l) > start).count()
    }
}

impl MapRegistry {
    /// Registers a guard of `off..off+len`, first taking the cross-process shared lock
    /// of its range through `file` (see `xproc.rs`). Another process switching part
    /// of that range is waited for, a little; then the mapping is refused as busy.
    fn add(&self, path: &Path, file: &fs::File, off: u64, len: u64) -> Result<u64> {
        let mut g = unpoison(self.live.lock());
        let end = off.saturating_add(len);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !crate::xproc::share(file, off, end).ctx(path, "lock mapped range")? {
            if Instant::now() >= deadline {
                let elsewhere = crate::xproc::holders(path, file, off, end).or(Some("another process".into()));
                return Err(Error::Busy { path: path.to_path_buf(), mappings: 0, elsewhere });
            }
            drop(g);
            crate::sync::backoff(Duration::from_millis(1));
            g = unpoison(self.live.lock());
        }
        g.next_id += 1;
        let id = g.next_id;
        g.ranges.insert(id, (off, len));
        Ok(id)
    }

    /// Unregisters a guard, dropping the cross-process lock of the parts of its range
    /// no other guard of this process covers (a process's locks through one
    /// descriptor merge, so what it holds must stay the union of its guards).
    pub(crate) fn remove(&self, file: &fs::File, id: u64) {
        let mut g = unpoison(self.live.lock());
        if let Some((off, len)) = g.ranges.remove(&id) {
            let mut others: Vec<(u64, u64)> = g
                .ranges
                .values()
                .map(|&(o, l)| (o, o.saturating_add(l)))
                .filter(|&(s, e)| s < off.saturating_add(len) && e > off)
                .collect();
            others.sort_unstable();
            let mut at = off;
            for (s, e) in others.into_iter().chain([(off.saturating_add(len), u64::MAX)]) {
                if s > at {
                    crate::xproc::release(file, at, s.min(off.saturating_add(len)));
                }
                at = at.max(e);
            }
        }
        // Only switches draining guards (and mappings held back by them) wait on
        // `changed`: with none, an unmap makes no futex call.
        let waiters = !g.draining.is_empty();
        drop(g);
        if waiters {
            self.changed.notify_all();
        }
    }
    pub(crate) fn count(&self) -> usize {
        unpoison(self.live.lock()).ranges.len()
    }
    /// Live guards overlapping `start..end`.
    pub(crate) fn overlapping(&self, start: u64, end: u64) -> usize {
        unpoison(self.live.lock()).overlapping(start, end)
    }
    fn max_end(&self) -> u64 {
        unpoison(self.live.lock()).ranges.values().map(|(o, l)| o + l).max().unwrap_or(0)
    }
    /// Blocks a new mapping of `start..end` while a switch is draining guards over it.
    fn wait_no_drain(&self, start: u64, end: u64) {
        let mut g = unpoison(self.live.lock());
        while g.draining.iter().any(|&(s, e)| s < end && e > start) {
            g = unpoison(self.changed.wait(g));
        }
    }
    /// Waits until no guard over `start..end` is alive or `deadline` passes; true if
    /// none is. New mappings over it wait meanwhile (see `Maps::draining`).
    fn drain(&self, start: u64, end: u64, deadline: Instant) -> bool {
        let mut g = unpoison(self.live.lock());
        g.draining.push((start, end));
        while g.overlapping(start, end) > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            g = unpoison(self.changed.wait_timeout(g, deadline - now)).0;
        }
        let i = g.draining.iter().position(|&r| r == (start, end)).expect("this switch's entry");
        g.draining.swap_remove(i);
        let clear = g.overlapping(start, end) == 0;
        drop(g);
        self.changed.notify_all();
        clear
    }
}

/// Drops something that owns mappings (a replaced operations vector, a dropped
/// mapping guard's mapping) on a background thread started on first use. Under the
/// shuttle model, where threads are simulated, it drops in place.
pub(crate) fn retire(old: Box<dyn Send>) {
    #[cfg(not(feature = "shuttle"))]
    {
        use std::sync::mpsc;
        static REAPER: OnceLock<Option<mpsc::Sender<Box<dyn Send>>>> = OnceLock::new();
        let tx = REAPER.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Box<dyn Send>>();
            let spawned = std::thread::Builder::new().name("dynadax-reaper".into()).spawn(move || {
                for old in rx {
                    drop(old);
                }
            });
            spawned.ok().map(|_| tx)
        });
        if let Some(tx) = tx {
            // If the reaper is gone, `send` hands the vector back and it drops here.
            let _ = tx.send(old);
        }
    }
    #[cfg(feature = "shuttle")]
    drop(old);
}

/// The lock of a file's recorded modes (physical and ranges) across processes: an
/// exclusive `flock` of the file, held for one read-modify-write of what the store
/// keeps, so two processes setting modes of one file at once leave the result of one
/// after the other. Only mode setters take it, and hold no other lock they wait for
/// while they do.
struct MetaLock<'a>(&'a fs::File);

impl<'a> MetaLock<'a> {
    fn take(path: &Path, file: &'a fs::File) -> Result<MetaLock<'a>> {
        rustix::fs::flock(file, rustix::fs::FlockOperation::LockExclusive).ctx(path, "lock the recorded modes")?;
        Ok(MetaLock(file))
    }
}

impl Drop for MetaLock<'_> {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(self.0, rustix::fs::FlockOperation::Unlock);
    }
}

/// How a switch behaves when mappings are alive.
#[derive(Debug, Clone, Copy, Default)]
pub struct SwitchOptions {
    /// `None`: fail at once with [`Error::Busy`]. `Some(t)`: wait up to `t` for the
    /// mapping guards to drop, then fail with `Busy`.
    pub wait: Option<Duration>,
}

/// The process's inode cache. A std mutex even under shuttle: it is never held
/// across a scheduling point.
type InodeCache = std::sync::Mutex<HashMap<(u64, u64), Weak<Inode>>>;

fn cache() -> &'static InodeCache {
    static CACHE: OnceLock<InodeCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Opens `path` read-write, or read-only if that is all the caller may do.
fn open_rw(path: &Path) -> Result<(fs::File, bool)> {
    match fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EROFS) | Some(libc::EPERM)) => {
            Ok((fs::File::open(path).ctx(path, "open")?, false))
        }
        Err(e) => Err(Error::io(path, "open", e)),
    }
}

/// `STATX_ATTR_DAX` of an open file, if the kernel reports the attribute at all.
pub(crate) fn statx_dax(fd: impl AsFd) -> Option<bool> {
    use rustix::fs::{statx, AtFlags, StatxFlags};
    let st = statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS).ok()?;
    (st.stx_attributes_mask.bits() & sys::STATX_ATTR_DAX != 0)
        .then_some(st.stx_attributes.bits() & sys::STATX_ATTR_DAX != 0)
}

/// What the kernel says about this open file.
pub(crate) fn kernel_view(fs: &FsInfo, file: &fs::File) -> KernelView {
    match &fs.no_dax_reason {
        Some(why) => KernelView::Incapable { why: why.clone() },
        None => KernelView::Capable { mount: fs.mount_dax, statx_dax: statx_dax(file).unwrap_or(false) },
    }
}

impl Inode {
    /// The inode of the regular file at `path`, from the cache or newly instantiated.
    pub(crate) fn get(path: &Path) -> Result<Arc<Inode>> {
        let meta = fs::metadata(path).ctx(path, "stat")?;
        if !meta.is_file() {
            return Err(Error::invalid(path, "not a regular file (modes of directories are set with set_mode)"));
        }
        let key = (meta.dev(), meta.ino());
        let mut cache = unpoison(cache().lock());
        if let Some(inode) = cache.get(&key).and_then(Weak::upgrade) {
            return Ok(inode);
        }
        cache.retain(|_, w| w.strong_count() > 0);
        let inode = Arc::new(Inode::instantiate(path, key)?);
        cache.insert(key, Arc::downgrade(&inode));
        Ok(inode)
    }

    /// Test only: the file as another process opening it would have it (its own ops
    /// lock, mapping registry and descriptor, outside this process's inode cache),
    /// so between it and the other opens stands only the cross-process lock.
    #[cfg(feature = "shuttle")]
    pub(crate) fn get_as_another_process(path: &Path) -> Result<Arc<Inode>> {
        let meta = fs::metadata(path).ctx(path, "stat")?;
        Ok(Arc::new(Inode::instantiate(path, (meta.dev(), meta.ino()))?))
    }

    /// The live inode of `path`, if this process has it open.
    pub(crate) fn cached(path: &Path) -> Option<Arc<Inode>> {
        let meta = fs::metadata(path).ok()?;
        unpoison(cache().lock()).get(&(meta.dev(), meta.ino())).and_then(Weak::upgrade)
    }

    fn instantiate(path: &Path, key: (u64, u64)) -> Result<Inode> {
        let (file, writable) = open_rw(path)?;
        let fs = fs_info(path, key.0);
        let store = FlagStore::for_fs(&fs, file.as_fd());
        let volume = Volume::of(path)?;
        let physical = store.get(path, file.as_fd(), false)?;
        let mut ranges = store.get_ranges(path, file.as_fd())?;
        // Another program may have changed the file's own mode since (`chattr`).
        ranges.normalize(physical);
        let mut inode = Inode {
            key,
            path: path.to_path_buf(),
            fs,
            policy: volume.policy(),
            volume_root: volume.root().map(Path::to_path_buf),
            store,
            writable,
            ops: RwLock::new(State {
                file: None,
                vector: None,
                alt: None,
                physical,
                ranges,
                decision: decide(Policy::Inode, Mode::Cached, &KernelView::Incapable { why: String::new() }),
                range_decision: None,
                dead: None,
            }),
            maps: MapRegistry::default(),
        };
        let state = inode.ops.get_mut().map_err(|_| Error::invalid(path, "poisoned"))?;
        let file = Arc::new(file);
        Self::build(path, &inode.fs, inode.policy, writable, state, file)?;
        Ok(inode)
    }

    /// Decides the effective mode from what the kernel says now and builds its vector.
    fn build(
        path: &Path,
        fs: &FsInfo,
        policy: Policy,
        writable: bool,
        st: &mut State,
        file: Arc<fs::File>,
    ) -> Result<()> {
        let mut decision = decide(policy, st.physical, &kernel_view(fs, &file));
        let vector: Box<dyn Aops> = match decision.effective {
            Mode::Cached => Box::new(CachedOps::new(file.clone(), Arc::new(path.to_path_buf()), writable)),
            Mode::Direct => {
                let v = DirectOps::new(file.clone(), writable, decision.backing == Backing::KernelDax)
                    .ctx(path, "map file for direct mode")?;
                if decision.backing == Backing::KernelDax && v.backing() != Backing::KernelDax {
                    decision.backing = v.backing();
                    decision.reason.push_str("; but MAP_SYNC was refused (device not synchronous): persisted by msync");
                }
                Box::new(v)
            }
        };
        debug_assert_eq!(vector.mode(), decision.effective);
        st.file = Some(file);
        st.vector = Some(vector);
        st.decision = decision;
        st.dead = None;
        Self::build_alt(path, policy, writable, st)
    }

    /// Decides the ranges' effective mode and builds their vector if it differs from
    /// the file's (dropping the old one in place: the caller takes it first to drop it
    /// elsewhere).
    fn build_alt(path: &Path, policy: Policy, writable: bool, st: &mut State) -> Result<()> {
        st.alt = None;
        if st.ranges.is_empty() {
            st.range_decision = None;
            return Ok(());
        }
        let file = st.file.clone().ok_or_else(|| Error::invalid(path, "file is closed"))?;
        let other = match st.physical {
            Mode::Direct => Mode::Cached,
            Mode::Cached => Mode::Direct,
        };
        let d = decide_range(policy, other, &st.decision);
        if d.effective != st.decision.effective {
            let cached = || CachedOps::new(file.clone(), Arc::new(path.to_path_buf()), writable);
            let v: Box<dyn Aops> = match (d.effective, d.backing) {
                (Mode::Cached, Backing::DramCache) => Box::new(DramOps::new(cached(), DEFAULT_CACHE_BYTES)),
                (Mode::Cached, _) => Box::new(cached()),
                (Mode::Direct, _) => {
                    Box::new(DirectOps::new(file.clone(), writable, false).ctx(path, "map file for a direct range")?)
                }
            };
            debug_assert_eq!((v.mode(), v.backing()), (d.effective, d.backing));
            st.alt = Some(v);
        }
        st.range_decision = Some(d);
        Ok(())
    }

    /// Whether switching this file is the kernel's business (ext4/xfs on a DAX device
    /// mounted `dax=inode`): then the new mode comes from `statx` after the kernel
    /// re-instantiates the inode, and dynadax must close its descriptors first.
    pub(crate) fn kernel_switches(&self) -> bool {
        self.fs.kernel_capable() && self.fs.mount_dax == MountDax::Inode
    }

    /// Closes this process's descriptor and mappings so the kernel can evict its
    /// inode (it was marked "don't cache" when the flag flipped), reopens it and lets
    /// `statx` say the new state. If another holder keeps the file open, the kernel
    /// keeps the old state and the decision says pending.
    fn reopen(&self, st: &mut State) -> Result<()> {
        st.vector = None;
        st.alt = None;
        st.file = None;
        let reopened = open_rw(&self.path).and_then(|(f, _)| {
            let m = f.metadata().ctx(&self.path, "stat")?;
            if (m.dev(), m.ino()) != self.key {
                return Err(Error::invalid(&self.path, "was replaced by another file during a mode switch"));
            }
            Ok(f)
        });
        match reopened {
            Ok(f) => Self::build(&self.path, &self.fs, self.policy, self.writable, st, Arc::new(f)),
            Err(e) => {
                st.dead = Some(format!("could not be reopened after a mode switch: {e}"));
                Err(e)
            }
        }
    }

    /// Runs `f` under the write side once no mapping guard overlaps `start..end`,
    /// waiting for them per `deadline` (see `MapRegistry::drain`), or fails with
    /// `Busy`.
    fn unmapped<R>(
        &self,
        start: u64,
        end: u64,
        deadline: Option<Instant>,
        f: impl FnOnce(&mut State) -> Result<R>,
    ) -> Result<R> {
        loop {
            let mut st = unpoison(self.ops.write());
            if self.maps.overlapping(start, end) == 0 {
                // Then no other process may map the range either (see `xproc.rs`): the
                // exclusive lock for the switch's duration, no descriptor kept beyond it
                // (a kernel switch closes the file so the kernel can evict the inode;
                // its lock goes with it, once the flag is set).
                let file = st.file.clone().ok_or_else(|| Error::invalid(&self.path, "file is closed"))?;
                if !crate::xproc::exclude(&file, start, end).ctx(&self.path, "lock range to switch")? {
                    drop(st);
                    if deadline.is_some_and(|d| Instant::now() < d) {
                        crate::sync::backoff(Duration::from_millis(2));
                        continue;
                    }
                    let elsewhere =
                        crate::xproc::holders(&self.path, &file, start, end).or(Some("another process".into()));
                    return Err(Error::Busy { path: self.path.clone(), mappings: 0, elsewhere });
                }
                drop(file);
                let r = f(&mut st);
                if let Some(file) = &st.file {
                    crate::xproc::release(file, start, end);
                }
                return r;
            }
            drop(st);
            match deadline {
                Some(d) if self.maps.drain(start, end, d) => continue,
                _ => {
                    let mappings = self.maps.overlapping(start, end).max(1);
                    return Err(Error::Busy { path: self.path.clone(), mappings, elsewhere: None });
                }
            }
        }
    }

    /// The switch of the whole file: refuse (or wait) while mapped, record the
    /// physical mode (clearing range modes), swap the vector. Metadata only: no data
    /// is copied, whatever the file's size.
    pub(crate) fn set_mode(&self, mode: Mode, opts: SwitchOptions) -> Result<()> {
        let deadline = opts.wait.map(|w| Instant::now() + w);
        let old = self.unmapped(0, u64::MAX, deadline, |st| {
            let file = st.file.clone().ok_or_else(|| Error::invalid(&self.path, "file is closed"))?;
            {
                let _meta = MetaLock::take(&self.path, &file)?;
                // Another process may have set ranges meanwhile: clear what is recorded.
                if !self.store.get_ranges(&self.path, file.as_fd())?.is_empty() {
                    self.store.set_ranges(&self.path, file.as_fd(), &RangeMap::default())?;
                }
                st.ranges = RangeMap::default();
                self.store.set(&self.path, file.as_fd(), false, mode)?;
            }
            st.physical = mode;
            if self.kernel_switches() {
                drop(file);
                self.reopen(st)?;
                return Ok(Vec::new());
            }
            let old: Vec<Box<dyn Aops>> = st.alt.take().into_iter().collect();
            let decision = decide(self.policy, mode, &kernel_view(&self.fs, &file));
            if decision.effective == st.decision.effective {
                st.decision = decision;
                st.range_decision = None;
                return Ok(old);
            }
            let old = old.into_iter().chain(st.vector.take()).collect();
            Self::build(&self.path, &self.fs, self.policy, self.writable, st, file)?;
            Ok(old)
        })?;
        // Unmapping a large, populated window costs time proportional to its touched
        // pages: that is reclamation, not part of the switch, so it happens off this
        // thread (the kernel path above unmaps synchronously: eviction needs it).
        if !old.is_empty() {
            retire(Box::new(old));
        }
        Ok(())
    }

    /// The switch of a range (`len` `None`: from `off` to the end of the file,
    /// whatever it grows to): refused (or waits) only while a mapping guard overlaps
    /// the range, so mappings of the rest of the file stay alive across it. Records
    /// the range map and, if the file had no range before or has none after, makes or
    /// drops the ranges' vector. Metadata only, whatever the range's size.
    pub(crate) fn set_range_mode(&self, off: u64, len: Option<u64>, mode: Mode, opts: SwitchOptions) -> Result<()> {
        let page = sys::page_size() as u64;
        let end = match len {
            None => u64::MAX,
            Some(l) => off.checked_add(l).filter(|&e| e < u64::MAX).ok_or_else(|| {
                Error::invalid(&self.path, format!("range at {off} of {l} bytes runs past the largest offset"))
            })?,
        };
        if off % page != 0 || (end != u64::MAX && end % page != 0) || off >= end {
            return Err(Error::invalid(
                &self.path,
                format!(
                    "range modes are set on whole pages: offset {off} and length {} must be multiples of {page} \
                     bytes, and the length not zero",
                    len.map_or("(to the end)".to_string(), |l| l.to_string())
                ),
            ));
        }
        let deadline = opts.wait.map(|w| Instant::now() + w);
        let old = self.unmapped(off, end, deadline, |st| {
            let file = st.file.clone().ok_or_else(|| Error::invalid(&self.path, "file is closed"))?;
            // The change is made to what is recorded now, not to this process's view,
            // which another process may have changed meanwhile (else one of two
            // setters' changes would be lost).
            let (physical, next) = {
                let _meta = MetaLock::take(&self.path, &file)?;
                let physical = self.store.get(&self.path, file.as_fd(), false)?;
                let mut recorded = self.store.get_ranges(&self.path, file.as_fd())?;
                recorded.normalize(physical);
                let mut next = recorded.clone();
                next.set(off, end, mode, physical);
                if next != recorded {
                    self.store.set_ranges(&self.path, file.as_fd(), &next)?;
                }
                (physical, next)
            };
            if physical == st.physical && next == st.ranges {
                return Ok(Vec::new());
            }
            if let Some(a) = &st.alt {
                a.forget(off, end - off);
            }
            if physical != st.physical {
                // The file's own mode was switched by another process: both vectors anew.
                st.physical = physical;
                st.ranges = next;
                let old: Vec<Box<dyn Aops>> = st.alt.take().into_iter().chain(st.vector.take()).collect();
                Self::build(&self.path, &self.fs, self.policy, self.writable, st, file)?;
                return Ok(old);
            }
            let toggled = st.ranges.is_empty() != next.is_empty();
            st.ranges = next;
            if !toggled {
                return Ok(Vec::new());
            }
            let old: Vec<Box<dyn Aops>> = st.alt.take().into_iter().collect();
            Self::build_alt(&self.path, self.policy, self.writable, st)?;
            Ok(old)
        })?;
        if !old.is_empty() {
            retire(Box::new(old));
        }
        Ok(())
    }

    /// If a kernel switch is pending and no mapping is alive, closes and reopens the
    /// file so the kernel can apply it (the last holder may have closed by now).
    pub(crate) fn refresh(&self) -> Result<()> {
        if !self.kernel_switches() || !unpoison(self.ops.read()).decision.pending {
            return Ok(());
        }
        let mut st = unpoison(self.ops.write());
        if st.decision.pending && self.maps.count() == 0 {
            self.reopen(&mut st)?;
        }
        Ok(())
    }

    /// Runs `f` under the read side on each run of `off..off+len` that one vector
    /// serves: the whole span with the file's vector when it has no ranges of another
    /// effective mode, else run by run with the vector of each. `f` gets the vector,
    /// the run, and the file's other vector if any (to tell it of a longer file); it
    /// returns whether to go on. With `room`, first makes sure every vector can reach
    /// that many bytes (growing a direct window under the write side if not).
    #[inline]
    pub(crate) fn over(
        &self,
        off: u64,
        len: u64,
        room: Option<u64>,
        op: &'static str,
        mut f: impl FnMut(&dyn Aops, u64, u64, Option<&dyn Aops>) -> io::Result<bool>,
    ) -> Result<()> {
        loop {
            {
                let st = unpoison(self.ops.read());
                let v = st.vector(&self.path)?;
                let fits = |end| v.fits(end) && st.alt.as_ref().is_none_or(|a| a.fits(end));
                if room.is_none_or(fits) {
                    let Some(alt) = st.alt.as_deref() else {
                        f(v, off, len, None).ctx(&self.path, op)?;
                        return Ok(());
                    };
                    for (o, n, m) in st.ranges.split(off, len, st.physical) {
                        let (this, other) = if m == st.physical { (v, alt) } else { (alt, v) };
                        if !f(this, o, n, Some(other)).ctx(&self.path, op)? {
                            break;
                        }
                    }
                    return Ok(());
                }
            }
            let end = room.expect("only a missing room gets here");
            let mut st = unpoison(self.ops.write());
            let st = &mut *st;
            for v in st.vector.iter_mut().chain(st.alt.iter_mut()) {
                v.grow(end).ctx(&self.path, "grow direct-mode mapping")?;
            }
        }
    }

    /// Runs `f` on the vector under the read side.
    #[inline]
    pub(crate) fn with<R>(&self, op: &'static str, f: impl FnOnce(&dyn Aops) -> io::Result<R>) -> Result<R> {
        let st = unpoison(self.ops.read());
        f(st.vector(&self.path)?).ctx(&self.path, op)
    }

    /// Truncates or extends. A shrink takes the write side (as truncate takes the
    /// kernel's i_rwsem) and refuses to cut a live mapping guard's range.
    pub(crate) fn set_len(&self, len: u64) -> Result<()> {
        let cur = self.with("stat", |v| v.len())?;
        // Every vector of the file hears of the new length (the ranges' too).
        let both = |st: &State| -> io::Result<()> {
            for v in st.vector.iter().chain(st.alt.iter()) {
                v.set_len(len)?;
            }
            Ok(())
        };
        if len >= cur {
            // Room for the new length in every vector first (a direct window).
            self.over(0, 0, Some(len), "extend", |_, _, _, _| Ok(false))?;
            let st = unpoison(self.ops.read());
            st.vector(&self.path)?;
            return both(&st).ctx(&self.path, "extend");
        }
        let st = unpoison(self.ops.write());
        let end = self.maps.max_end();
        if end > len {
            return Err(Error::Busy { path: self.path.clone(), mappings: self.maps.count(), elsewhere: None });
        }
        st.vector(&self.path)?;
        // A shrink under another process's mapping would kill it with SIGBUS.
        let file = st.file.clone().ok_or_else(|| Error::invalid(&self.path, "file is closed"))?;
        if !crate::xproc::exclude(&file, len, u64::MAX).ctx(&self.path, "lock range to truncate")? {
            let elsewhere = crate::xproc::holders(&self.path, &file, len, u64::MAX).or(Some("another process".into()));
            return Err(Error::Busy { path: self.path.clone(), mappings: 0, elsewhere });
        }
        let r = both(&st).ctx(&self.path, "truncate");
        crate::xproc::release(&file, len, u64::MAX);
        r
    }

    /// Registers a hold of `off..off+len` (counted as a mapping), under the read side.
    pub(crate) fn hold(&self, off: u64, len: u64) -> Result<(u64, Arc<fs::File>)> {
        self.maps.wait_no_drain(off, off.saturating_add(len));
        let st = unpoison(self.ops.read());
        st.vector(&self.path)?;
        let file = st.file.clone().ok_or_else(|| Error::invalid(&self.path, "file is closed"))?;
        let id = self.maps.add(&self.path, &file, off, len)?;
        Ok((id, file))
    }

    /// Registers a mapping guard of `off..off+len` and makes its mapping, under the
    /// read side so a switch cannot slip in between.
    /// The guard keeps the descriptor its cross-process lock was taken through.
    #[allow(clippy::type_complexity)]
    pub(crate) fn map(
        &self,
        off: u64,
        len: usize,
        writable: bool,
        own: bool,
    ) -> Result<(u64, sys::Mapping, crate::Persistence, Arc<fs::File>)> {
        if writable && !self.writable {
            return Err(Error::invalid(&self.path, "cannot map writable: file is open read-only"));
        }
        self.maps.wait_no_drain(off, off.saturating_add(len as u64));
        let st = unpoison(self.ops.read());
        let mut v = st.vector(&self.path)?;
        let file_len = v.len().ctx(&self.path, "stat")?;
        if len == 0 || off.checked_add(len as u64).is_none_or(|end| end > file_len) {
            return Err(Error::invalid(
                &self.path,
                format!("cannot map {len} bytes at offset {off}: the file is {file_len} bytes (extend it first)"),
            ));
        }
        if let Some(alt) = st.alt.as_deref() {
            // A mapping is served by one vector: it must lie in one run of one mode.
            let (m, run_end) = st.ranges.mode_at(off, st.physical);
            if run_end < off + len as u64 {
                return Err(Error::invalid(
                    &self.path,
                    format!(
                        "cannot map {len} bytes at offset {off}: the range modes change at {run_end} \
                         ({m} before it); map each side separately"
                    ),
                ));
            }
            if m != st.physical {
                v = alt;
            }
        }
        let file = st.file.clone().ok_or_else(|| Error::invalid(&self.path, "file is closed"))?;
        let id = self.maps.add(&self.path, &file, off, len as u64)?;
        let made = if own { v.map_own(off, len, writable) } else { v.map(off, len, writable) };
        let mapping = match made.ctx(&self.path, "mmap") {
            Ok(m) => m,
            Err(e) => {
                self.maps.remove(&file, id);
                return Err(e);
            }
        };
        Ok((id, mapping, v.persistence(), file))
    }
}
