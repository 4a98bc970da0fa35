//! What the kernel says about the file system a path lives on: its type and mount,
//! its `dax=` mode, and whether its block device can do DAX. Reads only
//! `/proc/self/mountinfo`, `/sys` and `statvfs`, so it never changes anything.

use crate::mode::MountDax;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// File systems whose kernel code has per-file DAX (`FS_XFLAG_DAX`, `dax=inode`).
pub(crate) const PER_FILE_DAX_FS: [&str; 2] = ["ext4", "xfs"];
/// File systems that can do kernel DAX at all (ext2 and erofs only with `-o dax`).
const DAX_FS: [&str; 4] = ["ext4", "xfs", "ext2", "erofs"];

/// One mounted file system, as far as DAX is concerned.
#[derive(Debug, Clone)]
pub(crate) struct FsInfo {
    pub fs_type: String,
    pub mount_point: PathBuf,
    pub source: String,
    /// The file system's block size (`statvfs`); DAX needs it to equal the page size.
    pub block_size: u64,
    pub mount_dax: MountDax,
    /// Whether `mount_dax` was listed in the options (xfs omits its default `inode`).
    pub mount_dax_listed: bool,
    /// Block device name in sysfs (`vda`, `pmem0`), if the file system has one.
    pub device: Option<String>,
    pub device_dax: bool,
    /// `None` if the kernel can put files of this file system in DAX; otherwise why not.
    pub no_dax_reason: Option<String>,
}

impl FsInfo {
    pub fn kernel_capable(&self) -> bool {
        self.no_dax_reason.is_none()
    }
}

/// The file system holding `existing` (which must exist) with device number `dev`.
/// Cached per device number for the life of the process, like a superblock.
pub(crate) fn fs_info(existing: &Path, dev: u64) -> Arc<FsInfo> {
    static CACHE: OnceLock<Mutex<HashMap<u64, Arc<FsInfo>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(info) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&dev) {
        return info.clone();
    }
    let info = Arc::new(read_fs_info(existing, dev));
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert(dev, info.clone());
    info
}

#[derive(Debug, Clone, PartialEq)]
struct MountEntry {
    major: u64,
    minor: u64,
    mount_point: PathBuf,
    options: Vec<String>,
    fs_type: String,
    source: String,
}

fn read_fs_info(existing: &Path, dev: u64) -> FsInfo {
    let canonical = std::fs::canonicalize(existing).unwrap_or_else(|_| existing.to_path_buf());
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let entries: Vec<MountEntry> = text.lines().filter_map(parse_mountinfo_line).collect();
    let (major, minor) = (rustix::fs::major(dev) as u64, rustix::fs::minor(dev) as u64);
    let entry = best_mount(&entries, &canonical, major, minor).cloned().unwrap_or(MountEntry {
        major,
        minor,
        mount_point: PathBuf::from("/"),
        options: vec![],
        fs_type: "unknown".into(),
        source: "unknown".into(),
    });
    let (mount_dax, listed) = mount_dax(&entry.fs_type, &entry.options);
    let (device, device_dax) = device_dax(major, minor);
    let block_size = rustix::fs::statvfs(existing).map(|s| s.f_bsize).unwrap_or(0);
    let page = crate::sys::page_size() as u64;
    let dev_name = device.clone().unwrap_or_else(|| entry.source.clone());
    let no_dax_reason = if !DAX_FS.contains(&entry.fs_type.as_str()) {
        Some(format!("{} has no DAX", entry.fs_type))
    } else if !device_dax {
        Some(format!("{} on {dev_name}: the device cannot do DAX", entry.fs_type))
    } else if block_size != page {
        Some(format!("{} on {dev_name}: block size {block_size} is not the page size {page}", entry.fs_type))
    } else {
        None
    };
    FsInfo {
        fs_type: entry.fs_type,
        mount_point: entry.mount_point,
        source: entry.source,
        mount_dax,
        mount_dax_listed: listed,
        device,
        device_dax,
        block_size,
        no_dax_reason,
    }
}

/// The mount of `path`: among the entries for its device, the one whose mount point is
/// the longest prefix of `path`; if the device number matches none (btrfs subvolumes,
/// overlay), the longest prefix of any mount.
fn best_mount<'a>(entries: &'a [MountEntry], path: &Path, major: u64, minor: u64) -> Option<&'a MountEntry> {
    let longest = |it: &mut dyn Iterator<Item = &'a MountEntry>| {
        it.filter(|e| path.starts_with(&e.mount_point)).max_by_key(|e| e.mount_point.as_os_str().len())
    };
    longest(&mut entries.iter().filter(|e| e.major == major && e.minor == minor))
        .or_else(|| longest(&mut entries.iter()))
}

