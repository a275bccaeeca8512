//! `warden plugin inspect` and `warden plugin pack`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use warden_core::manifest::{self, Manifest};
use warden_core::{CallOptions, LoadError, ToolSpec};

use crate::exit::Failure;
use crate::terminal;
use crate::tool::{finish, print_json};

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Show a plugin's manifest, requested capabilities and tools. Runs no
    /// plugin code but `list-tools`, in a sandbox with no grants.
    Inspect {
        plugin: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Embed (or replace) a manifest in a component, e.g. one built by
    /// componentize-py or any tool other than the Rust SDK.
    Pack {
        plugin: PathBuf,
        /// The manifest (TOML).
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        /// Where to write the packed component.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
}

const NO_MANIFEST_WARNING: &str = "this component has no manifest, so it declares no capability ceiling: the operator's grant alone decides what it can reach. Give it one with `warden plugin pack --manifest warden.toml`.";

pub async fn run(cmd: PluginCommand, dirs: &crate::Dirs) -> Result<ExitCode, Failure> {
    match cmd {
        PluginCommand::Inspect { plugin, json } => inspect(&plugin, json, dirs).await,
        PluginCommand::Pack {
            plugin,
            manifest,
            output,
        } => pack(&plugin, &manifest, &output),
    }
}

async fn inspect(path: &Path, json: bool, dirs: &crate::Dirs) -> Result<ExitCode, Failure> {
    let bytes = std::fs::read(path).map_err(|e| LoadError::Read {
        path: path.to_path_buf(),
        error: e.to_string(),
    })?;
    let engine = dirs.engine(crate::ONE_SHOT_SLOTS)?;
    let plugin = engine.load_bytes(&bytes, path)?;
    let limits = plugin
        .limits(Default::default(), Default::default())
        .map_err(|e| Failure::bad_input(e.to_string()))?;
    let options = CallOptions {
        limits,
        ..CallOptions::default()
    };
    let tools = finish(plugin.name(), plugin.list_tools(&options).await)?;
    let manifest = plugin.manifest();
    let warnings: Vec<&str> = if manifest.is_none() {
        vec![NO_MANIFEST_WARNING]
    } else {
        vec![]
    };

    if json {
        print_json(&serde_json::json!({
            "file": path,
            "size": bytes.len(),
            "sha256": plugin.sha256(),
            "name": plugin.name(),
            "manifest": manifest,
            "warnings": warnings,
            "tools": tools,
        }));
    } else {
        print_text(
            path,
            bytes.len(),
            plugin.sha256(),
            plugin.name(),
            manifest,
            &tools,
        );
    }
    for warning in warnings {
        eprintln!("warden: warning: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(
    path: &Path,
    size: usize,
    sha256: &str,
    name: &str,
    manifest: Option<&Manifest>,
    tools: &[ToolSpec],
) {
    // The manifest and the tools are the plugin's words: escaped for the
    // terminal once, at the end.
    let mut out = String::new();
    macro_rules! outln {
        ($out:ident, $($arg:tt)*) => {{
            $out.push_str(&format!($($arg)*));
            $out.push('\n');
        }};
    }
    match manifest {
        Some(m) => {
            outln!(
                out,
                "{} {} ({}): {}",
                m.name,
                m.version,
                m.kind,
                m.description
            );
        }
        None => outln!(out, "{name} (no manifest)"),
    }
    outln!(out, "file:    {} ({size} bytes)", path.display());
    outln!(out, "sha256:  {sha256}");
    if let Some(m) = manifest {
        outln!(out, "requests:");
        if m.capabilities.fs.is_empty()
            && m.capabilities.http.is_empty()
            && m.capabilities.llm.is_empty()
            && m.capabilities.memory.is_empty()
        {
            outln!(
                out,
                "  nothing (no files, no network, no models, no memory)"
            );
        }
        for fs in &m.capabilities.fs {
            outln!(out, "  fs   {} ({}): {}", fs.path, fs.mode, fs.reason);
        }
        for http in &m.capabilities.http {
            outln!(out, "  http {}: {}", http.host, http.reason);
        }
        for llm in &m.capabilities.llm {
            outln!(out, "  llm  {}: {}", llm.model, llm.reason);
        }
        for memory in &m.capabilities.memory {
            outln!(
                out,
                "  memory {} ({}): {}",
                memory.namespace,
                memory.mode,
                memory.reason
            );
        }
        let limits = toml_line(&m.limits);
        if !limits.is_empty() {
            outln!(out, "default limits: {limits}");
        }
    }
    outln!(out, "tools:");
    for tool in tools {
        outln!(out, "  {}: {}", tool.name, tool.description);
        if let Some(props) = tool
            .input_schema
            .get("properties")
            .and_then(|p| p.as_object())
        {
            let required: Vec<&str> = tool
                .input_schema
                .get("required")
                .and_then(|r| r.as_array())
                .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            for (arg, schema) in props {
                let ty = schema_type(&tool.input_schema, schema);
                let req = if required.contains(&arg.as_str()) {
                    ", required"
                } else {
                    ""
                };
                let desc = schema
                    .get("description")
                    .and_then(|d| d.as_str())
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                outln!(out, "    {arg} ({ty}{req}){desc}");
            }
        }
    }
    print!("{}", terminal::escape(&out));
}

/// A short name for an argument's type: `string`, `integer or null`, or the
/// values of an enum (following a `$ref` into the tool's own schema).
fn schema_type(root: &serde_json::Value, schema: &serde_json::Value) -> String {
    use serde_json::Value;
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer))
            .unwrap_or(schema),
        None => schema,
    };
    let consts: Vec<String> = match (schema.get("enum"), schema.get("oneOf")) {
        (Some(Value::Array(values)), _) => values.iter().map(Value::to_string).collect(),
        // schemars writes documented variants as `const`, others as `enum`.
        (_, Some(Value::Array(variants))) => variants
            .iter()
            .flat_map(|v| match (v.get("const"), v.get("enum")) {
                (Some(c), _) => vec![c.to_string()],
                (_, Some(Value::Array(values))) => values.iter().map(Value::to_string).collect(),
                _ => vec![],
            })
            .collect(),
        _ => vec![],
    };
    if !consts.is_empty() {
        return consts.join(" | ");
    }
    match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".into(),
    }
}

