//! A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions
//! and embeddings and the Anthropic Messages wire formats, for the LLM suites: paid APIs are the
//! one thing the tests do not call for real.
//!
//! By default it answers every request with a completion that echoes the
//! last user message; a test queues other replies (errors, Retry-After, tool
//! calls, delays) with [`FakeLlm::push`], and reads back every request it got
//! with [`FakeLlm::requests`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One scripted reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// `None`: the default echo completion for the request's wire format.
    pub body: Option<Value>,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Reply {
    /// The default echo completion, after `delay`.
    pub fn echo_after(delay: Duration) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: None,
            delay,
        }
    }

    /// An error status with a JSON error body.
    pub fn status(status: u16, message: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Some(json!({"error": {"type": "test", "message": message}})),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// 200 with this body as it is.
    pub fn json(body: Value) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: Some(body),
            delay: Duration::ZERO,
        }
    }

    /// An OpenAI completion whose answer is `text`.
    pub fn openai_text(text: &str) -> Reply {
        Reply::json(json!({
            "id": "chatcmpl-text",
            "object": "chat.completion",
            "model": "m",
            "choices": [{
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": text}
            }],
            "usage": {"prompt_tokens": 40, "completion_tokens": 20, "total_tokens": 60}
        }))
    }

    /// An OpenAI completion that asks for one tool call.
    pub fn openai_tool_call(id: &str, name: &str, arguments: &Value) -> Reply {
        Reply::json(json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": "fake-model",
            "choices": [{
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [{
                        "id": id,
                        "type": "function",
                        "function": {"name": name, "arguments": arguments.to_string()}
                    }]
                }
            }],
            "usage": {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}
        }))
    }

    /// An Anthropic message that asks for one tool call.
    pub fn anthropic_tool_use(id: &str, name: &str, input: &Value) -> Reply {
        Reply::json(json!({
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": "fake-claude",
            "stop_reason": "tool_use",
            "content": [
                {"type": "text", "text": "Let me look that up."},
                {"type": "tool_use", "id": id, "name": name, "input": input}
            ],
            "usage": {"input_tokens": 33, "output_tokens": 12}
        }))
    }
}

/// A request the server got.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Script {
    queue: VecDeque<Reply>,
    seen: Vec<Seen>,
}

/// The server; it stops when dropped.
pub struct FakeLlm {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FakeLlm {
    /// Starts on a free loopback port, on a runtime of its own.
    pub fn start() -> FakeLlm {
        let script = Arc::new(Mutex::new(Script::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = script.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the fake LLM server");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let app = Router::new().fallback(answer).with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        FakeLlm {
            addr,
            script,
            _stop: stop,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    /// An LLM router config (`llm.toml`) whose default model is this server,
    /// spoken to as OpenAI (`fake/m`).
    pub fn config(&self) -> String {
        format!(
            "version = 1\ndefault = \"fake/m\"\n[providers.fake]\nkind = \"openai\"\nbase-url = \"{}/v1\"\n",
            self.origin()
        )
    }

    /// Queues the reply to the next request that finds the queue non-empty.
    pub fn push(&self, reply: Reply) {
        self.lock().queue.push_back(reply);
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn answer(
    State(script): State<Arc<Mutex<Script>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reply = {
        let mut script = script.lock().unwrap_or_else(|e| e.into_inner());
        script.seen.push(Seen {
            path: uri.path().to_string(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect(),
            body: body.clone(),
        });
        script
            .queue
            .pop_front()
            .unwrap_or_else(|| Reply::echo_after(Duration::ZERO))
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let anthropic = uri.path().ends_with("/messages");
    let embeddings = uri.path().ends_with("/embeddings");
    let out = match reply.body {
        Some(b) => b,
        None if embeddings => embeddings_echo(&body),
        None if anthropic => anthropic_echo(&body),
        None => openai_echo(&body),
    };
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(out),
    )
        .into_response();
    for (name, value) in reply.headers {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(n, v);
        }
    }
    response
}

/// The text of the last user message (a string, or Anthropic's blocks).
fn last_user_text(body: &Value) -> String {
    let Some(messages) = body["messages"].as_array() else {
        return String::new();
    };
    let Some(last) = messages.iter().rev().find(|m| m["role"] == "user") else {
        return String::new();
    };
    match &last["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str().or(b["content"].as_str()))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Tokens as the fake counts them: words.
fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn prompt_words(body: &Value) -> u64 {
    let mut n = words(body["system"].as_str().unwrap_or_default());
    for m in body["messages"].as_array().into_iter().flatten() {
        n += match &m["content"] {
            Value::String(s) => words(s),
            other => words(&other.to_string()),
        };
    }
    n
}

fn openai_echo(body: &Value) -> Value {
    let text = format!("echo: {}", last_user_text(body));
    json!({
        "id": "chatcmpl-echo",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [{
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": text}
        }],
        "usage": {
            "prompt_tokens": prompt_words(body),
            "completion_tokens": words(&text),
            "total_tokens": prompt_words(body) + words(&text)
        }
    })
}

fn anthropic_echo(body: &Value) -> Value {
    let text = format!("echo: {}", last_user_text(body));
    json!({
        "id": "msg_echo",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "stop_reason": "end_turn",
        "content": [{"type": "text", "text": text}],
        "usage": {"input_tokens": prompt_words(body), "output_tokens": words(&text)}
    })
}

/// Dimensions of the fake embeddings.
pub const EMBEDDING_DIMENSION: usize = 8;

/// A fake embedding: counts of a few letters, the length and a constant, so
/// equal texts get equal vectors and different ones usually differ. The
/// items come back in reverse order, each with its `index`, as the API
/// allows.
pub fn fake_embedding(text: &str) -> Vec<f64> {
    let count = |c: char| text.chars().filter(|&x| x == c).count() as f64;
    vec![
        count('a'),
        count('e'),
        count('i'),
        count('o'),
        count('u'),
        count(' '),
        text.len() as f64,
        1.0,
    ]
}

fn embeddings_echo(body: &Value) -> Value {
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => Vec::new(),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, text)| json!({"object": "embedding", "index": i, "embedding": fake_embedding(text)}))
        .collect();
    json!({"object": "list", "model": body["model"], "data": data, "usage": {"prompt_tokens": inputs.len(), "total_tokens": inputs.len()}})
}

/// The coder's answer for the python-module example: a correct module and
/// its tests.
pub fn python_module_coder_answer() -> String {
    json!({
        "files": [
            {"path": "stats.py", "content": "def mean(xs):\n    return sum(xs) / len(xs)\n\n\ndef median(xs):\n    s = sorted(xs)\n    n = len(s)\n    mid = n // 2\n    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2\n\n\ndef mode(xs):\n    return max(set(xs), key=xs.count)\n"},
            {"path": "test_stats.py", "content": "import unittest\nfrom stats import mean, median, mode\n\n\nclass StatsTest(unittest.TestCase):\n    def test_mean(self):\n        self.assertEqual(mean([1, 2, 3]), 2)\n\n    def test_median(self):\n        self.assertEqual(median([3, 1, 2]), 2)\n        self.assertEqual(median([1, 2, 3, 4]), 2.5)\n\n    def test_mode(self):\n        self.assertEqual(mode([1, 2, 2, 3]), 2)\n\n\nif __name__ == '__main__':\n    unittest.main()\n"}
        ],
        "summary": "stats.py with mean, median and mode, and its tests"
    })
    .to_string()
}
