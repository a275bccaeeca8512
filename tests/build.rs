//! Builds every guest the suites run, from source, for wasm32-wasip2, and
//! the language runtimes of `warden exec` (`js.wasm` from runtimes/js,
//! `python.wasm` by componentize-py from runtimes/python). No `.wasm` is
//! committed.
//!
//! The guests are discovered, not listed: every workspace member that is
//! not a default member (the host crates are) is a guest, read from `cargo
//! metadata`. Each becomes a constant in `warden_tests::artifacts` named
//! after its package without the `warden-plugin-`, `warden-guest-` or
//! `warden-runtime-` prefix (`warden-plugin-fs` → `FS`, `text-stats` →
//! `TEXT_STATS`), and `foreach_guest!` names them all, so the test binary
//! can require a test for each. Those under `plugins/` are the first-party
//! plugins, copied to `<target>/plugins/NAME.wasm`.
//!
//! Guests build in their own target directory (`<target>/guests`, shared
//! with `scripts/dev plugins`) so the nested cargo never waits on the outer
//! one's lock and a plugin build is reused by both. With
//! `WARDEN_LINT_GUESTS=<clippy-driver>` they are linted as they build. The runtimes land in
//! `<target>/runtimes`, where a `warden` built in the same target directory
//! looks for them.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROFILE: &str = "guest";
const TARGET: &str = "wasm32-wasip2";

/// One guest crate of the workspace.
struct Guest {
    package: String,
    /// The artifact's file stem: the lib or bin target's name.
    stem: String,
    /// Under `plugins/`: copied to `<target>/plugins`.
    first_party: bool,
}

impl Guest {
    /// `warden-plugin-fs` → `FS`; `text-stats` → `TEXT_STATS`.
    fn constant(&self) -> String {
        let short = ["warden-plugin-", "warden-guest-", "warden-runtime-"]
            .iter()
            .find_map(|prefix| self.package.strip_prefix(prefix))
            .unwrap_or(&self.package);
        short.replace('-', "_").to_ascii_uppercase()
    }
}

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_dir = guest_target_dir(&out_dir);

    for watched in [
        "sdk/src",
        "sdk/wit",
        "sdk/Cargo.toml",
        "sdk/python/warden_plugin",
        "wit",
        "plugins",
        "examples",
        "tests/guests",
        "runtimes",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    let metadata = cargo_metadata(&workspace);
    let guests = discover(&metadata, &workspace);

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--target", TARGET, "--profile", PROFILE])
        .arg("--target-dir")
        .arg(&target_dir)
        // Host-only flags must not leak into the guest build, nor must a
        // `cargo clippy` of the host turn the guest build into a lint run.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        // QuickJS's C, for the JavaScript runtime: rquickjs-sys compiles it
        // with the WASI_SDK it is given (Debian's clang-14 and wasi-libc
        // behind two wrappers) instead of downloading one.
        .env("WASI_SDK", workspace.join("runtimes/js/wasi-sdk"));
    if !Path::new("/usr/include/wasm32-wasi/stdio.h").exists() {
        panic!(
            "the JavaScript runtime's QuickJS needs clang-14 and wasi-libc's headers: run `scripts/dev setup` (or `apt-get install clang-14 wasi-libc`)"
        );
    }
    for guest in &guests {
        cmd.args(["-p", &guest.package]);
    }
    // `scripts/dev test` lints the guests (and the SDK they build on) while
    // they build, with clippy as the workspace wrapper, instead of a second
    // pass: WARDEN_LINT_GUESTS names the clippy-driver.
    println!("cargo:rerun-if-env-changed=WARDEN_LINT_GUESTS");
    if let Some(driver) = env::var_os("WARDEN_LINT_GUESTS").filter(|d| !d.is_empty()) {
        cmd.env("RUSTC_WORKSPACE_WRAPPER", driver)
            .env(
                "CLIPPY_ARGS",
                "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__",
            )
            .arg("-p")
            .arg("warden-sdk");
    }
    let status = cmd.status().expect("run cargo to build the wasm guests");
    if !status.success() {
        panic!(
            "building the wasm guests failed ({status}); see the compiler output above (if it says the target is missing, run `scripts/dev setup`)"
        );
    }

    let built = target_dir.join(TARGET).join(PROFILE);
    let artifact = |guest: &Guest| built.join(format!("{}.wasm", guest.stem));
    let mut consts = String::new();
    for guest in &guests {
        let path = artifact(guest);
        assert!(
            path.exists(),
            "guest build did not produce {}",
            path.display()
        );
        consts.push_str(&format!(
            "pub const {}: &str = {:?};\n",
            guest.constant(),
            path.display().to_string()
        ));
    }
    let names: Vec<String> = guests
        .iter()
        .map(|g| g.constant().to_ascii_lowercase())
        .collect();
    consts.push_str(&format!(
        "/// Calls `$mac!(name)` for every guest (`hello`, `fs`, …).\n#[macro_export]\nmacro_rules! foreach_guest {{\n    ($mac:ident) => {{\n{}    }};\n}}\n",
        names
            .iter()
            .map(|n| format!("        $mac!({n});\n"))
            .collect::<String>()
    ));

    let parent = target_dir.parent().unwrap_or(&target_dir);
    let runtimes = parent.join("runtimes");
    std::fs::create_dir_all(&runtimes).expect("create the runtimes dir");
    std::fs::copy(built.join("js.wasm"), runtimes.join("js.wasm")).expect("copy js.wasm");
    build_python(&workspace, &runtimes.join("python.wasm"));
    let plugins = parent.join("plugins");
    std::fs::create_dir_all(&plugins).expect("create the plugins dir");
    for guest in guests.iter().filter(|g| g.first_party) {
        std::fs::copy(
            artifact(guest),
            plugins.join(format!("{}.wasm", guest.stem)),
        )
        .expect("copy a first-party plugin");
    }
    consts.push_str(&format!(
        "pub const PLUGIN_DIR: &str = {:?};\n",
        plugins.display().to_string()
    ));
    consts.push_str(&format!(
        "pub const RUNTIME_DIR: &str = {:?};\n",
        runtimes.display().to_string()
    ));
    // A compiled-artifact cache (and warden data dir) the suites share.
    let data = target_dir.join("test-data");
    consts.push_str(&format!(
        "pub const DATA_DIR: &str = {:?};\npub const CACHE_DIR: &str = {:?};\n",
        data.display().to_string(),
        data.join("cache/compiled").display().to_string()
    ));
    std::fs::write(out_dir.join("artifacts.rs"), consts).expect("write artifacts.rs");
}

