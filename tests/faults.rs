//! Faults an upstream or a client throws at llm-relay, through every client API (OpenAI `/v1`,
//! Ollama `/api`, Anthropic `/v1/messages`), streamed and not: each gets the right status and error format, leaves a usage
//! record saying what happened, leaves no connection or task behind (observed at the scripted
//! upstream and in the runtime's task count), and the server keeps answering.
//!
//! Anthropic errors are `{"type":"error","error":{"type","message"},"request_id"}` with
//! Anthropic's type for the status (an overloaded upstream, 503, is `overloaded_error` with 529,
//! and recorded as 529), and `event: error` once a stream has started.
//!
//! The upstream here is a raw TCP script on 127.0.0.1 (not wiremock) so that it can misbehave
//! at the byte level (never send headers, reset the connection, flood) and see when llm-relay
//! closes its side. Every wait is bounded; no assertion is on elapsed time.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::tmp::TempDir;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use common::relay::{Relay, config, first_model_of, ndjson, sse_payloads};
use llm_relay::config::Config;
use llm_relay::relay::AppState;
use llm_relay::store::UsageQuery;
use llm_relay::store::embedded::RedbStore;
use llm_relay::usage::UsageRecord;
use llm_relay::usage::query::Filter;
use llm_relay::usage::record::UsageSettings;
use llm_relay::usage::recorder::Recorder;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bound on every wait for something to happen (a record, a closed connection, a task ending).
const WAIT: Duration = Duration::from_secs(10);

