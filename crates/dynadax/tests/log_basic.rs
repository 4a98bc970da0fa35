//! The log's behaviour, one property per test: appends and reads, sealing to cached,
//! recovery after reopen, torn tails, damage in sealed segments, purge, suffix
//! truncation, tailing, the writer lock, and bad input.

mod common;
use common::*;
use dynadax::log::{Durability, Log, LogOptions, RecoveryMode, Retention, TailMode};
use dynadax::{Error, Mode};

fn small(durability: Durability) -> LogOptions {
    small_log(durability)
}

/// The same, with the tail always written through its mapping (emulated on ext4).
fn small_direct(durability: Durability) -> LogOptions {
    LogOptions { tail_mode: TailMode::Direct, ..small(durability) }
}

fn rec(i: u64) -> Vec<u8> {
    pattern(1 + (i as usize * 37) % 700, i, 1)
}

fn fill(log: &Log, n: u64) {
    for i in 0..n {
        assert_eq!(log.append(&rec(i)).unwrap(), log.first_lsn() + i);
    }
}

fn check_all(log: &Log, first: u64, n: u64) {
    let got: Vec<_> = log.iter(first).map(|r| r.unwrap()).collect();
    assert_eq!(got.len() as u64, n);
    for (k, (lsn, data)) in got.into_iter().enumerate() {
        assert_eq!(lsn, first + k as u64);
        assert_eq!(data, rec(k as u64), "record {lsn}");
    }
}

fn dirs() -> Vec<tempfile::TempDir> {
    vec![kernel_flag_dir(), tmpfs_dir()]
}

#[test]
fn append_read_seal_and_reopen() {
    for d in dirs() {
        for durability in [Durability::Each, Durability::Group, Durability::None] {
            let dir = d.path().join(format!("{durability:?}"));
            let log = Log::open(&dir, small(durability)).unwrap();
            fill(&log, 500);
            if durability == Durability::None {
                // Sealing persists a segment; the tail's records wait for sync.
                let d0 = log.durable_lsn();
                assert!(d0 < 500, "tail records durable before sync");
                assert!(log.read(499).is_err(), "a reader saw an unpersisted record");
                log.sync().unwrap();
            }
            assert_eq!(log.durable_lsn(), 500);
            check_all(&log, 0, 500);
            let segs = log.segments().unwrap();
            assert!(segs.len() >= 3, "64 KiB segments should have rotated: {}", segs.len());
            for s in &segs[..segs.len() - 1] {
                assert!(s.sealed);
                assert_eq!((s.physical, s.effective), (Mode::Cached, Some(Mode::Cached)), "{s:?}");
                if single_file() {
                    assert_eq!(s.file_size, 64 << 10, "a slot keeps its size");
                } else {
                    assert_eq!(s.file_size, s.bytes, "sealed segment trimmed to its records");
                }
            }
            // TailMode::Auto: direct on memory file systems, cached on a block device
            // without DAX (ext4 here); tests with TailMode::Direct cover the rest.
            let tail = segs.last().unwrap();
            let want = if dynadax::probe(&dir).unwrap().device.is_none() { Mode::Direct } else { Mode::Cached };
            assert_eq!((tail.sealed, tail.effective), (false, Some(want)));
            drop(log);

            let log = Log::open(&dir, small(durability)).unwrap();
            let rep = log.recovery_report();
            assert_eq!(rep.records, 500);
            assert!(rep.repairs.is_empty(), "{:?}", rep.repairs);
            check_all(&log, 0, 500);
            fill_more(&log, 500, 50);
        }
    }
}

fn fill_more(log: &Log, from: u64, n: u64) {
    for i in from..from + n {
        assert_eq!(log.append(&rec(i)).unwrap(), i);
    }
    log.sync().unwrap();
    check_all(log, 0, from + n);
}

