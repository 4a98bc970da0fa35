//! Where the persistent *physical* mode of a file or directory is kept.
//!
//! Preference order, fixed per file system:
//! 1. `fs-xflag`: the kernel's own `FS_XFLAG_DAX` (`FS_IOC_FSSETXATTR`) on ext4 and xfs,
//!    so `xfs_io -c lsattr` / `lsattr` agree with dynadax and the kernel does the
//!    inheritance at creation for every program;
//! 2. `xattr`: the extended attribute `user.dynadax.mode` (`direct` or `cached`);
//! 3. `sidecar`: a `.dynadax-modes` file in the directory, one `MODE<TAB>NAME` line per
//!    entry (`.` for the directory itself), replaced atomically.
//!
//! With the fallbacks (2, 3) only files created through dynadax inherit their parent's
//! mode; a file created by another program has no record and is `cached`, as a file
//! without `FS_XFLAG_DAX` is.

use crate::error::{Error, IoContext, Result};
use crate::mode::Mode;
use crate::mount::{FsInfo, PER_FILE_DAX_FS};
use crate::ranges::{RangeMap, RANGES_XATTR};
use crate::sys;
use serde::Serialize;
use std::fs;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

/// The extended attribute of the `xattr` store.
pub const MODE_XATTR: &str = "user.dynadax.mode";
/// The file name of the `sidecar` store, in each directory that has records.
pub const SIDECAR_NAME: &str = ".dynadax-modes";

/// Which store keeps physical modes on a file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlagStore {
    /// The kernel's `FS_XFLAG_DAX`.
    FsXflag,
    /// The `user.dynadax.mode` extended attribute.
    Xattr,
    /// A `.dynadax-modes` file in the parent directory.
    Sidecar,
}

impl FlagStore {
    /// The store for files on `fs`; `fd` is any open file or directory there (only read).
    pub(crate) fn for_fs(fs: &FsInfo, fd: BorrowedFd<'_>) -> FlagStore {
        if PER_FILE_DAX_FS.contains(&fs.fs_type.as_str()) {
            FlagStore::FsXflag
        } else if sys::user_xattrs_supported(fd) {
            FlagStore::Xattr
        } else {
            FlagStore::Sidecar
        }
    }

    /// Name as printed by `stat` and `probe`.
    pub fn as_str(self) -> &'static str {
        match self {
            FlagStore::FsXflag => "fs-xflag",
            FlagStore::Xattr => "xattr",
            FlagStore::Sidecar => "sidecar",
        }
    }

    /// The physical mode of `path` (open as `fd`); no record means `cached`.
    pub(crate) fn get(self, path: &Path, fd: BorrowedFd<'_>, is_dir: bool) -> Result<Mode> {
        match self {
            FlagStore::FsXflag => {
                let flags = sys::get_xflags(fd).ctx(path, "read FS_XFLAG_DAX (FS_IOC_FSGETXATTR)")?;
                Ok(if flags & sys::FS_XFLAG_DAX != 0 { Mode::Direct } else { Mode::Cached })
            }
            FlagStore::Xattr => {
                let mut buf = [0u8; 16];
                match rustix::fs::fgetxattr(fd, MODE_XATTR, &mut buf) {
                    Ok(n) => parse_mode(&buf[..n]).ok_or_else(|| Error::Corrupt {
                        path: path.to_path_buf(),
                        what: "mode attribute user.dynadax.mode",
                        offset: None,
                        why: format!("value {:?} is neither direct nor cached", String::from_utf8_lossy(&buf[..n])),
                    }),
                    Err(rustix::io::Errno::NODATA) => Ok(Mode::Cached),
                    Err(e) => Err(Error::io(path, "read user.dynadax.mode", e.into())),
                }
            }
            FlagStore::Sidecar => {
                let (file, key) = sidecar_of(path, is_dir)?;
                Ok(read_sidecar(&file)?.into_iter().find(|(k, _)| *k == key).map_or(Mode::Cached, |(_, m)| m))
            }
        }
    }

    /// Records `mode` as the physical mode of `path` (open as `fd`), durably.
    pub(crate) fn set(self, path: &Path, fd: BorrowedFd<'_>, is_dir: bool, mode: Mode) -> Result<()> {
        match self {
            FlagStore::FsXflag => {
                sys::set_xflag_dax(fd, mode == Mode::Direct).map_err(|e| match e.raw_os_error() {
                    Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY) | Some(libc::EINVAL) => Error::Unsupported {
                        path: path.to_path_buf(),
                        what: "setting FS_XFLAG_DAX",
                        why: format!("the file system refused it ({e}); ext4 refuses it on inline-data, encrypted or verity files"),
                    },
                    _ => Error::io(path, "set FS_XFLAG_DAX (FS_IOC_FSSETXATTR)", e),
                })?;
            }
            FlagStore::Xattr => {
                rustix::fs::fsetxattr(fd, MODE_XATTR, mode.as_str().as_bytes(), rustix::fs::XattrFlags::empty())
                    .ctx(path, "write user.dynadax.mode")?;
            }
            FlagStore::Sidecar => {
                let (file, key) = sidecar_of(path, is_dir)?;
                // One read-modify-write at a time per directory, across processes: an
                // exclusive flock of the directory (another process setting the mode of
                // another file here would otherwise lose this change, or this its).
                let dir = file.parent().unwrap_or(Path::new("."));
                let lock = fs::File::open(dir).ctx(dir, "open directory to lock its mode sidecar")?;
                rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
                    .ctx(dir, "lock the mode sidecar")?;
                let mut records = read_sidecar(&file)?;
                records.retain(|(k, _)| *k != key);
                if mode == Mode::Direct {
                    records.push((key, mode));
                }
                write_sidecar(&file, &records)?;
            }
        }
        // The ioctl and the xattr are journaled metadata: fsync makes them durable. It
        // also makes the file's other metadata durable (the log relies on this for the
        // length of a segment trimmed just before it is sealed).
        rustix::fs::fsync(fd).ctx(path, "fsync after recording the mode")
    }
}

