//! Recovery: what `Log::open` does with the segments it finds, and the one rule that
//! tells a torn write from damage (written down in `docs/log-format.md`).
//!
//! A scan (`segment::scan`) gives each segment's intact prefix and, if anything but
//! zeros follows it, each bad stretch ("gap") with the intact records a
//! resynchronising search found after it. Then:
//!
//! - A bad stretch in the **last** segment is a **torn write**, and may be cut, when
//!   nothing after it proves it was ever acknowledged: no intact record follows, or
//!   (format 2) every record that follows was written while the bad LSN was not yet
//!   durable (each frame carries the writer's durable LSN, `acked`). A torn write can
//!   only be what was in flight when the writer died, so every record after it was
//!   in flight too.
//! - Anything else is **damage**: a bad stretch in a sealed segment (sealed segments
//!   are persisted whole before the next one exists), or one followed by a record
//!   written after the bad one was acknowledged. Damage is refused, naming the file,
//!   the offset, the first damaged LSN and the intact records after it, with no byte
//!   changed, unless the caller says what to do ([`RecoveryMode`]).
//!
//! Whatever a repair drops is first copied beside its segment (`{segment}.cut-{offset}`,
//! or the whole segment renamed to `{segment}.cut-0`), so nothing is destroyed that
//! could still be wanted. Damaged LSNs kept as holes (`SkipDamaged`) are recorded in
//! `log.meta`, so later opens in any mode accept exactly those and no others.

use super::format::{Frames, SegmentHeader, HEADER_LEN};
use super::layout::{Found, Store};
use super::meta::sync_dir;
use super::segment::{nonzero_extent, FileCache, Gap, Scan, SegFile, Segment, HOLE};
use super::{LogOptions, Lsn, RecoveryMode, RecoveryReport};
use crate::error::{Error, IoContext, Result};
use serde::Serialize;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What recovery may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Apply {
    /// The writer: repair as the recovery mode says.
    Write,
    /// A reader: change nothing, show what is intact (the writer may be mid-append).
    ReadOnly,
    /// `log repair --dry-run`: change nothing, report what `Write` would do.
    DryRun,
}

impl Apply {
    fn changes(self) -> bool {
        self == Apply::Write
    }
}

/// Bytes a repair dropped (or, in a dry run, would drop).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dropped {
    /// The file.
    pub path: PathBuf,
    /// From this byte offset to `offset + bytes`.
    pub offset: u64,
    /// How many bytes (non-zero extent; the whole file for a segment set aside).
    pub bytes: u64,
    /// The LSNs lost with them, `[start, end)`, `end` being `u64::MAX` when it is not
    /// known (how many records a torn write held); `None` when no record was lost.
    pub lsns: Option<(Lsn, Lsn)>,
    /// Where the bytes were kept.
    pub evidence: Option<PathBuf>,
    /// Why: "torn tail", "non-zero bytes past the end", "damage", "segment set aside".
    pub why: String,
}

/// Damaged LSNs a salvage keeps as holes (`RecoveryMode::SkipDamaged`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hole {
    /// `[start, end)`.
    pub lsns: (Lsn, Lsn),
    /// The segment file.
    pub path: PathBuf,
    /// Where the damage begins in it.
    pub offset: u64,
}

/// What `log.meta` says that recovery must take into account.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorded {
    /// Holes an earlier salvage kept (accepted as they are).
    pub holes: Vec<(Lsn, Lsn)>,
    /// The LSN of a suffix truncation a crash interrupted: records from it on are
    /// being dropped, and their half-zeroed bytes are no damage.
    pub truncating: Option<Lsn>,
    /// Every LSN below this is purged (a restart past the end removes the segments
    /// after it is recorded).
    pub purged: Lsn,
}

impl Recorded {
    pub fn of(m: Option<&super::meta::Meta>) -> Recorded {
        m.map_or_else(Recorded::default, |m| Recorded {
            holes: m.damaged.clone(),
            truncating: m.truncate_from,
            purged: m.purged_before,
        })
    }
}

