//! Models through `warden:plugin/llm`: a real guest asks, the router answers
//! from a real loopback server speaking the OpenAI or Anthropic wire format
//! (or from the local model, or a cassette), and the suites check routing,
//! retries, the circuit breaker, timeouts, budgets, policy and that keys
//! never leave the host.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_api::llm::{Caller, ChatRequest, LlmError, Message, Role};
use warden_core::{CallOptions, CompiledPlugin, Engine, EngineConfig, Grant, ModelName, TenantId};
use warden_llm::models::{self, SMOLLM2};
use warden_llm::router::{LlmConfig, Router};
use warden_tests::artifacts::{CACHE_DIR, THINKER};
use warden_tests::fake_llm::{FakeLlm, Reply};

use crate::{models_dir, ok_json};

const KEY: &str = "sk-test-9f3a1c77e2";
const KEY_VAR: &str = "WARDEN_TEST_LLM_KEY";

/// An engine whose router runs `config`, with the thinker guest loaded.
struct Setup {
    plugin: CompiledPlugin,
    router: Arc<Router>,
    data: tempfile::TempDir,
}

fn setup(config: &str) -> Setup {
    let data = tempfile::tempdir().unwrap();
    setup_in(config, data)
}

fn setup_in(config: &str, data: tempfile::TempDir) -> Setup {
    let config = LlmConfig::parse(config, "test").unwrap();
    let router = Arc::new(
        Router::with_keys(config, Some(data.path()), |var| {
            (var == KEY_VAR).then(|| KEY.to_string())
        })
        .unwrap(),
    );
    let engine = engine_with(Some(router.clone()));
    let plugin = engine.load_file(THINKER.as_ref()).unwrap();
    Setup {
        plugin,
        router,
        data,
    }
}

fn engine_with(router: Option<Arc<Router>>) -> Engine {
    Engine::new(&EngineConfig {
        cache_dir: Some(CACHE_DIR.into()),
        max_concurrent_calls: 8,
        llm: router.map(|r| r as Arc<dyn warden_api::llm::Models>),
        ..EngineConfig::default()
    })
    .unwrap()
}

fn grant(models: &[&str]) -> CallOptions {
    let mut options = CallOptions {
        grant: Grant {
            models: models.iter().map(|m| ModelName::new(m).unwrap()).collect(),
            ..Grant::default()
        },
        ..CallOptions::default()
    };
    options.limits.timeout = Duration::from_secs(60);
    options
}

impl Setup {
    /// The guest's answer: a completion, or `{"error": {kind, message}}`.
    async fn ask(&self, options: &CallOptions, request: Value) -> Value {
        let outcome = self
            .plugin
            .call_tool(options, "complete", &request.to_string())
            .await;
        ok_json(&outcome)
    }

    fn usage_file(&self) -> PathBuf {
        self.data.path().join("usage.jsonl")
    }
}

fn user(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": text}]})
}

/// The error kind and message of an answer; panics on a completion.
fn error(answer: &Value) -> (String, String) {
    let e = &answer["error"];
    assert!(e.is_object(), "expected an error, got {answer}");
    (
        e["kind"].as_str().unwrap().to_string(),
        e["message"].as_str().unwrap().to_string(),
    )
}

fn text(answer: &Value) -> &str {
    assert!(
        answer["error"].is_null(),
        "expected a completion, got {answer}"
    );
    answer["text"].as_str().unwrap()
}

fn openai_config(origin: &str, extra: &str) -> String {
    format!(
        r#"
version = 1
default = "fast"
[providers.openai]
kind = "openai"
base-url = "{origin}/v1"
api-key-env = "{KEY_VAR}"
[aliases]
fast = "openai/gpt-test"
[retry]
max-attempts = 3
base-ms = 10
max-ms = 40
{extra}
"#
    )
}

fn anthropic_config(origin: &str) -> String {
    format!(
        r#"
version = 1
default = "claude"
[providers.anthropic]
kind = "anthropic"
base-url = "{origin}"
api-key-env = "{KEY_VAR}"
[aliases]
claude = "anthropic/claude-test"
"#
    )
}

fn weather_tool() -> Value {
    json!({
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"]
        }
    })
}

