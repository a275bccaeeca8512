//! The work queue: a run's ready tasks as messages on a work-queue stream
//! per tenant (`WARDEN_WORK_<tenant>`, subject `work.<tenant>`), worked by
//! whichever node pulls them, the run's journal deciding everything else.
//!
//! - A task is enqueued with the message id `<run>/<task>/<attempt>`, so
//!   that nodes racing to enqueue it write one message.
//! - The tenant's consumer (`workers`, shared by every node) has the
//!   tenant's concurrency quota as its max-ack-pending: the server hands
//!   out no more of the tenant's tasks at once, whichever nodes ask.
//! - A node working a task tells JetStream so (in-progress) well within
//!   the ack wait; a node that stops (killed, paused, cut off) stops
//!   telling it, and the task is delivered to another node, which folds
//!   the journal and goes on: the tool calls the interrupted attempt
//!   finished are answered from the journal. The first append of the new
//!   owner moves the task's subject on, so the old owner's next append is
//!   refused and it stops working the task.
//! - A failed attempt is a nak with the scheduler's backoff; a task whose
//!   attempts keep starting and never ending (its node dies each time)
//!   goes to the dead letters (`WARDEN_DEAD`) and the journal says so; a
//!   delivery this node could not even start (JetStream out of reach) is
//!   not counted. A task the journal shows ended is acked and skipped.
//! - After a task ends, its node skips what can no longer run, enqueues
//!   what is ready, and records the run's end when nothing is left; only
//!   then is the message acked, so a node that dies in between leaves the
//!   message to a node that does it again.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, RetentionPolicy};
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, TryAcquireError};
use warden_run::journal::now_ms;
use warden_run::scheduler::{Executor, skip_blocked};
use warden_run::{Event, EventSink, Record, Recorder, RunError, RunState, Scheduler, TaskStatus};

use crate::journal::JetStreamJournal;
use crate::nats::{ClusterError, Nats, jetstream_error};

/// The dead letters of every tenant: `dead.<tenant>.<run>.<task>`.
pub const DEAD_STREAM: &str = "WARDEN_DEAD";

/// The consumer every node pulls a tenant's tasks from.
const CONSUMER: &str = "workers";

/// How long JetStream remembers an enqueue's message id.
const DEDUP_WINDOW: Duration = Duration::from_secs(600);

/// Tries of a decision about a whole run (skip, enqueue, end) that lost a
/// race with another node's write to the run.
const ADVANCE_TRIES: u32 = 8;

/// How the work queue behaves.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// How long a task may go without word from its node before it is
    /// delivered to another. The node says it is working at a third of it.
    pub ack_wait: Duration,
    /// Copies of each stream (1 on a single NATS server, 3 in a cluster).
    pub replicas: usize,
    /// Attempts of a task in a row that may start and never end (its node
    /// died each time) before it goes to the dead letters.
    pub crash_allowance: u32,
    /// How long a node's request for a task waits at the server.
    pub pull_wait: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            ack_wait: Duration::from_secs(30),
            replicas: 1,
            crash_allowance: 2,
            pull_wait: Duration::from_secs(5),
        }
    }
}

/// One task to work on.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    run: String,
    task: String,
}

fn stream_name(tenant: &str) -> String {
    format!("WARDEN_WORK_{tenant}")
}

fn work_subject(tenant: &str) -> String {
    format!("work.{tenant}")
}

/// What a node needs to work a run's tasks: the run's executor (its
/// workflow's plugins loaded for its tenant) and who hears its events.
pub trait Runner: Send + Sync + 'static {
    fn executor(&self, state: &RunState)
    -> BoxFuture<'static, Result<Arc<dyn Executor>, RunError>>;

    fn sinks(&self, state: &RunState) -> Vec<Box<dyn EventSink>>;
}

/// Makes the dead-letter stream if it is missing.
pub async fn ensure_dead_letters(nats: &Nats, replicas: usize) -> Result<(), ClusterError> {
    nats.ensure_stream(stream::Config {
        name: DEAD_STREAM.into(),
        subjects: vec!["dead.>".into()],
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        ..Default::default()
    })
    .await
}

