//! The on-disk format of log segments: names, the segment header, record frames.
//! Pure functions over byte slices, so the decoder can be fuzzed and property-tested.
//! The same layout is written down in `docs/log-format.md`.
//!
//! ```text
//! segment file  {base_lsn:020}.dlog   (sorts by the first LSN it holds)
//!
//! header, 64 bytes at offset 0, little-endian:
//!   0  magic       8  b"DYNXLOG\0"
//!   8  version     4  2 (segments of version 1 are still read)
//!  12  header_len  4  64
//!  16  base_lsn    8  LSN of the first record in this segment
//!  24  created_ns  8  creation time, ns since the Unix epoch
//!  32  capacity    8  bytes preallocated for the segment when it was the tail
//!  40  reserved   20  zero
//!  60  crc         4  CRC32C of bytes 0..60
//!
//! records, from offset 64, each starting on an 8-byte boundary (version 2):
//!   0  len         4  payload length, 1..=max (0 marks the end: preallocated space is zero)
//!   4  crc         4  CRC32C of lsn ++ len ++ acked ++ payload (LE bytes)
//!   8  lsn         8  this record's LSN: base_lsn + its index in the segment
//!  16  acked       8  every LSN below this was acknowledged durable when the frame was written
//!  24  payload   len
//!      padding    0..7 zero bytes to the next 8-byte boundary
//! (version 1 frames have no `acked`: a 16-byte header, the CRC over lsn ++ len ++ payload)
//! ```
//!
//! The single-file layout keeps every segment in one data file, `log.data`, as
//! fixed-size slots after a superblock, each slot laid out exactly as a segment file
//! (header at its start, records after it; a slot whose magic, its first 8 bytes, is
//! zero is free):
//!
//! ```text
//! log.data superblock, one page at offset 0, little-endian:
//!   0  magic       8  b"DYNXDAT\0"
//!   8  version     4  1
//!  12  reserved    4  zero
//!  16  slot        8  bytes per slot (a multiple of 4096): the segment size
//!  24  slots       8  number of slots; slot i starts at 4096 + i * slot
//!  32  crc         4  CRC32C of bytes 0..32
//! ```
//!
//! A record is valid only if its length is in range, it fits in the file, its LSN is
//! the next expected one and its CRC matches: a torn write (any subset of its 8-byte
//! pieces reaching the media) fails at least one of these checks, barring a CRC
//! collision. `acked` is what tells a torn write from damage (see `recovery.rs`): a
//! frame that claims LSN `k` was acknowledged proves that a bad frame `k` was once
//! whole and durable.

use std::path::Path;

/// File name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".dlog";
/// First bytes of every segment.
pub const MAGIC: [u8; 8] = *b"DYNXLOG\0";
/// Format version written.
pub const VERSION: u32 = 2;
/// The earlier version, still read (its frames carry no `acked`).
pub const VERSION_1: u32 = 1;
/// Header size; records start here.
pub const HEADER_LEN: usize = 64;
/// Offset of the header's CRC (it covers the bytes before it).
const HEADER_CRC_AT: usize = 60;
/// Size of a record frame before its payload (the version written).
pub const FRAME_HEADER: usize = 24;
/// Records start on multiples of this.
pub const ALIGN: usize = 8;

/// First bytes of a single-file log's data file.
pub const DATA_MAGIC: [u8; 8] = *b"DYNXDAT\0";
/// The data file's superblock size: slots start here (page-aligned, so each slot is
/// a range whose mode can be switched).
pub const SUPER_LEN: u64 = 4096;

/// The superblock of a single-file log's data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSuper {
    /// Bytes per slot.
    pub slot: u64,
    /// Number of slots.
    pub slots: u64,
}

