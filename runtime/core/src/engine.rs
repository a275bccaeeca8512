//! The process-wide engine: one `wasmtime::Engine` (async, fuel, epoch
//! interruption, pooling allocator), the linker with every host interface,
//! the on-disk cache of compiled artifacts, and the language runtimes that
//! `warden exec` and `warden:plugin/exec` run code in.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};
use warden_api::BoxFuture;
use warden_api::llm::Models;
use warden_api::memory::Memories;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::ToolPluginExtPre;
use crate::bindings::role::RolePluginPre;
use crate::bindings::warden::plugin::exec as wit_exec;
use crate::call::{CallOptions, CallOutcome, Imports, Services};
use crate::epoch::EpochTicker;
use crate::exec::{self, ExecError, ExecReport, Language, Scratch};
use crate::grant::{Grant, is_valid_plugin_name};
use crate::host::exec::{CodeRun, Programs};
use crate::host::files::{FileBudget, TenantDisks};
use crate::limits::MAX_MEMORY_BYTES;
use crate::manifest;
use crate::plugin::{CompiledPlugin, Exports};
use crate::snapshot;
use crate::state::CallState;
use crate::warm;

/// Bytes of each linear memory kept resident between calls in a pool slot.
const KEEP_RESIDENT_BYTES: usize = 2 * 1024 * 1024;

/// Initial memories up to this size always get a copy-on-write image, so
/// instantiating maps them instead of copying their data in. The Python
/// runtime's snapshot is about 30 MB with gaps that wasmtime's density
/// heuristic (and its 16 MiB default here) would refuse. Bounded, because a
/// plugin's sparse data segments decide how big the image is.
const DENSE_IMAGE_BYTES: u64 = 64 * 1024 * 1024;

/// Process-wide settings.
#[derive(Clone)]
pub struct EngineConfig {
    /// Where compiled artifacts are kept between runs; `None` compiles every
    /// time.
    pub cache_dir: Option<PathBuf>,
    /// Calls that may be running at once; the pooling allocator reserves
    /// (virtual) room for this many instances.
    pub max_concurrent_calls: u32,
    /// Where the language runtimes (`python.wasm`, `js.wasm`) live.
    pub runtime_dir: Option<PathBuf>,
    /// Where programs get their scratch directories (`DATA_DIR/scratch`);
    /// what stopped processes left there is removed when the engine
    /// starts. `None`: the system's temp dir, never cleaned.
    pub scratch_dir: Option<PathBuf>,
    /// The models behind `warden:plugin/llm`; without them, a plugin's
    /// completions fail as unavailable.
    pub llm: Option<Arc<dyn Models>>,
    /// The store behind `warden:plugin/memory`; without one, memory calls
    /// fail as unavailable.
    pub memory: Option<Arc<dyn Memories>>,
    /// Told a plugin's name when compiling it has taken over a second (a
    /// first use: the compiled cache keeps it afterwards), so a person
    /// waiting knows why.
    pub slow_compile: Option<SlowCompile>,
    /// Whether guests are metered by fuel (the default). Off, the code
    /// wasmtime compiles has no fuel checks and runs faster, fuel limits
    /// are not applied and `fuel_used` reads 0: only the deadline (epoch
    /// interruption, which is always on) stops a guest that runs away.
    pub meters_fuel: bool,
    /// Instances of each language runtime made ahead of the runs that will
    /// use them and kept ready, by a thread per runtime ([`crate::warm`]);
    /// each run still gets an instance nothing ran in. Takes instantiation
    /// (most of a millisecond for Python) and the reset of finished runs
    /// off the request path, for a process that runs code again and again
    /// (`warden serve`, `mcp`, `run`); 0, the default, for one that runs it
    /// once. Only for a runtime whose instantiation runs no code of its own
    /// (no start function): any other instantiates in each run.
    pub warm_instances: u32,
}

/// See [`EngineConfig::slow_compile`].
pub type SlowCompile = Arc<dyn Fn(&str) + Send + Sync>;

