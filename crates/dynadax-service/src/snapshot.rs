//! Snapshots of the state machine, which copy nothing.
//!
//! The applied log *is* the state, so a snapshot is the applied state at a Raft log
//! id (length, membership, deduplication table: [`Applied`]) plus the applied log's
//! records `first..applied.next`. Building one is a checkpoint and a small file
//! (`DIR/snapshot`); sending one streams those records out of the applied log, in
//! frames; a follower appends them as they arrive to a new applied log beside its
//! own (`DIR/applied.new`) and swaps it in once all are there. Neither side holds
//! the records in memory, whatever the log's size.
//!
//! The invariant that makes this sound: **a node's snapshot's records are in its
//! applied log.** The applied log only grows, and an install replaces the log and
//! the snapshot file together (the file is written after the swap; an open that
//! finds a snapshot whose records are not there, after a crash between the two,
//! drops the snapshot, and openraft builds or receives another). Records at an index
//! are the same on every node, so reading them later is reading the snapshot.
//!
//! The wire (one HTTP body): frames of `[length: u32 LE][bytes]`. The network puts
//! its own frame first (vote and meta); then [`SNAPSHOT_FORMAT`] and the head
//! (`(Applied, first)` in postcard) in one frame, then one frame per record, in
//! order, `applied.next - first` of them.

use crate::machine::{Applied, WeakStateMachine};
use crate::types::TypeConfig;
use dynadax::log::{Log, LogOptions};
use openraft::alias::SnapshotMetaOf;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

type C = TypeConfig;

/// Format byte of a snapshot's head frame and of the snapshot file.
const SNAPSHOT_FORMAT: u8 = 3;
/// Largest frame accepted: a record and its header, or a head with a large table.
const MAX_FRAME: usize = 256 << 20;
/// Records are appended to the new log in batches of about this many bytes.
const BATCH_BYTES: usize = 4 << 20;

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// A snapshot's data: its applied state and where its records are.
pub struct SnapshotData {
    pub(crate) applied: Applied,
    /// The first record; the last is `applied.next - 1`.
    pub(crate) first: u64,
    pub(crate) source: Source,
}

pub(crate) enum Source {
    /// In this node's applied log (a snapshot it built, or the one it holds).
    Log(WeakStateMachine),
    /// Received whole into a new applied log in this directory, not swapped in yet.
    Received(PathBuf),
}

impl SnapshotData {
    /// How many records it holds.
    pub(crate) fn records(&self) -> u64 {
        self.applied.next.saturating_sub(self.first)
    }

    /// Writes the snapshot's frames (head, then records) as chunks of about `chunk`
    /// bytes to `out`, which returns false to stop (the receiver went away). Blocks:
    /// it reads the applied log.
    pub(crate) fn encode(&self, chunk: usize, mut out: impl FnMut(Vec<u8>) -> bool) -> io::Result<()> {
        let Source::Log(sm) = &self.source else {
            return Err(other("snapshot: a received snapshot is installed, not sent"));
        };
        let sm = sm.get().ok_or_else(|| other("snapshot: the node is stopping"))?;
        let mut buf = Vec::with_capacity(chunk + 64);
        let mut head = vec![SNAPSHOT_FORMAT];
        postcard::to_io(&(&self.applied, self.first), &mut head).map_err(other)?;
        put_frame(&mut buf, &head);
        let mut next = self.first;
        while next < self.applied.next {
            let records = sm.read_raw(next, self.applied.next, chunk)?;
            if records.is_empty() {
                return Err(other(format!(
                    "snapshot: record {next} of {}..{} is not in the applied log",
                    self.first, self.applied.next
                )));
            }
            for r in &records {
                put_frame(&mut buf, r);
                if buf.len() >= chunk && !out(std::mem::replace(&mut buf, Vec::with_capacity(chunk + 64))) {
                    return Ok(());
                }
            }
            next += records.len() as u64;
        }
        if !buf.is_empty() {
            out(buf);
        }
        Ok(())
    }
}

/// Appends a frame holding `bytes` to `out`.
pub(crate) fn put_frame(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The next whole frame at `buf[*at..]`, moving `at` past it; `None` if it is not all
/// there yet.
pub(crate) fn take_frame<'a>(buf: &'a [u8], at: &mut usize) -> io::Result<Option<&'a [u8]>> {
    let rest = &buf[*at..];
    let Some(len) = rest.get(..4) else { return Ok(None) };
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    if len > MAX_FRAME {
        return Err(other(format!("snapshot: a frame of {len} bytes (the limit is {MAX_FRAME})")));
    }
    match rest.get(4..4 + len) {
        Some(f) => {
            *at += 4 + len;
            Ok(Some(f))
        }
        None => Ok(None),
    }
}

/// Receives a snapshot's frames into a new applied log in `dir` (`DIR/applied.new`).
/// Feed it the bytes as they come ([`SnapshotWriter::feed`], blocking), then
/// [`SnapshotWriter::finish`].
pub(crate) struct SnapshotWriter {
    dir: PathBuf,
    opts: LogOptions,
    /// Bytes of a frame not complete yet.
    pending: Vec<u8>,
    /// Records parsed, not appended yet.
    batch: Vec<Vec<u8>>,
    batch_bytes: usize,
    /// The head, once read, and the log it opened.
    head: Option<(Applied, u64, Log)>,
    appended: u64,
}

