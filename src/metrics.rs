//! Process counters rendered as Prometheus text on `/metrics`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::model::Outcome;

/// Upper bounds (seconds) of the policy evaluation histogram buckets.
const EVAL_BUCKETS: [f64; 9] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.025,
];

/// All counters of one process.
#[derive(Debug, Default)]
pub struct Metrics {
    allow: AtomicU64,
    hold: AtomicU64,
    deny: AtomicU64,
    auth_failed: AtomicU64,
    upstream_errors: AtomicU64,
    connections_open: AtomicI64,
    connections_refused: AtomicU64,
    eval_buckets: [AtomicU64; 9],
    eval_count: AtomicU64,
    eval_nanos: AtomicU64,
    policy_reload_failures: AtomicU64,
    held: AtomicI64,
    /// Connections handed to each proxy shard (`proxy.shards`); unset without shards.
    shard_connections: std::sync::OnceLock<Vec<AtomicU64>>,
}

impl Metrics {
    /// Counts one decided request.
    pub fn decided(&self, outcome: Outcome, eval: Duration) {
        match outcome {
            Outcome::Allow => &self.allow,
            Outcome::Hold => &self.hold,
            Outcome::Deny => &self.deny,
        }
        .fetch_add(1, Relaxed);
        let secs = eval.as_secs_f64();
        for (i, le) in EVAL_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.eval_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.eval_count.fetch_add(1, Relaxed);
        self.eval_nanos
            .fetch_add(u64::try_from(eval.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// The proxy runs `n` shards (once, at start).
    pub fn shards(&self, n: usize) {
        let _ = self
            .shard_connections
            .set((0..n).map(|_| AtomicU64::new(0)).collect());
    }

    /// A connection was handed to shard `i`.
    pub fn shard_connection(&self, i: usize) {
        if let Some(c) = self.shard_connections.get().and_then(|v| v.get(i)) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Counts a 407.
    pub fn auth_failed(&self) {
        self.auth_failed.fetch_add(1, Relaxed);
    }

    /// Counts an upstream failure (502/504).
    pub fn upstream_error(&self) {
        self.upstream_errors.fetch_add(1, Relaxed);
    }

    /// A connection opened (+1) or closed (-1).
    pub fn connection(&self, delta: i64) {
        self.connections_open.fetch_add(delta, Relaxed);
    }

    /// A connection refused because `proxy.max_connections` was reached.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    /// A request started (+1) or stopped (-1) waiting for an approver.
    pub fn held(&self, delta: i64) {
        self.held.fetch_add(delta, Relaxed);
    }

    /// Requests waiting for an approver now.
    pub fn held_now(&self) -> i64 {
        self.held.load(Relaxed)
    }

    /// A rejected policy reload.
    pub fn policy_reload_failed(&self) {
        self.policy_reload_failures.fetch_add(1, Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP clawser_requests_total Requests decided by the policy, by outcome.\n# TYPE clawser_requests_total counter\n");
        for (name, c) in [
            ("allow", &self.allow),
            ("hold", &self.hold),
            ("deny", &self.deny),
        ] {
            s.push_str(&format!(
                "clawser_requests_total{{outcome=\"{name}\"}} {}\n",
                c.load(Relaxed)
            ));
        }
        let simple = [
            (
                "clawser_auth_failures_total",
                "counter",
                "Requests refused with 407.",
                self.auth_failed.load(Relaxed) as i64,
            ),
            (
                "clawser_upstream_errors_total",
                "counter",
                "Upstream failures answered with 502 or 504.",
                self.upstream_errors.load(Relaxed) as i64,
            ),
            (
                "clawser_connections_open",
                "gauge",
                "Client connections open now.",
                self.connections_open.load(Relaxed),
            ),
            (
                "clawser_connections_refused_total",
                "counter",
                "Connections refused at proxy.max_connections.",
                self.connections_refused.load(Relaxed) as i64,
            ),
            (
                "clawser_policy_reload_failures_total",
                "counter",
                "Policy reloads rejected (last good policy kept).",
                self.policy_reload_failures.load(Relaxed) as i64,
            ),
            (
                "clawser_held_requests",
                "gauge",
                "Requests waiting for an approver now.",
                self.held.load(Relaxed),
            ),
        ];
        for (name, kind, help, v) in simple.into_iter().chain(heap_gauges()) {
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        }
        if let Some(shards) = self.shard_connections.get() {
            s.push_str("# HELP clawser_shard_connections_total Connections handed to each proxy shard (proxy.shards).\n# TYPE clawser_shard_connections_total counter\n");
            for (i, c) in shards.iter().enumerate() {
                s.push_str(&format!(
                    "clawser_shard_connections_total{{shard=\"{i}\"}} {}\n",
                    c.load(Relaxed)
                ));
            }
        }
        s.push_str("# HELP clawser_policy_eval_seconds Time to evaluate data.clawser.decision.\n# TYPE clawser_policy_eval_seconds histogram\n");
        for (i, le) in EVAL_BUCKETS.iter().enumerate() {
            s.push_str(&format!(
                "clawser_policy_eval_seconds_bucket{{le=\"{le}\"}} {}\n",
                self.eval_buckets[i].load(Relaxed)
            ));
        }
        let count = self.eval_count.load(Relaxed);
        s.push_str(&format!(
            "clawser_policy_eval_seconds_bucket{{le=\"+Inf\"}} {count}\n"
        ));
        s.push_str(&format!(
            "clawser_policy_eval_seconds_sum {}\n",
            self.eval_nanos.load(Relaxed) as f64 / 1e9
        ));
        s.push_str(&format!("clawser_policy_eval_seconds_count {count}\n"));
        s
    }
}

/// The ledger's group commits as a counter: (by appenders on their own threads, by the
/// writer thread). Many groups by the writer at low load means appenders hand off.
pub fn render_ledger_groups((by_appender, by_writer): (u64, u64)) -> String {
    format!(
        "# HELP clawser_ledger_groups_total Ledger group commits, by who committed them.\n# TYPE clawser_ledger_groups_total counter\nclawser_ledger_groups_total{{committer=\"appender\"}} {by_appender}\nclawser_ledger_groups_total{{committer=\"writer\"}} {by_writer}\n"
    )
}

/// The allocator's live and peak heap, as (name, kind, help, value) gauges.
#[cfg(feature = "mimalloc")]
fn heap_gauges() -> [(&'static str, &'static str, &'static str, i64); 2] {
    let heap = regorus_mimalloc::global_allocation_stats_snapshot();
    [
        (
            "clawser_heap_live_bytes",
            "gauge",
            "Bytes allocated and not yet freed, all threads, to within 1 MiB per thread (RSS minus this is what the allocator keeps).",
            i64::try_from(heap.allocated).unwrap_or(i64::MAX),
        ),
        (
            "clawser_heap_peak_bytes",
            "gauge",
            "Highest clawser_heap_live_bytes since start.",
            i64::try_from(heap.peak).unwrap_or(i64::MAX),
        ),
    ]
}

/// A build without the counting allocator (heap profiling only) has no heap gauges.
#[cfg(not(feature = "mimalloc"))]
fn heap_gauges() -> [(&'static str, &'static str, &'static str, i64); 0] {
    []
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts() {
        let m = Metrics::default();
        m.decided(Outcome::Allow, Duration::from_micros(20));
        m.decided(Outcome::Deny, Duration::from_micros(20));
        let text = m.render();
        assert!(text.contains("clawser_requests_total{outcome=\"allow\"} 1"));
        assert!(text.contains("clawser_policy_eval_seconds_count 2"));
        assert!(text.contains("clawser_policy_eval_seconds_bucket{le=\"0.000025\"} 2"));
        // Each thread reports to the global count once it is 1 MiB off, so a small test
        // process may still read 0; the gauge is there and a number.
        #[cfg(feature = "mimalloc")]
        for gauge in ["clawser_heap_live_bytes ", "clawser_heap_peak_bytes "] {
            let v: i64 = text
                .lines()
                .find_map(|l| l.strip_prefix(gauge))
                .unwrap()
                .parse()
                .unwrap();
            assert!(v >= 0, "{gauge}{v}");
        }
    }
}
