//! The scheduler: starts ready tasks by priority with bounded concurrency,
//! retries failed attempts with exponential backoff, sends exhausted tasks
//! to the dead-letter list, skips the dependents of a dead task, adds the
//! follow-up tasks roles return, and checks the run's budget before each
//! attempt. Every decision is an event recorded in the journal first.
//!
//! Time is tokio's: under a paused runtime (`start_paused`) the backoff is
//! virtual, which is how the tests measure it.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use warden_core::{Dependency, NewTask, Outcome, ToolCallKey};

use crate::error::RunError;
use crate::journal::{Event, JournalWriter, Record, RunStatus};
use crate::state::{RunState, TaskStatus};
use crate::workflow::{Budget, RunSettings, TaskSpec, check_tasks, is_name};

/// Sees every event after it is on disk: the live view, `--events`.
pub trait EventSink: Send + Sync {
    fn event(&self, record: &Record, state: &RunState);
}

/// The journal and the state it describes, behind one lock: recording an
/// event appends it, folds it in and tells the sinks, in that order.
pub struct Recorder {
    inner: Mutex<(Box<dyn JournalWriter>, RunState)>,
    sinks: Vec<Box<dyn EventSink>>,
    /// The first write that failed. From then on nothing more is written
    /// (a half-written line must stay the journal's last) and the
    /// scheduler stops the run.
    broken: Mutex<Option<String>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    pub fn new(
        journal: impl JournalWriter + 'static,
        state: RunState,
        sinks: Vec<Box<dyn EventSink>>,
    ) -> Recorder {
        Recorder {
            inner: Mutex::new((Box::new(journal), state)),
            sinks,
            broken: Mutex::new(None),
        }
    }

    /// Appends `event` to the journal (fsync'd), then applies it. After a
    /// failed write every later one fails too, naming the first failure.
    pub fn record(&self, event: Event) -> std::io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.check()?;
        let (journal, state) = &mut *inner;
        let record = match journal.append(event) {
            Ok(record) => record,
            Err(e) => {
                let mut broken = self.broken.lock().unwrap_or_else(|e| e.into_inner());
                *broken = Some(e.to_string());
                return Err(e);
            }
        };
        state.apply(&record);
        for sink in &self.sinks {
            sink.event(&record, state);
        }
        Ok(())
    }

    /// `Err` once a write has failed.
    pub fn check(&self) -> std::io::Result<()> {
        match &*self.broken.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(first) => Err(std::io::Error::other(format!(
                "an earlier write failed ({first}); nothing more is recorded"
            ))),
            None => Ok(()),
        }
    }

    /// Reads the state.
    pub fn state<R>(&self, f: impl FnOnce(&RunState) -> R) -> R {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&inner.1)
    }
}

/// One attempt of one task, as the executor gets it.
#[derive(Debug)]
pub struct Attempt {
    pub run: String,
    pub goal: String,
    pub spec: TaskSpec,
    /// 1 for the first.
    pub number: u32,
    pub last_error: Option<String>,
    pub dependencies: Vec<Dependency>,
    /// Tool results earlier attempts recorded.
    pub recorded: HashMap<ToolCallKey, String>,
    /// What is left of the run's fuel and time budgets, if capped.
    pub fuel_left: Option<u64>,
    pub time_left: Option<Duration>,
    pub recorder: Arc<Recorder>,
}

/// How an attempt ended.
#[derive(Debug)]
pub struct AttemptEnd {
    pub result: Result<Outcome, AttemptError>,
    pub fuel_used: u64,
    pub duration: Duration,
}

#[derive(Debug, Clone)]
pub struct AttemptError {
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// The role said the task cannot be done as given (`invalid-task`): it
    /// is skipped with the role's reason, not retried nor dead-lettered.
    pub declined: bool,
}

/// Runs attempts: the wasm roles in a real run.
pub trait Executor: Send + Sync + 'static {
    fn run(&self, attempt: Attempt) -> BoxFuture<'static, AttemptEnd>;
}

/// Asks a run to stop where it is, for good: the attempts going on are
/// stopped, the unfinished tasks skipped with the reason, and the run ends
/// [`RunStatus::Cancelled`]. Asking again (or after the end) does nothing.
#[derive(Debug, Clone)]
pub struct Canceller(Arc<watch::Sender<Option<String>>>);

impl Canceller {
    /// A canceller, and what the scheduler watches for it.
    pub fn new() -> (Canceller, watch::Receiver<Option<String>>) {
        let (sender, receiver) = watch::channel(None);
        (Canceller(Arc::new(sender)), receiver)
    }

    pub fn cancel(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.0.send_if_modified(|asked| {
            let first = asked.is_none();
            if first {
                *asked = Some(reason);
            }
            first
        });
    }
}

