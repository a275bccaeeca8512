//! Keys, scopes, tool calls, bad bodies, quotas and the OpenAPI document.

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_server::Scope;
use warden_server::key::{KeyHasher, KeyRecord, NewKey};
use warden_server::operator::{load_or_create_secret, now, server_dir};
use warden_server::tenant::Quotas;
use warden_tests::artifacts::{FS, HELLO, HOSTILE};

use crate::{Tenant, TestServer, assert_error, key};

#[tokio::test]
async fn the_key_decides_who_calls_and_what_it_may_do() {
    let (server, keys) = TestServer::start(&[HELLO], &[Tenant::new("acme")]).await;
    let acme = &keys[0];

    let none = server.get("/v1/tools", None).await;
    assert_error(
        &none,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Authorization: Bearer",
    );
    let malformed = server.get("/v1/tools", Some("nonsense")).await;
    assert_error(
        &malformed,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "not a warden API key",
    );
    for wrong in [
        NewKey::generate().token,
        // The right id with another secret.
        format!("{}{}", &acme[..21], "0".repeat(64)),
    ] {
        let answer = server.get("/v1/tools", Some(&wrong)).await;
        assert_error(
            &answer,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "not valid",
        );
    }

    let operator = server.operator();
    let reader = key(&operator, Some("acme"), &[Scope::RunsRead]).await;
    let answer = server.get("/v1/tools", Some(&reader)).await;
    assert_error(
        &answer,
        StatusCode::FORBIDDEN,
        "forbidden",
        "lacks scope tools:call",
    );

    let (status, tools) = server.get("/v1/tools", Some(acme)).await;
    assert_eq!(status, StatusCode::OK, "{tools}");
    assert_eq!(tools[0]["name"], json!("hello__greet"));
    assert_eq!(tools[0]["input_schema"]["type"], json!("object"));

    // Revoked and expired keys are refused like unknown ones.
    let id = acme[4..20].to_string();
    operator
        .revoke_key(&id, None, warden_server::operator::Actor::Shell)
        .await
        .unwrap();
    let answer = server.get("/v1/tools", Some(acme)).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "revoked");

    let secret = load_or_create_secret(&server_dir(server.data.path()).join("secret")).unwrap();
    let expired = NewKey::generate();
    operator
        .control()
        .add_key(&KeyRecord {
            id: expired.id.clone(),
            tenant: Some("acme".into()),
            hash: KeyHasher::new(&secret).hash(expired.secret()),
            scopes: vec![Scope::ToolsCall],
            created: now() - 100,
            expires: Some(now() - 1),
            revoked: None,
            label: None,
        })
        .await
        .unwrap();
    let answer = server.get("/v1/tools", Some(&expired.token)).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "expired");
}

#[tokio::test]
async fn a_call_answers_its_outcome_with_usage() {
    let tenant = Tenant {
        plugins: &["hello", "hostile"],
        ..Tenant::new("acme")
    };
    let (server, keys) = TestServer::start(&[HELLO, HOSTILE], &[tenant]).await;
    let acme = &keys[0];

    let (status, body) = server
        .call(acme, "hello__greet", json!({"name": "Ada"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], json!("result"), "{body}");
    assert_eq!(body["result"]["message"], json!("Hello, Ada!"));
    assert!(body["usage"]["fuel"].as_u64().unwrap() > 0, "{body}");

    let (_, body) = server
        .call(acme, "hello__greet", json!({"name": " "}))
        .await;
    assert_eq!(body["outcome"], json!("tool-error"), "{body}");
    assert_eq!(body["kind"], json!("invalid-arguments"), "{body}");

    let (_, body) = server.call(acme, "hostile__spin", json!({})).await;
    assert_eq!(body["outcome"], json!("limit"), "{body}");
    assert!(
        ["fuel", "deadline"].contains(&body["limit"].as_str().unwrap()),
        "{body}"
    );

    let (_, body) = server.call(acme, "hostile__panic", json!({})).await;
    assert_eq!(body["outcome"], json!("trap"), "{body}");

    let answer = server.call(acme, "hello__nothing", json!({})).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not-found", "GET /v1/tools");

    // Every call is in the tenant's audit log, with its outcome.
    let (status, entries) = server.get("/v1/audit", Some(acme)).await;
    assert_eq!(status, StatusCode::OK, "{entries}");
    let outcomes: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == json!("tool.call"))
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["ok", "tool-error", "limit", "trap"]);
    let (_, verified) = server.get("/v1/audit/verify", Some(acme)).await;
    assert_eq!(verified["ok"], json!(true), "{verified}");
}

