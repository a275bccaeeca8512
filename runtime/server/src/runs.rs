//! Tenants' runs on one server: each in `tenants/<name>/runs/<id>/`, driven
//! in the background, its journal records broadcast to whoever watches,
//! and taken up again when the server starts after being killed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use futures::future::BoxFuture;
use tokio::sync::{broadcast, mpsc};
use warden_core::{Engine, TenantId};
use warden_run::workflow::Workflow;
use warden_run::{
    Canceller, Ceiling, Event, EventSink, Finished, Quota, Record, Reopened, RunEnv, RunError,
    RunState, RunStatus, Runs, Started, journal,
};

use crate::cluster::{ClusterConfig, ClusterRuns, Host};
use crate::control::Counts;
use crate::metrics::Metrics;
use crate::operator::Operator;
pub use crate::run_answers::{Followed, Submission};
use crate::tenant::{self, TenantRecord};
use crate::usage::Meter;

/// Journal records of a live run waiting for a slow watcher; one that
/// falls further behind reads the journal instead.
const BACKLOG: usize = 1024;

/// Tells watchers of a run about each journal record as it is written.
struct Broadcast(broadcast::Sender<Record>);

impl EventSink for Broadcast {
    fn event(&self, record: &Record, _state: &RunState) {
        // No watcher is not an error.
        let _ = self.0.send(record.clone());
    }
}

/// Counts what a tenant's run used: its tasks' fuel and its model calls,
/// in the tenant's usage and the server's metrics.
struct Metered {
    tenant: String,
    metrics: Arc<Metrics>,
    meter: Arc<Meter>,
}

impl EventSink for Metered {
    fn event(&self, record: &Record, _state: &RunState) {
        match &record.event {
            Event::LlmCall {
                provider,
                model,
                input_tokens,
                output_tokens,
                cost,
                ..
            } => {
                self.metrics
                    .llm(&self.tenant, *input_tokens, *output_tokens, *cost);
                let counts = Counts {
                    calls: 1,
                    input_tokens: *input_tokens,
                    output_tokens: *output_tokens,
                    cost: *cost,
                    ..Counts::default()
                };
                self.meter
                    .add(&self.tenant, "llm", &format!("{provider}/{model}"), counts);
            }
            Event::TaskFinished { fuel_used, .. } | Event::TaskFailed { fuel_used, .. } => {
                let counts = Counts {
                    calls: 1,
                    fuel: *fuel_used,
                    ..Counts::default()
                };
                self.meter.add(&self.tenant, "run", "", counts);
            }
            _ => {}
        }
    }
}

/// A run going on here: who watches it, and how to stop it.
struct Live {
    watchers: broadcast::Sender<Record>,
    task: tokio::task::AbortHandle,
    canceller: Canceller,
    /// Closed when the run's task ends.
    ended: tokio::sync::watch::Receiver<()>,
}

/// How long a cancel waits for the run's attempts to stop.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The example workflows, built in: every server offers them.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "python-module",
        include_str!("../../../examples/workflows/python-module.toml"),
    ),
    (
        "research",
        include_str!("../../../examples/workflows/research.toml"),
    ),
];

/// The most workflows read from `DATA_DIR/workflows`, and the most bytes
/// of each.
const MOST_WORKFLOWS: usize = 200;
const MOST_WORKFLOW_BYTES: u64 = 256 * 1024;

/// The runs of every tenant on this server.
pub struct RunHost {
    engine: Engine,
    plugin_dirs: Vec<PathBuf>,
    /// The manifest names of the plugins the server hosts: what `*` in a
    /// tenant's plugin list means.
    hosted: Vec<String>,
    data_dir: PathBuf,
    live: Mutex<HashMap<(String, String), Live>>,
    submitting: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    metrics: Arc<Metrics>,
    meter: Arc<Meter>,
    operator: Arc<Operator>,
    /// On a cluster: runs live on JetStream, not on this node.
    cluster: Option<Arc<ClusterRuns>>,
}

impl std::fmt::Debug for RunHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHost")
            .field("plugin_dirs", &self.plugin_dirs)
            .finish_non_exhaustive()
    }
}

