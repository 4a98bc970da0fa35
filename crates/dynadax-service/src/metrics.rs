//! A node's metrics: `GET /metrics` in the OpenMetrics text format (prometheus-client,
//! so any Prometheus scrapes it), and the per-second rates the status shows.
//!
//! Gauges are read from openraft's metrics and the applied log at each scrape; the
//! flush histogram is fed by the Raft log store each time it persists a group of
//! appended entries ([`dynadax_raft::LogStore::observe_flushes`]). A task samples the
//! counters once a second for the rates, so a status needs no second call to compute
//! one.

use crate::api::{FollowerStatus, Status};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Labels = Vec<(&'static str, String)>;

/// What the rates are computed over.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(1);

/// The rates over the last [`RATE_WINDOW`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rates {
    pub appends_per_sec: f64,
    pub flushes_per_sec: f64,
    /// Mean time of the persists made in the window, if any.
    pub flush_mean_us: Option<f64>,
}

pub(crate) struct Metrics {
    /// Registered once in `new`; only encoded afterwards.
    registry: Registry,
    term: Gauge,
    is_leader: Gauge,
    leader: Gauge,
    last_log_index: Gauge,
    committed: Gauge,
    applied: Gauge,
    records: Gauge,
    lag: Family<Labels, Gauge>,
    appends_per_sec: Gauge<f64, AtomicU64>,
    flush: Histogram,
    /// Persists made and their total time, for the mean over a window.
    flushes: AtomicU64,
    flush_ns: AtomicU64,
    rates: Mutex<Rates>,
}

/// `-1` for an index not there yet (Prometheus has no "none").
fn index(v: Option<u64>) -> i64 {
    v.map_or(-1, |v| v as i64)
}

impl Metrics {
    pub(crate) fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("dynadax_service");
        let m = Metrics {
            term: Gauge::default(),
            is_leader: Gauge::default(),
            leader: Gauge::default(),
            last_log_index: Gauge::default(),
            committed: Gauge::default(),
            applied: Gauge::default(),
            records: Gauge::default(),
            lag: Family::default(),
            appends_per_sec: Gauge::default(),
            // 10 µs .. ~1.3 s: a cache-line flush to a slow disk's fdatasync.
            flush: Histogram::new(exponential_buckets(1e-5, 2.0, 18)),
            flushes: AtomicU64::new(0),
            flush_ns: AtomicU64::new(0),
            rates: Mutex::new(Rates::default()),
            registry: Registry::default(),
        };
        registry.register("term", "The node's current Raft term", m.term.clone());
        registry.register("is_leader", "1 if this node is the leader, else 0", m.is_leader.clone());
        registry.register("leader", "The leader's node id this node knows (0: none)", m.leader.clone());
        registry.register("last_log_index", "The last index in the Raft log (-1: empty)", m.last_log_index.clone());
        registry.register("committed_index", "The last committed Raft index known (-1: none)", m.committed.clone());
        registry.register("applied_index", "The last Raft index applied (-1: none)", m.applied.clone());
        registry.register("records", "Records in the applied log: the replicated log's length here", m.records.clone());
        registry.register("follower_lag", "On the leader: entries each follower lacks", m.lag.clone());
        registry.register(
            "appends_per_second",
            "Records applied per second over the last second",
            m.appends_per_sec.clone(),
        );
        registry.register(
            "raft_flush_seconds",
            "Time of each persist of appended Raft entries (fdatasync, msync or cache-line flush; one covers a group)",
            m.flush.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// Called by the Raft log store after each persist.
    pub(crate) fn observe_flush(&self, d: Duration) {
        self.flush.observe(d.as_secs_f64());
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.flush_ns.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    pub(crate) fn rates(&self) -> Rates {
        *self.rates.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Samples the counters every [`RATE_WINDOW`] for as long as `records` (the
    /// applied log's length) is there to read.
    pub(crate) fn start_sampler(self: &Arc<Metrics>, records: impl Fn() -> Option<u64> + Send + 'static) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RATE_WINDOW);
            let mut last: Option<(Instant, u64, u64, u64)> = None;
            loop {
                tick.tick().await;
                let (Some(m), Some(n)) = (weak.upgrade(), records()) else { return };
                let now = Instant::now();
                let (f, ns) = (m.flushes.load(Ordering::Relaxed), m.flush_ns.load(Ordering::Relaxed));
                if let Some((t, n0, f0, ns0)) = last {
                    let secs = now.duration_since(t).as_secs_f64().max(1e-3);
                    let df = f.saturating_sub(f0);
                    let r = Rates {
                        appends_per_sec: n.saturating_sub(n0) as f64 / secs,
                        flushes_per_sec: df as f64 / secs,
                        flush_mean_us: (df > 0).then(|| ns.saturating_sub(ns0) as f64 / df as f64 / 1e3),
                    };
                    m.appends_per_sec.set(r.appends_per_sec);
                    *m.rates.lock().unwrap_or_else(|e| e.into_inner()) = r;
                }
                last = Some((now, n, f, ns));
            }
        });
    }

    /// The metrics as of `status`, in the OpenMetrics text format.
    pub(crate) fn render(&self, status: &Status) -> Result<String, std::fmt::Error> {
        self.term.set(status.term as i64);
        self.is_leader.set(i64::from(status.state == "Leader"));
        self.leader.set(status.leader.as_ref().map_or(0, |l| l.id as i64));
        self.last_log_index.set(index(status.last_log_index));
        self.committed.set(index(status.committed));
        self.applied.set(index(status.applied));
        self.records.set(status.records as i64);
        self.lag.clear();
        for FollowerStatus { id, lag, .. } in &status.replication {
            self.lag.get_or_create(&vec![("follower", id.to_string())]).set(*lag as i64);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
