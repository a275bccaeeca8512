//! The tenant's other pages: start a run, usage against quotas, and the
//! audit log. Each goes through the same API handler a client would call
//! with the session's key, so the checks (scopes, quotas, the audit entry)
//! are the API's own.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Signed, auth, dag, failed, page, refused};
use crate::api::AppState;
use crate::api::audit::{self, Page};
use crate::api::usage::{self, UsageReport, Window};
use crate::control::Counts;

/// `GET /runs/new`: a goal, a workflow the server offers, or one as TOML.
pub async fn new_run(State(state): State<AppState>, signed: Signed) -> Response {
    let csrf = signed.csrf(&state);
    let body = html! {
        h1 { "Start a run" }
        form.start method="post" action="/runs/new" {
            input type="hidden" name="csrf" value=(csrf);
            label for="goal" { "Goal (the built-in planner → workers → reviewer workflow)" }
            textarea #goal name="goal" rows="3" placeholder="What should the agents do?" {}
            label for="pick" { "…or a workflow this server offers" }
            select #pick name="pick" {
                option value="" { "(none)" }
                @for name in state.runs.workflows() {
                    option value=(name) { (name) }
                }
            }
            label for="workflow" { "…or a workflow of your own (TOML), which wins when given" }
            textarea #workflow name="workflow" rows="14" placeholder="version = 1\nname = \"…\"\n[[tasks]]\n…" {}
            button type="submit" { "Start" }
        }
    };
    page("Start a run", Some((&signed, &csrf)), body).into_response()
}

#[derive(Deserialize)]
pub struct Start {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    goal: String,
    #[serde(default)]
    workflow: String,
    /// The name of a workflow the server offers.
    #[serde(default)]
    pick: String,
}

/// `POST /runs/new`: submits as `POST /v1/runs` does, then shows the run.
pub async fn start(
    State(state): State<AppState>,
    signed: Signed,
    axum::Form(mut form): axum::Form<Start>,
) -> Response {
    if let Err(refusal) = signed.check(&state, &form.csrf) {
        return refusal.into_response();
    }
    let mut headers = HeaderMap::new();
    if form.workflow.trim().is_empty() && !form.pick.is_empty() {
        match state.runs.workflow(&form.pick) {
            Some(text) => form.workflow = text,
            None => {
                return refused(
                    StatusCode::BAD_REQUEST,
                    "This server offers no workflow of that name; pick one from the list.",
                )
                .into_response();
            }
        }
    }
    let body = if form.workflow.trim().is_empty() {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        serde_json::json!({ "goal": form.goal.trim() }).to_string()
    } else {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/toml"),
        );
        form.workflow
    };
    let answer = crate::api::runs::submit(
        State(state.clone()),
        auth(&signed),
        headers,
        Bytes::from(body),
    )
    .await;
    let response = match answer {
        Ok(response) => response,
        Err(e) => return failed(&e),
    };
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let id = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["id"].as_str().map(String::from));
    match id {
        Some(id) => Redirect::to(&format!("/runs/{id}")).into_response(),
        None => refused(StatusCode::BAD_GATEWAY, "The run did not start.").into_response(),
    }
}

/// A bar chart of one figure per day, as SVG.
fn bars(title: &str, days: &[(String, f64)], unit: &str) -> Markup {
    let most = days.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let (width, height, gap) = (28.0, 120.0, 6.0);
    let total = days.len() as f64 * (width + gap);
    html! {
        figure.chart {
            figcaption { (title) }
            svg xmlns="http://www.w3.org/2000/svg" role="img"
                width=(total.max(60.0)) height=(height + 34.0) {
                title { (title) }
                line.axis x1="0" y1=(height) x2=(total) y2=(height) {}
                @for (i, (day, value)) in days.iter().enumerate() {
                    @let h = if most > 0.0 { value / most * height } else { 0.0 };
                    @let x = i as f64 * (width + gap);
                    g.bar {
                        title { (day) ": " (number(*value)) " " (unit) }
                        rect x=(x) y=(height - h) width=(width) height=(h) {}
                        text x=(x + width / 2.0) y=(height + 14.0) text-anchor="middle" { (&day[8..]) }
                    }
                }
            }
        }
    }
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.4}")
    }
}

