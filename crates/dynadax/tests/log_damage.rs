//! Damage never costs acknowledged records silently (issue 10): a bad record that is
//! the last thing in the log is a torn write and is cut; one followed by records
//! written after it was acknowledged is damage, refused with the file, the offset,
//! the LSN and the intact records after it, and no byte changed; salvage keeps every
//! intact record and reports the holes, only when asked; what a repair drops is kept
//! beside its segment.

mod common;
use common::*;
use dynadax::log::{verify, Log, LogOptions, ProblemKind, RecoveryMode, META_FILE, STATE_FILE};
use dynadax::Error;
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

fn rec(i: u64) -> Vec<u8> {
    pattern(100 + (i as usize * 37) % 600, i, 3)
}

fn opts(recovery: RecoveryMode) -> LogOptions {
    LogOptions { segment_size: 64 << 20, max_record: 4096, recovery, layout: layout(64 << 20), ..LogOptions::default() }
}

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .filter(|(n, _)| n != "LOCK" && n != STATE_FILE)
        .collect()
}

fn flip(path: &Path, at: u64) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
}

/// 30,000 records in one tail (default group commit, one appender at a time, as
/// `dynadax log append` does), and the record index of the first segment.
fn big_tail(dir: &Path) -> (PathBuf, Vec<u64>) {
    let log = Log::open(dir, opts(RecoveryMode::TolerateTornTail)).unwrap();
    for i in 0..30_000 {
        log.append(&rec(i)).unwrap();
    }
    let tail = log.segments().unwrap().pop().unwrap();
    assert_eq!(tail.records, 30_000);
    // Offsets from the frame lengths (24-byte header, 8-byte alignment).
    // (In the file: a slot of the single-file layout starts inside it.)
    let mut offs = Vec::new();
    let mut at = tail.offset + 64;
    for i in 0..30_000 {
        offs.push(at);
        at += (24 + rec(i).len() as u64).div_ceil(8) * 8;
    }
    (tail.path, offs)
}

