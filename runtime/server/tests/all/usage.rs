//! Daily quotas, usage and metrics: calls running together never use more
//! fuel than the tenant's day has; what was used shows in `/v1/usage` and
//! in `/metrics`, which only an operator key reads.

use reqwest::StatusCode;
use serde_json::json;
use warden_server::Scope;
use warden_server::tenant::Quotas;
use warden_tests::artifacts::{HELLO, HOSTILE};

use crate::{Tenant, TestServer, assert_error, key};

const DAY: u64 = 50_000_000;

#[tokio::test]
async fn calls_together_never_spend_more_fuel_than_the_day_has() {
    let acme = Tenant {
        plugins: &["hostile", "hello"],
        quotas: Quotas {
            concurrent_calls: 4,
            fuel_per_day: Some(DAY),
            ..Quotas::default()
        },
        ..Tenant::new("acme")
    };
    let bolt = Tenant {
        plugins: &["hello"],
        ..Tenant::new("bolt")
    };
    let (server, keys) = TestServer::start(&[HELLO, HOSTILE], &[acme, bolt]).await;
    let (acme, bolt) = (&keys[0], &keys[1]);

    // Four spinning calls at once: together they get the day's fuel, and
    // no more.
    let spins = (0..4).map(|_| server.call(acme, "hostile__spin", json!({})));
    let answers = futures::future::join_all(spins).await;
    let mut used = 0;
    for (status, body) in &answers {
        match *status {
            StatusCode::OK => {
                assert_eq!(body["outcome"], json!("limit"), "{body}");
                assert_eq!(body["limit"], json!("fuel"), "{body}");
                used += body["usage"]["fuel"].as_u64().unwrap();
            }
            // The first call holds the day: the others are told to come
            // back when it ends.
            _ => assert_error(
                &(*status, body.clone()),
                StatusCode::TOO_MANY_REQUESTS,
                "quota-spent",
                "held by calls running now",
            ),
        }
    }
    assert!(used <= DAY, "{used} fuel used of a day of {DAY}");
    assert!(used >= DAY - 1_000_000, "the day's fuel was used: {used}");

    // The day is spent: even a small call waits for tomorrow.
    let response = server
        .client
        .post(format!("{}/v1/tools/hello__greet/call", server.base))
        .bearer_auth(acme)
        .json(&json!({"name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry), "until tomorrow: {retry}");
    // Another tenant's day is its own.
    let (status, body) = server
        .call(bolt, "hello__greet", json!({"name": "Bo"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let reader = key(&server.operator(), Some("acme"), &[Scope::AuditRead]).await;
    let (status, usage) = server.get("/v1/usage?days=7", Some(&reader)).await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert_eq!(usage["used_today"]["fuel"], json!(used), "{usage}");
    assert_eq!(usage["left_today"]["fuel"], json!(DAY - used), "{usage}");
    assert_eq!(usage["left_today"]["tokens"], json!(null), "{usage}");
    let rows = usage["days"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{usage}");
    assert_eq!(rows[0]["kind"], json!("tool"));
    assert_eq!(rows[0]["day"], usage["today"]);
    let bad = server.get("/v1/usage?days=0", Some(&reader)).await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "bad-request", "1 to 366");

    // Metrics: an operator key reads them, a tenant's key does not.
    let metrics = |key: Option<String>| {
        let mut request = server.client.get(format!("{}/metrics", server.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    assert_eq!(
        metrics(None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        metrics(Some(acme.clone())).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let admin = key(&server.operator(), None, &[Scope::Admin]).await;
    let response = metrics(Some(admin)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let granted = answers.iter().filter(|a| a.0 == StatusCode::OK).count();
    for line in [
        format!("warden_calls_total{{tenant=\"acme\",kind=\"tool\",outcome=\"limit\"}} {granted}"),
        "warden_calls_total{tenant=\"bolt\",kind=\"tool\",outcome=\"ok\"} 1".to_string(),
        format!(
            "warden_rate_limited_requests_total{{tenant=\"acme\",reason=\"quota\"}} {}",
            5 - granted
        ),
        "warden_sandboxes_in_use{tenant=\"acme\"} 0".to_string(),
        "warden_queue_depth{tenant=\"acme\"} 0".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert!(
        text.contains("warden_call_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(
        text.contains("warden_http_responses_total{code=\"429\"}"),
        "{text}"
    );
}
