//! The admin HTTP listener: `/metrics` (Prometheus text), `/healthz`,
//! `POST /reload`, and the record spool's `GET /records/backlog` and
//! `POST /records/flush`. Bound to loopback by default (SPEC §8).

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
        .route("/records/backlog", get(records_backlog))
        .route("/records/flush", post(records_flush))
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

fn backlog_json() -> String {
    let backlog = crate::records::spool()
        .map(|s| s.backlog())
        .unwrap_or(crate::records::Backlog {
            sinks: Vec::new(),
            spool_bytes: 0,
        });
    serde_json::to_string(&backlog).unwrap_or_else(|_| "{}".into()) + "\n"
}

/// `{"sinks":[{"id","pending_records","pending_bytes","oldest_age_seconds"}],"spool_bytes"}`
async fn records_backlog() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], backlog_json())
}

/// Every sink's uploader retries its pending records now; answers with
/// the backlog as it stands (`trunkd records flush` polls until empty).
async fn records_flush() -> impl IntoResponse {
    if let Some(s) = crate::records::spool() {
        s.flush();
    }
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        backlog_json(),
    )
}
