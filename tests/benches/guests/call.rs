//! Cold tool calls of `hello`: a fresh Store + WASI context + instantiate +
//! call every time, through warden and through a minimal bare-wasmtime
//! embedding of the same component, so the ratio is warden's overhead.
//!
//! ```text
//! WARDEN_BENCH=call cargo bench -p warden-tests --bench guests
//! ```
//!
//! The bare embedding runs twice: with wasmtime's default pooling settings,
//! and with the same pooling tuning warden uses (slots kept resident, dirty
//! pages found with PAGEMAP_SCAN), so the second ratio isolates what warden's
//! limits, policy, async and capture cost.
//!
//! Criterion measures each path; then the bench prints p50/p99 latency from
//! its own samples and calls per second with one sandbox per call on every
//! core.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::Criterion;
use warden_core::{CallOptions, CompiledPlugin, Engine, EngineConfig};
use warden_tests::artifacts::HELLO;

const ARGS: &str = r#"{"name":"bench"}"#;

pub fn main() {
    let warden = WardenPath::new();
    let bare = bare::BarePath::new(Path::new(HELLO), false);
    let tuned = bare::BarePath::new(Path::new(HELLO), true);
    assert_eq!(
        warden.call(),
        bare.call(),
        "both paths must give the same answer"
    );
    assert_eq!(
        warden.call(),
        tuned.call(),
        "both paths must give the same answer"
    );

    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut group = criterion.benchmark_group("cold_call_hello");
    group.bench_function("warden", |b| b.iter(|| black_box(warden.call())));
    group.bench_function("bare_wasmtime", |b| b.iter(|| black_box(bare.call())));
    group.bench_function("bare_wasmtime_tuned", |b| {
        b.iter(|| black_box(tuned.call()))
    });
    group.finish();
    criterion.final_summary();

    let samples = 20_000;
    let w = percentiles(samples, || {
        black_box(warden.call());
    });
    let b = percentiles(samples, || {
        black_box(bare.call());
    });
    let t = percentiles(samples, || {
        black_box(tuned.call());
    });
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let w_rate = throughput(cores, Duration::from_secs(3), WardenPath::new);
    let b_rate = throughput(cores, Duration::from_secs(3), || {
        bare::BarePath::new(Path::new(HELLO), false)
    });
    let t_rate = throughput(cores, Duration::from_secs(3), || {
        bare::BarePath::new(Path::new(HELLO), true)
    });
    println!();
    println!("cold call of hello, {samples} samples each");
    println!("  warden         p50 {:>7.1} µs   p99 {:>7.1} µs", w.0, w.1);
    println!("  bare wasmtime  p50 {:>7.1} µs   p99 {:>7.1} µs", b.0, b.1);
    println!("  bare, tuned    p50 {:>7.1} µs   p99 {:>7.1} µs", t.0, t.1);
    println!("  ratio warden / bare (p50)        {:.2}x", w.0 / b.0);
    println!("  ratio warden / bare tuned (p50)  {:.2}x", w.0 / t.0);
    println!("calls per second, fresh sandbox per call, {cores} threads");
    println!("  warden         {w_rate:>9.0}");
    println!("  bare wasmtime  {b_rate:>9.0}");
    println!("  bare, tuned    {t_rate:>9.0}");
}

/// (p50, p99) in microseconds.
fn percentiles(samples: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    let at = |q: f64| times[((samples as f64 * q) as usize).min(samples - 1)].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

trait Caller {
    fn call(&self) -> String;
}

/// Calls per second with `threads` threads each calling in a loop.
fn throughput<C: Caller + 'static>(
    threads: usize,
    run_for: Duration,
    make: impl Fn() -> C + Send + Sync + Clone + 'static,
) -> f64 {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let make = make.clone();
            std::thread::spawn(move || {
                let caller = make();
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < run_for {
                    black_box(caller.call());
                    n += 1;
                }
                n as f64 / start.elapsed().as_secs_f64()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
}

/// warden's whole call path, as `warden tool call` and the server use it.
struct WardenPath {
    runtime: tokio::runtime::Runtime,
    plugin: CompiledPlugin,
    options: CallOptions,
}

impl WardenPath {
    fn new() -> WardenPath {
        static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
        let engine = ENGINE.get_or_init(|| Engine::new(&EngineConfig::default()).expect("engine"));
        let plugin = engine.load_file(Path::new(HELLO)).expect("load hello");
        let options = CallOptions {
            limits: plugin
                .limits(Default::default(), Default::default())
                .expect("limits"),
            ..CallOptions::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        WardenPath {
            runtime,
            plugin,
            options,
        }
    }
}

impl Caller for WardenPath {
    fn call(&self) -> String {
        let outcome = self
            .runtime
            .block_on(self.plugin.call_tool(&self.options, "greet", ARGS));
        match outcome.result {
            Ok(Ok(json)) => json,
            other => panic!("{other:?}"),
        }
    }
}

impl Caller for bare::BarePath {
    fn call(&self) -> String {
        bare::BarePath::call(self)
    }
}

/// The minimal embedding: pooling allocator, default WASI context, sync
/// instantiate and call, no limits, policy or accounting.
mod bare {
    use std::path::Path;
    use std::sync::OnceLock;

    use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
    use wasmtime::{
        Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    };
    use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tool-plugin",
    });

    pub struct State {
        wasi: WasiCtx,
        table: ResourceTable,
    }

    impl WasiView for State {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView {
                ctx: &mut self.wasi,
                table: &mut self.table,
            }
        }
    }

    impl warden::plugin::log::Host for State {
        fn log(&mut self, _level: warden::plugin::log::Level, _message: String) {}
    }

    impl warden::plugin::types::Host for State {}

    pub struct BarePath {
        engine: Engine,
        pre: ToolPluginPre<State>,
    }

    impl BarePath {
        /// `tuned`: the pooling settings warden uses; otherwise wasmtime's
        /// defaults.
        pub fn new(path: &Path, tuned: bool) -> BarePath {
            static DEFAULT: OnceLock<(Engine, Component)> = OnceLock::new();
            static TUNED: OnceLock<(Engine, Component)> = OnceLock::new();
            let shared = if tuned { &TUNED } else { &DEFAULT };
            let (engine, component) = shared.get_or_init(|| {
                let mut pool = PoolingAllocationConfig::new();
                if tuned {
                    pool.pagemap_scan(Enabled::Auto)
                        .linear_memory_keep_resident(2 * 1024 * 1024)
                        .table_keep_resident(64 * 1024);
                }
                let mut config = Config::new();
                config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
                let engine = Engine::new(&config).expect("engine");
                let component = Component::from_file(&engine, path).expect("compile");
                (engine, component)
            });
            let mut linker = Linker::<State>::new(engine);
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi");
            ToolPlugin::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).expect("log");
            let pre =
                ToolPluginPre::new(linker.instantiate_pre(component).expect("pre")).expect("pre");
            BarePath {
                engine: engine.clone(),
                pre,
            }
        }

        pub fn call(&self) -> String {
            let state = State {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            };
            let mut store = Store::new(&self.engine, state);
            let plugin = self.pre.instantiate(&mut store).expect("instantiate");
            plugin
                .warden_plugin_tool()
                .call_call_tool(&mut store, "greet", &super::ARGS.to_string())
                .expect("call")
                .expect("tool result")
        }
    }
}
