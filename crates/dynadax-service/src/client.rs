//! [`Client`]: appends to and reads from a cluster, finding the leader and retrying
//! through leader changes and timeouts. Every append carries the client's id and a
//! sequence number, the same in every retry, so the state machine applies it once.

use crate::api::{self, AdminReply, ApiError, ErrorKind, Member, Status};
use crate::network::{self, base_url, CallError};
use crate::types::{NodeId, Records, Request, Response, MAX_RECORD};
use crate::Error;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A client of a cluster. Cheap to share between tasks (`&Client` is enough):
/// concurrent appends are pipelined, each batch one request. Appends made one after
/// another (each awaited) land in the log in that order, and a batch's records in
/// the batch's order; concurrent appends land in any order among themselves.
pub struct Client {
    http: reqwest::Client,
    addrs: Vec<String>,
    /// The address that answered last as leader: tried first.
    leader: Mutex<Option<String>>,
    id: u64,
    seqs: Mutex<Seqs>,
    /// How long an operation keeps retrying before it fails.
    deadline: Duration,
    /// How long one HTTP call may take.
    call_timeout: Duration,
    /// `https` with TLS, else `http`.
    scheme: &'static str,
}

#[derive(Default)]
struct Seqs {
    next: u64,
    /// Seqs sent and not answered yet: the smallest is what the client acknowledges.
    in_flight: BTreeSet<u64>,
}

/// How a call went, for the retry loop.
enum Step<T> {
    Done(T),
    /// Try `addr` next (a leader hint).
    Redirect(String),
    /// Try another node, or the same later.
    Retry(CallError),
    Fail(Error),
}

