//! The tools a role may call through `warden:plugin/tools`: tool plugins the
//! operator granted to it, each run in a sandbox of its own under its own
//! grants, and a hook that sees (and may replay) every call.
//!
//! ```no_run
//! use std::sync::Arc;
//! use warden_core::{CallOptions, Engine, EngineConfig, ToolSet};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new(&EngineConfig::default())?;
//! let fs = engine.load_file("target/plugins/fs.wasm".as_ref())?;
//! let tools = ToolSet::builder()
//!     .add(fs, CallOptions::default(), None)
//!     .await?
//!     .build();
//! let coder = CallOptions { tools: Some(Arc::new(tools)), ..CallOptions::default() };
//! # let _ = coder;
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::time::Instant;

use warden_api::BoxFuture;

use crate::call::{CallError, CallOptions};
use crate::host::tools::{ToolBox, ToolInvocation, ToolReturn};
use crate::plugin::CompiledPlugin;
use crate::tool::{ToolCallReport, ToolError, ToolObserver, ToolSpec};

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

/// Why a tool plugin cannot be granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolSetError {
    #[error("tool plugin {0} is granted twice")]
    GrantedTwice(String),
    #[error("cannot list the tools of plugin {plugin}: {error}")]
    CannotList { plugin: String, error: CallError },
    #[error("plugin {plugin} has no tool {tool:?}; it has: {}", has.join(", "))]
    NoSuchTool {
        plugin: String,
        tool: String,
        has: Vec<String>,
    },
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
    ) -> Result<ToolSetBuilder, ToolSetError> {
        if self
            .plugins
            .iter()
            .any(|p| p.plugin.name() == plugin.name())
        {
            return Err(ToolSetError::GrantedTwice(plugin.name().to_string()));
        }
        let listed = plugin.list_tools(&options).await;
        let mut specs = listed.result.map_err(|error| ToolSetError::CannotList {
            plugin: plugin.name().to_string(),
            error,
        })?;
        if let Some(only) = only {
            for name in only {
                if !specs.iter().any(|s| &s.name == name) {
                    return Err(ToolSetError::NoSuchTool {
                        plugin: plugin.name().to_string(),
                        tool: name.clone(),
                        has: specs.iter().map(|s| s.name.clone()).collect(),
                    });
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
    fn resolve(&self, qualified: &str) -> Option<(&CompiledPlugin, &CallOptions, String)> {
        let (plugin, tool) = qualified.split_once('.')?;
        let granted = self.plugins.iter().find(|p| p.plugin.name() == plugin)?;
        granted
            .specs
            .iter()
            .find(|s| s.name == tool)
            .map(|s| (&granted.plugin, &granted.options, s.name.clone()))
    }
}

impl ToolBox for ToolSet {
    fn specs(&self) -> Vec<ToolSpec> {
        ToolSet::specs(self)
    }

    /// Answers from the observer's record when it has one (the tool does
    /// not run again), otherwise runs the tool under its own grants with the
    /// caller's tenant and run, and no more fuel or time than the caller
    /// has left; tells the observer either way.
    fn call(&self, call: ToolInvocation) -> BoxFuture<'_, ToolReturn> {
        Box::pin(async move {
            let Some((plugin, options, tool)) = self.resolve(&call.name) else {
                return ToolReturn {
                    result: Err(ToolError::Denied(format!(
                        "tool {:?} is not granted",
                        call.name
                    ))),
                    fuel_used: 0,
                };
            };
            if let Some(observer) = &self.observer
                && let Some(recorded) = observer.replay(&call.key)
            {
                tracing::info!(tenant = %call.tenant, tool = %call.name, seq = call.key.seq, "tool call replayed from the journal");
                observer.finished(&ToolCallReport {
                    key: call.key,
                    arguments: call.arguments,
                    result: Ok(recorded.clone()),
                    replayed: true,
                    fuel_used: 0,
                    duration: Default::default(),
                });
                return ToolReturn {
                    result: Ok(recorded),
                    fuel_used: 0,
                };
            }
            let mut options = options.clone();
            options.tenant = call.tenant.clone();
            options.call_key = call
                .scope
                .as_ref()
                .map(|s| format!("{}/{}/{}", s.run, s.task, call.key.seq));
            options.scope = call.scope.clone();
            options.tools = None;
            options.limits.fuel = options.limits.fuel.min(call.fuel).max(1);
            options.limits.timeout = options
                .limits
                .timeout
                .min(call.deadline.saturating_duration_since(Instant::now()));
            let started = Instant::now();
            let outcome = plugin.call_tool(&options, &tool, &call.arguments).await;
            let result = match outcome.result {
                Ok(result) => result,
                Err(stopped) => Err(stopped_error(&call.name, &stopped)),
            };
            if let Some(observer) = &self.observer {
                observer.finished(&ToolCallReport {
                    key: call.key,
                    arguments: call.arguments,
                    result: result.clone(),
                    replayed: false,
                    fuel_used: outcome.usage.fuel_used,
                    duration: started.elapsed(),
                });
            }
            ToolReturn {
                result,
                fuel_used: outcome.usage.fuel_used,
            }
        })
    }
}

fn stopped_error(name: &str, stopped: &CallError) -> ToolError {
    ToolError::Failed(format!(
        "tool {name} was stopped: {stopped} (a tool gets at most what its caller has left)"
    ))
}
