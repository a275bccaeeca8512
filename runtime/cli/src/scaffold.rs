//! `warden plugin new` (a working plugin project) and `warden plugin build`
//! (a project into a packed `.wasm` inside it), and the checks of a
//! project both they and `warden plugin check` make.

use std::path::{Path, PathBuf};
use std::process::Command;

use warden_core::grant::is_valid_plugin_name;
use warden_core::manifest::Manifest;

use crate::exit::Failure;

/// The languages `warden plugin new` writes projects in and `warden plugin
/// build` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// Writes a plugin project `name` into `dir` (made; it must not exist): a
/// manifest, the code with one tool (or, with `role`, a role) and its test,
/// a README; a role also gets a workflow that runs it. `sdk` is where the
/// kit is (a warden checkout's `sdk`, `sdk/python` or `sdk/js`), for a
/// path dependency; without it the project depends on the published kit.
pub fn new_project(
    name: &str,
    lang: Lang,
    role: bool,
    dir: &Path,
    sdk: Option<&Path>,
) -> Result<(), Failure> {
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
    let kind = if role { "role" } else { "tool" };
    let sdk = sdk
        .map(|path| {
            std::path::absolute(path)
                .map_err(|e| Failure::bad_input(format!("--sdk {}: {e}", path.display())))
        })
        .transpose()?;
    let mut files = vec![("warden.toml", if role { ROLE_TOML } else { TOOL_TOML })];
    let mut extra = Vec::new();
    match lang {
        Lang::Rust => {
            let dependency = match &sdk {
                Some(path) if path.join("Cargo.toml").is_file() => {
                    format!("{{ path = {:?} }}", path.display().to_string())
                }
                Some(path) => {
                    return Err(Failure::bad_input(format!(
                        "--sdk {}: no Cargo.toml there; point it at the sdk directory of a warden checkout",
                        path.display()
                    )));
                }
                None => format!("\"{}\"", env!("CARGO_PKG_VERSION")),
            };
            extra.push(("Cargo.toml", RUST_CARGO.replace("__SDK__", &dependency)));
            files.push(("src/lib.rs", if role { RUST_ROLE } else { RUST_TOOL }));
            files.push(("README.md", RUST_README));
            files.push((".gitignore", RUST_GITIGNORE));
        }
        Lang::Python => {
            let kit = match &sdk {
                Some(path) if path.join("warden_plugin").is_dir() => {
                    format!("-e {}", path.display())
                }
                Some(path) => {
                    return Err(Failure::bad_input(format!(
                        "--sdk {}: no warden_plugin package there; point it at the sdk/python directory of a warden checkout",
                        path.display()
                    )));
                }
                None => "warden-plugin".to_string(),
            };
            extra.push((
                "requirements.txt",
                PYTHON_REQUIREMENTS.replace("__KIT__", &kit),
            ));
            files.push(("app.py", if role { PYTHON_ROLE } else { PYTHON_TOOL }));
            files.push((
                if role { "test_role.py" } else { "test_tool.py" },
                if role {
                    PYTHON_TEST_ROLE
                } else {
                    PYTHON_TEST_TOOL
                },
            ));
            files.push(("README.md", PYTHON_README));
            files.push((".gitignore", PYTHON_GITIGNORE));
        }
        Lang::Js => {
            let kit = match &sdk {
                Some(path) if path.join("bin/warden-plugin.js").is_file() => {
                    // Installed as a copy with its own dependencies, as the
                    // published package would be (a link would leave them
                    // out).
                    extra.push((".npmrc", "install-links=true\n".to_string()));
                    format!("file:{}", path.display())
                }
                Some(path) => {
                    return Err(Failure::bad_input(format!(
                        "--sdk {}: no bin/warden-plugin.js there; point it at the sdk/js directory of a warden checkout",
                        path.display()
                    )));
                }
                None => "^0.1.0".to_string(),
            };
            extra.push(("package.json", JS_PACKAGE.replace("__KIT__", &kit)));
            files.push(("app.js", if role { JS_ROLE } else { JS_TOOL }));
            files.push((
                if role { "role.test.js" } else { "tool.test.js" },
                if role { JS_TEST_ROLE } else { JS_TEST_TOOL },
            ));
            files.push(("README.md", JS_README));
            files.push((".gitignore", JS_GITIGNORE));
        }
    }
    if role {
        files.push(("workflow.toml", WORKFLOW));
    }
    let try_it = if role {
        format!("warden run workflow.toml --plugin-dir .     # a run with one task for {name}")
    } else {
        format!("warden tool call {name}.wasm greet --args '{{\"name\":\"Ada\"}}'")
    };
    let fill = |text: &str| {
        text.replace("__NAME__", name)
            .replace("__KIND__", kind)
            .replace("__TRY__", &try_it)
    };
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        let all = files
            .iter()
            .map(|(file, text)| (*file, fill(text)))
            .chain(extra.iter().map(|(file, text)| (*file, fill(text))));
        for (file, text) in all {
            let path = dir.join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, text)?;
        }
        Ok(())
    });
    written.map_err(|e| Failure::bad_input(format!("cannot write {}: {e}", dir.display())))
}

