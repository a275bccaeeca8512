//! A tenant's usage per UTC day and its daily quotas. What every call, exec
//! run, run task and model call used is added to the control store (by
//! day, kind and model); the daily quotas are enforced here, before the
//! work starts: a call holds the fuel it may use (its limit, cut to what
//! the day has left) and settles what it used when it ends, and a run's
//! model calls are charged to the day's allowance, which fits each
//! completion to what is left. So calls running together cannot overshoot
//! the day.
//!
//! A run's model calls count against the day the run started (or was
//! taken up again) on; the store records them on the day they happened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use warden_api::budget::{Allowance, Totals};
use warden_run::{FuelSource, HeldFuel};

use crate::control::{Counts, UsageRow};
use crate::operator::Operator;
use crate::tenant::{Quotas, TenantRecord};

/// Today, `YYYY-MM-DD` in UTC.
pub fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    day_of(secs)
}

/// The UTC day of `secs` since the Unix epoch, `YYYY-MM-DD`.
pub fn day_of(secs: u64) -> String {
    let (y, m, d) = warden_run::civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Seconds until the next UTC day: when a spent daily quota renews.
pub fn until_tomorrow() -> u64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    86_400 - secs % 86_400
}

/// One tenant's day, as the quotas count it.
struct Day {
    date: String,
    /// The tenant record's `created`: a tenant removed and added again
    /// under its name starts afresh.
    created: i64,
    fuel_used: u64,
    fuel_held: u64,
    /// `(tokens, dollars)` caps the allowance was made with.
    caps: (Option<u64>, Option<f64>),
    models: Arc<Allowance>,
}

/// Every tenant's usage and daily quotas on this server.
pub struct Meter {
    operator: Arc<Operator>,
    days: Mutex<HashMap<String, Day>>,
    /// Usage not yet in the store, by tenant, day, kind and model.
    pending: Mutex<HashMap<(String, String, String, String), Counts>>,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter").finish_non_exhaustive()
    }
}

/// Why a call may not start: the day's quota is spent, or what is left
/// of it is held by calls running now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spent {
    pub why: String,
    /// Seconds until it may be worth asking again.
    pub retry_after: u64,
}