/// The guests: workspace members that are not default members, in the
/// order cargo lists them.
fn discover(metadata: &serde_json::Value, workspace: &Path) -> Vec<Guest> {
    let ids = |key: &str| -> Vec<String> {
        metadata[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let defaults = ids("workspace_default_members");
    assert!(
        !defaults.is_empty(),
        "cargo metadata lists no default members; the workspace's `default-members` names the host crates"
    );
    let mut guests = Vec::new();
    for id in ids("workspace_members") {
        if defaults.contains(&id) {
            continue;
        }
        let package = metadata["packages"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["id"] == id.as_str()))
            .expect("a workspace member is a package");
        let name = package["name"].as_str().expect("a package has a name");
        let stem = package["targets"]
            .as_array()
            .and_then(|targets| {
                targets.iter().find(|t| {
                    t["kind"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k == "cdylib" || k == "bin"))
                })
            })
            .and_then(|t| t["name"].as_str())
            .unwrap_or_else(|| panic!("guest {name} has no cdylib or bin target"))
            .replace('-', "_");
        let manifest = Path::new(package["manifest_path"].as_str().unwrap_or_default());
        guests.push(Guest {
            package: name.to_string(),
            stem,
            first_party: manifest.starts_with(workspace.join("plugins")),
        });
    }
    guests
}

fn cargo_metadata(workspace: &Path) -> serde_json::Value {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace)
        .args(["metadata", "--format-version", "1", "--locked", "--no-deps"])
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata JSON")
}

/// CPython as a WASI command that may also make HTTP requests, by
/// componentize-py, against the WASI WIT that the host's wasmtime-wasi-http
/// implements; its HTTP client is the Python kit's (sdk/python). Skipped
/// when the output is newer than every source it is made of.
fn build_python(workspace: &Path, output: &Path) {
    let app_dir = workspace.join("runtimes/python");
    let kit = workspace.join("sdk/python");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let newest_source = [app_dir.clone(), kit.join("warden_plugin")]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
        .filter(|entry| {
            entry
                .path()
                .extension()
                .is_some_and(|e| e == "py" || e == "wit")
        })
        .filter_map(|entry| modified(&entry.path()))
        .max();
    if let (Some(built), Some(source)) = (modified(output), newest_source)
        && built > source
    {
        return;
    }
    println!("cargo:rerun-if-env-changed=WARDEN_COMPONENTIZE_PY");
    let componentize = env::var_os("WARDEN_COMPONENTIZE_PY")
        .map(PathBuf::from)
        .or_else(|| {
            env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/warden/venv/bin/componentize-py"))
        })
        .expect("HOME or WARDEN_COMPONENTIZE_PY is set");
    let status = Command::new(&componentize)
        .current_dir(&app_dir)
        .arg("-q")
        .arg("-d")
        .arg(python_wit_dir(workspace, &app_dir))
        .args(["-w", "exec", "componentize", "app", "-p", ".", "-p"])
        .arg(&kit)
        .arg("-o")
        .arg(output)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); run `scripts/dev setup`, which installs componentize-py",
                componentize.display()
            )
        });
    assert!(
        status.success(),
        "componentize-py failed to build {}",
        output.display()
    );
}

/// A WIT directory for the Python runtime: its world (`world.wit` in the
/// app's directory) with the WASI WIT of the host's wasmtime-wasi-http as
/// its deps, in OUT_DIR.
fn python_wit_dir(workspace: &Path, app_dir: &Path) -> PathBuf {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("python-wit");
    let deps = out.join("deps");
    std::fs::create_dir_all(&deps).expect("create the Python runtime's WIT dir");
    std::fs::copy(app_dir.join("world.wit"), out.join("world.wit"))
        .expect("copy runtimes/python/world.wit");
    let wasi = wasi_wit_dir(workspace).join("deps");
    for entry in std::fs::read_dir(&wasi).expect("read wasmtime-wasi-http's WIT deps") {
        let path = entry.expect("a WIT deps entry").path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, deps.join(name)).expect("copy a WASI WIT file");
        }
    }
    out
}

/// wasmtime-wasi-http's WASI 0.2 WIT (with the rest of WASI among its
/// deps), from the crate cargo already fetched.
fn wasi_wit_dir(workspace: &Path) -> PathBuf {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace)
        .args(["metadata", "--format-version", "1", "--locked"])
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let manifest = meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "wasmtime-wasi-http"))
        .and_then(|p| p["manifest_path"].as_str())
        .expect("wasmtime-wasi-http is a dependency");
    Path::new(manifest)
        .parent()
        .expect("a manifest has a parent")
        .join("wit")
}

/// `<target>/guests`, where `<target>` is the directory holding the profile
/// directory that holds `build/<pkg>/out`.
fn guest_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(|build| build.parent())
        .and_then(|profile| profile.parent())
        .map(|target| target.join("guests"))
        .unwrap_or_else(|| out_dir.join("guests"))
}
