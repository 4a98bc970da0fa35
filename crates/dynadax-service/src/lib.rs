//! dynadax-service: a replicated log service. Nodes keep their Raft log in a dynadax
//! log ([`dynadax_raft::LogStore`]), replicate it with openraft over HTTP (axum and
//! reqwest, bodies in postcard), and apply each committed client append as the next
//! record of a second dynadax log, the replicated log clients read. Details and the
//! commands to run a cluster: `docs/service.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dynadax_service::Error> {
//! use dynadax_service::Client;
//! let client = Client::connect(["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"])?;
//! let index = client.append(b"event").await?;          // committed and applied
//! let records = client.read(index..index + 1, false).await?; // linearizable
//! assert_eq!(records[0], (index, b"event".to_vec()));
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod api;
mod client;
mod machine;
mod mem_store;
mod metrics;
mod network;
mod server;
mod snapshot;
mod tls;
mod types;

pub use api::{AdminReply, ApiError, ErrorKind, FollowerStatus, Member, Status, MAX_APPEND_BODY};
pub use client::Client;
pub use machine::{Progress, StateMachine};
pub use network::{Network, Peer};
pub use server::{Node, NodeConfig, RaftNode, RaftStore};
pub use snapshot::SnapshotData;
pub use tls::TlsFiles;
pub use types::{NodeId, Records, Request, Response, TypeConfig, MAX_RECORD};

/// An error of the service: what a node answered, an unreachable cluster, a log
/// that cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A node answered with an error (not the leader, too large, ...).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// No node answered: every address tried, and the last failure.
    #[error("cluster unreachable: tried {tried}; last: {last}")]
    Unreachable {
        /// The addresses tried, in order.
        tried: String,
        /// The last failure.
        last: String,
    },
    /// A dynadax log (the Raft log or the applied log) could not be opened or used.
    #[error(transparent)]
    Store(#[from] dynadax::Error),
    /// Anything else, as one line.
    #[error("{0}")]
    Other(String),
}
