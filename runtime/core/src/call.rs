//! One call: what the operator decides about it ([`CallOptions`]), how it
//! ended ([`CallOutcome`]), and the running sandbox itself ([`Sandbox`]): a
//! fresh `Store` with its own limits, WASI context and grants, built for
//! one call and dropped with it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use warden_api::llm::{Caller, Models};
use warden_api::memory::Memories;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;

use crate::epoch::EpochTicker;
use crate::grant::{DirMode, Grant, TenantId};
use crate::host::exec::{ExecContext, Programs};
use crate::host::files::{DiskQuota, FileBudget, FilesContext, TenantDisks};
use crate::host::http::OutboundHttp;
use crate::host::llm::LlmContext;
use crate::host::log::LogContext;
use crate::host::memory::MemoryContext;
use crate::host::tools::{ToolBox, ToolsContext};
use crate::limits::{CallLimiter, LimitKind, Limits, MIB};
use crate::policy::Capabilities;
use crate::scope::{CallLabels, RunScope};
use crate::state::CallState;
use crate::stdio::{CapturedOutput, Output};

/// What the operator decides about one call.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    pub tenant: TenantId,
    pub grant: Grant,
    pub limits: Limits,
    /// The tools the plugin may call through `warden:plugin/tools` (a
    /// role's); `None` grants none.
    pub tools: Option<Arc<dyn ToolBox>>,
    /// The run and task the call works for: its model calls are charged
    /// there and count against its budget.
    pub scope: Option<RunScope>,
    /// Names this call stably across retries, crashes and nodes when it is
    /// a tool call a run's task makes: `RUN/TASK/N`, N the call's position
    /// in the task (0 first). The plugin reads it as the environment
    /// variable [`CALL_KEY_VAR`] to keep side effects the journal does not
    /// cover (a payment, a message) from happening twice.
    pub call_key: Option<String>,
}

/// The environment variable a tool plugin reads its call's idempotency key
/// from (see [`CallOptions::call_key`]); unset outside a run.
pub const CALL_KEY_VAR: &str = "WARDEN_CALL_KEY";

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

impl<T> CallOutcome<T> {
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> Result<U, CallError>) -> CallOutcome<U> {
        CallOutcome {
            result: self.result.and_then(f),
            usage: self.usage,
            stdout: self.stdout,
            stderr: self.stderr,
            narrowed: self.narrowed,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Fuel the call used, the fuel of every sandbox it started included;
    /// 0 on an engine that does not meter fuel.
    pub fuel_used: u64,
    pub duration: Duration,
    /// Log lines past the per-call budget that were dropped.
    pub log_lines_dropped: u32,
    /// Where `duration` went.
    #[serde(skip)]
    pub phases: Phases,
}

/// Where a call's time went, phase by phase; together they make up
/// [`Usage::duration`]. For benchmarks and traces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    /// Building the store: the WASI context with its grants opened, the
    /// limiter, fuel and deadline.
    pub setup: Duration,
    /// Instantiating the component in the store (zero when it did not get
    /// that far, or when the instance was made ahead of the call: see
    /// [`crate::EngineConfig::warm_instances`]).
    pub instantiate: Duration,
    /// The export's call: the guest's own code and the host calls it made.
    pub call: Duration,
    /// Dropping the store: the instance's memories and tables go back to
    /// the pool, their dirty pages reset. Only the hand-over, when the
    /// engine makes instances ahead: a thread of its own drops the store.
    pub teardown: Duration,
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

/// What a program run gets besides its grants: its argv, its stdin and the
/// directory it starts in.
#[derive(Debug, Clone, Default)]
pub struct RunInput {
    /// `argv`, program name first.
    pub args: Vec<String>,
    pub stdin: Vec<u8>,
    /// The guest's working directory, e.g. `/work`.
    pub cwd: Option<String>,
    /// Every directory granted is one warden made for this run (the
    /// scratch and code directories), holding only regular files and
    /// directories it or the guest wrote (WASI cannot make a FIFO or a
    /// device). File operations then run on the calling thread. Leave it
    /// false when an operator's directory is granted: a FIFO or a slow
    /// mount there could block the thread past the deadline.
    pub own_dirs_only: bool,
}

/// What every call of one engine shares: the wasmtime engine and the
/// services behind the host interfaces. Plugins hold it, so it (and the
/// epoch ticker) lives as long as any of them.
pub(crate) struct Services {
    pub(crate) wasmtime: wasmtime::Engine,
    /// Whether the engine meters fuel ([`crate::EngineConfig::meters_fuel`]).
    pub(crate) meters_fuel: bool,
    pub(crate) models: Option<Arc<dyn Models>>,
    pub(crate) memories: Option<Arc<dyn Memories>>,
    pub(crate) programs: Arc<dyn Programs>,
    /// Host file descriptors all calls together may hold for guests.
    pub(crate) files: Arc<FileBudget>,
    /// What tenants with a disk quota may still write.
    pub(crate) disks: TenantDisks,
    pub(crate) _ticker: EpochTicker,
}

/// The warden interfaces a component imports: a call builds only these
/// contexts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Imports {
    pub(crate) exec: bool,
    pub(crate) llm: bool,
    pub(crate) memory: bool,
    pub(crate) tools: bool,
}

