//! Streaming probe for `benches/run.sh`: what `wrk` cannot measure.
//!
//! - `stream-probe ttfb URL BODY_FILE N`: N streamed requests one after another on one keep-alive
//!   connection; prints `ttfb_p50_us= ttfb_p99_us= total_p50_us= total_p99_us= n=` where ttfb is
//!   the time from writing the request to the first byte of the response body (the first SSE
//!   event) and total the time to the end of the body.
//! - `stream-probe hold URL BODY_FILE N SECS`: opens N connections, sends the request on each and
//!   waits for each stream's first body byte; prints `open N` once all are open, holds them SECS
//!   seconds, then closes them all and exits.
//!
//! - `stream-probe paced URL BODY_FILE CONNS RATE SECS`: CONNS keep-alive connections send RATE
//!   requests per second in total, each connection on a fixed schedule, for SECS seconds; prints
//!   `p50_us= p99_us= n=` of the time to the end of each response. Unlike wrk's closed loop,
//!   latency here is not a function of throughput (no queue builds while the rate is below
//!   capacity), so "added latency at 32 connections" means what it says.
//!
//! URL is `http://HOST:PORT/PATH`; BODY_FILE the JSON request body.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use llm_relay_load::{Framing, fill, percentile, read_chunked, read_head};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_string())
}

/// `http://HOST:PORT/PATH` -> (`HOST:PORT`, `/PATH`).
fn split_url(url: &str) -> io::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("URL must start with http://"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((host.to_string(), format!("/{path}")))
}

