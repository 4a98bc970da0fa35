//! The replicated log service as a person runs it: three `dynadax serve` processes
//! on loopback, `dynadax cluster` and `dynadax client` commands, kill -9 and
//! restarts. Every test is bounded in time; child processes are killed on drop.

use dynadax_service::{Client, Request};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dynadax");

/// A command for the CLI whose process is killed if the test's thread dies
/// without dropping it (a test killed by a signal leaves no node running).
fn dynadax() -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(BIN);
    // SAFETY: prctl is async-signal-safe; it only sets this child's death signal.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

/// A `dynadax serve` process, killed (SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Cluster {
    root: tempfile::TempDir,
    addrs: BTreeMap<u64, String>,
    nodes: BTreeMap<u64, Proc>,
    /// Between nodes, by (from, to), if the test put them there.
    proxies: BTreeMap<(u64, u64), Proxy>,
}

/// A port nobody listens on now (bound, then released: the node binds it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Cluster {
    /// Three nodes with ids 1..=3 on free loopback ports, not started.
    fn new() -> Cluster {
        let root = tempfile::Builder::new().prefix("dynadax-service-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let addrs = (1..=3).map(|id| (id, format!("127.0.0.1:{}", free_port()))).collect();
        Cluster { root, addrs, nodes: BTreeMap::new(), proxies: BTreeMap::new() }
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.path().join(format!("n{id}"))
    }

    fn addr(&self, id: u64) -> &str {
        &self.addrs[&id]
    }

    fn all(&self) -> String {
        self.addrs.values().cloned().collect::<Vec<_>>().join(",")
    }

    /// Starts node `id`, with `--peers` (the others) if `peers`; its stderr goes to
    /// `n{id}.log` (appended to across restarts).
    fn start(&mut self, id: u64, peers: bool) {
        self.start_with(id, peers, &[]);
    }

    fn start_with(&mut self, id: u64, peers: bool, extra: &[String]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join(format!("n{id}.log")))
            .unwrap();
        let mut cmd = dynadax();
        cmd.args(["serve", "--id", &id.to_string(), "--listen", self.addr(id), "--snapshot-every", "5000"])
            .arg("--dir")
            .arg(self.dir(id))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if peers {
            // Itself among them, as an operator may write it (one list for all).
            let p: Vec<String> = self.addrs.iter().map(|(i, a)| format!("{i}={a}")).collect();
            cmd.arg("--peers").arg(p.join(","));
        }
        cmd.args(self.routes(id)).args(extra);
        self.nodes.insert(id, Proc(cmd.spawn().unwrap()));
    }

    fn kill9(&mut self, id: u64) {
        drop(self.nodes.remove(&id).expect("node running"));
    }

    fn node_log(&self, id: u64) -> String {
        std::fs::read_to_string(self.root.path().join(format!("n{id}.log"))).unwrap_or_default()
    }

    fn logs(&self) -> String {
        self.addrs.keys().map(|id| format!("--- node {id}:\n{}", self.node_log(*id))).collect()
    }

    /// `cluster status --json` of node `id`, or None if it does not answer.
    fn status(&self, id: u64) -> Option<Value> {
        let out = run(&["cluster", "status", "--json", "--node", self.addr(id)], None, Duration::from_secs(10));
        out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// The leader every running node agrees on, waiting up to `timeout`.
    fn leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let seen: Vec<Option<u64>> =
                self.nodes.keys().map(|id| self.status(*id).and_then(|s| s["leader"]["id"].as_u64())).collect();
            if let Some(Some(l)) = seen.first() {
                if seen.iter().all(|s| s == &Some(*l)) && self.nodes.contains_key(l) {
                    return *l;
                }
            }
            assert!(Instant::now() < deadline, "no leader agreed on in {timeout:?}: {seen:?}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Records read from node `id` (`client read`, linearizable unless `stale`).
    fn read(&self, id: u64, stale: bool) -> Vec<(u64, String)> {
        let mut args = vec!["client", "read", "--cluster", self.addr(id)];
        if stale {
            args.push("--stale");
        }
        let out = run(&args, None, Duration::from_secs(60));
        assert!(out.status.success(), "read from node {id}: {}\n{}", stderr(&out), self.logs());
        parse_records(&out.stdout)
    }

    /// Waits until node `id`'s own (stale) log equals `want`.
    fn caught_up(&self, id: u64, want: &[(u64, String)], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.read(id, true);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline && got.len() <= want.len() && want.starts_with(&got),
                "node {id} holds {} records, not a prefix of the {} expected (or not caught up in {timeout:?})\n{}",
                got.len(),
                want.len(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the CLI with `stdin`, killing it after `timeout` (then the test fails).
fn run(args: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let mut child = dynadax()
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let mut w = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = w.write_all(&input);
        });
    }
    wait_output(child, timeout, &args.join(" "))
}

/// A CLI process whose output is read as it comes (so a full pipe never stalls it).
struct Running {
    child: Child,
    out: Option<std::thread::JoinHandle<Vec<u8>>>,
    err: Option<std::thread::JoinHandle<Vec<u8>>>,
}

fn collect(mut child: Child) -> Running {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    Running { child, out: Some(out), err: Some(err) }
}

fn wait_output(child: Child, timeout: Duration, what: &str) -> Output {
    collect(child).wait(timeout, what)
}

impl Running {
    /// Waits for the process, killing it after `timeout` (then the test fails).
    fn wait(mut self, timeout: Duration, what: &str) -> Output {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("`dynadax {what}` did not finish in {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| h.map(|h| h.join().unwrap()).unwrap_or_default();
        Output { status, stdout: join(self.out.take()), stderr: join(self.err.take()) }
    }
}

impl Running {
    /// Kills the process (a `tail` never ends by itself) and returns what it printed.
    fn kill(mut self) -> Output {
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| h.map(|h| h.join().unwrap()).unwrap_or_default();
        Output { status, stdout: join(self.out.take()), stderr: join(self.err.take()) }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_records(out: &[u8]) -> Vec<(u64, String)> {
    String::from_utf8(out.to_vec())
        .unwrap()
        .lines()
        .map(|l| {
            let (i, r) = l.split_once('\t').unwrap_or_else(|| panic!("not INDEX<TAB>record: {l:?}"));
            (i.parse().unwrap(), r.to_string())
        })
        .collect()
}

fn parse_indexes(out: &[u8]) -> Vec<u64> {
    String::from_utf8(out.to_vec()).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect()
}

/// The checker: `log` is consecutive from 0, holds exactly the acknowledged
/// (index, record) pairs, each record once, and nothing nobody sent.
fn check(log: &[(u64, String)], acked: &BTreeMap<u64, String>, sent: &BTreeSet<String>) {
    for (k, (i, _)) in log.iter().enumerate() {
        assert_eq!(*i, k as u64, "the log has a hole or is out of order at position {k}");
    }
    let mut seen = BTreeSet::new();
    for (_, r) in log {
        assert!(seen.insert(r.clone()), "record {r:?} is in the log twice");
        assert!(sent.contains(r), "record {r:?} is in the log but nobody sent it");
    }
    for (i, r) in acked {
        assert_eq!(log.get(*i as usize).map(|(_, r)| r), Some(r), "acknowledged record {r:?} is not at its index {i}");
    }
}

/// Three nodes set up with `cluster init`; three clients append at once, each
/// through a different node; every node holds every acknowledged record exactly
/// once, at its acknowledged index, in one order, read linearizably and stale.
#[test]
fn concurrent_appends_through_every_node_land_once_in_one_order_everywhere() {
    let mut c = Cluster::new();
    for id in 1..=3 {
        c.start(id, false);
    }
    // A node not yet in a cluster says so.
    for id in 1..=3 {
        let deadline = Instant::now() + Duration::from_secs(10);
        let st = loop {
            if let Some(s) = c.status(id) {
                break s;
            }
            assert!(Instant::now() < deadline, "node {id} does not answer\n{}", c.logs());
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(st["initialized"], Value::Bool(false), "{st}");
    }
    let members: Vec<String> = c.addrs.iter().map(|(i, a)| format!("{i}={a}")).collect();
    let out = run(&["cluster", "init", "--node", c.addr(1), &members.join(",")], None, Duration::from_secs(20));
    assert!(out.status.success(), "init: {}", stderr(&out));
    let leader = c.leader(Duration::from_secs(20));
    let st = c.status(leader).unwrap();
    assert_eq!(st["voters"].as_array().unwrap().len(), 3, "{st}");
    assert_eq!(st["state"], "Leader");

    let per_client = 3000;
    let mut children = Vec::new();
    let mut sent = BTreeSet::new();
    for k in 1..=3u64 {
        let input: String = (0..per_client).map(|i| format!("c{k}-{i}\n")).collect();
        sent.extend((0..per_client).map(|i| format!("c{k}-{i}")));
        let mut child = dynadax()
            .args(["client", "append", "--cluster", c.addr(k)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut w = child.stdin.take().unwrap();
        std::thread::spawn(move || w.write_all(input.as_bytes()));
        children.push((k, collect(child)));
    }
    let mut acked = BTreeMap::new();
    for (k, child) in children {
        let out = child.wait(Duration::from_secs(120), "client append");
        assert!(out.status.success(), "client {k}: {}", stderr(&out));
        let idx = parse_indexes(&out.stdout);
        assert_eq!(idx.len(), per_client, "client {k} printed {} indexes", idx.len());
        for (i, index) in idx.into_iter().enumerate() {
            let prev = acked.insert(index, format!("c{k}-{i}"));
            assert!(prev.is_none(), "index {index} acknowledged twice ({prev:?} and c{k}-{i})");
        }
    }
    assert_eq!(acked.len(), 3 * per_client);
    // Linearizable reads through every node see all of it, the same.
    let log = c.read(1, false);
    check(&log, &acked, &sent);
    assert_eq!(log.len(), 3 * per_client);
    for id in 2..=3 {
        assert_eq!(c.read(id, false), log, "linearizable read through node {id}");
    }
    // Each node's own log catches up to the same.
    for id in 1..=3 {
        c.caught_up(id, &log, Duration::from_secs(30));
    }
    // A range read, and the status's counts.
    let out =
        run(&["client", "read", "--cluster", &c.all(), "--from", "10", "--to", "13"], None, Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(parse_records(&out.stdout), log[10..13].to_vec());
    let st = c.status(leader).unwrap();
    assert_eq!(st["records"].as_u64(), Some(3 * per_client as u64), "{st}");
    // Leadership moves where it is asked to, and the log stays the same.
    let to = if leader == 3 { 2 } else { 3 };
    let out = run(
        &["cluster", "transfer-leader", "--node", c.addr(to), "--to", &to.to_string()],
        None,
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "transfer-leader: {}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.leader(Duration::from_secs(20)) != to {
        assert!(Instant::now() < deadline, "leadership did not move to node {to}\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.read(1, false), log);
}

/// A TCP proxy the test controls, between two nodes: it forwards until `cut`, which
/// resets the connections open and holds new ones silent (a partition: a peer's
/// RPCs go unanswered until their timeouts), until `heal`.
struct Proxy {
    addr: String,
    cut: Arc<AtomicBool>,
    /// Forwarded connections (both ends) and, while cut, the ones held.
    conns: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start(to: String) -> Proxy {
        use std::net::{Shutdown, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (cut2, conns2) = (cut.clone(), conns.clone());
        // Ends with the test process (a blocked accept holds nothing but a port).
        std::thread::spawn(move || {
            for down in listener.incoming() {
                let Ok(down) = down else { continue };
                if cut2.load(Ordering::SeqCst) {
                    conns2.lock().unwrap().push(down); // held: nothing goes through
                    continue;
                }
                let Ok(up) = TcpStream::connect(&to) else { continue }; // the node is down: refused
                let pump = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                };
                let mut held = conns2.lock().unwrap();
                held.push(down.try_clone().unwrap());
                held.push(up.try_clone().unwrap());
                drop(held);
                pump(down.try_clone().unwrap(), up.try_clone().unwrap());
                pump(up, down);
            }
        });
        Proxy { addr, cut, conns }
    }

    fn set(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Cluster {
    /// Puts a proxy the test controls between every two nodes (node `a` reaches
    /// node `b` through `proxies[(a, b)]`, given with `--route`); call before
    /// starting them.
    fn with_proxies(mut self) -> Cluster {
        for a in 1..=3 {
            for b in (1..=3).filter(|b| *b != a) {
                self.proxies.insert((a, b), Proxy::start(self.addr(b).to_string()));
            }
        }
        self
    }

    /// `--route` for node `id`: its proxies, if any.
    fn routes(&self, id: u64) -> Vec<String> {
        let r: Vec<String> =
            self.proxies.iter().filter(|((a, _), _)| *a == id).map(|((_, b), p)| format!("{b}={}", p.addr)).collect();
        if r.is_empty() {
            vec![]
        } else {
            vec!["--route".into(), r.join(",")]
        }
    }

    /// Cuts (or heals) every link between node `id` and the others.
    fn isolate(&self, id: u64, cut: bool) {
        for ((a, b), p) in &self.proxies {
            if *a == id || *b == id {
                p.set(cut);
            }
        }
    }

    /// The leader nodes `ids` agree on, waiting up to `timeout`.
    fn leader_of(&self, ids: &[u64], timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let seen: Vec<Option<u64>> =
                ids.iter().map(|id| self.status(*id).and_then(|s| s["leader"]["id"].as_u64())).collect();
            if let Some(Some(l)) = seen.first() {
                if seen.iter().all(|s| s == &Some(*l)) && ids.contains(l) {
                    return *l;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader agreed on by {ids:?} in {timeout:?}: {seen:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A load on the cluster: one `client append` process fed lines `r0`, `r1`, ... as
/// fast as a small pause allows, and a reader reading the whole log linearizably
/// again and again; both until [`Load::check`], which runs the checker.
struct Load {
    stop: Arc<AtomicBool>,
    feeder: std::thread::JoinHandle<u64>,
    client: Running,
    /// The reads that returned, and how many failed.
    reader: std::thread::JoinHandle<(Vec<Records>, usize)>,
}

type Records = Vec<(u64, String)>;

impl Load {
    fn start(c: &Cluster) -> Load {
        let mut client = dynadax()
            .args(["client", "append", "--timeout", "90", "--cluster", &c.all()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut w = client.stdin.take().unwrap();
        let client = collect(client);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let feeder = std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let chunk: String = (n..n + 50).map(|i| format!("r{i}\n")).collect();
                if w.write_all(chunk.as_bytes()).is_err() {
                    break;
                }
                n += 50;
                std::thread::sleep(Duration::from_millis(5));
            }
            n // `w` drops here: end of input
        });
        let (stop3, all) = (stop.clone(), c.all());
        let reader = std::thread::spawn(move || {
            let (mut reads, mut failed) = (Vec::new(), 0);
            while !stop3.load(Ordering::Relaxed) {
                let out = run(&["client", "read", "--cluster", &all], None, Duration::from_secs(120));
                if out.status.success() {
                    reads.push(parse_records(&out.stdout));
                } else {
                    failed += 1; // no leader for a while: a read may fail, never lie
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            (reads, failed)
        });
        Load { stop, feeder, client, reader }
    }

    /// Stops the load and checks, after `fault`: every acknowledged append is in
    /// every node's log exactly once, at its index, in one order; no log holds a
    /// record nobody sent; every read that returned was a prefix of the final log,
    /// each at least as long as the one before. Prints the counts.
    fn check(self, c: &Cluster, fault: &str) {
        // Under load, the leader's status and metrics show it.
        let leader = c.leader(Duration::from_secs(30));
        let deadline = Instant::now() + Duration::from_secs(10);
        let st = loop {
            let st = c.status(leader).unwrap_or_default();
            // A window of both appends and flushes (one of only applies can follow a
            // leader change, as a node applies what it had not yet).
            let rate = |k: &str| st[k].as_f64().unwrap_or(0.0);
            if (rate("appends_per_sec") > 0.0 && rate("flushes_per_sec") > 0.0) || Instant::now() > deadline {
                break st;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(st["appends_per_sec"].as_f64().unwrap() > 0.0, "no appends/s under load: {st}");
        assert!(st["flushes_per_sec"].as_f64().unwrap() > 0.0, "{st}");
        assert!(st["flush_mean_us"].as_f64().unwrap() > 0.0, "{st}");
        let m = metrics(c.addr(leader));
        assert!(m.contains("dynadax_service_is_leader 1"), "{m}");
        assert!(m.contains("dynadax_service_raft_flush_seconds_count "), "{m}");
        self.stop.store(true, Ordering::Relaxed);
        let lines = self.feeder.join().unwrap();
        let out = self.client.wait(Duration::from_secs(150), "client append");
        assert!(out.status.success(), "client append: {}\n{}", stderr(&out), c.logs());
        let (reads, failed) = self.reader.join().unwrap();
        let idx = parse_indexes(&out.stdout);
        assert_eq!(idx.len() as u64, lines, "every line acknowledged");
        assert!(lines > 1000, "the load was too small to mean anything: {lines} lines");
        let sent: BTreeSet<String> = (0..lines).map(|i| format!("r{i}")).collect();
        let acked: BTreeMap<u64, String> = idx.iter().enumerate().map(|(i, x)| (*x, format!("r{i}"))).collect();
        assert_eq!(acked.len() as u64, lines, "an index was acknowledged twice");

        let leader = c.leader(Duration::from_secs(30));
        let log = c.read(leader, false);
        for id in c.nodes.keys() {
            c.caught_up(*id, &log, Duration::from_secs(60));
        }
        // Counted first, so the line is printed whatever the outcome.
        let mut seen = BTreeSet::new();
        let duplicated = log.iter().filter(|(_, r)| !seen.insert(r.clone())).count();
        let foreign = log.iter().filter(|(_, r)| !sent.contains(r)).count();
        let lost = acked.iter().filter(|(i, r)| log.get(**i as usize).map(|(_, x)| x) != Some(r)).count();
        // Out of order: a record at the wrong index, or after one the client sent later
        // (`client append` keeps input order through every retry).
        let number = |r: &str| r.strip_prefix('r').and_then(|n| n.parse::<u64>().ok());
        let reordered = log.iter().enumerate().filter(|(k, (i, _))| *i != *k as u64).count()
            + log
                .windows(2)
                .filter(|w| matches!((number(&w[0].1), number(&w[1].1)), (Some(a), Some(b)) if b < a))
                .count();
        let not_prefix = reads.iter().filter(|r| !log.starts_with(r)).count();
        let went_back = reads.windows(2).filter(|w| w[1].len() < w[0].len()).count();
        eprintln!(
            "cluster faults ({fault}): {} appends acknowledged, {lost} lost, {duplicated} duplicated, {reordered} \
             reordered, {foreign} nobody sent; {} reads during the faults ({failed} failed), {not_prefix} not a \
             prefix of the final log, {went_back} went back",
            acked.len(),
            reads.len()
        );
        assert_eq!((lost, duplicated, reordered, foreign), (0, 0, 0, 0), "{}", c.logs());
        assert_eq!((not_prefix, went_back), (0, 0), "a read was not a prefix of the final log, or went back");
        assert!(!reads.is_empty(), "no read returned during the faults");
        check(&log, &acked, &sent);
        assert_eq!(log.len() as u64, lines, "the log holds exactly the acknowledged records");
        for id in c.nodes.keys() {
            assert_eq!(c.read(*id, false), log, "linearizable read through node {id}");
        }
        let st = c.status(leader).unwrap();
        for f in st["replication"].as_array().unwrap() {
            assert_eq!(f["lag"].as_u64(), Some(0), "follower behind: {st}");
        }
    }
}

/// `GET /metrics` of the node at `addr` (plain HTTP/1.1 by hand: the test needs
/// no HTTP client for one request).
fn metrics(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("application/openmetrics-text"), "{out}");
    out
}

/// Fault (a), under a load of appends and reads: kill -9 a follower, restart it,
/// then kill -9 the leader, restart it. The client goes on through the leader
/// change, the restarted nodes catch up, and nothing was applied twice although
/// the client retried.
#[test]
fn cluster_faults_kill9_of_a_follower_then_the_leader() {
    let mut c = Cluster::new();
    for id in 1..=3 {
        c.start(id, true); // the cluster forms itself from --peers
    }
    let leader = c.leader(Duration::from_secs(30));
    let load = Load::start(&c);
    std::thread::sleep(Duration::from_millis(1500));
    let follower = *c.addrs.keys().find(|id| **id != leader).unwrap();
    c.kill9(follower);
    std::thread::sleep(Duration::from_millis(1500));
    c.start(follower, true);
    std::thread::sleep(Duration::from_millis(1500));
    c.kill9(leader);
    // The other two elect a new leader (a new term) and the client follows it.
    let elected = c.leader(Duration::from_secs(30));
    assert_ne!(elected, leader);
    c.start(leader, true);
    std::thread::sleep(Duration::from_millis(1500));
    load.check(&c, "kill -9 of a follower, then of the leader");
    let st = c.status(c.leader(Duration::from_secs(30))).unwrap();
    assert!(st["term"].as_u64().unwrap() >= 2, "no new term: {st}");
}

/// Fault (b): the leader is cut off from the other two by proxies the test
/// controls (its clients still reach it), then healed; then a follower. The two
/// others elect a leader and go on; the old leader's unacknowledged appends are
/// never acknowledged, and it takes the new log when it rejoins.
#[test]
fn cluster_faults_isolating_the_leader_then_a_follower() {
    let mut c = Cluster::new().with_proxies();
    for id in 1..=3 {
        c.start(id, true); // with --route through the proxies
    }
    let leader = c.leader(Duration::from_secs(30));
    let load = Load::start(&c);
    std::thread::sleep(Duration::from_millis(1500));
    c.isolate(leader, true);
    let others: Vec<u64> = c.addrs.keys().copied().filter(|id| *id != leader).collect();
    let elected = c.leader_of(&others, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1500)); // appends go on through the new leader
    c.isolate(leader, false);
    let healed = c.leader(Duration::from_secs(30));
    // A follower other than the old leader, if it is not leading again.
    let follower = *c.addrs.keys().find(|id| **id != healed && **id != leader).unwrap_or(&others[0]);
    std::thread::sleep(Duration::from_millis(1000));
    c.isolate(follower, true);
    std::thread::sleep(Duration::from_millis(2000));
    c.isolate(follower, false);
    std::thread::sleep(Duration::from_millis(1000));
    eprintln!("leader {leader} isolated, {elected} elected; follower {follower} isolated");
    load.check(&c, "the leader isolated and healed, then a follower");
}

/// Fault (c): every node killed (-9) at once under load, and restarted together.
/// Whatever was acknowledged before is there after, and the client's retries of
/// appends in flight during the crash are applied once (the deduplication table
/// is rebuilt from the applied log).
#[test]
fn cluster_faults_restarting_every_node_at_once() {
    let mut c = Cluster::new();
    for id in 1..=3 {
        c.start(id, true);
    }
    c.leader(Duration::from_secs(30));
    let load = Load::start(&c);
    std::thread::sleep(Duration::from_millis(2000));
    for id in 1..=3 {
        c.kill9(id);
    }
    std::thread::sleep(Duration::from_millis(300));
    for id in 1..=3 {
        c.start(id, true);
    }
    c.leader(Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(2000));
    load.check(&c, "every node killed -9 at once and restarted");
}

/// The same cluster on in-memory Raft logs (what the benchmarks compare durability
/// against) serves appends and reads, and says it is not durable; a node on memory
/// refuses a directory whose applied log an earlier run left, since its Raft log
/// cannot continue it.
#[test]
fn a_cluster_on_in_memory_raft_logs_serves_and_refuses_an_old_directory() {
    let mut c = Cluster::new();
    let memory = ["--raft-store".to_string(), "memory".to_string()];
    for id in 1..=3 {
        c.start_with(id, true, &memory);
    }
    c.leader(Duration::from_secs(30));
    let input: String = (0..500).map(|i| format!("m{i}\n")).collect();
    let out = run(&["client", "append", "--cluster", &c.all()], Some(input.as_bytes()), Duration::from_secs(60));
    assert!(out.status.success(), "{}\n{}", stderr(&out), c.logs());
    assert_eq!(parse_indexes(&out.stdout), (0..500).collect::<Vec<u64>>());
    let log = c.read(2, false);
    assert_eq!(log.len(), 500);
    assert_eq!(log[499], (499, "m499".to_string()));
    assert!(!c.dir(1).join("raft").exists(), "a memory node made a Raft log directory");
    assert!(c.node_log(1).contains("Raft log IN MEMORY: nothing is durable"), "{}", c.node_log(1));
    c.kill9(1);
    let out = run(
        &[
            "serve",
            "--id",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--raft-store",
            "memory",
            "--dir",
            c.dir(1).to_str().unwrap(),
        ],
        None,
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("an in-memory Raft log cannot continue"), "{}", stderr(&out));
}

/// A node added after its Raft log was purged catches up from a snapshot, which is
/// streamed out of the leader's applied log (several MiB, in frames) into a new
/// applied log on the learner: neither keeps a copy of the records in its snapshot
/// file, and the learner's log is the leader's, byte for byte as read.
#[test]
fn a_new_node_catches_up_from_a_streamed_snapshot_without_a_copy_of_the_log() {
    let mut c = Cluster::new();
    for id in 1..=3 {
        c.start(id, false);
    }
    let two = format!("1={},2={}", c.addr(1), c.addr(2));
    let out = run(&["cluster", "init", "--node", c.addr(1), &two], None, Duration::from_secs(20));
    assert!(out.status.success(), "init: {}", stderr(&out));
    let pad = "p".repeat(200);
    let n = 40_000;
    let input: String = (0..n).map(|i| format!("s{i}-{pad}\n")).collect();
    let out = run(&["client", "append", "--cluster", &c.all()], Some(input.as_bytes()), Duration::from_secs(120));
    assert!(out.status.success(), "{}\n{}", stderr(&out), c.logs());
    let log = c.read(1, false);
    assert_eq!(log.len(), n);
    // Snapshots every 5,000 entries: the leader's Raft log is purged far past 0.
    let leader = c.leader_of(&[1, 2], Duration::from_secs(20));
    let st = c.status(leader).unwrap();
    assert!(st["purged"].as_u64().unwrap_or(0) > 20_000, "{st}");
    let out = run(
        &["cluster", "add-learner", "--node", c.addr(1), "--id", "3", "--addr", c.addr(3)],
        None,
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "add-learner: {}\n{}", stderr(&out), c.logs());
    c.caught_up(3, &log, Duration::from_secs(60));
    let st3 = c.status(3).unwrap();
    assert!(st3["snapshot"].as_u64().unwrap_or(0) > 20_000, "node 3 did not install a snapshot: {st3}");
    for id in [leader, 3] {
        let file = std::fs::metadata(c.dir(id).join("snapshot")).unwrap().len();
        // The applied state only: the deduplication table (the client's last answers).
        assert!(file < 1 << 20, "node {id}'s snapshot file is {file} bytes: a copy of the ~9 MB log?");
    }
}

/// A retried (client, seq) is applied once, also when the retry goes through
/// another node; errors name what is wrong: a record too large, an unreachable
/// cluster, a node that is not a member.
#[test]
fn a_retried_append_is_applied_once_and_errors_say_what_is_wrong() {
    let mut c = Cluster::new();
    // Node 3 is started alone and never added: not a member.
    for id in 1..=2 {
        c.start(id, false);
    }
    c.start(3, false);
    let two: BTreeMap<u64, String> = c.addrs.iter().filter(|(i, _)| **i != 3).map(|(i, a)| (*i, a.clone())).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let admin = Client::connect([c.addr(1).to_string()]).unwrap().with_deadline(Duration::from_secs(20));
        // Retried until node 1 listens.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match admin.init(two.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    assert!(Instant::now() < deadline, "init: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let client = Client::connect(two.values().cloned()).unwrap().with_id(0xfeed);
        let first = client.append(b"before").await.unwrap();
        let req = Request { client: 0xfeed_0001, seq: 7, acked: 0, bytes: b"once".to_vec() };
        let a = client.send_requests(vec![req.clone()]).await.unwrap();
        assert!(!a[0].duplicate);
        let index = a[0].index.unwrap();
        assert!(index > first);
        // The same request again, through each node (a follower forwards the client
        // to the leader): answered with the same index, not appended.
        for addr in two.values() {
            let other = Client::connect([addr.clone()]).unwrap();
            let b = other.send_requests(vec![req.clone()]).await.unwrap();
            assert_eq!((b[0].index, b[0].duplicate), (Some(index), true), "retry through {addr}");
        }
        let after = client.append(b"after").await.unwrap();
        assert_eq!(after, index + 1, "the retries took no index");
        let all = client.read(0..u64::MAX, false).await.unwrap();
        let onces = all.iter().filter(|(_, r)| r == b"once").count();
        assert_eq!(onces, 1, "{all:?}");
        assert_eq!(all.len() as u64, after + 1);

        // A node outside the cluster refuses, saying so.
        let outsider = Client::connect([c.addr(3).to_string()]).unwrap().with_deadline(Duration::from_secs(2));
        let e = outsider.append(b"x").await.unwrap_err().to_string();
        assert!(e.contains("not a member"), "{e}");
    });

    // `client tail` follows new commits.
    let tail = collect(
        dynadax()
            .args(["client", "tail", "--cluster", c.addr(2), "--from", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let input: String = (0..100).map(|i| format!("t{i}\n")).collect();
    let out = run(&["client", "append", "--cluster", c.addr(1)], Some(input.as_bytes()), Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));
    let first_t = parse_indexes(&out.stdout)[0];
    let log = c.read(1, false);
    c.caught_up(2, &log, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(2000));
    let printed = parse_records(&tail.kill().stdout);
    assert_eq!(printed, log[1..].to_vec(), "tail printed what the log holds from 1");
    assert_eq!(printed.last().map(|r| r.0), Some(first_t + 99));

    // Node 3 joins: as a learner (it catches up), then a voter; then it is removed.
    let out = run(
        &["cluster", "add-learner", "--node", c.addr(2), "--id", "3", "--addr", c.addr(3)],
        None,
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "add-learner: {}", stderr(&out));
    c.caught_up(3, &log, Duration::from_secs(20));
    let out = run(&["cluster", "promote", "--node", c.addr(1), "3"], None, Duration::from_secs(60));
    assert!(out.status.success(), "promote: {}", stderr(&out));
    let st = c.status(3).unwrap();
    assert_eq!(st["voters"].as_array().unwrap().len(), 3, "{st}");
    assert_eq!(c.read(3, false), log, "linearizable read through the new voter");
    let out = run(&["cluster", "remove", "--node", c.addr(1), "3"], None, Duration::from_secs(60));
    assert!(out.status.success(), "remove: {}", stderr(&out));
    c.kill9(3); // a removed node keeps its last view; the leader is the others' to say
    let leader = c.leader(Duration::from_secs(20));
    let st = c.status(leader).unwrap();
    let voters: Vec<u64> = st["voters"].as_array().unwrap().iter().map(|v| v["id"].as_u64().unwrap()).collect();
    assert_eq!(voters, vec![1, 2], "{st}");

    // Through the command line: a line over 1 MiB is refused and named.
    let big = format!("small\n{}\n", "x".repeat((1 << 20) + 1));
    let out = run(&["client", "append", "--cluster", c.addr(1)], Some(big.as_bytes()), Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 2 is 1048577 bytes: the largest record is 1048576 bytes"), "{}", stderr(&out));
    // An unreachable cluster: the error names every address tried.
    let dead = [format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port())];
    let out = run(
        &["client", "append", "--timeout", "1", "--cluster", &dead.join(",")],
        Some(b"x\n"),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("cluster unreachable") && e.contains(&dead[0]) && e.contains(&dead[1]), "{e}");
    let out = run(&["cluster", "status", "--node", &dead[0]], None, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&dead[0]), "{}", stderr(&out));
    // Usage errors exit 2.
    let out = run(&["cluster", "init", "--node", c.addr(1), "1=a,x=b"], None, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// A node whose applied log was damaged under its checkpoint refuses to start
/// (exit 1, naming the log), rather than serve a log with records missing.
#[test]
fn a_node_whose_applied_log_is_damaged_refuses_to_start() {
    let mut c = Cluster::new();
    c.addrs.retain(|id, _| *id == 1);
    c.start(1, true); // --peers names only itself: a cluster of one
    let input: String = (0..500).map(|i| format!("rec-{i:04}\n")).collect();
    let out = run(&["client", "append", "--cluster", c.addr(1)], Some(input.as_bytes()), Duration::from_secs(60));
    assert!(out.status.success(), "{}\n{}", stderr(&out), c.logs());
    assert_eq!(parse_indexes(&out.stdout).len(), 500);
    // A clean stop writes the checkpoint covering all 500 records.
    let pid = c.nodes[&1].0.id();
    // SAFETY: signalling a child this test started and still holds.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.nodes.get_mut(&1).unwrap().0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "node 1 did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    c.nodes.remove(&1);
    let seg = std::fs::read_dir(c.dir(1).join("applied"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "dlog"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.windows(8).position(|w| w == b"rec-0100").expect("record 100 in the segment");
    bytes[at + 5] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    let out = run(
        &["serve", "--id", "1", "--listen", c.addr(1), "--dir", c.dir(1).to_str().unwrap()],
        None,
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("applied") && e.contains("records were lost"), "{e}");
}

/// Three `serve` processes over mutual TLS (certificates from rcgen): the client
/// with the cluster's certificate appends and reads, status says TLS is on, a
/// client without TLS or with a certificate of another CA gets nowhere.
#[test]
fn a_tls_cluster_of_serve_processes_talks_only_to_its_own() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
    let mut c = Cluster::new();
    let pki = |name: &str| -> Vec<String> {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
        let path = |f: &str| c.root.path().join(format!("{name}-{f}")).to_str().unwrap().to_string();
        std::fs::write(path("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(path("cert.pem"), cert.pem()).unwrap();
        std::fs::write(path("key.pem"), key.serialize_pem()).unwrap();
        ["--tls-ca", &path("ca.pem"), "--tls-cert", &path("cert.pem"), "--tls-key", &path("key.pem")]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let good = pki("cluster");
    let rogue = pki("rogue");
    for id in 1..=3 {
        c.start_with(id, true, &good);
    }
    let cluster = c.all();
    let with = |tls: &[String], args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(tls.iter().cloned());
        v
    };
    let input: String = (0..300).map(|i| format!("tls-{i}\n")).collect();
    let args = with(&good, &["client", "append", "--cluster", &cluster]);
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = run(&refs, Some(input.as_bytes()), Duration::from_secs(60));
    assert!(out.status.success(), "{}\n{}", stderr(&out), c.logs());
    assert_eq!(parse_indexes(&out.stdout), (0..300).collect::<Vec<u64>>());
    for id in 1..=3 {
        let args = with(&good, &["client", "read", "--cluster", c.addr(id)]);
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = run(&refs, None, Duration::from_secs(30));
        assert!(out.status.success(), "{}", stderr(&out));
        let recs = parse_records(&out.stdout);
        assert_eq!(recs.len(), 300);
        assert_eq!(recs[299], (299, "tls-299".to_string()));
        let args = with(&good, &["cluster", "status", "--json", "--node", c.addr(id)]);
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = run(&refs, None, Duration::from_secs(30));
        let st: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(st["tls"], Value::Bool(true), "{st}");
    }
    assert!(c.node_log(1).contains("TLS: peers and clients must present a certificate"), "{}", c.node_log(1));
    // Without TLS, and with another CA's certificate: nothing gets through.
    for tls in [&[][..], &rogue[..]] {
        let args = with(tls, &["client", "append", "--timeout", "2", "--cluster", &cluster]);
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = run(&refs, Some(b"intruder\n"), Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("cluster unreachable"), "{}", stderr(&out));
    }
    let args = with(&good, &["client", "read", "--cluster", &cluster]);
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = run(&refs, None, Duration::from_secs(30));
    assert_eq!(parse_records(&out.stdout).len(), 300, "nothing of theirs landed");
}