/// Lists, checks and indexes the segments of `dir`, and repairs them as `apply` and
/// `opts.recovery` allow, given what `log.meta` recorded.
#[allow(clippy::too_many_arguments)]
pub(crate) fn recover(
    dir: &Path,
    store: &Store,
    opts: &LogOptions,
    apply: Apply,
    recorded: &Recorded,
    report: &mut RecoveryReport,
    files: &Arc<FileCache>,
) -> Result<Vec<Arc<Segment>>> {
    let (known, truncating, purged) = (&recorded.holes[..], recorded.truncating, recorded.purged);
    let writer_live = apply == Apply::ReadOnly && super::writer_alive(dir);
    let (names, bad) = store.list()?;
    check_bad_slots(store, &names, &bad, opts.recovery, apply, report)?;
    let mut out: Vec<Arc<Segment>> = Vec::with_capacity(names.len());
    let mode = opts.recovery;
    let known_hole = |r: Range<Lsn>| r.is_empty() || known.iter().any(|&(a, b)| a <= r.start && r.end <= b);
    let mut i = 0;
    while i < names.len() {
        let found = &names[i];
        let (base, path) = (found.base, &found.path);
        let is_last = i + 1 == names.len();
        if truncating.is_some_and(|t| base >= t) && i > 0 {
            // Wholly after an interrupted truncation's cut: it was to go.
            for f in names[i..].iter().rev() {
                if apply.changes() {
                    store.remove(&f.path, f.offset)?;
                }
                report.repairs.push(format!("{}: after an interrupted truncation's cut: removed", label(f)));
            }
            if apply.changes() {
                store.synced()?;
            }
            break;
        }
        let file = found.open(apply != Apply::Write)?;
        // Offsets in messages are the file's (a slot of the single-file layout
        // starts inside it).
        let at = |o: u64| found.offset + o;
        let mut head = [0u8; HEADER_LEN];
        let n = file.read_at(&mut head, 0)?;
        // A reader beside a live writer: a slot it listed that was freed or reused
        // since (no header, or another segment's) was purged meanwhile, as a file
        // that is gone would be; at the front of what it found, it is skipped.
        if apply == Apply::ReadOnly && found.span != u64::MAX && out.is_empty() {
            let now = SegmentHeader::decode(&head[..n]).ok().map(|h| h.base_lsn);
            if now != Some(base) && (now.is_some() || super::layout::is_free(&head[..n])) {
                i += 1;
                continue;
            }
        }
        let header = SegmentHeader::decode_version(&head[..n]).and_then(|(h, f)| {
            if h.base_lsn == base {
                Ok((h, f))
            } else {
                Err(format!("header says base LSN {} but the name says {base}", h.base_lsn))
            }
        });
        let next_base = names.get(i + 1).map(|n| n.base);
        let expect = out.last().map(|p| p.end_lsn());
        // The LSN chain: this segment starts where the previous one ended.
        if let Some(e) = expect.filter(|&e| e != base) {
            let why = if base < e {
                format!("first LSN {base} overlaps the previous segment, which ends at LSN {e}")
            } else {
                format!("first LSN {base} does not follow the previous segment, which ends at LSN {e} (a segment is missing?)")
            };
            let holey = base > e && known_hole(e..base);
            match mode {
                _ if holey => hole_bridge(&mut out, base)?,
                RecoveryMode::SkipDamaged if base > e => {
                    report.repairs.push(format!("{}: {why}: LSNs {e}..{base} kept as a hole", label(found)));
                    report.holes.push(Hole { lsns: (e, base), path: path.clone(), offset: at(0) });
                    hole_bridge(&mut out, base)?;
                }
                RecoveryMode::PointInTime => {
                    set_aside(store, &names[i..], apply, &why, report)?;
                    break;
                }
                _ => return Err(file.corrupt(16, why)),
            }
        }
        let (header, frames) = match header {
            Ok(h) => h,
            Err(why) => {
                // The header is made durable before the segment gets its name, so a
                // bad one is damage, never a torn write.
                match (mode, next_base) {
                    (RecoveryMode::SkipDamaged, Some(next)) => {
                        report.repairs.push(format!(
                            "{}: damaged header ({why}): LSNs {base}..{next} kept as a hole, the file set aside",
                            label(found)
                        ));
                        report.holes.push(Hole { lsns: (base, next), path: path.clone(), offset: at(0) });
                        set_aside(store, &names[i..i + 1], apply, &why, report)?;
                        // The next segment follows the hole.
                        i += 1;
                        hole_bridge(&mut out, next)?;
                        continue;
                    }
                    (RecoveryMode::PointInTime, _) => {
                        set_aside(store, &names[i..], apply, &why, report)?;
                        break;
                    }
                    _ => {
                        let hint = if is_last && mode == RecoveryMode::SkipDamaged {
                            "; the tail's records cannot be placed without it: RecoveryMode::PointInTime drops it"
                        } else {
                            "; RecoveryMode::PointInTime drops it and what follows, SkipDamaged (if it is not the tail) keeps its LSNs as a hole"
                        };
                        return Err(file.corrupt(0, format!("{why}{hint}")));
                    }
                }
            }
        };
        // The segment an interrupted truncation cuts (see below).
        let holds_cut = truncating.filter(|&t| t >= base && next_base.is_none_or(|n| t < n));
        // A sealed segment file may be opened from its index file instead of a scan
        // (`LogOptions::scan_sealed` false): not the tail, not one a truncation cuts or
        // an earlier salvage left holes in; with the default recovery only (`Strict`
        // checks everything, a salvage looks for the damage it is asked to handle).
        let by_index = !opts.scan_sealed
            && mode == RecoveryMode::TolerateTornTail
            && !is_last
            && holds_cut.is_none()
            && !known.iter().any(|&(a, b)| b > base && next_base.is_none_or(|n| a < n));
        if by_index {
            // The index file's head places the segment's LSNs; its offsets are read
            // on the segment's first read (`Segment::offset_of`).
            let file_len = file.len()?;
            let extent = if found.span == u64::MAX {
                super::segment::Extent::File(file_len)
            } else {
                super::segment::Extent::Slot(found.span)
            };
            let ip = super::segment::index_file(path, found.offset, found.span);
            let counted =
                super::segment::read_index_head(&ip, &header, extent, opts.max_record).and_then(|(n, end)| {
                    match next_base {
                        Some(next) if base.checked_add(n) != Some(next) => Err(format!(
                            "it lists {n} records from LSN {base}, but the next segment starts at LSN {next}"
                        )),
                        _ => Ok((n, end)),
                    }
                });
            match counted {
                Ok((records, end)) => {
                    report.indexed += 1;
                    let index = super::segment::Index::unloaded(records, end);
                    let seg =
                        Segment::new(path.clone(), found.offset, found.span, header, frames, file, index, true, files);
                    seg.from_index.store(true, Ordering::Relaxed);
                    // A segment file as long as its records was trimmed, the seal's
                    // last step (after its switch to cached): nothing to finish, and
                    // no mode to look up. A slot is not trimmed: its mode is checked.
                    if apply.changes() && found.span != u64::MAX {
                        report.repairs.extend(store.finish_seal(&seg, true)?);
                    }
                    out.push(seg);
                    i += 1;
                    continue;
                }
                Err(why) => report.repairs.push(format!(
                    "{}: index {}: {why}: the segment is scanned{}",
                    label(found),
                    ip.display(),
                    if apply == Apply::Write { " and its index written again" } else { "" }
                )),
            }
        }
        let mut scan = super::segment::scan(&file, &header, frames, opts.max_record)?;
        if let Some((o, lsn, len)) = scan.too_large {
            return Err(Error::invalid(
                path,
                format!(
                    "record {lsn} at byte {} is {len} bytes, more than the maximum record size {} asked for: \
                     it is whole (written with a larger limit); open with a maximum of at least {len}",
                    at(o),
                    opts.max_record
                ),
            ));
        }
        // The segment an interrupted truncation cuts: its records from the cut on
        // (and the half-zeroed bytes after them) go, and the zeroing is finished
        // below, so no old frame can later be found past new records.
        if let Some(t) = holds_cut {
            clip(&mut scan, base, t);
        }
        // The tail is preallocated to its capacity, and a sealed segment that becomes
        // the tail again (a truncation) is given it back before the truncation's intent
        // is cleared: a shorter last segment was cut short, and acknowledged records
        // after its end may be gone without a trace.
        // (Not when every record in it is purged: a restart past the end removes the
        // later segments first, and this one goes next.)
        let file_len = file.len()?;
        let all_purged = base + scan.index.len() as u64 <= purged && purged > base;
        if is_last && holds_cut.is_none() && !all_purged && file_len < header.capacity && apply != Apply::ReadOnly {
            let why = format!(
                "the tail is {file_len} bytes, shorter than the {} it was made with: the file was truncated, and \
                 records after LSN {} may be lost",
                header.capacity,
                base + scan.index.len() as u64
            );
            match mode {
                RecoveryMode::Strict | RecoveryMode::TolerateTornTail => {
                    return Err(file.corrupt(
                        file_len,
                        format!(
                            "{why}; nothing was changed (RecoveryMode::SkipDamaged or PointInTime accepts what is \
                             left)"
                        ),
                    ));
                }
                _ => {
                    let from = base + scan.index.len() as u64;
                    report.repairs.push(format!("{}: {why}: accepted as it is", label(found)));
                    report.dropped.push(Dropped {
                        path: path.clone(),
                        offset: at(file_len),
                        bytes: 0,
                        lsns: Some((from, u64::MAX)),
                        evidence: None,
                        why: "truncated tail".into(),
                    });
                }
            }
        }
        report.bytes += scan.last_end();
        // Gaps an earlier salvage recorded: holes, silently.
        let mut index = scan.index.clone();
        let mut holes = Vec::new();
        let mut rest = &scan.gaps[..];
        while let Some(g) = rest.first() {
            let Some(run) = g.run.as_ref().filter(|r| known_hole(g.lsn..r.first_lsn)) else { break };
            push_hole(&mut index, &mut holes, base, g, run.first_lsn);
            index.extend_from_slice(&run.offsets);
            rest = &rest[1..];
        }
        let mut end = rest.first().map_or(scan.last_end(), |g| g.at);
        let mut sealed_trim_ok = rest.is_empty() && holes.is_empty();
        let mut stop_after = false;
        if let Some(finding) = classify(rest, frames, is_last) {
            let first = finding.first();
            // A reader beside a live writer reads the tail while frames are being
            // copied into it: a frame it caught half written, followed by frames it
            // read a moment later, is the writer at work, not damage. What lies past
            // it is not durable for this reader yet anyway; the writer's own recovery
            // applies the rule.
            let in_flight = is_last && writer_live;
            if in_flight {
                index.truncate((first.lsn - base) as usize);
                end = first.at;
            } else if let Finding::Torn { past_end, .. } = finding {
                // A torn write (or stale bytes past the end) at the end of the log.
                let what = if past_end { "non-zero bytes past the end of the records" } else { "torn tail" };
                match (mode, apply) {
                    (RecoveryMode::Strict, _) => {
                        return Err(file.corrupt(
                            first.at,
                            format!("{what} ({}) at LSN {}: Strict recovery changes nothing", first.why, first.lsn),
                        ));
                    }
                    (_, Apply::ReadOnly) => {}
                    _ => {
                        // Never acknowledged: from the torn LSN on, as far as the runs go.
                        let end = rest
                            .iter()
                            .rev()
                            .find_map(|g| g.run.as_ref())
                            .map_or(u64::MAX, |r| r.first_lsn + r.offsets.len() as u64);
                        cut(&file, first.at, Some((first.lsn, end)), what, &first.why, apply, report)?;
                    }
                }
            } else {
                let following = finding.following();
                let later = names.len() - i - 1;
                let desc = damage_text(first, following, later, is_last);
                match mode {
                    RecoveryMode::Strict | RecoveryMode::TolerateTornTail => {
                        return Err(file.corrupt(
                            first.at,
                            format!(
                                "{desc}: not a torn write, so nothing was changed; RecoveryMode::SkipDamaged \
                                 (--recovery skip-damaged) keeps every intact record, PointInTime keeps the LSNs \
                                 below {}; `dynadax log repair --dry-run` shows what each drops",
                                first.lsn
                            ),
                        ));
                    }
                    RecoveryMode::PointInTime => {
                        let lost_end = next_base.unwrap_or_else(|| {
                            rest.iter()
                                .rev()
                                .find_map(|g| g.run.as_ref())
                                .map_or(first.lsn, |r| r.first_lsn + r.offsets.len() as u64)
                        });
                        if apply != Apply::ReadOnly {
                            cut(&file, first.at, Some((first.lsn, lost_end)), "damage", &first.why, apply, report)?;
                            set_aside(store, &names[i + 1..], apply, "after damage (point-in-time recovery)", report)?;
                        }
                        stop_after = true;
                    }
                    RecoveryMode::SkipDamaged => {
                        for (k, g) in rest.iter().enumerate() {
                            match &g.run {
                                Some(run) => {
                                    push_hole(&mut index, &mut holes, base, g, run.first_lsn);
                                    index.extend_from_slice(&run.offsets);
                                    report.holes.push(Hole {
                                        lsns: (g.lsn, run.first_lsn),
                                        path: path.clone(),
                                        offset: at(g.at),
                                    });
                                    report.repairs.push(format!(
                                        "{}: damage at byte {} ({}): LSNs {}..{} kept as a hole",
                                        path.display(),
                                        at(g.at),
                                        g.why,
                                        g.lsn,
                                        run.first_lsn
                                    ));
                                }
                                None if is_last => {
                                    // The end of the salvaged tail: torn, or stale bytes.
                                    debug_assert_eq!(k + 1, rest.len());
                                    if apply != Apply::ReadOnly {
                                        cut(
                                            &file,
                                            g.at,
                                            Some((g.lsn, u64::MAX)),
                                            "torn tail (after salvaged damage)",
                                            &g.why,
                                            apply,
                                            report,
                                        )?;
                                    }
                                }
                                None => {
                                    let next = next_base.expect("not the last segment");
                                    push_hole(&mut index, &mut holes, base, g, next);
                                    report.holes.push(Hole {
                                        lsns: (g.lsn, next),
                                        path: path.clone(),
                                        offset: at(g.at),
                                    });
                                    report.repairs.push(format!(
                                        "{}: damage at byte {} ({}): LSNs {}..{next} kept as a hole",
                                        path.display(),
                                        at(g.at),
                                        g.why,
                                        g.lsn
                                    ));
                                }
                            }
                        }
                        end = scan.last_end().max(end);
                        if let Some(g) = rest.last().filter(|g| g.run.is_none()) {
                            end = g.at;
                        }
                        sealed_trim_ok = false;
                    }
                }
            }
            if !matches!(mode, RecoveryMode::SkipDamaged) {
                index.truncate((first.lsn - base) as usize);
            }
        }
        if holds_cut.is_some() && apply.changes() && rest.is_empty() && nonzero_extent(&file, end)? > end {
            file.zero_from(end)?;
        }
        let sealed = !is_last && !stop_after;
        let mut index = super::segment::Index::dense(index, end);
        index.holes = holes;
        let seg = Segment::new(path.clone(), found.offset, found.span, header, frames, file, index, sealed, files);
        if apply.changes() && sealed {
            report.repairs.extend(store.finish_seal(&seg, sealed_trim_ok)?);
        }
        out.push(seg);
        if stop_after {
            break;
        }
        i += 1;
    }
    if let Some(last) = out.last() {
        if apply.changes() {
            last.sealed.store(false, Ordering::Release);
        }
        last.pin(true);
    }
    Ok(out)
}