#[tokio::test]
pub(crate) async fn openai_tool_calls_round_trip_and_the_key_stays_on_the_host() {
    let fake = FakeLlm::start();
    let s = setup(&openai_config(&fake.origin(), ""));
    fake.push(Reply::openai_tool_call(
        "call_1",
        "get_weather",
        &json!({"city": "Oslo"}),
    ));
    let answer = s
        .ask(
            &grant(&["fast"]),
            json!({
                "messages": [
                    {"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Weather in Oslo?"}
                ],
                "tools": [weather_tool()],
                "max_tokens": 64,
                "temperature": 0.2,
                "stop": ["END"]
            }),
        )
        .await;
    assert_eq!(answer["finish_reason"], "tool-calls", "{answer}");
    assert_eq!(answer["tool_calls"][0]["id"], "call_1");
    assert_eq!(answer["tool_calls"][0]["name"], "get_weather");
    assert_eq!(
        answer["tool_calls"][0]["arguments"],
        json!({"city": "Oslo"})
    );
    assert_eq!(
        answer["usage"],
        json!({"input_tokens": 21, "output_tokens": 9})
    );
    assert_eq!(answer["provider"], "openai");
    assert_eq!(answer["model"], "fake-model");

    let seen = &fake.requests()[0];
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(seen.body["model"], "gpt-test");
    assert_eq!(seen.body["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        seen.body["tools"][0]["function"]["parameters"]["required"],
        json!(["city"])
    );
    assert_eq!(seen.body["max_tokens"], 64);
    assert_eq!(seen.body["stop"], json!(["END"]));
    assert_eq!(seen.body["messages"][0]["role"], "system");

    // The next turn carries the call and its result, linked by id.
    let answer = s
        .ask(
            &grant(&["fast"]),
            json!({
                "messages": [
                    {"role": "user", "content": "Weather in Oslo?"},
                    {"role": "assistant", "content": "", "tool_calls": [
                        {"id": "call_1", "name": "get_weather", "arguments": {"city": "Oslo"}}
                    ]},
                    {"role": "tool", "content": "4°C, rain", "tool_call_id": "call_1"},
                    {"role": "user", "content": "So?"}
                ],
                "tools": [weather_tool()]
            }),
        )
        .await;
    assert_eq!(text(&answer), "echo: So?");
    assert_eq!(answer["finish_reason"], "stop");
    let seen = &fake.requests()[1];
    assert_eq!(seen.body["messages"][1]["tool_calls"][0]["id"], "call_1");
    assert_eq!(
        seen.body["messages"][1]["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Oslo"}"#
    );
    assert_eq!(seen.body["messages"][2]["role"], "tool");
    assert_eq!(seen.body["messages"][2]["tool_call_id"], "call_1");
}

#[tokio::test]
async fn anthropic_messages_api_with_tools_and_structured_answers() {
    let fake = FakeLlm::start();
    let s = setup(&anthropic_config(&fake.origin()));
    fake.push(Reply::anthropic_tool_use(
        "toolu_1",
        "get_weather",
        &json!({"city": "Bergen"}),
    ));
    let answer = s
        .ask(
            &grant(&["claude"]),
            json!({
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Weather in Bergen?"}
                ],
                "tools": [weather_tool()]
            }),
        )
        .await;
    assert_eq!(text(&answer), "Let me look that up.");
    assert_eq!(answer["finish_reason"], "tool-calls");
    assert_eq!(answer["tool_calls"][0]["id"], "toolu_1");
    assert_eq!(
        answer["tool_calls"][0]["arguments"],
        json!({"city": "Bergen"})
    );
    assert_eq!(
        answer["usage"],
        json!({"input_tokens": 33, "output_tokens": 12})
    );
    assert_eq!(answer["provider"], "anthropic");

    let seen = &fake.requests()[0];
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.header("x-api-key"), Some(KEY));
    assert!(seen.header("anthropic-version").is_some());
    assert_eq!(seen.body["system"], "Be brief.");
    assert_eq!(seen.body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(
        seen.body["tools"][0]["input_schema"]["required"],
        json!(["city"])
    );
    assert!(
        seen.body["max_tokens"].as_u64().unwrap() > 0,
        "the Messages API requires max_tokens"
    );

    // A structured answer goes through a forced tool call, Anthropic's
    // native way, and comes back as the text.
    fake.push(Reply::json(json!({
        "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-test",
        "stop_reason": "tool_use",
        "content": [{"type": "tool_use", "id": "toolu_2", "name": "answer", "input": {"ok": true}}],
        "usage": {"input_tokens": 5, "output_tokens": 3}
    })));
    let schema =
        json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]});
    let answer = s
        .ask(
            &grant(&["claude"]),
            json!({"messages": [{"role": "user", "content": "ok?"}], "response_schema": schema}),
        )
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(text(&answer)).unwrap(),
        json!({"ok": true})
    );
    assert_eq!(answer["finish_reason"], "stop");
    let seen = &fake.requests()[1];
    assert_eq!(
        seen.body["tool_choice"],
        json!({"type": "tool", "name": "answer"})
    );
    assert_eq!(seen.body["tools"][0]["input_schema"], schema);
}