#[tokio::test]
async fn bad_bodies_are_4xx_that_say_what_was_wrong() {
    let (server, keys) = TestServer::start(&[HELLO], &[Tenant::new("acme")]).await;
    let acme = &keys[0];
    let url = format!("{}/v1/tools/hello__greet/call", server.base);
    let send = |body: Vec<u8>, kind: &'static str| {
        server
            .client
            .post(&url)
            .bearer_auth(acme)
            .header("content-type", kind)
            .body(body)
            .send()
    };
    let cases: Vec<(Vec<u8>, &str, StatusCode, &str, &str)> = vec![
        (
            b"{\"name\":".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "bad-request",
            "not JSON",
        ),
        (
            b"[1]".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "bad-request",
            "expected a map",
        ),
        (
            vec![0xff, 0xfe],
            "application/json",
            StatusCode::BAD_REQUEST,
            "bad-request",
            "not UTF-8",
        ),
        (
            b"{}".to_vec(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "application/json",
        ),
        (
            format!("{{\"name\":\"{}\"}}", "x".repeat(2 << 20)).into_bytes(),
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "bytes",
        ),
        (
            ("[".repeat(100) + &"]".repeat(100)).into_bytes(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "bad-request",
            "nests deeper",
        ),
    ];
    for (body, kind, status, code, says) in cases {
        let answer = crate::answer(send(body, kind).await.unwrap()).await;
        assert_error(&answer, status, code, says);
    }
    let answer = server.get("/v1/nowhere", Some(acme)).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not-found", "openapi.json");
}

#[tokio::test]
async fn a_tenant_past_its_rate_or_its_calls_is_told_to_come_back() {
    let limited = Tenant {
        quotas: Quotas {
            requests_per_second: 1,
            burst: 2,
            ..Quotas::default()
        },
        ..Tenant::new("acme")
    };
    let narrow = Tenant {
        plugins: &["hostile"],
        quotas: Quotas {
            concurrent_calls: 1,
            queued_calls: 0,
            ..Quotas::default()
        },
        ..Tenant::new("bolt")
    };
    let (server, keys) = TestServer::start(&[HELLO, HOSTILE], &[limited, narrow]).await;
    for _ in 0..2 {
        assert_eq!(
            server.get("/v1/tools", Some(&keys[0])).await.0,
            StatusCode::OK
        );
    }
    let response = server
        .client
        .get(format!("{}/v1/tools", server.base))
        .bearer_auth(&keys[0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_string();
    assert_eq!(header("retry-after"), "1");
    assert_eq!(header("ratelimit-limit"), "2");
    assert_eq!(header("ratelimit-remaining"), "0");
    // Another tenant's bucket is its own.
    assert_eq!(
        server.get("/v1/tools", Some(&keys[1])).await.0,
        StatusCode::OK
    );

    // bolt may run one call and queue none: a second at once is refused.
    let slow = server.call(&keys[1], "hostile__sleep", json!({"ms": 1500}));
    let quick = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        server
            .call(&keys[1], "hostile__sleep", json!({"ms": 1}))
            .await
    };
    let (slow, quick) = tokio::join!(slow, quick);
    assert_eq!(slow.1["outcome"], json!("result"), "{}", slow.1);
    assert_error(
        &quick,
        StatusCode::TOO_MANY_REQUESTS,
        "busy",
        "1 calls running",
    );
}

#[tokio::test]
async fn the_openapi_document_describes_the_api_and_needs_no_key() {
    let (server, _) = TestServer::start(&[HELLO], &[]).await;
    let (status, doc) = server.get("/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/v1/tools",
        "/v1/tools/{name}/call",
        "/v1/audit",
        "/v1/tenants",
        "/v1/keys/{id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        json!("bearer")
    );
    let (status, text) = (
        server
            .client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap()
            .status(),
        Value::Null,
    );
    assert_eq!((status, text), (StatusCode::OK, Value::Null));
    let ready = server
        .client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test]
async fn code_runs_in_a_fresh_sandbox_under_the_tenants_limits() {
    let runner = Tenant {
        scopes: &[Scope::Exec],
        ..Tenant::new("acme")
    };
    let (server, keys) = TestServer::start(&[], &[runner, Tenant::new("bolt")]).await;
    let acme = &keys[0];
    let server = &server;
    let run = |body: Value| async move { server.post("/v1/exec", Some(acme), &body).await };

    let (status, body) = run(json!({
        "language": "python",
        "code": "import sys\nprint(open('data.txt').read().strip(), sys.argv[1:], sys.stdin.read())",
        "files": {"data.txt": "from a file"},
        "args": ["x"],
        "stdin": "in",
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stdout"], json!("from a file ['x'] in\n"), "{body}");
    assert_eq!(body["exit_code"], json!(0), "{body}");

    // Nothing of the host is there.
    let (_, body) =
        run(json!({"language": "python", "code": "print(open('/etc/passwd').read())"})).await;
    assert_ne!(body["exit_code"], json!(0), "{body}");
    assert!(
        !body["stdout"].as_str().unwrap().contains("root:"),
        "{body}"
    );

    // A request may ask for less than the tenant's limits.
    let (_, body) =
        run(json!({"language": "js", "code": "for(;;){}", "limits": {"fuel": 1000000}})).await;
    assert_eq!(body["limit"], json!("fuel"), "{body}");
    assert_eq!(body["exit_code"], Value::Null, "{body}");

    let answer = run(json!({"language": "cobol", "code": "x"})).await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "bad-request",
        "use \"python\" or \"js\"",
    );
    let answer = run(json!({"language": "python", "code": "x", "files": {"../x": "y"}})).await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "bad-request",
        "without `..`",
    );
    let answer = run(json!({"language": "python", "code": "x", "limits": {"fuel": 0}})).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "bad-request", "limits");
    let answer = server
        .post(
            "/v1/exec",
            Some(&keys[1]),
            &json!({"language": "python", "code": "1"}),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::FORBIDDEN,
        "forbidden",
        "lacks scope exec",
    );
}

#[tokio::test]
async fn a_tenants_files_stop_at_its_workspace_quota_even_when_calls_race() {
    const RW: &str =
        "version = 1\n[grant]\ndirs = [{ host = \"data\", guest = \"/data\", mode = \"rw\" }]\n";
    let acme = Tenant {
        policy: Some(RW),
        plugins: &["fs"],
        quotas: Quotas {
            workspace_mib: Some(1),
            ..Quotas::default()
        },
        ..Tenant::new("acme")
    };
    let bolt = Tenant {
        policy: Some(RW),
        plugins: &["fs"],
        ..Tenant::new("bolt")
    };
    let (server, keys) = TestServer::start(&[FS], &[acme, bolt]).await;
    let (acme, bolt) = (&keys[0], &keys[1]);
    let server = &server;
    let write = |key: &str, name: &str| {
        let key = key.to_string();
        let arguments = json!({
            "path": format!("/data/{name}"),
            "content": "x".repeat(500 * 1024),
        });
        async move { server.call(&key, "fs__write_file", arguments).await }
    };
    let files = server.data.path().join("tenants/acme/files/data");
    let on_disk = || -> u64 {
        std::fs::read_dir(&files)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };

    // Three writes of 500 KiB at once against 1 MiB: at most two fit (the
    // guest writes in chunks, so racing writes may each get part of the
    // room); the others fail as a full disk (a tool error), and the disk
    // holds no more than the quota.
    let answers = futures::future::join_all(["a", "b", "c"].map(|name| write(acme, name))).await;
    let written = answers
        .iter()
        .filter(|(status, body)| *status == StatusCode::OK && body["outcome"] == json!("result"))
        .count();
    assert!(written <= 2, "{answers:?}");
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        if body["outcome"] != json!("result") {
            assert_eq!(body["outcome"], json!("tool-error"), "{body}");
        }
    }
    assert!(on_disk() <= 1024 * 1024, "{} bytes", on_disk());
    let (status, usage) = server.get("/v1/usage", Some(acme)).await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert_eq!(
        usage["holding"]["workspace_bytes"]["quota"],
        json!(1024 * 1024)
    );

    // Another tenant's calls spend nothing of it.
    for name in ["a", "b", "c"] {
        let (_, body) = write(bolt, name).await;
        assert_eq!(body["outcome"], json!("result"), "{body}");
    }

    // Files deleted free their room once the server measures again.
    for entry in std::fs::read_dir(&files).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (_, again) = write(acme, "e").await;
    assert_eq!(again["outcome"], json!("result"), "{again}");
}