/// What the gaps of a segment (after any known holes) are.
pub(crate) enum Finding<'a> {
    /// A torn write at the end of the log, or non-zero bytes past its records
    /// (`past_end`): nothing proves any of it was acknowledged, so it may be cut.
    Torn { first: &'a Gap, past_end: bool },
    /// Damage: what follows `first` proves it was once whole and acknowledged, or it
    /// lies in a sealed segment.
    Damage { first: &'a Gap, following: u64 },
}

impl<'a> Finding<'a> {
    pub fn first(&self) -> &'a Gap {
        match self {
            Finding::Torn { first, .. } | Finding::Damage { first, .. } => first,
        }
    }
    /// Intact records after the first bad one, in the segment.
    pub fn following(&self) -> u64 {
        match self {
            Finding::Torn { .. } => 0,
            Finding::Damage { following, .. } => *following,
        }
    }
}

/// The rule (see the module's comment): the gaps `rest` of a segment with framing
/// `frames` are a torn tail only in the last segment, and only if no intact record
/// after the first of them was written once its LSN was acknowledged (format 1
/// frames claim nothing: any intact record after it proves damage).
pub(crate) fn classify(rest: &[Gap], frames: Frames, is_last: bool) -> Option<Finding<'_>> {
    let first = rest.first()?;
    let runs = || rest.iter().filter_map(|g| g.run.as_ref());
    let proven = runs().any(|r| frames == Frames::V1 || r.max_acked > first.lsn);
    if is_last && !proven {
        return Some(Finding::Torn { first, past_end: first.past_end && rest.len() == 1 });
    }
    Some(Finding::Damage { first, following: runs().map(|r| r.offsets.len() as u64).sum() })
}

