//! Embeddings end to end: OpenAI `POST /v1/embeddings` and Ollama `POST /api/embed` /
//! `/api/embeddings` through llm-relay to a fake OpenAI-compatible provider (wiremock on
//! 127.0.0.1) and to a fake Ollama server replaying a recorded `/api/embed` exchange
//! (tests/fixtures/ollama/embed.httprr); usage records and their cost checked in a redb store.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::fake_upstream::FakeUpstream;
use common::fixtures::load;
use common::relay::{Relay, config, test_key};
use common::tmp::TempDir;
use llm_relay::instances::{InstancesConfig, parse_instances};
use llm_relay::relay::AppState;
use llm_relay::store::UsageQuery;
use llm_relay::store::embedded::RedbStore;
use llm_relay::usage::UsageRecord;
use llm_relay::usage::query::Filter;
use llm_relay::usage::record::UsageSettings;
use llm_relay::usage::recorder::Recorder;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MODEL: &str = "text-embedding-3-small";

/// Two vectors, answered out of index order (the relay must put them back in order).
fn upstream_answer() -> Value {
    json!({"object": "list", "model": MODEL,
        "data": [
            {"object": "embedding", "index": 1, "embedding": [0.25, -0.125, 3.5]},
            {"object": "embedding", "index": 0, "embedding": [0.0057293195, -0.012727811, 1.0]}
        ],
        "usage": {"prompt_tokens": 12, "total_tokens": 12}})
}

struct Setup {
    relay: Relay,
    recorder: Arc<Recorder>,
    store: Arc<RedbStore>,
    fake: MockServer,
}

/// A relay whose `openai` provider is a fake answering `/v1/embeddings` with `answer` (status
/// `status`), recording into a store in `dir`.
async fn setup(dir: &TempDir, status: u16, answer: Value) -> Setup {
    let fake = MockServer::start().await;
    let mut tpl = ResponseTemplate::new(status).set_body_json(answer);
    if status == 429 {
        tpl = tpl.insert_header("retry-after", "7");
    }
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(tpl)
        .mount(&fake)
        .await;
    let store = Arc::new(RedbStore::open(&dir.0).unwrap());
    let recorder = Recorder::start(store.clone(), UsageSettings::default(), Vec::new()).unwrap();
    let state = AppState::new(config(&[("openai", format!("{}/v1", fake.uri()))]))
        .unwrap()
        .with_recorder(recorder.clone());
    Setup {
        relay: Relay::start_with_state(state).await,
        recorder,
        store,
        fake,
    }
}

impl Setup {
    /// The newest usage record (after the writer committed).
    async fn last(&self) -> UsageRecord {
        let r = self.recorder.clone();
        tokio::task::spawn_blocking(move || r.flush())
            .await
            .unwrap();
        self.store.recent(&Filter::default(), 1).unwrap().remove(0)
    }

    async fn upstream_bodies(&self) -> Vec<Value> {
        self.fake
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }
}

fn price_per_token(model: &str) -> f64 {
    llm_relay::catalog::resolve(model).unwrap().pricing().input / 1e6
}

