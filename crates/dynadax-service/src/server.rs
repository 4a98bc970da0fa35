//! One node of the service: openraft with the dynadax log store in `DIR/raft` and the
//! [`StateMachine`] in `DIR`, and the HTTP server (axum) for Raft RPCs, client
//! appends and reads, and cluster admin.

use crate::api::{self, AdminReply, ApiError, ErrorKind, FollowerStatus, Member, ReadQuery, Status};
use crate::machine::StateMachine;
use crate::mem_store::MemLogStore;
use crate::metrics::Metrics;
use crate::network::{self, Network};
use crate::snapshot::take_frame;
use crate::tls::{Tls, TlsFiles, TlsListener};
use crate::types::{NodeId, Records, Response, TypeConfig, MAX_RECORD};
use crate::SnapshotData;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use dynadax::log::LogOptions;
use dynadax_raft::LogStore;
use futures_util::StreamExt;
use openraft::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};
use openraft::impls::BasicNode;
use openraft::{ChangeMembers, Config, Raft, ReadPolicy, ServerState, SnapshotPolicy};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

type C = TypeConfig;
/// The openraft handle of a node.
pub type RaftNode = Raft<C, StateMachine>;

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Its id in the cluster (any u64 but 0 is fine; ids must be unique).
    pub id: NodeId,
    /// Its directory: the Raft log in `raft/`, the applied log in `applied/`.
    pub dir: PathBuf,
    /// Where it listens.
    pub listen: SocketAddr,
    /// The address the others reach it at (defaults to `listen`).
    pub advertise: Option<String>,
    /// The members to form a cluster with at first start (this node included or
    /// not): the node with the smallest id initializes it if it is new.
    pub peers: BTreeMap<NodeId, String>,
    /// Build a snapshot after this many Raft entries since the last one.
    pub snapshot_every: u64,
    /// Options of both dynadax logs (segment size, recovery mode, tail mode).
    pub log: LogOptions,
    /// TLS for peers and clients (mutual), or plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Where the Raft log is kept.
    pub raft_store: RaftStore,
    /// Where to reach some members instead of the address in the membership (a
    /// NAT, a proxy, or a test's fault injection between two nodes).
    pub routes: BTreeMap<NodeId, String>,
}

impl NodeConfig {
    /// A node `id` in `dir` listening on `listen`, with the defaults.
    pub fn new(id: NodeId, dir: impl Into<PathBuf>, listen: SocketAddr) -> NodeConfig {
        NodeConfig {
            id,
            dir: dir.into(),
            listen,
            advertise: None,
            peers: BTreeMap::new(),
            snapshot_every: 100_000,
            log: LogOptions::default(),
            tls: None,
            routes: BTreeMap::new(),
            raft_store: RaftStore::Dynadax,
        }
    }
}

/// Where a node keeps its Raft log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RaftStore {
    /// A dynadax log in `DIR/raft`: an entry is acknowledged once durable.
    #[default]
    Dynadax,
    /// In memory, persisting nothing (lost with the process): only to measure what
    /// durability costs. Needs a fresh directory.
    Memory,
}

/// A running node's parts, shared by the HTTP handlers.
struct App {
    id: NodeId,
    addr: String,
    /// `https` with TLS, else `http`.
    scheme: &'static str,
    raft: RaftNode,
    sm: StateMachine,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    routes: Arc<BTreeMap<NodeId, String>>,
}

/// The Raft configuration: timeouts that hold on a loaded two-core machine.
fn raft_config(cfg: &NodeConfig) -> Result<Config, crate::Error> {
    Config {
        cluster_name: "dynadax".into(),
        // openraft gives each replication RPC the heartbeat interval as its time:
        // append batches are kept small enough to fit it on a loaded machine.
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
        max_in_snapshot_log_to_keep: 1000,
        max_payload_entries: 256,
        ..Config::default()
    }
    .validate()
    .map_err(|e| crate::Error::Other(format!("raft config: {e}")))
}

enum Listen {
    Plain(tokio::net::TcpListener),
    Tls(TlsListener),
}

