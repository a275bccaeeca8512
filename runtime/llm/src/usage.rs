//! The usage ledger: every completion's tokens and cost, per tenant, plugin,
//! run and model, appended to `usage.jsonl` in the data dir. Totals are kept
//! in memory for budget checks and rebuilt from the file at start.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use warden_api::budget::{Ask, BudgetSpent, Totals, UsageRecord};

#[derive(Debug, Default)]
struct State {
    tenants: HashMap<String, Totals>,
    runs: HashMap<String, Totals>,
    /// What completions in flight hold: (tokens, dollars).
    held_tenants: HashMap<String, (u64, f64)>,
    held_runs: HashMap<String, (u64, f64)>,
}

/// The caps a ledger checks: a tenant's and a run's, in tokens and dollars.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    pub tenant_tokens: Option<u64>,
    pub tenant_cost: Option<f64>,
    pub run_tokens: Option<u64>,
    pub run_cost: Option<f64>,
}

impl State {
    fn add(&mut self, record: &UsageRecord) {
        self.tenants
            .entry(record.tenant.clone())
            .or_default()
            .add(record);
        if let Some(run) = &record.run {
            self.runs.entry(run.clone()).or_default().add(record);
        }
    }
}

/// The ledger of one process. `None` path keeps it in memory only.
#[derive(Debug)]
pub struct Ledger {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

impl Ledger {
    pub fn in_memory() -> Ledger {
        Ledger {
            path: None,
            state: Mutex::new(State::default()),
        }
    }

    /// Opens (and sums) `<data>/usage.jsonl`. Unreadable lines are skipped
    /// with a warning rather than losing the rest.
    pub fn open(data_dir: &Path) -> Ledger {
        let path = data_dir.join("usage.jsonl");
        let mut state = State::default();
        for record in read_records(&path) {
            state.add(&record);
        }
        Ledger {
            path: Some(path),
            state: Mutex::new(state),
        }
    }

    pub fn tenant(&self, tenant: &str) -> Totals {
        self.lock().tenants.get(tenant).copied().unwrap_or_default()
    }

    pub fn run(&self, run: &str) -> Totals {
        self.lock().runs.get(run).copied().unwrap_or_default()
    }

    /// Fits `ask` to the tenant's and the run's caps (counting what
    /// completions in flight hold) and holds what it may use until the
    /// returned hold is dropped; atomic, under the ledger's lock.
    pub fn reserve(
        &self,
        tenant: &str,
        run: Option<&str>,
        caps: Caps,
        ask: &mut Ask,
    ) -> Result<LedgerHold<'_>, BudgetSpent> {
        let mut state = self.lock();
        let left = |used: Totals, held: (u64, f64), tokens: Option<u64>, cost: Option<f64>| {
            (
                tokens.map(|cap| cap.saturating_sub(used.tokens()).saturating_sub(held.0)),
                cost.map(|cap| cap - used.cost - held.1),
            )
        };
        let used = state.tenants.get(tenant).copied().unwrap_or_default();
        let held = state.held_tenants.get(tenant).copied().unwrap_or_default();
        let (tokens, cost) = left(used, held, caps.tenant_tokens, caps.tenant_cost);
        ask.fit(&format!("tenant {tenant}"), tokens, cost)?;
        if let Some(run) = run {
            let used = state.runs.get(run).copied().unwrap_or_default();
            let held = state.held_runs.get(run).copied().unwrap_or_default();
            let (tokens, cost) = left(used, held, caps.run_tokens, caps.run_cost);
            ask.fit(&format!("run {run}"), tokens, cost)?;
        }
        let (tokens, cost) = (ask.tokens(), ask.cost());
        let add = |held: &mut (u64, f64)| {
            held.0 = held.0.saturating_add(tokens);
            held.1 += cost;
        };
        add(state.held_tenants.entry(tenant.to_string()).or_default());
        if let Some(run) = run {
            add(state.held_runs.entry(run.to_string()).or_default());
        }
        Ok(LedgerHold {
            ledger: self,
            tenant: tenant.to_string(),
            run: run.map(str::to_string),
            tokens,
            cost,
        })
    }

