//! Crash states of the whole log, from a trace of the real code. The real `Log` runs
//! a sequence of operations (appends, batches, seals, purges, suffix truncations
//! into the tail and into a sealed segment, a restart past the end, close and
//! reopen) on tmpfs with the `crash-trace` feature on, which records every write,
//! persist, size change, create, rename, removal and sync, in order, with its bytes.
//! A model file system replays the trace; at every point in it, a crash may leave
//! what was made durable plus any part of what was not: any subset of the unsynced
//! 8-byte pieces of each file (persistent memory's failure atomicity), its synced or
//! its latest size, and any prefix of the directory operations since the last
//! directory sync. Several such states at every point are written out as real
//! directories and opened with the real `Log::open`, which must never refuse one,
//! and must show every record acknowledged by then (exact) and nothing that was not
//! written at its LSN. Needs `--features crash-trace`. The count goes to standard
//! error and `target/crash-model-log.txt`, which `scripts/test` prints.
#![cfg(feature = "crash-trace")]

mod common;
use dynadax::log::{Durability, Log, LogOptions, TailMode};
use dynadax::trace::{self, Event};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

const PIECE: usize = 8;

/// The trace is one per process: the tests of this file take turns.
static TRACING: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Clone, Default)]
struct Inode {
    /// Durable bytes and size.
    dur: Vec<u8>,
    dur_len: usize,
    /// Latest bytes and size (what a process reads).
    cur: Vec<u8>,
    cur_len: usize,
}

impl Inode {
    fn write(&mut self, off: usize, data: &[u8]) {
        let end = off + data.len();
        if self.cur.len() < end {
            self.cur.resize(end, 0);
        }
        self.cur[off..end].copy_from_slice(data);
        self.cur_len = self.cur_len.max(end);
    }
    fn set_len(&mut self, len: usize) {
        self.cur.resize(len, 0);
        self.cur_len = len;
    }
    fn persist(&mut self, off: usize, len: usize) {
        let (a, b) = (off / PIECE * PIECE, (off + len).div_ceil(PIECE) * PIECE);
        self.dur.resize(self.cur.len().max(self.dur.len()), 0);
        let b = b.min(self.cur.len());
        if a < b {
            self.dur[a..b].copy_from_slice(&self.cur[a..b]);
        }
        self.dur_len = self.cur_len;
    }
    fn sync(&mut self) {
        self.dur = self.cur.clone();
        self.dur_len = self.cur_len;
    }
    /// The file as a crash may leave it: durable bytes, the pieces `keep` picks of
    /// those not yet durable, and the durable or the latest size.
    fn crash(&self, keep: &mut dyn FnMut() -> bool, latest_len: bool) -> Vec<u8> {
        let len = if latest_len { self.cur_len } else { self.dur_len };
        let mut img = self.dur.clone();
        img.resize(len, 0);
        let n = len.min(self.cur.len());
        let mut at = 0;
        while at < n {
            let end = (at + PIECE).min(n);
            let durable = img.get(at..end);
            if durable != Some(&self.cur[at..end]) && keep() {
                img[at..end].copy_from_slice(&self.cur[at..end]);
            }
            at = end;
        }
        img
    }
}

#[derive(Clone)]
enum DirOp {
    Link(String, usize),
    Rename(String, String),
    Unlink(String),
}

/// The model file system of one directory.
#[derive(Clone, Default)]
struct Model {
    inodes: Vec<Inode>,
    dur_dir: BTreeMap<String, usize>,
    cur_dir: BTreeMap<String, usize>,
    pending: Vec<DirOp>,
}

impl Model {
    fn name(&self, dir: &Path, p: &Path) -> Option<String> {
        (p.parent() == Some(dir)).then(|| p.file_name().unwrap().to_string_lossy().into_owned())
    }

