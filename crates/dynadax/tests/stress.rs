//! Threads reading, writing and mapping one file while another thread switches its
//! mode back and forth. Every byte read is checked against what was written.

mod common;
use common::*;
use dynadax::{Error, File, Mode, SwitchOptions};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const BLOCK: usize = 4096;
const BLOCKS: u64 = 32;
const WORKERS: u64 = 3;
const ROUNDS: u64 = 1500;

fn stress(dir: &std::path::Path) {
    let f = File::create(dir.join("stress")).unwrap();
    f.set_len(BLOCKS * BLOCK as u64).unwrap();
    let versions: Arc<Vec<AtomicU64>> = Arc::new((0..BLOCKS).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let (switched, busy) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));

    let switcher = {
        let (f, stop, switched, busy) = (f.clone(), stop.clone(), switched.clone(), busy.clone());
        std::thread::spawn(move || {
            let mut mode = Mode::Direct;
            let mut attempt = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Alternate refusing at once and waiting (which holds new mappings back).
                attempt += 1;
                let wait = (attempt % 2 == 0).then(|| std::time::Duration::from_millis(200));
                match f.set_mode(mode, SwitchOptions { wait }) {
                    Ok(st) => {
                        assert_eq!(st.effective, Some(mode));
                        switched.fetch_add(1, Ordering::Relaxed);
                        mode = if mode == Mode::Direct { Mode::Cached } else { Mode::Direct };
                    }
                    Err(Error::Busy { .. }) => {
                        busy.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("switch failed: {e}"),
                }
                std::thread::yield_now();
            }
        })
    };

    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (f, versions, switched) = (f.clone(), versions.clone(), switched.clone());
            std::thread::spawn(move || {
                let mine: Vec<u64> = (0..BLOCKS).filter(|b| b % WORKERS == w).collect();
                // At least ROUNDS rounds, and on until the switcher has switched enough
                // times to prove something (however fast mapping is), within 20 s.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                for round in 0.. {
                    if round >= ROUNDS
                        && (switched.load(Ordering::Relaxed) >= 20 || std::time::Instant::now() > deadline)
                    {
                        break;
                    }
                    let b = mine[(round as usize) % mine.len()];
                    let v = versions[b as usize].load(Ordering::Relaxed) + 1;
                    let data = pattern(BLOCK, b, v);
                    let off = b * BLOCK as u64;
                    if round % 4 == 0 {
                        // Store through a mapping guard: the switcher must wait for it.
                        let g = f.map(off, BLOCK, true).unwrap();
                        g.write(0, &data).unwrap();
                        g.persist(0, BLOCK).unwrap();
                        let mut back = vec![0u8; BLOCK];
                        g.read(0, &mut back).unwrap();
                        assert!(back == data, "block {b} v{v}: mapped read-back differs");
                    } else {
                        f.write_at(&data, off).unwrap();
                    }
                    versions[b as usize].store(v, Ordering::Relaxed);
                    let mut back = vec![0u8; BLOCK];
                    assert_eq!(f.read_at(&mut back, off).unwrap(), BLOCK);
                    assert!(back == data, "block {b} v{v}: read-back differs (round {round})");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    switcher.join().unwrap();

    // The whole file, in both modes, matches the model.
    for mode in [Mode::Cached, Mode::Direct] {
        f.set_mode(mode, SwitchOptions::default()).unwrap();
        for b in 0..BLOCKS {
            let v = versions[b as usize].load(Ordering::Relaxed);
            let mut back = vec![0u8; BLOCK];
            f.read_at(&mut back, b * BLOCK as u64).unwrap();
            let want = if v == 0 { vec![0u8; BLOCK] } else { pattern(BLOCK, b, v) };
            assert!(back == want, "final check in {mode}: block {b} v{v} differs");
        }
    }
    let (s, b) = (switched.load(Ordering::Relaxed), busy.load(Ordering::Relaxed));
    eprintln!("{}: {s} switches, {b} refused as busy", dir.display());
    assert!(s >= 10, "the switcher barely ran ({s} switches): the test proved little");
}

#[test]
fn stress_on_tmpfs() {
    stress(tmpfs_dir().path());
}

#[test]
fn stress_on_ext4() {
    stress(kernel_flag_dir().path());
}
