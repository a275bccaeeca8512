//! The `fetch` tool plugin: GET a URL through the host's network policy.
//!
//! ```text
//! warden tool call target/plugins/fetch.wasm fetch_url \
//!     --args '{"url":"https://example.com/","as_text":true}' \
//!     --allow-host 'https://example.com'
//! ```
//!
//! Redirects are followed here, by the plugin, one request per hop: each hop
//! goes through `wasi:http` again, so the operator's grant is checked again
//! and a redirect to a host that was not granted is refused at that hop.

use serde::{Deserialize, Serialize};
use warden_sdk::http::{self, HttpError};
use warden_sdk::{JsonSchema, ToolError, Toolbox};

const DEFAULT_MAX_BYTES: usize = 1024 * 1024;
const DEFAULT_MAX_REDIRECTS: u32 = 5;
const USER_AGENT: &str = concat!("warden-fetch/", env!("CARGO_PKG_VERSION"));

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchArgs {
    /// http:// or https:// URL.
    pub url: String,
    /// Turn an HTML body into readable plain text.
    #[serde(default)]
    pub as_text: bool,
    /// Read at most this many bytes of the body (default 1 MiB).
    pub max_bytes: Option<usize>,
    /// Follow at most this many redirects (default 5; 0 returns the redirect
    /// itself).
    pub max_redirects: Option<u32>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
pub struct FetchResult {
    /// The URL that answered, after redirects.
    pub url: String,
    pub status: u16,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: String,
    pub truncated: bool,
    /// Each redirect taken, in order.
    pub redirects: Vec<String>,
}

pub fn toolbox() -> Toolbox {
    Toolbox::new().tool(
        "fetch_url",
        "GET a URL and return status, headers and body (optionally HTML as text); follows redirects hop by hop",
        fetch_url,
    )
}

warden_sdk::export!(toolbox);
warden_sdk::embed_manifest!("../warden.toml");

pub fn fetch_url(args: FetchArgs) -> Result<FetchResult, ToolError> {
    let max_bytes = args.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
    let max_redirects = args.max_redirects.unwrap_or(DEFAULT_MAX_REDIRECTS);
    let mut headers: Vec<(&str, &str)> = vec![("user-agent", USER_AGENT)];
    headers.extend(args.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));

    let mut url = url::Url::parse(&args.url)
        .map_err(|e| ToolError::InvalidArguments(format!("url {:?}: {e}", args.url)))?;
    let mut redirects = Vec::new();
    loop {
        let response =
            http::get(url.as_str(), &headers, max_bytes).map_err(|e| hop_error(e, &redirects))?;
        let location = response.header("location").map(str::to_string);
        let is_redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
        if let (true, Some(location)) = (is_redirect, location)
            && (redirects.len() as u32) < max_redirects
        {
            let next = url.join(&location).map_err(|e| {
                ToolError::Failed(format!(
                    "{url} redirected to an unusable location {location:?}: {e}"
                ))
            })?;
            redirects.push(next.to_string());
            url = next;
            continue;
        }
        if is_redirect && max_redirects > 0 && redirects.len() as u32 >= max_redirects {
            return Err(ToolError::Failed(format!(
                "{} redirected more than {max_redirects} times (last: {url})",
                args.url
            )));
        }
        let is_html = response
            .header("content-type")
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("html"));
        let body = if args.as_text && is_html {
            html2text::from_read(response.body.as_slice(), 100)
                .map_err(|e| ToolError::Failed(format!("cannot render HTML as text: {e}")))?
        } else {
            String::from_utf8_lossy(&response.body).into_owned()
        };
        return Ok(FetchResult {
            url: url.to_string(),
            status: response.status,
            headers: response.headers.into_iter().collect(),
            body,
            truncated: response.truncated,
            redirects,
        });
    }
}

/// Says which hop failed when a redirect chain was refused part-way.
fn hop_error(e: HttpError, redirects: &[String]) -> ToolError {
    let e = ToolError::from(e);
    if redirects.is_empty() {
        return e;
    }
    let hop = redirects.len() + 1;
    match e {
        ToolError::Denied(m) => ToolError::Denied(format!("redirect hop {hop}: {m}")),
        ToolError::Failed(m) => ToolError::Failed(format!("redirect hop {hop}: {m}")),
        other => other,
    }
}
