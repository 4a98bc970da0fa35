//! Review defect 9: the log kept one file descriptor per segment for its whole life,
//! so with `ulimit -n 512` a log of 1,000 segments could not be opened (writer nor
//! `log stat`) and with 64 a running writer died at 58 segments. Sealed segments are
//! opened on demand now, a bounded number at a time.

use dynadax::log::{encode_record, frame_len, SegmentHeader, HEADER_LEN};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `dynadax ARGS` under `ulimit -n LIMIT`, with `input` on standard input.
fn limited(limit: u32, args: &[&str], input: &[u8]) -> Output {
    let script = format!("ulimit -n {limit} && exec \"$0\" \"$@\"");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_dynadax"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Fed from another thread: the child's acknowledgements fill its stdout meanwhile.
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    out
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A sealed log of `n` one-record segments and an empty tail, written directly.
fn many_segments(dir: &Path, n: u64) {
    std::fs::create_dir(dir).unwrap();
    for base in 0..n {
        let rec = format!("record {base}");
        let mut img = SegmentHeader { base_lsn: base, created_ns: 1, capacity: 4096 }.encode().to_vec();
        let mut frame = vec![0u8; frame_len(rec.len())];
        encode_record(base, base, rec.as_bytes(), &mut frame);
        img.extend_from_slice(&frame);
        std::fs::write(dir.join(format!("{base:020}.dlog")), &img).unwrap();
    }
    let mut tail = SegmentHeader { base_lsn: n, created_ns: 1, capacity: 4096 }.encode().to_vec();
    tail.resize(4096, 0);
    assert_eq!(tail.len() - HEADER_LEN, 4096 - 64);
    std::fs::write(dir.join(format!("{n:020}.dlog")), &tail).unwrap();
    std::fs::write(dir.join("log.meta"), br#"{"format":1,"purged_before":0,"user":""}"#).unwrap();
}

#[test]
fn a_log_of_100000_segments_opens_under_the_default_descriptor_limit() {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    let log = d.path().join("l");
    let n = 100_000u64;
    many_segments(&log, n);
    let p = log.to_str().unwrap();
    let stat = ok(&limited(1024, &["log", "stat", p, "--json"], b""));
    let v: serde_json::Value = serde_json::from_str(&stat).unwrap();
    assert_eq!((v["records"].as_u64(), v["segments"].as_array().unwrap().len()), (Some(n), n as usize + 1));
    let acks = ok(&limited(1024, &["log", "append", p, "--segment-size", "4K", "--max-record", "1K"], b"appended\n"));
    assert_eq!(acks.trim(), n.to_string());
    let read = ok(&limited(1024, &["log", "read", p, "--from", &(n - 2).to_string()], b""));
    assert_eq!(read, format!("{}\trecord {}\n{}\trecord {}\n{n}\tappended\n", n - 2, n - 2, n - 1, n - 1));
}

#[test]
fn a_writer_under_a_small_descriptor_limit_grows_to_many_segments() {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    let log = d.path().join("l");
    let p = log.to_str().unwrap();
    let input: String = (0..20_000).map(|i| format!("line {i} {}\n", "y".repeat(90))).collect();
    let acks = ok(&limited(64, &["log", "append", p, "--segment-size", "4K", "--max-record", "1K"], input.as_bytes()));
    assert_eq!(acks.lines().count(), 20_000);
    let stat: serde_json::Value = serde_json::from_str(&ok(&limited(64, &["log", "stat", p, "--json"], b""))).unwrap();
    assert!(stat["segments"].as_array().unwrap().len() > 500, "{}", stat["segments"].as_array().unwrap().len());
    let read = ok(&limited(64, &["log", "read", p, "--from", "19999"], b""));
    assert!(read.starts_with("19999\tline 19999 "), "{read}");
    ok(&limited(64, &["log", "verify", p], b""));
}