impl SnapshotWriter {
    /// A writer into `dir`, which is removed first (what an earlier, cut receive left).
    pub(crate) fn new(dir: PathBuf, opts: LogOptions) -> io::Result<SnapshotWriter> {
        remove_dir(&dir)?;
        Ok(SnapshotWriter {
            dir,
            opts,
            pending: Vec::new(),
            batch: Vec::new(),
            batch_bytes: 0,
            head: None,
            appended: 0,
        })
    }

    /// Takes the next bytes of the snapshot's frames.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(bytes);
        let pending = std::mem::take(&mut self.pending);
        let mut at = 0;
        while let Some(frame) = take_frame(&pending, &mut at)? {
            if self.head.is_none() {
                let (applied, first): (Applied, u64) = match frame.split_first() {
                    Some((&SNAPSHOT_FORMAT, b)) => {
                        postcard::from_bytes(b).map_err(|e| other(format!("snapshot: {e}")))?
                    }
                    _ => return Err(other("snapshot: not a dynadax-service snapshot (format byte)")),
                };
                if first > applied.next {
                    return Err(other(format!("snapshot: records from {first} cannot end at {}", applied.next)));
                }
                let log = Log::open(&self.dir, LogOptions { first_lsn: first, ..self.opts.clone() }).map_err(other)?;
                self.head = Some((applied, first, log));
                continue;
            }
            self.batch_bytes += frame.len();
            self.batch.push(frame.to_vec());
            if self.batch_bytes >= BATCH_BYTES {
                self.flush_batch()?;
            }
        }
        self.pending = pending[at..].to_vec();
        Ok(())
    }

    fn flush_batch(&mut self) -> io::Result<()> {
        let Some((applied, first, log)) = &self.head else { return Ok(()) };
        let want = applied.next - first;
        if self.appended + self.batch.len() as u64 > want {
            return Err(other(format!("snapshot: more than the {want} records its head announces")));
        }
        let recs: Vec<&[u8]> = self.batch.iter().map(|r| r.as_slice()).collect();
        log.append_batch(&recs).map_err(other)?;
        self.appended += recs.len() as u64;
        self.batch.clear();
        self.batch_bytes = 0;
        Ok(())
    }

    /// Checks every announced record came, makes the new log durable with the
    /// snapshot's applied state as its checkpoint, and returns the data to install.
    pub(crate) fn finish(mut self) -> io::Result<SnapshotData> {
        self.flush_batch()?;
        let Some((applied, first, log)) = self.head.take() else {
            return Err(other("snapshot: the body ended before its head"));
        };
        let want = applied.next - first;
        if self.appended != want || !self.pending.is_empty() {
            return Err(other(format!(
                "snapshot: {} of {want} records received{}",
                self.appended,
                if self.pending.is_empty() { "" } else { ", and a cut frame" }
            )));
        }
        log.sync().map_err(other)?;
        log.set_metadata(&crate::machine::encode_applied(&applied)).map_err(other)?;
        drop(log);
        Ok(SnapshotData { applied, first, source: Source::Received(self.dir) })
    }
}

pub(crate) fn remove_dir(d: &Path) -> io::Result<()> {
    match fs::remove_dir_all(d) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(other(format!("{}: {e}", d.display()))),
        _ => Ok(()),
    }
}

pub(crate) fn sync_dir(d: &Path) -> io::Result<()> {
    fs::File::open(d).and_then(|f| f.sync_all()).map_err(|e| other(format!("{}: {e}", d.display())))
}

/// What `DIR/snapshot` holds: a snapshot's meta, applied state and first record.
pub(crate) type SnapshotFile = (SnapshotMetaOf<C>, Applied, u64);

/// Writes `DIR/snapshot`, replacing the last one atomically.
pub(crate) fn write_file(dir: &Path, snap: &SnapshotFile) -> io::Result<()> {
    let tmp = dir.join("snapshot.tmp");
    let path = dir.join("snapshot");
    let mut bytes = vec![SNAPSHOT_FORMAT];
    postcard::to_io(snap, &mut bytes).map_err(other)?;
    let mut f = fs::File::create(&tmp).map_err(|e| other(format!("{}: {e}", tmp.display())))?;
    f.write_all(&bytes).and_then(|_| f.sync_all()).map_err(|e| other(format!("{}: {e}", tmp.display())))?;
    fs::rename(&tmp, &path).map_err(|e| other(format!("{}: {e}", path.display())))?;
    sync_dir(dir)
}

/// Reads `DIR/snapshot`, if there is one.
pub(crate) fn read_file(dir: &Path) -> dynadax::Result<Option<SnapshotFile>> {
    let path = dir.join("snapshot");
    let corrupt = |why: String| dynadax::Error::Corrupt { path: path.clone(), what: "snapshot", why, offset: None };
    match fs::read(&path) {
        Ok(b) => match b.split_first() {
            Some((&SNAPSHOT_FORMAT, b)) => postcard::from_bytes(b).map(Some).map_err(|e| corrupt(e.to_string())),
            Some((f, _)) => Err(corrupt(format!("unknown format {f}"))),
            None => Err(corrupt("empty".into())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(dynadax::Error::Io { path: path.clone(), op: "read", source: e }),
    }
}
