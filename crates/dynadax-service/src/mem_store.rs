//! An in-memory Raft log store (`dynadax serve --raft-store memory`), to measure
//! what durability costs: the same node with a log that persists nothing. Nothing
//! of it survives the process, so a node that runs on it must start on a fresh
//! directory.
//!
//! openraft-memstore's store is the model, but it is bound to its own type config
//! (its own request type), so it cannot be given this service's entries: this is the
//! same structure, a `BTreeMap` behind a mutex, for [`TypeConfig`].

use crate::types::TypeConfig;
use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};

type C = TypeConfig;

#[derive(Clone, Default)]
pub(crate) struct MemLogStore {
    inner: Arc<Mutex<Mem>>,
}

#[derive(Default)]
struct Mem {
    /// Entries by index; purged ones are gone.
    log: BTreeMap<u64, EntryOf<C>>,
    vote: Option<VoteOf<C>>,
    committed: Option<LogIdOf<C>>,
    purged: Option<LogIdOf<C>>,
}

impl MemLogStore {
    fn lock(&self) -> MutexGuard<'_, Mem> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RaftLogReader<C> for MemLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<C>>, io::Error> {
        Ok(self.lock().log.range(range).map(|(_, e)| e.clone()).collect())
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.lock().vote)
    }
}

impl RaftLogStorage<C> for MemLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let m = self.lock();
        let last = m.log.values().next_back().map(|e| e.log_id()).or(m.purged);
        Ok(LogState { last_purged_log_id: m.purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        self.lock().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        self.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut m = self.lock();
        for e in entries {
            m.log.insert(e.index(), e);
        }
        drop(m);
        // "Flushed" at once: this store persists nothing.
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        self.lock().log.split_off(&from);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let mut m = self.lock();
        m.log = m.log.split_off(&(log_id.index + 1));
        m.purged = Some(log_id);
        Ok(())
    }
}
