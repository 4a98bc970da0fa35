//! Replicated writes through openraft: three nodes in one process (the tests' router:
//! no network cost, so the log stores and openraft are what is measured), `writers`
//! clients writing through the leader for `secs` seconds; a write counts once
//! `client_write` returned (committed on a quorum and applied on the leader).
//!
//!   cargo bench -p dynadax-raft --bench replicate -- --store dynadax --dir /dev/shm/x --writers 16
//!
//! `--store memstore` is openraft-memstore's in-memory log store, which persists
//! nothing: the ceiling openraft itself sets here. One JSON line per run on stdout.

#[path = "../tests/common/mod.rs"]
mod common;
use common::*;
use dynadax::log::LogOptions;
use openraft::storage::RaftLogStorage;
use openraft_memstore::{BlockConfig, ClientRequest, MemLogStore};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    store: String,
    dir: PathBuf,
    writers: usize,
    secs: f64,
    size: usize,
}

fn args() -> Args {
    let mut a =
        Args { store: "dynadax".into(), dir: "/dev/shm/dynadax-raft-bench".into(), writers: 1, secs: 3.0, size: 256 };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--store" => a.store = v(),
            "--dir" => a.dir = v().into(),
            "--writers" => a.writers = v().parse().expect("--writers N"),
            "--secs" => a.secs = v().parse().expect("--secs S"),
            "--size" => a.size = v().parse().expect("--size BYTES"),
            "--bench" => {} // cargo bench passes it
            _ => panic!("unknown argument {k}: see the comment at the top of benches/replicate.rs"),
        }
    }
    a
}

fn main() {
    let a = args();
    let _ = std::fs::remove_dir_all(&a.dir);
    std::fs::create_dir_all(&a.dir).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (line, persist) = match a.store.as_str() {
        "dynadax" => {
            let mut c = dynadax_cluster(&a.dir, LogOptions::default(), config());
            let r = rt.block_on(run(&mut c, &a));
            let how = if c.stores.values().all(|s| s.log().persists_by_cache_flush()) {
                "cache-line flush, inline"
            } else {
                "flusher thread (msync or fdatasync)"
            };
            rt.block_on(stop_all(&mut c));
            (r, how)
        }
        "memstore" => {
            let mut c = Cluster::new(&a.dir, |_| Arc::new(MemLogStore::new(BlockConfig::default())), config());
            let r = rt.block_on(run(&mut c, &a));
            rt.block_on(stop_all(&mut c));
            (r, "none (in memory)")
        }
        s => panic!("unknown store {s}: dynadax or memstore"),
    };
    let fs = std::process::Command::new("findmnt")
        .args(["-n", "-o", "FSTYPE", "--target"])
        .arg(&a.dir)
        .output()
        .unwrap()
        .stdout;
    let fs = String::from_utf8_lossy(&fs).lines().next().unwrap_or("?").trim().to_string();
    let _ = std::fs::remove_dir_all(&a.dir);
    println!(
        "{{\"bench\":\"raft-replicate\",\"store\":\"{}\",\"fs\":\"{fs}\",\"persist\":\"{persist}\",\"writers\":{},\"size\":{},{line}}}",
        a.store, a.writers, a.size
    );
}

async fn stop_all<LS: RaftLogStorage<C> + Clone>(c: &mut Cluster<LS>) {
    for id in c.running() {
        c.stop(id).await;
    }
}

/// Starts three nodes, writes for `secs` with `writers` clients; returns the JSON fields
/// of the result.
async fn run<LS: RaftLogStorage<C> + Clone>(c: &mut Cluster<LS>, a: &Args) -> String {
    for id in 1..=3 {
        c.start(id).await;
    }
    c.node(1).initialize(BTreeSet::from([1, 2, 3])).await.unwrap();
    let leader = c.leader(Duration::from_secs(20)).await;
    write(c, leader, "warmup", 200).await;
    let raft = c.node(leader);
    let stop = Instant::now() + Duration::from_secs_f64(a.secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..a.writers)
        .map(|w| {
            let raft = raft.clone();
            let status = "s".repeat(a.size);
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut serial = 0;
                while Instant::now() < stop {
                    let req = ClientRequest { client: format!("w{w}"), serial, status: status.clone() };
                    let t = Instant::now();
                    raft.client_write(req).await.expect("write through the leader");
                    lat.push(t.elapsed());
                    serial += 1;
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e6;
    format!(
        "\"secs\":{secs:.3},\"writes\":{},\"writes_per_sec\":{:.0},\"p50_us\":{:.1},\"p99_us\":{:.1}",
        lat.len(),
        lat.len() as f64 / secs,
        pct(0.5),
        pct(0.99)
    )
}