/// Makes `tenant`'s queue and its consumer if missing, and sets the
/// consumer's max-ack-pending to `concurrency`: the tenant's tasks at once
/// across the cluster.
pub async fn ensure_queue(
    nats: &Nats,
    tenant: &str,
    concurrency: u32,
    settings: &QueueSettings,
) -> Result<PullConsumer, ClusterError> {
    let jetstream = nats.jetstream().clone();
    let name = stream_name(tenant);
    let subject = work_subject(tenant);
    let replicas = settings.replicas.max(1);
    let ack_wait = settings.ack_wait;
    nats.run(async move {
        let stream = jetstream
            .get_or_create_stream(stream::Config {
                name,
                subjects: vec![subject],
                retention: RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                num_replicas: replicas,
                duplicate_window: DEDUP_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(jetstream_error)?;
        // On a 2.9 server, creating a durable consumer that exists updates
        // what may change (max-ack-pending, ack wait).
        stream
            .create_consumer(pull::Config {
                durable_name: Some(CONSUMER.into()),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait,
                max_ack_pending: i64::from(concurrency.max(1)),
                ..Default::default()
            })
            .await
            .map_err(jetstream_error)
    })
    .await?
}

/// Puts `tenant`'s task `task` of run `run` on the queue; racing enqueues
/// of one attempt collapse into one message.
async fn enqueue(
    nats: &Nats,
    tenant: &str,
    run: &str,
    task: &str,
    attempt: u32,
) -> Result<(), ClusterError> {
    let payload = serde_json::to_vec(&Job {
        run: run.to_string(),
        task: task.to_string(),
    })
    .map_err(|e| ClusterError::JetStream(e.to_string()))?;
    let message = PublishMessage::build()
        .payload(payload.into())
        .message_id(format!("{run}/{task}/{attempt}"));
    nats.publish(work_subject(tenant), message).await
}

/// After a change to `tenant`'s run `run`: skips the tasks that can no
/// longer run, enqueues the ready ones (each first attempt of a round; a
/// retry is the nak'd message itself) and records the run's end once
/// nothing is left. Safe to do from any node at any time: a lost race with
/// another node's write is read again.
pub async fn advance(
    nats: &Nats,
    tenant: &str,
    run: &str,
    sinks: impl Fn() -> Vec<Box<dyn EventSink>>,
) -> Result<(), ClusterError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let (journal, records) = JetStreamJournal::open(nats, tenant, run).await?;
        let state = RunState::replay(&records);
        if state.workflow.is_none() || state.status.is_some() {
            return Ok(());
        }
        let recorder = Recorder::new(journal, state, sinks());
        let decided = decide(&recorder);
        match decided {
            Ok(ready) => {
                for (task, attempt) in ready {
                    enqueue(nats, tenant, run, &task, attempt).await?;
                }
                return Ok(());
            }
            // Another node wrote to the run in between: read it again.
            Err(e) if tries < ADVANCE_TRIES => {
                tracing::debug!(%tenant, %run, error = %e, "the run moved on while deciding; reading it again");
            }
            Err(e) => return Err(ClusterError::JetStream(e.to_string())),
        }
    }
}

/// The writes of [`advance`] through `recorder`: the tasks to enqueue.
fn decide(recorder: &Recorder) -> Result<Vec<(String, u32)>, RunError> {
    skip_blocked(recorder)?;
    if recorder.state(RunState::settled) {
        let status = recorder.state(RunState::outcome_status);
        recorder.record(Event::RunFinished { status })?;
        return Ok(Vec::new());
    }
    Ok(recorder.state(|s| {
        s.ready()
            .into_iter()
            .filter(|t| t.failures == t.failures_forgiven)
            .map(|t| (t.spec.id.clone(), t.failures + 1))
            .collect()
    }))
}

