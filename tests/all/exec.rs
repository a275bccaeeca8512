//! Untrusted code: Python and JavaScript through their runtimes, a plain WASI
//! program, and the exec plugin. Every hostile snippet is followed by an
//! ordinary one that must still work in the same process.

use std::time::Duration;

use serde_json::json;
use warden_core::Scratch;
use warden_core::{CallError, CallOutcome, Language, LimitKind, RunInput};
use warden_tests::artifacts::{EXEC, PROGRAM};
use warden_tests::server::{RecordingServer, Reply};

use crate::*;

const CANARY: &str = "CANARY-exec-51c2e";

async fn python(code: &str, options: &CallOptions) -> CallOutcome<i32> {
    run(Language::Python, code, options).await
}

async fn run(language: Language, code: &str, options: &CallOptions) -> CallOutcome<i32> {
    run_on(engine(), language, code, options).await
}

async fn run_on(
    on: &Engine,
    language: Language,
    code: &str,
    options: &CallOptions,
) -> CallOutcome<i32> {
    let scratch = Scratch::new().unwrap();
    on.run_code(language, code, &scratch, Vec::new(), &[], options)
        .await
        .expect("the runtime is there")
}

fn short() -> CallOptions {
    with_limits(Grant::default(), |l| l.timeout = Duration::from_secs(3))
}

/// The ordinary snippet every hostile one is followed by.
async fn still_works(language: Language) {
    still_works_on(engine(), language).await
}

async fn still_works_on(on: &Engine, language: Language) {
    let code = match language {
        Language::Python => "print(6 * 7)",
        Language::Js => "console.log(6 * 7)",
    };
    let out = run_on(on, language, code, &short()).await;
    assert_eq!(out.result, Ok(0), "{}", out.stderr.to_text());
    assert_eq!(out.stdout.to_text(), "42\n");
}

fn exit_code(out: &CallOutcome<i32>) -> i32 {
    match &out.result {
        Ok(code) => *code,
        other => panic!(
            "expected an exit code, got {other:?}\nstderr: {}",
            out.stderr.to_text()
        ),
    }
}

#[tokio::test]
async fn python_runs_with_its_standard_library() {
    let code = r#"
import json, re, collections, datetime, math, decimal, statistics, hashlib, itertools, textwrap
print(json.dumps({"pi": round(math.pi, 3), "median": statistics.median([3, 1, 2])}))
print(hashlib.sha256(b"warden").hexdigest()[:12], datetime.date(2024, 2, 29).isoformat())
"#;
    let out = python(code, &short()).await;
    assert_eq!(exit_code(&out), 0, "{}", out.stderr.to_text());
    // sha256("warden") from the host's own Python, not trusted from the guest.
    let native = std::process::Command::new("python3")
        .args([
            "-c",
            "import hashlib; print(hashlib.sha256(b'warden').hexdigest()[:12])",
        ])
        .output()
        .expect("python3");
    let sha = String::from_utf8_lossy(&native.stdout).trim().to_string();
    assert_eq!(
        out.stdout.to_text(),
        format!("{{\"pi\": 3.142, \"median\": 2}}\n{sha} 2024-02-29\n")
    );
}

#[tokio::test]
async fn python_exit_codes_exceptions_stdin_args_and_scratch() {
    let out = python("import sys; sys.exit(7)", &short()).await;
    assert_eq!(exit_code(&out), 7);
    let out = python("raise ValueError('bad value')", &short()).await;
    assert_eq!(exit_code(&out), 1);
    assert!(
        out.stderr.to_text().contains("ValueError: bad value"),
        "{}",
        out.stderr.to_text()
    );

    let scratch = Scratch::new().unwrap();
    scratch
        .write("data/in.txt", b"from the scratch dir")
        .unwrap();
    let code = "import sys\nprint(open('data/in.txt').read(), sys.stdin.read(), sys.argv[1:])\nopen('out.txt', 'w').write('written')";
    let out = engine()
        .run_code(
            Language::Python,
            code,
            &scratch,
            b"piped".to_vec(),
            &["a".into(), "b".into()],
            &short(),
        )
        .await
        .unwrap();
    assert_eq!(exit_code(&out), 0, "{}", out.stderr.to_text());
    assert_eq!(
        out.stdout.to_text(),
        "from the scratch dir piped ['a', 'b']\n"
    );
    assert_eq!(
        std::fs::read_to_string(scratch.path().join("out.txt")).unwrap(),
        "written"
    );
}

