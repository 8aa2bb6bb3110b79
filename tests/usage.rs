//! Usage tracking end to end: requests through llm-relay (fake upstreams on 127.0.0.1) leave
//! records in a redb database in a temp dir; attribution, partial streams, restart, retention and
//! aggregates are checked through the store's query API.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::tmp::TempDir;

use std::sync::Arc;
use std::time::Duration;

use common::relay::{Relay, config, first_model_of};
use llm_relay::relay::AppState;
use llm_relay::store::embedded::RedbStore;
use llm_relay::store::{OverrideStore, UsageQuery, UsageSink};
use llm_relay::usage::UsageRecord;
use llm_relay::usage::cost::CostSource;
use llm_relay::usage::query::{DAY_MS, Dimension, Filter, Granularity};
use llm_relay::usage::record::{UsageSettings, keys};
use llm_relay::usage::recorder::{Recorder, now_ms};
use llm_relay::usage::tags::TrustedProxy;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A relay whose `openai` provider is a fake answering every chat with fixed usage, recording
/// into a store in `dir`.
struct Setup {
    relay: Relay,
    recorder: Arc<Recorder>,
    store: Arc<RedbStore>,
    _fake: MockServer,
}

const USAGE: &str = r#"{"prompt_tokens":10000,"completion_tokens":2000,"total_tokens":12000,"prompt_tokens_details":{"cached_tokens":5000}}"#;

async fn setup(dir: &TempDir, trusted: Vec<TrustedProxy>) -> Setup {
    let fake = MockServer::start().await;
    let body = json!({"id":"c1","object":"chat.completion","created":1,"model":"m",
        "choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
        "usage": serde_json::from_str::<serde_json::Value>(USAGE).unwrap()});
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&fake)
        .await;
    let store = Arc::new(RedbStore::open(&dir.0).unwrap());
    let recorder = Recorder::start(store.clone(), UsageSettings::default(), trusted).unwrap();
    let state = AppState::new(config(&[("openai", format!("{}/v1", fake.uri()))]))
        .unwrap()
        .with_recorder(recorder.clone());
    Setup {
        relay: Relay::start_with_state(state).await,
        recorder,
        store,
        _fake: fake,
    }
}

