//! `log-compare`: dynadax's log against libpmemlog, raft-engine, okaywal and one
//! fsync per append, measured side by side in one run.
//!
//! ```text
//! log-compare all     [--reps 5] [--secs 2] [--out FILE] [--shm DIR] [--disk DIR]
//! log-compare pmem    ...   # append-pmem only: 64 and 256 B, dynadax vs libpmemlog on tmpfs
//! log-compare durable ...   # append-durable only: 256 B, 1 and 8 writers, on ext4
//! log-compare pipelined ... # append-pipelined: one writer, 256 B and 4 KiB, on ext4
//! log-compare diag    ...   # where the time of a flushed append goes (reference loops)
//! log-compare one --bench B --impl I --record R --writers W --dir D ...   # one run (internal)
//! ```
//!
//! Every measurement runs in a child process of its own, on a fresh log, with exactly
//! the environment its implementation needs (`set_env`): `DYNADAX_FORCE_CACHE_FLUSH=1`
//! for dynadax on tmpfs, `PMEM_IS_PMEM_FORCE=1` (and, for `libpmemlog-prefault`,
//! `PMEMLOG_CONF=prefault.at_create=1`) for libpmemlog, none of them for the durable
//! runs. Each prints one JSON line; the parent repeats every workload `--reps` times,
//! alternating implementations (A B C A B C ...), and adds a median line per
//! implementation.

mod drive;
mod impls;

use drive::Bounds;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;

#[derive(Clone, Debug)]
struct Opts {
    reps: usize,
    secs: f64,
    out: Option<PathBuf>,
    shm: PathBuf,
    disk: PathBuf,
    segment_size: u64,
    pool_size: u64,
    /// Before each run, wait up to this many seconds for the machine to be idle.
    quiet_wait: f64,
    /// Runs during which other processes used more than `DISTURBED_PCT` of a core
    /// are recorded (as "disturbed") and run again, up to this many times.
    retries: usize,
    /// Seconds that waiting for quiet and redoing disturbed runs may cost in all;
    /// past it, runs go on without either (and are flagged in the report).
    quiet_budget: f64,
}

/// Seconds spent so far waiting for quiet and redoing disturbed runs.
static QUIET_SPENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Others' CPU use during a run, in % of one core, above which the run is redone.
const DISTURBED_PCT: f64 = 25.0;

fn usage() -> ! {
    eprintln!(
        "usage: log-compare all|pmem|durable|pipelined|diag [--reps N] [--secs S] [--out FILE] [--shm DIR] [--disk DIR]\n\
         \x20      [--segment-size BYTES] [--pool-size BYTES] [--quiet-wait SECS] [--retries N] [--quiet-budget SECS]\n\
         \x20      log-compare one --bench B --impl I --record R --writers W --dir D --secs S --max-ops N\n\
         \x20      --warmup-ops N --segment-size BYTES --pool-size BYTES --fs NAME --rep N"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else { usage() };
    let mut kv: BTreeMap<String, String> = BTreeMap::new();
    let mut it = args[1..].iter();
    while let Some(k) = it.next() {
        let Some(k) = k.strip_prefix("--") else { usage() };
        let Some(v) = it.next() else { usage() };
        kv.insert(k.to_string(), v.clone());
    }
    if cmd == "one" {
        match one(&kv) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("log-compare one: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let default_disk =
        exe.parent().and_then(|p| p.parent()).map(|t| t.join("tmp")).unwrap_or_else(|| PathBuf::from("target/tmp"));
    let o = Opts {
        reps: kv.get("reps").map_or(5, |v| v.parse().expect("--reps")),
        secs: kv.get("secs").map_or(2.0, |v| v.parse().expect("--secs")),
        out: kv.get("out").map(PathBuf::from),
        shm: kv.get("shm").map_or_else(|| PathBuf::from("/dev/shm"), PathBuf::from),
        disk: kv.get("disk").map_or(default_disk, PathBuf::from),
        segment_size: kv.get("segment-size").map_or(64 * MIB, |v| v.parse().expect("--segment-size")),
        pool_size: kv.get("pool-size").map_or(1024 * MIB, |v| v.parse().expect("--pool-size")),
        quiet_wait: kv.get("quiet-wait").map_or(0.0, |v| v.parse().expect("--quiet-wait")),
        retries: kv.get("retries").map_or(0, |v| v.parse().expect("--retries")),
        quiet_budget: kv.get("quiet-budget").map_or(900.0, |v| v.parse().expect("--quiet-budget")),
    };
    let mut out = o.out.as_ref().map(|p| {
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("create output directory");
        }
        std::fs::OpenOptions::new().create(true).append(true).open(p).expect("open --out")
    });
    let plan = match cmd.as_str() {
        "all" => [pmem_plan(&o), durable_plan(&o), pipelined_plan(&o)].concat(),
        "pipelined" => pipelined_plan(&o),
        "pmem" => pmem_plan(&o),
        "durable" => durable_plan(&o),
        "diag" => diag_plan(&o),
        _ => usage(),
    };
    let mut failed = false;
    for w in &plan {
        failed |= !run_workload(&exe, &o, w, out.as_mut());
    }
    if failed {
        std::process::exit(1);
    }
}

/// One workload: the same work done by several implementations.
#[derive(Clone, Debug)]
struct Workload {
    bench: &'static str,
    fs_dir: PathBuf,
    record: usize,
    writers: usize,
    impls: Vec<&'static str>,
    max_ops: u64,
    warmup_ops: u64,
}

fn fs_name(p: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).expect("path");
    // SAFETY: zeroed statfs is a valid out-parameter; c is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown".into();
    }
    match st.f_type as u64 {
        0x0102_1994 => "tmpfs".into(),
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        t => format!("fs-0x{t:x}"),
    }
}