/// The hostile Python suite, on an engine that instantiates each run's
/// instance in the run and on one that makes instances ahead.
#[tokio::test]
async fn hostile_python_is_contained() {
    for on in [engine(), ahead()] {
        hostile_python_on(on).await;
    }
}

async fn hostile_python_on(on: &Engine) {
    let outside = tempfile::tempdir().unwrap();
    let canary = outside.path().join("canary.txt");
    std::fs::write(&canary, CANARY).unwrap();
    let server = RecordingServer::start(Reply::Body("never".into()));

    // (snippet, what must be true of the outcome)
    let cases: Vec<(String, Check)> = vec![
        (
            "while True: pass".into(),
            Box::new(|o| assert_eq!(limit(o), LimitKind::Deadline)),
        ),
        (
            "x = bytearray(1 << 30)".into(),
            Box::new(|o| assert_eq!(limit(o), LimitKind::Memory)),
        ),
        (
            "chunks = []\nwhile True: chunks.append(bytearray(1 << 20))".into(),
            Box::new(|o| assert_eq!(limit(o), LimitKind::Memory)),
        ),
        (
            "import os; os.fork()".into(),
            Box::new(|o| expect_error(o, "AttributeError")),
        ),
        (
            "import subprocess; subprocess.run(['ls'])".into(),
            Box::new(|o| expect_error(o, "does not support processes")),
        ),
        (
            "import threading; threading.Thread(target=print).start()".into(),
            Box::new(|o| expect_error(o, "can't start new thread")),
        ),
        (
            "print(open('/etc/passwd').read())".into(),
            Box::new(|o| expect_error(o, "FileNotFoundError")),
        ),
        (
            format!("print(open({:?}).read())", canary.display().to_string()),
            Box::new(|o| expect_error(o, "FileNotFoundError")),
        ),
        (
            "print(open('../canary.txt').read())".into(),
            Box::new(|o| expect_error(o, "Error")),
        ),
        (
            format!(
                "import socket; socket.create_connection(('127.0.0.1', {}), timeout=2)",
                server.port()
            ),
            Box::new(|o| expect_error(o, "create_connection")),
        ),
        (
            "import os; print(dict(os.environ))".into(),
            Box::new(|o| {
                assert_eq!(o.result, Ok(0));
                assert_eq!(o.stdout.to_text(), "{}\n");
            }),
        ),
        (
            "import sys; sys.stdout.write('x' * (100 * 1024 * 1024)); print('done')".into(),
            Box::new(|o| {
                assert_eq!(o.result, Ok(0), "a big print is truncated, not fatal");
                assert_eq!(o.stdout.bytes.len(), 1024 * 1024);
                assert!(o.stdout.dropped > 99 * 1024 * 1024);
                assert!(o.stdout.to_text().ends_with("more bytes dropped]\n"));
            }),
        ),
        (
            "def f(n): return f(n + 1)\nf(0)".into(),
            Box::new(|o| expect_error(o, "RecursionError")),
        ),
        (
            "import ctypes".into(),
            Box::new(|o| expect_error(o, "ModuleNotFoundError: No module named 'ctypes'")),
        ),
        (
            "import no_such_module_here".into(),
            Box::new(|o| expect_error(o, "ModuleNotFoundError")),
        ),
    ];
    for (snippet, check) in cases {
        let out = run_on(on, Language::Python, &snippet, &short()).await;
        check(&out);
        let everything = format!(
            "{:?}{}{}",
            out.result,
            out.stdout.to_text(),
            out.stderr.to_text()
        );
        assert!(!everything.contains(CANARY), "{snippet}: the canary leaked");
        still_works_on(on, Language::Python).await;
    }
    assert_eq!(
        server.hits(),
        Vec::<String>::new(),
        "a connection reached the loopback server"
    );
}

/// What must be true of a hostile snippet's outcome.
type Check = Box<dyn Fn(&CallOutcome<i32>)>;

/// Exit 1 with `needle` in stderr: the program met a clean error.
fn expect_error(out: &CallOutcome<i32>, needle: &str) {
    assert_eq!(out.result, Ok(1), "stderr: {}", out.stderr.to_text());
    assert!(
        out.stderr.to_text().contains(needle),
        "expected {needle:?} in: {}",
        out.stderr.to_text()
    );
}

