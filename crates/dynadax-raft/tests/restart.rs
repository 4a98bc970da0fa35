//! What openraft's suite never checks (it never reopens a store): the vote, the
//! entries, the committed log id, purges and truncations survive a reopen; a purge
//! cut by a crash is finished; holes and damage are refused with errors naming the
//! log.

#[path = "../../dynadax/tests/common/layout.rs"]
mod layout;
use dynadax::log::LogOptions;
use dynadax_raft::LogStore;
use layout::layout;
use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::testing::log_id;
use openraft::type_config::TypeConfigExt;
use openraft_memstore::{ClientRequest, TypeConfig};
use std::path::Path;

type Store = LogStore<TypeConfig>;

fn opts() -> LogOptions {
    // Small segments: the entries below span several, sealed and tail.
    LogOptions { segment_size: 4096, max_record: 1024, layout: layout(4096), ..LogOptions::default() }
}

fn open(dir: &Path) -> Store {
    LogStore::open(dir, opts()).unwrap()
}

fn lid(term: u64, index: u64) -> LogIdOf<TypeConfig> {
    log_id::<TypeConfig>(term, 1, index)
}

fn entry(term: u64, index: u64) -> EntryOf<TypeConfig> {
    let req = ClientRequest { client: format!("c{index}"), serial: index, status: "x".repeat((index % 90) as usize) };
    EntryOf::<TypeConfig>::new_normal(lid(term, index), req)
}

async fn append(s: &mut Store, term: u64, indexes: std::ops::Range<u64>) {
    s.blocking_append(indexes.map(|i| entry(term, i))).await.unwrap();
}

async fn indexes(s: &mut Store) -> Vec<(u64, u64)> {
    let got = s.try_get_log_entries(0..u64::MAX).await.unwrap();
    got.iter().map(|e| (e.log_id().leader_id.term, e.index())).collect()
}

fn run(f: impl std::future::Future<Output = ()>) {
    TypeConfig::run(f)
}

#[test]
fn vote_entries_and_committed_survive_a_reopen() {
    run(async {
        let d = tempfile::tempdir_in("/dev/shm").unwrap();
        let dir = d.path().join("log");
        let mut s = open(&dir);
        let vote = VoteOf::<TypeConfig>::new(3, 1);
        s.save_vote(&vote).await.unwrap();
        append(&mut s, 3, 0..200).await;
        s.save_committed(Some(lid(3, 150))).await.unwrap();
        assert!(s.log().segments().unwrap().len() > 2, "entries should span segments");
        drop(s);
        let mut s = open(&dir);
        assert_eq!(s.read_vote().await.unwrap(), Some(vote));
        // A clean close wrote the latest committed log id.
        assert_eq!(s.read_committed().await.unwrap(), Some(lid(3, 150)));
        let st = s.get_log_state().await.unwrap();
        assert_eq!((st.last_purged_log_id, st.last_log_id), (None, Some(lid(3, 199))));
        let got = s.try_get_log_entries(0..200).await.unwrap();
        assert_eq!(got.len(), 200);
        for (i, e) in got.iter().enumerate() {
            assert_eq!(format!("{e:?}"), format!("{:?}", entry(3, i as u64)), "entry {i}");
        }
    });
}

#[test]
fn purge_and_truncation_survive_a_reopen() {
    run(async {
        let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let dir = d.path().join("log");
        let mut s = open(&dir);
        append(&mut s, 1, 0..100).await;
        s.purge(lid(1, 39)).await.unwrap();
        s.truncate_after(Some(lid(1, 79))).await.unwrap();
        append(&mut s, 2, 80..90).await;
        let before = indexes(&mut s).await;
        assert_eq!(before.first(), Some(&(1, 40)));
        assert_eq!(before.last(), Some(&(2, 89)));
        drop(s);
        let mut s = open(&dir);
        assert_eq!(indexes(&mut s).await, before);
        let st = s.get_log_state().await.unwrap();
        assert_eq!((st.last_purged_log_id, st.last_log_id), (Some(lid(1, 39)), Some(lid(2, 89))));
        // Truncating everything leaves the purge point as the last log id.
        s.truncate_after(None).await.unwrap();
        assert_eq!(s.get_log_state().await.unwrap().last_log_id, Some(lid(1, 39)));
        append(&mut s, 3, 40..41).await;
        drop(s);
        let mut s = open(&dir);
        assert_eq!(indexes(&mut s).await, vec![(3, 40)]);
    });
}

#[test]
fn a_purge_past_the_last_entry_restarts_the_log_after_it() {
    run(async {
        let d = tempfile::tempdir_in("/dev/shm").unwrap();
        let dir = d.path().join("log");
        let mut s = open(&dir);
        append(&mut s, 1, 0..30).await;
        // A follower that installed a snapshot up to (4, 500).
        s.purge(lid(4, 500)).await.unwrap();
        let st = s.get_log_state().await.unwrap();
        assert_eq!((st.last_purged_log_id, st.last_log_id), (Some(lid(4, 500)), Some(lid(4, 500))));
        assert!(indexes(&mut s).await.is_empty());
        append(&mut s, 4, 501..510).await;
        drop(s);
        let mut s = open(&dir);
        assert_eq!(indexes(&mut s).await, (501..510).map(|i| (4, i)).collect::<Vec<_>>());
        assert_eq!(s.get_log_state().await.unwrap().last_purged_log_id, Some(lid(4, 500)));
    });
}

#[test]
fn a_purge_cut_by_a_crash_is_finished_at_open() {
    run(async {
        let d = tempfile::tempdir_in("/dev/shm").unwrap();
        // The state a purge writes first, taken from a store that purged.
        let mut a = open(&d.path().join("a"));
        append(&mut a, 1, 0..50).await;
        a.purge(lid(1, 19)).await.unwrap();
        let state = a.log().metadata();
        drop(a);
        // The crash: that state written, the log not purged yet.
        let dir = d.path().join("b");
        let mut b = open(&dir);
        append(&mut b, 1, 0..50).await;
        drop(b);
        dynadax::log::Log::open(&dir, opts()).unwrap().set_metadata(&state).unwrap();
        let mut b = open(&dir);
        assert_eq!(b.log().first_lsn(), 20);
        assert_eq!(indexes(&mut b).await.first(), Some(&(1, 20)));
        assert_eq!(b.get_log_state().await.unwrap().last_purged_log_id, Some(lid(1, 19)));
    });
}

#[test]
fn a_hole_is_refused_and_damage_is_named() {
    run(async {
        let d = tempfile::tempdir_in("/dev/shm").unwrap();
        let dir = d.path().join("log");
        let mut s = open(&dir);
        // An empty log starts where its first entry says.
        append(&mut s, 1, 7..10).await;
        let err = s.blocking_append([entry(1, 12)]).await.unwrap_err().to_string();
        assert!(err.contains("entry 12 appended where entry 10 is next"), "{err}");
        assert_eq!(indexes(&mut s).await, vec![(1, 7), (1, 8), (1, 9)]);
        drop(s);
        // State bytes that do not parse: the error names the log.
        dynadax::log::Log::open(&dir, opts()).unwrap().set_metadata(b"\x09garbage").unwrap();
        let err = LogStore::<TypeConfig>::open(&dir, opts()).err().expect("corrupt state").to_string();
        assert!(err.contains(&*dir.to_string_lossy()) && err.contains("format 9"), "{err}");
    });
}