/// The records recovery keeps of a tail segment's image (header included, format
/// written) under the default [`RecoveryMode::TolerateTornTail`]: their offsets, or
/// why it refuses the image as damage. The crash-model tests judge crash images with
/// it, so they recover exactly as `Log::open` does.
pub fn recover_tail_image(img: &[u8], base_lsn: Lsn, max: usize) -> std::result::Result<Vec<u32>, String> {
    let scan = super::segment::scan_bytes(img, base_lsn, max);
    if let Some((at, lsn, len)) = scan.too_large {
        return Err(format!("record {lsn} at byte {at} is {len} bytes, over the limit"));
    }
    match classify(&scan.gaps, Frames::V2, true) {
        None | Some(Finding::Torn { .. }) => Ok(scan.index),
        Some(f) => Err(format!("damage at byte {}: {} ({} intact after)", f.first().at, f.first().why, f.following())),
    }
}

/// Drops from `scan` every record at or after `t` and any gap there: an interrupted
/// truncation is zeroing them.
fn clip(scan: &mut Scan, base: Lsn, t: Lsn) {
    let keep = t.saturating_sub(base) as usize;
    if keep <= scan.index.len() {
        if keep < scan.index.len() {
            scan.end = scan.index[keep] as u64;
        }
        scan.index.truncate(keep);
        scan.gaps.clear();
        return;
    }
    scan.gaps.retain(|g| g.lsn < t);
    for g in &mut scan.gaps {
        if let Some(r) = &mut g.run {
            if r.first_lsn >= t {
                g.run = None;
            } else if r.first_lsn + r.offsets.len() as u64 > t {
                let k = (t - r.first_lsn) as usize;
                r.end = r.offsets[k] as u64;
                r.offsets.truncate(k);
            }
        }
    }
    // What follows the last kept run is being zeroed: not a gap.
    if scan.gaps.last().is_some_and(|g| g.run.is_none()) && scan.gaps.len() > 1 {
        scan.gaps.pop();
    }
}

