//! Offline verification: every segment's header, every record's frame and checksum,
//! and the LSN chain across segments. Reads only (plain `pread`s), so it can run
//! beside a live writer.

use super::format::{parse_segment_name, SegmentHeader, HEADER_LEN};
use super::segment::scan_bytes;
use crate::error::{Error, IoContext, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One thing wrong with a log.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset in it.
    pub offset: u64,
    /// What is wrong.
    pub what: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Segments read.
    pub segments: usize,
    /// Valid records.
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Everything wrong, in order. Empty means clean.
    pub problems: Vec<Problem>,
}

/// Checks every record of the log in `dir`. `progress(done, total)` is called with
/// byte counts as segments are read.
pub fn verify(dir: &Path, max_record: usize, progress: &mut dyn FnMut(u64, u64)) -> Result<VerifyReport> {
    if !dir.is_dir() {
        return Err(Error::NotFound { path: dir.to_path_buf() });
    }
    let mut segs: Vec<(u64, PathBuf, u64)> = std::fs::read_dir(dir)
        .ctx(dir, "list log directory")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            let len = e.metadata().ok()?.len();
            parse_segment_name(&p).map(|b| (b, p, len))
        })
        .collect();
    segs.sort();
    let total: u64 = segs.iter().map(|s| s.2).sum();
    let mut rep = VerifyReport { segments: segs.len(), ..VerifyReport::default() };
    let mut expect: Option<u64> = None;
    let n = segs.len();
    for (i, (base, path, _)) in segs.into_iter().enumerate() {
        let buf = std::fs::read(&path).ctx(&path, "read segment")?;
        rep.bytes += buf.len() as u64;
        progress(rep.bytes, total);
        let problem = |offset: u64, what: String| Problem { path: path.clone(), offset, what };
        let header = match SegmentHeader::decode(&buf[..buf.len().min(HEADER_LEN)]) {
            Ok(h) => h,
            Err(why) => {
                rep.problems.push(problem(0, why));
                expect = None;
                continue;
            }
        };
        if header.base_lsn != base {
            rep.problems
                .push(problem(16, format!("header says base LSN {} but the name says {base}", header.base_lsn)));
        }
        if let Some(e) = expect {
            if e != base {
                rep.problems
                    .push(problem(16, format!("first LSN {base} does not follow the previous segment (expected {e})")));
            }
        }
        let is_tail = i + 1 == n;
        let scan = scan_bytes(&buf, header.base_lsn, max_record)
            .map_err(|(at, why)| super::segment::corrupt(&path, at, why))?;
        rep.records += scan.index.len() as u64;
        if let Some((at, why)) = scan.damage {
            let what = if is_tail { format!("torn tail: {why} (recovery will cut it)") } else { why };
            rep.problems.push(problem(at, what));
        } else if scan.dirty_after_end && !is_tail {
            rep.problems.push(problem(scan.end, "bytes after the last record of a sealed segment".into()));
        }
        expect = Some(header.base_lsn + scan.index.len() as u64);
    }
    Ok(rep)
}
