//! Per-tenant admission: a token bucket for requests, and a bounded count
//! of calls running or waiting for a sandbox. Both decide at once, so a
//! tenant over its quota is told to come back (429) instead of slowing the
//! others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::tenant::Quotas;

/// The request token buckets of every tenant.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The state of a tenant's bucket after a request, for the `RateLimit`
/// headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again (`Allowed`) or until one
    /// request is allowed (`Limited`).
    pub reset: u32,
}

impl RateLimiter {
    /// Takes one token from `tenant`'s bucket: `Ok` when the request may
    /// go on, `Err` when it must wait `reset` seconds.
    pub fn take(&self, tenant: &str, quotas: &Quotas) -> Result<Rate, Rate> {
        let rate = f64::from(quotas.requests_per_second.max(1));
        let burst = f64::from(quotas.burst.max(1));
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(tenant.to_string()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(Rate {
                limit: quotas.burst,
                remaining: bucket.tokens as u32,
                reset: ((burst - bucket.tokens) / rate).ceil() as u32,
            })
        } else {
            Err(Rate {
                limit: quotas.burst,
                remaining: 0,
                reset: ((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u32,
            })
        }
    }
}

/// How many calls of each tenant are running or waiting for a sandbox, and
/// the sandboxes they take turns on.
#[derive(Debug, Default)]
pub struct CallGate {
    tenants: Mutex<HashMap<String, Lane>>,
}

#[derive(Debug, Clone)]
struct Lane {
    count: Arc<AtomicU32>,
    /// `concurrent-calls` permits, made again when the quota changes.
    running: Arc<Semaphore>,
    size: u32,
}

/// A place among a tenant's calls; released when dropped.
#[derive(Debug)]
pub struct Admitted {
    count: Arc<AtomicU32>,
    running: Arc<Semaphore>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admitted {
    /// Waits for one of the tenant's `concurrent-calls` sandboxes.
    pub async fn sandbox(&self) -> Option<OwnedSemaphorePermit> {
        self.running.clone().acquire_owned().await.ok()
    }
}

/// A tenant's calls now, as `/metrics` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneCount {
    pub tenant: String,
    /// Running or waiting for a sandbox.
    pub admitted: u32,
    /// Holding a sandbox.
    pub running: u32,
}

impl CallGate {
    /// Every tenant that has made a call, with its calls now.
    pub fn lanes(&self) -> Vec<LaneCount> {
        let tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        tenants
            .iter()
            .map(|(tenant, lane)| LaneCount {
                tenant: tenant.clone(),
                admitted: lane.count.load(Ordering::Acquire),
                running: lane
                    .size
                    .saturating_sub(lane.running.available_permits() as u32),
            })
            .collect()
    }

    /// A place for one more call of `tenant`, unless `concurrent-calls +
    /// queued-calls` are taken.
    pub fn enter(&self, tenant: &str, quotas: &Quotas) -> Option<Admitted> {
        let lane = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
            let lane = tenants.entry(tenant.to_string()).or_insert_with(|| Lane {
                count: Arc::default(),
                running: Arc::new(Semaphore::new(quotas.concurrent_calls as usize)),
                size: quotas.concurrent_calls,
            });
            if lane.size != quotas.concurrent_calls {
                lane.running = Arc::new(Semaphore::new(quotas.concurrent_calls as usize));
                lane.size = quotas.concurrent_calls;
            }
            lane.clone()
        };
        let most = quotas.concurrent_calls.saturating_add(quotas.queued_calls);
        lane.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < most).then_some(n + 1)
            })
            .ok()
            .map(|_| Admitted {
                count: lane.count,
                running: lane.running,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_admitted_then_limited_and_tenants_do_not_share_buckets() {
        let limiter = RateLimiter::default();
        let quotas = Quotas {
            requests_per_second: 1,
            burst: 3,
            ..Quotas::default()
        };
        for _ in 0..3 {
            assert!(limiter.take("a", &quotas).is_ok());
        }
        let limited = limiter.take("a", &quotas).unwrap_err();
        assert_eq!((limited.remaining, limited.reset), (0, 1));
        assert!(limiter.take("b", &quotas).is_ok());
    }

    #[tokio::test]
    async fn calls_past_running_and_queued_are_refused_and_only_the_running_ones_get_a_sandbox() {
        let gate = CallGate::default();
        let quotas = Quotas {
            concurrent_calls: 1,
            queued_calls: 1,
            ..Quotas::default()
        };
        let first = gate.enter("a", &quotas).unwrap();
        let second = gate.enter("a", &quotas).unwrap();
        assert!(gate.enter("a", &quotas).is_none());
        assert!(gate.enter("b", &quotas).is_some());
        let running = first.sandbox().await.unwrap();
        // The queued call waits for the one sandbox.
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), second.sandbox()).await;
        assert!(waiting.is_err());
        drop(running);
        assert!(second.sandbox().await.is_some());
        drop(first);
        assert!(gate.enter("a", &quotas).is_some());
    }
}
