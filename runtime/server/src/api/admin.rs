//! Tenants and keys over the API, for an operator key (scope `admin`):
//! the same operations as `warden tenants` and `warden keys`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Auth, JsonBody};
use crate::key::Scope;
use crate::operator::{Actor, KeyInfo, KeySpec, NewTenant};
use crate::tenant::{Quotas, TenantRecord};

/// A tenant to add.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddTenant {
    pub name: String,
    /// A policy file's text (TOML): the tenant's ceiling. Directories in
    /// it are relative to the tenant's files directory.
    pub policy: Option<String>,
    /// Plugin names the tenant may use; leave out (or `["*"]`) for all.
    #[serde(default)]
    pub plugins: Vec<String>,
    pub quotas: Option<Quotas>,
}

/// A tenant as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantInfo {
    pub name: String,
    pub policy: Option<String>,
    pub plugins: Vec<String>,
    pub quotas: Quotas,
    pub created: i64,
}

impl From<TenantRecord> for TenantInfo {
    fn from(t: TenantRecord) -> TenantInfo {
        TenantInfo {
            name: t.name,
            policy: t.policy,
            plugins: t.plugins,
            quotas: t.quotas,
            created: t.created,
        }
    }
}

/// A key to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// The tenant the key acts for; leave out for an operator key.
    pub tenant: Option<String>,
    pub scopes: Vec<Scope>,
    /// Lifetime in seconds.
    pub expires_in: Option<i64>,
    pub label: Option<String>,
}

/// A new key: `key` is the only copy of the secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    pub key: String,
    pub info: KeyInfo,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct KeyFilter {
    /// Only this tenant's keys.
    pub tenant: Option<String>,
}

fn operator(auth: &Auth) -> Result<&str, ApiError> {
    Ok(&auth.require(Scope::Admin)?.key_id)
}

#[utoipa::path(
    get, path = "/v1/tenants", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = [TenantInfo]), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody))
)]
pub async fn list_tenants(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<TenantInfo>>, ApiError> {
    operator(&auth)?;
    let tenants = state.operator.tenants().await?;
    Ok(Json(tenants.into_iter().map(TenantInfo::from).collect()))
}

#[utoipa::path(
    post, path = "/v1/tenants", tag = "admin", security(("bearer" = [])),
    request_body = AddTenant,
    responses((status = 201, body = TenantInfo), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 409, body = super::ErrorBody))
)]
pub async fn add_tenant(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<AddTenant>,
) -> Result<(StatusCode, Json<TenantInfo>), ApiError> {
    let by = operator(&auth)?;
    let record = state
        .operator
        .add_tenant(
            NewTenant {
                name: body.name,
                policy: body.policy,
                plugins: body.plugins,
                quotas: body.quotas,
            },
            Actor::Key(by),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

#[utoipa::path(
    get, path = "/v1/tenants/{name}", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = TenantInfo), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody))
)]
pub async fn show_tenant(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> Result<Json<TenantInfo>, ApiError> {
    operator(&auth)?;
    Ok(Json(state.operator.tenant(&name).await?.into()))
}

#[utoipa::path(
    delete, path = "/v1/tenants/{name}", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody),
        (status = 503, body = super::ErrorBody, description = "the shared memory store did not answer; the tenant stays"))
)]
pub async fn remove_tenant(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let by = operator(&auth)?;
    // Its memories first: a store that does not answer leaves the tenant
    // in place, to be removed again, rather than its memories behind.
    if let Some(memory) = &state.memory
        && state.operator.tenant(&name).await.is_ok()
    {
        memory
            .remove_tenant(&name)
            .await
            .map_err(super::memory::memory_error)?;
    }
    state.operator.remove_tenant(&name, Actor::Key(by)).await?;
    state.runs.stop_tenant(&name);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/v1/keys", tag = "admin", security(("bearer" = [])),
    params(KeyFilter),
    responses((status = 200, body = [KeyInfo]), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody))
)]
pub async fn list_keys(
    State(state): State<AppState>,
    auth: Auth,
    filter: Result<Query<KeyFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<KeyInfo>>, ApiError> {
    operator(&auth)?;
    let Query(filter) = filter.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(state.operator.keys(filter.tenant.as_deref()).await?))
}

#[utoipa::path(
    post, path = "/v1/keys", tag = "admin", security(("bearer" = [])),
    request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody))
)]
pub async fn create_key(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let by = operator(&auth)?;
    let (key, info) = state
        .operator
        .create_key(
            KeySpec {
                tenant: body.tenant,
                scopes: body.scopes,
                expires_in: body.expires_in,
                label: body.label,
            },
            Actor::Key(by),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: key.token,
            info,
        }),
    ))
}

#[utoipa::path(
    delete, path = "/v1/keys/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody))
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let by = operator(&auth)?;
    state.operator.revoke_key(&id, None, Actor::Key(by)).await?;
    Ok(StatusCode::NO_CONTENT)
}
