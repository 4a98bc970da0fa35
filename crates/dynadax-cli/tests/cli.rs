//! The `dynadax` command as a user runs it: output contracts, exit codes, one-line
//! errors naming the path, and modes that survive from one process to the next.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output};

fn dynadax(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dynadax")).args(args).output().expect("run dynadax")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// FS_XFLAG_DAX read with a raw ioctl, independent of dynadax.
fn xflag_dax(path: &Path) -> bool {
    let f = std::fs::File::open(path).unwrap();
    let mut buf = [0u32; 7];
    assert_eq!(unsafe { libc::ioctl(f.as_raw_fd(), 0x801c_581f, buf.as_mut_ptr()) }, 0);
    buf[0] & 0x8000 != 0
}

fn work_tree_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

#[test]
fn help_teaches_and_lists_commands() {
    let out = dynadax(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["probe", "stat", "mode", "volume", "demo", "physical", "effective", "Exit codes"] {
        assert!(text.contains(word), "--help lacks {word}:\n{text}");
    }
}

#[test]
fn probe_json_has_the_contract_keys() {
    let d = work_tree_dir();
    for target in [d.path().to_path_buf(), d.path().join("not/yet")] {
        let v = json(&dynadax(&["probe", p(&target), "--json"]));
        for key in [
            "path",
            "fs_type",
            "mount_dax",
            "device_dax",
            "statx_dax",
            "map_sync",
            "persistence",
            "flush_instruction",
            "flag_store",
        ] {
            assert!(v.get(key).is_some(), "probe --json lacks {key}: {v}");
        }
        assert!(v["map_sync"].is_boolean());
        assert_eq!(v["path"], p(&target));
        assert!(!target.join("not").exists(), "probe created something");
    }
}

/// The acceptance scenario on this machine's ext4.
#[test]
fn mode_on_ext4_directory_sets_kernel_flag_and_new_files_inherit() {
    let d = work_tree_dir();
    let dir = d.path().join("wal");
    std::fs::create_dir(&dir).unwrap();
    let out = dynadax(&["mode", p(&dir), "direct"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(xflag_dax(&dir), "FS_XFLAG_DAX not set as the kernel reports it");
    let file = dir.join("made-by-sh");
    assert!(Command::new("sh").arg("-c").arg(format!("echo hi > '{}'", file.display())).status().unwrap().success());
    assert!(xflag_dax(&file), "file created by sh did not inherit");
    let v = json(&dynadax(&["stat", p(&file), "--json"]));
    for key in ["path", "kind", "physical", "effective", "backing", "pending", "reason", "flag_store"] {
        assert!(v.get(key).is_some(), "stat --json lacks {key}: {v}");
    }
    assert_eq!(v["kind"], "file");
    assert_eq!(v["physical"], "direct");
    assert_eq!(v["effective"], "direct");
    assert_eq!(v["backing"], "emulated");
    assert_eq!(v["pending"], false);
    assert_eq!(v["flag_store"], "fs-xflag");
    assert!(v["reason"].as_str().unwrap().contains("emulated"), "{v}");
}

/// Set in one process, read in the next: the tmpfs fallback survives a restart.
#[test]
fn tmpfs_mode_survives_process_restart() {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    let f = d.path().join("f");
    std::fs::write(&f, b"x").unwrap();
    json(&dynadax(&["mode", p(&f), "direct", "--json"]));
    let v = json(&dynadax(&["stat", p(&f), "--json"]));
    assert_eq!(v["physical"], "direct");
    assert_eq!(v["effective"], "direct");
    assert_eq!(v["flag_store"], "xattr");
    json(&dynadax(&["mode", p(&f), "cached", "--json"]));
    assert_eq!(json(&dynadax(&["stat", p(&f), "--json"]))["physical"], "cached");
}

#[test]
fn volume_policy_applies() {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    let vol = d.path().join("vol");
    json(&dynadax(&["volume", "init", p(&vol), "--policy", "never", "--json"]));
    let f = vol.join("f");
    std::fs::write(&f, b"x").unwrap();
    json(&dynadax(&["mode", p(&f), "direct", "--json"]));
    let v = json(&dynadax(&["stat", p(&f), "--json"]));
    assert_eq!((v["physical"].as_str(), v["effective"].as_str()), (Some("direct"), Some("cached")));
    assert!(v["reason"].as_str().unwrap().contains("policy never"), "{v}");
}

fn assert_one_line_error(out: &Output, code: i32, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(code), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    for n in needles {
        assert!(err.contains(n), "error lacks {n:?}: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_gets_one_clear_line_and_changes_nothing() {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    let missing = d.path().join("missing");
    assert_one_line_error(&dynadax(&["stat", p(&missing)]), 1, &[p(&missing), "no such file"]);
    assert_one_line_error(&dynadax(&["mode", p(&missing), "direct"]), 1, &[p(&missing)]);
    assert_one_line_error(
        &dynadax(&["mode", "/dev/null", "direct"]),
        1,
        &["/dev/null", "not a regular file or directory"],
    );

    let file = d.path().join("file");
    std::fs::write(&file, b"keep me").unwrap();
    assert_one_line_error(&dynadax(&["volume", "init", p(&file)]), 1, &[p(&file), "not a directory"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

    std::fs::write(d.path().join(".dynadax-volume"), b"{not json").unwrap();
    assert_one_line_error(&dynadax(&["stat", p(&file)]), 1, &[".dynadax-volume", "corrupt volume file"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

    // Usage errors exit 2 (clap's convention).
    let out = dynadax(&["mode", p(&file), "turbo"]);
    assert_eq!(out.status.code(), Some(2));
    let out = dynadax(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `mode --range` sets part of a file, `stat` shows it (JSON and text) from another
/// process, and a bad range is one clear line with exit 1 (a malformed one, 2).
#[test]
fn range_modes_from_the_command_line() {
    for d in [work_tree_dir(), tempfile::tempdir_in("/dev/shm").unwrap()] {
        let f = d.path().join("segments");
        std::fs::write(&f, vec![7u8; 3 << 20]).unwrap();
        let v = json(&dynadax(&["mode", p(&f), "direct", "--range", "2M:", "--json"]));
        assert_eq!(v["physical"], "cached", "{v}");
        let r = &v["ranges"][0];
        assert_eq!((r["offset"].as_u64(), r["len"].is_null()), (Some(2 << 20), true), "{v}");
        assert_eq!((r["physical"].as_str(), r["effective"].as_str()), (Some("direct"), Some("direct")), "{v}");
        assert_eq!(r["backing"], "emulated", "{v}");
        json(&dynadax(&["mode", p(&f), "cached", "--range", "2M:512K", "--json"]));
        let out = dynadax(&["stat", p(&f)]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("range         2621440..end: physical direct, effective direct (emulated)"), "{text}");
        assert_eq!(std::fs::read(&f).unwrap(), vec![7u8; 3 << 20], "a range switch changed data");
        assert_one_line_error(&dynadax(&["mode", p(&f), "direct", "--range", "100:4K"]), 1, &[p(&f), "whole pages"]);
        assert_eq!(dynadax(&["mode", p(&f), "direct", "--range", "12"]).status.code(), Some(2));
    }
}

/// The demo on the work tree's disk (ext4 here: no DAX, direct emulated).
#[test]
fn demo_runs_on_the_work_tree() {
    let d = work_tree_dir();
    let out = dynadax(&["demo", p(&d.path().join("demo")), "--size", "1048576"]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("demo passed"));
}

#[test]
fn demo_runs_and_reports() {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    let dir = d.path().join("demo");
    let out = dynadax(&["demo", p(&dir), "--size", "1048576"]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("demo passed") && text.contains("refused: Busy"), "{text}");
    // Run again (idempotent), as JSON.
    let v = json(&dynadax(&["demo", p(&dir), "--size", "65536", "--json"]));
    assert!(v["steps"].as_array().unwrap().iter().all(|s| s["ok"] == true), "{v}");
    assert_eq!(v["after_cached"]["effective"], "cached");
    assert_eq!(v["after_direct"]["effective"], "direct");
    // A non-volume `volume/` directory is never deleted.
    let other = d.path().join("other");
    std::fs::create_dir_all(other.join("volume")).unwrap();
    std::fs::write(other.join("volume/precious"), b"x").unwrap();
    assert_one_line_error(&dynadax(&["demo", p(&other)]), 1, &["not a dynadax volume"]);
    assert!(other.join("volume/precious").exists());
}

/// Review, as a new user: the `--range 0:64M` of the README and of `mode --help` was
/// refused ("0" is not a size): an offset may be 0.
#[test]
fn mode_range_takes_offset_zero_as_the_help_shows() {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    let f = d.path().join("segments");
    std::fs::write(&f, vec![1u8; 2 << 20]).unwrap();
    json(&dynadax(&["mode", p(&f), "direct", "--json"]));
    let v = json(&dynadax(&["mode", p(&f), "cached", "--range", "0:1M", "--json"]));
    assert_eq!(v["ranges"][0]["offset"].as_u64(), Some(0), "{v}");
    let help = dynadax(&["mode", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("--range 0:64M"));
    assert_eq!(dynadax(&["mode", p(&f), "cached", "--range", "0:0"]).status.code(), Some(2), "a zero length");
}

/// Review, as a new user: `log read`/`log stat` of a directory that is not a log
/// exited 0 with nothing or "0 segments".
#[test]
fn log_commands_on_a_directory_that_is_not_a_log_say_so() {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    for cmd in ["read", "stat", "tail"] {
        assert_one_line_error(&dynadax(&["log", cmd, p(d.path())]), 1, &[p(d.path()), "not a dynadax log"]);
    }
}

/// Review, as a new user: `log stat DIR | head -1` panicked with a backtrace on
/// EPIPE. It ends quietly, killed by SIGPIPE as other Unix tools are.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    let log = d.path().join("l");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dynadax"))
        .args(["log", "append", p(&log), "--segment-size", "64K", "--max-record", "1K"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..3000 {
            writeln!(stdin, "record {i} {}", "x".repeat(200)).unwrap();
        }
    }
    assert!(child.wait().unwrap().success());
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' log stat '{}' | head -c 1 > /dev/null; '{}' log read '{}' | head -n 1 >/dev/null",
            env!("CARGO_BIN_EXE_dynadax"),
            p(&log),
            env!("CARGO_BIN_EXE_dynadax"),
            p(&log)
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
    assert!(out.status.success());
}

/// Review, as a new user: `log append` into a directory whose parent is missing said
/// only "no such file or directory".
#[test]
fn log_append_under_a_missing_parent_says_what_it_tried() {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    let target = d.path().join("no/such/log");
    let out = Command::new(env!("CARGO_BIN_EXE_dynadax"))
        .args(["log", "append", p(&target)])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_one_line_error(&out, 1, &[p(&target), "cannot create the log directory", "does not exist"]);
    assert!(!d.path().join("no").exists());
}

/// Issue 10 as a user meets it: a flipped byte mid-tail. `log append` refuses (exit
/// 1, one line naming the file, offset and LSN, nothing changed), `log verify` says
/// DAMAGE with the intact records after it, `log repair --dry-run` says what a
/// salvage drops without doing it, `log repair` does it, and `log read
/// --recovery skip-damaged` prints every other record.
#[test]
fn damage_is_refused_verified_and_repaired_from_the_command_line() {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    let log = d.path().join("l");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dynadax"))
        .args(["log", "append", p(&log)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..300 {
            writeln!(stdin, "record-{i:04}").unwrap();
        }
    }
    assert!(child.wait().unwrap().success());
    let seg = log.join("00000000000000000000.dlog");
    // Record 100: 64 + 100 frames of 40 bytes (24 + 11 payload, padded).
    let at = 64 + 100 * 40 + 30;
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[at] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dynadax"))
        .args(["log", "append", p(&log)])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_one_line_error(&out, 1, &[p(&seg), "at byte 4064", "record 100 is damaged", "199 intact"]);
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "the refused append changed the segment");
    let v = dynadax(&["log", "verify", p(&log)]);
    assert_eq!(v.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&v.stdout).contains("DAMAGE: record 100 is damaged"), "{v:?}");
    let plan = dynadax(&["log", "repair", p(&log), "--recovery", "skip-damaged", "--dry-run"]);
    assert!(plan.status.success());
    assert!(String::from_utf8_lossy(&plan.stdout).contains("would keep as a hole: LSNs 100..101"), "{plan:?}");
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "a dry run changed the segment");
    let refused = dynadax(&["log", "read", p(&log)]);
    assert_eq!(refused.status.code(), Some(1));
    let done = json(&dynadax(&["log", "repair", p(&log), "--recovery", "skip-damaged", "--json"]));
    assert_eq!(done["holes"][0]["lsns"], serde_json::json!([100, 101]), "{done}");
    let read = dynadax(&["log", "read", p(&log), "--recovery", "skip-damaged"]);
    let text = String::from_utf8_lossy(&read.stdout);
    assert_eq!(text.lines().count(), 299);
    assert!(text.contains("99\trecord-0099\n101\trecord-0101\n"), "{text}");
    assert!(String::from_utf8_lossy(&read.stderr).contains("record 100 at byte 4064 is damaged"));
    assert_eq!(read.status.code(), Some(1), "a read that skipped a record says so");
}

/// Appends `lines` records to `dir` through `dynadax log append ARGS`; the output.
fn append_lines(dir: &Path, lines: std::ops::Range<u32>, args: &[&str]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_dynadax"))
        .args(["log", "append", p(dir)])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for i in lines {
        input.push_str(&format!("record {i} {}\n", "x".repeat((i % 300) as usize)));
    }
    // A child that stops (a full log) closes its input: what it acknowledged counts.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

/// The single-file layout from the command line: one data file holds the segments
/// (`log stat --json` gives each one's offset in it, and the layout); a full ring is
/// exit 4 with a message naming the log and what frees it, nothing acknowledged is
/// lost; `log purge` frees slots and appends resume; `log verify` and `log read` agree.
#[test]
fn a_single_file_log_from_the_command_line_fills_purges_and_resumes() {
    let d = tempfile::tempdir_in("/dev/shm").unwrap();
    let dir = d.path().join("log");
    let args = ["--layout", "single-file", "--capacity", "260K", "--segment-size", "64K", "--max-record", "4K"];
    // 4 slots of 64 KiB: about 4 x 340 of these records.
    let out = append_lines(&dir, 0..1000, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.contains(&"log.data".to_string()) && !names.iter().any(|n| n.ends_with(".dlog")), "{names:?}");
    let st = json(&dynadax(&["log", "stat", p(&dir), "--json"]));
    assert_eq!(st["layout"]["layout"], "single-file");
    let segs = st["segments"].as_array().unwrap();
    assert!(segs.len() >= 2, "{st}");
    for (k, s) in segs.iter().enumerate() {
        assert_eq!(s["offset"].as_u64().unwrap(), 4096 + k as u64 * (64 << 10), "{s}");
        assert!(s["path"].as_str().unwrap().ends_with("log.data"));
        for key in ["first_lsn", "last_lsn", "records", "bytes", "sealed"] {
            assert!(s.get(key).is_some(), "{key} missing from {s}");
        }
    }
    // Fill the ring: refused with exit 4, everything acknowledged kept.
    let out = append_lines(&dir, 1000..5000, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(p(&dir)) && err.contains("log is full") && err.contains("purge"), "{err}");
    let acked = String::from_utf8_lossy(&out.stdout).lines().count() as u64;
    let total = 1000 + acked;
    let read = dynadax(&["log", "read", p(&dir)]);
    assert_eq!(String::from_utf8_lossy(&read.stdout).lines().count() as u64, total);
    assert!(dynadax(&["log", "verify", p(&dir)]).status.success());
    // Purge half: appends resume.
    let out = dynadax(&["log", "purge", p(&dir), "--before", &(total / 2).to_string(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(json(&out)["segments_removed"].as_u64().unwrap() >= 1);
    let out = append_lines(&dir, 5000..5200, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read = dynadax(&["log", "read", p(&dir)]);
    let lines: Vec<String> = String::from_utf8_lossy(&read.stdout).lines().map(String::from).collect();
    assert_eq!(lines.first().unwrap().split('\t').next().unwrap(), (total / 2).to_string());
    assert!(lines.last().unwrap().contains("record 5199"), "{:?}", lines.last());
    assert!(dynadax(&["log", "verify", p(&dir)]).status.success());
}

/// `log append --pipelined` acknowledges what it was given as soon as standard input
/// has nothing more ready: a producer that writes some records and waits for their
/// LSNs (as a client of a pipe does) gets them without closing its end. And every LSN
/// printed is durable: the log holds those records when read back.
#[test]
fn pipelined_append_acknowledges_when_input_pauses() {
    use std::io::{BufRead, Write};
    let d = work_tree_dir();
    let log = d.path().join("l");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dynadax"))
        .args(["log", "append", p(&log), "--pipelined"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut next = 0u64;
    for round in 0..3 {
        let n = [1, 50, 700][round];
        let batch: String = (0..n).map(|i| format!("round {round} record {i}\n")).collect();
        stdin.write_all(batch.as_bytes()).unwrap();
        stdin.flush().unwrap();
        // The pipe stays open: these LSNs come because the input paused.
        for _ in 0..n {
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "output ended before LSN {next}");
            assert_eq!(line.trim(), next.to_string(), "LSNs in order, each once");
            next += 1;
        }
    }
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "", "nothing printed after end of input but what was pending");
    assert!(child.wait().unwrap().success());
    let out = dynadax(&["log", "read", p(&log)]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 751);
    assert_eq!(text.lines().nth(51).unwrap(), "51\tround 2 record 0");
}
