//! Opening without a scan of the sealed segments (`LogOptions::scan_sealed` false,
//! the default): each sealed segment file gets an index file after its seal, an open
//! reads their heads instead of the records, a missing, damaged or stale index is
//! reported and the segment scanned (and the index written again), damage in an
//! indexed segment is still found: when the record is read, by `verify`, by an open
//! with `scan_sealed` and by `RecoveryMode::Strict`; and sealed segments keep a sparse
//! index in RAM (at most a byte per record), loaded on their first read.

mod common;
use common::*;
use dynadax::log::{Durability, Log, LogOptions, RecoveryMode, SegmentInfo};
use std::path::PathBuf;

fn rec(i: u64) -> Vec<u8> {
    pattern(8 + (i as usize * 41) % 600, i, 3)
}

fn opts(scan_sealed: bool) -> LogOptions {
    LogOptions { scan_sealed, ..small_log(Durability::Each) }
}

/// A closed log of `n` records over several sealed segments; those segments.
fn make(dir: &std::path::Path, n: u64) -> Vec<SegmentInfo> {
    let log = Log::open(dir, opts(true)).unwrap();
    for i in 0..n {
        log.append(&rec(i)).unwrap();
    }
    let sealed: Vec<_> = log.segments().unwrap().into_iter().filter(|s| s.sealed).collect();
    assert!(sealed.len() >= 4, "the test needs sealed segments");
    drop(log); // joins the background thread, which writes the index files
    sealed
}

/// Its index file (`{segment}.idx`, or `{data}.{offset}.idx` for a slot).
fn idx(seg: &SegmentInfo) -> PathBuf {
    let p = seg.index_file.clone().expect("a sealed segment has an index file");
    if !single_file() {
        assert_eq!(p, dynadax::log::index_path(&seg.path));
    }
    p
}

fn check_all(log: &Log, n: u64) {
    let mut c = log.cursor(0);
    let mut k = 0;
    while let Some(e) = c.next() {
        let e = e.unwrap();
        assert_eq!(e.bytes, rec(e.lsn), "record {}", e.lsn);
        k += 1;
    }
    assert_eq!(k, n);
    for lsn in (0..n).step_by(13) {
        assert_eq!(log.read(lsn).unwrap(), rec(lsn));
    }
}

#[test]
fn an_open_reads_the_indexes_not_the_sealed_records() {
    for d in [kernel_flag_dir(), tmpfs_dir()] {
        let sealed = make(d.path(), 1200);
        for s in &sealed {
            assert!(idx(s).exists(), "{} has no index file", idx(s).display());
        }
        let scanned = Log::open(d.path(), opts(true)).unwrap().recovery_report();
        assert_eq!(scanned.indexed, 0, "scan_sealed scans every segment");
        let log = Log::open(d.path(), opts(false)).unwrap();
        let r = log.recovery_report();
        assert_eq!(r.indexed, sealed.len(), "{r:?}");
        assert!(r.repairs.is_empty(), "{:?}", r.repairs);
        assert!(r.bytes * 3 < scanned.bytes, "only the tail was scanned: {} of {} bytes", r.bytes, scanned.bytes);
        check_all(&log, 1200);
        // And it goes on: appends, a seal, another indexed open.
        for i in 1200..1300 {
            assert_eq!(log.append(&rec(i)).unwrap(), i);
        }
        log.seal().unwrap();
        drop(log);
        let ro = Log::open_read_only(d.path(), opts(false)).unwrap();
        let rr = ro.recovery_report();
        assert!(rr.indexed > sealed.len(), "a read-only open uses them too: {rr:?}");
        check_all(&ro, 1300);
    }
}