    fn apply(&mut self, dir: &Path, e: &Event) {
        let ino = |m: &Model, p: &Path| m.name(dir, p).and_then(|n| m.cur_dir.get(&n).copied());
        match e {
            Event::Create(p) => {
                let Some(n) = self.name(dir, p) else { return };
                self.inodes.push(Inode::default());
                let i = self.inodes.len() - 1;
                self.cur_dir.insert(n.clone(), i);
                self.pending.push(DirOp::Link(n, i));
            }
            Event::Write(p, off, data) => {
                if let Some(i) = ino(self, p) {
                    self.inodes[i].write(*off as usize, data);
                }
            }
            Event::SetLen(p, len) => {
                if let Some(i) = ino(self, p) {
                    self.inodes[i].set_len(*len as usize);
                }
            }
            Event::Persist(p, off, len) => {
                if let Some(i) = ino(self, p) {
                    self.inodes[i].persist(*off as usize, *len as usize);
                }
            }
            Event::SyncFile(p) => {
                if let Some(i) = ino(self, p) {
                    self.inodes[i].sync();
                }
            }
            Event::Rename(a, b) => {
                let (Some(na), Some(nb)) = (self.name(dir, a), self.name(dir, b)) else { return };
                if let Some(i) = self.cur_dir.remove(&na) {
                    self.cur_dir.insert(nb.clone(), i);
                    self.pending.push(DirOp::Rename(na, nb));
                }
            }
            Event::Remove(p) => {
                let Some(n) = self.name(dir, p) else { return };
                if self.cur_dir.remove(&n).is_some() {
                    self.pending.push(DirOp::Unlink(n));
                }
            }
            Event::SyncDir(p) => {
                if p == dir {
                    self.dur_dir = self.cur_dir.clone();
                    self.pending.clear();
                }
            }
            Event::Mark(_) => {}
        }
    }

    /// A crash state: the durable entries and the first `ops` pending directory
    /// operations, each file as `keep` and `latest_len` pick.
    fn crash(
        &self,
        ops: usize,
        keep: &mut dyn FnMut() -> bool,
        latest_len: &mut dyn FnMut() -> bool,
    ) -> BTreeMap<String, Vec<u8>> {
        let mut dir = self.dur_dir.clone();
        for op in &self.pending[..ops] {
            match op {
                DirOp::Link(n, i) => {
                    dir.insert(n.clone(), *i);
                }
                DirOp::Rename(a, b) => {
                    if let Some(i) = dir.remove(a) {
                        dir.insert(b.clone(), i);
                    }
                }
                DirOp::Unlink(n) => {
                    dir.remove(n);
                }
            }
        }
        dir.into_iter().map(|(n, i)| (n, self.inodes[i].crash(keep, latest_len()))).collect()
    }
}

/// What the log must hold at a point of the trace: records every state around it
/// requires (`must`), and what it may also show (`may`).
#[derive(Clone, Default)]
struct Expect {
    must: BTreeMap<u64, Vec<u8>>,
    /// Every content each LSN may show (an LSN truncated and written again has two).
    may: BTreeMap<u64, Vec<Vec<u8>>>,
}

/// The test driver: runs operations on the real log, marking the trace between them,
/// and keeps what the log holds logically after each.
struct Driver {
    log: Option<Log>,
    dir: PathBuf,
    opts: LogOptions,
    state: BTreeMap<u64, Vec<u8>>,
    /// Records written during the current operation and not acknowledged by it.
    unacked: BTreeMap<u64, Vec<u8>>,
    /// Per mark: what the operation that follows it leaves the log allowed to hold.
    spans: Vec<Expect>,
    n: u64,
}

impl Driver {
    fn log(&self) -> &Log {
        self.log.as_ref().unwrap()
    }
    fn rec(&mut self, lsn: u64) -> Vec<u8> {
        self.n += 1;
        format!("r{lsn}-{}-{}", self.n, "z".repeat((lsn as usize * 53 + self.n as usize) % 700)).into_bytes()
    }
    /// Runs `op`, which changes the logical state as it returns. While it runs, a
    /// crash leaves the state before or after it, or a mix: what both have is
    /// required, what either has (or it wrote unacknowledged) is allowed.
    fn step(&mut self, op: impl FnOnce(&mut Driver)) {
        let before = self.state.clone();
        trace::mark(self.spans.len() as u64);
        op(self);
        let after = &self.state;
        let mut e = Expect {
            must: before.iter().filter(|(l, b)| after.get(l) == Some(b)).map(|(l, b)| (*l, b.clone())).collect(),
            ..Expect::default()
        };
        for (l, b) in before.iter().chain(after.iter()).chain(self.unacked.iter()) {
            let v = e.may.entry(*l).or_default();
            if !v.contains(b) {
                v.push(b.clone());
            }
        }
        self.unacked.clear();
        self.spans.push(e);
    }
    fn append(&mut self, k: usize) {
        self.step(|d| {
            for _ in 0..k {
                let lsn = d.log().next_lsn();
                let r = d.rec(lsn);
                assert_eq!(d.log().append(&r).unwrap(), lsn);
                d.state.insert(lsn, r);
            }
        });
    }
    fn batch(&mut self, k: usize) {
        self.step(|d| {
            let first = d.log().next_lsn();
            let recs: Vec<Vec<u8>> = (0..k as u64).map(|i| d.rec(first + i)).collect();
            let refs: Vec<&[u8]> = recs.iter().map(|r| &r[..]).collect();
            assert_eq!(d.log().append_batch(&refs).unwrap(), first..first + k as u64);
            for (i, r) in recs.into_iter().enumerate() {
                d.state.insert(first + i as u64, r);
            }
        });
    }
    fn reopen(&mut self) {
        self.step(|d| {
            drop(d.log.take());
            d.log = Some(Log::open(&d.dir, d.opts.clone()).unwrap());
        });
    }
}

