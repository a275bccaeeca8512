//! The HTTP API under `/v1`: who is calling is decided by the bearer key
//! (never by a body), every error is a JSON body that says what was wrong,
//! and a request a client got wrong is a 4xx, never a 5xx.

mod admin;
pub(crate) mod audit;
mod exec;
mod mcp;
mod memory;
pub mod openapi;
pub(crate) mod runs;
pub(crate) mod tools;
pub(crate) mod usage;

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde::de::DeserializeOwned;
use warden_core::document;

use crate::hosting::Hosting;
use crate::key::Scope;
use crate::metrics::Metrics;
use crate::operator::{Caller, Operator, OperatorError, Refusal};
use crate::quota::{CallGate, RateLimiter};
use crate::runs::RunHost;
use crate::tenant::TenantRecord;
use crate::usage::Meter;
use crate::workspace::Workspaces;

/// The most bytes of a request body.
pub const MAX_BODY: usize = 1024 * 1024;

/// What every handler shares.
pub struct Shared {
    pub operator: Arc<Operator>,
    pub hosting: Hosting,
    pub runs: Arc<RunHost>,
    /// The memory store (tenants' namespaces), when the server has one.
    pub memory: Option<Arc<dyn warden_api::memory::Memories>>,
    pub limiter: RateLimiter,
    pub gate: Arc<CallGate>,
    pub metrics: Arc<Metrics>,
    pub meter: Arc<Meter>,
    pub workspaces: Workspaces,
}

pub type AppState = Arc<Shared>;

/// The API's routes (without the server's own `/healthz` and friends).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/tools", get(tools::list))
        .route("/v1/tools/{name}/call", post(tools::call))
        .route("/v1/exec", post(exec::exec))
        .route("/v1/mcp", axum::routing::any(mcp::mcp))
        .route("/v1/runs", get(runs::list).post(runs::submit))
        .route("/v1/runs/{id}", get(runs::show))
        .route("/v1/runs/{id}/events", get(runs::events))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/runs/{id}/resume", post(runs::resume))
        .route("/v1/memory/{namespace}", post(memory::store))
        .route("/v1/memory/{namespace}/search", post(memory::search))
        .route("/v1/memory/{namespace}/find", post(memory::find))
        .route(
            "/v1/memory/{namespace}/{id}",
            get(memory::get)
                .patch(memory::update)
                .delete(memory::delete),
        )
        .route("/v1/usage", get(usage::usage))
        .route("/v1/audit", get(audit::entries))
        .route("/v1/audit/verify", get(audit::verify))
        .route(
            "/v1/tenants",
            get(admin::list_tenants).post(admin::add_tenant),
        )
        .route(
            "/v1/tenants/{name}",
            get(admin::show_tenant).delete(admin::remove_tenant),
        )
        .route("/v1/keys", get(admin::list_keys).post(admin::create_key))
        .route("/v1/keys/{id}", axum::routing::delete(admin::revoke_key))
        .fallback(not_found)
}

/// The error body: `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `unauthorized`, `forbidden`, `not-found`,
    /// `bad-request`, `rate-limited`, …
    pub code: &'static str,
    /// For people: what was wrong and how to fix it.
    pub message: String,
}

/// An answer that is not a success.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    headers: Vec<(HeaderName, String)>,
}

impl ApiError {
    /// What the error says, for a page that shows it.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    fn with_header(mut self, name: HeaderName, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.status, headers, Json(body)).into_response()
    }
}

impl From<OperatorError> for ApiError {
    fn from(e: OperatorError) -> ApiError {
        match e {
            OperatorError::BadInput(m) => ApiError::bad_request(m),
            OperatorError::NotFound(m) => ApiError::not_found(m),
            OperatorError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            OperatorError::Internal(m) => {
                tracing::error!(error = %m, "operator request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server could not do this; its log says why",
                )
            }
        }
    }
}

/// A 500 for what failed on the server's side, logged with `what`.
pub fn internal(what: &str, error: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %error, "{what} failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("{what} failed on the server; its log says why"),
    )
}

/// A 429 for a tenant whose sandboxes are all running and whose queue is
/// full.
pub fn busy(state: &AppState, tenant: &TenantRecord) -> ApiError {
    state.metrics.refused(&tenant.name, "busy");
    let quotas = &tenant.quotas;
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "busy",
        format!(
            "this tenant has {} calls running and {} waiting, its quota; retry when one ends",
            quotas.concurrent_calls, quotas.queued_calls
        ),
    )
    .with_header(header::RETRY_AFTER, "1".into())
}

