//! The `warden` binary end to end: its commands, flags and exit codes, run as
//! a user runs them, against guests built from source.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod cluster;
mod exec;
mod exit_codes;
mod inspect;
mod kits;
mod llm;
mod mcp;
mod memory;
mod policy;
mod registry;
mod runs;
mod serve;

use std::path::Path;
use std::process::{Command, Output};

/// Runs `warden ARGS` in `cwd` with a private data dir.
pub fn warden(cwd: &Path, data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(cwd)
        .env("WARDEN_DATA_DIR", data)
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .expect("run warden")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

/// Asserts the exit code and that stderr says `expected`.
pub fn assert_exit(out: &Output, want: i32, expected: &str, context: &dyn std::fmt::Debug) {
    assert_eq!(code(out), want, "{context:?}: {}", stderr(out));
    assert!(
        stderr(out).contains(expected),
        "{context:?}: {}",
        stderr(out)
    );
}

/// A scratch dir for cwd and one for the data dir.
pub struct Scratch {
    pub cwd: tempfile::TempDir,
    pub data: tempfile::TempDir,
}

/// `warden plugin build NAME` of a Rust project `warden plugin new` wrote in
/// the scratch dir, with the workspace's lock file (so it builds what the
/// workspace builds) and a target dir of its own beside the guests', kept
/// between runs and shared by every test that builds a template.
pub fn build_rust_template(s: &Scratch, name: &str) -> Output {
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"),
        s.cwd.path().join(name).join("Cargo.lock"),
    )
    .expect("copy the workspace's Cargo.lock");
    let target = Path::new(warden_tests::artifacts::RUNTIME_DIR)
        .parent()
        .expect("the runtime dir is in the target dir")
        .join("plugin-new");
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(s.cwd.path())
        .env("WARDEN_DATA_DIR", s.data.path())
        .env("CARGO_TARGET_DIR", &target)
        .args(["plugin", "build", name])
        .output()
        .expect("run warden")
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            cwd: tempfile::tempdir().expect("tempdir"),
            data: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        warden(self.cwd.path(), self.data.path(), args)
    }
}