impl RunHost {
    #[allow(clippy::too_many_arguments)] // the server's parts, named
    pub fn new(
        data_dir: &Path,
        engine: Engine,
        plugin_dirs: Vec<PathBuf>,
        hosted: Vec<String>,
        metrics: Arc<Metrics>,
        meter: Arc<Meter>,
        operator: Arc<Operator>,
        cluster: Option<ClusterConfig>,
    ) -> Arc<RunHost> {
        Arc::new_cyclic(|host: &Weak<RunHost>| RunHost {
            engine,
            plugin_dirs,
            hosted,
            data_dir: data_dir.to_path_buf(),
            live: Mutex::default(),
            submitting: Mutex::default(),
            metrics,
            meter,
            operator,
            cluster: cluster.map(|config| {
                let host: Weak<dyn Host> = host.clone();
                Arc::new(ClusterRuns::new(config, host))
            }),
        })
    }

    /// On a cluster, starts working the tasks of every tenant.
    pub fn join_cluster(self: &Arc<Self>) {
        if let Some(cluster) = &self.cluster {
            cluster.serve_tenants();
        }
    }

    /// `tenant`'s run `run`.
    pub async fn load(&self, tenant: &str, run: &str) -> Result<RunState, RunError> {
        match &self.cluster {
            Some(cluster) => cluster.load(tenant, run).await,
            None => self.runs(tenant).load(run),
        }
    }

    /// Every run of `tenant`, oldest first.
    pub async fn list(&self, tenant: &str) -> Vec<RunState> {
        match &self.cluster {
            Some(cluster) => cluster.list(tenant).await.unwrap_or_else(|e| {
                tracing::warn!(%tenant, error = %e, "cannot list the tenant's runs");
                Vec::new()
            }),
            None => self.runs(tenant).list(),
        }
    }

    /// Whether `state`'s run is going on: on a cluster, until it ends; on
    /// one node, while this node drives it.
    pub fn going(&self, tenant: &str, state: &RunState) -> bool {
        match &self.cluster {
            Some(_) => warden_run::ended(state).is_none(),
            None => self.watch(tenant, &state.run).is_some(),
        }
    }

    /// What a run of `tenant` tells besides its journal: its watchers, the
    /// metrics.
    fn sinks(&self, tenant: &str, watchers: &broadcast::Sender<Record>) -> Vec<Box<dyn EventSink>> {
        let mut sinks: Vec<Box<dyn EventSink>> = vec![Box::new(Broadcast(watchers.clone()))];
        sinks.extend(self.meters(tenant));
        sinks
    }

    /// The engine every sandbox of this server runs on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Tenant `name`'s runs.
    pub fn runs(&self, name: &str) -> Runs {
        Runs::new(&tenant::root(&self.data_dir, name))
    }

    /// What a run of `record`'s tenant runs with: its identity, the
    /// server's plugins by name only, and its policy's grant as the ceiling
    /// of what a workflow may grant.
    async fn env(&self, record: &TenantRecord) -> Result<RunEnv, RunError> {
        let root = tenant::root(&self.data_dir, &record.name);
        let policy = match &record.policy {
            Some(text) => {
                tenant::policy(text, &root).map_err(|e| RunError::Plugin(e.to_string()))?
            }
            None => warden_core::Policy::default(),
        };
        let plugins = if record.plugins.iter().any(|p| p == "*") {
            self.hosted.clone()
        } else {
            record.plugins.clone()
        };
        Ok(RunEnv {
            engine: self.engine.clone(),
            tenant: TenantId::new(&record.name).map_err(|e| RunError::Plugin(e.to_string()))?,
            plugin_dirs: self.plugin_dirs.clone(),
            base_dir: root,
            ceiling: Some(Ceiling {
                plugins: Some(plugins),
                grant: policy.grant,
                limits: policy.limits,
            }),
            quota: Quota {
                models: self.meter.models(record).await,
                fuel: self.meter.fuel_source(record),
            },
        })
    }

