//! warden's runs: a workflow's role tasks as a durable DAG. Each task runs
//! in a sandboxed role plugin that calls tools and models only through the
//! host; the scheduler orders tasks by dependencies and priority, retries
//! with backoff, keeps a dead-letter list and holds the run to its budget;
//! every step is journaled (fsync'd) first, so a run killed at any point
//! resumes without repeating finished tasks or recorded tool calls.
//!
//! ```no_run
//! use warden_run::{RunEnv, Runs, workflow::Workflow};
//!
//! # async fn run(env: RunEnv) -> Result<(), Box<dyn std::error::Error>> {
//! let text = std::fs::read_to_string("examples/workflows/python-module.toml")?;
//! let workflow = Workflow::parse(&text, "python-module.toml")?;
//! let runs = Runs::new("/var/lib/warden".as_ref());
//! let finished = runs.start(workflow, None, &env, Vec::new()).await?;
//! println!("run {} {:?}", finished.run, finished.status);
//! # Ok(())
//! # }
//! ```

mod error;
pub mod executor;
pub mod journal;
pub mod report;
pub mod scheduler;
pub mod state;
pub mod workflow;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

pub use error::RunError;
pub use executor::{Ceiling, FuelSource, HeldFuel, Quota, RunEnv, WasmExecutor};
pub use journal::{Event, JournalWriter, Record, RunStatus};
pub use scheduler::{Canceller, EventSink, JsonLines, Recorder, Scheduler};
pub use state::{RunState, TaskStatus};
use warden_api::budget::Totals;
use warden_core::TenantId;

use crate::journal::Journal;
use crate::workflow::{TaskSpec, Workflow, WorkflowError};

/// How a run ended (this time).
#[derive(Debug, Clone)]
pub struct Finished {
    pub run: String,
    pub status: RunStatus,
    pub state: RunState,
}

/// The runs under a data dir: `<data>/runs/<id>/{journal.jsonl, workspace/}`.
#[derive(Debug, Clone)]
pub struct Runs {
    dir: PathBuf,
}

impl Runs {
    pub fn new(data_dir: &Path) -> Runs {
        Runs {
            dir: data_dir.join("runs"),
        }
    }

    /// The directory of run `run`. Only for an id [`check_run_id`]
    /// accepted: anything else could name a path outside the runs dir.
    pub fn dir(&self, run: &str) -> PathBuf {
        self.dir.join(run)
    }

    /// The journal of an existing run, if `run` is a run id and there is one.
    fn existing_journal(&self, run: &str) -> Result<PathBuf, RunError> {
        check_run_id(run)?;
        let path = self.dir(run).join("journal.jsonl");
        if !path.is_file() {
            return Err(self.no_such_run(run));
        }
        Ok(path)
    }

    fn no_such_run(&self, run: &str) -> RunError {
        RunError::NotFound(format!(
            "no run {run:?} in {}; `warden runs list` shows the runs",
            self.dir.display()
        ))
    }

    /// Starts a new run of `workflow` and drives it to its end. With
    /// `goal`, the goal replaces the workflow's, and a workflow without
    /// tasks starts with its planner.
    pub async fn start(
        &self,
        workflow: Workflow,
        goal: Option<String>,
        env: &RunEnv,
        sinks: Vec<Box<dyn EventSink>>,
    ) -> Result<Finished, RunError> {
        self.open(workflow, goal, env, sinks).await?.drive().await
    }

    /// Starts a new run: checks the workflow, loads its plugins and writes
    /// the first journal entries; [`Started::drive`] does the rest. A
    /// server answers with [`Started::run`] while the run goes on.
    pub async fn open(
        &self,
        workflow: Workflow,
        goal: Option<String>,
        env: &RunEnv,
        sinks: Vec<Box<dyn EventSink>>,
    ) -> Result<Started, RunError> {
        self.open_as(new_run_id(), workflow, goal, env, sinks).await
    }

