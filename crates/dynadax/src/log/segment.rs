//! One segment file: its header, its in-memory record index, and the scan that
//! rebuilds that index at recovery.

use super::format::{self, Decoded, SegmentHeader, FRAME_HEADER, HEADER_LEN};
use crate::error::{Error, Result};
use crate::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;

/// Where records are stored and made durable: the seam between the log's write
/// protocol and the media. The real implementation is a dynadax [`File`] (a copy into
/// the direct window, then a cache-line flush or `msync`); tests implement it with a
/// persistent-memory crash model, in which a store not yet persisted may or may not
/// reach the media, in 8-byte pieces, in any combination.
pub trait Media {
    /// Stores `data` at `off`. Not durable until a `persist` covering it returns.
    fn store(&self, off: u64, data: &[u8]) -> Result<()>;
    /// Makes `off..off+len` durable (flush, then fence).
    fn persist(&self, off: u64, len: u64) -> Result<()>;
    /// Stores and persists in one step (the media may do it faster than a store and
    /// a persist, e.g. with non-temporal stores).
    fn store_persist(&self, off: u64, data: &[u8]) -> Result<()> {
        self.store(off, data)?;
        self.persist(off, data.len() as u64)
    }
}

impl Media for File {
    fn store(&self, off: u64, data: &[u8]) -> Result<()> {
        self.write_at(data, off)
    }
    fn persist(&self, off: u64, len: u64) -> Result<()> {
        File::persist(self, off, len)
    }
}

/// The log's writer stores through a mapping guard of the whole tail: plain stores
/// and a cache-line flush, no lock per append. The live guard is also what keeps the
/// tail's mode from being switched under the writer (the switch protocol's rule 2).
impl Media for crate::MapGuard {
    fn store(&self, off: u64, data: &[u8]) -> Result<()> {
        self.write(off as usize, data)
    }
    fn persist(&self, off: u64, len: u64) -> Result<()> {
        crate::MapGuard::persist(self, off as usize, len as usize)
    }
    fn store_persist(&self, off: u64, data: &[u8]) -> Result<()> {
        self.write_persist(off as usize, data)
    }
}

/// Stores the frame of record `lsn` at `off`; returns the frame's length. The one
/// place that defines how a record reaches the media; it is durable (and may be
/// acknowledged) only after a `persist` that covers `off..off+len` returns.
pub fn put_record(media: &impl Media, off: u64, lsn: u64, payload: &[u8], scratch: &mut Vec<u8>) -> Result<u64> {
    let n = format::frame_len(payload.len());
    scratch.resize(n, 0);
    format::encode_record(lsn, payload, scratch);
    media.store(off, scratch)?;
    Ok(n as u64)
}

/// [`put_record`] and the persist that covers it, in one step (`Durability::Each`):
/// the record is durable, and may be acknowledged, when this returns.
pub fn put_record_persisted(
    media: &impl Media,
    off: u64,
    lsn: u64,
    payload: &[u8],
    scratch: &mut Vec<u8>,
) -> Result<u64> {
    let n = format::frame_len(payload.len());
    scratch.resize(n, 0);
    format::encode_record(lsn, payload, scratch);
    media.store_persist(off, scratch)?;
    Ok(n as u64)
}

/// How a segment file is open.
pub(crate) enum SegFile {
    /// Through dynadax, by the log's writer: the tail direct, sealed segments cached.
    Dax(File),
    /// Plain `pread`s, by a read-only log in another process than the writer. Such a
    /// reader does not own the file: the writer may trim it while sealing, which a
    /// `pread` survives and a mapping would not (SIGBUS).
    Plain(std::fs::File, PathBuf),
}

impl SegFile {
    pub fn open(path: &Path, read_only: bool) -> Result<SegFile> {
        if read_only {
            let f = std::fs::File::open(path).map_err(|e| Error::io(path, "open segment", e))?;
            Ok(SegFile::Plain(f, path.to_path_buf()))
        } else {
            Ok(SegFile::Dax(File::open(path)?))
        }
    }