impl Setup {
    async fn chat(&self, model: &str, headers: &[(&str, &str)]) -> u16 {
        let mut req = self
            .relay
            .http
            .post(self.relay.url("/v1/chat/completions"))
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// Wait for the writer to commit, then the newest record.
    async fn last(&self) -> UsageRecord {
        self.flush().await;
        self.store.recent(&Filter::default(), 1).unwrap().remove(0)
    }

    async fn flush(&self) {
        // Non-stream answers: the handler's RequestLog is dropped (its record sent) before the
        // response is written, so the record precedes this flush in the channel.
        let r = self.recorder.clone();
        tokio::task::spawn_blocking(move || r.flush())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn each_tag_source_in_precedence_order() {
    let dir = TempDir::new("tags");
    let s = setup(&dir, Vec::new()).await;
    let model = first_model_of("openai");
    // (model suffix, headers, tags expected)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: [Case; 6] = [
        ("", vec![], vec!["default"]),
        ("", vec![("x-api-key", "carol")], vec!["carol"]),
        (
            "",
            vec![("authorization", "Bearer bob"), ("x-api-key", "carol")],
            vec!["bob"],
        ),
        ("@sfx", vec![("authorization", "Bearer bob")], vec!["sfx"]),
        (
            "@sfx",
            vec![("x-proxy-tag", "hdr"), ("authorization", "Bearer bob")],
            vec!["hdr"],
        ),
        (
            "",
            vec![("x-proxy-tag", "Alice, project-x ,q1")],
            vec!["alice", "project-x", "q1"],
        ),
    ];
    for (suffix, headers, want) in cases {
        let asked = format!("{model}{suffix}");
        // The suffix is stripped before resolution whichever source wins: the request succeeds.
        assert_eq!(s.chat(&asked, &headers).await, 200, "{asked} {headers:?}");
        let r = s.last().await;
        assert_eq!(r.tags, want, "{asked} {headers:?}");
        assert_eq!(r.model_requested, model);
        assert_eq!(r.model, model);
        assert_eq!(r.provider, "openai");
    }
}

#[tokio::test]
async fn key_looking_bearer_is_stored_as_a_label() {
    let dir = TempDir::new("key");
    let s = setup(&dir, Vec::new()).await;
    let key = "sk-proj-secretsecretsecret";
    s.chat(
        first_model_of("openai"),
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await;
    let r = s.last().await;
    assert_eq!(r.tags.len(), 1);
    assert!(r.tags[0].starts_with("key-") && r.tags[0].len() == 12);
    s.recorder.shutdown();
    drop(s);
    let raw = std::fs::read(dir.0.join("llm-relay.redb")).unwrap();
    assert!(
        !raw.windows(key.len()).any(|w| w == key.as_bytes()),
        "key stored in clear"
    );
}

#[tokio::test]
async fn multi_tag_request_counts_once_in_totals_and_once_per_tag() {
    let dir = TempDir::new("multi");
    let s = setup(&dir, Vec::new()).await;
    let model = first_model_of("openai");
    s.chat(model, &[("x-proxy-tag", "a,b")]).await;
    s.chat(model, &[("x-proxy-tag", "b")]).await;
    s.flush().await;
    let total = s.store.summary(&Filter::default()).unwrap();
    assert_eq!(total.requests, 2);
    let by_tag = s
        .store
        .breakdown(&Filter::default(), Dimension::Tag)
        .unwrap();
    let count = |t: &str| {
        by_tag
            .iter()
            .find(|r| r.key == t)
            .map(|r| r.totals.requests)
    };
    assert_eq!((count("a"), count("b")), (Some(1), Some(2)));
    let only_a = Filter {
        tag: Some("a".into()),
        ..Filter::default()
    };
    assert_eq!(s.store.summary(&only_a).unwrap().requests, 1);
    // Aggregates agree with the sum of per-request costs.
    let records = s.store.recent(&Filter::default(), 100).unwrap();
    let sum: u64 = records.iter().map(|r| r.cost_pico_usd.unwrap()).sum();
    assert_eq!(total.cost_pico_usd, sum);
    assert_eq!(
        s.store
            .breakdown(&Filter::default(), Dimension::Model)
            .unwrap()[0]
            .totals
            .cost_pico_usd,
        sum
    );
}

#[tokio::test]
async fn record_fields_and_cost() {
    let dir = TempDir::new("fields");
    let s = setup(&dir, Vec::new()).await;
    let model = first_model_of("openai");
    s.chat(model, &[("user-agent", "test-agent/1")]).await;
    let r = s.last().await;
    assert_eq!(
        (
            r.frontend.as_ref(),
            r.endpoint.as_ref(),
            r.stream,
            r.status,
            r.complete
        ),
        ("openai-api", "/v1/chat/completions", false, 200, true)
    );
    assert_eq!(r.error, None);
    assert_eq!(r.client_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(r.user_agent.as_deref(), Some("test-agent/1"));
    assert_eq!(
        (
            r.input_tokens,
            r.output_tokens,
            r.cached_input_tokens,
            r.cache_read_tokens
        ),
        (10_000, 2_000, 5_000, 0)
    );
    assert!(r.ttft_ms.is_some());
    // The engine's figure for the catalog price of this model.
    let usage = llm_relay::canonical::Usage {
        prompt_tokens: 10_000,
        completion_tokens: 2_000,
        cache_read_tokens: 5_000,
        ..Default::default()
    };
    let want = llm_relay::usage::cost::cost(
        Some(llm_relay::catalog::resolve(model).unwrap().pricing()),
        &usage,
        Default::default(),
    );
    assert_eq!(r.cost_source, CostSource::Estimated);
    assert_eq!(r.cost_pico_usd, want.pico_usd());
    // An unknown model: recorded as an error, nothing billed.
    s.chat("no-such-model", &[]).await;
    let r = s.last().await;
    assert_eq!(
        (r.status, r.error.as_deref()),
        (404, Some("model_not_found"))
    );
    assert_eq!(r.cost_pico_usd, Some(0));
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let dir = TempDir::new("xff");
    let s = setup(&dir, Vec::new()).await;
    let xff = [("x-forwarded-for", "203.0.113.9")];
    s.chat(first_model_of("openai"), &xff).await;
    assert_eq!(s.last().await.client_ip.as_deref(), Some("127.0.0.1"));
    let dir2 = TempDir::new("xff2");
    let s2 = setup(&dir2, vec![TrustedProxy::parse("127.0.0.1").unwrap()]).await;
    s2.chat(first_model_of("openai"), &xff).await;
    assert_eq!(s2.last().await.client_ip.as_deref(), Some("203.0.113.9"));
}

fn chunk(data: &str) -> Vec<u8> {
    let event = format!("data: {data}\n\n");
    format!("{:x}\r\n{event}\r\n", event.len()).into_bytes()
}

/// An upstream that streams two chunks carrying a running usage (as Perplexity does), then
/// trickles text until the connection goes.
async fn stalling_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 65536];
        let _ = sock.read(&mut buf).await.unwrap();
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        sock.write_all(head.as_bytes()).await.unwrap();
        for (i, text) in ["Hello", " world"].iter().enumerate() {
            let ev = json!({"id":"x","object":"chat.completion.chunk","created":1,"model":"m",
                "choices":[{"index":0,"delta":{"content":text},"finish_reason":null}],
                "usage":{"prompt_tokens":12,"completion_tokens":i + 1,"total_tokens":13 + i}});
            sock.write_all(&chunk(&ev.to_string())).await.unwrap();
            sock.flush().await.unwrap();
        }
        // Keep trickling text without usage: llm-relay notices the gone client on its next write.
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let ev = json!({"id":"x","object":"chat.completion.chunk","created":1,"model":"m",
                "choices":[{"index":0,"delta":{"content":"."},"finish_reason":null}]});
            if sock.write_all(&chunk(&ev.to_string())).await.is_err() {
                break;
            }
        }
    });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn cancelled_stream_records_partial_usage() {
    let dir = TempDir::new("cancel");
    let store = Arc::new(RedbStore::open(&dir.0).unwrap());
    let recorder = Recorder::start(store.clone(), UsageSettings::default(), Vec::new()).unwrap();
    let base = stalling_upstream().await;
    let state = AppState::new(config(&[("openai", base)]))
        .unwrap()
        .with_recorder(recorder.clone());
    let relay = Relay::start_with_state(state).await;
    let mut resp = relay
        .http
        .post(relay.url("/v1/chat/completions"))
        .json(&json!({"model": first_model_of("openai"), "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    common::relay::read_until(&mut resp, "world", Duration::from_secs(5)).await;
    // The client goes away mid-stream.
    drop(resp);
    let mut found = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = recorder.clone();
        tokio::task::spawn_blocking(move || r.flush())
            .await
            .unwrap();
        if let Some(r) = store.recent(&Filter::default(), 1).unwrap().pop() {
            found = Some(r);
            break;
        }
    }
    let r = found.expect("no record after the client disconnected");
    assert!(r.stream && !r.complete);
    assert_eq!(r.error.as_deref(), Some("client_disconnected"));
    assert_eq!((r.input_tokens, r.output_tokens), (12, 2));
    // The running usage covers what was streamed: nothing estimated.
    assert!(!r.tokens_estimated);
    assert!(r.cost_pico_usd.unwrap() > 0);
    assert!(r.ttft_ms.is_some());
}

fn record(time_ms: i64, tag: &str) -> UsageRecord {
    UsageRecord {
        time_ms,
        frontend: "openai-api".into(),
        endpoint: "/v1/chat/completions".into(),
        provider: "p".into(),
        model: "m".into(),
        model_requested: "m".into(),
        tags: vec![tag.into()],
        status: 200,
        complete: true,
        input_tokens: 10,
        output_tokens: 5,
        cost_pico_usd: Some(1_000),
        cost_source: CostSource::Estimated,
        ..UsageRecord::default()
    }
}

#[test]
fn records_and_settings_survive_a_restart() {
    let dir = TempDir::new("restart");
    {
        let store = Arc::new(RedbStore::open(&dir.0).unwrap());
        store.set_setting(keys::DEFAULT_TAG, "team-x").unwrap();
        let recorder =
            Recorder::start(store.clone(), UsageSettings::default(), Vec::new()).unwrap();
        let mut r = record(now_ms(), "x");
        r.tags.clear();
        recorder.record(r);
        recorder.record(record(now_ms(), "y"));
        // Graceful shutdown flushes.
        recorder.shutdown();
    }
    let store = RedbStore::open(&dir.0).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        llm_relay::store::embedded::SCHEMA_VERSION
    );
    let all = store.recent(&Filter::default(), 10).unwrap();
    assert_eq!(all.len(), 2);
    // Untagged requests got the default tag in effect (env default here: "default").
    assert!(all.iter().any(|r| r.tags == ["default"]));
    assert_eq!(
        store.get_setting(keys::DEFAULT_TAG).unwrap().as_deref(),
        Some("team-x")
    );
    let s = UsageSettings::default().overlay(|k| store.get_setting(k).ok().flatten());
    assert_eq!(s.default_tag, "team-x");
}

#[test]
fn retention_deletes_old_raw_records_and_keeps_aggregates() {
    let dir = TempDir::new("retention");
    let store = Arc::new(RedbStore::open(&dir.0).unwrap());
    let now = now_ms();
    store
        .write_batch(&[record(now - 40 * DAY_MS, "old"), record(now, "new")])
        .unwrap();
    // A recorder with 30-day retention deletes on start.
    let settings = UsageSettings {
        retention_days: 30,
        ..UsageSettings::default()
    };
    let recorder = Recorder::start(store.clone(), settings, Vec::new()).unwrap();
    recorder.flush();
    recorder.shutdown();
    let left = store.recent(&Filter::default(), 10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].tags, ["new"]);
    // Aggregates stay: both days are still counted.
    assert_eq!(store.summary(&Filter::default()).unwrap().requests, 2);
    assert_eq!(
        store
            .series(&Filter::default(), Granularity::Day)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn writer_keeps_up_without_drops() {
    let dir = TempDir::new("writer");
    let store = Arc::new(RedbStore::open(&dir.0).unwrap());
    let recorder = Recorder::start(store.clone(), UsageSettings::default(), Vec::new()).unwrap();
    let now = now_ms();
    for i in 0..5_000 {
        recorder.record(record(now + i, if i % 2 == 0 { "a" } else { "b" }));
        if i % 1_000 == 999 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    recorder.shutdown();
    assert_eq!(recorder.dropped(), 0);
    let t = store.summary(&Filter::default()).unwrap();
    assert_eq!((t.requests, t.cost_pico_usd), (5_000, 5_000_000));
}

/// An upstream that streams one chunk with usage, then an in-stream error object.
async fn failing_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 65536];
        let _ = sock.read(&mut buf).await.unwrap();
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        sock.write_all(head.as_bytes()).await.unwrap();
        let ev = json!({"id":"x","object":"chat.completion.chunk","created":1,"model":"m",
            "choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],
            "usage":{"prompt_tokens":7,"completion_tokens":1,"total_tokens":8}});
        sock.write_all(&chunk(&ev.to_string())).await.unwrap();
        let err = json!({"error":{"message":"overloaded","code":502}});
        sock.write_all(&chunk(&err.to_string())).await.unwrap();
        sock.write_all(b"0\r\n\r\n").await.unwrap();
        sock.flush().await.unwrap();
    });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn upstream_failure_mid_stream_is_recorded_with_partial_usage() {
    let dir = TempDir::new("midfail");
    let store = Arc::new(RedbStore::open(&dir.0).unwrap());
    let recorder = Recorder::start(store.clone(), UsageSettings::default(), Vec::new()).unwrap();
    let state = AppState::new(config(&[("openai", failing_upstream().await)]))
        .unwrap()
        .with_recorder(recorder.clone());
    let relay = Relay::start_with_state(state).await;
    let body = relay
        .post(
            "/api/chat",
            &json!({"model": first_model_of("openai"), "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(body.contains("overloaded"), "{body}");
    // The stream's record leaves when the server drops the body, which may be just after the
    // client read its end: poll rather than sleep a fixed time.
    let r = wait_for_record(&recorder, &store).await;
    assert_eq!(
        (
            r.frontend.as_ref(),
            r.endpoint.as_ref(),
            r.stream,
            r.complete
        ),
        ("ollama-api", "/api/chat", true, false)
    );
    assert_eq!(r.error.as_deref(), Some("upstream_stream"));
    assert!(r.status >= 500);
    assert_eq!((r.input_tokens, r.output_tokens), (7, 1));
    assert_eq!(store.summary(&Filter::default()).unwrap().errors, 1);
}

#[tokio::test]
async fn tracking_off_records_nothing() {
    let dir = TempDir::new("off");
    let store = Arc::new(RedbStore::open(&dir.0).unwrap());
    let off = UsageSettings {
        tracking: false,
        ..UsageSettings::default()
    };
    let recorder = Recorder::start(store.clone(), off.clone(), Vec::new()).unwrap();
    assert!(!recorder.is_recording());
    recorder.record(record(now_ms(), "x"));
    // Switched on at runtime (what the admin setting will do).
    recorder.apply_settings(UsageSettings {
        tracking: true,
        ..off
    });
    assert!(recorder.is_recording());
    recorder.record(record(now_ms(), "y"));
    recorder.shutdown();
    let all = store.recent(&Filter::default(), 10).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].tags, ["y"]);
}

#[test]
fn dns_setting_fills_host_names_off_the_request_path() {
    let ip: std::net::IpAddr = [127, 0, 0, 1].into();
    let Some(name) = llm_relay::usage::dns::reverse_lookup(ip) else {
        eprintln!("no reverse name for 127.0.0.1 on this machine: nothing to check");
        return;
    };
    let dir = TempDir::new("dns");
    let store = Arc::new(RedbStore::open(&dir.0).unwrap());
    let settings = UsageSettings {
        dns: true,
        ..UsageSettings::default()
    };
    let recorder = Recorder::start(store.clone(), settings, Vec::new()).unwrap();
    let with_ip = |tag: &str| UsageRecord {
        client_ip: Some(ip.to_string()),
        ..record(now_ms(), tag)
    };
    // The first record triggers the lookup (background thread); later ones get the cached name.
    recorder.record(with_ip("first"));
    recorder.flush();
    let mut named = None;
    for i in 0..50 {
        recorder.record(with_ip(&format!("t{i}")));
        recorder.flush();
        let last = store.recent(&Filter::default(), 1).unwrap().remove(0);
        if last.client_host.is_some() {
            named = last.client_host;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    recorder.shutdown();
    assert_eq!(named.as_deref(), Some(name.as_str()));
}

/// An upstream that sends `events` (SSE `data:` payloads) as one chunk each, then repeats `tick`
/// every 100 ms until the connection goes (llm-relay notices a gone client on its next write),
/// or, without a tick, ends the body.
async fn scripted_upstream(
    events: Vec<serde_json::Value>,
    tick: Option<serde_json::Value>,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 65536];
        let _ = sock.read(&mut buf).await.unwrap();
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        sock.write_all(head.as_bytes()).await.unwrap();
        for ev in &events {
            sock.write_all(&chunk(&ev.to_string())).await.unwrap();
            sock.flush().await.unwrap();
        }
        let Some(tick) = tick else {
            sock.write_all(b"0\r\n\r\n").await.unwrap();
            sock.flush().await.unwrap();
            return;
        };
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if sock.write_all(&chunk(&tick.to_string())).await.is_err() {
                break;
            }
        }
    });
    format!("http://{addr}")
}

