//! A compiled plugin: checked, compiled and linked once, then shared by every
//! call and every tenant; each of its calls runs in a fresh [`Sandbox`].
//! Cheap to clone.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use tracing::Instrument;
use warden_api::memory::Hit;
use wasmtime_wasi::p2::bindings::Command;

use crate::bindings::ToolPluginExtPre;
use crate::bindings::exports::warden::plugin::tool as wit_tool;
use crate::bindings::role::RolePluginPre;
use crate::bindings::role::exports::warden::plugin::role as wit_role;
use crate::call::{
    self, CallError, CallOptions, CallOutcome, Imports, RunInput, Sandbox, Services,
};
use crate::document;
use crate::host::memory::MemoryContext;
use crate::limits::{LimitError, LimitKind, LimitSettings, Limits};
use crate::manifest::Manifest;
use crate::policy;
use crate::role::{self, Outcome, RoleError, RoleSpec, Task};
use crate::scope::CallLabels;
use crate::signature::PublicKey;
use crate::state::CallState;
use crate::tool::{ToolError, ToolSpec};
use crate::warm::{Warm, WarmPool};

#[derive(Clone)]
pub struct CompiledPlugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    /// Held so the engine's services (and its epoch ticker) outlive every
    /// plugin that needs them.
    services: Arc<Services>,
    name: Arc<str>,
    sha256: String,
    manifest: Option<Manifest>,
    /// Who signed the component, its signature checked at load.
    signer: Option<PublicKey>,
    exports: Exports,
    imports: Imports,
    /// Instances made ahead of their calls, for a language runtime whose
    /// engine keeps some ([`crate::EngineConfig::warm_instances`]).
    warm: OnceLock<WarmPool>,
}

/// What a component exports, linked and ready to instantiate.
pub(crate) enum Exports {
    /// `warden:plugin/tool`: a tool plugin.
    Tool(ToolPluginExtPre<CallState>),
    /// `warden:plugin/role`: a role of a run.
    Role(RolePluginPre<CallState>),
    /// `wasi:cli/run`: a program (`warden exec wasm`, the language runtimes).
    Command(wasmtime_wasi::p2::bindings::CommandPre<CallState>),
}

/// Which kind of component a plugin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// Exports `warden:plugin/tool`.
    Tool,
    /// Exports `warden:plugin/role`.
    Role,
    /// Exports `wasi:cli/run`.
    Command,
}

impl std::fmt::Debug for CompiledPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPlugin")
            .field("name", &self.inner.name)
            .field("sha256", &self.inner.sha256)
            .finish_non_exhaustive()
    }
}

enum Invocation<'a> {
    ListTools,
    CallTool { name: &'a str, arguments: &'a str },
    Run(&'a RunInput),
    Describe,
    RunRole(&'a Task),
}

enum Returned {
    Tools(Vec<wit_tool::ToolSpec>),
    Call(Result<String, wit_tool::ToolError>),
    Exit(i32),
    Spec(wit_role::RoleSpec),
    Role(Result<wit_role::Outcome, wit_role::RoleError>),
}

impl Invocation<'_> {
    /// The name traces give it.
    fn label(&self) -> &str {
        match self {
            Invocation::ListTools => "list-tools",
            Invocation::CallTool { name, .. } => name,
            Invocation::Run(_) => "run",
            Invocation::Describe => "describe",
            Invocation::RunRole(task) => &task.id,
        }
    }
}

impl CompiledPlugin {
    /// A plugin the engine compiled and linked.
    pub(crate) fn new(
        services: Arc<Services>,
        name: String,
        sha256: String,
        manifest: Option<Manifest>,
        signer: Option<PublicKey>,
        exports: Exports,
        imports: Imports,
    ) -> CompiledPlugin {
        CompiledPlugin {
            inner: Arc::new(PluginInner {
                services,
                name: name.into(),
                sha256,
                manifest,
                signer,
                exports,
                imports,
                warm: OnceLock::new(),
            }),
        }
    }

    /// Keeps `count` instances of this program made ahead of its runs, by a
    /// thread of their own ([`crate::warm`]). Only for warden's language
    /// runtimes, and only when instantiating runs no code of theirs
    /// ([`crate::warm::runs_code_when_instantiated`], checked by the
    /// caller on the component's bytes).
    pub(crate) fn keep_warm(&self, count: usize) {
        let plugin = &self.inner;
        let Exports::Command(pre) = &plugin.exports else {
            return;
        };
        if count == 0 || plugin.warm.get().is_some() {
            return;
        }
        let started = WarmPool::start(
            plugin.services.clone(),
            plugin.name.clone(),
            plugin.imports,
            pre.clone(),
            count,
        );
        match started {
            Ok(pool) => {
                let _ = plugin.warm.set(pool);
            }
            Err(e) => {
                tracing::warn!(runtime = %plugin.name, error = %e, "cannot start the thread that makes instances ahead");
            }
        }
    }

