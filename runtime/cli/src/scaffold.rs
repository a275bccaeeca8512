//! `warden plugin new` (a working plugin project) and `warden plugin build`
//! (a project into a packed `.wasm` inside it), and the checks of a
//! project both they and `warden plugin check` make.

use std::path::{Path, PathBuf};
use std::process::Command;

use warden_core::grant::is_valid_plugin_name;
use warden_core::manifest::Manifest;

use crate::exit::Failure;

/// The languages `warden plugin new` writes projects in.
const LANGUAGES: &str = "rust";

/// Writes a Rust tool plugin project `name` into `dir` (made; it must not
/// exist): a manifest, the crate with one tool and its test, a README.
/// `sdk` is where the SDK is, for a path dependency; without it the
/// project depends on `warden-sdk` from crates.io.
pub fn new_project(name: &str, lang: &str, dir: &Path, sdk: Option<&Path>) -> Result<(), Failure> {
    if lang != "rust" {
        return Err(Failure::bad_input(format!(
            "--lang {lang}: warden plugin new writes {LANGUAGES} projects so far; a Python or JavaScript plugin builds with componentize-py or componentize-js against wit/ and gets its manifest with `warden plugin pack`"
        )));
    }
    if !is_valid_plugin_name(name) {
        return Err(Failure::bad_input(format!(
            "{name:?} is not a plugin name: use 1 to 64 lowercase letters, digits and '-', starting with a letter"
        )));
    }
    if dir.exists() {
        return Err(Failure::bad_input(format!(
            "{} exists; name a new directory (--dir) so nothing is overwritten",
            dir.display()
        )));
    }
    let sdk = match sdk {
        Some(path) => {
            let path = std::path::absolute(path)
                .map_err(|e| Failure::bad_input(format!("--sdk {}: {e}", path.display())))?;
            if !path.join("Cargo.toml").is_file() {
                return Err(Failure::bad_input(format!(
                    "--sdk {}: no Cargo.toml there; point it at the sdk directory of a warden checkout",
                    path.display()
                )));
            }
            format!("{{ path = {:?} }}", path.display().to_string())
        }
        None => format!("\"{}\"", env!("CARGO_PKG_VERSION")),
    };
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk)),
        ("warden.toml", manifest(name)),
        ("src/lib.rs", LIB_RS.to_string()),
        ("README.md", readme(name)),
        (".gitignore", "/target\n/*.wasm\n".to_string()),
    ];
    let written = std::fs::create_dir_all(dir.join("src")).and_then(|()| {
        files
            .iter()
            .try_for_each(|(file, text)| std::fs::write(dir.join(file), text))
    });
    written.map_err(|e| Failure::bad_input(format!("cannot write {}: {e}", dir.display())))
}

fn cargo_toml(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

# A crate of its own, even inside another workspace.
[workspace]

[lib]
# cdylib: the .wasm component; rlib: `cargo test` runs the tools natively.
crate-type = ["cdylib", "rlib"]

[dependencies]
warden-sdk = {sdk}
schemars = "1"
serde = {{ version = "1", features = ["derive"] }}

[profile.release]
opt-level = "s"
lto = true
strip = true
"#
    )
}

fn manifest(name: &str) -> String {
    format!(
        r#"manifest-version = 1
name = "{name}"
version = "0.1.0"
kind = "tool"
description = "Greets someone by name"

# Ask only for what the tools need; the operator grants at most this.
# [[capabilities.fs]]
# path = "/data"
# mode = "ro"
# reason = "reads its input"
#
# [[capabilities.http]]
# host = "https://api.example.com"
# reason = "calls the example API"

[limits]
timeout-ms = 2000
"#
    )
}

const LIB_RS: &str = r##"//! A warden tool plugin: `greet`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use warden_sdk::{ToolError, Toolbox};

/// Arguments of `greet`; doc comments become the schema's descriptions.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GreetArgs {
    /// Who to greet.
    pub name: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Greeting {
    pub message: String,
}

pub fn greet(args: GreetArgs) -> Result<Greeting, ToolError> {
    if args.name.is_empty() {
        // Comes back to the caller as an `invalid-arguments` tool error.
        return Err(ToolError::InvalidArguments("`name` is empty".into()));
    }
    warden_sdk::log::info(format!("greeting {}", args.name));
    Ok(Greeting {
        message: format!("Hello, {}!", args.name),
    })
}

pub fn toolbox() -> Toolbox {
    Toolbox::new().tool("greet", "Greets someone by name", greet)
}

