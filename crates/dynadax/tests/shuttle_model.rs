//! Model check of the switch protocol with shuttle: readers, a mapper and a switcher
//! on one file (and switchers of ranges of it), over many random schedules. Run with
//! `cargo test -p dynadax --features shuttle --test shuttle_model`.
//!
//! Invariants checked in every schedule:
//! - the effective mode never changes while a mapping guard is alive (rule 2);
//! - a switch either succeeds with the requested mode or fails with `Busy`;
//! - every read returns exactly the bytes last written (no torn or stale read across
//!   a vector swap);
//! - across processes (`two_processes_*`: two opens that each have their own ops lock,
//!   mapping registry and open file description, as two processes have, so only the
//!   cross-process OFD lock of `xproc.rs` stands between them): the two-level
//!   protocol (in-process lock, then cross-process lock) never deadlocks, no switch
//!   recorded on disk lands on a range while either process maps it, and a switch of
//!   a range nobody maps is never refused by a mapping elsewhere;
//! - the single-file log's seal (`single_file_seal_*`): the appender writes the new
//!   tail range through the file's vector under a hold, while the old tail range is
//!   switched to cached and a reader reads it: the seal is never refused, the held
//!   tail's mode never changes, and the reader always reads the sealed bytes.
#![cfg(feature = "shuttle")]

use dynadax::{Error, File, Mode, SwitchOptions};
use shuttle::sync::Arc;
use shuttle::thread;

fn scenario(dir: &std::path::Path) {
    let f = File::create(dir.join("model")).unwrap();
    f.set_len(0).unwrap();
    f.set_mode(Mode::Cached, SwitchOptions::default()).unwrap();
    f.write_at(&[1u8; 8192], 0).unwrap();
    let f = Arc::new(f);

    let mapper = {
        let f = f.clone();
        thread::spawn(move || {
            let g = f.map(4096, 4096, true).unwrap();
            let before = f.status().unwrap().effective;
            thread::yield_now();
            g.write(0, &[2u8; 4096]).unwrap();
            thread::yield_now();
            let after = f.status().unwrap().effective;
            assert_eq!(before, after, "mode changed under a live mapping");
            assert_eq!(f.live_mappings(), 1);
            drop(g);
        })
    };
    let reader = {
        let f = f.clone();
        thread::spawn(move || {
            for _ in 0..2 {
                let mut b = [0u8; 4096];
                assert_eq!(f.read_at(&mut b, 0).unwrap(), 4096);
                assert!(b.iter().all(|&x| x == 1), "read of an unchanging block saw other bytes");
                thread::yield_now();
            }
        })
    };
    let switcher = {
        let f = f.clone();
        thread::spawn(move || {
            // Refuse at once, then wait (shuttle may let the wait time out), then refuse.
            let waits = [None, Some(std::time::Duration::from_secs(1)), None];
            for (mode, wait) in [Mode::Direct, Mode::Cached, Mode::Direct].into_iter().zip(waits) {
                match f.set_mode(mode, SwitchOptions { wait }) {
                    Ok(st) => assert_eq!(st.effective, Some(mode)),
                    Err(Error::Busy { mappings, .. }) => assert!(mappings >= 1),
                    Err(e) => panic!("unexpected error: {e}"),
                }
                thread::yield_now();
            }
        })
    };
    mapper.join().unwrap();
    reader.join().unwrap();
    switcher.join().unwrap();
    let mut b = [0u8; 4096];
    f.read_at(&mut b, 4096).unwrap();
    assert!(b.iter().all(|&x| x == 2), "store through the mapping was lost");
}

/// The physical mode at byte `off` (ranges merge and split, so look it up by byte).
fn mode_at(f: &File, off: u64) -> Mode {
    let st = f.status().unwrap();
    st.ranges
        .iter()
        .find(|r| r.offset <= off && r.len.is_none_or(|l| off < r.offset + l))
        .map_or(st.physical, |r| r.physical)
}

