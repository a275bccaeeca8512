//! A compiled plugin: checked, compiled and linked once, then shared by every
//! call and every tenant. Cheap to clone.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bindings::ToolPluginExtPre;
use crate::bindings::role::RolePluginPre;
use crate::engine::Engine;
use crate::limits::{LimitError, LimitSettings, Limits};
use crate::manifest::Manifest;
use crate::state::CallState;

#[derive(Clone)]
pub struct CompiledPlugin {
    pub(crate) inner: Arc<PluginInner>,
}

pub(crate) struct PluginInner {
    /// Held so the epoch ticker outlives every plugin that needs it.
    pub(crate) engine: Engine,
    pub(crate) name: Arc<str>,
    pub(crate) sha256: String,
    pub(crate) manifest: Option<Manifest>,
    pub(crate) exports: Exports,
}

/// What a component exports, linked and ready to instantiate.
pub(crate) enum Exports {
    /// `warden:plugin/tool`: a tool plugin.
    Tool(ToolPluginExtPre<CallState>),
    /// `warden:plugin/role`: a role of a run.
    Role(RolePluginPre<CallState>),
    /// `wasi:cli/run`: a program (`warden exec wasm`, the language runtimes).
    Command(wasmtime_wasi::p2::bindings::CommandPre<CallState>),
}

/// Which kind of component a plugin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// Exports `warden:plugin/tool`.
    Tool,
    /// Exports `warden:plugin/role`.
    Role,
    /// Exports `wasi:cli/run`.
    Command,
}

impl std::fmt::Debug for CompiledPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPlugin")
            .field("name", &self.inner.name)
            .field("sha256", &self.inner.sha256)
            .finish_non_exhaustive()
    }
}

impl CompiledPlugin {
    /// The manifest's name, or one made from the file name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// SHA-256 of the component, hex.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    pub fn manifest(&self) -> Option<&Manifest> {
        self.inner.manifest.as_ref()
    }

    pub fn kind(&self) -> ComponentKind {
        match self.inner.exports {
            Exports::Tool(_) => ComponentKind::Tool,
            Exports::Role(_) => ComponentKind::Role,
            Exports::Command(_) => ComponentKind::Command,
        }
    }

    /// The limits of a call. `explicit` (CLI flags) wins outright; otherwise
    /// the manifest's defaults apply, but never above `operator` (the policy
    /// file, over the built-in defaults).
    pub fn limits(
        &self,
        operator: LimitSettings,
        explicit: LimitSettings,
    ) -> Result<Limits, LimitError> {
        let base = operator.apply_to(Limits::default())?;
        let requested = self
            .manifest()
            .map(|m| m.limits.at_most(&base))
            .unwrap_or_default();
        explicit.or(requested).apply_to(base)
    }
}

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