#[test]
fn group_commit_makes_every_concurrent_append_durable_and_counts_each_in_one_flush() {
    for d in dirs() {
        // One segment (no seal publishes records on its own), tail cached on the
        // kernel-flag directory (fdatasync) and direct on tmpfs (msync).
        let opts = LogOptions { segment_size: 4 << 20, ..small(Durability::Group) };
        let log = Log::open(d.path().join("l"), opts).unwrap();
        let (threads, each) = (6u64, 40u64);
        std::thread::scope(|s| {
            for t in 0..threads {
                let log = &log;
                s.spawn(move || {
                    for i in 0..each {
                        let lsn = log.append(&pattern(100, t * 1000 + i, 1)).unwrap();
                        assert!(log.durable_lsn() > lsn, "append returned before its record was durable");
                    }
                });
            }
        });
        let n = threads * each;
        assert_eq!(log.durable_lsn(), n);
        let st = log.flush_stats();
        assert_eq!(st.records, n, "each durable record counted by exactly one flush: {st:?}");
        assert!(st.flushes >= 1 && st.flushes <= n, "{st:?}");
        assert!(st.records_per_flush() >= 1.0);
        assert_eq!(log.segments().unwrap().len(), 1);
    }
}

#[test]
fn pipelined_appends_return_at_once_and_become_durable_by_wait_or_in_the_background() {
    for d in dirs() {
        for durability in [Durability::Each, Durability::Group, Durability::None] {
            let opts = LogOptions { segment_size: 1 << 20, ..small(durability) };
            let log = Log::open(d.path().join(format!("l-{durability:?}")), opts.clone()).unwrap();
            // Past several segments, so rotations happen with records in flight.
            let n = 3000u64;
            for i in 0..n {
                assert_eq!(log.append_nowait(&rec(i)).unwrap(), i);
            }
            log.wait_durable(n - 1).unwrap();
            assert!(
                log.durable_lsn() >= n,
                "{durability:?}: waited for {} but durable is {}",
                n - 1,
                log.durable_lsn()
            );
            assert!(log.segments().unwrap().len() > 1);
            check_all(&log, 0, n);
            let st = log.flush_stats();
            assert!(
                st.records <= n && st.flushes < n,
                "{durability:?}: one persist per record is not pipelining: {st:?}"
            );
            // The background flusher alone makes them durable, with no one waiting.
            for i in n..n + 500 {
                log.append_nowait(&rec(i)).unwrap();
            }
            let t = std::time::Instant::now();
            while log.durable_lsn() < n + 500 {
                assert!(t.elapsed() < std::time::Duration::from_secs(20), "the flusher never made them durable");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            // An LSN not appended yet cannot be waited for.
            let e = log.wait_durable(n + 500).unwrap_err();
            assert!(e.to_string().contains("next LSN is"), "{e}");
            drop(log);
            let log = Log::open(d.path().join(format!("l-{durability:?}")), opts).unwrap();
            check_all(&log, 0, n + 500);
        }
    }
}

/// Records appended but not yet durable (staged in memory by a cached tail) are
/// neither lost nor left behind by a truncation that keeps some of them, a close,
/// or a seal.
#[test]
fn appended_records_not_yet_durable_survive_truncation_close_and_seal() {
    for d in dirs() {
        let dir = d.path().join("l");
        let opts = LogOptions { segment_size: 1 << 20, ..small(Durability::None) };
        let log = Log::open(&dir, opts.clone()).unwrap();
        fill(&log, 100);
        log.truncate_after(49).unwrap();
        assert_eq!(log.next_lsn(), 50);
        log.sync().unwrap();
        check_all(&log, 0, 50);
        // Pipelined ones, cut among them, then more after the cut.
        for i in 50..80 {
            log.append_nowait(&rec(i)).unwrap();
        }
        log.truncate_after(69).unwrap();
        for i in 70..90 {
            assert_eq!(log.append(&rec(i)).unwrap(), i);
        }
        log.sync().unwrap();
        check_all(&log, 0, 90);
        // Closed without a sync: written (not durably) on the way out.
        for i in 90..120 {
            log.append(&rec(i)).unwrap();
        }
        drop(log);
        let log = Log::open(&dir, opts.clone()).unwrap();
        check_all(&log, 0, 120);
        // Sealed with staged records: the seal writes and persists them.
        for i in 120..150 {
            log.append(&rec(i)).unwrap();
        }
        log.seal().unwrap();
        log.sync().unwrap();
        check_all(&log, 0, 150);
        drop(log);
        check_all(&Log::open(&dir, opts).unwrap(), 0, 150);
    }
}

#[test]
fn first_lsn_other_than_zero_and_batches() {
    let d = tmpfs_dir();
    let log = Log::open(d.path().join("l"), LogOptions { first_lsn: 1000, ..small(Durability::Group) }).unwrap();
    let r = log.append_batch(&[b"a", b"bb", b"ccc"]).unwrap();
    assert_eq!(r, 1000..1003);
    assert_eq!(log.read(1001).unwrap(), b"bb");
    assert_eq!(log.range(1001, 1003).map(|r| r.unwrap().1).collect::<Vec<_>>(), vec![b"bb".to_vec(), b"ccc".to_vec()]);
    drop(log);
    let log = Log::open(d.path().join("l"), small(Durability::Group)).unwrap();
    assert_eq!(log.first_lsn(), 1000);
    assert_eq!(log.append(b"d").unwrap(), 1003);
}

#[test]
fn direct_tail_on_a_disk_is_emulated_and_works() {
    let d = kernel_flag_dir();
    let dir = d.path().join("l");
    let log = Log::open(&dir, small_direct(Durability::Group)).unwrap();
    fill(&log, 400);
    let segs = log.segments().unwrap();
    let tail = segs.last().unwrap();
    assert_eq!((tail.effective, tail.backing), (Some(Mode::Direct), Some(dynadax::Backing::Emulated)));
    assert!(segs[..segs.len() - 1].iter().all(|s| s.effective == Some(Mode::Cached)));
    drop(log);
    let log = Log::open(&dir, small_direct(Durability::Group)).unwrap();
    check_all(&log, 0, 400);
}

#[test]
fn torn_tail_is_cut_and_reported() {
    for d in dirs() {
        let dir = d.path().join("l");
        let log = Log::open(&dir, small(Durability::Each)).unwrap();
        fill(&log, 20);
        let tail = log.segments().unwrap().pop().unwrap();
        drop(log);
        // Tear the last record: garbage over its last 8 bytes (payload and padding).
        let f = std::fs::OpenOptions::new().write(true).open(&tail.path).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&[0xff; 8], tail.offset + tail.bytes - 8).unwrap();
        drop(f);

        let strict = Log::open(&dir, LogOptions { recovery: RecoveryMode::Strict, ..small(Durability::Each) });
        let err = strict.err().expect("strict recovery refuses a torn tail").to_string();
        assert!(err.contains(&*tail.path.to_string_lossy()) && err.contains("at byte"), "{err}");

        let log = Log::open(&dir, small(Durability::Each)).unwrap();
        let rep = log.recovery_report();
        assert_eq!(rep.repairs.len(), 1, "{:?}", rep.repairs);
        assert!(rep.repairs[0].contains("torn tail"), "{:?}", rep.repairs);
        assert_eq!(log.durable_lsn(), 19, "only the torn record is lost");
        check_all(&log, 0, 19);
        assert_eq!(log.append(b"after repair").unwrap(), 19);
        drop(log);
        let log = Log::open(&dir, small(Durability::Each)).unwrap();
        assert!(log.recovery_report().repairs.is_empty());
        assert_eq!(log.read(19).unwrap(), b"after repair");
    }
}

