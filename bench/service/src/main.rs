//! Issue 16's benchmark: committed appends per second and their latency on a 3-node
//! cluster on loopback, closed-loop clients, a dynadax service against etcd.
//!
//! ```text
//! service-compare --impl dynadax|dynadax-memory|etcd --endpoints A,B,C --pids P1,P2,P3 \
//!     [--clients 1,8,64] [--secs 5] [--warmup-secs 1] [--record 256] [--rep 1] \
//!     [--retries 2] [--quiet-wait 30] [--max-others 25] [--commit X]
//! ```
//!
//! The cluster is already running (bench/service.sh starts it); `--pids` are its
//! processes, in the order of `--endpoints`, for the CPU accounting. For each client
//! count: wait for the machine to be quiet, then N tasks, each with a connection of its
//! own to the leader, append one record after another (an append returns once
//! committed: dynadax `Client::append`, etcd `put`), `--warmup-secs` untimed then
//! `--secs` timed; then check that everything acknowledged is there, on every node.
//! Prints one JSON line per run on stdout ("stat":"rep", or "disturbed" for a run
//! that other processes disturbed, which is redone); fails loudly (a "stat":"error"
//! line and exit 1) if a check fails.

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Impl {
    Dynadax,
    DynadaxMemory,
    Etcd,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Dynadax => "dynadax",
            Impl::DynadaxMemory => "dynadax-memory",
            Impl::Etcd => "etcd",
        }
    }
}

struct Args {
    imp: Impl,
    endpoints: Vec<String>,
    pids: Vec<u32>,
    clients: Vec<usize>,
    secs: f64,
    warmup: f64,
    record: usize,
    rep: u32,
    retries: u32,
    quiet_wait: f64,
    max_others: f64,
    commit: String,
}

fn usage(msg: &str) -> ! {
    eprintln!("service-compare: {msg}");
    eprintln!(
        "usage: service-compare --impl dynadax|dynadax-memory|etcd --endpoints A,B,C --pids P1,P2,P3 \
         [--clients 1,8,64] [--secs 5] [--warmup-secs 1] [--record 256] [--rep 1] [--retries 2] \
         [--quiet-wait 30] [--max-others 25] [--commit X]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        imp: Impl::Dynadax,
        endpoints: vec![],
        pids: vec![],
        clients: vec![1, 8, 64],
        secs: 5.0,
        warmup: 1.0,
        record: 256,
        rep: 1,
        retries: 2,
        quiet_wait: 30.0,
        max_others: 25.0,
        commit: String::new(),
    };
    let mut it = std::env::args().skip(1);
    let mut imp = None;
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| usage(&format!("{k} needs a value")));
        let num = |v: &str| v.parse::<f64>().unwrap_or_else(|_| usage(&format!("{k}: not a number: {v}")));
        match k.as_str() {
            "--impl" => {
                imp = Some(match v.as_str() {
                    "dynadax" => Impl::Dynadax,
                    "dynadax-memory" => Impl::DynadaxMemory,
                    "etcd" => Impl::Etcd,
                    _ => usage(&format!("unknown --impl {v}")),
                })
            }
            "--endpoints" => a.endpoints = v.split(',').filter(|s| !s.is_empty()).map(String::from).collect(),
            "--pids" => {
                a.pids = v.split(',').map(|p| p.parse().unwrap_or_else(|_| usage(&format!("bad pid {p}")))).collect()
            }
            "--clients" => {
                a.clients = v.split(',').map(|p| p.parse().unwrap_or_else(|_| usage(&format!("bad count {p}")))).collect()
            }
            "--secs" => a.secs = num(&v),
            "--warmup-secs" => a.warmup = num(&v),
            "--record" => a.record = num(&v) as usize,
            "--rep" => a.rep = num(&v) as u32,
            "--retries" => a.retries = num(&v) as u32,
            "--quiet-wait" => a.quiet_wait = num(&v),
            "--max-others" => a.max_others = num(&v),
            "--commit" => a.commit = v,
            _ => usage(&format!("unknown option {k}")),
        }
    }
    a.imp = imp.unwrap_or_else(|| usage("--impl is required"));
    if a.endpoints.is_empty() {
        usage("--endpoints is required");
    }
    if !a.pids.is_empty() && a.pids.len() != a.endpoints.len() {
        usage("--pids must name one process per endpoint, in the same order");
    }
    if a.record < 16 {
        usage("--record must be at least 16 bytes");
    }
    a
}