    /// The names of the workflows a tenant may pick, in order: the
    /// built-in examples, then the operator's `DATA_DIR/workflows/NAME.toml`
    /// (one of which wins over an example of the same name).
    pub fn workflows(&self) -> Vec<String> {
        let mut own: Vec<String> = std::fs::read_dir(self.data_dir.join("workflows"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .take(MOST_WORKFLOWS)
            .filter_map(|entry| {
                let name = entry
                    .file_name()
                    .to_str()?
                    .strip_suffix(".toml")?
                    .to_string();
                self.own_workflow(&name).map(|_| name)
            })
            .collect();
        own.sort();
        let mut names: Vec<String> = EXAMPLES
            .iter()
            .map(|(name, _)| name.to_string())
            .filter(|name| !own.contains(name))
            .collect();
        names.extend(own);
        names
    }

    /// The workflow (TOML) offered as `name`, if there is one.
    pub fn workflow(&self, name: &str) -> Option<String> {
        match self.own_workflow(name) {
            Some(path) => std::fs::read_to_string(path).ok(),
            None => EXAMPLES
                .iter()
                .find(|(example, _)| *example == name)
                .map(|(_, text)| text.to_string()),
        }
    }

    /// `DATA_DIR/workflows/NAME.toml` when `name` is a plain name and that
    /// is a regular file (not a link out of the dir) of a sane size.
    fn own_workflow(&self, name: &str) -> Option<PathBuf> {
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !plain {
            return None;
        }
        let path = self.data_dir.join("workflows").join(format!("{name}.toml"));
        let meta = std::fs::symlink_metadata(&path).ok()?;
        (meta.is_file() && meta.len() <= MOST_WORKFLOW_BYTES).then_some(path)
    }

    /// One submission at a time per tenant, so that two requests with the
    /// same idempotency key cannot both start a run.
    pub fn submission_lock(&self, tenant: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut submitting = self.submitting.lock().unwrap_or_else(|p| p.into_inner());
        submitting.entry(tenant.to_string()).or_default().clone()
    }

    /// Starts a run of `workflow` for `record`'s tenant and returns its id
    /// once its journal is open; the run goes on in the background.
    pub async fn submit(
        self: &Arc<Self>,
        record: &TenantRecord,
        run: String,
        mut workflow: Workflow,
        goal: Option<String>,
    ) -> Result<String, Submission> {
        // A run's tasks are the tenant's sandboxes too.
        workflow.run.concurrency = workflow
            .run
            .concurrency
            .min(record.quotas.concurrent_calls as usize);
        if let Some(cluster) = &self.cluster {
            return cluster.submit(record, run, workflow, goal).await;
        }
        if self.live_runs(&record.name) >= record.quotas.runs_in_flight as usize {
            return Err(Submission::Busy);
        }
        let env = self.env(record).await.map_err(Submission::Refused)?;
        let (sender, _) = broadcast::channel(BACKLOG);
        let started = self
            .runs(&record.name)
            .open_as(run, workflow, goal, &env, self.sinks(&record.name, &sender))
            .await
            .map_err(Submission::Refused)?;
        let run = started.run().to_string();
        self.drive(&record.name, started, sender);
        Ok(run)
    }

    fn drive(self: &Arc<Self>, tenant: &str, started: Started, sender: broadcast::Sender<Record>) {
        let key = (tenant.to_string(), started.run().to_string());
        // Registered before the task starts, so that it cannot end (and
        // remove itself) first.
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let host = self.clone();
        let task_key = key.clone();
        let canceller = started.canceller();
        let (ending, ended) = tokio::sync::watch::channel(());
        let task = tokio::spawn(async move {
            let _ending = ending;
            let key = task_key;
            match started.drive().await {
                Ok(finished) => {
                    tracing::info!(tenant = %key.0, run = %key.1, status = ?finished.status, "run ended");
                }
                Err(e) => {
                    tracing::warn!(tenant = %key.0, run = %key.1, error = %e, "run stopped; it can be resumed");
                }
            }
            // Dropping the sender tells watchers the run is no longer live.
            host.live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        });
        live.insert(
            key,
            Live {
                watchers: sender,
                task: task.abort_handle(),
                canceller,
                ended,
            },
        );
    }

    /// Stops every run of `tenant` going on here, where it is (a removed
    /// tenant's).
    pub fn stop_tenant(&self, tenant: &str) {
        if let Some(cluster) = &self.cluster {
            cluster.stop_tenant(tenant);
        }
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|(t, _), run| {
            if t == tenant {
                run.task.abort();
            }
            t != tenant
        });
    }

    /// Cancels `tenant`'s run `run`: one going on here stops where it is
    /// (its attempts stopped, unfinished tasks skipped) and ends cancelled;
    /// one that had stopped is marked so. A run that had ended keeps how it
    /// ended.
    pub async fn cancel(
        self: &Arc<Self>,
        record: &TenantRecord,
        run: &str,
    ) -> Result<Finished, RunError> {
        let reason = "cancelled through the API";
        if let Some(cluster) = &self.cluster {
            return cluster.cancel(&record.name, run, reason).await;
        }
        let live = {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            live.get(&(record.name.clone(), run.to_string()))
                .map(|live| (live.canceller.clone(), live.ended.clone()))
        };
        if let Some((canceller, mut ended)) = live {
            canceller.cancel(reason);
            // `Err` once the run's task has ended and dropped its sender.
            let stopped = tokio::time::timeout(CANCEL_WAIT, async {
                while ended.changed().await.is_ok() {}
            })
            .await;
            if stopped.is_err() {
                return Err(RunError::Busy(format!(
                    "run {run} is still stopping; ask again in a moment"
                )));
            }
        }
        let tenant = TenantId::new(&record.name).map_err(|e| RunError::Plugin(e.to_string()))?;
        self.runs(&record.name).cancel(run, &tenant, reason)
    }

    /// Takes `record`'s run `run` up again: one that failed runs its dead
    /// tasks (and those skipped because of them) once more, one that
    /// stopped without ending goes on. `Ok(Some(status))` when it had ended
    /// otherwise, and there is nothing to do.
    pub async fn resume(
        self: &Arc<Self>,
        record: &TenantRecord,
        run: &str,
    ) -> Result<Option<RunStatus>, Submission> {
        if let Some(cluster) = &self.cluster {
            return cluster.retry(record, run).await;
        }
        if self.watch(&record.name, run).is_some() {
            return Err(Submission::Refused(RunError::Busy(format!(
                "run {run} is going on; only a run that failed or stopped can be resumed"
            ))));
        }
        if self.live_runs(&record.name) >= record.quotas.runs_in_flight as usize {
            return Err(Submission::Busy);
        }
        let env = self.env(record).await.map_err(Submission::Refused)?;
        let (sender, _) = broadcast::channel(BACKLOG);
        let sinks = self.sinks(&record.name, &sender);
        match self
            .runs(&record.name)
            .reopen_to_retry(run, |_| env, sinks)
            .await
            .map_err(Submission::Refused)?
        {
            Reopened::Started(started) => {
                self.drive(&record.name, started, sender);
                Ok(None)
            }
            Reopened::Settled(finished) => Ok(Some(finished.status)),
        }
    }

    /// How many of `tenant`'s runs are going on here.
    pub fn live_runs(&self, tenant: &str) -> usize {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.keys().filter(|(t, _)| t == tenant).count()
    }

    /// How many runs each tenant has going on here.
    pub fn live_counts(&self) -> Vec<(String, usize)> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let mut counts: HashMap<String, usize> = HashMap::new();
        for (tenant, _) in live.keys() {
            *counts.entry(tenant.clone()).or_default() += 1;
        }
        counts.into_iter().collect()
    }

