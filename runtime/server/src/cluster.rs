//! Runs on a cluster (`warden serve --cluster nats://…`): a run's journal
//! is on JetStream and its ready tasks on the tenant's work queue, so any
//! node starts, shows, follows, cancels and retries any run, and every
//! node works whichever tasks it pulls (`warden_cluster::work`). What a
//! node keeps to itself is only what it is doing right now.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use warden_api::budget::Totals;
use warden_cluster::journal::{self, JetStreamJournal};
use warden_cluster::work::{self, QueueSettings, Runner, Worker};
use warden_cluster::{ClusterError, Nats};
use warden_run::scheduler::{Executor, record_cancelled};
use warden_run::workflow::Workflow;
use warden_run::{
    Event, EventSink, Finished, Recorder, RunEnv, RunError, RunState, RunStatus, WasmExecutor,
};

use crate::run_answers::{Followed, Submission};
use crate::tenant::TenantRecord;

/// How a node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub nats: Nats,
    /// This node's name in logs.
    pub node: String,
    pub queue: QueueSettings,
    /// Tasks this node works at once, every tenant together.
    pub slots: usize,
}

/// What a cluster node needs of the server it is part of.
pub trait Host: Send + Sync + 'static {
    /// Every tenant, as the control state has them.
    fn tenants(&self) -> BoxFuture<'_, Result<Vec<TenantRecord>, RunError>>;

    /// Tenant `name`.
    fn tenant<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<TenantRecord, RunError>>;

    /// What a run of `record`'s tenant runs with.
    fn env<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, Result<RunEnv, RunError>>;

    /// The workspace of `tenant`'s run `run` on this node, made if missing.
    fn workspace(&self, tenant: &str, run: &str) -> Result<PathBuf, RunError>;

    /// What counts a run's use in its tenant's usage and the metrics.
    fn meters(&self, tenant: &str) -> Vec<Box<dyn EventSink>>;
}

/// Tries of a write to a whole run (cancel, retry) that lost a race with
/// another node's.
const RUN_WRITE_TRIES: u32 = 8;

/// How often a node looks for tenants added, changed or removed elsewhere.
const TENANT_SWEEP: Duration = Duration::from_secs(2);

/// This node's part of the cluster's runs.
pub struct ClusterRuns {
    nats: Nats,
    node: String,
    worker: Arc<Worker>,
    host: Weak<dyn Host>,
    /// The tenants whose queues this node pulls from, with the concurrency
    /// their consumer was set to.
    served: Mutex<HashMap<String, (u32, tokio::task::JoinHandle<()>)>>,
}

impl std::fmt::Debug for ClusterRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRuns")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn cluster_error(e: ClusterError) -> RunError {
    RunError::Files(format!("the cluster: {e}"))
}

/// What a worker of this node runs a task with: the run's tenant's
/// environment, as a run on one node gets it.
struct HostRunner(Weak<dyn Host>);

fn stopping() -> RunError {
    RunError::Busy("the server is stopping".into())
}

impl Runner for HostRunner {
    fn executor(
        &self,
        state: &RunState,
    ) -> futures::future::BoxFuture<'static, Result<Arc<dyn Executor>, RunError>> {
        let host = self.0.clone();
        let state = state.clone();
        async move {
            let host = host.upgrade().ok_or_else(stopping)?;
            let record = host.tenant(state.tenant.as_str()).await?;
            let env = host.env(&record).await?;
            let workflow = state
                .workflow
                .clone()
                .ok_or_else(|| RunError::Files("the run's journal has no start".into()))?;
            let used = state.usage();
            let totals = Totals {
                calls: used.llm_calls,
                input_tokens: used.input_tokens,
                output_tokens: used.output_tokens,
                cost: used.cost,
            };
            let workspace = host.workspace(&record.name, &state.run)?;
            let executor =
                WasmExecutor::prepare(&workflow, &env, &state.run, &workspace, totals).await?;
            Ok(Arc::new(executor) as Arc<dyn Executor>)
        }
        .boxed()
    }

    fn sinks(&self, state: &RunState) -> Vec<Box<dyn EventSink>> {
        match self.0.upgrade() {
            Some(host) => host.meters(state.tenant.as_str()),
            None => Vec::new(),
        }
    }
}

impl ClusterRuns {
    pub fn new(config: ClusterConfig, host: Weak<dyn Host>) -> ClusterRuns {
        let worker = Arc::new(Worker::new(
            config.nats.clone(),
            config.node.clone(),
            Arc::new(HostRunner(host.clone())),
            config.queue,
            config.slots,
        ));
        ClusterRuns {
            nats: config.nats,
            node: config.node,
            worker,
            host,
            served: Mutex::default(),
        }
    }

