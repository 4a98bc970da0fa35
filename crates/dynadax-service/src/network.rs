//! openraft's network over HTTP: [`Network`] makes one [`Peer`] per target node;
//! every peer shares one `reqwest` client, whose pool keeps a connection per node
//! alive between RPCs (HTTP/1.1 keep-alive), so replication pays no connect per
//! append.
//!
//! Why HTTP with axum and reqwest rather than gRPC with tonic: openraft's messages
//! are already serde types, so a postcard body over plain HTTP needs no schema or
//! generated code (tonic needs `.proto` files, `protoc` and a prost build step, and
//! a mapping of every openraft type to protobuf); both crates are hyper underneath,
//! well kept and widely used; and the admin and status endpoints are JSON that
//! `curl` can call. Streaming, which gRPC would give, is not needed: openraft sends
//! snapshots whole through `full_snapshot`.

use crate::api::{self, ApiError, ErrorKind};
use crate::snapshot::put_frame;
use crate::types::{NodeId, TypeConfig};
use crate::SnapshotData;
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::impls::BasicNode;
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RPCTypes};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::RaftNetworkFactory;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

type C = TypeConfig;

/// How a call to a node failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// No connection: refused, reset, no route, DNS.
    #[error("{addr}: cannot connect: {why}")]
    Connect { addr: String, why: String },
    /// No answer in time.
    #[error("{addr}: no answer in {after:?}")]
    Timeout { addr: String, after: Duration },
    /// The node answered with an error.
    #[error("{addr}: {err}")]
    Api { addr: String, err: ApiError },
    /// Anything else: a broken body, a connection cut mid-answer.
    #[error("{addr}: {why}")]
    Other { addr: String, why: String },
}

/// `http://ADDR` unless `addr` has a scheme already.
pub(crate) fn base_url(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.trim_end_matches('/').to_string()
    } else {
        format!("http://{addr}")
    }
}

fn send_error(addr: &str, e: reqwest::Error, timeout: Duration) -> CallError {
    if e.is_timeout() {
        CallError::Timeout { addr: addr.to_string(), after: timeout }
    } else if e.is_connect() {
        // reqwest's Display says only "error sending request"; the cause names the reason.
        let mut why = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            why = s.to_string();
            src = s.source();
        }
        CallError::Connect { addr: addr.to_string(), why }
    } else {
        CallError::Other { addr: addr.to_string(), why: e.to_string() }
    }
}

/// Decodes an answer: the body in postcard (or JSON) on success, the [`ApiError`] in
/// JSON otherwise.
pub(crate) async fn decode<T: DeserializeOwned>(
    addr: &str,
    resp: reqwest::Response,
    json: bool,
    timeout: Duration,
) -> Result<T, CallError> {
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| send_error(addr, e, timeout))?;
    if !status.is_success() {
        let err = serde_json::from_slice::<ApiError>(&body).unwrap_or_else(|_| {
            ApiError::new(
                ErrorKind::Internal,
                format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)])),
            )
        });
        return Err(CallError::Api { addr: addr.to_string(), err });
    }
    let r = if json {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    } else {
        postcard::from_bytes(&body).map_err(|e| e.to_string())
    };
    r.map_err(|why| CallError::Other { addr: addr.to_string(), why: format!("undecodable answer: {why}") })
}

/// POSTs `req` in postcard to `addr` + `path` and decodes the postcard answer.
pub(crate) async fn post<Q: Serialize, A: DeserializeOwned>(
    http: &reqwest::Client,
    addr: &str,
    path: &str,
    req: &Q,
    timeout: Duration,
) -> Result<A, CallError> {
    let body = postcard::to_stdvec(req)
        .map_err(|e| CallError::Other { addr: addr.to_string(), why: format!("encoding the request: {e}") })?;
    post_body(http, addr, path, body.into(), timeout).await
}

/// POSTs `body` (postcard, or a stream of it) and decodes the postcard answer.
pub(crate) async fn post_body<A: DeserializeOwned>(
    http: &reqwest::Client,
    addr: &str,
    path: &str,
    body: reqwest::Body,
    timeout: Duration,
) -> Result<A, CallError> {
    let resp = http
        .post(format!("{}{path}", base_url(addr)))
        .header(reqwest::header::CONTENT_TYPE, api::POSTCARD)
        .body(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| send_error(addr, e, timeout))?;
    decode(addr, resp, false, timeout).await
}

/// How the service's HTTP clients are built (a connection pool kept warm).
pub(crate) fn http_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(60)).tcp_nodelay(true).no_proxy()
}

/// A plain-HTTP client, all of a node's peers sharing it (one connection pool).
pub(crate) fn http_client() -> reqwest::Client {
    http_builder().build().expect("a reqwest client without TLS material or proxies builds")
}

/// `scheme://addr` unless `addr` has a scheme already.
pub(crate) fn url(scheme: &str, addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("{scheme}://{addr}")
    }
}

