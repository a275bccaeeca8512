//! The runs pages: the tenant's runs (refreshed every two seconds), and one
//! run — its graph, its timeline of events and its cost — kept current over
//! server-sent events that carry the parts of the page to replace.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use futures::Stream;
use maud::{Markup, html};
use warden_run::{Event, Record, RunState, RunStatus, check_run_id};

use super::{Refused, Signed, auth, dag, failed, page, refused};
use crate::api::AppState;
use crate::api::runs::{status, status_name};
use crate::audit::AuditEvent;
use crate::key::Scope;
use crate::runs::Followed;

/// What a run's model calls took, over all its tasks.
fn tokens_and_cost(run: &RunState) -> (u64, f64) {
    run.tasks.iter().fold((0, 0.0), |(tokens, cost), t| {
        (
            tokens + t.usage.input_tokens + t.usage.output_tokens,
            cost + t.usage.cost,
        )
    })
}

fn age(started_ms: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let secs = now.saturating_sub(started_ms) / 1000;
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// The tenant the visitor acts for, when its key may read runs.
fn tenant_of(signed: &Signed) -> Option<&str> {
    signed
        .caller
        .tenant
        .as_deref()
        .filter(|_| signed.caller.may(Scope::RunsRead))
}

/// The visitor's home: its tenant's runs, or what an operator may see.
pub async fn list(state: &AppState, signed: &Signed) -> Response {
    let csrf = signed.csrf(state);
    if signed.caller.tenant.is_none() && signed.caller.may(Scope::Admin) {
        return super::pages::operator(state, signed).await;
    }
    let Some(tenant) = tenant_of(signed) else {
        let body = html! {
            h1 { "Runs" }
            p { "This key reads no tenant's runs: sign in with a tenant's key that has scope " code { "runs:read" } "." }
        };
        return page("Runs", Some((signed, &csrf)), body).into_response();
    };
    let rows = rows_of(state, tenant).await;
    let body = html! {
        h1 { "Runs of " (tenant) }
        table.runs {
            thead { tr { th { "Run" } th { "Status" } th { "Goal" } th { "Age" } th { "Tokens" } th { "Cost" } } }
            tbody #runs hx-get="/parts/runs" hx-trigger="every 2s" hx-swap="innerHTML" {
                (rows)
            }
        }
    };
    page("Runs", Some((signed, &csrf)), body).into_response()
}

async fn rows_of(state: &AppState, tenant: &str) -> Markup {
    let mut runs = state.runs.list(tenant).await;
    runs.sort_by_key(|run| std::cmp::Reverse(run.started_ms));
    html! {
        @if runs.is_empty() {
            tr { td colspan="6" { "No runs yet." } }
        }
        @for run in &runs {
            @let (tokens, cost) = tokens_and_cost(run);
            @let status = status(run);
            tr data-run=(run.run) data-status=(status) {
                td { a href=(format!("/runs/{}", run.run)) { code { (run.run) } } }
                td { span class=(format!("status {status}")) { (status) } }
                td.goal { (dag::clip(&run.goal, 120)) }
                td { (age(run.started_ms)) }
                td { (tokens) }
                td { (format!("${cost:.4}")) }
            }
        }
    }
}

/// The rows of the runs table, for its refresh.
pub async fn rows(State(state): State<AppState>, signed: Signed) -> Response {
    match tenant_of(&signed) {
        Some(tenant) => Html(rows_of(&state, tenant).await.into_string()).into_response(),
        None => StatusCode::FORBIDDEN.into_response(),
    }
}

/// The signed-in tenant's run `id`, or the same "no such run" for another
/// tenant's run as for one that does not exist.
async fn load(state: &AppState, signed: &Signed, id: &str) -> Result<(String, RunState), Refused> {
    let missing = || refused(StatusCode::NOT_FOUND, "There is no such run.");
    let tenant = tenant_of(signed).ok_or_else(missing)?;
    check_run_id(id).map_err(|_| missing())?;
    let run = state.runs.load(tenant, id).await.map_err(|_| missing())?;
    if run.tenant.as_str() != tenant {
        return Err(missing());
    }
    Ok((tenant.to_string(), run))
}

/// Where a run stands, for what can be done to it.
#[derive(Clone, Copy)]
enum Standing {
    /// Going on here.
    Going,
    /// Not going on and not ended: the server stopped mid-run.
    Stopped,
    Ended(RunStatus),
}

impl Standing {
    fn of(state: &AppState, tenant: &str, run: &RunState) -> Standing {
        match warden_run::ended(run) {
            Some(status) => Standing::Ended(status),
            None if state.runs.going(tenant, run) => Standing::Going,
            None => Standing::Stopped,
        }
    }
}