#[test]
fn damage_in_a_sealed_segment_is_an_error_naming_file_and_offset() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    let log = Log::open(&dir, small(Durability::Group)).unwrap();
    fill(&log, 400);
    let first = log.segments().unwrap().remove(0);
    assert!(first.sealed);
    drop(log);
    let f = std::fs::OpenOptions::new().write(true).open(&first.path).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"XX", 5000).unwrap();
    drop(f);
    // The default open reads the segment's index, not its records (files layout):
    // the damaged record is an error when it is read, the others read.
    if !single_file() {
        let log = Log::open(&dir, small(Durability::Group)).unwrap();
        let bad: Vec<_> = (0..400).filter_map(|l| log.read(l).err().map(|e| (l, e.to_string()))).collect();
        assert!(!bad.is_empty() && bad.len() < 3, "{bad:?}");
        for (_, err) in &bad {
            assert!(err.contains(&*first.path.to_string_lossy()) && err.contains("at byte"), "{err}");
        }
    }
    // An open that scans sealed segments (every open, single-file) refuses it.
    let err = Log::open(&dir, LogOptions { scan_sealed: true, ..small(Durability::Group) })
        .err()
        .expect("damage is an error")
        .to_string();
    assert!(err.contains(&*first.path.to_string_lossy()) && err.contains("at byte"), "{err}");
    // Point-in-time keeps what precedes the damage and drops the rest.
    let log = Log::open(&dir, LogOptions { recovery: RecoveryMode::PointInTime, ..small(Durability::Group) }).unwrap();
    let kept = log.durable_lsn();
    assert!(kept > 0 && kept < 400, "{kept}");
    check_all(&log, 0, kept);
    assert!(!log.recovery_report().repairs.is_empty());
    assert_eq!(log.append(b"new").unwrap(), kept);
}