/// Poll (flushing the writer) until the store holds a record; the newest one.
async fn wait_for_record(recorder: &Arc<Recorder>, store: &RedbStore) -> UsageRecord {
    for _ in 0..100 {
        let r = recorder.clone();
        tokio::task::spawn_blocking(move || r.flush())
            .await
            .unwrap();
        if let Some(r) = store.recent(&Filter::default(), 1).unwrap().pop() {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no usage record within 10 s");
}

/// A relay over `provider` at `base`, recording into a store in `dir`.
async fn relay_over(
    dir: &TempDir,
    provider: &str,
    base: String,
) -> (Relay, Arc<Recorder>, Arc<RedbStore>) {
    let store = Arc::new(RedbStore::open(&dir.0).unwrap());
    let recorder = Recorder::start(store.clone(), UsageSettings::default(), Vec::new()).unwrap();
    let state = AppState::new(config(&[(provider, base)]))
        .unwrap()
        .with_recorder(recorder.clone());
    (Relay::start_with_state(state).await, recorder, store)
}

/// Stream `model` through the OpenAI API, read until `marker` shows, then hang up.
async fn stream_then_hang_up(relay: &Relay, model: &str, marker: &str) {
    let mut resp = relay
        .http
        .post(relay.url("/v1/chat/completions"))
        .json(&json!({"model": model, "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    common::relay::read_until(&mut resp, marker, Duration::from_secs(5)).await;
    drop(resp);
}

fn anthropic_start(input: u64, read: u64, write: u64) -> serde_json::Value {
    json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",
        "model":"claude","content":[],"stop_reason":null,
        "usage":{"input_tokens":input,"cache_read_input_tokens":read,
            "cache_creation_input_tokens":write,"output_tokens":1}}})
}

/// Anthropic reports input tokens at `message_start` (kept) and the real output count only in
/// `message_delta` at the end (`message_start`'s `output_tokens: 1` is provisional): a stream cut
/// before it gets its output estimated from the text streamed (chars / 4).
#[tokio::test]
async fn anthropic_stream_cut_after_message_start_keeps_its_input_tokens_and_estimates_output() {
    let dir = TempDir::new("anth-cut");
    let base = scripted_upstream(
        vec![
            anthropic_start(100, 50, 20),
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}),
        ],
        Some(json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"."}})),
    )
    .await;
    let (relay, recorder, store) = relay_over(&dir, "anthropic", base).await;
    let model = first_model_of("anthropic");
    stream_then_hang_up(&relay, model, "Hello").await;
    let r = wait_for_record(&recorder, &store).await;
    assert_eq!(r.error.as_deref(), Some("client_disconnected"));
    // "Hello", and up to 3 "." ticks streamed before llm-relay noticed the hang-up (at a
    // write): ceil(5 / 4) = ceil(8 / 4) = 2.
    let output = llm_relay::usage::estimate::tokens_for_chars(5);
    assert_eq!(output, 2);
    // Anthropic's input_tokens excludes the cache: prompt = 100 + 50 + 20.
    assert_eq!(
        (
            r.input_tokens,
            r.cache_read_tokens,
            r.cache_write_tokens,
            r.output_tokens,
            r.tokens_estimated
        ),
        (170, 50, 20, output, true)
    );
    let usage = llm_relay::canonical::Usage {
        prompt_tokens: 170,
        cache_read_tokens: 50,
        cache_write_tokens: 20,
        completion_tokens: output,
        ..Default::default()
    };
    let want = llm_relay::usage::cost::cost(
        Some(llm_relay::catalog::resolve(model).unwrap().pricing()),
        &usage,
        Default::default(),
    );
    assert_eq!(r.cost_pico_usd, want.pico_usd());
}

