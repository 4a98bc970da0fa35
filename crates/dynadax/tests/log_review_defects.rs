//! Regression tests for the defects of the log review (issue 9): each test is named
//! after the defect it pins, failed on the code the review read (commit 011d28d) and
//! passes since the fix.

mod common;
use common::*;
use dynadax::log::{Durability, Log, LogOptions, RecoveryMode, TailMode, META_FILE};
use dynadax::Error;
use std::path::Path;

fn opts(durability: Durability) -> LogOptions {
    LogOptions { segment_size: 64 << 10, max_record: 4096, durability, ..LogOptions::default() }
}

fn rec(i: u64) -> Vec<u8> {
    pattern(1 + (i as usize * 37) % 700, i, 1)
}

/// Every LSN from `first` reads back exactly `want(lsn)`, and nothing follows.
fn assert_records(log: &Log, first: u64, n: u64, want: impl Fn(u64) -> Vec<u8>) {
    let got: Vec<(u64, Vec<u8>)> = log.iter(first).map(|r| r.unwrap()).collect();
    assert_eq!(got.len() as u64, n, "records from {first}");
    for (k, (lsn, data)) in got.into_iter().enumerate() {
        assert_eq!(lsn, first + k as u64);
        assert!(data == want(lsn), "LSN {lsn} holds other bytes");
    }
}

/// Adds `"key": value` to the JSON of `log.meta`, as a crash in the middle of an
/// operation leaves it (the file is written whole, by rename).
fn meta_with(dir: &Path, key: &str, value: serde_json::Value) {
    let p = dir.join(META_FILE);
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v[key] = value;
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

/// Defect 1: recovery finished an interrupted truncation whose cut was already done
/// (the log ended at the intent's LSN), but left the intent in `log.meta`: the next
/// open cut every record appended after it.
#[test]
fn stale_truncation_intent_never_cuts_records_appended_after_it() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    let log = Log::open(&dir, opts(Durability::Each)).unwrap();
    for i in 0..5 {
        log.append(&rec(i)).unwrap();
    }
    drop(log);
    // A crash after the zeroing, before the intent was cleared.
    meta_with(&dir, "truncate_from", 5.into());
    let log = Log::open(&dir, opts(Durability::Each)).unwrap();
    assert!(log.recovery_report().repairs.iter().any(|r| r.contains("truncation")), "{:?}", log.recovery_report());
    for i in 5..10 {
        assert_eq!(log.append(&rec(i)).unwrap(), i);
    }
    // The vote an openraft store writes: it must not carry the old intent either.
    log.set_metadata(b"vote").unwrap();
    drop(log);
    let text = std::fs::read_to_string(dir.join(META_FILE)).unwrap();
    assert!(!text.contains("truncate"), "intent still recorded: {text}");
    let log = Log::open(&dir, opts(Durability::Each)).unwrap();
    assert_records(&log, 0, 10, rec);
    assert_eq!(log.metadata(), b"vote");
}

/// Defect 4: without `log.meta`, `--first-lsn` was taken as the purge point and
/// every segment below it was removed as a "finished restart".
#[test]
fn missing_log_meta_with_first_lsn_never_deletes_the_log() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    let log = Log::open(&dir, opts(Durability::Each)).unwrap();
    for i in 0..20 {
        log.append(&rec(i)).unwrap();
    }
    let segs: Vec<_> = log.segments().unwrap().into_iter().map(|s| s.path).collect();
    drop(log);
    std::fs::remove_file(dir.join(META_FILE)).unwrap();
    let with_first = LogOptions { first_lsn: 100, ..opts(Durability::Each) };
    // Default recovery: refused, naming log.meta, nothing changed.
    match Log::open(&dir, with_first.clone()) {
        Err(Error::Corrupt { path, why, .. }) => {
            assert_eq!(path, dir.join(META_FILE));
            assert!(why.contains("missing"), "{why}");
        }
        Err(e) => panic!("expected Corrupt naming log.meta, got {e}"),
        Ok(_) => panic!("a log without its log.meta opened silently"),
    }
    assert!(segs.iter().all(|p| p.exists()), "a refused open removed segments");
    // Readers need no metadata to read.
    assert_records(&Log::open_read_only(&dir, opts(Durability::Each)).unwrap(), 0, 20, rec);
    // Asked to rebuild it: from the segments, not from first_lsn.
    let log = Log::open(&dir, LogOptions { recovery: RecoveryMode::PointInTime, ..with_first }).unwrap();
    assert!(log.recovery_report().repairs.iter().any(|r| r.contains(META_FILE)), "{:?}", log.recovery_report());
    assert_eq!(log.first_lsn(), 0);
    assert_records(&log, 0, 20, rec);
    assert_eq!(log.append(b"next").unwrap(), 20);
}

/// Defect 5: the LSN after `u64::MAX - 1` wrapped to 0, so the record at
/// `u64::MAX` was acknowledged unpersisted and the next open deleted every segment.
#[test]
fn the_end_of_the_lsn_space_is_refused_not_wrapped() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    let o = LogOptions { first_lsn: u64::MAX - 2, ..opts(Durability::Group) };
    let log = Log::open(&dir, o.clone()).unwrap();
    assert_eq!(log.append(b"a").unwrap(), u64::MAX - 2);
    assert_eq!(log.append(b"b").unwrap(), u64::MAX - 1);
    assert_eq!(log.durable_lsn(), u64::MAX);
    let err = log.append(b"c").unwrap_err().to_string();
    assert!(err.contains("LSN space exhausted"), "{err}");
    assert!(log.append_batch(&[b"x", b"y"]).is_err());
    assert_eq!(log.next_lsn(), u64::MAX);
    drop(log);
    let log = Log::open(&dir, o).unwrap();
    assert_eq!(log.read(u64::MAX - 2).unwrap(), b"a");
    assert_eq!(log.read(u64::MAX - 1).unwrap(), b"b");
    assert_eq!(log.next_lsn(), u64::MAX);
    // A batch that would pass the end is refused as a whole.
    let d2 = tmpfs_dir();
    let log = Log::open(d2.path().join("l"), LogOptions { first_lsn: u64::MAX - 2, ..opts(Durability::Each) }).unwrap();
    assert!(log.append_batch(&[b"1", b"2", b"3"]).is_err());
    assert_eq!(log.next_lsn(), u64::MAX - 2, "a refused batch moved the log");
    assert_eq!(log.append_batch(&[b"1", b"2"]).unwrap(), u64::MAX - 2..u64::MAX);
}

/// Defect 6 (the records part, on any file system): a batch spanning a rotation is
/// not visible to readers, in part, before the whole of it is durable.
#[test]
fn a_batch_spanning_a_seal_is_not_visible_in_part() {
    let d = tmpfs_dir();
    let dir = d.path().join("l");
    let log = Log::open(&dir, LogOptions { tail_mode: TailMode::Direct, ..opts(Durability::None) }).unwrap();
    log.append(b"first").unwrap();
    log.sync().unwrap();
    let big = vec![7u8; 3000];
    let batch: Vec<&[u8]> = (0..40).map(|_| &big[..]).collect();
    let r = log.append_batch(&batch).unwrap();
    assert!(log.segments().unwrap().len() > 1, "the batch did not span segments");
    assert_eq!(log.durable_lsn(), 1, "part of an unsynced batch became visible at a seal");
    assert!(log.read(r.start).is_err());
    log.sync().unwrap();
    assert_eq!(log.durable_lsn(), r.end);
}
