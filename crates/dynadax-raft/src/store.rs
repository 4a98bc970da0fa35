//! [`LogStore`]: openraft's `RaftLogStorage` and `RaftLogReader` on a dynadax log.
//!
//! Entry `i` is log record `i` (LSN = Raft index), so every log operation openraft
//! asks for is one the dynadax log already does crash-safely: append, suffix
//! truncation, prefix purge (a purge past the last entry restarts the log there),
//! range reads. The vote, the committed log id and the last purged log id live in
//! the log's durable metadata record.

use crate::codec::{self, StoreState};
use crate::flusher::Flusher;
use dynadax::log::{Durability, Log, LogOptions};
use openraft::alias::{LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, RaftTypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How often, at most, the committed log id is written to the metadata record
/// (by the flusher, off openraft's path): writing it is a file replacement and two
/// fsyncs, and openraft gives a new one with every commit.
pub(crate) const COMMITTED_INTERVAL: Duration = Duration::from_millis(100);

/// A dynadax log as openraft's log store. Cheap to clone: clones (and the log
/// readers openraft takes) share one log.
///
/// Appends return as soon as the entries are written (readable at once, as openraft
/// requires) and report them flushed when they are durable: at once where the tail
/// persists by cache-line flush (kernel DAX), which costs less than a thread hop;
/// otherwise from a flusher thread, where one `fdatasync` or `msync` covers every
/// append made meanwhile (group commit).
pub struct LogStore<C: RaftTypeConfig> {
    shared: Arc<Shared<C>>,
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore { shared: self.shared.clone() }
    }
}

pub(crate) struct Shared<C: RaftTypeConfig> {
    pub(crate) log: Log,
    /// Lock order: `state` before the log's own locks. Held across every write of
    /// the metadata record, so they land in the order they were made.
    state: Mutex<State<C>>,
    /// Whether appends are made durable inline (the tail persists by cache-line
    /// flush) or by the flusher. Decided at open: every tail of a log is made the
    /// same way, and either path is correct if one were not, only slower.
    inline_persist: bool,
    /// `codec::encode_state` for this `C`, taken where its serde bounds are known,
    /// so that writing the state (also on drop) needs none.
    encode_state: fn(&StoreState<C>) -> Vec<u8>,
    /// Told the time of every persist that acknowledges appends (set once, by
    /// [`LogStore::observe_flushes`]).
    flush_observer: OnceLock<FlushObserver>,
    /// Declared last: dropped (and its thread joined) after the final state write.
    flusher: Flusher<C>,
}

struct State<C: RaftTypeConfig> {
    /// What the metadata record holds.
    saved: StoreState<C>,
    /// The latest committed log id openraft gave (written lazily).
    committed: Option<LogIdOf<C>>,
    /// When the metadata record was last written.
    written_at: Instant,
    /// The log id of the last entry, or of the last purged one if there is none:
    /// what `get_log_state` reports. Kept here so it costs no read.
    last: Option<LogIdOf<C>>,
    /// Encoding buffer for entries, reused.
    scratch: Vec<u8>,
}

type FlushObserver = Box<dyn Fn(Duration) + Send + Sync>;

fn io_err(e: dynadax::Error) -> io::Error {
    io::Error::other(e)
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    /// Opens (or creates) the store in `dir`, recovering the log as `opts` says
    /// (segment size, record limit, recovery mode, tail mode). `opts.durability` is
    /// not used: the store makes entries durable itself, as described on the type.
    /// A purge interrupted by a crash is finished here.
    pub fn open(dir: impl AsRef<Path>, opts: LogOptions) -> dynadax::Result<LogStore<C>> {
        let dir = dir.as_ref();
        let log = Log::open(dir, LogOptions { durability: Durability::None, ..opts })?;
        let saved: StoreState<C> = codec::decode_state(dir, &log.metadata())?;
        // `last_purged` is written before the log is purged: finish what a crash cut.
        if let Some(p) = &saved.last_purged {
            if log.first_lsn() <= p.index {
                log.purge_before(p.index + 1)?;
            }
        }
        let last = match log.next_lsn() {
            next if next > log.first_lsn() => Some(read_entry::<C>(&log, next - 1)?.log_id()),
            _ => saved.last_purged.clone(),
        };
        let state =
            State { committed: saved.committed.clone(), saved, written_at: Instant::now(), last, scratch: Vec::new() };
        let shared = Arc::new_cyclic(|weak| Shared {
            inline_persist: log.persists_by_cache_flush(),
            log,
            state: Mutex::new(state),
            encode_state: codec::encode_state::<C>,
            flush_observer: OnceLock::new(),
            flusher: Flusher::start(weak.clone()),
        });
        Ok(LogStore { shared })
    }

    /// The dynadax log underneath (segments, modes, recovery report).
    pub fn log(&self) -> &Log {
        &self.shared.log
    }

    /// Calls `f` with the duration of every persist that makes appended entries
    /// durable (one `fdatasync`, `msync` or cache-line flush covering a group of
    /// appends), on the thread that made it: for a node's metrics. Keep `f` short.
    /// Only the first observer is kept: false if one was set already.
    pub fn observe_flushes(&self, f: impl Fn(Duration) + Send + Sync + 'static) -> bool {
        self.shared.flush_observer.set(Box::new(f)).is_ok()
    }
}

fn read_entry<C>(log: &Log, lsn: u64) -> dynadax::Result<C::Entry>
where
    C: RaftTypeConfig,
    C::Entry: DeserializeOwned,
{
    let mut c = log.cursor_appended(lsn, lsn + 1);
    match c.next() {
        Some(r) => codec::decode_entry(log.dir(), lsn, r?.bytes),
        None => log.read_with(lsn, |bytes| codec::decode_entry(log.dir(), lsn, bytes))?,
    }
}