/// A started node: its Raft handle and the address it serves on.
pub struct Node {
    app: Arc<App>,
    listener: Option<Listen>,
    /// The address it listens on (the port chosen, for port 0).
    pub local_addr: SocketAddr,
}

impl Node {
    /// Opens the node's logs (a damaged log refuses: the node does not start rather
    /// than serve wrong data), starts Raft and binds the listener.
    pub async fn start(cfg: NodeConfig) -> Result<Node, crate::Error> {
        std::fs::create_dir_all(&cfg.dir).map_err(|e| {
            crate::Error::Other(format!("{}: cannot create the node directory: {e}", cfg.dir.display()))
        })?;
        let metrics = Metrics::new();
        let store = match cfg.raft_store {
            RaftStore::Dynadax => {
                let store: LogStore<C> = LogStore::open(cfg.dir.join("raft"), cfg.log.clone())?;
                let m = metrics.clone();
                store.observe_flushes(move |d| m.observe_flush(d));
                Some(store)
            }
            RaftStore::Memory => None,
        };
        let sm = StateMachine::open(&cfg.dir, cfg.log.clone())?;
        if store.is_none() && sm.progress().borrow().raft_applied.is_some() {
            return Err(crate::Error::Other(format!(
                "{}: holds an applied log from an earlier run, which an in-memory Raft log cannot continue: \
                 give --raft-store memory a fresh directory",
                cfg.dir.display()
            )));
        }
        let progress = sm.progress();
        metrics.start_sampler(move || progress.has_changed().is_ok().then(|| progress.borrow().next));
        let routes = Arc::new(cfg.routes.clone());
        let config = Arc::new(raft_config(&cfg)?);
        let tls = cfg.tls.as_ref().map(Tls::load).transpose()?;
        let (http, scheme) = match &tls {
            Some(t) => (t.http_client()?, "https"),
            None => (network::http_client(), "http"),
        };
        let net = Network::with_client(cfg.id, http.clone(), scheme, routes.clone());
        let raft = match store {
            Some(store) => Raft::new(cfg.id, config, net, store, sm.clone()).await,
            None => Raft::new(cfg.id, config, net, MemLogStore::default(), sm.clone()).await,
        }
        .map_err(|e| crate::Error::Other(format!("starting raft: {e}")))?;
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| crate::Error::Other(format!("cannot listen on {}: {e}", cfg.listen)))?;
        let local_addr = listener.local_addr().map_err(|e| crate::Error::Other(format!("{}: {e}", cfg.listen)))?;
        let addr = cfg.advertise.clone().unwrap_or_else(|| local_addr.to_string());
        let app = Arc::new(App { id: cfg.id, addr: addr.clone(), scheme, raft, sm, http, metrics, routes });
        let listener = match &tls {
            Some(t) => Listen::Tls(
                t.listener(listener).map_err(|e| crate::Error::Other(format!("TLS listener on {local_addr}: {e}")))?,
            ),
            None => Listen::Plain(listener),
        };
        if !cfg.peers.is_empty() {
            let mut members = cfg.peers.clone();
            members.insert(cfg.id, addr);
            let first = *members.keys().next().expect("members has this node");
            if first == cfg.id && !app.raft.is_initialized().await.unwrap_or(true) {
                let app = app.clone();
                tokio::spawn(async move {
                    let m: BTreeMap<_, _> = members.into_iter().map(|(id, a)| (id, BasicNode::new(a))).collect();
                    match app.raft.initialize(m).await {
                        Ok(()) => tracing::info!("node {}: initialized the cluster from --peers", app.id),
                        Err(e) => tracing::warn!("node {}: initializing from --peers: {e}", app.id),
                    }
                });
            }
        }
        log_leader_changes(app.id, app.raft.clone());
        Ok(Node { app, listener: Some(listener), local_addr })
    }

    /// The node's Raft handle.
    pub fn raft(&self) -> &RaftNode {
        &self.app.raft
    }

    /// The node's state machine (its applied log).
    pub fn state_machine(&self) -> &StateMachine {
        &self.app.sm
    }

    /// Serves until `shutdown` completes, then stops Raft (its logs close cleanly).
    pub async fn serve(mut self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), crate::Error> {
        let listener = self.listener.take().expect("serve is called once");
        let router = router(self.app.clone());
        let r = match listener {
            Listen::Plain(l) => axum::serve(l, router).with_graceful_shutdown(shutdown).await,
            Listen::Tls(l) => axum::serve(l, router).with_graceful_shutdown(shutdown).await,
        };
        let _ = self.app.raft.shutdown().await;
        r.map_err(|e| crate::Error::Other(format!("serving on {}: {e}", self.local_addr)))
    }
}

