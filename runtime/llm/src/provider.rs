//! What every provider does: answer one request for one model, and say
//! whether a failure is worth retrying.

use std::time::Duration;

use warden_api::BoxFuture;
use warden_api::llm::{ChatRequest, Completion};

/// A provider's failure, classified for the router.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderError {
    pub retryable: bool,
    /// What the provider asked us to wait (Retry-After).
    pub retry_after: Option<Duration>,
    /// Never contains a key.
    pub message: String,
}

impl ProviderError {
    pub fn fatal(message: impl Into<String>) -> ProviderError {
        ProviderError {
            retryable: false,
            retry_after: None,
            message: message.into(),
        }
    }

    pub fn retryable(message: impl Into<String>, retry_after: Option<Duration>) -> ProviderError {
        ProviderError {
            retryable: true,
            retry_after,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub trait Provider: Send + Sync {
    /// Whether it runs on this machine (the only kind `private` requests
    /// may use).
    fn is_local(&self) -> bool;

    /// Answers `request` with `model` (the provider's own model name).
    fn complete<'a>(
        &'a self,
        model: &'a str,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<Completion, ProviderError>>;
}

/// Seconds or an HTTP date in a Retry-After header, as a wait.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(600.0)));
    }
    None
}

/// The error an HTTP status means for the router: 408, 409, 429 and 5xx are
/// worth another try; the rest are not.
pub fn status_error(status: u16, body: &str, retry_after: Option<Duration>) -> ProviderError {
    let excerpt: String = body.chars().take(300).collect();
    let message = format!("HTTP {status}: {excerpt}");
    if matches!(status, 408 | 409 | 429) || status >= 500 {
        ProviderError::retryable(message, retry_after)
    } else {
        ProviderError::fatal(message)
    }
}
