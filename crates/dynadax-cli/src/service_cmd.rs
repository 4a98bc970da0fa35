//! `dynadax serve`, `dynadax cluster ...` and `dynadax client ...`: a replicated log
//! service on the dynadax-service crate (openraft over HTTP; see docs/service.md).

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use dynadax_service::{Client, Node, NodeConfig, NodeId, RaftStore, Status};
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// TLS files: all three, or none (plain HTTP).
#[derive(Args, Debug, Clone)]
pub struct TlsArgs {
    /// The cluster's CA certificate (PEM): peers and clients must present a
    /// certificate it signed, and nodes must too.
    #[arg(long, global = true, requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// This node's or client's certificate (PEM), signed by the CA; a node's names
    /// the address it is reached at (IP or DNS subject alternative name).
    #[arg(long, global = true, requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, global = true, requires_all = ["tls_ca", "tls_cert"])]
    tls_key: Option<PathBuf>,
}

impl TlsArgs {
    fn files(&self) -> Option<dynadax_service::TlsFiles> {
        match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => {
                Some(dynadax_service::TlsFiles { ca: ca.clone(), cert: cert.clone(), key: key.clone() })
            }
            _ => None,
        }
    }

    fn client(&self, addrs: Vec<String>) -> anyhow::Result<Client> {
        let c = Client::connect(addrs)?;
        Ok(match self.files() {
            Some(f) => c.with_tls(&f)?,
            None => c,
        })
    }
}

/// `dynadax serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    tls: TlsArgs,
    /// This node's id: a number unique in the cluster.
    #[arg(long)]
    id: NodeId,
    /// Its directory (created): the Raft log in DIR/raft, the applied log (the
    /// replicated log's records) in DIR/applied, the last snapshot in DIR/snapshot.
    #[arg(long)]
    dir: PathBuf,
    /// Address to listen on, HOST:PORT (port 0: any free port, printed at start).
    #[arg(long)]
    listen: SocketAddr,
    /// Address the other nodes and clients reach this node at (default: --listen).
    #[arg(long)]
    advertise: Option<String>,
    /// The cluster's members, ID=ADDR,... (this node may be among them): at first
    /// start the node with the smallest id initializes the cluster, so three
    /// `serve` commands form one with no `cluster init`. Ignored once initialized.
    #[arg(long, value_parser = parse_members)]
    peers: Option<BTreeMap<NodeId, String>>,
    /// Build a snapshot every this many Raft entries (it lets the Raft log be purged
    /// and a node that fell far behind catch up).
    #[arg(long, default_value_t = 100_000)]
    snapshot_every: u64,
    /// Reach node ID at ADDR rather than at the address its membership gives,
    /// ID=ADDR,... (through a NAT or a proxy; the fault tests put a proxy they
    /// control between every two nodes this way).
    #[arg(long, value_parser = parse_members)]
    route: Option<BTreeMap<NodeId, String>>,
    /// Where the Raft log is kept: `dynadax` (DIR/raft, durable: an entry is
    /// acknowledged once it is on disk) or `memory` (persists nothing, lost with the
    /// process; only to measure what durability costs, and on a fresh --dir).
    #[arg(long, value_enum, default_value_t = RaftStoreArg::Dynadax)]
    raft_store: RaftStoreArg,
}

/// `--raft-store`.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum RaftStoreArg {
    /// A dynadax log in DIR/raft.
    Dynadax,
    /// In memory, not durable.
    Memory,
}

