//! Runs over HTTP: submit a workflow (TOML or JSON) or a goal, list, read
//! one's state and report, and follow its journal live as server-sent
//! events, resumable with `Last-Event-ID`, ending with an explicit final
//! event.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Serialize;
use serde_json::{Value, json};
use warden_core::document;
use warden_run::workflow::Workflow;
use warden_run::{Record, RunError, RunState, RunStatus, check_run_id, report};

use super::{ApiError, AppState, Auth, MAX_BODY, TenantCall};
use crate::audit::AuditEvent;
use crate::key::Scope;
use crate::runs::{Followed, Submission};

/// A run as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunSummary {
    pub id: String,
    pub goal: String,
    /// `running` (or stopped, resumable) until it ends: then `succeeded`,
    /// `not-accepted`, `failed` or `cancelled`.
    pub status: String,
    pub tasks: usize,
    /// Milliseconds since the Unix epoch.
    pub started_ms: u64,
}

/// The answer to a submitted run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Submitted {
    pub id: String,
    pub status: String,
    /// Where its events stream.
    pub events: String,
}

pub(crate) fn status(state: &RunState) -> String {
    match warden_run::ended(state) {
        Some(status) => status_name(status).into(),
        None => "running".into(),
    }
}

pub(crate) fn status_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::NotAccepted => "not-accepted",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}

fn run_error(e: RunError) -> ApiError {
    match e {
        RunError::Workflow(w) => ApiError::bad_request(w.to_string()),
        RunError::Plugin(m) => ApiError::bad_request(m),
        RunError::NotFound(_) => no_run(),
        RunError::Busy(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
        other => {
            tracing::error!(error = %other, "a run could not be started");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the run could not be set up; the server's log says why",
            )
        }
    }
}

fn no_run() -> ApiError {
    ApiError::not_found("no such run; GET /v1/runs lists this tenant's runs")
}

/// The most characters of an `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 200;

/// Submits a run: a workflow as TOML (`Content-Type: application/toml`) or
/// JSON with the same fields, or `{"goal": "..."}` for the built-in
/// workflow. The same `Idempotency-Key` with the same body gives the same
/// run.
#[utoipa::path(
    post, path = "/v1/runs", tag = "runs", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Submitting again with this key returns the first run")),
    request_body(content = Object, description = "A workflow (TOML or JSON) or {\"goal\": \"...\"}", content_type = "application/json"),
    responses(
        (status = 202, description = "The run started", body = Submitted),
        (status = 200, description = "The run this idempotency key started before", body = Submitted),
        (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 409, body = super::ErrorBody),
        (status = 413, body = super::ErrorBody), (status = 415, body = super::ErrorBody),
        (status = 429, body = super::ErrorBody),
    )
)]
pub async fn submit(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let call = TenantCall::admit(&state, auth, Scope::RunsWrite).await?;
    if body.len() > MAX_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("the body is over {MAX_BODY} bytes"),
        ));
    }
    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(value) => {
            let key = value.to_str().ok().filter(|k| {
                !k.is_empty()
                    && k.len() <= MAX_IDEMPOTENCY_KEY
                    && k.bytes().all(|b| b.is_ascii_graphic())
            });
            Some(key.ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
                ))
            })?)
        }
    };
    let (workflow, goal) = read_submission(&headers, &body)?;
    let body_hash = blake3::hash(&body).to_hex().to_string();
    let runs = state.runs.clone();
    let tenant = call.tenant.name.clone();
    // A tenant's submissions are one at a time, so that the same key sent
    // twice at once starts one run, and two runs cannot both take the last
    // place its quota leaves.
    let lock = runs.submission_lock(&tenant);
    let _one_at_a_time = lock.lock().await;
    let run = warden_run::new_run_id();
    if let Some(key) = idempotency {
        // The key is claimed for this run before it starts: of two
        // requests with one key, on this node or two, one claims it and
        // the other answers with its run.
        let control = state.operator.control();
        control
            .set_idempotent_run(
                &tenant,
                key,
                &crate::control::IdempotentRun {
                    run: run.clone(),
                    body_hash: body_hash.clone(),
                },
            )
            .await
            .map_err(|e| super::internal("idempotency record", e))?;
        let earlier = control
            .idempotent_run(&tenant, key)
            .await
            .map_err(|e| super::internal("idempotency lookup", e))?;
        if let Some(earlier) = earlier
            && earlier.run != run
        {
            if earlier.body_hash != body_hash {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "this Idempotency-Key was used for another request; use a new key for a new run",
                ));
            }
            let answer = Submitted {
                events: format!("/v1/runs/{}/events", earlier.run),
                status: runs
                    .load(&tenant, &earlier.run)
                    .await
                    .map(|s| status(&s))
                    .unwrap_or_else(|_| "running".into()),
                id: earlier.run,
            };
            return Ok((
                StatusCode::OK,
                [("idempotent-replayed", "true")],
                Json(answer),
            )
                .into_response());
        }
    }
    let submitted = runs.submit(&call.tenant, run.clone(), workflow, goal).await;
    if let Err(e) = submitted {
        // The run did not start: the key is free for the next try.
        if let Some(key) = idempotency
            && let Err(forget) = state
                .operator
                .control()
                .forget_idempotent_run(&tenant, key, &run)
                .await
        {
            tracing::warn!(%tenant, error = %forget, "cannot free an idempotency key");
        }
        return Err(busy_or(&state, &call.tenant, e));
    }
    state
        .operator
        .record(
            &tenant,
            AuditEvent::new(
                "run.submit",
                Some(&call.caller.key_id),
                "ok",
                json!({ "run": run }),
            ),
        )
        .await;
    let answer = Submitted {
        events: format!("/v1/runs/{run}/events"),
        status: "running".into(),
        id: run,
    };
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// The workflow and goal a body asks for.
fn read_submission(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Workflow, Option<String>), ApiError> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_else(|| "application/json".into());
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    match media.as_str() {
        "application/toml" => {
            let workflow = Workflow::parse(text, "the request body")
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            Ok((workflow, None))
        }
        "application/json" => {
            let value = document::parse("the body", text).map_err(ApiError::bad_request)?;
            match value {
                Value::Object(map) if map.len() == 1 && map.contains_key("goal") => {
                    let goal = match &map["goal"] {
                        Value::String(goal) if !goal.trim().is_empty() => goal.clone(),
                        _ => {
                            return Err(ApiError::bad_request("`goal` must be a non-empty string"));
                        }
                    };
                    let workflow = Workflow::goal()
                        .map_err(|e| super::internal("the built-in workflow", e))?;
                    Ok((workflow, Some(goal)))
                }
                value @ Value::Object(_) => {
                    let workflow = Workflow::from_json(value, "the request body")
                        .map_err(|e| ApiError::bad_request(e.to_string()))?;
                    Ok((workflow, None))
                }
                _ => Err(ApiError::bad_request(
                    "the body must be a workflow object or {\"goal\": \"...\"}",
                )),
            }
        }
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            format!("the body is {other:?}; send a workflow as application/toml, or JSON"),
        )),
    }
}

