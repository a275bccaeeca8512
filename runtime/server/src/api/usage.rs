//! `GET /v1/usage`: what the tenant used, per UTC day, kind and model, and
//! what its daily quotas leave of today (scope `audit:read`).

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Auth, TenantCall};
use crate::control::{Counts, UsageRow};
use crate::key::Scope;
use crate::usage::{day_of, today};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Days back from today, today included (default 30, at most 366).
    pub days: Option<u32>,
}

/// What a daily quota leaves of today; `null` where there is no quota.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Left {
    pub fuel: Option<u64>,
    pub tokens: Option<u64>,
    /// US dollars.
    pub cost: Option<f64>,
}

/// What the tenant holds against a standing quota.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Standing {
    pub used: u64,
    pub quota: u64,
}

/// The standing quotas (not renewed daily); `null` where there is none.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Holding {
    /// Memory entries, all namespaces together.
    pub memory_entries: Option<Standing>,
    /// Bytes its files and run workspaces take, as last measured plus
    /// what its calls wrote since.
    pub workspace_bytes: Option<Standing>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    /// Today, `YYYY-MM-DD` UTC.
    pub today: String,
    /// Today's use, every kind together.
    pub used_today: Counts,
    /// What the daily quotas leave of today; they renew at 00:00 UTC.
    pub left_today: Left,
    pub holding: Holding,
    /// Each day's use by kind (`tool`, `mcp`, `exec`, `run`, `llm`) and,
    /// for model calls, model.
    pub days: Vec<UsageRow>,
}

#[utoipa::path(
    get, path = "/v1/usage", tag = "usage", security(("bearer" = [])),
    params(Window),
    responses((status = 200, body = UsageReport), (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody),
        (status = 429, body = super::ErrorBody))
)]
pub async fn usage(
    State(state): State<AppState>,
    auth: Auth,
    window: Result<Query<Window>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<UsageReport>, ApiError> {
    let call = TenantCall::admit(&state, auth, Scope::AuditRead).await?;
    let Query(window) = window.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let days = window.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError::bad_request(format!(
            "days is {days}; ask for 1 to 366 days"
        )));
    }
    let today = today();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let since = day_of(now.saturating_sub(u64::from(days - 1) * 86_400));
    // What calls just now used, too.
    state.meter.flush().await;
    let rows = state
        .operator
        .control()
        .usage(&call.tenant.name, &since)
        .await
        .map_err(|e| super::internal("reading usage", e))?;
    let mut used_today = Counts::default();
    for row in rows.iter().filter(|r| r.day == today) {
        used_today.add(&row.counts);
    }
    let quotas = &call.tenant.quotas;
    let left_today = Left {
        fuel: quotas
            .fuel_per_day
            .map(|cap| cap.saturating_sub(used_today.fuel)),
        tokens: quotas
            .tokens_per_day
            .map(|cap| cap.saturating_sub(used_today.input_tokens + used_today.output_tokens)),
        cost: quotas
            .cost_per_day
            .map(|cap| (cap - used_today.cost).max(0.0)),
    };
    let memory_entries = match (quotas.memory_entries, &state.memory) {
        // A store that cannot count now leaves the figure out.
        (Some(quota), Some(memory)) => memory
            .entries(&call.tenant.name)
            .await
            .ok()
            .map(|used| Standing { used, quota }),
        _ => None,
    };
    let workspace_bytes = state.workspaces.usage(&call.tenant.name).map(|w| Standing {
        used: w.quota_bytes.saturating_sub(w.left_bytes),
        quota: w.quota_bytes,
    });
    Ok(Json(UsageReport {
        today,
        used_today,
        left_today,
        holding: Holding {
            memory_entries,
            workspace_bytes,
        },
        days: rows,
    }))
}