/// One quota's use against its limit.
fn meter(name: &str, used: f64, limit: Option<f64>) -> Markup {
    html! {
        tr {
            th { (name) }
            td { (number(used)) }
            @match limit {
                Some(limit) => {
                    td { (number(limit)) }
                    td { meter min="0" max=(limit.max(f64::MIN_POSITIVE)) value=(used.min(limit)) {} }
                }
                None => { td { "none" } td {} }
            }
        }
    }
}

/// `GET /usage`: the last two weeks per day and per model, and the quotas.
pub async fn usage(State(state): State<AppState>, signed: Signed) -> Response {
    let csrf = signed.csrf(&state);
    let report: UsageReport = match usage::usage(
        State(state.clone()),
        auth(&signed),
        Ok(Query(Window { days: Some(14) })),
    )
    .await
    {
        Ok(axum::Json(report)) => report,
        Err(e) => return failed(&e),
    };
    let tenant = signed.caller.tenant.clone().unwrap_or_default();
    let quotas = state
        .operator
        .tenant(&tenant)
        .await
        .map(|t| t.quotas)
        .unwrap_or_default();
    // Every day of the window, days without use as zero.
    let mut days: Vec<(String, Counts)> = Vec::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for back in (0..14).rev() {
        let day = crate::usage::day_of(now.saturating_sub(back * 86_400));
        let mut counts = Counts::default();
        for row in report.days.iter().filter(|r| r.day == day) {
            counts.add(&row.counts);
        }
        days.push((day, counts));
    }
    let series = |f: &dyn Fn(&Counts) -> f64| -> Vec<(String, f64)> {
        days.iter().map(|(d, c)| (d.clone(), f(c))).collect()
    };
    let mut models: Vec<(String, Counts)> = Vec::new();
    for row in report.days.iter().filter(|r| !r.model.is_empty()) {
        match models.iter_mut().find(|(m, _)| *m == row.model) {
            Some((_, counts)) => counts.add(&row.counts),
            None => models.push((row.model.clone(), row.counts)),
        }
    }
    let used = &report.used_today;
    let body = html! {
        h1 { "Usage of " (tenant) }
        section.charts {
            (bars("Model tokens per day", &series(&|c| (c.input_tokens + c.output_tokens) as f64), "tokens"))
            (bars("Cost per day (US$)", &series(&|c| c.cost), "$"))
            (bars("Calls per day", &series(&|c| c.calls as f64), "calls"))
        }
        h2 { "Per model, last 14 days" }
        table {
            thead { tr { th { "Model" } th { "Calls" } th { "Tokens in" } th { "Tokens out" } th { "Cost" } } }
            tbody {
                @if models.is_empty() { tr { td colspan="5" { "No model calls." } } }
                @for (model, c) in &models {
                    tr { td { code { (model) } } td { (c.calls) } td { (c.input_tokens) } td { (c.output_tokens) } td { (format!("${:.4}", c.cost)) } }
                }
            }
        }
        h2 { "Quotas today (" (report.today) ", UTC)" }
        table.quotas {
            thead { tr { th { "Quota" } th { "Used" } th { "Limit" } th {} } }
            tbody {
                (meter("Fuel", used.fuel as f64, quotas.fuel_per_day.map(|v| v as f64)))
                (meter("Tokens", (used.input_tokens + used.output_tokens) as f64, quotas.tokens_per_day.map(|v| v as f64)))
                (meter("Cost (US$)", used.cost, quotas.cost_per_day))
                @if let Some(m) = &report.holding.memory_entries { (meter("Memory entries", m.used as f64, Some(m.quota as f64))) }
                @if let Some(w) = &report.holding.workspace_bytes { (meter("Workspace bytes", w.used as f64, Some(w.quota as f64))) }
            }
        }
        p.hint {
            "At most " (quotas.requests_per_second) " requests a second (burst " (quotas.burst) "), "
            (quotas.concurrent_calls) " sandboxes at once (" (quotas.queued_calls) " waiting), "
            (quotas.runs_in_flight) " runs at once."
        }
    };
    page("Usage", Some((&signed, &csrf)), body).into_response()
}