/// Records a pmem run may append in all so that it fits libpmemlog's pool.
fn pmem_ops(o: &Opts, record: usize, warmup: u64) -> u64 {
    (o.pool_size - 4 * MIB) / record as u64 - warmup
}

/// dynadax and libpmemlog, and the floors any persisted-each append sits on: the same
/// frame (dynadax's encoder) stored non-temporally into a file faulted in ahead by a
/// second thread (`raw-nt-crc-fresh`), and without the checksum, all faulted in first
/// (`raw-nt`).
fn pmem_plan(o: &Opts) -> Vec<Workload> {
    pmem_workloads(o, vec!["dynadax", "libpmemlog", "libpmemlog-prefault", "raw-nt-crc-fresh", "raw-nt"])
}

/// One appender on the shm directory, 64 and 256 B records, for `impls`.
fn pmem_workloads(o: &Opts, impls: Vec<&'static str>) -> Vec<Workload> {
    [64usize, 256]
        .iter()
        .map(|&record| {
            let warmup = 200_000;
            Workload {
                bench: "append-pmem",
                fs_dir: o.shm.clone(),
                record,
                writers: 1,
                impls: impls.clone(),
                max_ops: pmem_ops(o, record, warmup),
                warmup_ops: warmup,
            }
        })
        .collect()
}

fn durable_plan(o: &Opts) -> Vec<Workload> {
    [1usize, 8]
        .iter()
        .map(|&writers| Workload {
            bench: "append-durable",
            fs_dir: o.disk.clone(),
            record: 256,
            writers,
            impls: vec!["dynadax", "fsync-each", "raft-engine", "okaywal"],
            max_ops: 10_000_000,
            warmup_ops: 50 * writers as u64,
        })
        .collect()
}

/// One writer that does not wait per append (`Log::append_nowait`), against what bounds
/// it: fsync each (the flush latency it hides) and, at 4 KiB, O_DIRECT writes of the
/// record's size (the disk's bandwidth for them, `dd oflag=direct`).
fn pipelined_plan(o: &Opts) -> Vec<Workload> {
    [(256usize, vec!["dynadax", "fsync-each"]), (4096, vec!["dynadax", "fsync-each", "odirect"])]
        .into_iter()
        .map(|(record, impls)| Workload {
            bench: "append-pipelined",
            fs_dir: o.disk.clone(),
            record,
            writers: 1,
            impls,
            max_ops: 10_000_000,
            warmup_ops: 1000,
        })
        .collect()
}

fn diag_plan(o: &Opts) -> Vec<Workload> {
    pmem_workloads(
        o,
        vec![
            "raw-flush",
            "raw-flush-crc",
            "raw-flush-crc-locked",
            "raw-flush-2fence",
            "raw-nt",
            "raw-nt-crc",
            "raw-nt-crc-fresh",
            "dynadax",
            "dynadax-none",
            "dynadax-steady",
            "libpmemlog",
            "libpmemlog-prefault",
            "dynadax+lat",
            "dynadax-steady+lat",
            "libpmemlog+lat",
            "libpmemlog-prefault+lat",
        ],
    )
}