/// The JavaScript suite, on an engine that instantiates each run's
/// instance in the run and on one that makes instances ahead.
#[tokio::test]
pub(crate) async fn javascript_runs_and_hostile_javascript_is_contained() {
    for on in [engine(), ahead()] {
        javascript_on(on).await;
    }
}

async fn javascript_on(on: &Engine) {
    let js = |code: &'static str, options: CallOptions| async move {
        run_on(on, Language::Js, code, &options).await
    };
    let out = js(
        "const xs = [3, 1, 2].sort(); console.log(JSON.stringify({xs, n: xs.length}))",
        short(),
    )
    .await;
    assert_eq!(exit_code(&out), 0, "{}", out.stderr.to_text());
    assert_eq!(out.stdout.to_text(), "{\"xs\":[1,2,3],\"n\":3}\n");
    // The run starts from the runtime's snapshot, QuickJS's context already
    // made: making it takes about 4.6 million units of fuel, this whole run
    // about 160 000.
    assert!(
        out.usage.fuel_used < 500_000,
        "{} units of fuel: was the runtime pre-initialised?",
        out.usage.fuel_used
    );

    let out = js("throw new TypeError('nope')", short()).await;
    assert_eq!(exit_code(&out), 1);
    assert!(
        out.stderr.to_text().contains("Uncaught TypeError: nope"),
        "{}",
        out.stderr.to_text()
    );

    let out = js("for (;;) {}", short()).await;
    assert_eq!(limit(&out), LimitKind::Deadline);
    still_works_on(on, Language::Js).await;

    // Values print as node prints them; promise jobs run to the end, and
    // a rejection nobody handles fails the program as a throw does.
    let out = js(
        "console.log('n', 1, {a: [1, 'x'], 'b-c': null}, new Map([[1, 2]]));\n\
         (async () => { await null; console.error('later', [scriptArgs.length]) })()",
        short(),
    )
    .await;
    assert_eq!(exit_code(&out), 0, "{}", out.stderr.to_text());
    assert_eq!(
        out.stdout.to_text(),
        "n 1 { a: [ 1, 'x' ], 'b-c': null } Map(1) { 1 => 2 }\n"
    );
    assert_eq!(out.stderr.to_text(), "later [ 0 ]\n");
    let out = js("Promise.reject(new RangeError('late'))", short()).await;
    assert_eq!(exit_code(&out), 1);
    assert!(
        out.stderr
            .to_text()
            .starts_with("Uncaught RangeError: late"),
        "{}",
        out.stderr.to_text()
    );
    // Every run starts from the same snapshot, yet draws its own random
    // numbers, and its clock starts with it.
    let draw = "console.log(Math.random(), performance.now() < 5000)";
    let first = js(draw, short()).await.stdout.to_text();
    let second = js(draw, short()).await.stdout.to_text();
    assert!(first.ends_with(" true\n"), "{first}");
    assert_ne!(first, second);

    // Sloppy-mode scripts, as a browser runs them.
    let out = js("undeclared = 5; console.log(undeclared)", short()).await;
    assert_eq!(out.stdout.to_text(), "5\n", "{}", out.stderr.to_text());

    // Recursion without end is stopped, one way or the other, and the
    // runtime is as good as new afterwards.
    let out = js(
        "function down(n) { return down(n + 1) + 1 } down(0)",
        short(),
    )
    .await;
    match &out.result {
        Ok(code) => {
            assert_eq!(*code, 1);
            assert!(
                out.stderr.to_text().contains("RangeError"),
                "{}",
                out.stderr.to_text()
            );
        }
        Err(CallError::Trap(why)) => assert!(why.contains("stack overflow"), "{why}"),
        Err(other) => panic!("unexpected: {other:?}"),
    }
    still_works_on(on, Language::Js).await;

    for bomb in [
        "new ArrayBuffer(2 ** 30)",
        "const a = []; for (;;) a.push(new Uint8Array(1 << 24))",
    ] {
        let out = js(bomb, short()).await;
        assert_eq!(limit(&out), LimitKind::Memory, "{bomb}");
        still_works_on(on, Language::Js).await;
    }

    // No file, network or process API exists to misuse.
    for probe in [
        "require('fs')",
        "fetch('http://127.0.0.1/')",
        "process.exit(3)",
        "Deno.readFileSync('/etc/passwd')",
    ] {
        let out = js(probe, short()).await;
        assert_eq!(exit_code(&out), 1, "{probe}");
        still_works_on(on, Language::Js).await;
    }
}

