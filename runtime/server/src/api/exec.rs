//! `POST /v1/exec`: untrusted Python or JavaScript in a fresh sandbox with a
//! scratch directory at /work and nothing else, as `warden exec --json`
//! runs it, under the tenant's limits (a request may ask for less).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use warden_core::exec::ExecReport;
use warden_core::{CallOptions, Language, LimitSettings, TenantId};

use super::{ApiError, AppState, Auth, JsonBody, TenantCall};
use crate::audit::AuditEvent;
use crate::control::Counts;
use crate::key::Scope;
use crate::tenant;

/// Code to run.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// `python` or `js`.
    pub language: String,
    pub code: String,
    /// What the program reads on stdin.
    #[serde(default)]
    pub stdin: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Files to put in /work first: relative path → text.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Lower limits than the tenant's (higher ones are cut to the tenant's).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub limits: LimitSettings,
}

/// How the program ended, as `warden exec --json` reports it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExecResponse {
    pub stdout: String,
    pub stderr: String,
    /// None when a limit or a trap stopped the program.
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub fuel_used: u64,
    /// The limit that stopped it: `fuel`, `deadline`, `memory` or `output`.
    pub limit: Option<String>,
    pub trap: Option<String>,
}

impl From<ExecReport> for ExecResponse {
    fn from(r: ExecReport) -> ExecResponse {
        ExecResponse {
            stdout: r.stdout,
            stderr: r.stderr,
            exit_code: r.exit_code,
            duration_ms: r.duration_ms,
            fuel_used: r.fuel_used,
            limit: r.limit,
            trap: r.trap,
        }
    }
}

#[utoipa::path(
    post, path = "/v1/exec", tag = "exec", security(("bearer" = [])),
    request_body = ExecRequest,
    responses(
        (status = 200, description = "The program ran; how it ended", body = ExecResponse),
        (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 413, body = super::ErrorBody),
        (status = 415, body = super::ErrorBody), (status = 429, body = super::ErrorBody),
    )
)]
pub async fn exec(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(request): JsonBody<ExecRequest>,
) -> Result<Json<ExecResponse>, ApiError> {
    let call = TenantCall::admit(&state, auth, Scope::Exec).await?;
    let language = Language::parse(&request.language).ok_or_else(|| {
        ApiError::bad_request(format!(
            "language {:?} is not one warden runs; use \"python\" or \"js\"",
            request.language
        ))
    })?;
    let engine = state.runs.engine();
    let runtime = engine.runtime(language).map_err(|e| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "unsupported",
            format!("this server cannot run {language}: {e}"),
        )
    })?;
    let root = tenant::root(state.operator.data_dir(), &call.tenant.name);
    let policy = match &call.tenant.policy {
        Some(text) => {
            tenant::policy(text, &root).map_err(|e| super::internal("the tenant's policy", e))?
        }
        None => warden_core::Policy::default(),
    };
    // The runtime is the operator's, trusted as the binary is: a policy
    // that requires signed plugins does not refuse it.
    let policy = warden_core::Policy {
        require_signature: false,
        ..policy
    };
    let (_, ceiling) = policy
        .for_plugin(runtime.name(), runtime.sha256(), runtime.signer())
        .map_err(|e| super::internal("the tenant's policy", e))?;
    let tenant_limits = runtime
        .limits(ceiling, LimitSettings::default())
        .map_err(|e| super::internal("the tenant's limits", e))?;
    request
        .limits
        .check()
        .map_err(|e| ApiError::bad_request(format!("limits: {e}")))?;
    let limits = request
        .limits
        .at_most(&tenant_limits)
        .apply_to(tenant_limits)
        .map_err(|e| ApiError::bad_request(format!("limits: {e}")))?;
    let options = CallOptions {
        tenant: TenantId::new(&call.tenant.name)
            .map_err(|e| super::internal("the tenant id", e))?,
        limits,
        ..CallOptions::default()
    };
    let scratch = engine
        .scratch()
        .map_err(|e| super::internal("a scratch dir", e))?;
    for (path, text) in &request.files {
        scratch
            .write(path, text.as_bytes())
            .map_err(|e| ApiError::bad_request(format!("files: {e}")))?;
    }
    let Some(admitted) = state.gate.enter(&call.tenant.name, &call.tenant.quotas) else {
        return Err(super::busy(&state, &call.tenant));
    };
    let started = std::time::Instant::now();
    let _sandbox = admitted.sandbox().await;
    let hold = state
        .meter
        .hold_fuel(&call.tenant, options.limits.fuel)
        .await
        .map_err(|e| super::spent(&state, &call.tenant, e))?;
    let mut options = options;
    options.limits.fuel = hold.granted();
    let outcome = engine
        .run_code(
            language,
            &request.code,
            &scratch,
            request.stdin.into_bytes(),
            &request.args,
            &options,
        )
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let outcome = outcome.map_err(|e| {
        state
            .metrics
            .call(&call.tenant.name, "exec", "error", seconds);
        ApiError::bad_request(e.to_string())
    })?;
    hold.settle(outcome.usage.fuel_used);
    state.meter.add(
        &call.tenant.name,
        "exec",
        "",
        Counts {
            calls: 1,
            fuel: outcome.usage.fuel_used,
            ..Counts::default()
        },
    );
    let report = ExecReport::new(&outcome).map_err(|e| super::internal("the sandbox", e))?;
    let ended = match (&report.limit, &report.trap) {
        (Some(_), _) => "limit",
        (None, Some(_)) => "trap",
        _ => "ok",
    };
    state
        .metrics
        .call(&call.tenant.name, "exec", ended, seconds);
    state
        .operator
        .record(
            &call.tenant.name,
            AuditEvent::new(
                "exec",
                Some(&call.caller.key_id),
                ended,
                json!({
                    "language": language.name(),
                    "exit_code": report.exit_code,
                    "limit": report.limit,
                    "fuel": report.fuel_used,
                    "duration_ms": report.duration_ms,
                }),
            ),
        )
        .await;
    Ok(Json(report.into()))
}
