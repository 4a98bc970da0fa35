//! [`StateMachine`]: openraft's state machine, which is the replicated log itself.
//!
//! Each committed client append that is not a duplicate becomes the next record of a
//! second dynadax log, the *applied log* (`DIR/applied`). Apply order is Raft order,
//! so record `i` is the same on every node: `i` is the record's index in the
//! replicated log, what a client is told.
//!
//! Each applied record is self-describing: `RECORD_FORMAT`, then a [`Header`] in
//! postcard (the Raft log id of its entry, the client id, its seq and acked), then the
//! client's bytes. The applied state (last applied log id, membership,
//! deduplication table, and the applied log's length it covers) is a *checkpoint* in
//! the applied log's metadata record, written after a `sync` of the records it
//! covers. A restart reads the checkpoint and replays the headers of the records
//! after it, so the state it rebuilds is exactly the one the records say: it can
//! never claim an entry whose record is missing (which would skip it) nor miss one
//! whose record is there (which would apply it twice). Records lost with an unsynced
//! page cache are simply applied again from the Raft log, to the same indexes:
//! openraft purges its log only below a snapshot, and a snapshot is built from synced
//! records.

use crate::snapshot::{self, remove_dir, sync_dir, SnapshotData, SnapshotFile, SnapshotWriter, Source};
use crate::types::{Records, Request, Response, TypeConfig};
use dynadax::log::{Durability, Log, LogOptions};
use futures_util::{Stream, TryStreamExt};
use openraft::alias::{EntryOf, LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

type C = TypeConfig;

/// Format byte of an applied record.
const RECORD_FORMAT: u8 = 1;
/// Format byte of the checkpoint in the applied log's metadata record.
const CHECKPOINT_FORMAT: u8 = 2;
/// Bytes of header an applied record may carry besides the client's bytes (a log id
/// and three varints: well under this).
pub(crate) const HEADER_MAX: usize = 64;
/// Answers kept per client at most, whatever it acknowledges: bounds the table for a
/// client that never moves `acked`.
const WINDOW_MAX: usize = 1 << 16;
/// A client whose last applied append is this many records back is forgotten: its
/// window is dropped (checked every `EXPIRY_CHECK` records), so clients that never
/// come back do not grow the table for ever. Counted in records, not time, so every
/// node and every replay forgets at the same point. 4 Mi records is far more than a
/// client's retry deadline covers at any rate the service reaches.
const CLIENT_EXPIRY: u64 = if cfg!(test) { 1 << 10 } else { 1 << 22 };
const EXPIRY_CHECK: u64 = if cfg!(test) { 1 << 6 } else { 1 << 12 };
/// A checkpoint is written after this many applied records, or this long after the
/// last one if anything was applied meanwhile: it bounds the replay at restart.
const CHECKPOINT_RECORDS: u64 = 50_000;
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);

/// The header of an applied record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    log_id: LogIdOf<C>,
    client: u64,
    seq: u64,
    acked: u64,
}

/// What one client has been answered, for deduplication.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Window {
    /// Every seq below this has been answered (the client said so).
    acked: u64,
    /// seq -> index of the applied requests at or above `acked`.
    answers: BTreeMap<u64, u64>,
    /// The index of its last applied append, for expiry.
    last: u64,
}

/// The applied state: what a checkpoint and a snapshot hold besides the records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Applied {
    /// The applied log's length this state covers: its next LSN.
    pub(crate) next: u64,
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    clients: BTreeMap<u64, Window>,
}

