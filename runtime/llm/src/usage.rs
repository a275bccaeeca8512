//! The usage ledger: every completion's tokens and cost, per tenant, plugin,
//! run and model, appended to `usage.jsonl` in the data dir. Totals are kept
//! in memory for budget checks and rebuilt from the file at start.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Seconds since the Unix epoch.
    pub ts: u64,
    pub tenant: String,
    pub plugin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    pub provider: String,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: f64,
}

impl Totals {
    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    fn add(&mut self, r: &UsageRecord) {
        self.calls += 1;
        self.input_tokens += r.input_tokens;
        self.output_tokens += r.output_tokens;
        self.cost += r.cost;
    }
}

#[derive(Debug, Default)]
struct State {
    tenants: HashMap<String, Totals>,
    runs: HashMap<String, Totals>,
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

/// A cap on tokens and cost shared by everything charged to it: a run, a
/// task of that run. Charging a child charges its parent, and a child is
/// spent when it or any parent is.
pub struct Allowance {
    /// What it belongs to, for messages: `run 3f2a…`, `task build`.
    name: String,
    tokens: Option<u64>,
    cost: Option<f64>,
    used: Mutex<Totals>,
    parent: Option<Arc<Allowance>>,
    observer: Option<ChargeObserver>,
}

/// Told of every completion charged to an allowance (not to its parents).
pub type ChargeObserver = Arc<dyn Fn(&UsageRecord) + Send + Sync>;

impl std::fmt::Debug for Allowance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Allowance")
            .field("name", &self.name)
            .field("tokens", &self.tokens)
            .field("cost", &self.cost)
            .field("used", &self.used())
            .field("parent", &self.parent)
            .finish_non_exhaustive()
    }
}

impl Allowance {
    /// A new allowance; `None` caps nothing.
    pub fn new(
        name: impl Into<String>,
        tokens: Option<u64>,
        cost: Option<f64>,
        parent: Option<Arc<Allowance>>,
    ) -> Arc<Allowance> {
        Allowance::build(name.into(), tokens, cost, parent, None)
    }

    /// As [`Allowance::new`], telling `observer` of every charge.
    pub fn observed(
        name: impl Into<String>,
        tokens: Option<u64>,
        cost: Option<f64>,
        parent: Option<Arc<Allowance>>,
        observer: ChargeObserver,
    ) -> Arc<Allowance> {
        Allowance::build(name.into(), tokens, cost, parent, Some(observer))
    }

    fn build(
        name: String,
        tokens: Option<u64>,
        cost: Option<f64>,
        parent: Option<Arc<Allowance>>,
        observer: Option<ChargeObserver>,
    ) -> Arc<Allowance> {
        Arc::new(Allowance {
            name,
            tokens,
            cost,
            used: Mutex::new(Totals::default()),
            parent,
            observer,
        })
    }

    /// Counts usage that happened before this allowance existed (a resumed
    /// run's earlier completions), here and up the chain.
    pub fn preload(&self, used: Totals) {
        {
            let mut mine = self.lock();
            mine.calls += used.calls;
            mine.input_tokens += used.input_tokens;
            mine.output_tokens += used.output_tokens;
            mine.cost += used.cost;
        }
        if let Some(parent) = &self.parent {
            parent.preload(used);
        }
    }
    /// What was charged to this allowance (and its children).
    pub fn used(&self) -> Totals {
        *self.lock()
    }

    /// `Err` naming the budget when this allowance or a parent is spent.
    pub fn check(&self) -> Result<(), String> {
        let used = self.used();
        if let Some(cap) = self.tokens
            && used.tokens() >= cap
        {
            return Err(format!(
                "the token budget of {} is spent: {} of {cap} tokens used",
                self.name,
                used.tokens()
            ));
        }
        if let Some(cap) = self.cost
            && used.cost >= cap
        {
            return Err(format!(
                "the cost budget of {} is spent: ${:.4} of ${cap}",
                self.name, used.cost
            ));
        }
        match &self.parent {
            Some(parent) => parent.check(),
            None => Ok(()),
        }
    }

    /// Tokens left before the tightest cap along the chain, if any is set.
    pub fn tokens_left(&self) -> Option<u64> {
        let own = self
            .tokens
            .map(|cap| cap.saturating_sub(self.used().tokens()));
        let parent = self.parent.as_ref().and_then(|p| p.tokens_left());
        match (own, parent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Charges one completion here and up the chain.
    pub fn charge(&self, record: &UsageRecord) {
        self.lock().add(record);
        if let Some(observer) = &self.observer {
            observer(record);
        }
        if let Some(parent) = &self.parent {
            parent.charge_quietly(record);
        }
    }

    fn charge_quietly(&self, record: &UsageRecord) {
        self.lock().add(record);
        if let Some(parent) = &self.parent {
            parent.charge_quietly(record);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Totals> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
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
    fn a_child_allowance_charges_and_is_capped_by_its_parent() {
        let run = Allowance::new("run r", Some(100), None, None);
        let a = Allowance::new("task a", Some(80), None, Some(run.clone()));
        let b = Allowance::new("task b", None, Some(1.0), Some(run.clone()));
        assert_eq!(a.tokens_left(), Some(80));
        assert_eq!(b.tokens_left(), Some(100));
        let used = |input, output, cost| UsageRecord {
            cost,
            output_tokens: output,
            ..record("t", None, input)
        };
        a.charge(&used(50, 10, 0.0));
        assert_eq!(a.tokens_left(), Some(20));
        assert_eq!(b.tokens_left(), Some(40));
        assert!(a.check().is_ok());
        b.charge(&used(30, 10, 0.25));
        assert_eq!(run.used().tokens(), 100);
        assert_eq!(run.used().calls, 2);
        let err = a.check().unwrap_err();
        assert!(err.contains("token budget of run r"), "{err}");
        assert_eq!(b.used().cost, 0.25);
        let cost = Allowance::new("task c", None, Some(0.1), None);
        cost.charge(&used(1, 1, 0.2));
        assert!(cost.check().unwrap_err().contains("cost budget of task c"));
    }
}