/// The environment of one run: exactly what its implementation needs.
fn set_env(cmd: &mut Command, bench: &str, imp: &str) {
    for k in [
        "DYNADAX_FORCE_CACHE_FLUSH",
        "PMEM_IS_PMEM_FORCE",
        "PMEMLOG_CONF",
        "LOG_COMPARE_LATENCY",
        "LOG_COMPARE_SETTLE_SECS",
    ] {
        cmd.env_remove(k);
    }
    let (base, lat) = match imp.strip_suffix("+lat") {
        Some(b) => (b, true),
        None => (imp, false),
    };
    if lat {
        cmd.env("LOG_COMPARE_LATENCY", "1");
    }
    if bench == "append-pmem" {
        if base.starts_with("dynadax") {
            cmd.env("DYNADAX_FORCE_CACHE_FLUSH", "1");
        }
        if base == "dynadax-steady" {
            // Let the background preparer fault the whole (2 GiB) tail in first.
            cmd.env("LOG_COMPARE_SETTLE_SECS", "4");
        }
        if base.starts_with("libpmemlog") {
            cmd.env("PMEM_IS_PMEM_FORCE", "1");
        }
        if base == "libpmemlog-prefault" {
            // Fault the whole pool in when it is created, outside the timed loop, as
            // dynadax's preparer faults each tail in ahead of the appends.
            cmd.env("PMEMLOG_CONF", "prefault.at_create=1");
        }
    }
}

