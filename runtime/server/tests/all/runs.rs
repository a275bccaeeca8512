//! Runs over HTTP: a real role plugin (`caller`) calling a real tool
//! (`hello`), submitted with an idempotency key, followed as server-sent
//! events across a reconnect, and kept from other tenants.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_server::Scope;
use warden_tests::artifacts::{CALLER, HELLO, HOSTILE, PLUGIN_DIR};

use crate::{Tenant, TestServer, assert_error};

const RUNNER: &[Scope] = &[Scope::RunsWrite, Scope::RunsRead];

fn workflow(spin: u64) -> String {
    format!(
        r#"
version = 1
name = "greetings"
[roles.caller]
plugin = "caller"
tools = ["hello"]
[[tasks]]
id = "a"
role = "caller"
prompt = "greet"
input = {{ calls = [{{ tool = "hello.greet", arguments = {{ name = "Ada" }} }}], spin = {spin} }}
[[tasks]]
id = "b"
role = "caller"
prompt = "greet again"
depends-on = ["a"]
input = {{ calls = [{{ tool = "hello.greet", arguments = {{ name = "Bob" }} }}], spin = {spin} }}
"#
    )
}

/// Task `a` fails its first attempt and has no retries, so the run fails;
/// `b` waits for it.
pub const FLAKY: &str = r#"
version = 1
name = "flaky"
[roles.caller]
plugin = "caller"
tools = ["hello"]
[[tasks]]
id = "a"
role = "caller"
prompt = "greet, failing the first time"
max-retries = 0
input = { calls = [{ tool = "hello.greet", arguments = { name = "Ada" } }], fail_attempts = 1 }
[[tasks]]
id = "b"
role = "caller"
prompt = "greet after a"
depends-on = ["a"]
input = { calls = [{ tool = "hello.greet", arguments = { name = "Bob" } }] }
"#;

async fn start() -> (TestServer, Vec<String>) {
    let acme = Tenant {
        scopes: RUNNER,
        ..Tenant::new("acme")
    };
    let bolt = Tenant {
        scopes: RUNNER,
        ..Tenant::new("bolt")
    };
    let dirs = vec![
        PLUGIN_DIR.into(),
        Path::new(CALLER).parent().unwrap().to_path_buf(),
    ];
    TestServer::start_with_dirs(&[HELLO, CALLER], &[acme, bolt], dirs).await
}

async fn submit(
    server: &TestServer,
    key: &str,
    body: &str,
    idempotency: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = server
        .client
        .post(format!("{}/v1/runs", server.base))
        .bearer_auth(key)
        .header("content-type", "application/toml")
        .body(body.to_string());
    if let Some(k) = idempotency {
        request = request.header("idempotency-key", k);
    }
    crate::answer(request.send().await.unwrap()).await
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<u64>,
    event: String,
    data: Value,
}

/// Reads events until `stop` says so or the stream ends.
async fn events(
    server: &TestServer,
    key: &str,
    run: &str,
    last: Option<u64>,
    stop: impl Fn(&Sse) -> bool,
) -> Vec<Sse> {
    let mut request = server
        .client
        .get(format!("{}/v1/runs/{run}/events", server.base))
        .bearer_auth(key);
    if let Some(last) = last {
        request = request.header("last-event-id", last.to_string());
    }
    let mut response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut buffer = String::new();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while let Some(chunk) = tokio::time::timeout_at(deadline, response.chunk())
        .await
        .expect("events keep coming")
        .unwrap()
    {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, "message".to_string(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().parse().unwrap());
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if data.is_empty() {
                continue; // a keep-alive
            }
            let sse = Sse {
                id,
                event,
                data: serde_json::from_str(&data).unwrap(),
            };
            let done = stop(&sse);
            seen.push(sse);
            if done {
                return seen;
            }
        }
    }
    seen
}

