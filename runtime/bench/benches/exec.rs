//! `warden exec` of Python and JavaScript, phase by phase, in one run.
//!
//! ```text
//! cargo bench -p warden-bench --bench exec
//! WARDEN_BENCH_RUNS=5000 cargo bench -p warden-bench --bench exec
//! WARDEN_BENCH_ONLY=python cargo bench -p warden-bench --bench exec   # or js
//! ```
//!
//! 1. `print(1+1)` and `console.log(1+1)`, each run in a fresh sandbox as
//!    `warden exec` makes it (scratch and code directories, the runtime's
//!    store, instance and call), after a warm-up: p50/p99 of the whole run
//!    and of each phase (store setup, instantiate, the call, teardown, and
//!    what `warden exec` does outside the sandbox), minor page faults and
//!    user/system time per run.
//! 2. The same with two runs at a time on two threads.
//! 3. The same trivial runs on an engine without fuel metering.
//! 4. `fib(25)` timed inside the script, best of 5, in warden with and
//!    without fuel and in the machine's own `python3` and `node` when they
//!    are there; the ratios compare each with the native interpreter.
//!
//! 5. With `WARDEN_BENCH_BASELINE_JS=FILE`, another JavaScript runtime
//!    (the boa one warden had before QuickJS, say) beside this one: the
//!    trivial run and `fib(25)`, with the ratios.
//!
//! It links warden-core as `cargo bench` builds it: the release profile, as
//! `cargo install` and `scripts/dev` build the `warden` binary.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use warden_bench::Sample;
use warden_core::{CallOptions, Engine, EngineConfig, Language, Limits, Phases};
use warden_tests::artifacts::RUNTIME_DIR;

/// Recursive Fibonacci, interpreter-bound, printing its own time in seconds
/// so that no side pays for process or sandbox start in the comparison.
const FIB_PY: &str = "import time\n\
def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\
t = time.perf_counter()\nfib(25)\nprint(time.perf_counter() - t)\n";
const FIB_JS: &str = "function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }\n\
const t = Date.now();\nfib(25);\nconsole.log((Date.now() - t) / 1000);\n";

