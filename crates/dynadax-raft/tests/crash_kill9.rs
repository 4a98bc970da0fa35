//! Crash test with real process kills. A child process (this test binary, run again
//! with `CHILD_DIR` set) opens a store, then appends entries in small batches, saves
//! a higher vote now and then and purges now and then, printing each
//! acknowledgement: `vote T` once `save_vote` returned, `ack I` once openraft's flush
//! callback said entry `I` is durable, `purged I` once `purge` returned. It is killed with SIGKILL
//! at a random moment, many times. After each kill the store is reopened and must
//! hold every acknowledged vote, entry and purge, each entry exactly as written, with
//! no hole and nothing that was never written.

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
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Store = LogStore<TypeConfig>;

fn opts() -> LogOptions {
    LogOptions { segment_size: 64 << 10, max_record: 4096, layout: layout(64 << 10), ..LogOptions::default() }
}

/// What entry `index` written in term `term` holds.
fn entry(term: u64, index: u64) -> EntryOf<TypeConfig> {
    let pad = (index * 7919 + term * 31) % 700;
    let req = ClientRequest { client: format!("t{term}"), serial: index, status: "x".repeat(pad as usize) };
    EntryOf::<TypeConfig>::new_normal(log_id::<TypeConfig>(term, 1, index), req)
}

fn main() {
    if let Ok(dir) = std::env::var("CHILD_DIR") {
        let term: u64 = std::env::var("CHILD_TERM").unwrap().parse().unwrap();
        TypeConfig::run(child(Path::new(&dir), term));
        return;
    }
    // The lab's power-cut test runs this binary in its guest (lab/README.md).
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, dir, cycle] = &args[..] {
        let (dir, cycle) = (Path::new(dir), cycle.parse().expect("CYCLE is a number"));
        match mode.as_str() {
            "powercut-append" => return TypeConfig::run(powercut_append(dir, cycle)),
            "powercut-check" => return TypeConfig::run(powercut_check(dir, cycle)),
            _ => {}
        }
    }
    // (label, where the store lives, the child's environment)
    type Case = (&'static str, &'static str, &'static [(&'static str, &'static str)]);
    let cases: [Case; 3] = [
        ("disk: cached tail, fdatasync by the flusher", env!("CARGO_TARGET_TMPDIR"), &[]),
        ("tmpfs: direct tail, msync by the flusher", "/dev/shm", &[]),
        ("tmpfs: direct tail, cache-line flush inline", "/dev/shm", &[("DYNADAX_FORCE_CACHE_FLUSH", "1")]),
    ];
    for (label, parent, env) in cases {
        let d = tempfile::tempdir_in(parent).unwrap();
        let (acked, kills) = kill_cycles(&d.path().join("log"), 15, env);
        println!("{label}: {acked} entries acknowledged over {kills} kills, all recovered");
        assert!(acked > 100, "{label}: too few acknowledgements to prove anything: {acked}");
    }
    println!("test result: ok. 3 crash cases passed");
}

async fn child(dir: &Path, term: u64) {
    let mut s = Store::open(dir, opts()).unwrap();
    let out = &mut std::io::stdout();
    let mut next = s.get_log_state().await.unwrap().last_log_id.map_or(0, |l| l.index + 1);
    let mut n = 0u64;
    loop {
        if n.is_multiple_of(16) {
            // Votes only go up: the term's thousands, then a count.
            let vote = term * 1000 + n / 16;
            s.save_vote(&VoteOf::<TypeConfig>::new_committed(vote, 1)).await.unwrap();
            writeln!(out, "vote {vote}").unwrap();
        }
        let k = 1 + n % 4;
        s.blocking_append((next..next + k).map(|i| entry(term, i))).await.unwrap();
        next += k;
        n += 1;
        writeln!(out, "ack {}", next - 1).unwrap();
        if n.is_multiple_of(50) && next > 100 {
            let upto = next - 100;
            let at = s.try_get_log_entries(upto..upto + 1).await.unwrap()[0].log_id();
            s.purge(at).await.unwrap();
            writeln!(out, "purged {upto}").unwrap();
        }
        out.flush().unwrap();
    }
}