    /// A receiver of `run`'s records from now on, while it runs here.
    pub fn watch(&self, tenant: &str, run: &str) -> Option<broadcast::Receiver<Record>> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.get(&(tenant.to_string(), run.to_string()))
            .map(|run| run.watchers.subscribe())
    }

    /// `run`'s journal records from sequence `next` on, each once and in
    /// order: what the journal holds, then live ones while it runs here,
    /// then how it ended. Stops when the receiver is dropped.
    pub fn follow(&self, tenant: &str, run: &str, next: u64) -> mpsc::Receiver<Followed> {
        if let Some(cluster) = &self.cluster {
            return cluster.follow(tenant, run, next);
        }
        // Watch first, then read the journal: nothing written in between
        // is missed, and what both see is sent once (by sequence number).
        let live = self.watch(tenant, run);
        let path = self.runs(tenant).dir(run).join("journal.jsonl");
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(follow(path, next, live, tx));
        rx
    }

    /// Takes up every run of `tenants` that had not ended (the server was
    /// stopped or killed mid-run): finished tasks stay finished.
    pub async fn resume_all(self: &Arc<Self>, tenants: &[TenantRecord]) {
        // On a cluster, the queue hands a stopped node's tasks to others.
        if self.cluster.is_some() {
            return;
        }
        for record in tenants {
            let runs = self.runs(&record.name);
            for state in runs.list() {
                if warden_run::ended(&state).is_some() {
                    continue;
                }
                let env = match self.env(record).await {
                    Ok(env) => env,
                    Err(e) => {
                        tracing::warn!(tenant = %record.name, error = %e, "cannot resume the tenant's runs");
                        break;
                    }
                };
                let (sender, _) = broadcast::channel(BACKLOG);
                let sinks = self.sinks(&record.name, &sender);
                match runs.reopen(&state.run, |_| env, sinks).await {
                    Ok(Reopened::Started(started)) => {
                        tracing::info!(tenant = %record.name, run = %state.run, "resuming a run the server left");
                        self.drive(&record.name, started, sender);
                    }
                    Ok(Reopened::Settled(_)) => {}
                    Err(e) => {
                        tracing::warn!(tenant = %record.name, run = %state.run, error = %e, "cannot resume run");
                    }
                }
            }
        }
    }
}

