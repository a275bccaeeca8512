//! JavaScript for `warden exec js`: the boa engine as a WASI program.
//!
//! `js SCRIPT [ARGS...]` runs SCRIPT (or stdin when there is none) with
//! `console` (log/info/debug to stdout, warn/error to stderr), a global
//! `readStdin()` that returns the program's stdin as a string, and
//! `scriptArgs`. An uncaught exception prints `Uncaught …` on stderr and the
//! program exits with 1. There is no network, no file API and no process API:
//! what the script can reach is what warden's sandbox grants the program,
//! which by default is nothing.

use std::io::Read;

use boa_engine::property::Attribute;
use boa_engine::{Context, JsResult, JsString, JsValue, NativeFunction, Source, js_string};
use boa_runtime::Console;
use boa_runtime::console::DefaultLogger;

fn main() {
    let mut args = std::env::args().skip(1);
    let (name, source) = match args.next() {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(source) => (path, source),
            Err(e) => exit_with(2, &format!("js: cannot read {path}: {e}")),
        },
        None => ("<stdin>".to_string(), read_stdin()),
    };
    let script_args: Vec<String> = args.collect();

    let mut context = Context::default();
    if let Err(e) = setup(&mut context, &script_args) {
        exit_with(2, &format!("js: cannot set up the runtime: {e}"));
    }
    let result =
        context.eval(Source::from_bytes(source.as_bytes()).with_path(std::path::Path::new(&name)));
    let jobs = context.run_jobs();
    if let Err(e) = result.and(jobs) {
        exit_with(1, &format!("Uncaught {e}"));
    }
}

fn setup(context: &mut Context, script_args: &[String]) -> JsResult<()> {
    Console::register_with_logger(DefaultLogger, context)?;
    context.register_global_builtin_callable(
        js_string!("readStdin"),
        0,
        NativeFunction::from_fn_ptr(|_, _, _| {
            Ok(JsValue::from(JsString::from(read_stdin().as_str())))
        }),
    )?;
    let list = boa_engine::object::builtins::JsArray::from_iter(
        script_args
            .iter()
            .map(|a| JsValue::from(JsString::from(a.as_str()))),
        context,
    );
    context.register_global_property(js_string!("scriptArgs"), list, Attribute::all())?;
    Ok(())
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
    use std::io::Write;
    let _ = std::io::stdout().flush();
    eprintln!("{message}");
    #[cfg(target_arch = "wasm32")]
    wasip2::cli::exit::exit_with_code(code);
    std::process::exit(i32::from(code))
}
