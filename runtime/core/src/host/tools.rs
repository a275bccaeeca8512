//! `warden:plugin/tools`: a role calls the tools granted to it, each in a
//! fresh sandbox of the tool plugin's own, under that plugin's grants.
//!
//! Defined by hand rather than through the generated `Host` trait: a tool
//! call spends the caller's fuel and time, and only the store (not the
//! per-interface view a generated host gets) holds those.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

use crate::bindings::warden::plugin::types as wit;
use crate::call::RunScope;
use crate::plugin::ToolError;
use crate::state::CallState;
use crate::tools::{ToolCallKey, ToolCallReport, ToolSet};

const INTERFACE: &str = "warden:plugin/tools@0.1.0";

/// What a call's tools interface needs: the granted tools, the run it
/// belongs to, and how many tool calls it has made.
#[derive(Default)]
pub(crate) struct ToolsContext {
    tools: Option<ToolSet>,
    scope: Option<RunScope>,
    calls: u32,
}

impl ToolsContext {
    pub(crate) fn new(tools: Option<ToolSet>, scope: Option<RunScope>) -> Self {
        ToolsContext {
            tools,
            scope,
            calls: 0,
        }
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    let mut instance = linker.instance(INTERFACE)?;
    instance.func_wrap_async(
        "list-tools",
        |store: StoreContextMut<'_, CallState>, (): ()| {
            let specs = list_tools(store.data());
            Box::new(async move { Ok((specs,)) })
        },
    )?;
    instance.func_wrap_async(
        "call-tool",
        |mut store: StoreContextMut<'_, CallState>, (name, arguments): (String, String)| {
            Box::new(async move {
                let result = call_tool(&mut store, name, arguments).await?;
                Ok((result.map_err(to_wit_error),))
            })
        },
    )?;
    Ok(())
}

fn list_tools(state: &CallState) -> Vec<wit::ToolSpec> {
    let Some(tools) = &state.tools.tools else {
        return Vec::new();
    };
    tools
        .specs()
        .into_iter()
        .map(|s| wit::ToolSpec {
            name: s.name,
            description: s.description,
            input_schema: s.input_schema.to_string(),
        })
        .collect()
}

async fn call_tool(
    store: &mut StoreContextMut<'_, CallState>,
    name: String,
    arguments: String,
) -> wasmtime::Result<Result<String, ToolError>> {
    let state = store.data_mut();
    let caller = state.labels.clone();
    let Some(tools) = state.tools.tools.clone() else {
        return Ok(Err(denied(&caller.plugin, &name, &ToolSet::default())));
    };
    let Some((plugin, options, tool)) = tools.resolve(&name) else {
        return Ok(Err(denied(&caller.plugin, &name, &tools)));
    };
    let key = ToolCallKey::new(state.tools.calls, &name, &arguments);
    state.tools.calls += 1;
    let scope = state.tools.scope.clone();
    let deadline = state.deadline;

    if let Some(observer) = tools.observer()
        && let Some(recorded) = observer.replay(&key)
    {
        tracing::info!(tenant = %caller.tenant, plugin = %caller.plugin, tool = %name, seq = key.seq, "tool call replayed from the journal");
        observer.finished(&ToolCallReport {
            key,
            arguments,
            result: Ok(recorded.clone()),
            replayed: true,
            fuel_used: 0,
            duration: Default::default(),
        });
        return Ok(Ok(recorded));
    }

    // The tool spends the caller's budget: no more fuel than the caller has
    // left (charged back below), no later than the caller's deadline.
    let fuel_left = store.get_fuel()?;
    let mut options = options.clone();
    options.tenant = caller.tenant.clone();
    options.scope = scope;
    options.tools = None;
    options.limits.fuel = options.limits.fuel.min(fuel_left);
    options.limits.timeout = options
        .limits
        .timeout
        .min(deadline.saturating_duration_since(Instant::now()));
    let started = Instant::now();
    let outcome = plugin.call_tool(&options, &tool, &arguments).await;
    store.set_fuel(fuel_left.saturating_sub(outcome.usage.fuel_used))?;

    let result = match outcome.result {
        Ok(result) => result,
        Err(stopped) => Err(ToolError::Failed(format!(
            "tool {name} was stopped: {stopped} (a tool gets at most what its caller has left)"
        ))),
    };
    tracing::info!(
        tenant = %caller.tenant, plugin = %caller.plugin, tool = %name, seq = key.seq,
        fuel_used = outcome.usage.fuel_used, ok = result.is_ok(), "tool call"
    );
    if let Some(observer) = tools.observer() {
        observer.finished(&ToolCallReport {
            key,
            arguments,
            result: result.clone(),
            replayed: false,
            fuel_used: outcome.usage.fuel_used,
            duration: started.elapsed(),
        });
    }
    Ok(result)
}

fn denied(caller: &Arc<str>, name: &str, tools: &ToolSet) -> ToolError {
    let granted = tools.names();
    let why = format!(
        "tool {name:?} is not granted to {caller} (granted: {}); the operator grants tool plugins to a role in the workflow's `[roles.NAME] tools`",
        if granted.is_empty() {
            "none".to_string()
        } else {
            granted.join(", ")
        }
    );
    tracing::info!(plugin = %caller, tool = name, "tool call denied");
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