/// Index entries for the hole `gap.lsn..upto` (its records are damaged).
fn push_hole(index: &mut Vec<u32>, holes: &mut Vec<(Range<Lsn>, u64)>, base: Lsn, gap: &Gap, upto: Lsn) {
    let from = (gap.lsn - base) as usize;
    index.resize(from, HOLE);
    index.resize((upto - base) as usize, HOLE);
    holes.push((gap.lsn..upto, gap.at));
}

/// When a salvaged segment was set aside whole, the previous one is extended by a
/// hole up to `next` so the chain check of the next segment passes.
fn hole_bridge(out: &mut [Arc<Segment>], next: Lsn) -> Result<()> {
    if let Some(p) = out.last() {
        let start = p.end_lsn();
        if next > start {
            // Holes are kept in a dense index: one opened from its index file is
            // indexed again record by record first.
            let dense = p.index.read().unwrap_or_else(|e| e.into_inner()).dense_offsets().is_some();
            if !dense {
                p.index.write().unwrap_or_else(|e| e.into_inner()).truncate(0, None);
                if let Some(last) = p.count().checked_sub(1) {
                    p.offset_of(p.base() + last)?;
                }
            }
            let mut idx = p.index.write().unwrap_or_else(|e| e.into_inner());
            let at = p.end.load(Ordering::Acquire);
            idx.push_holes(next - p.base());
            idx.holes.push((start..next, at));
            p.records.store(idx.len(), Ordering::Release);
        }
    }
    Ok(())
}