#[test]
fn purge_retention_and_truncation() {
    let d = kernel_flag_dir();
    let dir = d.path().join("l");
    let log = Log::open(&dir, small_direct(Durability::Group)).unwrap();
    fill(&log, 600);
    let segs = log.segments().unwrap();
    let cut = segs[2].first_lsn;
    assert_eq!(log.purge_before(cut + 1).unwrap(), 2);
    assert_eq!(log.first_lsn(), cut + 1);
    assert!(log.read(cut).is_err());
    assert_eq!(log.read(cut + 1).unwrap(), rec(cut + 1));
    assert!(segment_gone(&segs[0]) && segment_gone(&segs[1]));

    // Truncate into a sealed segment: later segments go, it becomes the tail again.
    let t = segs[3].first_lsn + 3;
    log.truncate_after(t).unwrap();
    assert_eq!(log.durable_lsn(), t + 1);
    assert_eq!(log.next_lsn(), t + 1);
    assert!(log.read(t + 1).is_err());
    let tail = log.segments().unwrap().pop().unwrap();
    assert_eq!((tail.sealed, tail.effective, tail.last_lsn), (false, Some(Mode::Direct), Some(t)));
    // A new record of the same length as the old next one: the old ones must not come back.
    assert_eq!(log.append(&rec(t + 1)).unwrap(), t + 1);
    assert_eq!(log.append(b"replaced").unwrap(), t + 2);
    drop(log);
    let log = Log::open(&dir, small_direct(Durability::Group)).unwrap();
    assert_eq!(log.next_lsn(), t + 3, "truncated records came back after reopen");
    assert_eq!(log.read(t + 2).unwrap(), b"replaced");
    assert_eq!(log.first_lsn(), cut + 1, "purge point survives reopen");

    fill_to(&log, 1500);
    let before = log.segments().unwrap().len();
    let removed = log.apply_retention(Retention { max_bytes: Some(200 << 10), max_age: None }).unwrap();
    let after = log.segments().unwrap();
    assert_eq!(after.len(), before - removed);
    assert!(after.iter().map(|s| s.bytes).sum::<u64>() <= 200 << 10);
    assert!(removed > 0);
}

fn fill_to(log: &Log, n: u64) {
    while log.next_lsn() < n {
        log.append(&rec(log.next_lsn())).unwrap();
    }
}

#[test]
fn tailer_wakes_on_append() {
    let d = tmpfs_dir();
    let log = Log::open(d.path().join("l"), small(Durability::Group)).unwrap();
    let mut t = log.tail(0);
    assert_eq!(t.next_timeout(Some(std::time::Duration::from_millis(20))).unwrap(), None);
    let l2 = log.clone();
    let h = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        l2.append(b"wake").unwrap();
    });
    let got = t.next_timeout(None).unwrap().unwrap();
    assert_eq!(got, (0, b"wake".to_vec()));
    h.join().unwrap();
    assert_eq!(t.lag(), 0);
    log.append_batch(&[b"a", b"b", b"c"]).unwrap();
    assert_eq!((t.position(), t.lag()), (1, 3), "three durable records not yet returned");
    t.next_timeout(None).unwrap().unwrap();
    assert_eq!(t.lag(), 2);
}

