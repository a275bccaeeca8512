//! `warden`: run WebAssembly tool plugins in a fresh sandbox per call, under
//! limits, seeing only what the operator granted.
//!
//! Exit codes (a contract): 0 success · 1 the plugin returned an error ·
//! 2 bad input (usage, plugin, JSON, policy) · 3 a limit was exceeded (stderr
//! names it) · 4 the plugin trapped otherwise.

#![forbid(unsafe_code)]

mod exec;
mod exit;
mod llm;
mod mcp;
mod memory;
mod oci;
mod plugin_cmd;
mod plugin_files;
mod run_cmd;
mod sandbox_args;
mod scaffold;
mod serve_cmd;
mod shutdown;
mod terminal;
mod tool;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use warden_core::{Engine, EngineConfig, datadir};
use warden_llm::router::{LlmConfig, Router};
use warden_memory::{Memory, MemoryConfig};

use crate::exit::Failure;

#[derive(Parser)]
#[command(name = "warden", version, about = "Run untrusted WebAssembly tool plugins under limits and grants", long_about = None)]
struct Cli {
    /// Where warden keeps its data (compiled-artifact cache, and later
    /// memory, journals and models). Default: $WARDEN_DATA_DIR, else
    /// ~/.local/share/warden.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Log filter for warden's own trace on stderr (e.g. `info`,
    /// `warden=debug`). Default: $RUST_LOG, else `warn`.
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,

    /// Where the language runtimes for `warden exec` (python.wasm, js.wasm)
    /// live. Default: $WARDEN_RUNTIME_DIR, else DATA_DIR/runtimes, else
    /// `runtimes` beside the directory of the warden binary.
    #[arg(long, global = true, value_name = "DIR")]
    runtime_dir: Option<PathBuf>,

    /// The LLM router config (providers, aliases, budgets) behind plugins'
    /// `llm` calls and `warden llm`. Default: $WARDEN_LLM_CONFIG, else
    /// DATA_DIR/llm.toml if present, else the local model alone.
    #[arg(long, global = true, value_name = "FILE")]
    llm_config: Option<PathBuf>,

    /// A cluster's NATS server (`nats://HOST:PORT`, JetStream on): `serve`
    /// joins the cluster, and `tenants`, `keys` and `audit` act on its
    /// shared control state. Default: $WARDEN_CLUSTER, else one node.
    #[arg(long, global = true, value_name = "URL", env = "WARDEN_CLUSTER")]
    cluster: Option<String>,