warden_sdk::export!(toolbox);
warden_sdk::embed_manifest!("../warden.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_and_refuses_an_empty_name() {
        let out = toolbox().call("greet", r#"{"name":"Ada"}"#);
        assert_eq!(out.ok().as_deref(), Some(r#"{"message":"Hello, Ada!"}"#));
        assert!(matches!(
            toolbox().call("greet", r#"{"name":""}"#),
            Err(ToolError::InvalidArguments(_))
        ));
    }
}
"##;

fn readme(name: &str) -> String {
    format!(
        r#"# {name}

A warden tool plugin.

```sh
cargo test                                  # the tools, natively
warden plugin build .                       # ./{name}.wasm, manifest inside
warden tool call {name}.wasm greet --args '{{"name":"Ada"}}'
```

`warden plugin build` runs `cargo build --target wasm32-wasip2 --release`
(`rustup target add wasm32-wasip2` once) and copies the component here.
`warden.toml` is the manifest: what the plugin may ask for, checked by
`warden plugin check`.
"#
    )
}

/// Builds the project in `dir` (a Rust crate) and copies the component to
/// `dir/NAME.wasm`; returns that path.
pub fn build_project(dir: &Path) -> Result<PathBuf, Failure> {
    let cargo_toml = dir.join("Cargo.toml");
    if !cargo_toml.is_file() {
        return Err(Failure::bad_input(format!(
            "{} has no Cargo.toml: warden plugin build builds Rust plugin projects so far (`warden plugin new NAME` writes one)",
            dir.display()
        )));
    }
    let crate_name = check_project(dir)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(&cargo_toml)
        .status()
        .map_err(|e| {
            Failure::bad_input(format!(
                "cannot run cargo ({e}); install Rust with rustup, then `rustup target add wasm32-wasip2`"
            ))
        })?;
    if !status.success() {
        return Err(Failure::bad_input(format!(
            "cargo build failed for {} (its errors are above); a missing target is added with `rustup target add wasm32-wasip2`",
            dir.display()
        )));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("target"));
    let file = crate_name.replace('-', "_");
    let built = target
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{file}.wasm"));
    let bytes = std::fs::read(&built).map_err(|e| {
        Failure::bad_input(format!(
            "cargo wrote no {} ({e}): is the crate a cdylib?",
            built.display()
        ))
    })?;
    warden_core::engine::inspect_bytes(&bytes, &built)?;
    let out = dir.join(format!("{crate_name}.wasm"));
    std::fs::write(&out, bytes)
        .map_err(|e| Failure::bad_input(format!("cannot write {}: {e}", out.display())))?;
    Ok(out)
}

/// The plugin manifest at `path`, checked as loading checks it.
pub fn read_manifest(path: &Path) -> Result<Manifest, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::bad_input(format!(
            "cannot read manifest {}: {e}{}",
            path.display(),
            if e.kind() == std::io::ErrorKind::NotFound {
                " (a plugin project keeps its manifest in warden.toml)"
            } else {
                ""
            }
        ))
    })?;
    Manifest::from_toml(&text).map_err(|e| Failure::bad_input(format!("{}: {e}", path.display())))
}

/// What `warden plugin build` checks of a Rust project in `dir` before
/// building it: its manifest, and that the crate is a cdylib. Returns the
/// crate's name.
fn check_project(dir: &Path) -> Result<String, Failure> {
    read_manifest(&dir.join("warden.toml"))?;
    crate_to_build(&dir.join("Cargo.toml"))?.ok_or_else(|| {
        Failure::bad_input(format!(
            "{}: a workspace; build the plugin's own crate directory",
            dir.join("Cargo.toml").display()
        ))
    })
}

/// The name of the crate `cargo` describes, once it is known to build a
/// `.wasm` (`None` for a workspace's manifest): without `crate-type =
/// ["cdylib"]` cargo builds a wasm32 library and "succeeds" with no `.wasm`
/// to load.
pub fn crate_to_build(cargo: &Path) -> Result<Option<String>, Failure> {
    let text = std::fs::read_to_string(cargo)
        .map_err(|e| Failure::bad_input(format!("cannot read {}: {e}", cargo.display())))?;
    let crate_toml: toml::Table = toml::from_str(&text)
        .map_err(|e| Failure::bad_input(format!("{}: {e}", cargo.display())))?;
    let Some(package) = crate_toml.get("package") else {
        // A workspace's manifest: its members are checked one by one.
        return Ok(None);
    };
    let name = package
        .get("name")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| Failure::bad_input(format!("{}: no package name", cargo.display())))?;
    let types = crate_toml
        .get("lib")
        .and_then(|lib| lib.get("crate-type"))
        .and_then(toml::Value::as_array);
    let cdylib = types.is_some_and(|types| types.iter().any(|t| t.as_str() == Some("cdylib")));
    if cdylib {
        Ok(Some(name.to_string()))
    } else {
        Err(Failure::bad_input(format!(
            "{}: the crate is not a cdylib, so `cargo build --target wasm32-wasip2` writes no .wasm; add\n\n[lib]\ncrate-type = [\"cdylib\"]\n",
            cargo.display()
        )))
    }
}
