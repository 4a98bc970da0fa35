//! Zero-copy reads (`Log::cursor`, `Log::read_ref`, `Log::read_with`,
//! `Log::read_batch`): the same records as the copying API, lent from the sealed
//! segments' mappings (files layout) and copied elsewhere, and bytes that stay
//! unchanged while borrowed whatever the writer does (seal, purge, truncation into a
//! sealed segment, appends after it), in this process and to a read-only reader.

mod common;
use common::*;
use dynadax::log::{Durability, Log, LogOptions, RecordRef};

/// Record `lsn` as written in generation `gen` (a truncation rewrites LSNs in a new
/// generation): its first 16 bytes say which, the rest is derived from them.
fn rec(lsn: u64, gen: u64) -> Vec<u8> {
    let len = 16 + (lsn as usize * 53) % 900;
    let mut v = pattern(len, lsn, gen);
    v[..8].copy_from_slice(&lsn.to_le_bytes());
    v[8..16].copy_from_slice(&gen.to_le_bytes());
    v
}

/// Checks that `bytes` is a whole record of `lsn` in some generation; returns it.
fn gen_of(lsn: u64, bytes: &[u8]) -> u64 {
    assert!(bytes.len() >= 16, "record {lsn} of {} bytes", bytes.len());
    assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()), lsn, "record {lsn} holds another LSN");
    let gen = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    assert_eq!(bytes, rec(lsn, gen), "record {lsn} (generation {gen}) is not what was written");
    gen
}

fn opts() -> LogOptions {
    small_log(Durability::Each)
}

fn dirs() -> Vec<tempfile::TempDir> {
    vec![kernel_flag_dir(), tmpfs_dir()]
}

#[test]
fn cursor_and_read_ref_return_what_the_copying_reads_do() {
    for d in dirs() {
        let log = Log::open(d.path(), opts()).unwrap();
        for lsn in 0..600 {
            log.append(&rec(lsn, 0)).unwrap();
        }
        assert!(log.segments().unwrap().len() > 3, "records span several segments");
        let mut c = log.cursor(0);
        let mut n = 0;
        while let Some(e) = c.next() {
            let e = e.unwrap();
            assert_eq!(e.lsn, n);
            assert_eq!(e.bytes, rec(n, 0));
            n += 1;
        }
        assert_eq!(n, 600);
        assert_eq!(c.position(), 600);
        let sealed_end = log.segments().unwrap().last().unwrap().first_lsn;
        for lsn in (0..600).step_by(7) {
            let r = log.read_ref(lsn).unwrap();
            assert_eq!(&*r, &log.read(lsn).unwrap()[..]);
            assert_eq!(r.lsn(), lsn);
            // Lent from a mapping in sealed segment files; copied in the tail and in
            // the single-file layout's slots.
            assert_eq!(r.is_mapped(), lsn < sealed_end && !single_file(), "record {lsn}");
            assert_eq!(log.read_with(lsn, |b| b.len()).unwrap(), rec(lsn, 0).len());
        }
        let mut c = log.cursor_range(100, 110);
        let got: Vec<u64> = std::iter::from_fn(|| c.next_ref()).map(|r| r.unwrap().lsn()).collect();
        assert_eq!(got, (100..110).collect::<Vec<_>>());
        // Bad input: what the copying read says.
        let e = log.read_ref(600).unwrap_err().to_string();
        assert!(e.contains("LSN 600 is not in the log"), "{e}");
    }
}

#[test]
fn read_batch_fills_the_callers_buffer() {
    let d = tmpfs_dir();
    let log = Log::open(d.path(), opts()).unwrap();
    for lsn in 0..300 {
        log.append(&rec(lsn, 0)).unwrap();
    }
    let mut buf = Vec::with_capacity(8 << 10);
    let mut spans = Vec::new();
    let mut next = 0;
    let mut batches = 0;
    while log.read_batch(next, &mut buf, &mut spans).unwrap() > 0 {
        assert!(buf.len() <= 8 << 10 || spans.len() == 1, "a batch stays in the buffer");
        assert_eq!(buf.capacity(), 8 << 10, "no allocation: the caller's buffer is reused");
        for (lsn, r) in &spans {
            assert_eq!(*lsn, next);
            assert_eq!(&buf[r.clone()], rec(next, 0));
            next += 1;
        }
        batches += 1;
    }
    assert_eq!(next, 300);
    assert!(batches > 10 && batches < 300, "{batches} batches of many records each");
}

