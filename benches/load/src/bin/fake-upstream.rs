//! Zero-latency fake OpenAI-compatible upstream for `benches/run.sh`.
//!
//! `POST /v1/chat/completions` answers at once with a pre-rendered `chat.completion`, or, when the
//! body has `"stream":true`, a pre-rendered SSE stream: 20 `chat.completion.chunk` events, a usage
//! chunk and `data: [DONE]`, one HTTP chunk per event as OpenAI sends them. A body containing
//! `HOLD-STREAM-OPEN` gets the role chunk and the first token, then the stream stays open until
//! the client goes away. No JSON is parsed: the body is only searched for those two markers.
//!
//! Served by poem (hyper) with TCP_NODELAY, like a typical Rust HTTP service and like llm-relay
//! itself, so "direct" is the cost of a plain HTTP round trip and the relay's share is the
//! difference.
//!
//! Usage: `fake-upstream [PORT] [THREADS]` (PORT 0 = any free port; THREADS = tokio workers,
//! default 1). Prints `listening 127.0.0.1:PORT` on stdout once bound.

use std::io::{self, Write};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use llm_relay::server::NoDelayAcceptor;
use llm_relay_load::{Canned, HOLD_MARKER, find};
use poem::listener::Acceptor;
use poem::web::Data;
use poem::{Body, EndpointExt, Response, Route, handler, post};

#[handler]
fn chat(body: Bytes, canned: Data<&Arc<Canned>>) -> Response {
    let sse = |events: Vec<Bytes>| {
        Response::builder()
            .content_type("text/event-stream; charset=utf-8")
            .header("cache-control", "no-cache")
            .body(Body::from_bytes_stream(
                stream::iter(events).map(Ok::<Bytes, io::Error>),
            ))
    };
    if find(&body, HOLD_MARKER).is_some() {
        let head = canned.events.iter().take(2).cloned().collect::<Vec<_>>();
        let held = stream::iter(head)
            .chain(stream::pending())
            .map(Ok::<Bytes, io::Error>);
        Response::builder()
            .content_type("text/event-stream; charset=utf-8")
            .body(Body::from_bytes_stream(held))
    } else if find(&body, b"\"stream\":true").is_some() {
        sse(canned.events.clone())
    } else {
        Response::builder()
            .content_type("application/json")
            .body(canned.completion.clone())
    }
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let acceptor =
            NoDelayAcceptor::new(tokio::net::TcpListener::bind(("127.0.0.1", port)).await?)?;
        let addr = acceptor
            .local_addr()
            .into_iter()
            .next()
            .and_then(|a| a.as_socket_addr().copied())
            .ok_or_else(|| io::Error::other("no local address"))?;
        let mut out = io::stdout();
        writeln!(out, "listening {addr}")?;
        out.flush()?;
        let app = Route::new()
            .at("/v1/chat/completions", post(chat))
            .data(Arc::new(Canned::new()));
        poem::Server::new_with_acceptor(acceptor).run(app).await
    })
}