#[tokio::test]
async fn openai_embeddings_float_and_base64_in_input_order_with_usage_and_cost() {
    let dir = TempDir::new("emb-openai");
    let s = setup(&dir, 200, upstream_answer()).await;

    let resp = s
        .relay
        .post(
            "/v1/embeddings",
            &json!({"model": MODEL, "input": ["first", "second"], "dimensions": 3}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], MODEL);
    assert_eq!(v["usage"], json!({"prompt_tokens": 12, "total_tokens": 12}));
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["object"], "embedding");
    assert_eq!(data[0]["index"], 0);
    assert_eq!(
        data[0]["embedding"],
        json!([0.0057293195, -0.012727811, 1.0])
    );
    assert_eq!(data[1]["embedding"], json!([0.25, -0.125, 3.5]));

    // The upstream got the catalog id, the inputs, the dimensions and the key; no
    // encoding_format (its default is float).
    let sent = s.upstream_bodies().await;
    assert_eq!(
        sent[0],
        json!({"model": MODEL, "input": ["first", "second"], "dimensions": 3})
    );
    let auth = s.fake.received_requests().await.unwrap()[0]
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(auth, format!("Bearer {}", test_key("openai")));

    let rec = s.last().await;
    assert_eq!(rec.provider, "openai");
    assert_eq!(rec.model, MODEL);
    assert_eq!(rec.endpoint, "/v1/embeddings");
    assert_eq!(rec.status, 200);
    assert_eq!(rec.input_tokens, 12);
    assert_eq!(rec.output_tokens, 0);
    let cost = rec.cost_usd().unwrap();
    assert!(
        (cost - 12.0 * price_per_token(MODEL)).abs() < 1e-12,
        "{cost}"
    );
    assert!(cost > 0.0);

    // base64 (what the openai Python SDK asks for by default): little-endian float32.
    let v: Value = s
        .relay
        .post(
            "/v1/embeddings",
            &json!({"model": MODEL, "input": ["one", "two"], "encoding_format": "base64"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let b64 = v["data"][0]["embedding"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(floats, vec![0.0057293195f32, -0.012727811, 1.0]);
}

#[tokio::test]
async fn wrong_kind_of_model_and_bad_input_are_400_in_each_api_format() {
    let dir = TempDir::new("emb-bad");
    let s = setup(&dir, 200, upstream_answer()).await;

    // Chat to an embedding model.
    let resp = s
        .relay
        .post(
            "/v1/chat/completions",
            &json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("embedding model"),
        "{v}"
    );
    let resp = s
        .relay
        .post(
            "/api/chat",
            &json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("embedding model"),
        "{v}"
    );

    // Embeddings from a chat model.
    let resp = s
        .relay
        .post(
            "/v1/embeddings",
            &json!({"model": "gpt-4o-mini", "input": "x"}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not an embedding model"),
        "{v}"
    );

    // Bad inputs and formats.
    for body in [
        json!({"model": MODEL, "input": []}),
        json!({"model": MODEL, "input": [{"text": "x"}]}),
        json!({"model": MODEL, "input": "x", "encoding_format": "int8"}),
        json!({"model": MODEL}),
    ] {
        let resp = s.relay.post("/v1/embeddings", &body).await;
        assert_eq!(resp.status(), 400, "{body}");
    }
    // Unknown model: 404.
    let resp = s
        .relay
        .post(
            "/v1/embeddings",
            &json!({"model": "no-such-model-x", "input": "x"}),
        )
        .await;
    assert_eq!(resp.status(), 404);
    // Empty strings are refused by the OpenAI API (CreateEmbeddingRequest).
    let resp = s
        .relay
        .post(
            "/v1/embeddings",
            &json!({"model": MODEL, "input": ["a", ""]}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    // Nothing reached the upstream.
    assert!(s.upstream_bodies().await.is_empty());
}

#[tokio::test]
async fn upstream_errors_keep_their_status_and_retry_after_and_are_recorded() {
    let dir = TempDir::new("emb-429");
    let s = setup(
        &dir,
        429,
        json!({"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
    )
    .await;
    let resp = s
        .relay
        .post("/v1/embeddings", &json!({"model": MODEL, "input": "x"}))
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Rate limit reached")
    );
    let rec = s.last().await;
    assert_eq!(rec.status, 429);
    assert_eq!(rec.endpoint, "/v1/embeddings");

    // A 200 with the wrong number of vectors is a 502, never a short answer.
    let dir = TempDir::new("emb-short");
    let s = setup(&dir, 200, upstream_answer()).await;
    let resp = s
        .relay
        .post(
            "/v1/embeddings",
            &json!({"model": MODEL, "input": "only one"}),
        )
        .await;
    assert_eq!(resp.status(), 502);
}

#[tokio::test]
async fn ollama_embed_and_legacy_embeddings_from_a_catalog_model() {
    let dir = TempDir::new("emb-ollama-api");
    let s = setup(&dir, 200, upstream_answer()).await;
    let resp = s
        .relay
        .post(
            "/api/embed",
            &json!({"model": MODEL, "input": ["first", "second"]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], MODEL);
    assert_eq!(
        v["embeddings"],
        json!([[0.0057293195, -0.012727811, 1.0], [0.25, -0.125, 3.5]])
    );
    assert_eq!(v["prompt_eval_count"], 12);
    assert!(v["total_duration"].as_u64().unwrap() > 0);
    assert_eq!(v["load_duration"], 0);
    let rec = s.last().await;
    assert_eq!(rec.endpoint, "/api/embed");
    assert_eq!(rec.input_tokens, 12);

    // An empty input loads the model: no vectors, no upstream call.
    let v: Value = s
        .relay
        .post("/api/embed", &json!({"model": MODEL, "input": []}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["embeddings"], json!([]));
    assert_eq!(s.upstream_bodies().await.len(), 1);

    // Legacy /api/embeddings: one prompt, one vector. (The fake answers two vectors whatever
    // it is asked, so this one is a 502, checked below with a one-vector fake.)
    let dir = TempDir::new("emb-legacy");
    let one = json!({"object": "list", "model": MODEL,
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.75]}],
        "usage": {"prompt_tokens": 3, "total_tokens": 3}});
    let s = setup(&dir, 200, one).await;
    let resp = s
        .relay
        .post(
            "/api/embeddings",
            &json!({"model": MODEL, "prompt": "hello"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v, json!({"embedding": [0.5, 0.75]}));
    assert_eq!(s.upstream_bodies().await[0]["input"], json!(["hello"]));
    let rec = s.last().await;
    assert_eq!(rec.endpoint, "/api/embeddings");
    assert_eq!(rec.input_tokens, 3);
}

#[tokio::test]
async fn ollama_instance_models_embed_through_api_embed() {
    let ex = load("ollama/embed.httprr").remove(0);
    let recorded = ex.response_json();
    let fake = FakeUpstream::start().await;
    fake.replay(&ex, "/api/embed").await;
    Mock::given(method("GET"))
        .and(path("/api/tags"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"models": [{
            "name": "nomic-embed-text:latest", "model": "nomic-embed-text:latest",
            "modified_at": "2025-08-20T13:40:00Z", "size": 274302450,
            "digest": "0a109f422b47e3a30ba2b10eca18548e944e8a23073ee3f3e947efcf3c45e59f",
            "details": {"family": "nomic-bert"}}]})))
        .mount(&fake.server)
        .await;
    let mut cfg = config(&[]);
    cfg.ollama = InstancesConfig {
        instances: parse_instances(&format!("local={}", fake.uri())).unwrap(),
        refresh: Duration::from_secs(60),
    };
    let relay = Relay::start_with(cfg).await;
    // Discovery runs in the background.
    let mut resp = None;
    for _ in 0..100 {
        let r = relay
            .post(
                "/api/embed",
                &json!({"model": "nomic-embed-text", "input": "Hello world", "keep_alive": "5m", "stream": true}),
            )
            .await;
        if r.status() != 404 {
            resp = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = resp.expect("instance model never resolved");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["embeddings"], recorded["embeddings"]);
    assert_eq!(v["prompt_eval_count"], recorded["prompt_eval_count"]);
    assert_eq!(v["total_duration"], recorded["total_duration"]);
    assert_eq!(v["load_duration"], recorded["load_duration"]);
    // The server got its own model name, the input as an array and the Ollama field passed on
    // (fields it does not take left out).
    let sent: Vec<Value> = fake
        .received()
        .await
        .iter()
        .filter(|r| r.url.path() == "/api/embed")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(
        sent[0],
        json!({"model": "nomic-embed-text:latest", "input": ["Hello world"], "keep_alive": "5m"})
    );
    // OpenAI clients reach it too; token arrays are refused for an Ollama server.
    let v: Value = relay
        .post(
            "/v1/embeddings",
            &json!({"model": "nomic-embed-text", "input": "Hello world"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["embedding"], recorded["embeddings"][0]);
    assert_eq!(v["usage"]["prompt_tokens"], recorded["prompt_eval_count"]);
    let resp = relay
        .post(
            "/v1/embeddings",
            &json!({"model": "nomic-embed-text", "input": [1, 2, 3]}),
        )
        .await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn an_unknown_embedding_model_is_a_404_even_with_a_default_model() {
    // The default model answers unknown chat names; for embeddings another model's vectors under
    // the asked name would corrupt a vector store, so the name must exist.
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(ResponseTemplate::new(200).set_body_json(upstream_answer()))
        .mount(&fake)
        .await;
    let mut cfg = config(&[("openai", format!("{}/v1", fake.uri()))]);
    cfg.default_model = Some(MODEL.into());
    let relay = Relay::start_with(cfg).await;
    for (p, body) in [
        (
            "/v1/embeddings",
            json!({"model": "nomic-embed-text", "input": ["a", "b"]}),
        ),
        (
            "/api/embed",
            json!({"model": "nomic-embed-text", "input": ["a", "b"]}),
        ),
        (
            "/api/embeddings",
            json!({"model": "nomic-embed-text", "prompt": "a"}),
        ),
    ] {
        let resp = relay.post(p, &body).await;
        assert_eq!(resp.status(), 404, "{p}");
    }
    assert!(fake.received_requests().await.unwrap().is_empty());
    // The default's own name still works.
    let resp = relay
        .post(
            "/v1/embeddings",
            &json!({"model": MODEL, "input": ["a", "b"]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
}

/// Requests a fake received at `p`, bodies as JSON.
async fn bodies_at(fake: &FakeUpstream, p: &str) -> Vec<Value> {
    fake.received()
        .await
        .iter()
        .filter(|r| r.url.path() == p)
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn legacy_embeddings_and_loads_reach_an_ollama_server_as_it_takes_them() {
    let fake = FakeUpstream::start().await;
    let tags = json!({"models": [{
        "name": "nomic-embed-text:latest", "model": "nomic-embed-text:latest",
        "modified_at": "2025-08-20T13:40:00Z", "size": 274302450,
        "digest": "0a109f422b47e3a30ba2b10eca18548e944e8a23073ee3f3e947efcf3c45e59f",
        "details": {"family": "nomic-bert"}}]});
    Mock::given(method("GET"))
        .and(path("/api/tags"))
        .respond_with(ResponseTemplate::new(200).set_body_json(tags))
        .mount(&fake.server)
        .await;
    // Legacy /api/embeddings: the server's own legacy endpoint (its vectors are not normalised).
    Mock::given(method("POST"))
        .and(path("/api/embeddings"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"embedding": [0.5, -1.5, 2.25]})),
        )
        .mount(&fake.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/embed"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"model": "nomic-embed-text:latest", "embeddings": [], "total_duration": 5, "load_duration": 4}),
        ))
        .mount(&fake.server)
        .await;
    let mut cfg = config(&[]);
    cfg.ollama = InstancesConfig {
        instances: parse_instances(&format!("local={}", fake.uri())).unwrap(),
        refresh: Duration::from_secs(60),
    };
    let relay = Relay::start_with(cfg).await;
    let mut v = Value::Null;
    for _ in 0..100 {
        let r = relay
            .post(
                "/api/embeddings",
                &json!({"model": "nomic-embed-text", "prompt": "Hello", "keep_alive": "1m"}),
            )
            .await;
        if r.status() != 404 {
            assert_eq!(r.status(), 200);
            v = r.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(v, json!({"embedding": [0.5, -1.5, 2.25]}));
    // An empty /api/embed loads the model on the server (what Ollama clients send to warm up).
    let resp = relay
        .post(
            "/api/embed",
            &json!({"model": "local-nomic-embed-text", "input": [], "keep_alive": 0}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        bodies_at(&fake, "/api/embeddings").await,
        vec![json!({"model": "nomic-embed-text:latest", "prompt": "Hello", "keep_alive": "1m"})]
    );
    assert_eq!(
        bodies_at(&fake, "/api/embed").await,
        vec![json!({"model": "nomic-embed-text:latest", "input": [], "keep_alive": 0})]
    );
}