#[tokio::test]
async fn a_run_streams_every_event_once_across_a_reconnect_and_ends_explicitly() {
    let (server, keys) = start().await;
    let acme = &keys[0];
    let body = workflow(2_000_000);
    // The same key sent twice at once starts one run.
    let (first, second) = tokio::join!(
        submit(&server, acme, &body, Some("order-7")),
        submit(&server, acme, &body, Some("order-7"))
    );
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::ACCEPTED],
        "{} {}",
        first.1,
        second.1
    );
    assert_eq!(first.1["id"], second.1["id"]);
    let run = first.1["id"].as_str().unwrap().to_string();
    let other = submit(&server, acme, &workflow(1), Some("order-7")).await;
    assert_error(&other, StatusCode::CONFLICT, "conflict", "another request");

    // Read three events, drop the stream, come back after the third.
    let head = events(&server, acme, &run, None, |e| e.id == Some(3)).await;
    let tail = events(&server, acme, &run, Some(3), |e| e.event == "end").await;
    let ids: Vec<u64> = head.iter().chain(&tail).filter_map(|e| e.id).collect();
    let expected: Vec<u64> = (0..ids.len() as u64).collect();
    assert_eq!(ids, expected, "every event exactly once, in order");
    let end = tail.last().unwrap();
    assert_eq!(end.event, "end");
    assert_eq!(end.data["status"], json!("succeeded"), "{:?}", end.data);
    let kinds: Vec<&str> = head
        .iter()
        .chain(&tail)
        .filter_map(|e| e.data["event"].as_str())
        .collect();
    assert_eq!(kinds.first(), Some(&"run-started"), "{kinds:?}");
    assert!(
        head[0].data.get("workspace").is_none(),
        "the server's paths are not shown"
    );
    assert_eq!(kinds.last(), Some(&"run-finished"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "task-finished").count(),
        2,
        "{kinds:?}"
    );

    // After the end, a new stream replays the journal and ends the same way.
    let again = events(&server, acme, &run, None, |e| e.event == "end").await;
    assert_eq!(again.len(), ids.len() + 1);

    let (status, report) = server.get(&format!("/v1/runs/{run}"), Some(acme)).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["status"], json!("succeeded"), "{report}");
    assert!(
        report.get("workspace").is_none(),
        "the server's paths are not shown: {report}"
    );
    let greeted = &report["tasks"][0]["outcome"]["output"]["results"][0]["ok"]["message"];
    assert_eq!(greeted, &json!("Hello, Ada!"), "{report}");
    let (_, listed) = server.get("/v1/runs", Some(acme)).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}

