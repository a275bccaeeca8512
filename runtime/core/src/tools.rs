//! The tools a role may call through `warden:plugin/tools`: tool plugins the
//! operator granted to it, each run in a sandbox of its own under its own
//! grants, and a hook that sees (and may replay) every call.
//!
//! ```no_run
//! use warden_core::{CallOptions, Engine, EngineConfig, ToolSet};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new(&EngineConfig::default())?;
//! let fs = engine.load_file("target/plugins/fs.wasm".as_ref())?;
//! let tools = ToolSet::builder()
//!     .add(fs, CallOptions::default(), None)
//!     .await?
//!     .build();
//! let coder = CallOptions { tools: Some(tools), ..CallOptions::default() };
//! # let _ = coder;
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::call::CallOptions;
use crate::plugin::{CompiledPlugin, ToolError, ToolSpec};

/// The tools granted to one caller. Cheap to clone.
#[derive(Clone, Default)]
pub struct ToolSet {
    plugins: Arc<Vec<GrantedPlugin>>,
    observer: Option<Arc<dyn ToolObserver>>,
}

/// One tool plugin in a [`ToolSet`].
struct GrantedPlugin {
    plugin: CompiledPlugin,
    options: CallOptions,
    /// The plugin's tools the caller may use, unqualified.
    specs: Vec<ToolSpec>,
}

impl std::fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolSet")
            .field("tools", &self.names())
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

/// Builds a [`ToolSet`], listing each plugin's tools once.
#[derive(Default)]
pub struct ToolSetBuilder {
    plugins: Vec<GrantedPlugin>,
}

impl ToolSetBuilder {
    /// Grants `plugin`'s tools, or only those named in `only` (unqualified
    /// names), each call running under `options`. Lists the plugin's tools
    /// now, in a sandbox under `options`.
    pub async fn add(
        mut self,
        plugin: CompiledPlugin,
        options: CallOptions,
        only: Option<&[String]>,
    ) -> Result<ToolSetBuilder, String> {
        if self
            .plugins
            .iter()
            .any(|p| p.plugin.name() == plugin.name())
        {
            return Err(format!("tool plugin {} is granted twice", plugin.name()));
        }
        let listed = plugin.list_tools(&options).await;
        let mut specs = listed
            .result
            .map_err(|e| format!("cannot list the tools of plugin {}: {e}", plugin.name()))?;
        if let Some(only) = only {
            for name in only {
                if !specs.iter().any(|s| &s.name == name) {
                    return Err(format!(
                        "plugin {} has no tool {name:?}; it has: {}",
                        plugin.name(),
                        specs
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            specs.retain(|s| only.contains(&s.name));
        }
        self.plugins.push(GrantedPlugin {
            plugin,
            options,
            specs,
        });
        Ok(self)
    }

    pub fn build(self) -> ToolSet {
        ToolSet {
            plugins: Arc::new(self.plugins),
            observer: None,
        }
    }
}

impl ToolSet {
    pub fn builder() -> ToolSetBuilder {
        ToolSetBuilder::default()
    }

    /// The same tools, with every call reported to `observer`.
    pub fn observed(&self, observer: Arc<dyn ToolObserver>) -> ToolSet {
        ToolSet {
            plugins: self.plugins.clone(),
            observer: Some(observer),
        }
    }

    /// Every granted tool with its qualified name `plugin.tool`.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.plugins
            .iter()
            .flat_map(|p| {
                p.specs.iter().map(|s| ToolSpec {
                    name: format!("{}.{}", p.plugin.name(), s.name),
                    description: s.description.clone(),
                    input_schema: s.input_schema.clone(),
                })
            })
            .collect()
    }

    /// The qualified names of the granted tools.
    pub fn names(&self) -> Vec<String> {
        self.specs().into_iter().map(|s| s.name).collect()
    }

    /// The names of the granted tool plugins.
    pub fn plugins(&self) -> Vec<&str> {
        self.plugins.iter().map(|p| p.plugin.name()).collect()
    }

    /// The plugin, its options and the unqualified tool for a qualified
    /// name, if it is granted.
    pub(crate) fn resolve(
        &self,
        qualified: &str,
    ) -> Option<(&CompiledPlugin, &CallOptions, String)> {
        let (plugin, tool) = qualified.split_once('.')?;
        let granted = self.plugins.iter().find(|p| p.plugin.name() == plugin)?;
        granted
            .specs
            .iter()
            .find(|s| s.name == tool)
            .map(|s| (&granted.plugin, &granted.options, s.name.clone()))
    }

    pub(crate) fn observer(&self) -> Option<&Arc<dyn ToolObserver>> {
        self.observer.as_ref()
    }
}

/// Names one tool call of one caller: the how-many-th call it is and what
/// it asked. An earlier attempt's call with the same key is the same step.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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