/// The tenant's runs, oldest first.
#[utoipa::path(
    get, path = "/v1/runs", tag = "runs", security(("bearer" = [])),
    responses((status = 200, body = [RunSummary]), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 429, body = super::ErrorBody))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<RunSummary>>, ApiError> {
    let call = TenantCall::admit(&state, auth, Scope::RunsRead).await?;
    let runs = state.runs.list(&call.tenant.name).await;
    Ok(Json(
        runs.iter()
            .map(|s| RunSummary {
                id: s.run.clone(),
                goal: s.goal.clone(),
                status: status(s),
                tasks: s.tasks.len(),
                started_ms: s.started_ms,
            })
            .collect(),
    ))
}

/// One run's state and report: tasks, usage, verdict, dead letters.
#[utoipa::path(
    get, path = "/v1/runs/{id}", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody),
        (status = 429, body = super::ErrorBody))
)]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let call = TenantCall::admit(&state, auth, Scope::RunsRead).await?;
    let run = load(&state, &call.tenant.name, &id).await?;
    Ok(Json(view(&run)))
}

/// Cancels a run: its attempts stop where they are, its unfinished tasks
/// are skipped, it ends `cancelled` and is not taken up again. Cancelling
/// a cancelled run answers the same; a run that ended otherwise is 409.
#[utoipa::path(
    post, path = "/v1/runs/{id}/cancel", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "The cancelled run's state and report", body = Object),
        (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody),
        (status = 429, body = super::ErrorBody))
)]
pub async fn cancel(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let call = TenantCall::admit(&state, auth, Scope::RunsWrite).await?;
    load(&state, &call.tenant.name, &id).await?;
    let finished = state
        .runs
        .cancel(&call.tenant, &id)
        .await
        .map_err(run_error)?;
    if finished.status != RunStatus::Cancelled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "run {id} had already ended ({}); only a run that has not ended can be cancelled",
                status_name(finished.status)
            ),
        ));
    }
    state
        .operator
        .record(
            &call.tenant.name,
            AuditEvent::new(
                "run.cancel",
                Some(&call.caller.key_id),
                "ok",
                json!({ "run": id }),
            ),
        )
        .await;
    Ok(Json(view(&finished.state)))
}