// ---- CPU accounting from /proc ---------------------------------------------------

fn ticks_per_sec() -> f64 {
    100.0 // USER_HZ on Linux
}

/// utime + stime of a process, in clock ticks.
fn proc_ticks(pid: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may hold spaces: fields after the last ')'.
    let rest = match s.rfind(')') {
        Some(i) => &s[i + 2..],
        None => return 0,
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    let g = |i: usize| f.get(i - 3).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    g(14) + g(15)
}

/// Busy ticks of the whole machine (user, nice, system, irq, softirq, steal), and steal.
fn machine_ticks() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = s.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let g = |i: usize| f.get(i).copied().unwrap_or(0);
    (g(0) + g(1) + g(2) + g(5) + g(6) + g(7), g(7))
}

/// Bytes a process caused to be written to storage (/proc/PID/io write_bytes).
fn proc_write_bytes(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes: ").and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

#[derive(Clone)]
struct CpuSnap {
    at: Instant,
    machine: u64,
    steal: u64,
    me: u64,
    nodes: Vec<u64>,
    writes: Vec<u64>,
}

fn snap(pids: &[u32]) -> CpuSnap {
    let (machine, steal) = machine_ticks();
    CpuSnap {
        at: Instant::now(),
        machine,
        steal,
        me: proc_ticks("self"),
        nodes: pids.iter().map(|p| proc_ticks(&p.to_string())).collect(),
        writes: pids.iter().map(|p| proc_write_bytes(&p.to_string())).collect(),
    }
}

/// % of one core used by processes other than the cluster and this one, between two snaps.
fn others_pct(a: &CpuSnap, b: &CpuSnap) -> f64 {
    let secs = (b.at - a.at).as_secs_f64().max(1e-3);
    let ours: u64 = (b.me - a.me) + b.nodes.iter().zip(&a.nodes).map(|(x, y)| x - y).sum::<u64>();
    let others = (b.machine - a.machine).saturating_sub(ours) as f64;
    100.0 * others / ticks_per_sec() / secs
}

async fn wait_quiet(pids: &[u32], max_wait: f64) -> f64 {
    let start = Instant::now();
    loop {
        let a = snap(pids);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = snap(pids);
        let o = others_pct(&a, &b);
        if o < 10.0 || start.elapsed().as_secs_f64() >= max_wait {
            if o >= 10.0 {
                eprintln!("warning: others use {o:.0}% of a core; going on");
            }
            return o;
        }
    }
}

// ---- the implementations -----------------------------------------------------------

/// One client's connection.
enum Conn {
    Dynadax(dynadax_service::Client),
    Etcd(etcd_client::Client),
}

/// What one client task did.
#[derive(Default)]
struct TaskOut {
    /// Every acknowledged append, warm-up included.
    acked: u64,
    /// dynadax: the index of each acknowledged append.
    indexes: Vec<u64>,
    /// Latency of each timed append, ns.
    lat_ns: Vec<u64>,
    /// dynadax: (index, record) of its last acknowledged append.
    last: Option<(u64, Vec<u8>)>,
}

fn record(task: usize, seq: u64, len: usize) -> Vec<u8> {
    let mut r = vec![0u8; len];
    r[..8].copy_from_slice(&(task as u64).to_le_bytes());
    r[8..16].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in r[16..].iter_mut().enumerate() {
        *b = b'a' + (i % 26) as u8;
    }
    r
}

fn err(msg: String) -> Box<dyn std::error::Error + Send + Sync> {
    msg.into()
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The index in `endpoints` of the current leader.
async fn find_leader(imp: Impl, endpoints: &[String]) -> Res<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = match imp {
            Impl::Etcd => {
                let mut found = None;
                for (i, e) in endpoints.iter().enumerate() {
                    if let Ok(mut c) = etcd_client::Client::connect([e.as_str()], None).await {
                        if let Ok(s) = c.status().await {
                            if s.header().map(|h| h.member_id()) == Some(s.leader()) && s.leader() != 0 {
                                found = Some(i);
                            }
                        }
                    }
                }
                found
            }
            _ => {
                let c = dynadax_service::Client::connect(endpoints.iter().cloned())?;
                let mut found = None;
                for (i, e) in endpoints.iter().enumerate() {
                    if let Ok(s) = c.status(e).await {
                        if s.state == "Leader" {
                            found = Some(i);
                        }
                    }
                }
                found
            }
        };
        if let Some(i) = found {
            return Ok(i);
        }
        if Instant::now() > deadline {
            return Err(err(format!("no leader among {endpoints:?} after 30 s")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn connect(imp: Impl, endpoints: &[String], leader: usize) -> Res<Conn> {
    Ok(match imp {
        // Given every address: it finds the leader, and appends go to it alone.
        Impl::Dynadax | Impl::DynadaxMemory => Conn::Dynadax(dynadax_service::Client::connect(endpoints.iter().cloned())?),
        // Given the leader alone: one HTTP/2 connection to it (a follower would forward
        // every put to the leader, an extra hop dynadax's clients do not make).
        Impl::Etcd => Conn::Etcd(etcd_client::Client::connect([endpoints[leader].as_str()], None).await?),
    })
}

/// dynadax: the replicated log's length, linearizable (through the leader's read index).
async fn dynadax_len(c: &dynadax_service::Client) -> Res<u64> {
    Ok(c.read_some(0, Some(1), false, None).await?.next)
}

struct Phases {
    warm_end: Instant,
    end: Instant,
}

async fn client_task(mut conn: Conn, task: usize, record_len: usize, prefix: String, ph: Arc<Phases>) -> Res<TaskOut> {
    let mut out = TaskOut::default();
    let mut seq = 0u64;
    loop {
        let t0 = Instant::now();
        if t0 >= ph.end {
            break;
        }
        seq += 1;
        let rec = record(task, seq, record_len);
        match &mut conn {
            Conn::Dynadax(c) => {
                let i = c.append(&rec).await.map_err(|e| err(format!("client {task}: append {seq}: {e}")))?;
                out.indexes.push(i);
                if out.last.as_ref().map_or(true, |(j, _)| i > *j) {
                    out.last = Some((i, rec));
                }
            }
            Conn::Etcd(c) => {
                let key = format!("{prefix}{task:03}/{seq:010}");
                c.put(key, rec, None).await.map_err(|e| err(format!("client {task}: put {seq}: {e}")))?;
            }
        }
        let t1 = Instant::now();
        out.acked += 1;
        if t0 >= ph.warm_end && t1 <= ph.end {
            out.lat_ns.push((t1 - t0).as_nanos() as u64);
        }
    }
    Ok(out)
}

/// One measured run with `n` clients: the JSON line, or an error if a check failed.
async fn run_once(a: &Args, n: usize, attempt: u32) -> Res<Value> {
    let leader = find_leader(a.imp, &a.endpoints).await?;
    let prefix = format!("bench/{}/{}/{}/", a.rep, n, attempt);
    // The log's length before (dynadax), or the prefix is fresh (etcd).
    let checker = match a.imp {
        Impl::Etcd => None,
        _ => Some(dynadax_service::Client::connect(a.endpoints.iter().cloned())?),
    };
    let base = match &checker {
        Some(c) => dynadax_len(c).await?,
        None => {
            let mut c = etcd_client::Client::connect([a.endpoints[leader].as_str()], None).await?;
            let got = c.get(prefix.clone(), Some(etcd_client::GetOptions::new().with_prefix().with_count_only())).await?;
            if got.count() != 0 {
                return Err(err(format!("etcd: prefix {prefix} is not empty ({} keys)", got.count())));
            }
            0
        }
    };
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(connect(a.imp, &a.endpoints, leader).await?);
    }
    let start = Instant::now();
    let ph = Arc::new(Phases {
        warm_end: start + Duration::from_secs_f64(a.warmup),
        end: start + Duration::from_secs_f64(a.warmup + a.secs),
    });
    let mut handles = Vec::with_capacity(n);
    for (t, c) in conns.into_iter().enumerate() {
        handles.push(tokio::spawn(client_task(c, t, a.record, prefix.clone(), ph.clone())));
    }
    tokio::time::sleep_until(ph.warm_end.into()).await;
    let s0 = snap(&a.pids);
    let st0 = match (&checker, a.imp) {
        (Some(c), _) => c.status(&a.endpoints[leader]).await.ok(),
        _ => None,
    };
    tokio::time::sleep_until(ph.end.into()).await;
    let s1 = snap(&a.pids);
    let st1 = match &checker {
        Some(c) => c.status(&a.endpoints[leader]).await.ok(),
        None => None,
    };
    let mut outs = Vec::with_capacity(n);
    for h in handles {
        outs.push(h.await.map_err(|e| err(format!("client task: {e}")))??);
    }
    let secs = (ph.end - ph.warm_end).as_secs_f64();
    let acked: u64 = outs.iter().map(|o| o.acked).sum();
    let mut lat: Vec<u64> = outs.iter().flat_map(|o| o.lat_ns.iter().copied()).collect();
    lat.sort_unstable();
    let ops = lat.len() as u64;
    if ops == 0 {
        return Err(err("no append completed in the timed phase".into()));
    }
    let pct = |p: f64| lat[(((lat.len() - 1) as f64) * p).round() as usize] as f64 / 1e3;

    // ---- the checks: everything acknowledged is there, on every node -------------
    let expected = base + acked;
    let check = match &checker {
        Some(c) => {
            let mut idx: Vec<u64> = outs.iter().flat_map(|o| o.indexes.iter().copied()).collect();
            idx.sort_unstable();
            let dup = idx.windows(2).filter(|w| w[0] == w[1]).count();
            if dup != 0 || idx.first() != Some(&base) || idx.last() != Some(&(expected - 1)) {
                return Err(err(format!(
                    "dynadax: {acked} appends acknowledged at indexes {:?}..{:?} with {dup} duplicates; expected \
                     exactly {base}..{expected}",
                    idx.first(),
                    idx.last()
                )));
            }
            let len = dynadax_len(c).await?;
            if len != expected {
                return Err(err(format!("dynadax: linearizable read: log length {len}, expected {expected}")));
            }
            // The last acknowledged record reads back as sent.
            let (li, lrec) = outs.iter().filter_map(|o| o.last.clone()).max_by_key(|(i, _)| *i).unwrap();
            let back = c.read(li..li + 1, false).await?;
            if back.len() != 1 || back[0].0 != li || back[0].1 != lrec {
                return Err(err(format!("dynadax: record {li} does not read back as acknowledged")));
            }
            // Every node holds all of it (followers may apply a moment later).
            for e in &a.endpoints {
                let deadline = Instant::now() + Duration::from_secs(15);
                loop {
                    let s = c.status(e).await?;
                    if s.records == expected {
                        break;
                    }
                    if Instant::now() > deadline {
                        return Err(err(format!("dynadax: node {e} holds {} records, expected {expected}", s.records)));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            format!(
                "indexes {base}..{expected} each once; linearizable length {len}; last record read back; every node \
                 {expected} records"
            )
        }
        None => {
            let mut c = etcd_client::Client::connect([a.endpoints[leader].as_str()], None).await?;
            let got = c.get(prefix.clone(), Some(etcd_client::GetOptions::new().with_prefix().with_count_only())).await?;
            if got.count() as u64 != acked {
                return Err(err(format!("etcd: linearizable count of {prefix}: {}, acknowledged {acked}", got.count())));
            }
            for e in &a.endpoints {
                let mut m = etcd_client::Client::connect([e.as_str()], None).await?;
                let deadline = Instant::now() + Duration::from_secs(15);
                loop {
                    let opts = etcd_client::GetOptions::new().with_prefix().with_count_only().with_serializable();
                    let got = m.get(prefix.clone(), Some(opts)).await?.count() as u64;
                    if got == acked {
                        break;
                    }
                    if Instant::now() > deadline {
                        return Err(err(format!("etcd: member {e} holds {got} keys of {prefix}, acknowledged {acked}")));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            format!("linearizable count {acked} = acknowledged; every member {acked} keys")
        }
    };

    // ---- where the CPU went ---------------------------------------------------------
    let cpu_secs = |t: u64| t as f64 / ticks_per_sec();
    let node_cpu: Vec<f64> = s1.nodes.iter().zip(&s0.nodes).map(|(x, y)| cpu_secs(x - y)).collect();
    let node_wr: Vec<f64> = s1.writes.iter().zip(&s0.writes).map(|(x, y)| (x - y) as f64).collect();
    let mut line = json!({
        "bench": "service",
        "impl": a.imp.name(),
        "clients": n,
        "record": a.record,
        "ops": ops,
        "secs": (secs * 1e3).round() / 1e3,
        "ops_per_sec": (ops as f64 / secs).round(),
        "p50_us": (pct(0.50) * 10.0).round() / 10.0,
        "p99_us": (pct(0.99) * 10.0).round() / 10.0,
        "rep": a.rep,
        "stat": "rep",
        "warmup_secs": a.warmup,
        "acked_total": acked,
        "check": check,
        "conns": "one per client, to the leader",
        "others_cpu_pct": (others_pct(&s0, &s1) * 10.0).round() / 10.0,
        "steal_pct": ((s1.steal - s0.steal) as f64 / ticks_per_sec() / secs * 1000.0).round() / 10.0,
        "client_cpu_pct": (cpu_secs(s1.me - s0.me) / secs * 1000.0).round() / 10.0,
        "client_cpu_us_per_op": (cpu_secs(s1.me - s0.me) / ops as f64 * 1e7).round() / 10.0,
    });
    if !a.pids.is_empty() {
        let o = line.as_object_mut().unwrap();
        let fol: Vec<usize> = (0..a.pids.len()).filter(|&i| i != leader).collect();
        let fol_cpu = fol.iter().map(|&i| node_cpu[i]).sum::<f64>() / fol.len().max(1) as f64;
        let fol_wr = fol.iter().map(|&i| node_wr[i]).sum::<f64>() / fol.len().max(1) as f64;
        o.insert("leader".into(), json!(a.endpoints[leader]));
        o.insert("leader_cpu_pct".into(), json!((node_cpu[leader] / secs * 1000.0).round() / 10.0));
        o.insert("follower_cpu_pct".into(), json!((fol_cpu / secs * 1000.0).round() / 10.0));
        o.insert("leader_cpu_us_per_op".into(), json!((node_cpu[leader] / ops as f64 * 1e7).round() / 10.0));
        o.insert("follower_cpu_us_per_op".into(), json!((fol_cpu / ops as f64 * 1e7).round() / 10.0));
        o.insert("leader_write_bytes_per_op".into(), json!((node_wr[leader] / ops as f64).round()));
        o.insert("follower_write_bytes_per_op".into(), json!((fol_wr / ops as f64).round()));
    }
    if let (Some(x), Some(y)) = (st0, st1) {
        // The leader's own view over the last second of each end of the timed phase.
        let o = line.as_object_mut().unwrap();
        let apf = |s: &dynadax_service::Status| {
            if s.flushes_per_sec > 0.0 {
                s.appends_per_sec / s.flushes_per_sec
            } else {
                0.0
            }
        };
        o.insert("leader_flushes_per_sec".into(), json!(((x.flushes_per_sec + y.flushes_per_sec) / 2.0).round()));
        o.insert("leader_appends_per_flush".into(), json!(((apf(&x) + apf(&y)) / 2.0 * 10.0).round() / 10.0));
        o.insert(
            "leader_flush_mean_us".into(),
            json!(y.flush_mean_us.or(x.flush_mean_us).map(|v| (v * 10.0).round() / 10.0)),
        );
    }
    if !a.commit.is_empty() {
        line.as_object_mut().unwrap().insert("commit".into(), json!(a.commit));
    }
    Ok(line)
}

#[tokio::main]
async fn main() {
    let a = parse_args();
    let mut failed = false;
    for &n in &a.clients {
        let mut attempt = 0;
        loop {
            let quiet = wait_quiet(&a.pids, a.quiet_wait).await;
            match run_once(&a, n, attempt).await {
                Ok(mut line) => {
                    line.as_object_mut().unwrap().insert("others_before_pct".into(), json!((quiet * 10.0).round() / 10.0));
                    let disturbed = line["others_cpu_pct"].as_f64().unwrap_or(0.0) > a.max_others;
                    if disturbed && attempt < a.retries {
                        line["stat"] = json!("disturbed");
                        println!("{line}");
                        attempt += 1;
                        continue;
                    }
                    println!("{line}");
                    eprintln!(
                        "{} {} clients rep {}: {} appends/s, p50 {} us, p99 {} us (others {}% of a core)",
                        a.imp.name(),
                        n,
                        a.rep,
                        line["ops_per_sec"],
                        line["p50_us"],
                        line["p99_us"],
                        line["others_cpu_pct"]
                    );
                    break;
                }
                Err(e) => {
                    let line = json!({
                        "bench": "service", "impl": a.imp.name(), "clients": n, "record": a.record,
                        "rep": a.rep, "stat": "error", "error": e.to_string(), "commit": a.commit,
                    });
                    println!("{line}");
                    eprintln!("ERROR: {} {} clients rep {}: {e}", a.imp.name(), n, a.rep);
                    failed = true;
                    break;
                }
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
