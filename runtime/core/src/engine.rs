//! The process-wide engine: one `wasmtime::Engine` (async, fuel, epoch
//! interruption, pooling allocator), the linker with every host interface,
//! the epoch ticker, and the on-disk cache of compiled artifacts.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use warden_llm::router::Router;
use warden_memory::Memory;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::ToolPluginExtPre;
use crate::bindings::role::RolePluginPre;
use crate::exec::Runtimes;
use crate::limits::MAX_MEMORY_BYTES;
use crate::manifest;
use crate::plugin::{CompiledPlugin, Exports, PluginInner};
use crate::state::CallState;

/// How often the epoch advances: the granularity of wall-clock deadlines and
/// of a running guest yielding to other tasks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Bytes of each linear memory kept resident between calls in a pool slot.
const KEEP_RESIDENT_BYTES: usize = 2 * 1024 * 1024;

/// Process-wide settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where compiled artifacts are kept between runs; `None` compiles every
    /// time.
    pub cache_dir: Option<PathBuf>,
    /// Calls that may be running at once; the pooling allocator reserves
    /// (virtual) room for this many instances.
    pub max_concurrent_calls: u32,
    /// Where the language runtimes (`python.wasm`, `js.wasm`) live.
    pub runtime_dir: Option<PathBuf>,
    /// The model router behind `warden:plugin/llm`; without one, a plugin's
    /// completions fail as unavailable.
    pub llm: Option<Arc<Router>>,
    /// The store behind `warden:plugin/memory`; without one, memory calls
    /// fail as unavailable.
    pub memory: Option<Arc<Memory>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cache_dir: None,
            max_concurrent_calls: 256,
            runtime_dir: None,
            llm: None,
            memory: None,
        }
    }
}

/// The runtime's engine. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) wasmtime: wasmtime::Engine,
    linker: Linker<CallState>,
    cache: Option<ArtifactCache>,
    pub(crate) runtimes: Runtimes,
    pub(crate) llm: Option<Arc<Router>>,
    pub(crate) memory: Option<Arc<Memory>>,
    _ticker: EpochTicker,
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
        wasm.consume_fuel(true)
            .epoch_interruption(true)
            .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(16))
            .wasm_component_model(true)
            // Deep recursion traps cleanly as a stack overflow well before
            // the fiber's own stack runs out.
            .max_wasm_stack(1024 * 1024)
            .async_stack_size(2 * 1024 * 1024);

        let slots = config.max_concurrent_calls.max(1);
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
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(64 * 1024);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));

        let engine = wasmtime::Engine::new(&wasm).map_err(err)?;
        let mut linker = Linker::<CallState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(err)?;
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
        Ok(Engine {
            inner: Arc::new(EngineInner {
                wasmtime: engine,
                linker,
                cache,
                runtimes: Runtimes::new(config.runtime_dir.clone()),
                llm: config.llm.clone(),
                memory: config.memory.clone(),
                _ticker: ticker,
            }),
        })
    }

    /// The underlying wasmtime engine, for embedders that need it.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.wasmtime
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
        let sha256 = hex::encode(Sha256::digest(bytes));
        let component = match &self.inner.cache {
            Some(cache) => cache.get_or_compile(&self.inner.wasmtime, bytes, &sha256),
            None => Component::new(&self.inner.wasmtime, bytes),
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
        let name = match &scan.manifest {
            Some(m) => m.name.clone(),
            None => name_from_path(path),
        };
        Ok(CompiledPlugin {
            inner: Arc::new(PluginInner {
                engine: self.clone(),
                name: name.into(),
                sha256,
                manifest: scan.manifest,
                exports,
            }),
        })
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
    if manifest::is_valid_plugin_name(&name) {
        name
    } else {
        "plugin".into()
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a background thread,
/// until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: &wasmtime::Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("warden-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .ok();
        if thread.is_none() {
            tracing::error!(
                "could not start the epoch thread; deadlines fall back to the host timer"
            );
        }
        EpochTicker { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Compiled components on disk, named by the SHA-256 of the component and a
/// fingerprint of the engine's settings, so a different wasmtime or config
/// never loads a stale artifact.
struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    fn new(dir: &Path, engine: &wasmtime::Engine) -> ArtifactCache {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ArtifactCache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    fn path_for(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    fn get_or_compile(
        &self,
        engine: &wasmtime::Engine,
        bytes: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<Component> {
        let path = self.path_for(sha256);
        if path.exists() {
            match load_artifact(engine, &path) {
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
        if let Err(e) = self.store(&component, &path) {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled artifact");
        }
        Ok(component)
    }

    fn store(&self, component: &Component, path: &Path) -> std::io::Result<()> {
        let serialized = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        std::fs::create_dir_all(&self.dir)?;
        // Write beside, then rename: a reader never sees half a file.
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        std::io::Write::write_all(&mut tmp, &serialized)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Loads a compiled artifact this process (or an earlier one with the same
/// engine fingerprint) wrote.
#[allow(unsafe_code)]
fn load_artifact(engine: &wasmtime::Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` trusts the file to be wasmtime's own output.
    // The cache directory lives in warden's data dir, is written only by
    // `ArtifactCache::store` (atomically, via rename) and is keyed by the
    // component's SHA-256 plus the engine's compatibility hash; wasmtime
    // still checks the header, version and settings before using it. An
    // operator must keep the data dir writable by warden alone.
    unsafe { Component::deserialize_file(engine, path) }
}

#[cfg(test)]
mod tests {
    use super::name_from_path;
    use std::path::Path;

    #[test]
    fn names_from_paths() {
        assert_eq!(name_from_path(Path::new("/x/My_Tool.wasm")), "my-tool");
        assert_eq!(name_from_path(Path::new("9lives.wasm")), "plugin-9lives");
        assert_eq!(name_from_path(Path::new("hello.wasm")), "hello");
    }
}
