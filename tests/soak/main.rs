//! The standing hostile soak: thousands of adversarial calls (runaway loops,
//! memory growth, deep recursion, oversized results, errors and logs, stdout
//! floods, open-file floods, disk and file-count bombs, programs run through
//! `exec` that never stop) mixed with ordinary ones, on one engine, many at
//! once. Every adversarial call must be stopped by its own limit (or refused
//! as data), every ordinary call must answer correctly, the host must not
//! panic, and its peak memory must stay within the limits it was given plus
//! a stated constant. The figures are printed.
//!
//! A test binary of its own, so that its process's memory is its own.
//!
//! ```text
//! cargo test -p warden-tests --test soak -- --nocapture          # 600 calls
//! WARDEN_SOAK_CALLS=20000 cargo test -p warden-tests --test soak -- --nocapture
//! ```

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_core::{
    CallError, CallOptions, CompiledPlugin, DirGrant, DirMode, Engine, EngineConfig, Grant,
    LimitKind, Limits, ToolError,
};
use warden_tests::artifacts::{CACHE_DIR, EXEC, HELLO, HOSTILE, RUNTIME_DIR};

const CONCURRENT: usize = 8;
const MIB: u64 = 1024 * 1024;

/// What a call is expected to end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// An ordinary call: this exact result.
    Answer,
    Limit(LimitKind),
    /// A trap (stack overflow).
    Trap,
    /// A result that reports the refusal as data (a failed open, a
    /// stopped child).
    Refused,
    /// A program's result whose stdout starts with this (it handled the
    /// refusal itself).
    Printed(&'static str),
}

struct Case {
    name: &'static str,
    plugin: &'static str,
    tool: &'static str,
    args: Value,
    expect: Expect,
    /// The answer an ordinary call must give.
    answer: Option<Value>,
    /// Fuel for this call, if not the soak's.
    fuel: Option<u64>,
    /// Time for this call, if not the soak's: the bombs get enough to
    /// reach their quota however loaded the machine is, so a quota that
    /// did not hold would show as the deadline instead.
    timeout: Option<Duration>,
}

fn cases(files_dir: &str) -> Vec<Case> {
    let case = |name, plugin, tool, args, expect| Case {
        name,
        plugin,
        tool,
        args,
        expect,
        answer: None,
        fuel: None,
        timeout: None,
    };
    vec![
        Case {
            fuel: Some(20_000_000),
            ..case(
                "loop",
                HOSTILE,
                "spin",
                json!({}),
                Expect::Limit(LimitKind::Fuel),
            )
        },
        case(
            "block",
            HOSTILE,
            "sleep",
            json!({"ms": 60_000}),
            Expect::Limit(LimitKind::Deadline),
        ),
        case(
            "memory",
            HOSTILE,
            "alloc",
            json!({"mib": 512}),
            Expect::Limit(LimitKind::Memory),
        ),
        case(
            "recursion",
            HOSTILE,
            "recurse",
            json!({"depth": 10_000_000}),
            Expect::Trap,
        ),
        case(
            "big result",
            HOSTILE,
            "big_output",
            json!({"mib": 8}),
            Expect::Limit(LimitKind::Output),
        ),
        case(
            "big error",
            HOSTILE,
            "big_error",
            json!({"mib": 8}),
            Expect::Limit(LimitKind::Output),
        ),
        case(
            "file flood",
            HOSTILE,
            "hold_files",
            json!({"dir": files_dir, "count": 100_000}),
            Expect::Refused,
        ),
        case(
            "stdout flood",
            HOSTILE,
            "print",
            json!({"mib": 1}),
            Expect::Answer,
        ),
        case(
            "log flood",
            HOSTILE,
            "log_flood",
            json!({"lines": 5_000}),
            Expect::Answer,
        ),
        case(
            "huge argument",
            HOSTILE,
            "echo",
            json!({"blob": "z".repeat(4 * MIB as usize)}),
            Expect::Limit(LimitKind::Output),
        ),
        case(
            "endless child",
            EXEC,
            "run_python",
            json!({"code": "while True: pass"}),
            Expect::Refused,
        ),
        Case {
            timeout: Some(Duration::from_secs(5)),
            ..case(
                "disk bomb",
                EXEC,
                "run_python",
                json!({"code": "try:\n    f = open('bomb', 'wb')\n    while True:\n        f.write(b'x' * 65536)\n        f.flush()\nexcept OSError as e:\n    print('stopped', e.errno)\n"}),
                Expect::Printed("stopped "),
            )
        },
        Case {
            timeout: Some(Duration::from_secs(5)),
            ..case(
                "file bomb",
                EXEC,
                "run_python",
                json!({"code": "n = 0\ntry:\n    while True:\n        open(f'f{n}', 'w').close()\n        n += 1\nexcept OSError as e:\n    print('stopped', n, e.errno)\n"}),
                Expect::Printed("stopped "),
            )
        },
        Case {
            answer: Some(json!({"message": "Hello, soak!"})),
            ..case(
                "greet",
                HELLO,
                "greet",
                json!({"name": "soak"}),
                Expect::Answer,
            )
        },
        Case {
            answer: Some(json!({"small": [1, 2, 3]})),
            ..case(
                "echo",
                HOSTILE,
                "echo",
                json!({"small": [1, 2, 3]}),
                Expect::Answer,
            )
        },
    ]
}

/// What one call did.
struct Ran {
    case: usize,
    ok: Result<(), String>,
    elapsed: Duration,
}

