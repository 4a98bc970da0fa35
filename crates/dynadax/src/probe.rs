//! The side-effect-free probe (the user's P.S. in the seed thread): can this path do
//! DAX and `MAP_SYNC`, and how would it persist, without creating, growing or mapping
//! anything?
//!
//! It reads only: `stat`/`statx`, `/proc/self/mountinfo`, `/sys/dev/block`,
//! `FS_IOC_FSGETXATTR` and `fgetxattr` on an existing regular file or directory
//! (opened read-only, which changes no timestamp). It never opens anything else
//! (opening a FIFO blocks, opening a device can act on it).

use crate::error::{IoContext, Result};
use crate::flags::FlagStore;
use crate::inode::{kernel_view, statx_dax};
use crate::mode::{decide, Mode, MountDax};
use crate::mount::{fs_info, PER_FILE_DAX_FS};
use crate::sys::FlushInsn;
use crate::volume::{nearest_existing, Volume};
use serde::Serialize;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What the probe found. The first nine fields are the stable JSON contract.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// The path asked about (it need not exist).
    pub path: PathBuf,
    /// File system type (`ext4`, `xfs`, `tmpfs`, ...).
    pub fs_type: String,
    /// The mount's `dax=` mode (ext4/xfs default to `inode` even when not listed).
    pub mount_dax: MountDax,
    /// Whether the block device can do DAX (`queue/dax` or a `dax/` directory).
    pub device_dax: bool,
    /// `STATX_ATTR_DAX` of the path if it is an existing regular file and the kernel
    /// reports the attribute; otherwise `None`.
    pub statx_dax: Option<bool>,
    /// Whether a `MAP_SHARED_VALIDATE | MAP_SYNC` mapping would succeed: for an
    /// existing file, of that file; otherwise of a file created at the path now.
    pub map_sync: bool,
    /// How direct mode would persist there: `cache-line-flush` or `msync`.
    pub persistence: &'static str,
    /// The CPU's cache-line write-back instruction.
    pub flush_instruction: FlushInsn,
    /// Where physical modes are kept on this file system.
    pub flag_store: FlagStore,
    /// Whether the path exists.
    pub exists: bool,
    /// The existing path the answers were read from (the path or its nearest ancestor).
    pub probed: PathBuf,
    /// Mount point of the file system.
    pub mount_point: PathBuf,
    /// What is mounted there (`/dev/pmem0`, `tmpfs`).
    pub source: String,
    /// The file system's block size.
    pub block_size: u64,
    /// Block device name in sysfs, if any.
    pub device: Option<String>,
    /// Whether `dax=` was listed in the mount options (xfs never lists `inode`).
    pub mount_dax_listed: bool,
    /// Physical mode of the existing path, or the mode a new file would inherit.
    pub physical: Mode,
    /// Effective mode of the existing file, or of a file created at the path now.
    pub effective: Mode,
    /// Why the kernel can or cannot do DAX here.
    pub reason: String,
}

/// Probes `path`. Changes nothing: see the module docs.
pub fn probe(path: impl AsRef<Path>) -> Result<Probe> {
    let path = path.as_ref();
    let probed = nearest_existing(path).ctx(path, "resolve path")?;
    let exists = probed == fs::canonicalize(path).unwrap_or_default();
    let meta = fs::metadata(&probed).ctx(&probed, "stat")?;
    let fsi = fs_info(&probed, meta.dev());
    let insn = FlushInsn::detect();
    let volume = Volume::of(&probed)?;

    // Only regular files and directories are opened (read-only).
    let opened = if meta.is_file() || meta.is_dir() { fs::File::open(&probed).ok() } else { None };
    let flag_store = match &opened {
        Some(f) => FlagStore::for_fs(&fsi, f.as_fd()),
        None if PER_FILE_DAX_FS.contains(&fsi.fs_type.as_str()) => FlagStore::FsXflag,
        None => FlagStore::Sidecar,
    };
    let physical = match &opened {
        Some(f) => flag_store.get(&probed, f.as_fd(), meta.is_dir()).unwrap_or(Mode::Cached),
        None => Mode::Cached,
    };
    let is_file = exists && meta.is_file();
    let statx = match (&opened, is_file) {
        (Some(f), true) => statx_dax(f),
        _ => None,
    };
    let map_sync_arch = cfg!(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "powerpc64"));
    let (map_sync, effective) = match (&opened, is_file) {
        (Some(f), true) => {
            let d = decide(volume.policy(), physical, &kernel_view(&fsi, f));
            (statx == Some(true) && fsi.kernel_capable() && map_sync_arch, d.effective)
        }
        _ => {
            // A new file: the kernel decides S_DAX at creation from the mount mode and
            // the inherited flag (R3, R4).
            let kernel_dax = fsi.kernel_capable()
                && map_sync_arch
                && match fsi.mount_dax {
                    MountDax::Always => true,
                    MountDax::Inode => physical == Mode::Direct,
                    MountDax::Never | MountDax::None => false,
                };
            let view = match &fsi.no_dax_reason {
                Some(why) => crate::mode::KernelView::Incapable { why: why.clone() },
                None => crate::mode::KernelView::Capable { mount: fsi.mount_dax, statx_dax: kernel_dax },
            };
            (kernel_dax, decide(volume.policy(), physical, &view).effective)
        }
    };
    let reason = match &fsi.no_dax_reason {
        Some(why) => why.clone(),
        None => format!(
            "{} on {}: DAX-capable device, mount dax={}",
            fsi.fs_type,
            fsi.device.as_deref().unwrap_or("?"),
            fsi.mount_dax
        ),
    };
    Ok(Probe {
        path: path.to_path_buf(),
        fs_type: fsi.fs_type.clone(),
        mount_dax: fsi.mount_dax,
        device_dax: fsi.device_dax,
        statx_dax: statx,
        map_sync,
        persistence: if map_sync && insn != FlushInsn::None { "cache-line-flush" } else { "msync" },
        flush_instruction: insn,
        flag_store,
        exists,
        probed,
        mount_point: fsi.mount_point.clone(),
        source: fsi.source.clone(),
        block_size: fsi.block_size,
        device: fsi.device.clone(),
        mount_dax_listed: fsi.mount_dax_listed,
        physical,
        effective,
        reason,
    })
}
