//! The probe creates, grows, maps and changes nothing: names, inode numbers, sizes,
//! contents, flags and all three timestamps are identical before and after, for an
//! existing file, a directory and paths that do not exist, on ext4 and on tmpfs.

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, PartialEq)]
struct Entry {
    name: String,
    ino: u64,
    size: u64,
    atime: (i64, i64),
    mtime: (i64, i64),
    ctime: (i64, i64),
    xattrs: Vec<u8>,
}

fn snapshot(root: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        // Extended attribute names (stat-like: reading them changes no timestamp).
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        let mut names = vec![0u8; 4096];
        let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        names.truncate(n.max(0) as usize);
        out.push(Entry {
            name: p.display().to_string(),
            ino: m.ino(),
            size: m.size(),
            atime: (m.atime(), m.atime_nsec()),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            xattrs: names,
        });
        if m.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()).collect();
            names.sort();
            stack.extend(names);
        }
    }
    out
}

/// Old atime, newer mtime: under relatime any read of the file would bump the atime.
fn age(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let times = [libc::timespec { tv_sec: 1_000, tv_nsec: 0 }, libc::timespec { tv_sec: 2_000, tv_nsec: 0 }];
    assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) }, 0);
}

#[test]
fn probe_changes_nothing() {
    for d in [kernel_flag_dir(), tmpfs_dir()] {
        let dir = d.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("seg");
        std::fs::write(&file, b"persistent bytes").unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, b"").unwrap();
        for p in [&file, &empty] {
            age(p);
        }
        // Listing a directory moves its atime once under relatime; list them first so
        // the reference snapshot is a fixed point. File atimes stay old (never read).
        let _ = snapshot(d.path());
        let before = snapshot(d.path());
        let maps_before =
            std::fs::read_to_string("/proc/self/maps").unwrap().matches(d.path().to_str().unwrap()).count();

        for target in [file.clone(), empty.clone(), dir.clone(), dir.join("new"), dir.join("a/b/c")] {
            let p = dynadax::probe(&target).unwrap();
            assert_eq!(p.path, target);
            assert!(!p.map_sync, "no DAX device on this machine: {p:?}");
            assert_eq!(p.persistence, "msync");
            assert_eq!(p.exists, target.exists());
        }
        let maps_after =
            std::fs::read_to_string("/proc/self/maps").unwrap().matches(d.path().to_str().unwrap()).count();
        assert_eq!(maps_before, maps_after, "probe left a mapping behind");
        let after = snapshot(d.path());
        assert_eq!(before.len(), after.len(), "probe created or removed something");
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(b, a, "probe changed {}", b.name);
        }
        // Contents last (reading them is what would move the atime).
        assert_eq!(std::fs::read(&file).unwrap(), b"persistent bytes");
        assert_eq!(std::fs::read(&empty).unwrap(), b"");
    }
}