impl FlagStore {
    /// The range map of the file at `path` (open as `fd`); empty if it has none or
    /// its store cannot keep one.
    pub(crate) fn get_ranges(self, path: &Path, fd: BorrowedFd<'_>) -> Result<RangeMap> {
        if self == FlagStore::Sidecar {
            return Ok(RangeMap::default());
        }
        let mut buf = vec![0u8; 4096];
        let n = loop {
            match rustix::fs::fgetxattr(fd, RANGES_XATTR, &mut buf) {
                Ok(n) => break n,
                Err(rustix::io::Errno::RANGE) if buf.len() < 1 << 16 => buf.resize(buf.len() * 4, 0),
                Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => return Ok(RangeMap::default()),
                Err(e) => return Err(Error::io(path, "read user.dynadax.ranges", e.into())),
            }
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        RangeMap::decode(&text).map_err(|why| Error::Corrupt {
            path: path.to_path_buf(),
            what: "range modes attribute user.dynadax.ranges",
            offset: None,
            why,
        })
    }

    /// Records `ranges` as the range map of `path` (open as `fd`), durably; an empty
    /// map removes the attribute.
    pub(crate) fn set_ranges(self, path: &Path, fd: BorrowedFd<'_>, ranges: &RangeMap) -> Result<()> {
        let unsupported = |why: String| Error::Unsupported { path: path.to_path_buf(), what: "range modes", why };
        if self == FlagStore::Sidecar {
            return Err(unsupported(
                "they are kept in a user extended attribute, and this file system has none".into(),
            ));
        }
        let r = if ranges.is_empty() {
            match rustix::fs::fremovexattr(fd, RANGES_XATTR) {
                Err(rustix::io::Errno::NODATA) => Ok(()),
                r => r,
            }
        } else {
            rustix::fs::fsetxattr(fd, RANGES_XATTR, ranges.encode().as_bytes(), rustix::fs::XattrFlags::empty())
        };
        r.map_err(|e| match e {
            rustix::io::Errno::NOSPC | rustix::io::Errno::TOOBIG => unsupported(format!(
                "{} ranges do not fit in the file's extended attribute ({e})",
                ranges.iter().count()
            )),
            rustix::io::Errno::NOTSUP => unsupported(format!("the file system refused {RANGES_XATTR} ({e})")),
            e => Error::io(path, "write user.dynadax.ranges", e.into()),
        })?;
        rustix::fs::fsync(fd).ctx(path, "fsync after recording range modes")
    }
}

fn parse_mode(b: &[u8]) -> Option<Mode> {
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

/// The sidecar file holding `path`'s record, and the key of that record.
fn sidecar_of(path: &Path, is_dir: bool) -> Result<(PathBuf, String)> {
    if is_dir {
        return Ok((path.join(SIDECAR_NAME), ".".into()));
    }
    let name =
        path.file_name().and_then(|n| n.to_str()).ok_or_else(|| Error::invalid(path, "file name is not UTF-8"))?;
    if name.contains(['\t', '\n']) {
        return Err(Error::invalid(path, "the sidecar store cannot record a name with a tab or newline"));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok((parent.join(SIDECAR_NAME), name.to_string()))
}

fn read_sidecar(file: &Path) -> Result<Vec<(String, Mode)>> {
    let text = match fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::io(file, "read mode sidecar", e)),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty() && !l.starts_with('#')) {
        let parsed = line.split_once('\t').and_then(|(m, k)| Some((k.to_string(), parse_mode(m.as_bytes())?)));
        out.push(parsed.ok_or_else(|| Error::Corrupt {
            path: file.to_path_buf(),
            what: "mode sidecar",
            offset: None,
            why: format!("line {} is not MODE<TAB>NAME: {line:?}", n + 1),
        })?);
    }
    Ok(out)
}

/// Replaces the sidecar atomically (temporary file, fsync, rename, fsync directory).
fn write_sidecar(file: &Path, records: &[(String, Mode)]) -> Result<()> {
    let mut text = String::from("# dynadax physical modes: MODE<TAB>NAME ('.' is this directory)\n");
    for (k, m) in records {
        text.push_str(&format!("{m}\t{k}\n"));
    }
    crate::atomic_file::replace(file, text.as_bytes(), "write mode sidecar")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn sidecar_round_trip_and_corruption_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        fs::write(&f, b"x").unwrap();
        let fd = fs::File::open(&f).unwrap();
        let s = FlagStore::Sidecar;
        assert_eq!(s.get(&f, fd.as_fd(), false).unwrap(), Mode::Cached);
        s.set(&f, fd.as_fd(), false, Mode::Direct).unwrap();
        assert_eq!(s.get(&f, fd.as_fd(), false).unwrap(), Mode::Direct);
        let d = fs::File::open(dir.path()).unwrap();
        assert_eq!(s.get(dir.path(), d.as_fd(), true).unwrap(), Mode::Cached);
        s.set(dir.path(), d.as_fd(), true, Mode::Direct).unwrap();
        assert_eq!(s.get(dir.path(), d.as_fd(), true).unwrap(), Mode::Direct);
        s.set(&f, fd.as_fd(), false, Mode::Cached).unwrap();
        assert_eq!(s.get(&f, fd.as_fd(), false).unwrap(), Mode::Cached);
        assert_eq!(s.get(dir.path(), d.as_fd(), true).unwrap(), Mode::Direct);

        // Range modes need a user xattr: the sidecar store refuses them, naming the file.
        let mut ranges = RangeMap::default();
        ranges.set(0, 4096, Mode::Direct, Mode::Cached);
        let err = s.set_ranges(&f, fd.as_fd(), &ranges).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }) && err.to_string().contains(&*f.to_string_lossy()), "{err}");
        assert!(s.get_ranges(&f, fd.as_fd()).unwrap().is_empty());

        fs::write(dir.path().join(SIDECAR_NAME), "bogus line\n").unwrap();
        let err = s.get(&f, fd.as_fd(), false).unwrap_err().to_string();
        assert!(err.contains(SIDECAR_NAME) && err.contains("line 1"), "{err}");
    }

    /// Issue 11, item 4: setters of different files of one directory at once (each
    /// thread with its own open of the directory, as processes have) lose nothing:
    /// every file ends with the mode its setter gave it last, and the sidecar parses.
    #[test]
    fn concurrent_sidecar_setters_lose_no_update() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<PathBuf> = (0..4).map(|i| dir.path().join(format!("f{i}"))).collect();
        for n in &names {
            fs::write(n, b"x").unwrap();
        }
        std::thread::scope(|s| {
            for n in &names {
                s.spawn(move || {
                    let fd = fs::File::open(n).unwrap();
                    for k in 0..60 {
                        let m = if k % 2 == 0 { Mode::Direct } else { Mode::Cached };
                        FlagStore::Sidecar.set(n, fd.as_fd(), false, m).unwrap();
                    }
                    // The last: direct.
                    FlagStore::Sidecar.set(n, fd.as_fd(), false, Mode::Direct).unwrap();
                });
            }
        });
        for n in &names {
            let fd = fs::File::open(n).unwrap();
            assert_eq!(FlagStore::Sidecar.get(n, fd.as_fd(), false).unwrap(), Mode::Direct, "{} lost", n.display());
        }
    }
}