/// Every record a recovered log shows is one written at its LSN; every one it must
/// show is there.
fn check(log: &Log, e: &Expect) -> Result<(), String> {
    for (lsn, want) in &e.must {
        match log.read(*lsn) {
            Ok(b) if &b == want => {}
            Ok(_) => return Err(format!("acknowledged LSN {lsn} holds other bytes")),
            Err(err) => return Err(format!("acknowledged LSN {lsn} lost: {err}")),
        }
    }
    for lsn in log.first_lsn()..log.next_lsn() {
        match log.read(lsn) {
            Ok(b) => {
                if !e.may.get(&lsn).is_some_and(|v| v.contains(&b)) {
                    return Err(format!("LSN {lsn} holds bytes never written there"));
                }
            }
            Err(err) => return Err(format!("LSN {lsn}: {err}")),
        }
    }
    Ok(())
}

fn run(tail_mode: TailMode, label: &str) -> (usize, usize) {
    let root = common::tmpfs_dir();
    let dir = root.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    let opts = LogOptions {
        segment_size: 16 << 10,
        max_record: 2048,
        durability: Durability::Each,
        tail_mode,
        // The single-file layout (DYNADAX_TEST_LAYOUT): a data file of 32 segments,
        // small enough to write out for every crash state.
        layout: if common::single_file() {
            dynadax::log::Layout::SingleFile { capacity: dynadax::log::SUPER_LEN + 32 * (16 << 10) }
        } else {
            dynadax::log::Layout::Files
        },
        ..LogOptions::default()
    };
    trace::start(root.path());
    let mut d = Driver {
        log: None,
        dir: dir.clone(),
        opts: opts.clone(),
        state: BTreeMap::new(),
        unacked: BTreeMap::new(),
        spans: Vec::new(),
        n: 0,
    };
    d.step(|d| d.log = Some(Log::open(&d.dir, d.opts.clone()).unwrap()));
    d.append(30);
    d.batch(12);
    d.step(|d| d.log().seal().unwrap());
    d.append(25);
    d.batch(30); // spans a seal
    d.step(|d| {
        let p = d.log().segments().unwrap()[2].first_lsn;
        d.log().purge_before(p).unwrap();
        d.state.retain(|l, _| *l >= p);
    });
    d.append(10);
    d.step(|d| {
        // Into the tail.
        let t = d.log().next_lsn() - 4;
        d.log().truncate_from(t).unwrap();
        d.state.retain(|l, _| *l < t);
    });
    d.append(8);
    while d.log().segments().unwrap().len() < 3 {
        d.append(10);
    }
    d.step(|d| {
        // Into a sealed segment.
        let segs = d.log().segments().unwrap();
        let t = segs[segs.len() - 2].first_lsn + 2;
        d.log().truncate_from(t).unwrap();
        d.state.retain(|l, _| *l < t);
    });
    d.append(12);
    d.reopen();
    d.append(6);
    d.step(|d| {
        // Past the end: a restart.
        let l = d.log().next_lsn() + 1000;
        d.log().purge_before(l).unwrap();
        d.state.clear();
    });
    d.append(20);
    d.step(|d| {
        // Appended, never persisted, then the writer is gone (as after kill -9): the
        // next writer adopts them.
        drop(d.log.take());
        let none = Log::open(&d.dir, LogOptions { durability: Durability::None, ..d.opts.clone() }).unwrap();
        for _ in 0..15 {
            let lsn = none.next_lsn();
            let r = d.rec(lsn);
            none.append(&r).unwrap();
            d.unacked.insert(lsn, r);
        }
        let adopted = d.unacked.clone();
        drop(none);
        // The next writer: it persists what it adopts before it returns.
        d.log = Some(Log::open(&d.dir, d.opts.clone()).unwrap());
        d.state.extend(adopted);
    });
    d.append(10);
    d.step(|_| {});
    drop(d.log.take());
    let events = trace::stop();

    // Replay, checking crash states at every point.
    let mut model = Model::default();
    let mut span = 0usize;
    let mut rng = common::Rng(0x9e37_79b9_7f4a_7c15);
    let (mut images, mut points) = (0usize, 0usize);
    let scratch = common::tmpfs_dir();
    let opts_check = LogOptions { durability: Durability::Each, ..opts };
    let mut seen: HashSet<u64> = HashSet::new();
    for (k, ev) in events.iter().enumerate() {
        if let Event::Mark(m) = ev {
            span = *m as usize;
            continue;
        }
        model.apply(&dir, ev);
        points += 1;
        let pending = model.pending.len();
        // The durable state only, everything, and random mixes.
        let variants = 16;
        for v in 0..variants {
            let (ops, keep_all, keep_none) = match v {
                0 => (0, false, true),
                1 => (pending, true, false),
                _ => (rng.below(pending as u64 + 1) as usize, false, false),
            };
            let mut r2 = common::Rng(rng.0 ^ v as u64);
            let img = model.crash(ops, &mut || keep_all || (!keep_none && r2.bit()), &mut || {
                keep_all || (!keep_none && rng.bit())
            });
            // The same state twice need not be opened twice.
            let h = {
                use std::hash::{Hash, Hasher};
                let mut s = std::collections::hash_map::DefaultHasher::new();
                (span, &img).hash(&mut s);
                s.finish()
            };
            if !seen.insert(h) {
                continue;
            }
            let at = scratch.path().join(format!("i{images}"));
            std::fs::create_dir(&at).unwrap();
            for (name, bytes) in &img {
                std::fs::write(at.join(name), bytes).unwrap();
            }
            images += 1;
            let what = format!("{label}: event {k} ({ev:?}), span {span}, variant {v}");
            let log = Log::open(&at, opts_check.clone()).unwrap_or_else(|e| {
                let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("crash-model-failed");
                let _ = std::fs::remove_dir_all(&keep);
                std::fs::create_dir_all(&keep).unwrap();
                for (name, bytes) in &img {
                    std::fs::write(keep.join(name), bytes).unwrap();
                }
                let from = events[..k].iter().rposition(|e| matches!(e, Event::Mark(_))).unwrap_or(0);
                let recent: Vec<String> = events[from..=k]
                    .iter()
                    .map(|e| match e {
                        Event::Write(p, o, d) => format!("Write({}, {o}, {} bytes)", p.display(), d.len()),
                        e => format!("{e:?}"),
                    })
                    .collect();
                panic!("{what}: a crash state was refused: {e}\nevents of this span so far:\n{}", recent.join("\n"))
            });
            if let Err(why) = check(&log, &d.spans[span]) {
                panic!("{what}: {why}\n{:?}", log.recovery_report());
            }
            drop(log);
            std::fs::remove_dir_all(&at).unwrap();
        }
    }
    (points, images)
}

