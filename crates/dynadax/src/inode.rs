//! In-memory inodes: one per file per process, its ops lock, its mapping registry,
//! and the mode-switch protocol.
//!
//! The protocol is the seed thread's four rules, in one process:
//! 1. every operations vector has every operation (`aops::Aops`);
//! 2. the mode does not change while a mapping of the file is alive (`set_mode`
//!    refuses with `Busy`, or waits);
//! 3. every use of the vector is under the ops lock's read side;
//! 4. a change of vector is under its write side.

use crate::aops::{Aops, CachedOps, DirectOps};
use crate::error::{Error, IoContext, Result};
use crate::flags::FlagStore;
use crate::mode::{decide, Backing, Decision, KernelView, Mode, MountDax, Policy};
use crate::mount::{fs_info, FsInfo};
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

/// The vector and the mode state it implements. Guarded by `Inode::ops`.
pub(crate) struct State {
    /// The one descriptor this process holds for the file. `None` only while a
    /// kernel-DAX switch has closed it to let the kernel evict the inode, or if
    /// reopening afterwards failed (`dead` says why).
    file: Option<Arc<fs::File>>,
    pub(crate) vector: Option<Box<dyn Aops>>,
    pub(crate) physical: Mode,
    pub(crate) decision: Decision,
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
    /// Switches waiting for the guards to drop. While non-zero, new mappings wait
    /// (like readers behind a waiting writer in the kernel's rwsem), so a stream of
    /// short-lived mappings cannot starve a switch. The wait is bounded by the
    /// switch's timeout, so a guard holder that maps again cannot deadlock it.
    draining: usize,
}

impl MapRegistry {
    fn add(&self, off: u64, len: u64) -> u64 {
        let mut g = unpoison(self.live.lock());
        g.next_id += 1;
        let id = g.next_id;
        g.ranges.insert(id, (off, len));
        id
    }
    pub(crate) fn remove(&self, id: u64) {
        unpoison(self.live.lock()).ranges.remove(&id);
        self.changed.notify_all();
    }
    pub(crate) fn count(&self) -> usize {
        unpoison(self.live.lock()).ranges.len()
    }
    fn max_end(&self) -> u64 {
        unpoison(self.live.lock()).ranges.values().map(|(o, l)| o + l).max().unwrap_or(0)
    }
    /// Blocks a new mapping while a switch is draining the live ones.
    fn wait_no_drain(&self) {
        let mut g = unpoison(self.live.lock());
        while g.draining > 0 {
            g = unpoison(self.changed.wait(g));
        }
    }
    /// Waits until no guard is alive or `deadline` passes; true if none is alive.
    /// New mappings wait meanwhile (see `Maps::draining`).
    fn drain(&self, deadline: Instant) -> bool {
        let mut g = unpoison(self.live.lock());
        g.draining += 1;
        while !g.ranges.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            g = unpoison(self.changed.wait_timeout(g, deadline - now)).0;
        }
        g.draining -= 1;
        let empty = g.ranges.is_empty();
        drop(g);
        self.changed.notify_all();
        empty
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
                physical,
                decision: decide(Policy::Inode, Mode::Cached, &KernelView::Incapable { why: String::new() }),
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

    /// The switch: refuse (or wait) while mapped, record the physical mode, swap the
    /// vector. Metadata only: no data is copied, whatever the file's size.
    pub(crate) fn set_mode(&self, mode: Mode, opts: SwitchOptions) -> Result<()> {
        let deadline = opts.wait.map(|w| Instant::now() + w);
        let old = loop {
            let mut st = unpoison(self.ops.write());
            let live = self.maps.count();
            if live > 0 {
                drop(st);
                match deadline {
                    Some(d) if self.maps.drain(d) => continue,
                    _ => return Err(Error::Busy { path: self.path.clone(), mappings: self.maps.count().max(1) }),
                }
            }
            let file = st.file.clone().ok_or_else(|| Error::invalid(&self.path, "file is closed"))?;
            self.store.set(&self.path, file.as_fd(), false, mode)?;
            st.physical = mode;
            if self.kernel_switches() {
                drop(file);
                self.reopen(&mut st)?;
                break None;
            }
            let decision = decide(self.policy, mode, &kernel_view(&self.fs, &file));
            if decision.effective == st.decision.effective {
                st.decision = decision;
                break None;
            }
            let old = st.vector.take();
            Self::build(&self.path, &self.fs, self.policy, self.writable, &mut st, file)?;
            break old;
        };
        // Unmapping a large, populated window costs time proportional to its touched
        // pages: that is reclamation, not part of the switch, so it happens off this
        // thread (the kernel path above unmaps synchronously: eviction needs it).
        if let Some(old) = old {
            retire(old);
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

    /// Runs `f` on the vector under the read side, after making sure the vector can
    /// reach `end` bytes (growing the direct window under the write side if not).
    pub(crate) fn with_room<R>(&self, end: u64, op: &'static str, f: impl Fn(&dyn Aops) -> io::Result<R>) -> Result<R> {
        loop {
            {
                let st = unpoison(self.ops.read());
                let v = st.vector(&self.path)?;
                if v.fits(end) {
                    return f(v).ctx(&self.path, op);
                }
            }
            let mut st = unpoison(self.ops.write());
            if let Some(v) = st.vector.as_mut() {
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
        if len >= cur {
            return self.with_room(len, "extend", |v| v.set_len(len));
        }
        let st = unpoison(self.ops.write());
        let end = self.maps.max_end();
        if end > len {
            return Err(Error::Busy { path: self.path.clone(), mappings: self.maps.count() });
        }
        st.vector(&self.path)?.set_len(len).ctx(&self.path, "truncate")
    }

    /// Registers a mapping guard of `off..off+len` and makes its mapping, under the
    /// read side so a switch cannot slip in between.
    pub(crate) fn map(&self, off: u64, len: usize, writable: bool) -> Result<(u64, sys::Mapping, crate::Persistence)> {
        if writable && !self.writable {
            return Err(Error::invalid(&self.path, "cannot map writable: file is open read-only"));
        }
        self.maps.wait_no_drain();
        let st = unpoison(self.ops.read());
        let v = st.vector(&self.path)?;
        let file_len = v.len().ctx(&self.path, "stat")?;
        if len == 0 || off.checked_add(len as u64).is_none_or(|end| end > file_len) {
            return Err(Error::invalid(
                &self.path,
                format!("cannot map {len} bytes at offset {off}: the file is {file_len} bytes (extend it first)"),
            ));
        }
        let mapping = v.map(off, len, writable).ctx(&self.path, "mmap")?;
        let id = self.maps.add(off, len as u64);
        Ok((id, mapping, v.persistence()))
    }
}
