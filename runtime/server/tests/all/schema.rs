//! The API against its own OpenAPI document, by schemathesis (PyPI, pinned
//! in scripts/requirements-dev.txt): generated requests with each tenant's
//! key and an operator's get no server error and no answer the document
//! does not describe. Then every kind of id one tenant made, asked for
//! with the other's key, answers exactly like an id that does not exist.

use std::path::PathBuf;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;
use warden_server::Scope;
use warden_server::tenant::Quotas;
use warden_tests::artifacts::{CALLER, HELLO, PLUGIN_DIR};

use crate::{Tenant, TestServer, key};

const POLICY: &str = "version = 1\n[grant]\nmemory = [\"notes:rw\"]\n";
const EVERYTHING: &[Scope] = &[
    Scope::ToolsCall,
    Scope::Exec,
    Scope::RunsRead,
    Scope::RunsWrite,
    Scope::MemoryRead,
    Scope::MemoryWrite,
    Scope::AuditRead,
];

/// schemathesis's `st`, beside the venv's python.
fn schemathesis() -> PathBuf {
    crate::mcp::python().with_file_name("st")
}

/// Runs schemathesis against `server` with `key`; panics with its report
/// when it finds a problem.
async fn fuzz(server: &TestServer, key: &str, who: &str) {
    // It keeps a cache in its working directory.
    let scratch = tempfile::tempdir().unwrap();
    let mut command = Command::new(schemathesis());
    command
        .current_dir(scratch.path())
        .arg("run")
        .arg(format!("{}/v1/openapi.json", server.base))
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "25", "--workers", "2", "--seed", "7"])
        .args(["--suppress-health-check", "all"])
        .args(["--request-timeout", "30"])
        .env("NO_COLOR", "1");
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run schemathesis (scripts/dev setup installs it)");
    eprintln!(
        "schemathesis with {who}'s key:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems with {who}'s key\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_to_its_document_and_ids_stay_with_their_tenant() {
    let (_embeddings, _store, memory) = crate::memory::store();
    let tenant = |name| Tenant {
        policy: Some(POLICY),
        plugins: &["hello", "caller"],
        scopes: EVERYTHING,
        // Generated requests should reach the handlers, not the rate limit.
        quotas: Quotas {
            requests_per_second: 10_000,
            burst: 10_000,
            ..Quotas::default()
        },
        ..Tenant::new(name)
    };
    let dirs = vec![
        PLUGIN_DIR.into(),
        std::path::Path::new(CALLER).parent().unwrap().to_path_buf(),
    ];
    let (server, keys) = TestServer::start_with(
        &[HELLO, CALLER],
        &[tenant("acme"), tenant("bolt")],
        dirs,
        Some(memory),
    )
    .await;
    let (acme, bolt) = (&keys[0], &keys[1]);

    // What acme owns: a run, a memory entry, a key.
    let (status, run) = crate::answer(
        server
            .client
            .post(format!("{}/v1/runs", server.base))
            .bearer_auth(acme)
            .header("content-type", "application/toml")
            .body(
                "version = 1\nname = \"one\"\n[roles.caller]\nplugin = \"caller\"\n\
                 [[tasks]]\nid = \"a\"\nrole = \"caller\"\nprompt = \"p\"\n",
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let run = run["id"].as_str().unwrap().to_string();
    let (status, entry) = server
        .post(
            "/v1/memory/notes",
            Some(acme),
            &json!({"content": "acme's"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    let entry = entry["id"].as_str().unwrap().to_string();

    fuzz(&server, acme, "acme").await;
    fuzz(&server, bolt, "bolt").await;

    // Each id of acme's, with bolt's key, next to an id nobody has.
    let none = "20991231-000000-0000";
    let nobody = "0".repeat(32);
    let asks: Vec<(&str, String, String)> = vec![
        ("GET", format!("/v1/runs/{run}"), format!("/v1/runs/{none}")),
        (
            "GET",
            format!("/v1/runs/{run}/events"),
            format!("/v1/runs/{none}/events"),
        ),
        (
            "POST",
            format!("/v1/runs/{run}/cancel"),
            format!("/v1/runs/{none}/cancel"),
        ),
        (
            "GET",
            format!("/v1/memory/notes/{entry}"),
            format!("/v1/memory/notes/{nobody}"),
        ),
        (
            "DELETE",
            format!("/v1/memory/notes/{entry}"),
            format!("/v1/memory/notes/{nobody}"),
        ),
    ];
    for (method, theirs, missing) in asks {
        let ask = |path: String| {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            server
                .client
                .request(method, format!("{}{path}", server.base))
                .bearer_auth(bolt)
                .send()
        };
        let theirs = crate::answer(ask(theirs.clone()).await.unwrap()).await;
        let missing = crate::answer(ask(missing).await.unwrap()).await;
        assert_eq!(theirs.0, StatusCode::NOT_FOUND, "{method} {}", theirs.1);
        assert_eq!(
            theirs, missing,
            "{method}: another tenant's id looks like none"
        );
    }
    // And acme still has them.
    let (status, _) = server
        .get(&format!("/v1/memory/notes/{entry}"), Some(acme))
        .await;
    assert_eq!(status, StatusCode::OK);

    // The admin API with an operator key, last: it may remove tenants.
    let admin = key(&server.operator(), None, &[Scope::Admin]).await;
    fuzz(&server, &admin, "an operator").await;
}