    /// The manifest's name, or one made from the file name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// SHA-256 of the component, hex.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// Whether its engine meters fuel ([`crate::EngineConfig::meters_fuel`]).
    pub fn meters_fuel(&self) -> bool {
        self.inner.services.meters_fuel
    }

    /// Who signed the component (its signature held at load), if anyone.
    pub fn signer(&self) -> Option<&PublicKey> {
        self.inner.signer.as_ref()
    }

    pub fn manifest(&self) -> Option<&Manifest> {
        self.inner.manifest.as_ref()
    }

    pub fn kind(&self) -> ComponentKind {
        match self.inner.exports {
            Exports::Tool(_) => ComponentKind::Tool,
            Exports::Role(_) => ComponentKind::Role,
            Exports::Command(_) => ComponentKind::Command,
        }
    }

    /// The limits of a call. `explicit` (CLI flags) wins outright; otherwise
    /// the manifest's defaults apply, but never above `operator` (the policy
    /// file, over the built-in defaults).
    pub fn limits(
        &self,
        operator: LimitSettings,
        explicit: LimitSettings,
    ) -> Result<Limits, LimitError> {
        let base = operator.apply_to(Limits::default())?;
        let requested = self
            .manifest()
            .map(|m| m.limits.at_most(&base))
            .unwrap_or_default();
        explicit.or(requested).apply_to(base)
    }

    /// Calls the plugin's `list-tools` in a fresh sandbox.
    pub async fn list_tools(&self, options: &CallOptions) -> CallOutcome<Vec<ToolSpec>> {
        let outcome = self.run(options, Invocation::ListTools).await;
        outcome.map(|returned| match returned {
            Returned::Tools(specs) => specs.into_iter().map(tool_spec).collect(),
            _ => Err(wrong_export()),
        })
    }

    /// Calls one tool with JSON arguments in a fresh sandbox. `Ok(Err(_))` is
    /// the tool's own error.
    pub async fn call_tool(
        &self,
        options: &CallOptions,
        tool: &str,
        arguments: &str,
    ) -> CallOutcome<Result<String, ToolError>> {
        let output_limit = options.limits.output_bytes;
        let invocation = Invocation::CallTool {
            name: tool,
            arguments,
        };
        let outcome = self.run(options, invocation).await;
        outcome.map(|returned| match returned {
            Returned::Call(Ok(json)) => {
                if json.len() as u64 > output_limit {
                    return Err(CallError::Limit {
                        kind: LimitKind::Output,
                        detail: format!(
                            "the tool returned {} bytes; the output limit is {output_limit}",
                            json.len()
                        ),
                    });
                }
                match serde_json::from_str::<serde::de::IgnoredAny>(&json) {
                    Ok(_) => Ok(Ok(json)),
                    Err(e) => Err(CallError::Contract(format!(
                        "tool {tool:?} returned a result that is not JSON: {e}"
                    ))),
                }
            }
            Returned::Call(Err(e)) => {
                let e = tool_error(e);
                if e.message().len() as u64 > output_limit {
                    return Err(CallError::Limit {
                        kind: LimitKind::Output,
                        detail: format!(
                            "the tool returned an error of {} bytes; the output limit is {output_limit}",
                            e.message().len()
                        ),
                    });
                }
                Ok(Err(e))
            }
            _ => Err(wrong_export()),
        })
    }

    /// Runs a program (a `wasi:cli/run` component) in a fresh sandbox and
    /// returns its exit code. A program that exits non-zero after a refused
    /// memory growth is reported as stopped by the memory limit.
    pub async fn run_program(&self, options: &CallOptions, input: &RunInput) -> CallOutcome<i32> {
        let outcome = self.run(options, Invocation::Run(input)).await;
        outcome.map(|returned| match returned {
            Returned::Exit(code) => Ok(code),
            _ => Err(wrong_export()),
        })
    }

    /// Asks a role plugin what it is, in a fresh sandbox.
    pub async fn describe_role(&self, options: &CallOptions) -> CallOutcome<RoleSpec> {
        let outcome = self.run(options, Invocation::Describe).await;
        outcome.map(|returned| match returned {
            Returned::Spec(spec) => Ok(role::from_wit_spec(spec)),
            _ => Err(wrong_export()),
        })
    }

