//! The server: the API, `/healthz` and `/readyz`, on one listener, until
//! the shutdown future resolves (in-flight requests finish first).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use warden_core::CompiledPlugin;

use crate::api::{self, AppState, Shared};
use crate::hosting::Hosting;
use crate::operator::Operator;

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
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
    pub fn new(operator: Operator, plugins: Vec<CompiledPlugin>) -> Server {
        let hosting = Hosting::new(operator.data_dir(), plugins);
        Server {
            shared: Arc::new(Shared {
                operator,
                hosting,
                limiter: Default::default(),
                gate: Default::default(),
            }),
        }
    }

    /// Every route, ready to serve.
    pub fn router(&self) -> Router {
        api::router()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .layer(DefaultBodyLimit::max(api::MAX_BODY))
            .with_state(self.shared.clone())
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
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