impl DataSuper {
    /// The superblock's bytes (the rest of its page is zero).
    pub fn encode(&self) -> [u8; 36] {
        let mut b = [0u8; 36];
        b[0..8].copy_from_slice(&DATA_MAGIC);
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        b[16..24].copy_from_slice(&self.slot.to_le_bytes());
        b[24..32].copy_from_slice(&self.slots.to_le_bytes());
        let crc = crc32c::crc32c(&b[..32]);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks a superblock; the error says what is wrong.
    pub fn decode(b: &[u8]) -> Result<DataSuper, String> {
        if b.len() < 36 {
            return Err(format!("superblock is {} bytes, expected 36", b.len()));
        }
        if b[0..8] != DATA_MAGIC {
            return Err("bad magic: not a dynadax log data file".into());
        }
        let (stored, crc) = (u32_at(b, 32), crc32c::crc32c(&b[..32]));
        if stored != crc {
            return Err(format!("superblock checksum mismatch (stored {stored:#010x}, computed {crc:#010x})"));
        }
        if u32_at(b, 8) != 1 {
            return Err(format!("data file version {} is not supported (1)", u32_at(b, 8)));
        }
        let s = DataSuper { slot: u64_at(b, 16), slots: u64_at(b, 24) };
        if s.slot < 4096 || s.slot % 4096 != 0 || s.slots < 2 {
            return Err(format!("superblock says {} slots of {} bytes: not a valid layout", s.slots, s.slot));
        }
        Ok(s)
    }

    /// Where slot `i` starts in the data file.
    pub fn offset(&self, i: u64) -> u64 {
        SUPER_LEN + i * self.slot
    }

    /// The data file's size.
    pub fn file_len(&self) -> u64 {
        self.offset(self.slots)
    }
}

/// A segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// LSN of the segment's first record.
    pub base_lsn: u64,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_ns: u64,
    /// Preallocated size when it was created.
    pub capacity: u64,
}

