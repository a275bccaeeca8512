//! `warden mcp` driven by the official MCP Python SDK (`mcp` on PyPI, pinned
//! in scripts/requirements-dev.txt), over stdio and over streamable HTTP. The
//! scenario and its assertions are in tests/mcp/suite.py.

use std::path::PathBuf;
use std::process::Command;

use warden_tests::artifacts::{FS, HELLO, HOSTILE};

/// The Python with the MCP SDK that `scripts/dev setup` prepares.
fn python() -> PathBuf {
    let python = warden_tests::python();
    let has_sdk = Command::new(&python)
        .args(["-c", "import mcp.client.session"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_sdk,
        "{} cannot import the MCP Python SDK; run `scripts/dev setup` (or point WARDEN_PYTHON at a Python with `pip install -r scripts/requirements-dev.txt`)",
        python.display()
    );
    python
}

fn run_suite(transport: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("ok.txt"), "inside").unwrap();
    let canary = dir.path().join("canary.txt");
    std::fs::write(&canary, "CANARY-mcp-4e1b").unwrap();
    let suite = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/mcp/suite.py");
    let out = Command::new(python())
        .arg(suite)
        .args([
            "--transport",
            transport,
            "--warden",
            env!("CARGO_BIN_EXE_warden"),
        ])
        .args(["--hello", HELLO, "--fs", FS, "--hostile", HOSTILE])
        .arg("--data")
        .arg(&data)
        .arg("--canary")
        .arg(&canary)
        .arg("--data-dir")
        .arg(dir.path().join("warden-data"))
        .output()
        .expect("run the MCP suite");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "MCP suite over {transport} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("mcp suite ({transport}): ok")),
        "{stdout}"
    );
}

#[test]
fn the_official_python_client_over_stdio() {
    run_suite("stdio");
}

#[test]
fn the_official_python_client_over_streamable_http() {
    run_suite("http");
}

/// A token the operator chose must be a real secret; a short one is bad
/// input, before anything listens.
#[test]
fn a_weak_token_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "short\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "mcp",
            "--plugin",
            HELLO,
            "--http",
            "127.0.0.1:0",
            "--token-file",
        ])
        .arg(&token)
        .env("WARDEN_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 16"), "{stderr}");
}