impl Meter {
    pub fn new(operator: Arc<Operator>) -> Meter {
        Meter {
            operator,
            days: Mutex::default(),
            pending: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Day>> {
        self.days.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes sure `tenant`'s today is known, read from the store the first
    /// time, with the allowance its quotas say.
    async fn load(&self, tenant: &TenantRecord) {
        let date = today();
        let caps = (tenant.quotas.tokens_per_day, tenant.quotas.cost_per_day);
        {
            let mut days = self.lock();
            if let Some(day) = days.get_mut(&tenant.name)
                && day.date == date
                && day.created == tenant.created
            {
                if day.caps != caps {
                    let used = day.models.used();
                    day.models = allowance(&tenant.name, caps, used);
                    day.caps = caps;
                }
                return;
            }
        }
        let mut used = Counts::default();
        match self.operator.control().usage(&tenant.name, &date).await {
            Ok(rows) => {
                for row in rows.iter().filter(|r| r.day == date) {
                    used.add(&row.counts);
                }
            }
            // Counting from zero lets the day run over by what the store
            // could not say; the log says so.
            Err(e) => {
                tracing::error!(tenant = %tenant.name, error = %e, "cannot read today's usage")
            }
        }
        let mut days = self.lock();
        let fresh = days
            .get(&tenant.name)
            .is_none_or(|day| day.date != date || day.created != tenant.created);
        if fresh {
            let models = Totals {
                calls: 0,
                input_tokens: used.input_tokens,
                output_tokens: used.output_tokens,
                cost: used.cost,
            };
            days.insert(
                tenant.name.clone(),
                Day {
                    date,
                    created: tenant.created,
                    fuel_used: used.fuel,
                    fuel_held: 0,
                    caps,
                    models: allowance(&tenant.name, caps, models),
                },
            );
        }
    }

    /// Holds up to `want` fuel of `tenant`'s day for one call: the fuel the
    /// call may use. [`Spent`] when the day has none left.
    pub async fn hold_fuel(
        self: &Arc<Self>,
        tenant: &TenantRecord,
        want: u64,
    ) -> Result<FuelHold, Spent> {
        let Some(cap) = tenant.quotas.fuel_per_day else {
            return Ok(FuelHold {
                meter: None,
                tenant: tenant.name.clone(),
                date: String::new(),
                granted: want,
            });
        };
        self.load(tenant).await;
        let mut days = self.lock();
        let Some(day) = days.get_mut(&tenant.name) else {
            return Err(Spent {
                why: "the day's usage could not be read".into(),
                retry_after: 1,
            });
        };
        if day.fuel_used >= cap {
            let renews = until_tomorrow();
            return Err(Spent {
                why: format!(
                    "this tenant's daily fuel quota ({cap}) is spent; it renews at 00:00 UTC, in {renews} s"
                ),
                retry_after: renews,
            });
        }
        let left = cap.saturating_sub(day.fuel_used.saturating_add(day.fuel_held));
        if left == 0 {
            return Err(Spent {
                why: format!(
                    "what is left of this tenant's daily fuel quota ({cap}) is held by calls running now; retry when they end (a lower per-call fuel limit lets more run at once)"
                ),
                retry_after: 1,
            });
        }
        let granted = want.min(left);
        day.fuel_held += granted;
        Ok(FuelHold {
            meter: Some(self.clone()),
            tenant: tenant.name.clone(),
            date: day.date.clone(),
            granted,
        })
    }

    /// The allowance `tenant`'s runs started today charge their model calls
    /// to, when its quotas cap tokens or dollars per day.
    pub async fn models(&self, tenant: &TenantRecord) -> Option<Arc<Allowance>> {
        let Quotas {
            tokens_per_day,
            cost_per_day,
            ..
        } = tenant.quotas;
        if tokens_per_day.is_none() && cost_per_day.is_none() {
            return None;
        }
        self.load(tenant).await;
        self.lock().get(&tenant.name).map(|day| day.models.clone())
    }

    /// The fuel source a run of `tenant` holds its attempts' fuel from.
    pub fn fuel_source(self: &Arc<Self>, tenant: &TenantRecord) -> Option<Arc<dyn FuelSource>> {
        tenant.quotas.fuel_per_day?;
        Some(Arc::new(TenantFuel {
            meter: self.clone(),
            tenant: tenant.clone(),
        }))
    }

    /// Adds what `tenant` used to its usage today. Kept here until the
    /// next [`Meter::flush`] (every second while serving), so that a call
    /// does not wait for the store.
    pub fn add(&self, tenant: &str, kind: &str, model: &str, counts: Counts) {
        let key = (
            tenant.to_string(),
            today(),
            kind.to_string(),
            model.to_string(),
        );
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.entry(key).or_default().add(&counts);
    }

    /// Writes the usage added since the last flush to the store.
    pub async fn flush(&self) {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        for ((tenant, day, kind, model), counts) in pending {
            let row = UsageRow {
                day,
                kind,
                model,
                counts,
            };
            if let Err(e) = self.operator.control().add_usage(&tenant, &row).await {
                tracing::error!(tenant = %tenant, error = %e, "cannot record usage");
            }
        }
    }

    fn settle(&self, tenant: &str, date: &str, granted: u64, used: u64) {
        let mut days = self.lock();
        if let Some(day) = days.get_mut(tenant)
            && day.date == date
        {
            day.fuel_held = day.fuel_held.saturating_sub(granted);
            day.fuel_used = day.fuel_used.saturating_add(used);
        }
    }
}

fn allowance(tenant: &str, caps: (Option<u64>, Option<f64>), used: Totals) -> Arc<Allowance> {
    let day = Allowance::new(
        format!("tenant {tenant}'s day (its daily quota; it renews at 00:00 UTC)"),
        caps.0,
        caps.1,
        None,
    );
    day.preload(used);
    day
}

/// Fuel held for one call of a tenant. Settled with what the call used;
/// dropped unsettled, the hold is given back unused.
#[derive(Debug)]
pub struct FuelHold {
    /// `None` when the tenant has no daily fuel quota.
    meter: Option<Arc<Meter>>,
    tenant: String,
    date: String,
    granted: u64,
}

impl FuelHold {
    /// The fuel the call may use.
    pub fn granted(&self) -> u64 {
        self.granted
    }

    /// The call used `used`.
    pub fn settle(mut self, used: u64) {
        if let Some(meter) = self.meter.take() {
            meter.settle(&self.tenant, &self.date, self.granted, used);
        }
    }
}

impl Drop for FuelHold {
    fn drop(&mut self) {
        if let Some(meter) = self.meter.take() {
            meter.settle(&self.tenant, &self.date, self.granted, 0);
        }
    }
}

/// A run's attempts hold their fuel from the tenant's day.
struct TenantFuel {
    meter: Arc<Meter>,
    tenant: TenantRecord,
}

impl FuelSource for TenantFuel {
    fn hold(&self, want: u64) -> BoxFuture<'static, Result<Box<dyn HeldFuel>, String>> {
        let (meter, tenant) = (self.meter.clone(), self.tenant.clone());
        Box::pin(async move {
            match meter.hold_fuel(&tenant, want).await {
                Ok(hold) => Ok(Box::new(hold) as Box<dyn HeldFuel>),
                Err(spent) => Err(spent.why),
            }
        })
    }
}

impl HeldFuel for FuelHold {
    fn granted(&self) -> u64 {
        self.granted
    }

    fn settle(self: Box<Self>, used: u64) {
        FuelHold::settle(*self, used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme(fuel_per_day: u64, created: i64) -> TenantRecord {
        TenantRecord {
            name: "acme".into(),
            policy: None,
            plugins: Vec::new(),
            quotas: Quotas {
                fuel_per_day: Some(fuel_per_day),
                ..Quotas::default()
            },
            created,
        }
    }

    #[tokio::test]
    async fn holds_never_take_more_than_the_day_has_left() {
        let data = tempfile::tempdir().unwrap();
        let operator = Arc::new(Operator::open(data.path()).unwrap());
        let meter = Arc::new(Meter::new(operator.clone()));
        let tenant = acme(1000, 1);
        let a = meter.hold_fuel(&tenant, 600).await.unwrap();
        let b = meter.hold_fuel(&tenant, 600).await.unwrap();
        assert_eq!((a.granted(), b.granted()), (600, 400));
        let held = meter.hold_fuel(&tenant, 1).await.unwrap_err();
        assert!(held.why.contains("held by calls running now"), "{held:?}");
        assert_eq!(held.retry_after, 1);
        // What a call did not use goes back; a dropped hold gives back all.
        a.settle(100);
        let c = meter.hold_fuel(&tenant, 1000).await.unwrap();
        assert_eq!(c.granted(), 500);
        drop((b, c));
        assert_eq!(meter.hold_fuel(&tenant, 1000).await.unwrap().granted(), 900);
        let d = meter.hold_fuel(&tenant, 900).await.unwrap();
        d.settle(900);
        let spent = meter.hold_fuel(&tenant, 1).await.unwrap_err();
        assert!(spent.why.contains("(1000) is spent"), "{spent:?}");
        assert!(spent.retry_after > 1);

        // What the store says was used today counts, read afresh for a
        // tenant added again under the name.
        let row = UsageRow {
            day: today(),
            kind: "exec".into(),
            model: String::new(),
            counts: Counts {
                calls: 1,
                fuel: 700,
                ..Counts::default()
            },
        };
        operator.control().add_usage("acme", &row).await.unwrap();
        let again = acme(1000, 2);
        assert_eq!(meter.hold_fuel(&again, 1000).await.unwrap().granted(), 300);
        // Without a daily quota, a call gets what it asks for.
        let free = TenantRecord {
            quotas: Quotas::default(),
            ..acme(0, 2)
        };
        assert_eq!(meter.hold_fuel(&free, 5).await.unwrap().granted(), 5);
    }

    #[tokio::test]
    async fn usage_adds_up_by_day_kind_and_model_and_leaves_with_the_tenant() {
        let data = tempfile::tempdir().unwrap();
        let operator = Operator::open(data.path()).unwrap();
        let control = operator.control();
        let row = |day: &str, kind: &str, tokens: u64| UsageRow {
            day: day.into(),
            kind: kind.into(),
            model: "local/smol".into(),
            counts: Counts {
                calls: 1,
                input_tokens: tokens,
                cost: 0.5,
                ..Counts::default()
            },
        };
        for r in [
            row("2026-12-04", "llm", 10),
            row("2026-12-05", "llm", 20),
            row("2026-12-05", "llm", 30),
            row("2026-12-05", "run", 0),
        ] {
            control.add_usage("acme", &r).await.unwrap();
        }
        control
            .add_usage("bolt", &row("2026-12-05", "llm", 99))
            .await
            .unwrap();
        let rows = control.usage("acme", "2026-12-05").await.unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].kind, "llm");
        assert_eq!(rows[0].counts.calls, 2);
        assert_eq!(rows[0].counts.input_tokens, 50);
        assert_eq!(rows[0].counts.cost, 1.0);
        assert_eq!(control.usage("acme", "2026-01-01").await.unwrap().len(), 3);
        control.remove_tenant("acme", 0).await.unwrap();
        assert!(
            control
                .usage("acme", "2026-01-01")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(control.usage("bolt", "2026-01-01").await.unwrap().len(), 1);
    }

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_764_892_800), "2025-12-05");
        assert_eq!(day_of(1_764_892_799), "2025-12-04");
    }
}
