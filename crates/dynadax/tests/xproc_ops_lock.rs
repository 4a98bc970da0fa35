//! The ops lock across processes (issue 11): a mapping in one process refuses a
//! switch of an overlapping range, and a shrink under it, in another; a mapping of the
//! tail does not refuse a switch of the head; a process killed while mapping leaves no
//! lock behind. Process A is this test binary run again as a child (the `child` test,
//! which does nothing unless `DYNADAX_XPROC_CHILD` says what to map).

mod common;
use common::*;
use dynadax::{Error, File, Mode, SwitchOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Process A: maps `OFF LEN` of `PATH` (from the environment), says so, drops the
/// mapping when told "unmap" on stdin, says so, then waits for the end of its input.
#[test]
fn child() {
    if let Ok(spec) = std::env::var("DYNADAX_XPROC_TOGGLE") {
        // Toggles the mode of one page at OFF, N times, ending direct.
        let mut it = spec.splitn(3, ' ');
        let off: u64 = it.next().unwrap().parse().unwrap();
        let n: usize = it.next().unwrap().parse().unwrap();
        let f = File::open(it.next().unwrap()).unwrap();
        for k in 0..n {
            let m = if k % 2 == 0 { Mode::Cached } else { Mode::Direct };
            f.set_range_mode(off, Some(4096), m, SwitchOptions { wait: Some(Duration::from_secs(30)) }).unwrap();
        }
        println!("XPROC-TOGGLED");
        return;
    }
    let Ok(spec) = std::env::var("DYNADAX_XPROC_CHILD") else { return };
    let mut it = spec.splitn(3, ' ');
    let off: u64 = it.next().unwrap().parse().unwrap();
    let len: usize = it.next().unwrap().parse().unwrap();
    let path = it.next().unwrap();
    let f = File::open(path).unwrap();
    let g = f.map(off, len, true).unwrap();
    g.write(0, b"A was here").unwrap();
    println!("XPROC-MAPPED");
    std::io::stdout().flush().unwrap();
    let mut lines = std::io::stdin().lock().lines();
    while let Some(Ok(l)) = lines.next() {
        if l == "unmap" {
            break;
        }
    }
    drop(g);
    println!("XPROC-UNMAPPED");
    std::io::stdout().flush().unwrap();
    for _ in lines {}
}

struct Mapper {
    child: Child,
    out: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Mapper {
    /// Process A mapping `off..off+len` of `path`, once it says so.
    fn start(path: &Path, off: u64, len: usize) -> Mapper {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env("DYNADAX_XPROC_CHILD", format!("{off} {len} {}", path.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        // (libtest prints "test child ... " before the test's own output, on its line.)
        let l = out.find(|l| l.as_ref().is_ok_and(|l| l.contains("XPROC-MAPPED") || l.contains("panicked")));
        assert!(l.is_some_and(|l| l.unwrap().contains("XPROC-MAPPED")), "the child did not map");
        Mapper { child, out }
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn unmap(&mut self) {
        writeln!(self.child.stdin.as_mut().unwrap(), "unmap").unwrap();
        let l = self.out.find(|l| l.as_ref().is_ok_and(|l| l.contains("XPROC-UNMAPPED")));
        assert!(l.is_some(), "the child did not unmap");
    }
}

impl Drop for Mapper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn file_of(d: &tempfile::TempDir, len: u64) -> std::path::PathBuf {
    let p = d.path().join("f");
    let f = File::create(&p).unwrap();
    f.set_len(len).unwrap();
    f.set_mode(Mode::Direct, SwitchOptions::default()).unwrap();
    p
}

fn busy_elsewhere(r: dynadax::Result<impl std::fmt::Debug>, pid: u32) {
    match r {
        Err(Error::Busy { mappings: 0, elsewhere: Some(who), .. }) => {
            assert!(who.contains(&format!("process {pid}")), "the error does not name process {pid}: {who}");
        }
        other => panic!("expected Busy naming process {pid}, got {other:?}"),
    }
}

#[test]
fn a_switch_is_refused_while_another_process_maps_the_file_and_allowed_after() {
    for d in [tmpfs_dir(), kernel_flag_dir()] {
        let p = file_of(&d, 1 << 20);
        let mut a = Mapper::start(&p, 0, 64 << 10);
        let f = File::open(&p).unwrap();
        let err = f.set_mode(Mode::Cached, SwitchOptions::default());
        let msg = format!("{}", err.as_ref().unwrap_err());
        assert!(msg.contains("in another process"), "{msg}");
        busy_elsewhere(err, a.pid());
        assert_eq!(f.status().unwrap().physical, Mode::Direct, "a refused switch changed the mode");
        // A waiting switch goes through once A unmaps.
        let f2 = f.clone();
        let t = std::thread::spawn(move || {
            f2.set_mode(Mode::Cached, SwitchOptions { wait: Some(Duration::from_secs(10)) })
        });
        std::thread::sleep(Duration::from_millis(100));
        a.unmap();
        t.join().unwrap().unwrap();
        assert_eq!(f.status().unwrap().physical, Mode::Cached);
        let mut b = [0u8; 10];
        f.read_at(&mut b, 0).unwrap();
        assert_eq!(&b, b"A was here", "A's stores through its mapping");
    }
}

#[test]
fn a_range_switch_of_the_head_passes_another_process_mapping_the_tail() {
    let d = tmpfs_dir();
    let p = file_of(&d, 4 << 20);
    let a = Mapper::start(&p, 2 << 20, 1 << 20);
    let f = File::open(&p).unwrap();
    f.set_range_mode(0, Some(2 << 20), Mode::Cached, SwitchOptions::default()).unwrap();
    busy_elsewhere(f.set_range_mode(2 << 20, None, Mode::Cached, SwitchOptions::default()), a.pid());
    busy_elsewhere(f.set_range_mode(2 << 20, Some(4096), Mode::Cached, SwitchOptions::default()), a.pid());
    f.set_range_mode(3 << 20, None, Mode::Cached, SwitchOptions::default()).unwrap();
    busy_elsewhere(f.set_mode(Mode::Cached, SwitchOptions::default()), a.pid());
}

#[test]
fn a_process_killed_while_mapping_leaves_no_lock_behind() {
    let d = tmpfs_dir();
    let p = file_of(&d, 1 << 20);
    let mut a = Mapper::start(&p, 0, 1 << 20);
    let f = File::open(&p).unwrap();
    assert!(f.set_mode(Mode::Cached, SwitchOptions::default()).is_err());
    a.child.kill().unwrap(); // SIGKILL while mapping
    a.child.wait().unwrap();
    let t = Instant::now();
    f.set_mode(Mode::Cached, SwitchOptions::default()).unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "the switch waited for a dead process's lock");
}

#[test]
fn a_shrink_under_another_process_mapping_is_refused() {
    let d = tmpfs_dir();
    let p = file_of(&d, 1 << 20);
    let a = Mapper::start(&p, 256 << 10, 256 << 10);
    let f = File::open(&p).unwrap();
    busy_elsewhere(f.set_len(300 << 10), a.pid());
    busy_elsewhere(f.set_len(0), a.pid());
    assert_eq!(f.len().unwrap(), 1 << 20);
    // Past A's mapping: fine.
    f.set_len(512 << 10).unwrap();
    assert_eq!(f.len().unwrap(), 512 << 10);
}

/// This process's own mappings: the union of their ranges is what it holds, so
/// dropping one whose range another still covers keeps that covered.
#[test]
fn a_processs_own_overlapping_mappings_keep_their_union_locked() {
    let d = tmpfs_dir();
    let p = file_of(&d, 1 << 20);
    let f = File::open(&p).unwrap();
    let g1 = f.map(0, 512 << 10, false).unwrap();
    let g2 = f.map(256 << 10, 512 << 10, false).unwrap();
    drop(g1);
    // Another process (the child, mapping and so taking the shared lock, would not
    // conflict): check through a second open of this file, a separate description.
    let other = std::fs::OpenOptions::new().read(true).write(true).open(&p).unwrap();
    let conflict = |start: u64, len: u64| {
        let mut l: libc::flock = unsafe { std::mem::zeroed() };
        l.l_type = libc::F_WRLCK as libc::c_short;
        l.l_whence = libc::SEEK_SET as libc::c_short;
        l.l_start = start as libc::off_t;
        l.l_len = len as libc::off_t;
        use std::os::fd::AsRawFd;
        assert_eq!(unsafe { libc::fcntl(other.as_raw_fd(), libc::F_OFD_GETLK, &mut l) }, 0);
        l.l_type != libc::F_UNLCK as libc::c_short
    };
    assert!(!conflict(0, 256 << 10), "the part only the dropped guard covered stayed locked");
    assert!(conflict(300 << 10, 4096), "the part the live guard covers was unlocked");
    drop(g2);
    assert!(!conflict(0, 1 << 20), "locks left after the last guard");
}

/// Issue 11, item 4: two processes setting range modes of one file at once, on pages
/// of their own, lose neither's changes: the recorded ranges end as both left them
/// (each change is made to what is recorded then, under the file's mode lock).
#[test]
fn two_processes_setting_ranges_of_one_file_lose_neither_change() {
    let d = tmpfs_dir();
    let p = d.path().join("f");
    File::create(&p).unwrap().set_len(1 << 20).unwrap();
    let toggler = |off: u64| {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env("DYNADAX_XPROC_TOGGLE", format!("{off} 150 {}", p.display()))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (toggler(0), toggler(64 << 10));
    for c in [a, b] {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("XPROC-TOGGLED"));
    }
    let st = File::open(&p).unwrap().status().unwrap();
    let direct: Vec<u64> = st.ranges.iter().filter(|r| r.physical == Mode::Direct).map(|r| r.offset).collect();
    assert_eq!(direct, vec![0, 64 << 10], "a setter's change was lost: {:?}", st.ranges);
    assert!(st.ranges.iter().all(|r| r.len == Some(4096)), "{:?}", st.ranges);
}