/// `dynadax cluster ...`.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Initialize a new cluster: its first members, ID=ADDR,... (run once, on any one
    /// of them).
    #[command(after_help = "Example:
  dynadax cluster init --node 127.0.0.1:7001 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003")]
    Init {
        /// The node to send it to (one of the members).
        #[arg(long)]
        node: String,
        /// The members, ID=ADDR,...
        #[arg(value_parser = parse_members)]
        members: BTreeMap<NodeId, String>,
    },
    /// Add a node as a learner (it receives the log, has no vote); waits until it
    /// has caught up. Then `promote` it.
    #[command(after_help = "Example:
  dynadax serve --id 4 --dir n4 --listen 127.0.0.1:7004 &
  dynadax cluster add-learner --node 127.0.0.1:7001 --id 4 --addr 127.0.0.1:7004
  dynadax cluster promote --node 127.0.0.1:7001 4")]
    AddLearner {
        /// Any node of the cluster (a follower forwards you to the leader).
        #[arg(long)]
        node: String,
        /// The new node's id.
        #[arg(long)]
        id: NodeId,
        /// The new node's address.
        #[arg(long)]
        addr: String,
    },
    /// Make learners voters.
    Promote {
        /// Any node of the cluster.
        #[arg(long)]
        node: String,
        /// The learners' ids.
        #[arg(required = true)]
        ids: Vec<NodeId>,
    },
    /// Remove nodes (voters or learners) from the cluster.
    Remove {
        /// Any node of the cluster.
        #[arg(long)]
        node: String,
        /// The nodes' ids.
        #[arg(required = true)]
        ids: Vec<NodeId>,
    },
    /// Ask the leader to hand leadership to another voter.
    TransferLeader {
        /// Any node of the cluster.
        #[arg(long)]
        node: String,
        /// The voter to become leader.
        #[arg(long)]
        to: NodeId,
    },
    /// One node's view: its state, term, leader, commit and applied index, records,
    /// members, and (on the leader) each follower's matched index and lag.
    Status {
        /// The node to ask.
        #[arg(long)]
        node: String,
        /// Print one JSON object (keys: id, addr, state, term, leader, last_log_index,
        /// committed, applied, records, snapshot, purged, voters, learners,
        /// replication, tls, appends_per_sec, flushes_per_sec, flush_mean_us,
        /// initialized). The same figures, and a histogram of flush times, are at
        /// http://NODE/metrics for Prometheus.
        #[arg(long)]
        json: bool,
    },
}

/// `dynadax client ...`.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Append standard input's lines as records; print each one's index in the
    /// replicated log once it is committed, in input order.
    ///
    /// Many lines are in flight at once (one batch of what input has ready, up to
    /// 4,096 lines, while the next fills), and the records land in input order. The
    /// run has a random client id and numbers its records; a retry after a leader
    /// change or a timeout resends the same numbers, and the cluster applies each
    /// record once.
    #[command(after_help = "Examples:
  seq 1000 | dynadax client append --cluster 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
  tail -f app.log | dynadax client append --cluster 127.0.0.1:7001

A record is at most 1 MiB (a longer line is refused with an error).")]
    Append {
        /// Nodes of the cluster, HOST:PORT,... (any; the leader is found).
        #[arg(long, value_delimiter = ',', required = true)]
        cluster: Vec<String>,
        /// Print {"index": N} per line instead of the bare index.
        #[arg(long)]
        json: bool,
        /// Give up on a record after retrying this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Print records as INDEX<TAB>record lines, linearizable unless --stale.
    #[command(after_help = "Examples:
  dynadax client read --cluster 127.0.0.1:7001 --from 100 --to 200
  dynadax client read --cluster 127.0.0.1:7002 --stale     # this node's applied log, maybe behind")]
    Read {
        /// Nodes of the cluster, HOST:PORT,...
        #[arg(long, value_delimiter = ',', required = true)]
        cluster: Vec<String>,
        /// First index to print.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Stop before this index (default: the end of the log).
        #[arg(long)]
        to: Option<u64>,
        /// Read whichever node answers as it is, without asking the leader: faster,
        /// possibly behind the last commits.
        #[arg(long)]
        stale: bool,
        /// One JSON object per line: {"index": N, "record": "..."}.
        #[arg(long)]
        json: bool,
    },
    /// Like `read --stale`, then follow: print records as they are committed and
    /// applied (a long poll of the node read from).
    Tail {
        /// Nodes of the cluster, HOST:PORT,...
        #[arg(long, value_delimiter = ',', required = true)]
        cluster: Vec<String>,
        /// First index to print.
        #[arg(long, default_value_t = 0)]
        from: u64,
    },
}

/// `ID=ADDR,...`.
fn parse_members(s: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut m = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (id, addr) =
            part.split_once('=').ok_or_else(|| format!("{part:?} is not ID=ADDR (e.g. 1=127.0.0.1:7001)"))?;
        let id: NodeId = id.trim().parse().map_err(|_| format!("{id:?} in {part:?} is not a node id (a number)"))?;
        if addr.trim().is_empty() {
            return Err(format!("{part:?}: the address is empty"));
        }
        if m.insert(id, addr.trim().to_string()).is_some() {
            return Err(format!("node {id} is given twice"));
        }
    }
    if m.is_empty() {
        return Err("no member given (ID=ADDR,...)".into());
    }
    Ok(m)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

