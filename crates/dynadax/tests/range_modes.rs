//! Modes for ranges of one file: a range switch is refused only by mappings over
//! that range, mappings of the rest of the file stay alive and usable across it, data
//! reads back the same through either vector, the range map persists (in the
//! `user.dynadax.ranges` attribute, read here by hand) and survives a reopen, and
//! bad ranges are refused with errors naming the file.

mod common;
use common::*;
use dynadax::{Backing, Error, File, Mode, SwitchOptions, RANGES_XATTR};
use std::time::Duration;

const MIB: u64 = 1 << 20;

fn both_file_systems() -> Vec<tempfile::TempDir> {
    vec![kernel_flag_dir(), tmpfs_dir()]
}

/// The raw range attribute, read without dynadax.
fn ranges_xattr(p: &std::path::Path) -> Option<String> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new(RANGES_XATTR).unwrap();
    let mut buf = [0u8; 512];
    let n = unsafe { libc::getxattr(c.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

#[test]
fn a_direct_tail_after_cached_parts_in_one_file() {
    for d in both_file_systems() {
        let p = path(&d, "log");
        let f = File::create(&p).unwrap();
        let a = pattern((4 * MIB) as usize, 1, 1);
        f.write_at(&a, 0).unwrap();
        // The tail, from 2 MiB on, direct; the file itself stays cached.
        let st = f.set_range_mode(2 * MIB, None, Mode::Direct, SwitchOptions::default()).unwrap();
        assert_eq!(
            (st.physical, st.effective, st.backing),
            (Mode::Cached, Some(Mode::Cached), Some(Backing::PageCache))
        );
        assert_eq!(st.ranges.len(), 1, "{:?}", st.ranges);
        let r = &st.ranges[0];
        assert_eq!((r.offset, r.len, r.physical), (2 * MIB, None, Mode::Direct));
        assert_eq!((r.effective, r.backing), (Mode::Direct, Backing::Emulated), "{}", r.reason);
        assert_eq!(ranges_xattr(&p).as_deref(), Some("v1 2097152+=direct"));

        // Data written before reads back across the boundary, through both vectors.
        let mut buf = vec![0u8; a.len()];
        assert_eq!(f.read_at(&mut buf, 0).unwrap(), a.len());
        assert!(buf == a, "data changed by the range switch on {}", d.path().display());
        // Writes across the boundary land on both sides, and grow the file past the tail.
        let b = pattern((3 * MIB) as usize, 2, 2);
        f.write_at(&b, 3 * MIB / 2).unwrap();
        f.persist(0, 6 * MIB).unwrap();
        assert_eq!(f.len().unwrap(), 3 * MIB / 2 + b.len() as u64);
        let mut want = a.clone();
        want.resize((3 * MIB / 2) as usize, 0);
        want.extend_from_slice(&b);
        let mut got = vec![0u8; want.len()];
        assert_eq!(f.read_at(&mut got, 0).unwrap(), want.len());
        assert!(got == want, "read through the ranges differs");
        assert_eq!(std::fs::read(&p).unwrap(), want, "another program reads something else");

        // The tail is mapped while the first MiB of it is sealed to cached.
        let tail = f.map(3 * MIB, MIB as usize, true).unwrap();
        f.set_range_mode(2 * MIB, Some(MIB), Mode::Cached, SwitchOptions::default()).unwrap();
        tail.write(0, b"still mapped").unwrap();
        tail.persist(0, 12).unwrap();
        let mut x = [0u8; 12];
        f.read_at(&mut x, 3 * MIB).unwrap();
        assert_eq!(&x, b"still mapped");
        want[(3 * MIB) as usize..(3 * MIB) as usize + 12].copy_from_slice(b"still mapped");
        assert_eq!(ranges_xattr(&p).as_deref(), Some("v1 3145728+=direct"));
        // A switch over the live mapping is refused, and changes nothing.
        let err = f.set_range_mode(3 * MIB, Some(MIB), Mode::Cached, SwitchOptions::default()).unwrap_err();
        match &err {
            Error::Busy { path, mappings, .. } => assert_eq!((path, *mappings), (&p, 1)),
            e => panic!("expected Busy, got {e}"),
        }
        assert_eq!(ranges_xattr(&p).as_deref(), Some("v1 3145728+=direct"));
        // A mapping across the boundary of two modes is refused; one on either side works.
        let err = f.map(3 * MIB - 4096, 8192, false).unwrap_err().to_string();
        assert!(err.contains("range modes change at 3145728"), "{err}");
        let cached_side = f.map(2 * MIB, 4096, false).unwrap();
        let mut c = [0u8; 16];
        cached_side.read(0, &mut c).unwrap();
        assert_eq!(&c[..], &want[(2 * MIB) as usize..(2 * MIB + 16) as usize]);
        drop((tail, cached_side));
        // Nothing maps it now: the tail follows.
        f.set_range_mode(3 * MIB, None, Mode::Cached, SwitchOptions::default()).unwrap();
        assert_eq!(ranges_xattr(&p), None, "an empty range map leaves no attribute");
        assert!(f.status().unwrap().ranges.is_empty());
        let mut got2 = vec![0u8; want.len()];
        f.read_at(&mut got2, 0).unwrap();
        assert!(got2 == want);
    }
}

#[test]
fn the_range_map_survives_a_reopen_and_a_whole_file_switch_clears_it() {
    for d in both_file_systems() {
        let p = path(&d, "f");
        {
            let f = File::create(&p).unwrap();
            f.set_len(8 * MIB).unwrap();
            f.set_range_mode(0, Some(MIB), Mode::Direct, SwitchOptions::default()).unwrap();
            f.set_range_mode(4 * MIB, Some(2 * MIB), Mode::Direct, SwitchOptions::default()).unwrap();
        }
        // Not open in this process: `stat` reads the attribute.
        let st = dynadax::stat(&p).unwrap();
        let spans: Vec<_> = st.ranges.iter().map(|r| (r.offset, r.len, r.physical)).collect();
        assert_eq!(spans, vec![(0, Some(MIB), Mode::Direct), (4 * MIB, Some(2 * MIB), Mode::Direct)]);
        let f = File::open(&p).unwrap();
        assert_eq!(f.status().unwrap().ranges.len(), 2);
        f.write_at(b"in a direct range", 4 * MIB + 5).unwrap();
        // The whole file, direct: one mode, no ranges left.
        let st = f.set_mode(Mode::Direct, SwitchOptions::default()).unwrap();
        assert!(st.ranges.is_empty(), "{:?}", st.ranges);
        assert_eq!(ranges_xattr(&p), None);
        let mut x = [0u8; 17];
        f.read_at(&mut x, 4 * MIB + 5).unwrap();
        assert_eq!(&x, b"in a direct range");
    }
}

#[test]
fn a_range_switch_waits_only_for_mappings_over_it() {
    let d = tmpfs_dir();
    let f = File::create(path(&d, "f")).unwrap();
    f.set_len(4 * MIB).unwrap();
    let over = f.map(MIB, 4096, false).unwrap();
    let elsewhere = f.map(3 * MIB, 4096, false).unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(over);
    });
    let st = f
        .set_range_mode(0, Some(2 * MIB), Mode::Direct, SwitchOptions { wait: Some(Duration::from_secs(30)) })
        .unwrap();
    t.join().unwrap();
    assert_eq!(st.ranges.len(), 1);
    assert_eq!(elsewhere.len(), 4096, "the other mapping was kept");
    assert_eq!(f.live_mappings(), 1);
    let err = f
        .set_range_mode(3 * MIB, Some(MIB), Mode::Direct, SwitchOptions { wait: Some(Duration::from_millis(50)) })
        .unwrap_err();
    assert!(matches!(err, Error::Busy { mappings: 1, .. }), "{err}");
}

