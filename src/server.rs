//! The HTTP server: route table, TCP_NODELAY listener, graceful shutdown.
//!
//! `run(listener, state, shutdown)` is the seam tests use (mini-redis style): they bind
//! `127.0.0.1:0`, pass the listener in, and stop the server through the shutdown future. The
//! binary serves through [`run_threads`]: the same server on N threads, one single-threaded
//! runtime each, each accepting from a listening socket of its own ([`bind`], SO_REUSEPORT).

use std::future::Future;
use std::io;
use std::sync::Arc;

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
    // Ollama-instance discovery runs beside the server (never before it: startup does not wait).
    // Aborted on drop: also when this future is dropped before the shutdown completes.
    let _refresher = AbortOnDrop(state.instances.spawn_refresher(state.client.clone()));
    // `_refresher` lives to the end of this function, after the server stopped.
    serve(listener, state, shutdown).await
}

/// The accept loop and graceful shutdown of [`run`] and of each [`run_threads`] thread, without
/// instance discovery.
async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let acceptor = NoDelayAcceptor::new(listener)?;
    // In-flight requests and streams get `SHUTDOWN_GRACE_MS` after the shutdown; then they are cut
    // (their usage records are still sent: the request's accounting records on drop).
    let grace = state.config.shutdown_grace;
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app(state), shutdown, Some(grace))
        .await
}

/// A TCP socket for `addr`'s family with SO_REUSEADDR (not on Windows, where it would let
/// another socket take over the port), as `TcpListener::bind` has it.
fn socket_for(addr: std::net::SocketAddr) -> io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    Ok(socket)
}

/// Pending connections a listening socket queues (the kernel caps it at `somaxconn`).
pub const BACKLOG: u32 = 1024;