/// A run cancelled mid-task stops there: its tasks are skipped, its
/// events end `cancelled`, cancelling again answers the same, and a run
/// that ended (or another tenant's) cannot be cancelled.
#[tokio::test]
async fn a_run_cancelled_mid_task_stops_there_and_its_events_say_so() {
    let (server, keys) = start().await;
    let (acme, bolt) = (&keys[0], &keys[1]);
    // Task `a` calls its tool, then would spin for many minutes.
    let (status, body) = submit(&server, acme, &workflow(1_000_000_000_000), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let run = body["id"].as_str().unwrap().to_string();
    let head = events(&server, acme, &run, None, |e| {
        e.data["event"] == json!("tool-call")
    })
    .await;
    let last = head.last().unwrap().id;

    let cancel = format!("/v1/runs/{run}/cancel");
    let other = server.post(&cancel, Some(bolt), &Value::Null).await;
    let unknown = server
        .post("/v1/runs/no-such-run/cancel", Some(bolt), &Value::Null)
        .await;
    assert_error(&other, StatusCode::NOT_FOUND, "not-found", "no such run");
    assert_eq!(other, unknown, "another tenant's run looks like none");

    let (status, report) = server.post(&cancel, Some(acme), &Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["status"], json!("cancelled"), "{report}");
    for task in report["tasks"].as_array().unwrap() {
        assert_eq!(task["status"], json!("skipped"), "{report}");
        assert!(
            task["skipped_because"]
                .as_str()
                .unwrap()
                .contains("cancelled"),
            "{report}"
        );
    }
    let tail = events(&server, acme, &run, last, |e| e.event == "end").await;
    let end = tail.last().unwrap();
    assert_eq!(end.data["status"], json!("cancelled"), "{:?}", end.data);
    let kinds: Vec<&str> = tail
        .iter()
        .filter_map(|e| e.data["event"].as_str())
        .collect();
    assert_eq!(kinds, ["task-skipped", "task-skipped", "run-finished"]);

    let (status, again) = server.post(&cancel, Some(acme), &Value::Null).await;
    assert_eq!(
        (status, &again["status"]),
        (StatusCode::OK, &json!("cancelled"))
    );
    let (_, listed) = server.get("/v1/runs", Some(acme)).await;
    assert_eq!(listed[0]["status"], json!("cancelled"), "{listed}");

    let (_, body) = submit(&server, acme, &workflow(1), None).await;
    let done = body["id"].as_str().unwrap();
    events(&server, acme, done, None, |e| e.event == "end").await;
    let late = server
        .post(&format!("/v1/runs/{done}/cancel"), Some(acme), &Value::Null)
        .await;
    assert_error(
        &late,
        StatusCode::CONFLICT,
        "conflict",
        "already ended (succeeded)",
    );
}

/// A run whose first task fails once (no retries) fails; resumed, that
/// task runs again (attempt 2), its dependent runs, and it succeeds. Only
/// a failed or stopped run can be resumed, and only by its tenant.
#[tokio::test]
async fn a_failed_run_resumed_retries_its_dead_task_and_finishes() {
    let (server, keys) = start().await;
    let (acme, bolt) = (&keys[0], &keys[1]);
    let (status, body) = submit(&server, acme, FLAKY, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let run = body["id"].as_str().unwrap().to_string();
    let first = events(&server, acme, &run, None, |e| e.event == "end").await;
    assert_eq!(first.last().unwrap().data["status"], json!("failed"));
    let last = first.iter().rev().find_map(|e| e.id);

    let resume = format!("/v1/runs/{run}/resume");
    let theirs = server.post(&resume, Some(bolt), &Value::Null).await;
    let nobodys = server
        .post(
            "/v1/runs/20260101-000000-0000/resume",
            Some(bolt),
            &Value::Null,
        )
        .await;
    assert_error(&theirs, StatusCode::NOT_FOUND, "not-found", "no such run");
    assert_eq!(theirs, nobodys, "another tenant's run looks like none");

    let (status, body) = server.post(&resume, Some(acme), &Value::Null).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["events"], json!(format!("/v1/runs/{run}/events")));
    let second = events(&server, acme, &run, last, |e| e.event == "end").await;
    assert_eq!(
        second.last().unwrap().data["status"],
        json!("succeeded"),
        "{second:?}"
    );
    let resumed = &second[0].data;
    assert_eq!(
        (&resumed["event"], &resumed["retry"]),
        (&json!("run-resumed"), &json!(true)),
        "{resumed}"
    );
    let (_, report) = server.get(&format!("/v1/runs/{run}"), Some(acme)).await;
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks[0]["attempts"], json!(2), "{report}");
    assert_eq!(tasks[1]["status"], json!("done"), "{report}");

    // A run that succeeded has nothing to resume.
    let again = server.post(&resume, Some(acme), &Value::Null).await;
    assert_error(&again, StatusCode::CONFLICT, "conflict", "ended succeeded");
}