/// How long a compile runs before [`EngineConfig::slow_compile`] is told.
const SLOW_COMPILE: std::time::Duration = std::time::Duration::from_secs(1);

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cache_dir: None,
            max_concurrent_calls: 256,
            runtime_dir: None,
            scratch_dir: None,
            llm: None,
            memory: None,
            slow_compile: None,
            meters_fuel: true,
            warm_instances: 0,
        }
    }
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("cache_dir", &self.cache_dir)
            .field("max_concurrent_calls", &self.max_concurrent_calls)
            .field("runtime_dir", &self.runtime_dir)
            .field("scratch_dir", &self.scratch_dir)
            .field("llm", &self.llm.is_some())
            .field("memory", &self.memory.is_some())
            .field("slow_compile", &self.slow_compile.is_some())
            .field("meters_fuel", &self.meters_fuel)
            .field("warm_instances", &self.warm_instances)
            .finish()
    }
}

/// The runtime's engine. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    services: Arc<Services>,
    linker: Linker<CallState>,
    cache: Option<ArtifactCache>,
    runtimes: Runtimes,
    scratch_dir: Option<PathBuf>,
    slow_compile: Option<SlowCompile>,
    /// [`EngineConfig::warm_instances`].
    warm_instances: u32,
}

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the wasm engine: {0}")]
pub struct EngineError(String);

/// Why a plugin could not be loaded. All of these are bad input (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plugin {}: {error}", path.display())]
    Read { path: PathBuf, error: String },
    #[error("{} is not a WebAssembly file (no \\0asm header); pass the .wasm a plugin build produced", path.display())]
    NotWasm { path: PathBuf },
    #[error(
        "{} is a core wasm module, not a component; build it for wasm32-wasip2 (or run `wasm-tools component new`)", path.display()
    )]
    CoreModule { path: PathBuf },
    #[error("{}: {error}", path.display())]
    Scan {
        path: PathBuf,
        error: manifest::ScanError,
    },
    #[error("{}: {error}", path.display())]
    Signature {
        path: PathBuf,
        error: crate::signature::SignatureError,
    },
    #[error("cannot compile {}: {error}", path.display())]
    Compile { path: PathBuf, error: String },
    #[error(
        "{} needs imports warden does not provide: {error}. warden links WASI 0.2 (cli, filesystem, clocks, random, io, sockets, http) and warden:plugin/{{log, exec, llm, memory, tools}}", path.display()
    )]
    Link { path: PathBuf, error: String },
    #[error(
        "{} does not export warden:plugin/tool@0.1.0 ({error}), warden:plugin/role@0.1.0 nor wasi:cli/run; build it against the tool-plugin or role-plugin world of the warden WIT package, or as a WASI command", path.display()
    )]
    NotToolPlugin { path: PathBuf, error: String },
}

impl Engine {
    pub fn new(config: &EngineConfig) -> Result<Engine, EngineError> {
        let err = |e: wasmtime::Error| EngineError(format!("{e:#}"));
        let mut wasm = Config::new();
        wasm.consume_fuel(config.meters_fuel)
            .epoch_interruption(true)
            .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(16))
            .wasm_component_model(true)
            .memory_guaranteed_dense_image_size(DENSE_IMAGE_BYTES)
            // Deep recursion traps cleanly as a stack overflow well before
            // the fiber's own stack runs out.
            .max_wasm_stack(1024 * 1024)
            .async_stack_size(2 * 1024 * 1024);