    /// [`Runs::open`] with the id `run` (one [`new_run_id`] made, chosen
    /// before, e.g. to claim an idempotency key): `Busy` when a run of
    /// that id exists, which is left alone.
    pub async fn open_as(
        &self,
        run: String,
        mut workflow: Workflow,
        goal: Option<String>,
        env: &RunEnv,
        sinks: Vec<Box<dyn EventSink>>,
    ) -> Result<Started, RunError> {
        check_run_id(&run)?;
        let tasks = first_tasks(&mut workflow, goal)?;

        let dir = self.dir(&run);
        let workspace = dir.join("workspace");
        let made = std::fs::create_dir_all(&self.dir).and_then(|()| std::fs::create_dir(&dir));
        match made {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RunError::Busy(format!(
                    "a run {run} exists already; start the run again for a new id"
                )));
            }
            Err(e) => {
                return Err(RunError::Files(format!(
                    "cannot create {}: {e}",
                    dir.display()
                )));
            }
        }
        std::fs::create_dir_all(&workspace)
            .map_err(|e| RunError::Files(format!("cannot create {}: {e}", workspace.display())))?;
        let lock = lock(&dir)?;
        let executor = match WasmExecutor::prepare(
            &workflow,
            env,
            &run,
            &workspace,
            Totals::default(),
        )
        .await
        {
            Ok(executor) => executor,
            Err(e) => {
                drop(lock);
                if let Err(cleanup) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %cleanup, "could not remove the directory of a run that did not start");
                }
                return Err(e);
            }
        };
        let journal = Journal::create(&dir.join("journal.jsonl"))?;
        let recorder = Arc::new(Recorder::new(journal, RunState::default(), sinks));
        recorder.record(Event::RunStarted {
            run: run.clone(),
            workflow: workflow.clone(),
            goal: workflow.goal.clone(),
            workspace: workspace.clone(),
            base_dir: env.base_dir.clone(),
            tenant: env.tenant.clone(),
        })?;
        for task in tasks {
            recorder.record(Event::TaskQueued { task })?;
        }
        Ok(Started::new(run, recorder, executor, workflow, lock))
    }

    /// Takes a stopped run up again: finished tasks stay finished, an
    /// attempt cut short runs again, and its tool calls that completed are
    /// answered from the journal.
    pub async fn resume(
        &self,
        run: &str,
        env_for: impl FnOnce(&Path) -> RunEnv,
        sinks: Vec<Box<dyn EventSink>>,
    ) -> Result<Finished, RunError> {
        match self.reopen(run, env_for, sinks).await? {
            Reopened::Settled(finished) => Ok(finished),
            Reopened::Started(started) => started.drive().await,
        }
    }

    /// Takes a failed run up again and drives it to its end: what
    /// [`Runs::reopen_to_retry`] queues again runs once more.
    pub async fn retry(
        &self,
        run: &str,
        env_for: impl FnOnce(&Path) -> RunEnv,
        sinks: Vec<Box<dyn EventSink>>,
    ) -> Result<Finished, RunError> {
        match self.reopen_to_retry(run, env_for, sinks).await? {
            Reopened::Settled(finished) => Ok(finished),
            Reopened::Started(started) => started.drive().await,
        }
    }

    /// Takes a stopped run up again as [`Runs::resume`] does, but stops
    /// before driving it: [`Reopened::Settled`] when it had already ended.
    pub async fn reopen(
        &self,
        run: &str,
        env_for: impl FnOnce(&Path) -> RunEnv,
        sinks: Vec<Box<dyn EventSink>>,
    ) -> Result<Reopened, RunError> {
        self.reopen_as(run, env_for, sinks, false).await
    }

    /// Takes a failed (or stopped) run up again to try what did not work
    /// once more: its dead tasks and the tasks skipped because of them are
    /// queued again, each with its retries anew; finished tasks stay
    /// finished. A run that succeeded, was not accepted or was cancelled
    /// is [`Reopened::Settled`].
    pub async fn reopen_to_retry(
        &self,
        run: &str,
        env_for: impl FnOnce(&Path) -> RunEnv,
        sinks: Vec<Box<dyn EventSink>>,
    ) -> Result<Reopened, RunError> {
        self.reopen_as(run, env_for, sinks, true).await
    }

    async fn reopen_as(
        &self,
        run: &str,
        env_for: impl FnOnce(&Path) -> RunEnv,
        sinks: Vec<Box<dyn EventSink>>,
        retry: bool,
    ) -> Result<Reopened, RunError> {
        let path = self.existing_journal(run)?;
        let records = journal::read(&path)
            .map_err(|e| RunError::Files(format!("cannot read the journal of run {run}: {e}")))?;
        let state = RunState::replay(&records);
        let env = env_for(&state.base_dir);
        // Another tenant's run looks like no run at all.
        if state.tenant != env.tenant {
            return Err(self.no_such_run(run));
        }
        let lock = lock(&self.dir(run))?;
        let (journal, records) = Journal::open(&path)
            .map_err(|e| RunError::Files(format!("cannot read the journal of run {run}: {e}")))?;
        let state = RunState::replay(&records);
        let Some(workflow) = state.workflow.clone() else {
            return Err(RunError::Files(format!(
                "the journal of run {run} does not start with the run"
            )));
        };
        if let Some(status) = ended(&state)
            && !(retry && status == RunStatus::Failed)
        {
            return Ok(Reopened::Settled(Finished {
                run: run.to_string(),
                status,
                state,
            }));
        }
        let used = state.usage();
        let totals = Totals {
            calls: used.llm_calls,
            input_tokens: used.input_tokens,
            output_tokens: used.output_tokens,
            cost: used.cost,
        };
        // The workspace is where the run's directory says, whatever the
        // journal (a file tools may have reached) claims.
        let workspace = self.dir(run).join("workspace");
        let executor = WasmExecutor::prepare(&workflow, &env, run, &workspace, totals).await?;
        let recorder = Arc::new(Recorder::new(journal, state, sinks));
        recorder.record(Event::RunResumed {
            run: run.to_string(),
            retry,
        })?;
        Ok(Reopened::Started(Started::new(
            run.to_string(),
            recorder,
            executor,
            workflow,
            lock,
        )))
    }

    /// Cancels `run`, which no process is driving: its unfinished tasks
    /// are skipped with `reason` and it ends cancelled, so that it is not
    /// taken up again. A run that had ended keeps its status; a run
    /// another process drives is `Busy` (cancel it there); another
    /// tenant's run is not found.
    pub fn cancel(&self, run: &str, tenant: &TenantId, reason: &str) -> Result<Finished, RunError> {
        let path = self.existing_journal(run)?;
        let lock = lock(&self.dir(run))?;
        let (journal, records) = Journal::open(&path)
            .map_err(|e| RunError::Files(format!("cannot read the journal of run {run}: {e}")))?;
        let state = RunState::replay(&records);
        if state.tenant != *tenant {
            return Err(self.no_such_run(run));
        }
        let recorder = Recorder::new(journal, state, Vec::new());
        let status = scheduler::record_cancelled(&recorder, reason)?;
        drop(lock);
        Ok(Finished {
            run: run.to_string(),
            status,
            state: recorder.state(RunState::clone),
        })
    }

    /// The state of one run, from its journal.
    pub fn load(&self, run: &str) -> Result<RunState, RunError> {
        let path = self.existing_journal(run)?;
        let records = journal::read(&path)
            .map_err(|e| RunError::Files(format!("cannot read the journal of run {run}: {e}")))?;
        Ok(RunState::replay(&records))
    }

    /// Every run, oldest first.
    pub fn list(&self) -> Vec<RunState> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("journal.jsonl").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids.iter().filter_map(|id| self.load(id).ok()).collect()
    }
}

