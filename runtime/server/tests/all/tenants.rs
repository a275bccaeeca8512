//! Tenants apart, and tenants and keys managed over the admin API.

use reqwest::StatusCode;
use serde_json::json;
use warden_server::Scope;
use warden_tests::artifacts::{HELLO, HOSTILE};

use crate::{Tenant, TestServer, assert_error, key};

#[tokio::test]
async fn a_tenant_sees_only_its_own_tools_and_log() {
    let acme = Tenant {
        plugins: &["hello"],
        ..Tenant::new("acme")
    };
    let bolt = Tenant {
        plugins: &["hello", "hostile"],
        ..Tenant::new("bolt")
    };
    let (server, keys) = TestServer::start(&[HELLO, HOSTILE], &[acme, bolt]).await;
    let (_, tools) = server.get("/v1/tools", Some(&keys[0])).await;
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello__greet"]);
    // A tool of bolt's plugins answers acme exactly like one that does
    // not exist.
    let theirs = server.call(&keys[0], "hostile__spin", json!({})).await;
    let nobodys = server.call(&keys[0], "hostile__nothing", json!({})).await;
    assert_error(&theirs, StatusCode::NOT_FOUND, "not-found", "no tool");
    assert_eq!(
        theirs.1["error"]["message"]
            .as_str()
            .unwrap()
            .replace("spin", "X"),
        nobodys.1["error"]["message"]
            .as_str()
            .unwrap()
            .replace("nothing", "X")
    );
    let (_, body) = server
        .call(&keys[1], "hello__greet", json!({"name": "bolt"}))
        .await;
    assert_eq!(body["outcome"], json!("result"), "{body}");
    // bolt's call is in bolt's log, not acme's.
    let (_, acme_log) = server.get("/v1/audit", Some(&keys[0])).await;
    let (_, bolt_log) = server.get("/v1/audit", Some(&keys[1])).await;
    let calls = |log: &serde_json::Value| {
        log.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == json!("tool.call"))
            .count()
    };
    assert_eq!((calls(&acme_log), calls(&bolt_log)), (0, 1));
    // Admin endpoints are not a tenant's.
    let answer = server.get("/v1/tenants", Some(&keys[0])).await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "scope admin");
}

#[tokio::test]
async fn an_operator_key_manages_tenants_and_keys_and_acts_for_none() {
    let (server, _) = TestServer::start(&[HELLO], &[]).await;
    let admin = key(&server.operator(), None, &[Scope::Admin]).await;

    let (status, tenant) = server
        .post(
            "/v1/tenants",
            Some(&admin),
            &json!({"name": "acme", "plugins": ["hello"], "quotas": {
                "requests-per-second": 10, "burst": 20, "concurrent-calls": 2, "queued-calls": 4
            }}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    let again = server
        .post("/v1/tenants", Some(&admin), &json!({"name": "acme"}))
        .await;
    assert_error(&again, StatusCode::CONFLICT, "conflict", "exists");
    let unknown_field = server
        .post(
            "/v1/tenants",
            Some(&admin),
            &json!({"name": "x", "root": "/"}),
        )
        .await;
    assert_error(
        &unknown_field,
        StatusCode::BAD_REQUEST,
        "bad-request",
        "unknown field `root`",
    );
    let escape = server
        .post(
            "/v1/tenants",
            Some(&admin),
            &json!({"name": "evil", "policy": "version = 1\n[grant]\ndirs = [{ host = \"/etc\" }]\n"}),
        )
        .await;
    assert_error(
        &escape,
        StatusCode::BAD_REQUEST,
        "bad-request",
        "outside the tenant's files",
    );
    let bad_name = server
        .post("/v1/tenants", Some(&admin), &json!({"name": "../x"}))
        .await;
    assert_error(
        &bad_name,
        StatusCode::BAD_REQUEST,
        "bad-request",
        "not a tenant name",
    );

    let (status, created) = server
        .post(
            "/v1/keys",
            Some(&admin),
            &json!({"tenant": "acme", "scopes": ["tools:call"], "label": "ci"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let acme = created["key"].as_str().unwrap().to_string();
    let (status, _) = server.get("/v1/tools", Some(&acme)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = server.get("/v1/keys?tenant=acme", Some(&admin)).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert!(listed[0].get("hash").is_none(), "{listed}");

    let admin_scope = server
        .post(
            "/v1/keys",
            Some(&admin),
            &json!({"tenant": "acme", "scopes": ["admin"]}),
        )
        .await;
    assert_error(
        &admin_scope,
        StatusCode::BAD_REQUEST,
        "bad-request",
        "cannot have scope admin",
    );
    let for_nobody = server
        .post(
            "/v1/keys",
            Some(&admin),
            &json!({"tenant": "nobody", "scopes": ["exec"]}),
        )
        .await;
    assert_error(&for_nobody, StatusCode::NOT_FOUND, "not-found", "no tenant");

    // An operator key calls no tenant's tools.
    let answer = server.get("/v1/tools", Some(&admin)).await;
    assert_error(
        &answer,
        StatusCode::FORBIDDEN,
        "forbidden",
        "lacks scope tools:call",
    );

    let id = created["info"]["id"].as_str().unwrap();
    let response = server
        .client
        .delete(format!("{}/v1/keys/{id}", server.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let answer = server.get("/v1/tools", Some(&acme)).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "revoked");

    let response = server
        .client
        .delete(format!("{}/v1/tenants/acme", server.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let gone = server.get("/v1/tenants/acme", Some(&admin)).await;
    assert_error(&gone, StatusCode::NOT_FOUND, "not-found", "no tenant");
    // Its data was moved aside; a new acme starts empty.
    assert!(!server.data.path().join("tenants/acme").exists());
}
