//! Replication through openraft: three nodes whose logs are dynadax logs elect a
//! leader, replicate and apply client writes, lose the leader and go on, and the
//! lost node comes back from its log on disk and catches up. Every node's log ends
//! up holding the same entries, the sealed segments cached and the tail direct.

mod common;
use common::*;
use dynadax::log::LogOptions;
use dynadax::Mode;
use dynadax_raft::LogStore;
use openraft::{Config, RaftLogReader as _};
use std::collections::BTreeSet;
use std::time::Duration;

/// Every entry of every running node's log, as (index, term, debug form).
async fn entries(cluster: &Cluster<LogStore<C>>, id: u64) -> Vec<String> {
    let mut store = cluster.stores[&id].clone();
    let got = store.try_get_log_entries(0..u64::MAX).await.unwrap();
    got.iter().map(|e| format!("{e:?}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_fail_over_and_catch_up() {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    // 16 KiB segments: the entries below fill several, so sealing happens under openraft.
    let opts = LogOptions { segment_size: 16 << 10, max_record: 4096, ..LogOptions::default() };
    let mut cluster = dynadax_cluster(d.path(), opts, config());
    for id in 1..=3 {
        cluster.start(id).await;
    }
    cluster.node(1).initialize(BTreeSet::from([1, 2, 3])).await.unwrap();
    let leader = cluster.leader(Duration::from_secs(10)).await;

    let last = write(&cluster, leader, "a", 300).await;
    for id in 1..=3 {
        cluster
            .node(id)
            .wait(Some(Duration::from_secs(10)))
            .applied_index_at_least(Some(last), "first writes")
            .await
            .unwrap();
    }

    // The leader goes away; the two others elect a new one and go on.
    cluster.stop(leader).await;
    let new_leader = cluster.leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    let last = write(&cluster, new_leader, "b", 200).await;

    // The old leader comes back from its log on disk, and catches up.
    cluster.start(leader).await;
    for id in 1..=3 {
        cluster
            .node(id)
            .wait(Some(Duration::from_secs(10)))
            .applied_index_at_least(Some(last), "after fail-over")
            .await
            .unwrap();
    }

    let logs = [entries(&cluster, 1).await, entries(&cluster, 2).await, entries(&cluster, 3).await];
    assert!(logs[0].len() as u64 > last, "{} entries, last index {last}", logs[0].len());
    assert_eq!(logs[0], logs[1], "nodes 1 and 2 hold different logs");
    assert_eq!(logs[0], logs[2], "nodes 1 and 3 hold different logs");
    for req in ["client:\"a\", serial: 299", "client:\"b\", serial: 199"] {
        assert!(logs[0].iter().any(|e| e.replace(' ', "").contains(&req.replace(' ', ""))), "{req} not in the log");
    }

    // On each node, full segments were sealed to cached while openraft appended; the tail is direct.
    for id in 1..=3 {
        let segs = cluster.stores[&id].log().segments().unwrap();
        assert!(segs.len() > 2, "node {id}: {} segments", segs.len());
        let (tail, sealed) = segs.split_last().unwrap();
        assert!(sealed.iter().all(|s| s.sealed && s.physical == Mode::Cached && s.effective == Some(Mode::Cached)));
        assert_eq!((tail.physical, tail.effective), (Mode::Direct, Some(Mode::Direct)), "node {id}");
    }
    for id in cluster.running() {
        cluster.stop(id).await;
    }
}

/// Snapshots and purges: the leader compacts its log, so a node that was down gets a
/// snapshot newer than its whole log, and its store purges past its last entry (the
/// dynadax log restarts after the snapshot), then follows on from there, and all of
/// that survives another restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_the_purged_log_is_sent_a_snapshot_and_restarts_its_log() {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    let opts = LogOptions { segment_size: 16 << 10, max_record: 4096, ..LogOptions::default() };
    let config = Config {
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(100),
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..config()
    };
    let mut cluster = dynadax_cluster(d.path(), opts, config);
    for id in 1..=3 {
        cluster.start(id).await;
    }
    cluster.node(1).initialize(BTreeSet::from([1, 2, 3])).await.unwrap();
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let behind = (1..=3).find(|&id| id != leader).unwrap();
    let last = write(&cluster, leader, "a", 20).await;
    cluster
        .node(behind)
        .wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(Some(last), "caught up")
        .await
        .unwrap();
    let behind_last = cluster.stores[&behind].log().next_lsn() - 1;
    cluster.stop(behind).await;

    let last = write(&cluster, leader, "b", 400).await;
    let purged = cluster
        .node(leader)
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.purged.is_some_and(|p| p.index > behind_last + 100), "leader purged past the stopped node")
        .await
        .unwrap()
        .purged
        .unwrap();
    assert!(cluster.stores[&leader].log().first_lsn() > behind_last + 1, "leader's log was not purged");

    cluster.start(behind).await;
    let m = cluster
        .node(behind)
        .wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(Some(last), "after the snapshot")
        .await
        .unwrap();
    let snap = m.snapshot.expect("the node installed a snapshot");
    assert!(snap.index >= purged.index, "snapshot {snap:?} is older than the leader's purge point {purged:?}");
    let log = cluster.stores[&behind].log().clone();
    assert!(log.first_lsn() > behind_last + 1, "the stale log was not purged: first LSN {}", log.first_lsn());

    let last = write(&cluster, leader, "c", 30).await;
    for id in 1..=3 {
        cluster
            .node(id)
            .wait(Some(Duration::from_secs(10)))
            .applied_index_at_least(Some(last), "new writes")
            .await
            .unwrap();
    }
    // The restarted node's entries equal the leader's over the range both hold.
    let (a, b) = (entries(&cluster, behind).await, entries(&cluster, leader).await);
    let common = a.len().min(b.len());
    assert!(common > 0);
    assert_eq!(a[a.len() - common..], b[b.len() - common..]);
    drop(log);

    // And once more from disk: the store reopens after the restart of its log.
    cluster.stop(behind).await;
    cluster.start(behind).await;
    cluster
        .node(behind)
        .wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(Some(last), "reopened")
        .await
        .unwrap();
    for id in cluster.running() {
        cluster.stop(id).await;
    }
}