/// Parses one `/proc/self/mountinfo` line (see proc(5)):
/// `36 35 98:0 /root /mnt rw,noatime master:1 - ext4 /dev/vda rw,errors=continue`.
fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let (head, tail) = line.split_once(" - ")?;
    let head: Vec<&str> = head.split(' ').collect();
    let (major, minor) = head.get(2)?.split_once(':')?;
    let mut tail = tail.split(' ');
    let fs_type = tail.next()?.to_string();
    let source = unescape(tail.next()?);
    let super_opts = tail.next().unwrap_or("");
    let mut options: Vec<String> = head.get(5)?.split(',').map(str::to_string).collect();
    options.extend(super_opts.split(',').filter(|s| !s.is_empty()).map(str::to_string));
    Some(MountEntry {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        mount_point: PathBuf::from(unescape(head.get(4)?)),
        options,
        fs_type,
        source,
    })
}

/// Undoes the octal escapes (`\040` for space) of mountinfo fields.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..=i + 3].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `dax=` mode from mount options, and whether it was listed. ext4 and xfs default
/// to `inode` without listing it; other file systems have no per-file mode.
fn mount_dax(fs_type: &str, options: &[String]) -> (MountDax, bool) {
    for o in options.iter().rev() {
        let m = match o.as_str() {
            "dax" | "dax=always" => MountDax::Always,
            "dax=never" => MountDax::Never,
            "dax=inode" => MountDax::Inode,
            _ => continue,
        };
        return (m, true);
    }
    if PER_FILE_DAX_FS.contains(&fs_type) {
        (MountDax::Inode, false)
    } else {
        (MountDax::None, false)
    }
}

/// The sysfs name of block device `major:minor` and whether it can do DAX:
/// `queue/dax` reads 1 or a `dax/` directory exists, on the disk of a partition too
/// (as xfstests' `__scratch_dev_has_dax` checks).
fn device_dax(major: u64, minor: u64) -> (Option<String>, bool) {
    if major == 0 {
        return (None, false); // Anonymous device: tmpfs, overlay, btrfs subvolume.
    }
    let Ok(dir) = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")) else {
        return (None, false);
    };
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let is_dax = |d: &Path| {
        std::fs::read_to_string(d.join("queue/dax")).map(|s| s.trim() == "1").unwrap_or(false) || d.join("dax").is_dir()
    };
    let dax = is_dax(&dir) || dir.parent().is_some_and(is_dax);
    (name, dax)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_with_optional_fields_and_escapes() {
        let e = parse_mountinfo_line(
            "36 35 259:0 / /mnt/pm\\040x rw,relatime shared:1 master:2 - xfs /dev/pmem0 rw,attr2,dax=always",
        )
        .unwrap();
        assert_eq!((e.major, e.minor), (259, 0));
        assert_eq!(e.mount_point, PathBuf::from("/mnt/pm x"));
        assert_eq!(e.fs_type, "xfs");
        assert_eq!(e.source, "/dev/pmem0");
        assert_eq!(mount_dax(&e.fs_type, &e.options), (MountDax::Always, true));
    }

    #[test]
    fn xfs_and_ext4_default_to_inode_without_listing_it() {
        assert_eq!(mount_dax("xfs", &["rw".into()]), (MountDax::Inode, false));
        assert_eq!(mount_dax("ext4", &["rw".into(), "dax=never".into()]), (MountDax::Never, true));
        assert_eq!(mount_dax("tmpfs", &["rw".into()]), (MountDax::None, false));
        assert_eq!(mount_dax("ext2", &["dax".into()]), (MountDax::Always, true));
    }

    #[test]
    fn best_mount_prefers_longest_prefix_on_the_same_device() {
        let m = |maj, p: &str, t: &str| MountEntry {
            major: maj,
            minor: 0,
            mount_point: p.into(),
            options: vec![],
            fs_type: t.into(),
            source: "x".into(),
        };
        let entries = vec![m(8, "/", "ext4"), m(0, "/dev/shm", "tmpfs"), m(8, "/data", "ext4")];
        assert_eq!(best_mount(&entries, Path::new("/data/a"), 8, 0).unwrap().mount_point, PathBuf::from("/data"));
        assert_eq!(best_mount(&entries, Path::new("/dev/shm/a"), 0, 0).unwrap().fs_type, "tmpfs");
        // A path whose prefix is not a component boundary does not match `/data`.
        assert_eq!(best_mount(&entries, Path::new("/database"), 8, 0).unwrap().mount_point, PathBuf::from("/"));
    }

    #[test]
    fn this_machine_root_is_found() {
        let st = rustix::fs::stat("/").unwrap();
        let info = fs_info(Path::new("/"), st.st_dev);
        assert_ne!(info.fs_type, "unknown");
        assert!(info.block_size > 0);
    }
}
