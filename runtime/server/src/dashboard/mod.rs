//! The dashboard at `/`: pages rendered on the server with maud (which
//! escapes everything it is given, so whatever a guest or a model wrote is
//! shown as text), made live by htmx and its SSE extension. Both scripts
//! are embedded in the binary: the page loads nothing from elsewhere, and
//! its Content-Security-Policy allows nothing else.
//!
//! Sign-in takes an API key and opens a session (an HttpOnly,
//! SameSite=Strict cookie; the session lives in the control store, so it
//! outlasts a restart, and ends with its key). Every form carries a token
//! made from the session (or, for sign-in, matching a cookie), checked
//! before anything is done.

mod dag;
mod pages;
mod runs;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use subtle::ConstantTimeEq;

use crate::api::AppState;
use crate::operator::{Caller, SESSION_SECS};

/// The session cookie.
const SESSION: &str = "warden_session";
/// The sign-in form's token, as a cookie the form must match.
const SIGN_IN: &str = "warden_sign_in";

const HTMX: &[u8] = include_bytes!("../../assets/htmx-2.0.11.min.js");
const HTMX_SSE: &[u8] = include_bytes!("../../assets/htmx-ext-sse-2.2.4.js");
const STYLE: &str = include_str!("../../assets/dashboard.css");

/// The dashboard's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/runs/new", get(pages::new_run).post(pages::start))
        .route("/usage", get(pages::usage))
        .route("/audit", get(pages::audit))
        .route("/runs/{id}", get(runs::show))
        .route("/runs/{id}/live", get(runs::live))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/resume", post(runs::resume))
        .route("/runs/{id}/files/{*path}", get(runs::file))
        .route("/tools", get(pages::tools))
        .route("/parts/runs", get(runs::rows))
        .route("/assets/{name}", get(asset))
        .layer(axum::middleware::map_response(secure))
}

/// Headers on every dashboard answer: nothing framed, nothing loaded from
/// elsewhere, no inline script, nothing cached.
async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A signed-in visitor: the session and who its key speaks for.
pub struct Signed {
    pub session: String,
    pub caller: Caller,
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Signed, Response> {
        let Some(cookie) = cookie(&parts.headers, SESSION) else {
            return Err(Redirect::to("/sign-in").into_response());
        };
        match state.operator.session(&cookie).await {
            Some((session, caller)) => Ok(Signed { session, caller }),
            None => Err(Redirect::to("/sign-in").into_response()),
        }
    }
}

impl Signed {
    /// The token this session's forms carry.
    fn csrf(&self, state: &AppState) -> String {
        state.operator.csrf_token(&self.session)
    }

    /// `403` unless `token` is this session's form token.
    fn check(&self, state: &AppState, token: &str) -> Result<(), Refused> {
        if state.operator.csrf_matches(&self.session, token) {
            Ok(())
        } else {
            Err(refused(
                StatusCode::FORBIDDEN,
                "This form is not from this session (its token is missing or wrong). Reload the page and try again.",
            ))
        }
    }
}

/// The value of cookie `name`, if the request sent it.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A whole page: the layout around `body`.
pub fn page(title: &str, signed: Option<(&Signed, &str)>, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // No indicator styles (they would be inline) and no eval.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
                title { (title) " · warden" }
                link rel="stylesheet" href="/assets/dashboard.css";
                script src="/assets/htmx.min.js" {}
                script src="/assets/htmx-ext-sse.js" {}
            }
            body {
                header {
                    a.brand href="/" { "warden" }
                    @if let Some((signed, csrf)) = signed {
                        nav {
                            @if signed.caller.tenant.is_some() {
                                a href="/" { "Runs" }
                                a href="/runs/new" { "Start a run" }
                                a href="/usage" { "Usage" }
                                a href="/audit" { "Audit" }
                                a href="/tools" { "Tools" }
                            } @else {
                                a href="/" { "Tenants" }
                            }
                        }
                        span.who {
                            @match &signed.caller.tenant {
                                Some(tenant) => { "tenant " strong { (tenant) } }
                                None => { "operator" }
                            }
                        }
                        form method="post" action="/sign-out" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    Html(markup.into_string())
}

/// The API's view of the signed-in key, for calling its handlers.
fn auth(signed: &Signed) -> crate::api::Auth {
    crate::api::Auth(signed.caller.clone())
}

/// The API's refusal as a page.
fn failed(e: &crate::api::ApiError) -> Response {
    refused(e.status(), e.message()).into_response()
}

/// Why a request was refused: a page that says so, with its status.
pub struct Refused {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let body = html! {
            h1 { "Refused" }
            p.error { (self.message) }
            p { a href="/" { "Back" } }
        };
        (self.status, page("Refused", None, body)).into_response()
    }
}

fn refused(status: StatusCode, message: &str) -> Refused {
    Refused {
        status,
        message: message.to_string(),
    }
}

async fn home(State(state): State<AppState>, signed: Signed) -> Response {
    runs::list(&state, &signed).await
}

async fn sign_in_page() -> Response {
    let token = crate::key::NewKey::generate().secret().to_string();
    let body = html! {
        h1 { "Sign in" }
        form.sign-in method="post" action="/sign-in" {
            input type="hidden" name="csrf" value=(token);
            label for="key" { "API key" }
            input #key type="password" name="key" autocomplete="off" placeholder="wdn_…" required;
            button type="submit" { "Sign in" }
        }
        p.hint { "A tenant's key shows that tenant's runs; an operator key (" code { "warden keys create --admin" } ") shows tenants and keys." }
    };
    let mut response = page("Sign in", None, body).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(SIGN_IN, &token, "/sign-in", 600),
    );
    response
}

#[derive(serde::Deserialize)]
struct SignIn {
    key: String,
    #[serde(default)]
    csrf: String,
}

async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SignIn>,
) -> Response {
    let expected = cookie(&headers, SIGN_IN).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())) {
        return refused(
            StatusCode::FORBIDDEN,
            "This sign-in form is not one this server gave out (its token is missing or wrong). Open the sign-in page again.",
        )
        .into_response();
    }
    match state.operator.sign_in(form.key.trim()).await {
        Ok((value, _)) => {
            let mut response = Redirect::to("/").into_response();
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                set_cookie(SESSION, &value, "/", SESSION_SECS),
            );
            headers.append(header::SET_COOKIE, set_cookie(SIGN_IN, "", "/sign-in", 0));
            response
        }
        Err(_) => refused(
            StatusCode::UNAUTHORIZED,
            "That key is not valid (unknown, revoked or expired). `warden keys create` makes one.",
        )
        .into_response(),
    }
}

#[derive(serde::Deserialize)]
struct Csrf {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(
    State(state): State<AppState>,
    signed: Signed,
    axum::Form(form): axum::Form<Csrf>,
) -> Response {
    if let Err(refusal) = signed.check(&state, &form.csrf) {
        return refusal.into_response();
    }
    state
        .operator
        .sign_out(&signed.session, &signed.caller)
        .await;
    let mut response = Redirect::to("/sign-in").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(SESSION, "", "/", 0));
    response
}

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, kind): (&[u8], &str) = match name.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "htmx-ext-sse.js" => (HTMX_SSE, "text/javascript; charset=utf-8"),
        "dashboard.css" => (STYLE.as_bytes(), "text/css; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