#[tokio::test]
async fn a_429_waits_as_long_as_retry_after_says() {
    let fake = FakeLlm::start();
    let s = setup(&openai_config(&fake.origin(), ""));
    fake.push(Reply::status(429, "slow down").header("retry-after", "1"));
    let started = Instant::now();
    let answer = s.ask(&grant(&["fast"]), user("hi")).await;
    assert_eq!(text(&answer), "echo: hi");
    assert_eq!(fake.requests().len(), 2);
    // The configured backoff is at most 40 ms: only Retry-After explains
    // a full second.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_are_not() {
    let fake = FakeLlm::start();
    let s = setup(&openai_config(&fake.origin(), ""));
    fake.push(Reply::status(500, "boom"));
    fake.push(Reply::status(503, "busy"));
    let answer = s.ask(&grant(&["fast"]), user("third time")).await;
    assert_eq!(text(&answer), "echo: third time");
    assert_eq!(fake.requests().len(), 3);

    fake.push(Reply::status(400, "bad field `messages`"));
    let answer = s.ask(&grant(&["fast"]), user("once")).await;
    let (kind, message) = error(&answer);
    assert_eq!(kind, "unavailable");
    assert!(
        message.contains("HTTP 400") && message.contains("bad field"),
        "{message}"
    );
    assert_eq!(fake.requests().len(), 4, "a 400 is not retried");

    // Retries run out: the last error is named.
    for _ in 0..3 {
        fake.push(Reply::status(502, "gateway"));
    }
    let (kind, message) = error(&s.ask(&grant(&["fast"]), user("never")).await);
    assert_eq!(kind, "unavailable");
    assert!(message.contains("HTTP 502"), "{message}");
    assert_eq!(fake.requests().len(), 7);
}

#[tokio::test]
async fn the_chain_falls_back_and_skips_a_provider_whose_circuit_is_open() {
    let primary = FakeLlm::start();
    let backup = FakeLlm::start();
    let config = format!(
        r#"
version = 1
[providers.primary]
kind = "openai"
base-url = "{}/v1"
[providers.backup]
kind = "openai"
base-url = "{}/v1"
[aliases]
fast = ["primary/big", "backup/small"]
[retry]
max-attempts = 1
[breaker]
failures = 2
cooldown-ms = 60000
"#,
        primary.origin(),
        backup.origin()
    );
    let s = setup(&config);
    for _ in 0..10 {
        primary.push(Reply::status(500, "down"));
    }
    for i in 0..4 {
        let answer = s.ask(&grant(&["fast"]), user(&format!("q{i}"))).await;
        assert_eq!(text(&answer), format!("echo: q{i}"));
        assert_eq!(answer["provider"], "backup");
    }
    // Two failures opened the circuit; after that the primary is skipped.
    assert_eq!(primary.requests().len(), 2);
    assert_eq!(backup.requests().len(), 4);
    assert_eq!(backup.requests()[0].body["model"], "small");
}