/// Range switches: a mapping of the tail keeps a switch of an earlier range from
/// waiting for it (it never refuses it), while a switch over the tail is refused
/// while mapped; the mapped tail's mode never changes under it, and data read across
/// the ranges is always what was written.
fn range_scenario(dir: &std::path::Path) {
    let f = File::create(dir.join("ranges")).unwrap();
    f.set_len(0).unwrap();
    f.set_mode(Mode::Cached, SwitchOptions::default()).unwrap();
    f.write_at(&[1u8; 8192], 0).unwrap();
    f.set_range_mode(4096, None, Mode::Direct, SwitchOptions::default()).unwrap();
    let f = Arc::new(f);

    let tail_mapper = {
        let f = f.clone();
        thread::spawn(move || {
            let g = f.map(4096, 4096, true).unwrap();
            let mode_of_tail = |f: &File| mode_at(f, 4096);
            let before = mode_of_tail(&f);
            thread::yield_now();
            g.write(0, &[2u8; 4096]).unwrap();
            thread::yield_now();
            assert_eq!(mode_of_tail(&f), before, "the tail's mode changed under its mapping");
            drop(g);
        })
    };
    let head_switcher = {
        let f = f.clone();
        thread::spawn(move || {
            for mode in [Mode::Direct, Mode::Cached] {
                // Never refused: nothing maps the head.
                f.set_range_mode(0, Some(4096), mode, SwitchOptions::default()).unwrap();
                assert_eq!(mode_at(&f, 0), mode);
                thread::yield_now();
            }
        })
    };
    let tail_switcher = {
        let f = f.clone();
        thread::spawn(move || match f.set_range_mode(4096, None, Mode::Cached, SwitchOptions::default()) {
            Ok(_) | Err(Error::Busy { mappings: 1, .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        })
    };
    let reader = {
        let f = f.clone();
        thread::spawn(move || {
            let mut b = [0u8; 4096];
            assert_eq!(f.read_at(&mut b, 0).unwrap(), 4096);
            assert!(b.iter().all(|&x| x == 1), "read of the unchanging head saw other bytes");
        })
    };
    for t in [tail_mapper, head_switcher, tail_switcher, reader] {
        t.join().unwrap();
    }
    let mut b = [0u8; 4096];
    f.read_at(&mut b, 4096).unwrap();
    assert!(b.iter().all(|&x| x == 2), "store through the tail's mapping was lost");
}

/// The physical mode at `off` as recorded on disk: what a process opening the file
/// now would see (a fresh open, sharing nothing with the model's two "processes").
fn recorded_mode_at(path: &std::path::Path, off: u64) -> Mode {
    mode_at(&File::open_as_another_process(path).unwrap(), off)
}

/// Process A maps the tail and switches the head; process B switches the tail and
/// maps the head. Every interleaving: B's tail switch lands only while A does not
/// map the tail, A's head switch only while B does not map the head; each is either
/// done or refused as busy elsewhere; the stores through both mappings survive.
fn two_process_scenario(dir: &std::path::Path) {
    const P: u64 = 4096;
    let path = dir.join("xproc");
    let _ = std::fs::remove_file(&path);
    let f = File::create(&path).unwrap();
    f.set_mode(Mode::Cached, SwitchOptions::default()).unwrap();
    f.write_at(&[1u8; 2 * P as usize], 0).unwrap();
    f.set_range_mode(P, None, Mode::Direct, SwitchOptions::default()).unwrap();
    let a = Arc::new(f);
    let b = Arc::new(File::open_as_another_process(&path).unwrap());
    let busy_elsewhere = |r: dynadax::Result<dynadax::Status>, what: &str| match r {
        Ok(_) => true,
        Err(Error::Busy { mappings: 0, elsewhere: Some(_), .. }) => false,
        Err(e) => panic!("{what}: neither done nor busy elsewhere: {e}"),
    };

    let a_maps_tail = {
        let (a, path) = (a.clone(), path.clone());
        thread::spawn(move || {
            let g = a.map(P, P as usize, true).unwrap();
            let before = recorded_mode_at(&path, P);
            thread::yield_now();
            g.write(0, &[2u8; P as usize]).unwrap();
            thread::yield_now();
            assert_eq!(recorded_mode_at(&path, P), before, "B switched the tail under A's mapping");
            drop(g);
        })
    };
    let a_switches_head = {
        let (a, path) = (a.clone(), path.clone());
        thread::spawn(move || {
            if busy_elsewhere(a.set_range_mode(0, Some(P), Mode::Direct, SwitchOptions::default()), "A's head switch") {
                assert_eq!(recorded_mode_at(&path, 0), Mode::Direct);
            }
        })
    };
    let b_switches_tail = {
        let (b, path) = (b.clone(), path.clone());
        thread::spawn(move || {
            if busy_elsewhere(b.set_range_mode(P, None, Mode::Cached, SwitchOptions::default()), "B's tail switch") {
                assert_eq!(recorded_mode_at(&path, P), Mode::Cached);
            }
        })
    };
    let b_maps_head = {
        let (b, path) = (b.clone(), path.clone());
        thread::spawn(move || {
            // A's head switch holds the head for an instant: the mapping waits for it.
            let g = b.map(0, P as usize, true).unwrap();
            let before = recorded_mode_at(&path, 0);
            thread::yield_now();
            g.write(0, &[3u8; P as usize]).unwrap();
            assert_eq!(recorded_mode_at(&path, 0), before, "A switched the head under B's mapping");
            drop(g);
        })
    };
    for t in [a_maps_tail, a_switches_head, b_switches_tail, b_maps_head] {
        t.join().unwrap();
    }
    drop((a, b));
    let fresh = File::open_as_another_process(&path).unwrap();
    let mut buf = vec![0u8; 2 * P as usize];
    fresh.read_at(&mut buf, 0).unwrap();
    assert!(buf[..P as usize].iter().all(|&x| x == 3), "B's store through its head mapping was lost");
    assert!(buf[P as usize..].iter().all(|&x| x == 2), "A's store through its tail mapping was lost");
}

/// The single-file log's rotation, on one file of three 4 KiB ranges: range 1 is the
/// sealed-to-be old tail (its records written), range 2 the new tail, held and
/// appended to through the vector; the seal switches range 1 to cached while a reader
/// reads it and the appender writes range 2.
fn single_file_seal_scenario(dir: &std::path::Path) {
    const P: u64 = 4096;
    let path = dir.join("slots");
    let _ = std::fs::remove_file(&path);
    let f = File::create(&path).unwrap();
    f.set_mode(Mode::Direct, SwitchOptions::default()).unwrap();
    f.set_len(3 * P).unwrap();
    f.write_at(&[7u8; P as usize], P).unwrap();
    let f = Arc::new(f);
    // The rotation made the new tail and holds it before the old one is sealed.
    let hold = f.hold(2 * P, Some(P)).unwrap();
    let appender = {
        let f = f.clone();
        thread::spawn(move || {
            for k in 0..4u64 {
                let before = mode_at(&f, 2 * P);
                f.write_at(&[k as u8 + 1; 64], 2 * P + k * 64).unwrap();
                f.persist(2 * P + k * 64, 64).unwrap();
                assert_eq!(mode_at(&f, 2 * P), before, "the held tail's mode changed under the appender");
                thread::yield_now();
            }
        })
    };
    let sealer = {
        let f = f.clone();
        thread::spawn(move || {
            // Nothing holds or maps the old tail: never refused.
            f.set_range_mode(P, Some(P), Mode::Cached, SwitchOptions::default()).unwrap();
            assert_eq!(mode_at(&f, P), Mode::Cached);
            // The held tail cannot be switched.
            match f.set_range_mode(2 * P, Some(P), Mode::Cached, SwitchOptions::default()) {
                Err(Error::Busy { mappings: 1, .. }) => {}
                other => panic!("switch of the held tail: {other:?}"),
            }
        })
    };
    let reader = {
        let f = f.clone();
        thread::spawn(move || {
            for _ in 0..3 {
                let mut b = [0u8; 4096];
                assert_eq!(f.read_at(&mut b, P).unwrap(), 4096);
                assert!(b.iter().all(|&x| x == 7), "a read of the sealing range saw other bytes");
                thread::yield_now();
            }
        })
    };
    for t in [appender, sealer, reader] {
        t.join().unwrap();
    }
    drop(hold);
    let mut b = [0u8; 256];
    f.read_at(&mut b, 2 * P).unwrap();
    for k in 0..4usize {
        assert!(b[k * 64..(k + 1) * 64].iter().all(|&x| x == k as u8 + 1), "append {k} lost");
    }
}

#[test]
fn single_file_seal_random_schedules() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let p = dir.path().to_path_buf();
    shuttle::check_random(move || single_file_seal_scenario(&p), 300);
}

#[test]
fn single_file_seal_pct_schedules() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let p = dir.path().to_path_buf();
    shuttle::check_pct(move || single_file_seal_scenario(&p), 300, 3);
}

#[test]
fn two_processes_random_schedules() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let p = dir.path().to_path_buf();
    shuttle::check_random(move || two_process_scenario(&p), 300);
}

#[test]
fn two_processes_pct_schedules() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let p = dir.path().to_path_buf();
    shuttle::check_pct(move || two_process_scenario(&p), 300, 3);
}

#[test]
fn range_switches_random_schedules() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let p = dir.path().to_path_buf();
    shuttle::check_random(move || range_scenario(&p), 300);
}

#[test]
fn switch_protocol_random_schedules() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let p = dir.path().to_path_buf();
    shuttle::check_random(move || scenario(&p), 300);
}

#[test]
fn switch_protocol_pct_schedules() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let p = dir.path().to_path_buf();
    shuttle::check_pct(move || scenario(&p), 300, 3);
}
