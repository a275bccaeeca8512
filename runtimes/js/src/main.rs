//! JavaScript for `warden exec js`: QuickJS (quickjs-ng, through rquickjs)
//! as a WASI program.
//!
//! `js SCRIPT [ARGS...]` runs SCRIPT (or stdin when there is none) as a
//! classic script with `console` (log/info/debug to stdout, warn/error/trace
//! to stderr), a global `readStdin()` that returns the program's stdin as a
//! string, and `scriptArgs`. Promise jobs run to the end. An uncaught
//! exception, or a promise rejected with nobody to handle it, prints
//! `Uncaught …` on stderr and the program exits with 1. There is no network,
//! no file API and no process API: what the script can reach is what
//! warden's sandbox grants the program, which by default is nothing.
//!
//! Recursion without end is stopped by wasmtime's limit on the wasm stack,
//! a trap the host reports as a stack overflow: QuickJS's own check does
//! not work on wasm, where its C stack lives in linear memory (build.rs
//! makes that 4 MiB, so that the wasm stack is always the first to run
//! out).

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::time::Instant;

use rquickjs::context::EvalOptions;
use rquickjs::{Coerced, Context, Ctx, Function, Object, Runtime, Value};

/// The script that gives the global scope its console; run before the
/// user's code, with the native writer as `__warden_write`.
const PRELUDE: &str = include_str!("prelude.js");

/// What a run may allocate before QuickJS's first collection; after that
/// its own rule applies (the next one at half as much again as is live).
const GC_HEADROOM_BYTES: usize = 4 * 1024 * 1024;

/// warden pre-initialises a runtime that exports `wizer-initialize`: it
/// calls it once, then snapshots the instance, so every run starts with
/// QuickJS and the prelude already set up.
// The export's glue is wit-bindgen's generated (unsafe) ABI code.
#[allow(unsafe_code)]
mod snapshot {
    wit_bindgen::generate!({
        inline: "package warden:js-runtime; world snapshot { export wizer-initialize: func(); }",
    });

    struct Snapshot;

    impl Guest for Snapshot {
        fn wizer_initialize() {
            super::ENGINE.with(|_| ());
        }
    }

    export!(Snapshot);
}

/// QuickJS with its context and the prelude: made once, in the snapshot
/// when there is one, else at the start of the run.
struct Engine {
    runtime: Runtime,
    context: Context,
}

thread_local! {
    static ENGINE: Engine = Engine::new();
    /// Promises rejected with no handler (yet) in this run.
    static UNHANDLED: RefCell<Unhandled> = RefCell::default();
}

impl Engine {
    fn new() -> Engine {
        let runtime = Runtime::new().unwrap_or_else(|e| exit_with(2, &format!("js: {e}")));
        runtime.set_host_promise_rejection_tracker(Some(Box::new(
            |_ctx, _promise, reason, handled| {
                UNHANDLED.with_borrow_mut(|unhandled| {
                    if handled {
                        unhandled.count = unhandled.count.saturating_sub(1);
                    } else {
                        unhandled.count += 1;
                        unhandled.first.get_or_insert_with(|| describe(&reason));
                    }
                })
            },
        )));
        let context = Context::full(&runtime).unwrap_or_else(|e| exit_with(2, &format!("js: {e}")));
        context.with(|ctx| {
            if let Err(e) = prelude(&ctx) {
                exit_with(
                    2,
                    &format!("js: cannot set up the runtime: {}", caught(&ctx, e)),
                );
            }
        });
        // Collect what setting up left, then let a run allocate a few MiB
        // before its first collection: a short script should not pay for
        // walking the whole set of built-in objects.
        runtime.run_gc();
        let used = usize::try_from(runtime.memory_usage().malloc_size).unwrap_or(0);
        runtime.set_gc_threshold(used + GC_HEADROOM_BYTES);
        Engine { runtime, context }
    }
}

fn main() {
    let started = Instant::now();
    let mut args = std::env::args().skip(1);
    let script = args.next();
    let script_args: Vec<String> = args.collect();
    ENGINE.with(|engine| run(engine, started, script, &script_args));
}

fn run(engine: &Engine, started: Instant, script: Option<String>, script_args: &[String]) {
    let failure = engine.context.with(|ctx| {
        if let Err(e) = this_run(&ctx, started, script_args) {
            exit_with(
                2,
                &format!("js: cannot set up the runtime: {}", caught(&ctx, e)),
            );
        }
        let (name, source) = match &script {
            Some(path) => match std::fs::read(path) {
                Ok(source) => (path.clone(), source),
                Err(e) => exit_with(2, &format!("js: cannot read {path}: {e}")),
            },
            None => ("<stdin>".to_string(), read_stdin().into_bytes()),
        };
        // Classic scripts, not strict ones: what a browser or node runs.
        let mut options = EvalOptions::default();
        options.strict = false;
        options.filename = Some(name);
        ctx.eval_with_options::<(), _>(source, options)
            .err()
            .map(|e| caught(&ctx, e))
    });
    let failure = failure.or_else(|| run_jobs(&engine.runtime));
    let failure = failure.or_else(|| {
        UNHANDLED.with_borrow(|unhandled| {
            (unhandled.count > 0).then(|| unhandled.first.clone().unwrap_or_default())
        })
    });
    if let Some(message) = failure {
        exit_with(1, &format!("Uncaught {message}"));
    }
    let _ = std::io::stdout().flush();
}