fn damage_text(first: &Gap, following: u64, later: usize, is_last: bool) -> String {
    let mut s = format!("record {} is damaged ({})", first.lsn, first.why);
    if following > 0 {
        s.push_str(&format!(", and {following} intact record(s) follow it in this segment"));
    } else if !is_last {
        s.push_str(" in a sealed segment");
    }
    if later > 0 {
        s.push_str(&format!(", and {later} later segment(s)"));
    }
    s
}

/// A cut of `file` at `at`: the bytes from there to the last non-zero one are copied
/// to `{path}.cut-{at}` (synced), then zeroed and persisted, so nothing stale after
/// the new end can ever be read as a record.
#[allow(clippy::too_many_arguments)]
fn cut(
    file: &SegFile,
    at: u64,
    lsns: Option<(Lsn, Lsn)>,
    what: &str,
    why: &str,
    apply: Apply,
    report: &mut RecoveryReport,
) -> Result<()> {
    let path = file.path();
    let extent = nonzero_extent(file, at)?;
    let bytes = extent.saturating_sub(at);
    // Named by the file's own offset (a slot of the single-file layout starts inside it).
    let abs = file.base() + at;
    let evidence = (bytes > 0).then(|| evidence_path(path, abs));
    if apply.changes() {
        if let Some(ev) = &evidence {
            keep_evidence(file, at, bytes, ev)?;
        }
        file.zero_from(at)?;
    }
    let lost = lsns.map_or_else(|| "no record".to_string(), lsn_span);
    report.repairs.push(format!(
        "{}: {what} at byte {abs} ({why}): cut there, {lost}; {bytes} bytes {}",
        path.display(),
        match &evidence {
            Some(ev) => format!("kept in {}", ev.display()),
            None => "(all zero)".into(),
        }
    ));
    report.dropped.push(Dropped { path: path.to_path_buf(), offset: abs, bytes, lsns, evidence, why: what.into() });
    Ok(())
}

