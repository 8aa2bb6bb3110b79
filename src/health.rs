//! Health endpoints for orchestrators (Docker HEALTHCHECK, Kubernetes probes, load balancers),
//! on the API port:
//!
//! - `GET /health/live`: the process answers HTTP (200 `{"status":"ok"}`); nothing else is
//!   checked, so a busy upstream never gets the process restarted.
//! - `GET /health/ready`: the usage pipeline works: the writer thread runs and the database
//!   answers a read (200 `{"status":"ok"}`, else 503 `{"status":"unavailable","error":"..."}`).
//!   Upstreams are not probed: one provider down must not take the whole relay out of rotation.
//!
//! Both answer `HEAD` too. Owns no request-path state.

use poem::http::StatusCode;
use poem::web::{Data, Json};
use poem::{IntoResponse, Response, Route, get, handler};
use serde_json::json;

use crate::relay::AppState;

/// The routes, to nest under `/health`: `/live` and `/ready`.
pub fn routes() -> Route {
    Route::new()
        .at("/live", get(live).head(live))
        .at("/ready", get(ready).head(ready))
}

#[handler]
fn live() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

#[handler]
async fn ready(state: Data<&AppState>) -> Response {
    let recorder = std::sync::Arc::clone(&state.usage);
    // One read transaction: off the async workers, like every other store access.
    let checked = tokio::task::spawn_blocking(move || recorder.check())
        .await
        .unwrap_or_else(|e| Err(format!("readiness check failed: {e}")));
    match checked {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            Json(json!({"status": "unavailable", "error": error}))
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .into_response()
        }
    }
}
