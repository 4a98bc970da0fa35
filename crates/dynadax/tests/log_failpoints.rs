//! A failed persist poisons the log: the append that hit it fails, every later
//! append is refused with the reason, and nothing acknowledged is lost after a
//! reopen. Needs `--features failpoints`.
#![cfg(feature = "failpoints")]

mod common;
use dynadax::log::{Durability, Log, LogOptions};
use dynadax::Error;

#[test]
fn failed_persist_poisons_and_loses_nothing_acknowledged() {
    for durability in [Durability::Each, Durability::Group] {
        let scenario = fail::FailScenario::setup();
        let d = common::tmpfs_dir();
        let dir = d.path().join("l");
        let opts = LogOptions {
            segment_size: 64 << 10,
            max_record: 1024,
            durability,
            layout: common::layout(64 << 10),
            ..LogOptions::default()
        };
        let log = Log::open(&dir, opts.clone()).unwrap();
        for i in 0..10u64 {
            assert_eq!(log.append(format!("ok{i}").as_bytes()).unwrap(), i);
        }
        fail::cfg("log-persist", "return").unwrap();
        let err = log.append(b"doomed").unwrap_err();
        assert!(err.to_string().contains("persist"), "{err}");
        fail::remove("log-persist");
        match log.append(b"after") {
            Err(Error::Poisoned { why, path }) => {
                assert_eq!(path, dir);
                assert!(why.contains("persist"), "{why}");
            }
            other => panic!("{durability:?}: expected Poisoned, got {other:?}"),
        }
        assert!(matches!(log.sync(), Err(Error::Poisoned { .. })));
        assert_eq!(log.durable_lsn(), 10, "the failed record became visible");
        drop(log);
        let log = Log::open(&dir, opts).unwrap();
        for i in 0..10u64 {
            assert_eq!(log.read(i).unwrap(), format!("ok{i}").as_bytes(), "acknowledged record {i} lost");
        }
        // The unacknowledged record may or may not have reached the media; if it
        // did, it is exactly what was written.
        if log.next_lsn() > 10 {
            assert_eq!(log.read(10).unwrap(), b"doomed");
        }
        assert!(log.append(b"fresh").is_ok(), "a reopened log accepts appends again");
        scenario.teardown();
    }
}

/// Review defect 1, second way in: when clearing a finished truncation's intent
/// failed (a full disk), the log went on taking appends with the intent still in its
/// metadata, and a later `set_metadata` (an openraft vote) wrote it again; the next
/// open cut the appends. Now that failure poisons the log, and the reopen finishes
/// and clears the intent before anything is appended.
#[test]
fn a_truncation_intent_that_cannot_be_cleared_poisons_the_log() {
    let scenario = fail::FailScenario::setup();
    let d = common::tmpfs_dir();
    let dir = d.path().join("l");
    let opts = LogOptions {
        segment_size: 64 << 10,
        max_record: 1024,
        layout: common::layout(64 << 10),
        ..LogOptions::default()
    };
    let log = Log::open(&dir, opts.clone()).unwrap();
    for i in 0..20u64 {
        log.append(format!("r{i}").as_bytes()).unwrap();
    }
    // The intent is written; clearing it fails.
    fail::cfg("log-meta-write", "1*off->return").unwrap();
    let err = log.truncate_from(10).unwrap_err();
    fail::remove("log-meta-write");
    assert!(err.to_string().contains("log metadata"), "{err}");
    assert!(matches!(log.append(b"x"), Err(Error::Poisoned { .. })), "appends went on after the intent stuck");
    assert!(matches!(log.set_metadata(b"vote"), Err(Error::Poisoned { .. })));
    drop(log);
    let log = Log::open(&dir, opts.clone()).unwrap();
    assert_eq!(log.next_lsn(), 10);
    for i in 10..15u64 {
        assert_eq!(log.append(format!("n{i}").as_bytes()).unwrap(), i);
    }
    log.set_metadata(b"vote").unwrap();
    drop(log);
    let log = Log::open(&dir, opts).unwrap();
    assert_eq!(log.next_lsn(), 15, "appends after the truncation were cut");
    assert_eq!(log.read(14).unwrap(), b"n14");
    scenario.teardown();
}

/// Issue 10: an I/O error is damage, never a torn write. A read that fails during
/// recovery (a bad sector, poisoned persistent memory read with pread) stops the open
/// with the file and offset, and changes nothing; one that fails later fails that
/// read only, the same way.
#[test]
fn read_errors_name_file_and_offset_and_never_cut() {
    let scenario = fail::FailScenario::setup();
    let d = common::tmpfs_dir();
    let dir = d.path().join("l");
    let opts = LogOptions {
        segment_size: 1 << 20,
        max_record: 1024,
        layout: common::layout(1 << 20),
        ..LogOptions::default()
    };
    let log = Log::open(&dir, opts.clone()).unwrap();
    for i in 0..200u64 {
        log.append(format!("r{i:04}").as_bytes()).unwrap();
    }
    let tail = log.segments().unwrap().pop().unwrap();
    drop(log);
    let before = std::fs::read(&tail.path).unwrap();
    // Reads that reach past byte 4000 of a segment fail with EIO.
    fail::cfg("log-read", "return(4000)").unwrap();
    match Log::open(&dir, opts.clone()) {
        Err(Error::IoAt { path, offset, source, .. }) => {
            assert_eq!(path, tail.path);
            assert_eq!(offset, tail.offset + 4000, "the file's offset of the segment's byte 4000");
            assert_eq!(source.raw_os_error(), Some(libc::EIO));
        }
        Err(e) => panic!("expected an I/O error at an offset, got {e}"),
        Ok(_) => panic!("an unreadable tail opened"),
    }
    for mode in [dynadax::log::RecoveryMode::PointInTime, dynadax::log::RecoveryMode::SkipDamaged] {
        let r = Log::open(&dir, LogOptions { recovery: mode, ..opts.clone() });
        assert!(matches!(r, Err(Error::IoAt { .. })), "{mode:?}: an I/O error was salvaged around");
    }
    assert!(matches!(dynadax::log::verify(&dir, 1024, &mut |_, _| {}), Err(Error::IoAt { .. })));
    fail::remove("log-read");
    assert_eq!(std::fs::read(&tail.path).unwrap(), before, "a failed recovery changed the tail");
    let log = Log::open(&dir, opts).unwrap();
    assert_eq!(log.next_lsn(), 200);
    fail::cfg("log-read", "return(4000)").unwrap();
    assert_eq!(log.read(3).unwrap(), b"r0003", "a read before the bad place");
    let err = log.read(199).unwrap_err();
    assert!(matches!(err, Error::IoAt { offset, .. } if offset >= tail.offset + 4000), "{err}");
    assert!(err.to_string().contains(&*tail.path.to_string_lossy()), "{err}");
    fail::remove("log-read");
    assert_eq!(log.read(199).unwrap(), b"r0199");
    scenario.teardown();
}
