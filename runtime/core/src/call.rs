//! One call: a fresh `Store` with its own limits, WASI context and grants;
//! instantiate, call one export, report, drop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::Instrument;
use warden_llm::router::Caller;
use warden_llm::usage::Allowance;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;

use crate::bindings::exports::warden::plugin::tool as wit_tool;
use crate::bindings::role::exports::warden::plugin::role as wit_role;
use crate::host::exec::ExecContext;
use crate::host::http::OutboundHttp;
use crate::host::llm::LlmContext;
use crate::host::log::LogBudget;
use crate::host::memory::MemoryContext;
use crate::host::tools::ToolsContext;
use crate::limits::{CallLimiter, LimitKind, Limits, MIB};
use crate::plugin::{CompiledPlugin, Exports, ToolError, ToolSpec};
use crate::policy::{self, Capabilities, DirMode, Grant, TenantId};
use crate::role::{self, Outcome, RoleError, RoleSpec, Task};
use crate::state::{CallLabels, CallState};
use crate::stdio::{CapturedOutput, Output};
use crate::tools::ToolSet;

/// What the operator decides about one call.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    pub tenant: TenantId,
    pub grant: Grant,
    pub limits: Limits,
    /// The tools the plugin may call through `warden:plugin/tools` (a
    /// role's); `None` grants none.
    pub tools: Option<ToolSet>,
    /// The run and task the call works for: its model calls are charged
    /// there and count against its budget.
    pub scope: Option<RunScope>,
}

/// The run and task a call works for.
#[derive(Debug, Clone)]
pub struct RunScope {
    pub run: String,
    pub task: String,
    /// The role (for its default model).
    pub role: String,
    /// The task's token and cost budget, charged up to the run's.
    pub allowance: Option<Arc<Allowance>>,
}

/// How a call ended, with what it used and printed. Always returned, whether
/// the call succeeded or not, so a caller can report usage and output either
/// way.
#[derive(Debug)]
pub struct CallOutcome<T> {
    pub result: Result<T, CallError>,
    pub usage: Usage,
    pub stdout: Output,
    pub stderr: Output,
    /// Grants the plugin's manifest cut away or narrowed, each with why.
    pub narrowed: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub fuel_used: u64,
    pub duration: Duration,
    /// Log lines past the per-call budget that were dropped.
    pub log_lines_dropped: u32,
}

/// Why a call produced no result. A tool's own error is not one of these: it
/// is a result (`Ok(Err(ToolError))`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// A limit stopped the guest.
    #[error("{kind} limit exceeded: {detail}")]
    Limit { kind: LimitKind, detail: String },
    /// The guest trapped for a reason of its own.
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The guest returned something the contract does not allow (a tool
    /// result or schema that is not JSON).
    #[error("plugin broke the warden:plugin contract: {0}")]
    Contract(String),
    /// The call could not be set up from what the operator gave (a granted
    /// directory that cannot be opened).
    #[error("{0}")]
    Setup(String),
}