fn vm_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn check(case: &Case, result: &Result<Result<String, ToolError>, CallError>) -> Result<(), String> {
    match (case.expect, result) {
        (Expect::Answer, Ok(Ok(json))) => match &case.answer {
            Some(want) => {
                let got: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
                (got == *want)
                    .then_some(())
                    .ok_or(format!("answered {got}, not {want}"))
            }
            None => Ok(()),
        },
        (Expect::Limit(kind), Err(e)) if e.limit() == Some(kind) => Ok(()),
        (Expect::Trap, Err(CallError::Trap(_))) => Ok(()),
        (Expect::Refused, Ok(Ok(json))) => {
            let v: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
            // A flood that got its errno, or a child stopped by a limit.
            (v["error"].is_string() || v["limit"].is_string())
                .then_some(())
                .ok_or(format!("was not refused: {v}"))
        }
        (Expect::Printed(start), Ok(Ok(json))) => {
            let v: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
            v["stdout"]
                .as_str()
                .is_some_and(|out| out.starts_with(start))
                .then_some(())
                .ok_or(format!("did not print {start:?}: {v}"))
        }
        (want, got) => Err(format!("expected {want:?}, got {got:?}")),
    }
}

#[test]
fn adversarial_calls_are_stopped_and_ordinary_ones_still_answer() {
    let calls: usize = std::env::var("WARDEN_SOAK_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(600);
    let limits = Limits {
        fuel: 400_000_000,
        timeout: Duration::from_millis(400),
        memory_bytes: 64 * MIB,
        output_bytes: 256 * 1024,
        stdio_bytes: 64 * 1024,
        open_files: 64,
        disk_bytes: 4 * MIB,
        new_files: 40,
        ..Limits::default()
    };
    let files = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = Engine::new(&EngineConfig {
        cache_dir: Some(CACHE_DIR.into()),
        runtime_dir: Some(RUNTIME_DIR.into()),
        max_concurrent_calls: CONCURRENT as u32 * 2,
        ..EngineConfig::default()
    })
    .unwrap();
    let plugins: BTreeMap<&str, CompiledPlugin> = [HELLO, HOSTILE, EXEC]
        .into_iter()
        .map(|p| (p, engine.load_file(p.as_ref()).unwrap()))
        .collect();
    // Warm the Python runtime's compiled code before measuring.
    runtime.block_on(async {
        engine.runtime(warden_core::Language::Python).unwrap();
    });
    let rss_before = vm_kib("VmRSS:");
    let options = CallOptions {
        grant: Grant {
            dirs: vec![DirGrant {
                host: files.path().to_path_buf(),
                guest: "/files".into(),
                mode: DirMode::ReadWrite,
            }],
            ..Grant::default()
        },
        limits,
        ..CallOptions::default()
    };
    let cases = Arc::new(cases("/files"));
    let started = Instant::now();
    let ran: Vec<Ran> = runtime.block_on(async {
        let semaphore = Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
        let mut tasks = Vec::with_capacity(calls);
        for i in 0..calls {
            let cases = cases.clone();
            let case_index = i % cases.len();
            let plugin = plugins[cases[case_index].plugin].clone();
            let mut options = options.clone();
            if let Some(fuel) = cases[case_index].fuel {
                options.limits.fuel = fuel;
            }
            if let Some(timeout) = cases[case_index].timeout {
                options.limits.timeout = timeout;
            }
            let permit = semaphore.clone().acquire_owned().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let case = &cases[case_index];
                let t = Instant::now();
                let outcome = plugin
                    .call_tool(&options, case.tool, &case.args.to_string())
                    .await;
                drop(permit);
                Ran {
                    case: case_index,
                    ok: check(case, &outcome.result),
                    elapsed: t.elapsed(),
                }
            }));
        }
        let mut ran = Vec::with_capacity(calls);
        for task in tasks {
            ran.push(task.await.expect("no call may panic the host"));
        }
        ran
    });
    let wall = started.elapsed();
    let peak_kib = vm_kib("VmHWM:");

    let mut per_case: BTreeMap<&str, (usize, Duration)> = BTreeMap::new();
    let mut deadline_overshoot = Duration::ZERO;
    let mut failures = Vec::new();
    for r in &ran {
        let case = &cases[r.case];
        let entry = per_case.entry(case.name).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(r.elapsed);
        let timeout = case.timeout.unwrap_or(limits.timeout);
        deadline_overshoot = deadline_overshoot.max(r.elapsed.saturating_sub(timeout));
        if let Err(why) = &r.ok {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    println!(
        "soak: {calls} calls, {CONCURRENT} at a time, in {:.1} s ({:.0} calls/s)",
        wall.as_secs_f64(),
        calls as f64 / wall.as_secs_f64()
    );
    for (name, (count, slowest)) in &per_case {
        println!(
            "  {name:<14} {count:>6} calls, slowest {} ms",
            slowest.as_millis()
        );
    }
    println!(
        "  slowest call past its deadline by {} ms",
        deadline_overshoot.as_millis()
    );
    println!(
        "  host RSS {} MiB before, peak {} MiB",
        rss_before / 1024,
        peak_kib / 1024
    );
    assert!(
        failures.is_empty(),
        "{} calls went wrong: {:#?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
    // Each call in flight may hold its linear memory and one host call's
    // data (a quarter of it); beyond that, the engine and what it loaded.
    const CONSTANT_MIB: u64 = 512;
    let bound_mib = CONCURRENT as u64 * (limits.memory_bytes + limits.memory_bytes / 4) / MIB
        + rss_before / 1024
        + CONSTANT_MIB;
    assert!(
        peak_kib / 1024 <= bound_mib,
        "peak RSS {} MiB is over {bound_mib} MiB",
        peak_kib / 1024
    );
}
