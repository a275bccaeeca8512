//! What `GET /metrics` tells Prometheus: calls by outcome and how long they
//! took, sandboxes in use and calls waiting for one, runs going on, model
//! tokens and cost, requests refused by rate or quota, and answers by
//! status. Counters are counted where things happen; the gauges are set
//! from the call gate and the runs when scraped.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::quota::LaneCount;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub tenant: String,
    /// `tool`, `mcp` or `exec`.
    pub kind: &'static str,
    /// `ok`, `tool-error`, `limit` or `trap` (`error` for an exec that
    /// could not start).
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub tenant: String,
    /// `rate` (requests per second), `busy` (sandboxes and queue full),
    /// `runs` (runs in flight).
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub tenant: String,
    /// `input` or `output`.
    pub direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub code: u16,
}

type Histograms = Family<KindLabels, Histogram, fn() -> Histogram>;

fn call_seconds() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    seconds: Histograms,
    in_use: Family<TenantLabels, Gauge>,
    waiting: Family<TenantLabels, Gauge>,
    runs: Family<TenantLabels, Gauge>,
    refused: Family<RefusedLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<TenantLabels, Counter<f64, AtomicU64>>,
    responses: Family<StatusLabels, Counter>,
    rendering: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("warden");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "calls",
            "Tool calls, MCP calls and exec runs, by tenant, kind and outcome",
            calls.clone(),
        );
        let seconds = Histograms::new_with_constructor(call_seconds);
        registry.register(
            "call_duration_seconds",
            "How long calls took, waiting for a sandbox included",
            seconds.clone(),
        );
        let in_use = Family::<TenantLabels, Gauge>::default();
        registry.register(
            "sandboxes_in_use",
            "Sandboxes running a tenant's calls now",
            in_use.clone(),
        );
        let waiting = Family::<TenantLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "A tenant's calls waiting for a sandbox now",
            waiting.clone(),
        );
        let runs = Family::<TenantLabels, Gauge>::default();
        registry.register(
            "runs_in_flight",
            "A tenant's runs going on now",
            runs.clone(),
        );
        let refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "rate_limited_requests",
            "Requests refused with 429, by tenant and reason",
            refused.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "llm_tokens",
            "Model tokens used by a tenant's runs",
            tokens.clone(),
        );
        let cost = Family::<TenantLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "llm_cost_dollars",
            "What a tenant's runs' model calls cost, in US dollars",
            cost.clone(),
        );
        let responses = Family::<StatusLabels, Counter>::default();
        registry.register(
            "http_responses",
            "Answers by HTTP status code",
            responses.clone(),
        );
        Metrics {
            registry,
            calls,
            seconds,
            in_use,
            waiting,
            runs,
            refused,
            tokens,
            cost,
            responses,
            rendering: std::sync::Mutex::default(),
        }
    }
}

impl Metrics {
    /// Counts one call's end.
    pub fn call(&self, tenant: &str, kind: &'static str, outcome: &'static str, seconds: f64) {
        self.calls
            .get_or_create(&CallLabels {
                tenant: tenant.to_string(),
                kind,
                outcome,
            })
            .inc();
        self.seconds
            .get_or_create(&KindLabels { kind })
            .observe(seconds);
    }

    /// Counts a 429.
    pub fn refused(&self, tenant: &str, reason: &'static str) {
        self.refused
            .get_or_create(&RefusedLabels {
                tenant: tenant.to_string(),
                reason,
            })
            .inc();
    }

    /// Counts a model call of a tenant's run.
    pub fn llm(&self, tenant: &str, input_tokens: u64, output_tokens: u64, cost: f64) {
        for (direction, n) in [("input", input_tokens), ("output", output_tokens)] {
            self.tokens
                .get_or_create(&TokenLabels {
                    tenant: tenant.to_string(),
                    direction,
                })
                .inc_by(n);
        }
        if cost > 0.0 {
            self.cost
                .get_or_create(&TenantLabels {
                    tenant: tenant.to_string(),
                })
                .inc_by(cost);
        }
    }

    /// Counts an answer.
    pub fn response(&self, code: u16) {
        self.responses.get_or_create(&StatusLabels { code }).inc();
    }

    /// The exposition, with the gauges as `lanes` (the call gate's) and
    /// `runs` (runs going on per tenant) say now.
    pub fn render(&self, lanes: Vec<LaneCount>, runs: Vec<(String, usize)>) -> String {
        let _one_at_a_time = self.rendering.lock().unwrap_or_else(|p| p.into_inner());
        // A tenant with no runs left is not listed by `live_counts`.
        self.runs.clear();
        for lane in lanes {
            let labels = TenantLabels {
                tenant: lane.tenant,
            };
            self.in_use.get_or_create(&labels).set(lane.running.into());
            self.waiting
                .get_or_create(&labels)
                .set(lane.admitted.saturating_sub(lane.running).into());
        }
        for (tenant, count) in runs {
            self.runs
                .get_or_create(&TenantLabels { tenant })
                .set(count as i64);
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