/// Logs (info) each change of term or leader this node sees.
fn log_leader_changes(id: NodeId, raft: RaftNode) {
    let mut rx = raft.metrics();
    tokio::spawn(async move {
        let mut last = (None, 0);
        loop {
            let now = {
                let m = rx.borrow_watched();
                (m.current_leader, m.current_term)
            };
            if now != last {
                match now.0 {
                    Some(l) => tracing::info!("node {id}: term {}, leader {l}", now.1),
                    None => tracing::info!("node {id}: term {}, no leader", now.1),
                }
                last = now;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(api::RAFT_APPEND, post(raft_append))
        .route(api::RAFT_VOTE, post(raft_vote))
        .route(api::RAFT_PRE_VOTE, post(raft_pre_vote))
        .route(api::RAFT_SNAPSHOT, post(raft_snapshot))
        .route(api::RAFT_TRANSFER, post(raft_transfer))
        .route(api::APPEND, post(append))
        .route(api::READ, get(read))
        .route(api::READ_INDEX, post(read_index))
        .route(api::INIT, post(init))
        .route(api::ADD_LEARNER, post(add_learner))
        .route(api::PROMOTE, post(promote))
        .route(api::REMOVE, post(remove))
        .route(api::TRANSFER_LEADER, post(transfer_leader))
        .route(api::STATUS, get(status))
        .route(api::METRICS, get(metrics))
        // Appends up to MAX_APPEND_BODY (snapshots stream, unlimited).
        .layer(DefaultBodyLimit::max(api::MAX_APPEND_BODY + (1 << 20)))
        .with_state(app)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> HttpResponse {
        let status = StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self)).into_response()
    }
}

fn postcard_reply<T: Serialize>(v: &T) -> HttpResponse {
    match postcard::to_stdvec(v) {
        Ok(b) => ([(header::CONTENT_TYPE, api::POSTCARD)], b).into_response(),
        Err(e) => ApiError::new(ErrorKind::Internal, format!("encoding the answer: {e}")).into_response(),
    }
}

fn decode_body<T: DeserializeOwned>(app: &App, what: &str, body: &[u8]) -> Result<T, ApiError> {
    postcard::from_bytes(body)
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("node {}: undecodable {what} request: {e}", app.id)))
}

// ---- Raft RPCs ----

async fn raft_append(State(app): State<Arc<App>>, body: Bytes) -> HttpResponse {
    match decode_body(&app, "append-entries", &body) {
        Ok(rpc) => postcard_reply(&app.raft.append_entries(rpc).await),
        Err(e) => e.into_response(),
    }
}

async fn raft_vote(State(app): State<Arc<App>>, body: Bytes) -> HttpResponse {
    match decode_body(&app, "vote", &body) {
        Ok(rpc) => postcard_reply(&app.raft.vote(rpc).await),
        Err(e) => e.into_response(),
    }
}

async fn raft_pre_vote(State(app): State<Arc<App>>, body: Bytes) -> HttpResponse {
    match decode_body(&app, "pre-vote", &body) {
        Ok(rpc) => postcard_reply(&app.raft.pre_vote(rpc).await),
        Err(e) => e.into_response(),
    }
}

