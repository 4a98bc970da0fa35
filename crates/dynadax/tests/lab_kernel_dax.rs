//! Kernel DAX tests: they need ext4 or xfs on a DAX device mounted `dax=inode`, so
//! they are ignored on ordinary machines and run inside the real-kernel lab
//! (`lab/run`), which boots Debian's kernel with an emulated pmem device and runs
//! this binary with `DYNADAX_LAB_DIR=<mount point> --include-ignored`.
//!
//! The kernel is the judge here: `statx` (read with a raw syscall), a raw
//! `MAP_SYNC` mmap, and `/proc/self/smaps` VmFlags.

use dynadax::{Backing, Error, File, Mode, Persistence, SwitchOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

fn lab_dir(name: &str) -> PathBuf {
    let root = std::env::var("DYNADAX_LAB_DIR").expect("DYNADAX_LAB_DIR must name a dax=inode mount");
    let d = Path::new(&root).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `STATX_ATTR_DAX` with a raw statx, independent of dynadax.
fn kernel_dax(p: &Path) -> bool {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), 0, libc::STATX_BASIC_STATS, &mut st) };
    assert_eq!(rc, 0);
    assert_ne!(st.stx_attributes_mask & 0x0020_0000, 0, "kernel does not report STATX_ATTR_DAX");
    st.stx_attributes & 0x0020_0000 != 0
}

/// Whether a raw `MAP_SHARED_VALIDATE | MAP_SYNC` mapping of `p` succeeds.
fn raw_map_sync(p: &Path) -> bool {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(p).unwrap();
    let len = 4096;
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC,
            f.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        let e = std::io::Error::last_os_error();
        assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "unexpected mmap error {e}");
        return false;
    }
    unsafe { libc::munmap(addr, len) };
    true
}

/// The address ranges of the `sf` (VM_SYNC) mappings of `p` in this process.
fn sync_mapping_ranges(p: &Path) -> Vec<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let name = p.to_str().unwrap();
    let (mut out, mut current) = (Vec::new(), None);
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            current = line.ends_with(name).then(|| first.to_string());
        } else if line.starts_with("VmFlags:") && line.split_whitespace().any(|f| f == "sf") {
            out.extend(current.take());
        }
    }
    out
}

/// Number of `sf` (VM_SYNC) mappings of `p` in this process, from /proc/self/smaps.
fn sync_mappings_of(p: &Path) -> usize {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let name = p.to_str().unwrap();
    let mut count = 0;
    let mut in_file = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        let header = first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        if header {
            in_file = line.ends_with(name);
        } else if in_file && line.starts_with("VmFlags:") && line.split_whitespace().any(|f| f == "sf") {
            count += 1;
        }
    }
    count
}