#[test]
fn a_missing_damaged_or_stale_index_is_reported_and_the_segment_scanned() {
    let d = tmpfs_dir();
    let sealed = make(d.path(), 1200);
    // Damaged: one byte of the offsets, one of the head. Missing. Stale: another
    // segment's index.
    let flip = |p: &std::path::Path, at: usize| {
        let mut b = std::fs::read(p).unwrap();
        b[at] ^= 4;
        std::fs::write(p, b).unwrap();
    };
    flip(&idx(&sealed[0]), 60);
    std::fs::remove_file(idx(&sealed[1])).unwrap();
    std::fs::copy(idx(&sealed[1 + 2]), idx(&sealed[2])).unwrap();
    flip(&idx(&sealed[3]), 30);
    let log = Log::open(d.path(), opts(false)).unwrap();
    let r = log.recovery_report();
    // The open reads only the heads: the damaged offsets are found on the first read.
    assert_eq!(r.indexed, sealed.len() - 3, "{r:?}");
    let reported = |r: &dynadax::log::RecoveryReport, s: &std::path::Path, why: &str, when: &str| {
        assert!(
            r.repairs.iter().any(|l| l.contains(&*s.to_string_lossy()) && l.contains(why) && l.contains(when)),
            "{} ({why}) not reported: {}",
            s.display(),
            r.repairs.join("\n")
        );
    };
    for (s, why) in [(&sealed[1], "no index file"), (&sealed[2], "another segment"), (&sealed[3], "in its head")] {
        reported(&r, &idx(s), why, "scanned");
    }
    assert!(!r.repairs.iter().any(|l| l.contains(&*idx(&sealed[0]).to_string_lossy())), "{:?}", r.repairs);
    check_all(&log, 1200);
    reported(
        &log.recovery_report(),
        &idx(&sealed[0]),
        "checksum mismatch",
        "scanned on its first read, and its index written again",
    );
    check_all(&log, 1200);
    drop(log);
    // Written again (and verify, which checks each index against its segment, finds
    // nothing wrong); the next open takes every one.
    let v = dynadax::log::verify(d.path(), 4096, &mut |_, _| {}).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    let log = Log::open(d.path(), opts(false)).unwrap();
    assert_eq!(log.recovery_report().indexed, sealed.len(), "{:?}", log.recovery_report().repairs);
    check_all(&log, 1200);
}

#[test]
fn verify_names_a_damaged_index_and_nothing_else() {
    let d = tmpfs_dir();
    let sealed = make(d.path(), 1200);
    assert!(dynadax::log::verify(d.path(), 4096, &mut |_, _| {}).unwrap().problems.is_empty());
    let mut b = std::fs::read(idx(&sealed[1])).unwrap();
    let at = b.len() - 9;
    b[at] ^= 1;
    std::fs::write(idx(&sealed[1]), b).unwrap();
    let v = dynadax::log::verify(d.path(), 4096, &mut |_, _| {}).unwrap();
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    assert_eq!(v.problems[0].kind, dynadax::log::ProblemKind::Index);
    assert!(v.problems[0].what.contains("checksum"), "{:?}", v.problems[0]);
    assert_eq!(v.records, 1200, "every record is intact");
}

