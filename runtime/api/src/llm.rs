//! What a caller asks a model and what it gets back, independent of the
//! provider that answers, and the [`Models`] trait the sandbox core asks
//! through.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::BoxFuture;
use crate::budget::Allowance;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON arguments.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// Calls an assistant message made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a tool message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: serde_json::Value,
}

/// One completion request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    /// A model alias, `provider/model`, or empty for the caller's default.
    #[serde(default)]
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Only local providers may answer.
    #[serde(default)]
    pub private: bool,
    /// A JSON Schema the answer must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    pub usage: TokenUsage,
    /// US dollars, from the router's price table (0 when unpriced).
    #[serde(default)]
    pub cost: f64,
    /// Who answered: `local`, `openai`, …
    pub provider: String,
    pub model: String,
}

/// Why a request got no completion. The messages never carry a key.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum LlmError {
    #[error("denied: {0}")]
    Denied(String),
    #[error("budget exceeded: {0}")]
    BudgetExceeded(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl Completion {
    /// A plain text answer that used no tokens, from `provider/model`.
    pub fn text(text: impl Into<String>, provider: &str, model: &str) -> Completion {
        Completion {
            text: text.into(),
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
            usage: TokenUsage::default(),
            cost: 0.0,
            provider: provider.to_string(),
            model: model.to_string(),
        }
    }
}

/// Who asks, for grants, budgets and the ledger.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub tenant: String,
    pub plugin: String,
    pub run: Option<String>,
    /// The role asking, for its default model.
    pub role: Option<String>,
    /// Aliases (or provider/model names) this caller may use; `None` = any.
    pub allowed: Option<Vec<String>>,
    /// The run's (or task's) own token and cost budget, on top of the
    /// config's.
    pub allowance: Option<Arc<Allowance>>,
}

/// Answers completions: the model router behind `warden:plugin/llm`.
/// Implementations check the caller's grants and budgets themselves; the
/// sandbox core only says who is asking.
pub trait Models: Send + Sync {
    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        caller: &'a Caller,
    ) -> BoxFuture<'a, Result<Completion, LlmError>>;
}