/// One node's worker: pulls tasks of the tenants it serves and works them,
/// at most `slots` at once on this node.
pub struct Worker {
    nats: Nats,
    /// This node's name, in the starts of the attempts it works.
    node: String,
    runner: Arc<dyn Runner>,
    settings: QueueSettings,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// How handling one delivery ended, for the log and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// An attempt ran to its end; the task finished, died or was skipped.
    Ended,
    /// An attempt failed and the task is tried again after the delay.
    Retry(Duration),
    /// The journal showed the task ended (or the run gone): acked.
    Skipped,
    /// Another delivery of the task is being worked: acked.
    Duplicate,
    /// Another node took the task over: this node stopped working it.
    Fenced,
    /// Its attempts kept starting and never ending: on the dead letters.
    Dead,
    /// Waiting for the backoff of an earlier failure.
    NotYet(Duration),
}

impl Worker {
    pub fn new(
        nats: Nats,
        node: impl Into<String>,
        runner: Arc<dyn Runner>,
        settings: QueueSettings,
        slots: usize,
    ) -> Worker {
        Worker {
            nats,
            node: node.into(),
            runner,
            settings,
            slots: Arc::new(Semaphore::new(slots.max(1))),
        }
    }

    /// Makes `tenant`'s queue (its concurrency quota the consumer's
    /// max-ack-pending) and works its tasks until the returned handle is
    /// aborted.
    /// Makes `tenant`'s queue if missing (see [`ensure_queue`]).
    pub async fn ensure_queue(&self, tenant: &str, concurrency: u32) -> Result<(), ClusterError> {
        ensure_queue(&self.nats, tenant, concurrency, &self.settings)
            .await
            .map(drop)
    }

    pub async fn serve_tenant(
        self: &Arc<Self>,
        tenant: &str,
        concurrency: u32,
    ) -> Result<tokio::task::JoinHandle<()>, ClusterError> {
        let consumer = ensure_queue(&self.nats, tenant, concurrency, &self.settings).await?;
        let worker = self.clone();
        let tenant = tenant.to_string();
        Ok(tokio::spawn(async move {
            worker.pull_loop(tenant, consumer).await;
        }))
    }