/// openraft's network factory for node `id`.
#[derive(Clone)]
pub struct Network {
    id: NodeId,
    http: reqwest::Client,
    scheme: &'static str,
    /// Addresses used instead of the membership's, by node.
    routes: Arc<BTreeMap<NodeId, String>>,
}

impl Network {
    /// The network of node `id`, over plain HTTP.
    pub fn new(id: NodeId) -> Network {
        Network { id, http: http_client(), scheme: "http", routes: Arc::default() }
    }

    /// The network of node `id` through `http` (a TLS client: `https`), reaching
    /// the nodes in `routes` there rather than at their members' addresses.
    pub(crate) fn with_client(
        id: NodeId,
        http: reqwest::Client,
        scheme: &'static str,
        routes: Arc<BTreeMap<NodeId, String>>,
    ) -> Network {
        Network { id, http, scheme, routes }
    }
}

/// The connection to one node.
pub struct Peer {
    id: NodeId,
    target: NodeId,
    addr: String,
    http: reqwest::Client,
}

impl RaftNetworkFactory<C> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        let addr = self.routes.get(&target).unwrap_or(&node.addr);
        Peer { id: self.id, target, addr: url(self.scheme, addr), http: self.http.clone() }
    }
}

impl Peer {
    async fn rpc<Q: Serialize, A: DeserializeOwned>(
        &self,
        path: &str,
        req: &Q,
        action: RPCTypes,
        option: &RPCOption,
    ) -> Result<A, RPCError<C>> {
        // openraft asks for a timeout at the soft TTL, before it drops the RPC itself.
        let ttl = option.soft_ttl();
        post(&self.http, &self.addr, path, req, ttl).await.map_err(|e| match e {
            CallError::Timeout { .. } => {
                RPCError::Timeout(Timeout { action, id: self.id, target: self.target, timeout: ttl })
            }
            CallError::Connect { .. } => RPCError::Unreachable(Unreachable::new(&e)),
            e => RPCError::Network(NetworkError::new(&e)),
        })
    }
}

/// A remote Raft error: the target's Raft is shutting down or failed. Reported as
/// unreachable, so openraft backs off from it.
fn remote<E: std::error::Error + 'static>(e: E) -> RPCError<C> {
    RPCError::Unreachable(Unreachable::new(&e))
}

impl RaftNetworkV2<C> for Peer {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let r: Result<AppendEntriesResponse<C>, RaftError<C>> =
            self.rpc(api::RAFT_APPEND, &rpc, RPCTypes::AppendEntries, &option).await?;
        r.map_err(remote)
    }

    async fn vote(&mut self, rpc: VoteRequest<C>, option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        let r: Result<VoteResponse<C>, RaftError<C>> = self.rpc(api::RAFT_VOTE, &rpc, RPCTypes::Vote, &option).await?;
        r.map_err(remote)
    }

    async fn pre_vote(&mut self, rpc: VoteRequest<C>, option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        let r: Result<VoteResponse<C>, RaftError<C>> =
            self.rpc(api::RAFT_PRE_VOTE, &rpc, RPCTypes::Vote, &option).await?;
        r.map_err(remote)
    }

    /// Streams the snapshot: a frame with the vote and meta, then the snapshot's own
    /// frames read from the applied log as the body goes (see `snapshot`), so no
    /// copy of the log is held in memory.
    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let (meta, data) = (snapshot.meta, snapshot.snapshot);
        let mut head = Vec::new();
        let encoded =
            postcard::to_stdvec(&(vote, meta)).map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
        put_frame(&mut head, &encoded);
        // openraft's install_snapshot_timeout is meant for one chunk; a whole snapshot
        // takes as long as its records take to send: 30 s, plus 20 µs a record.
        let timeout = Duration::from_secs(30) + Duration::from_micros(20 * data.records());
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Vec<u8>>>(4);
        let _ = tx.try_send(Ok(head));
        tokio::task::spawn_blocking(move || {
            if let Err(e) = data.encode(1 << 20, |chunk| tx.blocking_send(Ok(chunk)).is_ok()) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        }));
        let call = post_body::<Result<SnapshotResponse<C>, Fatal<C>>>(
            &self.http,
            &self.addr,
            api::RAFT_SNAPSHOT,
            body,
            timeout,
        );
        let r = tokio::select! {
            r = call => r,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        match r {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(fatal)) => Err(StreamingError::Unreachable(Unreachable::new(&fatal))),
            Err(CallError::Timeout { .. }) => Err(StreamingError::Timeout(Timeout {
                action: RPCTypes::InstallSnapshot,
                id: self.id,
                target: self.target,
                timeout,
            })),
            Err(e @ CallError::Connect { .. }) => Err(StreamingError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(StreamingError::Network(NetworkError::new(&e))),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        let r: Result<TransferLeaderResponse<C>, Fatal<C>> =
            self.rpc(api::RAFT_TRANSFER, &req, RPCTypes::TransferLeader, &option).await?;
        r.map_err(remote)
    }
}
