//! The tenant's own audit log (scope `audit:read`): its entries, and
//! whether its chain is whole.

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Auth, TenantCall};
use crate::audit::AuditEntry;
use crate::key::Scope;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Entries after this number (0: from the start).
    #[serde(default)]
    pub after: u64,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[utoipa::path(
    get, path = "/v1/audit", tag = "audit", security(("bearer" = [])),
    params(Page),
    responses((status = 200, body = [AuditEntry]), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 429, body = super::ErrorBody))
)]
pub async fn entries(
    State(state): State<AppState>,
    auth: Auth,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let call = TenantCall::admit(&state, auth, Scope::AuditRead).await?;
    let Query(page) = page.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = page.limit.unwrap_or(100).min(1000);
    let lines = state
        .operator
        .audit()
        .entries(&call.tenant.name)
        .await
        .map_err(|e| {
            tracing::error!(tenant = %call.tenant.name, error = %e, "cannot read the audit log");
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the audit log cannot be read; the server's log says why",
            )
        })?;
    let entries = lines
        .into_iter()
        .filter_map(|(_, entry)| entry.ok())
        .filter(|e| e.seq > page.after)
        .take(limit)
        .collect();
    Ok(Json(entries))
}

/// The result of checking the tenant's audit log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Verification {
    pub entries: usize,
    /// Whether the chain is whole.
    pub ok: bool,
    /// The first problem, naming the entry.
    pub problem: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = Verification), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 429, body = super::ErrorBody))
)]
pub async fn verify(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Verification>, ApiError> {
    let call = TenantCall::admit(&state, auth, Scope::AuditRead).await?;
    let verified = state.operator.verify_audit(&call.tenant.name).await?;
    Ok(Json(Verification {
        entries: verified.entries,
        ok: verified.problem.is_none(),
        problem: verified.problem,
    }))
}