/// A streamed Anthropic answer whose `message_start` splits the cache writes (WIRE.md §4.5
/// shape; `message_delta` repeats the counts without the split, as recorded): an Anthropic client
/// gets the split in `message_start`, and the record keeps the 1-hour part and its price.
#[tokio::test]
async fn anthropic_stream_one_hour_cache_writes_are_recorded_and_priced() {
    let dir = TempDir::new("anth-1h");
    let mut start = anthropic_start(12, 1111, 418);
    start["message"]["usage"]["cache_creation"] =
        json!({"ephemeral_5m_input_tokens": 118, "ephemeral_1h_input_tokens": 300});
    let base = scripted_upstream(
        vec![
            start,
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}),
            json!({"type":"content_block_stop","index":0}),
            json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},
                "usage":{"input_tokens":12,"cache_creation_input_tokens":418,
                    "cache_read_input_tokens":1111,"output_tokens":30}}),
            json!({"type":"message_stop"}),
        ],
        None,
    )
    .await;
    let (relay, recorder, store) = relay_over(&dir, "anthropic", base).await;
    let model = first_model_of("anthropic");
    let resp = relay
        .http
        .post(relay.url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": model, "max_tokens": 100, "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    let start = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap())
        .find(|v| v["type"] == "message_start")
        .unwrap();
    assert_eq!(
        start["message"]["usage"]["cache_creation"],
        json!({"ephemeral_5m_input_tokens": 118, "ephemeral_1h_input_tokens": 300})
    );
    let r = wait_for_record(&recorder, &store).await;
    assert_eq!(
        (
            r.input_tokens,
            r.cache_read_tokens,
            r.cache_write_tokens,
            r.cache_write_1h_tokens,
            r.output_tokens
        ),
        (1541, 1111, 418, 300, 30)
    );
    let p = llm_relay::catalog::resolve(model).unwrap().pricing();
    let usage = llm_relay::canonical::Usage {
        prompt_tokens: 1541,
        cache_read_tokens: 1111,
        cache_write_tokens: 418,
        cache_write_1h_tokens: 300,
        completion_tokens: 30,
        ..Default::default()
    };
    let want = llm_relay::usage::cost::cost(Some(p), &usage, Default::default());
    assert_eq!(r.cost_pico_usd, want.pico_usd());
    let all_5m = llm_relay::usage::cost::cost(
        Some(p),
        &llm_relay::canonical::Usage {
            cache_write_1h_tokens: 0,
            ..usage
        },
        Default::default(),
    );
    assert!(want.usd > all_5m.usd, "{want:?} vs {all_5m:?}");
}