#[test]
fn every_crash_state_of_every_log_operation_recovers() {
    let _one = TRACING.lock().unwrap_or_else(|e| e.into_inner());
    let mut lines = Vec::new();
    for (mode, label) in [(TailMode::Direct, "direct tail"), (TailMode::Cached, "cached tail")] {
        let (points, images) = run(mode, label);
        assert!(points > 300 && images > 1000, "{label}: {points} points, {images} images");
        lines.push(format!("{label}: {images} crash states at {points} points"));
    }
    let (tag, file) = if common::single_file() {
        (", single-file layout", "crash-model-log-single-file.txt")
    } else {
        ("", "crash-model-log.txt")
    };
    let line = format!(
        "crash model (whole log{tag}, real code traced: appends, batches, seals, purges, truncations, restart, \
         reopen after a killed writer): {}; every one recovered, 0 acknowledged records lost, 0 garbage",
        lines.join(", ")
    );
    eprintln!("{line}");
    let _ = std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("..").join(file), format!("{line}\n"));
}

/// Review (issue 9): the parent directory was not fsynced after the directory of a
/// new log was created, so a crash could lose the whole log's entry. The trace shows
/// the sync of the parent after the creation and before the first segment exists.
#[test]
fn a_new_logs_directory_entry_is_made_durable_first() {
    let _one = TRACING.lock().unwrap_or_else(|e| e.into_inner());
    let root = common::tmpfs_dir();
    let dir = root.path().join("new-log");
    trace::start(root.path());
    let log =
        Log::open(&dir, LogOptions { segment_size: 16 << 10, max_record: 1024, ..LogOptions::default() }).unwrap();
    log.append(b"x").unwrap();
    drop(log);
    let events = trace::stop();
    let parent_sync = events.iter().position(|e| matches!(e, Event::SyncDir(p) if p == root.path()));
    let first_segment =
        events.iter().position(|e| matches!(e, Event::Rename(_, to) if to.extension().is_some_and(|x| x == "dlog")));
    assert!(parent_sync.is_some(), "the parent directory was never synced: {events:?}");
    assert!(parent_sync < first_segment, "the parent was synced after the first segment was named");
}