#[test]
fn bad_ranges_are_refused_naming_the_file() {
    let d = tmpfs_dir();
    let p = path(&d, "f");
    let f = File::create(&p).unwrap();
    for (off, len) in [(100, Some(4096)), (0, Some(100)), (4096, Some(0)), (u64::MAX - 4095, Some(8192))] {
        let err = f.set_range_mode(off, len, Mode::Direct, SwitchOptions::default()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Invalid { .. }) && msg.contains(&*p.to_string_lossy()), "{off}+{len:?}: {msg}");
    }
    assert!(f.status().unwrap().ranges.is_empty());
    // A damaged attribute is named when the file is opened.
    drop(f);
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new(RANGES_XATTR).unwrap();
    let v = b"v1 4096+100=dax";
    assert_eq!(unsafe { libc::setxattr(c.as_ptr(), name.as_ptr(), v.as_ptr().cast(), v.len(), 0) }, 0);
    let err = File::open(&p).unwrap_err().to_string();
    assert!(err.contains(RANGES_XATTR) && err.contains(&*p.to_string_lossy()), "{err}");
}

/// Many threads read and write across the boundary while another flips a range back
/// and forth: every read sees whole writes of one thread's pattern, never a mix of a
/// page from before and after a switch.
#[test]
fn switching_a_range_under_load_loses_nothing() {
    let d = tmpfs_dir();
    let f = File::create(path(&d, "f")).unwrap();
    let page = 4096u64;
    f.set_len(64 * page).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let workers: Vec<_> = (0..3u64)
        .map(|w| {
            let (f, stop, done) = (f.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Each worker owns pages w, w+3, ...: it checks its own last write.
                    let pg = (w + 3 * (n % 21)) * page;
                    let data = vec![(w * 50 + n % 50) as u8; page as usize];
                    f.write_at(&data, pg).unwrap();
                    let mut back = vec![0u8; page as usize];
                    f.read_at(&mut back, pg).unwrap();
                    assert!(back == data, "worker {w} page {pg}: read something else than it wrote");
                    n += 1;
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                n
            })
        })
        .collect();
    // At least 200 switches, and on until the workers have written 3000 times
    // between them (or 20 s passed).
    let t = std::time::Instant::now();
    let mut i = 0;
    while i < 200 || (done.load(std::sync::atomic::Ordering::Relaxed) < 3000 && t.elapsed() < Duration::from_secs(20)) {
        let mode = if i % 2 == 0 { Mode::Direct } else { Mode::Cached };
        f.set_range_mode(16 * page, Some(32 * page), mode, SwitchOptions::default()).unwrap();
        i += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes: u64 = workers.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(writes >= 3000, "{writes} writes during {i} switches");
}