/// `dynadax serve`: runs the node until SIGINT or SIGTERM.
pub fn serve(a: ServeArgs) -> anyhow::Result<()> {
    init_logging();
    let rt = runtime()?;
    rt.block_on(async move {
        let mut cfg = NodeConfig::new(a.id, &a.dir, a.listen);
        cfg.advertise = a.advertise.clone();
        cfg.peers = a.peers.clone().unwrap_or_default();
        cfg.snapshot_every = a.snapshot_every;
        cfg.tls = a.tls.files();
        cfg.routes = a.route.clone().unwrap_or_default();
        cfg.raft_store = match a.raft_store {
            RaftStoreArg::Dynadax => RaftStore::Dynadax,
            RaftStoreArg::Memory => RaftStore::Memory,
        };
        let node = Node::start(cfg).await.with_context(|| format!("node {} in {}", a.id, a.dir.display()))?;
        let addr = a.advertise.clone().unwrap_or_else(|| node.local_addr.to_string());
        let tls = match &a.tls.tls_ca {
            Some(ca) => format!("TLS: peers and clients must present a certificate {} signed", ca.display()),
            None => "no TLS: peers and clients talk plain HTTP, unauthenticated".to_string(),
        };
        let store = match a.raft_store {
            RaftStoreArg::Dynadax => "",
            RaftStoreArg::Memory => "; Raft log IN MEMORY: nothing is durable",
        };
        eprintln!(
            "dynadax serve: node {} listening on {} (advertised as {addr}), dir {}; {tls}{store}; metrics at /metrics",
            a.id,
            node.local_addr,
            a.dir.display()
        );
        node.serve(shutdown_signal()).await?;
        eprintln!("dynadax serve: node {} stopped", a.id);
        Ok(())
    })
}

/// Logs openraft's and the service's warnings (and the service's info) to stderr.
fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    // A client that gave up on an append leaves openraft a responder nobody listens
    // to: it warns for each, which says nothing an operator can act on.
    let filter = Targets::new()
        .with_target("dynadax_service", LevelFilter::INFO)
        .with_target("openraft::raft::responder", LevelFilter::ERROR)
        .with_default(LevelFilter::WARN);
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(filter),
        )
        .try_init();
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut int, mut term) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(i), Ok(t)) => (i, t),
        _ => return std::future::pending().await,
    };
    tokio::select! {
        _ = int.recv() => eprintln!("dynadax serve: SIGINT, stopping"),
        _ = term.recv() => eprintln!("dynadax serve: SIGTERM, stopping"),
    }
}

/// `dynadax cluster ...`.
pub fn cluster(tls: TlsArgs, cmd: ClusterCommand) -> anyhow::Result<()> {
    let rt = runtime()?;
    rt.block_on(async move {
        let node_of = |n: &String| tls.client(vec![n.clone()]).map(|c| c.with_deadline(Duration::from_secs(60)));
        let reply = match &cmd {
            ClusterCommand::Init { node, members } => node_of(node)?.init(members.clone()).await?,
            ClusterCommand::AddLearner { node, id, addr } => node_of(node)?.add_learner(*id, addr).await?,
            ClusterCommand::Promote { node, ids } => node_of(node)?.promote(ids.clone()).await?,
            ClusterCommand::Remove { node, ids } => node_of(node)?.remove(ids.clone()).await?,
            ClusterCommand::TransferLeader { node, to } => node_of(node)?.transfer_leader(*to).await?,
            ClusterCommand::Status { node, json } => {
                let st = node_of(node)?.status(node).await?;
                print_status(&st, *json)?;
                return Ok(());
            }
        };
        println!("{}", reply.message);
        Ok(())
    })
}