    /// Write the trace as JSON lines instead of text.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// List or call the tools of a plugin.
    #[command(subcommand)]
    Tool(tool::ToolCommand),
    /// Inspect or pack plugin files.
    #[command(subcommand)]
    Plugin(plugin_cmd::PluginCommand),
    /// Serve the tools of plugins to MCP clients (stdio, or --http ADDR).
    Mcp(mcp::McpArgs),
    /// Run untrusted code (Python, JavaScript, any WASI program) in a fresh
    /// sandbox.
    #[command(subcommand)]
    Exec(exec::ExecCommand),
    /// Ask models through warden's router (local by default).
    #[command(subcommand)]
    Llm(llm::LlmCommand),
    /// Store, search and manage the memory namespaces in the data dir.
    #[command(subcommand)]
    Memory(memory::MemoryCommand),
    /// Fetch or list the model files.
    #[command(subcommand)]
    Models(llm::ModelsCommand),
    /// Run a workflow of role tasks (or a goal, or resume a stopped run, or retry a failed one).
    Run(run_cmd::RunArgs),
    /// List runs, or show one's report.
    #[command(subcommand)]
    Runs(run_cmd::RunsCommand),
    /// Serve many tenants over HTTP: API keys, quotas, an audit log.
    Serve(serve_cmd::ServeArgs),
    /// Add, list, show or remove the tenants `warden serve` hosts.
    #[command(subcommand)]
    Tenants(serve_cmd::TenantsCommand),
    /// Create, list or revoke API keys.
    #[command(subcommand)]
    Keys(serve_cmd::KeysCommand),
    /// Verify or export tenants' audit logs.
    #[command(subcommand)]
    Audit(serve_cmd::AuditCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server logs every call by default; one-shot commands only problems.
    // (LanceDB's scanner warns about a future change of its own on every
    // hybrid search; that is not the operator's problem.)
    let default_filter = match cli.command {
        Command::Mcp(_) | Command::Serve(_) => "info,lance::dataset::scanner=error",
        // The live view tells what happens; the trace only problems, and
        // not the per-call lines.
        Command::Run(_) => "warn,lance::dataset::scanner=error",
        _ => "warn,lance::dataset::scanner=error",
    };
    init_tracing(cli.log.as_deref(), default_filter, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warden: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("warden: {}", terminal::escape(&failure.message));
            ExitCode::from(failure.code)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let data_dir = datadir::data_dir(cli.data_dir);
    let dirs = Dirs {
        runtimes: datadir::runtime_dir(cli.runtime_dir, data_dir.as_deref()),
        llm_config: cli.llm_config,
        data: data_dir,
        cluster: cli.cluster,
    };
    match cli.command {
        Command::Tool(cmd) => {
            let (engine, memory) = dirs.engine_with_services(Capacity::ONE_SHOT)?;
            let result = tool::run(cmd, &engine, dirs.data.as_deref()).await;
            // Let the memory writers finish their upkeep before exiting.
            if let Some(memory) = memory
                && let Err(e) = memory.settle().await
            {
                tracing::warn!(error = %e, "memory upkeep did not finish");
            }
            result
        }
        Command::Plugin(cmd) => plugin_cmd::run(cmd, &dirs).await,
        Command::Mcp(args) => mcp::run(args, &dirs).await,
        Command::Exec(cmd) => {
            let engine = dirs.engine_config(Capacity::ONE_SHOT, None, None, cmd.meters_fuel())?;
            exec::run(cmd, &engine).await
        }
        Command::Llm(cmd) => llm::run(cmd, &dirs).await,
        Command::Models(cmd) => llm::models(cmd, dirs.data.as_deref()),
        Command::Memory(cmd) => {
            let memory = dirs.memory()?.ok_or_else(|| {
                Failure::bad_input(
                    "memory lives in the data dir: set --data-dir or $WARDEN_DATA_DIR",
                )
            })?;
            memory::run(cmd, memory).await
        }
        Command::Run(args) => run_cmd::run(args, &dirs).await,
        Command::Runs(cmd) => run_cmd::runs(cmd, &dirs),
        Command::Serve(args) => serve_cmd::serve(args, &dirs).await,
        Command::Tenants(cmd) => serve_cmd::tenants(cmd, &dirs).await,
        Command::Keys(cmd) => serve_cmd::keys(cmd, &dirs).await,
        Command::Audit(cmd) => serve_cmd::audit(cmd, &dirs).await,
    }
}

/// Where warden keeps things, resolved once.
pub(crate) struct Dirs {
    data: Option<PathBuf>,
    runtimes: Option<PathBuf>,
    llm_config: Option<PathBuf>,
    /// The cluster's NATS URL, when not one node.
    cluster: Option<String>,
}

impl Dirs {
    /// An engine for commands whose plugins never ask a model nor remember
    /// (`plugin`; `exec` picks its fuel metering too): no LLM config is
    /// read.
    pub(crate) fn engine(&self, capacity: Capacity) -> Result<Engine, Failure> {
        self.engine_config(capacity, None, None, true)
    }

    /// An engine whose plugins may ask the models and use the memory
    /// namespaces granted to them (`tool`, `mcp`): the router built from
    /// the LLM config, the memory store in the data dir.
    pub(crate) fn engine_with_services(
        &self,
        capacity: Capacity,
    ) -> Result<(Engine, Option<Arc<Memory>>), Failure> {
        let memory = self.memory()?.map(Arc::new);
        let engine = self.engine_with_memory(
            capacity,
            memory
                .clone()
                .map(|m| m as Arc<dyn warden_api::memory::Memories>),
        )?;
        Ok((engine, memory))
    }

    /// An engine with the model router and `memory` as its memory store
    /// (the data dir's, or a layer over it).
    pub(crate) fn engine_with_memory(
        &self,
        capacity: Capacity,
        memory: Option<Arc<dyn warden_api::memory::Memories>>,
    ) -> Result<Engine, Failure> {
        let router = Arc::new(self.router(None)?);
        self.engine_config(capacity, Some(router), memory, true)
    }

    /// An engine with these services; `meters_fuel` false for a `warden
    /// exec --fuel none`.
    fn engine_config(
        &self,
        capacity: Capacity,
        llm: Option<Arc<Router>>,
        memory: Option<Arc<dyn warden_api::memory::Memories>>,
        meters_fuel: bool,
    ) -> Result<Engine, Failure> {
        let config = EngineConfig {
            cache_dir: self.data.as_deref().map(datadir::compiled_cache),
            max_concurrent_calls: capacity.slots,
            runtime_dir: self.runtimes.clone(),
            scratch_dir: self.data.as_deref().map(datadir::scratch_dir),
            llm: llm.map(|router| router as Arc<dyn warden_api::llm::Models>),
            memory,
            slow_compile: Some(slow_compile_notice(self.data.is_some())),
            meters_fuel,
            warm_instances: capacity.warm,
        };
        Engine::new(&config).map_err(|e| Failure::internal(e.to_string()))
    }

    /// The memory store in the data dir, under its config
    /// ([`MemoryConfig::find`]).
    pub(crate) fn memory(&self) -> Result<Option<Memory>, Failure> {
        let Some(data) = &self.data else {
            return Ok(None);
        };
        let config = MemoryConfig::find(data).map_err(Failure::bad_input)?;
        Ok(Some(config.open(data).map_err(Failure::bad_input)?))
    }

    /// The model router: `config` (a command's own `--config`), else
    /// `--llm-config` and the rest of [`LlmConfig::find`].
    pub(crate) fn router(&self, config: Option<&Path>) -> Result<Router, Failure> {
        let config = LlmConfig::find(config.or(self.llm_config.as_deref()), self.data.as_deref())
            .map_err(Failure::bad_input)?;
        Router::new(config, self.data.as_deref()).map_err(Failure::bad_input)
    }
}

/// How many calls an engine may run at once, and how many instances of
/// each language runtime it makes ahead of the runs that will use them
/// ([`EngineConfig::warm_instances`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Capacity {
    pub(crate) slots: u32,
    pub(crate) warm: u32,
}

impl Capacity {
    /// For commands that run one call at a time: a small reservation, and
    /// nothing made ahead (a run that comes once would not use it).
    pub(crate) const ONE_SHOT: Capacity = Capacity { slots: 8, warm: 0 };

    /// For a process that serves calls, `slots` at a time (`serve`, `mcp`,
    /// `run`): two instances of each runtime made ahead, enough for runs
    /// that come one after another or two at a time.
    pub(crate) fn serving(slots: u32) -> Capacity {
        Capacity {
            slots: slots.max(1),
            warm: 2,
        }
    }
}

/// What a person waiting on a first compile reads on stderr.
fn slow_compile_notice(cached: bool) -> warden_core::SlowCompile {
    Arc::new(move |name: &str| {
        let after = if cached {
            "first use; cached afterwards"
        } else {
            "no data dir, so it is compiled on every use"
        };
        eprintln!("warden: compiling {} ({after})", terminal::escape(name));
    })
}

fn init_tracing(filter: Option<&str>, default: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::try_new(f).unwrap_or_else(|e| {
            eprintln!("warden: ignoring --log {f:?}: {e}");
            EnvFilter::new(default)
        }),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