impl CallError {
    /// A short tag for traces: `limit:fuel`, `trap`, …
    pub fn status(&self) -> &'static str {
        match self {
            CallError::Limit { kind, .. } => match kind {
                LimitKind::Fuel => "limit:fuel",
                LimitKind::Deadline => "limit:deadline",
                LimitKind::Memory => "limit:memory",
                LimitKind::Output => "limit:output",
            },
            CallError::Trap(_) => "trap",
            CallError::Contract(_) => "contract",
            CallError::Setup(_) => "setup",
        }
    }

    pub fn limit(&self) -> Option<LimitKind> {
        match self {
            CallError::Limit { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// Headroom over the output limit for wasmtime's per-host-call data fuel,
/// which also bounds single WASI writes: large enough for ordinary file I/O,
/// small enough that a guest cannot make the host allocate much.
const HOSTCALL_DATA_FLOOR: u64 = 64 * MIB;

/// What a program run gets besides its grants: its argv, its stdin and the
/// directory it starts in.
#[derive(Debug, Clone, Default)]
pub struct RunInput {
    /// `argv`, program name first.
    pub args: Vec<String>,
    pub stdin: Vec<u8>,
    /// The guest's working directory, e.g. `/work`.
    pub cwd: Option<String>,
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
    /// Calls the plugin's `list-tools` in a fresh sandbox.
    pub async fn list_tools(&self, options: &CallOptions) -> CallOutcome<Vec<ToolSpec>> {
        let outcome = self.run(options, Invocation::ListTools).await;
        outcome.map(|returned| match returned {
            Returned::Tools(specs) => specs.into_iter().map(tool_spec).collect(),
            _ => Err(CallError::Contract("wrong export answered".into())),
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
            Returned::Call(Err(e)) => Ok(Err(tool_error(e))),
            _ => Err(CallError::Contract("wrong export answered".into())),
        })
    }

    /// Runs a program (a `wasi:cli/run` component) in a fresh sandbox and
    /// returns its exit code. A program that exits non-zero after a refused
    /// memory growth is reported as stopped by the memory limit.
    pub async fn run_program(&self, options: &CallOptions, input: &RunInput) -> CallOutcome<i32> {
        let outcome = self.run(options, Invocation::Run(input)).await;
        outcome.map(|returned| match returned {
            Returned::Exit(code) => Ok(code),
            _ => Err(CallError::Contract("wrong export answered".into())),
        })
    }

    /// Asks a role plugin what it is, in a fresh sandbox.
    pub async fn describe_role(&self, options: &CallOptions) -> CallOutcome<RoleSpec> {
        let outcome = self.run(options, Invocation::Describe).await;
        outcome.map(|returned| match returned {
            Returned::Spec(spec) => Ok(role::from_wit_spec(spec)),
            _ => Err(CallError::Contract("wrong export answered".into())),
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
            _ => Err(CallError::Contract("wrong export answered".into())),
        })
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
        let started = Instant::now();
        let plugin = &self.inner;
        let limits = options.limits;
        let labels = CallLabels {
            tenant: options.tenant.clone(),
            plugin: plugin.name.clone(),
        };

        let caps = policy::effective(
            &options.grant,
            plugin.manifest.as_ref(),
            &labels.tenant,
            &labels.plugin,
        );
        let stdout = CapturedOutput::new(limits.stdio_bytes as usize);
        let stderr = CapturedOutput::new(limits.stdio_bytes as usize);
        let deadline = started + limits.timeout;

        let run_input = match &invocation {
            Invocation::Run(input) => Some(*input),
            _ => None,
        };
        let (result, fuel_used, log_lines_dropped) = match self.new_store(
            options, &caps, labels, deadline, &stdout, &stderr, run_input,
        ) {
            Err(setup) => (Err(setup), 0, 0),
            Ok(mut store) => {
                let exports = &plugin.exports;
                let run = async {
                    match (exports, invocation) {
                        (Exports::Tool(pre), Invocation::ListTools) => {
                            let instance = pre.instantiate_async(&mut store).await?;
                            let tool = instance.warden_plugin_tool();
                            tool.call_list_tools(&mut store).await.map(Returned::Tools)
                        }
                        (Exports::Tool(pre), Invocation::CallTool { name, arguments }) => {
                            let instance = pre.instantiate_async(&mut store).await?;
                            let tool = instance.warden_plugin_tool();
                            tool.call_call_tool(&mut store, name, &arguments.to_string())
                                .await
                                .map(Returned::Call)
                        }
                        (Exports::Command(pre), Invocation::Run(_)) => {
                            let command = pre.instantiate_async(&mut store).await?;
                            let ran = command.wasi_cli_run().call_run(&mut store).await?;
                            Ok(Returned::Exit(if ran.is_ok() { 0 } else { 1 }))
                        }
                        (Exports::Role(pre), Invocation::Describe) => {
                            let instance = pre.instantiate_async(&mut store).await?;
                            let role = instance.warden_plugin_role();
                            role.call_describe(&mut store).await.map(Returned::Spec)
                        }
                        (Exports::Role(pre), Invocation::RunRole(task)) => {
                            let instance = pre.instantiate_async(&mut store).await?;
                            let role = instance.warden_plugin_role();
                            role.call_run(&mut store, &role::to_wit_task(task))
                                .await
                                .map(Returned::Role)
                        }
                        (Exports::Tool(_), Invocation::Run(_)) => {
                            Err(wasmtime::Error::new(WrongKind(
                                "is a tool plugin, not a program; call its tools with `warden tool call`",
                            )))
                        }
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
                };
                // The epoch callback stops guest code at the deadline; this
                // timer also stops a guest waiting in a host call.
                let timed = tokio::time::timeout_at(deadline.into(), run).await;
                let state = store.data();
                let result = match timed {
                    Ok(Ok(returned)) => Ok(returned),
                    Ok(Err(error)) => match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
                        Some(exit) if run_input.is_some() => Ok(Returned::Exit(exit.0)),
                        _ => Err(classify(&error, state, &limits, plugin.name.as_ref())),
                    },
                    Err(_elapsed) => Err(deadline_error(&limits)),
                };
                // A program that failed after a refused growth was stopped by
                // the cap, even if it caught the error and exited itself.
                let result = match result {
                    Ok(Returned::Exit(code))
                        if code != 0 && state.limiter.memory_refused.is_some() =>
                    {
                        Err(memory_error(state, &limits))
                    }
                    other => other,
                };
                let dropped = state.log.dropped();
                let fuel_left = store.get_fuel().unwrap_or(0);
                (result, limits.fuel.saturating_sub(fuel_left), dropped)
            }
        };

        let outcome = CallOutcome {
            result,
            usage: Usage {
                fuel_used,
                duration: started.elapsed(),
                log_lines_dropped,
            },
            stdout: stdout.take(),
            stderr: stderr.take(),
            narrowed: caps.narrowed,
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

    /// A fresh store for one call: its state, limiter, fuel, hostcall-data
    /// cap and deadline.
    #[allow(clippy::too_many_arguments)]
    fn new_store(
        &self,
        options: &CallOptions,
        caps: &Capabilities,
        labels: CallLabels,
        deadline: Instant,
        stdout: &CapturedOutput,
        stderr: &CapturedOutput,
        run_input: Option<&RunInput>,
    ) -> Result<Store<CallState>, CallError> {
        let limits = &options.limits;
        let scope = options.scope.as_ref();
        let state = CallState {
            wasi: build_wasi(caps, stdout, stderr, run_input)?,
            exec: ExecContext::new(&self.inner.engine, labels.tenant.clone(), *limits, deadline),
            llm: LlmContext::new(
                self.inner.engine.inner.llm.clone(),
                Caller {
                    tenant: labels.tenant.to_string(),
                    plugin: labels.plugin.to_string(),
                    allowed: caps.models.clone(),
                    run: scope.map(|s| s.run.clone()),
                    role: scope.map(|s| s.role.clone()),
                    allowance: scope.and_then(|s| s.allowance.clone()),
                },
            ),
            memory: MemoryContext::new(
                self.inner.engine.inner.memory.clone(),
                labels.tenant.clone(),
                labels.plugin.clone(),
                caps.memory.clone(),
            ),
            tools: ToolsContext::new(options.tools.clone(), options.scope.clone()),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            outbound: OutboundHttp::new(
                Arc::new(caps.net.clone()),
                labels.clone(),
                limits.http_body_bytes,
            ),
            limiter: CallLimiter::new(limits),
            log: LogBudget::default(),
            labels,
            deadline,
            deadline_hit: false,
        };
        let mut store = Store::new(&self.inner.engine.inner.wasmtime, state);
        store.limiter(|state| &mut state.limiter);
        let hostcall_data = limits.output_bytes.max(HOSTCALL_DATA_FLOOR) + 64 * 1024;
        store.set_hostcall_fuel(usize::try_from(hostcall_data).unwrap_or(usize::MAX));
        store
            .set_fuel(limits.fuel)
            .map_err(|e| CallError::Setup(format!("cannot set fuel: {e}")))?;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if Instant::now() >= state.deadline {
                state.deadline_hit = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Let other tasks on this thread run between ticks.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }
}

impl<T> CallOutcome<T> {
    fn map<U>(self, f: impl FnOnce(T) -> Result<U, CallError>) -> CallOutcome<U> {
        CallOutcome {
            result: self.result.and_then(f),
            usage: self.usage,
            stdout: self.stdout,
            stderr: self.stderr,
            narrowed: self.narrowed,
        }
    }
}

fn build_wasi(
    caps: &Capabilities,
    stdout: &CapturedOutput,
    stderr: &CapturedOutput,
    run_input: Option<&RunInput>,
) -> Result<WasiCtx, CallError> {
    let mut builder = WasiCtxBuilder::new();
    // No env, no sockets; args and stdin only for a program, as given; files
    // only as granted below.
    builder
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    if let Some(input) = run_input {
        builder.args(&input.args);
        builder.stdin(MemoryInputPipe::new(input.stdin.clone()));
        if let Some(cwd) = &input.cwd {
            builder.initial_cwd(cwd);
        }
    }
    for dir in &caps.dirs {
        let perms = match dir.mode {
            DirMode::ReadOnly => FsPerms::ReadOnly,
            DirMode::ReadWrite => FsPerms::ReadWrite,
        };
        builder
            .preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(|e| {
                CallError::Setup(format!(
                    "cannot open granted directory {}: {e:#}; check the path given to --dir/--dir-rw or the policy file",
                    dir.host.display()
                ))
            })?;
    }
    Ok(builder.build())
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

fn memory_error(state: &CallState, limits: &Limits) -> CallError {
    let asked = state.limiter.memory_refused.unwrap_or(limits.memory_bytes);
    CallError::Limit {
        kind: LimitKind::Memory,
        detail: format!(
            "the guest asked for {} MiB of linear memory; the limit is {} MiB (raise it with --memory)",
            asked.div_ceil(MIB),
            limits.memory_bytes / MIB
        ),
    }
}

fn deadline_error(limits: &Limits) -> CallError {
    CallError::Limit {
        kind: LimitKind::Deadline,
        detail: format!(
            "the call ran longer than {} ms (raise it with --timeout)",
            limits.timeout.as_millis()
        ),
    }
}

/// Names what stopped a guest. Limits are checked before the trap itself: a
/// Rust guest whose allocation was refused aborts with `unreachable`, which
/// only the limiter's record can explain.
fn classify(
    error: &wasmtime::Error,
    state: &CallState,
    limits: &Limits,
    plugin: &str,
) -> CallError {
    let trap = error.downcast_ref::<Trap>().copied();
    if state.deadline_hit || trap == Some(Trap::Interrupt) {
        return deadline_error(limits);
    }
    if trap == Some(Trap::OutOfFuel) {
        return CallError::Limit {
            kind: LimitKind::Fuel,
            detail: format!(
                "the guest used all {} units of fuel (raise it with --fuel)",
                limits.fuel
            ),
        };
    }
    if state.limiter.memory_refused.is_some() {
        return memory_error(state, limits);
    }
    if is_hostcall_data_exhausted(error) {
        return CallError::Limit {
            kind: LimitKind::Output,
            detail: format!(
                "the guest tried to hand the host more than {} bytes in one call",
                limits.output_bytes.max(HOSTCALL_DATA_FLOOR)
            ),
        };
    }
    if trap == Some(Trap::StackOverflow) {
        return CallError::Trap("stack overflow: the guest recursed too deeply".into());
    }
    if let Some(elements) = state.limiter.table_refused {
        return CallError::Trap(format!(
            "a table grew to {elements} elements, past the limit of {}",
            limits.table_elements
        ));
    }
    if let Some(WrongKind(why)) = error.downcast_ref::<WrongKind>() {
        return CallError::Setup(format!("{plugin} {why}"));
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return CallError::Trap(format!(
            "the plugin called exit({}) instead of returning a result",
            exit.0
        ));
    }
    // `{:#}` is the error chain with the wasm backtrace, without the host's
    // own native backtrace.
    let mut text = format!("{error:#}");
    if text.len() > 8 * 1024 {
        let mut end = 8 * 1024;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("\n[...]");
    }
    CallError::Trap(text)
}

/// wasmtime reports exhausted hostcall fuel with a private error type; its
/// message is the only handle on it.
fn is_hostcall_data_exhausted(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    })
}

fn tool_spec(spec: wit_tool::ToolSpec) -> Result<ToolSpec, CallError> {
    let input_schema = serde_json::from_str(&spec.input_schema).map_err(|e| {
        CallError::Contract(format!(
            "tool {:?} has an input schema that is not JSON: {e}",
            spec.name
        ))
    })?;
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
