//! `warden exec` speed: the warm start-to-result of `print(1+1)` in Python
//! (and `console.log(1+1)` in JavaScript), the cold first run including
//! compilation, and a CPU-bound snippet against the machine's own `python3`.
//!
//! ```text
//! WARDEN_BENCH=exec cargo bench -p warden-tests --bench guests
//! ```

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::Criterion;
use warden_core::Scratch;
use warden_core::{CallOptions, Engine, EngineConfig, Language};
use warden_tests::artifacts::RUNTIME_DIR;

/// Recursive Fibonacci: interpreter-bound, no I/O. Prints its own time so
/// that neither side pays for process or sandbox start in the comparison.
const CPU_BOUND: &str = "import time\n\
def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\
t = time.perf_counter()\nfib(25)\nprint(time.perf_counter() - t)\n";

fn engine(cache: Option<PathBuf>) -> Engine {
    Engine::new(&EngineConfig {
        cache_dir: cache,
        runtime_dir: Some(RUNTIME_DIR.into()),
        ..EngineConfig::default()
    })
    .expect("engine")
}

fn run(rt: &tokio::runtime::Runtime, engine: &Engine, language: Language, code: &str) -> String {
    let scratch = Scratch::new().expect("scratch");
    let options = CallOptions {
        limits: warden_core::Limits {
            timeout: Duration::from_secs(60),
            ..Default::default()
        },
        ..CallOptions::default()
    };
    let outcome = rt
        .block_on(engine.run_code(language, code, &scratch, Vec::new(), &[], &options))
        .expect("runtime present");
    assert_eq!(outcome.result, Ok(0), "{}", outcome.stderr.to_text());
    outcome.stdout.to_text()
}

pub fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // Cold: a fresh engine with an empty cache compiles the runtime first.
    let cache = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let cold = engine(Some(cache.path().to_path_buf()));
    assert_eq!(run(&rt, &cold, Language::Python, "print(1+1)"), "2\n");
    let cold_compile = started.elapsed();
    drop(cold);
    // Cold again in a new engine, but with the compiled artifact cached.
    let started = Instant::now();
    let cached = engine(Some(cache.path().to_path_buf()));
    assert_eq!(run(&rt, &cached, Language::Python, "print(1+1)"), "2\n");
    let cold_cached = started.elapsed();

    let warm = cached;
    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut group = criterion.benchmark_group("exec_warm");
    group.bench_function("python_print_1_plus_1", |b| {
        b.iter(|| black_box(run(&rt, &warm, Language::Python, "print(1+1)")))
    });
    group.bench_function("js_console_log_1_plus_1", |b| {
        b.iter(|| black_box(run(&rt, &warm, Language::Js, "console.log(1+1)")))
    });
    group.finish();
    criterion.final_summary();

    let py = percentiles(2000, || {
        black_box(run(&rt, &warm, Language::Python, "print(1+1)"));
    });
    let js = percentiles(2000, || {
        black_box(run(&rt, &warm, Language::Js, "console.log(1+1)"));
    });

    let in_warden: f64 = (0..5)
        .map(|_| parse_secs(&run(&rt, &warm, Language::Python, CPU_BOUND)))
        .fold(f64::MAX, f64::min);
    let native: f64 = (0..5)
        .map(|_| {
            let out = std::process::Command::new("python3")
                .args(["-c", CPU_BOUND])
                .output()
                .expect("python3 on this machine");
            parse_secs(&String::from_utf8_lossy(&out.stdout))
        })
        .fold(f64::MAX, f64::min);

    println!();
    println!("warm start-to-result, 2000 runs each (fresh sandbox, scratch and code dirs per run)");
    println!(
        "  python print(1+1)    p50 {:>7.2} ms   p99 {:>7.2} ms",
        py.0, py.1
    );
    println!(
        "  js console.log(1+1)  p50 {:>7.2} ms   p99 {:>7.2} ms",
        js.0, js.1
    );
    println!("cold first python run");
    println!(
        "  compiling the runtime  {:>8.2} s",
        cold_compile.as_secs_f64()
    );
    println!(
        "  from the cache         {:>8.2} s",
        cold_cached.as_secs_f64()
    );
    println!("cpu-bound fib(25), best of 5");
    println!("  in warden    {:>8.1} ms", in_warden * 1e3);
    println!("  native python3 {:>6.1} ms", native * 1e3);
    println!("  ratio        {:>8.2}x", in_warden / native);
}

fn parse_secs(stdout: &str) -> f64 {
    stdout.trim().parse().expect("the snippet prints seconds")
}

/// (p50, p99) in milliseconds.
fn percentiles(samples: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    let at = |q: f64| times[((samples as f64 * q) as usize).min(samples - 1)].as_secs_f64() * 1e3;
    (at(0.50), at(0.99))
}
