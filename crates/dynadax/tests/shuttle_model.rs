//! Model check of the switch protocol with shuttle: readers, a mapper and a switcher
//! on one file, over many random schedules. Run with
//! `cargo test -p dynadax --features shuttle --test shuttle_model`.
//!
//! Invariants checked in every schedule:
//! - the effective mode never changes while a mapping guard is alive (rule 2);
//! - a switch either succeeds with the requested mode or fails with `Busy`;
//! - every read returns exactly the bytes last written (no torn or stale read across
//!   a vector swap).
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
