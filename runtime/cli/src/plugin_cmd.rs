//! `warden plugin inspect`, `pack`, `check`, `compile`, `new`, `build`,
//! `push`, `pull`, `keygen`, `sign` and `verify`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use warden_core::manifest::{self, Manifest};
use warden_core::signature::{self, PublicKey, SecretKey};
use warden_core::{CallOptions, Language, LoadError, ToolSpec};

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
    /// Check a plugin project before building it: its manifest, with the
    /// messages loading would give, and for a Rust crate that cargo will
    /// write a `.wasm` (a `cdylib`). PATH is the project's directory
    /// (its `warden.toml`) or a manifest file.
    Check {
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Compile plugins (and, with --runtimes, the Python and JavaScript
    /// runtimes of `warden exec`) into the data dir's cache now, so that
    /// their first call does not wait for it.
    Compile {
        plugins: Vec<PathBuf>,
        /// Also the language runtimes in the runtime directory.
        #[arg(long)]
        runtimes: bool,
    },
    /// Write a new plugin project: manifest, code with one tool (or a role)
    /// and its test, README.
    New {
        name: String,
        #[arg(long, value_enum, default_value = "rust")]
        lang: crate::scaffold::Lang,
        /// A role (one worker of a run) instead of a tool plugin.
        #[arg(long)]
        role: bool,
        /// Where to write it (default: ./NAME).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The kit in a warden checkout, for a path dependency: its `sdk`
        /// (Rust), `sdk/python` or `sdk/js` directory (default: the
        /// published kit).
        #[arg(long, value_name = "DIR")]
        sdk: Option<PathBuf>,
    },
    /// Build a plugin project into DIR/NAME.wasm, its manifest inside.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Push a plugin to an OCI registry (the Wasm OCI artifact layout),
    /// as REGISTRY/REPOSITORY:TAG; prints the reference pinned by digest.
    /// A registry on 127.0.0.1 or localhost is spoken to over plain HTTP;
    /// credentials come from WARDEN_OCI_USERNAME and WARDEN_OCI_PASSWORD.
    Push { plugin: PathBuf, reference: String },
    /// Pull a plugin from an OCI registry into a file; prints the digest
    /// that pins it (`oci://REGISTRY/REPOSITORY@sha256:…` then runs it
    /// anywhere a plugin file is named).
    Pull {
        reference: String,
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Make a signing key: the secret key goes to FILE (readable by you
    /// alone), the public key (for a policy's `trust`) to stdout.
    Keygen {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Sign a plugin (Ed25519, inside the component; any earlier signature
    /// is replaced).
    Sign {
        plugin: PathBuf,
        /// The secret key file `warden plugin keygen` wrote.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where to write the signed plugin (default: over PLUGIN).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Check a plugin's signature and print who signed it; with --trust,
    /// also that the signer is one of those keys.
    Verify {
        plugin: PathBuf,
        /// A public key to accept (`ed25519:…`). Repeatable.
        #[arg(long, value_name = "KEY")]
        trust: Vec<String>,
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
        PluginCommand::Check { path } => check(&path),
        PluginCommand::Compile { plugins, runtimes } => compile(&plugins, runtimes, dirs).await,
        PluginCommand::New {
            name,
            lang,
            role,
            dir,
            sdk,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            crate::scaffold::new_project(&name, lang, role, &dir, sdk.as_deref())?;
            eprintln!(
                "warden: wrote {}; build it with `warden plugin build {}`",
                dir.display(),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Build { dir } => {
            let out = crate::scaffold::build_project(&dir)?;
            println!("{}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Push { plugin, reference } => {
            let pinned = crate::oci::push(&plugin, &reference).await?;
            println!("{pinned}");
            eprintln!(
                "warden: pushed {}; run it pinned as oci://{pinned}",
                plugin.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Pull { reference, output } => {
            let (digest, component) = crate::oci::pull(&reference).await?;
            warden_core::engine::inspect_bytes(&component, &output)?;
            write_beside(&output, &component)?;
            println!("{digest}");
            eprintln!(
                "warden: pulled {reference} ({digest}) into {}",
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Keygen { out } => keygen(&out),
        PluginCommand::Sign {
            plugin,
            key,
            output,
        } => sign(&plugin, &key, output.as_deref().unwrap_or(&plugin)),
        PluginCommand::Verify { plugin, trust } => {
            let local = crate::oci::local(&plugin, dirs.data.as_deref()).await?;
            verify(&local, &trust)
        }
    }
}

fn keygen(out: &Path) -> Result<ExitCode, Failure> {
    let (key, text) = SecretKey::generate().map_err(|e| Failure::internal(e.to_string()))?;
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    let written = file
        .open(out)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
    if let Err(e) = written {
        let why = if e.kind() == std::io::ErrorKind::AlreadyExists {
            "it exists; a key is never overwritten, pick another path".to_string()
        } else {
            e.to_string()
        };
        return Err(Failure::bad_input(format!(
            "cannot write the key to {}: {why}",
            out.display()
        )));
    }
    let public = key.public();
    println!("{public}");
    eprintln!(
        "warden: secret key {} in {} (keep it to yourself); trust its plugins with `trust = [\"{public}\"]` in a policy",
        public.id(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn sign(plugin: &Path, key_path: &Path, output: &Path) -> Result<ExitCode, Failure> {
    let text = std::fs::read_to_string(key_path)
        .map_err(|e| Failure::bad_input(format!("cannot read key {}: {e}", key_path.display())))?;
    let key = SecretKey::parse(&text)
        .map_err(|e| Failure::bad_input(format!("{}: {e}", key_path.display())))?;
    let bytes = warden_core::engine::read_component(plugin)?;
    let signed = signature::sign(&bytes, &key)
        .map_err(|e| Failure::bad_input(format!("{}: {e}", plugin.display())))?;
    write_beside(output, &signed)?;
    eprintln!(
        "warden: signed {} with key {} into {}",
        plugin.display(),
        key.public().id(),
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(plugin: &Path, trust: &[String]) -> Result<ExitCode, Failure> {
    let trusted = trust
        .iter()
        .map(|k| PublicKey::parse(k).map_err(|e| Failure::bad_input(format!("--trust: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = warden_core::engine::read_component(plugin)?;
    let signer = signature::signer(&bytes)
        .map_err(|e| Failure::bad_input(format!("{}: {e}", plugin.display())))?;
    let Some(signer) = signer else {
        return Err(Failure::bad_input(format!(
            "{} is not signed; sign it with `warden plugin sign --key KEY`",
            plugin.display()
        )));
    };
    if !trusted.is_empty() && !trusted.contains(&signer) {
        return Err(Failure::bad_input(format!(
            "{} is signed by key {} ({signer}), which is not among the --trust keys",
            plugin.display(),
            signer.id()
        )));
    }
    println!("signed by {} ({signer})", signer.id());
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to `path` through a file beside it, so a reader never
/// sees half of it and a failure leaves the old file.
fn write_beside(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let cannot =
        |e: std::io::Error| Failure::bad_input(format!("cannot write {}: {e}", path.display()));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(cannot)?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(cannot)?;
    tmp.persist(path).map_err(|e| cannot(e.error))?;
    Ok(())
}

/// Loads each plugin (and runtime), which compiles it into the cache.
async fn compile(
    plugins: &[PathBuf],
    runtimes: bool,
    dirs: &crate::Dirs,
) -> Result<ExitCode, Failure> {
    if dirs.data.is_none() {
        return Err(Failure::bad_input(
            "there is no data dir to keep compiled plugins in; pass --data-dir or set WARDEN_DATA_DIR",
        ));
    }
    if plugins.is_empty() && !runtimes {
        return Err(Failure::bad_input(
            "name the plugins to compile (warden plugin compile A.wasm B.wasm), or pass --runtimes for the language runtimes",
        ));
    }
    let engine = dirs.engine(crate::Capacity::ONE_SHOT)?;
    for path in plugins {
        let plugin = engine.load_file(&crate::oci::local(path, dirs.data.as_deref()).await?)?;
        eprintln!(
            "warden: {} ({}) is compiled and cached",
            terminal::escape(plugin.name()),
            path.display()
        );
    }
    if runtimes {
        for language in [Language::Python, Language::Js] {
            engine
                .runtime(language)
                .map_err(|e| Failure::bad_input(e.to_string()))?;
            eprintln!("warden: the {language} runtime is compiled and cached");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The manifest a project declares, checked; a Rust crate's `Cargo.toml`
/// checked for what makes cargo write a component.
fn check(path: &Path) -> Result<ExitCode, Failure> {
    let (manifest_path, project) = if path.is_dir() {
        (path.join("warden.toml"), Some(path))
    } else {
        (path.to_path_buf(), None)
    };
    let manifest = crate::scaffold::read_manifest(&manifest_path)?;
    if let Some(cargo) = project.map(|dir| dir.join("Cargo.toml"))
        && cargo.is_file()
    {
        crate::scaffold::crate_to_build(&cargo)?;
    }
    eprintln!(
        "warden: {} {} ({}) is ready to build: {} checked",
        manifest.name,
        manifest.version,
        manifest.kind,
        manifest_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn inspect(path: &Path, json: bool, dirs: &crate::Dirs) -> Result<ExitCode, Failure> {
    let local = crate::oci::local(path, dirs.data.as_deref()).await?;
    let bytes = std::fs::read(&local).map_err(|e| LoadError::Read {
        path: path.to_path_buf(),
        error: e.to_string(),
    })?;
    let engine = dirs.engine(crate::Capacity::ONE_SHOT)?;
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
            "signer": plugin.signer().map(|k| k.to_string()),
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
            plugin.signer(),
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
    signer: Option<&PublicKey>,
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
    match signer {
        Some(key) => outln!(out, "signed:  by {} ({key})", key.id()),
        None => outln!(out, "signed:  no"),
    }
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
    let manifest = crate::scaffold::read_manifest(manifest_path)?;
    let bytes = warden_core::engine::read_component(plugin)?;
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