/// A FIFO in a directory the operator granted blocks whoever opens it. The
/// run's file operations must then stay off the thread that keeps the
/// deadline (they do their blocking on tokio's pool), so the deadline still
/// stops the run. (Runs that see only warden's own directories do their
/// file operations on the calling thread.)
#[tokio::test]
async fn a_fifo_in_a_granted_dir_cannot_hold_the_run_past_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let mut options = with_limits(Grant::default(), |l| l.timeout = Duration::from_secs(2));
    options.grant.dirs.push(warden_core::DirGrant {
        host: dir.path().to_path_buf(),
        guest: "/data".into(),
        mode: warden_core::DirMode::ReadOnly,
    });
    let started = std::time::Instant::now();
    let out = python("print(open('/data/pipe').read())", &options).await;
    assert_eq!(limit(&out), LimitKind::Deadline, "{}", out.stderr.to_text());
    assert!(started.elapsed() < Duration::from_secs(20));
    // Let the pool's thread that is still waiting in open() go.
    drop(std::fs::OpenOptions::new().write(true).open(&fifo));
    still_works(Language::Python).await;
}

#[tokio::test]
pub(crate) async fn a_wasi_program_gets_args_stdin_and_the_scratch_dir_only() {
    let program = plugin(PROGRAM);
    let scratch = Scratch::new().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("canary.txt"), CANARY).unwrap();
    let mut options = short();
    options.grant.dirs.extend(scratch.grants());
    let canary = outside.path().join("canary.txt").display().to_string();
    let input = RunInput {
        args: [
            "program", "write", "note.txt", "hi", "read", &canary, "exit", "9",
        ]
        .map(String::from)
        .to_vec(),
        stdin: b"the input".to_vec(),
        cwd: Some("/work".into()),
        // Only the scratch dir: its file operations run on this thread.
        own_dirs_only: true,
    };
    let out = program.run_program(&options, &input).await;
    assert_eq!(out.result, Ok(9), "{}", out.stderr.to_text());
    let stdout = out.stdout.to_text();
    assert!(stdout.contains("stdin: \"the input\""), "{stdout}");
    assert!(stdout.contains("wrote note.txt"), "{stdout}");
    assert!(
        out.stderr.to_text().contains("cannot read"),
        "{}",
        out.stderr.to_text()
    );
    assert!(!stdout.contains(CANARY));
    assert_eq!(
        std::fs::read_to_string(scratch.path().join("note.txt")).unwrap(),
        "hi"
    );
}

#[tokio::test]
async fn a_program_and_a_tool_plugin_are_not_confused() {
    let out = plugin(PROGRAM).call_tool(&short(), "anything", "{}").await;
    assert!(
        matches!(&out.result, Err(CallError::Setup(m)) if m.contains("is a program")),
        "{:?}",
        out.result
    );
    let out = plugin(warden_tests::artifacts::HELLO)
        .run_program(&short(), &RunInput::default())
        .await;
    assert!(
        matches!(&out.result, Err(CallError::Setup(m)) if m.contains("is a tool plugin")),
        "{:?}",
        out.result
    );
}

#[tokio::test]
pub(crate) async fn the_exec_plugin_runs_code_under_its_callers_limits() {
    let o = short();
    let out = call(EXEC, "run_python", json!({"code": "import sys\nprint(open('in.txt').read() + sys.stdin.read())", "stdin": "!", "files": {"in.txt": "from a file"}}), &o).await;
    let v = ok_json(&out);
    assert_eq!(v["stdout"], "from a file!\n");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["limit"], serde_json::Value::Null);

    let out = call(
        EXEC,
        "run_js",
        json!({"code": "console.log(readStdin().toUpperCase())", "stdin": "shout"}),
        &o,
    )
    .await;
    assert_eq!(ok_json(&out)["stdout"], "SHOUT\n");

    // A runaway program is stopped within the calling tool's own deadline,
    // and comes back as data the caller can read.
    let o = with_limits(Grant::default(), |l| {
        l.timeout = Duration::from_millis(1500)
    });
    let out = call(EXEC, "run_python", json!({"code": "while True: pass"}), &o).await;
    let v = ok_json(&out);
    assert_eq!(v["limit"], "deadline");
    assert_eq!(v["exit_code"], serde_json::Value::Null);

    let out = call(
        EXEC,
        "run_python",
        json!({"code": "print(1)", "files": {"../escape.txt": "x"}}),
        &short(),
    )
    .await;
    assert!(
        matches!(tool_error(&out), warden_core::ToolError::InvalidArguments(m) if m.contains("without `..`"))
    );
}