fn print_status(st: &Status, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(st)?);
        return Ok(());
    }
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let members = |m: &[dynadax_service::Member]| {
        if m.is_empty() {
            "-".to_string()
        } else {
            m.iter().map(|m| format!("{}={}", m.id, m.addr)).collect::<Vec<_>>().join(", ")
        }
    };
    println!("node        {} at {}", st.id, st.addr);
    println!("state       {} (term {})", st.state, st.term);
    println!("leader      {}", st.leader.as_ref().map_or("none".to_string(), |l| format!("{} at {}", l.id, l.addr)));
    println!(
        "raft log    last {}, committed {}, applied {}",
        opt(st.last_log_index),
        opt(st.committed),
        opt(st.applied)
    );
    println!("records     {} (indexes 0..{})", st.records, st.records);
    println!("snapshot    {}, purged up to {}", opt(st.snapshot), opt(st.purged));
    println!("voters      {}", members(&st.voters));
    println!("learners    {}", members(&st.learners));
    for f in &st.replication {
        println!("follower    {}: matched {}, lag {}", f.id, opt(f.matched), f.lag);
    }
    println!("tls         {}", if st.tls { "on" } else { "off (plain HTTP)" });
    let flush = st.flush_mean_us.map_or("-".to_string(), |us| format!("{us:.0} µs"));
    println!(
        "last second {:.0} appends/s, {:.0} flushes/s, flush time {flush} (mean)",
        st.appends_per_sec, st.flushes_per_sec
    );
    if !st.initialized {
        println!("(not a member of an initialized cluster: run `dynadax cluster init`, or add it)");
    }
    Ok(())
}

/// `dynadax client ...`.
pub fn client(tls: TlsArgs, cmd: ClientCommand) -> anyhow::Result<()> {
    let rt = runtime()?;
    rt.block_on(async move {
        match cmd {
            ClientCommand::Append { cluster, json, timeout } => {
                let c = tls.client(cluster)?.with_deadline(Duration::from_secs(timeout));
                append(Arc::new(c), json).await
            }
            ClientCommand::Read { cluster, from, to, stale, json } => {
                let c = tls.client(cluster)?;
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                let mut next = from;
                let end = to.unwrap_or(u64::MAX);
                while next < end {
                    let r = c.read_some(next, Some(end), stale, None).await?;
                    let Some(&(last, _)) = r.records.last() else { break };
                    for (i, rec) in &r.records {
                        write_record(&mut out, *i, rec, json)?;
                    }
                    next = last + 1;
                }
                out.flush()?;
                Ok(())
            }
            ClientCommand::Tail { cluster, from } => {
                let c = tls.client(cluster)?.with_deadline(Duration::from_secs(3600 * 24 * 365));
                let mut next = from;
                loop {
                    let r = c.read_some(next, None, true, Some(Duration::from_secs(10))).await?;
                    let mut out = std::io::stdout().lock();
                    for (i, rec) in &r.records {
                        write_record(&mut out, *i, rec, false)?;
                        next = i + 1;
                    }
                    out.flush()?;
                }
            }
        }
    })
}

fn write_record(out: &mut impl Write, index: u64, rec: &[u8], json: bool) -> std::io::Result<()> {
    if json {
        let v = serde_json::json!({ "index": index, "record": String::from_utf8_lossy(rec) });
        writeln!(out, "{v}")
    } else {
        write!(out, "{index}\t")?;
        out.write_all(rec)?;
        out.write_all(b"\n")
    }
}

/// Lines per append request at most.
const BATCH: usize = 4096;

/// `client append`: a thread reads lines; what is ready goes out as one batch while
/// the next fills. One batch is in flight at a time, so the records land in the
/// replicated log in input order (two requests in flight at once race to the
/// leader, retries included); the batch grows with the round trip instead.
async fn append(client: Arc<Client>, json: bool) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(BATCH * 4);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if tx.blocking_send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let mut out = std::io::stdout().lock();
    let mut line_no = 0u64;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first.context("reading standard input")?];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(l) => batch.push(l.context("reading standard input")?),
                Err(_) => break,
            }
        }
        for (k, rec) in batch.iter().enumerate() {
            if rec.len() > dynadax_service::MAX_RECORD {
                bail!(
                    "line {} is {} bytes: the largest record is {} bytes (1 MiB)",
                    line_no + k as u64 + 1,
                    rec.len(),
                    dynadax_service::MAX_RECORD
                );
            }
        }
        line_no += batch.len() as u64;
        let refs: Vec<&[u8]> = batch.iter().map(|r| r.as_slice()).collect();
        for i in client.append_batch(&refs).await? {
            if json {
                writeln!(out, "{{\"index\":{i}}}")?;
            } else {
                writeln!(out, "{i}")?;
            }
        }
        out.flush()?;
    }
    Ok(())
}