impl Applied {
    /// Applies request `r` of entry `log_id`; returns the answer and, unless it is a
    /// duplicate, the index its record takes. Deterministic: every node computes the
    /// same from the same entries.
    fn apply(&mut self, r: &Request) -> (Response, bool) {
        if r.acked > 0 && !self.clients.contains_key(&r.client) {
            // It had appends answered, so it was known: its window expired, and
            // whether this one was applied already cannot be told. Never twice.
            return (Response { index: None, duplicate: true }, false);
        }
        let w = self.clients.entry(r.client).or_default();
        if r.acked > w.acked {
            w.acked = r.acked;
            w.answers = w.answers.split_off(&r.acked);
        }
        if let Some(&index) = w.answers.get(&r.seq) {
            return (Response { index: Some(index), duplicate: true }, false);
        }
        if r.seq < w.acked {
            return (Response { index: None, duplicate: true }, false);
        }
        let index = self.next;
        self.next += 1;
        w.answers.insert(r.seq, index);
        w.last = index;
        if w.answers.len() > WINDOW_MAX {
            w.answers.pop_first();
        }
        if self.next.is_multiple_of(EXPIRY_CHECK) {
            let horizon = self.next.saturating_sub(CLIENT_EXPIRY);
            self.clients.retain(|_, w| w.last >= horizon);
        }
        (Response { index: Some(index), duplicate: false }, true)
    }
}

/// Where the applied log is, and the progress it publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// The Raft index of the last applied entry.
    pub raft_applied: Option<u64>,
    /// One past the last record of the applied log: records `0..next` can be read.
    pub next: u64,
}

/// The state machine: the applied log in `DIR/applied`, its last snapshot in
/// `DIR/snapshot`. Cheap to clone; clones share one state.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

/// A state machine held weakly (by a snapshot being sent: it must not keep a
/// stopped node's logs open).
pub(crate) struct WeakStateMachine(std::sync::Weak<Shared>);

impl WeakStateMachine {
    pub(crate) fn get(&self) -> Option<StateMachine> {
        self.0.upgrade().map(|shared| StateMachine { shared })
    }
}

struct Shared {
    dir: PathBuf,
    opts: LogOptions,
    state: Mutex<State>,
    progress: watch::Sender<Progress>,
    /// Held by a snapshot being received until it is installed: one at a time (they
    /// share `DIR/applied.new`).
    receiving: Arc<tokio::sync::Mutex<()>>,
}

struct State {
    /// `None` only while a snapshot install swaps the applied log (under the lock).
    log: Option<Log>,
    applied: Applied,
    /// Records applied since the last checkpoint.
    unsaved: u64,
    saved_at: Instant,
    /// The snapshot in `DIR/snapshot`, if any: its records are in `log`.
    snapshot: Option<SnapshotFile>,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn corrupt(path: &Path, what: &'static str, why: String) -> dynadax::Error {
    dynadax::Error::Corrupt { path: path.to_path_buf(), what, why, offset: None }
}

fn encode_record(h: &Header, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(RECORD_FORMAT);
    postcard::to_io(h, &mut *out).expect("serializing into a Vec does not fail");
    out.extend_from_slice(bytes);
}

/// The header and the client's bytes of applied record `lsn`.
fn decode_record<'a>(dir: &Path, lsn: u64, rec: &'a [u8]) -> dynadax::Result<(Header, &'a [u8])> {
    match rec.split_first() {
        Some((&RECORD_FORMAT, body)) => postcard::take_from_bytes::<Header>(body)
            .map_err(|e| corrupt(dir, "applied record", format!("record {lsn}: header: {e}"))),
        Some((&f, _)) => Err(corrupt(dir, "applied record", format!("record {lsn}: unknown format {f}"))),
        None => Err(corrupt(dir, "applied record", format!("record {lsn} is empty"))),
    }
}

pub(crate) fn encode_applied(a: &Applied) -> Vec<u8> {
    let mut out = vec![CHECKPOINT_FORMAT];
    postcard::to_io(a, &mut out).expect("serializing into a Vec does not fail");
    out
}