/// A program a plugin runs through `exec` spends the plugin's fuel: it gets
/// no more than the plugin has left, and what it used is charged back, so
/// `--fuel` holds for the plugin and everything it starts (children used to
/// get the caller's full fuel each, and were never charged).
#[tokio::test]
async fn exec_children_spend_their_callers_fuel() {
    let fuel = 300_000_000;
    let o = with_limits(Grant::default(), |l| {
        l.fuel = fuel;
        l.timeout = Duration::from_secs(60);
    });
    let out = call(EXEC, "run_python", json!({"code": "while True: pass"}), &o).await;
    let v = ok_json(&out);
    assert_eq!(v["limit"], "fuel", "{v}");
    let child = v["fuel_used"].as_u64().unwrap();
    assert!(
        child > fuel / 2,
        "the child ran on the caller's fuel: {child}"
    );
    assert!(
        out.usage.fuel_used >= child,
        "the caller is charged for its child: {} < {child}",
        out.usage.fuel_used
    );
    assert!(out.usage.fuel_used <= fuel, "{}", out.usage.fuel_used);
}

/// A program's writes spend a disk quota: past it a write fails with an
/// ordinary error the program can handle, so untrusted code cannot fill the
/// host's disk (768 MiB went through once under a 256 MiB memory cap);
/// creating files is counted too. A create past the quota is ENOSPC; a
/// write through a stream is EIO, because wasi-libc reports every failed
/// stream write as EIO (`wasip2_handle_write_error`).
#[tokio::test]
async fn writes_past_the_disk_quota_fail_as_no_space() {
    let o = with_limits(Grant::default(), |l| {
        l.timeout = Duration::from_secs(30);
        l.disk_bytes = 4 * 1024 * 1024;
        l.new_files = 50;
    });
    let code = r#"
import errno
written = 0
try:
    with open("big.bin", "wb") as f:
        for _ in range(64):
            f.write(b"x" * 1024 * 1024)
            f.flush()
            written += 1
except OSError as e:
    print("stopped", written, errno.errorcode.get(e.errno, e.errno))
made = 0
try:
    for i in range(1000):
        open(f"f{i}.txt", "w").close()
        made += 1
except OSError as e:
    print("created", made, errno.errorcode.get(e.errno, e.errno))
"#;
    let out = python(code, &o).await;
    assert_eq!(exit_code(&out), 0, "{}", out.stderr.to_text());
    let stdout = out.stdout.to_text();
    let stopped: Vec<&str> = stdout.lines().collect();
    assert!(stopped[0].starts_with("stopped "), "{stdout}");
    let written: u32 = stopped[0].split(' ').nth(1).unwrap().parse().unwrap();
    assert!(written <= 4, "{stdout}");
    assert!(stopped[0].ends_with(" EIO"), "{stdout}");
    assert!(stopped[1].starts_with("created "), "{stdout}");
    assert!(stopped[1].ends_with("ENOSPC"), "{stdout}");
    still_works(Language::Python).await;
}

/// An engine that makes runtime instances ahead of their runs, as `warden
/// serve`'s does.
fn ahead() -> &'static Engine {
    static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::new(&EngineConfig {
            cache_dir: Some(warden_tests::artifacts::CACHE_DIR.into()),
            runtime_dir: Some(warden_tests::artifacts::RUNTIME_DIR.into()),
            warm_instances: 2,
            ..EngineConfig::default()
        })
        .expect("engine")
    })
}

/// One run on [`ahead`]'s engine, in a fresh scratch dir.
async fn run_ahead(
    language: Language,
    code: &str,
    stdin: &str,
    args: &[&str],
    options: &CallOptions,
) -> CallOutcome<i32> {
    let scratch = Scratch::new().unwrap();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    ahead()
        .run_code(language, code, &scratch, stdin.into(), &args, options)
        .await
        .expect("the runtime is there")
}