impl Imports {
    /// Reads them off a component's import names
    /// (`warden:plugin/llm@0.1.0`, …).
    pub(crate) fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> Imports {
        let mut imports = Imports::default();
        for name in names {
            let Some(interface) = name.strip_prefix("warden:plugin/") else {
                continue;
            };
            match interface.split('@').next().unwrap_or_default() {
                "exec" => imports.exec = true,
                "llm" => imports.llm = true,
                "memory" => imports.memory = true,
                "tools" => imports.tools = true,
                _ => {}
            }
        }
        imports
    }
}

/// The most data a guest may hand the host in one host call (wasmtime's
/// hostcall fuel, checked before anything is copied), at most: large enough
/// for ordinary file I/O, small enough that a guest cannot make the host
/// allocate much. A call gets a quarter of its memory limit up to this, and
/// never less than its output limit (its result crosses the same way).
const HOSTCALL_DATA_MAX: u64 = 64 * MIB;

/// The hostcall data cap of a call with `limits`: what the host may
/// allocate on the guest's behalf in one host call, counted against the
/// call's own memory limit.
fn hostcall_data(limits: &Limits) -> u64 {
    limits
        .output_bytes
        .max((limits.memory_bytes / 4).min(HOSTCALL_DATA_MAX))
        + 64 * 1024
}

/// A call's state and limits, made before the store they go in: a fresh
/// one ([`Sandbox::new`]) or one made ahead ([`Sandbox::adopt`]).
pub(crate) struct Prepared {
    state: CallState,
    limits: Limits,
    started: Instant,
    stdout: CapturedOutput,
    stderr: CapturedOutput,
}

/// A running call: its store, limits, deadline and captured output.
pub(crate) struct Sandbox {
    store: Store<CallState>,
    limits: Limits,
    started: Instant,
    /// When the store was ready.
    set_up: Instant,
    stdout: CapturedOutput,
    stderr: CapturedOutput,
}

impl Sandbox {
    /// The state of one call of `plugin` (only the contexts of the
    /// interfaces it imports), before the store it goes in. The call's
    /// clock starts now.
    pub(crate) fn prepare(
        services: &Services,
        plugin: &Arc<str>,
        imports: Imports,
        options: &CallOptions,
        caps: &Capabilities,
        run_input: Option<&RunInput>,
    ) -> Result<Prepared, CallError> {
        let started = Instant::now();
        let limits = options.limits;
        let deadline = started + limits.timeout;
        let labels = CallLabels {
            tenant: options.tenant.clone(),
            plugin: plugin.clone(),
        };
        let stdout = CapturedOutput::new(limits.stdio_bytes as usize);
        let stderr = CapturedOutput::new(limits.stdio_bytes as usize);
        let scope = options.scope.as_ref();
        let state = CallState {
            wasi: build_wasi(
                caps,
                &stdout,
                &stderr,
                run_input,
                options.call_key.as_deref(),
            )?,
            table: {
                // A backstop behind the open-file gate: streams, pollables
                // and requests are host objects too.
                let mut table = ResourceTable::new();
                table.set_max_capacity(limits.open_files as usize * 4 + 1024);
                table
            },
            http: WasiHttpCtx::new(),
            outbound: OutboundHttp::new(
                Arc::new(caps.net.clone()),
                labels.clone(),
                limits.http_body_bytes,
            ),
            limiter: CallLimiter::new(&limits),
            files: FilesContext::new(
                services.files.clone(),
                limits.open_files as usize,
                caps.dirs.len(),
                DiskQuota {
                    bytes: limits.disk_bytes,
                    new_files: limits.new_files,
                    tenant: services.disks.of(labels.tenant.as_str()),
                },
            ),
            log: LogContext::new(labels.clone(), limits.output_bytes),
            exec: imports.exec.then(|| {
                ExecContext::new(
                    services.programs.clone(),
                    labels.tenant.clone(),
                    limits,
                    deadline,
                )
            }),
            llm: imports.llm.then(|| {
                LlmContext::new(
                    services.models.clone(),
                    Caller {
                        tenant: labels.tenant.to_string(),
                        plugin: labels.plugin.to_string(),
                        allowed: caps
                            .models
                            .as_ref()
                            .map(|models| models.iter().map(|m| m.to_string()).collect()),
                        run: scope.map(|s| s.run.clone()),
                        role: scope.map(|s| s.role.clone()),
                        allowance: scope.and_then(|s| s.allowance.clone()),
                    },
                )
            }),
            memory: imports.memory.then(|| {
                MemoryContext::new(
                    services.memories.clone(),
                    labels.clone(),
                    caps.memory.clone(),
                )
            }),
            tools: imports.tools.then(|| {
                ToolsContext::new(
                    options.tools.clone(),
                    labels.clone(),
                    options.scope.clone(),
                    deadline,
                )
            }),
            deadline,
            deadline_hit: false,
            instantiated: None,
        };
        Ok(Prepared {
            state,
            limits,
            started,
            stdout,
            stderr,
        })
    }