/// Takes a run up again: one that `failed` runs its dead tasks, and the
/// tasks skipped because of them, once more (each with its retries anew;
/// finished tasks stay finished); one that stopped without ending goes on.
/// A run going on, or one that ended otherwise, is 409.
#[utoipa::path(
    post, path = "/v1/runs/{id}/resume", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 202, description = "The run is going on again", body = Submitted),
        (status = 400, description = "The run can no longer start as it was (a plugin or grant it needs was taken away)", body = super::ErrorBody),
        (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody),
        (status = 429, body = super::ErrorBody))
)]
pub async fn resume(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let call = TenantCall::admit(&state, auth, Scope::RunsWrite).await?;
    load(&state, &call.tenant.name, &id).await?;
    let runs = state.runs.clone();
    let tenant = call.tenant.name.clone();
    // With submissions: two runs cannot both take the quota's last place.
    let lock = runs.submission_lock(&tenant);
    let _one_at_a_time = lock.lock().await;
    let settled = runs
        .resume(&call.tenant, &id)
        .await
        .map_err(|e| busy_or(&state, &call.tenant, e))?;
    if let Some(ended) = settled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "run {id} ended {}; only a run that failed or stopped can be resumed",
                status_name(ended)
            ),
        ));
    }
    state
        .operator
        .record(
            &tenant,
            AuditEvent::new(
                "run.resume",
                Some(&call.caller.key_id),
                "ok",
                json!({ "run": id }),
            ),
        )
        .await;
    let answer = Submitted {
        events: format!("/v1/runs/{id}/events"),
        status: "running".into(),
        id,
    };
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// The API's answer to a run that could not start or go on.
fn busy_or(state: &AppState, tenant: &crate::tenant::TenantRecord, e: Submission) -> ApiError {
    match e {
        Submission::Busy => {
            state.metrics.refused(&tenant.name, "runs");
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                format!(
                    "this tenant has {} runs going, its quota; try again when one ends",
                    tenant.quotas.runs_in_flight
                ),
            )
        }
        Submission::Refused(e) => run_error(e),
    }
}

/// A run's report as the API shows it: with its status, without where it
/// lives on the server.
fn view(run: &RunState) -> Value {
    let mut report = report::json(run);
    if let Some(fields) = report.as_object_mut() {
        fields.remove("workspace");
        fields.insert("status".into(), Value::String(status(run)));
    }
    report
}

async fn load(state: &AppState, tenant: &str, id: &str) -> Result<RunState, ApiError> {
    check_run_id(id).map_err(|_| no_run())?;
    let run = state.runs.load(tenant, id).await.map_err(|_| no_run())?;
    // Belt and braces: a run under this tenant's root is its own.
    if run.tenant.as_str() != tenant {
        return Err(no_run());
    }
    Ok(run)
}

/// The run's journal as server-sent events, each with `id:` its sequence
/// number, from after `Last-Event-ID` (or the start), live while the run
/// goes on, and then one `end` event with how it ended (`stopped` when it
/// is not running here and has not ended: it can be resumed).
#[utoipa::path(
    get, path = "/v1/runs/{id}/events", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path), ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event")),
    responses((status = 200, description = "text/event-stream of journal records", content_type = "text/event-stream"),
        (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody),
        (status = 429, body = super::ErrorBody))
)]
pub async fn events(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let call = TenantCall::admit(&state, auth, Scope::RunsRead).await?;
    // The first record a client has not seen: the journal's first (0)
    // without Last-Event-ID.
    let next = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .and_then(|last| last.checked_add(1))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "Last-Event-ID must be an event id (a number) this stream sent",
                )
            })?,
    };
    load(&state, &call.tenant.name, &id).await?;
    let followed = state.runs.follow(&call.tenant.name, &id, next);
    let stream = futures::stream::unfold(followed, |mut followed| async move {
        let event = match followed.recv().await? {
            Followed::Record(record) => sse(&record),
            Followed::End { status, last } => {
                let status = status.map_or("stopped", status_name);
                SseEvent::default()
                    .event("end")
                    .data(json!({ "status": status, "last_event_id": last }).to_string())
            }
        };
        Some((Ok(event), followed))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn sse(record: &Record) -> SseEvent {
    // Through text, as the journal holds it (`to_value` does not take
    // every record's flattened shape).
    let mut value: Value = serde_json::to_string(record)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        // Where the run lives on the server is not the tenant's business.
        fields.remove("workspace");
        fields.remove("base_dir");
    }
    let data = value.to_string();
    SseEvent::default()
        .id(record.seq.to_string())
        .event("record")
        .data(data)
}