fn request(host: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
         authorization: Bearer sk-bench\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Send one request on `sock` and read its response: (first body byte, end of body) since the
/// write, and the status line's code.
async fn one(
    sock: &mut TcpStream,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> io::Result<(Duration, Duration, u16)> {
    let start = Instant::now();
    sock.write_all(req).await?;
    let head = read_head(sock, buf)
        .await?
        .ok_or_else(|| bad("connection closed"))?;
    let status = std::str::from_utf8(&buf[..head])
        .ok()
        .and_then(|h| h.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut first = None;
    match Framing::of(&buf[..head])? {
        Framing::Chunked => {
            read_chunked(sock, buf, head, || first = Some(start.elapsed())).await?;
        }
        Framing::Length(n) => {
            fill(sock, buf, head + n.min(1)).await?;
            first = Some(start.elapsed());
            fill(sock, buf, head + n).await?;
            buf.drain(..head + n);
        }
    }
    let total = start.elapsed();
    Ok((first.unwrap_or(total), total, status))
}

async fn ttfb(url: &str, body: &[u8], n: usize) -> io::Result<()> {
    let (host, path) = split_url(url)?;
    let req = request(&host, &path, body);
    let mut sock = TcpStream::connect(&host).await?;
    sock.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(32 * 1024);
    let (mut firsts, mut totals) = (Vec::with_capacity(n), Vec::with_capacity(n));
    // Warm-up: connection pools and allocators on both sides.
    for _ in 0..(n / 10).max(10) {
        one(&mut sock, &req, &mut buf).await?;
    }
    for _ in 0..n {
        let (f, t, status) = one(&mut sock, &req, &mut buf).await?;
        if status != 200 {
            return Err(bad(&format!("status {status}")));
        }
        firsts.push(f.as_micros() as u64);
        totals.push(t.as_micros() as u64);
    }
    firsts.sort_unstable();
    totals.sort_unstable();
    println!(
        "ttfb_p50_us={} ttfb_p99_us={} total_p50_us={} total_p99_us={} n={n}",
        percentile(&firsts, 50.0),
        percentile(&firsts, 99.0),
        percentile(&totals, 50.0),
        percentile(&totals, 99.0)
    );
    Ok(())
}

/// Open one stream and wait for its first body byte; the socket is returned still open.
async fn open_one(host: String, req: std::sync::Arc<Vec<u8>>) -> io::Result<TcpStream> {
    let mut sock = TcpStream::connect(&host).await?;
    sock.set_nodelay(true)?;
    sock.write_all(&req).await?;
    let mut buf = Vec::with_capacity(1024);
    let head = read_head(&mut sock, &mut buf)
        .await?
        .ok_or_else(|| bad("connection closed"))?;
    if !buf.starts_with(b"HTTP/1.1 200") {
        return Err(bad(&String::from_utf8_lossy(&buf[..head])));
    }
    fill(&mut sock, &mut buf, head + 1).await?;
    Ok(sock)
}

async fn hold(url: &str, body: &[u8], n: usize, secs: u64) -> io::Result<()> {
    let (host, path) = split_url(url)?;
    let req = std::sync::Arc::new(request(&host, &path, body));
    let mut open = Vec::with_capacity(n);
    // Batches of 100 connects: stays well inside the listen backlog.
    for batch in (0..n).collect::<Vec<_>>().chunks(100) {
        let tasks: Vec<_> = batch
            .iter()
            .map(|_| tokio::spawn(open_one(host.clone(), req.clone())))
            .collect();
        for t in tasks {
            match t.await {
                Ok(Ok(s)) => open.push(s),
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(bad(&e.to_string())),
            }
        }
    }
    let mut out = io::stdout();
    writeln!(out, "open {}", open.len())?;
    out.flush()?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    drop(open);
    Ok(())
}

/// One connection of `paced`: a request every `interval`, starting at `offset`, until `end`.
async fn paced_conn(
    host: String,
    req: std::sync::Arc<Vec<u8>>,
    offset: Duration,
    interval: Duration,
    end: tokio::time::Instant,
) -> io::Result<Vec<u64>> {
    let mut sock = TcpStream::connect(&host).await?;
    sock.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(32 * 1024);
    // Warm-up request: the connection and the relay's upstream pool.
    one(&mut sock, &req, &mut buf).await?;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Vec::new();
    loop {
        let t = ticks.tick().await;
        if t >= end {
            return Ok(out);
        }
        let (_, total, status) = one(&mut sock, &req, &mut buf).await?;
        if status != 200 {
            return Err(bad(&format!("status {status}")));
        }
        out.push(total.as_micros() as u64);
    }
}

async fn paced(url: &str, body: &[u8], conns: usize, rate: f64, secs: u64) -> io::Result<()> {
    let (host, path) = split_url(url)?;
    let req = std::sync::Arc::new(request(&host, &path, body));
    let interval = Duration::from_secs_f64(conns as f64 / rate.max(1.0));
    let end = tokio::time::Instant::now() + Duration::from_secs(secs) + interval;
    let tasks: Vec<_> = (0..conns)
        .map(|i| {
            // Connections spread evenly over one interval.
            let offset = interval.mul_f64(i as f64 / conns as f64);
            tokio::spawn(paced_conn(host.clone(), req.clone(), offset, interval, end))
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| bad(&e.to_string()))??);
    }
    all.sort_unstable();
    println!(
        "p50_us={} p99_us={} n={}",
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        all.len()
    );
    Ok(())
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: stream-probe ttfb URL BODY_FILE N | hold URL BODY_FILE N SECS | \
                 paced URL BODY_FILE CONNS RATE SECS";
    let (Some(mode), Some(url), Some(file), Some(n)) =
        (args.first(), args.get(1), args.get(2), args.get(3))
    else {
        return Err(bad(usage));
    };
    let body = std::fs::read(file)?;
    let n: usize = n.parse().map_err(|_| bad(usage))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match mode.as_str() {
        "ttfb" => rt.block_on(ttfb(url, &body, n)),
        "hold" => {
            let secs = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(3);
            rt.block_on(hold(url, &body, n, secs))
        }
        "paced" => {
            let rate = args
                .get(4)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad(usage))?;
            let secs = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(5);
            rt.block_on(paced(url, &body, n, rate, secs))
        }
        _ => Err(bad(usage)),
    }
}
