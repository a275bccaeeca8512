//! `wasi:http/outgoing-handler` behind the network policy.
//!
//! wasmtime-wasi-http parses the guest's request; this hook decides whether it
//! may go out and sends it. The URL is checked against the granted patterns,
//! the name is resolved once, every address is checked, and the connection
//! goes to an address that passed, never to a second lookup. Redirects are
//! never followed here: a guest that wants the next hop makes a new request,
//! which is checked again. Bodies are capped both ways.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::net::{NetPolicy, Target, TargetHost};
use crate::scope::CallLabels;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

/// The per-call hooks wasmtime-wasi-http calls to send a request.
pub(crate) struct OutboundHttp {
    policy: Arc<NetPolicy>,
    labels: CallLabels,
    body_limit: u64,
}

impl OutboundHttp {
    pub(crate) fn new(policy: Arc<NetPolicy>, labels: CallLabels, body_limit: u64) -> Self {
        OutboundHttp {
            policy,
            labels,
            body_limit,
        }
    }
}

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: IoFuture,
    ) -> SendFuture {
        let policy = self.policy.clone();
        let labels = self.labels.clone();
        let limit = self.body_limit;
        Box::new(async move { send(&policy, &labels, limit, request, options).await })
    }
}

async fn send(
    policy: &NetPolicy,
    labels: &CallLabels,
    body_limit: u64,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
    let uri = request.uri();
    let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
    let target = Target::new(https, host, uri.port_u16());

    if let Err(denial) = policy.check_target(&target) {
        tracing::info!(tenant = %labels.tenant, plugin = %labels.plugin, reason = %denial, "outbound request denied");
        return Err(Error::HttpRequestDenied);
    }

    let addrs = resolve(&target).await?;
    let mut allowed = Vec::with_capacity(addrs.len());
    for addr in addrs {
        match policy.check_address(&target, addr.ip()) {
            Ok(()) => allowed.push(addr),
            Err(denial) => {
                tracing::info!(tenant = %labels.tenant, plugin = %labels.plugin, reason = %denial, "outbound address denied");
            }
        }
    }
    if allowed.is_empty() {
        return Err(Error::DestinationIpProhibited);
    }
    tracing::debug!(tenant = %labels.tenant, plugin = %labels.plugin, %target, "outbound request allowed");

    let options = options.unwrap_or_default();
    let connect_timeout = options.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let first_byte_timeout = options
        .first_byte_timeout
        .unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT);

    let tcp = connect(&allowed, connect_timeout).await?;
    let (request_parts, request_body) = request.into_parts();
    let mut request_parts = request_parts;
    // On the wire the request line carries the path only.
    request_parts.uri = http::Uri::builder()
        .path_and_query(
            request_parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/"),
        )
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let body = Capped::new(request_body, body_limit, Error::HttpRequestBodySize);
    let request = http::Request::from_parts(request_parts, body);

    if https {
        let name = match &target.host {
            TargetHost::Ip(ip) => rustls::pki_types::ServerName::from(*ip),
            TargetHost::Name(n) => rustls::pki_types::ServerName::try_from(n.clone())
                .map_err(|_| Error::HttpRequestUriInvalid)?,
        };
        let tls = tokio::time::timeout(connect_timeout, tls_connector()?.connect(name, tcp))
            .await
            .map_err(|_| Error::ConnectionTimeout)?
            .map_err(Error::Tls)?;
        exchange(tls, request, body_limit, first_byte_timeout).await
    } else {
        exchange(tcp, request, body_limit, first_byte_timeout).await
    }
}

async fn resolve(target: &Target) -> Result<Vec<SocketAddr>, Error> {
    match &target.host {
        TargetHost::Ip(ip) => Ok(vec![SocketAddr::new(*ip, target.port)]),
        TargetHost::Name(name) => {
            let lookup = tokio::net::lookup_host((name.as_str(), target.port));
            let addrs = tokio::time::timeout(DEFAULT_CONNECT_TIMEOUT, lookup)
                .await
                .map_err(|_| Error::DnsTimeout)?
                .map_err(|e| Error::DnsError {
                    rcode: Some(e.to_string()),
                    info_code: None,
                })?
                .collect::<Vec<_>>();
            if addrs.is_empty() {
                return Err(Error::DestinationNotFound);
            }
            Ok(addrs)
        }
    }
}

async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, Error> {
    let mut last = Error::ConnectionRefused;
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Error::Connect(e),
            Err(_) => last = Error::ConnectionTimeout,
        }
    }
    Err(last)
}

/// One TLS client configuration per process: ring, the webpki roots, no
/// client certificates.
fn tls_connector() -> Result<tokio_rustls::TlsConnector, Error> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
            .map_err(|e| e.to_string())
    });
    match config {
        Ok(config) => Ok(tokio_rustls::TlsConnector::from(config.clone())),
        Err(e) => Err(Error::InternalError(Some(format!("TLS setup: {e}")))),
    }
}

/// HTTP/1.1 over an established stream: send the request, return the
/// response head with a capped body, and the connection driver for the
/// caller to run while the body streams.
async fn exchange<S>(
    stream: S,
    request: http::Request<Capped<WasiBody>>,
    body_limit: u64,
    first_byte_timeout: Duration,
) -> Result<(http::Response<WasiBody>, IoFuture), Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let io = wasmtime_wasi_http::io::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    let mut conn = Box::pin(conn);
    let mut conn_done = false;
    let response = {
        let send = tokio::time::timeout(first_byte_timeout, sender.send_request(request));
        tokio::pin!(send);
        loop {
            tokio::select! {
                response = &mut send => break response,
                finished = &mut conn, if !conn_done => {
                    conn_done = true;
                    finished?;
                }
            }
        }
    };
    let response = response.map_err(|_| Error::ConnectionReadTimeout)??;
    let response = response.map(|incoming| {
        Capped::new(
            incoming.map_err(Error::from),
            body_limit,
            Error::HttpResponseBodySize,
        )
        .boxed_unsync()
    });
    let driver: IoFuture = Box::new(async move {
        if !conn_done {
            conn.await?;
        }
        Ok(())
    });
    Ok((response, driver))
}

/// A body that fails once more than `limit` bytes have passed.
pub(crate) struct Capped<B> {
    inner: B,
    seen: u64,
    limit: u64,
    over: fn(Option<u64>) -> Error,
}

impl<B> Capped<B> {
    fn new(inner: B, limit: u64, over: fn(Option<u64>) -> Error) -> Self {
        Capped {
            inner,
            seen: 0,
            limit,
            over,
        }
    }
}

impl<B> Body for Capped<B>
where
    B: Body<Data = Bytes, Error = Error> + Unpin,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            self.seen = self.seen.saturating_add(data.len() as u64);
            if self.seen > self.limit {
                return Poll::Ready(Some(Err((self.over)(Some(self.limit)))));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