#[derive(Deserialize)]
pub struct Filter {
    /// Only entries whose action, outcome or particulars contain this.
    #[serde(default)]
    q: String,
}

/// `GET /audit`: the tenant's log, newest first, filtered, with the
/// result of checking its chain.
pub async fn audit(
    State(state): State<AppState>,
    signed: Signed,
    Query(filter): Query<Filter>,
) -> Response {
    let csrf = signed.csrf(&state);
    let verified = match audit::verify(State(state.clone()), auth(&signed)).await {
        Ok(axum::Json(v)) => v,
        Err(e) => return failed(&e),
    };
    let mut entries = Vec::new();
    let mut after = 0;
    // The API pages by 1000; read them all, keep the last 500 that match.
    loop {
        let page = match audit::entries(
            State(state.clone()),
            auth(&signed),
            Ok(Query(Page {
                after,
                limit: Some(1000),
            })),
        )
        .await
        {
            Ok(axum::Json(page)) => page,
            Err(e) => return failed(&e),
        };
        let Some(last) = page.last() else { break };
        after = last.seq;
        let needle = filter.q.trim();
        entries.extend(page.into_iter().filter(|e| {
            needle.is_empty()
                || e.action.contains(needle)
                || e.outcome.contains(needle)
                || e.detail.to_string().contains(needle)
        }));
        if entries.len() > 2000 {
            entries.drain(..entries.len() - 500);
        }
    }
    let shown: Vec<_> = entries.iter().rev().take(500).collect();
    let body = html! {
        h1 { "Audit log" }
        @if verified.ok {
            p.verified { "The chain of " (verified.entries) " entries is whole: none edited, removed or reordered." }
        } @else {
            p.error.verified { "The chain is broken: " (verified.problem.clone().unwrap_or_default()) }
        }
        form.filter method="get" action="/audit" {
            input type="search" name="q" value=(filter.q) placeholder="action, outcome or detail";
            button type="submit" { "Filter" }
        }
        table.audit {
            thead { tr { th { "#" } th { "When (UTC)" } th { "Action" } th { "Outcome" } th { "Key" } th { "Detail" } } }
            tbody {
                @for e in &shown {
                    tr {
                        td { (e.seq) }
                        td { (when(e.at_ms)) }
                        td { code { (e.action) } }
                        td { (e.outcome) }
                        td { code { (e.key.clone().unwrap_or_default()) } }
                        td.detail { code { (dag::clip(&e.detail.to_string(), 300)) } }
                    }
                }
            }
        }
    };
    page("Audit", Some((&signed, &csrf)), body).into_response()
}

