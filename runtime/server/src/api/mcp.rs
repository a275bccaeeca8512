//! `/v1/mcp`: the tenant's tools over MCP's streamable HTTP transport. The
//! bearer key decides the tenant, as everywhere; each tenant has its own
//! MCP sessions, so a session id from one tenant means nothing to another.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState, Auth, TenantCall};
use crate::key::Scope;

pub async fn mcp(
    State(state): State<AppState>,
    auth: Auth,
    request: Request,
) -> Result<Response, ApiError> {
    let call = TenantCall::admit(&state, auth, Scope::ToolsCall).await?;
    let tools = super::tools::tenant_tools(&state, &call).await?;
    let Some(service) = &tools.mcp else {
        return Err(ApiError::not_found(
            "this tenant may use no tool plugin, so it has no MCP endpoint",
        ));
    };
    Ok(service.handle(request).await.map(Body::new).into_response())
}
