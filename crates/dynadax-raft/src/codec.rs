//! The bytes this crate keeps in a dynadax log (format in `docs/raft.md`):
//!
//! - one log record per Raft entry, at the LSN equal to the entry's index:
//!   `ENTRY_FORMAT` then the entry in postcard;
//! - the store's state (vote, committed, last purged log id) in the log's metadata
//!   record: `STATE_FORMAT` then [`StoreState`] in postcard.
//!
//! The leading byte lets a later format be told apart from this one.

use openraft::alias::{LogIdOf, VoteOf};
use openraft::RaftTypeConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Format byte of an entry record.
pub(crate) const ENTRY_FORMAT: u8 = 1;
/// Format byte of the state in the metadata record.
pub(crate) const STATE_FORMAT: u8 = 1;

/// What a Raft log store keeps besides its entries.
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "VoteOf<C>: Serialize, LogIdOf<C>: Serialize",
    deserialize = "VoteOf<C>: DeserializeOwned, LogIdOf<C>: DeserializeOwned"
))]
pub(crate) struct StoreState<C: RaftTypeConfig> {
    /// The last vote saved: durable before `save_vote` returns.
    pub vote: Option<VoteOf<C>>,
    /// The last committed log id written (it lags the one openraft last gave: see
    /// `LogStore::save_committed`).
    pub committed: Option<LogIdOf<C>>,
    /// The last purged log id: written before the log is purged, so a crash in
    /// between is finished at open.
    pub last_purged: Option<LogIdOf<C>>,
}

impl<C: RaftTypeConfig> Default for StoreState<C> {
    fn default() -> Self {
        StoreState { vote: None, committed: None, last_purged: None }
    }
}

impl<C: RaftTypeConfig> Clone for StoreState<C> {
    fn clone(&self) -> Self {
        StoreState { vote: self.vote.clone(), committed: self.committed.clone(), last_purged: self.last_purged.clone() }
    }
}

/// Appends the record of entry `e` to `out`.
pub(crate) fn encode_entry<E: Serialize>(e: &E, out: &mut Vec<u8>) {
    out.push(ENTRY_FORMAT);
    postcard::to_io(e, &mut *out).expect("serializing into a Vec does not fail");
}

/// The entry in record `lsn` of the log at `dir`.
pub(crate) fn decode_entry<E: DeserializeOwned>(dir: &Path, lsn: u64, bytes: &[u8]) -> Result<E, dynadax::Error> {
    decode(bytes, ENTRY_FORMAT).map_err(|why| corrupt(dir, "Raft entry", format!("record {lsn}: {why}")))
}

pub(crate) fn encode_state<C: RaftTypeConfig>(s: &StoreState<C>) -> Vec<u8>
where
    StoreState<C>: Serialize,
{
    let mut out = vec![STATE_FORMAT];
    postcard::to_io(s, &mut out).expect("serializing into a Vec does not fail");
    out
}

/// The state in the metadata record of the log at `dir`; the default if it is empty
/// (a new log).
pub(crate) fn decode_state<C: RaftTypeConfig>(dir: &Path, bytes: &[u8]) -> Result<StoreState<C>, dynadax::Error>
where
    StoreState<C>: DeserializeOwned,
{
    if bytes.is_empty() {
        return Ok(StoreState::default());
    }
    decode(bytes, STATE_FORMAT).map_err(|why| corrupt(dir, "Raft store state", format!("in log.meta: {why}")))
}

fn decode<T: DeserializeOwned>(bytes: &[u8], format: u8) -> Result<T, String> {
    match bytes.split_first() {
        Some((&f, body)) if f == format => postcard::from_bytes(body).map_err(|e| e.to_string()),
        Some((&f, _)) => Err(format!("format {f} is not the supported format {format}")),
        None => Err("empty".into()),
    }
}

fn corrupt(dir: &Path, what: &'static str, why: String) -> dynadax::Error {
    dynadax::Error::Corrupt { path: dir.to_path_buf(), what, why, offset: None }
}
