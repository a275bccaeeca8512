//! warden's model layer: one way to ask any model — an OpenAI-compatible
//! API, Anthropic's, a local model run in-process, or a recorded cassette —
//! with routing, retries, budgets and usage kept by the host.
//!
//! ```no_run
//! use warden_llm::router::{Caller, LlmConfig, Router};
//! use warden_llm::{ChatRequest, Message, Role};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let router = Router::new(LlmConfig::local_only(), Some("/var/lib/warden".as_ref()))?;
//! let request = ChatRequest {
//!     messages: vec![Message::new(Role::User, "Say hello.")],
//!     ..ChatRequest::default()
//! };
//! let answer = router.complete(&request, &Caller::default()).await?;
//! println!("{} ({} tokens out)", answer.text, answer.usage.output_tokens);
//! # Ok(())
//! # }
//! ```

pub mod anthropic;
pub mod guide;
pub mod local;
pub mod models;
pub mod openai;
pub mod provider;
pub mod replay;
pub mod router;
pub mod types;
pub mod usage;

use std::time::Duration;

pub use types::{
    ChatRequest, Completion, FinishReason, LlmError, Message, Role, TokenUsage, ToolCall, ToolDef,
};

/// One HTTP client setup for the remote providers (and warden-memory's
/// remote embedder): rustls with ring, the system's roots, the given timeout.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    // reqwest is built without a crypto provider; ring is the one warden
    // already uses. Installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot set up an HTTP client: {e}"))
}

/// `message` with every occurrence of `key` replaced.
pub(crate) fn redact(message: &str, key: Option<&str>) -> String {
    match key {
        Some(k) if !k.is_empty() => message.replace(k, "[redacted]"),
        _ => message.to_string(),
    }
}

/// Sends a provider request and reads its JSON answer. A non-200 status is
/// classified by [`provider::status_error`] (429, 5xx — Anthropic's 529
/// "overloaded" too — and timeouts are worth a retry, honouring
/// Retry-After); `key` is scrubbed from every message.
pub async fn send_json(
    call: reqwest::RequestBuilder,
    key: Option<&str>,
) -> Result<serde_json::Value, provider::ProviderError> {
    let response = call.send().await.map_err(|e| transport_error(&e, key))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(provider::parse_retry_after);
    let text = response
        .text()
        .await
        .map_err(|e| transport_error(&e, key))?;
    if status != 200 {
        let mut e = provider::status_error(status, &text, retry_after);
        e.message = redact(&e.message, key);
        return Err(e);
    }
    serde_json::from_str(&text)
        .map_err(|e| provider::ProviderError::fatal(format!("the response is not JSON: {e}")))
}

/// A transport failure: timeouts and connection errors are worth a retry.
pub(crate) fn transport_error(e: &reqwest::Error, key: Option<&str>) -> provider::ProviderError {
    // reqwest's Display names only the outermost error; the cause (refused,
    // timed out, DNS) is in the chain.
    let mut message = if e.is_timeout() {
        "the request timed out".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    let message = redact(&message, key);
    if e.is_timeout() || e.is_connect() || e.is_request() {
        provider::ProviderError::retryable(message, None)
    } else {
        provider::ProviderError::fatal(message)
    }
}
