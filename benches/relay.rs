//! Load benchmark: the overhead llm-relay adds in front of an OpenAI-compatible upstream.
//!
//! Everything runs in this one process on 127.0.0.1: a fake OpenAI upstream (poem, TCP_NODELAY),
//! llm-relay (`server::run`, provider `openai` pointed at the fake) and one reqwest client
//! (TCP_NODELAY). Each scenario is measured DIRECT (client -> fake) and THROUGH RELAY
//! (client -> llm-relay -> fake), so the difference is what the relay adds: one more loopback
//! hop, decode/encode of the request, and re-framing of the response or stream. Client, fake and
//! relay share one tokio runtime and the machine's cores, so the figures are an upper bound on
//! the overhead a dedicated relay process would add. No tracing subscriber is installed, so the
//! relay's per-request log line is not formatted or written here.
//!
//! At concurrency 1 most of the time is thread wake-ups (futex/eventfd), not relay CPU work: on
//! an idle VM, waking a halted vCPU costs tens of µs per hop, so c=1 latencies are several times
//! lower while something else keeps the CPUs busy. Compare runs on an equally idle machine.
//!
//! Run: `cargo bench --bench relay` (bounded request counts; well under a minute on 2 cores).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use llm_relay::catalog::PROVIDERS;
use llm_relay::config::{Config, DEFAULT_MAX_BODY_BYTES, ProviderConfig};
use llm_relay::relay::AppState;
use llm_relay::server::NoDelayAcceptor;
use llm_relay::store::embedded::RedbStore;
use llm_relay::store::{StoreError, UsageQuery, UsageSink};
use llm_relay::usage::UsageRecord;
use llm_relay::usage::record::UsageSettings;
use llm_relay::usage::recorder::Recorder;
use poem::web::Data;
use poem::{Body, EndpointExt, Response, Route, handler, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const WARMUP: usize = 200;
/// Rounds of the recording off/on comparison (median reported).
const ROUNDS: usize = 5;
/// Records pushed straight into the usage writer for its sustained-rate figure.
const WRITER_RECORDS: usize = 50_000;
const SEQ_REQUESTS: usize = 2_000;
const CONC_REQUESTS: usize = 10_000;
const CONCURRENCY: usize = 32;
const STREAM_REQUESTS: usize = 500;
/// `chat.completion.chunk` events per stream: a role delta, content deltas, a finish chunk.
const STREAM_CHUNKS: usize = 50;
/// Pause of the fake upstream after its first token (see `fake_chat`).
const FIRST_TOKEN_GAP: Duration = Duration::from_millis(1);

const MODEL: &str = "gpt-4o-mini";
const UPSTREAM_MODEL: &str = "gpt-4o-mini-2024-07-18";
const ID: &str = "chatcmpl-BxQk3vT9mZr2LhY7pN4aWc1sEoJd8";
const FINGERPRINT: &str = "fp_7c8e2b9d1a";
const CREATED: u64 = 1_767_225_600;

const TEXT: &str = "Rust's ownership model gives memory safety without a garbage collector: every \
    value has exactly one owner, borrows are checked at compile time, and data races are ruled \
    out by the type system. That is why teams pick it for network services, proxies, embedded \
    firmware and command-line tools, where predictable latency and a small memory footprint \
    matter more than anything else in production.";

// ---------------------------------------------------------------------------------------------
// Fake upstream

/// Pre-rendered upstream responses, shared by every request.
struct Canned {
    completion: Bytes,
    sse: Vec<Bytes>,
    /// Stream mode: `false` sends every event at once (a burst), `true` pauses
    /// [`FIRST_TOKEN_GAP`] after the first token (see [`fake_chat`]).
    paced: AtomicBool,
}

fn tokens() -> Vec<String> {
    let words: Vec<&str> = TEXT.split_whitespace().collect();
    let n = STREAM_CHUNKS - 2;
    (0..n)
        .map(|i| {
            let w = words[i % words.len()];
            if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

fn usage(completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": 42,
        "completion_tokens": completion_tokens,
        "total_tokens": 42 + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
        }
    })
}

fn chunk(delta: Value, finish: Value) -> Value {
    json!({
        "id": ID, "object": "chat.completion.chunk", "created": CREATED,
        "model": UPSTREAM_MODEL, "service_tier": "default", "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        "usage": null
    })
}

fn sse_event(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

impl Canned {
    fn new() -> Canned {
        let toks = tokens();
        let content: String = toks.concat();
        let completion = json!({
            "id": ID, "object": "chat.completion", "created": CREATED, "model": UPSTREAM_MODEL,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": null,
                            "annotations": []},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": usage(toks.len()),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT
        });
        let mut sse = vec![sse_event(&chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        ))];
        sse.extend(
            toks.iter()
                .map(|t| sse_event(&chunk(json!({"content": t}), Value::Null))),
        );
        sse.push(sse_event(&chunk(json!({}), json!("stop"))));
        sse.push(sse_event(&json!({
            "id": ID, "object": "chat.completion.chunk", "created": CREATED,
            "model": UPSTREAM_MODEL, "service_tier": "default", "system_fingerprint": FINGERPRINT,
            "choices": [], "usage": usage(toks.len())
        })));
        sse.push(Bytes::from_static(b"data: [DONE]\n\n"));
        Canned {
            completion: Bytes::from(completion.to_string()),
            sse,
            paced: AtomicBool::new(false),
        }
    }
}