/// The run's buttons: cancel one that has not ended, resume one that
/// failed or stopped (for a key that may change runs).
fn actions(run: &str, standing: Standing, csrf: &str, may_write: bool) -> Markup {
    let cancel = matches!(standing, Standing::Going | Standing::Stopped);
    let resume = matches!(
        standing,
        Standing::Stopped | Standing::Ended(RunStatus::Failed)
    );
    html! {
        @if may_write && cancel {
            form.cancel method="post" action=(format!("/runs/{run}/cancel")) {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" { "Cancel run" }
            }
        }
        @if may_write && resume {
            form.resume method="post" action=(format!("/runs/{run}/resume")) {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" {
                    @if matches!(standing, Standing::Stopped) { "Resume run" } @else { "Resume: retry failed tasks" }
                }
            }
        }
    }
}

pub async fn page_of(state: &AppState, signed: &Signed, tenant: &str, run: &RunState) -> Response {
    let csrf = signed.csrf(state);
    let standing = Standing::of(state, tenant, run);
    let body = html! {
        div #head { (head(run)) }
        div #actions { (actions(&run.run, standing, &csrf, signed.caller.may(Scope::RunsWrite))) }
        // The stream replaces the graph and the heading and adds to the
        // timeline (out-of-band swaps); on every (re)connect it sends the
        // whole of them, so a reconnect after a restart misses nothing.
        div hx-ext="sse" sse-connect=(format!("/runs/{}/live", run.run))
            sse-swap="reset,update" hx-swap="none" sse-close="end" {
            section {
                h2 { "Tasks" }
                div #dag { (dag::render(run)) }
            }
            section {
                h2 { "Events" }
                ol #timeline {}
            }
        }
        section {
            h2 { "Artifacts" }
            div #files { (files_of(run)) }
        }
    };
    page(&format!("Run {}", run.run), Some((signed, &csrf)), body).into_response()
}

pub async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    match load(&state, &signed, &id).await {
        Ok((tenant, run)) => page_of(&state, &signed, &tenant, &run).await,
        Err(refusal) => refusal.into_response(),
    }
}