        // Instances made ahead, and stores waiting to be dropped, hold
        // slots too.
        let warm_slots = match config.warm_instances {
            0 => 0,
            wanted => warm::slots_held(wanted).saturating_mul(Language::ALL.len() as u32),
        };
        let slots = config
            .max_concurrent_calls
            .max(1)
            .saturating_add(warm_slots);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(32))
            .max_core_instances_per_component(64)
            .total_memories(slots.saturating_mul(4))
            .max_memories_per_component(8)
            .total_tables(slots.saturating_mul(8))
            .max_tables_per_component(32)
            .total_stacks(slots)
            .table_elements(200_000)
            .max_memory_size(MAX_MEMORY_BYTES as usize)
            // A call is short: most of its cost would be page faults on a
            // fresh slot. Keep the low pages of reused slots resident and
            // reset only the dirty ones (PAGEMAP_SCAN on Linux 6.7+, a memset
            // elsewhere) instead of unmapping and faulting them in again.
            .pagemap_scan(pagemap_scan(&read_swaps()))
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(64 * 1024);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));

        let engine = wasmtime::Engine::new(&wasm).map_err(err)?;
        let mut linker = Linker::<CallState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(err)?;
        crate::host::files::add_to_linker(&mut linker).map_err(err)?;
        crate::host::log::add_to_linker(&mut linker).map_err(err)?;
        crate::host::exec::add_to_linker(&mut linker).map_err(err)?;
        crate::host::llm::add_to_linker(&mut linker).map_err(err)?;
        crate::host::memory::add_to_linker(&mut linker).map_err(err)?;
        crate::host::tools::add_to_linker(&mut linker).map_err(err)?;

        let cache = config
            .cache_dir
            .as_ref()
            .map(|dir| ArtifactCache::new(dir, &engine));
        let ticker = EpochTicker::start(&engine);
        let files = FileBudget::new(guest_file_budget());
        let inner = Arc::new_cyclic(|weak: &Weak<EngineInner>| EngineInner {
            services: Arc::new(Services {
                wasmtime: engine,
                meters_fuel: config.meters_fuel,
                models: config.llm.clone(),
                memories: config.memory.clone(),
                programs: Arc::new(EnginePrograms(weak.clone())),
                files,
                disks: TenantDisks::default(),
                _ticker: ticker,
            }),
            linker,
            cache,
            runtimes: Runtimes::new(config.runtime_dir.clone()),
            scratch_dir: config.scratch_dir.clone(),
            slow_compile: config.slow_compile.clone(),
            warm_instances: config.warm_instances,
        });
        if let Some(dir) = &config.scratch_dir {
            exec::remove_stale(dir);
        }
        Ok(Engine { inner })
    }

    /// Gives `tenant`'s calls a shared disk quota: every byte any of them
    /// writes (besides its own `disk_bytes`) comes out of `left`, and a
    /// write that would take more than is left fails as a full disk. The
    /// host refills `left` as it measures what the tenant's files take;
    /// `None` takes the quota away.
    pub fn share_tenant_disk(&self, tenant: &str, left: Option<Arc<AtomicU64>>) {
        self.inner.services.disks.set(tenant, left);
    }

    /// The underlying wasmtime engine, for embedders that need it.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.services.wasmtime
    }

    /// Reads, checks, compiles (or loads from the cache) and links a tool
    /// plugin.
    pub fn load_file(&self, path: &Path) -> Result<CompiledPlugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::Read {
            path: path.to_path_buf(),
            error: e.to_string(),
        })?;
        self.load_bytes(&bytes, path)
    }

    /// As [`Engine::load_file`], for bytes already in memory; `path` names
    /// them in errors and gives the plugin a name when it has no manifest.
    pub fn load_bytes(&self, bytes: &[u8], path: &Path) -> Result<CompiledPlugin, LoadError> {
        let scan = inspect_bytes(bytes, path)?;
        let signer = if scan.signed {
            crate::signature::signer(bytes).map_err(|error| LoadError::Signature {
                path: path.to_path_buf(),
                error,
            })?
        } else {
            None
        };
        let name = match &scan.manifest {
            Some(m) => m.name.clone(),
            None => name_from_path(path),
        };
        let sha256 = hex::encode(Sha256::digest(bytes));
        let wasmtime = self.wasmtime();
        let compile = || match &self.inner.cache {
            Some(cache) => cache.get_or_compile(wasmtime, bytes, &sha256),
            None => Component::new(wasmtime, bytes),
        };
        let component = match &self.inner.slow_compile {
            Some(tell) => told_if_slow(tell, &name, compile),
            None => compile(),
        }
        .map_err(|e| LoadError::Compile {
            path: path.to_path_buf(),
            error: format!("{e:#}"),
        })?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                path: path.to_path_buf(),
                error: format!("{e:#}"),
            })?;
        // A tool plugin, a role, else a program; the narrower tool worlds
        // are subsets of tool-plugin-ext, so its Pre accepts them all.
        let exports = if let Ok(tool) = ToolPluginExtPre::new(pre.clone()) {
            Exports::Tool(tool)
        } else if let Ok(role) = RolePluginPre::new(pre.clone()) {
            Exports::Role(role)
        } else {
            match wasmtime_wasi::p2::bindings::CommandPre::new(pre.clone()) {
                Ok(command) => Exports::Command(command),
                Err(_) => {
                    let tool_error = ToolPluginExtPre::new(pre).err();
                    return Err(LoadError::NotToolPlugin {
                        path: path.to_path_buf(),
                        error: tool_error.map(|e| format!("{e:#}")).unwrap_or_default(),
                    });
                }
            }
        };
        let component_type = component.component_type();
        let imports = Imports::of(component_type.imports(wasmtime).map(|(name, _)| name));
        Ok(CompiledPlugin::new(
            self.inner.services.clone(),
            name,
            sha256,
            scan.manifest,
            signer,
            exports,
            imports,
        ))
    }

    /// A fresh scratch directory for a program, where the engine keeps them.
    pub fn scratch(&self) -> Result<Scratch, ExecError> {
        match &self.inner.scratch_dir {
            Some(dir) => Scratch::new_in(dir),
            None => Scratch::new(),
        }
    }

    /// The runtime for `language`, loaded from the runtime directory (and
    /// the compiled cache) the first time.
    pub fn runtime(&self, language: Language) -> Result<CompiledPlugin, ExecError> {
        let runtimes = &self.inner.runtimes;
        // Held while loading, so concurrent first uses compile once.
        let mut loaded = runtimes.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = loaded.get(&language) {
            return Ok(found.clone());
        }
        let Some(dir) = &runtimes.dir else {
            return Err(ExecError::Unsupported(format!(
                "no runtime directory is configured, so {language} cannot run; build the runtimes with `scripts/dev plugins` and pass --runtime-dir or set WARDEN_RUNTIME_DIR"
            )));
        };
        let path = dir.join(language.runtime_file());
        if !path.is_file() {
            return Err(ExecError::Unsupported(format!(
                "no {language} runtime at {}; build it with `scripts/dev plugins`, or point --runtime-dir / WARDEN_RUNTIME_DIR at a directory holding {}",
                path.display(),
                language.runtime_file()
            )));
        }
        let unusable = |e: &dyn std::fmt::Display| {
            ExecError::Unsupported(format!("the {language} runtime: {e}"))
        };
        let bytes = std::fs::read(&path).map_err(|e| {
            unusable(&LoadError::Read {
                path: path.clone(),
                error: e.to_string(),
            })
        })?;
        let bytes = if snapshot::wants_snapshot(&bytes) {
            self.snapshot(&bytes).map_err(|e| {
                unusable(&format_args!("pre-initialising {}: {e:#}", path.display()))
            })?
        } else {
            bytes
        };
        let plugin = self.load_bytes(&bytes, &path).map_err(|e| unusable(&e))?;
        if self.inner.warm_instances > 0 {
            if warm::runs_code_when_instantiated(&bytes) {
                tracing::warn!(runtime = %path.display(), "instances are not made ahead: instantiating it runs code of its own (a start function)");
            } else {
                plugin.keep_warm(self.inner.warm_instances as usize);
            }
        }
        loaded.insert(language, plugin.clone());
        Ok(plugin)
    }

    /// The runtime `bytes` pre-initialised (see [`crate::snapshot`]), from
    /// the compiled cache's directory when it was made before.
    fn snapshot(&self, bytes: &[u8]) -> wasmtime::Result<Vec<u8>> {
        let wasmtime = self.wasmtime();
        let make = || snapshot::snapshot(wasmtime, bytes);
        match &self.inner.cache {
            Some(cache) => cache.get_or_snapshot(&hex::encode(Sha256::digest(bytes)), make),
            None => make(),
        }
    }

    /// Runs `code` in `language`'s runtime: the code read-only at
    /// `/code/main.EXT`, `scratch` at `/work` (the working directory),
    /// `stdin` as its stdin, `args` after the script path. `options` carries
    /// the limits, the tenant, and any further grant.
    pub async fn run_code(
        &self,
        language: Language,
        code: &str,
        scratch: &Scratch,
        stdin: Vec<u8>,
        args: &[String],
        options: &CallOptions,
    ) -> Result<CallOutcome<i32>, ExecError> {
        let runtime = self.runtime(language)?;
        exec::run_code(&runtime, language, code, scratch, stdin, args, options).await
    }
}

