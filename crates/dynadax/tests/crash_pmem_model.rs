//! Crash consistency under the persistent-memory failure model: a store that has not
//! been persisted (flushed and fenced) may or may not reach the media, in 8-byte
//! pieces, in any combination. A simulated media records exactly that; the log's own
//! write routine (`put_record`) writes to it with the log's acknowledgement rule
//! (acknowledge after a covering `persist`); at chosen crash points every possible
//! image (all subsets of the unpersisted pieces, or a large random sample when there
//! are too many) is recovered with the scan `Log::open` uses. In every image:
//! every acknowledged record is present and intact, and nothing else is returned but
//! records that were really written, in order (no garbage, no gap).

use dynadax::log::{
    put_record, put_record_persisted, recover_tail_image, Media, SegmentHeader, FRAME_HEADER, HEADER_LEN,
};
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::BTreeMap;

const PIECE: u64 = 8;

/// Media in which unpersisted 8-byte pieces are kept apart from the durable image.
struct SimPmem {
    durable: RefCell<Vec<u8>>,
    /// Piece index -> its 8 bytes as last stored, not yet persisted.
    pending: RefCell<BTreeMap<u64, [u8; 8]>>,
}

impl SimPmem {
    fn new(cap: usize, base: u64) -> SimPmem {
        let mut img = vec![0u8; cap];
        img[..HEADER_LEN]
            .copy_from_slice(&SegmentHeader { base_lsn: base, created_ns: 1, capacity: cap as u64 }.encode());
        SimPmem { durable: RefCell::new(img), pending: RefCell::new(BTreeMap::new()) }
    }

    /// The image if exactly the pieces selected by `keep` (a bit per pending piece,
    /// in order) reach the media.
    fn image(&self, keep: &dyn Fn(usize) -> bool) -> Vec<u8> {
        let mut img = self.durable.borrow().clone();
        for (i, (piece, bytes)) in self.pending.borrow().iter().enumerate() {
            if keep(i) {
                let at = (piece * PIECE) as usize;
                img[at..at + 8].copy_from_slice(bytes);
            }
        }
        img
    }
}

impl Media for SimPmem {
    fn store(&self, off: u64, data: &[u8]) -> dynadax::Result<()> {
        let mut pending = self.pending.borrow_mut();
        let durable = self.durable.borrow();
        for (k, b) in data.iter().enumerate() {
            let at = off + k as u64;
            let piece = at / PIECE;
            let cur = pending.entry(piece).or_insert_with(|| {
                let s = (piece * PIECE) as usize;
                durable[s..s + 8].try_into().unwrap()
            });
            cur[(at % PIECE) as usize] = *b;
        }
        Ok(())
    }

    fn persist(&self, off: u64, len: u64) -> dynadax::Result<()> {
        let mut pending = self.pending.borrow_mut();
        let mut durable = self.durable.borrow_mut();
        let (first, last) = (off / PIECE, (off + len).div_ceil(PIECE));
        let done: Vec<u64> = pending.range(first..last).map(|(p, _)| *p).collect();
        for p in done {
            let bytes = pending.remove(&p).unwrap();
            let at = (p * PIECE) as usize;
            durable[at..at + 8].copy_from_slice(&bytes);
        }
        Ok(())
    }
}

/// Recovers `img` as `Log::open` would (the tail-segment rule: a torn tail is cut,
/// damage refused) and checks the invariants; the number of records recovered, or
/// what is wrong.
fn check_image(img: &[u8], base: u64, written: &[Vec<u8>], acked: usize) -> Result<usize, String> {
    let index = recover_tail_image(img, base, 1 << 16).map_err(|why| format!("a crash image was refused: {why}"))?;
    if index.len() < acked {
        return Err(format!("lost acknowledged records: {} < {acked}", index.len()));
    }
    if index.len() > written.len() {
        return Err("more records than were written".into());
    }
    for (i, &off) in index.iter().enumerate() {
        let off = off as usize;
        let len = u32::from_le_bytes(img[off..off + 4].try_into().unwrap()) as usize;
        if img[off + FRAME_HEADER..off + FRAME_HEADER + len] != written[i][..] {
            return Err(format!("record {i} is not what was written"));
        }
    }
    Ok(index.len())
}

/// How the writer under test orders its acknowledgement and its persist.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// The log's rule: acknowledge after the persist that covers the records.
    PersistThenAck,
    /// Deliberately broken: acknowledge as soon as the frame is stored, persist
    /// later. The model must catch it.
    AckThenPersist,
}