impl Client {
    /// A client of the cluster whose nodes listen at `addrs` (`HOST:PORT`, any of
    /// them; more is better: one that is down is skipped). Connects lazily: a
    /// cluster that cannot be reached is reported by the first call, naming every
    /// address tried. The client's id is random.
    pub fn connect<I, S>(addrs: I) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let addrs: Vec<String> = addrs.into_iter().map(Into::into).filter(|a: &String| !a.is_empty()).collect();
        if addrs.is_empty() {
            return Err(Error::Other("no cluster address given (--cluster HOST:PORT,...)".into()));
        }
        Ok(Client {
            http: network::http_client(),
            addrs,
            leader: Mutex::new(None),
            id: rand::random(),
            seqs: Mutex::new(Seqs::default()),
            deadline: Duration::from_secs(30),
            call_timeout: Duration::from_secs(20),
            scheme: "http",
        })
    }

    /// Talks TLS: trusts only the cluster's CA in `files` and presents the client
    /// certificate and key in it (nodes refuse clients without one the CA signed).
    pub fn with_tls(mut self, files: &crate::TlsFiles) -> Result<Client, Error> {
        self.http = crate::tls::Tls::load(files)?.http_client()?;
        self.scheme = "https";
        Ok(self)
    }

    /// Keeps retrying an operation for at most `d` (30 s by default).
    pub fn with_deadline(mut self, d: Duration) -> Client {
        self.deadline = d;
        self
    }

    /// Uses `id` as the client id instead of a random one. Two clients must never
    /// share one id: their seqs would be taken for each other's retries.
    pub fn with_id(mut self, id: u64) -> Client {
        self.id = id;
        self
    }

    /// This client's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Appends `record`; returns its index in the replicated log once committed and
    /// applied.
    pub async fn append(&self, record: &[u8]) -> Result<u64, Error> {
        Ok(self.append_batch(&[record]).await?[0])
    }

    /// Appends `records` in one request (split if larger than a request may be);
    /// returns each one's index, in order. The indexes are not necessarily
    /// consecutive: other clients' records may land in between.
    pub async fn append_batch(&self, records: &[&[u8]]) -> Result<Vec<u64>, Error> {
        if let Some((i, r)) = records.iter().enumerate().find(|(_, r)| r.len() > MAX_RECORD) {
            return Err(Error::Api(ApiError::new(
                ErrorKind::TooLarge,
                format!("record {i} is {} bytes: the largest record is {MAX_RECORD} bytes (1 MiB)", r.len()),
            )));
        }
        let mut out = Vec::with_capacity(records.len());
        let mut start = 0;
        while start < records.len() {
            // A request stays under the server's body limit.
            let mut end = start;
            let mut bytes = 0;
            while end < records.len() && (end == start || bytes + records[end].len() + 64 < api::MAX_APPEND_BODY) {
                bytes += records[end].len() + 32;
                end += 1;
            }
            let reqs = self.requests(&records[start..end]);
            let seqs: Vec<u64> = reqs.iter().map(|r| r.seq).collect();
            let answers = self.send_requests(reqs).await;
            {
                let mut s = self.seqs.lock().unwrap_or_else(|e| e.into_inner());
                for q in &seqs {
                    s.in_flight.remove(q);
                }
            }
            for (r, q) in answers?.into_iter().zip(seqs) {
                out.push(r.index.ok_or_else(|| {
                    Error::Other(format!(
                        "append seq {q} of client {:x}: answered as forgotten (a retry of an append acknowledged \
                         before, or this client id was idle so long that its deduplication window expired): \
                         it is not applied again",
                        self.id
                    ))
                })?);
            }
            start = end;
        }
        Ok(out)
    }

    fn requests(&self, records: &[&[u8]]) -> Vec<Request> {
        let mut s = self.seqs.lock().unwrap_or_else(|e| e.into_inner());
        let first = s.next;
        let end = first + records.len() as u64;
        s.next = end;
        s.in_flight.extend(first..end);
        let acked = *s.in_flight.first().unwrap_or(&first);
        records
            .iter()
            .enumerate()
            .map(|(i, r)| Request { client: self.id, seq: first + i as u64, acked, bytes: r.to_vec() })
            .collect()
    }

    /// Sends `requests` as they are (their client ids and seqs), retrying until they
    /// are applied; answers one [`Response`] each. What [`Client::append_batch`] does
    /// underneath; public for tests and tools that replay a client's requests.
    pub async fn send_requests(&self, requests: Vec<Request>) -> Result<Vec<Response>, Error> {
        let n = requests.len();
        let body = api::AppendBatch { requests };
        let answers: Vec<Response> = self.call_cluster(true, |addr| self.post_pc(addr, api::APPEND, &body)).await?;
        if answers.len() != n {
            return Err(Error::Other(format!("{n} appends sent, {} answered", answers.len())));
        }
        Ok(answers)
    }

    /// Records `range` (clipped at the log's end), linearizable unless `stale` (then
    /// served by whichever node answers, possibly behind). Reads in as many requests
    /// as it takes.
    pub async fn read(&self, range: Range<u64>, stale: bool) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        let mut out = Vec::new();
        let mut from = range.start;
        while from < range.end {
            let r = self.read_some(from, Some(range.end), stale, None).await?;
            match r.records.last() {
                Some((last, _)) => from = last + 1,
                None => break,
            }
            out.extend(r.records);
        }
        Ok(out)
    }

    /// One read request: records from `from` (up to `to`, about 4 MiB at most), and
    /// the log's length at the node that answered. With `wait`, the node waits up to
    /// that long for a record at `from` (a long poll: how a tail follows commits).
    pub async fn read_some(
        &self,
        from: u64,
        to: Option<u64>,
        stale: bool,
        wait: Option<Duration>,
    ) -> Result<Records, Error> {
        let mut q = vec![format!("from={from}"), format!("stale={stale}")];
        if let Some(t) = to {
            q.push(format!("to={t}"));
        }
        if let Some(w) = wait {
            q.push(format!("wait_ms={}", w.as_millis()));
        }
        let path = format!("{}?{}", api::READ, q.join("&"));
        let extra = wait.unwrap_or_default();
        self.call_cluster(false, |addr| self.get_pc(addr, &path, extra)).await
    }

    /// The status of the node at `addr`.
    pub async fn status(&self, addr: &str) -> Result<Status, Error> {
        let url = network::url(self.scheme, addr);
        let addr = url.as_str();
        let resp = self.http.get(format!("{}{}", base_url(addr), api::STATUS)).timeout(self.call_timeout).send().await;
        let r = match resp {
            Ok(resp) => network::decode(addr, resp, true, self.call_timeout).await,
            Err(e) => Err(call_error(addr, e)),
        };
        r.map_err(|e| self.unreachable(vec![addr.into()], e))
    }

    /// Initializes a new cluster of `members` through the client's address (retried
    /// while the node is not listening yet; refused if it is initialized already).
    pub async fn init(&self, members: BTreeMap<NodeId, String>) -> Result<AdminReply, Error> {
        self.admin(api::INIT, &api::InitRequest { members }).await
    }

    /// Adds node `id` at `addr` as a learner; returns once it has caught up.
    pub async fn add_learner(&self, id: NodeId, addr: &str) -> Result<AdminReply, Error> {
        self.admin(api::ADD_LEARNER, &api::AddLearnerRequest { id, addr: addr.into() }).await
    }

    /// Makes learners `ids` voters.
    pub async fn promote(&self, ids: Vec<NodeId>) -> Result<AdminReply, Error> {
        self.admin(api::PROMOTE, &api::NodesRequest { ids }).await
    }

    /// Removes nodes `ids` from the cluster.
    pub async fn remove(&self, ids: Vec<NodeId>) -> Result<AdminReply, Error> {
        self.admin(api::REMOVE, &api::NodesRequest { ids }).await
    }

    /// Asks the leader to hand leadership to `to`.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<AdminReply, Error> {
        self.admin(api::TRANSFER_LEADER, &api::TransferRequest { to }).await
    }

    async fn admin<Q: Serialize>(&self, path: &str, req: &Q) -> Result<AdminReply, Error> {
        self.call_cluster(true, |addr| self.post_json(addr, path, req)).await
    }

    async fn post_pc<Q: Serialize, A: DeserializeOwned>(&self, addr: String, path: &str, req: &Q) -> Step<A> {
        step(network::post(&self.http, &addr, path, req, self.call_timeout).await)
    }

    async fn get_pc<A: DeserializeOwned>(&self, addr: String, path: &str, extra: Duration) -> Step<A> {
        let addr = addr.as_str();
        let timeout = self.call_timeout + extra;
        let r = match self.http.get(format!("{}{path}", base_url(addr))).timeout(timeout).send().await {
            Ok(resp) => network::decode(addr, resp, false, timeout).await,
            Err(e) => Err(call_error(addr, e)),
        };
        step(r)
    }

    async fn post_json<Q: Serialize, A: DeserializeOwned>(&self, addr: String, path: &str, req: &Q) -> Step<A> {
        let addr = addr.as_str();
        // Membership changes wait for a learner to catch up: give them longer.
        let timeout = self.deadline.max(self.call_timeout);
        let r = match self.http.post(format!("{}{path}", base_url(addr))).json(req).timeout(timeout).send().await {
            Ok(resp) => network::decode(addr, resp, true, timeout).await,
            Err(e) => Err(call_error(addr, e)),
        };
        step(r)
    }

    fn unreachable(&self, tried: Vec<String>, last: CallError) -> Error {
        match last {
            CallError::Api { err, .. } => Error::Api(err),
            e => Error::Unreachable { tried: tried.join(", "), last: e.to_string() },
        }
    }

    /// Runs `call` against the cluster until it succeeds or the deadline passes: the
    /// last leader first (if `leader`), a leader hint next, every address in turn,
    /// with a short pause after each round.
    async fn call_cluster<T, F, Fut>(&self, leader: bool, mut call: F) -> Result<T, Error>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Step<T>>,
    {
        let deadline = Instant::now() + self.deadline;
        let mut tried: Vec<String> = Vec::new();
        let mut last: Option<CallError> = None;
        let mut hint: Option<String> =
            if leader { self.leader.lock().unwrap_or_else(|e| e.into_inner()).clone() } else { None };
        let mut pause = Duration::from_millis(20);
        loop {
            let mut order: Vec<String> = hint.take().into_iter().collect();
            for a in &self.addrs {
                if !order.contains(a) {
                    order.push(a.clone());
                }
            }
            let mut redirected = false;
            for addr in order {
                if !tried.contains(&addr) {
                    tried.push(addr.clone());
                }
                match call(network::url(self.scheme, &addr)).await {
                    Step::Done(v) => {
                        if leader {
                            *self.leader.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
                        }
                        return Ok(v);
                    }
                    Step::Redirect(to) => {
                        hint = Some(to);
                        redirected = true;
                        break;
                    }
                    Step::Retry(e) => last = Some(e),
                    Step::Fail(e) => return Err(e),
                }
            }
            if Instant::now() >= deadline {
                let last = last.unwrap_or(CallError::Other { addr: "-".into(), why: "no answer".into() });
                return Err(match last {
                    // Every node answered, none could serve: say what the last one said.
                    CallError::Api { err, .. } => Error::Api(err),
                    e => Error::Unreachable { tried: tried.join(", "), last: e.to_string() },
                });
            }
            if !redirected {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
    }
}

fn call_error(addr: &str, e: reqwest::Error) -> CallError {
    if e.is_timeout() {
        CallError::Timeout { addr: addr.into(), after: Duration::ZERO }
    } else if e.is_connect() {
        let mut why = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            why = s.to_string();
            src = s.source();
        }
        CallError::Connect { addr: addr.into(), why }
    } else {
        CallError::Other { addr: addr.into(), why: e.to_string() }
    }
}

fn step<T>(r: Result<T, CallError>) -> Step<T> {
    match r {
        Ok(v) => Step::Done(v),
        Err(CallError::Api { err, addr }) => match err.kind {
            ErrorKind::NotLeader => match &err.leader {
                Some(Member { addr: l, .. }) if *l != addr => Step::Redirect(l.clone()),
                _ => Step::Retry(CallError::Api { addr, err }),
            },
            ErrorKind::NoLeader | ErrorKind::Unavailable | ErrorKind::NotMember | ErrorKind::Internal => {
                Step::Retry(CallError::Api { addr, err })
            }
            ErrorKind::TooLarge | ErrorKind::BadRequest => Step::Fail(Error::Api(err)),
        },
        Err(e) => Step::Retry(e),
    }
}