/// Runs every rep of a workload, implementations alternating; prints and stores each
/// line and a median line per implementation. False if any run failed.
fn run_workload(exe: &Path, o: &Opts, w: &Workload, mut out: Option<&mut std::fs::File>) -> bool {
    std::fs::create_dir_all(&w.fs_dir).expect("create benchmark directory");
    let fs = fs_name(&w.fs_dir);
    let mut results: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    let mut ok = true;
    let emit = |line: &str, out: &mut Option<&mut std::fs::File>| {
        println!("{line}");
        if let Some(f) = out.as_deref_mut() {
            writeln!(f, "{line}").expect("write --out");
        }
    };
    for rep in 1..=o.reps {
        for &imp in &w.impls {
            let dir = w.fs_dir.join(format!("log-compare-{}-{imp}-{rep}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let mut cmd = Command::new(exe);
            cmd.arg("one")
                .args(["--bench", w.bench, "--impl", imp])
                .args(["--record", &w.record.to_string(), "--writers", &w.writers.to_string()])
                .arg("--dir")
                .arg(&dir)
                .args(["--secs", &o.secs.to_string(), "--max-ops", &w.max_ops.to_string()])
                .args(["--warmup-ops", &w.warmup_ops.to_string()])
                .args(["--segment-size", &o.segment_size.to_string(), "--pool-size", &o.pool_size.to_string()])
                .args(["--fs", &fs, "--rep", &rep.to_string()]);
            set_env(&mut cmd, w.bench, imp);
            let mut attempt = 0;
            let (res, others_pct, steal_pct) = loop {
                let spent = QUIET_SPENT.load(std::sync::atomic::Ordering::Relaxed) as f64;
                let budget_left = (o.quiet_budget - spent).max(0.0);
                let tw = std::time::Instant::now();
                wait_quiet(o.quiet_wait.min(budget_left));
                QUIET_SPENT.fetch_add(tw.elapsed().as_secs(), std::sync::atomic::Ordering::Relaxed);
                let _ = std::fs::remove_dir_all(&dir);
                let (stat0, kids0, t0) = (cpu_ticks(), children_cpu_secs(), std::time::Instant::now());
                let res = cmd.output();
                // CPU time the rest of the machine used meanwhile (all CPU time minus
                // this child's), in % of one core: flags runs something else disturbed.
                let (stat1, kids1, wall) = (cpu_ticks(), children_cpu_secs(), t0.elapsed().as_secs_f64());
                let others_pct = ((stat1.0 - stat0.0) - (kids1 - kids0)).max(0.0) / wall * 100.0;
                let steal_pct = (stat1.1 - stat0.1) / wall * 100.0;
                let ok_line = res
                    .as_ref()
                    .ok()
                    .filter(|r| r.status.success())
                    .map(|r| String::from_utf8_lossy(&r.stdout).trim().to_string());
                if others_pct > DISTURBED_PCT && attempt < o.retries && budget_left > wall {
                    QUIET_SPENT.fetch_add(wall.ceil() as u64, std::sync::atomic::Ordering::Relaxed);
                    if let Some(Ok(mut v)) = ok_line.map(|l| serde_json::from_str::<serde_json::Value>(&l)) {
                        v["stat"] = "disturbed".into();
                        v["others_cpu_pct"] = ((others_pct * 10.0).round() / 10.0).into();
                        emit(&v.to_string(), &mut out);
                    }
                    attempt += 1;
                    continue;
                }
                break (res, others_pct, steal_pct);
            };
            let _ = std::fs::remove_dir_all(&dir);
            match res {
                Ok(r) if r.status.success() => {
                    let line = String::from_utf8_lossy(&r.stdout).trim().to_string();
                    match serde_json::from_str::<serde_json::Value>(&line) {
                        Ok(mut v) => {
                            v["others_cpu_pct"] = ((others_pct * 10.0).round() / 10.0).into();
                            v["steal_pct"] = ((steal_pct * 10.0).round() / 10.0).into();
                            emit(&v.to_string(), &mut out);
                            results.entry(imp).or_default().push(v)
                        }
                        Err(e) => {
                            emit(&line, &mut out);
                            eprintln!("bad line from {imp}: {e}: {line}");
                            ok = false;
                        }
                    }
                }
                Ok(r) => {
                    let why = String::from_utf8_lossy(&r.stderr).trim().to_string();
                    eprintln!(
                        "{} {imp} record {} writers {} rep {rep} failed: {}: {why}",
                        w.bench, w.record, w.writers, r.status
                    );
                    let v = serde_json::json!({
                        "bench": w.bench, "impl": imp, "fs": fs, "record": w.record, "writers": w.writers,
                        "stat": "error", "rep": rep, "error": why,
                    });
                    emit(&v.to_string(), &mut out);
                    ok = false;
                }
                Err(e) => {
                    eprintln!("cannot run {}: {e}", exe.display());
                    ok = false;
                }
            }
        }
    }
    for &imp in &w.impls {
        let Some(runs) = results.get(imp) else { continue };
        let mut sorted: Vec<&serde_json::Value> = runs.iter().collect();
        sorted.sort_by(|a, b| a["ops_per_sec"].as_f64().partial_cmp(&b["ops_per_sec"].as_f64()).unwrap());
        let mid = sorted[sorted.len() / 2];
        let mut m = mid.clone();
        m["stat"] = "median".into();
        m["rep"] = serde_json::Value::Null;
        m["reps_ops_per_sec"] = runs.iter().map(|r| r["ops_per_sec"].clone()).collect::<Vec<_>>().into();
        m["reps_ok"] = runs.len().into();
        m["reps_tried"] = o.reps.into();
        emit(&m.to_string(), &mut out);
    }
    ok
}

/// A raw-flush file big enough for every frame of the run.
fn raw_bytes(b: Bounds) -> u64 {
    ((b.max_ops + b.warmup_ops) * dynadax::log::frame_len(b.record) as u64 + 8 * MIB).div_ceil(2 * MIB) * 2 * MIB
}

/// Waits (at most `max` seconds) until the machine used under 10% of a core over 1 s.
fn wait_quiet(max: f64) {
    let t0 = std::time::Instant::now();
    while t0.elapsed().as_secs_f64() < max {
        let a = cpu_ticks().0;
        std::thread::sleep(std::time::Duration::from_secs(1));
        if (cpu_ticks().0 - a) < 0.10 {
            return;
        }
    }
}

/// (busy, steal) CPU seconds of the whole machine so far, from /proc/stat.
fn cpu_ticks() -> (f64, f64) {
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0.0)).collect();
    let g = |i: usize| f.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal
    ((g(0) + g(1) + g(2) + g(5) + g(6)) / hz, g(7) / hz)
}

/// CPU seconds (user + system) used by this process's waited-for children so far.
fn children_cpu_secs() -> f64 {
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn get<'a>(kv: &'a BTreeMap<String, String>, k: &str) -> Result<&'a str, String> {
    kv.get(k).map(String::as_str).ok_or_else(|| format!("missing --{k}"))
}

fn num<T: std::str::FromStr>(kv: &BTreeMap<String, String>, k: &str) -> Result<T, String> {
    get(kv, k)?.parse().map_err(|_| format!("bad --{k}"))
}