fn toml_line(limits: &warden_core::LimitSettings) -> String {
    toml_pairs(limits).join(", ")
}

fn toml_pairs(limits: &warden_core::LimitSettings) -> Vec<String> {
    let mut out = vec![];
    if let Some(v) = limits.fuel {
        out.push(format!("fuel = {v}"));
    }
    if let Some(v) = limits.timeout_ms {
        out.push(format!("timeout-ms = {v}"));
    }
    if let Some(v) = limits.memory_mib {
        out.push(format!("memory-mib = {v}"));
    }
    if let Some(v) = limits.output_kib {
        out.push(format!("output-kib = {v}"));
    }
    out
}

fn pack(plugin: &Path, manifest_path: &Path, output: &Path) -> Result<ExitCode, Failure> {
    let text = std::fs::read_to_string(manifest_path).map_err(|e| {
        Failure::bad_input(format!(
            "cannot read manifest {}: {e}",
            manifest_path.display()
        ))
    })?;
    let manifest = Manifest::from_toml(&text)
        .map_err(|e| Failure::bad_input(format!("{}: {e}", manifest_path.display())))?;
    let bytes = std::fs::read(plugin).map_err(|e| LoadError::Read {
        path: plugin.to_path_buf(),
        error: e.to_string(),
    })?;
    warden_core::engine::inspect_bytes(&bytes, plugin)?;
    let packed = manifest::pack(&bytes, &manifest)
        .map_err(|e| Failure::bad_input(format!("{}: {e}", plugin.display())))?;
    std::fs::write(output, packed)
        .map_err(|e| Failure::bad_input(format!("cannot write {}: {e}", output.display())))?;
    eprintln!(
        "warden: packed {} {} into {}",
        manifest.name,
        manifest.version,
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}
