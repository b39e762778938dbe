//! The engine's HTTP endpoints, served by axum on the job's runtime until
//! it stops: the job's metrics and health probes (`engine run
//! --metrics-addr`), and the live candle page ([`ui`]: `engine run --ui`,
//! `engine ui`).
//!
//! - `GET /metrics`: every `engine_*` series (README lists them);
//! - `GET /healthz`: 200 while the process serves at all;
//! - `GET /readyz`: 200 when every source has partitions assigned, the
//!   newest checkpoint is younger than three intervals and no sink is
//!   stalled; else 503 with one reason per line.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::error::{EngineError, Result};
use crate::metrics::Metrics;

pub mod ui;

/// The content type of Prometheus' text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A running endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// Where it listens (the port chosen, when `:0` was asked for).
    pub addr: SocketAddr,
}

/// The routes of the endpoint over `metrics`.
pub fn routes(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(metrics)
}

/// Binds `addr` (e.g. `127.0.0.1:9464`) and serves `metrics` there until
/// `stop` is cancelled.
pub async fn serve(addr: &str, metrics: Arc<Metrics>, stop: CancellationToken) -> Result<Endpoint> {
    serve_routes(addr, routes(metrics), "--metrics-addr", stop).await
}

/// Binds `addr` and serves `app` there until `stop` is cancelled; `option`
/// names what asked for it in errors.
pub async fn serve_routes(
    addr: &str,
    app: Router,
    option: &str,
    stop: CancellationToken,
) -> Result<Endpoint> {
    serve_on(bind(addr, option).await?, app, option, stop)
}

/// Binds `addr` for the endpoint `option` asks for (before its routes are
/// built: a page starts following its topic only once it can be served).
pub async fn bind(addr: &str, option: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| EngineError::Execution(format!("{option} {addr}: cannot listen: {e}")))
}

/// Serves `app` on `listener` until `stop` is cancelled.
pub fn serve_on(
    listener: tokio::net::TcpListener,
    app: Router,
    option: &str,
    stop: CancellationToken,
) -> Result<Endpoint> {
    let addr = listener
        .local_addr()
        .map_err(|e| EngineError::Execution(format!("{option}: {e}")))?;
    let option = option.to_string();
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(%addr, error = %e, "the endpoint of {option} stopped");
        }
    });
    tracing::info!(%addr, "serving on http://{addr}/");
    Ok(Endpoint { addr })
}

async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], metrics.render())
}

async fn ready(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    let readiness = metrics.readiness();
    if readiness.ready {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        let body = readiness.reasons.join("\n") + "\n";
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}