    /// The dynadax file of a writer's segment. Only the writer's paths call this,
    /// and a writer opens every segment through dynadax.
    pub fn dax(&self) -> &File {
        match self {
            SegFile::Dax(f) => f,
            SegFile::Plain(_, p) => unreachable!("{}: read-only segment used for writing", p.display()),
        }
    }

    pub fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        match self {
            SegFile::Dax(f) => f.read_at(buf, off),
            SegFile::Plain(f, p) => {
                use std::os::unix::fs::FileExt;
                let mut done = 0;
                while done < buf.len() {
                    match f.read_at(&mut buf[done..], off + done as u64) {
                        Ok(0) => break,
                        Ok(n) => done += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(Error::io(p, "read segment", e)),
                    }
                }
                Ok(done)
            }
        }
    }

    pub fn len(&self) -> Result<u64> {
        match self {
            SegFile::Dax(f) => f.len(),
            SegFile::Plain(f, p) => f.metadata().map(|m| m.len()).map_err(|e| Error::io(p, "stat segment", e)),
        }
    }

    pub fn status(&self) -> Result<crate::Status> {
        match self {
            SegFile::Dax(f) => f.status(),
            SegFile::Plain(_, p) => crate::stat(p),
        }
    }
}

/// A segment of the log.
pub(crate) struct Segment {
    pub path: PathBuf,
    pub header: SegmentHeader,
    pub file: SegFile,
    /// Records written to this segment. Stored by the writer (the only appender) after
    /// each frame; readers never look at records past the durable LSN anyway.
    pub records: AtomicU64,
    /// Offsets of the first records and the offset just past them. Built whole by the
    /// recovery scan; for the tail, extended lazily by readers (decoding forward from
    /// the last known record), so appends never touch it.
    pub index: RwLock<Index>,
    /// Offset just past the last record written.
    pub end: AtomicU64,
    /// Sealed: trimmed, immutable, switched to cached.
    pub sealed: AtomicBool,
}

/// Known record offsets of a segment: `offsets[lsn - base]`, and where the next one starts.
#[derive(Debug, Default)]
pub(crate) struct Index {
    pub offsets: Vec<u32>,
    pub next: u64,
}

impl Segment {
    /// A segment and its index, as a scan found it.
    pub fn new(
        path: PathBuf,
        header: SegmentHeader,
        file: SegFile,
        offsets: Vec<u32>,
        end: u64,
        sealed: bool,
    ) -> Segment {
        Segment {
            path,
            header,
            file,
            records: AtomicU64::new(offsets.len() as u64),
            index: RwLock::new(Index { offsets, next: end }),
            end: AtomicU64::new(end),
            sealed: AtomicBool::new(sealed),
        }
    }

    pub fn base(&self) -> u64 {
        self.header.base_lsn
    }

    /// Number of records written.
    pub fn count(&self) -> u64 {
        self.records.load(Ordering::Acquire)
    }

    /// One past its last record's LSN. (The scan never indexes a record whose LSN
    /// would pass `u64::MAX`, and appends stop before it, so this cannot overflow.)
    pub fn end_lsn(&self) -> u64 {
        self.base().saturating_add(self.count())
    }

    /// Offset of record `lsn`, if this segment has it. Extends the index by decoding
    /// frame headers forward when a reader asks past it.
    pub fn offset_of(&self, lsn: u64) -> Result<Option<u64>> {
        let Some(i) = lsn.checked_sub(self.base()) else { return Ok(None) };
        if i >= self.count() {
            return Ok(None);
        }
        if let Some(&o) = self.index.read().unwrap_or_else(|e| e.into_inner()).offsets.get(i as usize) {
            return Ok(Some(o as u64));
        }
        let mut idx = self.index.write().unwrap_or_else(|e| e.into_inner());
        while idx.offsets.len() as u64 <= i {
            let at = idx.next;
            let mut head = [0u8; 4];
            if self.file.read_at(&mut head, at)? < 4 {
                return Err(self.corrupt(at, "record runs past the end of the file".into()));
            }
            let len = u32::from_le_bytes(head) as usize;
            if len == 0 {
                return Err(self.corrupt(
                    at,
                    format!("record {} expected, found the end", self.base() + idx.offsets.len() as u64),
                ));
            }
            idx.offsets.push(u32::try_from(at).map_err(|_| self.corrupt(at, "offset past 4 GiB".into()))?);
            idx.next = at + format::frame_len(len) as u64;
        }
        Ok(Some(idx.offsets[i as usize] as u64))
    }