    /// Runs one attempt of a task in a role plugin, in a fresh sandbox.
    /// `Ok(Err(_))` is the role's own error.
    pub async fn run_role(
        &self,
        options: &CallOptions,
        task: &Task,
    ) -> CallOutcome<Result<Outcome, RoleError>> {
        let outcome = self.run(options, Invocation::RunRole(task)).await;
        outcome.map(|returned| match returned {
            Returned::Role(Ok(outcome)) => role::from_wit_outcome(outcome).map(Ok),
            Returned::Role(Err(e)) => Ok(Err(role::from_wit_error(e))),
            _ => Err(wrong_export()),
        })
    }

    /// Up to `top_k` memories relevant to `query`, from the namespaces this
    /// plugin may read under `options` (its manifest ∩ the grant), through
    /// the same gate as the plugin's own `warden:plugin/memory` calls: what
    /// a role is given with its task.
    pub async fn recall(&self, options: &CallOptions, query: &str, top_k: u32) -> Vec<Hit> {
        if top_k == 0 {
            return Vec::new();
        }
        let caps = policy::effective(
            &options.grant,
            self.manifest(),
            &options.tenant,
            &self.inner.name,
        );
        let gate = MemoryContext::new(
            self.inner.services.memories.clone(),
            CallLabels {
                tenant: options.tenant.clone(),
                plugin: self.inner.name.clone(),
            },
            caps.memory,
        );
        gate.recall(query, top_k).await
    }

    async fn run(
        &self,
        options: &CallOptions,
        invocation: Invocation<'_>,
    ) -> CallOutcome<Returned> {
        let tool = invocation.label();
        let span =
            tracing::info_span!("call", tenant = %options.tenant, plugin = %self.inner.name, tool);
        self.run_in_span(options, invocation).instrument(span).await
    }

    async fn run_in_span(
        &self,
        options: &CallOptions,
        invocation: Invocation<'_>,
    ) -> CallOutcome<Returned> {
        let plugin = &self.inner;
        let caps = policy::effective(
            &options.grant,
            plugin.manifest.as_ref(),
            &options.tenant,
            &plugin.name,
        );
        let run_input = match &invocation {
            Invocation::Run(input) => Some(*input),
            _ => None,
        };
        let pool = match &invocation {
            Invocation::Run(_) => plugin.warm.get(),
            _ => None,
        };
        let outcome = match sandbox(plugin, pool, options, &caps, run_input) {
            Err(setup) => call::not_started(setup, caps.narrowed),
            Ok((mut sandbox, warm)) => {
                let deadline = sandbox.deadline();
                let run = invoke(&plugin.exports, sandbox.store(), invocation, warm);
                // The epoch callback stops guest code at the deadline; this
                // timer also stops a guest waiting in a host call.
                let timed = tokio::time::timeout_at(deadline.into(), run).await;
                let result = match timed {
                    Ok(Ok(returned)) => Ok(returned),
                    Ok(Err(error)) => match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
                        Some(exit) if run_input.is_some() => Ok(Returned::Exit(exit.0)),
                        _ => match error.downcast_ref::<WrongKind>() {
                            Some(WrongKind(why)) => {
                                Err(CallError::Setup(format!("{} {why}", plugin.name)))
                            }
                            None => Err(sandbox.classify(&error)),
                        },
                    },
                    Err(_elapsed) => Err(sandbox.deadline_error()),
                };
                // A program that failed after a refused growth was stopped
                // by the cap, even if it caught the error and exited itself.
                let result = match result {
                    Ok(Returned::Exit(code)) if code != 0 && sandbox.memory_refused() => {
                        Err(sandbox.memory_error())
                    }
                    other => other,
                };
                sandbox.finish(result, caps.narrowed, |store| match pool {
                    Some(pool) => pool.retire(store),
                    None => drop(store),
                })
            }
        };
        tracing::info!(
            fuel_used = outcome.usage.fuel_used,
            duration_us = outcome.usage.duration.as_micros() as u64,
            status = outcome
                .result
                .as_ref()
                .map_or_else(CallError::status, |_| "returned"),
            "call finished"
        );
        outcome
    }
}