/// Listen for API connections on `addr` (SO_REUSEADDR, a backlog of [`BACKLOG`]), on Linux with
/// SO_REUSEPORT, so that [`run_threads`] can give every server thread a listening socket of its
/// own on the same port.
///
/// Why: with one socket shared by the threads, whichever thread woke first accepted a whole burst
/// of new connections; in 5 of 18 benchmark runs all 32 of wrk's connections landed on one
/// thread, and the relay served 19,500-19,900 req/s on one core instead of 24,000-29,000 on two
/// (README, Benchmark). With a socket per thread the kernel spreads new connections over them by
/// a hash of their addresses. The cost: a connection hashed to a busy thread waits for it even
/// when another is idle, and at shutdown connections still queued on a thread's socket (not yet
/// accepted) are reset when it closes, unless `net.ipv4.tcp_migrate_req=1`.
///
/// SO_REUSEPORT would also let a second server start on a port that one already serves and take
/// part of its connections; so a fixed port is first bound once without it (bound only, not
/// listening), which fails as a plain bind does when the port is taken. (Two servers starting at
/// the same instant can still both pass; on the same `DATA_DIR` the database lock stops one.)
///
/// Errors: the port is taken; the socket cannot be created, configured or bound.
pub fn bind(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    if addr.port() != 0 {
        let probe = socket_for(addr)?;
        probe.bind(addr)?;
    }
    let socket = socket_for(addr)?;
    #[cfg(target_os = "linux")]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Another listening socket on `first`'s address for one more server thread: a socket of its own
/// when `first` allows it (bound by [`bind`]: SO_REUSEPORT on Linux), else a duplicate of
/// `first`'s descriptor (the threads then share one accept queue).
fn thread_listener(first: &std::net::TcpListener) -> io::Result<std::net::TcpListener> {
    #[cfg(target_os = "linux")]
    {
        let addr = first.local_addr()?;
        let own = socket_for(addr).and_then(|s| {
            s.set_reuseport(true)?;
            s.bind(addr)?;
            s.listen(BACKLOG)
        });
        match own {
            Ok(own) => return own.into_std(),
            // EADDRINUSE when `first` was bound without SO_REUSEPORT (tests bind their own).
            Err(e) => tracing::debug!(error = %e, "no listening socket of its own: sharing one"),
        }
    }
    first.try_clone()
}

/// Serve the API on `threads` OS threads (`SERVER_THREADS`), each running `serve` on its own
/// single-threaded tokio runtime with its own upstream clients ([`AppState::with_own_clients`]),
/// each accepting connections from a listening socket of its own on `listener`'s port when
/// `listener` comes from [`bind`] (the kernel spreads connections over them), else from a
/// duplicate of `listener`'s descriptor (whichever thread is free accepts). A connection, its
/// requests, their upstream
/// connections and the tasks driving them stay on the thread that accepted it, so a request never
/// waits for another thread to be woken: on a 2-core VM that wake-up cost ~150 µs per relayed
/// request at low load with tokio's work-stealing runtime (README, Benchmark). Ollama-instance
/// discovery runs on the caller's runtime. Stops when `shutdown` turns `true`: every thread stops
/// accepting and gives its in-flight requests `SHUTDOWN_GRACE_MS`; returns when all have ended.
///
/// Errors: the listener cannot be duplicated, a thread or runtime cannot be started, an upstream
/// client cannot be built, or a thread's accept loop failed (the first such error; the other
/// threads are stopped).
pub async fn run_threads(
    listener: TcpListener,
    state: AppState,
    threads: usize,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> io::Result<()> {
    let _refresher = AbortOnDrop(state.instances.spawn_refresher(state.client.clone()));
    let listener = listener.into_std()?;
    // A thread that fails stops the others through this sender (they watch both).
    let (failed_tx, failed_rx) = tokio::sync::watch::channel(false);
    let failed_tx = Arc::new(failed_tx);
    // Everything that can fail before any thread starts: a failure later stops the started ones.
    let mut parts = Vec::with_capacity(threads.max(1));
    for i in 0..threads.max(1) {
        let state = state.with_own_clients().map_err(io::Error::other)?;
        let own = if i == 0 {
            listener.try_clone()?
        } else {
            thread_listener(&listener)?
        };
        parts.push((own, state));
    }
    drop(listener);
    let mut ended = Vec::with_capacity(parts.len());
    for (i, (listener, state)) in parts.into_iter().enumerate() {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<io::Result<()>>();
        let (mut stop, mut failed, thread_failed) =
            (shutdown.clone(), failed_rx.clone(), Arc::clone(&failed_tx));
        let log_flush = state.config.log_flush;
        let spawned = std::thread::Builder::new()
            .name(format!("api-{i}"))
            .spawn(move || {
                // This thread's log lines (one access-log line per request) are written out
                // in batches: see crate::logbuf.
                let first_line = (!log_flush.is_zero()).then(crate::logbuf::buffer_this_thread);
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|rt| {
                        rt.block_on(async move {
                            // Flush LOG_FLUSH_MS after the first line of a batch (no wake-ups
                            // while the thread logs nothing).
                            let _flusher = first_line.map(|first_line| {
                                AbortOnDrop(tokio::spawn(async move {
                                    loop {
                                        first_line.notified().await;
                                        tokio::time::sleep(log_flush).await;
                                        crate::logbuf::flush_this_thread();
                                    }
                                }))
                            });
                            let stopped = async move {
                                tokio::select! {
                                    _ = stop.wait_for(|s| *s) => {}
                                    _ = failed.wait_for(|f| *f) => {}
                                }
                            };
                            serve(TcpListener::from_std(listener)?, state, stopped).await
                        })
                    });
                crate::logbuf::flush_this_thread();
                if result.is_err() {
                    let _ = thread_failed.send(true);
                }
                let _ = done_tx.send(result);
            });
        if let Err(e) = spawned {
            let _ = failed_tx.send(true);
            return Err(e);
        }
        ended.push(done_rx);
    }
    let mut first_error = None;
    for done in ended {
        let result = done
            .await
            .unwrap_or_else(|_| Err(io::Error::other("an API server thread panicked")));
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Aborts its task when dropped (the instance refresher lives exactly as long as [`run`] or
/// [`run_threads`]).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
