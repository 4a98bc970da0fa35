//! What goes over the wire: the HTTP paths, request and answer bodies, errors.
//!
//! Raft RPCs, appends and reads carry postcard bodies (`application/postcard`):
//! compact, no schema step, the same serde types openraft already derives. Admin
//! requests and the status are JSON, so `curl` can drive a node. An error is always
//! a non-2xx status with an [`ApiError`] in JSON.

use crate::types::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Raft RPC paths (postcard).
pub(crate) const RAFT_APPEND: &str = "/raft/append";
pub(crate) const RAFT_VOTE: &str = "/raft/vote";
pub(crate) const RAFT_PRE_VOTE: &str = "/raft/pre-vote";
pub(crate) const RAFT_SNAPSHOT: &str = "/raft/snapshot";
pub(crate) const RAFT_TRANSFER: &str = "/raft/transfer-leader";
/// Client paths (postcard).
pub(crate) const APPEND: &str = "/append";
pub(crate) const READ: &str = "/read";
pub(crate) const READ_INDEX: &str = "/read-index";
/// Admin paths (JSON).
pub(crate) const INIT: &str = "/admin/init";
pub(crate) const ADD_LEARNER: &str = "/admin/add-learner";
pub(crate) const PROMOTE: &str = "/admin/promote";
pub(crate) const REMOVE: &str = "/admin/remove";
pub(crate) const TRANSFER_LEADER: &str = "/admin/transfer-leader";
pub(crate) const STATUS: &str = "/status";
/// Metrics for Prometheus (OpenMetrics text).
pub(crate) const METRICS: &str = "/metrics";

/// The content type of postcard bodies.
pub(crate) const POSTCARD: &str = "application/postcard";
/// The content type of `/metrics`.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Largest body of an append request: many records per request (pipelined clients),
/// each at most [`crate::MAX_RECORD`].
pub const MAX_APPEND_BODY: usize = 64 << 20;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// This node is not the leader: `leader` says who is, if known (HTTP 421).
    NotLeader,
    /// No leader is known now (an election is running, or no quorum): retry (503).
    NoLeader,
    /// A record or the request is larger than the limit (413).
    TooLarge,
    /// The request is malformed or makes no sense (400).
    BadRequest,
    /// The node is not a member of an initialized cluster (409).
    NotMember,
    /// The node cannot serve now (shutting down, storage failed) (503).
    Unavailable,
    /// Anything else (500).
    Internal,
}

impl ErrorKind {
    pub(crate) fn status(self) -> u16 {
        match self {
            ErrorKind::NotLeader => 421,
            ErrorKind::NoLeader | ErrorKind::Unavailable => 503,
            ErrorKind::TooLarge => 413,
            ErrorKind::BadRequest => 400,
            ErrorKind::NotMember => 409,
            ErrorKind::Internal => 500,
        }
    }
}

/// A node and its address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// Its address, `HOST:PORT`.
    pub addr: String,
}

/// An error a node answered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What kind of failure: tells a client whether to retry and where.
    pub kind: ErrorKind,
    /// One line, naming the node and what is wrong.
    pub message: String,
    /// The leader to retry with, for [`ErrorKind::NotLeader`].
    pub leader: Option<Member>,
}

impl ApiError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError { kind, message: message.into(), leader: None }
    }
}

/// A batch of appends (`POST /append`), answered with one [`crate::Response`] each,
/// in order, once all are applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AppendBatch {
    pub requests: Vec<crate::Request>,
}

/// `GET /read` query. Linearizable unless `stale`; with `wait_ms`, waits that long
/// for a record at `from` if there is none yet (long poll, for tails).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ReadQuery {
    #[serde(default)]
    pub from: u64,
    pub to: Option<u64>,
    #[serde(default)]
    pub stale: bool,
    pub wait_ms: Option<u64>,
    pub max_bytes: Option<usize>,
}

/// `POST /admin/init`: the first members, by id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InitRequest {
    pub members: BTreeMap<NodeId, String>,
}

/// `POST /admin/add-learner`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AddLearnerRequest {
    pub id: NodeId,
    pub addr: String,
}

/// `POST /admin/promote` and `/admin/remove`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodesRequest {
    pub ids: Vec<NodeId>,
}

/// `POST /admin/transfer-leader`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TransferRequest {
    pub to: NodeId,
}

/// What an admin request did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminReply {
    /// One line for a person.
    pub message: String,
    /// The Raft log index of the membership entry it wrote, if any.
    pub log_index: Option<u64>,
}

/// A follower as its leader sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FollowerStatus {
    /// The follower's id.
    pub id: NodeId,
    /// The last Raft index it is known to hold.
    pub matched: Option<u64>,
    /// How many entries of the leader's log it lacks.
    pub lag: u64,
}

/// `GET /status`: one node's view (from openraft's metrics and its applied log).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// The address it advertises.
    pub addr: String,
    /// Leader, Follower, Candidate or Learner (openraft's server state).
    pub state: String,
    /// The current term.
    pub term: u64,
    /// The leader it knows, if any.
    pub leader: Option<Member>,
    /// The last index in its Raft log.
    pub last_log_index: Option<u64>,
    /// The last committed Raft index it knows.
    pub committed: Option<u64>,
    /// The last Raft index its state machine applied.
    pub applied: Option<u64>,
    /// Records in its applied log: the replicated log's length here.
    pub records: u64,
    /// The Raft index of its last snapshot.
    pub snapshot: Option<u64>,
    /// Its Raft log is purged up to here.
    pub purged: Option<u64>,
    /// Voting members.
    pub voters: Vec<Member>,
    /// Learners (replicated to, no vote).
    pub learners: Vec<Member>,
    /// For a leader: each other member's progress.
    pub replication: Vec<FollowerStatus>,
    /// Whether peers and clients talk to it over TLS.
    pub tls: bool,
    /// Records applied per second, over the last second.
    pub appends_per_sec: f64,
    /// Persists of the Raft log per second (each covers a group of appends).
    pub flushes_per_sec: f64,
    /// Their mean time over the last second, in µs (none if there was none).
    pub flush_mean_us: Option<f64>,
    /// Whether it has joined an initialized cluster.
    pub initialized: bool,
}
