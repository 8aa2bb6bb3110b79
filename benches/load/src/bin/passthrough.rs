//! A bare hyper HTTP/1.1 pass-through for `benches/run.sh`: the "parses nothing" reference point
//! of issue 8, measured in the same run as llm-relay.
//!
//! Every request is forwarded as it came (method, path, headers, streamed body) to the upstream
//! given on the command line, over a pooled keep-alive `hyper-util` client, and the upstream's
//! answer is streamed back frame by frame. No JSON is parsed, nothing is routed, priced, logged or
//! recorded: it is the floor a Rust HTTP proxy costs on this machine (two hyper connections, one
//! more loopback hop), so llm-relay's figures can be read against it as well as against direct.
//!
//! Usage: `passthrough UPSTREAM_ADDR [PORT]` (e.g. `127.0.0.1:8001`; PORT 0 = any free port). Runs
//! on tokio's multi-thread runtime with its default worker count, like llm-relay. Prints
//! `listening 127.0.0.1:PORT` on stdout once bound.

use std::convert::Infallible;
use std::io::Write;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Out = BoxBody<Bytes, hyper::Error>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let upstream: &'static str = Box::leak(
        args.next()
            .expect("usage: passthrough UPSTREAM_ADDR [PORT]")
            .into_boxed_str(),
    );
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening {}", listener.local_addr()?);
    std::io::stdout().flush()?;

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);

    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let client = client.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let client = client.clone();
                async move { Ok::<_, Infallible>(forward(&client, upstream, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Send `req` to `upstream` with the same method, path, headers and body; answer the upstream's
/// response as it streams, or 502 if the upstream cannot be reached.
async fn forward(
    client: &Client<HttpConnector, Incoming>,
    upstream: &str,
    req: Request<Incoming>,
) -> Response<Out> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = match format!("http://{upstream}{path}").parse::<Uri>() {
        Ok(u) => u,
        Err(_) => return bad_gateway(),
    };
    match client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => resp.map(BodyExt::boxed),
        Err(_) => bad_gateway(),
    }
}

fn bad_gateway() -> Response<Out> {
    let mut r = Response::new(Full::new(Bytes::new()).map_err(|e| match e {}).boxed());
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r
}