/// Promises rejected with no handler (yet): how many, and what the first
/// was rejected with.
#[derive(Default)]
struct Unhandled {
    count: usize,
    first: Option<String>,
}

/// The globals every run shares: the console (the prelude) and
/// `readStdin()`.
fn prelude(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    let globals = ctx.globals();
    globals.set(
        "__warden_write",
        Function::new(ctx.clone(), |fd: i32, text: String| write(fd, &text))?,
    )?;
    globals.set("readStdin", Function::new(ctx.clone(), read_stdin)?)?;
    ctx.eval::<(), _>(PRELUDE)
}

/// What differs from run to run, so cannot come from the snapshot:
/// `scriptArgs`, `Math.random`'s seed, `performance.now()`'s origin.
fn this_run(ctx: &Ctx<'_>, started: Instant, script_args: &[String]) -> rquickjs::Result<()> {
    let globals = ctx.globals();
    globals.set("scriptArgs", script_args.to_vec())?;
    let math: Object = globals.get("Math")?;
    let random = Random::seeded();
    math.set(
        "random",
        Function::new(ctx.clone(), move || random.next())?.with_name("random")?,
    )?;
    let performance = Object::new(ctx.clone())?;
    performance.set(
        "now",
        Function::new(ctx.clone(), move || started.elapsed().as_secs_f64() * 1e3)?
            .with_name("now")?,
    )?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3);
    performance.set("timeOrigin", now_ms)?;
    globals.set("performance", performance)?;
    Ok(())
}

/// `Math.random()`: xorshift64* from a seed the host gives each run.
struct Random(Cell<u64>);

impl Random {
    fn seeded() -> Random {
        #[cfg(target_arch = "wasm32")]
        let seed = wasip2::random::random::get_random_u64();
        #[cfg(not(target_arch = "wasm32"))]
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Random(Cell::new(seed | 1))
    }

    /// A double in [0, 1) from the top 53 bits.
    fn next(&self) -> f64 {
        let mut x = self.0.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs the promise jobs until none is left; what the first failing one
/// threw, if any.
fn run_jobs(runtime: &Runtime) -> Option<String> {
    loop {
        match runtime.execute_pending_job() {
            Ok(true) => continue,
            Ok(false) => return None,
            Err(job) => return job.0.with(|ctx| Some(describe(&ctx.catch()))),
        }
    }
}

/// What an error from rquickjs says: the exception it stands for, or its
/// own message.
fn caught(ctx: &Ctx<'_>, error: rquickjs::Error) -> String {
    match error {
        rquickjs::Error::Exception => describe(&ctx.catch()),
        other => other.to_string(),
    }
}

/// A thrown value as `Name: message` with its stack, or as the string it
/// converts to; never throws itself.
fn describe(value: &Value<'_>) -> String {
    if let Some(text) = value.as_object().and_then(describe_error) {
        return text;
    }
    match value.get::<Coerced<String>>() {
        Ok(text) => text.0,
        Err(_) => "exception (which cannot be printed)".to_string(),
    }
}

fn describe_error(object: &Object<'_>) -> Option<String> {
    let message: Option<Coerced<String>> = object.get("message").ok()?;
    let name: Option<Coerced<String>> = object.get("name").ok()?;
    let mut text = match (name, message) {
        (Some(name), Some(message)) if message.0.is_empty() => name.0,
        (Some(name), Some(message)) => format!("{}: {}", name.0, message.0),
        (None, Some(message)) => message.0,
        (_, None) => return None,
    };
    if let Ok(Some(stack)) = object.get::<_, Option<String>>("stack") {
        let stack = stack.trim_end();
        if !stack.is_empty() {
            text.push('\n');
            text.push_str(stack);
        }
    }
    Some(text)
}

/// `console`'s output: fd 1 is stdout, anything else stderr.
fn write(fd: i32, text: &str) {
    // Nothing to tell the script when its output is gone.
    let _ = if fd == 1 {
        std::io::stdout().write_all(text.as_bytes())
    } else {
        std::io::stderr().write_all(text.as_bytes())
    };
}

fn read_stdin() -> String {
    let mut input = String::new();
    // An unreadable stdin reads as empty: there is nothing better to offer.
    let _ = std::io::stdin().read_to_string(&mut input);
    input
}

/// Exits with `code`, flushing what was printed; on wasm through
/// `wasi:cli/exit.exit-with-code` so codes other than 0 and 1 survive.
fn exit_with(code: u8, message: &str) -> ! {
    let _ = std::io::stdout().flush();
    eprintln!("{message}");
    #[cfg(target_arch = "wasm32")]
    wasip2::cli::exit::exit_with_code(code);
    std::process::exit(i32::from(code))
}