/// Runs `cycles` kill cycles on a store in `dir`; returns (entries acknowledged, kills).
fn kill_cycles(dir: &Path, cycles: u64, env: &[(&str, &str)]) -> (u64, u64) {
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let (mut vote, mut ack, mut purged) = (0u64, None::<u64>, None::<u64>);
    for cycle in 0..cycles {
        let term = cycle + 1;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("CHILD_DIR", dir)
            .env("CHILD_TERM", term.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let run_for = Duration::from_millis(30 + rng % 150);
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || BufReader::new(out).lines().map_while(Result::ok).collect::<Vec<_>>());
        let t = Instant::now();
        while t.elapsed() < run_for {
            std::thread::sleep(Duration::from_millis(5));
            if let Some(status) = child.try_wait().unwrap() {
                panic!("cycle {cycle}: the child exited by itself ({status})");
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for l in reader.join().unwrap() {
            let (what, n) = l.split_once(' ').unwrap();
            let n: u64 = n.parse().unwrap();
            match what {
                "vote" => vote = n,
                "ack" => ack = Some(n),
                "purged" => purged = Some(n),
                _ => panic!("cycle {cycle}: unexpected line {l}"),
            }
        }
        TypeConfig::run(check(dir, cycle, vote, ack, purged));
    }
    (ack.map_or(0, |a| a + 1), cycles)
}

/// The store in `dir` after a kill holds every acknowledgement, and only what was written.
async fn check(dir: &Path, cycle: u64, vote: u64, ack: Option<u64>, purged: Option<u64>) {
    let mut s = Store::open(dir, opts()).unwrap_or_else(|e| panic!("cycle {cycle}: reopen after kill -9: {e}"));
    let v = s.read_vote().await.unwrap();
    let v = v.unwrap_or_else(|| VoteOf::<TypeConfig>::new_committed(0, 1));
    assert!(v.leader_id().term >= vote, "cycle {cycle}: vote for term {vote} acknowledged, {v:?} recovered");
    let st = s.get_log_state().await.unwrap();
    let last = st.last_log_id.map(|l| l.index);
    assert!(last >= ack, "cycle {cycle}: entry {ack:?} acknowledged, the log ends at {last:?}");
    let lp = st.last_purged_log_id.map(|l| l.index);
    assert!(lp >= purged, "cycle {cycle}: purge up to {purged:?} acknowledged, {lp:?} recovered");
    let from = lp.map_or(0, |p| p + 1);
    let got = s.try_get_log_entries(from..).await.unwrap();
    let want = last.map_or(0, |l| l + 1).saturating_sub(from);
    assert_eq!(got.len() as u64, want, "cycle {cycle}: a hole between {from} and {last:?}");
    for (k, e) in got.iter().enumerate() {
        let LogIdOf::<TypeConfig> { leader_id, index } = e.log_id();
        assert_eq!(index, from + k as u64, "cycle {cycle}: entries out of order");
        assert!(leader_id.term <= cycle + 1, "cycle {cycle}: entry {index} from a term never used");
        let expect = entry(leader_id.term, index);
        assert_eq!(format!("{e:?}"), format!("{expect:?}"), "cycle {cycle}: entry {index} holds what was not written");
    }
}

/// One boot of the lab's power-cut test, appending (cycle `cycle`, its entries in
/// term `cycle`): saves a vote for term `cycle` (before the first entry, so before
/// the first acknowledgement), prints `PC-START cycle=C lsn=N`, then appends
/// entries one per call, pipelined as openraft does (up to 256 whose callbacks have
/// not come yet), and prints `ACK <index>`, in order, once an entry's callback says
/// it is durable, until the host cuts the power. Pipelining is what makes a callback
/// that came too early visible: the appends run far ahead of the persists.
async fn powercut_append(dir: &Path, cycle: u64) {
    use openraft::storage::IOFlushed;
    let mut s = Store::open(dir, opts()).unwrap();
    s.save_vote(&VoteOf::<TypeConfig>::new_committed(cycle, 1)).await.unwrap();
    let mut next = s.get_log_state().await.unwrap().last_log_id.map_or(0, |l| l.index + 1);
    println!("PC-START cycle={cycle} lsn={next} durability=raft");
    std::io::stdout().flush().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let printer = tokio::spawn(async move {
        let out = &mut std::io::stdout();
        while let Some((index, flushed)) = rx.recv().await {
            let flushed: tokio::sync::oneshot::Receiver<Result<(), std::io::Error>> = flushed;
            flushed.await.expect("callback called").expect("entry persisted");
            writeln!(out, "ACK {index}").unwrap();
            out.flush().unwrap();
        }
    });
    loop {
        let (done, flushed) = TypeConfig::oneshot();
        s.append([entry(cycle, next)], IOFlushed::signal(done)).await.unwrap();
        if tx.send((next, flushed)).await.is_err() {
            break;
        }
        next += 1;
    }
    printer.await.unwrap();
}

/// The check a boot makes of cycles `1..cycle` after a power cut: the store opens
/// (recovery), the vote of the last cycle survived (it was durable before that
/// cycle's first acknowledgement), and the entries are `0..n` with no hole, each
/// exactly as written in its term, the terms in order. Prints the line the host
/// checks: `CHECK OK n=N cycles=1:F-L,2:F-L,...` (or `CHECK FAIL why`).
async fn powercut_check(dir: &Path, cycle: u64) {
    let line = match powercut_verdict(dir, cycle).await {
        Ok(ok) => format!("CHECK OK {ok}"),
        Err(why) => format!("CHECK FAIL {why}"),
    };
    println!("{line}");
}

async fn powercut_verdict(dir: &Path, cycle: u64) -> Result<String, String> {
    let mut s = Store::open(dir, opts()).map_err(|e| format!("reopen: {e}"))?;
    let repairs = s.log().recovery_report().repairs;
    for r in &repairs {
        println!("PC-RECOVERY | recovery: {r}");
    }
    println!("PC-RECOVERY rc=0 repairs={}", repairs.len());
    let vote = s.read_vote().await.map_err(|e| e.to_string())?.map_or(0, |v| v.leader_id().term);
    if vote != cycle - 1 {
        return Err(format!(
            "the vote is for term {vote}; cycle {} saved term {} before its first ACK",
            cycle - 1,
            cycle - 1
        ));
    }
    let got = s.try_get_log_entries(0..).await.map_err(|e| format!("read: {e}"))?;
    let mut cycles: Vec<(u64, u64, u64)> = Vec::new();
    for (k, e) in got.iter().enumerate() {
        let LogIdOf::<TypeConfig> { leader_id, index } = e.log_id();
        let term = leader_id.term;
        if index != k as u64 {
            return Err(format!("entry {k} has index {index}: a hole or a reordering"));
        }
        if format!("{e:?}") != format!("{:?}", entry(term, index)) {
            return Err(format!("entry {index} (term {term}) holds what was not written"));
        }
        match cycles.last_mut() {
            Some(c) if c.0 == term => c.2 = index,
            Some(c) if c.0 > term => return Err(format!("entry {index} of term {term} after term {}", c.0)),
            _ => cycles.push((term, index, index)),
        }
    }
    let ranges: Vec<String> = cycles.iter().map(|(t, f, l)| format!("{t}:{f}-{l}")).collect();
    Ok(format!("n={} cycles={}", got.len(), ranges.join(",")))
}
