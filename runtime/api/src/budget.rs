//! Budgets in tokens and money: what one completion cost
//! ([`UsageRecord`]), sums of them ([`Totals`]), and the caps a run and its
//! tasks share ([`Allowance`]).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// One completion as the ledger records it.
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

    /// Counts one completion.
    pub fn add(&mut self, r: &UsageRecord) {
        self.calls += 1;
        self.input_tokens += r.input_tokens;
        self.output_tokens += r.output_tokens;
        self.cost += r.cost;
    }
}

/// What one completion asks of the budgets before it is sent: its input
/// (estimated from every part of the request), the most output it may
/// produce, and the prices per million tokens of the dearest model that
/// may answer it. Budgets [`fit`](Ask::fit) it by lowering `max_output`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ask {
    pub input_tokens: u64,
    pub max_output: u64,
    /// US dollars per million input tokens.
    pub input_price: f64,
    /// US dollars per million output tokens.
    pub output_price: f64,
}

impl Ask {
    /// Tokens it may use at most.
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.max_output)
    }

    /// Dollars it may cost at most.
    pub fn cost(&self) -> f64 {
        (self.input_tokens as f64 * self.input_price + self.max_output as f64 * self.output_price)
            / 1e6
    }

    /// Lowers `max_output` to what `tokens_left` and `cost_left` (of the
    /// budget called `name`) leave; `Err` when not even the input and one
    /// token of output fit.
    pub fn fit(
        &mut self,
        name: &str,
        tokens_left: Option<u64>,
        cost_left: Option<f64>,
    ) -> Result<(), BudgetSpent> {
        if let Some(left) = tokens_left {
            if self.input_tokens >= left {
                return Err(BudgetSpent(format!(
                    "{name} has {left} tokens left and the request alone is about {} tokens",
                    self.input_tokens
                )));
            }
            self.max_output = self.max_output.min(left - self.input_tokens);
        }
        if let Some(left) = cost_left {
            let input_cost = self.input_tokens as f64 * self.input_price / 1e6;
            let room = if self.output_price > 0.0 {
                ((left - input_cost) * 1e6 / self.output_price).floor()
            } else if left > input_cost {
                f64::INFINITY
            } else {
                0.0
            };
            if room < 1.0 {
                return Err(BudgetSpent(format!(
                    "{name} has ${:.4} left and the request's input alone costs about ${input_cost:.4}",
                    left.max(0.0)
                )));
            }
            if room < self.max_output as f64 {
                self.max_output = room as u64;
            }
        }
        Ok(())
    }
}

/// What a budget counts: charged completions, and what completions in
/// flight hold.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    used: Totals,
    held_tokens: u64,
    held_cost: f64,
}