/// Whether a run took an instance made ahead (it spent no time
/// instantiating).
fn made_ahead(out: &CallOutcome<i32>) -> bool {
    out.usage.phases.instantiate == Duration::ZERO
}

/// Runs `step` (which checks its own outcomes) until one of its runs took
/// an instance made ahead: the pool's thread makes them while runs go on,
/// so the first runs of a language may not find one.
async fn until_made_ahead<F, Fut>(mut step: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if step().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no run ever took an instance made ahead");
}

#[tokio::test]
async fn a_run_on_an_instance_made_ahead_sees_only_its_own_input() {
    let cases = [
        (
            Language::Python,
            "import builtins, sys\nbuiltins.LEAK = 'CANARY'\nopen('left.txt', 'w').write(sys.stdin.read())",
            "import builtins, os, sys\nprint(hasattr(builtins, 'LEAK'), os.listdir('.'), sys.stdin.read(), sys.argv[1:], os.getcwd(), dict(os.environ))",
            "False [] mine ['b'] /work {}\n",
        ),
        (
            Language::Js,
            "globalThis.LEAK = readStdin(); console.log(LEAK)",
            "console.log(typeof LEAK, readStdin(), scriptArgs)",
            "undefined mine [ 'b' ]\n",
        ),
    ];
    for (language, taint, check, expected) in cases {
        until_made_ahead(|| async move {
            let tainted = run_ahead(language, taint, CANARY, &["a"], &short()).await;
            assert_eq!(tainted.result, Ok(0), "{}", tainted.stderr.to_text());
            let out = run_ahead(language, check, "mine", &["b"], &short()).await;
            assert_eq!(out.result, Ok(0), "{}", out.stderr.to_text());
            assert_eq!(out.stdout.to_text(), expected, "{language}");
            made_ahead(&out)
        })
        .await;
    }
}

#[tokio::test]
async fn a_run_on_an_instance_made_ahead_keeps_every_limit() {
    for language in [Language::Python, Language::Js] {
        let spin = match language {
            Language::Python => "while True: pass",
            Language::Js => "for (;;) {}",
        };
        // Fuel, counted from the run's own budget.
        let fuel = 5_000_000;
        let options = with_limits(Grant::default(), |l| {
            l.fuel = fuel;
            l.timeout = Duration::from_secs(30);
        });
        until_made_ahead(|| async {
            let out = run_ahead(language, spin, "", &[], &options).await;
            assert_eq!(limit(&out), LimitKind::Fuel, "{language}");
            assert!(out.usage.fuel_used <= fuel, "{}", out.usage.fuel_used);
            made_ahead(&out)
        })
        .await;
        // The deadline, counted from the run's start.
        let options = with_limits(Grant::default(), |l| l.timeout = Duration::from_millis(500));
        until_made_ahead(|| async {
            let out = run_ahead(language, spin, "", &[], &options).await;
            assert_eq!(limit(&out), LimitKind::Deadline, "{language}");
            assert!(out.usage.duration < Duration::from_secs(5));
            made_ahead(&out)
        })
        .await;
    }
}

#[tokio::test]
async fn an_instance_made_ahead_brings_its_memory_into_the_runs_limit() {
    // The runtime's own memory counts: 48 MiB more does not fit in 64.
    let options = with_limits(Grant::default(), |l| {
        l.memory_bytes = 64 << 20;
        l.timeout = Duration::from_secs(10);
    });
    until_made_ahead(|| async {
        let out = run_ahead(
            Language::Python,
            "x = bytearray(48 << 20)\nprint('allocated')",
            "",
            &[],
            &options,
        )
        .await;
        assert_eq!(limit(&out), LimitKind::Memory, "{}", out.stdout.to_text());
        made_ahead(&out)
    })
    .await;
    // A limit below what the runtime takes to start is refused as it is
    // without instances made ahead (one would run `print`).
    let tiny = with_limits(Grant::default(), |l| l.memory_bytes = 4 << 20);
    for _ in 0..3 {
        let out = run_ahead(Language::Python, "print(1)", "", &[], &tiny).await;
        assert_eq!(limit(&out), LimitKind::Memory, "{}", out.stdout.to_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    still_works(Language::Python).await;
}