#[test]
fn damage_in_an_indexed_segment_is_found_by_the_read_verify_strict_and_a_scanning_open() {
    let d = tmpfs_dir();
    let sealed = make(d.path(), 1200);
    // A payload byte of a record in the second sealed segment.
    let log = Log::open(d.path(), opts(false)).unwrap();
    let victim = log.segments().unwrap()[1].first_lsn + 3;
    drop(log);
    let mut b = std::fs::read(&sealed[1].path).unwrap();
    let at = (sealed[1].offset + sealed[1].bytes / 2) as usize;
    b[at] ^= 0x10;
    std::fs::write(&sealed[1].path, &b).unwrap();
    let log = Log::open(d.path(), opts(false)).unwrap();
    assert_eq!(log.recovery_report().indexed, sealed.len(), "opened from the indexes: no scan saw it");
    // Reads check every record's CRC: the damaged one is an error naming the file.
    let mut bad = Vec::new();
    for lsn in 0..1200 {
        match log.read(lsn) {
            Ok(r) => assert_eq!(r, rec(lsn)),
            Err(e) => {
                let s = e.to_string();
                assert!(s.contains(&*sealed[1].path.to_string_lossy()), "{s}");
                assert!(log.read_ref(lsn).is_err(), "the zero-copy read refuses it too");
                bad.push(lsn);
            }
        }
    }
    assert_eq!(bad.len(), 1, "one damaged record: {bad:?} (victim near {victim})");
    drop(log);
    let v = dynadax::log::verify(d.path(), 4096, &mut |_, _| {}).unwrap();
    assert!(!v.problems.is_empty(), "verify finds it");
    let strict = Log::open(d.path(), LogOptions { recovery: RecoveryMode::Strict, ..opts(false) });
    assert!(strict.is_err(), "Strict scans every segment");
    assert!(Log::open(d.path(), opts(true)).is_err(), "an open with scan_sealed scans and refuses");
}

#[test]
fn index_files_go_with_their_segments() {
    let d = tmpfs_dir();
    let sealed = make(d.path(), 1200);
    let log = Log::open(d.path(), opts(false)).unwrap();
    let segs = log.segments().unwrap();
    log.purge_before(segs[2].first_lsn).unwrap();
    assert!(!idx(&sealed[0]).exists() && !idx(&sealed[1]).exists(), "purged segments' indexes removed");
    // A truncation into a sealed segment (which replaces its file, or cuts its slot in
    // place): its index goes; the segment, the tail again, gets a new one at its next
    // seal.
    let cut = segs[3].first_lsn + 4;
    log.truncate_from(cut).unwrap();
    assert!(!idx(&segs[3]).exists());
    for i in cut..cut + 300 {
        log.append(&rec(i)).unwrap();
    }
    drop(log);
    assert!(idx(&segs[3]).exists(), "sealed again, indexed again");
    let log = Log::open(d.path(), opts(false)).unwrap();
    assert!(log.recovery_report().repairs.is_empty(), "{:?}", log.recovery_report().repairs);
    for lsn in log.first_lsn()..cut + 300 {
        assert_eq!(log.read(lsn).unwrap(), rec(lsn));
    }
}

/// RAM per record of sealed segments: none until a segment is first read, then at
/// most a byte per record (the tail: 4); every record reads back, at every place
/// between two marks of the sparse index, by random and sequential reads, copying
/// and zero-copy, in a writer and in a read-only reader.
#[test]
fn sealed_segments_keep_at_most_a_byte_per_record_in_ram() {
    let d = tmpfs_dir();
    let n = 3000;
    make(d.path(), n);
    for read_only in [false, true] {
        let log = if read_only {
            Log::open_read_only(d.path(), opts(false)).unwrap()
        } else {
            Log::open(d.path(), opts(false)).unwrap()
        };
        let sealed = |log: &Log| log.segments().unwrap().into_iter().filter(|s| s.sealed).collect::<Vec<_>>();
        for s in sealed(&log) {
            assert_eq!(s.index_ram, 0, "{} loaded before its first read", s.path.display());
        }
        // Random order, then every LSN through both APIs.
        let mut lsn = 7u64;
        for _ in 0..n {
            lsn = (lsn * 1103 + 12345) % n;
            assert_eq!(log.read(lsn).unwrap(), rec(lsn), "LSN {lsn}");
            assert_eq!(&*log.read_ref(lsn).unwrap(), &rec(lsn)[..], "LSN {lsn}");
        }
        check_all(&log, n);
        let segs = sealed(&log);
        assert!(segs.len() >= 4);
        for s in &segs {
            assert!(
                s.index_ram > 0 && s.index_ram as u64 <= s.records + 3,
                "{}: {} bytes for {} records",
                s.path.display(),
                s.index_ram,
                s.records
            );
        }
    }
}