/// Another process holding `p` open: one process (`exec`), so killing it closes the
/// file (a shell with a `sleep` child would leave the child holding it).
fn hold_open(p: &Path) -> Child {
    Command::new("sh").arg("-c").arg(format!("exec sleep 60 3<'{}'", p.display())).spawn().unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

#[test]
#[ignore = "needs a kernel DAX file system (dax=inode): run by lab/run"]
fn inherited_flag_gives_kernel_dax_with_map_sync_and_cache_line_flush() {
    let dir = lab_dir("inherit");
    dynadax::set_mode(&dir, Mode::Direct, SwitchOptions::default()).unwrap();
    let p = dir.join("f");
    let f = File::create(&p).unwrap();
    assert!(kernel_dax(&p), "kernel did not put the inheriting file in DAX");
    let st = f.status().unwrap();
    assert_eq!((st.physical, st.effective, st.backing), (Mode::Direct, Some(Mode::Direct), Some(Backing::KernelDax)));
    assert!(st.persistence.as_deref().unwrap().starts_with("cache-line-flush"), "{st:?}");

    let data = pattern(1 << 20, 3);
    f.write_at(&data, 0).unwrap();
    f.persist(0, data.len() as u64).unwrap();
    assert!(sync_mappings_of(&p) >= 1, "direct window is not a MAP_SYNC mapping");
    let g = f.map(0, 8192, true).unwrap();
    assert!(matches!(g.persistence(), Persistence::CacheLineFlush(_)), "{:?}", g.persistence());
    g.write(0, b"guard").unwrap();
    g.persist(0, 5).unwrap();
    assert!(matches!(f.set_mode(Mode::Cached, SwitchOptions::default()), Err(Error::Busy { .. })));
    drop(g);
    let mut b = [0u8; 5];
    f.read_at(&mut b, 0).unwrap();
    assert_eq!(&b, b"guard");
    assert_eq!(std::fs::read(&p).unwrap()[5..], data[5..]);
}

#[test]
#[ignore = "needs a kernel DAX file system (dax=inode): run by lab/run"]
fn switch_both_ways_follows_the_kernel_with_data_intact() {
    let dir = lab_dir("switch");
    let p = dir.join("f");
    let f = File::create(&p).unwrap();
    let a = pattern(3 << 20, 1);
    f.write_at(&a, 0).unwrap();
    f.persist(0, a.len() as u64).unwrap();
    assert!(!kernel_dax(&p));
    assert_eq!(f.status().unwrap().backing, Some(Backing::PageCache));

    // cached -> direct: dynadax is the only holder, so the kernel switches at once.
    let st = f.set_mode(Mode::Direct, SwitchOptions::default()).unwrap();
    assert!(kernel_dax(&p), "kernel did not switch the file to DAX");
    assert_eq!((st.effective, st.backing, st.pending), (Some(Mode::Direct), Some(Backing::KernelDax), false));
    let mut back = vec![0u8; a.len()];
    f.read_at(&mut back, 0).unwrap();
    assert!(back == a, "cached -> kernel DAX lost data");

    // direct -> cached.
    let b = pattern(1 << 20, 2);
    f.write_at(&b, 4096).unwrap();
    f.persist(4096, b.len() as u64).unwrap();
    let st = f.set_mode(Mode::Cached, SwitchOptions::default()).unwrap();
    assert!(!kernel_dax(&p));
    assert_eq!((st.effective, st.backing), (Some(Mode::Cached), Some(Backing::PageCache)));
    let mut back = vec![0u8; 4096 + b.len()];
    f.read_at(&mut back, 0).unwrap();
    assert_eq!(&back[..4096], &a[..4096]);
    assert!(back[4096..] == b[..], "kernel DAX -> cached lost data");
}

#[test]
#[ignore = "needs a kernel DAX file system (dax=inode): run by lab/run"]
fn switch_is_pending_while_another_process_holds_the_file() {
    let dir = lab_dir("pending");
    let p = dir.join("f");
    std::fs::write(&p, pattern(8192, 5)).unwrap();
    let f = File::open(&p).unwrap();
    let mut holder = hold_open(&p);
    std::thread::sleep(std::time::Duration::from_millis(300));

    let st = f.set_mode(Mode::Direct, SwitchOptions::default()).unwrap();
    assert_eq!(st.physical, Mode::Direct);
    assert!(!kernel_dax(&p), "kernel switched while another process held the file");
    assert!(st.pending, "not reported pending: {st:?}");
    assert_eq!(st.effective, Some(Mode::Cached), "must keep working in the old mode");
    let mut b = vec![0u8; 8192];
    f.read_at(&mut b, 0).unwrap();
    assert_eq!(b, pattern(8192, 5));

    holder.kill().unwrap();
    holder.wait().unwrap();
    let st = f.status().unwrap(); // Gives the kernel the chance to re-instantiate.
    assert!(!st.pending, "still pending after the last other holder closed: {st:?}");
    assert_eq!((st.effective, st.backing), (Some(Mode::Direct), Some(Backing::KernelDax)));
    assert!(kernel_dax(&p));
    f.read_at(&mut b, 0).unwrap();
    assert_eq!(b, pattern(8192, 5));
}

#[test]
#[ignore = "needs a kernel DAX file system (dax=inode): run by lab/run"]
fn probe_says_map_sync_exactly_where_it_works() {
    let dax = lab_dir("probe-dax");
    let plain = lab_dir("probe-plain");
    dynadax::set_mode(&dax, Mode::Direct, SwitchOptions::default()).unwrap();
    for (dir, want) in [(&dax, true), (&plain, false)] {
        let new = dir.join("new-file");
        let p = dynadax::probe(&new).unwrap();
        assert!(p.device_dax && p.flag_store == dynadax::FlagStore::FsXflag, "{p:?}");
        assert_eq!(p.map_sync, want, "probe of a new file in {}: {p:?}", dir.display());
        assert!(!new.exists(), "probe created the file");
        // Now create it and let the kernel answer.
        std::fs::File::create(&new).unwrap().set_len(4096).unwrap();
        assert_eq!(raw_map_sync(&new), want, "kernel disagrees for {}", new.display());
        let p = dynadax::probe(&new).unwrap();
        assert_eq!((p.map_sync, p.statx_dax), (want, Some(want)), "{p:?}");
        assert_eq!(p.persistence, if want { "cache-line-flush" } else { "msync" });
    }
}

#[test]
#[ignore = "needs a kernel DAX file system (dax=inode): run by lab/run"]
fn log_tail_is_kernel_dax_and_sealed_segments_leave_dax() {
    use dynadax::log::{Durability, Log, LogOptions};
    // Group commit too: on a cache-line-flush tail each append persists its own lines.
    for durability in [Durability::Each, Durability::Group] {
        let dir = lab_dir(&format!("log-{durability:?}"));
        let opts = LogOptions { segment_size: 256 << 10, max_record: 4096, durability, ..LogOptions::default() };
        let log = Log::open(&dir, opts.clone()).unwrap();
        let rec = |i: u64| format!("event-{i:06}-{}", "p".repeat((i % 300) as usize)).into_bytes();
        for i in 0..8000u64 {
            assert_eq!(log.append(&rec(i)).unwrap(), i);
            assert_eq!(log.durable_lsn(), i + 1, "{durability:?}: append returned before it was durable");
        }
        let segs = log.segments().unwrap();
        assert!(segs.len() >= 3, "meant to seal segments: {}", segs.len());
        let tail = segs.last().unwrap();
        assert_eq!((tail.effective, tail.backing), (Some(Mode::Direct), Some(Backing::KernelDax)), "{tail:?}");
        assert!(kernel_dax(&tail.path), "the kernel does not serve the tail by DAX");
        assert!(sync_mappings_of(&tail.path) >= 1, "the tail is not written through a MAP_SYNC mapping");
        for s in &segs[..segs.len() - 1] {
            assert_eq!((s.physical, s.effective), (Mode::Cached, Some(Mode::Cached)), "{s:?}");
            assert!(!kernel_dax(&s.path), "{}: sealed but still DAX per statx", s.path.display());
        }
        drop(log);
        let log = Log::open(&dir, opts).unwrap();
        assert_eq!(log.next_lsn(), 8000);
        for r in log.iter(0) {
            let (lsn, data) = r.unwrap();
            assert_eq!(data, rec(lsn), "record {lsn}");
        }
    }
}

/// Logical segments in one kernel-DAX file: the tail range is written through a
/// `MAP_SYNC` mapping that stays alive while earlier ranges are sealed to cached,
/// which the kernel cannot take out of DAX, so dynadax serves them from its DRAM
/// cache: reads hit it the second time, and every byte reads back as written.
#[test]
#[ignore = "needs a kernel DAX file system (dax=inode): run by lab/run"]
fn ranges_of_one_dax_file_a_mapped_tail_and_dram_cached_sealed_parts() {
    const MIB: u64 = 1 << 20;
    let dir = lab_dir("ranges");
    dynadax::set_mode(&dir, Mode::Direct, SwitchOptions::default()).unwrap();
    let p = dir.join("segments");
    let f = File::create(&p).unwrap();
    assert!(kernel_dax(&p));
    let sealed = pattern((2 * MIB) as usize, 7);
    f.write_at(&sealed, 0).unwrap();
    f.set_len(4 * MIB).unwrap();
    let tail = f.map(2 * MIB, (2 * MIB) as usize, true).unwrap();
    assert!(matches!(tail.persistence(), Persistence::CacheLineFlush(_)), "{:?}", tail.persistence());
    tail.write(0, b"tail record").unwrap();
    tail.persist(0, 11).unwrap();
    f.persist(0, 2 * MIB).unwrap();

    // Seal the first 2 MiB while the tail stays mapped.
    let st = f.set_range_mode(0, Some(2 * MIB), Mode::Cached, SwitchOptions::default()).unwrap();
    assert!(kernel_dax(&p), "a range switch must not take the file out of DAX");
    let r = &st.ranges[0];
    assert_eq!((r.physical, r.effective, r.backing), (Mode::Cached, Mode::Cached, Backing::DramCache), "{}", r.reason);
    let mut back = vec![0u8; sealed.len()];
    f.read_at(&mut back, 0).unwrap();
    assert!(back == sealed, "sealed range reads back different data");
    f.read_at(&mut back, 0).unwrap();
    let c = f.status().unwrap().cache.expect("a DRAM cache serves the sealed range");
    assert_eq!((c.misses, c.hits), (512, 512), "{c:?}");

    // The tail mapping kept working across the switch; a switch over it is refused.
    tail.write(11, b" and more").unwrap();
    tail.persist(11, 9).unwrap();
    let mut t = [0u8; 20];
    f.read_at(&mut t, 2 * MIB).unwrap();
    assert_eq!(&t, b"tail record and more");
    assert!(sync_mappings_of(&p) >= 1);
    let busy = f.set_range_mode(2 * MIB, None, Mode::Cached, SwitchOptions::default());
    assert!(matches!(busy, Err(Error::Busy { mappings: 1, .. })), "{busy:?}");
    // Writes to the sealed range go through to the DAX file and are read back.
    f.write_at(b"rewritten", 4096).unwrap();
    f.persist(4096, 9).unwrap();
    let mut w = [0u8; 9];
    f.read_at(&mut w, 4096).unwrap();
    assert_eq!(&w, b"rewritten");
    drop(tail);
    drop(f);
    // From disk, as another program sees it.
    let disk = std::fs::read(&p).unwrap();
    assert_eq!(&disk[4096..4105], b"rewritten");
    assert_eq!(&disk[(2 * MIB) as usize..(2 * MIB) as usize + 20], b"tail record and more");
    assert_eq!(&disk[..4096], &sealed[..4096]);
}

/// Process A for the cross-process tests below: this binary run again with
/// `DYNADAX_LAB_CHILD` (`map OFF LEN PATH`: maps it, with MAP_SYNC on kernel DAX;
/// `dram OFF PATH`: reads the page at OFF through the file's DRAM cache, twice per
/// line it is sent), printing what it did, until its input ends. Not a test without
/// the variable.
#[test]
fn lab_child() {
    use std::io::{BufRead, Write};
    let Ok(spec) = std::env::var("DYNADAX_LAB_CHILD") else { return };
    let w: Vec<&str> = spec.split(' ').collect();
    let mut out = std::io::stdout();
    match w[0] {
        "map" => {
            let f = File::open(w[3]).unwrap();
            let g = f.map(w[1].parse().unwrap(), w[2].parse().unwrap(), true).unwrap();
            writeln!(out, "LAB-CHILD mapped {}", sync_mappings_of(Path::new(w[3]))).unwrap();
            out.flush().unwrap();
            for _ in std::io::stdin().lock().lines() {}
            drop(g);
        }
        "dram" => {
            let f = File::open(w[2]).unwrap();
            let off: u64 = w[1].parse().unwrap();
            for _ in std::io::stdin().lock().lines() {
                let mut b = [0u8; 16];
                f.read_at(&mut b, off).unwrap();
                f.read_at(&mut b, off).unwrap();
                let c = f.status().unwrap().cache.unwrap();
                writeln!(out, "LAB-CHILD read {} hits {}", String::from_utf8_lossy(&b), c.hits).unwrap();
                out.flush().unwrap();
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

struct LabChild {
    child: Child,
    out: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl LabChild {
    fn start(spec: String) -> LabChild {
        use std::io::BufRead;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "lab_child", "--nocapture", "--test-threads=1"])
            .env("DYNADAX_LAB_CHILD", spec)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        LabChild { child, out }
    }
    /// The next line the child prints of its own.
    fn said(&mut self) -> String {
        let l = self.out.find(|l| l.as_ref().is_ok_and(|l| l.contains("LAB-CHILD"))).expect("the child said nothing");
        let l = l.unwrap();
        l[l.find("LAB-CHILD").unwrap() + 10..].to_string()
    }
    fn tell(&mut self, s: &str) {
        use std::io::Write;
        writeln!(self.child.stdin.as_mut().unwrap(), "{s}").unwrap();
    }
}

impl Drop for LabChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue 11 on kernel DAX: a real MAP_SYNC mapping in another process refuses a switch
/// of the file and of its range and a shrink under it, not a range switch of the
/// head; once that process is killed, the switch goes through at once.
#[test]
#[ignore = "needs a kernel DAX file system (dax=inode): run by lab/run"]
fn another_processs_map_sync_mapping_refuses_switches_over_it() {
    const MIB: u64 = 1 << 20;
    let dir = lab_dir("xproc");
    dynadax::set_mode(&dir, Mode::Direct, SwitchOptions::default()).unwrap();
    let p = dir.join("f");
    let f = File::create(&p).unwrap();
    f.set_len(4 * MIB).unwrap();
    assert!(kernel_dax(&p));
    let mut a = LabChild::start(format!("map {} {} {}", 2 * MIB, 2 * MIB, p.display()));
    let said = a.said();
    assert!(said.starts_with("mapped") && !said.ends_with(" 0"), "the child's mapping is not MAP_SYNC: {said}");
    let pid = a.child.id();
    let named = |r: dynadax::Result<dynadax::Status>| match r {
        Err(Error::Busy { mappings: 0, elsewhere: Some(w), .. }) => {
            assert!(w.contains(&format!("process {pid}")), "{w}")
        }
        other => panic!("expected Busy naming process {pid}, got {other:?}"),
    };
    named(f.set_mode(Mode::Cached, SwitchOptions::default()));
    named(f.set_range_mode(2 * MIB, None, Mode::Cached, SwitchOptions::default()));
    assert!(matches!(f.set_len(3 * MIB), Err(Error::Busy { mappings: 0, .. })));
    let st = f.set_range_mode(0, Some(2 * MIB), Mode::Cached, SwitchOptions::default()).unwrap();
    assert_eq!(st.ranges[0].backing, Backing::DramCache);
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    f.set_range_mode(2 * MIB, None, Mode::Cached, SwitchOptions::default()).unwrap();
    f.set_mode(Mode::Direct, SwitchOptions::default()).unwrap();
}

/// Issue 11, item 3 on kernel DAX: a cached range process A serves from its DRAM
/// cache is never served stale after process B writes it through dynadax.
#[test]
#[ignore = "needs a kernel DAX file system (dax=inode): run by lab/run"]
fn a_dram_cached_range_is_not_stale_after_another_process_writes_it() {
    const MIB: u64 = 1 << 20;
    let dir = lab_dir("xdram");
    dynadax::set_mode(&dir, Mode::Direct, SwitchOptions::default()).unwrap();
    let p = dir.join("f");
    let f = File::create(&p).unwrap();
    f.write_at(b"old contents....", 8192).unwrap();
    f.set_len(2 * MIB).unwrap();
    f.set_range_mode(0, Some(MIB), Mode::Cached, SwitchOptions::default()).unwrap();
    let mut a = LabChild::start(format!("dram 8192 {}", p.display()));
    a.tell("read");
    let first = a.said();
    assert!(first.starts_with("read old contents...."), "{first}");
    assert!(!first.ends_with("hits 0"), "A's second read was not a hit: {first}");
    f.write_at(b"NEW contents....", 8192).unwrap();
    a.tell("read");
    let second = a.said();
    assert!(second.starts_with("read NEW contents...."), "A served its stale copy: {second}");
}

/// Issue 12 on kernel DAX: a single-file log. Its data file is kernel DAX per statx
/// for its whole life (ranges are dynadax's, the kernel decides per file); the tail
/// slot is written through one MAP_SYNC mapping that stays the same across seals
/// (/proc/self/smaps); sealed slots are cached ranges served
/// from the DRAM cache (a second read of them hits it); the ring comes round (slots
/// reused after a purge); every record survives a reopen.
#[test]
#[ignore = "needs a kernel DAX file system (dax=inode): run by lab/run"]
fn a_single_file_log_stays_kernel_dax_and_serves_sealed_slots_from_dram() {
    use dynadax::log::{Durability, Layout, Log, LogOptions, DATA_FILE};
    let dir = lab_dir("log-single-file");
    let seg = 256u64 << 10;
    let opts = LogOptions {
        segment_size: seg,
        max_record: 4096,
        durability: Durability::Each,
        layout: Layout::SingleFile { capacity: 4096 + 8 * seg },
        ..LogOptions::default()
    };
    let log = Log::open(&dir, opts.clone()).unwrap();
    let data = dir.join(DATA_FILE);
    assert!(kernel_dax(&data), "the new data file is not kernel DAX");
    let rec = |i: u64| format!("event-{i:06}-{}", "s".repeat((i % 300) as usize)).into_bytes();
    assert_eq!(log.append(&rec(0)).unwrap(), 0);
    // The tail is written through the data file's window: one MAP_SYNC mapping, the
    // same one (same addresses) across every seal.
    let mapping = sync_mapping_ranges(&data);
    assert_eq!(mapping.len(), 1, "one MAP_SYNC mapping of the data file: {mapping:?}");
    let mut n = 1u64;
    let mut seals = 0;
    while seals < 5 {
        assert_eq!(log.append(&rec(n)).unwrap(), n);
        n += 1;
        let now = log.segments().unwrap().len();
        if now > seals + 1 {
            seals = now - 1;
            assert!(kernel_dax(&data), "the data file left kernel DAX after {seals} seal(s)");
            assert_eq!(sync_mapping_ranges(&data), mapping, "the tail's mapping changed at seal {seals}");
        }
    }
    let segs = log.segments().unwrap();
    let tail = segs.last().unwrap();
    assert_eq!((tail.effective, tail.backing), (Some(Mode::Direct), Some(Backing::KernelDax)), "{tail:?}");
    for s in &segs[..segs.len() - 1] {
        assert_eq!((s.physical, s.backing), (Mode::Cached, Some(Backing::DramCache)), "{s:?}");
    }
    // Sealed records, read twice: the second pass is served from the DRAM cache.
    let hits = || File::open(&data).unwrap().status().unwrap().cache.map_or(0, |c| c.hits);
    let sealed_end = segs[segs.len() - 1].first_lsn;
    // Timed (the lab prints it: docs/benchmarks.md quotes it), cold then warm.
    let mut passes = Vec::new();
    for _ in 0..2 {
        let (h0, t, mut bytes) = (hits(), std::time::Instant::now(), 0u64);
        for lsn in 0..sealed_end {
            let got = log.read(lsn).unwrap();
            bytes += got.len() as u64;
            assert_eq!(got, rec(lsn));
        }
        passes.push((bytes as f64 / t.elapsed().as_secs_f64() / 1e6, hits() - h0));
    }
    println!(
        "LAB-MEASURE single-file log on kernel DAX: {sealed_end} sealed records read twice: first pass {:.1} MB/s \
         ({} DRAM-cache page hits), second pass {:.1} MB/s ({} hits)",
        passes[0].0, passes[0].1, passes[1].0, passes[1].1
    );
    assert!(hits() > sealed_end / 2, "sealed slots are not read from the DRAM cache: {} hits", hits());
    // The totals other processes see (`dynadax log stat`) count them too.
    let all = dynadax::dram_cache_totals(&data).expect("shared totals of the data file");
    assert!(all.hits >= hits(), "{all:?}");
    // Round the ring: purge most, append past the end of the data file.
    log.purge_before(sealed_end).unwrap();
    let first = log.first_lsn();
    for _ in 0..6 * seg / 200 {
        assert_eq!(log.append(&rec(n)).unwrap(), n);
        n += 1;
        if log.segments().unwrap().len() >= 7 {
            log.purge_before(log.segments().unwrap()[3].first_lsn).unwrap();
        }
    }
    assert!(kernel_dax(&data), "the data file left kernel DAX after the ring came round");
    let first = log.first_lsn().max(first);
    drop(log);
    let log = Log::open(&dir, opts).unwrap();
    assert!(log.recovery_report().repairs.is_empty(), "{:?}", log.recovery_report().repairs);
    assert_eq!((log.first_lsn(), log.next_lsn()), (first, n));
    for r in log.iter(first) {
        let (lsn, bytes) = r.unwrap();
        assert_eq!(bytes, rec(lsn), "record {lsn}");
    }
    assert!(kernel_dax(&data));
}
