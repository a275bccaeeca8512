//! One tool: what it is ([`ToolSpec`]), how it fails ([`ToolError`]), and
//! how one call of it is named ([`ToolCallKey`]) and observed
//! ([`ToolObserver`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One tool as a plugin describes it (MCP's tool shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    #[serde(rename = "inputSchema")]
    pub input_schema: serde_json::Value,
}

/// A tool's own failure, as the plugin reported it. Serialises as
/// `{"kind": "failed", "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum ToolError {
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    #[error("unknown tool: {0}")]
    UnknownTool(String),
    #[error("denied: {0}")]
    Denied(String),
    #[error("failed: {0}")]
    Failed(String),
}

impl ToolError {
    pub fn kind(&self) -> &'static str {
        match self {
            ToolError::InvalidArguments(_) => "invalid-arguments",
            ToolError::UnknownTool(_) => "unknown-tool",
            ToolError::Denied(_) => "denied",
            ToolError::Failed(_) => "failed",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ToolError::InvalidArguments(m)
            | ToolError::UnknownTool(m)
            | ToolError::Denied(m)
            | ToolError::Failed(m) => m,
        }
    }
}

/// Names one tool call of one caller: the how-many-th call it is and what
/// it asked. An earlier attempt's call with the same key is the same step.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ToolCallKey {
    /// 0 for the caller's first tool call.
    pub seq: u32,
    /// Qualified: `fs.write_file`.
    pub tool: String,
    /// SHA-256 of the arguments, hex.
    pub arguments_sha256: String,
}

impl ToolCallKey {
    pub fn new(seq: u32, tool: &str, arguments: &str) -> ToolCallKey {
        ToolCallKey {
            seq,
            tool: tool.to_string(),
            arguments_sha256: hex::encode(Sha256::digest(arguments.as_bytes())),
        }
    }
}

/// One finished tool call, as an observer sees it.
#[derive(Debug, Clone)]
pub struct ToolCallReport {
    pub key: ToolCallKey,
    pub arguments: String,
    /// The tool's JSON result, or why it failed (the tool's error or the
    /// sandbox's).
    pub result: Result<String, ToolError>,
    /// True when the result came from [`ToolObserver::replay`] and the tool
    /// did not run.
    pub replayed: bool,
    pub fuel_used: u64,
    pub duration: Duration,
}

/// Sees every tool call a caller makes, and may answer one from a record
/// instead of running it again — how a retried or resumed task avoids
/// repeating a side effect it already had.
pub trait ToolObserver: Send + Sync {
    /// A result an earlier attempt recorded for `key`; `None` runs the tool.
    fn replay(&self, key: &ToolCallKey) -> Option<String>;

    /// After each call, replayed or not.
    fn finished(&self, report: &ToolCallReport);
}