#[tokio::test]
async fn a_slow_provider_times_out_and_is_retried() {
    let fake = FakeLlm::start();
    let s = setup(
        &openai_config(&fake.origin(), "").replace("api-key-env", "timeout-ms = 300\napi-key-env"),
    );
    fake.push(Reply::echo_after(Duration::from_secs(3)));
    let answer = s.ask(&grant(&["fast"]), user("patience")).await;
    assert_eq!(text(&answer), "echo: patience");
    assert_eq!(
        fake.requests().len(),
        2,
        "the timed-out attempt was retried"
    );

    for _ in 0..3 {
        fake.push(Reply::echo_after(Duration::from_secs(3)));
    }
    let (kind, message) = error(&s.ask(&grant(&["fast"]), user("never")).await);
    assert_eq!(kind, "unavailable");
    assert!(message.contains("timed out"), "{message}");
}

#[tokio::test]
async fn budgets_refuse_calls_per_call_per_tenant_and_per_run() {
    let fake = FakeLlm::start();
    let s = setup(&openai_config(
        &fake.origin(),
        "[budgets]\ncall-tokens = 200\ntenant-tokens = 30\nrun-tokens = 12",
    ));
    // The per-call budget caps the answer and refuses a prompt that cannot
    // fit, before anything is sent.
    let answer = s.ask(&grant(&["fast"]), user("one two three")).await;
    assert_eq!(text(&answer), "echo: one two three");
    let sent = fake.requests()[0].body["max_tokens"].as_u64().unwrap();
    assert!(sent < 200, "max_tokens {sent} leaves room for the prompt");
    let (kind, message) = error(&s.ask(&grant(&["fast"]), user(&"word ".repeat(400))).await);
    assert_eq!(kind, "budget-exceeded");
    assert!(message.contains("per-call budget is 200"), "{message}");
    assert_eq!(fake.requests().len(), 1);

    // The tenant's 30 tokens: spent by a long exchange, then refused; another
    // tenant is unaffected.
    let long = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu";
    text(&s.ask(&grant(&["fast"]), user(long)).await);
    let (kind, message) = error(&s.ask(&grant(&["fast"]), user("more")).await);
    assert_eq!(kind, "budget-exceeded");
    assert!(message.contains("tenant default"), "{message}");
    let mut other = grant(&["fast"]);
    other.tenant = TenantId::new("acme").unwrap();
    assert_eq!(text(&s.ask(&other, user("mine")).await), "echo: mine");

    // Per run, through the router (runs come with the orchestrator).
    let caller = |run: &str| Caller {
        tenant: "runs".into(),
        plugin: "test".into(),
        run: Some(run.into()),
        ..Caller::default()
    };
    let request = ChatRequest {
        messages: vec![Message::new(Role::User, "a b c d e f")],
        ..ChatRequest::default()
    };
    s.router.complete(&request, &caller("r1")).await.unwrap();
    let err = s
        .router
        .complete(&request, &caller("r1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LlmError::BudgetExceeded(m) if m.contains("run r1")),
        "{err}"
    );
    s.router.complete(&request, &caller("r2")).await.unwrap();
}

/// Every part of a request counts against the budgets, not just the
/// messages: a huge tool description under `call-tokens = 1000` is refused
/// before anything is sent (it was billed 102 446 tokens once), and under a
/// cost budget a model without a price is refused rather than counted as
/// free.
#[tokio::test]
async fn hidden_request_parts_and_unpriced_models_cannot_dodge_budgets() {
    let fake = FakeLlm::start();
    let s = setup(&openai_config(
        &fake.origin(),
        "[budgets]\ncall-tokens = 1000",
    ));
    let huge = "lorem ipsum dolor sit amet ".repeat(400 * 1024 / 27);
    let request = json!({
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "f", "description": huge, "parameters": {"type": "object"}}],
    });
    let (kind, message) = error(&s.ask(&grant(&["fast"]), request).await);
    assert_eq!(kind, "budget-exceeded");
    assert!(message.contains("per-call budget is 1000"), "{message}");
    let schema = json!({
        "messages": [{"role": "user", "content": "hi"}],
        "response_schema": {"type": "object", "description": "x".repeat(8000)},
    });
    let (kind, _) = error(&s.ask(&grant(&["fast"]), schema).await);
    assert_eq!(kind, "budget-exceeded");
    assert!(fake.requests().is_empty(), "nothing reached the provider");

    // A `*` grant and a provider/model the config never priced, under a
    // tenant cost budget: refused, not free.
    let priced = setup(&openai_config(
        &fake.origin(),
        "[budgets]\ntenant-cost = 0.5",
    ));
    let any = json!({"model": "openai/any-name", "messages": [{"role": "user", "content": "hi"}]});
    let (kind, message) = error(&priced.ask(&grant(&["*"]), any).await);
    assert_eq!(kind, "denied");
    assert!(message.contains("no price"), "{message}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn keys_never_reach_guests_logs_or_the_ledger() {
    let captured = crate::capture_logs();

    let fake = FakeLlm::start();
    let s = setup(&openai_config(&fake.origin(), ""));
    // A provider that echoes the key back in its error, as some do.
    fake.push(Reply::status(401, &format!("invalid api key {KEY}")));
    let (kind, message) = error(&s.ask(&grant(&["fast"]), user("hi")).await);
    assert_eq!(kind, "unavailable");
    assert!(message.contains("[redacted]"), "{message}");
    assert!(
        !message.contains(KEY),
        "the key reached the guest: {message}"
    );

    fake.push(Reply::status(500, &format!("key {KEY} is over quota")));
    text(&s.ask(&grant(&["fast"]), user("again")).await);
    let log = captured.text();
    assert!(
        log.contains("completion failed"),
        "the failures were traced: {log}"
    );
    assert!(!log.contains(KEY), "the key reached the log: {log}");
    let ledger = std::fs::read_to_string(s.usage_file()).unwrap();
    assert!(!ledger.contains(KEY));
    assert_eq!(
        fake.requests()[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
}

#[tokio::test]
async fn only_granted_models_and_private_stays_local() {
    let fake = FakeLlm::start();
    let s = setup(&openai_config(
        &fake.origin(),
        "[providers.local]\nkind = \"local\"\n",
    ));
    let (kind, message) = error(&s.ask(&grant(&[]), user("hi")).await);
    assert_eq!(kind, "denied");
    assert!(
        message.contains("not granted to plugin thinker"),
        "{message}"
    );

    let mut request = user("hi");
    request["model"] = json!("smart");
    let (kind, message) = error(&s.ask(&grant(&["fast"]), request.clone()).await);
    assert_eq!(kind, "denied");
    assert!(
        message.contains("\"smart\"") && message.contains("granted: fast"),
        "{message}"
    );

    // `*` grants any model the router knows; an unknown one is then a bad
    // request that lists what there is.
    let (kind, message) = error(&s.ask(&grant(&["*"]), request).await);
    assert_eq!(kind, "invalid-request");
    assert!(
        message.contains("unknown model \"smart\"") && message.contains("fast"),
        "{message}"
    );

    // An empty model is the caller's default: the config's, or the first
    // granted.
    assert_eq!(
        text(&s.ask(&grant(&["openai/gpt-test"]), user("d")).await),
        "echo: d"
    );

    let mut private = user("secret");
    private["private"] = json!(true);
    let (kind, message) = error(&s.ask(&grant(&["fast"]), private).await);
    assert_eq!(kind, "denied");
    assert!(message.contains("local provider"), "{message}");
    assert_eq!(fake.requests().len(), 1, "nothing private was sent");

    let mut bad = user("x");
    bad["response_schema"] = json!({"type": 12});
    let (kind, message) = error(&s.ask(&grant(&["fast"]), bad).await);
    assert_eq!(kind, "invalid-request");
    assert!(message.contains("response schema"), "{message}");

    // A warden with no router says so.
    let plugin = engine_with(None).load_file(THINKER.as_ref()).unwrap();
    let outcome = plugin
        .call_tool(&grant(&["*"]), "complete", &user("x").to_string())
        .await;
    let (kind, message) = error(&ok_json(&outcome));
    assert_eq!(kind, "unavailable");
    assert!(message.contains("no models configured"), "{message}");
}

#[tokio::test]
async fn structured_answers_are_validated_before_the_guest_sees_them() {
    let fake = FakeLlm::start();
    let s = setup(&openai_config(&fake.origin(), ""));
    let schema = json!({
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": false
    });
    let reply = |content: &str| {
        Reply::json(json!({
            "model": "gpt-test",
            "choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3}
        }))
    };
    fake.push(reply("Sure! Here it is: {n: 1}"));
    fake.push(reply(r#"{"n": "one"}"#));
    fake.push(reply(r#"{"n": 1}"#));
    let mut request = user("a number");
    request["response_schema"] = schema.clone();
    let answer = s.ask(&grant(&["fast"]), request.clone()).await;
    assert_eq!(
        serde_json::from_str::<Value>(text(&answer)).unwrap(),
        json!({"n": 1})
    );
    assert_eq!(fake.requests().len(), 3, "two bad answers were retried");
    let format = &fake.requests()[0].body["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["schema"], schema);

    for _ in 0..3 {
        fake.push(reply(r#"{"n": 1, "extra": true}"#));
    }
    let (kind, message) = error(&s.ask(&grant(&["fast"]), request).await);
    assert_eq!(kind, "unavailable");
    assert!(message.contains("does not match the schema"), "{message}");
}

#[tokio::test]
async fn record_then_replay_gives_the_same_answers_without_the_model() {
    let tape_dir = tempfile::tempdir().unwrap();
    let cassette = tape_dir.path().join("tape.jsonl");
    let fake = FakeLlm::start();
    let record = openai_config(&fake.origin(), "")
        .replace("fast = \"openai/gpt-test\"", "fast = \"tape/gpt-test\"")
        + &format!(
            "[providers.tape]\nkind = \"record\"\ninner = \"openai\"\ncassette = {:?}\n",
            cassette.display().to_string()
        );
    let s = setup(&record);
    let first = s.ask(&grant(&["fast"]), user("first question")).await;
    let second = s.ask(&grant(&["fast"]), user("second question")).await;
    assert_eq!(text(&first), "echo: first question");
    drop(s);
    drop(fake);

    let replay = format!(
        "version = 1\ndefault = \"fast\"\n[providers.tape]\nkind = \"replay\"\ncassette = {:?}\n[aliases]\nfast = \"tape/gpt-test\"\n",
        cassette.display().to_string()
    );
    let s = setup(&replay);
    for (question, recorded) in [("second question", &second), ("first question", &first)] {
        let again = s.ask(&grant(&["fast"]), user(question)).await;
        for field in ["text", "usage", "model", "finish_reason", "tool_calls"] {
            assert_eq!(again[field], recorded[field], "{field}");
        }
        assert_eq!(again["provider"], "tape");
    }
    let (kind, message) = error(&s.ask(&grant(&["fast"]), user("first questions")).await);
    assert_eq!(kind, "unavailable");
    assert!(message.contains("no recorded answer"), "{message}");
    assert!(message.contains("closest is entry 1"), "{message}");
}

#[tokio::test]
async fn usage_and_cost_are_recorded_per_tenant_plugin_and_model() {
    let fake = FakeLlm::start();
    let s = setup(&openai_config(
        &fake.origin(),
        "[prices.\"openai/gpt-test\"]\ninput = 1.0\noutput = 2.0\n",
    ));
    let answer = s.ask(&grant(&["fast"]), user("count these four")).await;
    let input = answer["usage"]["input_tokens"].as_u64().unwrap();
    let output = answer["usage"]["output_tokens"].as_u64().unwrap();
    assert_eq!((input, output), (3, 4));
    let cost = (input as f64 * 1.0 + output as f64 * 2.0) / 1e6;
    assert!(
        (answer["cost"].as_f64().unwrap() - cost).abs() < 1e-12,
        "{answer}"
    );
    let mut acme = grant(&["fast"]);
    acme.tenant = TenantId::new("acme").unwrap();
    s.ask(&acme, user("x")).await;

    let records = warden_llm::usage::read_records(&s.usage_file());
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].tenant, "default");
    assert_eq!(records[0].plugin, "thinker");
    assert_eq!(records[0].provider, "openai");
    assert_eq!(records[0].input_tokens, 3);
    assert_eq!(records[1].tenant, "acme");
    // The ledger is the budget's memory: a new router over the same data
    // dir starts from it.
    let reopened = warden_llm::usage::Ledger::open(s.data.path());
    assert_eq!(reopened.tenant("default").tokens(), input + output);
}

fn local_setup() -> Setup {
    let model = models::model_dir(models_dir(), &SMOLLM2).join("model.gguf");
    setup(&format!(
        "version = 1\ndefault = \"local/smollm2\"\n[providers.local]\nkind = \"local\"\nmodel = {:?}\n",
        model.display().to_string()
    ))
}

#[tokio::test]
async fn the_local_model_answers_a_guest_deterministically() {
    let s = local_setup();
    let request = json!({
        "messages": [{"role": "user", "content": "Name three colours."}],
        "max_tokens": 24,
        "private": true
    });
    let first = s.ask(&grant(&["*"]), request.clone()).await;
    let second = s.ask(&grant(&["*"]), request).await;
    assert!(!text(&first).trim().is_empty(), "{first}");
    assert_eq!(
        first["text"], second["text"],
        "temperature 0 is deterministic"
    );
    assert_eq!(first["provider"], "local");
    assert_eq!(first["model"], SMOLLM2.name);
    let input = first["usage"]["input_tokens"].as_u64().unwrap();
    let output = first["usage"]["output_tokens"].as_u64().unwrap();
    // The ChatML prompt (default system turn included) is well over the
    // five words asked.
    assert!(input > 10, "{first}");
    assert!((1..=24).contains(&output), "{first}");
    assert_eq!(first["usage"], second["usage"]);
    assert_eq!(first["cost"], 0.0);
    if output == 24 {
        assert_eq!(first["finish_reason"], "length");
    }
}

fn task_list_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "tasks": {
                "type": "array",
                "minItems": 1,
                "maxItems": 4,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "maxLength": 12},
                        "role": {"enum": ["coder", "tester", "reviewer", "researcher"]},
                        "goal": {"type": "string", "maxLength": 60},
                        "depends_on": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
                        "priority": {"type": "integer"}
                    },
                    "required": ["id", "role", "goal"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["tasks"],
        "additionalProperties": false
    })
}

/// Constrained decoding, checked outside the router (which would hide a
/// failure behind its own validation): every answer parses and passes the
/// schema, even when it runs out of tokens mid-document.
#[tokio::test]
async fn one_hundred_constrained_local_completions_all_pass_the_schema() {
    let model_path = models::model_dir(models_dir(), &SMOLLM2).join("model.gguf");
    let model = warden_llm::local::LocalModel::load(&model_path, SMOLLM2.name).unwrap();
    let schema = task_list_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let subjects = [
        "a CSV parser",
        "a web scraper",
        "a to-do API",
        "a chess engine",
        "a URL shortener",
    ];
    let asks = [
        "Plan",
        "Split into tasks",
        "Break down",
        "Organise the work for",
    ];
    let extras = ["", " with tests", " and docs", " in Rust", " in Python"];
    let mut ended_early = 0;
    let mut n = 0;
    'all: for subject in subjects {
        for ask in asks {
            for extra in extras {
                if n == 100 {
                    break 'all;
                }
                n += 1;
                let request = ChatRequest {
                    messages: vec![Message::new(Role::User, format!("{ask} {subject}{extra}."))],
                    // Short on purpose: many answers must be closed early.
                    max_tokens: Some(40),
                    temperature: Some(if n % 2 == 0 { 0.0 } else { 0.8 }),
                    response_schema: Some(schema.clone()),
                    ..ChatRequest::default()
                };
                let model = model.clone();
                let completion = tokio::task::spawn_blocking(move || model.complete(&request))
                    .await
                    .unwrap()
                    .unwrap();
                let value: Value = serde_json::from_str(&completion.text).unwrap_or_else(|e| {
                    panic!("completion {n} is not JSON ({e}): {}", completion.text)
                });
                if let Err(e) = validator.validate(&value) {
                    panic!("completion {n} fails the schema ({e}): {}", completion.text);
                }
                if completion.finish_reason == warden_api::llm::FinishReason::Length {
                    ended_early += 1;
                }
            }
        }
    }
    assert_eq!(n, 100);
    assert!(
        ended_early > 0,
        "no completion ran out of tokens: the closing path went untested"
    );
}
