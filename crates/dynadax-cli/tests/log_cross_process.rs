//! Readers in other processes: `dynadax log read` never shows a record the writer has
//! not made durable, and `dynadax log tail` follows the writer, woken by the futex in
//! `tail.state` (no polling), across segment seals.

use dynadax::log::{Durability, Log, LogOptions};
#[path = "../../dynadax/tests/common/layout.rs"]
mod layout;
use layout::{layout, single_file};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A log of `segment_size` segments and 1 KiB records, on the layout under test.
fn opts(segment_size: u64, durability: Durability) -> LogOptions {
    LogOptions { segment_size, max_record: 1024, durability, layout: layout(segment_size), ..Default::default() }
}

fn dynadax(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dynadax")).args(args).output().unwrap()
}

#[test]
fn other_process_sees_only_durable_records() {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    let dir = d.path().join("log");
    let log = Log::open(&dir, opts(64 << 10, Durability::None)).unwrap();
    for i in 0..10 {
        log.append(format!("rec{i}").as_bytes()).unwrap();
    }
    let out = dynadax(&["log", "read", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "a reader saw records that are not durable");
    log.sync().unwrap();
    let out = dynadax(&["log", "read", dir.to_str().unwrap(), "--from", "8"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "8\trec8\n9\trec9\n");
    // stat and verify work beside the live writer.
    let out = dynadax(&["log", "stat", dir.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["durable_lsn"], 10);
    assert!(dynadax(&["log", "verify", dir.to_str().unwrap()]).status.success());
}

#[test]
fn tail_in_another_process_follows_the_writer() {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    let dir = d.path().join("log");
    let log = Log::open(&dir, opts(16 << 10, Durability::Group)).unwrap();
    log.append(b"before").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dynadax"))
        .args(["log", "tail", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    let next =
        |what: &str| rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("tail did not print {what}"));
    assert_eq!(next("the first record"), "0\tbefore");
    // Enough records to seal several 16 KiB segments while the tailer follows.
    for i in 1..=600u64 {
        log.append(format!("r{i:04}-{}", "y".repeat(40)).as_bytes()).unwrap();
    }
    for i in 1..=600u64 {
        assert_eq!(next(&format!("record {i}")), format!("{i}\tr{i:04}-{}", "y".repeat(40)));
    }
    assert!(log.segments().unwrap().len() > 2, "the test meant to cross seals");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// After a suffix truncation the durable point moves back; a reader in another process
/// must learn it, or it would show records appended after the truncation before they
/// are durable.
#[test]
fn other_process_sees_the_durable_point_move_back_on_truncation() {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    let dir = d.path().join("log");
    let log = Log::open(&dir, opts(64 << 10, Durability::None)).unwrap();
    for i in 0..10 {
        log.append(format!("rec{i}").as_bytes()).unwrap();
    }
    log.sync().unwrap();
    log.truncate_after(4).unwrap();
    for i in 5..8 {
        log.append(format!("new{i}").as_bytes()).unwrap(); // not synced: not durable
    }
    let out = dynadax(&["log", "read", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want: String = (0..5).map(|i| format!("{i}\trec{i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), want, "a reader saw records that are not durable");
}

/// A directory on tmpfs for a log, and options with a record persisted per append.
fn each_log() -> (tempfile::TempDir, LogOptions) {
    let opts = opts(1 << 20, Durability::Each);
    (tempfile::tempdir_in("/dev/shm").unwrap(), opts)
}

/// Lines a child prints, as they come.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// Review defect 7: a `log tail` in another process printed 0..19, the writer
/// truncated from 10 and appended 10..29; the tail never printed 20..29 (it went on
/// from a stale offset in the middle of the new frames). It follows the cut now.
#[test]
fn a_tail_in_another_process_follows_a_truncation_inside_the_tail() {
    let (d, opts) = each_log();
    let dir = d.path().join("log");
    let log = Log::open(&dir, opts).unwrap();
    for i in 0..20 {
        log.append(format!("old{i}-{}", "o".repeat(i * 7)).as_bytes()).unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_dynadax"))
        .args(["log", "tail", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    for i in 0..20 {
        let l = rx.recv_timeout(Duration::from_secs(10)).expect("tail printed the first records");
        assert!(l.starts_with(&format!("{i}\told{i}-")), "{l}");
    }
    log.truncate_from(10).unwrap();
    for i in 10..30 {
        // Other lengths: the new frames do not line up with the old ones.
        log.append(format!("new{i}").as_bytes()).unwrap();
    }
    for i in 20..30 {
        let l = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("tail stuck before {i}"));
        assert_eq!(l, format!("{i}\tnew{i}"));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The waiter count in `tail.state` (offset 20), read from the file.
fn waiters(dir: &std::path::Path) -> u32 {
    let b = std::fs::read(dir.join(dynadax::log::STATE_FILE)).unwrap();
    u32::from_le_bytes(b[20..24].try_into().unwrap())
}

/// Review defect 10: a reader killed in FUTEX_WAIT left `waiters` counted in
/// tail.state, and every later append made a FUTEX_WAKE system call, across writer
/// restarts. The registration dies with the reader now: the next wake finds no one,
/// clears it, and appends make no more calls.
#[test]
fn a_reader_killed_while_waiting_leaves_no_waiter_behind() {
    let (d, opts) = each_log();
    let dir = d.path().join("log");
    let log = Log::open(&dir, opts.clone()).unwrap();
    log.append(b"first").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dynadax"))
        .args(["log", "tail", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "0\tfirst");
    let t = std::time::Instant::now();
    while waiters(&dir) == 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "the tail never waited");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL, in FUTEX_WAIT
    child.wait().unwrap();
    assert_eq!(waiters(&dir), 1, "the dead reader is still counted (the state the review found)");
    log.append(b"second").unwrap();
    assert_eq!(waiters(&dir), 0, "the next wake did not heal the count");
    drop(log);
    // A count left over from before (a writer that died too) is healed at open.
    let mut b = std::fs::read(dir.join(dynadax::log::STATE_FILE)).unwrap();
    b[20..24].copy_from_slice(&3u32.to_le_bytes());
    std::fs::write(dir.join(dynadax::log::STATE_FILE), &b).unwrap();
    let log = Log::open(&dir, opts).unwrap();
    assert_eq!(waiters(&dir), 0);
    log.append(b"third").unwrap();
}

/// Issue 11's scenario: `dynadax mode` on the live tail of a log another process is
/// writing (through a mapping, or through the page cache) is refused, exit 3, naming
/// the log's writer; the tail keeps its mode; once the writer is gone, it goes.
#[test]
fn mode_on_a_live_tail_in_another_process_is_refused_naming_the_writer() {
    for tail_mode in ["direct", "cached"] {
        let d = tempfile::tempdir_in("/dev/shm").unwrap();
        let dir = d.path().join("log");
        let mut writer = Command::new(env!("CARGO_BIN_EXE_dynadax"))
            .args([
                "log",
                "append",
                dir.to_str().unwrap(),
                "--tail-mode",
                tail_mode,
                "--segment-size",
                "1M",
                "--max-record",
                "4K",
            ])
            .args(if single_file() { &["--layout", "single-file", "--capacity", "4100K"][..] } else { &[] })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let rx = lines_of(&mut writer);
        {
            use std::io::Write;
            writeln!(writer.stdin.as_mut().unwrap(), "first").unwrap();
        }
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "0");
        // The file the live tail is in.
        let tail = dir.join(if single_file() { dynadax::log::DATA_FILE } else { "00000000000000000000.dlog" });
        let before = dynadax(&["stat", tail.to_str().unwrap(), "--json"]);
        let before: serde_json::Value = serde_json::from_slice(&before.stdout).unwrap();
        let other = if before["physical"] == "direct" { "cached" } else { "direct" };
        let out = dynadax(&["mode", tail.to_str().unwrap(), other]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{tail_mode}: {err}");
        assert!(err.contains("in another process") && err.contains(&format!("process {}", writer.id())), "{err}");
        assert!(err.contains("the writer of the log"), "{err}");
        let after: serde_json::Value =
            serde_json::from_slice(&dynadax(&["stat", tail.to_str().unwrap(), "--json"]).stdout).unwrap();
        assert_eq!(after["physical"], before["physical"], "{tail_mode}: the live tail's mode changed");
        // The writer ends: the tail is free.
        drop(writer.stdin.take());
        assert!(writer.wait().unwrap().success());
        let out = dynadax(&["mode", tail.to_str().unwrap(), other]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