/// POST /v1/chat/completions: a chat.completion, or an SSE stream when `"stream": true`, sent
/// as one body chunk per event, as OpenAI does.
///
/// Burst mode (all events ready at once) measures the full cost of re-framing 50 events. It
/// cannot measure first-token latency: the relay reads the whole stream in one go and hyper
/// coalesces its output into one write, so its first byte leaves only after the last event is
/// processed. Paced mode sends the role chunk and the first token, pauses, then the rest: the
/// first byte then shows what a client waits for the first token of a real (slow) upstream.
#[handler]
fn fake_chat(body: Bytes, canned: Data<&Arc<Canned>>) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        let ok = Ok::<Bytes, std::io::Error>;
        let mut events = canned.sse.clone();
        let body = if canned.paced.load(Ordering::Relaxed) {
            let rest = events.split_off(2);
            stream::iter(events.into_iter().map(ok))
                .chain(
                    stream::once(tokio::time::sleep(FIRST_TOKEN_GAP))
                        .flat_map(move |()| stream::iter(rest.clone().into_iter().map(ok))),
                )
                .boxed()
        } else {
            stream::iter(events.into_iter().map(ok)).boxed()
        };
        Response::builder()
            .content_type("text/event-stream; charset=utf-8")
            .header("cache-control", "no-cache")
            .body(Body::from_bytes_stream(body))
    } else {
        Response::builder()
            .content_type("application/json")
            .body(canned.completion.clone())
    }
}

async fn start_fake(canned: Arc<Canned>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = NoDelayAcceptor::new(listener).unwrap();
    let app = Route::new()
        .at("/v1/chat/completions", post(fake_chat))
        .data(canned);
    tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
    });
    format!("http://{addr}")
}

// ---------------------------------------------------------------------------------------------
// llm-relay

async fn start_relay(fake: &str, recorder: Option<Arc<Recorder>>) -> String {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        default_model: None,
        big_model: None,
        small_model: None,
        max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(30),
        stream_idle_timeout: Duration::from_secs(30),
        shutdown_grace: Duration::from_secs(10),
        log_flush: Duration::ZERO,
        providers: PROVIDERS
            .iter()
            .map(|p| {
                let ours = p.name == "openai";
                ProviderConfig {
                    id: p.id,
                    base_url: if ours {
                        format!("{fake}/v1")
                    } else {
                        p.base_url.to_string()
                    },
                    api_key: ours.then(|| "sk-bench".to_string()),
                }
            })
            .collect(),
        ollama: Default::default(),
        image_url_fetch: true,
        server_threads: 1,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut state = AppState::new(config).unwrap();
    if let Some(r) = recorder {
        state = state.with_recorder(r);
    }
    tokio::spawn(async move {
        let _ = llm_relay::server::run(listener, state, std::future::pending()).await;
    });
    format!("http://{addr}")
}

