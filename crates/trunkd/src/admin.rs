//! The admin HTTP listener: `/metrics` (Prometheus text), `/healthz`, and
//! `POST /reload`. Bound to loopback by default (SPEC §8).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tracing::error;

use crate::daemon::Shared;

pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/reload", post(reload))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app).await {
        error!(error = %e, "admin listener failed");
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}

async fn healthz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let summary = crate::summary(&shared.config().resources);
    (StatusCode::OK, format!("ok: {summary}\n"))
}

/// 200 with a summary, or 422 with every error of the rejected file.
async fn reload(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    match shared.reload().await {
        Ok(summary) => (StatusCode::OK, summary + "\n"),
        Err(errors) => (StatusCode::UNPROCESSABLE_ENTITY, errors + "\n"),
    }
}
