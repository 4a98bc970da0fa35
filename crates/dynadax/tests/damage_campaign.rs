//! The damage campaign (issue 10): a log with sealed segments and a tail, every
//! record acknowledged, is damaged at random places in every file it keeps (single
//! byte flips, zeroed 4 KiB blocks, truncations), each case on a fresh copy. After
//! each: open for writing with the default options (sealed segments opened from their
//! index files, not scanned), read everything; then open scanning every sealed
//! segment with the default recovery, then with `SkipDamaged`, and read everything
//! after each. Every outcome must be one of:
//!
//! - refused, with an error naming the file, and no byte of it changed; or
//! - opened, with every acknowledged record present at its LSN, exact, or reported
//!   (a cut listed in the recovery report, a hole read as `Error::Damaged`; after an
//!   open that did not scan a sealed segment, also a read refused with an error
//!   naming the damaged file: that open reports damage when a record is read).
//!
//! Anything else is counted: a silent loss (a record gone and not reported), a
//! garbage record (bytes that were not written at that LSN), a panic, a refusal that
//! changed bytes or did not name the file. All must be 0. The summary line goes to
//! standard error and to `target/damage-campaign.txt`, which `scripts/test` prints.

mod common;
use common::*;
use dynadax::log::{Durability, Log, LogOptions, RecoveryMode, RecoveryReport, META_FILE, STATE_FILE};
use dynadax::Error;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const FLIPS: usize = 1000;
const ZEROED_BLOCKS: usize = 100;
const TRUNCATIONS: usize = 100;

fn opts(recovery: RecoveryMode, scan_sealed: bool) -> LogOptions {
    LogOptions {
        scan_sealed,
        segment_size: 64 << 10,
        max_record: 2048,
        durability: Durability::Each,
        recovery,
        // A small data file (16 segments), copied for every case.
        layout: match layout(64 << 10) {
            dynadax::log::Layout::SingleFile { .. } => {
                dynadax::log::Layout::SingleFile { capacity: dynadax::log::SUPER_LEN + 16 * (64 << 10) }
            }
            files => files,
        },
        ..LogOptions::default()
    }
}

fn rec(i: u64) -> Vec<u8> {
    pattern(1 + (i as usize * 131) % 400, i, 11)
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Flip,
    ZeroBlock,
    Truncate,
}

#[derive(Default, Debug)]
struct Tally {
    cases: usize,
    refused: usize,
    opened_intact: usize,
    opened_with_reported_losses: usize,
    /// Cases where the open from index files reported the damage on a read.
    found_on_read: usize,
    silent_losses: usize,
    garbage: usize,
    panics: usize,
    bad_refusals: usize,
    examples: Vec<String>,
}

impl Tally {
    fn bad(&mut self, what: String) {
        if self.examples.len() < 10 {
            self.examples.push(what);
        }
    }
}

/// The files of a log and their bytes (what a refused open must leave as it was).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .filter(|(n, _)| n != "LOCK" && n != STATE_FILE)
        .collect()
}

fn copy_dir(from: &Path, to: &Path, names: &[String]) {
    std::fs::create_dir(to).unwrap();
    for n in names {
        std::fs::copy(from.join(n), to.join(n)).unwrap();
    }
}

/// LSNs a recovery report says it lost (cuts, holes).
fn reported(rep: &RecoveryReport, into: &mut Vec<(u64, u64)>) {
    into.extend(rep.dropped.iter().filter_map(|d| d.lsns));
    into.extend(rep.holes.iter().map(|h| h.lsns));
}

/// Every acknowledged LSN below `n` reads back exact or is reported; nothing past
/// what was written reads. Returns whether anything was lost (reported).
/// With `on_read`, a read refused with an error naming a file of the log counts as
/// reported too (the open did not scan every sealed segment).
fn check(log: &Log, n: u64, lost: &[(u64, u64)], t: &mut Tally, case: &str, on_read: Option<&Path>) -> bool {
    let covered = |l: u64| lost.iter().any(|&(a, b)| a <= l && l < b);
    let names_file = |e: &Error| {
        matches!(e, Error::Corrupt { .. }) && on_read.is_some_and(|d| e.to_string().contains(&*d.to_string_lossy()))
    };
    let mut any_lost = false;
    let mut found = false;
    for lsn in 0..n {
        match log.read(lsn) {
            Ok(b) if b == rec(lsn) => {}
            Ok(_) => {
                t.garbage += 1;
                t.bad(format!("{case}: LSN {lsn} holds other bytes"));
            }
            Err(Error::Damaged { .. }) => any_lost = true,
            Err(_) if covered(lsn) => any_lost = true,
            Err(e) if names_file(&e) => found = true,
            Err(e) => {
                t.silent_losses += 1;
                t.bad(format!("{case}: LSN {lsn} lost, not reported: {e}"));
            }
        }
    }
    for lsn in n..log.next_lsn().min(n + 100) {
        if let Ok(_b) = log.read(lsn) {
            t.garbage += 1;
            t.bad(format!("{case}: LSN {lsn} was never written but reads"));
        }
    }
    // Iterators go on past holes and agree with reads.
    let mut seen = BTreeSet::new();
    for r in log.iter(0) {
        match r {
            Ok((l, b)) => {
                if l >= n || b != rec(l) {
                    t.garbage += 1;
                    t.bad(format!("{case}: iterator gave LSN {l} wrong"));
                }
                seen.insert(l);
            }
            Err(Error::Damaged { lsn, .. }) => {
                seen.insert(lsn);
            }
            Err(e) if names_file(&e) => found = true,
            Err(e) => {
                t.bad(format!("{case}: iterator error {e}"));
                t.silent_losses += 1;
                break;
            }
        }
    }
    if found {
        t.found_on_read += 1;
    }
    any_lost || found
}