/// Whether slots are reset with `PAGEMAP_SCAN`, given `/proc/swaps`.
///
/// wasmtime 48's scan resets only the dirty pages that are present: a
/// dirty page the kernel has swapped out is neither reset nor unmapped, so
/// the next instance in that slot would read the previous one's data. With
/// any swap configured the scan is off, and slots are reset by copying
/// their first pages back from the image and unmapping the rest, which
/// does not depend on where a page is.
fn pagemap_scan(swaps: &str) -> Enabled {
    // The first line is the header; each further line is a swap area.
    if swaps.lines().skip(1).any(|line| !line.trim().is_empty()) {
        tracing::info!(
            "swap is on: slots are reset without PAGEMAP_SCAN, which cannot see swapped-out pages"
        );
        Enabled::No
    } else {
        Enabled::Auto
    }
}

/// `/proc/swaps`; a host without it (not Linux, or no procfs) reads as
/// having no swap, and there PAGEMAP_SCAN does not exist either.
fn read_swaps() -> String {
    match std::fs::read_to_string("/proc/swaps") {
        Ok(swaps) => swaps,
        // Linux without a readable /proc/swaps: assume the worst.
        Err(_) if Path::new("/proc/self/pagemap").exists() => "header\nunknown\n".into(),
        Err(_) => String::new(),
    }
}