/// `YYYY-MM-DD HH:MM:SS` of milliseconds since the epoch, UTC.
fn when(ms: u64) -> String {
    let secs = ms / 1000;
    let day = crate::usage::day_of(secs);
    let time = secs % 86_400;
    format!(
        "{day} {:02}:{:02}:{:02}",
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

/// `GET /tools`: what the tenant may call, each tool's argument schema, and
/// each plugin's manifest (what it asks for, and why).
pub async fn tools(State(state): State<AppState>, signed: Signed) -> Response {
    let csrf = signed.csrf(&state);
    let listed = match crate::api::tools::list(State(state.clone()), auth(&signed)).await {
        Ok(axum::Json(listed)) => listed,
        Err(e) => return failed(&e),
    };
    let mut plugins: Vec<&str> = listed.iter().map(|t| t.plugin.as_str()).collect();
    plugins.dedup();
    let body = html! {
        h1 { "Tools" }
        @if listed.is_empty() { p { "This tenant may use no tool plugin." } }
        @for name in &plugins {
            @let plugin = state.hosting.plugins().iter().find(|p| p.name() == *name);
            section.plugin {
                h2 { "Plugin " code { (name) } }
                @if let Some(manifest) = plugin.and_then(|p| p.manifest()) {
                    p { (manifest.description) " (version " (manifest.version) ")" }
                    details {
                        summary { "Manifest: capabilities and reasons" }
                        pre { (toml::to_string_pretty(manifest).unwrap_or_default()) }
                    }
                }
                @if let Some(plugin) = plugin { p.hint { "SHA-256 " code { (plugin.sha256()) } } }
                @for tool in listed.iter().filter(|t| t.plugin == *name) {
                    div.tool {
                        h3 { code { (tool.name) } }
                        p { (tool.description) }
                        details {
                            summary { "Arguments (JSON Schema)" }
                            pre { (serde_json::to_string_pretty(&tool.input_schema).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    };
    page("Tools", Some((&signed, &csrf)), body).into_response()
}

/// An operator's home: every tenant with its quotas and keys (never a
/// key's secret, which the server does not keep).
pub async fn operator(state: &AppState, signed: &Signed) -> Response {
    let csrf = signed.csrf(state);
    let (tenants, keys) = match (
        state.operator.tenants().await,
        state.operator.keys(None).await,
    ) {
        (Ok(tenants), Ok(keys)) => (tenants, keys),
        _ => {
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "The control store cannot be read now; the server's log says why.",
            )
            .into_response();
        }
    };
    let date = |secs: i64| crate::usage::day_of(u64::try_from(secs).unwrap_or(0));
    let body = html! {
        h1 { "Tenants" }
        table.tenants {
            thead { tr {
                th { "Tenant" } th { "Plugins" } th { "Requests/s (burst)" } th { "Sandboxes (queue)" }
                th { "Runs" } th { "Per day" } th { "Memories" } th { "Workspace" } th { "Policy" }
            } }
            tbody {
                @if tenants.is_empty() { tr { td colspan="9" { "No tenants: " code { "warden tenants add NAME" } } } }
                @for t in &tenants {
                    @let q = &t.quotas;
                    tr data-tenant=(t.name) {
                        td { strong { (t.name) } }
                        td { (t.plugins.join(", ")) }
                        td { (q.requests_per_second) " (" (q.burst) ")" }
                        td { (q.concurrent_calls) " (" (q.queued_calls) ")" }
                        td { (q.runs_in_flight) }
                        td {
                            @if let Some(f) = q.fuel_per_day { (f) " fuel " }
                            @if let Some(t) = q.tokens_per_day { (t) " tokens " }
                            @if let Some(c) = q.cost_per_day { "$" (c) }
                        }
                        td { (q.memory_entries.map(|m| m.to_string()).unwrap_or_else(|| "—".into())) }
                        td { (q.workspace_mib.map(|m| format!("{m} MiB")).unwrap_or_else(|| "—".into())) }
                        td { @if let Some(policy) = &t.policy { details { summary { "policy" } pre { (policy) } } } @else { "none" } }
                    }
                }
            }
        }
        h2 { "Keys" }
        table.keys {
            thead { tr { th { "Id" } th { "Tenant" } th { "Scopes" } th { "Created" } th { "Expires" } th { "Revoked" } th { "Label" } } }
            tbody {
                @for k in &keys {
                    tr {
                        td { code { (k.id) } }
                        td { (k.tenant.clone().unwrap_or_else(|| "(operator)".into())) }
                        td { (k.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")) }
                        td { (date(k.created)) }
                        td { (k.expires.map(date).unwrap_or_default()) }
                        td { (k.revoked.map(date).unwrap_or_default()) }
                        td { (k.label.clone().unwrap_or_default()) }
                    }
                }
            }
        }
        p.hint { "Change them with " code { "warden tenants" } " and " code { "warden keys" } ", or the admin API under " code { "/v1/admin" } "." }
    };
    page("Tenants", Some((signed, &csrf)), body).into_response()
}
