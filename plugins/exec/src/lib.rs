//! The `exec` tool plugin: `run_python` and `run_js`, for roles and MCP
//! clients that need to run code an LLM wrote.
//!
//! ```text
//! warden tool call target/plugins/exec.wasm run_python \
//!     --args '{"code":"print(sum(range(10)))"}'
//! ```
//!
//! The plugin needs no capability of its own: the host runs each program in
//! a fresh sandbox with only a scratch directory, under this call's limits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use warden_sdk::exec::{self, File, RunResult};
use warden_sdk::{JsonSchema, ToolError, Toolbox};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunArgs {
    /// The program's source code.
    pub code: String,
    /// Text fed to the program's standard input.
    #[serde(default)]
    pub stdin: String,
    /// Files to create under /work (the working directory) first: relative
    /// path to text contents.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

#[derive(Serialize)]
pub struct RunOutput {
    pub stdout: String,
    pub stderr: String,
    /// None when a limit or a trap stopped the program.
    pub exit_code: Option<i32>,
    /// fuel, deadline, memory or output, when a limit stopped the program.
    pub limit: Option<String>,
    pub trap: Option<String>,
    pub duration_ms: u64,
    pub fuel_used: u64,
}

pub fn toolbox() -> Toolbox {
    Toolbox::new()
        .tool(
            "run_python",
            "Run Python 3 code (standard library, no network, files only under /work) and return its output and exit code",
            |args: RunArgs| run("python", args),
        )
        .tool(
            "run_js",
            "Run JavaScript (ES2023, console.log to stdout, readStdin(); no network, no files) and return its output and exit code",
            |args: RunArgs| run("js", args),
        )
}

warden_sdk::export!(toolbox);
warden_sdk::embed_manifest!("../warden.toml");

fn run(language: &str, args: RunArgs) -> Result<RunOutput, ToolError> {
    let files: Vec<File> = args
        .files
        .into_iter()
        .map(|(path, contents)| File {
            path,
            contents: contents.into_bytes(),
        })
        .collect();
    let result: RunResult = exec::run(language, &args.code, args.stdin.as_bytes(), &files)?;
    Ok(RunOutput {
        stdout: result.stdout,
        stderr: result.stderr,
        exit_code: result.exit_code,
        limit: result.limit,
        trap: result.trap,
        duration_ms: result.duration_ms,
        fuel_used: result.fuel_used,
    })
}