/// The scenario: one byte flipped a third of the way into the tail's records.
#[test]
fn a_flipped_byte_mid_tail_is_refused_unchanged_and_salvaged_when_asked() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    let (tail, offs) = big_tail(&dir);
    let victim = 10_000u64;
    let at = offs[victim as usize] + 30;
    flip(&tail, at);
    let before = snapshot(&dir);
    match Log::open(&dir, opts(RecoveryMode::TolerateTornTail)) {
        Err(Error::Corrupt { path, why, .. }) => {
            assert_eq!(path, tail);
            assert!(why.contains(&format!("at byte {}", offs[victim as usize])), "{why}");
            assert!(why.contains("record 10000 is damaged"), "{why}");
            assert!(why.contains("19999 intact record(s) follow"), "{why}");
        }
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("damage opened silently"),
    }
    assert_eq!(snapshot(&dir), before, "a refused open changed bytes");
    // verify: damage, with the intact records after it.
    let rep = verify(&dir, 4096, &mut |_, _| {}).unwrap();
    assert_eq!(rep.problems.len(), 1, "{:?}", rep.problems);
    let p = &rep.problems[0];
    assert_eq!((p.kind, p.lsn, p.intact_after), (ProblemKind::Damage, Some(victim), 19_999));
    // The plan of a salvage, changing nothing.
    let plan = Log::plan_recovery(&dir, RecoveryMode::SkipDamaged).unwrap();
    assert_eq!(plan.holes.len(), 1);
    assert_eq!(plan.holes[0].lsns, (victim, victim + 1));
    assert_eq!(snapshot(&dir), before, "a dry run changed bytes");
    // Salvage: every other record reads, the damaged one is a clear error.
    let log = Log::open(&dir, opts(RecoveryMode::SkipDamaged)).unwrap();
    assert_eq!(log.next_lsn(), 30_000);
    match log.read(victim) {
        Err(Error::Damaged { lsn, path, offset }) => {
            assert_eq!((lsn, path, offset), (victim, tail.clone(), offs[victim as usize]));
        }
        other => panic!("expected Damaged, got {other:?}"),
    }
    let mut errors = 0;
    for r in log.iter(0) {
        match r {
            Ok((lsn, data)) => assert!(data == rec(lsn), "LSN {lsn}"),
            Err(Error::Damaged { lsn, .. }) => {
                assert_eq!(lsn, victim);
                errors += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(errors, 1);
    assert_eq!(log.append(b"after salvage").unwrap(), 30_000);
    drop(log);
    // The hole is recorded: later default opens accept it, and only it.
    assert!(std::fs::read_to_string(dir.join(META_FILE)).unwrap().contains("damaged"));
    let log = Log::open(&dir, opts(RecoveryMode::TolerateTornTail)).unwrap();
    assert!(matches!(log.read(victim), Err(Error::Damaged { .. })));
    assert_eq!(log.read(30_000).unwrap(), b"after salvage");
    assert_eq!(log.read(victim + 1).unwrap(), rec(victim + 1));
    drop(log);
    // A second flip elsewhere is new damage: refused again.
    flip(&tail, offs[20_000] + 40);
    assert!(matches!(Log::open(&dir, opts(RecoveryMode::TolerateTornTail)), Err(Error::Corrupt { .. })));
    assert!(verify(&dir, 4096, &mut |_, _| {}).unwrap().problems.iter().any(|p| p.lsn == Some(20_000)));
}

/// Point-in-time keeps the prefix before the damage; the bytes it drops are kept
/// beside the segment, and say so.
#[test]
fn point_in_time_keeps_the_prefix_and_the_evidence() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    let (tail, offs) = big_tail(&dir);
    flip(&tail, offs[25_000] + 50);
    let log = Log::open(&dir, opts(RecoveryMode::PointInTime)).unwrap();
    assert_eq!(log.next_lsn(), 25_000);
    let r = log.recovery_report();
    assert_eq!(r.dropped.len(), 1, "{r:?}");
    let dropped = &r.dropped[0];
    assert_eq!((dropped.offset, dropped.lsns), (offs[25_000], Some((25_000, 30_000))));
    let ev = std::fs::read(dropped.evidence.as_ref().unwrap()).unwrap();
    assert_eq!(ev.len() as u64, dropped.bytes);
    assert_eq!(&ev[24..24 + 50 - 24], &rec(25_000)[..50 - 24], "evidence holds the dropped record's bytes");
    drop(log);
    assert!(Log::open(&dir, opts(RecoveryMode::TolerateTornTail)).unwrap().recovery_report().repairs.is_empty());
}

/// A torn write at the end of the log is still cut at once: only the record in
/// flight goes, and its bytes are kept.
#[test]
fn a_torn_last_record_is_cut_and_kept() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    let (tail, offs) = big_tail(&dir);
    flip(&tail, offs[29_999] + 30);
    let log = Log::open(&dir, opts(RecoveryMode::TolerateTornTail)).unwrap();
    assert_eq!(log.next_lsn(), 29_999);
    let r = log.recovery_report();
    assert!(r.repairs[0].contains("torn tail"), "{r:?}");
    assert!(r.dropped[0].evidence.as_ref().unwrap().exists());
}

/// A log of `n` records in 64 KiB segments, closed; its segments.
fn small_segments(dir: &Path, n: u64) -> Vec<dynadax::log::SegmentInfo> {
    let o = LogOptions { segment_size: 64 << 10, ..opts(RecoveryMode::TolerateTornTail) };
    let log = Log::open(dir, o).unwrap();
    for i in 0..n {
        log.append(&rec(i)).unwrap();
    }
    log.segments().unwrap()
}

