//! The server: the API, `/healthz` and `/readyz`, on one listener, until
//! the shutdown future resolves (in-flight requests finish first).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use warden_core::{CompiledPlugin, Engine};

use crate::api::{self, AppState, Shared};
use crate::dashboard;
use crate::hosting::Hosting;
use crate::metrics::Metrics;
use crate::operator::Operator;
use crate::quota::CallGate;
use crate::runs::RunHost;
use crate::usage::Meter;
use crate::workspace::Workspaces;

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What a server serves besides its control state.
#[derive(Clone)]
pub struct Hosted {
    /// The engine every call runs on (with its models and memory store).
    pub engine: Engine,
    /// The plugins tenants may use: the tools they call, the roles their
    /// runs name.
    pub plugins: Vec<CompiledPlugin>,
    /// Where runs find the plugins a workflow names.
    pub plugin_dirs: Vec<PathBuf>,
    /// The memory store behind `/v1/memory` (the engine's, for plugins).
    pub memory: Option<Arc<dyn warden_api::memory::Memories>>,
    /// Join a cluster: runs on its JetStream, tasks from its queues.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

impl std::fmt::Debug for Hosted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosted")
            .field("plugin_dirs", &self.plugin_dirs)
            .finish_non_exhaustive()
    }
}

/// A server over one operator's control state and a set of loaded plugins.
#[derive(Clone)]
pub struct Server {
    shared: AppState,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("hosting", &self.shared.hosting)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// `operator` is an [`Operator`] or one shared with the layers built
    /// before the server (its memory store's [`CountedMemories`]).
    ///
    /// [`CountedMemories`]: crate::memories::CountedMemories
    pub fn new(operator: impl Into<Arc<Operator>>, hosted: Hosted) -> Server {
        let names = hosted
            .plugins
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        let operator = operator.into();
        let gate = Arc::new(CallGate::default());
        let metrics = Arc::new(Metrics::default());
        let meter = Arc::new(Meter::new(operator.clone()));
        let hosting = Hosting::new(
            hosted.plugins,
            operator.clone(),
            gate.clone(),
            metrics.clone(),
            meter.clone(),
        );
        let memory = hosted.memory;
        let workspaces = Workspaces::new(hosted.engine.clone(), operator.data_dir());
        let runs = RunHost::new(
            operator.data_dir(),
            hosted.engine,
            hosted.plugin_dirs,
            names,
            metrics.clone(),
            meter.clone(),
            operator.clone(),
            hosted.cluster,
        );
        Server {
            shared: Arc::new(Shared {
                operator,
                hosting,
                runs,
                memory,
                limiter: Default::default(),
                gate,
                metrics,
                meter,
                workspaces,
            }),
        }
    }

    /// Every route, ready to serve.
    pub fn router(&self) -> Router {
        api::router()
            .merge(dashboard::router())
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .layer(axum::middleware::from_fn(read_whole_body))
            .layer(axum::middleware::from_fn_with_state(
                self.shared.clone(),
                count_answers,
            ))
            .layer(DefaultBodyLimit::max(api::MAX_BODY))
            .with_state(self.shared.clone())
    }

    /// Serves on `listener` until `shutdown` resolves, after taking up the
    /// runs a previous server left unfinished (they go on in the
    /// background).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        match self.shared.operator.tenants().await {
            Ok(tenants) => self.shared.runs.resume_all(&tenants).await,
            Err(e) => tracing::error!(error = %e, "cannot list tenants to resume their runs"),
        }
        self.shared.runs.join_cluster();
        let meter = self.shared.meter.clone();
        let flusher = tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                every.tick().await;
                meter.flush().await;
            }
        });
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        flusher.abort();
        self.shared.meter.flush().await;
        served?;
        Ok(())
    }
}

/// Reads a request's body (at most [`api::MAX_BODY`]) before it is routed.
/// An answer given without reading the body (a 401, say) would otherwise
/// make hyper close the connection, and a client that sent its next
/// request on it would see the connection drop instead of an answer.
async fn read_whole_body(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, api::MAX_BODY).await {
        Ok(bytes) => {
            next.run(axum::extract::Request::from_parts(parts, bytes.into()))
                .await
        }
        Err(_) => api::ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!(
                "the body is over {} bytes (or could not be read)",
                api::MAX_BODY
            ),
        )
        .into_response(),
    }
}

/// Counts every answer by its status.
async fn count_answers(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let response = next.run(request).await;
    state.metrics.response(response.status().as_u16());
    response
}

/// The metrics, for Prometheus; an operator key may read them (they name
/// every tenant).
async fn metrics(
    State(state): State<AppState>,
    auth: api::Auth,
) -> Result<axum::response::Response, api::ApiError> {
    use axum::response::IntoResponse;
    // Only operator keys have `admin`.
    auth.require(crate::key::Scope::Admin)?;
    let text = state
        .metrics
        .render(state.gate.lanes(), state.runs.live_counts());
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response())
}

/// Alive.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to serve: the control store answers.
async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.operator.control().tenants().await {
        Ok(_) => (StatusCode::OK, "ready\n"),
        Err(e) => {
            tracing::error!(error = %e, "not ready: the control store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the control store does not answer\n",
            )
        }
    }
}