/// One measurement, in this (child) process: returns its JSON line.
fn one(kv: &BTreeMap<String, String>) -> Result<String, String> {
    use dynadax::log::Durability;
    let bench = get(kv, "bench")?;
    let imp = get(kv, "impl")?;
    let dir = PathBuf::from(get(kv, "dir")?);
    let b = Bounds {
        writers: num(kv, "writers")?,
        record: num(kv, "record")?,
        secs: num(kv, "secs")?,
        max_ops: num(kv, "max-ops")?,
        warmup_ops: num(kv, "warmup-ops")?,
        timed: bench == "append-durable",
    };
    if b.record < 8 {
        return Err("records must be at least 8 bytes".into());
    }
    let seg: u64 = num(kv, "segment-size")?;
    let pool: u64 = num(kv, "pool-size")?;
    let (pmem, pipelined) = match bench {
        "append-pmem" => (true, false),
        "append-durable" => (false, false),
        "append-pipelined" => (false, true),
        _ => return Err(format!("unknown bench {bench}")),
    };
    let e = |e: std::io::Error| e.to_string();
    let base = imp.strip_suffix("+lat").unwrap_or(imp);
    let run = match (base, pmem) {
        ("dynadax", true) => impls::run_dynadax(&dir, b, Durability::Each, seg, true, false).map_err(e)?,
        ("dynadax", false) => impls::run_dynadax(&dir, b, Durability::Group, seg, false, pipelined).map_err(e)?,
        ("dynadax-steady", true) => {
            impls::run_dynadax(&dir, b, Durability::Each, 2048 * MIB, true, false).map_err(e)?
        }
        ("dynadax-none", true) => impls::run_dynadax(&dir, b, Durability::None, seg, true, false).map_err(e)?,
        ("libpmemlog" | "libpmemlog-prefault", true) => impls::run_libpmemlog(&dir, b, pool).map_err(e)?,
        ("raw-flush", true) => impls::run_raw_flush(&dir, b, raw_bytes(b), false, 1, false).map_err(e)?,
        ("raw-flush-crc", true) => impls::run_raw_flush(&dir, b, raw_bytes(b), true, 1, false).map_err(e)?,
        ("raw-flush-crc-locked", true) => impls::run_raw_flush(&dir, b, raw_bytes(b), true, 1, true).map_err(e)?,
        ("raw-flush-2fence", true) => impls::run_raw_flush(&dir, b, raw_bytes(b), false, 2, false).map_err(e)?,
        ("raw-nt", true) => impls::run_raw_nt(&dir, b, raw_bytes(b), false, false).map_err(e)?,
        ("raw-nt-crc", true) => impls::run_raw_nt(&dir, b, raw_bytes(b), true, false).map_err(e)?,
        ("raw-nt-crc-fresh", true) => impls::run_raw_nt(&dir, b, raw_bytes(b), true, true).map_err(e)?,
        ("fsync-each", false) => impls::run_fsync_each(&dir, b).map_err(e)?,
        ("odirect", false) => impls::run_odirect(&dir, b).map_err(e)?,
        ("raft-engine", false) => impls::run_raft_engine(&dir, b, seg).map_err(e)?,
        ("okaywal", false) => impls::run_okaywal(&dir, b, seg).map_err(e)?,
        _ => return Err(format!("no implementation {imp} for {bench}")),
    };
    let o = &run.outcome;
    let v = serde_json::json!({
        "bench": bench,
        "impl": imp,
        "fs": get(kv, "fs")?,
        "record": b.record,
        "writers": b.writers,
        "ops": o.ops,
        "secs": (o.secs * 1e6).round() / 1e6,
        "ops_per_sec": (o.ops as f64 / o.secs).round(),
        "mb_per_sec": (o.ops as f64 * b.record as f64 / o.secs / 1e5).round() / 10.0,
        "stat": "rep",
        "rep": num::<u32>(kv, "rep")?,
        "warmup_ops": o.warmup_ops,
        "persist": run.persist,
    });
    let mut v = v;
    if let Some((p50, p99)) = o.percentiles {
        v["p50_us"] = ((p50 * 10.0).round() / 10.0).into();
        v["p99_us"] = ((p99 * 10.0).round() / 10.0).into();
    }
    if let Some(f) = run.per_flush {
        v["appends_per_flush"] = ((f * 100.0).round() / 100.0).into();
    }
    if let Some(h) = &o.latency {
        v["latency_writer0"] = h
            .iter()
            .map(|(bucket, n, ms)| serde_json::json!({"bucket": bucket, "appends": n, "ms": (ms * 1e3).round() / 1e3}))
            .collect::<Vec<_>>()
            .into();
    }
    Ok(v.to_string())
}