// ---------------------------------------------------------------------------------------------
// Client side

/// One target URL and request body.
#[derive(Clone)]
struct Target {
    url: String,
    body: Bytes,
}

fn openai_body(stream: bool) -> Bytes {
    let mut v = json!({
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "In two sentences, why do people pick Rust for network services?"}
        ],
        "temperature": 0.7,
        "max_tokens": 256
    });
    if stream {
        v["stream"] = json!(true);
        v["stream_options"] = json!({"include_usage": true});
    }
    Bytes::from(v.to_string())
}

fn ollama_body() -> Bytes {
    Bytes::from(
        json!({
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": "In two sentences, why do people pick Rust for network services?"}
            ],
            "options": {"temperature": 0.7, "num_predict": 256}
        })
        .to_string(),
    )
}

fn send(http: &reqwest::Client, t: &Target) -> reqwest::RequestBuilder {
    http.post(&t.url)
        .bearer_auth("sk-bench")
        .header("content-type", "application/json")
        .body(t.body.clone())
}

/// One request, body read to the end: total latency and body size.
async fn one(http: &reqwest::Client, t: &Target) -> (Duration, usize) {
    let start = Instant::now();
    let resp = send(http, t).send().await.unwrap();
    assert!(resp.status().is_success(), "{} -> {}", t.url, resp.status());
    let body = resp.bytes().await.unwrap();
    (start.elapsed(), body.len())
}

/// One streamed request: time to the first body byte and to the end of the stream.
async fn one_stream(http: &reqwest::Client, t: &Target) -> (Duration, Duration, usize) {
    let start = Instant::now();
    let mut resp = send(http, t).send().await.unwrap();
    assert!(resp.status().is_success(), "{} -> {}", t.url, resp.status());
    let mut ttfb = None;
    let mut len = 0;
    while let Some(c) = resp.chunk().await.unwrap() {
        if ttfb.is_none() && !c.is_empty() {
            ttfb = Some(start.elapsed());
        }
        len += c.len();
    }
    let total = start.elapsed();
    (ttfb.unwrap_or(total), total, len)
}

async fn sequential(http: &reqwest::Client, t: &Target, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(one(http, t).await.0);
    }
    out.sort();
    out
}

async fn sequential_stream(
    http: &reqwest::Client,
    t: &Target,
    n: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut ttfb = Vec::with_capacity(n);
    let mut total = Vec::with_capacity(n);
    for _ in 0..n {
        let (f, a, _) = one_stream(http, t).await;
        ttfb.push(f);
        total.push(a);
    }
    ttfb.sort();
    total.sort();
    (ttfb, total)
}

/// `n` requests from `workers` concurrent tasks; returns requests per second.
async fn concurrent(http: &reqwest::Client, t: &Target, n: usize, workers: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (http, t, next) = (http.clone(), t.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    one(&http, &t).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// Reporting

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[idx.clamp(1, sorted.len()) - 1]
}

fn us(d: Duration) -> u128 {
    d.as_micros()
}

fn p3(v: &[Duration]) -> String {
    format!(
        "{} / {} / {}",
        us(pct(v, 50.0)),
        us(pct(v, 90.0)),
        us(pct(v, 99.0))
    )
}

fn p2(v: &[Duration]) -> String {
    format!("{} / {}", us(pct(v, 50.0)), us(pct(v, 99.0)))
}

fn added(relay: &[Duration], direct: &[Duration]) -> String {
    let d = |p| us(pct(relay, p)) as i128 - us(pct(direct, p)) as i128;
    format!("{:+} / {:+}", d(50.0), d(99.0))
}

/// A `/proc/self/status` field in KiB (Linux; 0 elsewhere).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::to_owned))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|x| x.1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it, in
    // a debug build where figures mean nothing: only check that it starts.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benches/relay.rs: run `cargo bench --bench relay` for figures");
        return;
    }
    // On a worker, not the main thread: otherwise the client loop is a third busy thread
    // competing with the two workers on a 2-core machine (4 ms scheduler-tick stalls at p99).
    tokio::spawn(run()).await.unwrap();
}

