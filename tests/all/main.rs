//! warden's workspace suites, in one binary: every first-party plugin, the
//! model router through a guest, the limits, the filesystem and network
//! sandbox, the manifest ceiling, and host survival. Guests are real components built from source by this crate's
//! build script.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod embed;
mod exec;
mod filesystem;
mod host_memory;
mod limits;
mod llm;
mod manifest_ceiling;
mod memory;
mod network;
mod plugins;
mod runs;
mod shared_memory;
mod signing;
mod survival;

/// The test that exercises each guest the build script found, by the
/// guest's name: a guest added without an entry here fails to compile.
mod covered {
    pub(crate) use crate::exec::a_wasi_program_gets_args_stdin_and_the_scratch_dir_only as program;
    pub(crate) use crate::exec::javascript_runs_and_hostile_javascript_is_contained as js;
    pub(crate) use crate::exec::the_exec_plugin_runs_code_under_its_callers_limits as exec;
    pub(crate) use crate::llm::openai_tool_calls_round_trip_and_the_key_stays_on_the_host as thinker;
    pub(crate) use crate::memory::every_operation_through_a_guest as memory;
    pub(crate) use crate::plugins::fetch_gets_a_granted_url_as_text_and_rejects_bad_arguments as fetch;
    pub(crate) use crate::plugins::fs_reads_writes_lists_stats_and_searches as fs;
    pub(crate) use crate::plugins::hello_greets_and_rejects_bad_arguments as hello;
    pub(crate) use crate::plugins::text_stats_example_plugin_works as text_stats;
    pub(crate) use crate::runs::roles_reach_granted_tools_through_the_host_and_no_others as caller;
    pub(crate) use crate::runs::the_planner_turns_a_goal_into_tasks_for_the_runs_roles as planner;
    pub(crate) use crate::runs::the_python_module_example_runs_end_to_end_and_replays as coder;
    pub(crate) use crate::runs::the_python_module_example_runs_end_to_end_and_replays as tester;
    pub(crate) use crate::runs::the_python_module_example_runs_end_to_end_and_replays as reviewer;
    pub(crate) use crate::runs::the_research_example_fetches_remembers_and_answers_from_memory as researcher;
    pub(crate) use crate::survival::every_failure_leaves_the_host_able_to_serve as hostile;
}

macro_rules! assert_guest_tested {
    ($name:ident) => {
        #[allow(unused_imports)]
        use covered::$name as _;
    };
}
warden_tests::foreach_guest!(assert_guest_tested);

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use warden_core::{
    CallError, CallOptions, CallOutcome, CompiledPlugin, DirGrant, DirMode, Engine, EngineConfig,
    Grant, HostPattern, LimitKind, Limits, ToolError,
};

/// One engine for the whole binary, as in the real process.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::new(&EngineConfig {
            // The Python runtime takes seconds to compile: share the result
            // between test runs and with the CLI suite.
            cache_dir: Some(warden_tests::artifacts::CACHE_DIR.into()),
            runtime_dir: Some(warden_tests::artifacts::RUNTIME_DIR.into()),
            ..EngineConfig::default()
        })
        .expect("engine")
    })
}

/// Each guest compiled once and shared, as the runtime shares them.
pub fn plugin(path: &str) -> CompiledPlugin {
    static LOADED: OnceLock<Mutex<HashMap<String, CompiledPlugin>>> = OnceLock::new();
    let loaded = LOADED.get_or_init(Default::default);
    let mut loaded = loaded.lock().unwrap_or_else(|e| e.into_inner());
    loaded
        .entry(path.to_string())
        .or_insert_with(|| engine().load_file(path.as_ref()).expect("load guest"))
        .clone()
}

/// Options with default limits and the given grant.
pub fn options(grant: Grant) -> CallOptions {
    CallOptions {
        grant,
        ..CallOptions::default()
    }
}

pub fn with_limits(grant: Grant, f: impl FnOnce(&mut Limits)) -> CallOptions {
    let mut o = options(grant);
    f(&mut o.limits);
    o
}

pub fn ro(spec: &str) -> DirGrant {
    DirGrant::parse(spec, DirMode::ReadOnly).expect("dir spec")
}

pub fn rw(spec: &str) -> DirGrant {
    DirGrant::parse(spec, DirMode::ReadWrite).expect("dir spec")
}