    async fn pull_loop(self: Arc<Self>, tenant: String, consumer: PullConsumer) {
        loop {
            // Ask only while this node has room; the request itself holds
            // no slot, so a tenant with nothing to do keeps no other
            // tenant's task waiting.
            match self.slots.acquire().await {
                Ok(permit) => drop(permit),
                Err(_) => return,
            }
            let consumer = consumer.clone();
            let wait = self.settings.pull_wait;
            let fetched = self
                .nats
                .run(async move {
                    // A long poll: the server holds the request until a task
                    // comes or `wait` has passed. (`fetch` answers at once
                    // when the queue is empty, and an idle node would ask
                    // again and again.)
                    let mut messages = consumer
                        .batch()
                        .max_messages(1)
                        .expires(wait)
                        .messages()
                        .await
                        .map_err(jetstream_error)?;
                    match messages.next().await {
                        Some(Ok(message)) => Ok(Some(message)),
                        Some(Err(e)) => Err(jetstream_error(e)),
                        None => Ok(None),
                    }
                })
                .await;
            let message = match fetched {
                Ok(Ok(Some(message))) => Arc::new(message),
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => {
                    tracing::warn!(%tenant, error = %e, "cannot fetch a task; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(_) => return,
            };
            // Other tenants' tasks may have taken the room meanwhile: then
            // the task goes back at once, to a node that has some.
            let permit = match self.slots.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(TryAcquireError::NoPermits) => {
                    if let Err(e) = self.reply(&message, AckKind::Nak(None)).await {
                        tracing::warn!(%tenant, error = %e, "cannot hand a task back");
                    }
                    continue;
                }
                Err(TryAcquireError::Closed) => return,
            };
            let worker = self.clone();
            let tenant = tenant.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match worker.handle(&tenant, message).await {
                    Ok(handled) => tracing::debug!(%tenant, ?handled, "task delivery handled"),
                    Err(e) => tracing::warn!(%tenant, error = %e, "a task delivery failed"),
                }
            });
        }
    }

    /// Acknowledges `message` as `kind`.
    async fn reply(
        &self,
        message: &Arc<async_nats::jetstream::Message>,
        kind: AckKind,
    ) -> Result<(), ClusterError> {
        let message = message.clone();
        self.nats
            .run(async move { message.ack_with(kind).await.map_err(jetstream_error) })
            .await?
    }

    /// Works one delivery of a task.
    pub async fn handle(
        &self,
        tenant: &str,
        message: Arc<async_nats::jetstream::Message>,
    ) -> Result<Handled, ClusterError> {
        let Ok(job) = serde_json::from_slice::<Job>(&message.payload) else {
            tracing::warn!(%tenant, "a message on the work queue is not a task; dropping it");
            self.reply(&message, AckKind::Term).await?;
            return Ok(Handled::Skipped);
        };
        let delivered = message
            .info()
            .map_or(1, |info| info.delivered.max(1) as u32);
        let (journal, records) = JetStreamJournal::open(&self.nats, tenant, &job.run).await?;
        let state = RunState::replay(&records);
        let Some(workflow) = state.workflow.clone() else {
            self.reply(&message, AckKind::Term).await?;
            return Ok(Handled::Skipped);
        };
        let Some(task) = state.task(&job.task).cloned() else {
            self.reply(&message, AckKind::Term).await?;
            return Ok(Handled::Skipped);
        };
        let sinks = || self.runner.sinks(&state);
        if state.status.is_some() {
            self.reply(&message, AckKind::Ack).await?;
            return Ok(Handled::Skipped);
        }
        match task.status {
            TaskStatus::Done | TaskStatus::Dead | TaskStatus::Skipped => {
                // Its node may have died before it moved the run on.
                advance(&self.nats, tenant, &job.run, sinks).await?;
                self.reply(&message, AckKind::Ack).await?;
                return Ok(Handled::Skipped);
            }
            // A first delivery of a task another delivery works on.
            TaskStatus::Running if delivered == 1 => {
                self.reply(&message, AckKind::Ack).await?;
                return Ok(Handled::Duplicate);
            }
            _ => {}
        }
        // A failure's backoff that a dead node's redelivery cut short.
        if task.status == TaskStatus::Pending
            && let Some(wait) = backoff_left(&records, &job.task)
        {
            self.reply(&message, AckKind::Nak(Some(wait))).await?;
            return Ok(Handled::NotYet(wait));
        }
        let silent = unended_starts(&records, &job.task);
        if silent > self.settings.crash_allowance {
            let error = format!(
                "its last {silent} attempt(s) started and never ended: the node working it stopped each time"
            );
            self.dead_letter(tenant, &job, &error).await?;
            let recorder = Recorder::new(journal, state.clone(), sinks());
            let attempts = task.failures;
            let recorded = recorder.record(Event::TaskDead {
                task: job.task.clone(),
                attempts,
                error,
            });
            if recorded.is_err() {
                return Ok(Handled::Fenced);
            }
            advance(&self.nats, tenant, &job.run, sinks).await?;
            self.reply(&message, AckKind::Term).await?;
            return Ok(Handled::Dead);
        }

        let executor = match self.runner.executor(&state).await {
            Ok(executor) => executor,
            Err(e) => {
                // The node cannot load the run's plugins (another node may):
                // tried again after a while.
                tracing::warn!(%tenant, run = %job.run, error = %e, "cannot prepare the run here");
                self.reply(&message, AckKind::Nak(Some(self.settings.ack_wait)))
                    .await?;
                return Err(ClusterError::JetStream(e.to_string()));
            }
        };
        let recorder = Arc::new(Recorder::new(journal, state.clone(), sinks()));
        let scheduler = Scheduler::new(
            recorder.clone(),
            executor.clone(),
            workflow.run.clone(),
            workflow.budget.clone(),
            workflow.roles.keys().cloned(),
        )
        .on_node(self.node.clone());
        let started = match scheduler.dead_of_spent_budget(&job.task) {
            Ok(true) => Ok(None),
            Ok(false) => scheduler.start(&job.task).map(Some),
            Err(e) => Err(e),
        };
        let attempt = match started {
            Ok(Some(attempt)) => attempt,
            Ok(None) => {
                advance(&self.nats, tenant, &job.run, sinks).await?;
                self.reply(&message, AckKind::Ack).await?;
                return Ok(Handled::Ended);
            }
            Err(e) => {
                tracing::info!(%tenant, run = %job.run, task = %job.task, error = %e, "another node holds the task");
                return Ok(Handled::Fenced);
            }
        };
        let number = attempt.number;
        let end = {
            let run = executor.run(attempt);
            tokio::pin!(run);
            let mut beat = tokio::time::interval(self.settings.ack_wait / 3);
            beat.tick().await;
            loop {
                tokio::select! {
                    end = &mut run => break end,
                    _ = beat.tick() => {
                        if let Err(e) = self.reply(&message, AckKind::Progress).await {
                            tracing::warn!(%tenant, run = %job.run, task = %job.task, error = %e, "cannot tell JetStream the task is in progress");
                        }
                    }
                }
            }
        };
        // A step of the attempt the journal refused: another node has it.
        if recorder.check().is_err() {
            tracing::info!(%tenant, run = %job.run, task = %job.task, "the task was taken over; this node stops working it");
            return Ok(Handled::Fenced);
        }
        match scheduler.finish(&job.task, number, end) {
            Ok(Some(delay)) => {
                self.reply(&message, AckKind::Nak(Some(delay))).await?;
                Ok(Handled::Retry(delay))
            }
            Ok(None) => {
                advance(&self.nats, tenant, &job.run, sinks).await?;
                self.reply(&message, AckKind::Ack).await?;
                Ok(Handled::Ended)
            }
            Err(e) => {
                tracing::info!(%tenant, run = %job.run, task = %job.task, error = %e, "the task's end was refused; another node has it");
                Ok(Handled::Fenced)
            }
        }
    }

    async fn dead_letter(&self, tenant: &str, job: &Job, error: &str) -> Result<(), ClusterError> {
        let payload = serde_json::to_vec(&serde_json::json!({
            "run": job.run,
            "task": job.task,
            "error": error,
            "ts": now_ms(),
        }))
        .map_err(|e| ClusterError::JetStream(e.to_string()))?;
        let message = PublishMessage::build().payload(payload.into());
        self.nats
            .publish(format!("dead.{tenant}.{}.{}", job.run, job.task), message)
            .await
    }
}