#[test]
fn one_writer_at_a_time_and_bad_input() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    let log = Log::open(&dir, small(Durability::Group)).unwrap();
    match Log::open(&dir, small(Durability::Group)) {
        Err(Error::Locked { holder, .. }) => assert!(holder.contains(&std::process::id().to_string()), "{holder}"),
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("second writer was admitted"),
    }
    let ro = Log::open_read_only(&dir, small(Durability::Group)).unwrap();
    assert!(ro.append(b"x").is_err());
    let err = log.append(&[]).unwrap_err().to_string();
    assert!(err.contains("1 to 4096 bytes"), "{err}");
    let err = log.append(&vec![0u8; 5000]).unwrap_err().to_string();
    assert!(err.contains("5000 bytes"), "{err}");
    let err =
        Log::open(d.path().join("x"), LogOptions { segment_size: 4096, max_record: 8192, ..LogOptions::default() })
            .err()
            .unwrap()
            .to_string();
    assert!(err.contains("cannot hold a record"), "{err}");
    assert!(!d.path().join("x").exists(), "a refused open created the directory");
    assert!(Log::open_read_only(d.path().join("missing"), LogOptions::default()).is_err());
    assert_eq!(log.durable_lsn(), 0, "refused appends changed nothing");
}

#[test]
fn metadata_record_is_durable() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    let log = Log::open(&dir, small(Durability::Group)).unwrap();
    assert!(log.metadata().is_empty());
    log.set_metadata(b"vote: term 7 node 2").unwrap();
    drop(log);
    let log = Log::open(&dir, small(Durability::Group)).unwrap();
    assert_eq!(log.metadata(), b"vote: term 7 node 2");
}

#[test]
fn reopen_after_drop_releases_the_lock() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    for i in 0..5u64 {
        let log = Log::open(&dir, small(Durability::Each)).unwrap_or_else(|e| panic!("open {i}: {e}"));
        fill_to(&log, (i + 1) * 300);
        drop(log);
    }
}

/// Many appenders with group commit, readers and a tailer at once, across seals:
/// every record is intact, each writer's records appear in its order, every
/// acknowledged LSN is readable, and the tailer sees every record exactly once.
#[test]
fn concurrent_appenders_readers_and_tailer() {
    for d in dirs() {
        let log = Log::open(d.path().join("l"), small(Durability::Group)).unwrap();
        let writers = 4u64;
        let per = 1200u64;
        let mut tail = log.tail(0);
        let tailer = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while (seen.len() as u64) < writers * per {
                let (lsn, rec) =
                    tail.next_timeout(Some(std::time::Duration::from_secs(20))).unwrap().expect("tailer starved");
                assert_eq!(lsn, seen.len() as u64);
                seen.push(rec);
            }
            seen
        });
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..per {
                        let rec = format!("w{w}-{i:05}-{}", "z".repeat((i % 50) as usize));
                        let lsn = log.append(rec.as_bytes()).unwrap();
                        assert!(lsn < log.durable_lsn(), "acknowledged before durable");
                        assert_eq!(log.read(lsn).unwrap(), rec.as_bytes());
                        acked.push(lsn);
                    }
                    acked
                })
            })
            .collect();
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut passes = 0;
                while log.durable_lsn() < writers * per {
                    for r in log.iter(0) {
                        let (_, rec) = r.unwrap();
                        assert!(rec.starts_with(b"w"), "garbage record");
                    }
                    passes += 1;
                }
                passes
            })
        };
        for h in handles {
            let acked = h.join().unwrap();
            assert!(acked.windows(2).all(|p| p[0] < p[1]), "a writer's LSNs went backwards");
        }
        reader.join().unwrap();
        let seen = tailer.join().unwrap();
        let mut next = [0u64; 4];
        for rec in &seen {
            let s = String::from_utf8_lossy(rec);
            let w: usize = s[1..2].parse().unwrap();
            let i: u64 = s[3..8].parse().unwrap();
            assert_eq!(i, next[w], "writer {w}'s records out of order");
            next[w] += 1;
        }
        assert!(log.segments().unwrap().len() > 2, "meant to cross seals");
    }
}

