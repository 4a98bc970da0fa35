//! dynadax-raft: a dynadax log as the log store of [openraft](https://docs.rs/openraft),
//! so a log replicated by an existing consensus engine gets a direct (DAX) tail and
//! sealed segments switched to cached in constant time.
//!
//! ```no_run
//! use dynadax::log::LogOptions;
//! use dynadax_raft::LogStore;
//! # fn main() -> dynadax::Result<()> {
//! // `openraft_memstore::TypeConfig` stands for the application's type configuration.
//! let store: LogStore<openraft_memstore::TypeConfig> = LogStore::open("/mnt/pmem/raft-log", LogOptions::default())?;
//! // Hand `store` to `openraft::Raft::new(id, config, network, store, state_machine)`.
//! # let _ = store; Ok(()) }
//! ```
//!
//! Entry `i` is record `i` of the log; the vote, the committed log id and the last
//! purged log id are in the log's metadata record (format in `docs/raft.md`). What
//! openraft's storage suite does not check is tested here: reopen, kill -9, and a
//! cluster of three nodes replicating through openraft.

#![warn(missing_docs)]

mod codec;
mod flusher;
mod store;

pub use store::LogStore;