/// Records the end of a cancelled run: its unfinished tasks skipped with
/// `reason`, then the run finished as cancelled. A run that had already
/// ended keeps its status.
pub fn record_cancelled(recorder: &Recorder, reason: &str) -> Result<RunStatus, RunError> {
    if let Some(status) = recorder.state(|s| s.status) {
        return Ok(status);
    }
    let open: Vec<String> = recorder.state(|s| {
        s.tasks
            .iter()
            .filter(|t| matches!(t.status, TaskStatus::Pending | TaskStatus::Running))
            .map(|t| t.spec.id.clone())
            .collect()
    });
    for task in open {
        recorder.record(Event::TaskSkipped {
            task,
            because: format!("the run was cancelled: {reason}"),
        })?;
    }
    recorder.record(Event::RunFinished {
        status: RunStatus::Cancelled,
    })?;
    Ok(RunStatus::Cancelled)
}

/// Skips the tasks that wait on a task that will never finish, until
/// nothing changes (skipping a task blocks its dependents).
pub fn skip_blocked(recorder: &Recorder) -> Result<(), RunError> {
    loop {
        let blocked = recorder.state(|s| s.blocked());
        if blocked.is_empty() {
            return Ok(());
        }
        for (task, because) in blocked {
            recorder.record(Event::TaskSkipped {
                task,
                because: format!("it depends on {because}, which did not finish"),
            })?;
        }
    }
}

pub struct Scheduler<E: ?Sized> {
    recorder: Arc<Recorder>,
    executor: Arc<E>,
    settings: RunSettings,
    budget: Budget,
    roles: BTreeSet<String>,
    stop: Option<watch::Receiver<Option<String>>>,
    /// The cluster node the attempts run on, for the journal.
    node: Option<String>,
}

impl<E: Executor + ?Sized> Scheduler<E> {
    pub fn new(
        recorder: Arc<Recorder>,
        executor: Arc<E>,
        settings: RunSettings,
        budget: Budget,
        roles: impl IntoIterator<Item = String>,
    ) -> Self {
        Scheduler {
            recorder,
            executor,
            settings,
            budget,
            roles: roles.into_iter().collect(),
            stop: None,
            node: None,
        }
    }

