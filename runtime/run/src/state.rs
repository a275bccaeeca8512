//! A run's state: the journal's events folded in order. The scheduler
//! changes it only by recording events, so the live state and the state a
//! resume rebuilds are the same function of the same journal.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;
use warden_core::{Outcome, TenantId, ToolCallKey};

use crate::journal::{Event, Record, RunStatus};
use crate::workflow::{TaskSpec, Workflow};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskStatus {
    /// Waiting for its dependencies, a free slot or its retry time.
    Pending,
    Running,
    Done,
    /// Out of attempts: on the dead-letter list.
    Dead,
    /// A dependency is dead or skipped.
    Skipped,
}

/// What a task used, over all its attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TaskUsage {
    pub fuel: u64,
    pub ms: u64,
    pub llm_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: f64,
    pub tool_calls: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskState {
    pub spec: TaskSpec,
    pub status: TaskStatus,
    /// Attempts that ended in failure.
    pub failures: u32,
    /// Failures before the run was retried, which no longer count against
    /// the task's retries.
    pub failures_forgiven: u32,
    /// The attempt running now (or last run).
    pub attempt: u32,
    pub last_error: Option<String>,
    pub outcome: Option<Outcome>,
    /// Why it was skipped.
    pub skipped_because: Option<String>,
    pub usage: TaskUsage,
    /// Results of tool calls that succeeded, by key, over all attempts: what
    /// a later attempt gets back instead of repeating the side effect.
    #[serde(skip)]
    pub recorded: HashMap<ToolCallKey, String>,
    /// Order of queueing, for ties in priority.
    pub order: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunState {
    pub run: String,
    /// Whose run it is.
    pub tenant: TenantId,
    pub workflow: Option<Workflow>,
    pub goal: String,
    pub workspace: PathBuf,
    pub base_dir: PathBuf,
    pub tasks: Vec<TaskState>,
    pub status: Option<RunStatus>,
    /// Milliseconds since the Unix epoch of the first event.
    pub started_ms: u64,
    /// Time spent running, over every process that worked on the run.
    pub active_ms: u64,
    #[serde(skip)]
    session_started_ms: Option<u64>,
    #[serde(skip)]
    last_ts: u64,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

impl RunState {
    /// The state a journal's records describe.
    pub fn replay(records: &[Record]) -> RunState {
        let mut state = RunState::default();
        for record in records {
            state.apply(record);
        }
        state
    }

    pub fn task(&self, id: &str) -> Option<&TaskState> {
        self.index.get(id).map(|&i| &self.tasks[i])
    }

    fn task_mut(&mut self, id: &str) -> Option<&mut TaskState> {
        self.index.get(id).map(|&i| &mut self.tasks[i])
    }

    /// Folds one record in.
    pub fn apply(&mut self, record: &Record) {
        // Time between the last record of one process and the first of the
        // next was not spent running.
        if !matches!(record.event, Event::RunResumed { .. })
            && let Some(start) = self.session_started_ms
        {
            self.active_ms += record.ts.saturating_sub(self.last_ts.max(start));
        }
        self.last_ts = record.ts;
        match &record.event {
            Event::RunStarted {
                run,
                workflow,
                goal,
                workspace,
                base_dir,
                tenant,
            } => {
                self.tenant = tenant.clone();
                self.base_dir = base_dir.clone();
                self.run = run.clone();
                self.workflow = Some(workflow.clone());
                self.goal = goal.clone();
                self.workspace = workspace.clone();
                self.started_ms = record.ts;
                self.session_started_ms = Some(record.ts);
            }
            Event::RunResumed { retry, .. } => {
                self.session_started_ms = Some(record.ts);
                self.status = None;
                for task in &mut self.tasks {
                    match task.status {
                        TaskStatus::Running => task.status = TaskStatus::Pending,
                        TaskStatus::Dead | TaskStatus::Skipped if *retry => {
                            task.status = TaskStatus::Pending;
                            task.failures_forgiven = task.failures;
                            task.skipped_because = None;
                        }
                        _ => {}
                    }
                }
            }
            Event::TaskQueued { task } => {
                let order = self.tasks.len();
                self.index.insert(task.id.clone(), order);
                self.tasks.push(TaskState {
                    spec: task.clone(),
                    status: TaskStatus::Pending,
                    failures: 0,
                    failures_forgiven: 0,
                    attempt: 0,
                    last_error: None,
                    outcome: None,
                    skipped_because: None,
                    usage: TaskUsage::default(),
                    recorded: HashMap::new(),
                    order,
                });
            }
            Event::TaskStarted { task, attempt, .. } => {
                if let Some(t) = self.task_mut(task) {
                    t.status = TaskStatus::Running;
                    t.attempt = *attempt;
                }
            }
            Event::ToolCall {
                task,
                key,
                ok,
                result,
                truncated,
                replayed,
                ..
            } => {
                // Tool fuel is part of the attempt's fuel, counted when it
                // ends.
                if let Some(t) = self.task_mut(task) {
                    if *ok && !truncated {
                        t.recorded.insert(key.clone(), result.clone());
                    }
                    if !replayed {
                        t.usage.tool_calls += 1;
                    }
                }
            }
            Event::LlmCall {
                task,
                input_tokens,
                output_tokens,
                cost,
                ..
            } => {
                if let Some(t) = self.task_mut(task) {
                    t.usage.llm_calls += 1;
                    t.usage.input_tokens += input_tokens;
                    t.usage.output_tokens += output_tokens;
                    t.usage.cost += cost;
                }
            }
            Event::TaskFinished {
                task,
                outcome,
                fuel_used,
                ms,
                ..
            } => {
                if let Some(t) = self.task_mut(task) {
                    t.status = TaskStatus::Done;
                    t.outcome = Some(outcome.clone());
                    t.usage.fuel += fuel_used;
                    t.usage.ms += ms;
                }
            }
            Event::TaskFailed {
                task,
                error,
                fuel_used,
                ms,
                ..
            } => {
                if let Some(t) = self.task_mut(task) {
                    t.status = TaskStatus::Pending;
                    t.failures += 1;
                    t.last_error = Some(error.clone());
                    t.usage.fuel += fuel_used;
                    t.usage.ms += ms;
                }
            }
            Event::TaskDead { task, error, .. } => {
                if let Some(t) = self.task_mut(task) {
                    t.status = TaskStatus::Dead;
                    t.last_error = Some(error.clone());
                }
            }
            Event::TaskSkipped { task, because } => {
                if let Some(t) = self.task_mut(task) {
                    t.status = TaskStatus::Skipped;
                    t.skipped_because = Some(because.clone());
                }
            }
            Event::RunFinished { status } => {
                self.status = Some(*status);
                self.session_started_ms = None;
            }
        }
    }

    /// Totals over every task.
    pub fn usage(&self) -> TaskUsage {
        let mut total = TaskUsage::default();
        for t in &self.tasks {
            total.fuel += t.usage.fuel;
            total.ms += t.usage.ms;
            total.llm_calls += t.usage.llm_calls;
            total.input_tokens += t.usage.input_tokens;
            total.output_tokens += t.usage.output_tokens;
            total.cost += t.usage.cost;
            total.tool_calls += t.usage.tool_calls;
        }
        total
    }

    /// Tasks ready to start: pending, every dependency done. Highest
    /// priority first, then in the order they were queued.
    pub fn ready(&self) -> Vec<&TaskState> {
        let mut ready: Vec<&TaskState> = self
            .tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Pending)
            .filter(|t| {
                t.spec
                    .depends_on
                    .iter()
                    .all(|d| self.task(d).is_some_and(|d| d.status == TaskStatus::Done))
            })
            .collect();
        ready.sort_by(|a, b| {
            b.spec
                .priority
                .cmp(&a.spec.priority)
                .then(a.order.cmp(&b.order))
        });
        ready
    }

    /// Pending tasks that can never run because a dependency is dead or
    /// skipped, each with the dependency that stopped it.
    pub fn blocked(&self) -> Vec<(String, String)> {
        self.tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Pending)
            .filter_map(|t| {
                t.spec
                    .depends_on
                    .iter()
                    .find(|d| {
                        self.task(d).is_some_and(|d| {
                            matches!(d.status, TaskStatus::Dead | TaskStatus::Skipped)
                        })
                    })
                    .map(|d| (t.spec.id.clone(), d.clone()))
            })
            .collect()
    }

    /// Whether every task is done, dead or skipped.
    pub fn settled(&self) -> bool {
        self.tasks.iter().all(|t| {
            matches!(
                t.status,
                TaskStatus::Done | TaskStatus::Dead | TaskStatus::Skipped
            )
        })
    }

    /// Succeeded when every task is done.
    pub fn outcome_status(&self) -> RunStatus {
        if !self.tasks.iter().all(|t| t.status == TaskStatus::Done) {
            return RunStatus::Failed;
        }
        match self.verdict() {
            Some((false, _)) => RunStatus::NotAccepted,
            _ => RunStatus::Succeeded,
        }
    }

    /// The last verdict on the work: the latest-queued finished task whose
    /// output says `"accepted": true|false` (a reviewer's), with that task's
    /// summary, which says why.
    pub fn verdict(&self) -> Option<(bool, &TaskState)> {
        self.tasks.iter().rev().find_map(|t| {
            let accepted = t.outcome.as_ref()?.output.get("accepted")?.as_bool()?;
            Some((accepted, t))
        })
    }

    /// The dead-letter list: tasks out of attempts, with their last error.
    pub fn dead_letters(&self) -> Vec<(&str, &str)> {
        self.tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Dead)
            .map(|t| {
                (
                    t.spec.id.as_str(),
                    t.last_error.as_deref().unwrap_or_default(),
                )
            })
            .collect()
    }
}