impl Host for RunHost {
    fn tenants(&self) -> BoxFuture<'_, Result<Vec<TenantRecord>, RunError>> {
        Box::pin(async move {
            self.operator
                .tenants()
                .await
                .map_err(|e| RunError::Files(e.to_string()))
        })
    }

    fn tenant<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<TenantRecord, RunError>> {
        Box::pin(async move {
            self.operator
                .tenant(name)
                .await
                .map_err(|e| RunError::NotFound(e.to_string()))
        })
    }

    fn env<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, Result<RunEnv, RunError>> {
        Box::pin(RunHost::env(self, record))
    }

    fn workspace(&self, tenant: &str, run: &str) -> Result<PathBuf, RunError> {
        warden_run::check_run_id(run)?;
        let workspace = self.runs(tenant).dir(run).join("workspace");
        std::fs::create_dir_all(&workspace)
            .map_err(|e| RunError::Files(format!("cannot create {}: {e}", workspace.display())))?;
        Ok(workspace)
    }

    fn meters(&self, tenant: &str) -> Vec<Box<dyn EventSink>> {
        vec![Box::new(Metered {
            tenant: tenant.to_string(),
            metrics: self.metrics.clone(),
            meter: self.meter.clone(),
        })]
    }
}

/// Sends the records from `next` on from the journal, then live ones, then
/// the end. Stops when the receiver goes away (`tx` closed).
async fn follow(
    path: PathBuf,
    mut next: u64,
    mut live: Option<broadcast::Receiver<Record>>,
    tx: mpsc::Sender<Followed>,
) {
    let mut ended: Option<RunStatus> = None;
    loop {
        // Catch up from the journal (at the start, and after falling
        // behind the live feed).
        let records = match journal::read(&path) {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read a run journal");
                Vec::new()
            }
        };
        let from = next;
        for record in records.into_iter().filter(|r| r.seq >= from) {
            next = record.seq + 1;
            if let Event::RunFinished { status } = &record.event {
                ended = Some(*status);
            }
            if tx.send(Followed::Record(Box::new(record))).await.is_err() {
                return;
            }
        }
        let Some(receiver) = live.as_mut() else {
            break;
        };
        let received = tokio::select! {
            received = receiver.recv() => received,
            () = tx.closed() => return,
        };
        match received {
            // Already sent, from the journal.
            Ok(record) if record.seq < next => {}
            Ok(record) if record.seq == next => {
                next = record.seq + 1;
                if let Event::RunFinished { status } = &record.event {
                    ended = Some(*status);
                }
                if tx.send(Followed::Record(Box::new(record))).await.is_err() {
                    return;
                }
            }
            // A gap, or fallen behind: the journal has it.
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => {
                // The run stopped here; one last read picks up the rest.
                live = None;
            }
        }
    }
    let _ = tx
        .send(Followed::End {
            status: ended,
            last: next.checked_sub(1),
        })
        .await;
}