/// Receives a streamed snapshot (see `snapshot`): its records go into a new applied
/// log as they arrive, then openraft installs it (the state machine swaps it in).
async fn raft_snapshot(State(app): State<Arc<App>>, body: axum::body::Body) -> HttpResponse {
    let _one_at_a_time = app.sm.receiving().await;
    match receive_snapshot(&app, body).await {
        Ok((vote, snapshot)) => postcard_reply(&app.raft.install_full_snapshot(vote, snapshot).await),
        Err(e) => {
            ApiError::new(ErrorKind::BadRequest, format!("node {}: receiving a snapshot: {e}", app.id)).into_response()
        }
    }
}

async fn receive_snapshot(
    app: &App,
    body: axum::body::Body,
) -> std::io::Result<(VoteOf<C>, SnapshotOf<C, SnapshotData>)> {
    let mut stream = body.into_data_stream();
    let mut head: Option<(VoteOf<C>, SnapshotMetaOf<C>)> = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut writer = Some(app.sm.receive_snapshot()?);
    let feed = |w: &mut Option<crate::snapshot::SnapshotWriter>, bytes: Vec<u8>| {
        let mut taken = w.take().expect("the writer is put back after each feed");
        async move {
            tokio::task::spawn_blocking(move || taken.feed(&bytes).map(|_| taken))
                .await
                .map_err(std::io::Error::other)?
        }
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(std::io::Error::other)?;
        buf.extend_from_slice(&chunk);
        if head.is_none() {
            let mut at = 0;
            match take_frame(&buf, &mut at)? {
                Some(f) => {
                    head = Some(postcard::from_bytes(f).map_err(std::io::Error::other)?);
                    buf.drain(..at);
                }
                None => continue,
            }
        }
        // Fed in pieces of a few MiB: each feed is a hop to a blocking thread.
        if buf.len() >= 4 << 20 {
            writer = Some(feed(&mut writer, std::mem::take(&mut buf)).await?);
        }
    }
    let Some((vote, meta)) = head else {
        return Err(std::io::Error::other("the body ended before the snapshot's meta"));
    };
    let w = feed(&mut writer, buf).await?;
    let data = tokio::task::spawn_blocking(move || w.finish()).await.map_err(std::io::Error::other)??;
    Ok((vote, SnapshotOf::<C, SnapshotData> { meta, snapshot: data }))
}

async fn raft_transfer(State(app): State<Arc<App>>, body: Bytes) -> HttpResponse {
    match decode_body(&app, "transfer-leader", &body) {
        Ok(rpc) => postcard_reply(&app.raft.handle_transfer_leader(rpc).await),
        Err(e) => e.into_response(),
    }
}

// ---- errors from openraft, for clients ----

impl App {
    /// The leader this node knows, with its address from the membership.
    fn leader(&self) -> Option<Member> {
        let m = self.raft.metrics().borrow_watched().clone();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id).map(|n| n.addr.clone())?;
        Some(Member { id, addr })
    }

    fn not_leader(&self, f: Option<&ForwardToLeader<C>>) -> ApiError {
        let leader = match f {
            Some(ForwardToLeader { leader_id: Some(id), leader_node: Some(n), .. }) => {
                Some(Member { id: *id, addr: n.addr.clone() })
            }
            _ => self.leader(),
        };
        let m = self.raft.metrics().borrow_watched().clone();
        let member = m.membership_config.membership().get_node(&self.id).is_some();
        match leader {
            Some(l) if l.id != self.id => ApiError {
                kind: ErrorKind::NotLeader,
                message: format!("node {} is not the leader: forward to leader {} at {}", self.id, l.id, l.addr),
                leader: Some(l),
            },
            _ if !member => ApiError::new(
                ErrorKind::NotMember,
                format!(
                    "node {} at {} is not a member of an initialized cluster (run `dynadax cluster init`, or add it)",
                    self.id, self.addr
                ),
            ),
            _ => {
                ApiError::new(ErrorKind::NoLeader, format!("node {}: no leader now (an election is running)", self.id))
            }
        }
    }

    fn raft_error<E>(&self, what: &str, e: RaftError<C, E>) -> ApiError
    where
        E: std::error::Error + openraft::TryAsRef<ForwardToLeader<C>>,
    {
        if let Some(f) = e.forward_to_leader() {
            return self.not_leader(Some(f));
        }
        match e {
            RaftError::Fatal(f) => {
                ApiError::new(ErrorKind::Unavailable, format!("node {}: {what}: raft stopped: {f}", self.id))
            }
            RaftError::APIError(e) => ApiError::new(ErrorKind::Unavailable, format!("node {}: {what}: {e}", self.id)),
        }
    }
}