/// Damage in a sealed segment: refused; salvaged as a hole; point-in-time sets the
/// later segments aside (renamed, not deleted).
#[test]
fn damage_in_a_sealed_segment_is_salvaged_or_set_aside() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    let o = |recovery| LogOptions { segment_size: 64 << 10, ..opts(recovery) };
    let segs = small_segments(&dir, 1000);
    assert!(segs.len() >= 4);
    let victim = segs[1].first_lsn + 3;
    // The 4th record of segment 1: skip 3 frames.
    let mut at = segs[1].offset + 64;
    for l in segs[1].first_lsn..victim {
        at += (24 + rec(l).len() as u64).div_ceil(8) * 8;
    }
    flip(&segs[1].path, at + 28);
    let before = snapshot(&dir);
    let scanning = LogOptions { scan_sealed: true, ..o(RecoveryMode::TolerateTornTail) };
    let err = Log::open(&dir, scanning).err().unwrap().to_string();
    assert!(
        err.contains(&*segs[1].path.to_string_lossy()) && err.contains(&format!("record {victim} is damaged")),
        "{err}"
    );
    assert_eq!(snapshot(&dir), before);
    {
        let log = Log::open(&dir, o(RecoveryMode::SkipDamaged)).unwrap();
        assert_eq!(log.next_lsn(), 1000);
        assert!(matches!(log.read(victim), Err(Error::Damaged { lsn, .. }) if lsn == victim));
        assert_eq!(log.read(victim + 1).unwrap(), rec(victim + 1));
        assert_eq!(log.read(victim - 1).unwrap(), rec(victim - 1));
    }
    // Start over with point-in-time on a fresh copy of the damaged state.
    let d2 = tmpfs_dir();
    let dir2 = d2.path().join("l");
    std::fs::create_dir(&dir2).unwrap();
    for (name, bytes) in &before {
        std::fs::write(dir2.join(name), bytes).unwrap();
    }
    let log = Log::open(&dir2, o(RecoveryMode::PointInTime)).unwrap();
    assert_eq!(log.next_lsn(), victim);
    for s in &segs[2..] {
        let p = dir2.join(s.path.file_name().unwrap());
        // A segment file is renamed; a slot is copied out, then freed.
        let ev = PathBuf::from(format!("{}.cut-{}", p.display(), s.offset));
        assert!(ev.exists(), "{} not set aside", ev.display());
        assert!(segment_gone(&dynadax::log::SegmentInfo { path: p, ..s.clone() }));
    }
    assert_eq!(log.append(b"new").unwrap(), victim);
}

/// Damage to a segment header, log.meta and tail.state.
#[test]
fn damage_to_headers_and_metadata_is_named() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    let o = |recovery| LogOptions { segment_size: 64 << 10, ..opts(recovery) };
    let log = Log::open(&dir, o(RecoveryMode::TolerateTornTail)).unwrap();
    for i in 0..600 {
        log.append(&rec(i)).unwrap();
    }
    let segs = log.segments().unwrap();
    drop(log);
    // tail.state is derived: a damaged one is rebuilt.
    std::fs::write(dir.join(STATE_FILE), b"garbage").unwrap();
    let log = Log::open(&dir, o(RecoveryMode::TolerateTornTail)).unwrap();
    assert!(log.recovery_report().repairs.iter().any(|r| r.contains("tail.state") && r.contains("rebuilt")));
    drop(log);
    // A sealed segment's header.
    flip(&segs[1].path, segs[1].offset + 20);
    let err = Log::open(&dir, o(RecoveryMode::TolerateTornTail)).err().unwrap().to_string();
    assert!(err.contains(&*segs[1].path.to_string_lossy()) && err.contains("header"), "{err}");
    let log = Log::open(&dir, o(RecoveryMode::SkipDamaged)).unwrap();
    assert!(matches!(log.read(segs[1].first_lsn), Err(Error::Damaged { .. })));
    assert_eq!(log.read(segs[2].first_lsn).unwrap(), rec(segs[2].first_lsn));
    assert_eq!(log.read(segs[1].first_lsn - 1).unwrap(), rec(segs[1].first_lsn - 1));
    drop(log);
    assert!(Log::open(&dir, o(RecoveryMode::TolerateTornTail)).is_ok(), "the salvaged hole is known");
}