/// How many attempts of `task` in a row started and never ended (their
/// node died, or lost the task), since its last end or the run's retry.
/// A delivery that failed before an attempt started (this node could not
/// reach JetStream for a while) is not one.
fn unended_starts(records: &[Record], task: &str) -> u32 {
    let mut open = 0;
    for record in records {
        match &record.event {
            Event::TaskStarted { task: t, .. } if t == task => open += 1,
            Event::TaskFinished { task: t, .. }
            | Event::TaskFailed { task: t, .. }
            | Event::TaskDead { task: t, .. }
            | Event::TaskSkipped { task: t, .. }
                if t == task =>
            {
                open = 0;
            }
            Event::RunResumed { retry: true, .. } => open = 0,
            _ => {}
        }
    }
    open
}

/// What is left of the backoff of `task`'s last failure, if it is to be
/// tried again and that time has not come.
fn backoff_left(records: &[Record], task: &str) -> Option<Duration> {
    let (ts, retry_in_ms) = records.iter().rev().find_map(|r| match &r.event {
        Event::TaskFailed {
            task: t,
            retry_in_ms,
            ..
        } if t == task => Some((r.ts, *retry_in_ms)),
        Event::TaskStarted { task: t, .. } if t == task => Some((0, None)),
        _ => None,
    })?;
    let at = ts + retry_in_ms?;
    let now = now_ms();
    (at > now).then(|| Duration::from_millis(at - now))
}