/// File descriptors warden keeps for itself (listening sockets, journals,
/// its own files, LanceDB's), whatever the guests hold.
const RESERVED_FILES: u64 = 256;

/// How many host file descriptors guests may hold together: the process's
/// open-file limit, first raised to its hard limit, less the reserve.
fn guest_file_budget() -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = match (limit.current, limit.maximum) {
        (Some(current), Some(maximum)) if current < maximum => {
            let raised = Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => maximum,
                Err(e) => {
                    tracing::warn!(error = %e, "could not raise the open-file limit");
                    current
                }
            }
        }
        (Some(current), _) => current,
        (None, _) => u64::MAX,
    };
    usize::try_from(soft.saturating_sub(RESERVED_FILES).max(64)).unwrap_or(usize::MAX)
}

/// The language runtimes of one engine, compiled on first use and shared.
struct Runtimes {
    dir: Option<PathBuf>,
    loaded: Mutex<HashMap<Language, CompiledPlugin>>,
}

impl Runtimes {
    fn new(dir: Option<PathBuf>) -> Runtimes {
        Runtimes {
            dir,
            loaded: Mutex::new(HashMap::new()),
        }
    }
}

/// How a plugin's `warden:plugin/exec` runs a program: in this engine's
/// language runtimes, in a fresh sandbox with a scratch directory of its
/// own and nothing else granted. Weak, so that plugins (which hold it
/// through the engine's services) do not keep the engine alive in a cycle.
struct EnginePrograms(Weak<EngineInner>);

impl Programs for EnginePrograms {
    fn run(&self, run: CodeRun) -> BoxFuture<'_, Result<wit_exec::RunResult, wit_exec::ExecError>> {
        Box::pin(async move {
            let Some(inner) = self.0.upgrade() else {
                return Err(wit_exec::ExecError::Failed(
                    "the engine is shutting down".into(),
                ));
            };
            let engine = Engine { inner };
            let Some(language) = Language::parse(&run.language) else {
                return Err(wit_exec::ExecError::Unsupported(format!(
                    "language {:?} is not supported; use \"python\" or \"js\"",
                    run.language
                )));
            };
            let scratch = engine.scratch().map_err(wit_exec_error)?;
            for file in &run.files {
                scratch
                    .write(&file.path, &file.contents)
                    .map_err(wit_exec_error)?;
            }
            let options = CallOptions {
                tenant: run.tenant,
                grant: Grant::default(),
                limits: run.limits,
                ..CallOptions::default()
            };
            let outcome = engine
                .run_code(language, &run.code, &scratch, run.stdin, &[], &options)
                .await
                .map_err(wit_exec_error)?;
            let report = ExecReport::new(&outcome)
                .map_err(|setup| wit_exec::ExecError::Failed(setup.to_string()))?;
            Ok(run_result(report))
        })
    }
}

