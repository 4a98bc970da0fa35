//! The ops lock across processes. The thread's patch puts the lock on the inode, so
//! it holds for every user of the file; dynadax's in-process ops lock (`inode.rs`)
//! holds for one process's threads. Its cross-process side is made of open file
//! description (OFD) byte-range locks on the descriptor each process holds for the
//! file (`F_OFD_SETLK`): they belong to the open file, work between processes and
//! between the threads of one, and the kernel drops them when the process dies,
//! `kill -9` included, so a crash never leaves a stale lock.
//!
//! - Every live mapping guard holds a **shared** lock over its byte range. A process's
//!   locks through one descriptor merge, so what it holds is the union of its live
//!   guards' ranges: a guard's drop unlocks only the parts no other guard of this
//!   process still covers (`MapRegistry` keeps that union).
//! - A switch of the file or of a range, and a shrink, take the **exclusive** lock over
//!   their range for the switch's duration (after the in-process check, under the ops
//!   lock's write side): refused with `Busy` naming the other process while any
//!   process maps an overlapping range, or waiting (polling) per `SwitchOptions`.
//! - A new mapping's shared lock waits, briefly, for another process's switch of its
//!   range to finish.
//!
//! The order is always the in-process lock first, then the cross-process one, so the
//! two levels cannot deadlock (`tests/shuttle_model.rs` models it). Nothing on the
//! read/write path takes a cross-process lock.

use crate::sys::{self, RangeLock};
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `start..end` as an OFD lock range (`end` `u64::MAX`: to the end, whatever it grows to).
fn span(start: u64, end: u64) -> (u64, u64) {
    let start = start.min(i64::MAX as u64);
    if end >= i64::MAX as u64 {
        (start, 0) // l_len 0: to infinity
    } else {
        (start, end - start)
    }
}

/// Takes the shared lock of `start..end` through `file`: false if another process
/// holds an exclusive one over part of it (it is switching that range).
pub(crate) fn share(file: &fs::File, start: u64, end: u64) -> io::Result<bool> {
    if cfg!(feature = "bench-no-xproc") {
        return Ok(true);
    }
    let (off, len) = span(start, end);
    sys::ofd_lock(file.as_fd(), Some(RangeLock::Shared), off, len)
}

/// Takes the exclusive lock of `start..end` through `file`: false if another process
/// holds any lock over part of it (it maps it, or switches it).
pub(crate) fn exclude(file: &fs::File, start: u64, end: u64) -> io::Result<bool> {
    let (off, len) = span(start, end);
    sys::ofd_lock(file.as_fd(), Some(RangeLock::Exclusive), off, len)
}

/// Drops whatever lock `file` holds over `start..end`.
pub(crate) fn release(file: &fs::File, start: u64, end: u64) {
    if cfg!(feature = "bench-no-xproc") {
        return;
    }
    let (off, len) = span(start, end);
    let _ = sys::ofd_lock(file.as_fd(), None, off, len);
}

/// Who else holds a lock of the file at `path` over part of `start..end`: the
/// processes whose open files show one in `/proc/PID/fdinfo` (the kernel reports no
/// owner for OFD locks in `/proc/locks`), described for an error message. `None` if
/// none can be found (another user's processes, another PID namespace).
pub(crate) fn holders(path: &Path, file: &fs::File, start: u64, end: u64) -> Option<String> {
    let meta = file.metadata().ok()?;
    let (dev, ino) = (meta.dev(), meta.ino());
    let key = format!("{:02x}:{:02x}:{ino} ", libc::major(dev), libc::minor(dev));
    let me = std::process::id();
    let mut pids = Vec::new();
    for p in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(fds) = fs::read_dir(p.path().join("fdinfo")) else { continue };
        let holds = fds.flatten().any(|fd| {
            fs::read_to_string(fd.path()).is_ok_and(|info| {
                info.lines().filter(|l| l.starts_with("lock:")).any(|l| {
                    // lock:	1: OFDLCK ADVISORY  READ -1 MAJ:MIN:INO START END|EOF
                    let Some(at) = l.find(&key) else { return false };
                    let mut f = l[at + key.len()..].split_whitespace();
                    let s: u64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                    let e: u64 = f.next().and_then(|v| v.parse().ok()).map_or(u64::MAX, |e: u64| e.saturating_add(1));
                    s < end && e > start
                })
            })
        });
        if holds {
            pids.push(pid);
        }
    }
    let who: Vec<String> = pids.iter().map(|&pid| describe(pid, path)).collect();
    (!who.is_empty()).then(|| who.join(", "))
}

/// `process N (its command line)`, and, for a log's segment whose writer it is, so.
fn describe(pid: u32, path: &Path) -> String {
    let cmd = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            let s: Vec<String> = b
                .split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            s.join(" ")
        })
        .unwrap_or_default();
    let mut s = if cmd.is_empty() { format!("process {pid}") } else { format!("process {pid} ({cmd})") };
    if let Some(dir) = path.parent() {
        let writer = fs::read_to_string(dir.join(crate::log::LOCK_FILE)).ok();
        if writer.is_some_and(|w| w.trim() == pid.to_string()) {
            s.push_str(&format!(", the writer of the log {}", dir.display()));
        }
    }
    s
}
