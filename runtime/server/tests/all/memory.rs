//! Memory over HTTP on a real LanceDB store (embeddings from a loopback
//! server speaking the OpenAI API): every operation, through the tenant's
//! namespace grant, in the tenant's own space.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use warden_memory::embed::OpenAiEmbedder;
use warden_memory::{Limits, Memory};
use warden_server::Scope;
use warden_server::tenant::Quotas;
use warden_tests::fake_llm::{EMBEDDING_DIMENSION, FakeLlm};

use crate::{Tenant, TestServer, assert_error};

const POLICY: &str = "version = 1\n[grant]\nmemory = [\"notes:rw\", \"shared\"]\n";
/// Two namespaces the tenant may write.
const TWO: &str = "version = 1\n[grant]\nmemory = [\"notes:rw\", \"drafts:rw\"]\n";
const SCOPES: &[Scope] = &[Scope::MemoryRead, Scope::MemoryWrite];

/// A real LanceDB store in a temp dir, its embeddings from a loopback
/// server speaking the OpenAI API; keep the first two alive while using it.
pub(crate) fn store() -> (FakeLlm, tempfile::TempDir, Arc<Memory>) {
    let embeddings = FakeLlm::start();
    let dir = tempfile::tempdir().unwrap();
    let embedder = OpenAiEmbedder::new(
        &format!("{}/v1", embeddings.origin()),
        None,
        "fake-embed",
        EMBEDDING_DIMENSION,
        Duration::from_secs(5),
    )
    .unwrap();
    let memory = Arc::new(Memory::with_embedder(
        dir.path(),
        Arc::new(embedder),
        Limits::default(),
    ));
    (embeddings, dir, memory)
}