    /// A fresh store for the call `prepared`, with its limiter, fuel,
    /// hostcall-data cap and deadline.
    pub(crate) fn new(services: &Services, prepared: Prepared) -> Result<Sandbox, CallError> {
        let store = Store::new(&services.wasmtime, prepared.state);
        Sandbox::arm(
            services,
            store,
            prepared.limits,
            prepared.started,
            prepared.stdout,
            prepared.stderr,
        )
    }

    /// The sandbox of the call `prepared` in `warm`, a store whose instance
    /// was made ahead of the call and never ran, under limits no wider than
    /// the call's (see [`crate::warm`]): the call's state replaces the
    /// placeholder it was instantiated with, counting the memory the
    /// instance already took, and its limiter, fuel, hostcall-data cap and
    /// deadline are set afresh.
    pub(crate) fn adopt(
        services: &Services,
        prepared: Prepared,
        mut warm: Store<CallState>,
    ) -> Result<Sandbox, CallError> {
        let Prepared {
            mut state,
            limits,
            started,
            stdout,
            stderr,
        } = prepared;
        state.limiter.carry_over(&warm.data().limiter);
        *warm.data_mut() = state;
        let mut sandbox = Sandbox::arm(services, warm, limits, started, stdout, stderr)?;
        // Instantiated already: that phase took no time of the call's.
        sandbox.store.data_mut().instantiated = Some(sandbox.set_up);
        Ok(sandbox)
    }

    /// Sets the call's limiter, fuel, hostcall-data cap and deadline on
    /// `store`. (wasmtime reads the limiter's instance, table and memory
    /// counts when it is set, so it is set again for a store made ahead.)
    fn arm(
        services: &Services,
        mut store: Store<CallState>,
        limits: Limits,
        started: Instant,
        stdout: CapturedOutput,
        stderr: CapturedOutput,
    ) -> Result<Sandbox, CallError> {
        store.limiter(|state| &mut state.limiter);
        store.set_hostcall_fuel(usize::try_from(hostcall_data(&limits)).unwrap_or(usize::MAX));
        if services.meters_fuel {
            store
                .set_fuel(limits.fuel)
                .map_err(|e| CallError::Setup(format!("cannot set fuel: {e}")))?;
        }
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
        Ok(Sandbox {
            store,
            limits,
            started,
            set_up: Instant::now(),
            stdout,
            stderr,
        })
    }

    pub(crate) fn store(&mut self) -> &mut Store<CallState> {
        &mut self.store
    }

    /// When the call must have ended.
    pub(crate) fn deadline(&self) -> Instant {
        self.store.data().deadline
    }

    /// Whether the guest asked for memory past its limit.
    pub(crate) fn memory_refused(&self) -> bool {
        self.store.data().limiter.memory_refused.is_some()
    }

