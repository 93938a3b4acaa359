//! `/healthz` (the process answers) and `/readyz` (its database and object store answer too).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// Body of both probes.
#[derive(Debug, Serialize)]
struct Probe {
    status: &'static str,
    /// Dependencies that failed their check (readiness only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failing: Vec<&'static str>,
}

async fn healthz() -> Json<Probe> {
    Json(Probe {
        status: "ok",
        failing: Vec::new(),
    })
}

#[tracing::instrument(skip_all)]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Probe>) {
    let (db, store) = tokio::join!(state.db.ping(), state.store.check());
    let mut failing = Vec::new();
    if let Err(error) = db {
        tracing::warn!(%error, "readiness: database check failed");
        failing.push("database");
    }
    if let Err(error) = store {
        tracing::warn!(%error, "readiness: object store check failed");
        failing.push("object_store");
    }
    if failing.is_empty() {
        (
            StatusCode::OK,
            Json(Probe {
                status: "ready",
                failing,
            }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Probe {
                status: "unavailable",
                failing,
            }),
        )
    }
}