fn main() {
    let runs: usize = std::env::var("WARDEN_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let cache = tempfile::tempdir().expect("a temp dir");
    let scratch_root = tempfile::tempdir().expect("a temp dir");
    let metered = engine(cache.path(), scratch_root.path(), true, 0);
    let unmetered = engine(cache.path(), scratch_root.path(), false, 0);
    // As `warden serve` makes its engine: instances made ahead.
    let ahead = engine(cache.path(), scratch_root.path(), true, 2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");

    let only = std::env::var("WARDEN_BENCH_ONLY").ok();
    let wanted = |language: Language| only.as_deref().is_none_or(|o| o == language.name());

    println!(
        "fresh sandbox per run; {runs} runs after {} warm-up",
        runs / 10
    );
    for (language, code) in [
        (Language::Python, "print(1+1)"),
        (Language::Js, "console.log(1+1)"),
    ]
    .into_iter()
    .filter(|(language, _)| wanted(*language))
    {
        println!("\n{language}: {code}");
        for (label, engine, twice) in [
            ("fuel", &metered, true),
            ("no fuel", &unmetered, false),
            ("fuel, made ahead (serve)", &ahead, true),
        ] {
            // Compiles (or loads) the runtime and warms the pool's slots.
            batch(&rt, engine, language, code, runs / 10, 1);
            let alone = batch(&rt, engine, language, code, runs, 1);
            alone.print(&format!("1 at a time, {label}"));
            if twice {
                let two = batch(&rt, engine, language, code, runs, 2);
                two.print(&format!("2 at a time, {label}"));
            }
        }
    }

    println!("\nfib(25), timed inside the script, best of 5");
    let fib = |engine: &Engine, language, code| {
        best_of(5, || {
            let out = run_once(&rt, engine, language, code).0;
            out.trim()
                .parse::<f64>()
                .expect("the script prints seconds")
        })
    };
    for (language, code, native) in [
        (Language::Python, FIB_PY, "python3"),
        (Language::Js, FIB_JS, "node"),
    ]
    .into_iter()
    .filter(|(language, ..)| wanted(*language))
    {
        let native = native_seconds(native, code);
        for (label, engine) in [("fuel", &metered), ("no fuel", &unmetered)] {
            let secs = fib(engine, language, code);
            let ratio = native.as_ref().map_or(String::new(), |(_, n)| {
                format!("   ×{:.2} of native", secs / n)
            });
            println!(
                "  {language:<6} warden, {label:<8} {:>8.1} ms{ratio}",
                secs * 1e3
            );
        }
        match native {
            Some((name, secs)) => println!("  {language:<6} {name:<16} {:>8.1} ms", secs * 1e3),
            None => println!("  {language:<6} no native interpreter on this machine"),
        }
    }
    for (language, code) in [(Language::Python, FIB_PY), (Language::Js, FIB_JS)]
        .into_iter()
        .filter(|(language, _)| wanted(*language))
    {
        let with = fib(&metered, language, code);
        let without = fib(&unmetered, language, code);
        println!(
            "  {language} without fuel, again side by side: ×{:.2} of the time with fuel",
            without / with
        );
    }

    let baseline = std::env::var_os("WARDEN_BENCH_BASELINE_JS").filter(|_| wanted(Language::Js));
    if let Some(baseline) = baseline {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::copy(&baseline, dir.path().join("js.wasm")).expect("the baseline runtime");
        let other = engine_with_runtimes(dir.path(), cache.path(), scratch_root.path(), true, 0);
        let code = "console.log(1+1)";
        println!(
            "\njs beside the baseline {}",
            PathBuf::from(&baseline).display()
        );
        batch(&rt, &other, Language::Js, code, runs / 10, 1);
        let theirs = batch(&rt, &other, Language::Js, code, runs, 1);
        let ours = batch(&rt, &metered, Language::Js, code, runs, 1);
        let p50 = |b: &Batch| Sample::new(b.whole.clone()).percentile(0.5);
        println!(
            "  console.log(1+1) p50: baseline {:.1} µs, this {:.1} µs (×{:.2})",
            p50(&theirs),
            p50(&ours),
            p50(&theirs) / p50(&ours)
        );
        let theirs = fib(&other, Language::Js, FIB_JS);
        let ours = fib(&metered, Language::Js, FIB_JS);
        println!(
            "  fib(25): baseline {:.1} ms, this {:.1} ms: this is ×{:.2} as fast",
            theirs * 1e3,
            ours * 1e3,
            theirs / ours
        );
    }
}

fn engine(cache: &Path, scratch: &Path, meters_fuel: bool, warm_instances: u32) -> Engine {
    engine_with_runtimes(
        Path::new(RUNTIME_DIR),
        cache,
        scratch,
        meters_fuel,
        warm_instances,
    )
}

fn engine_with_runtimes(
    runtimes: &Path,
    cache: &Path,
    scratch: &Path,
    meters_fuel: bool,
    warm_instances: u32,
) -> Engine {
    Engine::new(&EngineConfig {
        cache_dir: Some(cache.to_path_buf()),
        runtime_dir: Some(runtimes.to_path_buf()),
        scratch_dir: Some(scratch.to_path_buf()),
        meters_fuel,
        warm_instances,
        ..EngineConfig::default()
    })
    .expect("an engine")
}

fn options() -> CallOptions {
    CallOptions {
        limits: Limits {
            timeout: Duration::from_secs(60),
            ..Limits::default()
        },
        ..CallOptions::default()
    }
}

/// One run as `warden exec` makes it; its stdout, the whole run's time and
/// the sandbox's phases.
fn run_once(
    rt: &tokio::runtime::Runtime,
    engine: &Engine,
    language: Language,
    code: &str,
) -> (String, Duration, Phases) {
    rt.block_on(run_async(engine, language, code))
}

async fn run_async(engine: &Engine, language: Language, code: &str) -> (String, Duration, Phases) {
    let started = Instant::now();
    let scratch = engine.scratch().expect("a scratch dir");
    let outcome = engine
        .run_code(language, code, &scratch, Vec::new(), &[], &options())
        .await
        .expect("the runtime is built");
    drop(scratch);
    let whole = started.elapsed();
    assert_eq!(outcome.result, Ok(0), "{}", outcome.stderr.to_text());
    (outcome.stdout.to_text(), whole, outcome.usage.phases)
}

/// What `runs` runs, `at_once` at a time, took.
struct Batch {
    elapsed: Duration,
    runs: usize,
    whole: Vec<f64>,
    setup: Vec<f64>,
    instantiate: Vec<f64>,
    call: Vec<f64>,
    teardown: Vec<f64>,
    outside: Vec<f64>,
    process: ProcessDelta,
}

fn batch(
    rt: &tokio::runtime::Runtime,
    engine: &Engine,
    language: Language,
    code: &str,
    runs: usize,
    at_once: usize,
) -> Batch {
    let before = ProcessStat::read();
    let started = Instant::now();
    let results: Vec<(Duration, Phases)> = rt.block_on(async {
        let workers: Vec<_> = (0..at_once)
            .map(|_| {
                let engine = engine.clone();
                let code = code.to_string();
                tokio::spawn(async move {
                    let mut times = Vec::with_capacity(runs / at_once);
                    for _ in 0..runs / at_once {
                        let (_, whole, phases) = run_async(&engine, language, &code).await;
                        times.push((whole, phases));
                    }
                    times
                })
            })
            .collect();
        let mut all = Vec::with_capacity(runs);
        for worker in workers {
            all.extend(worker.await.expect("a worker"));
        }
        all
    });
    let elapsed = started.elapsed();
    let process = ProcessStat::read().since(&before);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let column = |f: &dyn Fn(&(Duration, Phases)) -> Duration| {
        results.iter().map(|r| us(f(r))).collect::<Vec<_>>()
    };
    Batch {
        elapsed,
        runs: results.len(),
        whole: column(&|r| r.0),
        setup: column(&|r| r.1.setup),
        instantiate: column(&|r| r.1.instantiate),
        call: column(&|r| r.1.call),
        teardown: column(&|r| r.1.teardown),
        outside: column(&|r| {
            r.0.saturating_sub(r.1.setup + r.1.instantiate + r.1.call + r.1.teardown)
        }),
        process,
    }
}

impl Batch {
    fn print(self, what: &str) {
        let runs = self.runs as f64;
        println!(
            "  {what}: {:.0} runs/s; per run {:.0} minor faults, user {:.0} µs, system {:.0} µs",
            runs / self.elapsed.as_secs_f64(),
            self.process.minor_faults as f64 / runs,
            self.process.user.as_secs_f64() * 1e6 / runs,
            self.process.system.as_secs_f64() * 1e6 / runs,
        );
        for (phase, micros) in [
            ("whole run", self.whole),
            ("  store setup", self.setup),
            ("  instantiate", self.instantiate),
            ("  call", self.call),
            ("  teardown", self.teardown),
            ("  outside the sandbox", self.outside),
        ] {
            let sample = Sample::new(micros);
            println!(
                "    {phase:<22} p50 {:>8.1} µs   p99 {:>8.1} µs",
                sample.percentile(0.50),
                sample.percentile(0.99)
            );
        }
    }
}

/// The least of `n` measurements.
fn best_of(n: usize, mut measure: impl FnMut() -> f64) -> f64 {
    (0..n).map(|_| measure()).fold(f64::MAX, f64::min)
}

/// The native interpreter's own time for `code`, best of 5; `None` when it
/// is not on this machine.
fn native_seconds(interpreter: &str, code: &str) -> Option<(String, f64)> {
    let flag = if interpreter == "node" { "-e" } else { "-c" };
    let mut failed = false;
    let secs = best_of(5, || {
        match std::process::Command::new(interpreter)
            .args([flag, code])
            .output()
        {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(f64::MAX),
            _ => {
                failed = true;
                f64::MAX
            }
        }
    });
    (!failed).then(|| (format!("native {interpreter}"), secs))
}

/// This process's counters from `/proc/self/stat`.
struct ProcessStat {
    minor_faults: u64,
    user_ticks: u64,
    system_ticks: u64,
}

struct ProcessDelta {
    minor_faults: u64,
    user: Duration,
    system: Duration,
}

impl ProcessStat {
    fn read() -> ProcessStat {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
        // The fields after the command name, which is in parentheses and
        // may hold spaces: state is field 3, minflt 10, utime 14, stime 15.
        let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
        let fields: Vec<u64> = rest.split(' ').map(|f| f.parse().unwrap_or(0)).collect();
        ProcessStat {
            minor_faults: fields[10 - 3],
            user_ticks: fields[14 - 3],
            system_ticks: fields[15 - 3],
        }
    }

    fn since(&self, before: &ProcessStat) -> ProcessDelta {
        // USER_HZ, 100 on Linux whatever the kernel's own tick rate.
        let tick = Duration::from_millis(10);
        ProcessDelta {
            minor_faults: self.minor_faults - before.minor_faults,
            user: tick * (self.user_ticks - before.user_ticks) as u32,
            system: tick * (self.system_ticks - before.system_ticks) as u32,
        }
    }
}