pub fn dirs(dirs: Vec<DirGrant>) -> Grant {
    Grant {
        dirs,
        ..Grant::default()
    }
}

pub fn hosts(patterns: &[&str]) -> Grant {
    Grant {
        allow_hosts: patterns
            .iter()
            .map(|p| HostPattern::parse(p).expect("pattern"))
            .collect(),
        ..Grant::default()
    }
}

pub async fn call(
    path: &str,
    tool: &str,
    args: serde_json::Value,
    options: &CallOptions,
) -> CallOutcome<Result<String, ToolError>> {
    plugin(path)
        .call_tool(options, tool, &args.to_string())
        .await
}

/// The tool's JSON result; panics with the outcome otherwise.
pub fn ok_json(outcome: &CallOutcome<Result<String, ToolError>>) -> serde_json::Value {
    match &outcome.result {
        Ok(Ok(json)) => serde_json::from_str(json).expect("result is JSON"),
        other => panic!(
            "expected a result, got {other:?}\nstderr: {}",
            outcome.stderr.to_text()
        ),
    }
}

/// The tool's own error; panics otherwise.
pub fn tool_error(outcome: &CallOutcome<Result<String, ToolError>>) -> ToolError {
    match &outcome.result {
        Ok(Err(e)) => e.clone(),
        other => panic!("expected a tool error, got {other:?}"),
    }
}

/// The message of a `failed` tool error; panics on anything else.
pub fn failed(outcome: &CallOutcome<Result<String, ToolError>>) -> String {
    match tool_error(outcome) {
        ToolError::Failed(m) => m,
        other => panic!("expected failed, got {other:?}"),
    }
}

/// The message of a `denied` tool error; panics on anything else.
pub fn denied(outcome: &CallOutcome<Result<String, ToolError>>) -> String {
    match tool_error(outcome) {
        ToolError::Denied(m) => m,
        other => panic!("expected denied, got {other:?}"),
    }
}

/// The limit that stopped the call; panics otherwise.
pub fn limit<T: std::fmt::Debug>(outcome: &CallOutcome<T>) -> LimitKind {
    match outcome.result.as_ref().err().and_then(CallError::limit) {
        Some(kind) => kind,
        None => panic!("expected a limit, got {:?}", outcome.result),
    }
}

/// The data dir holding the fetched models (both of them), shared by the
/// suites that run them: fetched once per run with pip, SHA-256 pinned, and
/// kept between runs.
pub fn models_dir() -> &'static Path {
    static FETCHED: OnceLock<PathBuf> = OnceLock::new();
    FETCHED.get_or_init(|| {
        let dir = PathBuf::from(warden_tests::artifacts::DATA_DIR);
        let python = std::env::var("WARDEN_PYTHON").unwrap_or_else(|_| "python3".into());
        for spec in warden_llm::models::ALL {
            warden_llm::models::fetch(&dir, spec, &python).expect("fetch the models (needs pip)");
        }
        dir
    })
}

pub const SHORT: Duration = Duration::from_millis(400);

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Arc<Mutex<Vec<u8>>>>> =
        const { std::cell::RefCell::new(None) };
}

/// The trace lines this thread writes while the capture lives.
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        CAPTURE.with(|c| c.borrow_mut().take());
    }
}

/// Captures what the current thread traces, at every level, until the
/// capture is dropped. One global subscriber (installed once) formats only
/// the events of capturing threads: tests in parallel neither race for
/// tracing's per-callsite interest (as thread-local subscribers do) nor pay
/// for each other's logs.
pub fn capture_logs() -> LogCapture {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::{Layer, filter};

    struct ThreadWriter;
    impl std::io::Write for ThreadWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            CAPTURE.with(|c| {
                if let Some(sink) = &*c.borrow() {
                    sink.lock().unwrap().extend_from_slice(buf);
                }
            });
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let capturing = filter::filter_fn(|_| CAPTURE.with(|c| c.borrow().is_some()));
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| ThreadWriter)
            .with_filter(filter::LevelFilter::TRACE)
            .with_filter(capturing);
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
    });
    let sink = Arc::new(Mutex::new(Vec::new()));
    CAPTURE.with(|c| *c.borrow_mut() = Some(sink.clone()));
    LogCapture(sink)
}