    /// Names the cluster node that runs the attempts, in their start.
    pub fn on_node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Stops the run when `stop` (a [`Canceller`]'s) says so.
    pub fn cancelled_by(mut self, stop: watch::Receiver<Option<String>>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Runs until every task is done, dead or skipped, or the run is
    /// cancelled.
    pub async fn drive(&self) -> Result<RunStatus, RunError> {
        let mut running: JoinSet<AttemptEnd> = JoinSet::new();
        let asked = async {
            let asked = match self.stop.clone() {
                Some(mut stop) => stop
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|reason| reason.clone()),
                None => None,
            };
            match asked {
                Some(reason) => reason,
                // Nobody can ask any more (or ever could).
                None => std::future::pending().await,
            }
        };
        let reason = tokio::select! {
            status = self.work(&mut running) => return status,
            reason = asked => reason,
        };
        // Every attempt is stopped where it is before the end is recorded.
        running.shutdown().await;
        record_cancelled(&self.recorder, &reason)
    }

    async fn work(&self, running: &mut JoinSet<AttemptEnd>) -> Result<RunStatus, RunError> {
        let mut running_ids: HashMap<tokio::task::Id, (String, u32)> = HashMap::new();
        let mut not_before: HashMap<String, Instant> = HashMap::new();
        loop {
            self.skip_blocked()?;
            let now = Instant::now();
            let ready: Vec<String> = self.recorder.state(|s| {
                s.ready()
                    .into_iter()
                    .map(|t| t.spec.id.clone())
                    .filter(|id| not_before.get(id).is_none_or(|at| *at <= now))
                    .collect()
            });
            for id in ready {
                if running.len() >= self.settings.concurrency.max(1) {
                    break;
                }
                if self.dead_of_spent_budget(&id)? {
                    continue;
                }
                let attempt = self.start(&id)?;
                let number = attempt.number;
                let handle = running.spawn(self.executor.run(attempt));
                running_ids.insert(handle.id(), (id, number));
            }

            let wake = self.recorder.state(|s| {
                not_before
                    .iter()
                    .filter(|(id, _)| s.task(id).is_some_and(|t| t.status == TaskStatus::Pending))
                    .map(|(_, at)| *at)
                    .min()
            });
            if running.is_empty() {
                match wake {
                    Some(at) => {
                        tokio::time::sleep_until(at).await;
                        continue;
                    }
                    None => break,
                }
            }
            let joined = match wake {
                Some(at) => tokio::select! {
                    joined = running.join_next_with_id() => joined,
                    _ = tokio::time::sleep_until(at) => continue,
                },
                None => running.join_next_with_id().await,
            };
            let Some(joined) = joined else { continue };
            let (id, end) = match joined {
                Ok((handle, end)) => (running_ids.remove(&handle), end),
                Err(e) => (
                    running_ids.remove(&e.id()),
                    AttemptEnd {
                        result: Err(AttemptError {
                            message: format!("the attempt panicked in the host: {e}"),
                            retryable: false,
                            declined: false,
                        }),
                        fuel_used: 0,
                        duration: Duration::ZERO,
                    },
                ),
            };
            // A step of the attempt (a tool call, a model call) that could
            // not be journaled stops the run here.
            self.recorder.check()?;
            if let Some((id, number)) = id
                && let Some(delay) = self.finish(&id, number, end)?
            {
                not_before.insert(id, Instant::now() + delay);
            }
        }
        // Anything still pending can never run (its dependencies are gone).
        let status = self.recorder.state(|s| s.outcome_status());
        self.recorder.record(Event::RunFinished { status })?;
        Ok(status)
    }

    /// Skips the tasks that wait on a task that will never finish.
    pub fn skip_blocked(&self) -> Result<(), RunError> {
        skip_blocked(&self.recorder)
    }

    /// Sends task `id` to the dead letters if a budget of the run is
    /// spent (no attempt may start then); whether it did.
    pub fn dead_of_spent_budget(&self, id: &str) -> Result<bool, RunError> {
        let Some(spent) = self.spent_budget() else {
            return Ok(false);
        };
        let attempts = self
            .recorder
            .state(|s| s.task(id).map_or(0, |t| t.failures));
        self.recorder.record(Event::TaskDead {
            task: id.to_string(),
            attempts,
            error: spent,
        })?;
        Ok(true)
    }

    /// The first budget of the run that is used up, named.
    fn spent_budget(&self) -> Option<String> {
        let (usage, active_ms) = self.recorder.state(|s| (s.usage(), s.active_ms));
        let b = &self.budget;
        if let Some(cap) = b.fuel
            && usage.fuel >= cap
        {
            return Some(format!(
                "the run's fuel budget is spent: {} of {cap} used",
                usage.fuel
            ));
        }
        if let Some(cap) = b.wall_clock
            && active_ms >= cap.as_millis() as u64
        {
            return Some(format!(
                "the run's wall-clock budget is spent: {active_ms} ms of {} ms",
                cap.as_millis()
            ));
        }
        let tokens = usage.input_tokens + usage.output_tokens;
        if let Some(cap) = b.tokens
            && tokens >= cap
        {
            return Some(format!(
                "the run's token budget is spent: {tokens} of {cap} used"
            ));
        }
        if let Some(cap) = b.cost
            && usage.cost >= cap
        {
            return Some(format!(
                "the run's cost budget is spent: ${:.4} of ${cap}",
                usage.cost
            ));
        }
        None
    }

    /// Records the start of the next attempt of ready task `id`, and
    /// returns it for the executor.
    pub fn start(&self, id: &str) -> Result<Attempt, RunError> {
        let (spec, number, last_error, dependencies, recorded, run, goal, usage, active_ms) =
            self.recorder.state(|s| {
                let t = s.task(id).expect("a ready task exists");
                let dependencies = t
                    .spec
                    .depends_on
                    .iter()
                    .filter_map(|d| s.task(d))
                    .filter_map(|d| {
                        d.outcome.as_ref().map(|o| Dependency {
                            task_id: d.spec.id.clone(),
                            role: d.spec.role.clone(),
                            summary: o.summary.clone(),
                            output: o.output.clone(),
                            artifacts: o.artifacts.clone(),
                        })
                    })
                    .collect();
                (
                    t.spec.clone(),
                    t.failures + 1,
                    t.last_error.clone(),
                    dependencies,
                    t.recorded.clone(),
                    s.run.clone(),
                    s.goal.clone(),
                    s.usage(),
                    s.active_ms,
                )
            });
        self.recorder.record(Event::TaskStarted {
            task: id.to_string(),
            role: spec.role.clone(),
            attempt: number,
            node: self.node.clone(),
        })?;
        Ok(Attempt {
            run,
            goal,
            number,
            last_error,
            dependencies,
            recorded,
            fuel_left: self.budget.fuel.map(|cap| cap.saturating_sub(usage.fuel)),
            time_left: self
                .budget
                .wall_clock
                .map(|cap| cap.saturating_sub(Duration::from_millis(active_ms))),
            recorder: self.recorder.clone(),
            spec,
        })
    }

    /// Records how attempt `number` of task `id` ended: finished (with its
    /// follow-ups queued), failed, dead or declined. `Some(delay)` when the
    /// task is to be tried again after `delay`.
    pub fn finish(
        &self,
        id: &str,
        number: u32,
        end: AttemptEnd,
    ) -> Result<Option<Duration>, RunError> {
        let fuel_used = end.fuel_used;
        let ms = end.duration.as_millis() as u64;
        let result = end.result.and_then(|outcome| {
            let new = self.accept_follow_ups(id, &outcome.follow_ups)?;
            Ok((outcome, new))
        });
        match result {
            Ok((outcome, new)) => {
                self.recorder.record(Event::TaskFinished {
                    task: id.to_string(),
                    attempt: number,
                    outcome,
                    fuel_used,
                    ms,
                })?;
                for task in new {
                    self.recorder.record(Event::TaskQueued { task })?;
                }
            }
            Err(error) => {
                // Failures since the run was last retried count against the
                // task's retries; `failures` is every attempt that failed.
                let (failures, counted, max_retries) = self.recorder.state(|s| {
                    s.task(id).map_or((0, 0, 0), |t| {
                        (
                            t.failures + 1,
                            t.failures + 1 - t.failures_forgiven,
                            t.spec.max_retries,
                        )
                    })
                });
                let retry = error.retryable && counted <= max_retries;
                let delay = retry.then(|| self.backoff(counted));
                self.recorder.record(Event::TaskFailed {
                    task: id.to_string(),
                    attempt: number,
                    error: error.message.clone(),
                    retry_in_ms: delay.map(|d| d.as_millis() as u64),
                    fuel_used,
                    ms,
                })?;
                match delay {
                    Some(delay) => return Ok(Some(delay)),
                    None if error.declined => {
                        self.recorder.record(Event::TaskSkipped {
                            task: id.to_string(),
                            because: format!("its role declined it: {}", error.message),
                        })?;
                    }
                    None => {
                        let error = if error.retryable {
                            format!("{} (gave up after {counted} attempts)", error.message)
                        } else {
                            error.message
                        };
                        self.recorder.record(Event::TaskDead {
                            task: id.to_string(),
                            attempts: failures,
                            error,
                        })?;
                    }
                }
            }
        }
        Ok(None)
    }

    /// How long to wait before the attempt after the `failures`-th failure:
    /// base, 2×base, 4×base… up to the cap.
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(20);
        self.settings
            .retry_base
            .saturating_mul(factor)
            .min(self.settings.retry_max)
    }