fn head(run: &RunState) -> Markup {
    let (tokens, cost) = tokens_and_cost(run);
    let status = status(run);
    html! {
        h1 { "Run " code { (run.run) } }
        p.goal { (run.goal) }
        dl.facts {
            dt { "Status" } dd { span #run-status class=(format!("status {status}")) { (status) } }
            dt { "Tasks" } dd { (run.tasks.len()) }
            dt { "Tokens" } dd #run-tokens { (tokens) }
            dt { "Cost" } dd #run-cost { (format!("${cost:.4}")) }
            dt { "Started" } dd { (age(run.started_ms)) " ago" }
        }
    }
}

/// One timeline entry: what the event says, as text.
fn entry(record: &Record) -> Markup {
    let (kind, text) = describe(&record.event);
    html! {
        li class=(format!("event {kind}")) data-seq=(record.seq) {
            span.kind { (kind) }
            " "
            span.text { (text) }
        }
    }
}

fn describe(event: &Event) -> (&'static str, String) {
    match event {
        Event::RunStarted { goal, .. } if goal.is_empty() => ("run-started", "started".into()),
        Event::RunStarted { goal, .. } => ("run-started", format!("started: {goal}")),
        Event::RunResumed { retry: false, .. } => ("run-resumed", "taken up again".into()),
        Event::RunResumed { retry: true, .. } => (
            "run-resumed",
            "taken up again to retry its failed tasks".into(),
        ),
        Event::TaskQueued { task } => (
            "task-queued",
            match &task.parent {
                Some(parent) => format!("{} ({}) added by {parent}", task.id, task.role),
                None => format!("{} ({}) queued", task.id, task.role),
            },
        ),
        Event::TaskStarted {
            task,
            role,
            attempt,
            node,
        } => (
            "task-started",
            match node {
                Some(node) => format!("{task} ({role}) attempt {attempt} on node {node}"),
                None => format!("{task} ({role}) attempt {attempt}"),
            },
        ),
        Event::ToolCall {
            task,
            key,
            arguments,
            ok,
            result,
            truncated,
            replayed,
            ms,
            ..
        } => {
            let mut how = String::new();
            for (flag, word) in [
                (!ok, " failed"),
                (*replayed, " (replayed)"),
                (*truncated, " (cut short)"),
            ] {
                if flag {
                    how.push_str(word);
                }
            }
            (
                "tool-call",
                format!(
                    "{task} called {}({}){how}: {} ({ms} ms)",
                    key.tool,
                    dag::clip(arguments, 300),
                    dag::clip(result, 400)
                ),
            )
        }
        Event::LlmCall {
            task,
            provider,
            model,
            input_tokens,
            output_tokens,
            cost,
        } => (
            "llm-call",
            format!(
                "{task} asked {provider}/{model}: {input_tokens} in, {output_tokens} out, ${cost:.4}"
            ),
        ),
        Event::TaskFinished {
            task,
            attempt,
            ms,
            outcome,
            ..
        } => (
            "task-finished",
            format!(
                "{task} finished (attempt {attempt}, {ms} ms): {}",
                dag::clip(&outcome.summary, 400)
            ),
        ),
        Event::TaskFailed {
            task,
            attempt,
            error,
            retry_in_ms,
            ..
        } => (
            "task-failed",
            match retry_in_ms {
                Some(wait) => format!(
                    "{task} attempt {attempt} failed: {}; retry in {wait} ms",
                    dag::clip(error, 400)
                ),
                None => format!("{task} attempt {attempt} failed: {}", dag::clip(error, 400)),
            },
        ),
        Event::TaskDead {
            task,
            attempts,
            error,
        } => (
            "task-dead",
            format!(
                "{task} is dead after {attempts} attempt(s): {}",
                dag::clip(error, 400)
            ),
        ),
        Event::TaskSkipped { task, because } => {
            ("task-skipped", format!("{task} skipped: {because}"))
        }
        Event::RunFinished { status } => {
            ("run-finished", format!("ended {}", status_name(*status)))
        }
    }
}

/// The parts of the run page to replace after `records` (OOB swaps), and
/// its buttons when they change.
fn update(run: &RunState, records: &[Record], whole: bool, buttons: Option<Markup>) -> String {
    html! {
        div #head hx-swap-oob="true" { (head(run)) }
        @if let Some(buttons) = buttons {
            div #actions hx-swap-oob="true" { (buttons) }
        }
        div #dag hx-swap-oob="true" { (dag::render(run)) }
        div #files hx-swap-oob="true" { (files_of(run)) }
        @if whole {
            ol #timeline hx-swap-oob="true" { @for r in records { (entry(r)) } }
        } @else {
            ol hx-swap-oob="beforeend:#timeline" { @for r in records { (entry(r)) } }
        }
    }
    .into_string()
}

/// The run page's stream: the whole page's live parts at once (`reset`),
/// then what each record changes (`update`), then `end`.
pub async fn live(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Refused> {
    let (tenant, _) = load(&state, &signed, &id).await?;
    let followed = state.runs.follow(&tenant, &id, 0);
    let buttons = {
        let csrf = signed.csrf(&state);
        let may_write = signed.caller.may(Scope::RunsWrite);
        let id = id.clone();
        move |standing| actions(&id, standing, &csrf, may_write)
    };
    struct Follow<B> {
        buttons: B,
        followed: tokio::sync::mpsc::Receiver<Followed>,
        /// Every record so far, and the run they make.
        records: Vec<Record>,
        run: RunState,
        sent: bool,
        done: bool,
    }
    let start = Follow {
        buttons,
        followed,
        records: Vec::new(),
        run: RunState::default(),
        sent: false,
        done: false,
    };
    let stream = futures::stream::unfold(start, |mut f| async move {
        if f.done {
            return None;
        }
        // Take what has arrived together, so a burst is one swap.
        let mut fresh = Vec::new();
        let mut end = None;
        match f.followed.recv().await {
            Some(Followed::Record(r)) => fresh.push(*r),
            Some(Followed::End { status, .. }) => end = Some(status),
            None => return None,
        }
        while end.is_none() {
            match f.followed.try_recv() {
                Ok(Followed::Record(r)) => fresh.push(*r),
                Ok(Followed::End { status, .. }) => end = Some(status),
                Err(_) => break,
            }
        }
        for record in &fresh {
            f.run.apply(record);
        }
        f.records.extend(fresh.iter().cloned());
        let event = if let Some(status) = end {
            f.done = true;
            let standing = status.map_or(Standing::Stopped, Standing::Ended);
            let buttons = Some((f.buttons)(standing));
            let data = if f.sent {
                update(&f.run, &fresh, false, buttons)
            } else {
                update(&f.run, &f.records, true, buttons)
            };
            vec![
                SseEvent::default().event("update").data(data),
                SseEvent::default()
                    .event("end")
                    .data(status.map_or("stopped", status_name)),
            ]
        } else {
            let (name, data) = if f.sent {
                ("update", update(&f.run, &fresh, false, None))
            } else {
                let buttons = Some((f.buttons)(Standing::Going));
                ("reset", update(&f.run, &f.records, true, buttons))
            };
            f.sent = true;
            vec![SseEvent::default().event(name).data(data)]
        };
        Some((
            futures::stream::iter(event.into_iter().map(Ok::<_, Infallible>)),
            f,
        ))
    });
    use futures::StreamExt;
    Ok(Sse::new(stream.flatten()).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[derive(serde::Deserialize)]
pub struct Csrf {
    #[serde(default)]
    csrf: String,
}

pub async fn cancel(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<Csrf>,
) -> Response {
    if let Err(refusal) = signed.check(&state, &form.csrf) {
        return refusal.into_response();
    }
    let (tenant, _) = match load(&state, &signed, &id).await {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    if !signed.caller.may(Scope::RunsWrite) {
        return refused(
            StatusCode::FORBIDDEN,
            "This key may not change runs (it lacks scope runs:write).",
        )
        .into_response();
    }
    let Ok(record) = state.operator.tenant(&tenant).await else {
        return refused(StatusCode::NOT_FOUND, "There is no such run.").into_response();
    };
    match state.runs.cancel(&record, &id).await {
        Ok(_) => {
            state
                .operator
                .record(
                    &tenant,
                    AuditEvent::new(
                        "run.cancel",
                        Some(&signed.caller.key_id),
                        "ok",
                        serde_json::json!({ "run": id, "from": "dashboard" }),
                    ),
                )
                .await;
            Redirect::to(&format!("/runs/{id}")).into_response()
        }
        Err(e) => refused(StatusCode::CONFLICT, &e.to_string()).into_response(),
    }
}

/// `POST /runs/{id}/resume`: as `POST /v1/runs/{id}/resume`, then back
/// to the run.
pub async fn resume(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<Csrf>,
) -> Response {
    if let Err(refusal) = signed.check(&state, &form.csrf) {
        return refusal.into_response();
    }
    match crate::api::runs::resume(State(state.clone()), auth(&signed), Path(id.clone())).await {
        Ok(_) => Redirect::to(&format!("/runs/{id}")).into_response(),
        Err(e) => failed(&e),
    }
}

/// Files listed and bytes shown at most.
const MOST_FILES: usize = 500;
const MOST_BYTES: u64 = 1024 * 1024;

/// The regular files under `workspace`, relative, sorted; links are not
/// followed (a guest may have made one that points anywhere).
fn artifacts(workspace: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![workspace.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file()
                && let Ok(relative) = entry.path().strip_prefix(workspace)
            {
                found.push(relative.to_string_lossy().into_owned());
            }
            if found.len() >= MOST_FILES {
                break;
            }
        }
    }
    found.sort();
    found
}

/// The artifacts part of a run page.
fn files_of(run: &RunState) -> Markup {
    let files = artifacts(&run.workspace);
    html! {
        @if files.is_empty() {
            p.hint { "The run's workspace holds no files." }
        } @else {
            ul.artifacts {
                @for file in &files {
                    li { a href=(format!("/runs/{}/files/{file}", run.run)) { code { (file) } } }
                }
            }
        }
    }
}

/// `GET /runs/{id}/files/{path}`: one file of the run's workspace, shown
/// as text. Only a regular file inside the workspace, reached without a
/// link, is shown; anything else is "no such file".
pub async fn file(
    State(state): State<AppState>,
    signed: Signed,
    Path((id, path)): Path<(String, String)>,
) -> Response {
    let (_, run) = match load(&state, &signed, &id).await {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    let missing =
        || refused(StatusCode::NOT_FOUND, "There is no such file in this run.").into_response();
    let relative = std::path::Path::new(&path);
    if relative
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return missing();
    }
    // Each step must be a directory or, last, a regular file: never a link.
    let mut at = run.workspace.clone();
    for part in relative.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() || meta.is_file() => {}
            _ => return missing(),
        }
    }
    let Ok(meta) = std::fs::symlink_metadata(&at) else {
        return missing();
    };
    if !meta.is_file() {
        return missing();
    }
    let mut bytes = Vec::new();
    let read = std::fs::File::open(&at).and_then(|file| {
        use std::io::Read;
        file.take(MOST_BYTES).read_to_end(&mut bytes)
    });
    if read.is_err() {
        return missing();
    }
    let csrf = signed.csrf(&state);
    let body = html! {
        p { a href=(format!("/runs/{id}")) { "← run " code { (id) } } }
        h1 { code { (path) } }
        @if meta.len() > MOST_BYTES { p.hint { "The first MiB of " (meta.len()) " bytes." } }
        pre.artifact { (String::from_utf8_lossy(&bytes)) }
    };
    page(&path, Some((&signed, &csrf)), body).into_response()
}