/// A crash after the next segment was created but before the previous one was
/// trimmed and switched to cached (rotation creates the next tail first): recovery
/// finishes that seal, reports it, and every record is intact.
#[test]
fn unfinished_seal_is_finished_at_recovery() {
    for d in dirs() {
        let dir = d.path().join("log");
        {
            let log = Log::open(&dir, small_direct(Durability::Each)).unwrap();
            fill(&log, 600);
            assert!(log.segments().unwrap().len() >= 3);
        }
        // Undo the seal of the first segment: back to direct and its full capacity
        // (zeros after its records, as the preallocated file had them).
        let first = Log::open_read_only(&dir, small_direct(Durability::Each)).unwrap().segments().unwrap()[0].clone();
        let sealed_len = std::fs::metadata(&first.path).unwrap().len();
        let f = dynadax::File::open(&first.path).unwrap();
        if single_file() {
            // A slot is never trimmed: only its range's mode is undone.
            f.set_range_mode(first.offset, Some(64 << 10), Mode::Direct, Default::default()).unwrap();
        } else {
            f.set_mode(Mode::Direct, Default::default()).unwrap();
            std::fs::OpenOptions::new().write(true).open(&first.path).unwrap().set_len(64 << 10).unwrap();
        }
        drop(f);

        let log = Log::open(&dir, small_direct(Durability::Each)).unwrap();
        let rep = log.recovery_report();
        // (Its index, which says where the records end, no longer matches the longer
        // file: the segment is scanned instead.)
        let seal: Vec<_> = rep.repairs.iter().filter(|l| !l.contains(".idx")).collect();
        assert_eq!(seal.len(), 1, "{:?}", rep.repairs);
        assert!(seal[0].contains("unfinished seal"), "{:?}", rep.repairs);
        assert_eq!(std::fs::metadata(&first.path).unwrap().len(), sealed_len, "trimmed back to its records");
        let seg = &log.segments().unwrap()[0];
        assert_eq!(seg.physical, Mode::Cached, "{}", seg.path.display());
        check_all(&log, 0, 600);
    }
}

/// The next segment is prepared in the background; a log that is closed removes it
/// rather than leaving a preallocated hidden file behind.
#[test]
fn a_closed_log_leaves_no_prepared_file() {
    for d in dirs() {
        let dir = d.path().join("log");
        let log = Log::open(&dir, small(Durability::Each)).unwrap();
        fill(&log, 10);
        if single_file() {
            // Its segments are slots of the data file: it never prepares a file.
            drop(log);
            assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')));
            continue;
        }
        let t = std::time::Instant::now();
        while !log.next_segment_ready() {
            assert!(t.elapsed() < std::time::Duration::from_secs(30), "the next segment was never prepared");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let prepared = |dir: &std::path::Path| {
            std::fs::read_dir(dir)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".prepare."))
                .count()
        };
        assert_eq!(prepared(&dir), 1, "a prepared next segment while open");
        drop(log);
        assert_eq!(prepared(&dir), 0, "prepared file left behind after close");
        check_all(&Log::open(&dir, small(Durability::Each)).unwrap(), 0, 10);
    }
}

#[test]
fn purge_past_the_end_restarts_the_log_there() {
    for d in dirs() {
        let dir = d.path().join("l");
        let log = Log::open(&dir, small_direct(Durability::Group)).unwrap();
        fill(&log, 300);
        let old = log.segments().unwrap();
        assert!(old.len() > 1);
        // Everything goes, the unsynced too, and the next append takes the purge point.
        log.purge_before(1000).unwrap();
        assert_eq!((log.first_lsn(), log.next_lsn(), log.durable_lsn()), (1000, 1000, 1000));
        assert!(old.iter().all(segment_gone), "purged segments left behind");
        assert!(log.read(299).is_err());
        assert_eq!(log.iter(0).count(), 0);
        assert_eq!(log.append(b"after").unwrap(), 1000);
        let segs = log.segments().unwrap();
        assert_eq!((segs.len(), segs[0].first_lsn, segs[0].effective), (1, 1000, Some(Mode::Direct)));
        drop(log);
        let log = Log::open(&dir, small_direct(Durability::Group)).unwrap();
        assert_eq!((log.first_lsn(), log.next_lsn()), (1000, 1001));
        assert_eq!(log.read(1000).unwrap(), b"after");
        assert!(log.recovery_report().repairs.is_empty(), "{:?}", log.recovery_report().repairs);
    }
}