impl<C: RaftTypeConfig> Shared<C> {
    fn state(&self) -> MutexGuard<'_, State<C>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes every appended entry durable, timed for the flush observer.
    pub(crate) fn persist_appends(&self) -> Result<(), io::Error> {
        let start = Instant::now();
        let r = self.log.sync().map(|_| ()).map_err(io_err);
        if let Some(f) = self.flush_observer.get() {
            f(start.elapsed());
        }
        r
    }

    /// Writes `next` to the metadata record, with the latest committed log id if its
    /// entry is durable (never one the log could lose in a crash).
    fn write_state(&self, st: &mut State<C>, mut next: StoreState<C>) -> dynadax::Result<()> {
        let durable = self.log.durable_lsn();
        if st.committed.as_ref().is_some_and(|c| c.index < durable) {
            next.committed = st.committed.clone();
        }
        self.log.set_metadata(&(self.encode_state)(&next))?;
        st.saved = next;
        st.written_at = Instant::now();
        Ok(())
    }

    /// Called by the flusher after each round: writes the committed log id if it
    /// moved and the last write is `COMMITTED_INTERVAL` old (or `now`).
    pub(crate) fn write_committed_if_due(&self, now: bool) -> dynadax::Result<()> {
        let mut st = self.state();
        if st.committed != st.saved.committed && (now || st.written_at.elapsed() >= COMMITTED_INTERVAL) {
            let next = st.saved.clone();
            self.write_state(&mut st, next)?;
        }
        Ok(())
    }
}

impl<C: RaftTypeConfig> Drop for Shared<C> {
    fn drop(&mut self) {
        // A clean close keeps the latest committed log id. Best effort: a crash keeps
        // an older one, which is also correct, only less up to date.
        let _ = self.write_committed_if_due(true);
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        let log = &self.shared.log;
        let from = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        // Appended entries count, flushed or not: openraft reads what it appended.
        // Decoded from where they lie (zero-copy from sealed segments).
        let mut entries = Vec::new();
        let mut c = log.cursor_appended(from, to);
        while let Some(r) = c.next() {
            entries.push(r.and_then(|e| codec::decode_entry(log.dir(), e.lsn, e.bytes)).map_err(io_err)?);
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.shared.state().saved.vote.clone())
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let st = self.shared.state();
        Ok(LogState { last_purged_log_id: st.saved.last_purged.clone(), last_log_id: st.last.clone() })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        let sh = &self.shared;
        let mut st = sh.state();
        // Write IO is serialized: entries appended before this vote are durable
        // before it is.
        sh.log.sync().map_err(io_err)?;
        let next = StoreState { vote: Some(vote.clone()), ..st.saved.clone() };
        sh.write_state(&mut st, next).map_err(io_err)
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        // Kept in memory; the flusher writes it within `COMMITTED_INTERVAL`, and a
        // clean close writes it. After a crash `read_committed` may return an older
        // one, which openraft accepts (it re-applies less on restart).
        self.shared.state().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.shared.state().saved.committed.clone())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let sh = &self.shared;
        let log = &sh.log;
        let mut st = sh.state();
        let mut scratch = std::mem::take(&mut st.scratch);
        scratch.clear();
        let mut ends = Vec::new();
        let mut last = None;
        let mut next = log.next_lsn();
        for e in entries {
            if e.index() != next {
                if ends.is_empty() && next == log.first_lsn() && e.index() > next {
                    // An empty log starts where its first entry says (a fresh store
                    // after a snapshot, or openraft's own tests).
                    log.purge_before(e.index()).map_err(io_err)?;
                    next = e.index();
                } else {
                    return Err(io::Error::other(format!(
                        "{}: entry {} appended where entry {next} is next: a log must have no holes",
                        log.dir().display(),
                        e.index()
                    )));
                }
            }
            codec::encode_entry(&e, &mut scratch);
            ends.push(scratch.len());
            last = Some(e.log_id());
            next += 1;
        }
        let mut records = Vec::with_capacity(ends.len());
        let mut start = 0;
        for &end in &ends {
            records.push(&scratch[start..end]);
            start = end;
        }
        let appended = log.append_batch(&records).map_err(io_err);
        drop(records);
        st.scratch = scratch;
        appended?;
        if last.is_some() {
            st.last = last;
        }
        drop(st);
        if sh.inline_persist {
            // A flush and a fence of these lines: cheaper here than a thread hop.
            callback.io_completed(sh.persist_appends());
        } else {
            sh.flusher.flush(callback);
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let sh = &self.shared;
        let mut st = sh.state();
        match &last_log_id {
            Some(id) => sh.log.truncate_after(id.index),
            None => sh.log.truncate_from(sh.log.first_lsn()),
        }
        .map_err(io_err)?;
        if last_log_id.as_ref().map(|id| id.index) < st.last.as_ref().map(|l| l.index) {
            st.last = last_log_id.or_else(|| st.saved.last_purged.clone());
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let sh = &self.shared;
        let mut st = sh.state();
        if st.saved.last_purged.as_ref().is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        // Only durable entries can be purged one by one; and the purge point is
        // recorded before anything is removed, so a crash cannot leave a hole.
        sh.log.sync().map_err(io_err)?;
        let next = StoreState { last_purged: Some(log_id.clone()), ..st.saved.clone() };
        sh.write_state(&mut st, next).map_err(io_err)?;
        sh.log.purge_before(log_id.index + 1).map_err(io_err)?;
        if st.last.as_ref().is_none_or(|l| l.index < log_id.index) {
            st.last = Some(log_id);
        }
        Ok(())
    }
}