/// `LSNs a..b`, or `LSNs a on` when the end is not known (`b` is `u64::MAX`).
pub fn lsn_span((a, b): (Lsn, Lsn)) -> String {
    if b == u64::MAX {
        format!("LSNs {a} on")
    } else {
        format!("LSNs {a}..{b}")
    }
}

/// `{segment}.cut-{offset}`, or with `.N` added if one exists already.
fn evidence_path(path: &Path, at: u64) -> PathBuf {
    let base = PathBuf::from(format!("{}.cut-{at}", path.display()));
    let mut p = base.clone();
    let mut n = 1;
    while p.exists() {
        p = PathBuf::from(format!("{}.{n}", base.display()));
        n += 1;
    }
    p
}

/// Copies `bytes` of `file` from `at` to `ev`, durably, before they are changed.
fn keep_evidence(file: &SegFile, at: u64, bytes: u64, ev: &Path) -> Result<()> {
    use std::io::Write;
    let mut out = fs::File::create(ev).ctx(ev, "create evidence file")?;
    let mut buf = vec![0u8; (bytes as usize).min(1 << 20)];
    let mut done = 0u64;
    while done < bytes {
        let n = ((bytes - done) as usize).min(buf.len());
        let got = file.read_at(&mut buf[..n], at + done)?;
        if got == 0 {
            break;
        }
        out.write_all(&buf[..got]).ctx(ev, "write evidence file")?;
        done += got as u64;
    }
    out.sync_all().ctx(ev, "fsync evidence file")?;
    sync_dir(ev.parent().unwrap_or(Path::new(".")))
}