#[test]
fn a_restart_interrupted_after_its_purge_point_is_finished_at_open() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    let log = Log::open(&dir, small(Durability::Group)).unwrap();
    fill(&log, 300);
    log.set_metadata(b"kept").unwrap();
    drop(log);
    // The crash: `log.meta` says everything below 5000 is purged, the segments are still there.
    patch_log_meta(&dir, "\"purged_before\":0", "\"purged_before\":5000");
    let log = Log::open(&dir, small(Durability::Group)).unwrap();
    assert_eq!((log.first_lsn(), log.next_lsn()), (5000, 5000));
    let repairs = log.recovery_report().repairs;
    assert!(repairs.iter().any(|r| r.contains("restart at LSN 5000")), "{repairs:?}");
    assert_eq!(log.segments().unwrap().len(), 1);
    assert_eq!(log.metadata(), b"kept");
    assert_eq!(log.append(b"x").unwrap(), 5000);
}

#[test]
fn truncate_from_the_first_lsn_empties_the_log() {
    for first in [0, 77] {
        let d = tmpfs_dir();
        let dir = d.path().join("l");
        let log = Log::open(&dir, LogOptions { first_lsn: first, ..small(Durability::Group) }).unwrap();
        for i in 0..300 {
            assert_eq!(log.append(&rec(i)).unwrap(), first + i);
        }
        assert!(log.truncate_from(first.wrapping_sub(1)).is_err() || first == 0);
        log.truncate_from(first).unwrap();
        assert_eq!((log.first_lsn(), log.next_lsn(), log.durable_lsn()), (first, first, first));
        assert_eq!(log.iter(0).count(), 0);
        assert_eq!(log.segments().unwrap().len(), 1);
        assert_eq!(log.append(b"again").unwrap(), first);
        drop(log);
        let log = Log::open(&dir, small(Durability::Group)).unwrap();
        assert_eq!(log.next_lsn(), first + 1);
        assert_eq!(log.read(first).unwrap(), b"again");
    }
}

#[test]
fn a_truncation_recorded_by_an_earlier_version_is_finished_at_open() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    let log = Log::open(&dir, small(Durability::Group)).unwrap();
    fill(&log, 50);
    drop(log);
    // Earlier versions recorded the intent as the last LSN to keep.
    patch_log_meta(&dir, "\"purged_before\":0", "\"purged_before\":0,\"truncate_after\":19");
    let log = Log::open(&dir, small(Durability::Group)).unwrap();
    assert_eq!(log.next_lsn(), 20);
    assert!(log.recovery_report().repairs.iter().any(|r| r.contains("truncation from LSN 20")));
    check_all(&log, 0, 20);
}

#[test]
fn appended_records_are_readable_by_the_writer_before_they_are_durable() {
    let d = tmpfs_dir();
    let log = Log::open(d.path().join("l"), small(Durability::None)).unwrap();
    fill(&log, 40);
    let durable = log.durable_lsn();
    assert!(durable < 40, "records durable without a sync: {durable}");
    assert_eq!(log.range(0, 100).count() as u64, durable, "range shows only durable records");
    let got: Vec<_> = log.range_appended(0, 100).map(|r| r.unwrap()).collect();
    assert_eq!(got.len(), 40);
    for (lsn, data) in got {
        assert_eq!(data, rec(lsn));
    }
    assert_eq!(log.range_appended(10, 12).count(), 2);
    // A reader in another process sees durable records only (same process here, same rule).
    let ro = Log::open_read_only(log.dir(), small(Durability::None)).unwrap();
    assert_eq!(ro.range_appended(0, 100).count() as u64, durable);
}

#[test]
fn a_read_only_reader_follows_a_restart_and_an_emptying_truncation() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    let log = Log::open(&dir, small(Durability::Group)).unwrap();
    fill(&log, 300);
    let ro = Log::open_read_only(&dir, small(Durability::Group)).unwrap();
    assert_eq!(ro.iter(0).count(), 300);
    log.purge_before(900).unwrap();
    log.append(b"nine hundred").unwrap();
    ro.refresh().unwrap();
    assert_eq!(ro.first_lsn(), 900);
    let got: Vec<_> = ro.iter(0).map(|r| r.unwrap()).collect();
    assert_eq!(got, vec![(900, b"nine hundred".to_vec())]);
    log.truncate_from(900).unwrap();
    log.append(b"replaced").unwrap();
    ro.refresh().unwrap();
    let got: Vec<_> = ro.iter(0).map(|r| r.unwrap()).collect();
    assert_eq!(got, vec![(900, b"replaced".to_vec())]);
}