#[tokio::test]
async fn anthropic_error_after_message_start_is_an_http_error_with_its_input_tokens() {
    let dir = TempDir::new("anth-err");
    let base = scripted_upstream(
        vec![
            anthropic_start(100, 0, 0),
            json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
        ],
        None,
    )
    .await;
    let (relay, recorder, store) = relay_over(&dir, "anthropic", base).await;
    let resp = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": first_model_of("anthropic"), "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    // A usage-only event is not the first token: the overload still gets its own status.
    assert_eq!(resp.status(), 529);
    let r = wait_for_record(&recorder, &store).await;
    assert_eq!(r.status, 529);
    // Failed before its first event: the counts reported, nothing estimated.
    assert_eq!(
        (r.input_tokens, r.output_tokens, r.tokens_estimated),
        (100, 1, false)
    );
}

#[tokio::test]
async fn gemini_stream_cut_midway_keeps_the_usage_so_far() {
    let dir = TempDir::new("gem-cut");
    let base = scripted_upstream(
        vec![
            json!({"candidates":[{"content":{"role":"model","parts":[{"text":"Hello"}]},"index":0}],
            "usageMetadata":{"promptTokenCount":300,"cachedContentTokenCount":100,
                "candidatesTokenCount":2,"thoughtsTokenCount":5,"totalTokenCount":307}}),
        ],
        Some(json!({"candidates":[{"content":{"role":"model","parts":[{"text":"."}]},"index":0}]})),
    )
    .await;
    let (relay, recorder, store) = relay_over(&dir, "gemini", base).await;
    stream_then_hang_up(&relay, first_model_of("gemini"), "Hello").await;
    let r = wait_for_record(&recorder, &store).await;
    assert_eq!(r.error.as_deref(), Some("client_disconnected"));
    assert_eq!(
        (
            r.input_tokens,
            r.cached_input_tokens,
            r.output_tokens,
            r.reasoning_tokens
        ),
        (300, 100, 7, 5)
    );
    // Gemini's running usage is a count: kept, not estimated.
    assert!(!r.tokens_estimated);
    assert!(r.cost_pico_usd.unwrap() > 0);
}

