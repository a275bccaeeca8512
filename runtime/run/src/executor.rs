//! The executor of a real run: each role a wasm role plugin, each of its
//! tools a wasm tool plugin, every attempt a fresh sandbox whose limits are
//! the role's, cut down to what the run's budget has left.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use warden_api::budget::{Allowance, Totals, UsageRecord};
use warden_core::{
    CallError, CallOptions, CompiledPlugin, ComponentKind, DirGrant, DirMode, Engine, Grant,
    HostPattern, LimitKind, LimitSettings, Limits, ModelName, NamespaceGrant, RoleError, RoleSpec,
    RunScope, Task, TaskContext, TenantId, ToolCallKey, ToolCallReport, ToolObserver, ToolSet,
};

use warden_core::limits::LimitError;

use crate::error::RunError;
use crate::journal::Event;
use crate::scheduler::{Attempt, AttemptEnd, AttemptError, Executor, Recorder};
use crate::workflow::{RoleConfig, ToolConfig, Workflow, WorkspaceAccess};

/// Where the run workspace appears inside tool sandboxes.
pub const WORKSPACE_GUEST: &str = "/workspace";

/// The ceiling a role's manifest may ask up to when the workflow sets no
/// limits: a role waits on models, so minutes rather than the seconds a
/// single tool call gets.
const ROLE_CEILING: LimitSettings = LimitSettings {
    fuel: None,
    timeout_ms: Some(600_000),
    memory_mib: None,
    output_kib: None,
};

/// The same for a tool a role calls (code runs, fetches).
const TOOL_CEILING: LimitSettings = LimitSettings {
    fuel: None,
    timeout_ms: Some(300_000),
    memory_mib: None,
    output_kib: None,
};

/// Fuel a host counts a run's attempts against besides the run's own
/// budget (a hosted tenant's daily quota): an attempt holds what it may use
/// before it starts and settles what it used when it ends, so attempts
/// running together cannot overshoot.
pub trait FuelSource: Send + Sync {
    /// Holds up to `want` fuel; `Err` says why none is left.
    fn hold(&self, want: u64) -> BoxFuture<'static, Result<Box<dyn HeldFuel>, String>>;
}

/// Fuel held for one attempt.
pub trait HeldFuel: Send {
    /// What the attempt may use: at most what it asked for.
    fn granted(&self) -> u64;
    /// The attempt used `used`; the rest goes back.
    fn settle(self: Box<Self>, used: u64);
}

/// What a run is counted against besides its own budget (a hosted
/// tenant's daily quotas); the default counts nothing more.
#[derive(Clone, Default)]
pub struct Quota {
    /// The parent of the run's model allowance: its tokens and dollars.
    pub models: Option<Arc<Allowance>>,
    pub fuel: Option<Arc<dyn FuelSource>>,
}

impl std::fmt::Debug for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quota")
            .field("models", &self.models)
            .field("fuel", &self.fuel.is_some())
            .finish()
    }
}

/// What a run needs from the process: the engine (with its models and
/// memory store), the tenant, and how to find a plugin by name.
pub struct RunEnv {
    pub engine: Engine,
    pub tenant: TenantId,
    /// Directories searched for `NAME.wasm` when a workflow names a plugin.
    pub plugin_dirs: Vec<PathBuf>,
    /// The directory of the workflow file (paths in it are relative to it).
    pub base_dir: PathBuf,
    /// What the workflow may grant at most (a hosted tenant's policy);
    /// `None` trusts the workflow (the operator wrote it).
    pub ceiling: Option<Ceiling>,
    pub quota: Quota,
}

/// What a workflow may grant its roles and tools when someone other than
/// the operator wrote it: plugins by name from the plugin directories only
/// (no paths), only those listed, and only models, hosts and memory
/// namespaces the ceiling's grant covers. A workflow can narrow this, never
/// widen it.
#[derive(Debug, Clone, Default)]
pub struct Ceiling {
    /// Plugin names (as their manifests name them); `None` for every
    /// plugin in the plugin directories.
    pub plugins: Option<Vec<String>>,
    pub grant: Grant,
    /// The most a workflow's limits may ask for; unset fields default to
    /// the ones a trusted workflow gets.
    pub limits: LimitSettings,
}

