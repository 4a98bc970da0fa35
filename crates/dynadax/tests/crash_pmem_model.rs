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

/// Recovers `img` as `Log::open` would and checks the invariants; returns how many
/// records were recovered.
fn check_image(img: &[u8], base: u64, written: &[Vec<u8>], acked: usize) -> usize {
    let index = recover_tail_image(img, base, 1 << 16).unwrap_or_else(|why| panic!("a crash image was refused: {why}"));
    assert!(index.len() >= acked, "lost acknowledged records: {} < {acked}", index.len());
    assert!(index.len() <= written.len(), "more records than were written");
    for (i, &off) in index.iter().enumerate() {
        let off = off as usize;
        let len = u32::from_le_bytes(img[off..off + 4].try_into().unwrap()) as usize;
        assert_eq!(
            &img[off + FRAME_HEADER..off + FRAME_HEADER + len],
            &written[i][..],
            "record {i} is not what was written"
        );
    }
    index.len()
}

/// Runs `records` through the real write routine, acknowledging after each covering
/// persist (every `group`-th record: group commit), and checks every crash image at
/// every point between a store and its persist.
fn run(records: &[Vec<u8>], group: usize, base: u64) -> (usize, usize) {
    let total: usize = records.iter().map(|r| dynadax::log::frame_len(r.len())).sum();
    let media = SimPmem::new(HEADER_LEN + total + 256, base);
    let mut scratch = Vec::new();
    let (mut off, mut acked, mut unpersisted_from) = (HEADER_LEN as u64, 0usize, HEADER_LEN as u64);
    let mut images = 0;
    for (i, r) in records.iter().enumerate() {
        // The frame claims what was acknowledged when it was written.
        off += put_record(&media, off, base + i as u64, base + acked as u64, r, &mut scratch).unwrap();
        // Crash now: the stores since the last persist may land in any combination.
        let n = media.pending.borrow().len();
        if n <= 12 {
            for mask in 0u32..1 << n {
                check_image(&media.image(&|k| mask >> k & 1 == 1), base, &records[..=i], acked);
                images += 1;
            }
        } else {
            let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ i as u64;
            for _ in 0..256 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let seed = x;
                check_image(
                    &media.image(&|k| (seed.rotate_left(k as u32 % 64) ^ k as u64) & 1 == 1),
                    base,
                    &records[..=i],
                    acked,
                );
                images += 1;
            }
        }
        if (i + 1) % group == 0 || i + 1 == records.len() {
            media.persist(unpersisted_from, off - unpersisted_from).unwrap();
            unpersisted_from = off;
            acked = i + 1;
            assert!(media.pending.borrow().is_empty(), "persist left stores pending");
            assert_eq!(check_image(&media.image(&|_| false), base, records, acked), acked);
        }
    }
    (acked, images)
}

#[test]
fn every_crash_image_of_single_appends_recovers() {
    let records: Vec<Vec<u8>> = (0..40).map(|i| vec![i as u8 ^ 0x5a; 1 + (i * 13) % 61]).collect();
    let (acked, images) = run(&records, 1, 7);
    assert_eq!(acked, 40);
    assert!(images > 1000, "too few crash images explored: {images}");
}

#[test]
fn every_crash_image_of_group_commits_recovers() {
    let records: Vec<Vec<u8>> = (0..30).map(|i| vec![0xff - i as u8; 1 + (i * 29) % 40]).collect();
    let (acked, images) = run(&records, 4, 1000);
    assert_eq!(acked, 30);
    assert!(images > 1000, "{images}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_records_and_groups(records in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..120), 1..12), group in 1usize..5, base in 0u64..1 << 50) {
        let (acked, _) = run(&records, group, base);
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
        assert_eq!(check_image(&media.image(&|_| false), 3, &records, i + 1), i + 1);
    }
}