impl StateMachine {
    /// Opens (or creates) the state machine of the node directory `dir`: the applied
    /// log in `dir/applied`, recovered as `opts` says (its damage rules refuse a
    /// damaged log: the node does not start rather than serve wrong data). A snapshot
    /// install cut by a crash is finished or dropped here.
    pub fn open(dir: impl AsRef<Path>, opts: LogOptions) -> dynadax::Result<StateMachine> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| dynadax::Error::Io {
            path: dir.to_path_buf(),
            op: "create",
            source: e,
        })?;
        let opts = LogOptions { durability: Durability::None, max_record: crate::MAX_RECORD + HEADER_MAX, ..opts };
        finish_install(&dir)?;
        let (log, applied) = open_applied(&dir.join("applied"), &opts)?;
        // The snapshot's records must be in the applied log (see `snapshot`): not so
        // only after a crash between an install's swap and its snapshot file.
        let snapshot = snapshot::read_file(&dir)?.filter(|(_, a, first)| {
            let there = *first >= log.first_lsn() && a.next <= log.next_lsn();
            if !there {
                tracing::warn!("{}: snapshot dropped: its records are not in the applied log", dir.display());
            }
            there
        });
        let progress = Progress { raft_applied: applied.last_applied.map(|l| l.index), next: applied.next };
        let state = State { log: Some(log), applied, unsaved: 0, saved_at: Instant::now(), snapshot };
        Ok(StateMachine {
            shared: Arc::new(Shared {
                dir,
                opts,
                state: Mutex::new(state),
                progress: watch::Sender::new(progress),
                receiving: Arc::default(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the applied log is; changes as entries are applied.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.shared.progress.subscribe()
    }

    /// Records `from..to` of the applied log (clipped to what is applied), at most
    /// `max_bytes` of them (at least one if any), each with its index; and the applied
    /// log's length.
    ///
    /// Applied records not yet durable are read too (`cursor_appended`: on a disk the
    /// log writes its staged frames out first, with no persist). The applied log is
    /// derived from the Raft log, which is durable, so a read never waits for a sync.
    pub fn read(&self, from: u64, to: u64, max_bytes: usize) -> dynadax::Result<Records> {
        let st = self.state();
        let end = st.applied.next.min(to);
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut c = st.log()?.cursor_appended(from, end);
        while let Some(r) = c.next() {
            let e = r?;
            let (_, rec) = decode_record(st.log()?.dir(), e.lsn, e.bytes)?;
            if !out.is_empty() && bytes + rec.len() > max_bytes {
                break;
            }
            bytes += rec.len();
            out.push((e.lsn, rec.to_vec()));
        }
        Ok(Records { records: out, next: st.applied.next })
    }

    /// Records `from..to` of the applied log as they are stored (header included), at
    /// most `max_bytes` of them (at least one if any): what a snapshot sends.
    pub(crate) fn read_raw(&self, from: u64, to: u64, max_bytes: usize) -> io::Result<Vec<Vec<u8>>> {
        let st = self.state();
        let log = st.log().map_err(other)?;
        let end = st.applied.next.min(to);
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut c = log.cursor_appended(from, end);
        while let Some(r) = c.next() {
            let e = r.map_err(other)?;
            if !out.is_empty() && bytes + e.bytes.len() > max_bytes {
                break;
            }
            bytes += e.bytes.len();
            out.push(e.bytes.to_vec());
        }
        Ok(out)
    }

    /// Starts receiving a snapshot into `DIR/applied.new`. Hold the guard of
    /// [`StateMachine::receiving`] until it is installed.
    pub(crate) fn receive_snapshot(&self) -> io::Result<SnapshotWriter> {
        SnapshotWriter::new(self.shared.dir.join("applied.new"), self.shared.opts.clone())
    }

    /// The right to receive a snapshot: one at a time.
    pub(crate) async fn receiving(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.shared.receiving.clone().lock_owned().await
    }

    /// Who wrote applied record `index`: (client, seq). For checkers and tests.
    pub fn origin(&self, index: u64) -> dynadax::Result<(u64, u64)> {
        let st = self.state();
        let mut c = st.log()?.cursor_appended(index, index + 1);
        match c.next() {
            Some(r) => {
                let e = r?;
                let (h, _) = decode_record(st.log()?.dir(), e.lsn, e.bytes)?;
                Ok((h.client, h.seq))
            }
            None => Err(dynadax::Error::Invalid {
                path: st.log()?.dir().to_path_buf(),
                what: format!("record {index} is not applied"),
            }),
        }
    }

    /// Applies `entries` in order: appends the records of new client appends to the
    /// applied log (one batch), writes a checkpoint when one is due (a membership
    /// change is always followed by one), and returns each entry's answer (`None` for
    /// blank and membership entries).
    pub(crate) fn apply_entries(&self, entries: &[EntryOf<C>]) -> io::Result<Vec<Option<Response>>> {
        let mut st = self.state();
        let mut out = Vec::with_capacity(entries.len());
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        let mut membership = false;
        let first = st.applied.next;
        for e in entries {
            st.applied.last_applied = Some(e.log_id());
            match &e.payload {
                EntryPayload::Blank => out.push(None),
                EntryPayload::Normal(r) => {
                    let (resp, new) = st.applied.apply(r);
                    if new {
                        let h = Header { log_id: e.log_id(), client: r.client, seq: r.seq, acked: r.acked };
                        encode_record(&h, &r.bytes, &mut buf);
                        ends.push(buf.len());
                    }
                    out.push(Some(resp));
                }
                EntryPayload::Membership(m) => {
                    st.applied.membership = StoredMembershipOf::<C>::new(Some(e.log_id()), m.clone());
                    membership = true;
                    out.push(None);
                }
            }
        }
        if !ends.is_empty() {
            let mut recs = Vec::with_capacity(ends.len());
            let mut start = 0;
            for &end in &ends {
                recs.push(&buf[start..end]);
                start = end;
            }
            let r = st.log().map_err(other)?.append_batch(&recs).map_err(other)?;
            if r.start != first {
                // The applied log and the applied state disagree: stop before a record
                // lands at the wrong index.
                return Err(other(format!(
                    "{}: records appended at {} where the applied state expects {first}",
                    st.log().map_err(other)?.dir().display(),
                    r.start
                )));
            }
            st.unsaved += ends.len() as u64;
        }
        if membership
            || st.unsaved >= CHECKPOINT_RECORDS
            || (st.unsaved > 0 && st.saved_at.elapsed() >= CHECKPOINT_INTERVAL)
        {
            checkpoint(&mut st).map_err(other)?;
        }
        let p = Progress { raft_applied: st.applied.last_applied.map(|l| l.index), next: st.applied.next };
        drop(st);
        self.shared.progress.send_replace(p);
        Ok(out)
    }

    /// A snapshot of the state as of now: a checkpoint (the records it covers
    /// durable: openraft may purge its log up to here), then `DIR/snapshot`. No
    /// record is copied.
    fn build(&self) -> io::Result<SnapshotOf<C, SnapshotData>> {
        let mut st = self.state();
        checkpoint(&mut st).map_err(other)?;
        let first = st.log().map_err(other)?.first_lsn();
        let meta = SnapshotMetaOf::<C> {
            last_log_id: st.applied.last_applied,
            last_membership: st.applied.membership.clone(),
        };
        let file = (meta.clone(), st.applied.clone(), first);
        snapshot::write_file(&self.shared.dir, &file)?;
        st.snapshot = Some(file);
        let data = SnapshotData {
            applied: st.applied.clone(),
            first,
            source: Source::Log(WeakStateMachine(Arc::downgrade(&self.shared))),
        };
        Ok(SnapshotOf::<C, SnapshotData> { meta, snapshot: data })
    }

    /// Swaps in the applied log a received snapshot was written to, then writes the
    /// snapshot file: a crash before the swap leaves the old log (the new one is
    /// dropped at open), after it the new one (and, until the file is written, an old
    /// snapshot file that open drops).
    fn install(&self, meta: &SnapshotMetaOf<C>, data: SnapshotData) -> io::Result<()> {
        let dir = &self.shared.dir;
        let new = match &data.source {
            Source::Received(new) if *new == dir.join("applied.new") => new.clone(),
            Source::Received(other_dir) => {
                return Err(other(format!("snapshot received into {}, not this node's", other_dir.display())))
            }
            Source::Log(_) => return Err(other("snapshot: only a received snapshot can be installed")),
        };
        let mut st = self.state();
        // The old log is closed before its directory moves (it writes its metadata by
        // path); nothing else holds it: readers use it under this lock only.
        drop(st.log.take());
        let applied = dir.join("applied");
        let old = dir.join("applied.old");
        remove_dir(&old)?;
        fs::rename(&applied, &old).map_err(|e| other(format!("{}: {e}", applied.display())))?;
        fs::rename(&new, &applied).map_err(|e| other(format!("{}: {e}", new.display())))?;
        sync_dir(dir)?;
        remove_dir(&old)?;
        st.log = Some(Log::open(&applied, self.shared.opts.clone()).map_err(other)?);
        let file = (meta.clone(), data.applied.clone(), data.first);
        snapshot::write_file(dir, &file)?;
        st.snapshot = Some(file);
        st.applied = data.applied;
        st.unsaved = 0;
        st.saved_at = Instant::now();
        let p = Progress { raft_applied: st.applied.last_applied.map(|l| l.index), next: st.applied.next };
        drop(st);
        self.shared.progress.send_replace(p);
        Ok(())
    }
}

impl State {
    fn log(&self) -> dynadax::Result<&Log> {
        self.log.as_ref().ok_or_else(|| dynadax::Error::Invalid {
            path: PathBuf::from("applied"),
            what: "the applied log could not be reopened after a snapshot install".to_string(),
        })
    }
}

/// Makes the applied records durable, then writes the applied state as the
/// checkpoint: a checkpoint never covers a record that a crash could lose.
fn checkpoint(st: &mut State) -> dynadax::Result<()> {
    st.log()?.sync()?;
    st.log()?.set_metadata(&encode_applied(&st.applied))?;
    st.unsaved = 0;
    st.saved_at = Instant::now();
    Ok(())
}

/// Opens the applied log in `path` and rebuilds the applied state: the checkpoint,
/// then every record after it.
fn open_applied(path: &Path, opts: &LogOptions) -> dynadax::Result<(Log, Applied)> {
    let log = Log::open(path, opts.clone())?;
    let meta = log.metadata();
    let mut applied = match meta.split_first() {
        None => Applied { next: log.first_lsn(), ..Applied::default() },
        Some((&CHECKPOINT_FORMAT, b)) => {
            postcard::from_bytes(b).map_err(|e| corrupt(path, "applied state", format!("in log.meta: {e}")))?
        }
        Some((&f, _)) => return Err(corrupt(path, "applied state", format!("in log.meta: unknown format {f}"))),
    };
    let end = log.next_lsn();
    if end < applied.next {
        return Err(corrupt(
            path,
            "applied log",
            format!("it ends at record {end} but its checkpoint covers {} records: records were lost", applied.next),
        ));
    }
    let mut c = log.cursor_appended(applied.next, end);
    while let Some(r) = c.next() {
        let e = r?;
        let (h, _) = decode_record(path, e.lsn, e.bytes)?;
        if applied.last_applied.as_ref().is_some_and(|l| l >= &h.log_id) {
            return Err(corrupt(
                path,
                "applied log",
                format!("record {} comes from entry {} at or before {:?}", e.lsn, h.log_id, applied.last_applied),
            ));
        }
        let r = Request { client: h.client, seq: h.seq, acked: h.acked, bytes: Vec::new() };
        let (resp, new) = applied.apply(&r);
        if !new || resp.index != Some(e.lsn) {
            return Err(corrupt(path, "applied log", format!("record {} is a duplicate of {resp}", e.lsn)));
        }
        applied.last_applied = Some(h.log_id);
    }
    Ok((log, applied))
}

/// A snapshot install cut by a crash: a new applied log that was not swapped in yet
/// is dropped (openraft sends the snapshot again); one whose swap began is finished.
fn finish_install(dir: &Path) -> dynadax::Result<()> {
    let applied = dir.join("applied");
    let new = dir.join("applied.new");
    let old = dir.join("applied.old");
    if !applied.exists() && new.exists() && old.exists() {
        fs::rename(&new, &applied).map_err(|e| dynadax::Error::Io {
            path: new.to_path_buf(),
            op: "rename",
            source: e,
        })?;
    }
    for d in [new, old] {
        if d.exists() {
            fs::remove_dir_all(&d).map_err(|e| dynadax::Error::Io {
                path: d.to_path_buf(),
                op: "remove",
                source: e,
            })?;
        }
    }
    Ok(())
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A clean close saves the replay at the next open. Best effort: without it
        // the next open replays the records after the last checkpoint.
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if st.unsaved > 0 {
            let _ = checkpoint(st);
        }
    }
}

impl RaftSnapshotBuilder<C> for StateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, SnapshotData>, io::Error> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.build()).await.map_err(other)?
    }
}