    /// The follow-ups of task `parent` as tasks of the run: ids made valid
    /// and unique (a colliding id gets `-2`, `-3`…, and references to it in
    /// the same batch follow), each running after `parent`, checked like
    /// the workflow's own tasks.
    fn accept_follow_ups(
        &self,
        parent: &str,
        follow_ups: &[NewTask],
    ) -> Result<Vec<TaskSpec>, AttemptError> {
        if follow_ups.is_empty() {
            return Ok(Vec::new());
        }
        let fail = |message: String| AttemptError {
            message: format!("the task's follow-ups cannot be added: {message}"),
            retryable: true,
            declined: false,
        };
        self.recorder.state(|s| {
            if s.tasks.len() + follow_ups.len() > self.settings.max_tasks {
                return Err(fail(format!(
                    "the run would hold {} tasks, more than `run.max-tasks = {}`",
                    s.tasks.len() + follow_ups.len(),
                    self.settings.max_tasks
                )));
            }
            let mut taken: BTreeSet<String> = s.tasks.iter().map(|t| t.spec.id.clone()).collect();
            let mut renamed: HashMap<&str, String> = HashMap::new();
            for t in follow_ups {
                let base = if is_name(&t.id) {
                    t.id.clone()
                } else {
                    clean_id(&t.id)
                };
                let mut id = base.clone();
                let mut n = 2;
                while taken.contains(&id) {
                    id = format!("{base}-{n}");
                    n += 1;
                }
                taken.insert(id.clone());
                renamed.insert(t.id.as_str(), id);
            }
            let new: Vec<TaskSpec> = follow_ups
                .iter()
                .map(|t| {
                    let mut depends_on: Vec<String> = vec![parent.to_string()];
                    for d in &t.depends_on {
                        let d = renamed
                            .get(d.as_str())
                            .cloned()
                            .unwrap_or_else(|| d.clone());
                        if !depends_on.contains(&d) {
                            depends_on.push(d);
                        }
                    }
                    TaskSpec {
                        id: renamed[t.id.as_str()].clone(),
                        role: t.role.clone(),
                        instructions: t.instructions.clone(),
                        depends_on,
                        priority: t.priority,
                        max_retries: 2,
                        timeout: None,
                        tokens: None,
                        input: t.input.clone().unwrap_or(serde_json::Value::Null),
                        parent: Some(parent.to_string()),
                    }
                })
                .collect();
            let existing: Vec<&TaskSpec> = s.tasks.iter().map(|t| &t.spec).collect();
            check_tasks(&existing, &new, |role| self.roles.contains(role))
                .map_err(|e| fail(e.to_string()))?;
            Ok(new)
        })
    }
}

/// An id made of the allowed characters: `Write Tests!` → `write-tests`.
fn clean_id(raw: &str) -> String {
    let mut id: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    id = id.trim_matches('-').to_string();
    id.truncate(60);
    if id.is_empty() { "task".into() } else { id }
}

/// Writes every event as one JSON line: `--events FILE`, or stdout with
/// `--json`.
pub struct JsonLines {
    out: Mutex<Box<dyn Write + Send>>,
}