    /// Forgets records from the `keep`-th on (suffix truncation).
    pub fn truncate_index(&self, keep: u64, new_end: u64) {
        let mut idx = self.index.write().unwrap_or_else(|e| e.into_inner());
        if idx.offsets.len() as u64 > keep {
            idx.offsets.truncate(keep as usize);
            idx.next = new_end;
        }
        self.records.store(keep, Ordering::Release);
        self.end.store(new_end, Ordering::Release);
    }

    /// Reads record `lsn` at `off`, checking its frame again (media can rot).
    pub fn read_record(&self, lsn: u64, off: u64, max: usize) -> Result<Vec<u8>> {
        let mut head = [0u8; FRAME_HEADER];
        self.file.read_at(&mut head, off)?;
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        if len == 0 || len > max {
            return Err(self.corrupt(off, format!("record {lsn} has length {len}")));
        }
        let mut frame = vec![0u8; format::frame_len(len)];
        let n = self.file.read_at(&mut frame, off)?;
        if n < frame.len() {
            return Err(self.corrupt(off, format!("record {lsn} is cut short by the end of the file")));
        }
        match format::decode_record(&frame, 0, lsn, max) {
            Decoded::Record { len } => {
                frame.truncate(FRAME_HEADER + len);
                frame.drain(..FRAME_HEADER);
                Ok(frame)
            }
            Decoded::End => Err(self.corrupt(off, format!("record {lsn} reads as the end of the log"))),
            Decoded::Invalid(why) => Err(self.corrupt(off, format!("record {lsn}: {why}"))),
        }
    }

    pub fn corrupt(&self, off: u64, why: String) -> Error {
        corrupt(&self.path, off, why)
    }
}

pub(crate) fn corrupt(path: &Path, off: u64, why: String) -> Error {
    Error::Corrupt { path: path.to_path_buf(), what: "log segment", why: format!("at byte {off}: {why}") }
}

/// What a scan of a segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Offset of each valid record, in LSN order.
    pub index: Vec<u32>,
    /// Offset just past the last valid record.
    pub end: u64,
    /// If the scan stopped at something that is not a clean end: where and why.
    pub damage: Option<(u64, String)>,
    /// Whether any non-zero byte follows `end` (a torn or stale tail to clear).
    pub dirty_after_end: bool,
}

/// Reads the segment and indexes its records from the header on, a window at a time
/// (memory stays bounded whatever the segment size), giving exactly what
/// [`scan_bytes`] gives on the whole file.
pub(crate) fn scan(path: &Path, file: &SegFile, header: &SegmentHeader, max: usize) -> Result<Scan> {
    scan_windowed(path, file, header, max, 8 << 20)
}

