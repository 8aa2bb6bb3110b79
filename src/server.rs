//! The HTTP server: route table, TCP_NODELAY listener, graceful shutdown.
//!
//! `run(listener, state, shutdown)` is the seam tests use (mini-redis style): they bind
//! `127.0.0.1:0`, pass the listener in, and stop the server through the shutdown future.

use std::future::Future;
use std::io;

use poem::error::{MethodNotAllowedError, NotFoundError};
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, EndpointExt};
use tokio::net::{TcpListener, TcpStream};

use crate::error::ApiError;
use crate::frontend::{anthropic, ollama, openai};
use crate::relay::AppState;

/// Accepts TCP connections with TCP_NODELAY set, so small stream chunks leave at once instead of
/// waiting on Nagle's algorithm (~40 ms per chunk on loopback with delayed ACKs).
pub struct NoDelayAcceptor {
    listener: TcpListener,
    local: LocalAddr,
}

impl NoDelayAcceptor {
    /// Wrap a bound listener.
    ///
    /// Errors: the listener has no local address.
    pub fn new(listener: TcpListener) -> io::Result<Self> {
        let local = LocalAddr(listener.local_addr()?.into());
        Ok(NoDelayAcceptor { listener, local })
    }
}

impl Acceptor for NoDelayAcceptor {
    type Io = TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        vec![self.local.clone()]
    }

    async fn accept(
        &mut self,
    ) -> io::Result<(TcpStream, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        let (stream, addr) = self.listener.accept().await?;
        // Best effort: a socket that refuses the option still works, only slower.
        let _ = stream.set_nodelay(true);
        Ok((
            stream,
            self.local.clone(),
            RemoteAddr(addr.into()),
            poem::http::uri::Scheme::HTTP,
        ))
    }
}

/// The API route table: Ollama at `/` and `/api/*`, OpenAI at `/v1/*`, Anthropic at
/// `/v1/messages*`, health probes at `/health/*` ([`crate::health`]), with one access-log line
/// for every request whose handler does not write its own (model requests log model, provider
/// and tokens through `usage::RequestLog`).
pub fn app(state: AppState) -> impl poem::Endpoint {
    ollama::routes()
        .nest("/v1", anthropic::add_routes(openai::routes()))
        .nest("/health", crate::health::routes())
        .data(state)
        .around(|ep, req| async move {
            let method = req.method().clone();
            let path = req.original_uri().path().to_owned();
            let started = std::time::Instant::now();
            let resp = match ep.call(req).await {
                Ok(resp) => resp,
                // No route for this path (or not for this method): answer in the format of the
                // API the path belongs to, so SDKs show the reason instead of an empty 404.
                Err(e) if e.is::<NotFoundError>() || e.is::<MethodNotAllowedError>() => {
                    let err = ApiError::UnknownRoute {
                        method: method.to_string(),
                        path: path.clone(),
                    };
                    if path.starts_with("/v1/messages") {
                        anthropic::error_response(&err)
                    } else if path == "/v1" || path.starts_with("/v1/") {
                        openai::error_response(&err)
                    } else {
                        ollama::error_response(&err)
                    }
                }
                Err(e) => e.into_response(),
            };
            if resp.extensions().get::<crate::usage::Logged>().is_none() {
                tracing::info!(
                    method = %method,
                    path = %path,
                    status = resp.status().as_u16(),
                    latency_ms = started.elapsed().as_millis() as u64,
                    "request"
                );
            }
            Ok::<_, poem::Error>(resp)
        })
}

/// Serve the API on `listener` until `shutdown` completes, then finish in-flight requests.
///
/// Errors: accept-loop I/O failures.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let acceptor = NoDelayAcceptor::new(listener)?;
    // Ollama-instance discovery runs beside the server (never before it: startup does not wait).
    // Aborted on drop: also when this future is dropped before the shutdown completes.
    let _refresher = AbortOnDrop(state.instances.spawn_refresher(state.client.clone()));
    // In-flight requests and streams get `SHUTDOWN_GRACE_MS` after the shutdown; then they are cut
    // (their usage records are still sent: the request's accounting records on drop).
    let grace = state.config.shutdown_grace;
    // `_refresher` lives to the end of this function, after the server stopped.
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app(state), shutdown, Some(grace))
        .await
}

/// Aborts its task when dropped (the instance refresher lives exactly as long as [`run`]).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
