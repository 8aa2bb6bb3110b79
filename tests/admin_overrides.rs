//! Runtime overrides end to end: the catalog/settings/pricing admin routes
//! (`llm_relay::overrides::api::routes()`, nested under `/api` on a 127.0.0.1 listener as the
//! admin server does, without its auth) change what the API server does at once and after a
//! restart (the redb file reopened). Upstreams are wiremock fakes on 127.0.0.1.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::tmp::TempDir;

use std::sync::Arc;
use std::time::Duration;

use common::relay::{Relay, config, first_model_of};
use llm_relay::relay::AppState;
use llm_relay::store::UsageQuery;
use llm_relay::store::embedded::RedbStore;
use llm_relay::usage::query::Filter;
use llm_relay::usage::record::UsageSettings;
use llm_relay::usage::recorder::Recorder;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The admin routes of the overrides layer on a real listener.
struct Admin {
    base: String,
    http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Admin {
    async fn start(state: AppState) -> Admin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = poem::EndpointExt::data(
            poem::Route::new().nest("/api", llm_relay::overrides::api::routes()),
            state,
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
        let done = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    app,
                    async {
                        let _ = rx.await;
                    },
                    None,
                )
                .await;
        });
        Admin {
            base: format!("http://{addr}/api"),
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            done: Some(done),
        }
    }

    async fn call(&self, m: reqwest::Method, p: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self.http.request(m, format!("{}{p}", self.base));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
    async fn get(&self, p: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, p, None).await
    }
    async fn post(&self, p: &str, b: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, p, Some(b)).await
    }
    async fn put(&self, p: &str, b: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, p, Some(b)).await
    }
    async fn delete(&self, p: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, p, None).await
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(d) = self.done.take() {
            let _ = d.await;
        }
    }
}