impl JsonLines {
    pub fn new(out: Box<dyn Write + Send>) -> JsonLines {
        JsonLines {
            out: Mutex::new(out),
        }
    }
}

impl EventSink for JsonLines {
    fn event(&self, record: &Record, _state: &RunState) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(line) = serde_json::to_string(record) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures::FutureExt;
    use serde_json::json;

    use super::*;
    use crate::journal::{self, Journal};
    use crate::workflow::Budget;

    /// An executor that plays a script: per task, the results of its
    /// attempts in order (the last one repeats), noting when each started.
    struct Script {
        results: HashMap<String, Vec<Result<Outcome, AttemptError>>>,
        fuel_per_attempt: u64,
        started: Arc<Mutex<Vec<(String, u32, Instant)>>>,
    }

    impl Executor for Script {
        fn run(&self, attempt: Attempt) -> BoxFuture<'static, AttemptEnd> {
            self.started.lock().unwrap().push((
                attempt.spec.id.clone(),
                attempt.number,
                Instant::now(),
            ));
            let plays = &self.results[&attempt.spec.id];
            let result = plays[(attempt.number as usize - 1).min(plays.len() - 1)].clone();
            let fuel_used = self.fuel_per_attempt;
            async move {
                // Work takes (virtual) time.
                tokio::time::sleep(Duration::from_millis(10)).await;
                AttemptEnd {
                    result,
                    fuel_used,
                    duration: Duration::from_millis(10),
                }
            }
            .boxed()
        }
    }

    fn done(summary: &str) -> Result<Outcome, AttemptError> {
        Ok(Outcome {
            summary: summary.into(),
            output: json!(null),
            artifacts: vec![],
            follow_ups: vec![],
        })
    }

    fn fail(message: &str, retryable: bool) -> Result<Outcome, AttemptError> {
        Err(AttemptError {
            message: message.into(),
            retryable,
            declined: false,
        })
    }

    fn task(id: &str, priority: i32, deps: &[&str], retries: u32) -> TaskSpec {
        TaskSpec {
            id: id.into(),
            role: "worker".into(),
            instructions: format!("do {id}"),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            priority,
            max_retries: retries,
            timeout: None,
            tokens: None,
            input: json!(null),
            parent: None,
        }
    }

    struct Harness {
        _dir: tempfile::TempDir,
        recorder: Arc<Recorder>,
        started: Arc<Mutex<Vec<(String, u32, Instant)>>>,
        status: RunStatus,
    }

    async fn run(
        tasks: Vec<TaskSpec>,
        results: Vec<(&str, Vec<Result<Outcome, AttemptError>>)>,
        settings: RunSettings,
        budget: Budget,
        fuel_per_attempt: u64,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::create(&dir.path().join("journal.jsonl")).unwrap();
        let recorder = Arc::new(Recorder::new(journal, RunState::default(), Vec::new()));
        for task in tasks {
            recorder.record(Event::TaskQueued { task }).unwrap();
        }
        let started = Arc::new(Mutex::new(Vec::new()));
        let executor = Script {
            results: results
                .into_iter()
                .map(|(id, r)| (id.to_string(), r))
                .collect(),
            fuel_per_attempt,
            started: started.clone(),
        };
        let scheduler = Scheduler::new(
            recorder.clone(),
            Arc::new(executor),
            settings,
            budget,
            ["worker".to_string()],
        );
        let status = scheduler.drive().await.unwrap();
        Harness {
            _dir: dir,
            recorder,
            started,
            status,
        }
    }

    fn one_at_a_time() -> RunSettings {
        RunSettings {
            concurrency: 1,
            ..RunSettings::default()
        }
    }

    fn order(h: &Harness) -> Vec<String> {
        h.started
            .lock()
            .unwrap()
            .iter()
            .map(|(id, n, _)| format!("{id}#{n}"))
            .collect()
    }

    /// An executor whose attempts never end by themselves; each adds a
    /// permit to `started` when it starts and to `stopped` when it is
    /// dropped.
    struct Forever {
        started: Arc<tokio::sync::Semaphore>,
        stopped: Arc<tokio::sync::Semaphore>,
    }

    struct OnDrop(Arc<tokio::sync::Semaphore>);

    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.add_permits(1);
        }
    }

    impl Executor for Forever {
        fn run(&self, _attempt: Attempt) -> BoxFuture<'static, AttemptEnd> {
            self.started.add_permits(1);
            let stopped = OnDrop(self.stopped.clone());
            async move {
                let _stopped = stopped;
                std::future::pending().await
            }
            .boxed()
        }
    }

    /// Cancelling stops the attempts going on where they are, skips every
    /// unfinished task with the reason, and ends the run cancelled, once.
    #[tokio::test]
    async fn a_cancelled_run_stops_its_attempts_and_skips_what_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::create(&dir.path().join("journal.jsonl")).unwrap();
        let recorder = Arc::new(Recorder::new(journal, RunState::default(), Vec::new()));
        for task in [
            task("a", 0, &[], 0),
            task("b", 0, &["a"], 0),
            task("c", 0, &[], 0),
        ] {
            recorder.record(Event::TaskQueued { task }).unwrap();
        }
        let started = Arc::new(tokio::sync::Semaphore::new(0));
        let stopped = Arc::new(tokio::sync::Semaphore::new(0));
        let executor = Forever {
            started: started.clone(),
            stopped: stopped.clone(),
        };
        let (canceller, stop) = Canceller::new();
        let scheduler = Scheduler::new(
            recorder.clone(),
            Arc::new(executor),
            RunSettings::default(),
            Budget::default(),
            ["worker".to_string()],
        )
        .cancelled_by(stop);
        let driving = tokio::spawn(async move { scheduler.drive().await });
        // `a` and `c` run; `b` waits for `a`.
        let _both = started.acquire_many(2).await.unwrap();
        canceller.cancel("the operator asked");
        let status = driving.await.unwrap().unwrap();
        assert_eq!(status, RunStatus::Cancelled);
        assert_eq!(stopped.available_permits(), 2, "both attempts stopped");
        canceller.cancel("again");
        recorder.state(|s| {
            assert_eq!(s.status, Some(RunStatus::Cancelled));
            assert_eq!(crate::ended(s), Some(RunStatus::Cancelled));
            for t in &s.tasks {
                assert_eq!(t.status, TaskStatus::Skipped, "{}", t.spec.id);
                let because = t.skipped_because.as_deref().unwrap_or_default();
                assert!(because.contains("the operator asked"), "{because}");
            }
        });
        let records = journal::read(&dir.path().join("journal.jsonl")).unwrap();
        let finished = records
            .iter()
            .filter(|r| matches!(r.event, Event::RunFinished { .. }))
            .count();
        assert_eq!(finished, 1, "one end, recorded last");
        assert!(matches!(
            records.last().unwrap().event,
            Event::RunFinished {
                status: RunStatus::Cancelled
            }
        ));
    }

    /// A task its role declines (`invalid-task`) is skipped with the
    /// role's reason, once, not retried into the dead-letter list; what
    /// depends on it is skipped too.
    #[tokio::test(start_paused = true)]
    async fn a_declined_task_is_skipped_with_its_reason_not_dead() {
        let declined = Err(AttemptError {
            message: "nothing to answer from".into(),
            retryable: false,
            declined: true,
        });
        let h = run(
            vec![task("look", 0, &[], 3), task("use", 0, &["look"], 0)],
            vec![("look", vec![declined]), ("use", vec![done("use")])],
            one_at_a_time(),
            Budget::default(),
            1,
        )
        .await;
        assert_eq!(h.status, RunStatus::Failed);
        assert_eq!(order(&h), ["look#1"], "not retried");
        h.recorder.state(|s| {
            assert!(s.dead_letters().is_empty());
            let look = s.task("look").unwrap();
            assert_eq!(look.status, TaskStatus::Skipped);
            assert!(
                look.skipped_because
                    .as_deref()
                    .unwrap()
                    .contains("nothing to answer from")
            );
            assert_eq!(s.task("use").unwrap().status, TaskStatus::Skipped);
        });
    }

    /// Every task done, but the last verdict did not accept the work: the
    /// run says so instead of "succeeded".
    #[tokio::test(start_paused = true)]
    async fn a_rejected_verdict_is_not_success() {
        let verdict = |accepted: bool| {
            Ok(Outcome {
                summary: if accepted {
                    "accepted"
                } else {
                    "tests still fail"
                }
                .into(),
                output: json!({"accepted": accepted}),
                artifacts: vec![],
                follow_ups: vec![],
            })
        };
        let h = run(
            vec![task("write", 0, &[], 0), task("review", 0, &["write"], 0)],
            vec![("write", vec![done("w")]), ("review", vec![verdict(false)])],
            one_at_a_time(),
            Budget::default(),
            1,
        )
        .await;
        assert_eq!(h.status, RunStatus::NotAccepted);
        h.recorder.state(|s| {
            let (accepted, by) = s.verdict().unwrap();
            assert!(!accepted);
            assert_eq!(by.spec.id, "review");
        });
        let h = run(
            vec![task("write", 0, &[], 0), task("review", 0, &["write"], 0)],
            vec![("write", vec![done("w")]), ("review", vec![verdict(true)])],
            one_at_a_time(),
            Budget::default(),
            1,
        )
        .await;
        assert_eq!(h.status, RunStatus::Succeeded);
    }

    #[tokio::test(start_paused = true)]
    async fn ready_tasks_start_by_priority_after_their_dependencies() {
        let h = run(
            vec![
                task("a", 0, &[], 0),
                task("b", 5, &[], 0),
                task("c", 1, &["b"], 0),
                task("d", 9, &["a", "c"], 0),
            ],
            vec![
                ("a", vec![done("a")]),
                ("b", vec![done("b")]),
                ("c", vec![done("c")]),
                ("d", vec![done("d")]),
            ],
            one_at_a_time(),
            Budget::default(),
            1,
        )
        .await;
        assert_eq!(order(&h), ["b#1", "c#1", "a#1", "d#1"]);
        assert_eq!(h.status, RunStatus::Succeeded);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded() {
        let h = run(
            (0..5).map(|i| task(&format!("t{i}"), 0, &[], 0)).collect(),
            (0..5)
                .map(|i| (["t0", "t1", "t2", "t3", "t4"][i], vec![done("ok")]))
                .collect(),
            RunSettings {
                concurrency: 2,
                ..RunSettings::default()
            },
            Budget::default(),
            1,
        )
        .await;
        let started = h.started.lock().unwrap();
        let t0 = started[0].2;
        // Two at a time, 10 ms each: starts at 0, 0, 10, 10, 20 ms.
        let offsets: Vec<u128> = started.iter().map(|s| (s.2 - t0).as_millis()).collect();
        assert_eq!(offsets, [0, 0, 10, 10, 20]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_exponentially_then_succeed() {
        let h = run(
            vec![task("flaky", 0, &[], 3)],
            vec![(
                "flaky",
                vec![
                    fail("one", true),
                    fail("two", true),
                    fail("three", true),
                    done("at last"),
                ],
            )],
            one_at_a_time(),
            Budget::default(),
            1,
        )
        .await;
        let started = h.started.lock().unwrap();
        let gaps: Vec<u128> = started
            .windows(2)
            .map(|w| (w[1].2 - w[0].2).as_millis())
            .collect();
        // Each attempt takes 10 ms, then waits 1 s, 2 s, 4 s.
        assert_eq!(gaps, [1010, 2010, 4010]);
        assert_eq!(h.status, RunStatus::Succeeded);
        h.recorder.state(|s| {
            let t = s.task("flaky").unwrap();
            assert_eq!(t.failures, 3);
            assert_eq!(t.outcome.as_ref().unwrap().summary, "at last");
        });
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_tasks_are_dead_letters_and_their_dependents_skipped() {
        let h = run(
            vec![
                task("bad", 0, &[], 2),
                task("after", 0, &["bad"], 0),
                task("later", 0, &["after"], 0),
                task("free", 0, &[], 0),
            ],
            vec![
                ("bad", vec![fail("it broke", true)]),
                ("after", vec![done("never")]),
                ("later", vec![done("never")]),
                ("free", vec![done("fine")]),
            ],
            one_at_a_time(),
            Budget::default(),
            1,
        )
        .await;
        assert_eq!(h.status, RunStatus::Failed);
        assert_eq!(order(&h), ["bad#1", "free#1", "bad#2", "bad#3"]);
        h.recorder.state(|s| {
            assert_eq!(
                s.dead_letters(),
                [("bad", "it broke (gave up after 3 attempts)")]
            );
            assert_eq!(s.task("after").unwrap().status, TaskStatus::Skipped);
            assert_eq!(s.task("later").unwrap().status, TaskStatus::Skipped);
            assert!(
                s.task("later")
                    .unwrap()
                    .skipped_because
                    .as_ref()
                    .unwrap()
                    .contains("after")
            );
            assert_eq!(s.task("free").unwrap().status, TaskStatus::Done);
        });
    }

    /// Retrying a failed run puts its dead task and the tasks skipped
    /// because of it back in the queue; the dead task gets its retries
    /// again, and its attempts go on counting from where they were.
    #[tokio::test(start_paused = true)]
    async fn a_failed_run_retried_runs_its_dead_and_skipped_tasks_again() {
        let h = run(
            vec![task("bad", 0, &[], 1), task("after", 0, &["bad"], 0)],
            vec![
                (
                    "bad",
                    vec![
                        fail("down", true),
                        fail("down", true),
                        fail("still down", true),
                        done("fixed"),
                    ],
                ),
                ("after", vec![done("after it")]),
            ],
            one_at_a_time(),
            Budget::default(),
            1,
        )
        .await;
        assert_eq!(h.status, RunStatus::Failed);
        assert_eq!(order(&h), ["bad#1", "bad#2"]);

        h.recorder
            .record(Event::RunResumed {
                run: String::new(),
                retry: true,
            })
            .unwrap();
        h.recorder.state(|s| {
            assert_eq!(s.task("bad").unwrap().status, TaskStatus::Pending);
            assert_eq!(s.task("after").unwrap().status, TaskStatus::Pending);
            assert_eq!(s.task("after").unwrap().skipped_because, None);
        });
        let executor = Script {
            results: [
                (
                    "bad".to_string(),
                    vec![
                        fail("down", true),
                        fail("down", true),
                        fail("still down", true),
                        done("fixed"),
                    ],
                ),
                ("after".to_string(), vec![done("after it")]),
            ]
            .into(),
            fuel_per_attempt: 1,
            started: h.started.clone(),
        };
        let status = Scheduler::new(
            h.recorder.clone(),
            Arc::new(executor),
            one_at_a_time(),
            Budget::default(),
            ["worker".to_string()],
        )
        .drive()
        .await
        .unwrap();
        assert_eq!(status, RunStatus::Succeeded);
        // One retry again after the third attempt failed.
        assert_eq!(order(&h), ["bad#1", "bad#2", "bad#3", "bad#4", "after#1"]);
        h.recorder.state(|s| {
            let bad = s.task("bad").unwrap();
            assert_eq!((bad.failures, bad.failures_forgiven), (3, 2));
            assert!(s.dead_letters().is_empty());
        });
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_that_is_not_retryable_is_final_at_once() {
        let h = run(
            vec![task("denied", 0, &[], 5)],
            vec![("denied", vec![fail("tool not granted", false)])],
            one_at_a_time(),
            Budget::default(),
            1,
        )
        .await;
        assert_eq!(order(&h), ["denied#1"]);
        h.recorder
            .state(|s| assert_eq!(s.dead_letters(), [("denied", "tool not granted")]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_fails_the_next_task_and_names_the_budget() {
        let h = run(
            vec![task("one", 2, &[], 0), task("two", 1, &[], 0)],
            vec![("one", vec![done("1")]), ("two", vec![done("2")])],
            one_at_a_time(),
            Budget {
                fuel: Some(1000),
                ..Budget::default()
            },
            1500,
        )
        .await;
        assert_eq!(order(&h), ["one#1"]);
        h.recorder.state(|s| {
            let dead = s.dead_letters();
            assert_eq!(dead.len(), 1);
            assert_eq!(dead[0].0, "two");
            assert!(
                dead[0].1.contains("fuel budget is spent: 1500 of 1000"),
                "{}",
                dead[0].1
            );
        });
    }

    #[tokio::test(start_paused = true)]
    async fn follow_ups_join_the_run_renamed_when_their_ids_collide() {
        let plan = Outcome {
            summary: "planned".into(),
            output: json!(null),
            artifacts: vec![],
            follow_ups: vec![
                NewTask {
                    id: "plan".into(),
                    role: "worker".into(),
                    instructions: "collides".into(),
                    depends_on: vec![],
                    priority: 0,
                    input: None,
                },
                NewTask {
                    id: "Write Tests!".into(),
                    role: "worker".into(),
                    instructions: "after the first".into(),
                    depends_on: vec!["plan".into()],
                    priority: 0,
                    input: Some(json!({"n": 1})),
                },
            ],
        };
        let h = run(
            vec![task("plan", 0, &[], 0)],
            vec![
                ("plan", vec![Ok(plan)]),
                ("plan-2", vec![done("a")]),
                ("write-tests", vec![done("b")]),
            ],
            one_at_a_time(),
            Budget::default(),
            1,
        )
        .await;
        assert_eq!(order(&h), ["plan#1", "plan-2#1", "write-tests#1"]);
        h.recorder.state(|s| {
            let t = s.task("write-tests").unwrap();
            assert_eq!(t.spec.depends_on, ["plan", "plan-2"]);
            assert_eq!(t.spec.parent.as_deref(), Some("plan"));
            assert_eq!(t.spec.input, json!({"n": 1}));
        });
    }

    #[tokio::test(start_paused = true)]
    async fn follow_ups_that_name_unknown_roles_or_form_cycles_fail_the_attempt() {
        let bad = |role: &str, deps: Vec<&str>| Outcome {
            summary: "bad".into(),
            output: json!(null),
            artifacts: vec![],
            follow_ups: vec![
                NewTask {
                    id: "x".into(),
                    role: role.into(),
                    instructions: "".into(),
                    depends_on: deps.iter().map(|d| d.to_string()).collect(),
                    priority: 0,
                    input: None,
                },
                NewTask {
                    id: "y".into(),
                    role: "worker".into(),
                    instructions: "".into(),
                    depends_on: vec!["x".into()],
                    priority: 0,
                    input: None,
                },
            ],
        };
        let h = run(
            vec![task("p", 0, &[], 1)],
            vec![(
                "p",
                vec![Ok(bad("poet", vec![])), Ok(bad("worker", vec!["y"]))],
            )],
            one_at_a_time(),
            Budget::default(),
            1,
        )
        .await;
        h.recorder.state(|s| {
            assert_eq!(s.tasks.len(), 1, "no follow-up may join");
            let dead = s.dead_letters();
            assert!(dead[0].1.contains("cycle: x -> y -> x"), "{}", dead[0].1);
        });
        let records = journal::read(&h._dir.path().join("journal.jsonl")).unwrap();
        let first_error = records.iter().find_map(|r| match &r.event {
            Event::TaskFailed { error, .. } => Some(error.clone()),
            _ => None,
        });
        assert!(first_error.unwrap().contains("names role \"poet\""));
    }
}
