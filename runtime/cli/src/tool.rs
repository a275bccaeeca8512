//! `warden tool list` and `warden tool call`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use warden_core::grant::{DirMode, Grant};
use warden_core::manifest::Manifest;
use warden_core::{CallOutcome, Engine};

use crate::exit::{self, Failure};
use crate::sandbox_args::SandboxArgs;
use crate::terminal;

#[derive(Subcommand)]
pub enum ToolCommand {
    /// Print a plugin's tools (name, description, input schema) as JSON.
    List {
        plugin: PathBuf,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
    /// Call one tool in a fresh sandbox and print its JSON result.
    Call {
        plugin: PathBuf,
        tool: String,
        /// The tool's arguments, a JSON object.
        #[arg(long, value_name = "JSON", default_value = "{}")]
        args: String,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
}

pub async fn run(
    cmd: ToolCommand,
    engine: &Engine,
    data: Option<&Path>,
) -> Result<ExitCode, Failure> {
    match cmd {
        ToolCommand::List { plugin, sandbox } => {
            let plugin = engine.load_file(&crate::oci::local(&plugin, data).await?)?;
            let options = sandbox.call_options(&plugin)?;
            let outcome = plugin.list_tools(&options).await;
            let tools = finish(plugin.name(), outcome)?;
            print_json(&serde_json::to_value(tools).unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        ToolCommand::Call {
            plugin,
            tool,
            args,
            sandbox,
        } => {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&args) {
                return Err(Failure::bad_input(format!(
                    "--args is not valid JSON: {e}; pass an object such as '{{\"path\":\"/data/notes.txt\"}}'"
                )));
            }
            let plugin = engine.load_file(&crate::oci::local(&plugin, data).await?)?;
            let options = sandbox.call_options(&plugin)?;
            let outcome = plugin.call_tool(&options, &tool, &args).await;
            // A tool error (not a limit or a trap): the guest ran and said
            // it failed, perhaps on a file it was not given.
            let tool_failed = matches!(outcome.result, Ok(Err(_)));
            if tool_failed {
                for hint in ungranted_dirs(plugin.manifest(), &options.grant) {
                    eprintln!("warden: hint: {hint}");
                }
            }
            match finish(plugin.name(), outcome)? {
                Ok(json) => {
                    println!("{}", terminal::escape_json(&json));
                    Ok(ExitCode::SUCCESS)
                }
                Err(tool_error) => {
                    let body = serde_json::json!({ "error": tool_error }).to_string();
                    println!("{}", terminal::escape_json(&body));
                    Ok(ExitCode::from(exit::PLUGIN_ERROR))
                }
            }
        }
    }
}

/// The directories a plugin's manifest declares that the operator did not
/// grant, each with the flag that grants it: the likely reason a call that
/// needed files failed (the guest only sees "no such file").
fn ungranted_dirs(manifest: Option<&Manifest>, grant: &Grant) -> Vec<String> {
    let Some(manifest) = manifest else {
        return Vec::new();
    };
    manifest
        .capabilities
        .fs
        .iter()
        .filter(|fs| fs.path != "*" && !grant.dirs.iter().any(|d| d.guest == fs.path))
        .map(|fs| {
            let flag = match fs.mode {
                DirMode::ReadWrite => "--dir-rw",
                DirMode::ReadOnly => "--dir",
            };
            let hint = format!(
                "{} is declared by {}'s manifest ({}) but not granted: pass {flag} HOST::{}",
                fs.path, manifest.name, fs.reason, fs.path
            );
            terminal::escape(&hint).into_owned()
        })
        .collect()
}

/// Passes on what the guest printed and what the manifest narrowed, then the
/// result or the failure with its exit code.
pub fn finish<T>(plugin: &str, outcome: CallOutcome<T>) -> Result<T, Failure> {
    for note in &outcome.narrowed {
        eprintln!("warden: warning: {note}");
    }
    for (stream, output) in [("stdout", &outcome.stdout), ("stderr", &outcome.stderr)] {
        if output.bytes.is_empty() && !output.truncated() {
            continue;
        }
        for line in output.to_text().lines() {
            eprintln!("[{plugin} {stream}] {}", terminal::escape(line));
        }
    }
    outcome.result.map_err(Failure::from)
}

/// Pretty JSON of what a guest described, safe on a terminal.
pub fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    println!("{}", terminal::escape_json(&text));
}
