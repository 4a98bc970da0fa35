//! Offline verification: every segment's header, every record's frame and checksum,
//! the LSN chain across segments, and the bytes past the tail's records. Reads only
//! (plain `pread`s), so it can run beside a live writer. It tells apart what
//! recovery treats differently (see `recovery.rs`): a torn tail (recovery cuts it),
//! damage (recovery refuses), and non-zero bytes past the end of the records.

use super::format::{SegmentHeader, HEADER_LEN};
use super::layout::{Found, Layout, Store};
use super::meta::Meta;
use super::recovery::{classify, Finding};
use super::segment::scan;
use crate::error::{Error, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// A bad record at the very end of the log that nothing after it proves was
    /// acknowledged: what a crash leaves. Recovery cuts it.
    TornTail,
    /// Non-zero bytes past the end of the tail's records, with no record in them.
    /// Recovery clears them.
    PastEnd,
    /// A bad record with intact records after it, or any in a sealed segment: lost
    /// acknowledged data. Recovery refuses unless told what to do.
    Damage,
    /// A segment header that does not check, or a broken LSN chain between segments.
    Structure,
    /// A whole record larger than the limit verify was given.
    TooLarge,
    /// A sealed segment's index file (`{segment}.idx`) that is damaged or does not
    /// match its records: an open that trusts indexes scans that segment instead and
    /// writes the index again. No record is affected.
    Index,
}

/// One thing wrong with a log.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset in it.
    pub offset: u64,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The first LSN concerned, where known.
    pub lsn: Option<u64>,
    /// Intact records that follow it in the segment (damage).
    pub intact_after: u64,
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
    /// LSN ranges a salvage recorded as holes in `log.meta` (not problems: known).
    pub known_holes: Vec<(u64, u64)>,
}

/// Checks every record of the log in `dir`. `progress(done, total)` is called with
/// byte counts as segments are read.
pub fn verify(dir: &Path, max_record: usize, progress: &mut dyn FnMut(u64, u64)) -> Result<VerifyReport> {
    if !dir.is_dir() {
        return Err(Error::NotFound { path: dir.to_path_buf() });
    }
    let store = Store::open(dir, Layout::Files, 0, false)?;
    let (found, bad) = store.list()?;
    let mut segs = Vec::with_capacity(found.len());
    for f in found {
        let len = f.open(true)?.len()?;
        segs.push((f, len));
    }
    let bad: Vec<Problem> = bad
        .into_iter()
        .map(|(offset, why)| Problem {
            path: dir.join(super::DATA_FILE),
            offset,
            kind: ProblemKind::Structure,
            lsn: None,
            intact_after: 0,
            what: format!("segment header damaged: {why}"),
        })
        .collect();
    let known = match Meta::load(dir) {
        Ok(m) => m.map(|m| m.damaged).unwrap_or_default(),
        Err(e) => {
            let mut rep = VerifyReport { segments: segs.len(), problems: bad, ..VerifyReport::default() };
            rep.problems.push(Problem {
                path: dir.join(super::META_FILE),
                offset: 0,
                kind: ProblemKind::Structure,
                lsn: None,
                intact_after: 0,
                what: e.to_string(),
            });
            return verify_segments(segs, max_record, progress, rep, &[]);
        }
    };
    let rep =
        VerifyReport { segments: segs.len(), problems: bad, known_holes: known.clone(), ..VerifyReport::default() };
    verify_segments(segs, max_record, progress, rep, &known)
}