impl RaftStateMachine<C> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let st = self.state();
        Ok((st.applied.last_applied, st.applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        let mut batch = Vec::new();
        let mut responders = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            batch.push(entry);
            responders.push(responder);
        }
        // Appending (and now and then a checkpoint's fsync) blocks: off the async
        // workers, which also run heartbeats (two cores: one blocked worker is half).
        let me = self.clone();
        let answers = tokio::task::spawn_blocking(move || me.apply_entries(&batch)).await.map_err(other)??;
        for (answer, responder) in answers.into_iter().zip(responders) {
            if let Some(r) = responder {
                r.send(answer.unwrap_or(Response { index: None, duplicate: false }));
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<C>, snapshot: SnapshotData) -> Result<(), io::Error> {
        let me = self.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || me.install(&meta, snapshot)).await.map_err(other)?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, SnapshotData>>, io::Error> {
        let st = self.state();
        Ok(st.snapshot.as_ref().map(|(meta, applied, first)| SnapshotOf::<C, SnapshotData> {
            meta: meta.clone(),
            snapshot: SnapshotData {
                applied: applied.clone(),
                first: *first,
                source: Source::Log(WeakStateMachine(Arc::downgrade(&self.shared))),
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::log_id;
    use openraft::Membership;
    use std::collections::BTreeSet;

    fn req(client: u64, seq: u64, acked: u64, bytes: &str) -> Request {
        Request { client, seq, acked, bytes: bytes.as_bytes().to_vec() }
    }

    fn normal(index: u64, r: Request) -> EntryOf<C> {
        EntryOf::<C>::new_normal(log_id::<C>(1, 1, index), r)
    }

    fn records(sm: &StateMachine) -> Vec<(u64, String)> {
        let r = sm.read(0, u64::MAX, usize::MAX).unwrap();
        assert_eq!(r.records.len() as u64, r.next);
        r.records.into_iter().map(|(i, b)| (i, String::from_utf8(b).unwrap())).collect()
    }

    fn opts() -> LogOptions {
        LogOptions { segment_size: 4 << 20, ..LogOptions::default() }
    }

    /// A client idle for CLIENT_EXPIRY records is forgotten, on every replay alike;
    /// its later retry is answered as forgotten, never applied again; a new client
    /// and an active one are unaffected.
    #[test]
    fn an_idle_clients_window_expires_and_its_retry_is_not_applied_twice() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path(), opts()).unwrap();
        let mut index = 0;
        let mut entry = |r: Request| {
            index += 1;
            normal(index, r)
        };
        // Client 1 appends seq 0 and 1 (acked 0: both in flight), then is idle.
        let a = sm.apply_entries(&[entry(req(1, 0, 0, "x")), entry(req(1, 1, 0, "y"))]).unwrap();
        assert_eq!(a[1], Some(Response { index: Some(1), duplicate: false }));
        let busy: Vec<_> = (0..CLIENT_EXPIRY + EXPIRY_CHECK).map(|s| entry(req(2, s, s, "z"))).collect();
        sm.apply_entries(&busy).unwrap();
        assert!(!sm.state().applied.clients.contains_key(&1), "client 1 was not forgotten");
        assert!(sm.state().applied.clients.contains_key(&2));
        // Its retry of seq 1 (it acknowledged seq 0 meanwhile) is not applied again.
        let a = sm.apply_entries(&[entry(req(1, 1, 1, "y")), entry(req(3, 0, 0, "new"))]).unwrap();
        assert_eq!(a[0], Some(Response { index: None, duplicate: true }));
        assert!(!a[1].unwrap().duplicate);
        let before = sm.state().applied.clone();
        // A crash (no checkpoint at drop): the replay of the records forgets at the
        // same point.
        sm.state().unsaved = 0;
        drop(sm);
        let sm = StateMachine::open(dir.path(), opts()).unwrap();
        let after = sm.state().applied.clone();
        assert_eq!(after.next, before.next);
        assert_eq!(after.clients.keys().collect::<Vec<_>>(), before.clients.keys().collect::<Vec<_>>());
    }

    #[test]
    fn appends_get_consecutive_indexes_and_duplicates_are_applied_once() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path(), opts()).unwrap();
        let members = Membership::<u64, openraft::impls::BasicNode>::new_with_defaults(vec![BTreeSet::from([1])], []);
        let entries = vec![
            EntryOf::<C>::new_blank(log_id::<C>(1, 1, 0)),
            EntryOf::<C>::new_membership(log_id::<C>(1, 1, 1), members),
            normal(2, req(7, 0, 0, "a")),
            normal(3, req(8, 0, 0, "b")),
            // Seq 2 before seq 1 (two requests in flight), then a retry of each.
            normal(4, req(7, 2, 0, "c")),
            normal(5, req(7, 1, 0, "d")),
            normal(6, req(7, 2, 0, "c")),
            normal(7, req(7, 0, 0, "a")),
        ];
        let answers = sm.apply_entries(&entries).unwrap();
        let idx = |i: usize| answers[i].map(|r| (r.index, r.duplicate));
        assert_eq!(idx(0), None);
        assert_eq!(idx(1), None);
        assert_eq!(idx(2), Some((Some(0), false)));
        assert_eq!(idx(3), Some((Some(1), false)));
        assert_eq!(idx(4), Some((Some(2), false)));
        assert_eq!(idx(5), Some((Some(3), false)));
        assert_eq!(idx(6), Some((Some(2), true)));
        assert_eq!(idx(7), Some((Some(0), true)));
        assert_eq!(records(&sm), vec![(0, "a".into()), (1, "b".into()), (2, "c".into()), (3, "d".into())]);
        assert_eq!(sm.origin(3).unwrap(), (7, 1));
        // Once the client says seqs below 3 are answered, their answers go.
        let a = sm.apply_entries(&[normal(8, req(7, 3, 3, "e")), normal(9, req(7, 1, 3, "d"))]).unwrap();
        assert_eq!(a[0], Some(Response { index: Some(4), duplicate: false }));
        assert_eq!(a[1], Some(Response { index: None, duplicate: true }));
        assert_eq!(*sm.progress().borrow(), Progress { raft_applied: Some(9), next: 5 });
    }

    #[test]
    fn a_restart_rebuilds_the_state_from_the_checkpoint_and_the_records_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path(), opts()).unwrap();
        let members = Membership::<u64, openraft::impls::BasicNode>::new_with_defaults(vec![BTreeSet::from([1])], []);
        // The membership entry forces a checkpoint after its batch; the later batches
        // are not checkpointed: a crash leaves them as records only.
        sm.apply_entries(&[EntryOf::<C>::new_membership(log_id::<C>(1, 1, 0), members), normal(1, req(5, 0, 0, "x"))])
            .unwrap();
        sm.apply_entries(&[normal(2, req(5, 1, 0, "y")), normal(3, req(6, 0, 0, "z"))]).unwrap();
        sm.apply_entries(&[EntryOf::<C>::new_blank(log_id::<C>(2, 2, 4))]).unwrap();
        let before = sm.state().applied.clone();
        // A crash: no clean close, so no checkpoint at drop.
        sm.state().unsaved = 0;
        drop(sm);
        let sm = StateMachine::open(dir.path(), opts()).unwrap();
        let after = sm.state().applied.clone();
        // The blank entry left no record: the rebuilt state stops at the last record,
        // and openraft applies the blank entry again.
        assert_eq!(after.last_applied, Some(log_id::<C>(1, 1, 3)));
        assert_eq!(after.clients, before.clients);
        assert_eq!(after.membership, before.membership);
        assert_eq!(after.next, 3);
        // A retry after the restart is still a duplicate; a new request goes next.
        let a = sm.apply_entries(&[normal(5, req(5, 1, 0, "y")), normal(6, req(6, 1, 0, "w"))]).unwrap();
        assert_eq!(a[0], Some(Response { index: Some(1), duplicate: true }));
        assert_eq!(a[1], Some(Response { index: Some(3), duplicate: false }));
        assert_eq!(records(&sm).len(), 4);
    }

    #[test]
    fn a_checkpoint_covering_lost_records_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path(), opts()).unwrap();
        sm.apply_entries(&[normal(0, req(1, 0, 0, "a")), normal(1, req(1, 1, 0, "b"))]).unwrap();
        drop(sm); // clean close: checkpoint covers 2 records
        let log = Log::open(dir.path().join("applied"), opts()).unwrap();
        log.truncate_from(1).unwrap();
        drop(log);
        let err = StateMachine::open(dir.path(), opts()).err().expect("must refuse").to_string();
        assert!(err.contains("records were lost"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_installed_elsewhere_gives_the_same_log_and_table() {
        let a_dir = tempfile::tempdir().unwrap();
        let b_dir = tempfile::tempdir().unwrap();
        let mut a = StateMachine::open(a_dir.path(), opts()).unwrap();
        let mut b = StateMachine::open(b_dir.path(), opts()).unwrap();
        a.apply_entries(&(0..100).map(|i| normal(i, req(9, i, 0, &format!("r{i}")))).collect::<Vec<_>>()).unwrap();
        b.apply_entries(&[normal(0, req(3, 0, 0, "stale"))]).unwrap();
        let snap = a.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id::<C>(1, 1, 99)));
        // Sent in small chunks, received in pieces that split frames anywhere.
        let mut wire = Vec::new();
        snap.snapshot
            .encode(100, |c| {
                wire.extend_from_slice(&c);
                true
            })
            .unwrap();
        // A body cut short is refused, naming what is missing.
        let mut w = b.receive_snapshot().unwrap();
        w.feed(&wire[..wire.len() - 3]).unwrap();
        let err = w.finish().err().expect("a cut snapshot must be refused").to_string();
        assert!(err.contains("99 of 100 records received, and a cut frame"), "{err}");
        let mut w = b.receive_snapshot().unwrap();
        for piece in wire.chunks(7) {
            w.feed(piece).unwrap();
        }
        b.install_snapshot(&snap.meta, w.finish().unwrap()).await.unwrap();
        assert_eq!(records(&b), records(&a));
        assert_eq!(b.state().applied, a.state().applied);
        let cur = b.get_current_snapshot().await.unwrap().expect("installed snapshot kept");
        assert_eq!(cur.meta, snap.meta);
        // Survives a reopen, and dedups what `a` applied.
        drop(b);
        let b = StateMachine::open(b_dir.path(), opts()).unwrap();
        assert_eq!(records(&b).len(), 100);
        let r = b.apply_entries(&[normal(100, req(9, 50, 0, "r50"))]).unwrap();
        assert_eq!(r[0], Some(Response { index: Some(50), duplicate: true }));
    }
}