    /// Names what stopped a guest. Limits are checked before the trap
    /// itself: a Rust guest whose allocation was refused aborts with
    /// `unreachable`, which only the limiter's record can explain.
    pub(crate) fn classify(&self, error: &wasmtime::Error) -> CallError {
        let state = self.store.data();
        let limits = &self.limits;
        let trap = error.downcast_ref::<Trap>().copied();
        if state.deadline_hit || trap == Some(Trap::Interrupt) {
            return self.deadline_error();
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
            return self.memory_error();
        }
        if is_hostcall_data_exhausted(error) {
            return CallError::Limit {
                kind: LimitKind::Output,
                detail: format!(
                    "the guest tried to hand the host more than {} bytes in one host call (a quarter of --memory, at least --output-kib)",
                    hostcall_data(limits)
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
        if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return CallError::Trap(format!(
                "the plugin called exit({}) instead of returning a result",
                exit.0
            ));
        }
        // `{:#}` is the error chain with the wasm backtrace, without the
        // host's own native backtrace.
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

    pub(crate) fn deadline_error(&self) -> CallError {
        CallError::Limit {
            kind: LimitKind::Deadline,
            detail: format!(
                "the call ran longer than {} ms (raise it with --timeout)",
                self.limits.timeout.as_millis()
            ),
        }
    }

    pub(crate) fn memory_error(&self) -> CallError {
        let asked = self
            .store
            .data()
            .limiter
            .memory_refused
            .unwrap_or(self.limits.memory_bytes);
        CallError::Limit {
            kind: LimitKind::Memory,
            detail: format!(
                "the guest asked for {} MiB of linear memory; the limit is {} MiB (raise it with --memory)",
                asked.div_ceil(MIB),
                self.limits.memory_bytes / MIB
            ),
        }
    }

    /// The store, for an instance made ahead of its call ([`crate::warm`]).
    pub(crate) fn into_store(self) -> Store<CallState> {
        self.store
    }

    /// The outcome of the call: `result`, with what the sandbox used and
    /// captured. The store goes to `dispose`, which drops it now or off the
    /// request path (its memories are reset then); nothing runs in it
    /// again.
    pub(crate) fn finish<T>(
        self,
        result: Result<T, CallError>,
        narrowed: Vec<String>,
        dispose: impl FnOnce(Store<CallState>),
    ) -> CallOutcome<T> {
        let returned = Instant::now();
        let Sandbox {
            store,
            limits,
            started,
            set_up,
            stdout,
            stderr,
        } = self;
        // No fuel to read: the engine does not meter it.
        let fuel_used = store
            .get_fuel()
            .map_or(0, |left| limits.fuel.saturating_sub(left));
        let log_lines_dropped = store.data().log.dropped();
        let instantiated = store.data().instantiated.unwrap_or(set_up);
        dispose(store);
        let done = Instant::now();
        CallOutcome {
            result,
            usage: Usage {
                fuel_used,
                duration: done - started,
                log_lines_dropped,
                phases: Phases {
                    setup: set_up - started,
                    instantiate: instantiated - set_up,
                    call: returned - instantiated,
                    teardown: done - returned,
                },
            },
            stdout: stdout.take(),
            stderr: stderr.take(),
            narrowed,
        }
    }
}

/// The outcome of a call whose sandbox could not be set up.
pub(crate) fn not_started<T>(error: CallError, narrowed: Vec<String>) -> CallOutcome<T> {
    CallOutcome {
        result: Err(error),
        usage: Usage::default(),
        stdout: Output::default(),
        stderr: Output::default(),
        narrowed,
    }
}

fn build_wasi(
    caps: &Capabilities,
    stdout: &CapturedOutput,
    stderr: &CapturedOutput,
    run_input: Option<&RunInput>,
    call_key: Option<&str>,
) -> Result<WasiCtx, CallError> {
    let mut builder = WasiCtxBuilder::new();
    // No env but the call's own key, no sockets; args and stdin only for a
    // program, as given; files only as granted below.
    if let Some(key) = call_key {
        builder.env(CALL_KEY_VAR, key);
    }
    builder
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        // See RunInput::own_dirs_only: a file operation there is quick and
        // cannot hang, so it runs here instead of hopping to tokio's
        // blocking pool and back (tens of µs each).
        .allow_blocking_current_thread(run_input.is_some_and(|input| input.own_dirs_only));
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

/// wasmtime reports exhausted hostcall fuel with a private error type; its
/// message is the only handle on it.
fn is_hostcall_data_exhausted(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    })
}

#[cfg(test)]
mod tests {
    use super::Imports;

    #[test]
    fn imports_are_read_off_interface_names() {
        let imports = Imports::of([
            "wasi:cli/environment@0.2.6",
            "warden:plugin/log@0.1.0",
            "warden:plugin/llm@0.1.0",
            "warden:plugin/tools@0.1.0",
        ]);
        assert_eq!(
            imports,
            Imports {
                exec: false,
                llm: true,
                memory: false,
                tools: true,
            }
        );
    }
}