    fn host(&self) -> Result<Arc<dyn Host>, RunError> {
        self.host.upgrade().ok_or_else(stopping)
    }

    /// What counts `tenant`'s use on this node (nothing once stopping).
    fn meters(&self, tenant: &str) -> Vec<Box<dyn EventSink>> {
        self.host
            .upgrade()
            .map(|host| host.meters(tenant))
            .unwrap_or_default()
    }

    /// Pulls the tasks of every tenant in the control state, and keeps up
    /// with tenants added, changed or removed on any node.
    pub fn serve_tenants(self: &Arc<Self>) {
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TENANT_SWEEP);
            loop {
                every.tick().await;
                let Ok(host) = cluster.host() else { return };
                match host.tenants().await {
                    Ok(tenants) => cluster.serve(&tenants).await,
                    Err(e) => {
                        tracing::warn!(node = %cluster.node, error = %e, "cannot list the tenants")
                    }
                }
            }
        });
    }

    async fn serve(&self, tenants: &[TenantRecord]) {
        let wanted: HashMap<&str, u32> = tenants
            .iter()
            .map(|t| (t.name.as_str(), t.quotas.concurrent_calls))
            .collect();
        let stale: Vec<String> = {
            let served = self.served.lock().unwrap_or_else(|p| p.into_inner());
            served
                .iter()
                .filter(|(name, (concurrency, _))| wanted.get(name.as_str()) != Some(concurrency))
                .map(|(name, _)| name.clone())
                .collect()
        };
        for name in stale {
            self.stop_tenant(&name);
        }
        for (name, concurrency) in wanted {
            let serving = self
                .served
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(name);
            if serving {
                continue;
            }
            match self.worker.serve_tenant(name, concurrency).await {
                Ok(handle) => {
                    tracing::info!(node = %self.node, tenant = %name, concurrency, "working the tenant's tasks");
                    self.served
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name.to_string(), (concurrency, handle));
                }
                Err(e) => {
                    tracing::warn!(node = %self.node, tenant = %name, error = %e, "cannot work the tenant's tasks")
                }
            }
        }
    }

    /// Stops pulling `tenant`'s tasks here (tasks already pulled go on).
    pub fn stop_tenant(&self, tenant: &str) {
        if let Some((_, handle)) = self
            .served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant)
        {
            handle.abort();
        }
    }

    /// Starts a run: its first records on JetStream, its ready tasks on the
    /// tenant's queue. Its plugins are loaded here first, so that a
    /// workflow no node could run is refused now.
    pub async fn submit(
        &self,
        record: &TenantRecord,
        run: String,
        mut workflow: Workflow,
        goal: Option<String>,
    ) -> Result<String, Submission> {
        warden_run::check_run_id(&run).map_err(Submission::Refused)?;
        self.check_runs_in_flight(record).await?;
        let tasks = warden_run::first_tasks(&mut workflow, goal).map_err(Submission::Refused)?;
        // Before the first enqueue, which needs the queue.
        self.worker
            .ensure_queue(&record.name, record.quotas.concurrent_calls)
            .await
            .map_err(|e| Submission::Refused(cluster_error(e)))?;
        let host = self.host().map_err(Submission::Refused)?;
        let env = host.env(record).await.map_err(Submission::Refused)?;
        let workspace = host
            .workspace(&record.name, &run)
            .map_err(Submission::Refused)?;
        WasmExecutor::prepare(&workflow, &env, &run, &workspace, Totals::default())
            .await
            .map_err(Submission::Refused)?;
        let journal = JetStreamJournal::create(&self.nats, &record.name, &run);
        let recorder = Recorder::new(journal, RunState::default(), self.meters(&record.name));
        let first = Event::RunStarted {
            run: run.clone(),
            workflow: workflow.clone(),
            goal: workflow.goal.clone(),
            workspace,
            base_dir: env.base_dir.clone(),
            tenant: env.tenant.clone(),
        };
        let recorded = tokio::task::spawn_blocking(move || {
            recorder.record(first)?;
            for task in tasks {
                recorder.record(Event::TaskQueued { task })?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| Submission::Refused(RunError::Files(e.to_string())))?;
        recorded.map_err(|e| Submission::Refused(RunError::Journal(e)))?;
        self.advance(&record.name, &run)
            .await
            .map_err(Submission::Refused)?;
        tracing::info!(node = %self.node, tenant = %record.name, %run, "run started on the cluster");
        Ok(run)
    }

    /// `Busy` when `record`'s tenant has as many runs going, across the
    /// cluster, as its quota allows.
    async fn check_runs_in_flight(&self, record: &TenantRecord) -> Result<(), Submission> {
        let going = journal::runs_going(&self.nats, &record.name)
            .await
            .map_err(|e| Submission::Refused(cluster_error(e)))?;
        if going >= record.quotas.runs_in_flight as usize {
            return Err(Submission::Busy);
        }
        Ok(())
    }

    async fn advance(&self, tenant: &str, run: &str) -> Result<(), RunError> {
        work::advance(&self.nats, tenant, run, || self.meters(tenant))
            .await
            .map_err(cluster_error)
    }

    /// `tenant`'s run `run`, folded from its journal.
    pub async fn load(&self, tenant: &str, run: &str) -> Result<RunState, RunError> {
        warden_run::check_run_id(run)?;
        let records = journal::read_run(&self.nats, tenant, run)
            .await
            .map_err(cluster_error)?;
        let state = RunState::replay(&records);
        if state.workflow.is_none() || state.tenant.as_str() != tenant {
            return Err(RunError::NotFound(format!("no run {run:?}")));
        }
        Ok(state)
    }

    /// Every run of `tenant`, oldest first.
    pub async fn list(&self, tenant: &str) -> Result<Vec<RunState>, RunError> {
        let ids = journal::run_ids(&self.nats, tenant)
            .await
            .map_err(cluster_error)?;
        let mut runs = Vec::with_capacity(ids.len());
        for id in ids {
            if let Ok(state) = self.load(tenant, &id).await {
                runs.push(state);
            }
        }
        runs.sort_by(|a, b| a.started_ms.cmp(&b.started_ms).then(a.run.cmp(&b.run)));
        Ok(runs)
    }

    /// The run's records from `next` on, live, from whichever node.
    pub fn follow(&self, tenant: &str, run: &str, next: u64) -> mpsc::Receiver<Followed> {
        let mut records = journal::follow(&self.nats, tenant, run, next);
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut last = next.checked_sub(1);
            let mut status = None;
            while let Some(record) = records.recv().await {
                let record = match record {
                    Ok(record) => record,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot follow a run's journal");
                        break;
                    }
                };
                last = Some(record.seq);
                if let Event::RunFinished { status: ended } = &record.event {
                    status = Some(*ended);
                }
                if tx.send(Followed::Record(Box::new(record))).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Followed::End { status, last }).await;
        });
        rx
    }

    /// Cancels the run: its unfinished tasks skipped (which also refuses
    /// the next write of any node working one) and its end recorded.
    pub async fn cancel(
        &self,
        tenant: &str,
        run: &str,
        reason: &str,
    ) -> Result<Finished, RunError> {
        self.load(tenant, run).await?;
        for _ in 0..RUN_WRITE_TRIES {
            let (journal, records) = JetStreamJournal::open(&self.nats, tenant, run)
                .await
                .map_err(cluster_error)?;
            let recorder = Recorder::new(journal, RunState::replay(&records), self.meters(tenant));
            let reason = reason.to_string();
            let (written, recorder) = tokio::task::spawn_blocking(move || {
                (record_cancelled(&recorder, &reason), recorder)
            })
            .await
            .map_err(|e| RunError::Files(e.to_string()))?;
            if let Ok(status) = written {
                return Ok(Finished {
                    run: run.to_string(),
                    status,
                    state: recorder.state(RunState::clone),
                });
            }
        }
        Err(RunError::Busy(format!(
            "run {run} kept changing while it was being cancelled; ask again"
        )))
    }

    /// Tries a failed run again: its dead tasks and those skipped because
    /// of them queued once more. `Ok(Some(status))` for a run that ended
    /// otherwise; `Busy` for one still going.
    pub async fn retry(
        &self,
        record: &TenantRecord,
        run: &str,
    ) -> Result<Option<RunStatus>, Submission> {
        let state = self
            .load(&record.name, run)
            .await
            .map_err(Submission::Refused)?;
        match warden_run::ended(&state) {
            None => {
                return Err(Submission::Refused(RunError::Busy(format!(
                    "run {run} is going on; only a run that failed or stopped can be resumed"
                ))));
            }
            Some(RunStatus::Failed) => {}
            Some(other) => return Ok(Some(other)),
        }
        self.check_runs_in_flight(record).await?;
        let (journal, records) = JetStreamJournal::open(&self.nats, &record.name, run)
            .await
            .map_err(|e| Submission::Refused(cluster_error(e)))?;
        let recorder = Recorder::new(
            journal,
            RunState::replay(&records),
            self.meters(&record.name),
        );
        let id = run.to_string();
        tokio::task::spawn_blocking(move || {
            recorder.record(Event::RunResumed {
                run: id,
                retry: true,
            })
        })
        .await
        .map_err(|e| Submission::Refused(RunError::Files(e.to_string())))?
        .map_err(|e| Submission::Refused(RunError::Journal(e)))?;
        self.advance(&record.name, run)
            .await
            .map_err(Submission::Refused)?;
        Ok(None)
    }
}