/// What the scripted upstream does with each request.
#[derive(Clone, Debug)]
enum Script {
    /// Answer with this status, optional `Retry-After` and JSON body.
    Status(u16, Option<&'static str>, &'static str),
    /// Read the request, never answer (slow headers).
    Silent,
    /// 200 with this body as `application/json`.
    Json(&'static str),
    /// 200 event stream: these raw SSE bytes, then the action.
    Sse(Vec<String>, After),
}

/// What a streaming script does after its events.
#[derive(Clone, Copy, Debug, PartialEq)]
enum After {
    /// End the body normally.
    End,
    /// Reset the connection (RST).
    Reset,
    /// Send an SSE comment every 50 ms until the connection goes (a stream that never ends).
    KeepAlive,
    /// Send a text event every 50 ms until the connection goes.
    Trickle,
    /// Send 1 KiB text events as fast as the socket takes them (up to `FLOOD_BYTES`).
    Flood,
    /// Send nothing more until [`Upstream::resume`], then as `Trickle` (a stream still generating,
    /// its final usage not sent yet; the events after the pause let llm-relay see a client that
    /// left meanwhile: it notices only when it writes).
    Resume,
}

/// How much a flooding upstream tries to send: far more than any buffer on the way.
const FLOOD_BYTES: u64 = 256 * 1024 * 1024;

/// The scripted upstream and what it saw.
struct Upstream {
    base: String,
    /// Connections accepted.
    accepted: Arc<AtomicUsize>,
    /// Connections llm-relay closed (EOF or error seen on read or write).
    closed: Arc<AtomicUsize>,
    /// Body bytes written (the flood counter).
    written: Arc<AtomicU64>,
    /// Wakes one `After::Resume` stream.
    resume: Arc<tokio::sync::Notify>,
}

impl Upstream {
    async fn start(script: Script) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let resume = Arc::new(tokio::sync::Notify::new());
        let (a, c, w, r) = (
            accepted.clone(),
            closed.clone(),
            written.clone(),
            resume.clone(),
        );
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let (script, c, w, r) = (script.clone(), c.clone(), w.clone(), r.clone());
                tokio::spawn(async move {
                    if serve(sock, script, w, r).await {
                        c.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Upstream {
            base: format!("http://{addr}/v1"),
            accepted,
            closed,
            written,
            resume,
        }
    }

    /// Let one `After::Resume` stream go on (now, or when it gets there).
    fn resume(&self) {
        self.resume.notify_one();
    }

    /// Wait until llm-relay has closed `n` connections to this upstream.
    async fn wait_closed(&self, n: usize, what: &str) {
        let ok = tokio::time::timeout(WAIT, async {
            while self.closed.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            ok.is_ok(),
            "{what}: llm-relay kept the upstream connection open ({} of {} closed)",
            self.closed.load(Ordering::SeqCst),
            self.accepted.load(Ordering::SeqCst)
        );
    }
}

fn chunked(data: &str) -> Vec<u8> {
    format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()
}

/// An OpenAI chunk event with `text` (and running usage when given).
fn text_event(text: &str, usage: Option<(u64, u64)>) -> String {
    let mut ev = json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
    if let Some((p, c)) = usage {
        ev["usage"] = json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c});
    }
    format!("data: {ev}\n\n")
}

/// Read one request (head + Content-Length body). False if the peer went first.
async fn read_request(sock: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        let n = match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        buf.extend_from_slice(&tmp[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= pos + 4 + len {
                return true;
            }
        }
    }
}

/// Wait until the peer closes (EOF or error); true when it did.
async fn until_closed(sock: &mut TcpStream) -> bool {
    let mut tmp = [0u8; 1024];
    loop {
        match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
}

/// Serve one connection (requests in a loop for keep-alive); true when llm-relay closed it.
async fn serve(
    mut sock: TcpStream,
    script: Script,
    written: Arc<AtomicU64>,
    resume: Arc<tokio::sync::Notify>,
) -> bool {
    loop {
        if !read_request(&mut sock).await {
            return true;
        }
        match &script {
            Script::Status(code, retry_after, body) => {
                let ra = retry_after.map_or(String::new(), |v| format!("retry-after: {v}\r\n"));
                let resp = format!(
                    "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\n{ra}content-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if sock.write_all(resp.as_bytes()).await.is_err() {
                    return true;
                }
            }
            Script::Json(body) => {
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if sock.write_all(resp.as_bytes()).await.is_err() {
                    return true;
                }
            }
            Script::Silent => return until_closed(&mut sock).await,
            Script::Sse(events, after) => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return true;
                }
                for ev in events {
                    if sock.write_all(&chunked(ev)).await.is_err() {
                        return true;
                    }
                }
                let _ = sock.flush().await;
                match after {
                    After::End => {
                        if sock.write_all(b"0\r\n\r\n").await.is_err() {
                            return true;
                        }
                    }
                    After::Reset => {
                        // SO_LINGER 0: close() sends RST instead of FIN.
                        #[allow(deprecated)]
                        let _ = sock.set_linger(Some(Duration::ZERO));
                        drop(sock);
                        return false;
                    }
                    After::KeepAlive | After::Trickle | After::Resume => {
                        if *after == After::Resume {
                            resume.notified().await;
                        }
                        let tick = if *after == After::KeepAlive {
                            ": keep-alive\n\n".to_string()
                        } else {
                            text_event(".", None)
                        };
                        for _ in 0..2_000 {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            if sock.write_all(&chunked(&tick)).await.is_err() {
                                return true;
                            }
                        }
                        return false;
                    }
                    After::Flood => {
                        let ev = chunked(&text_event(&"x".repeat(1024), None));
                        while written.load(Ordering::SeqCst) < FLOOD_BYTES {
                            if sock.write_all(&ev).await.is_err() {
                                return true;
                            }
                            written.fetch_add(ev.len() as u64, Ordering::SeqCst);
                        }
                        return until_closed(&mut sock).await;
                    }
                }
            }
        }
    }
}

/// A relay over the `openai` provider at `base`, recording into a store in a temp dir.
struct Harness {
    relay: Relay,
    recorder: Arc<Recorder>,
    store: Arc<RedbStore>,
    /// A client that keeps no idle connection, so a finished request leaves no server task.
    http: reqwest::Client,
    _dir: TempDir,
}

impl Harness {
    async fn start(name: &str, base: &str, tune: impl FnOnce(&mut Config)) -> Harness {
        let dir = TempDir::new(name);
        let store = Arc::new(RedbStore::open(&dir.0).unwrap());
        let recorder =
            Recorder::start(store.clone(), UsageSettings::default(), Vec::new()).unwrap();
        let mut cfg = config(&[("openai", base.to_string())]);
        tune(&mut cfg);
        let state = AppState::new(cfg).unwrap().with_recorder(recorder.clone());
        Harness {
            relay: Relay::start_with_state(state).await,
            recorder,
            store,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            _dir: dir,
        }
    }