impl Ceiling {
    fn plugin(&self, plugin: &str) -> Result<(), RunError> {
        if plugin.ends_with(".wasm") || plugin.contains(['/', '\\']) || plugin.starts_with('.') {
            return Err(RunError::Plugin(format!(
                "plugin {plugin:?}: name a plugin (e.g. \"coder\"); a hosted workflow cannot load a file"
            )));
        }
        match &self.plugins {
            Some(allowed) if !allowed.iter().any(|p| p == plugin) => {
                Err(RunError::Plugin(format!(
                    "plugin {plugin:?} is not one this tenant may use (it may use: {})",
                    allowed.join(", ")
                )))
            }
            _ => Ok(()),
        }
    }

    /// `plugin`'s limits when the workflow asks for `wanted` (under
    /// `default`, the trusted ceiling): never above the tenant's.
    fn limits(
        &self,
        plugin: &CompiledPlugin,
        default: LimitSettings,
        wanted: LimitSettings,
    ) -> Result<Limits, LimitError> {
        let base = plugin.limits(self.limits.or(default), LimitSettings::default())?;
        wanted.at_most(&base).apply_to(base)
    }

    fn model(&self, model: &ModelName, what: &str) -> Result<(), RunError> {
        if self.grant.models.iter().any(|m| m.is_any() || m == model) {
            Ok(())
        } else {
            Err(RunError::Plugin(format!(
                "{what}: model {model} is not granted to this tenant"
            )))
        }
    }

    fn memory(&self, wanted: &[NamespaceGrant], what: &str) -> Result<(), RunError> {
        for ns in wanted {
            let covered = self.grant.memory.iter().any(|c| {
                c.covers(&ns.namespace)
                    && (c.namespace == "*" || ns.namespace != "*")
                    && (c.mode == DirMode::ReadWrite || ns.mode == DirMode::ReadOnly)
            });
            if !covered {
                return Err(RunError::Plugin(format!(
                    "{what}: memory namespace {ns} is not granted to this tenant"
                )));
            }
        }
        Ok(())
    }

    fn hosts(&self, wanted: &[HostPattern], what: &str) -> Result<(), RunError> {
        for host in wanted {
            if !self.grant.allow_hosts.contains(host) {
                return Err(RunError::Plugin(format!(
                    "{what}: host {host} is not granted to this tenant"
                )));
            }
        }
        Ok(())
    }
}