// ---- client appends and reads ----

async fn append(State(app): State<Arc<App>>, body: Bytes) -> HttpResponse {
    match do_append(&app, &body).await {
        Ok(r) => postcard_reply(&r),
        Err(e) => e.into_response(),
    }
}

async fn do_append(app: &App, body: &[u8]) -> Result<Vec<Response>, ApiError> {
    if body.len() > api::MAX_APPEND_BODY {
        return Err(ApiError::new(
            ErrorKind::TooLarge,
            format!(
                "node {}: append request of {} bytes: the limit is {} bytes",
                app.id,
                body.len(),
                api::MAX_APPEND_BODY
            ),
        ));
    }
    let batch: api::AppendBatch = decode_body(app, "append", body)?;
    if let Some((i, r)) = batch.requests.iter().enumerate().find(|(_, r)| r.bytes.len() > MAX_RECORD) {
        return Err(ApiError::new(
            ErrorKind::TooLarge,
            format!(
                "node {}: record {i} of the request is {} bytes: the largest record is {MAX_RECORD} bytes (1 MiB)",
                app.id,
                r.bytes.len()
            ),
        ));
    }
    if !app.raft.is_leader() {
        return Err(app.not_leader(None));
    }
    let n = batch.requests.len();
    let mut stream = app
        .raft
        .client_write_many(batch.requests)
        .await
        .map_err(|f| ApiError::new(ErrorKind::Unavailable, format!("node {}: raft stopped: {f}", app.id)))?;
    let mut out = Vec::with_capacity(n);
    while let Some(r) = stream.next().await {
        match r {
            Ok(Ok(w)) => out.push(w.response),
            Ok(Err(ClientWriteError::ForwardToLeader(f))) => return Err(app.not_leader(Some(&f))),
            Ok(Err(e)) => return Err(ApiError::new(ErrorKind::NoLeader, format!("node {}: append: {e}", app.id))),
            Err(f) => return Err(ApiError::new(ErrorKind::Unavailable, format!("node {}: raft stopped: {f}", app.id))),
        }
    }
    if out.len() != n {
        return Err(ApiError::new(
            ErrorKind::Unavailable,
            format!("node {}: {} of {n} appends answered (raft stopping?)", app.id, out.len()),
        ));
    }
    Ok(out)
}

/// The longest a read waits for a record, or for this node to catch up with the
/// leader's read index.
const MAX_WAIT: Duration = Duration::from_secs(30);

async fn read(State(app): State<Arc<App>>, Query(q): Query<ReadQuery>) -> HttpResponse {
    match do_read(&app, q).await {
        Ok(r) => postcard_reply(&r),
        Err(e) => e.into_response(),
    }
}

async fn do_read(app: &App, q: ReadQuery) -> Result<Records, ApiError> {
    if !q.stale {
        linearize(app).await?;
    }
    if let Some(ms) = q.wait_ms {
        // Long poll: until a record at `from` is applied here, or the time is up.
        let mut rx = app.sm.progress();
        let wait = rx.wait_for(|p| p.next > q.from);
        let _ = tokio::time::timeout(Duration::from_millis(ms).min(MAX_WAIT), wait).await;
    }
    let max = q.max_bytes.unwrap_or(4 << 20).min(64 << 20);
    let sm = app.sm.clone();
    let to = q.to.unwrap_or(u64::MAX);
    let id = app.id;
    tokio::task::spawn_blocking(move || sm.read(q.from, to, max))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("node {id}: read: {e}")))?
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("node {id}: read: {e}")))
}

