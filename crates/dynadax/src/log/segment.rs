//! One segment file: its header, its in-memory record index, and the scan that
//! rebuilds that index at recovery.

use super::format::{self, Decoded, SegmentHeader, FRAME_HEADER, HEADER_LEN};
use crate::error::{Error, Result};
use crate::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::RwLock;

/// A segment of the log.
pub(crate) struct Segment {
    pub path: PathBuf,
    pub header: SegmentHeader,
    pub file: File,
    /// Offset of each record: `index[lsn - base]`. Appended by the writer (under the
    /// log's writer lock); read by readers, who never look past the durable LSN.
    pub index: RwLock<Vec<u32>>,
    /// Offset just past the last record written.
    pub end: AtomicU64,
    /// Sealed: trimmed, immutable, switched to cached.
    pub sealed: AtomicBool,
}

impl Segment {
    pub fn base(&self) -> u64 {
        self.header.base_lsn
    }

    /// Number of records indexed.
    pub fn count(&self) -> u64 {
        self.index.read().unwrap_or_else(|e| e.into_inner()).len() as u64
    }

    /// Offset of record `lsn`, if this segment has it.
    pub fn offset_of(&self, lsn: u64) -> Option<u64> {
        let i = lsn.checked_sub(self.base())?;
        self.index.read().unwrap_or_else(|e| e.into_inner()).get(i as usize).map(|&o| o as u64)
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
pub(crate) struct Scan {
    pub index: Vec<u32>,
    /// Offset just past the last valid record.
    pub end: u64,
    /// If the scan stopped at something that is not a clean end: where and why.
    pub damage: Option<(u64, String)>,
    /// Whether any non-zero byte follows `end` (a torn or stale tail to clear).
    pub dirty_after_end: bool,
}

/// Reads the whole segment and indexes its records from the header on. Reads in
/// large blocks through the file's vector, so the scan rate is the copy rate.
pub(crate) fn scan(path: &Path, file: &File, header: &SegmentHeader, max: usize) -> Result<Scan> {
    let len = file.len()?;
    let mut buf = vec![0u8; len as usize];
    let n = file.read_at(&mut buf, 0)?;
    buf.truncate(n);
    let mut index = Vec::new();
    let mut at = HEADER_LEN;
    let damage = loop {
        let lsn = header.base_lsn + index.len() as u64;
        match format::decode_record(&buf, at, lsn, max) {
            Decoded::Record { len } => {
                index
                    .push(u32::try_from(at).map_err(|_| corrupt(path, at as u64, "segment larger than 4 GiB".into()))?);
                at += format::frame_len(len);
            }
            Decoded::End => break None,
            Decoded::Invalid(why) => break Some((at as u64, why)),
        }
    };
    let dirty_after_end = buf.get(at..).is_some_and(|rest| rest.iter().any(|&b| b != 0));
    Ok(Scan { index, end: at as u64, damage, dirty_after_end })
}