#[tokio::test]
async fn another_tenants_run_answers_like_no_run() {
    let (server, keys) = start().await;
    let (status, body) = submit(&server, &keys[0], &workflow(1), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let run = body["id"].as_str().unwrap();
    let bolt = &keys[1];
    for path in [format!("/v1/runs/{run}"), format!("/v1/runs/{run}/events")] {
        let theirs = server.get(&path, Some(bolt)).await;
        let nobodys = server
            .get(&path.replace(run, "20260101-000000-0000"), Some(bolt))
            .await;
        assert_error(&theirs, StatusCode::NOT_FOUND, "not-found", "no such run");
        assert_eq!(theirs, nobodys);
    }
    let bad_id = server.get("/v1/runs/..%2F..%2Fetc", Some(bolt)).await;
    assert_error(&bad_id, StatusCode::NOT_FOUND, "not-found", "no such run");
    let (_, listed) = server.get("/v1/runs", Some(bolt)).await;
    assert_eq!(listed, json!([]));
}

#[tokio::test]
async fn a_hosted_workflow_cannot_widen_the_tenants_policy() {
    let (server, keys) = start().await;
    let acme = &keys[0];
    let with = |role_extra: &str, tool_extra: &str| {
        format!(
            "version = 1\nname = \"w\"\n[roles.caller]\nplugin = \"caller\"\ntools = [\"hello\"]\n{role_extra}\n{tool_extra}\n[[tasks]]\nid = \"a\"\nrole = \"caller\"\nprompt = \"p\"\n"
        )
    };
    let cases = [
        (
            with("", "").replace("plugin = \"caller\"", &format!("plugin = \"{CALLER}\"")),
            "cannot load a file",
        ),
        (
            with("", "").replace("plugin = \"caller\"", "plugin = \"../../caller\""),
            "cannot load a file",
        ),
        (
            with("memory = [\"notes:rw\"]", ""),
            "memory namespace notes:rw is not granted",
        ),
        (
            with("model = \"openai/gpt-4o\"", ""),
            "model openai/gpt-4o is not granted",
        ),
        (
            with("", "[tools.hello]\nnet = [\"https://example.com\"]"),
            "is not granted to this tenant",
        ),
    ];
    for (body, says) in cases {
        let answer = submit(&server, acme, &body, None).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "bad-request", says);
    }
    let goal = server
        .post("/v1/runs", Some(acme), &json!({"goal": "  "}))
        .await;
    assert_error(&goal, StatusCode::BAD_REQUEST, "bad-request", "non-empty");
    let unknown = server
        .post(
            "/v1/runs",
            Some(acme),
            &json!({"version": 1, "name": "x", "rogue": true}),
        )
        .await;
    assert_error(&unknown, StatusCode::BAD_REQUEST, "bad-request", "rogue");
    let (_, listed) = server.get("/v1/runs", Some(acme)).await;
    assert_eq!(listed, json!([]), "no refused run left anything behind");
}

#[tokio::test]
async fn a_hosted_workflow_cannot_raise_the_tenants_limits() {
    let capped = Tenant {
        policy: Some("version = 1\n[limits]\ntimeout-ms = 1500\n"),
        scopes: RUNNER,
        ..Tenant::new("acme")
    };
    let dirs = vec![Path::new(CALLER).parent().unwrap().to_path_buf()];
    let (server, keys) = TestServer::start_with_dirs(&[HOSTILE, CALLER], &[capped], dirs).await;
    let workflow = r#"
version = 1
name = "long"
[roles.caller]
plugin = "caller"
tools = ["hostile"]
limits = { timeout-ms = 600000 }
[tools.hostile]
limits = { timeout-ms = 600000 }
[[tasks]]
id = "a"
role = "caller"
prompt = "wait"
max-retries = 0
input = { calls = [{ tool = "hostile.sleep", arguments = { ms = 4000 } }] }
"#;
    let (status, body) = submit(&server, &keys[0], workflow, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let run = body["id"].as_str().unwrap();
    let end = events(&server, &keys[0], run, None, |e| e.event == "end").await;
    assert_eq!(end.last().unwrap().data["status"], json!("failed"));
    let (_, report) = server.get(&format!("/v1/runs/{run}"), Some(&keys[0])).await;
    let error = report["tasks"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("deadline"), "{report}");
}