impl SegmentHeader {
    /// The 64 header bytes, of the version written ([`VERSION`]).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        self.encode_version(VERSION)
    }

    /// The header bytes of a segment of format `version` (tests make version-1
    /// segments with it).
    pub fn encode_version(&self, version: u32) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&version.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.base_lsn.to_le_bytes());
        b[24..32].copy_from_slice(&self.created_ns.to_le_bytes());
        b[32..40].copy_from_slice(&self.capacity.to_le_bytes());
        let crc = crc32c::crc32c(&b[..HEADER_CRC_AT]);
        b[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks a header; the error says what is wrong.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, String> {
        Self::decode_version(b).map(|(h, _)| h)
    }

    /// Parses and checks a header, with the segment's format version.
    pub fn decode_version(b: &[u8]) -> Result<(SegmentHeader, Frames), String> {
        if b.len() < HEADER_LEN {
            return Err(format!("header is {} bytes, expected {HEADER_LEN}", b.len()));
        }
        if b[0..8] != MAGIC {
            return Err("bad magic: not a dynadax log segment".into());
        }
        let stored = u32_at(b, HEADER_CRC_AT);
        let crc = crc32c::crc32c(&b[..HEADER_CRC_AT]);
        if stored != crc {
            return Err(format!("header checksum mismatch (stored {stored:#010x}, computed {crc:#010x})"));
        }
        let frames = match u32_at(b, 8) {
            VERSION => Frames::V2,
            VERSION_1 => Frames::V1,
            v => return Err(format!("format version {v} is not a supported version ({VERSION_1} or {VERSION})")),
        };
        let h = SegmentHeader { base_lsn: u64_at(b, 16), created_ns: u64_at(b, 24), capacity: u64_at(b, 32) };
        Ok((h, frames))
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The record framing of a segment, by its format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frames {
    /// Version 1: 16-byte frame headers, no `acked`.
    V1,
    /// Version 2 (written): 24-byte frame headers with `acked`.
    V2,
}

impl Frames {
    /// Bytes before the payload.
    pub fn header(self) -> usize {
        match self {
            Frames::V1 => 16,
            Frames::V2 => FRAME_HEADER,
        }
    }

    /// Bytes a record of `len` payload bytes takes, padding included.
    pub fn frame_len(self, len: usize) -> usize {
        (self.header() + len).div_ceil(ALIGN) * ALIGN
    }

    /// Decodes the record at `at` in `buf` (which holds the file up to `buf.len()`),
    /// expecting LSN `lsn` and at most `max` bytes.
    pub fn decode(self, buf: &[u8], at: usize, lsn: u64, max: usize) -> Decoded {
        let fh = self.header();
        if at + fh > buf.len() {
            if buf.len() > at && buf[at..].iter().all(|&b| b == 0) || buf.len() <= at {
                return Decoded::End;
            }
            return Decoded::Invalid(format!("truncated frame header ({} bytes left)", buf.len() - at));
        }
        let len = u32_at(buf, at) as usize;
        let crc = u32_at(buf, at + 4);
        let rec_lsn = u64_at(buf, at + 8);
        let acked = match self {
            Frames::V1 => None,
            Frames::V2 => Some(u64_at(buf, at + 16)),
        };
        if len == 0 {
            if buf[at..at + fh].iter().all(|&b| b == 0) {
                return Decoded::End;
            }
            return Decoded::Invalid("zero length with a non-zero header".into());
        }
        if at + self.frame_len(len) > buf.len() {
            return Decoded::Invalid(format!("record of {len} bytes runs past the end of the segment"));
        }
        if rec_lsn != lsn {
            return Decoded::Invalid(format!("LSN {rec_lsn} where {lsn} was expected"));
        }
        let payload = &buf[at + fh..at + fh + len];
        if crate::sys::crc32c_record(lsn, len as u32, acked, payload) != crc {
            return Decoded::Invalid("checksum mismatch".into());
        }
        if len > max {
            // Whole and checksummed: written by a writer with a larger limit, not torn.
            return Decoded::TooLarge { len };
        }
        Decoded::Record { len, acked: acked.unwrap_or(0) }
    }
}

/// Bytes a record of `len` payload bytes takes, padding included (format written).
pub fn frame_len(len: usize) -> usize {
    Frames::V2.frame_len(len)
}

/// Writes the frame of `payload` at LSN `lsn` into `out` (exactly `frame_len` bytes);
/// `acked` is the writer's durable LSN as it writes it (every LSN below is
/// acknowledged).
pub fn encode_record(lsn: u64, acked: u64, payload: &[u8], out: &mut [u8]) {
    let n = frame_len(payload.len());
    debug_assert_eq!(out.len(), n);
    let crc = crate::sys::crc32c_record(lsn, payload.len() as u32, Some(acked), payload);
    out[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out[8..16].copy_from_slice(&lsn.to_le_bytes());
    out[16..24].copy_from_slice(&acked.to_le_bytes());
    out[24..24 + payload.len()].copy_from_slice(payload);
    out[24 + payload.len()..].fill(0);
}

/// What is at a record position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A valid record: its payload is `buf[at+header .. at+header+len]`, the next
    /// record starts at `at + frame_len(len)`.
    Record {
        /// Payload length.
        len: usize,
        /// Every LSN below this was acknowledged when it was written (0 in version 1).
        acked: u64,
    },
    /// Zero length: the end of the written part of the segment.
    End,
    /// A whole, checksummed record longer than the limit asked for: a setting to
    /// raise, never damage to cut.
    TooLarge {
        /// Payload length.
        len: usize,
    },
    /// Not a valid record; the reason, for the report.
    Invalid(String),
}

/// Decodes the record at `at` in `buf` (format written), expecting LSN `lsn` and at
/// most `max` bytes.
pub fn decode_record(buf: &[u8], at: usize, lsn: u64, max: usize) -> Decoded {
    Frames::V2.decode(buf, at, lsn, max)
}

/// The name of the segment whose first LSN is `base`.
/// The index file of a sealed segment file: `{segment}.idx` beside it (see
/// [`SegmentIndex`]).
pub fn index_path(segment: &Path) -> std::path::PathBuf {
    let mut p = segment.as_os_str().to_owned();
    p.push(".idx");
    p.into()
}

/// The index file of the single-file layout's segment in the slot at byte `offset`
/// of the data file `data`: `{data}.{offset, 20 digits}.idx`, beside it.
pub fn slot_index_path(data: &Path, offset: u64) -> std::path::PathBuf {
    let mut p = data.as_os_str().to_owned();
    p.push(format!(".{offset:020}.idx"));
    p.into()
}

/// A sealed segment's record index, kept in `{segment}.idx` so that an open need not
/// scan the segment (`LogOptions::scan_sealed` false). It describes one incarnation
/// of one segment file: its base LSN and creation time (from the header), its record
/// count and the end of its records, which is the sealed file's length. Written once
/// after the seal, never changed; made durable before its rename, so a crash leaves
/// it whole or missing; one damaged fails its checksum and the segment is scanned
/// instead (and the index written again).
///
/// The head has its own checksum: an open reads only the head (what it needs to
/// place the segment's LSNs), so its cost does not grow with the log; the offsets
/// are read, and their checksum checked, when a record of the segment is first read.
///
/// ```text
///  0  magic      8  "DDXIDX02"
///  8  base_lsn   8
/// 16  created_ns 8
/// 24  records    8
/// 32  end        8  offset just past the last record (the file's length)
/// 40  max_len    4  longest payload
/// 44  head_crc   4  crc32c of bytes 0..44
/// 48  offsets    4 x records  each record's offset, in LSN order
///  .  crc32c     4  of every byte before it
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentIndex {
    /// The segment's base LSN (its header's).
    pub base_lsn: u64,
    /// Its creation time (its header's): which incarnation of the name this is.
    pub created_ns: u64,
    /// Offset just past its last record: the sealed file's length.
    pub end: u64,
    /// A bound on its longest payload (the frames' spacing, padding included).
    pub max_len: u32,
    /// Each record's offset, in LSN order.
    pub offsets: Vec<u32>,
}

/// The head of an index file: all an open needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHead {
    /// As in [`SegmentIndex`].
    pub base_lsn: u64,
    /// As in [`SegmentIndex`].
    pub created_ns: u64,
    /// Number of records.
    pub records: u64,
    /// As in [`SegmentIndex`].
    pub end: u64,
    /// As in [`SegmentIndex`].
    pub max_len: u32,
}

const INDEX_MAGIC: &[u8; 8] = b"DDXIDX02";
/// Bytes of an index file's head (its checksum included).
pub const INDEX_HEAD: usize = 48;

impl IndexHead {
    /// Parses and checks the head (the first [`INDEX_HEAD`] bytes of an index file).
    pub fn decode(b: &[u8]) -> Result<IndexHead, String> {
        if b.len() < INDEX_HEAD || &b[..8] != INDEX_MAGIC {
            return Err("not a segment index (of this version)".into());
        }
        if crc32c::crc32c(&b[..44]) != u32_at(b, 44) {
            return Err("checksum mismatch in its head".into());
        }
        Ok(IndexHead {
            base_lsn: u64_at(b, 8),
            created_ns: u64_at(b, 16),
            records: u64_at(b, 24),
            end: u64_at(b, 32),
            max_len: u32_at(b, 40),
        })
    }

    /// The length of the whole index file this head describes.
    pub fn file_len(&self) -> Option<u64> {
        self.records.checked_mul(4)?.checked_add((INDEX_HEAD + 4) as u64)
    }
}

impl SegmentIndex {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(INDEX_HEAD + 4 * self.offsets.len() + 4);
        b.extend_from_slice(INDEX_MAGIC);
        for v in [self.base_lsn, self.created_ns, self.offsets.len() as u64, self.end] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.max_len.to_le_bytes());
        let head_crc = crc32c::crc32c(&b);
        b.extend_from_slice(&head_crc.to_le_bytes());
        for o in &self.offsets {
            b.extend_from_slice(&o.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses an index file, checking its length and checksums; why not, if invalid.
    pub fn decode(b: &[u8]) -> Result<SegmentIndex, String> {
        let head = IndexHead::decode(b)?;
        if head.file_len() != Some(b.len() as u64) {
            return Err(format!("{} bytes for {} records", b.len(), head.records));
        }
        let body = b.len() - 4;
        if crc32c::crc32c(&b[..body]) != u32_at(b, body) {
            return Err("checksum mismatch".into());
        }
        let offsets =
            b[INDEX_HEAD..body].chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4"))).collect();
        Ok(SegmentIndex {
            base_lsn: head.base_lsn,
            created_ns: head.created_ns,
            end: head.end,
            max_len: head.max_len,
            offsets,
        })
    }
}

pub fn segment_name(base: u64) -> String {
    format!("{base:020}{SEGMENT_SUFFIX}")
}

/// The base LSN encoded in a segment's file name, if it is one.
pub fn parse_segment_name(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_segment_index_round_trips_and_any_flipped_bit_is_refused() {
        let i = SegmentIndex { base_lsn: 7, created_ns: 99, end: 4096, max_len: 300, offsets: vec![64, 400, 1000] };
        let b = i.encode();
        assert_eq!(SegmentIndex::decode(&b).unwrap(), i);
        for bit in 0..b.len() * 8 {
            let mut c = b.clone();
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentIndex::decode(&c).is_err(), "bit {bit} flipped was accepted");
        }
        assert!(SegmentIndex::decode(&b[..b.len() - 1]).is_err());
        // The head alone: checked by its own checksum.
        let h = IndexHead::decode(&b[..INDEX_HEAD]).unwrap();
        assert_eq!((h.base_lsn, h.records, h.end, h.file_len()), (7, 3, 4096, Some(b.len() as u64)));
        for bit in 0..INDEX_HEAD * 8 {
            let mut c = b.clone();
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(IndexHead::decode(&c).is_err(), "bit {bit} of the head flipped was accepted");
        }
    }

    #[test]
    fn header_round_trip_and_damage_is_named() {
        let h = SegmentHeader { base_lsn: 42, created_ns: 7, capacity: 1 << 20 };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b).unwrap(), h);
        b[20] ^= 1;
        assert!(SegmentHeader::decode(&b).unwrap_err().contains("checksum"));
        b[0] = b'X';
        assert!(SegmentHeader::decode(&b).unwrap_err().contains("magic"));
    }

    /// A version-1 frame, as the first format wrote it.
    fn encode_v1(lsn: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; Frames::V1.frame_len(payload.len())];
        out[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        let mut head = lsn.to_le_bytes().to_vec();
        head.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out[4..8].copy_from_slice(&crc32c::crc32c_append(crc32c::crc32c(&head), payload).to_le_bytes());
        out[8..16].copy_from_slice(&lsn.to_le_bytes());
        out[16..16 + payload.len()].copy_from_slice(payload);
        out
    }

    #[test]
    fn version_1_segments_and_frames_are_still_read() {
        let h = SegmentHeader { base_lsn: 3, created_ns: 1, capacity: 4096 };
        assert_eq!(SegmentHeader::decode_version(&h.encode_version(VERSION_1)).unwrap(), (h, Frames::V1));
        assert_eq!(SegmentHeader::decode_version(&h.encode()).unwrap(), (h, Frames::V2));
        let mut img = encode_v1(3, b"old record");
        img.extend(encode_v1(4, b"x"));
        img.extend([0u8; 32]);
        assert_eq!(Frames::V1.decode(&img, 0, 3, 64), Decoded::Record { len: 10, acked: 0 });
        let next = Frames::V1.frame_len(10);
        assert_eq!(Frames::V1.decode(&img, next, 4, 64), Decoded::Record { len: 1, acked: 0 });
        assert_eq!(Frames::V1.decode(&img, next + Frames::V1.frame_len(1), 5, 64), Decoded::End);
        // Read as version 2 it is not a record.
        assert!(matches!(Frames::V2.decode(&img, 0, 3, 64), Decoded::Invalid(_)));
        let mut bad = h.encode_version(7);
        assert!(SegmentHeader::decode(&bad).unwrap_err().contains("version 7"));
        bad[8] = 2;
        assert!(SegmentHeader::decode(&bad).unwrap_err().contains("checksum"));
    }

    /// A whole frame over the limit is `TooLarge`, never `Invalid`: it is a setting to
    /// raise, not damage to cut (review defect 3).
    #[test]
    fn a_whole_frame_over_the_limit_is_too_large_not_invalid() {
        let mut buf = vec![0u8; frame_len(500) + 8];
        encode_record(9, 9, &[1u8; 500], &mut buf[..frame_len(500)]);
        assert_eq!(decode_record(&buf, 0, 9, 100), Decoded::TooLarge { len: 500 });
        assert_eq!(decode_record(&buf, 0, 9, 500), Decoded::Record { len: 500, acked: 9 });
        buf[100] ^= 1;
        assert!(matches!(decode_record(&buf, 0, 9, 100), Decoded::Invalid(_)), "a damaged big frame is damage");
    }

    #[test]
    fn data_superblock_round_trips_and_damage_is_named() {
        let s = DataSuper { slot: 1 << 20, slots: 16 };
        let mut b = s.encode().to_vec();
        assert_eq!(DataSuper::decode(&b), Ok(s));
        assert_eq!(s.offset(2), 4096 + (2 << 20));
        b[20] ^= 1;
        assert!(DataSuper::decode(&b).unwrap_err().contains("checksum"));
        assert!(DataSuper::decode(&[0u8; 36]).unwrap_err().contains("magic"));
        let tiny = DataSuper { slot: 4096, slots: 1 }.encode();
        assert!(DataSuper::decode(&tiny).unwrap_err().contains("not a valid layout"));
    }

    #[test]
    fn names_sort_by_lsn_and_parse_back() {
        assert_eq!(segment_name(5), "00000000000000000005.dlog");
        assert!(segment_name(9) < segment_name(10));
        assert_eq!(parse_segment_name(Path::new("/x/00000000000000000010.dlog")), Some(10));
        assert_eq!(parse_segment_name(Path::new("10.dlog")), None);
        assert_eq!(parse_segment_name(Path::new("0000000000000000001x.dlog")), None);
    }

    fn encode_all(base: u64, recs: &[Vec<u8>], cap: usize) -> Vec<u8> {
        let mut buf = vec![0u8; cap];
        let mut at = 0;
        for (i, r) in recs.iter().enumerate() {
            let n = frame_len(r.len());
            encode_record(base + i as u64, base + i as u64, r, &mut buf[at..at + n]);
            at += n;
        }
        buf
    }

    fn decode_all(buf: &[u8], base: u64) -> (Vec<Vec<u8>>, Decoded) {
        let mut out = vec![];
        let mut at = 0;
        loop {
            match decode_record(buf, at, base + out.len() as u64, 1 << 16) {
                Decoded::Record { len, .. } => {
                    out.push(buf[at + FRAME_HEADER..at + FRAME_HEADER + len].to_vec());
                    at += frame_len(len);
                }
                other => return (out, other),
            }
        }
    }

    proptest! {
        /// Every sequence of records decodes back exactly, then hits the end.
        #[test]
        fn records_round_trip(base in 0u64..1 << 40, recs in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..20)) {
            let total: usize = recs.iter().map(|r| frame_len(r.len())).sum();
            let buf = encode_all(base, &recs, total + 64);
            let (back, end) = decode_all(&buf, base);
            prop_assert_eq!(back, recs);
            prop_assert_eq!(end, Decoded::End);
        }

        /// A torn last record (any subset of its 8-byte pieces written) never decodes
        /// as a record with wrong bytes: the prefix survives, the torn one is dropped
        /// or is exactly the original.
        #[test]
        fn torn_tail_is_detected(recs in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..200), 1..8), mask in any::<u64>()) {
            let total: usize = recs.iter().map(|r| frame_len(r.len())).sum();
            let full = encode_all(0, &recs, total + 64);
            let last_start = total - frame_len(recs.last().unwrap().len());
            let mut torn = full.clone();
            for (i, piece) in torn[last_start..total].chunks_mut(8).enumerate() {
                if mask >> (i % 64) & 1 == 0 {
                    piece.fill(0);
                }
            }
            let (back, _) = decode_all(&torn, 0);
            let n = back.len();
            prop_assert!(n == recs.len() || n == recs.len() - 1);
            prop_assert_eq!(&back[..], &recs[..n]);
        }

        /// Flipping any byte of a record is caught (the decoder stops there or earlier).
        #[test]
        fn flipped_byte_is_caught(recs in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..100), 1..6), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let total: usize = recs.iter().map(|r| frame_len(r.len())).sum();
            let mut buf = encode_all(0, &recs, total);
            let i = at.index(total);
            // Padding bytes are not covered by the CRC: flip only covered bytes.
            let mut start = 0;
            let mut covered = false;
            for r in &recs {
                if i >= start && i < start + FRAME_HEADER + r.len() { covered = true; }
                start += frame_len(r.len());
            }
            prop_assume!(covered);
            buf[i] ^= 1 << bit;
            let (back, end) = decode_all(&buf, 0);
            prop_assert!(back.len() < recs.len(), "flip at {} not caught", i);
            prop_assert!(matches!(end, Decoded::Invalid(_) | Decoded::End));
            prop_assert_eq!(&back[..], &recs[..back.len()]);
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn decoder_never_panics(buf in prop::collection::vec(any::<u8>(), 0..512), at in 0usize..600, lsn in any::<u64>()) {
            let _ = decode_record(&buf, at.min(buf.len()), lsn, 1 << 20);
            let _ = SegmentHeader::decode(&buf);
        }
    }
}