    async fn send(&self, api: Api, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.relay.url(api.path()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn chat(&self, api: Api, stream: bool) -> reqwest::Response {
        let body = json!({"model": first_model_of("openai"), "stream": stream,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "hi"}]});
        self.send(api, body.to_string()).await
    }

    /// Wait until the store holds `n` records; the newest.
    async fn record(&self, n: u64) -> UsageRecord {
        for _ in 0..100 {
            let r = self.recorder.clone();
            tokio::task::spawn_blocking(move || r.flush())
                .await
                .unwrap();
            if self.store.summary(&Filter::default()).unwrap().requests >= n {
                return self.store.recent(&Filter::default(), 1).unwrap().remove(0);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no usage record #{n} within {WAIT:?}");
    }

    /// The server still answers (no panic took the listener or the runtime down).
    async fn still_serving(&self) {
        let resp = self
            .http
            .get(self.relay.url("/health/live"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Api {
    OpenAi,
    Ollama,
    Anthropic,
}

/// The `event:` names and `data:` payloads of an SSE body, in order.
fn sse_events(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter_map(|frame| {
            let mut event = String::new();
            let mut data = None;
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(d.to_string());
                }
            }
            data.map(|d| (event, d))
        })
        .collect()
}

/// Anthropic's error `type` for an HTTP status (platform.claude.com/docs/en/api/errors).
fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

impl Api {
    fn path(self) -> &'static str {
        match self {
            Api::OpenAi => "/v1/chat/completions",
            Api::Ollama => "/api/chat",
            Api::Anthropic => "/v1/messages",
        }
    }

    /// The status this API answers for an upstream's `code` (Anthropic: 503 overloaded is 529).
    fn status_for(self, code: u16) -> u16 {
        match (self, code) {
            (Api::Anthropic, 503) => 529,
            _ => code,
        }
    }

    /// Assert `body` is this API's error object and return its message.
    fn error_message(self, body: &str) -> String {
        let v: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{self:?}: error body is not JSON ({e}): {body}"));
        match self {
            Api::OpenAi => {
                assert!(v["error"]["type"].is_string(), "{body}");
                v["error"]["message"].as_str().unwrap().to_string()
            }
            Api::Ollama => v["error"]
                .as_str()
                .unwrap_or_else(|| panic!("not an Ollama error: {body}"))
                .to_string(),
            Api::Anthropic => {
                assert_eq!(v["type"], "error", "not an Anthropic error: {body}");
                assert!(v["error"]["type"].is_string(), "{body}");
                assert!(
                    v["request_id"]
                        .as_str()
                        .is_some_and(|id| id.starts_with("req_")),
                    "{body}"
                );
                v["error"]["message"].as_str().unwrap().to_string()
            }
        }
    }

    /// Assert `body` is this API's error for `status` and return its message (Anthropic: the
    /// error `type` belongs to the status).
    fn error_for(self, status: u16, body: &str) -> String {
        let msg = self.error_message(body);
        if self == Api::Anthropic {
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(
                v["error"]["type"],
                anthropic_error_type(status),
                "status {status}: {body}"
            );
        }
        msg
    }

    /// The text streamed before the in-stream error, and the error's message (asserting the
    /// API's error framing: OpenAI error object then `[DONE]`, Ollama a final `error` line).
    fn stream_error(self, body: &str) -> (String, String) {
        match self {
            Api::OpenAi => {
                let p = sse_payloads(body);
                assert_eq!(p.last().map(String::as_str), Some("[DONE]"), "{body}");
                let err: Value = serde_json::from_str(&p[p.len() - 2]).unwrap();
                let text = p[..p.len() - 2]
                    .iter()
                    .filter_map(|x| serde_json::from_str::<Value>(x).ok())
                    .filter_map(|v| {
                        v.pointer("/choices/0/delta/content")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .collect();
                let msg = err["error"]["message"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no error object before [DONE]: {body}"));
                (text, msg.to_string())
            }
            Api::Ollama => {
                let lines = ndjson(body);
                assert!(lines.iter().all(|l| l["done"] != true), "{body}");
                let last = lines.last().unwrap();
                let text = lines[..lines.len() - 1]
                    .iter()
                    .filter_map(|l| l["message"]["content"].as_str())
                    .collect();
                let msg = last["error"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no final error line: {body}"));
                (text, msg.to_string())
            }
            Api::Anthropic => {
                let events = sse_events(body);
                let (name, data) = events.last().unwrap_or_else(|| panic!("no events: {body}"));
                assert_eq!(name, "error", "the stream ends with `event: error`: {body}");
                assert!(
                    events.iter().all(|(e, _)| e != "message_stop"),
                    "a failed stream is not stopped normally: {body}"
                );
                let err: Value = serde_json::from_str(data).unwrap();
                assert_eq!(err["type"], "error", "{body}");
                assert!(err["error"]["type"].is_string(), "{body}");
                let text = events
                    .iter()
                    .filter(|(e, _)| e == "content_block_delta")
                    .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
                    .filter_map(|v| v["delta"]["text"].as_str().map(str::to_string))
                    .collect();
                let msg = err["error"]["message"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no error message: {body}"));
                (text, msg.to_string())
            }
        }
    }
}

const APIS: [Api; 3] = [Api::OpenAi, Api::Ollama, Api::Anthropic];

/// Wait until the runtime's live task count is back to `baseline` (every connection, stream and
/// upstream task of a finished request has ended).
async fn no_leaked_tasks(baseline: usize, what: &str) {
    let metrics = tokio::runtime::Handle::current().metrics();
    let ok = tokio::time::timeout(WAIT, async {
        while metrics.num_alive_tasks() > baseline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        ok.is_ok(),
        "{what}: {} tasks alive, {baseline} before",
        metrics.num_alive_tasks()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_error_statuses_keep_status_format_and_retry_after() {
    let body = r#"{"error":{"message":"upstream says no","type":"server_error","code":null}}"#;
    let mut n = 0;
    for (code, retry_after) in [
        (500, None),
        (502, None),
        (503, Some("12")),
        (429, Some("7")),
    ] {
        let up = Upstream::start(Script::Status(code, retry_after, body)).await;
        let h = Harness::start("status", &up.base, |_| {}).await;
        for api in APIS {
            for stream in [false, true] {
                let what = format!("{code} {api:?} stream={stream}");
                let resp = h.chat(api, stream).await;
                let status = api.status_for(code);
                assert_eq!(resp.status().as_u16(), status, "{what}");
                assert_eq!(
                    resp.headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap()),
                    retry_after,
                    "{what}"
                );
                let msg = api.error_for(status, &resp.text().await.unwrap());
                assert!(msg.contains("upstream says no"), "{what}: {msg}");
                n += 1;
                // The status the client got (Anthropic: 529 for a 503).
                let r = h.record(n).await;
                assert_eq!(
                    (r.status, r.error.as_deref(), r.complete),
                    (status, Some("upstream_status"), false),
                    "{what}"
                );
            }
        }
        h.still_serving().await;
        // The record count is per harness.
        n = 0;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_past_the_read_timeout_are_504() {
    let up = Upstream::start(Script::Silent).await;
    let h = Harness::start("slowheaders", &up.base, |c| {
        c.read_timeout = Duration::from_millis(300);
    })
    .await;
    let mut n = 0;
    for api in APIS {
        for stream in [false, true] {
            let what = format!("{api:?} stream={stream}");
            let resp = h.chat(api, stream).await;
            assert_eq!(resp.status(), 504, "{what}");
            let msg = api.error_for(504, &resp.text().await.unwrap());
            assert!(
                msg.contains("did not answer within 300 ms"),
                "{what}: {msg}"
            );
            n += 1;
            let r = h.record(n).await;
            assert_eq!(
                (r.status, r.error.as_deref()),
                (504, Some("upstream_timeout")),
                "{what}"
            );
            // The timed-out request's connection is not kept.
            up.wait_closed(n as usize, &what).await;
        }
    }
    h.still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_502() {
    // A port that was just free: nothing listens there any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let h = Harness::start("refused", &format!("http://127.0.0.1:{port}/v1"), |_| {}).await;
    let mut n = 0;
    for api in APIS {
        for stream in [false, true] {
            let what = format!("{api:?} stream={stream}");
            let resp = h.chat(api, stream).await;
            assert_eq!(resp.status(), 502, "{what}");
            let msg = api.error_for(502, &resp.text().await.unwrap());
            assert!(msg.contains("cannot reach openai"), "{what}: {msg}");
            n += 1;
            let r = h.record(n).await;
            assert_eq!(
                (r.status, r.error.as_deref()),
                (502, Some("upstream_unreachable")),
                "{what}"
            );
        }
    }
    h.still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reset_mid_stream_ends_with_an_error_event_and_keeps_usage() {
    let up = Upstream::start(Script::Sse(
        vec![text_event("first", Some((11, 1)))],
        After::Reset,
    ))
    .await;
    let h = Harness::start("reset", &up.base, |_| {}).await;
    let baseline = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    for (i, api) in APIS.into_iter().enumerate() {
        let resp = h.chat(api, true).await;
        assert_eq!(
            resp.status(),
            200,
            "{api:?}: headers went with the first event"
        );
        let (text, msg) = api.stream_error(&resp.text().await.unwrap());
        assert_eq!(text, "first", "{api:?}");
        assert!(msg.contains("openai"), "{api:?}: {msg}");
        let r = h.record(i as u64 + 1).await;
        assert_eq!(
            (r.status, r.error.as_deref(), r.stream, r.complete),
            (502, Some("upstream_unreachable"), true, false),
            "{api:?}"
        );
        assert_eq!((r.input_tokens, r.output_tokens), (11, 1), "{api:?}");
        no_leaked_tasks(baseline, &format!("{api:?} reset")).await;
    }
    h.still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_upstream_json_and_sse_are_502_or_an_error_event() {
    // Not JSON where a completion is expected.
    let up = Upstream::start(Script::Json("{\"id\": \"x\", \"choices\": [")).await;
    let h = Harness::start("badjson", &up.base, |_| {}).await;
    for (i, api) in APIS.into_iter().enumerate() {
        let resp = h.chat(api, false).await;
        assert_eq!(resp.status(), 502, "{api:?}");
        let msg = api.error_for(502, &resp.text().await.unwrap());
        assert!(msg.contains("invalid response"), "{api:?}: {msg}");
        let r = h.record(i as u64 + 1).await;
        assert_eq!(r.error.as_deref(), Some("upstream_invalid"), "{api:?}");
    }

    // A stream whose first event is broken JSON: nothing committed yet, so a real 502.
    let broken = "data: {\"choices\": [{\"delta\": \n\n".to_string();
    let up = Upstream::start(Script::Sse(vec![broken.clone()], After::End)).await;
    let h = Harness::start("badsse", &up.base, |_| {}).await;
    for (i, api) in APIS.into_iter().enumerate() {
        let resp = h.chat(api, true).await;
        assert_eq!(resp.status(), 502, "{api:?}");
        let msg = api.error_for(502, &resp.text().await.unwrap());
        assert!(msg.contains("invalid response"), "{api:?}: {msg}");
        let r = h.record(i as u64 + 1).await;
        assert_eq!(r.error.as_deref(), Some("upstream_invalid"), "{api:?}");
    }

    // Broken after the first event: an in-stream error after the text so far.
    let up = Upstream::start(Script::Sse(
        vec![text_event("first", Some((5, 1))), broken],
        After::End,
    ))
    .await;
    let h = Harness::start("badsse2", &up.base, |_| {}).await;
    for (i, api) in APIS.into_iter().enumerate() {
        let resp = h.chat(api, true).await;
        assert_eq!(resp.status(), 200, "{api:?}");
        let (text, msg) = api.stream_error(&resp.text().await.unwrap());
        assert_eq!(text, "first", "{api:?}");
        assert!(msg.contains("invalid response"), "{api:?}: {msg}");
        let r = h.record(i as u64 + 1).await;
        assert_eq!(
            (r.error.as_deref(), r.input_tokens),
            (Some("upstream_invalid"), 5),
            "{api:?}"
        );
    }
    h.still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_larger_than_four_times_the_body_limit_is_502_not_buffered() {
    // MAX_BODY_BYTES 4096 -> answers are read up to 16 KiB; this one is ~20 KiB of valid JSON.
    let content = "x".repeat(20 * 1024);
    let body = format!(
        "{{\"id\":\"c\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"{content}\"}},\"finish_reason\":\"stop\"}}]}}"
    );
    let up = Upstream::start(Script::Json(Box::leak(body.into_boxed_str()))).await;
    let h = Harness::start("bigjson", &up.base, |c| c.max_body_bytes = 4096).await;
    for (i, api) in APIS.into_iter().enumerate() {
        let resp = h.chat(api, false).await;
        assert_eq!(resp.status(), 502, "{api:?}");
        let msg = api.error_for(502, &resp.text().await.unwrap());
        assert!(
            msg.contains("answer larger than 16384 bytes"),
            "{api:?}: {msg}"
        );
        let r = h.record(i as u64 + 1).await;
        assert_eq!(r.error.as_deref(), Some("upstream_invalid"), "{api:?}");
    }
    h.still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_never_ends_is_cut_by_the_idle_timeout() {
    // Keep-alive comments keep the connection busy (the read timeout never trips) but carry no
    // event: STREAM_IDLE_TIMEOUT_MS ends the stream.
    let tune = |c: &mut Config| {
        c.read_timeout = Duration::from_secs(30);
        c.stream_idle_timeout = Duration::from_millis(400);
    };
    let up = Upstream::start(Script::Sse(
        vec![text_event("first", Some((9, 1)))],
        After::KeepAlive,
    ))
    .await;
    let h = Harness::start("idle", &up.base, tune).await;
    let baseline = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    for (i, api) in APIS.into_iter().enumerate() {
        let resp = h.chat(api, true).await;
        assert_eq!(resp.status(), 200, "{api:?}");
        let (text, msg) = api.stream_error(&resp.text().await.unwrap());
        assert_eq!(text, "first", "{api:?}");
        assert!(
            msg.contains("did not answer within 400 ms"),
            "{api:?}: {msg}"
        );
        let r = h.record(i as u64 + 1).await;
        assert_eq!(
            (r.status, r.error.as_deref(), r.input_tokens),
            (504, Some("upstream_timeout"), 9),
            "{api:?}"
        );
        up.wait_closed(i + 1, &format!("{api:?}")).await;
        no_leaked_tasks(baseline, &format!("{api:?} idle stream")).await;
    }

    // Only keep-alives from the start: no event at all, so a real 504.
    let up = Upstream::start(Script::Sse(Vec::new(), After::KeepAlive)).await;
    let h = Harness::start("idle0", &up.base, tune).await;
    for (i, api) in APIS.into_iter().enumerate() {
        let resp = h.chat(api, true).await;
        assert_eq!(resp.status(), 504, "{api:?}");
        api.error_for(504, &resp.text().await.unwrap());
        assert_eq!(
            h.record(i as u64 + 1).await.error.as_deref(),
            Some("upstream_timeout")
        );
        up.wait_closed(i + 1, &format!("{api:?}")).await;
    }
    h.still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_the_upstream_request_and_records_partial_usage() {
    let up = Upstream::start(Script::Sse(
        vec![
            text_event("Hello", Some((12, 1))),
            text_event(" world", Some((12, 2))),
        ],
        After::Trickle,
    ))
    .await;
    let h = Harness::start("disconnect", &up.base, |_| {}).await;
    let baseline = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    for (i, api) in APIS.into_iter().enumerate() {
        let mut resp = h.chat(api, true).await;
        assert_eq!(resp.status(), 200);
        common::relay::read_until(&mut resp, "world", WAIT).await;
        // The client goes away mid-stream: llm-relay drops the upstream request.
        drop(resp);
        up.wait_closed(i + 1, &format!("{api:?}")).await;
        let r = h.record(i as u64 + 1).await;
        assert_eq!(
            (r.error.as_deref(), r.stream, r.complete),
            (Some("client_disconnected"), true, false),
            "{api:?}"
        );
        // The upstream's running usage covers what was streamed: nothing is estimated.
        assert_eq!(
            (r.input_tokens, r.output_tokens, r.tokens_estimated),
            (12, 2, false),
            "{api:?}"
        );
        no_leaked_tasks(baseline, &format!("{api:?} disconnect")).await;
    }
    h.still_serving().await;
}

/// OpenAI-compatible upstreams report usage only in their last chunk: a stream cut before it is
/// recorded with estimated tokens (chars / 4) for the prompt and for the text streamed so far,
/// and priced from them.
///
/// llm-relay notices the client left at its next write, so the upstream sends `.` events after
/// the client is gone (`After::Resume`); up to 3 of them streamed before the failed write do not
/// change the estimate of the 9 characters sent before (ceil(12 / 4) = ceil(9 / 4) = 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_before_the_final_usage_records_estimated_tokens() {
    use llm_relay::canonical::{ChatRequest, Message, Role};
    use llm_relay::usage::cost::CostSource;
    use llm_relay::usage::estimate;

    let sent = ["Hello", " Bob"];
    let up = Upstream::start(Script::Sse(
        sent.iter().map(|t| text_event(t, None)).collect(),
        After::Resume,
    ))
    .await;
    let h = Harness::start("disconnect-estimate", &up.base, |_| {}).await;
    // What `Harness::chat` asks, in canonical form.
    let prompt = estimate::prompt_tokens(&ChatRequest {
        messages: vec![Message::text(Role::User, "hi")],
        ..ChatRequest::default()
    });
    let output = estimate::tokens_for_chars(sent.concat().len() as u64);
    assert_eq!((prompt, output), (5, 3));
    for (i, api) in APIS.into_iter().enumerate() {
        let mut resp = h.chat(api, true).await;
        assert_eq!(resp.status(), 200);
        common::relay::read_until(&mut resp, "Bob", WAIT).await;
        drop(resp);
        up.resume();
        up.wait_closed(i + 1, &format!("{api:?}")).await;
        let r = h.record(i as u64 + 1).await;
        assert_eq!(
            (r.error.as_deref(), r.stream, r.complete),
            (Some("client_disconnected"), true, false),
            "{api:?}"
        );
        assert_eq!(
            (r.input_tokens, r.output_tokens, r.tokens_estimated),
            (prompt, output, true),
            "{api:?}"
        );
        // Priced from the estimate like any count (the catalog model has a price).
        assert_eq!(r.cost_source, CostSource::Estimated, "{api:?}");
        assert!(r.cost_pico_usd.is_some_and(|c| c > 0), "{api:?}");
    }
    h.still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_holds_back_the_upstream_instead_of_buffering() {
    let up = Upstream::start(Script::Sse(
        vec![text_event("first", Some((3, 1)))],
        After::Flood,
    ))
    .await;
    let h = Harness::start("slowreader", &up.base, |_| {}).await;
    let baseline = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let mut resp = h.chat(Api::OpenAi, true).await;
    assert_eq!(resp.status(), 200);
    // Read one chunk, then stop reading: the upstream must stall once the buffers on the way
    // (socket buffers, hyper's write buffer) are full, far below what it wants to send.
    let _ = resp.chunk().await.unwrap();
    let mut last = u64::MAX;
    let stalled = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = up.written.load(Ordering::SeqCst);
            if now == last || now >= FLOOD_BYTES {
                return now;
            }
            last = now;
        }
    })
    .await
    .expect("the upstream neither stalled nor finished");
    eprintln!(
        "slow reader: the upstream stalled after {} KiB of {} MiB",
        stalled / 1024,
        FLOOD_BYTES / (1024 * 1024)
    );
    // Loopback socket buffers are a few MiB each way (two connections); everything beyond that
    // would be llm-relay buffering for a client that does not read.
    assert!(
        stalled < 48 * 1024 * 1024,
        "llm-relay buffered {} MiB for a client that reads nothing",
        stalled / (1024 * 1024)
    );
    drop(resp);
    up.wait_closed(1, "slow reader").await;
    let r = h.record(1).await;
    assert_eq!(r.error.as_deref(), Some("client_disconnected"));
    no_leaked_tasks(baseline, "slow reader").await;
    h.still_serving().await;
}

/// A body for `api` with `content` as the user message (raw bytes, not necessarily UTF-8).
fn raw_body(content: &[u8]) -> Vec<u8> {
    let mut b = format!(
        "{{\"model\":\"{}\",\"messages\":[{{\"role\":\"user\",\"content\":\"",
        first_model_of("openai")
    )
    .into_bytes();
    b.extend_from_slice(content);
    b.extend_from_slice(b"\"}]}");
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_invalid_utf8_and_deeply_nested_bodies_are_client_errors() {
    // Any request that reaches the upstream fails the test (it answers 500).
    let up = Upstream::start(Script::Status(500, None, "{}")).await;
    let h = Harness::start("bodies", &up.base, |c| c.max_body_bytes = 256 * 1024).await;
    let mut n = 0;
    let depth = 100_000;
    // Deep tool parameters in each API's own tool shape (OpenAI and Ollama: `function.parameters`;
    // Anthropic: `input_schema`; an OpenAI-shaped tool is a 400 of its own there).
    let nested_tools = |api: Api| {
        let (open, close) = match api {
            Api::Anthropic => ("{\"name\":\"f\",\"input_schema\":", "}]}"),
            _ => (
                "{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":",
                "}}]}",
            ),
        };
        let mut s = format!(
            "{{\"model\":\"{}\",\"messages\":[{{\"role\":\"user\",\"content\":\"x\"}}],\"tools\":[{open}",
            first_model_of("openai")
        );
        s.push_str(&"{\"a\":".repeat(depth / 10));
        s.push('1');
        s.push_str(&"}".repeat(depth / 10));
        s.push_str(close);
        s.into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "oversized",
            raw_body("x".repeat(300 * 1024).as_bytes()),
            413,
            "payload_too_large",
        ),
        (
            "invalid UTF-8",
            raw_body(b"caf\xc3\x28 \xff\xfe"),
            400,
            "bad_request",
        ),
        (
            "nested arrays",
            format!("{}{}", "[".repeat(depth / 2), "]".repeat(depth / 2)).into_bytes(),
            400,
            "bad_request",
        ),
        ("nested tool parameters", Vec::new(), 400, "bad_request"),
    ];
    for (what, body, status, kind) in cases {
        for api in APIS {
            let body = if what == "nested tool parameters" {
                nested_tools(api)
            } else {
                body.clone()
            };
            let resp = h.send(api, body).await;
            assert_eq!(resp.status().as_u16(), status, "{what} {api:?}");
            let msg = api.error_for(status, &resp.text().await.unwrap());
            assert!(!msg.is_empty());
            n += 1;
            let r = h.record(n).await;
            assert_eq!(
                (r.status, r.error.as_deref()),
                (status, Some(kind)),
                "{what} {api:?}"
            );
        }
    }
    // Chunked (no Content-Length) oversized bodies are cut at the limit too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..400).map(|_| Ok(vec![b' '; 1024])).collect();
    let resp = h
        .http
        .post(h.relay.url("/api/chat"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        0,
        "nothing reached the upstream"
    );
    h.still_serving().await;
}
