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

/// Probe the readiness endpoint of a server at `addr` over plain HTTP/1.0 (the container
/// HEALTHCHECK, `llm-relay health`: no curl needed in the image). Blocking; every step is bounded
/// by `timeout`.
///
/// Errors: a message saying why: connection failed, timed out, or a status other than 200.
pub fn probe(addr: std::net::SocketAddr, timeout: std::time::Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    sock.set_read_timeout(Some(timeout))
        .and_then(|()| sock.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    sock.write_all(b"GET /health/ready HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    // The status line and the small JSON body; 4 KiB is far more than either.
    let mut buf = Vec::new();
    sock.take(4096)
        .read_to_end(&mut buf)
        .map_err(|e| format!("no answer from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        Err(format!("{addr} is not ready: {status} {body}"))
    }
}
