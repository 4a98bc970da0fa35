//! Crash test with real process kills: `dynadax log append` runs as a child, fed
//! records on stdin; every LSN it prints is an acknowledgement that the record is
//! durable. The child is killed with SIGKILL at a random moment, many times; after
//! each kill the log is recovered and every acknowledged record must be there, intact
//! and in order, and nothing may be returned that was not written.

#[path = "../../dynadax/tests/common/layout.rs"]
mod layout;
use dynadax::log::{Log, LogOptions};
use layout::layout;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn line(cycle: u32, i: u64) -> Vec<u8> {
    // Varying sizes so records straddle pages and segments.
    let pad = (i * 7919 + cycle as u64 * 31) % 900;
    format!("c{cycle}-r{i}-{}", "x".repeat(pad as usize)).into_bytes()
}

fn opts() -> LogOptions {
    LogOptions { segment_size: 256 << 10, max_record: 4096, layout: layout(256 << 10), ..LogOptions::default() }
}

/// Runs `cycles` kill cycles on a log in `dir`; returns (acknowledged, recovered) totals.
fn kill_cycles(dir: &Path, cycles: u32, durability: &str, env: &[(&str, &str)]) -> (u64, u64) {
    // "group+pipelined": `log append --pipelined` with group durability.
    let (durability, pipelined) = match durability.strip_suffix("+pipelined") {
        Some(d) => (d, true),
        None => (durability, false),
    };
    // What each LSN must hold: filled as lines are sent, checked after every crash.
    let mut expected: Vec<Vec<u8>> = Vec::new();
    let mut acked_total = 0;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    // Where the log ends, as the last recovery left it.
    let mut start = Log::open(dir, opts()).expect("open").next_lsn();
    for cycle in 0..cycles {
        expected.truncate(start as usize);

        let mut child = Command::new(env!("CARGO_BIN_EXE_dynadax"))
            .args([
                "log",
                "append",
                dir.to_str().unwrap(),
                "--durability",
                durability,
                "--segment-size",
                "256K",
                "--max-record",
                "4K",
            ])
            .args(pipelined.then_some("--pipelined"))
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let acks = Arc::new(Mutex::new(Vec::<u64>::new()));
        let reader = {
            let out = child.stdout.take().unwrap();
            let acks = acks.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines() {
                    let Ok(l) = l else { break };
                    acks.lock().unwrap().push(l.trim().parse().expect("LSN in decimal"));
                }
            })
        };
        let mut stdin = child.stdin.take().unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let run_for = Duration::from_millis(5 + rng % 120);
        let t = Instant::now();
        let mut i = 0u64;
        while t.elapsed() < run_for {
            let mut l = line(cycle, i);
            expected.push(l.clone());
            l.push(b'\n');
            if stdin.write_all(&l).is_err() {
                break;
            }
            i += 1;
        }
        let _ = stdin.flush();
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "child was meant to be killed");
        drop(stdin);
        reader.join().unwrap();
        let acks = acks.lock().unwrap().clone();
        // Acknowledged LSNs come in order, one per record, from where the log was.
        for (k, lsn) in acks.iter().enumerate() {
            assert_eq!(*lsn, start + k as u64, "cycle {cycle}: acknowledgements out of order");
        }
        acked_total += acks.len() as u64;
        // Everything acknowledged must be durable; check it now with a fresh recovery
        // (which must not refuse: a crash leaves at most a torn tail), from where this
        // cycle began (earlier records were checked after their own cycles, and all of
        // them are checked again at the end).
        let log = Log::open(dir, opts()).unwrap_or_else(|e| panic!("cycle {cycle}: recovery after kill -9: {e}"));
        assert!(
            log.next_lsn() >= start + acks.len() as u64,
            "cycle {cycle}: {} acknowledged, only {} recovered",
            start + acks.len() as u64,
            log.next_lsn()
        );
        check(&log, &expected, cycle, start);
        start = log.next_lsn();
    }
    let log = Log::open(dir, opts()).unwrap();
    check(&log, &expected, cycles, 0);
    (acked_total, log.next_lsn())
}

/// Every record in the log from `from` on is exactly the line sent for its LSN.
fn check(log: &Log, expected: &[Vec<u8>], cycle: u32, from: u64) {
    let n = log.next_lsn();
    assert!(n as usize <= expected.len(), "cycle {cycle}: log has {n} records, only {} were ever sent", expected.len());
    for r in log.iter(from) {
        let (lsn, rec) = r.unwrap();
        assert!(rec == expected[lsn as usize], "cycle {cycle}: LSN {lsn} holds bytes that were not written there");
    }
}

/// 100 kill cycles on a log under `parent`, with `env` for the appending child.
/// Every recovery must succeed: a genuine crash leaves at most a torn tail, never
/// something the damage rule refuses (issue 10).
fn kill9(parent: &str, label: &str, durability: &str, env: &[(&str, &str)]) {
    let d = tempfile::tempdir_in(parent).unwrap();
    let cycles = 100;
    let (acked, recovered) = kill_cycles(&d.path().join("log"), cycles, durability, env);
    let single = matches!(layout(1), dynadax::log::Layout::SingleFile { .. });
    assert_eq!(d.path().join("log").join(dynadax::log::DATA_FILE).exists(), single, "not the layout under test");
    eprintln!("{label}: {acked} acknowledged, {recovered} recovered over {cycles} kills");
    // `none` acknowledges only at its syncs (every 4,096 records).
    let least = if durability == "none" { 1 } else { 100 };
    assert!(acked >= least, "too few acknowledgements to prove anything: {acked}");
}

#[test]
fn kill9_group_commit_on_the_work_tree() {
    kill9(env!("CARGO_TARGET_TMPDIR"), "group/work-fs", "group", &[]);
}

/// Pipelined appends (`append_nowait`, a background flusher): every LSN printed was
/// durable when printed, however many were in flight at the kill.
#[test]
fn kill9_pipelined_group_on_the_work_tree() {
    kill9(env!("CARGO_TARGET_TMPDIR"), "group+pipelined/work-fs", "group+pipelined", &[]);
}

#[test]
fn kill9_each_on_tmpfs() {
    kill9("/dev/shm", "each/tmpfs", "each", &[]);
}

/// No durability per append: the child syncs every 4,096 records; what it printed
/// must survive, and the records after the last sync may or may not.
#[test]
fn kill9_none_on_the_work_tree() {
    kill9(env!("CARGO_TARGET_TMPDIR"), "none/work-fs", "none", &[]);
}

/// Group commit on a tail persisted by cache-line flush (forced on tmpfs, as on kernel
/// DAX): each append flushes its own lines under the writer lock instead of electing a
/// leader; acknowledged records must survive the same way.
#[test]
fn kill9_group_with_cache_line_flush_on_tmpfs() {
    kill9("/dev/shm", "group+flush/tmpfs", "group", &[("DYNADAX_FORCE_CACHE_FLUSH", "1")]);
}