/// A 429 for a tenant whose daily quota is spent (or held by its calls
/// running now), with when to come back.
pub fn spent(state: &AppState, tenant: &TenantRecord, spent: crate::usage::Spent) -> ApiError {
    state.metrics.refused(&tenant.name, "quota");
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota-spent", spent.why)
        .with_header(header::RETRY_AFTER, spent.retry_after.to_string())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; GET /v1/openapi.json lists them")
}

/// The caller, authenticated: every `/v1` endpoint but the OpenAPI document
/// takes one.
#[derive(Debug)]
pub struct Auth(pub Caller);

impl Auth {
    /// `403` unless the key has `scope`.
    pub fn require(&self, scope: Scope) -> Result<&Caller, ApiError> {
        if self.0.may(scope) {
            Ok(&self.0)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this key lacks scope {scope}; create a key with --scope {scope}"),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Auth, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match state.operator.authenticate(header).await {
            Ok(caller) => Ok(Auth(caller)),
            Err(refusal) => {
                let message = match refusal {
                    Refusal::Missing => {
                        "send an API key as `Authorization: Bearer wdn_…` (`warden keys create` makes one)"
                    }
                    Refusal::Malformed => {
                        "this is not a warden API key; keys look like wdn_<16 hex digits>_<64 hex digits>"
                    }
                    Refusal::Unknown => "this API key is not valid",
                    Refusal::Unusable { reason, .. } => reason,
                };
                Err(
                    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
                        .with_header(header::WWW_AUTHENTICATE, "Bearer".into()),
                )
            }
        }
    }
}

/// A tenant's caller with the scope the endpoint needs, admitted by the
/// tenant's request rate.
#[derive(Debug)]
pub struct TenantCall {
    pub caller: Caller,
    pub tenant: TenantRecord,
}

impl TenantCall {
    pub async fn admit(state: &AppState, auth: Auth, scope: Scope) -> Result<TenantCall, ApiError> {
        auth.require(scope)?;
        let Some(name) = auth.0.tenant.clone() else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "an operator key acts for no tenant; use a key of the tenant (`warden keys create --tenant NAME`)",
            ));
        };
        let tenant = state.operator.tenant(&name).await.map_err(|_| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this API key is not valid",
            )
        })?;
        if let Err(rate) = state.limiter.take(&tenant.name, &tenant.quotas) {
            state.metrics.refused(&tenant.name, "rate");
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                format!(
                    "more than {} requests per second (burst {}); retry in {} s",
                    tenant.quotas.requests_per_second, tenant.quotas.burst, rate.reset
                ),
            )
            .with_header(header::RETRY_AFTER, rate.reset.to_string())
            .with_header(
                HeaderName::from_static("ratelimit-limit"),
                rate.limit.to_string(),
            )
            .with_header(HeaderName::from_static("ratelimit-remaining"), "0".into())
            .with_header(
                HeaderName::from_static("ratelimit-reset"),
                rate.reset.to_string(),
            ));
        }
        state.workspaces.admit(&tenant).await;
        Ok(TenantCall {
            caller: auth.0,
            tenant,
        })
    }
}

/// A JSON request body: at most [`MAX_BODY`] bytes, unknown fields refused
/// (by the target type), and a parse error that names the field.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<JsonBody<T>, ApiError> {
        if let Some(kind) = request.headers().get(header::CONTENT_TYPE) {
            let kind = kind.to_str().unwrap_or_default();
            let media = kind.split(';').next().unwrap_or_default().trim();
            if !media.eq_ignore_ascii_case("application/json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported-media-type",
                    format!(
                        "the body is {media:?}; send JSON with `Content-Type: application/json`"
                    ),
                ));
            }
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| {
                let status = e.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        status,
                        "too-large",
                        format!("the body is over {MAX_BODY} bytes"),
                    )
                } else {
                    ApiError::bad_request(format!("the body could not be read: {e}"))
                }
            })?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ApiError::bad_request("the body is not UTF-8 JSON"))?;
        document::parse("the body", text)
            .map_err(ApiError::bad_request)
            .and_then(|value| {
                serde_json::from_value(value)
                    .map_err(|e| ApiError::bad_request(format!("the body: {e}")))
            })
            .map(JsonBody)
    }
}
