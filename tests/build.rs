//! Builds every guest the suites run, from source, for wasm32-wasip2: the
//! first-party plugins, the example third-party plugin and the hostile test
//! guests. No `.wasm` is committed. The paths become constants in
//! `warden_tests::artifacts`.
//!
//! Guests build in their own target directory (`<target>/guests`, shared with
//! `scripts/dev plugins`) so the nested cargo never waits on the outer one's
//! lock.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (constant name, package, wasm file stem)
const GUESTS: &[(&str, &str, &str)] = &[
    ("HELLO", "warden-plugin-hello", "hello"),
    ("FS", "warden-plugin-fs", "fs"),
    ("FETCH", "warden-plugin-fetch", "fetch"),
    ("TEXT_STATS", "text-stats", "text_stats"),
    ("HOSTILE", "warden-guest-hostile", "hostile"),
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
        // Host-only flags must not leak into the guest build.
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
            "building the wasm guests failed ({status}); is the target installed? run `rustup target add {TARGET}`"
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
    std::fs::write(out_dir.join("artifacts.rs"), consts).expect("write artifacts.rs");
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