fn wit_exec_error(e: ExecError) -> wit_exec::ExecError {
    match e {
        ExecError::Unsupported(m) => wit_exec::ExecError::Unsupported(m),
        ExecError::Invalid(m) => wit_exec::ExecError::Invalid(m),
        ExecError::Io(m) => wit_exec::ExecError::Failed(m),
    }
}

fn run_result(report: ExecReport) -> wit_exec::RunResult {
    wit_exec::RunResult {
        stdout: report.stdout,
        stderr: report.stderr,
        exit_code: report.exit_code,
        limit: report.limit,
        trap: report.trap,
        duration_ms: report.duration_ms,
        fuel_used: report.fuel_used,
    }
}

/// Checks that `bytes` are a component and reads its manifest, without
/// compiling anything.
pub fn inspect_bytes(bytes: &[u8], path: &Path) -> Result<manifest::SectionScan, LoadError> {
    if !bytes.starts_with(b"\0asm") {
        return Err(LoadError::NotWasm {
            path: path.to_path_buf(),
        });
    }
    let scan = manifest::scan(bytes).map_err(|error| LoadError::Scan {
        path: path.to_path_buf(),
        error,
    })?;
    if !scan.is_component {
        return Err(LoadError::CoreModule {
            path: path.to_path_buf(),
        });
    }
    Ok(scan)
}

/// Reads the file at `path` and checks that it is a component (see
/// [`inspect_bytes`]), without compiling it.
pub fn read_component(path: &Path) -> Result<Vec<u8>, LoadError> {
    let bytes = std::fs::read(path).map_err(|e| LoadError::Read {
        path: path.to_path_buf(),
        error: e.to_string(),
    })?;
    inspect_bytes(&bytes, path)?;
    Ok(bytes)
}

/// A plugin name for a component without a manifest: its file stem, made
/// into a valid name (`My_Tool.wasm` becomes `my-tool`).
fn name_from_path(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let mut name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert_str(0, "plugin-");
    }
    name.truncate(64);
    let name = name.trim_end_matches('-').to_string();
    if is_valid_plugin_name(&name) {
        name
    } else {
        "plugin".into()
    }
}

/// Compiled components on disk, named by the SHA-256 of the component and a
/// fingerprint of the engine's settings, so a different wasmtime or config
/// never loads a stale artifact.
///
/// A compiled artifact is native code that wasmtime runs without checking
/// it, so each file ends with an HMAC-SHA256, keyed by a secret only
/// warden reads (`.key` in the cache directory, mode 0600), over the
/// component's SHA-256, the engine fingerprint and the artifact: a file
/// anyone else wrote, or one plugin's artifact put in another's place, is
/// discarded and the component compiled again. So a pin or a signature,
/// which are checked against the component's bytes, holds for the code
/// that runs.
struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
    /// `None` when the key cannot be made or is not warden's alone: then
    /// nothing is cached.
    mac: Option<ring::hmac::Key>,
}

/// Bytes of the HMAC at the end of each cached artifact.
const MAC_BYTES: usize = 32;