/// A cap on tokens and cost shared by everything charged to it: a run, a
/// task of that run. Charging a child charges its parent, and a child is
/// spent when it or any parent is. A completion holds what it may cost
/// ([`Allowance::reserve`]) until it is charged, so completions in flight
/// together cannot overshoot.
pub struct Allowance {
    /// What it belongs to, for messages: `run 3f2a…`, `task build`.
    name: String,
    tokens: Option<u64>,
    cost: Option<f64>,
    counts: Mutex<Counts>,
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
            counts: Mutex::new(Counts::default()),
            parent,
            observer,
        })
    }

    /// Counts usage that happened before this allowance existed (a resumed
    /// run's earlier completions), here and up the chain.
    pub fn preload(&self, used: Totals) {
        for level in self.chain() {
            let mut counts = level.lock();
            counts.used.calls += used.calls;
            counts.used.input_tokens += used.input_tokens;
            counts.used.output_tokens += used.output_tokens;
            counts.used.cost += used.cost;
        }
    }

    /// What was charged to this allowance (and its children).
    pub fn used(&self) -> Totals {
        self.lock().used
    }

    /// Whether any cap along the chain is in dollars.
    pub fn caps_cost(&self) -> bool {
        self.chain().iter().any(|level| level.cost.is_some())
    }

    /// `Err` naming the budget when this allowance or a parent is spent.
    pub fn check(&self) -> Result<(), BudgetSpent> {
        for level in self.chain() {
            let used = level.used();
            if let Some(cap) = level.tokens
                && used.tokens() >= cap
            {
                return Err(BudgetSpent(format!(
                    "the token budget of {} is spent: {} of {cap} tokens used",
                    level.name,
                    used.tokens()
                )));
            }
            if let Some(cap) = level.cost
                && used.cost >= cap
            {
                return Err(BudgetSpent(format!(
                    "the cost budget of {} is spent: ${:.4} of ${cap}",
                    level.name, used.cost
                )));
            }
        }
        Ok(())
    }

    /// Tokens left before the tightest cap along the chain (less what is on
    /// hold), if any is set.
    pub fn tokens_left(&self) -> Option<u64> {
        self.chain()
            .iter()
            .filter_map(|level| {
                let counts = level.lock();
                level.tokens.map(|cap| {
                    cap.saturating_sub(counts.used.tokens())
                        .saturating_sub(counts.held_tokens)
                })
            })
            .min()
    }

    /// Fits `ask` to every cap along the chain and holds what it may use
    /// until the returned [`Hold`] is dropped (after the completion is
    /// charged, or failed). Atomic: the levels are locked together, from
    /// this one up, so two completions cannot both take the last room.
    pub fn reserve(self: &Arc<Self>, ask: &mut Ask) -> Result<Hold, BudgetSpent> {
        let chain = self.chain();
        let mut guards: Vec<_> = chain.iter().map(|level| level.lock()).collect();
        for (level, counts) in chain.iter().zip(&guards) {
            let name = format!("the budget of {}", level.name);
            let tokens_left = level.tokens.map(|cap| {
                cap.saturating_sub(counts.used.tokens())
                    .saturating_sub(counts.held_tokens)
            });
            let cost_left = level
                .cost
                .map(|cap| cap - counts.used.cost - counts.held_cost);
            ask.fit(&name, tokens_left, cost_left)?;
        }
        let (tokens, cost) = (ask.tokens(), ask.cost());
        for counts in &mut guards {
            counts.held_tokens = counts.held_tokens.saturating_add(tokens);
            counts.held_cost += cost;
        }
        Ok(Hold {
            allowance: self.clone(),
            tokens,
            cost,
        })
    }

    /// Charges one completion here and up the chain.
    pub fn charge(&self, record: &UsageRecord) {
        for level in self.chain() {
            level.lock().used.add(record);
        }
        if let Some(observer) = &self.observer {
            observer(record);
        }
    }

    /// This allowance and its parents, this one first.
    fn chain(&self) -> Vec<&Allowance> {
        let mut chain = vec![self];
        let mut at = self;
        while let Some(parent) = &at.parent {
            chain.push(parent);
            at = parent;
        }
        chain
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a completion in flight holds of an allowance and its parents;
/// released when dropped.
#[derive(Debug)]
pub struct Hold {
    allowance: Arc<Allowance>,
    tokens: u64,
    cost: f64,
}

impl Drop for Hold {
    fn drop(&mut self) {
        for level in self.allowance.chain() {
            let mut counts = level.lock();
            counts.held_tokens = counts.held_tokens.saturating_sub(self.tokens);
            counts.held_cost = (counts.held_cost - self.cost).max(0.0);
        }
    }
}

/// A spent budget, named: `the token budget of run 3f2a… is spent: …`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BudgetSpent(pub String);

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
        assert!(err.0.contains("token budget of run r"), "{err}");
        assert_eq!(b.used().cost, 0.25);
        let cost = Allowance::new("task c", None, Some(0.1), None);
        cost.charge(&used(1, 1, 0.2));
        assert!(
            cost.check()
                .unwrap_err()
                .0
                .contains("cost budget of task c")
        );
    }
}

#[cfg(test)]
mod reserve_tests {
    use super::*;

    fn ask(input: u64, max_output: u64) -> Ask {
        Ask {
            input_tokens: input,
            max_output,
            input_price: 1.0,
            output_price: 2.0,
        }
    }

    #[test]
    fn holds_keep_concurrent_completions_under_the_cap() {
        let run = Allowance::new("run r", Some(1000), None, None);
        let task = Allowance::new("task t", None, None, Some(run.clone()));
        let mut first = ask(300, 10_000);
        let hold = task.reserve(&mut first).unwrap();
        assert_eq!(first.max_output, 700, "capped to what the run has");
        // Everything is on hold: a second completion in flight gets nothing.
        let refused = task.reserve(&mut ask(10, 10)).unwrap_err();
        assert!(refused.0.contains("run r"), "{refused}");
        drop(hold);
        let mut second = ask(10, 50);
        let _hold = task.reserve(&mut second).unwrap();
        assert_eq!(second.max_output, 50);
    }

    #[test]
    fn a_cost_cap_bounds_the_output_by_price() {
        // $0.001 left; input 100 tokens at $1/M = $0.0001; output at $2/M
        // leaves room for 450 tokens.
        let a = Allowance::new("task c", None, Some(0.001), None);
        let mut wants = ask(100, 100_000);
        let _hold = a.reserve(&mut wants).unwrap();
        assert_eq!(wants.max_output, 450);
        assert!(a.caps_cost());
        let too_big = Allowance::new("task d", None, Some(0.0001), None);
        assert!(too_big.reserve(&mut ask(1_000, 1)).is_err());
    }
}
