//! `warden:plugin/tools`: a role calls the tools granted to it, each in a
//! fresh sandbox of the tool plugin's own, under that plugin's grants.
//!
//! The gate is here: only a tool the [`ToolBox`] lists may be called;
//! anything else is `denied`, naming what is granted. A granted call runs
//! through [`nested::run_child`], so the tool spends the role's fuel and
//! time, never more than the role has left.
//!
//! Linked by hand rather than through the generated `Host` trait: a tool
//! call spends the caller's fuel, and only the store (not the view a
//! generated host gets) holds it.

use std::sync::Arc;
use std::time::Instant;

use warden_api::BoxFuture;
use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

use crate::bindings::warden::plugin::types as wit;
use crate::grant::TenantId;
use crate::nested::{self, Spent};
use crate::scope::{CallLabels, RunScope};
use crate::tool::{ToolCallKey, ToolError, ToolSpec};

const INTERFACE: &str = "warden:plugin/tools@0.1.0";

/// The tools a caller may call through `warden:plugin/tools`.
/// [`ToolSet`](crate::ToolSet) is the one warden builds from a workflow.
pub trait ToolBox: Send + Sync + std::fmt::Debug {
    /// Every granted tool, named `plugin.tool`.
    fn specs(&self) -> Vec<ToolSpec>;

    /// Runs one granted tool (`call.name` is one of [`ToolBox::specs`]) in a
    /// sandbox of its own, within `call`'s fuel and deadline.
    fn call(&self, call: ToolInvocation) -> BoxFuture<'_, ToolReturn>;
}

/// One tool call, as the gate passes it on.
#[derive(Debug, Clone)]
pub struct ToolInvocation {
    pub key: ToolCallKey,
    /// Qualified: `fs.write_file`.
    pub name: String,
    pub arguments: String,
    /// The caller's tenant: the tool runs for it too.
    pub tenant: TenantId,
    /// The run and task the caller works for.
    pub scope: Option<RunScope>,
    /// The most fuel the tool may use: what the caller has left.
    pub fuel: u64,
    /// The caller's deadline.
    pub deadline: Instant,
}

/// How one tool call ended.
#[derive(Debug, Clone)]
pub struct ToolReturn {
    /// The tool's JSON result, or why it failed (its own error, or the
    /// sandbox stopping it).
    pub result: Result<String, ToolError>,
    /// Charged to the caller.
    pub fuel_used: u64,
}

impl Spent for ToolReturn {
    fn fuel_used(&self) -> u64 {
        self.fuel_used
    }
}

/// What a call's tools interface needs: the granted tools, who calls, the
/// run it belongs to, and how many tool calls it has made.
pub(crate) struct ToolsContext {
    tools: Option<Arc<dyn ToolBox>>,
    labels: CallLabels,
    scope: Option<RunScope>,
    deadline: Instant,
    calls: u32,
}

impl ToolsContext {
    pub(crate) fn new(
        tools: Option<Arc<dyn ToolBox>>,
        labels: CallLabels,
        scope: Option<RunScope>,
        deadline: Instant,
    ) -> Self {
        ToolsContext {
            tools,
            labels,
            scope,
            deadline,
            calls: 0,
        }
    }
}

/// A store whose guests may call tools; `None` when the plugin does not
/// import `warden:plugin/tools`.
pub(crate) trait ToolsView: Send + 'static {
    fn tools(&mut self) -> Option<&mut ToolsContext>;
}

pub(crate) fn add_to_linker<T: ToolsView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut instance = linker.instance(INTERFACE)?;
    instance.func_wrap_async("list-tools", |mut store: StoreContextMut<'_, T>, (): ()| {
        let specs = store
            .data_mut()
            .tools()
            .and_then(|context| context.tools.as_ref())
            .map(|tools| tools.specs())
            .unwrap_or_default()
            .into_iter()
            .map(|s| wit::ToolSpec {
                name: s.name,
                description: s.description,
                input_schema: s.input_schema.to_string(),
            })
            .collect::<Vec<_>>();
        Box::new(async move { Ok((specs,)) })
    })?;
    instance.func_wrap_async(
        "call-tool",
        |mut store: StoreContextMut<'_, T>, (name, arguments): (String, String)| {
            Box::new(async move {
                let result = call_tool(&mut store, name, arguments).await?;
                Ok((result.map_err(to_wit_error),))
            })
        },
    )?;
    Ok(())
}