/// Makes the next local read linearizable: on the leader, openraft's read index
/// (a heartbeat round confirms it still leads, then its state machine applies up to
/// the commit index it had); on a follower, the leader's read index, then waits
/// until this node applied up to it (openraft's follower read).
async fn linearize(app: &App) -> Result<(), ApiError> {
    if app.raft.is_leader() {
        match app.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(_) => return Ok(()),
            Err(e) if e.forward_to_leader().is_none() => return Err(app.raft_error("read", e)),
            Err(_) => {} // lost leadership meanwhile: ask the new leader
        }
    }
    let leader = match app.leader() {
        Some(l) if l.id != app.id => l,
        _ => return Err(app.not_leader(None)),
    };
    let leader_url = network::url(app.scheme, app.routes.get(&leader.id).unwrap_or(&leader.addr));
    let index: Option<u64> = network::post(&app.http, &leader_url, api::READ_INDEX, &(), MAX_WAIT)
        .await
        .map_err(|e| ApiError::new(ErrorKind::NoLeader, format!("node {}: read index from the leader: {e}", app.id)))?;
    let Some(index) = index else { return Ok(()) };
    let mut rx = app.sm.progress();
    tokio::time::timeout(MAX_WAIT, rx.wait_for(|p| p.raft_applied.is_some_and(|a| a >= index)))
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorKind::Unavailable,
                format!("node {}: did not catch up with the leader's read index {index} in {MAX_WAIT:?}", app.id),
            )
        })?
        .map_err(|_| ApiError::new(ErrorKind::Unavailable, format!("node {}: stopping", app.id)))?;
    Ok(())
}

/// `POST /read-index` (leader only): the Raft index a linearizable read must see
/// applied, after this node confirmed it still leads.
async fn read_index(State(app): State<Arc<App>>) -> HttpResponse {
    match app.raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
        Ok(l) => postcard_reply(&Some(l.read_log_id().index())),
        Err(e) => app.raft_error("read index", e).into_response(),
    }
}

// ---- admin ----

fn admin_reply(message: String, log_index: Option<u64>) -> HttpResponse {
    Json(AdminReply { message, log_index }).into_response()
}

async fn init(State(app): State<Arc<App>>, Json(req): Json<api::InitRequest>) -> HttpResponse {
    if req.members.is_empty() {
        return ApiError::new(ErrorKind::BadRequest, "init needs at least one member").into_response();
    }
    let ids: Vec<_> = req.members.keys().copied().collect();
    let m: BTreeMap<_, _> = req.members.into_iter().map(|(id, a)| (id, BasicNode::new(a))).collect();
    match app.raft.initialize(m).await {
        Ok(()) => admin_reply(format!("node {}: initialized a cluster of {ids:?}", app.id), None),
        Err(e) => {
            let msg = format!("node {}: init: {e}", app.id);
            let kind = if matches!(e, RaftError::APIError(_)) { ErrorKind::BadRequest } else { ErrorKind::Unavailable };
            ApiError::new(kind, msg).into_response()
        }
    }
}

async fn add_learner(State(app): State<Arc<App>>, Json(req): Json<api::AddLearnerRequest>) -> HttpResponse {
    match app.raft.add_learner(req.id, BasicNode::new(req.addr.clone()), true).await {
        Ok(r) => admin_reply(
            format!("node {}: added node {} at {} as a learner (caught up)", app.id, req.id, req.addr),
            Some(r.log_id.index),
        ),
        Err(e) => app.raft_error("add-learner", e).into_response(),
    }
}

async fn promote(State(app): State<Arc<App>>, Json(req): Json<api::NodesRequest>) -> HttpResponse {
    let ids: BTreeSet<_> = req.ids.iter().copied().collect();
    match app.raft.change_membership(ChangeMembers::AddVoterIds(ids), false).await {
        Ok(r) => admin_reply(format!("node {}: nodes {:?} are voters", app.id, req.ids), Some(r.log_id.index)),
        Err(e) => app.raft_error("promote", e).into_response(),
    }
}

