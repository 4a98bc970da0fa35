//! An in-process openraft cluster whose nodes keep their logs in dynadax log stores:
//! RPCs go straight to the target's `Raft` handle (a node taken out of the router is
//! unreachable), and each node's state machine is openraft-memstore's.
#![allow(dead_code)]

use dynadax::log::LogOptions;
use dynadax_raft::LogStore;
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::storage::RaftLogStorage;
use openraft::{Config, Raft, RaftNetworkFactory};
use openraft_memstore::{BlockConfig, ClientRequest, MemStateMachine, TypeConfig};
use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub type C = TypeConfig;
pub type Node = Raft<C, Arc<MemStateMachine>>;

/// The nodes that can be reached, by id.
#[derive(Clone, Default)]
pub struct Router {
    nodes: Arc<Mutex<BTreeMap<u64, Node>>>,
}

pub struct Conn {
    router: Router,
    target: u64,
}

impl Router {
    fn get(&self, id: u64) -> Option<Node> {
        self.nodes.lock().unwrap().get(&id).cloned()
    }
}

impl RaftNetworkFactory<C> for Router {
    type Network = Conn;
    async fn new_client(&mut self, target: u64, _node: &()) -> Conn {
        Conn { router: self.clone(), target }
    }
}

impl Conn {
    fn target(&self) -> Result<Node, Unreachable<C>> {
        self.router.get(self.target).ok_or_else(|| Unreachable::from_string(format!("node {} is down", self.target)))
    }
}

impl RaftNetworkV2<C> for Conn {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        _: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let raft = self.target()?;
        raft.append_entries(rpc).await.map_err(|e| Unreachable::new(&e).into())
    }

    async fn vote(&mut self, rpc: VoteRequest<C>, _: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        let raft = self.target()?;
        raft.vote(rpc).await.map_err(|e| Unreachable::new(&e).into())
    }

    async fn full_snapshot(
        &mut self,
        vote: openraft::alias::VoteOf<C>,
        snapshot: openraft::alias::SnapshotOf<C, Cursor<Vec<u8>>>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let raft = self.target()?;
        raft.install_full_snapshot(vote, snapshot).await.map_err(|e| Unreachable::new(&e).into())
    }
}

/// Timeouts that hold on a loaded two-core machine; no snapshots (a test that wants
/// them sets its own policy).
pub fn config() -> Config {
    Config {
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
        snapshot_policy: openraft::SnapshotPolicy::Never,
        ..Config::default()
    }
}

/// A cluster of nodes, each with its log store in `root/node-{id}`, made by
/// `open_store` (a dynadax `LogStore`, or another store to compare with).
pub struct Cluster<LS> {
    pub root: PathBuf,
    pub router: Router,
    pub config: Arc<Config>,
    open_store: Box<dyn Fn(&Path) -> LS + Send + Sync>,
    /// The log store of each running node.
    pub stores: BTreeMap<u64, LS>,
    /// Each node's state machine, kept across its restarts as a persistent one
    /// would be (openraft-memstore's lives in memory): a node whose log was purged
    /// after a snapshot cannot rebuild its state from the log alone.
    pub machines: BTreeMap<u64, Arc<MemStateMachine>>,
}

/// A cluster whose nodes keep their logs in dynadax log stores opened with `opts`.
pub fn dynadax_cluster(root: &Path, opts: LogOptions, config: Config) -> Cluster<LogStore<C>> {
    Cluster::new(root, move |dir| LogStore::<C>::open(dir, opts.clone()).unwrap(), config)
}

impl<LS: RaftLogStorage<C> + Clone> Cluster<LS> {
    pub fn new(root: &Path, open_store: impl Fn(&Path) -> LS + Send + Sync + 'static, config: Config) -> Cluster<LS> {
        Cluster {
            root: root.to_path_buf(),
            router: Router::default(),
            config: Arc::new(config.validate().unwrap()),
            open_store: Box::new(open_store),
            stores: BTreeMap::new(),
            machines: BTreeMap::new(),
        }
    }

    pub fn log_dir(&self, id: u64) -> PathBuf {
        self.root.join(format!("node-{id}"))
    }

    /// Starts node `id` on its log (recovered if it exists) and its state machine.
    pub async fn start(&mut self, id: u64) -> Node {
        let store = (self.open_store)(&self.log_dir(id));
        self.stores.insert(id, store.clone());
        let sm =
            self.machines.entry(id).or_insert_with(|| Arc::new(MemStateMachine::new(BlockConfig::default()))).clone();
        let raft = Raft::new(id, self.config.clone(), self.router.clone(), store, sm).await.unwrap();
        self.router.nodes.lock().unwrap().insert(id, raft.clone());
        raft
    }

    /// Takes node `id` out of the router and shuts it down (its log store closes once
    /// openraft drops it).
    pub async fn stop(&mut self, id: u64) {
        let raft = self.router.nodes.lock().unwrap().remove(&id).expect("node is running");
        raft.shutdown().await.unwrap();
        self.stores.remove(&id);
    }

    pub fn node(&self, id: u64) -> Node {
        self.router.get(id).expect("node is running")
    }

    pub fn running(&self) -> Vec<u64> {
        self.router.nodes.lock().unwrap().keys().copied().collect()
    }

    /// The leader the running nodes agree on, waiting up to `timeout` for one.
    pub async fn leader(&self, timeout: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ids = self.running();
            let mut seen = Vec::new();
            for id in &ids {
                seen.push(self.node(*id).current_leader().await);
            }
            if let Some(Some(l)) = seen.first() {
                if ids.contains(l) && seen.iter().all(|s| s == &Some(*l)) && self.node(*l).is_leader() {
                    return *l;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no leader among {ids:?}: they see {seen:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Writes `n` requests through `leader`; returns the last one's index. A leader
/// whose lease is not established yet (just elected, or on a loaded machine) asks
/// the client to retry, as a real client would.
pub async fn write<LS: RaftLogStorage<C> + Clone>(cluster: &Cluster<LS>, leader: u64, client: &str, n: u64) -> u64 {
    let raft = cluster.node(leader);
    let mut last = 0;
    for i in 0..n {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        last = loop {
            match raft.client_write(request(client, i)).await {
                Ok(r) => break r.log_id.index,
                Err(e) if e.forward_to_leader().is_some() && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("write {client}-{i} through node {leader}: {e}"),
            }
        };
    }
    last
}

pub fn request(client: &str, serial: u64) -> ClientRequest {
    ClientRequest {
        client: client.to_string(),
        serial,
        status: format!("{client}-{serial}-{}", "v".repeat((serial % 200) as usize)),
    }
}