    /// Charges a completion; a record that cannot be written is logged, the
    /// in-memory totals still count it.
    pub fn charge(&self, record: UsageRecord) {
        let mut state = self.lock();
        state.add(&record);
        if let Some(path) = &self.path
            && let Err(e) = append(path, &record)
        {
            tracing::warn!(path = %path.display(), error = %e, "could not record LLM usage");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a completion in flight holds of a tenant's and a run's budget;
/// released when dropped.
#[derive(Debug)]
pub struct LedgerHold<'a> {
    ledger: &'a Ledger,
    tenant: String,
    run: Option<String>,
    tokens: u64,
    cost: f64,
}

impl Drop for LedgerHold<'_> {
    fn drop(&mut self) {
        let mut state = self.ledger.lock();
        let release = |held: Option<&mut (u64, f64)>| {
            if let Some(held) = held {
                held.0 = held.0.saturating_sub(self.tokens);
                held.1 = (held.1 - self.cost).max(0.0);
            }
        };
        release(state.held_tenants.get_mut(&self.tenant));
        if let Some(run) = &self.run {
            release(state.held_runs.get_mut(run));
        }
    }
}

fn append(path: &Path, record: &UsageRecord) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let line = serde_json::to_string(record).map_err(std::io::Error::other)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{line}")?;
    file.sync_data()
}

/// Every record in a ledger file.
pub fn read_records(path: &Path) -> Vec<UsageRecord> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str(l) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable usage line");
                None
            }
        })
        .collect()
}

/// Totals per (tenant, plugin, provider/model), sorted.
pub fn summarize(records: &[UsageRecord]) -> Vec<((String, String, String), Totals)> {
    let mut sums: HashMap<(String, String, String), Totals> = HashMap::new();
    for r in records {
        sums.entry((
            r.tenant.clone(),
            r.plugin.clone(),
            format!("{}/{}", r.provider, r.model),
        ))
        .or_default()
        .add(r);
    }
    let mut rows: Vec<_> = sums.into_iter().collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tenant: &str, run: Option<&str>, tokens: u64) -> UsageRecord {
        UsageRecord {
            ts: 1,
            tenant: tenant.into(),
            plugin: "p".into(),
            run: run.map(String::from),
            provider: "local".into(),
            model: "m".into(),
            input_tokens: tokens,
            output_tokens: 1,
            cost: 0.5,
        }
    }

    #[test]
    fn totals_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path());
        ledger.charge(record("a", Some("r1"), 10));
        ledger.charge(record("a", None, 5));
        ledger.charge(record("b", None, 1));
        assert_eq!(ledger.tenant("a").tokens(), 17);
        assert_eq!(ledger.run("r1").calls, 1);
        drop(ledger);
        let again = Ledger::open(dir.path());
        assert_eq!(again.tenant("a").tokens(), 17);
        assert_eq!(again.tenant("a").cost, 1.0);
        assert_eq!(again.tenant("b").calls, 1);
        let rows = summarize(&read_records(&dir.path().join("usage.jsonl")));
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn holds_count_until_dropped_so_concurrent_calls_cannot_overshoot() {
        let ledger = Ledger::in_memory();
        let caps = Caps {
            tenant_tokens: Some(100),
            ..Caps::default()
        };
        let ask = |input, max_output| Ask {
            input_tokens: input,
            max_output,
            input_price: 0.0,
            output_price: 0.0,
        };
        let mut first = ask(30, 1_000);
        let hold = ledger.reserve("a", None, caps, &mut first).unwrap();
        assert_eq!(first.max_output, 70);
        // The first call holds all 100: a second in flight is refused…
        assert!(ledger.reserve("a", None, caps, &mut ask(10, 10)).is_err());
        // …another tenant is not.
        ledger.reserve("b", None, caps, &mut ask(10, 10)).unwrap();
        // Charged what it used, the hold released: the rest is free again.
        ledger.charge(record("a", None, 40));
        drop(hold);
        let mut third = ask(10, 1_000);
        let _hold = ledger.reserve("a", None, caps, &mut third).unwrap();
        assert_eq!(third.max_output, 100 - 41 - 10);
    }
}
