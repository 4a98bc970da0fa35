//! Helpers shared by the integration tests. Each helper is an *independent* way to
//! see the truth (the raw ioctl, the raw xattr), so tests do not grade dynadax with
//! dynadax's own code.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A fresh directory on the work tree's file system (ext4 or xfs, where the kernel
/// flag store is used). The tests that need it assert that it really is one.
pub fn kernel_flag_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let st = rustix_free_statfs_type(d.path());
    assert!(
        st == EXT4_SUPER_MAGIC || st == XFS_SUPER_MAGIC,
        "these tests need the work tree on ext4 or xfs (f_type {st:#x} at {})",
        d.path().display()
    );
    d
}

/// A fresh directory on tmpfs, where FS_XFLAG_DAX cannot be set.
pub fn tmpfs_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir_in("/dev/shm").expect("/dev/shm (tmpfs) must exist");
    assert_eq!(rustix_free_statfs_type(d.path()), TMPFS_MAGIC, "/dev/shm is not tmpfs");
    d
}

const EXT4_SUPER_MAGIC: i64 = 0xEF53;
const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
const TMPFS_MAGIC: i64 = 0x0102_1994;

fn rustix_free_statfs_type(p: &Path) -> i64 {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut s) }, 0);
    s.f_type as i64
}

/// `fsx_xflags` read with a hand-made FS_IOC_FSGETXATTR (not dynadax's code).
pub fn xflags(p: &Path) -> u32 {
    let f = std::fs::File::open(p).unwrap();
    let mut buf = [0u32; 7];
    // _IOR('X', 31, struct fsxattr) with a 28-byte struct.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), 0x801c_581f, buf.as_mut_ptr()) };
    assert_eq!(rc, 0, "FS_IOC_FSGETXATTR on {}: {}", p.display(), std::io::Error::last_os_error());
    buf[0]
}

pub const XFLAG_DAX: u32 = 0x8000;

/// The raw `user.dynadax.mode` attribute, if any.
pub fn mode_xattr(p: &Path) -> Option<String> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let name = c"user.dynadax.mode";
    let mut buf = [0u8; 32];
    let n = unsafe { libc::getxattr(c.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

/// Deterministic bytes for block `block` at version `v`.
pub fn pattern(len: usize, block: u64, v: u64) -> Vec<u8> {
    let seed = block.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ v.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    (0..len).map(|i| (seed.rotate_left((i % 64) as u32) ^ i as u64) as u8).collect()
}

pub fn path(d: &tempfile::TempDir, name: &str) -> PathBuf {
    d.path().join(name)
}

/// Replaces `from` by `to` in the record of the log's `log.meta` (a state a crash in
/// the middle of an operation leaves), written back in the first format (the JSON
/// line alone, no checksum line), which is still read.
pub fn patch_log_meta(dir: &Path, from: &str, to: &str) {
    let p = dir.join("log.meta");
    let text = std::fs::read_to_string(&p).unwrap();
    let line = text.lines().next().unwrap();
    let patched = line.replace(from, to).replace("\"format\":2", "\"format\":1");
    assert_ne!(line.replace("\"format\":2", "\"format\":1"), patched, "{from:?} not in {line}");
    std::fs::write(&p, patched).unwrap();
}

/// A small deterministic generator (xorshift64) for tests that explore at random.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A number in `0..n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn bit(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

mod layout;
#[allow(unused_imports)]
pub use layout::{layout, single_file};

/// Options of the small logs most log tests use: 64 KiB segments (so a few hundred
/// records cross seals), records up to 4 KiB, on the layout under test.
pub fn small_log(durability: dynadax::log::Durability) -> dynadax::log::LogOptions {
    dynadax::log::LogOptions {
        segment_size: 64 << 10,
        max_record: 4096,
        durability,
        layout: layout(64 << 10),
        ..Default::default()
    }
}

/// Whether segment `s` (as `Log::segments` showed it) is gone from its log: its file
/// removed, or its slot of the single-file layout's data file freed (a zero magic)
/// or holding another segment now (the header's base LSN, bytes 16..24, is another).
pub fn segment_gone(s: &dynadax::log::SegmentInfo) -> bool {
    use std::os::unix::fs::FileExt;
    if !s.path.ends_with(dynadax::log::DATA_FILE) {
        return !s.path.exists();
    }
    let mut head = [0u8; 64];
    std::fs::File::open(&s.path).unwrap().read_exact_at(&mut head, s.offset).unwrap();
    head[..8].iter().all(|&b| b == 0) || u64::from_le_bytes(head[16..24].try_into().unwrap()) != s.first_lsn
}