/// The sandbox of one call: an instance made ahead from `pool` when there
/// is one the call's limits admit (with it, its `Command`), else a fresh
/// store for [`invoke`] to instantiate in. A call whose limits are tighter
/// than the ones the instance was made under instantiates its own, so that
/// they refuse it as they should.
fn sandbox(
    plugin: &PluginInner,
    pool: Option<&WarmPool>,
    options: &CallOptions,
    caps: &policy::Capabilities,
    run_input: Option<&RunInput>,
) -> Result<(Sandbox, Option<Command>), CallError> {
    let services = &plugin.services;
    let prepared = Sandbox::prepare(
        services,
        &plugin.name,
        plugin.imports,
        options,
        caps,
        run_input,
    )?;
    match pool.and_then(|pool| pool.take(&options.limits)) {
        Some(Warm { store, command }) => {
            Ok((Sandbox::adopt(services, prepared, store)?, Some(command)))
        }
        None => Ok((Sandbox::new(services, prepared)?, None)),
    }
}

/// Instantiates the component in `store` (unless `warm`, a program's
/// instance made ahead, is given) and calls the export `invocation` names.
async fn invoke(
    exports: &Exports,
    store: &mut wasmtime::Store<CallState>,
    invocation: Invocation<'_>,
    warm: Option<Command>,
) -> wasmtime::Result<Returned> {
    match (exports, invocation) {
        (Exports::Tool(pre), Invocation::ListTools) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            instantiated(store);
            let tool = instance.warden_plugin_tool();
            tool.call_list_tools(store).await.map(Returned::Tools)
        }
        (Exports::Tool(pre), Invocation::CallTool { name, arguments }) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            instantiated(store);
            let tool = instance.warden_plugin_tool();
            tool.call_call_tool(store, name, &arguments.to_string())
                .await
                .map(Returned::Call)
        }
        (Exports::Command(pre), Invocation::Run(_)) => {
            let command = match warm {
                Some(command) => command,
                None => {
                    let command = pre.instantiate_async(&mut *store).await?;
                    instantiated(store);
                    command
                }
            };
            let ran = command.wasi_cli_run().call_run(store).await?;
            Ok(Returned::Exit(if ran.is_ok() { 0 } else { 1 }))
        }
        (Exports::Role(pre), Invocation::Describe) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            instantiated(store);
            let role = instance.warden_plugin_role();
            role.call_describe(store).await.map(Returned::Spec)
        }
        (Exports::Role(pre), Invocation::RunRole(task)) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            instantiated(store);
            let role = instance.warden_plugin_role();
            role.call_run(store, &role::to_wit_task(task))
                .await
                .map(Returned::Role)
        }
        (Exports::Tool(_), Invocation::Run(_)) => Err(wasmtime::Error::new(WrongKind(
            "is a tool plugin, not a program; call its tools with `warden tool call`",
        ))),
        (Exports::Tool(_), _) => Err(wasmtime::Error::new(WrongKind(
            "is a tool plugin, not a role; grant it to a role as a tool in the workflow",
        ))),
        (Exports::Role(_), _) => Err(wasmtime::Error::new(WrongKind(
            "is a role plugin, not a tool plugin or a program; run it as a role of a workflow with `warden run`",
        ))),
        (Exports::Command(_), _) => Err(wasmtime::Error::new(WrongKind(
            "is a program (wasi:cli/run), not a tool plugin; run it with `warden exec wasm`",
        ))),
    }
}

/// Notes when the instance was ready, for the call's [`crate::Phases`].
fn instantiated(store: &mut wasmtime::Store<CallState>) {
    store.data_mut().instantiated = Some(std::time::Instant::now());
}

/// Asking a tool plugin to run as a program, or the other way round.
#[derive(Debug)]
struct WrongKind(&'static str);

impl std::fmt::Display for WrongKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for WrongKind {}

fn wrong_export() -> CallError {
    CallError::Contract("wrong export answered".into())
}

fn tool_spec(spec: wit_tool::ToolSpec) -> Result<ToolSpec, CallError> {
    let input_schema = document::parse(
        &format!("the input schema of tool {:?}", spec.name),
        &spec.input_schema,
    )
    .map_err(CallError::Contract)?;
    Ok(ToolSpec {
        name: spec.name,
        description: spec.description,
        input_schema,
    })
}

fn tool_error(e: wit_tool::ToolError) -> ToolError {
    match e {
        wit_tool::ToolError::InvalidArguments(m) => ToolError::InvalidArguments(m),
        wit_tool::ToolError::UnknownTool(m) => ToolError::UnknownTool(m),
        wit_tool::ToolError::Denied(m) => ToolError::Denied(m),
        wit_tool::ToolError::Failed(m) => ToolError::Failed(m),
    }
}
