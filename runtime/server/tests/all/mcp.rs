//! `/v1/mcp` driven by the official MCP Python SDK (`mcp` on PyPI, pinned in
//! scripts/requirements-dev.txt); the scenario is tests/mcp/tenants.py.

use std::path::PathBuf;
use std::process::Command;

use warden_tests::artifacts::{HELLO, HOSTILE};

use crate::{Tenant, TestServer};

pub(crate) fn python() -> PathBuf {
    std::env::var_os("WARDEN_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/warden/venv/bin/python"))
        })
        .expect("HOME or WARDEN_PYTHON is set")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_has_its_own_tools_and_sessions_over_mcp() {
    let acme = Tenant {
        plugins: &["hello"],
        ..Tenant::new("acme")
    };
    let bolt = Tenant {
        plugins: &["hostile"],
        ..Tenant::new("bolt")
    };
    let (server, keys) = TestServer::start(&[HELLO, HOSTILE], &[acme, bolt]).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/mcp/tenants.py");
    let url = format!("{}/v1/mcp", server.base);
    let mut command = Command::new(python());
    command
        .arg(script)
        .args(["--url", &url, "--acme", &keys[0], "--bolt", &keys[1]]);
    // The server runs on this runtime's threads meanwhile.
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run the MCP tenant suite");
    assert!(
        out.status.success(),
        "MCP tenant suite failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
