//! `warden exec`: run untrusted Python, JavaScript or any WASI program in a
//! fresh sandbox, with a scratch directory at /work and nothing else unless
//! granted.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use warden_core::exec::{ExecReport, check_keep_dir, run_wasi_program};
use warden_core::{CallOutcome, Engine, Language};

use crate::exit::{self, Failure};
use crate::sandbox_args::SandboxArgs;
use crate::terminal;

#[derive(Subcommand)]
pub enum ExecCommand {
    /// Run Python (CPython with its standard library) from FILE, or - for stdin.
    Python(CodeArgs),
    /// Run JavaScript (QuickJS) from FILE, or - for stdin.
    Js(CodeArgs),
    /// Run a WASI program: any component exporting wasi:cli/run.
    Wasm(WasmArgs),
}

#[derive(Args)]
pub struct CodeArgs {
    /// The code: a file, or - to read it from stdin.
    source: String,
    #[command(flatten)]
    run: RunArgs,
    /// Arguments for the script (after --).
    #[arg(last = true)]
    args: Vec<String>,
}

#[derive(Args)]
pub struct WasmArgs {
    program: PathBuf,
    #[command(flatten)]
    run: RunArgs,
    /// Arguments for the program (after --).
    #[arg(last = true)]
    args: Vec<String>,
}

#[derive(Args)]
pub struct RunArgs {
    /// A file to feed the program as its stdin (default: empty).
    #[arg(long, value_name = "FILE")]
    stdin: Option<PathBuf>,
    /// Copy this directory into the scratch dir the program sees at /work.
    #[arg(long, value_name = "DIR")]
    files: Option<PathBuf>,
    /// Keep the scratch dir afterwards by copying it to DIR.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// Print {"stdout","stderr","exit_code","duration_ms","fuel_used","limit"}
    /// instead of passing the output through.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

impl ExecCommand {
    /// Whether the run's engine meters fuel (not with `--fuel none`).
    pub fn meters_fuel(&self) -> bool {
        match self {
            ExecCommand::Python(code) | ExecCommand::Js(code) => &code.run,
            ExecCommand::Wasm(wasm) => &wasm.run,
        }
        .sandbox
        .meters_fuel()
    }
}

pub async fn run(cmd: ExecCommand, engine: &Engine) -> Result<ExitCode, Failure> {
    let (program, run_args, args) = match cmd {
        ExecCommand::Python(code) => (
            Program::Code(Language::Python, code.source),
            code.run,
            code.args,
        ),
        ExecCommand::Js(code) => (
            Program::Code(Language::Js, code.source),
            code.run,
            code.args,
        ),
        ExecCommand::Wasm(wasm) => (Program::Wasm(wasm.program), wasm.run, wasm.args),
    };
    let stdin = match &run_args.stdin {
        Some(path) => std::fs::read(path)
            .map_err(|e| Failure::bad_input(format!("--stdin {}: {e}", path.display())))?,
        None => Vec::new(),
    };
    // Refuse a --keep that would overwrite anything before the code runs.
    if let Some(dir) = &run_args.keep {
        check_keep_dir(dir).map_err(Failure::bad_input)?;
    }
    let scratch = engine.scratch().map_err(Failure::internal)?;
    if let Some(dir) = &run_args.files {
        if !dir.is_dir() {
            return Err(Failure::bad_input(format!(
                "--files {}: not a directory",
                dir.display()
            )));
        }
        let skipped = scratch
            .copy_from(dir)
            .map_err(|e| Failure::bad_input(e.to_string()))?;
        for path in skipped {
            eprintln!(
                "warden: warning: --files: skipped {} (not a regular file or directory)",
                path.display()
            );
        }
    }

    let outcome = match program {
        Program::Code(language, source) => {
            let code = read_source(&source)?;
            let runtime = engine
                .runtime(language)
                .map_err(|e| Failure::bad_input(e.to_string()))?;
            let options = run_args.sandbox.runtime_options(&runtime)?;
            engine
                .run_code(language, &code, &scratch, stdin, &args, &options)
                .await
                .map_err(|e| Failure::bad_input(e.to_string()))?
        }
        Program::Wasm(path) => {
            let program = engine.load_file(&path)?;
            let options = run_args.sandbox.call_options(&program)?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "program".into());
            run_wasi_program(&program, &name, &scratch, stdin, &args, &options).await
        }
    };

    if let Some(dir) = &run_args.keep {
        let kept = scratch.keep_to(dir).map_err(Failure::bad_input)?;
        eprintln!(
            "warden: kept {} file(s) in {}",
            kept.files.len(),
            dir.display()
        );
        for (path, why) in &kept.skipped {
            eprintln!(
                "warden: --keep left out {}: {why}",
                terminal::escape(&path.to_string_lossy())
            );
        }
    }
    for note in &outcome.narrowed {
        eprintln!("warden: warning: {note}");
    }
    if run_args.json {
        print_json(&outcome)?;
        return Ok(ExitCode::SUCCESS);
    }
    pass_through(outcome)
}

enum Program {
    Code(Language, String),
    Wasm(PathBuf),
}

fn read_source(source: &str) -> Result<String, Failure> {
    if source == "-" {
        let mut code = String::new();
        std::io::stdin()
            .read_to_string(&mut code)
            .map_err(|e| Failure::bad_input(format!("cannot read the code from stdin: {e}")))?;
        return Ok(code);
    }
    std::fs::read_to_string(Path::new(source))
        .map_err(|e| Failure::bad_input(format!("cannot read {source}: {e}")))
}

fn print_json(outcome: &CallOutcome<i32>) -> Result<(), Failure> {
    let report = ExecReport::new(outcome).map_err(Failure::bad_input)?;
    let body = serde_json::to_string(&report).map_err(Failure::internal)?;
    println!("{body}");
    Ok(())
}

/// The program's output goes where it would have gone; warden exits with
/// the program's exit code, 3 for a limit, 4 for a trap.
fn pass_through(outcome: CallOutcome<i32>) -> Result<ExitCode, Failure> {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&outcome.stdout.bytes);
    if outcome.stdout.truncated() {
        let _ = writeln!(
            out,
            "\n[warden: stdout truncated, {} more bytes dropped]",
            outcome.stdout.dropped
        );
    }
    let _ = out.flush();
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(&outcome.stderr.bytes);
    if outcome.stderr.truncated() {
        let _ = writeln!(
            err,
            "\n[warden: stderr truncated, {} more bytes dropped]",
            outcome.stderr.dropped
        );
    }
    let _ = err.flush();
    match outcome.result {
        Ok(code) => Ok(ExitCode::from(
            u8::try_from(code).unwrap_or(exit::PLUGIN_ERROR),
        )),
        Err(e) => Err(Failure::from(e)),
    }
}
