//! warden's model layer: one way to ask any model — an OpenAI-compatible
//! API, Anthropic's, a local model run in-process, or a recorded cassette —
//! with routing, retries, budgets and usage kept by the host.
//!
//! ```no_run
//! use warden_api::llm::{Caller, ChatRequest, Message, Role};
//! use warden_llm::router::{LlmConfig, Router};
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
mod error;
pub mod guide;
pub mod local;
pub mod models;
pub mod openai;
pub mod provider;
pub mod replay;
pub mod router;
pub mod usage;

use std::time::Duration;

pub use error::ConfigError;

/// One HTTP client setup for [`JsonApi`]: rustls with ring, the system's
/// roots, the given timeout.
fn http_client(timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    // reqwest is built without a crypto provider; ring is the one warden
    // already uses. Installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ConfigError::Invalid(format!("cannot set up an HTTP client: {e}")))
}

/// `message` with every occurrence of `key` replaced.
pub(crate) fn redact(message: &str, key: Option<&str>) -> String {
    match key {
        Some(k) if !k.is_empty() => message.replace(k, "[redacted]"),
        _ => message.to_string(),
    }
}

/// How an API wants its key.
#[derive(Debug, Clone, Copy)]
pub enum KeyHeader {
    /// `Authorization: Bearer KEY` (OpenAI and compatible APIs).
    Bearer,
    /// The key as the value of this header (Anthropic's `x-api-key`).
    Named(&'static str),
}

/// A JSON-over-HTTP API at a base URL with an optional key: what the remote
/// providers (and warden-memory's remote embedder) share. The key goes only
/// into the request header and is scrubbed from every error.
pub struct JsonApi {
    client: reqwest::Client,
    base_url: String,
    key: Option<String>,
    key_header: KeyHeader,
}

impl std::fmt::Debug for JsonApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonApi")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl JsonApi {
    pub fn new(
        base_url: &str,
        key: Option<String>,
        key_header: KeyHeader,
        timeout: Duration,
    ) -> Result<JsonApi, ConfigError> {
        Ok(JsonApi {
            client: http_client(timeout)?,
            base_url: base_url.trim_end_matches('/').to_string(),
            key,
            key_header,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// POSTs `body` to `BASE/path` with `headers` and reads the JSON answer.
    /// A non-200 status is classified by [`provider::status_error`] (429,
    /// 5xx — Anthropic's 529 "overloaded" too — and timeouts are worth a
    /// retry, honouring Retry-After).
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, provider::ProviderError> {
        let key = self.key.as_deref();
        let mut call = self
            .client
            .post(format!("{}{path}", self.base_url))
            .json(body);
        for (name, value) in headers {
            call = call.header(*name, *value);
        }
        call = match (key, self.key_header) {
            (None, _) => call,
            (Some(k), KeyHeader::Bearer) => call.bearer_auth(k),
            (Some(k), KeyHeader::Named(name)) => call.header(name, k),
        };
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
