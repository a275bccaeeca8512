//! `GET /v1/tools` and `POST /v1/tools/{name}/call`: the tenant's tools,
//! each call in a fresh sandbox under the tenant's policy, admitted by its
//! concurrency quota.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use warden_core::{CallError, ToolError};

use super::{ApiError, AppState, Auth, JsonBody, TenantCall};
use crate::audit::AuditEvent;
use crate::control::Counts;
use crate::key::Scope;

/// One tool the tenant may call.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ToolInfo {
    /// `plugin__tool`: the name to call it by (as over MCP).
    pub name: String,
    pub plugin: String,
    pub tool: String,
    pub description: String,
    /// The JSON Schema of its arguments.
    #[schema(value_type = Object)]
    pub input_schema: Value,
}

/// What a call used.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallUsage {
    pub fuel: u64,
    pub duration_ms: u64,
}

/// How a call ended. A tool's own error, an exceeded limit and a trap are
/// answers (200), not request errors: the call happened.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum CallResponse {
    /// The tool's result, as JSON.
    Result {
        #[schema(value_type = Object)]
        result: Value,
        usage: CallUsage,
    },
    /// The tool reported an error of its own.
    ToolError {
        /// `invalid-arguments`, `unknown-tool`, `denied` or `failed`.
        kind: String,
        message: String,
        usage: CallUsage,
    },
    /// A limit stopped the call.
    Limit {
        /// `fuel`, `deadline`, `memory` or `output`.
        limit: String,
        message: String,
        usage: CallUsage,
    },
    /// The plugin trapped or broke the contract.
    Trap { message: String, usage: CallUsage },
}

fn audit_outcome(response: &CallResponse) -> &'static str {
    match response {
        CallResponse::Result { .. } => "ok",
        CallResponse::ToolError { .. } => "tool-error",
        CallResponse::Limit { .. } => "limit",
        CallResponse::Trap { .. } => "trap",
    }
}

/// The tenant's tools.
#[utoipa::path(
    get,
    path = "/v1/tools",
    tag = "tools",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tools this tenant may call", body = [ToolInfo]),
        (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody),
        (status = 429, body = super::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<ToolInfo>>, ApiError> {
    let call = TenantCall::admit(&state, auth, Scope::ToolsCall).await?;
    let tools = tenant_tools(&state, &call).await?;
    let Some(catalog) = &tools.catalog else {
        return Ok(Json(Vec::new()));
    };
    let listed = catalog
        .tools()
        .into_iter()
        .map(|tool| {
            let name = tool.name.to_string();
            let (plugin, unqualified) = catalog.origin(&name).unwrap_or_default();
            ToolInfo {
                plugin: plugin.to_string(),
                tool: unqualified.to_string(),
                description: tool.description.as_deref().unwrap_or_default().to_string(),
                input_schema: Value::Object((*tool.input_schema).clone()),
                name,
            }
        })
        .collect();
    Ok(Json(listed))
}

/// Calls one of the tenant's tools with the body as its arguments.
#[utoipa::path(
    post,
    path = "/v1/tools/{name}/call",
    tag = "tools",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The tool's name, `plugin__tool`")),
    request_body(content = Object, description = "The tool's arguments, a JSON object"),
    responses(
        (status = 200, description = "The call ran; how it ended", body = CallResponse),
        (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody),
        (status = 413, body = super::ErrorBody), (status = 415, body = super::ErrorBody),
        (status = 429, body = super::ErrorBody),
    )
)]
pub async fn call(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    JsonBody(arguments): JsonBody<serde_json::Map<String, Value>>,
) -> Result<Json<CallResponse>, ApiError> {
    let call = TenantCall::admit(&state, auth, Scope::ToolsCall).await?;
    let tools = tenant_tools(&state, &call).await?;
    let unknown = || {
        ApiError::not_found(format!(
            "no tool {name:?}; GET /v1/tools lists this tenant's tools"
        ))
    };
    let catalog = tools.catalog.as_ref().ok_or_else(unknown)?;
    let (plugin, tool) = catalog
        .origin(&name)
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .ok_or_else(unknown)?;
    let Some(admitted) = state.gate.enter(&call.tenant.name, &call.tenant.quotas) else {
        return Err(super::busy(&state, &call.tenant));
    };
    let started = std::time::Instant::now();
    let _sandbox = admitted.sandbox().await;
    let want = catalog.fuel(&name).unwrap_or(u64::MAX);
    let hold = state
        .meter
        .hold_fuel(&call.tenant, want)
        .await
        .map_err(|e| super::spent(&state, &call.tenant, e))?;
    let arguments = Value::Object(arguments).to_string();
    let outcome = catalog
        .call_outcome_within(&name, &arguments, Some(hold.granted()))
        .await
        .ok_or_else(unknown)?;
    hold.settle(outcome.usage.fuel_used);
    state.meter.add(
        &call.tenant.name,
        "tool",
        "",
        Counts {
            calls: 1,
            fuel: outcome.usage.fuel_used,
            ..Counts::default()
        },
    );
    let usage = CallUsage {
        fuel: outcome.usage.fuel_used,
        duration_ms: outcome.usage.duration.as_millis() as u64,
    };
    let response = match outcome.result {
        Ok(Ok(text)) => match serde_json::from_str(&text) {
            Ok(result) => CallResponse::Result { result, usage },
            Err(e) => CallResponse::Trap {
                message: format!("the tool's result is not JSON: {e}"),
                usage,
            },
        },
        Ok(Err(error)) => tool_error(error, usage),
        Err(CallError::Limit { kind, detail }) => CallResponse::Limit {
            limit: kind.to_string(),
            message: detail,
            usage,
        },
        Err(other) => CallResponse::Trap {
            message: other.to_string(),
            usage,
        },
    };
    let (fuel, duration_ms) = match &response {
        CallResponse::Result { usage, .. }
        | CallResponse::ToolError { usage, .. }
        | CallResponse::Limit { usage, .. }
        | CallResponse::Trap { usage, .. } => (usage.fuel, usage.duration_ms),
    };
    state.metrics.call(
        &call.tenant.name,
        "tool",
        audit_outcome(&response),
        started.elapsed().as_secs_f64(),
    );
    state
        .operator
        .record(
            &call.tenant.name,
            AuditEvent::new(
                "tool.call",
                Some(&call.caller.key_id),
                audit_outcome(&response),
                json!({
                    "plugin": plugin,
                    "tool": tool,
                    "fuel": fuel,
                    "duration_ms": duration_ms,
                    "narrowed": outcome.narrowed,
                }),
            ),
        )
        .await;
    Ok(Json(response))
}

fn tool_error(error: ToolError, usage: CallUsage) -> CallResponse {
    CallResponse::ToolError {
        kind: error.kind().to_string(),
        message: error.message().to_string(),
        usage,
    }
}

pub(super) async fn tenant_tools(
    state: &AppState,
    call: &TenantCall,
) -> Result<std::sync::Arc<crate::hosting::TenantTools>, ApiError> {
    state.hosting.tools(&call.tenant).await.map_err(|e| {
        tracing::error!(tenant = %call.tenant.name, error = %e, "cannot offer the tenant's tools");
        ApiError::new(
            StatusCode::CONFLICT,
            "tenant-misconfigured",
            "this tenant's tools cannot be offered as its policy stands; the operator must fix it (the server's log says why)",
        )
    })
}
