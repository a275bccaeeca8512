//! Outbound HTTP from a plugin, through `wasi:http/outgoing-handler` and so
//! through the operator's network policy.
//!
//! One call is one request: redirects are returned, not followed, so a plugin
//! that follows them makes each hop a new request the host checks again.

use std::fmt;

/// A response, its body read up to the caller's cap.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was longer than the cap and was cut.
    pub truncated: bool,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The host's policy refused it.
    Denied(String),
    /// The URL or request could not be used.
    Invalid(String),
    /// The request went out and failed (DNS, connection, TLS, protocol).
    Failed(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Denied(m) | HttpError::Invalid(m) | HttpError::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for crate::ToolError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Denied(m) => crate::ToolError::Denied(m),
            HttpError::Invalid(m) => crate::ToolError::InvalidArguments(m),
            HttpError::Failed(m) => crate::ToolError::Failed(m),
        }
    }
}

/// GET `url` with extra `headers`, reading at most `max_body` bytes of the
/// body.
pub fn get(url: &str, headers: &[(&str, &str)], max_body: usize) -> Result<Response, HttpError> {
    let parsed = url::Url::parse(url).map_err(|e| HttpError::Invalid(format!("{url:?}: {e}")))?;
    let https = match parsed.scheme() {
        "https" => true,
        "http" => false,
        other => {
            return Err(HttpError::Invalid(format!(
                "{url}: scheme {other:?} is not supported; use http or https"
            )));
        }
    };
    let host = parsed
        .host_str()
        .ok_or_else(|| HttpError::Invalid(format!("{url}: no host")))?;
    let port = parsed
        .port_or_known_default()
        .unwrap_or(if https { 443 } else { 80 });
    let authority = match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let mut path = parsed.path().to_string();
    if let Some(q) = parsed.query() {
        path.push('?');
        path.push_str(q);
    }
    let target = Target {
        url,
        scheme: if https { "https" } else { "http" },
        host,
        port,
    };
    imp::get(&target, &authority, &path, headers, max_body)
}

struct Target<'a> {
    url: &'a str,
    scheme: &'a str,
    host: &'a str,
    port: u16,
}

impl Target<'_> {
    fn denied(&self) -> HttpError {
        HttpError::Denied(format!(
            "{}: refused by the operator's network policy; it needs a grant such as --allow-host {}://{}:{}",
            self.url, self.scheme, self.host, self.port
        ))
    }

    fn prohibited(&self) -> HttpError {
        HttpError::Denied(format!(
            "{}: {} resolves to a loopback, private, link-local or otherwise special address, which warden refuses unless the grant names that IP literally",
            self.url, self.host
        ))
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{HttpError, Response, Target};
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingRequest, Scheme};
    use wasip2::io::streams::StreamError;

    pub(super) fn get(
        target: &Target<'_>,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
        max_body: usize,
    ) -> Result<Response, HttpError> {
        let entries: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let fields = Fields::from_list(&entries)
            .map_err(|e| HttpError::Invalid(format!("{}: bad header: {e:?}", target.url)))?;
        let request = OutgoingRequest::new(fields);
        let scheme = if target.scheme == "https" {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let invalid = |what: &str| HttpError::Invalid(format!("{}: invalid {what}", target.url));
        request
            .set_method(&Method::Get)
            .map_err(|_| invalid("method"))?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|_| invalid("scheme"))?;
        request
            .set_authority(Some(authority))
            .map_err(|_| invalid("authority"))?;
        request
            .set_path_with_query(Some(path))
            .map_err(|_| invalid("path"))?;

        let pending = outgoing_handler::handle(request, None).map_err(|e| error(target, e))?;
        let response = loop {
            match pending.get() {
                Some(Ok(Ok(response))) => break response,
                Some(Ok(Err(code))) => return Err(error(target, code)),
                Some(Err(())) => {
                    return Err(HttpError::Failed(format!(
                        "{}: response already taken",
                        target.url
                    )));
                }
                None => pending.subscribe().block(),
            }
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let body = response
            .consume()
            .map_err(|_| HttpError::Failed(format!("{}: no response body", target.url)))?;
        let stream = body
            .stream()
            .map_err(|_| HttpError::Failed(format!("{}: no response body stream", target.url)))?;
        let mut bytes = Vec::new();
        let mut truncated = false;
        loop {
            let want = (max_body - bytes.len()).clamp(1, 64 * 1024) as u64;
            match stream.blocking_read(want) {
                Ok(chunk) => {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() >= max_body {
                        truncated = true;
                        bytes.truncate(max_body);
                        break;
                    }
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(HttpError::Failed(format!(
                        "{}: reading the body failed: {}",
                        target.url,
                        e.to_debug_string()
                    )));
                }
            }
        }
        Ok(Response {
            status,
            headers,
            body: bytes,
            truncated,
        })
    }

    fn error(target: &Target<'_>, code: ErrorCode) -> HttpError {
        match code {
            ErrorCode::HttpRequestDenied => target.denied(),
            ErrorCode::DestinationIpProhibited => target.prohibited(),
            ErrorCode::HttpResponseBodySize(_) => HttpError::Failed(format!(
                "{}: the response body is larger than the host allows",
                target.url
            )),
            other => HttpError::Failed(format!("{}: {other:?}", target.url)),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{HttpError, Response, Target};

    pub(super) fn get(
        target: &Target<'_>,
        _authority: &str,
        _path: &str,
        _headers: &[(&str, &str)],
        _max_body: usize,
    ) -> Result<Response, HttpError> {
        // Keep both messages reachable for native builds of plugins.
        let _ = (target.denied(), target.prohibited());
        Err(HttpError::Failed(format!(
            "{}: HTTP is only available inside warden (build for wasm32-wasip2)",
            target.url
        )))
    }
}