/// A run whose journal is open and whose plugins are loaded, holding the
/// run's lock until it is driven to its end (or dropped: then it stops
/// where it is, resumable).
pub struct Started {
    run: String,
    recorder: Arc<Recorder>,
    executor: WasmExecutor,
    workflow: Workflow,
    lock: File,
    canceller: Canceller,
    stop: watch::Receiver<Option<String>>,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

impl Started {
    fn new(
        run: String,
        recorder: Arc<Recorder>,
        executor: WasmExecutor,
        workflow: Workflow,
        lock: File,
    ) -> Started {
        let (canceller, stop) = Canceller::new();
        Started {
            run,
            recorder,
            executor,
            workflow,
            lock,
            canceller,
            stop,
        }
    }

    /// The run's id.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// What cancels the run while [`Started::drive`] drives it.
    pub fn canceller(&self) -> Canceller {
        self.canceller.clone()
    }

    /// Runs the tasks until the run ends (or cannot go on).
    pub async fn drive(self) -> Result<Finished, RunError> {
        let Started {
            run,
            recorder,
            executor,
            workflow,
            lock,
            canceller: _,
            stop,
        } = self;
        let scheduler = Scheduler::new(
            recorder.clone(),
            Arc::new(executor),
            workflow.run.clone(),
            workflow.budget.clone(),
            workflow.roles.keys().cloned(),
        )
        .cancelled_by(stop);
        let status = scheduler.drive().await;
        drop(lock);
        let state = recorder.state(|s| s.clone());
        Ok(Finished {
            run,
            status: status?,
            state,
        })
    }
}

/// What [`Runs::reopen`] found.
#[derive(Debug)]
pub enum Reopened {
    /// The run had ended; nothing to do.
    Settled(Finished),
    Started(Started),
}

/// The tasks a new run of `workflow` starts with, the workflow checked:
/// its own, or (with none) its planner's task for the goal. `goal`, when
/// given, replaces the workflow's.
pub fn first_tasks(
    workflow: &mut Workflow,
    goal: Option<String>,
) -> Result<Vec<TaskSpec>, RunError> {
    if let Some(goal) = goal {
        workflow.goal = goal;
    }
    let mut tasks: Vec<TaskSpec> = workflow.tasks.iter().map(TaskSpec::from).collect();
    if tasks.is_empty() {
        let planner = workflow.run.planner.clone();
        if !workflow.roles.contains_key(&planner) {
            return Err(WorkflowError::Invalid(format!(
                "the workflow has no tasks and no `{planner}` role to plan them; add `[[tasks]]` or a `[roles.{planner}]`"
            ))
            .into());
        }
        if workflow.goal.trim().is_empty() {
            return Err(WorkflowError::Invalid(
                "the workflow has no tasks and no goal; give one with --goal".into(),
            )
            .into());
        }
        tasks.push(TaskSpec {
            id: "plan".into(),
            role: planner,
            instructions: "Break the goal into tasks for the roles of this run.".into(),
            depends_on: Vec::new(),
            priority: 100,
            max_retries: 2,
            timeout: None,
            tokens: None,
            input: serde_json::Value::Null,
            parent: None,
        });
    }
    workflow.check()?;
    Ok(tasks)
}

/// How `state`'s run ended, if it has: cancelled as recorded, otherwise
/// as its tasks say.
pub fn ended(state: &RunState) -> Option<RunStatus> {
    match state.status? {
        RunStatus::Cancelled => Some(RunStatus::Cancelled),
        _ if state.settled() => Some(state.outcome_status()),
        _ => None,
    }
}

/// Holds the run's lock file: one process per run at a time.
fn lock(dir: &Path) -> Result<File, RunError> {
    let path = dir.join("lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| RunError::Files(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(RunError::Busy(format!(
            "another warden is working on run {}; wait for it, or stop it first",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or_default()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(RunError::Files(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// Whether `run` can be a run id: 1 to 64 of `a-z`, `0-9` and `-` (what
/// [`new_run_id`] makes). Anything else (`/abs`, `../x`) is refused before
/// it becomes part of a path.
pub fn check_run_id(run: &str) -> Result<(), RunError> {
    let ok = !run.is_empty()
        && run.len() <= 64
        && run
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(RunError::NotFound(format!(
            "{run:?} is not a run id (they look like 20261122-153012-3fa9c01e); `warden runs list` shows the runs"
        )))
    }
}

/// `20261122-153012-3fa9c01e`: sortable by start time, unique enough with the
/// random tail.
pub fn new_run_id() -> String {
    let ms = journal::now_ms();
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}-{:08x}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        rand::random::<u32>()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A run no process drives, cancelled: its unfinished tasks skipped,
    /// ended for good (what resuming looks at), and only by its tenant.
    #[test]
    fn a_stopped_run_is_cancelled_for_good_by_its_tenant_only() {
        let data = tempfile::tempdir().unwrap();
        let runs = Runs::new(data.path());
        let dir = runs.dir("r1");
        std::fs::create_dir_all(&dir).unwrap();
        let mut journal = Journal::create(&dir.join("journal.jsonl")).unwrap();
        let acme = TenantId::new("acme").unwrap();
        journal
            .append(Event::RunStarted {
                run: "r1".into(),
                workflow: Workflow::goal().unwrap(),
                goal: "g".into(),
                workspace: dir.join("workspace"),
                base_dir: data.path().into(),
                tenant: acme.clone(),
            })
            .unwrap();
        journal
            .append(Event::TaskQueued {
                task: TaskSpec {
                    id: "plan".into(),
                    role: "planner".into(),
                    instructions: "plan".into(),
                    depends_on: Vec::new(),
                    priority: 0,
                    max_retries: 0,
                    timeout: None,
                    tokens: None,
                    input: json!(null),
                    parent: None,
                },
            })
            .unwrap();
        drop(journal);
        assert_eq!(ended(&runs.load("r1").unwrap()), None);

        let bolt = TenantId::new("bolt").unwrap();
        assert!(matches!(
            runs.cancel("r1", &bolt, "x"),
            Err(RunError::NotFound(_))
        ));
        let finished = runs.cancel("r1", &acme, "not needed").unwrap();
        assert_eq!(finished.status, RunStatus::Cancelled);
        let state = runs.load("r1").unwrap();
        assert_eq!(ended(&state), Some(RunStatus::Cancelled));
        assert_eq!(state.tasks[0].status, TaskStatus::Skipped);
        // Again: the same answer, nothing more written.
        let lines = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
        assert_eq!(
            runs.cancel("r1", &acme, "again").unwrap().status,
            RunStatus::Cancelled
        );
        let after = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
        assert_eq!(lines, after);
    }

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