impl RunEnv {
    /// The `.wasm` a workflow's `plugin = "..."` means.
    pub fn resolve(&self, plugin: &str) -> Result<PathBuf, RunError> {
        if let Some(ceiling) = &self.ceiling {
            ceiling.plugin(plugin)?;
        }
        if plugin.ends_with(".wasm") || plugin.contains('/') {
            let path = self.base_dir.join(plugin);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(RunError::Plugin(format!(
                    "plugin file {} does not exist",
                    path.display()
                )))
            };
        }
        for dir in &self.plugin_dirs {
            let path = dir.join(format!("{plugin}.wasm"));
            if path.is_file() {
                return Ok(path);
            }
        }
        Err(RunError::Plugin(format!(
            "no plugin named {plugin:?} in {}; give a path to its .wasm, or build the first-party plugins with `scripts/dev plugins`",
            self.plugin_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    fn load(
        &self,
        plugin: &str,
        kind: ComponentKind,
        what: &str,
    ) -> Result<CompiledPlugin, RunError> {
        let path = self.resolve(plugin)?;
        let compiled = self
            .engine
            .load_file(&path)
            .map_err(|e| RunError::Plugin(format!("{what}: {e}")))?;
        // A file's name is not a plugin's: under a ceiling, the manifest's
        // name must be the one the tenant may use.
        if self.ceiling.is_some() && compiled.name() != plugin {
            return Err(RunError::Plugin(format!(
                "{what}: {} is plugin {:?}, not {plugin:?}",
                path.display(),
                compiled.name()
            )));
        }
        if compiled.kind() != kind {
            return Err(RunError::Plugin(format!(
                "{what}: {} is a {:?} plugin, not a {kind:?} plugin",
                path.display(),
                compiled.kind()
            )));
        }
        Ok(compiled)
    }
}

struct LoadedRole {
    plugin: CompiledPlugin,
    options: CallOptions,
    tools: ToolSet,
    recall: u32,
}

/// Runs attempts in wasm role plugins.
pub struct WasmExecutor {
    roles: BTreeMap<String, LoadedRole>,
    specs: Vec<RoleSpec>,
    run_allowance: Arc<Allowance>,
    fuel: Option<Arc<dyn FuelSource>>,
}

impl WasmExecutor {
    /// Loads every role and tool plugin of `workflow` and asks each role
    /// what it is. `used` is what the run already spent on models (a
    /// resumed run's).
    pub async fn prepare(
        workflow: &Workflow,
        env: &RunEnv,
        run: &str,
        workspace: &Path,
        used: Totals,
    ) -> Result<WasmExecutor, RunError> {
        let run_allowance = Allowance::new(
            format!("run {run}"),
            workflow.budget.tokens,
            workflow.budget.cost,
            env.quota.models.clone(),
        );
        run_allowance.preload(used);

        let mut tool_plugins: BTreeMap<String, (CompiledPlugin, CallOptions)> = BTreeMap::new();
        let mut roles = BTreeMap::new();
        let mut specs = Vec::new();
        for (name, role) in &workflow.roles {
            let what = format!("role {name}");
            let plugin = env.load(&role.plugin, ComponentKind::Role, &what)?;
            let mut builder = ToolSet::builder();
            for (tool_plugin, only) in tool_grants(role) {
                if !tool_plugins.contains_key(&tool_plugin) {
                    let config = workflow
                        .tools
                        .get(&tool_plugin)
                        .cloned()
                        .unwrap_or_default();
                    let loaded = load_tool(env, &tool_plugin, &config, workspace)?;
                    tool_plugins.insert(tool_plugin.clone(), loaded);
                }
                let (p, o) = &tool_plugins[&tool_plugin];
                builder = builder
                    .add(p.clone(), o.clone(), only.as_deref())
                    .await
                    .map_err(|e| RunError::Plugin(format!("{what}: {e}")))?;
            }
            let tools = builder.build();
            let options = role_options(env, &plugin, name, role)?;
            let described = plugin.describe_role(&options).await;
            let spec = described.result.map_err(|e| {
                RunError::Plugin(format!(
                    "{what}: cannot ask {} what it is: {e}",
                    plugin.name()
                ))
            })?;
            specs.push(RoleSpec {
                name: name.clone(),
                ..spec
            });
            roles.insert(
                name.clone(),
                LoadedRole {
                    plugin,
                    options,
                    tools,
                    recall: role.recall,
                },
            );
        }
        Ok(WasmExecutor {
            roles,
            specs,
            run_allowance,
            fuel: env.quota.fuel.clone(),
        })
    }

    /// What each role said it is, under the workflow's names.
    pub fn role_specs(&self) -> &[RoleSpec] {
        &self.specs
    }
}

/// The tool plugins a role is granted, each with the tools it is limited
/// to (`plugin.tool` entries), or `None` for all of them.
fn tool_grants(role: &RoleConfig) -> Vec<(String, Option<Vec<String>>)> {
    let mut grants: Vec<(String, Option<Vec<String>>)> = Vec::new();
    for entry in &role.tools {
        let (plugin, tool) = (entry.plugin.clone(), entry.tool.clone());
        match grants.iter_mut().find(|(p, _)| *p == plugin) {
            Some((_, only)) => match (only.as_mut(), tool) {
                (Some(list), Some(t)) => list.push(t),
                _ => *only = None,
            },
            None => grants.push((plugin, tool.map(|t| vec![t]))),
        }
    }
    grants
}

fn load_tool(
    env: &RunEnv,
    name: &str,
    config: &ToolConfig,
    workspace: &Path,
) -> Result<(CompiledPlugin, CallOptions), RunError> {
    let what = format!("tool {name}");
    let plugin = env.load(
        config.plugin.as_deref().unwrap_or(name),
        ComponentKind::Tool,
        &what,
    )?;
    let mut grant = Grant::default();
    let mode = match config.workspace {
        WorkspaceAccess::Rw => Some(DirMode::ReadWrite),
        WorkspaceAccess::Ro => Some(DirMode::ReadOnly),
        WorkspaceAccess::None => None,
    };
    if let Some(mode) = mode {
        grant.dirs.push(DirGrant {
            host: workspace.to_path_buf(),
            guest: WORKSPACE_GUEST.into(),
            mode,
        });
    }
    if let Some(ceiling) = &env.ceiling {
        ceiling.hosts(&config.net, &what)?;
        ceiling.memory(&config.memory, &what)?;
    }
    grant.allow_hosts.extend(config.net.iter().cloned());
    grant.memory.extend(config.memory.iter().cloned());
    let limits = match &env.ceiling {
        None => plugin.limits(TOOL_CEILING, config.limits),
        Some(ceiling) => ceiling.limits(&plugin, TOOL_CEILING, config.limits),
    }
    .map_err(|e| RunError::Plugin(format!("`tools.{name}.limits`: {e}")))?;
    Ok((
        plugin,
        CallOptions {
            tenant: env.tenant.clone(),
            grant,
            limits,
            ..CallOptions::default()
        },
    ))
}

fn role_options(
    env: &RunEnv,
    plugin: &CompiledPlugin,
    name: &str,
    role: &RoleConfig,
) -> Result<CallOptions, RunError> {
    let what = format!("role {name}");
    let models = match (&env.ceiling, &role.model) {
        (None, model) => vec![model.clone().unwrap_or_else(ModelName::any)],
        (Some(ceiling), Some(model)) => {
            ceiling.model(model, &what)?;
            vec![model.clone()]
        }
        // The LLM config's default, if the tenant may use it.
        (Some(ceiling), None) => ceiling.grant.models.clone(),
    };
    if let Some(ceiling) = &env.ceiling {
        ceiling.memory(&role.memory, &what)?;
    }
    let grant = Grant {
        models,
        memory: role.memory.clone(),
        ..Grant::default()
    };
    let limits = match &env.ceiling {
        None => plugin.limits(ROLE_CEILING, role.limits),
        Some(ceiling) => ceiling.limits(plugin, ROLE_CEILING, role.limits),
    }
    .map_err(|e| RunError::Plugin(format!("`roles.{name}.limits`: {e}")))?;
    Ok(CallOptions {
        tenant: env.tenant.clone(),
        grant,
        limits,
        ..CallOptions::default()
    })
}

impl Executor for WasmExecutor {
    fn run(&self, attempt: Attempt) -> BoxFuture<'static, AttemptEnd> {
        let Some(role) = self.roles.get(&attempt.spec.role) else {
            let message = format!("the workflow has no role {:?}", attempt.spec.role);
            return async move {
                AttemptEnd {
                    result: Err(AttemptError {
                        message,
                        retryable: false,
                        declined: false,
                    }),
                    fuel_used: 0,
                    duration: Duration::ZERO,
                }
            }
            .boxed();
        };
        let plugin = role.plugin.clone();
        let mut options = role.options.clone();
        let recorder = attempt.recorder.clone();
        let task_id = attempt.spec.id.clone();

        // The task's models are charged to it and to the run; each
        // completion is journaled as it happens.
        let observer = {
            let recorder = recorder.clone();
            let task = task_id.clone();
            Arc::new(move |r: &UsageRecord| {
                // A failed write stops the run once this attempt ends.
                if let Err(e) = recorder.record(Event::LlmCall {
                    task: task.clone(),
                    provider: r.provider.clone(),
                    model: r.model.clone(),
                    input_tokens: r.input_tokens,
                    output_tokens: r.output_tokens,
                    cost: r.cost,
                }) {
                    tracing::error!(task = %task, error = %e, "could not journal a model call");
                }
            })
        };
        let allowance = Allowance::observed(
            format!("task {task_id}"),
            attempt.spec.tokens,
            None,
            Some(self.run_allowance.clone()),
            observer,
        );
        options.scope = Some(RunScope {
            run: attempt.run.clone(),
            task: task_id.clone(),
            role: attempt.spec.role.clone(),
            allowance: Some(allowance),
        });
        options.tools = Some(Arc::new(role.tools.observed(Arc::new(Journaled {
            recorder: recorder.clone(),
            task: task_id.clone(),
            attempt: attempt.number,
            recorded: attempt.recorded.clone(),
            kept: Default::default(),
        }))));

        // The run's budget caps the attempt.
        let mut capped_by_run = None;
        if let Some(timeout) = attempt.spec.timeout {
            options.limits.timeout = timeout;
        }
        if let Some(left) = attempt.fuel_left
            && left < options.limits.fuel
        {
            options.limits.fuel = left;
            capped_by_run = Some(LimitKind::Fuel);
        }
        if let Some(left) = attempt.time_left
            && left < options.limits.timeout
        {
            options.limits.timeout = left;
            capped_by_run = Some(LimitKind::Deadline);
        }

        let recall = role.recall;
        let roles = self.specs.clone();
        let source = self.fuel.clone();
        async move {
            let started = Instant::now();
            let mut capped_by_quota = false;
            let held = match source {
                None => None,
                Some(source) => match source.hold(options.limits.fuel).await {
                    Ok(held) => {
                        if held.granted() < options.limits.fuel {
                            options.limits.fuel = held.granted();
                            capped_by_quota = true;
                        }
                        Some(held)
                    }
                    Err(why) => {
                        return AttemptEnd {
                            result: Err(AttemptError {
                                message: why,
                                retryable: false,
                                declined: false,
                            }),
                            fuel_used: 0,
                            duration: started.elapsed(),
                        };
                    }
                },
            };
            // Through the same namespace gate as the role's own memory
            // calls: its manifest ∩ the workflow's grant.
            let memories = plugin
                .recall(&options, &attempt.spec.instructions, recall)
                .await;
            let task = Task {
                id: attempt.spec.id.clone(),
                goal: attempt.goal.clone(),
                instructions: attempt.spec.instructions.clone(),
                input: attempt.spec.input.clone(),
                context: TaskContext {
                    dependencies: attempt.dependencies.clone(),
                    memories,
                    roles,
                    attempt: attempt.number,
                    last_error: attempt.last_error.clone(),
                },
            };
            let outcome = plugin.run_role(&options, &task).await;
            let fuel_used = outcome.usage.fuel_used;
            if let Some(held) = held {
                held.settle(fuel_used);
            }
            let result = match outcome.result {
                Ok(Ok(outcome)) => check_outcome(outcome),
                Ok(Err(role_error)) => Err(AttemptError {
                    retryable: role_error.is_retryable(),
                    message: format!("role {} {role_error}", attempt.spec.role),
                    declined: matches!(role_error, RoleError::InvalidTask(_)),
                }),
                Err(CallError::Limit { kind, detail }) if Some(kind) == capped_by_run => {
                    Err(AttemptError {
                        message: format!(
                            "the run's {} budget is spent: {detail}",
                            match kind {
                                LimitKind::Fuel => "fuel",
                                _ => "wall-clock",
                            }
                        ),
                        retryable: false,
                        declined: false,
                    })
                }
                Err(CallError::Limit {
                    kind: LimitKind::Fuel,
                    detail,
                }) if capped_by_quota => Err(AttemptError {
                    message: format!("the tenant's daily fuel quota is spent: {detail}"),
                    retryable: false,
                    declined: false,
                }),
                Err(e @ CallError::Limit { .. }) => Err(AttemptError {
                    message: e.to_string(),
                    retryable: true,
                    declined: false,
                }),
                Err(e @ CallError::Trap(_)) => Err(AttemptError {
                    message: e.to_string(),
                    retryable: true,
                    declined: false,
                }),
                Err(e) => Err(AttemptError {
                    message: e.to_string(),
                    retryable: false,
                    declined: false,
                }),
            };
            AttemptEnd {
                result,
                fuel_used,
                duration: started.elapsed(),
            }
        }
        .boxed()
    }
}

/// An outcome the journal can keep: artifacts are paths relative to the
/// workspace, never outside it, and the whole fits the journal's cap.
fn check_outcome(outcome: warden_core::Outcome) -> Result<warden_core::Outcome, AttemptError> {
    let size = serde_json::to_vec(&outcome).map_or(usize::MAX, |v| v.len());
    if size > JOURNAL_OUTCOME_BYTES {
        return Err(AttemptError {
            message: format!(
                "the role returned an outcome of {size} bytes; the journal keeps at most {JOURNAL_OUTCOME_BYTES} per task (put large results in the workspace and name them as artifacts)"
            ),
            retryable: true,
            declined: false,
        });
    }
    for a in &outcome.artifacts {
        let path = Path::new(a);
        let escapes = path.is_absolute()
            || path.components().any(|c| {
                !matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            });
        if escapes || a.is_empty() {
            return Err(AttemptError {
                message: format!(
                    "the role returned artifact {a:?}; artifacts are paths relative to the run workspace, without `..`"
                ),
                retryable: true,
                declined: false,
            });
        }
    }
    Ok(outcome)
}

/// What the journal keeps of one tool call's result.
pub const JOURNAL_CALL_BYTES: usize = 64 * 1024;
/// What the journal keeps of the tool call results of one attempt, together.
pub const JOURNAL_ATTEMPT_BYTES: usize = 1024 * 1024;
/// The largest outcome (summary, output, artifacts, follow-ups) the journal
/// records for a task; a larger one fails the attempt.
pub const JOURNAL_OUTCOME_BYTES: usize = 1024 * 1024;

/// Cuts `text` to at most `most` bytes, at a character boundary.
fn cut(text: &mut String, most: usize) {
    if text.len() > most {
        let mut end = most;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// Journals every tool call of one attempt, and answers a call an earlier
/// attempt already made (same position, tool and arguments) from the
/// journal instead of running it again.
struct Journaled {
    recorder: Arc<Recorder>,
    task: String,
    attempt: u32,
    recorded: std::collections::HashMap<ToolCallKey, String>,
    /// Result bytes journaled so far in this attempt.
    kept: std::sync::atomic::AtomicUsize,
}

impl ToolObserver for Journaled {
    fn replay(&self, key: &ToolCallKey) -> Option<String> {
        self.recorded.get(key).cloned()
    }

    fn finished(&self, report: &ToolCallReport) {
        use std::sync::atomic::Ordering;
        let (ok, mut result) = match &report.result {
            Ok(json) => (true, json.clone()),
            Err(e) => (false, e.to_string()),
        };
        let room = JOURNAL_ATTEMPT_BYTES
            .saturating_sub(self.kept.load(Ordering::Relaxed))
            .min(JOURNAL_CALL_BYTES);
        let truncated = result.len() > room;
        cut(&mut result, room);
        // The arguments take what the result left of the call's room; cut
        // arguments do not make the result unusable for a replay.
        let mut arguments = report.arguments.clone();
        cut(&mut arguments, room.saturating_sub(result.len()));
        self.kept
            .fetch_add(result.len() + arguments.len(), Ordering::Relaxed);
        // A failed write stops the run once this attempt ends.
        if let Err(e) = self.recorder.record(Event::ToolCall {
            task: self.task.clone(),
            attempt: self.attempt,
            key: report.key.clone(),
            arguments,
            ok,
            result,
            truncated,
            replayed: report.replayed,
            fuel_used: report.fuel_used,
            ms: report.duration.as_millis() as u64,
        }) {
            tracing::error!(task = %self.task, error = %e, "could not journal a tool call");
        }
    }
}