fn run_case(dir: &Path, n: u64, case: &str, t: &mut Tally) {
    let mut lost = Vec::new();
    let mut refused = false;
    let mut any_lost = false;
    for (mode, scan) in [
        (RecoveryMode::TolerateTornTail, false),
        (RecoveryMode::TolerateTornTail, true),
        (RecoveryMode::SkipDamaged, true),
    ] {
        let before = snapshot(dir);
        match Log::open(dir, opts(mode, scan)) {
            Err(e) => {
                let msg = e.to_string();
                if !msg.contains(&*dir.to_string_lossy()) {
                    t.bad_refusals += 1;
                    t.bad(format!("{case}: {mode:?} refused without naming a file: {msg}"));
                }
                if snapshot(dir) != before {
                    t.bad_refusals += 1;
                    t.bad(format!("{case}: {mode:?} refused and changed bytes: {msg}"));
                }
                refused = true;
            }
            Ok(log) => {
                reported(&log.recovery_report(), &mut lost);
                let on_read = (!scan).then_some(dir);
                any_lost |= check(&log, n, &lost, t, &format!("{case} {mode:?} scan {scan}"), on_read);
            }
        }
    }
    if refused && !any_lost {
        t.refused += 1;
    } else if any_lost {
        t.opened_with_reported_losses += 1;
    } else {
        t.opened_intact += 1;
    }
}

#[test]
fn damage_campaign_loses_nothing_silently() {
    let seed: u64 = std::env::var("DYNADAX_CAMPAIGN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_da7a);
    let mut rng = Rng(seed | 1);
    let root = tmpfs_dir();
    let base = root.path().join("base");
    let log = Log::open(&base, opts(RecoveryMode::TolerateTornTail, false)).unwrap();
    let mut n = 0;
    while log.segments().unwrap().len() < 5 {
        assert_eq!(log.append(&rec(n)).unwrap(), n);
        n += 1;
    }
    // Half a tail more.
    for _ in 0..60 {
        log.append(&rec(n)).unwrap();
        n += 1;
    }
    let segs = log.segments().unwrap();
    assert!(segs.iter().filter(|s| s.sealed).count() >= 3);
    drop(log);
    // The files the log keeps (a closed log's preparer may still be removing the next
    // segment it had begun).
    let mut names: Vec<String> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".prepare"))
        .collect();
    names.sort();
    assert!(names.iter().any(|n| n == META_FILE) && names.iter().any(|n| n == STATE_FILE));
    let plan: Vec<Damage> = std::iter::repeat_n(Damage::Flip, FLIPS)
        .chain(std::iter::repeat_n(Damage::ZeroBlock, ZEROED_BLOCKS))
        .chain(std::iter::repeat_n(Damage::Truncate, TRUNCATIONS))
        .collect();
    let mut t = Tally::default();
    for (k, damage) in plan.iter().enumerate() {
        let dir = root.path().join(format!("case{k}"));
        copy_dir(&base, &dir, &names);
        let i = rng.below(names.len() as u64) as usize;
        let path = dir.join(&names[i]);
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len() as u64;
        let case = match damage {
            Damage::Flip => {
                let at = rng.below(len) as usize;
                let bit = 1u8 << rng.below(8);
                bytes[at] ^= bit;
                format!("case {k}: flip {bit:#04x} at {}:{at}", names[i])
            }
            Damage::ZeroBlock => {
                let at = (rng.below(len.div_ceil(4096)) * 4096) as usize;
                let end = (at + 4096).min(bytes.len());
                bytes[at..end].fill(0);
                format!("case {k}: zero {}:{at}..{end}", names[i])
            }
            Damage::Truncate => {
                let to = rng.below(len) as usize;
                bytes.truncate(to);
                format!("case {k}: truncate {} to {to}", names[i])
            }
        };
        std::fs::write(&path, &bytes).unwrap();
        t.cases += 1;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut local = Tally::default();
            run_case(&dir, n, &case, &mut local);
            local
        }));
        match r {
            Ok(l) => {
                t.refused += l.refused;
                t.opened_intact += l.opened_intact;
                t.opened_with_reported_losses += l.opened_with_reported_losses;
                t.found_on_read += l.found_on_read;
                t.silent_losses += l.silent_losses;
                t.garbage += l.garbage;
                t.bad_refusals += l.bad_refusals;
                for e in l.examples {
                    t.bad(e);
                }
            }
            Err(_) => {
                t.panics += 1;
                t.bad(format!("{case}: panicked"));
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let (tag, file) = if single_file() {
        (" (single-file layout)", "damage-campaign-single-file.txt")
    } else {
        ("", "damage-campaign.txt")
    };
    let line = format!(
        "damage campaign{tag}: {} cases ({FLIPS} byte flips, {ZEROED_BLOCKS} zeroed 4 KiB blocks, {TRUNCATIONS} truncations \
         over {} files, {n} records, seed {seed:#x}): {} refused naming the file, {} opened with every record, {} opened \
         with every lost record reported ({} of them, opened from the index files, on a read); {} silent losses, {} garbage records, {} panics, {} bad refusals",
        t.cases,
        names.len(),
        t.refused,
        t.opened_intact,
        t.opened_with_reported_losses,
        t.found_on_read,
        t.silent_losses,
        t.garbage,
        t.panics,
        t.bad_refusals
    );
    eprintln!("{line}");
    let _ = std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("..").join(file), format!("{line}\n"));
    assert!(
        t.silent_losses + t.garbage + t.panics + t.bad_refusals == 0,
        "{line}\nfirst problems:\n{}",
        t.examples.join("\n")
    );
}