/// A log written by the first format (segment version 1: frames without `acked`;
/// `log.meta` without a checksum line) opens, reads back, and takes appends, which
/// go to a new segment of the current format (the old tail is sealed first).
#[test]
fn a_log_of_format_1_opens_reads_and_appends_in_the_current_format() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    std::fs::create_dir(&dir).unwrap();
    let mut img =
        dynadax::log::SegmentHeader { base_lsn: 5, created_ns: 1, capacity: 64 << 10 }.encode_version(1).to_vec();
    for i in 5..25u64 {
        // A version-1 frame: len, crc(lsn ++ len ++ payload), lsn, payload, padding.
        let p = rec(i);
        let mut head = i.to_le_bytes().to_vec();
        head.extend_from_slice(&(p.len() as u32).to_le_bytes());
        let crc = crc32c_of(&head, &p);
        img.extend_from_slice(&(p.len() as u32).to_le_bytes());
        img.extend_from_slice(&crc.to_le_bytes());
        img.extend_from_slice(&i.to_le_bytes());
        img.extend_from_slice(&p);
        img.resize(img.len().div_ceil(8) * 8, 0);
    }
    img.resize(64 << 10, 0);
    std::fs::write(dir.join("00000000000000000005.dlog"), &img).unwrap();
    std::fs::write(dir.join("log.meta"), br#"{"format":1,"purged_before":5,"user":"6869"}"#).unwrap();
    let log = Log::open(&dir, small(Durability::Each)).unwrap();
    assert_eq!((log.first_lsn(), log.next_lsn()), (5, 25));
    assert_eq!(log.metadata(), b"hi");
    for i in 5..25 {
        assert_eq!(log.read(i).unwrap(), rec(i));
    }
    assert_eq!(log.append(b"new").unwrap(), 25);
    let segs = log.segments().unwrap();
    assert_eq!(segs.len(), 2, "the format-1 tail is sealed before the first append");
    assert!(segs[0].sealed);
    drop(log);
    let log = Log::open(&dir, small(Durability::Each)).unwrap();
    assert_eq!(log.read(25).unwrap(), b"new");
    assert_eq!(log.read(7).unwrap(), rec(7));
}

fn crc32c_of(head: &[u8], payload: &[u8]) -> u32 {
    // CRC32C (Castagnoli), bitwise: independent of the crate's own code.
    let mut c = !0u32;
    for &b in head.iter().chain(payload) {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
        }
    }
    !c
}

/// Once a log is closed nothing of it touches its directory: closed while the
/// background preparer is still making the next segment, it waits for it (which
/// removes that file), so the directory can be removed at once.
#[test]
fn a_log_closed_at_once_leaves_its_directory_alone() {
    for i in 0..50 {
        let d = tmpfs_dir();
        let dir = d.path().join("log");
        let log = Log::open(&dir, small(Durability::Each)).unwrap();
        log.append(b"x").unwrap();
        drop(log);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".prepare."))
            .collect();
        assert!(left.is_empty(), "round {i}: {left:?} left after close");
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("round {i}: {e}"));
    }
}

/// The writer reads its own appended records before they are durable (what a Raft
/// engine does with its log while the flush is under way): on a disk, where the tail
/// is written with `pwrite` and appends stage their frames in memory until a persist,
/// those reads must see the staged frames, through every reading API.
#[test]
fn appended_records_read_back_before_they_are_durable() {
    for d in dirs() {
        for durability in [Durability::None, Durability::Group] {
            let dir = d.path().join(format!("{durability:?}"));
            let log = Log::open(&dir, LogOptions { durability, ..small(durability) }).unwrap();
            for i in 0..50u64 {
                // Pipelined: appended, not yet waited for.
                let lsn = log.append_nowait(&i.to_le_bytes()).unwrap();
                let mut c = log.cursor_appended(lsn, lsn + 1);
                let e = c.next().expect("the record just appended").unwrap();
                assert_eq!(e.bytes, i.to_le_bytes(), "{}: LSN {lsn}", dir.display());
                let (l, b) = log.range_appended(lsn, lsn + 1).next().expect("appended").unwrap();
                assert_eq!((l, b), (lsn, i.to_le_bytes().to_vec()));
            }
            let all: Vec<_> = log.range_appended(0, 50).map(|r| r.unwrap().0).collect();
            assert_eq!(all, (0..50).collect::<Vec<_>>());
        }
    }
}