fn scan_windowed(path: &Path, file: &SegFile, header: &SegmentHeader, max: usize, window: usize) -> Result<Scan> {
    let len = file.len()?;
    let mut index = Vec::new();
    // `buf` holds the file from offset `base` on.
    let mut base = 0u64;
    let mut buf = vec![0u8; window.max(HEADER_LEN + FRAME_HEADER).min(len as usize)];
    let n = file.read_at(&mut buf, 0)?;
    buf.truncate(n);
    let mut at = HEADER_LEN;
    let damage = loop {
        let more = base + (buf.len() as u64) < len;
        // Not enough bytes for the next frame in the window, but more in the file:
        // slide the window so the frame starts it, and read on.
        let need = if at + FRAME_HEADER <= buf.len() {
            let n = u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
            if n <= max {
                at + format::frame_len(n)
            } else {
                at + FRAME_HEADER
            }
        } else {
            at + FRAME_HEADER
        };
        if need > buf.len() && more {
            let need_from_frame = need - at;
            buf.drain(..at);
            base += at as u64;
            at = 0;
            let want = window.max(need_from_frame).min((len - base) as usize);
            let old = buf.len();
            buf.resize(want, 0);
            let n = file.read_at(&mut buf[old..], base + old as u64)?;
            buf.truncate(old + n);
            if n == 0 {
                break Some((base, "the file ended while reading it".into()));
            }
            continue;
        }
        let lsn = header.base_lsn + index.len() as u64;
        match format::decode_record(&buf, at, lsn, max) {
            Decoded::Record { len: n } => {
                let off = base + at as u64;
                index.push(u32::try_from(off).map_err(|_| corrupt(path, off, "segment larger than 4 GiB".into()))?);
                at += format::frame_len(n);
            }
            Decoded::End => break None,
            Decoded::Invalid(why) => break Some((base + at as u64, why)),
        }
    };
    let end = base + at as u64;
    // Anything but zeros after the end? Check the rest of the window, then the file.
    let mut dirty_after_end = buf.get(at..).is_some_and(|rest| rest.iter().any(|&b| b != 0));
    let mut pos = base + buf.len() as u64;
    while !dirty_after_end && pos < len {
        let mut chunk = vec![0u8; window.min((len - pos) as usize)];
        let n = file.read_at(&mut chunk, pos)?;
        if n == 0 {
            break;
        }
        dirty_after_end = chunk[..n].iter().any(|&b| b != 0);
        pos += n as u64;
    }
    Ok(Scan { index, end, damage, dirty_after_end })
}

/// The scan of a segment image (header included): the one routine recovery uses, so
/// the crash-model tests recover exactly as `Log::open` does.
pub fn scan_bytes(buf: &[u8], base_lsn: u64, max: usize) -> std::result::Result<Scan, (u64, String)> {
    let mut index = Vec::new();
    let mut at = HEADER_LEN;
    let damage = loop {
        let lsn = base_lsn + index.len() as u64;
        match format::decode_record(buf, at, lsn, max) {
            Decoded::Record { len } => {
                index.push(u32::try_from(at).map_err(|_| (at as u64, "segment larger than 4 GiB".to_string()))?);
                at += format::frame_len(len);
            }
            Decoded::End => break None,
            Decoded::Invalid(why) => break Some((at as u64, why)),
        }
    };
    let dirty_after_end = buf.get(at..).is_some_and(|rest| rest.iter().any(|&b| b != 0));
    Ok(Scan { index, end: at as u64, damage, dirty_after_end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The windowed scan recovery uses gives exactly what the whole-image scan gives,
        /// for any window size, on images with torn or damaged tails and trailing bytes.
        #[test]
        fn windowed_scan_equals_whole_scan(
            recs in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..30),
            damage in prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
            trailing in 0usize..200,
            window in 1usize..700,
        ) {
            let total: usize = recs.iter().map(|r| format::frame_len(r.len())).sum();
            let mut img = vec![0u8; HEADER_LEN + total + trailing];
            img[..HEADER_LEN].copy_from_slice(&SegmentHeader { base_lsn: 9, created_ns: 0, capacity: 0 }.encode());
            let mut at = HEADER_LEN;
            for (i, r) in recs.iter().enumerate() {
                let n = format::frame_len(r.len());
                format::encode_record(9 + i as u64, r, &mut img[at..at + n]);
                at += n;
            }
            // An empty body (no records, no trailing bytes) has nothing to damage.
            if let Some((i, b)) = damage.filter(|_| img.len() > HEADER_LEN) {
                let k = HEADER_LEN + i.index(img.len() - HEADER_LEN);
                img[k] ^= b | 1;
            }
            let whole = scan_bytes(&img, 9, 4096).unwrap();
            let mut f = tempfile::NamedTempFile::new().unwrap();
            std::io::Write::write_all(&mut f, &img).unwrap();
            let sf = SegFile::open(f.path(), true).unwrap();
            let header = SegmentHeader { base_lsn: 9, created_ns: 0, capacity: 0 };
            let windowed = scan_windowed(f.path(), &sf, &header, 4096, window).unwrap();
            prop_assert_eq!(windowed, whole);
        }
    }
}
