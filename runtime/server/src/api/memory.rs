//! A tenant's memory namespaces over HTTP: store, get, update, delete,
//! search and find, each through the namespace gate of the tenant's policy
//! (its `[grant] memory`), in the tenant's own space of the store.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use warden_api::memory::{Entry, Filter, Hit, MemoryError, Meta, SearchMode};
use warden_core::DirMode;

use super::{ApiError, AppState, Auth, JsonBody, TenantCall};
use crate::audit::AuditEvent;
use crate::key::Scope;
use crate::tenant;

/// A memory to store.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreMemory {
    pub content: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub meta: Meta,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Stored {
    pub id: String,
}

/// New content and/or metadata for a memory.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemory {
    pub content: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Meta>,
}

/// A search of one namespace.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Search {
    pub query: String,
    /// At most this many hits (default 5, at most 100).
    pub top_k: Option<u32>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub filter: Filter,
    /// `vector` (default), `text` or `hybrid`.
    #[serde(default)]
    #[schema(value_type = String)]
    pub mode: SearchMode,
}

/// Entries by metadata alone.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Find {
    #[serde(default)]
    #[schema(value_type = Object)]
    pub filter: Filter,
    /// At most this many (default 20, at most 1000).
    pub limit: Option<u32>,
}

/// The memory store, once the tenant may use `namespace` with `mode`.
async fn gate<'s>(
    state: &'s AppState,
    auth: Auth,
    namespace: &str,
    mode: DirMode,
) -> Result<(TenantCall, &'s dyn warden_api::memory::Memories), ApiError> {
    let scope = match mode {
        DirMode::ReadOnly => Scope::MemoryRead,
        DirMode::ReadWrite => Scope::MemoryWrite,
    };
    let call = TenantCall::admit(state, auth, scope).await?;
    let root = tenant::root(state.operator.data_dir(), &call.tenant.name);
    let policy = match &call.tenant.policy {
        Some(text) => {
            tenant::policy(text, &root).map_err(|e| super::internal("the tenant's policy", e))?
        }
        None => warden_core::Policy::default(),
    };
    let granted = policy.grant.memory.iter().any(|g| {
        g.covers(namespace) && (mode == DirMode::ReadOnly || g.mode == DirMode::ReadWrite)
    });
    if !granted {
        // Not granted looks like absent: the names a tenant cannot use are
        // none of its business.
        return Err(ApiError::not_found(format!(
            "no memory namespace {namespace:?} {} this tenant; its policy's `[grant] memory` lists those it may use",
            if mode == DirMode::ReadWrite {
                "writable by"
            } else {
                "readable by"
            }
        )));
    }
    let memory = state.memory.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "unsupported",
            "this server has no memory store (start it with a data dir)",
        )
    })?;
    Ok((call, memory))
}

pub(super) fn memory_error(e: MemoryError) -> ApiError {
    match e {
        MemoryError::Denied(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
        MemoryError::Invalid(m) => ApiError::bad_request(m),
        MemoryError::NotFound(_) => ApiError::not_found("no such memory in this namespace"),
        MemoryError::Unavailable(m) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
        }
    }
}

#[utoipa::path(
    post, path = "/v1/memory/{namespace}", tag = "memory", security(("bearer" = [])),
    params(("namespace" = String, Path)), request_body = StoreMemory,
    responses((status = 201, body = Stored), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 429, body = super::ErrorBody))
)]
pub async fn store(
    State(state): State<AppState>,
    auth: Auth,
    Path(namespace): Path<String>,
    JsonBody(body): JsonBody<StoreMemory>,
) -> Result<(StatusCode, Json<Stored>), ApiError> {
    let (call, memory) = gate(&state, auth, &namespace, DirMode::ReadWrite).await?;
    let id = memory
        .store(&call.tenant.name, &namespace, body.content, body.meta)
        .await
        .map_err(memory_error)?;
    state
        .operator
        .record(
            &call.tenant.name,
            AuditEvent::new(
                "memory.store",
                Some(&call.caller.key_id),
                "ok",
                json!({ "namespace": namespace, "id": id }),
            ),
        )
        .await;
    Ok((StatusCode::CREATED, Json(Stored { id })))
}

#[utoipa::path(
    get, path = "/v1/memory/{namespace}/{id}", tag = "memory", security(("bearer" = [])),
    params(("namespace" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Object), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody), (status = 429, body = super::ErrorBody))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path((namespace, id)): Path<(String, String)>,
) -> Result<Json<Entry>, ApiError> {
    let (call, memory) = gate(&state, auth, &namespace, DirMode::ReadOnly).await?;
    let entry = memory
        .get(&call.tenant.name, &namespace, &id)
        .await
        .map_err(memory_error)?;
    Ok(Json(entry))
}

#[utoipa::path(
    patch, path = "/v1/memory/{namespace}/{id}", tag = "memory", security(("bearer" = [])),
    params(("namespace" = String, Path), ("id" = String, Path)), request_body = UpdateMemory,
    responses((status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 429, body = super::ErrorBody))
)]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path((namespace, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateMemory>,
) -> Result<Json<Entry>, ApiError> {
    let (call, memory) = gate(&state, auth, &namespace, DirMode::ReadWrite).await?;
    let entry = memory
        .update(&call.tenant.name, &namespace, &id, body.content, body.meta)
        .await
        .map_err(memory_error)?;
    Ok(Json(entry))
}

#[utoipa::path(
    delete, path = "/v1/memory/{namespace}/{id}", tag = "memory", security(("bearer" = [])),
    params(("namespace" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody), (status = 429, body = super::ErrorBody))
)]
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path((namespace, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (call, memory) = gate(&state, auth, &namespace, DirMode::ReadWrite).await?;
    memory
        .delete(&call.tenant.name, &namespace, &id)
        .await
        .map_err(memory_error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/v1/memory/{namespace}/search", tag = "memory", security(("bearer" = [])),
    params(("namespace" = String, Path)), request_body = Search,
    responses((status = 200, body = [Object]), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 429, body = super::ErrorBody))
)]
pub async fn search(
    State(state): State<AppState>,
    auth: Auth,
    Path(namespace): Path<String>,
    JsonBody(body): JsonBody<Search>,
) -> Result<Json<Vec<Hit>>, ApiError> {
    let (call, memory) = gate(&state, auth, &namespace, DirMode::ReadOnly).await?;
    let top_k = body.top_k.unwrap_or(5).clamp(1, 100);
    let hits = memory
        .search(
            &call.tenant.name,
            &namespace,
            &body.query,
            top_k,
            &body.filter,
            body.mode,
        )
        .await
        .map_err(memory_error)?;
    Ok(Json(hits))
}

#[utoipa::path(
    post, path = "/v1/memory/{namespace}/find", tag = "memory", security(("bearer" = [])),
    params(("namespace" = String, Path)), request_body = Find,
    responses((status = 200, body = [Object]), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 429, body = super::ErrorBody))
)]
pub async fn find(
    State(state): State<AppState>,
    auth: Auth,
    Path(namespace): Path<String>,
    JsonBody(body): JsonBody<Find>,
) -> Result<Json<Vec<Entry>>, ApiError> {
    let (call, memory) = gate(&state, auth, &namespace, DirMode::ReadOnly).await?;
    let limit = body.limit.unwrap_or(20).clamp(1, 1000);
    let entries = memory
        .find(&call.tenant.name, &namespace, &body.filter, limit)
        .await
        .map_err(memory_error)?;
    Ok(Json(entries))
}