/// What a borrower holds stays as it was: through a truncation into the sealed
/// segment it lies in, new records appended at its LSNs, a purge of its segment.
/// A cursor made before the truncation does not show the dropped records' bytes for
/// the new ones.
#[test]
fn borrowed_records_stay_unchanged_through_truncation_appends_and_purge() {
    for d in dirs() {
        let log = Log::open(d.path(), opts()).unwrap();
        for lsn in 0..400 {
            log.append(&rec(lsn, 0)).unwrap();
        }
        let segs = log.segments().unwrap();
        let cut = segs[2].first_lsn + 5; // inside the third (sealed) segment
        let held: Vec<RecordRef> = (cut - 3..cut + 40).map(|l| log.read_ref(l).unwrap()).collect();
        let early: Vec<RecordRef> = (0..20).map(|l| log.read_ref(l).unwrap()).collect();
        let mut old_cursor = log.cursor(cut);
        assert_eq!(old_cursor.next().unwrap().unwrap().bytes, rec(cut, 0));

        log.truncate_from(cut).unwrap();
        for lsn in cut..cut + 200 {
            log.append(&rec(lsn, 1)).unwrap();
        }
        log.purge_before(log.segments().unwrap()[2].first_lsn).unwrap();
        assert!(log.first_lsn() > 19, "the early records' segments are purged");

        for r in held.iter().chain(&early) {
            assert_eq!(gen_of(r.lsn(), r), 0, "a held record changed");
        }
        // The old cursor goes on from cut+1: generation 1 now, never the dropped bytes.
        let mut n = 0;
        while let Some(e) = old_cursor.next() {
            let e = e.unwrap();
            assert_eq!(gen_of(e.lsn, e.bytes), 1, "record {} after the cut", e.lsn);
            n += 1;
        }
        assert_eq!(n, 199);
        for lsn in cut - 3..cut + 200 {
            let want = if lsn < cut { 0 } else { 1 };
            assert_eq!(gen_of(lsn, &log.read_ref(lsn).unwrap()), want);
            assert_eq!(log.read(lsn).unwrap(), rec(lsn, want));
        }
        drop((log, old_cursor)); // a cursor keeps its log open, as an iterator does
                                 // And the log a restart finds is the new one.
        let log = Log::open(d.path(), opts()).unwrap();
        let mut c = log.cursor(cut - 3);
        while let Some(e) = c.next() {
            let e = e.unwrap();
            assert_eq!(gen_of(e.lsn, e.bytes), if e.lsn < cut { 0 } else { 1 });
        }
        assert_eq!(c.position(), cut + 200);
    }
}

/// A reader of another process's log (a read-only open) lends from sealed segments
/// too, and a truncation by the writer into a segment it has mapped changes nothing
/// it holds; after a refresh it reads the writer's new records.
#[test]
fn a_read_only_reader_keeps_its_records_through_the_writers_truncation() {
    let d = tmpfs_dir();
    let log = Log::open(d.path(), opts()).unwrap();
    for lsn in 0..400 {
        log.append(&rec(lsn, 0)).unwrap();
    }
    let reader = Log::open_read_only(d.path(), opts()).unwrap();
    let cut = log.segments().unwrap()[1].first_lsn + 2;
    let held: Vec<RecordRef> = (cut - 2..cut + 30).map(|l| reader.read_ref(l).unwrap()).collect();
    assert_eq!(held[0].is_mapped(), !single_file());
    log.truncate_from(cut).unwrap();
    for lsn in cut..cut + 300 {
        log.append(&rec(lsn, 1)).unwrap();
    }
    for r in &held {
        assert_eq!(gen_of(r.lsn(), r), 0);
    }
    reader.refresh().unwrap();
    let mut c = reader.cursor(cut - 2);
    while let Some(e) = c.next() {
        let e = e.unwrap();
        assert_eq!(gen_of(e.lsn, e.bytes), if e.lsn < cut { 0 } else { 1 }, "record {}", e.lsn);
    }
    assert_eq!(c.position(), reader.durable_lsn());
    assert!(reader.durable_lsn() > cut + 100);
}