/// An OpenAI-compatible fake answering every chat with 1,000 prompt and 500 completion tokens.
async fn fake_openai() -> MockServer {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}
        })))
        .mount(&fake)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"object": "list", "data": [{"id": "m1"}, {"id": "m2"}]})),
        )
        .mount(&fake)
        .await;
    fake
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// The model ids the fake was asked for, in order.
async fn asked(fake: &MockServer) -> Vec<String> {
    fake.received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/chat/completions"))
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["model"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The second model of `provider` in the catalog.
fn second_model_of(provider: &str) -> &'static str {
    llm_relay::catalog::ModelId::all()
        .filter(|m| m.info().provider.name() == provider)
        .nth(1)
        .unwrap()
        .info()
        .id
}

/// A relay over a store in `dir` with `openai` pointed at `fake`, and its admin routes.
async fn start(dir: &TempDir, fake: &MockServer) -> (Relay, Admin, Arc<Recorder>, Arc<RedbStore>) {
    // The previous server may still be letting go of the file: wait until it is free.
    let mut store = None;
    for _ in 0..200 {
        match RedbStore::open(&dir.0) {
            Ok(s) => {
                store = Some(Arc::new(s));
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    let store = store.expect("database still in use");
    let recorder = Recorder::start(store.clone(), UsageSettings::default(), Vec::new()).unwrap();
    let state = AppState::new(config(&[("openai", format!("{}/v1", fake.uri()))]))
        .unwrap()
        .with_recorder(recorder.clone())
        .with_override_store(store.clone(), UsageSettings::default())
        .unwrap();
    let admin = Admin::start(state.clone()).await;
    let relay = Relay::start_with_state(state).await;
    (relay, admin, recorder, store)
}

/// The newest usage record's cost, USD.
async fn last_cost(recorder: &Arc<Recorder>, store: &RedbStore) -> Option<f64> {
    let r = recorder.clone();
    tokio::task::spawn_blocking(move || r.flush())
        .await
        .unwrap();
    store.recent(&Filter::default(), 1).unwrap()[0].cost_usd()
}

fn find_model<'a>(models: &'a Value, provider: &str, id: &str) -> &'a Value {
    models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["provider"] == provider && m["id"] == id)
        .unwrap_or_else(|| panic!("no model {provider}/{id}"))
}

#[tokio::test]
async fn overrides_change_the_api_server_at_once_and_after_a_restart() {
    let dir = TempDir::new("restart");
    let fake = fake_openai().await;
    let (m1, m2) = (first_model_of("openai"), second_model_of("openai"));
    let (relay, admin, recorder, store) = start(&dir, &fake).await;

    // A custom alias resolves at once.
    let (s, a) = admin
        .post(
            "/aliases",
            json!({"alias": "team-fast", "target": format!("openai/{m1}")}),
        )
        .await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["source"], "custom");
    let r = relay.post("/v1/chat/completions", &chat("team-fast")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(asked(&fake).await.last().unwrap(), m1);

    // The compiled price, then an override price prices the next record.
    let compiled = last_cost(&recorder, &store).await.unwrap();
    let (s, m) = admin
        .put(
            &format!("/models/override?provider=openai&model={m1}"),
            json!({"pricing": {"input": 1000.0, "output": 2000.0}}),
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["overridden"], true);
    assert_eq!(m["pricing"]["input"], 1000.0);
    assert_ne!(m["compiled"]["pricing"]["input"], 1000.0);
    let r = relay.post("/v1/chat/completions", &chat(m1)).await;
    assert_eq!(r.status(), 200);
    // 1,000 x 1000 + 500 x 2000 USD per 1M tokens = 2 USD.
    let priced = last_cost(&recorder, &store).await.unwrap();
    assert!(
        (priced - 2.0).abs() < 1e-9,
        "{priced} (compiled {compiled})"
    );

    // A disabled model 404s (both APIs) and leaves the listings.
    let (s, m) = admin
        .put(
            &format!("/models/override?provider=openai&model={m2}"),
            json!({"enabled": false}),
        )
        .await;
    assert_eq!((s, &m["enabled"]), (200, &json!(false)));
    let r = relay.post("/v1/chat/completions", &chat(m2)).await;
    assert_eq!(r.status(), 404);
    let r = relay
        .post(
            "/api/chat",
            &json!({"model": m2, "messages": [], "stream": false}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let list: Value = relay.get("/v1/models").await.json().await.unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&m1) && !ids.contains(&m2));
    // The Anthropic-shaped list (same path, for Anthropic clients) agrees.
    let ids = anthropic_model_ids(&relay).await;
    assert!(
        ids.iter().any(|i| i == m1) && !ids.iter().any(|i| i == m2),
        "{ids:?}"
    );

    // Settings: the default model for unknown names.
    let (s, set) = admin
        .put(
            "/settings",
            json!({"default_model": m1, "retention_days": 30}),
        )
        .await;
    assert_eq!(s, 200, "{set}");
    let r = relay
        .post("/v1/chat/completions", &chat("no-such-model-anywhere"))
        .await;
    assert_eq!(r.status(), 200);

    // Restart: stop everything, reopen the same database file.
    drop(relay);
    admin.stop().await;
    tokio::task::spawn_blocking({
        let r = recorder.clone();
        move || r.shutdown()
    })
    .await
    .unwrap();
    drop((recorder, store));
    let (relay, admin, recorder, store) = start(&dir, &fake).await;
    let r = relay.post("/v1/chat/completions", &chat("team-fast")).await;
    assert_eq!(r.status(), 200, "alias survives a restart");
    assert_eq!(asked(&fake).await.last().unwrap(), m1);
    let cost = last_cost(&recorder, &store).await.unwrap();
    assert!(
        (cost - 2.0).abs() < 1e-9,
        "override price survives a restart: {cost}"
    );
    let r = relay.post("/v1/chat/completions", &chat(m2)).await;
    assert_eq!(r.status(), 404, "disabled model stays disabled");
    let (_, set) = admin.get("/settings").await;
    assert_eq!(
        (
            set["default_model"].as_str(),
            set["retention_days"].as_u64()
        ),
        (Some(m1), Some(30))
    );
    let r = relay
        .post("/v1/chat/completions", &chat("no-such-model-anywhere"))
        .await;
    assert_eq!(r.status(), 200);

    // Clearing the override restores the compiled values (and price).
    let (s, m) = admin
        .delete(&format!("/models/override?provider=openai&model={m1}"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(m["overridden"], false);
    assert_eq!(m["pricing"], m["compiled"]["pricing"]);
    relay.post("/v1/chat/completions", &chat(m1)).await;
    let cost = last_cost(&recorder, &store).await.unwrap();
    assert!(
        (cost - compiled).abs() < 1e-12,
        "{cost} vs compiled {compiled}"
    );
    admin.stop().await;
}

#[tokio::test]
async fn custom_openai_compatible_provider_and_model_route_to_their_upstream() {
    let dir = TempDir::new("custom");
    let fake = fake_openai().await;
    let other = fake_openai().await;
    let (relay, admin, recorder, store) = start(&dir, &other).await;
    // The key is read from the variable the provider names (cargo sets CARGO_PKG_NAME for
    // tests); the API shows only the name.
    let key = std::env::var("CARGO_PKG_NAME").unwrap();
    let (s, p) = admin
        .post(
            "/providers",
            json!({"id": "local-ai", "family": "openai", "base_url": format!("{}/v1/", fake.uri()),
                   "api_key_env": "CARGO_PKG_NAME"}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["source"], "custom");
    assert_eq!(p["key_configured"], true);
    assert!(
        !p.to_string().contains(&format!("\"{key}\"")),
        "key never returned: {p}"
    );
    let (s, m) = admin
        .post(
            "/models",
            json!({"provider": "local-ai", "id": "house-model", "context_length": 8192,
                   "pricing": {"input": 4.0, "output": 8.0}}),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(m["source"], "custom");

    for name in ["local-ai/house-model", "house-model"] {
        let r = relay.post("/v1/chat/completions", &chat(name)).await;
        assert_eq!(r.status(), 200, "{name}");
    }
    let got = fake.received_requests().await.unwrap();
    let chats: Vec<_> = got
        .iter()
        .filter(|r| r.url.path() == "/v1/chat/completions")
        .collect();
    assert_eq!(chats.len(), 2);
    assert_eq!(
        chats[0]
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap(),
        format!("Bearer {key}")
    );
    assert_eq!(asked(&fake).await, ["house-model", "house-model"]);
    // Priced by the custom model's prices: 1,000 x 4 + 500 x 8 per 1M = 0.008 USD.
    let cost = last_cost(&recorder, &store).await.unwrap();
    assert!((cost - 0.008).abs() < 1e-12, "{cost}");
    let rec = store.recent(&Filter::default(), 1).unwrap().remove(0);
    assert_eq!(
        (rec.provider.as_ref(), rec.model.as_ref()),
        ("local-ai", "house-model")
    );
    // Listed by both APIs.
    let list: Value = relay.get("/v1/models").await.json().await.unwrap();
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "local-ai/house-model")
    );
    assert!(
        anthropic_model_ids(&relay)
            .await
            .contains(&"local-ai/house-model".to_string())
    );
    let tags: Value = relay.get("/api/tags").await.json().await.unwrap();
    assert!(
        tags["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "local-ai/house-model:latest")
    );
    // Ollama clients reach it too.
    let r = relay
        .post(
            "/api/chat",
            &json!({"model": "local-ai/house-model", "stream": false,
                                   "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);

    // Test connection lists the upstream's models with the key.
    let (s, t) = admin.post("/providers/local-ai/test", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(
        (
            t["ok"].as_bool(),
            t["status"].as_u64(),
            t["models"].as_u64()
        ),
        (Some(true), Some(200), Some(2))
    );

    // Disabled provider: its models 404 at once.
    let (s, p) = admin
        .put("/providers/local-ai", json!({"enabled": false}))
        .await;
    assert_eq!((s, &p["enabled"]), (200, &json!(false)));
    let r = relay
        .post("/v1/chat/completions", &chat("local-ai/house-model"))
        .await;
    assert_eq!(r.status(), 404);
    admin
        .put("/providers/local-ai", json!({"enabled": true}))
        .await;
    // An unset key variable: 503 naming the variable, not a request without a key.
    let (s, _) = admin
        .put(
            "/providers/local-ai",
            json!({"api_key_env": "LLM_RELAY_TEST_UNSET_VARIABLE"}),
        )
        .await;
    assert_eq!(s, 200);
    let r = relay
        .post("/v1/chat/completions", &chat("local-ai/house-model"))
        .await;
    assert_eq!(r.status(), 503);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("LLM_RELAY_TEST_UNSET_VARIABLE")
    );

    // Deleting the provider takes its models with it.
    let (s, _) = admin.delete("/providers/local-ai").await;
    assert_eq!(s, 204);
    let (_, models) = admin.get("/models").await;
    assert!(
        !models["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["provider"] == "local-ai")
    );
    let r = relay
        .post("/v1/chat/completions", &chat("local-ai/house-model"))
        .await;
    assert_eq!(r.status(), 404);
    admin.stop().await;
}

#[tokio::test]
async fn crud_paths_and_validation_errors() {
    let dir = TempDir::new("crud");
    let fake = fake_openai().await;
    let (relay, admin, _recorder, _store) = start(&dir, &fake).await;
    let m1 = first_model_of("openai");
    let err_type = |v: &Value| v["error"]["type"].as_str().unwrap_or("").to_string();

    // Providers.
    let (s, list) = admin.get("/providers").await;
    assert_eq!(s, 200);
    let openai = list["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "openai")
        .unwrap();
    assert_eq!(
        (&openai["source"], &openai["key_configured"]),
        (&json!("builtin"), &json!(true))
    );
    assert!(openai["model_count"].as_u64().unwrap() > 1);
    for (body, status) in [
        (
            json!({"id": "Bad Id", "family": "openai", "base_url": "http://x"}),
            400,
        ),
        (
            json!({"id": "openai", "family": "openai", "base_url": "http://x"}),
            409,
        ),
        (
            json!({"id": "ok", "family": "openai", "base_url": "ftp://x"}),
            400,
        ),
        (
            json!({"id": "ok", "family": "openai", "base_url": "http://x", "api_key_env": "sk-live-123"}),
            400,
        ),
        (
            json!({"id": "ok", "family": "cohere", "base_url": "http://x"}),
            400,
        ),
        (
            json!({"id": "ok", "family": "openai", "base_url": "http://x", "api_key": "k"}),
            400,
        ),
    ] {
        let (s, e) = admin.post("/providers", body.clone()).await;
        assert_eq!(s, status, "{body} -> {e}");
        assert!(!err_type(&e).is_empty(), "{e}");
    }
    let (s, _) = admin
        .post(
            "/providers",
            json!({"id": "ok", "family": "anthropic", "base_url": "http://127.0.0.1:9"}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = admin
        .post(
            "/providers",
            json!({"id": "ok", "family": "anthropic", "base_url": "http://127.0.0.1:9"}),
        )
        .await;
    assert_eq!(s, 409);
    let (s, p) = admin
        .put("/providers/ok", json!({"base_url": "http://127.0.0.1:10/"}))
        .await;
    assert_eq!(
        (s, p["base_url"].as_str()),
        (200, Some("http://127.0.0.1:10"))
    );
    assert_eq!(
        admin
            .put("/providers/openai", json!({"base_url": "http://x"}))
            .await
            .0,
        400
    );
    assert_eq!(
        admin
            .put("/providers/nope", json!({"enabled": false}))
            .await
            .0,
        404
    );
    assert_eq!(admin.delete("/providers/openai").await.0, 400);
    assert_eq!(admin.delete("/providers/nope").await.0, 404);
    assert_eq!(admin.post("/providers/nope/test", json!({})).await.0, 404);
    // A builtin provider disabled: its models 404; enabled again: they answer.
    assert_eq!(
        admin
            .put("/providers/openai", json!({"enabled": false}))
            .await
            .0,
        200
    );
    assert_eq!(
        relay.post("/v1/chat/completions", &chat(m1)).await.status(),
        404
    );
    assert_eq!(
        admin
            .put("/providers/openai", json!({"enabled": true}))
            .await
            .0,
        200
    );
    assert_eq!(
        relay.post("/v1/chat/completions", &chat(m1)).await.status(),
        200
    );
    assert_eq!(admin.delete("/providers/ok").await.0, 204);

    // Models.
    let (s, all) = admin.get("/models").await;
    assert_eq!(s, 200);
    assert!(all["models"].as_array().unwrap().len() >= llm_relay::catalog::MODELS.len());
    let compiled = find_model(&all, "openai", m1).clone();
    assert_eq!(compiled["source"], "builtin");
    assert_eq!(compiled["pricing"], compiled["compiled"]["pricing"]);
    for (body, status) in [
        (json!({"provider": "nope", "id": "x"}), 400),
        (json!({"provider": "openai", "id": m1}), 409),
        (
            json!({"provider": "openai", "id": "x", "pricing": {"input": -1.0, "output": 1.0}}),
            400,
        ),
        (
            json!({"provider": "openai", "id": "x", "pricing": {"input": 1.0}}),
            400,
        ),
        (
            json!({"provider": "openai", "id": "x",
                   "pricing": {"input": 1.0, "output": 1.0, "cache_write_1h": -1.0}}),
            400,
        ),
        (json!({"provider": "openai", "id": ""}), 400),
    ] {
        let (s, e) = admin.post("/models", body.clone()).await;
        assert_eq!(s, status, "{body} -> {e}");
    }
    let (s, m) = admin
        .post(
            "/models",
            json!({"provider": "openai", "id": "brand-new-model", "capabilities": {"tools": true}}),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(
        (&m["pricing"], &m["capabilities"]["tools"]),
        (&Value::Null, &json!(true))
    );
    assert_eq!(
        admin
            .post(
                "/models",
                json!({"provider": "openai", "id": "brand-new-model"})
            )
            .await
            .0,
        409
    );
    let (s, m) = admin
        .put(
            "/models/override?provider=openai&model=brand-new-model",
            json!({"pricing": {"input": 1.0, "output": 2.0, "cache_write_1h": 2.5},
                   "description": "house"}),
        )
        .await;
    assert_eq!(
        (s, &m["description"], &m["pricing"]["output"]),
        (200, &json!("house"), &json!(2.0))
    );
    // 1-hour cache writes take their own rate like the others.
    assert_eq!(m["pricing"]["cache_write_1h"], 2.5);
    assert_eq!(
        relay
            .post("/v1/chat/completions", &chat("brand-new-model"))
            .await
            .status(),
        200
    );
    assert_eq!(asked(&fake).await.last().unwrap(), "brand-new-model");
    assert_eq!(
        admin
            .delete("/models/override?provider=openai&model=brand-new-model")
            .await
            .0,
        400
    );
    assert_eq!(
        admin
            .delete("/models/custom?provider=openai&model=brand-new-model")
            .await
            .0,
        204
    );
    assert_eq!(
        admin
            .delete("/models/custom?provider=openai&model=brand-new-model")
            .await
            .0,
        404
    );
    assert_eq!(
        admin
            .delete(&format!("/models/custom?provider=openai&model={m1}"))
            .await
            .0,
        400
    );
    assert_eq!(
        admin
            .put(
                "/models/override?provider=openai&model=nope",
                json!({"enabled": false})
            )
            .await
            .0,
        404
    );
    let (s, e) = admin
        .put(
            "/models/override?provider=openai",
            json!({"enabled": false}),
        )
        .await;
    assert_eq!((s, e["error"]["type"].as_str()), (400, Some("bad_request")));
    assert_eq!(
        admin
            .put(
                &format!("/models/override?provider=openai&model={m1}"),
                json!({"pricing": {"input": "cheap"}})
            )
            .await
            .0,
        400
    );
    let (s, m) = admin
        .put(
            &format!("/models/override?provider=openai&model={m1}"),
            json!({"context_length": 1234, "capabilities": {"vision": true}}),
        )
        .await;
    assert_eq!(
        (s, &m["context_length"], &m["overridden"]),
        (200, &json!(1234), &json!(true))
    );
    assert_eq!(m["compiled"]["context_length"], compiled["context_length"]);
    // Ollama clients see the overridden context length.
    let show: Value = relay
        .post("/api/show", &json!({"model": m1}))
        .await
        .json()
        .await
        .unwrap();
    let ctx: Vec<&Value> = show["model_info"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.ends_with(".context_length"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(ctx, [&json!(1234)]);
    let (_, m) = admin
        .delete(&format!("/models/override?provider=openai&model={m1}"))
        .await;
    assert_eq!(m["context_length"], compiled["context_length"]);
    assert_eq!(m["capabilities"], compiled["capabilities"]);

    // Aliases.
    let (s, al) = admin.get("/aliases").await;
    assert_eq!(s, 200);
    let builtin = al["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["source"] == "builtin")
        .cloned();
    for (body, status) in [
        (
            json!({"alias": "has space", "target": format!("openai/{m1}")}),
            400,
        ),
        (json!({"alias": "ok-alias", "target": "nope/nothing"}), 400),
    ] {
        assert_eq!(admin.post("/aliases", body).await.0, status);
    }
    assert_eq!(
        admin
            .post("/aliases", json!({"alias": "Mine", "target": m1}))
            .await
            .0,
        201
    );
    assert_eq!(
        admin
            .post("/aliases", json!({"alias": "mine", "target": m1}))
            .await
            .0,
        409
    );
    let (s, a) = admin.put("/aliases/mine", json!({"enabled": false})).await;
    assert_eq!((s, &a["enabled"]), (200, &json!(false)));
    assert_eq!(
        relay
            .post("/v1/chat/completions", &chat("mine"))
            .await
            .status(),
        404
    );
    assert_eq!(
        admin
            .put("/aliases/nope", json!({"enabled": false}))
            .await
            .0,
        404
    );
    assert_eq!(admin.delete("/aliases/mine").await.0, 204);
    assert_eq!(admin.delete("/aliases/mine").await.0, 404);
    if let Some(b) = builtin {
        let alias = b["alias"].as_str().unwrap();
        let target_model = b["target"]
            .as_str()
            .unwrap()
            .split_once('/')
            .unwrap()
            .0
            .to_string();
        assert_eq!(
            admin
                .put(&format!("/aliases/{alias}"), json!({"target": m1}))
                .await
                .0,
            400
        );
        assert_eq!(admin.delete(&format!("/aliases/{alias}")).await.0, 400);
        let (s, a) = admin
            .put(&format!("/aliases/{alias}"), json!({"enabled": false}))
            .await;
        assert_eq!((s, &a["enabled"]), (200, &json!(false)), "{target_model}");
        let (_, al) = admin.get("/aliases").await;
        assert!(
            al["aliases"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["alias"] == alias && a["enabled"] == false)
        );
        // The disabled compiled alias no longer resolves (its provider may be unkeyed here:
        // 404 either way, never the model it named).
        let r = relay.post("/v1/chat/completions", &chat(alias)).await;
        assert_eq!(r.status(), 404);
        // A custom alias may shadow it.
        assert_eq!(
            admin
                .post("/aliases", json!({"alias": alias, "target": m1}))
                .await
                .0,
            201
        );
        assert_eq!(
            relay
                .post("/v1/chat/completions", &chat(alias))
                .await
                .status(),
            200
        );
    }

    // Settings: every field, never the admin password hash; bad values 400.
    let (s, set) = admin.get("/settings").await;
    assert_eq!(s, 200);
    for k in [
        "default_model",
        "default_tag",
        "usage_tracking",
        "retention_days",
        "dns_resolution",
        "big_model",
        "small_model",
    ] {
        assert!(set.get(k).is_some(), "{k} in {set}");
    }
    assert!(!set.to_string().contains("password"));
    assert_eq!(
        admin
            .put("/settings", json!({"default_model": "no-such-model"}))
            .await
            .0,
        400
    );
    assert_eq!(
        admin
            .put("/settings", json!({"big_model": "no-such-model"}))
            .await
            .0,
        400
    );
    assert_eq!(
        admin
            .put("/settings", json!({"retention_days": -1}))
            .await
            .0,
        400
    );
    assert_eq!(
        admin
            .put("/settings", json!({"default_tag": " , "}))
            .await
            .0,
        400
    );
    assert_eq!(
        admin.put("/settings", json!({"password": "x"})).await.0,
        400
    );
    let (s, set) = admin
        .put("/settings", json!({"default_tag": "Team-A", "usage_tracking": false, "dns_resolution": true, "small_model": m1}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        (
            &set["default_tag"],
            &set["usage_tracking"],
            &set["dns_resolution"],
            &set["small_model"]
        ),
        (&json!("team-a"), &json!(false), &json!(true), &json!(m1))
    );

    // Instances: none configured here.
    let (s, i) = admin.get("/instances").await;
    assert_eq!((s, i["instances"].as_array().map(Vec::len)), (200, Some(0)));
    admin.stop().await;
}

#[tokio::test]
async fn custom_ollama_provider_is_discovered_and_listed() {
    let dir = TempDir::new("ollama");
    let fake = fake_openai().await;
    let ollama = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/tags"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"models": [
            {"name": "house-llm:latest", "model": "house-llm:latest", "size": 42,
             "details": {"family": "llama", "parameter_size": "3B"}}]})))
        .mount(&ollama)
        .await;
    let (relay, admin, _r, _s) = start(&dir, &fake).await;
    let (s, p) = admin
        .post(
            "/providers",
            json!({"id": "lab", "family": "ollama", "base_url": ollama.uri()}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    // Discovery runs in the background: wait for the instance's models.
    let mut inst = Value::Null;
    for _ in 0..200 {
        let (_, v) = admin.get("/instances").await;
        if v["instances"][0]["models"]
            .as_array()
            .is_some_and(|m| !m.is_empty())
        {
            inst = v["instances"][0].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        (&inst["name"], &inst["source"], &inst["reachable"]),
        (&json!("lab"), &json!("custom"), &json!(true))
    );
    assert_eq!(
        inst["models"][0],
        json!({"name": "house-llm:latest", "size": 42, "family": "llama", "parameter_size": "3B"})
    );
    let tags: Value = relay.get("/api/tags").await.json().await.unwrap();
    assert!(
        tags["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "lab-house-llm:latest")
    );
    let (_, models) = admin.get("/models").await;
    assert_eq!(
        find_model(&models, "lab", "house-llm:latest")["source"],
        "discovered"
    );
    // A discovered model disabled: 404; only `enabled` can change.
    assert_eq!(
        admin
            .put(
                "/models/override?provider=lab&model=house-llm:latest",
                json!({"description": "x"})
            )
            .await
            .0,
        400
    );
    assert_eq!(
        admin
            .put(
                "/models/override?provider=lab&model=house-llm:latest",
                json!({"enabled": false})
            )
            .await
            .0,
        200
    );
    let r = relay.post("/api/chat", &json!({"model": "lab-house-llm", "messages": [{"role": "user", "content": "hi"}], "stream": false})).await;
    assert_eq!(r.status(), 404);
    // Nor can it be pulled onto that server through llm-relay.
    Mock::given(method("POST"))
        .and(path("/api/pull"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "success"})))
        .mount(&ollama)
        .await;
    let r = relay
        .post(
            "/api/pull",
            &json!({"model": "lab-house-llm", "stream": false}),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(hits_at(&ollama, "/api/pull").await, 0);
    assert_eq!(
        admin
            .put(
                "/models/override?provider=lab&model=house-llm:latest",
                json!({"enabled": true})
            )
            .await
            .0,
        200
    );
    let (_, models) = admin.get("/models").await;
    let m = find_model(&models, "lab", "house-llm:latest");
    assert_eq!(
        (&m["enabled"], &m["overridden"]),
        (&json!(true), &json!(false))
    );
    // Enabled again: the pull reaches the server.
    let r = relay
        .post(
            "/api/pull",
            &json!({"model": "lab-house-llm", "stream": false}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(hits_at(&ollama, "/api/pull").await, 1);
    // An alias to a discovered model (target in the API's `instance/model` form).
    let (s, a) = admin
        .post(
            "/aliases",
            json!({"alias": "lab-default", "target": "lab/house-llm:latest"}),
        )
        .await;
    assert_eq!(
        (s, &a["target"]),
        (201, &json!("lab/house-llm:latest")),
        "{a}"
    );
    // `/api/ps` asks the server what it has loaded, unless the whole provider is disabled.
    Mock::given(method("GET"))
        .and(path("/api/ps"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"models": [
            {"name": "house-llm:latest", "model": "house-llm:latest", "size": 42}]})))
        .mount(&ollama)
        .await;
    let ps: Value = relay.get("/api/ps").await.json().await.unwrap();
    assert_eq!(ps["models"][0]["name"], "lab-house-llm:latest", "{ps}");
    let (s, _) = admin.put("/providers/lab", json!({"enabled": false})).await;
    assert_eq!(s, 200);
    let before = hits_at(&ollama, "/api/ps").await;
    let ps: Value = relay.get("/api/ps").await.json().await.unwrap();
    assert_eq!(ps, json!({"models": []}));
    assert_eq!(hits_at(&ollama, "/api/ps").await, before);
    let (s, _) = admin.put("/providers/lab", json!({"enabled": true})).await;
    assert_eq!(s, 200);
    // Removing the provider removes the instance.
    assert_eq!(admin.delete("/providers/lab").await.0, 204);
    let (_, v) = admin.get("/instances").await;
    assert_eq!(v["instances"].as_array().map(Vec::len), Some(0));
    admin.stop().await;
}

/// How many requests a fake Ollama server received at `p`.
async fn hits_at(ollama: &MockServer, p: &str) -> usize {
    ollama
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == p)
        .count()
}

#[tokio::test]
async fn pricing_import_previews_changes_and_keeps_hand_set_prices() {
    let dir = TempDir::new("pricing");
    let fake = fake_openai().await;
    let (_relay, admin, _r, _s) = start(&dir, &fake).await;
    let (m1, m2) = (first_model_of("openai"), second_model_of("openai"));
    let (_, all) = admin.get("/models").await;
    let c1 = find_model(&all, "openai", m1)["compiled"]["pricing"].clone();
    // The operator set m2's input price by hand.
    admin
        .put(
            &format!("/models/override?provider=openai&model={m2}"),
            json!({"pricing": {"input": 7.0}}),
        )
        .await;
    // LiteLLM format: USD per token, keyed by model, with litellm_provider.
    let data = json!({
        m1: {"litellm_provider": "openai", "input_cost_per_token": 9e-6,
             "output_cost_per_token": c1["output"].as_f64().unwrap() / 1e6, "mode": "chat"},
        m2: {"litellm_provider": "openai", "input_cost_per_token": 3e-6},
        "sample_spec": {"input_cost_per_token": 0.0},
    });
    let (s, preview) = admin.post("/pricing/preview", json!({"data": data})).await;
    assert_eq!(s, 200, "{preview}");
    assert_eq!(
        preview["changes"],
        json!([{"provider": "openai", "model": m1, "field": "input", "old": c1["input"], "new": 9.0}])
    );
    assert_eq!(preview["kept_user_overrides"], 1);
    assert_eq!(preview["unmatched"], llm_relay::catalog::MODELS.len() - 2);
    // Nothing stored by a preview.
    let (_, all) = admin.get("/models").await;
    assert_eq!(find_model(&all, "openai", m1)["pricing"], c1);

    // The same from a URL.
    let src = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/prices.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(data.clone()))
        .mount(&src)
        .await;
    let (s, import) = admin
        .post(
            "/pricing/import",
            json!({"url": format!("{}/prices.json", src.uri())}),
        )
        .await;
    assert_eq!(s, 200, "{import}");
    assert_eq!(import["changes"], preview["changes"]);
    let (_, all) = admin.get("/models").await;
    assert_eq!(find_model(&all, "openai", m1)["pricing"]["input"], 9.0);
    assert_eq!(find_model(&all, "openai", m2)["pricing"]["input"], 7.0);
    // Imported again: nothing left to change.
    let (_, again) = admin.post("/pricing/preview", json!({"data": data})).await;
    assert_eq!(again["changes"], json!([]));

    for body in [
        json!({}),
        json!({"data": [1]}),
        json!({"url": "file:///etc/passwd"}),
    ] {
        assert_eq!(admin.post("/pricing/preview", body).await.0, 400);
    }
    let (s, e) = admin
        .post(
            "/pricing/preview",
            json!({"url": format!("{}/missing.json", src.uri())}),
        )
        .await;
    assert_eq!((s, e["error"]["type"].as_str()), (502, Some("upstream")));
    admin.stop().await;
}

#[tokio::test]
async fn custom_anthropic_compatible_provider_speaks_the_messages_api() {
    let dir = TempDir::new("anthropic");
    let fake = fake_openai().await;
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "house-claude",
            "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "output_tokens": 3}
        })))
        .mount(&upstream)
        .await;
    let (relay, admin, _r, _s) = start(&dir, &fake).await;
    let (s, p) = admin
        .post(
            "/providers",
            json!({"id": "corp-gw", "family": "anthropic", "base_url": format!("{}/v1", upstream.uri()),
                   "api_key_env": "CARGO_PKG_NAME"}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(
        admin
            .post(
                "/models",
                json!({"provider": "corp-gw", "id": "house-claude"})
            )
            .await
            .0,
        201
    );
    let r = relay
        .post("/v1/chat/completions", &chat("corp-gw/house-claude"))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "hello");
    let got = upstream.received_requests().await.unwrap();
    assert_eq!(got.len(), 1);
    let key = std::env::var("CARGO_PKG_NAME").unwrap();
    assert_eq!(
        got[0].headers.get("x-api-key").unwrap().to_str().unwrap(),
        key
    );
    // The compiled Anthropic-family provider's headers (the API version) go along.
    assert!(got[0].headers.get("anthropic-version").is_some());
    let sent: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(sent["model"], "house-claude");
    assert!(
        sent["max_tokens"].as_u64().is_some(),
        "Messages requires max_tokens: {sent}"
    );
    admin.stop().await;
}

/// The LiteLLM file pricing.yaml was derived from (matched entries, tests/pricing/README.md):
/// importing it changes nothing, and entries of other LiteLLM providers that carry a catalog
/// model's name (Azure, Vertex AI) are not taken for it.
#[test]
fn importing_the_source_price_file_changes_nothing() {
    let text = include_str!("pricing/litellm_model_prices_subset.json");
    let data: Value = serde_json::from_str(text).unwrap();
    let data = data.as_object().unwrap();
    let mut set = llm_relay::overrides::OverrideSet::default();
    let report = llm_relay::overrides::pricing::sync(&mut set, data);
    assert_eq!(report.changes, [], "pricing.yaml and LiteLLM disagree");
    assert_eq!(set, llm_relay::overrides::OverrideSet::default());
    // Every entry but the 4 decoys (sample_spec, azure/, vertex_ai/, azure_ai/) matches a model.
    let matched = llm_relay::catalog::MODELS.len() - report.unmatched;
    assert_eq!(matched, data.len() - 4);
}

/// A database file written by the first build with runtime overrides (schema version 2).
const OVERRIDES_FIXTURE: &str = "tests/fixtures/usage/v2-overrides.redb";

/// One override of every kind, as written into [`OVERRIDES_FIXTURE`].
fn fixture_set() -> llm_relay::overrides::OverrideSet {
    use llm_relay::overrides::*;
    let mut set = OverrideSet::default();
    set.providers.insert(
        "local-ai".into(),
        CustomProvider {
            id: "local-ai".into(),
            family: Family::Openai,
            base_url: "http://127.0.0.1:8000/v1".into(),
            api_key_env: Some("LOCAL_AI_KEY".into()),
            enabled: true,
        },
    );
    set.providers.insert(
        "lab".into(),
        CustomProvider {
            id: "lab".into(),
            family: Family::Ollama,
            base_url: "http://127.0.0.1:11435".into(),
            api_key_env: None,
            enabled: false,
        },
    );
    set.disabled_providers.insert("some-provider".into());
    set.models.insert(
        model_key("some-provider", "some/model:1"),
        ModelOverride {
            enabled: Some(false),
            context_length: Some(1234),
            capabilities: Some(Caps {
                vision: true,
                ..Caps::default()
            }),
            description: Some("house notes".into()),
            pricing: PriceFields {
                input: Some(1.5),
                ..PriceFields::default()
            },
            imported: PriceFields {
                output: Some(6.0),
                cache_read: Some(0.15),
                ..PriceFields::default()
            },
        },
    );
    set.custom_models.insert(
        model_key("local-ai", "house-model"),
        CustomModel {
            provider: "local-ai".into(),
            id: "house-model".into(),
            context_length: Some(8192),
            capabilities: Caps {
                tools: true,
                ..Caps::default()
            },
            description: None,
            pricing: Some(Prices {
                input: 4.0,
                output: 8.0,
                cache_read: None,
                cache_write: Some(5.0),
                cache_write_1h: None,
            }),
            enabled: true,
        },
    );
    set.aliases.insert(
        "team-fast".into(),
        CustomAlias {
            alias: "Team-Fast".into(),
            target: "local-ai/house-model".into(),
            enabled: true,
        },
    );
    set.disabled_aliases.insert("some-alias".into());
    set
}

#[test]
#[ignore = "writes tests/fixtures/usage/v2-overrides.redb; run deliberately"]
fn write_v2_overrides_fixture() {
    use llm_relay::store::OverrideStore;
    let dir = TempDir::new("write-v2");
    {
        let store = RedbStore::open(&dir.0).unwrap();
        let rows = fixture_set().diff(&llm_relay::overrides::OverrideSet::default());
        store.write_overrides(&rows).unwrap();
        store
            .set_setting(llm_relay::overrides::keys::DEFAULT_MODEL, "house-model")
            .unwrap();
    }
    std::fs::copy(
        dir.0.join(llm_relay::store::embedded::FILE_NAME),
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(OVERRIDES_FIXTURE),
    )
    .unwrap();
}

/// Stored overrides are forever: the file the first build wrote still reads as the same set.
#[test]
fn checked_in_v2_overrides_database_stays_readable() {
    use llm_relay::store::OverrideStore;
    let dir = TempDir::new("read-v2");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(OVERRIDES_FIXTURE),
        dir.0.join(llm_relay::store::embedded::FILE_NAME),
    )
    .unwrap();
    let store = RedbStore::open(&dir.0).unwrap();
    let set =
        llm_relay::overrides::OverrideSet::from_rows(store.load_overrides().unwrap()).unwrap();
    assert_eq!(set, fixture_set());
    assert_eq!(
        store
            .get_setting(llm_relay::overrides::keys::DEFAULT_MODEL)
            .unwrap()
            .as_deref(),
        Some("house-model")
    );
}

#[tokio::test]
async fn big_and_small_model_settings_route_anthropic_clients_claude_names_at_once() {
    let dir = TempDir::new("bigsmall");
    let fake = fake_openai().await;
    let (m1, m2) = (first_model_of("openai"), second_model_of("openai"));
    let (relay, admin, _recorder, _store) = start(&dir, &fake).await;
    let messages = |model: &str| {
        json!({"model": model, "max_tokens": 64,
               "messages": [{"role": "user", "content": "hi"}]})
    };
    // No Anthropic key in this relay, so Claude names are mapped (seed 004); with no big model
    // set the name stays as it is: not served here (503 no key, or 404).
    let r = relay
        .post("/v1/messages", &messages("claude-sonnet-4-5"))
        .await;
    assert!(matches!(r.status().as_u16(), 404 | 503), "{}", r.status());
    assert!(asked(&fake).await.is_empty());

    let (s, v) = admin
        .put("/settings", json!({"big_model": m1, "small_model": m2}))
        .await;
    assert_eq!(s, 200, "{v}");
    for (name, want) in [("claude-sonnet-4-5", m1), ("claude-haiku-4-5", m2)] {
        let r = relay.post("/v1/messages", &messages(name)).await;
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(asked(&fake).await.last().unwrap(), want, "{name}");
    }
    admin.stop().await;
}

/// Usage settings reach the recorder at once: the default tag of the next record, tracking off.
#[tokio::test]
async fn usage_settings_apply_to_the_next_request() {
    let dir = TempDir::new("settings");
    let fake = fake_openai().await;
    let (relay, admin, recorder, store) = start(&dir, &fake).await;
    let m1 = first_model_of("openai");
    let (s, _) = admin
        .put("/settings", json!({"default_tag": "team-b"}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        relay.post("/v1/chat/completions", &chat(m1)).await.status(),
        200
    );
    last_cost(&recorder, &store).await;
    let rec = store.recent(&Filter::default(), 10).unwrap();
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].tags, ["team-b"]);
    let (s, _) = admin
        .put("/settings", json!({"usage_tracking": false}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        relay.post("/v1/chat/completions", &chat(m1)).await.status(),
        200
    );
    last_cost(&recorder, &store).await;
    assert_eq!(
        store.recent(&Filter::default(), 10).unwrap().len(),
        1,
        "not recorded"
    );
    let (s, _) = admin
        .put("/settings", json!({"usage_tracking": true}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        relay.post("/v1/chat/completions", &chat(m1)).await.status(),
        200
    );
    last_cost(&recorder, &store).await;
    assert_eq!(store.recent(&Filter::default(), 10).unwrap().len(), 2);
    admin.stop().await;
}

#[tokio::test]
async fn a_custom_provider_cannot_borrow_the_admin_password_as_its_key() {
    // "Test connection" sends the named variable's value to the provider's base URL: naming
    // ADMIN_PASSWORD would hand the admin password to any host the session chooses.
    let dir = TempDir::new("keyenv");
    let fake = fake_openai().await;
    let (_relay, admin, _recorder, _store) = start(&dir, &fake).await;
    for name in ["ADMIN_PASSWORD", "ADMIN_PASSWORD_FILE", "admin_password"] {
        let (s, v) = admin
            .post(
                "/providers",
                json!({"id": "exfil", "family": "openai", "base_url": "http://127.0.0.1:9",
                       "api_key_env": name}),
            )
            .await;
        assert_eq!(s, 400, "{name}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("ADMIN_"),
            "{v}"
        );
    }
    let (s, _) = admin
        .post(
            "/providers",
            json!({"id": "exfil", "family": "openai", "base_url": "http://127.0.0.1:9"}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, v) = admin
        .put("/providers/exfil", json!({"api_key_env": "ADMIN_PASSWORD"}))
        .await;
    assert_eq!(s, 400, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_settings_writes_to_different_fields_are_all_kept() {
    // Each PUT is a partial update: two admins (or two browser tabs) saving different fields at
    // the same moment must not undo each other's change.
    let dir = TempDir::new("settings-race");
    let fake = fake_openai().await;
    let (_relay, admin, _recorder, store) = start(&dir, &fake).await;
    for round in 0..8u64 {
        let days = 30 + round;
        let tag = format!("team-{round}");
        let tracking = round % 2 == 0;
        let dns = round % 2 == 1;
        let (a, b, c, d) = tokio::join!(
            admin.put("/settings", json!({"retention_days": days})),
            admin.put("/settings", json!({"default_tag": tag})),
            admin.put("/settings", json!({"usage_tracking": tracking})),
            admin.put("/settings", json!({"dns_resolution": dns})),
        );
        assert!([a.0, b.0, c.0, d.0].iter().all(|s| *s == 200));
        let (_, s) = admin.get("/settings").await;
        let got = (
            &s["retention_days"],
            &s["default_tag"],
            &s["usage_tracking"],
            &s["dns_resolution"],
        );
        assert_eq!(
            got,
            (&json!(days), &json!(tag), &json!(tracking), &json!(dns)),
            "round {round}: a parallel write was lost"
        );
    }
    // The store holds the same as the snapshot.
    use llm_relay::store::OverrideStore;
    assert_eq!(
        store
            .get_setting(llm_relay::usage::record::keys::RETENTION_DAYS)
            .unwrap()
            .as_deref(),
        Some("37")
    );
    admin.stop().await;
}

#[tokio::test]
async fn deleting_a_custom_provider_or_model_takes_the_aliases_pointing_at_it() {
    // A dangling alias is listed with a target that no longer exists, and comes back to life
    // pointing at whatever is created later under the same name.
    let dir = TempDir::new("dangling");
    let fake = fake_openai().await;
    let (relay, admin, _recorder, _store) = start(&dir, &fake).await;
    let aliases = |v: &Value| -> Vec<String> {
        v["aliases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["source"] == "custom")
            .map(|a| a["alias"].as_str().unwrap().to_string())
            .collect()
    };
    let base = format!("{}/v1", fake.uri());
    let (s, _) = admin
        .post(
            "/providers",
            json!({"id": "gone", "family": "openai", "base_url": base}),
        )
        .await;
    assert_eq!(s, 201);
    for m in ["m-one", "m-two"] {
        let (s, v) = admin
            .post("/models", json!({"provider": "gone", "id": m}))
            .await;
        assert_eq!(s, 201, "{v}");
    }
    for (alias, target) in [("to-one", "gone/m-one"), ("to-two", "gone/m-two")] {
        let (s, v) = admin
            .post("/aliases", json!({"alias": alias, "target": target}))
            .await;
        assert_eq!(s, 201, "{v}");
    }
    // Deleting a custom model takes its alias.
    let (s, _) = admin
        .delete("/models/custom?provider=gone&model=m-one")
        .await;
    assert_eq!(s, 204);
    let (_, list) = admin.get("/aliases").await;
    assert_eq!(aliases(&list), vec!["to-two".to_string()]);
    // Deleting the provider takes the rest.
    let (s, _) = admin.delete("/providers/gone").await;
    assert_eq!(s, 204);
    let (_, list) = admin.get("/aliases").await;
    assert!(aliases(&list).is_empty(), "{list}");
    let r = relay.post("/v1/chat/completions", &chat("to-two")).await;
    assert_eq!(r.status(), 404);
    // Recreated under the same names: the old aliases do not come back.
    let (s, _) = admin
        .post(
            "/providers",
            json!({"id": "gone", "family": "openai", "base_url": base}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = admin
        .post("/models", json!({"provider": "gone", "id": "m-two"}))
        .await;
    assert_eq!(s, 201);
    let (_, list) = admin.get("/aliases").await;
    assert!(aliases(&list).is_empty(), "{list}");
    admin.stop().await;
}

#[tokio::test]
async fn test_connection_reads_a_bounded_answer() {
    // The base URL is any host the session names: its answer must not be read whole into memory.
    let dir = TempDir::new("probe-size");
    let fake = fake_openai().await;
    let huge = MockServer::start().await;
    let limit = llm_relay::overrides::api::MAX_PROBE_BYTES;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b' '; limit + 1]))
        .mount(&huge)
        .await;
    let (_relay, admin, _recorder, _store) = start(&dir, &fake).await;
    let base = format!("{}/v1", huge.uri());
    let (s, _) = admin
        .post(
            "/providers",
            json!({"id": "huge", "family": "openai", "base_url": base}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, v) = admin.post("/providers/huge/test", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("larger than"),
        "{v}"
    );
    admin.stop().await;
}

/// The ids of `GET /v1/models` as an Anthropic client asks for it (`anthropic-version`), checking
/// its `request-id` header on the way.
async fn anthropic_model_ids(relay: &Relay) -> Vec<String> {
    let resp = reqwest::Client::new()
        .get(relay.url("/v1/models"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["request-id"].to_str().unwrap().to_string();
    assert!(id.starts_with("req_"), "{id}");
    let body: Value = resp.json().await.unwrap();
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}