/// Sets aside whole segments (newest first), so their bytes stay for an operator:
/// a segment file is renamed to `{segment}.cut-0`; a slot of the single-file layout
/// is copied to `log.data.cut-{offset}` and then freed. Then the removals are synced.
fn set_aside(store: &Store, segs: &[Found], apply: Apply, why: &str, report: &mut RecoveryReport) -> Result<()> {
    for (k, f) in segs.iter().enumerate().rev() {
        let file = f.open(true)?;
        let bytes = file.len().unwrap_or(0);
        let ev = evidence_path(&f.path, f.offset);
        if apply.changes() {
            if f.span == u64::MAX {
                crate::fsops::rename(&f.path, &ev).ctx(&f.path, "set aside segment")?;
            } else {
                keep_evidence(&file, 0, bytes, &ev)?;
                store.remove(&f.path, f.offset)?;
            }
        }
        let lsns = segs.get(k + 1).map(|n| (f.base, n.base));
        report.repairs.push(format!("{}: {why}: set aside as {}", label(f), ev.display()));
        report.dropped.push(Dropped {
            path: f.path.clone(),
            offset: f.offset,
            bytes,
            lsns,
            evidence: Some(ev),
            why: format!("segment set aside ({why})"),
        });
    }
    if apply.changes() && !segs.is_empty() {
        store.synced()?;
    }
    Ok(())
}

/// How a segment is named in a report: its file, or its slot in the data file.
fn label(f: &Found) -> String {
    if f.span == u64::MAX {
        f.path.display().to_string()
    } else {
        format!("{} (segment at byte {})", f.path.display(), f.offset)
    }
}

/// Slots of the single-file layout whose header is neither free nor valid. The one
/// after the newest segment, with nothing but zeros after its header, is a segment
/// whose creation a crash cut while its header was written (the slot is zeroed
/// durably before): freed again. Any other is damage: refused, or with
/// `PointInTime`/`SkipDamaged` set aside (copied to `log.data.cut-{offset}`, then
/// freed), which leaves a gap in the LSN chain between its neighbours that the chain
/// rule below then treats as that mode says (a hole, or the end of the log).
fn check_bad_slots(
    store: &Store,
    found: &[Found],
    bad: &[(u64, String)],
    mode: RecoveryMode,
    apply: Apply,
    report: &mut RecoveryReport,
) -> Result<()> {
    let Store::Slots { data, sup, .. } = store else { return Ok(()) };
    for (offset, why) in bad {
        let torn_creation = match found.last() {
            Some(last) => store.follows(last.offset, *offset),
            None => *offset == sup.offset(0),
        };
        let slot = SegFile::open_at(data, *offset, sup.slot, true)?;
        if torn_creation && nonzero_extent(&slot, HEADER_LEN as u64)? <= HEADER_LEN as u64 {
            if apply.changes() {
                store.remove(data, *offset)?;
            }
            report.repairs.push(format!(
                "{}: segment at byte {offset}: half-written header of a new segment ({why}): freed",
                data.display()
            ));
            continue;
        }
        if matches!(mode, RecoveryMode::PointInTime | RecoveryMode::SkipDamaged) && apply != Apply::ReadOnly {
            let f = Found { base: 0, path: data.clone(), offset: *offset, span: sup.slot };
            let bytes = nonzero_extent(&slot, 0)?;
            let ev = evidence_path(data, *offset);
            if apply.changes() {
                keep_evidence(&slot, 0, bytes, &ev)?;
                store.remove(data, *offset)?;
            }
            report.repairs.push(format!("{}: damaged header ({why}): set aside as {}", label(&f), ev.display()));
            report.dropped.push(Dropped {
                path: data.clone(),
                offset: *offset,
                bytes,
                lsns: None,
                evidence: Some(ev),
                why: format!("segment with a damaged header set aside ({why})"),
            });
            continue;
        }
        return Err(slot.corrupt(
            0,
            format!(
                "segment header damaged ({why}): the records of this segment cannot be placed without it; \
                 RecoveryMode::SkipDamaged keeps its LSNs as a hole, PointInTime drops it and what follows"
            ),
        ));
    }
    Ok(())
}