async fn call_tool<T: ToolsView>(
    store: &mut StoreContextMut<'_, T>,
    name: String,
    arguments: String,
) -> wasmtime::Result<Result<String, ToolError>> {
    let Some(context) = store.data_mut().tools() else {
        return Ok(Err(ToolError::Denied(
            "this call was set up without warden:plugin/tools".into(),
        )));
    };
    let labels = context.labels.clone();
    let Some(tools) = context.tools.clone() else {
        return Ok(Err(denied(&labels, &name, &[])));
    };
    let specs = tools.specs();
    if !specs.iter().any(|s| s.name == name) {
        let granted: Vec<String> = specs.into_iter().map(|s| s.name).collect();
        return Ok(Err(denied(&labels, &name, &granted)));
    }
    let key = ToolCallKey::new(context.calls, &name, &arguments);
    context.calls += 1;
    let scope = context.scope.clone();
    let deadline = context.deadline;

    let seq = key.seq;
    let returned = nested::run_child(store, deadline, |allotment| {
        tools.call(ToolInvocation {
            key,
            name: name.clone(),
            arguments,
            tenant: labels.tenant.clone(),
            scope,
            fuel: allotment.fuel,
            deadline: allotment.deadline,
        })
    })
    .await?;
    tracing::info!(
        tenant = %labels.tenant, plugin = %labels.plugin, tool = %name, seq,
        fuel_used = returned.fuel_used, ok = returned.result.is_ok(), "tool call"
    );
    Ok(returned.result)
}

fn denied(caller: &CallLabels, name: &str, granted: &[String]) -> ToolError {
    let why = format!(
        "tool {name:?} is not granted to {} (granted: {}); the operator grants tool plugins to a role in the workflow's `[roles.NAME] tools`",
        caller.plugin,
        if granted.is_empty() {
            "none".to_string()
        } else {
            granted.join(", ")
        }
    );
    tracing::info!(tenant = %caller.tenant, plugin = %caller.plugin, tool = name, "tool call denied");
    ToolError::Denied(why)
}

fn to_wit_error(e: ToolError) -> wit::ToolError {
    match e {
        ToolError::InvalidArguments(m) => wit::ToolError::InvalidArguments(m),
        ToolError::UnknownTool(m) => wit::ToolError::UnknownTool(m),
        ToolError::Denied(m) => wit::ToolError::Denied(m),
        ToolError::Failed(m) => wit::ToolError::Failed(m),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use wasmtime::{AsContextMut, Config, Engine, Store};

    use super::*;

    /// Grants `fs.read`; each call costs 250 fuel.
    #[derive(Debug, Default)]
    struct OneTool {
        seen: Mutex<Vec<ToolInvocation>>,
    }

    impl ToolBox for OneTool {
        fn specs(&self) -> Vec<ToolSpec> {
            vec![ToolSpec {
                name: "fs.read".into(),
                description: "d".into(),
                input_schema: serde_json::json!({}),
            }]
        }

        fn call(&self, call: ToolInvocation) -> BoxFuture<'_, ToolReturn> {
            self.seen.lock().unwrap().push(call);
            Box::pin(async {
                ToolReturn {
                    result: Ok("{}".into()),
                    fuel_used: 250,
                }
            })
        }
    }

    struct State {
        tools: Option<ToolsContext>,
    }

    impl ToolsView for State {
        fn tools(&mut self) -> Option<&mut ToolsContext> {
            self.tools.as_mut()
        }
    }

    fn store(tools: Option<Arc<dyn ToolBox>>, fuel: u64) -> Store<State> {
        let mut config = Config::new();
        config.consume_fuel(true);
        let engine = Engine::new(&config).unwrap();
        let labels = CallLabels {
            tenant: TenantId::new("acme").unwrap(),
            plugin: "role".into(),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut store = Store::new(
            &engine,
            State {
                tools: Some(ToolsContext::new(tools, labels, None, deadline)),
            },
        );
        store.set_fuel(fuel).unwrap();
        store
    }

    #[tokio::test]
    async fn a_granted_tool_gets_what_is_left_and_is_charged_back() {
        let tools = Arc::new(OneTool::default());
        let mut store = store(Some(tools.clone()), 1_000);
        let result = call_tool(&mut store.as_context_mut(), "fs.read".into(), "{}".into())
            .await
            .unwrap();
        assert_eq!(result, Ok("{}".into()));
        assert_eq!(store.get_fuel().unwrap(), 750);
        call_tool(
            &mut store.as_context_mut(),
            "fs.read".into(),
            "{\"a\":1}".into(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(store.get_fuel().unwrap(), 500);

        let seen = tools.seen.lock().unwrap();
        assert_eq!((seen[0].fuel, seen[1].fuel), (1_000, 750));
        assert_eq!((seen[0].key.seq, seen[1].key.seq), (0, 1));
        assert_eq!(seen[1].tenant.as_str(), "acme", "the caller's tenant");
    }

    #[tokio::test]
    async fn an_ungranted_tool_is_denied_naming_what_is_granted() {
        let tools = Arc::new(OneTool::default());
        let mut store = store(Some(tools.clone()), 1_000);
        let denied = call_tool(&mut store.as_context_mut(), "fs.write".into(), "{}".into())
            .await
            .unwrap();
        assert!(
            matches!(&denied, Err(ToolError::Denied(m)) if m.contains("fs.read")),
            "{denied:?}"
        );
        assert!(tools.seen.lock().unwrap().is_empty());
        assert_eq!(store.get_fuel().unwrap(), 1_000);

        let mut none = store_without_tools();
        let denied = call_tool(&mut none.as_context_mut(), "fs.read".into(), "{}".into())
            .await
            .unwrap();
        assert!(matches!(&denied, Err(ToolError::Denied(m)) if m.contains("none")));
    }

    fn store_without_tools() -> Store<State> {
        store(None, 10)
    }
}