// The project templates; __NAME__, __KIND__, __TRY__, __SDK__ and __KIT__
// are filled in.
const TOOL_TOML: &str = include_str!("../templates/tool.toml");
const ROLE_TOML: &str = include_str!("../templates/role.toml");
const WORKFLOW: &str = include_str!("../templates/workflow.toml");
const RUST_CARGO: &str = include_str!("../templates/rust/Cargo.toml");
const RUST_TOOL: &str = include_str!("../templates/rust/tool.rs");
const RUST_ROLE: &str = include_str!("../templates/rust/role.rs");
const RUST_README: &str = include_str!("../templates/rust/README.md");
const RUST_GITIGNORE: &str = include_str!("../templates/rust/.gitignore");
const PYTHON_TOOL: &str = include_str!("../templates/python/tool.py");
const PYTHON_TEST_TOOL: &str = include_str!("../templates/python/test_tool.py");
const PYTHON_ROLE: &str = include_str!("../templates/python/role.py");
const PYTHON_TEST_ROLE: &str = include_str!("../templates/python/test_role.py");
const PYTHON_README: &str = include_str!("../templates/python/README.md");
const PYTHON_REQUIREMENTS: &str = include_str!("../templates/python/requirements.txt");
const PYTHON_GITIGNORE: &str = include_str!("../templates/python/.gitignore");
const JS_TOOL: &str = include_str!("../templates/js/tool.js");
const JS_TEST_TOOL: &str = include_str!("../templates/js/tool.test.js");
const JS_ROLE: &str = include_str!("../templates/js/role.js");
const JS_TEST_ROLE: &str = include_str!("../templates/js/role.test.js");
const JS_README: &str = include_str!("../templates/js/README.md");
const JS_PACKAGE: &str = include_str!("../templates/js/package.json");
const JS_GITIGNORE: &str = include_str!("../templates/js/.gitignore");

/// The language of the project in `dir`, from the file its code starts
/// from.
pub fn project_lang(dir: &Path) -> Result<Lang, Failure> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if dir.join("app.py").is_file() {
        Ok(Lang::Python)
    } else if dir.join("app.js").is_file() {
        Ok(Lang::Js)
    } else {
        Err(Failure::bad_input(format!(
            "{} has no Cargo.toml (Rust), app.py (Python) or app.js (JavaScript): `warden plugin new NAME --lang rust|python|js` writes a plugin project",
            dir.display()
        )))
    }
}

/// Builds the project in `dir` into `dir/NAME.wasm`, its manifest inside;
/// returns that path.
pub fn build_project(dir: &Path) -> Result<PathBuf, Failure> {
    match project_lang(dir)? {
        Lang::Rust => build_rust(dir),
        Lang::Python => build_python(dir),
        Lang::Js => build_js(dir),
    }
}

/// The Python that builds a Python project: $WARDEN_PYTHON, else the
/// project's own `.venv`, else `python3`.
fn python_for(dir: &Path) -> PathBuf {
    if let Some(python) = std::env::var_os("WARDEN_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = dir.join(".venv/bin/python");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("python3")
}

/// Runs the Python kit's build (componentize-py, then the manifest into the
/// component) and checks what it wrote as loading would.
fn build_python(dir: &Path) -> Result<PathBuf, Failure> {
    let manifest = read_manifest(&dir.join("warden.toml"))?;
    let python = python_for(dir);
    let probe = Command::new(&python)
        .args(["-c", "import warden_plugin, componentize_py"])
        .output()
        .map_err(|e| {
            Failure::bad_input(format!(
                "cannot run {} ({e}); install Python 3.11 or later, or point WARDEN_PYTHON at one",
                python.display()
            ))
        })?;
    if !probe.status.success() {
        return Err(Failure::bad_input(format!(
            "{} cannot import the Python kit (warden_plugin, componentize-py): run `{} -m pip install -r {}`, or point WARDEN_PYTHON at a Python that has it\n{}",
            python.display(),
            python.display(),
            dir.join("requirements.txt").display(),
            String::from_utf8_lossy(&probe.stderr).trim_end()
        )));
    }
    let out = dir.join(format!("{}.wasm", manifest.name));
    let mut build = Command::new(&python);
    build.args(["-m", "warden_plugin", "build"]).arg(dir);
    run_kit(build, "the Python kit", dir, &out)
}

/// Runs the JavaScript kit's build (esbuild, componentize-js, then the
/// manifest into the component) with the kit the project installed (or
/// $WARDEN_JS_KIT), and checks what it wrote as loading would.
fn build_js(dir: &Path) -> Result<PathBuf, Failure> {
    let manifest = read_manifest(&dir.join("warden.toml"))?;
    let kit = std::env::var_os("WARDEN_JS_KIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("node_modules/warden-plugin"));
    let script = kit.join("bin/warden-plugin.js");
    if !script.is_file() {
        return Err(Failure::bad_input(format!(
            "the JavaScript kit is not installed in {}: run `npm install` there (its package.json names warden-plugin), or point WARDEN_JS_KIT at the kit",
            dir.display()
        )));
    }
    let out = dir.join(format!("{}.wasm", manifest.name));
    let mut build = Command::new("node");
    build.arg(&script).arg("build").arg(dir);
    run_kit(build, "the JavaScript kit", dir, &out)
}

/// Runs a kit's `build` (given its project) with `-o out`, then checks the
/// component it wrote as loading would; returns `out`.
fn run_kit(mut build: Command, kit: &str, dir: &Path, out: &Path) -> Result<PathBuf, Failure> {
    let program = build.get_program().to_string_lossy().into_owned();
    let status = build
        .arg("-o")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| Failure::bad_input(format!("cannot run {program} for {kit} ({e})")))?;
    if !status.success() {
        return Err(Failure::bad_input(format!(
            "{kit} could not build {} (its errors are above)",
            dir.display()
        )));
    }
    let bytes = std::fs::read(out)
        .map_err(|e| Failure::bad_input(format!("{kit} wrote no {} ({e})", out.display())))?;
    warden_core::engine::inspect_bytes(&bytes, out)?;
    Ok(out.to_path_buf())
}

/// Builds the Rust crate in `dir` and copies the component to
/// `dir/NAME.wasm`; returns that path.
fn build_rust(dir: &Path) -> Result<PathBuf, Failure> {
    let cargo_toml = dir.join("Cargo.toml");
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