#[tokio::test]
async fn instance_models_are_recorded_unpriced_under_the_instance_name() {
    use common::fake_upstream::FakeUpstream;
    use common::fixtures::load;
    let fake = FakeUpstream::start().await;
    fake.replay(&load("ollama/tags.yaml").remove(0), "/api/tags")
        .await;
    fake.replay(
        &load("ollama/cloud_chat_nonstream_thinking.httprr").remove(0),
        "/api/chat",
    )
    .await;
    let dir = TempDir::new("instance");
    let store = Arc::new(RedbStore::open(&dir.0).unwrap());
    let recorder = Recorder::start(store.clone(), UsageSettings::default(), Vec::new()).unwrap();
    let mut cfg = config(&[]);
    cfg.ollama = llm_relay::instances::InstancesConfig {
        instances: llm_relay::instances::parse_instances(&format!("lab={}", fake.uri())).unwrap(),
        refresh: Duration::from_secs(3600),
    };
    let state = AppState::new(cfg).unwrap().with_recorder(recorder.clone());
    let relay = Relay::start_with_state(state).await;
    let body = json!({"model": "lab-llama3.2@bob", "stream": false,
        "messages": [{"role": "user", "content": "What is the capital of France?"}]});
    // Discovery runs beside the server: retry until the instance's models are known.
    let mut status = 0;
    for _ in 0..100 {
        status = relay.post("/api/chat", &body).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
    let r2 = recorder.clone();
    tokio::task::spawn_blocking(move || r2.flush())
        .await
        .unwrap();
    let r = store.recent(&Filter::default(), 1).unwrap().remove(0);
    assert_eq!(
        (r.provider.as_ref(), r.tags.as_slice(), r.status),
        ("lab", &["bob".to_string()][..], 200)
    );
    assert_eq!((r.input_tokens, r.output_tokens), (74, 40));
    assert_eq!(
        (r.cost_pico_usd, r.cost_source),
        (None, CostSource::Unpriced)
    );
    let t = store
        .summary(&Filter {
            provider: Some("lab".into()),
            ..Filter::default()
        })
        .unwrap();
    assert_eq!((t.unpriced_requests, t.cost_pico_usd), (1, 0));
}

#[tokio::test]
async fn legacy_completions_stream_whose_first_event_is_the_finish_is_complete() {
    let dir = TempDir::new("legacy-finish");
    // An empty answer without usage: the only event is the finish.
    let base = scripted_upstream(
        vec![
            json!({"id":"x","object":"chat.completion.chunk","created":1,"model":"m",
            "choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}]}),
        ],
        None,
    )
    .await;
    let (relay, recorder, store) = relay_over(&dir, "openai", format!("{base}/v1")).await;
    let body = relay
        .post(
            "/v1/completions",
            &json!({"model": first_model_of("openai"), "prompt": "hi", "stream": true}),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(body.contains("[DONE]"), "{body}");
    let r = wait_for_record(&recorder, &store).await;
    assert_eq!((r.complete, r.error.as_deref()), (true, None));
}

/// Perplexity's per-request search fee follows the context size the request asked for
/// (`web_search_options.search_context_size`, forwarded upstream), `low` when it names none.
#[tokio::test]
async fn perplexity_search_fee_follows_the_requested_context_size() {
    let dir = TempDir::new("pplx-fee");
    let fake = MockServer::start().await;
    let usage = json!({"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110});
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "p1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": usage})))
        .mount(&fake)
        .await;
    let (relay, recorder, store) = relay_over(&dir, "perplexity", fake.uri()).await;
    let model = first_model_of("perplexity");
    let pricing = llm_relay::catalog::resolve(model).unwrap().pricing();
    assert!(pricing.search_fees.high > pricing.search_fees.low);
    let tokens = llm_relay::canonical::Usage {
        prompt_tokens: 100,
        completion_tokens: 10,
        ..Default::default()
    };
    for (options, size) in [
        (
            Some(json!({"search_context_size": "high"})),
            llm_relay::usage::cost::SearchContextSize::High,
        ),
        (None, llm_relay::usage::cost::SearchContextSize::Low),
    ] {
        let mut body = json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]});
        if let Some(o) = &options {
            body["web_search_options"] = o.clone();
        }
        let before = store.recent(&Filter::default(), 10).unwrap().len();
        let resp = relay.post("/v1/chat/completions", &body).await;
        assert_eq!(resp.status(), 200);
        let sent: serde_json::Value =
            serde_json::from_slice(&fake.received_requests().await.unwrap().last().unwrap().body)
                .unwrap();
        assert_eq!(sent.get("web_search_options"), options.as_ref());
        let mut r = None;
        for _ in 0..500 {
            let r2 = recorder.clone();
            tokio::task::spawn_blocking(move || r2.flush())
                .await
                .unwrap();
            let recent = store.recent(&Filter::default(), 10).unwrap();
            if recent.len() > before {
                r = Some(recent[0].clone());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = r.expect("no usage record within 10 s");
        let want = llm_relay::usage::cost::cost(Some(pricing), &tokens, size);
        assert_eq!(r.cost_pico_usd, want.pico_usd(), "{size:?}");
    }
}