/// Readers lending records while a writer appends, seals, truncates into sealed
/// segments and purges: every record read is a whole record of its LSN, every held
/// record stays as it was read, and each cursor's LSNs go up one at a time.
#[test]
fn stress_borrowers_against_a_writer_that_seals_truncates_and_purges() {
    let d = tmpfs_dir();
    let log = Log::open(d.path(), opts()).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let reads = std::sync::atomic::AtomicU64::new(0);
    let mapped = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (log, stop, reads, mapped) = (&log, &stop, &reads, &mapped);
            s.spawn(move || {
                let mut held: Vec<(RecordRef, Vec<u8>)> = Vec::new();
                let mut round = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    round += 1;
                    let mut c = log.cursor(log.first_lsn());
                    let mut last = None;
                    while let Some(e) = c.next_ref() {
                        let r = match e {
                            Ok(r) => r,
                            Err(e) => {
                                // Only a purge of what the cursor was about to read; a cut
                                // under it ends it (`None`), never an error.
                                let lsn = c.position() - 1;
                                assert!(e.to_string().contains("is not in the log"), "record {lsn}: {e}");
                                break;
                            }
                        };
                        gen_of(r.lsn(), &r);
                        if let Some(l) = last {
                            assert_eq!(r.lsn(), l + 1);
                        }
                        last = Some(r.lsn());
                        reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        mapped.fetch_add(r.is_mapped() as u64, std::sync::atomic::Ordering::Relaxed);
                        if (r.lsn() + round + t) % 97 == 0 {
                            let copy = r.to_vec();
                            held.push((r, copy));
                        }
                    }
                    for (r, copy) in &held {
                        assert_eq!(&r[..], &copy[..], "held record {} changed", r.lsn());
                    }
                    if held.len() > 2000 {
                        held.drain(..1000);
                    }
                }
            });
        }
        let mut gen = 0;
        for step in 0..400u64 {
            let next = log.next_lsn();
            for lsn in next..next + 150 {
                log.append(&rec(lsn, gen)).unwrap();
            }
            if step % 3 == 2 {
                // Into a sealed segment, when there is one.
                let segs = log.segments().unwrap();
                if segs.len() > 2 {
                    gen += 1;
                    log.truncate_from(segs[segs.len() - 2].first_lsn + 3).unwrap();
                }
            }
            if step % 5 == 4 {
                let segs = log.segments().unwrap();
                if segs.len() > 4 {
                    log.purge_before(segs[2].first_lsn).unwrap();
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert!(reads.into_inner() > 1000, "the readers read while the writer worked");
    // Lent from mappings in segment files; always copied in the single-file layout.
    assert_eq!(mapped.into_inner() > 0, !single_file());
}

/// A tailer lends records too (`Tailer::next_ref_timeout`, what `dynadax log tail`
/// uses): the same records as `next_timeout`, mapped where they are in a sealed
/// segment file, then it waits at the end and takes what is appended next.
#[test]
fn a_tailer_lends_the_records_it_follows() {
    for d in dirs() {
        let log = Log::open(d.path(), opts()).unwrap();
        for lsn in 0..400 {
            log.append(&rec(lsn, 0)).unwrap();
        }
        let sealed_end = log.segments().unwrap().last().unwrap().first_lsn;
        assert!(sealed_end > 0);
        let (mut lending, mut copying) = (log.tail(0), log.tail(0));
        for lsn in 0..400 {
            let r = lending.next_ref_timeout(Some(std::time::Duration::ZERO)).unwrap().expect("durable");
            let (l, b) = copying.next_timeout(Some(std::time::Duration::ZERO)).unwrap().expect("durable");
            assert_eq!((r.lsn(), &*r), (l, &b[..]));
            assert_eq!(r.lsn(), lsn);
            if !single_file() {
                assert_eq!(r.is_mapped(), lsn < sealed_end, "LSN {lsn}");
            }
        }
        assert!(lending.next_ref_timeout(Some(std::time::Duration::from_millis(5))).unwrap().is_none());
        let writer = log.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            writer.append(&rec(400, 0)).unwrap();
        });
        let r = lending.next_ref_timeout(Some(std::time::Duration::from_secs(10))).unwrap().expect("woken");
        assert_eq!((r.lsn(), gen_of(400, &r)), (400, 0));
        t.join().unwrap();
    }
}