fn verify_segments(
    segs: Vec<(Found, u64)>,
    max_record: usize,
    progress: &mut dyn FnMut(u64, u64),
    mut rep: VerifyReport,
    known: &[(u64, u64)],
) -> Result<VerifyReport> {
    let total: u64 = segs.iter().map(|s| s.1).sum();
    let known_hole = |a: u64, b: u64| a >= b || known.iter().any(|&(x, y)| x <= a && b <= y);
    let mut expect: Option<u64> = None;
    let n = segs.len();
    for (i, (found, len)) in segs.into_iter().enumerate() {
        rep.bytes += len;
        progress(rep.bytes, total);
        let (base, path, at) = (found.base, found.path.clone(), found.offset);
        // Offsets are the file's (a slot of the single-file layout starts inside it).
        let mut problem = |offset: u64, kind: ProblemKind, lsn: Option<u64>, intact_after: u64, what: String| {
            rep.problems.push(Problem { path: path.clone(), offset: at + offset, kind, lsn, intact_after, what })
        };
        let file = found.open(true)?;
        let mut head = [0u8; HEADER_LEN];
        let got = file.read_at(&mut head, 0)?;
        let (header, frames) = match SegmentHeader::decode_version(&head[..got]) {
            Ok(h) => h,
            Err(why) => {
                problem(0, ProblemKind::Structure, Some(base), 0, why);
                expect = None;
                continue;
            }
        };
        if header.base_lsn != base {
            let what = format!("header says base LSN {} but the name says {base}", header.base_lsn);
            problem(16, ProblemKind::Structure, Some(base), 0, what);
        }
        if let Some(e) = expect.filter(|&e| e != base && !known_hole(e, base)) {
            let what = format!("first LSN {base} does not follow the previous segment (expected {e})");
            problem(16, ProblemKind::Structure, Some(base), 0, what);
        }
        let is_last = i + 1 == n;
        let scan = scan(&file, &header, frames, max_record)?;
        if let Some((at, lsn, len)) = scan.too_large {
            problem(at, ProblemKind::TooLarge, Some(lsn), 0, format!("record of {len} bytes, over {max_record}"));
        }
        let mut records = scan.index.len() as u64;
        let mut rest = &scan.gaps[..];
        while let Some(g) = rest.first() {
            let Some(run) = g.run.as_ref().filter(|r| known_hole(g.lsn, r.first_lsn)) else { break };
            records += run.offsets.len() as u64;
            rest = &rest[1..];
        }
        let mut end_lsn = rest.first().map_or(base + records, |g| g.lsn);
        match classify(rest, frames, is_last) {
            None => {}
            Some(Finding::Torn { first, past_end: true }) => problem(
                first.at,
                ProblemKind::PastEnd,
                Some(first.lsn),
                0,
                format!("non-zero bytes past the end of the tail's records ({}); recovery clears them", first.why),
            ),
            Some(Finding::Torn { first, .. }) => problem(
                first.at,
                ProblemKind::TornTail,
                Some(first.lsn),
                0,
                format!("torn tail at LSN {}: {} (recovery will cut it)", first.lsn, first.why),
            ),
            Some(f @ Finding::Damage { .. }) => {
                let first = f.first();
                let after = f.following();
                records += after;
                let what = format!(
                    "record {} is damaged: {}; {after} intact record(s) follow it in this segment",
                    first.lsn, first.why
                );
                problem(first.at, ProblemKind::Damage, Some(first.lsn), after, what);
                end_lsn = rest
                    .iter()
                    .rev()
                    .find_map(|g| g.run.as_ref().map(|r| r.first_lsn + r.offsets.len() as u64))
                    .unwrap_or(first.lsn);
                if !is_last {
                    // A sealed segment's damaged end: the next segment says where it ends.
                    end_lsn = u64::MAX;
                }
            }
        }
        // A sealed segment file's index, if it has one, against what the scan found.
        if !is_last && scan.gaps.is_empty() && scan.too_large.is_none() {
            let ip = super::segment::index_file(&path, found.offset, found.span);
            let extent = if found.span == u64::MAX {
                super::segment::Extent::File(len)
            } else {
                super::segment::Extent::Slot(found.span)
            };
            match super::segment::read_index(&ip, &header, extent, max_record) {
                Err(why) if ip.exists() => {
                    problem(0, ProblemKind::Index, Some(base), 0, format!("index {}: {why}", ip.display()))
                }
                Ok((offsets, end)) if offsets != scan.index || end != scan.end => problem(
                    0,
                    ProblemKind::Index,
                    Some(base),
                    0,
                    format!("index {}: it does not match the segment's records", ip.display()),
                ),
                _ => {}
            }
        }
        rep.records += records;
        expect = (end_lsn != u64::MAX).then_some(end_lsn);
    }
    Ok(rep)
}