async fn run() {
    let canned = Arc::new(Canned::new());
    let completion_len = canned.completion.len();
    let sse_len: usize = canned.sse.iter().map(Bytes::len).sum();
    let sse_events = canned.sse.len();
    let fake = start_fake(canned.clone()).await;
    let relay = start_relay(&fake, None).await;
    // A second relay with usage recording on (redb in a temp dir, batched writer thread).
    let data_dir = std::env::temp_dir().join(format!("llm-relay-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let store = Arc::new(RedbStore::open(&data_dir).unwrap());
    let recorder = Recorder::start(store.clone(), UsageSettings::default(), Vec::new()).unwrap();
    let relay_rec = start_relay(&fake, Some(recorder.clone())).await;
    // A third with recording on into a sink that discards: the request path's own cost, without
    // the writer's CPU (which shares the 2 cores with client, fake and relay here).
    let null_recorder =
        Recorder::start(Arc::new(NullSink), UsageSettings::default(), Vec::new()).unwrap();
    let relay_null = start_relay(&fake, Some(null_recorder.clone())).await;
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .unwrap();

    let chat = |base: &str, stream: bool| Target {
        url: format!("{base}/v1/chat/completions"),
        body: openai_body(stream),
    };
    let (direct, via, via_rec, via_null) = (
        chat(&fake, false),
        chat(&relay, false),
        chat(&relay_rec, false),
        chat(&relay_null, false),
    );
    let (direct_s, via_s) = (chat(&fake, true), chat(&relay, true));
    let ollama = Target {
        url: format!("{relay}/api/chat"),
        body: ollama_body(),
    };

    // Sanity: the relay really relays (a misconfigured route would benchmark error paths).
    let r: Value = send(&http, &via)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let content = r["choices"][0]["message"]["content"].as_str().unwrap_or("");
    assert!(content.starts_with("Rust's ownership"), "relay answer: {r}");
    let s = send(&http, &via_s)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        s.contains("data: [DONE]") && s.matches("chat.completion.chunk").count() >= STREAM_CHUNKS,
        "relay stream: {s}"
    );
    let o = send(&http, &ollama)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        o.lines().count() >= STREAM_CHUNKS - 2 && o.contains("\"done\":true"),
        "ollama stream: {o}"
    );

    let rss0 = status_kib("VmRSS");
    let hwm0 = status_kib("VmHWM");
    let t0 = Instant::now();

    // Warm-up: fill both connection pools (client and relay upstream) and the allocators.
    for t in [&direct, &via, &via_rec, &via_null] {
        concurrent(&http, t, WARMUP, CONCURRENCY).await;
        sequential(&http, t, WARMUP).await;
    }
    for t in [&direct_s, &via_s, &ollama] {
        sequential_stream(&http, t, WARMUP).await;
    }

    // (a) non-streaming, sequential
    let a_direct = sequential(&http, &direct, SEQ_REQUESTS).await;
    let a_relay = sequential(&http, &via, SEQ_REQUESTS).await;
    // (b) non-streaming, concurrency 32
    let b_direct = concurrent(&http, &direct, CONC_REQUESTS, CONCURRENCY).await;
    let b_relay = concurrent(&http, &via, CONC_REQUESTS, CONCURRENCY).await;
    // (b') recording off / on (redb) / on (discarding sink): ROUNDS rounds in rotating order,
    // medians, so background load on the machine hits all three alike.
    let variants = [&via, &via_rec, &via_null];
    // Steady state first: the recording relays' first thousands of requests also grow the
    // database file and the writer's allocations.
    for t in variants {
        concurrent(&http, t, CONC_REQUESTS, CONCURRENCY).await;
    }
    let mut rates: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        for k in 0..3 {
            let i = (round + k) % 3;
            rates[i].push(concurrent(&http, variants[i], CONC_REQUESTS, CONCURRENCY).await);
        }
    }
    let round_rates = rates.clone();
    let [b_off, b_on, b_path] = rates.map(|mut v| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    });
    // (c) streaming, sequential: total time with a burst upstream ...
    let (_, c_direct_t) = sequential_stream(&http, &direct_s, STREAM_REQUESTS).await;
    let (_, c_relay_t) = sequential_stream(&http, &via_s, STREAM_REQUESTS).await;
    // (d) Ollama /api/chat streaming through the relay
    let (_, d_t) = sequential_stream(&http, &ollama, STREAM_REQUESTS).await;
    // ... and first byte with a paced upstream (see `fake_chat`).
    canned.paced.store(true, Ordering::Relaxed);
    let (c_direct_f, _) = sequential_stream(&http, &direct_s, STREAM_REQUESTS).await;
    let (c_relay_f, _) = sequential_stream(&http, &via_s, STREAM_REQUESTS).await;
    let (d_f, _) = sequential_stream(&http, &ollama, STREAM_REQUESTS).await;

    let elapsed = t0.elapsed();
    let rss1 = status_kib("VmRSS");
    let hwm1 = status_kib("VmHWM");
    // Every recorded request is in the database, none dropped.
    let rec_flush = recorder.clone();
    tokio::task::spawn_blocking(move || rec_flush.flush())
        .await
        .unwrap();
    let recorded = store
        .summary(&Default::default())
        .map(|t| t.requests)
        .unwrap_or(0);
    let rec_dropped = recorder.dropped();
    // (e) writer alone: WRITER_RECORDS records pushed as fast as one thread can, then flushed.
    let (w_rate, w_dropped, w_stored) = tokio::task::spawn_blocking(writer_throughput)
        .await
        .unwrap();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let gap = FIRST_TOKEN_GAP.as_millis();

    println!();
    println!(
        "llm-relay load benchmark: nproc = {nproc} ({}), {:.1} s, client + fake upstream + relay \
         in one process on 127.0.0.1",
        cpu_model(),
        elapsed.as_secs_f64()
    );
    println!(
        "Upstream: chat.completion {completion_len} B; stream {sse_events} SSE events \
         ({STREAM_CHUNKS} chunks + usage + [DONE]), {sse_len} B. Latencies in µs; \
         \"relay adds\" = relay - direct at the same percentile."
    );
    println!();
    println!("| Scenario | Direct | Through relay | Relay adds |");
    println!("|---|---|---|---|");
    println!(
        "| Non-streaming, c=1, {SEQ_REQUESTS} req: p50 / p90 / p99 | {} | {} | {} (p50 / p99) |",
        p3(&a_direct),
        p3(&a_relay),
        added(&a_relay, &a_direct)
    );
    println!(
        "| Non-streaming, c={CONCURRENCY}, {CONC_REQUESTS} req: throughput | {b_direct:.0} req/s \
         | {b_relay:.0} req/s | {:.0}% of direct |",
        100.0 * b_relay / b_direct
    );
    println!(
        "| Non-streaming, c={CONCURRENCY}: usage recording off vs on into redb (median of \
         {ROUNDS} x {CONC_REQUESTS} req) | {b_off:.0} req/s (off) | {b_on:.0} req/s (on) | on/off \
         = {:.2}; {recorded} records stored, {rec_dropped} dropped |",
        b_on / b_off
    );
    println!(
        "| Non-streaming, c={CONCURRENCY}: recording on into a discarding sink (request path \
         only, median of {ROUNDS} x {CONC_REQUESTS} req) | {b_off:.0} req/s (off) | {b_path:.0} \
         req/s | on/off = {:.2} |",
        b_path / b_off
    );
    println!(
        "| Usage writer alone: {WRITER_RECORDS} records (2 tags each) into redb | | \
         {w_rate:.0} records/s | {w_stored} stored, {w_dropped} dropped |"
    );
    println!(
        "| Streaming, c=1, {STREAM_REQUESTS} req: total p50 / p99 | {} | {} | {} |",
        p2(&c_direct_t),
        p2(&c_relay_t),
        added(&c_relay_t, &c_direct_t)
    );
    println!(
        "| Streaming, c=1, {STREAM_REQUESTS} req: first byte p50 / p99 (upstream pauses {gap} ms \
         after token 1) | {} | {} | {} |",
        p2(&c_direct_f),
        p2(&c_relay_f),
        added(&c_relay_f, &c_direct_f)
    );
    println!(
        "| Ollama /api/chat stream, c=1, {STREAM_REQUESTS} req: total p50 / p99 | (SSE above) | {} \
         | {} |",
        p2(&d_t),
        added(&d_t, &c_direct_t)
    );
    println!(
        "| Ollama /api/chat stream: first byte p50 / p99 (paced) | (SSE above) | {} | {} |",
        p2(&d_f),
        added(&d_f, &c_direct_f)
    );
    println!(
        "| Process RSS: peak (VmHWM) before → after runs; RSS growth | | {:.1} → {:.1} MiB; \
         {:+.1} MiB | |",
        mib(hwm0),
        mib(hwm1),
        mib(rss1) - mib(rss0)
    );
    let _ = std::fs::remove_dir_all(&data_dir);
    let fmt = |v: &Vec<f64>| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!();
    println!(
        "Recording rounds, req/s: off [{}], on/redb [{}], on/discarding [{}]",
        fmt(&round_rates[0]),
        fmt(&round_rates[1]),
        fmt(&round_rates[2])
    );
    println!(
        "RSS is the whole process (client, fake upstream and relay share it): {:.1} MiB after \
         setup, {:.1} MiB after the runs.",
        mib(rss0),
        mib(rss1)
    );
}