/// log.meta carries a checksum: a flipped digit (a purge point, a vote) is damage
/// found, refused naming the file; a salvage keeps the damaged file and rebuilds it.
#[test]
fn a_flipped_digit_in_log_meta_is_damage_not_a_value() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    let o = |recovery| LogOptions { segment_size: 64 << 10, ..opts(recovery) };
    let log = Log::open(&dir, o(RecoveryMode::TolerateTornTail)).unwrap();
    for i in 0..300 {
        log.append(&rec(i)).unwrap();
    }
    log.set_metadata(b"vote 7").unwrap();
    drop(log);
    let meta = dir.join(META_FILE);
    let text = std::fs::read_to_string(&meta).unwrap();
    let at = text.find("\"purged_before\":0").unwrap() + "\"purged_before\":".len();
    let mut bytes = text.into_bytes();
    bytes[at] = b'9';
    std::fs::write(&meta, &bytes).unwrap();
    let err = Log::open(&dir, o(RecoveryMode::TolerateTornTail)).err().unwrap().to_string();
    assert!(err.contains(&*meta.to_string_lossy()) && err.contains("checksum mismatch"), "{err}");
    assert!(Log::open_read_only(&dir, o(RecoveryMode::TolerateTornTail)).is_err());
    let log = Log::open(&dir, o(RecoveryMode::SkipDamaged)).unwrap();
    assert_eq!((log.first_lsn(), log.next_lsn()), (0, 300), "records below a wrong purge point were hidden");
    assert!(log.metadata().is_empty());
    assert_eq!(std::fs::read(dir.join(format!("{META_FILE}.cut-0"))).unwrap(), bytes, "evidence kept");
}

/// The oldest segment gone (its file deleted; a single-file log's slot magic zeroed):
/// the log must not open silently from the next one. Refused, naming the segment and
/// the missing LSNs, nothing changed; a salvage opens it from the next segment and
/// reports the loss; later opens accept that start.
#[test]
fn a_missing_oldest_segment_is_damage_not_a_later_start() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    let o = |recovery| LogOptions { segment_size: 64 << 10, ..opts(recovery) };
    let segs = small_segments(&dir, 1000);
    assert!(segs.len() >= 3);
    if single_file() {
        use std::os::unix::fs::FileExt;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&segs[0].path)
            .unwrap()
            .write_all_at(&[0; 8], segs[0].offset)
            .unwrap();
    } else {
        std::fs::remove_file(&segs[0].path).unwrap();
    }
    let before = snapshot(&dir);
    let err = Log::open(&dir, o(RecoveryMode::TolerateTornTail)).err().expect("refused").to_string();
    let missing = format!("LSNs 0..{} are missing", segs[1].first_lsn);
    assert!(err.contains(&*segs[1].path.to_string_lossy()) && err.contains(&missing), "{err}");
    assert_eq!(snapshot(&dir), before, "a refused open changed the log");
    let log = Log::open(&dir, o(RecoveryMode::SkipDamaged)).unwrap();
    let r = log.recovery_report();
    assert_eq!(r.dropped.len(), 1, "{r:?}");
    assert_eq!(r.dropped[0].lsns, Some((0, segs[1].first_lsn)));
    assert_eq!(log.first_lsn(), segs[1].first_lsn);
    assert_eq!(log.read(segs[1].first_lsn).unwrap(), rec(segs[1].first_lsn));
    drop(log);
    let log = Log::open(&dir, o(RecoveryMode::TolerateTornTail)).unwrap();
    assert!(log.recovery_report().repairs.is_empty());
    assert_eq!(log.next_lsn(), 1000);
}
