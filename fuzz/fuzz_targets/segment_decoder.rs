//! Fuzzes the segment decoder, the code every recovery runs over bytes that may be
//! torn or corrupt:
//! 1. arbitrary bytes as a segment image: decoding never panics, and whatever the
//!    scan accepts is self-consistent (records in order, inside the image, each
//!    decoding again to the same length at its LSN);
//! 2. a well-formed image built from the input, then damaged at an input-chosen
//!    byte: every record the scan returns, in its prefix or found past the damage by
//!    the resynchronising search, is exactly the one written at that LSN.
#![no_main]

use dynadax::log::{decode_record, encode_record, frame_len, scan_bytes, Decoded, Scan, SegmentHeader, FRAME_HEADER, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    // 1. Arbitrary image.
    let _ = SegmentHeader::decode(data);
    if data.len() >= HEADER_LEN {
        let scan = scan_bytes(data, 7, MAX);
        let mut prev_end = HEADER_LEN as u64;
        for (i, &off) in scan.index.iter().enumerate() {
            let off = off as usize;
            assert_eq!(off as u64, prev_end, "records are contiguous");
            match decode_record(data, off, 7 + i as u64, MAX) {
                Decoded::Record { len, .. } => {
                    assert!(off + frame_len(len) <= data.len());
                    prev_end = (off + frame_len(len)) as u64;
                }
                other => panic!("accepted record {i} does not decode again: {other:?}"),
            }
        }
        assert_eq!(scan.end, prev_end);
        for (lsn, off) in found(&scan, 7) {
            assert!(matches!(decode_record(data, off, lsn, MAX), Decoded::Record { .. }), "resync record {lsn}");
        }
    }

    // 2. Records cut from the input, encoded, one byte damaged.
    if data.len() < 3 {
        return;
    }
    let (flip_at, rest) = (u16::from_le_bytes([data[0], data[1]]) as usize, &data[2..]);
    let records: Vec<&[u8]> = rest.split(|&b| b == 0xA5).filter(|r| !r.is_empty()).take(32).collect();
    let total: usize = records.iter().map(|r| frame_len(r.len())).sum();
    let mut img = vec![0u8; HEADER_LEN + total + 8];
    let header = SegmentHeader { base_lsn: 100, created_ns: 0, capacity: img.len() as u64 }.encode();
    img[..HEADER_LEN].copy_from_slice(&header);
    let mut at = HEADER_LEN;
    for (i, r) in records.iter().enumerate() {
        let n = frame_len(r.len());
        encode_record(100 + i as u64, 100 + i as u64, r, &mut img[at..at + n]);
        at += n;
    }
    let clean = scan_bytes(&img, 100, MAX);
    assert_eq!(clean.index.len(), records.len());
    assert!(clean.gaps.is_empty());
    let i = HEADER_LEN + flip_at % (total + 8);
    img[i] ^= 1 << (data[0] % 8);
    let scan = scan_bytes(&img, 100, MAX);
    for (lsn, off) in found(&scan, 100) {
        let k = (lsn - 100) as usize;
        let len = u32::from_le_bytes(img[off..off + 4].try_into().unwrap()) as usize;
        assert_eq!(&img[off + FRAME_HEADER..off + FRAME_HEADER + len], records[k], "record {k} changed but was accepted");
    }
});

/// Every record a scan returns, prefix and resynchronised runs: (LSN, offset).
fn found(scan: &Scan, base: u64) -> Vec<(u64, usize)> {
    let mut out: Vec<(u64, usize)> = scan.index.iter().enumerate().map(|(i, &o)| (base + i as u64, o as usize)).collect();
    for g in &scan.gaps {
        if let Some(r) = &g.run {
            out.extend(r.offsets.iter().enumerate().map(|(i, &o)| (r.first_lsn + i as u64, o as usize)));
        }
    }
    out
}