/// The usage writer's sustained rate: records/s from the first `record` to the end of the final
/// commit, records dropped, records stored.
fn writer_throughput() -> (f64, u64, u64) {
    let dir = std::env::temp_dir().join(format!("llm-relay-bench-w-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(RedbStore::open(&dir).unwrap());
    // A channel deep enough for the whole run: the figure is the writer's rate, not the channel's.
    let recorder = Recorder::start_with_capacity(
        store.clone(),
        UsageSettings::default(),
        Vec::new(),
        WRITER_RECORDS,
    )
    .unwrap();
    let now = llm_relay::usage::recorder::now_ms();
    let models = ["gpt-4o", "gpt-4o-mini", "o3"];
    let t0 = Instant::now();
    for i in 0..WRITER_RECORDS {
        recorder.record(UsageRecord {
            time_ms: now + i as i64,
            frontend: "openai-api".into(),
            endpoint: "/v1/chat/completions".into(),
            provider: "openai".into(),
            model: models[i % 3].into(),
            model_requested: models[i % 3].into(),
            tags: vec![format!("user-{}", i % 20), "project-x".into()],
            client_ip: Some(format!("10.0.0.{}", i % 50)),
            user_agent: Some("bench/1".into()),
            status: 200,
            complete: true,
            latency_ms: 120,
            input_tokens: 1_000,
            output_tokens: 200,
            cost_pico_usd: Some(4_500_000_000),
            cost_source: llm_relay::usage::cost::CostSource::Estimated,
            ..UsageRecord::default()
        });
    }
    recorder.shutdown();
    let rate = WRITER_RECORDS as f64 / t0.elapsed().as_secs_f64();
    let stored = store
        .summary(&Default::default())
        .map(|t| t.requests)
        .unwrap_or(0);
    let dropped = recorder.dropped();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    (rate, dropped, stored)
}

/// A sink that stores nothing (request-path cost without the writer's work).
struct NullSink;

impl UsageSink for NullSink {
    fn write_batch(&self, _: &[UsageRecord]) -> Result<(), StoreError> {
        Ok(())
    }
    fn delete_before(&self, _: i64) -> Result<u64, StoreError> {
        Ok(0)
    }
}