/// Crash images explored, over every test of this file (`target/crash-model.txt`).
static IMAGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs `records` through the real write routine, acknowledging (per `order`) around
/// each covering persist (every `group`-th record: group commit, or a batch append),
/// and checks every crash image at every point between a store and its persist: all
/// of them when at most 14 pieces are pending, else `sample` random ones. The
/// number acknowledged and of images checked, or the first problem found.
fn run(records: &[Vec<u8>], group: usize, base: u64, order: Order, sample: usize) -> Result<(usize, u64), String> {
    let total: usize = records.iter().map(|r| dynadax::log::frame_len(r.len())).sum();
    let media = SimPmem::new(HEADER_LEN + total + 256, base);
    let mut scratch = Vec::new();
    let (mut off, mut acked, mut unpersisted_from) = (HEADER_LEN as u64, 0usize, HEADER_LEN as u64);
    let mut images = 0u64;
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ base;
    for (i, r) in records.iter().enumerate() {
        // The frame claims what was acknowledged (durable) when it was written.
        let durable = if order == Order::PersistThenAck { acked } else { acked.saturating_sub(group) };
        off += put_record(&media, off, base + i as u64, base + durable as u64, r, &mut scratch).unwrap();
        if order == Order::AckThenPersist {
            acked = i + 1;
        }
        // Crash now: the stores since the last persist may land in any combination.
        let n = media.pending.borrow().len();
        if n <= 14 {
            for mask in 0u32..1 << n {
                check_image(&media.image(&|k| mask >> k & 1 == 1), base, &records[..=i], acked)?;
                images += 1;
            }
        } else {
            for _ in 0..sample {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let seed = x;
                check_image(
                    &media.image(&|k| (seed.rotate_left(k as u32 % 64) ^ (k as u64 >> 6)) & 1 == 1),
                    base,
                    &records[..=i],
                    acked,
                )?;
                images += 1;
            }
        }
        if (i + 1) % group == 0 || i + 1 == records.len() {
            media.persist(unpersisted_from, off - unpersisted_from).unwrap();
            unpersisted_from = off;
            acked = i + 1;
            assert!(media.pending.borrow().is_empty(), "persist left stores pending");
            if check_image(&media.image(&|_| false), base, records, acked)? != acked {
                return Err("a persisted image holds more than was written".into());
            }
            images += 1;
        }
    }
    IMAGES.fetch_add(images, std::sync::atomic::Ordering::Relaxed);
    Ok((acked, images))
}

fn sizes(n: usize, seed: usize, max: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![(i ^ seed) as u8 ^ 0x5a; 1 + (i * 13 + seed) % max]).collect()
}

#[test]
fn every_crash_image_of_single_appends_recovers() {
    let mut total = 0;
    for seed in 0..12 {
        let records = sizes(40, seed, 61 + seed * 7);
        let (acked, images) = run(&records, 1, 7 + seed as u64, Order::PersistThenAck, 512).unwrap();
        assert_eq!(acked, 40);
        total += images;
    }
    assert!(total > 150_000, "too few crash images explored: {total}");
}

/// Group commit and batch appends: a window of records persisted together, whose
/// 8-byte pieces reach the media in any subset (a later frame whole, an earlier one
/// torn): every such image is a torn tail, cut, never refused as damage.
#[test]
fn every_crash_image_of_group_commits_and_batches_recovers() {
    let mut total = 0;
    for (group, n, max) in [(2, 40, 40), (3, 45, 30), (4, 40, 40), (8, 48, 25), (16, 48, 20)] {
        for seed in 0..3 {
            let records = sizes(n, group + seed, max);
            let (acked, images) = run(&records, group, 1000 + group as u64, Order::PersistThenAck, 2048).unwrap();
            assert_eq!(acked, n);
            total += images;
        }
    }
    assert!(total > 600_000, "{total}");
}

/// The model is not blind: a writer that acknowledges before it persists is caught.
#[test]
fn a_broken_persist_order_is_caught() {
    for group in [1, 2, 4] {
        let records = sizes(40, group, 50);
        let r = run(&records, group, 9, Order::AckThenPersist, 256);
        assert!(r.is_err(), "group {group}: acknowledging before persisting went unnoticed");
        assert!(r.unwrap_err().contains("lost acknowledged records"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_records_and_groups(records in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..120), 1..12), group in 1usize..5, base in 0u64..1 << 50) {
        let (acked, _) = run(&records, group, base, Order::PersistThenAck, 256).map_err(TestCaseError::fail)?;
        prop_assert_eq!(acked, records.len());
    }
}

/// The one-step store-and-persist path of `Durability::Each`: every image at every
/// point recovers all acknowledged records (each is durable when the call returns).
#[test]
fn store_persist_path_is_durable_on_return() {
    let records: Vec<Vec<u8>> = (0..50).map(|i| vec![i as u8; 1 + (i * 17) % 300]).collect();
    let total: usize = records.iter().map(|r| dynadax::log::frame_len(r.len())).sum();
    let media = SimPmem::new(HEADER_LEN + total + 64, 3);
    let mut scratch = Vec::new();
    let mut off = HEADER_LEN as u64;
    for (i, r) in records.iter().enumerate() {
        off += put_record_persisted(&media, off, 3 + i as u64, 3 + i as u64, r, &mut scratch).unwrap();
        assert!(media.pending.borrow().is_empty(), "record {i} acknowledged with stores still pending");
        assert_eq!(check_image(&media.image(&|_| false), 3, &records, i + 1), Ok(i + 1));
    }
}

/// Runs last (by name, among this file's tests run in one process it is only a
/// report): writes the count of images checked so far for `scripts/test` to print.
#[test]
fn zz_report_the_crash_image_count() {
    // The other tests run in parallel: wait for the two big ones to add theirs.
    let t = std::time::Instant::now();
    while IMAGES.load(std::sync::atomic::Ordering::Relaxed) < 700_000 && t.elapsed().as_secs() < 600 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let n = IMAGES.load(std::sync::atomic::Ordering::Relaxed);
    let line = format!(
        "crash model (persistent memory, 8-byte pieces in any subset): {n} crash images of single appends, group \
         commits and batches checked, 0 acknowledged records lost, 0 garbage; a writer acknowledging before it \
         persists is caught"
    );
    eprintln!("{line}");
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../crash-model.txt"),
        format!("{line}\n"),
    );
    assert!(n >= 700_000, "{n}");
}
