//! Builds every guest the suites run, from source, for wasm32-wasip2: the
//! first-party plugins, the example third-party plugin, the hostile test
//! guests, and the language runtimes of `warden exec` (`js.wasm` from
//! runtimes/js, `python.wasm` by componentize-py from runtimes/python). No
//! `.wasm` is committed. The paths become constants in
//! `warden_tests::artifacts`.
//!
//! Guests build in their own target directory (`<target>/guests`, shared with
//! `scripts/dev plugins`) so the nested cargo never waits on the outer one's
//! lock. The runtimes land in `<target>/runtimes`, where a `warden` built in
//! the same target directory looks for them.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (constant name, package, wasm file stem)
const GUESTS: &[(&str, &str, &str)] = &[
    ("HELLO", "warden-plugin-hello", "hello"),
    ("FS", "warden-plugin-fs", "fs"),
    ("FETCH", "warden-plugin-fetch", "fetch"),
    ("MEMORY", "warden-plugin-memory", "memory"),
    ("TEXT_STATS", "text-stats", "text_stats"),
    ("HOSTILE", "warden-guest-hostile", "hostile"),
    ("EXEC", "warden-plugin-exec", "exec"),
    ("PROGRAM", "warden-guest-program", "program"),
    ("THINKER", "warden-guest-thinker", "thinker"),
    ("CALLER", "warden-guest-caller", "caller"),
    ("JS_RUNTIME", "warden-runtime-js", "js"),
    ("PLANNER", "warden-plugin-planner", "planner"),
    ("CODER", "warden-plugin-coder", "coder"),
    ("TESTER", "warden-plugin-tester", "tester"),
    ("REVIEWER", "warden-plugin-reviewer", "reviewer"),
    ("RESEARCHER", "warden-plugin-researcher", "researcher"),
];

/// The first-party plugins, copied to `<target>/plugins/NAME.wasm`: where a
/// `warden` built in the same target directory looks for the plugins a
/// workflow names.
const FIRST_PARTY: &[&str] = &[
    "hello",
    "fs",
    "fetch",
    "exec",
    "memory",
    "planner",
    "coder",
    "tester",
    "reviewer",
    "researcher",
];

const PROFILE: &str = "guest";
const TARGET: &str = "wasm32-wasip2";

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
        "sdk",
        "wit",
        "plugins",
        "examples",
        "tests/guests",
        "runtimes",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

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
        .env_remove("CARGO_BUILD_TARGET");
    for (_, package, _) in GUESTS {
        cmd.args(["-p", package]);
    }
    let status = cmd.status().expect("run cargo to build the wasm guests");
    if !status.success() {
        panic!(
            "building the wasm guests failed ({status}); see the compiler output above (if it says the target is missing, run `scripts/dev setup`)"
        );
    }

    let mut consts = String::new();
    for (name, _, stem) in GUESTS {
        let path = target_dir
            .join(TARGET)
            .join(PROFILE)
            .join(format!("{stem}.wasm"));
        assert!(
            path.exists(),
            "guest build did not produce {}",
            path.display()
        );
        consts.push_str(&format!(
            "pub const {name}: &str = {:?};\n",
            path.display().to_string()
        ));
    }

    let runtimes = target_dir.parent().unwrap_or(&target_dir).join("runtimes");
    std::fs::create_dir_all(&runtimes).expect("create the runtimes dir");
    std::fs::copy(
        target_dir.join(TARGET).join(PROFILE).join("js.wasm"),
        runtimes.join("js.wasm"),
    )
    .expect("copy js.wasm");
    build_python(&workspace, &runtimes.join("python.wasm"));
    let plugins = target_dir.parent().unwrap_or(&target_dir).join("plugins");
    std::fs::create_dir_all(&plugins).expect("create the plugins dir");
    for stem in FIRST_PARTY {
        std::fs::copy(
            target_dir
                .join(TARGET)
                .join(PROFILE)
                .join(format!("{stem}.wasm")),
            plugins.join(format!("{stem}.wasm")),
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

/// CPython as a WASI command, by componentize-py, against the WASI WIT that
/// the host's wasmtime-wasi implements. Skipped when the output is newer
/// than the app.
fn build_python(workspace: &Path, output: &Path) {
    let app_dir = workspace.join("runtimes/python");
    let app = app_dir.join("app.py");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(built), Some(source)) = (modified(output), modified(&app))
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
        .arg(wasi_wit_dir(workspace))
        .args(["-w", "wasi:cli/command@0.2.12", "componentize", "app", "-o"])
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

/// wasmtime-wasi's WASI 0.2 WIT, from the crate cargo already fetched.
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
        .and_then(|ps| ps.iter().find(|p| p["name"] == "wasmtime-wasi"))
        .and_then(|p| p["manifest_path"].as_str())
        .expect("wasmtime-wasi is a dependency");
    Path::new(manifest)
        .parent()
        .expect("a manifest has a parent")
        .join("src/p2/wit")
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