impl ArtifactCache {
    fn new(dir: &Path, engine: &wasmtime::Engine) -> ArtifactCache {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        // Settings that change what is compiled without making an artifact
        // incompatible: an artifact compiled without them is not reused.
        DENSE_IMAGE_BYTES.hash(&mut hasher);
        let mac = match cache_key(dir) {
            Ok(key) => Some(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key)),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "compiled plugins are not cached");
                None
            }
        };
        ArtifactCache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
            mac,
        }
    }

    fn path_for(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// What the MAC of `sha256`'s artifact covers besides the artifact.
    fn context(&self, sha256: &str) -> Vec<u8> {
        format!(
            "warden compiled artifact v1\0{sha256}\0{}\0",
            self.engine_key
        )
        .into_bytes()
    }

    fn get_or_compile(
        &self,
        engine: &wasmtime::Engine,
        bytes: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<Component> {
        let Some(mac) = &self.mac else {
            return Component::new(engine, bytes);
        };
        let path = self.path_for(sha256);
        if path.exists() {
            match self.load(engine, mac, sha256, &path) {
                Ok(component) => {
                    tracing::debug!(path = %path.display(), "compiled artifact loaded from cache");
                    return Ok(component);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unusable cached artifact");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = self.store(mac, sha256, &component, &path) {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled artifact");
        }
        Ok(component)
    }

    fn load(
        &self,
        engine: &wasmtime::Engine,
        mac: &ring::hmac::Key,
        sha256: &str,
        path: &Path,
    ) -> wasmtime::Result<Component> {
        let artifact = read_signed(mac, &self.context(sha256), path)?;
        load_artifact(engine, &artifact)
    }

    fn store(
        &self,
        mac: &ring::hmac::Key,
        sha256: &str,
        component: &Component,
        path: &Path,
    ) -> std::io::Result<()> {
        let serialized = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        self.write_signed(mac, &self.context(sha256), serialized, path)
    }

    /// The pre-initialised runtime made from the component `sha256`:
    /// from the cache when it holds one warden wrote, else `make`'s, kept
    /// for the next process.
    fn get_or_snapshot(
        &self,
        sha256: &str,
        make: impl FnOnce() -> wasmtime::Result<Vec<u8>>,
    ) -> wasmtime::Result<Vec<u8>> {
        let Some(mac) = &self.mac else {
            return make();
        };
        let path = self.dir.join(format!("{sha256}.snapshot.wasm"));
        let context = format!("warden runtime snapshot v1\0{sha256}\0").into_bytes();
        if path.exists() {
            match read_signed(mac, &context, &path) {
                Ok(snapshot) => return Ok(snapshot),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unusable cached snapshot");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let snapshot = make()?;
        if let Err(e) = self.write_signed(mac, &context, snapshot.clone(), &path) {
            tracing::warn!(path = %path.display(), error = %e, "could not cache the snapshot");
        }
        Ok(snapshot)
    }

    /// Writes `bytes` to `path` with their MAC (over `context` and them)
    /// appended, whole or not at all.
    fn write_signed(
        &self,
        mac: &ring::hmac::Key,
        context: &[u8],
        mut bytes: Vec<u8>,
        path: &Path,
    ) -> std::io::Result<()> {
        let mut signed = context.to_vec();
        signed.extend_from_slice(&bytes);
        bytes.extend_from_slice(ring::hmac::sign(mac, &signed).as_ref());
        std::fs::create_dir_all(&self.dir)?;
        // Write beside, then rename: a reader never sees half a file.
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        std::io::Write::write_all(&mut tmp, &bytes)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// What [`ArtifactCache::write_signed`] wrote to `path` under `context`,
/// without its MAC; an error when the MAC does not hold.
fn read_signed(mac: &ring::hmac::Key, context: &[u8], path: &Path) -> wasmtime::Result<Vec<u8>> {
    let mut file = std::fs::read(path)?;
    let Some(split) = file.len().checked_sub(MAC_BYTES) else {
        wasmtime::bail!("too short to be a cached artifact");
    };
    let tag = file.split_off(split);
    let mut signed = context.to_vec();
    signed.extend_from_slice(&file);
    if ring::hmac::verify(mac, &signed, &tag).is_err() {
        wasmtime::bail!(
            "its MAC does not hold: warden did not write it for this component (written by someone else, or another component's)"
        );
    }
    Ok(file)
}

/// The cache's secret: `DIR/.key`, made on first use, readable and
/// writable by this user alone; refused when anyone else owns it or may
/// read or write it.
fn cache_key(dir: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    std::fs::create_dir_all(dir)?;
    let path = dir.join(".key");
    if !path.exists() {
        // Written whole beside it (a temp file is 0600), then linked into
        // place unless another process got there first: a reader never
        // sees half a key, and two processes end with the same one.
        let mut key = vec![0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .map_err(|_| std::io::Error::other("the system gave no randomness"))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(&key)?;
        tmp.as_file().sync_all()?;
        match tmp.persist_noclobber(&path) {
            Ok(_) => return Ok(key),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.error),
        }
    }
    let mut file = std::fs::File::open(&path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata()?;
        if meta.uid() != rustix::process::geteuid().as_raw() || meta.mode() & 0o077 != 0 {
            return Err(std::io::Error::other(format!(
                "{} must belong to this user and be readable by it alone (chmod 600), or be removed",
                path.display()
            )));
        }
    }
    let mut key = Vec::new();
    file.read_to_end(&mut key)?;
    if key.len() != 32 {
        return Err(std::io::Error::other(format!(
            "{} is not a cache key (32 bytes); remove it and warden makes another",
            path.display()
        )));
    }
    Ok(key)
}

/// Does `work`, telling `tell` the plugin's `name` if it takes longer
/// than [`SLOW_COMPILE`] (from a watcher thread, while the work goes on).
fn told_if_slow<T>(tell: &SlowCompile, name: &str, work: impl FnOnce() -> T) -> T {
    let (done, waiting) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            if waiting.recv_timeout(SLOW_COMPILE) == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            {
                tell(name);
            }
        });
        let out = work();
        drop(done);
        out
    })
}

/// Loads a compiled artifact whose MAC held: this warden wrote it, for
/// this component and these engine settings.
#[allow(unsafe_code)]
fn load_artifact(engine: &wasmtime::Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize` trusts the bytes to be wasmtime's own output.
    // They are: the HMAC at the end of the file, keyed by a secret only
    // this user can read, shows that `ArtifactCache::store` wrote them for
    // this component's SHA-256 and this engine's fingerprint; wasmtime
    // still checks the header, version and settings before using them.
    unsafe { Component::deserialize(engine, artifact) }
}

#[cfg(test)]
mod tests {
    use super::{SlowCompile, name_from_path, pagemap_scan, told_if_slow};
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A hostile test for hosts with swap: there, a slot reset by
    /// PAGEMAP_SCAN would hand the next instance a swapped-out page of the
    /// previous one, so the scan must be off.
    #[test]
    fn pagemap_scan_is_off_on_a_host_with_swap() {
        let header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        assert!(matches!(pagemap_scan(header), wasmtime::Enabled::Auto));
        assert!(matches!(pagemap_scan(""), wasmtime::Enabled::Auto));
        let zram = format!("{header}/dev/zram0  partition\t4194300\t0\t100\n");
        assert!(matches!(pagemap_scan(&zram), wasmtime::Enabled::No));
        let file = format!("{header}/swapfile  file  1048572  0  -2\n");
        assert!(matches!(pagemap_scan(&file), wasmtime::Enabled::No));
    }

    #[test]
    fn names_from_paths() {
        assert_eq!(name_from_path(Path::new("/x/My_Tool.wasm")), "my-tool");
        assert_eq!(name_from_path(Path::new("9lives.wasm")), "plugin-9lives");
        assert_eq!(name_from_path(Path::new("hello.wasm")), "hello");
    }

    #[test]
    fn only_a_slow_compile_is_told_and_while_it_runs() {
        let told = Arc::new(Mutex::new(Vec::<String>::new()));
        let tell: SlowCompile = {
            let told = told.clone();
            Arc::new(move |name: &str| told.lock().unwrap().push(name.to_string()))
        };
        assert_eq!(told_if_slow(&tell, "quick", || 7), 7);
        // Told before the work ends, not after.
        let seen_during = told_if_slow(&tell, "slow", || {
            std::thread::sleep(Duration::from_millis(1500));
            told.lock().unwrap().clone()
        });
        assert_eq!(seen_during, vec!["slow".to_string()]);
        assert_eq!(*told.lock().unwrap(), vec!["slow".to_string()]);
    }
}