#[tokio::test]
async fn a_tenant_uses_only_the_namespaces_its_policy_grants() {
    let (_embeddings, _store, memory) = store();
    let acme = Tenant {
        policy: Some(POLICY),
        scopes: SCOPES,
        ..Tenant::new("acme")
    };
    let bolt = Tenant {
        policy: Some(POLICY),
        scopes: SCOPES,
        ..Tenant::new("bolt")
    };
    let (server, keys) = TestServer::start_with(&[], &[acme, bolt], Vec::new(), Some(memory)).await;
    let (acme, bolt) = (&keys[0], &keys[1]);

    let (status, stored) = server
        .post(
            "/v1/memory/notes",
            Some(acme),
            &json!({"content": "the build uses mold", "meta": {"kind": "note", "tags": ["build"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    let id = stored["id"].as_str().unwrap().to_string();
    let (status, entry) = server
        .get(&format!("/v1/memory/notes/{id}"), Some(acme))
        .await;
    assert_eq!(status, StatusCode::OK, "{entry}");
    assert_eq!(entry["content"], json!("the build uses mold"));

    let (_, hits) = server
        .post(
            "/v1/memory/notes/search",
            Some(acme),
            &json!({"query": "mold", "mode": "text"}),
        )
        .await;
    assert_eq!(hits[0]["entry"]["id"], json!(id), "{hits}");
    let (_, found) = server
        .post(
            "/v1/memory/notes/find",
            Some(acme),
            &json!({"filter": {"tags": ["build"]}}),
        )
        .await;
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    let updated = server
        .client
        .patch(format!("{}/v1/memory/notes/{id}", server.base))
        .bearer_auth(acme)
        .json(&json!({"content": "the build uses lld"}))
        .send()
        .await
        .unwrap();
    let (status, entry) = crate::answer(updated).await;
    assert_eq!(
        (status, entry["content"].clone()),
        (StatusCode::OK, json!("the build uses lld"))
    );

    // bolt has the same grant, in its own space: acme's entry is not there.
    let theirs = server
        .get(&format!("/v1/memory/notes/{id}"), Some(bolt))
        .await;
    assert_error(
        &theirs,
        StatusCode::NOT_FOUND,
        "not-found",
        "no such memory",
    );
    let (_, bolt_found) = server
        .post("/v1/memory/notes/find", Some(bolt), &json!({}))
        .await;
    assert_eq!(bolt_found, json!([]));

    // Not granted, or granted read-only, answers like nothing there.
    let secret = server
        .post("/v1/memory/secret", Some(acme), &json!({"content": "x"}))
        .await;
    assert_error(
        &secret,
        StatusCode::NOT_FOUND,
        "not-found",
        "no memory namespace \"secret\"",
    );
    let read_only = server
        .post("/v1/memory/shared", Some(acme), &json!({"content": "x"}))
        .await;
    assert_error(&read_only, StatusCode::NOT_FOUND, "not-found", "writable");
    let bad = server
        .post(
            "/v1/memory/notes",
            Some(acme),
            &json!({"content": "x", "meta": {"colour": "red"}}),
        )
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "bad-request", "colour");

    let deleted = server
        .client
        .delete(format!("{}/v1/memory/notes/{id}", server.base))
        .bearer_auth(acme)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = server
        .get(&format!("/v1/memory/notes/{id}"), Some(acme))
        .await;
    assert_error(&gone, StatusCode::NOT_FOUND, "not-found", "no such memory");
}

#[tokio::test]
async fn a_tenants_memories_stop_at_its_quota_even_when_stores_race() {
    let (_embeddings, _store, memory) = store();
    let acme = Tenant {
        policy: Some(TWO),
        scopes: SCOPES,
        quotas: Quotas {
            memory_entries: Some(3),
            ..Quotas::default()
        },
        ..Tenant::new("acme")
    };
    let bolt = Tenant {
        policy: Some(TWO),
        scopes: SCOPES,
        ..Tenant::new("bolt")
    };
    let (server, keys) = TestServer::start_with(&[], &[acme, bolt], Vec::new(), Some(memory)).await;
    let (acme, bolt) = (&keys[0], &keys[1]);

    // Twelve stores at once into two namespaces: the quota counts both, and
    // exactly three take its places.
    let server = &server;
    let stores = (0..12).map(|i| async move {
        let namespace = if i % 2 == 0 { "notes" } else { "drafts" };
        server
            .post(
                &format!("/v1/memory/{namespace}"),
                Some(acme),
                &json!({ "content": format!("note {i}") }),
            )
            .await
    });
    let answers = futures::future::join_all(stores).await;
    let mut stored = Vec::new();
    for answer in &answers {
        if answer.0 == StatusCode::CREATED {
            stored.push(answer.1["id"].as_str().unwrap().to_string());
        } else {
            assert_error(
                answer,
                StatusCode::FORBIDDEN,
                "forbidden",
                "its quota (memory-entries = 3)",
            );
        }
    }
    assert_eq!(stored.len(), 3, "{answers:?}");
    let (_, found) = server
        .post("/v1/memory/notes/find", Some(acme), &json!({}))
        .await;
    let (_, drafts) = server
        .post("/v1/memory/drafts/find", Some(acme), &json!({}))
        .await;
    assert_eq!(
        found.as_array().unwrap().len() + drafts.as_array().unwrap().len(),
        3,
        "{found} {drafts}"
    );

    // Another tenant's memories are its own to count.
    let (status, _) = server
        .post("/v1/memory/notes", Some(bolt), &json!({"content": "mine"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // A delete gives its place back.
    let first = stored.pop().unwrap();
    let namespace = if found.to_string().contains(&first) {
        "notes"
    } else {
        "drafts"
    };
    let deleted = server
        .client
        .delete(format!("{}/v1/memory/{namespace}/{first}", server.base))
        .bearer_auth(acme)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (status, body) = server
        .post("/v1/memory/notes", Some(acme), &json!({"content": "again"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let full = server
        .post(
            "/v1/memory/notes",
            Some(acme),
            &json!({"content": "one more"}),
        )
        .await;
    assert_error(
        &full,
        StatusCode::FORBIDDEN,
        "forbidden",
        "holds 3 memories",
    );
}