async fn remove(State(app): State<Arc<App>>, Json(req): Json<api::NodesRequest>) -> HttpResponse {
    let m = app.raft.metrics().borrow_watched().membership_config.clone();
    let voters: BTreeSet<_> = m.membership().voter_ids().collect();
    let (v, l): (BTreeSet<_>, BTreeSet<_>) = req.ids.iter().copied().partition(|id| voters.contains(id));
    let mut changes = Vec::new();
    if !v.is_empty() {
        changes.push(ChangeMembers::RemoveVoters(v));
    }
    if !l.is_empty() {
        changes.push(ChangeMembers::RemoveNodes(l));
    }
    match app.raft.change_membership(ChangeMembers::Batch(changes), false).await {
        Ok(r) => admin_reply(format!("node {}: removed nodes {:?}", app.id, req.ids), Some(r.log_id.index)),
        Err(e) => app.raft_error("remove", e).into_response(),
    }
}

async fn transfer_leader(State(app): State<Arc<App>>, Json(req): Json<api::TransferRequest>) -> HttpResponse {
    if !app.raft.is_leader() {
        return app.not_leader(None).into_response();
    }
    let m = app.raft.metrics().borrow_watched().membership_config.clone();
    if !m.membership().voter_ids().any(|v| v == req.to) {
        return ApiError::new(ErrorKind::BadRequest, format!("node {}: node {} is not a voter", app.id, req.to))
            .into_response();
    }
    match app.raft.trigger().transfer_leader(req.to).await {
        Ok(()) => admin_reply(format!("node {}: leadership transfer to node {} started", app.id, req.to), None),
        Err(f) => ApiError::new(ErrorKind::Unavailable, format!("node {}: raft stopped: {f}", app.id)).into_response(),
    }
}

async fn status(State(app): State<Arc<App>>) -> HttpResponse {
    Json(status_of(&app)).into_response()
}

/// `GET /metrics`: the status's figures and the flush histogram, for Prometheus.
async fn metrics(State(app): State<Arc<App>>) -> HttpResponse {
    match app.metrics.render(&status_of(&app)) {
        Ok(text) => ([(header::CONTENT_TYPE, api::OPENMETRICS)], text).into_response(),
        Err(e) => {
            ApiError::new(ErrorKind::Internal, format!("node {}: encoding the metrics: {e}", app.id)).into_response()
        }
    }
}

fn status_of(app: &App) -> Status {
    let m = app.raft.metrics().borrow_watched().clone();
    let mem = m.membership_config.membership();
    let member = |id: NodeId| Member { id, addr: mem.get_node(&id).map(|n| n.addr.clone()).unwrap_or_default() };
    let last = m.last_log_index;
    let replication = m
        .replication
        .as_ref()
        .map(|r| {
            r.iter()
                .filter(|(id, _)| **id != app.id)
                .map(|(id, matched)| {
                    let matched = matched.as_ref().map(|l| l.index);
                    let lag = match (last, matched) {
                        (Some(l), Some(x)) => l.saturating_sub(x),
                        (Some(l), None) => l + 1,
                        _ => 0,
                    };
                    FollowerStatus { id: *id, matched, lag }
                })
                .collect()
        })
        .unwrap_or_default();
    let rates = app.metrics.rates();
    Status {
        id: app.id,
        addr: app.addr.clone(),
        state: format!("{:?}", m.state),
        term: m.current_term,
        leader: m.current_leader.map(member),
        last_log_index: last,
        committed: m.local_committed.as_ref().map(|l| l.index),
        applied: m.last_applied.as_ref().map(|l| l.index),
        records: app.sm.progress().borrow().next,
        snapshot: m.snapshot.as_ref().map(|l| l.index),
        purged: m.purged.as_ref().map(|l| l.index),
        voters: mem.voter_ids().map(member).collect(),
        learners: mem.learner_ids().map(member).collect(),
        replication,
        tls: app.scheme == "https",
        appends_per_sec: rates.appends_per_sec,
        flushes_per_sec: rates.flushes_per_sec,
        flush_mean_us: rates.flush_mean_us,
        initialized: m.state != ServerState::Learner || mem.nodes().next().is_some(),
    }
}
