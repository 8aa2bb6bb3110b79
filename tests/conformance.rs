//! Conformance over the generated catalog: every model row is exercised without per-model test
//! code, so a new providers.yaml row is tested the moment it is added.
//!
//! For every model: every accepted spelling resolves to it; it is priced; for every
//! OpenAI-compatible provider, a request through both client APIs reaches
//! `{base_url}/chat/completions` with the upstream model id, the provider's auth header and the
//! model's quirks applied; every Anthropic- and Gemini-family model the same way at its dialect's
//! path. Also enforces "the YAML is the only registry": no source file under
//! src/ spells a provider name or model id from providers.yaml as a string literal.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_upstream::FakeUpstream;
use common::fixtures::load;
use common::relay::{Relay, test_key};
use llm_relay::catalog::{
    self, AuthStyle, Capability, MaxTokensField, ModelId, PROVIDERS, Param, SystemPrompt,
    WireFamily,
};
use serde_json::{Value, json};

#[test]
fn every_spelling_resolves_and_every_model_is_priced() {
    for m in ModelId::all() {
        let info = m.info();
        let p = info.provider.name();
        let mut names = vec![
            info.id.to_string(),
            info.id.to_uppercase(),
            format!("{p}-{}", info.id),
            format!("{p}/{}", info.id),
            format!("  {}  ", info.id),
        ];
        if !info.id.contains(':') {
            names.push(format!("{}:latest", info.id));
        }
        for a in info.aliases {
            names.extend([
                a.to_string(),
                format!("{p}-{a}"),
                format!("{p}/{a}"),
                format!("{a}:latest"),
            ]);
        }
        for n in &names {
            assert_eq!(
                catalog::resolve(n),
                Some(m),
                "{n:?} should resolve to {p}/{}",
                info.id
            );
        }
        let price = m.pricing();
        // Free models (OpenRouter `:free`) are priced at 0; build-time validation guarantees a row exists.
        assert!(
            price.input.is_finite()
                && price.input >= 0.0
                && price.output.is_finite()
                && price.output >= 0.0
        );
        assert!(info.context_length > 0);
    }
    assert_eq!(catalog::resolve("definitely-not-a-model"), None);
    assert_eq!(catalog::resolve(""), None);
}

#[tokio::test]
async fn every_openai_compatible_model_reaches_its_upstream_through_both_apis() {
    let ex = load("openai/chat_basic.httprr").remove(0);
    let mut checked = 0;
    for p in PROVIDERS
        .iter()
        .filter(|p| p.wire == WireFamily::OpenaiCompat)
    {
        let fake = FakeUpstream::start().await;
        // Serve the recorded answer under a base path, as real providers have one (/v1, /openai/v1).
        fake.replay(&ex, "/base/chat/completions").await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path("/base/embeddings"))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({
                "object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
                "usage": {"prompt_tokens": 1, "total_tokens": 1}})))
            .mount(&fake.server)
            .await;
        let relay = Relay::start(&[(p.name, format!("{}/base", fake.uri()))]).await;
        for m in ModelId::all().filter(|m| m.info().provider == p.id) {
            let info = m.info();
            let q = m.quirks();
            if info.has(Capability::Embeddings) {
                // Embedding models: /v1/embeddings and /api/embed reach {base}/embeddings with the
                // key; chat is refused before any upstream call.
                for (path, field) in [("/v1/embeddings", "input"), ("/api/embed", "input")] {
                    let resp = relay
                        .post(
                            path,
                            &json!({"model": format!("{}/{}", p.name, info.id), field: "x"}),
                        )
                        .await;
                    assert_eq!(resp.status(), 200, "{} {} via {path}", p.name, info.id);
                    let sent = fake.received().await;
                    let req = sent.last().unwrap();
                    assert_eq!(req.url.path(), "/base/embeddings");
                    let up: Value = serde_json::from_slice(&req.body).unwrap();
                    assert_eq!(up, json!({"model": info.id, "input": ["x"]}));
                    if p.auth == AuthStyle::Bearer {
                        assert_eq!(
                            req.headers.get("authorization").unwrap().to_str().unwrap(),
                            format!("Bearer {}", test_key(p.name))
                        );
                    }
                }
                let before = fake.received().await.len();
                let resp = relay
                    .post(
                        "/v1/chat/completions",
                        &json!({"model": info.id, "messages": [{"role": "user", "content": "U"}]}),
                    )
                    .await;
                assert_eq!(resp.status(), 400, "{} {}", p.name, info.id);
                assert_eq!(fake.received().await.len(), before);
                checked += 1;
                continue;
            }
            for (path, body) in [
                (
                    "/v1/chat/completions",
                    json!({"model": format!("{}/{}", p.name, info.id), "temperature": 0.5, "max_tokens": 77,
                    "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]}),
                ),
                (
                    "/api/chat",
                    json!({"model": info.id, "stream": false, "options": {"temperature": 0.5, "num_predict": 77},
                    "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]}),
                ),
            ] {
                let resp = relay.post(path, &body).await;
                assert_eq!(resp.status(), 200, "{} {} via {path}", p.name, info.id);
                let sent = fake.received().await;
                let req = sent.last().unwrap();
                assert_eq!(req.url.path(), "/base/chat/completions");
                let expected_auth = match p.auth {
                    AuthStyle::Bearer => ("authorization", format!("Bearer {}", test_key(p.name))),
                    AuthStyle::XApiKey => ("x-api-key", test_key(p.name)),
                    AuthStyle::XGoogApiKey => ("x-goog-api-key", test_key(p.name)),
                    AuthStyle::None => continue,
                };
                assert_eq!(
                    req.headers.get(expected_auth.0).unwrap().to_str().unwrap(),
                    expected_auth.1
                );
                let up: Value = serde_json::from_slice(&req.body).unwrap();
                assert_eq!(up["model"], info.id);
                let limit_field = match q.max_tokens_field {
                    MaxTokensField::MaxTokens => "max_tokens",
                    MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
                };
                assert_eq!(up[limit_field], 77, "{} {}: {up}", p.name, info.id);
                assert_eq!(
                    up.get("temperature").is_some(),
                    !q.drops(Param::Temperature),
                    "{} {}: {up}",
                    p.name,
                    info.id
                );
                let first = &up["messages"][0];
                match q.system_prompt {
                    SystemPrompt::System => {
                        assert_eq!(first, &json!({"role": "system", "content": "S"}))
                    }
                    SystemPrompt::Developer => {
                        assert_eq!(first, &json!({"role": "developer", "content": "S"}))
                    }
                    SystemPrompt::MergeIntoUser => {
                        assert_eq!(first, &json!({"role": "user", "content": "S\n\nU"}))
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
}

/// The native dialects: every Anthropic- and Gemini-family model, through both client APIs,
/// reaches `{base_url}/messages` (model id in the body) or
/// `{base_url}/models/{id}:generateContent` (model id in the path) with the provider's auth
/// header, the completion limit, sampling and the system prompt where that dialect puts them.
#[tokio::test]
async fn every_anthropic_and_gemini_model_reaches_its_upstream_through_both_apis() {
    let mut checked = 0;
    for p in PROVIDERS
        .iter()
        .filter(|p| matches!(p.wire, WireFamily::Anthropic | WireFamily::Gemini))
    {
        let fake = FakeUpstream::start().await;
        let relay = Relay::start(&[(p.name, format!("{}/base", fake.uri()))]).await;
        for m in ModelId::all().filter(|m| m.info().provider == p.id) {
            let info = m.info();
            let expected_path = match p.wire {
                WireFamily::Anthropic => "/base/messages".to_string(),
                _ => format!("/base/models/{}:generateContent", info.id),
            };
            let ex = match p.wire {
                WireFamily::Anthropic => load("anthropic/messages_basic.httprr").remove(0),
                _ => load("gemini/generate_content_basic.yaml").remove(0),
            };
            fake.replay(&ex, &expected_path).await;
            for (path, body) in [
                (
                    "/v1/chat/completions",
                    json!({"model": format!("{}/{}", p.name, info.id), "temperature": 0.5, "max_tokens": 77,
                    "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]}),
                ),
                (
                    "/api/chat",
                    json!({"model": info.id, "stream": false, "options": {"temperature": 0.5, "num_predict": 77},
                    "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]}),
                ),
            ] {
                let resp = relay.post(path, &body).await;
                assert_eq!(resp.status(), 200, "{} {} via {path}", p.name, info.id);
                let sent = fake.received().await;
                let req = sent.last().unwrap();
                assert_eq!(req.url.path(), expected_path);
                let (header, value) = match p.auth {
                    AuthStyle::Bearer => ("authorization", format!("Bearer {}", test_key(p.name))),
                    AuthStyle::XApiKey => ("x-api-key", test_key(p.name)),
                    AuthStyle::XGoogApiKey => ("x-goog-api-key", test_key(p.name)),
                    AuthStyle::None => continue,
                };
                assert_eq!(req.headers.get(header).unwrap().to_str().unwrap(), value);
                for (k, v) in p.headers {
                    assert_eq!(req.headers.get(*k).unwrap().to_str().unwrap(), *v);
                }
                let up: Value = serde_json::from_slice(&req.body).unwrap();
                match p.wire {
                    WireFamily::Anthropic => {
                        assert_eq!(up["model"], info.id);
                        assert_eq!(up["max_tokens"], 77);
                        assert_eq!(up["temperature"], 0.5);
                        assert_eq!(up["system"], "S");
                        assert_eq!(
                            up["messages"],
                            json!([{"role": "user", "content": [{"type": "text", "text": "U"}]}])
                        );
                    }
                    _ => {
                        assert_eq!(up["generationConfig"]["maxOutputTokens"], 77);
                        assert_eq!(up["generationConfig"]["temperature"], 0.5);
                        assert_eq!(up["systemInstruction"], json!({"parts": [{"text": "S"}]}));
                        assert_eq!(
                            up["contents"],
                            json!([{"role": "user", "parts": [{"text": "U"}]}])
                        );
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 4, "{checked}");
}

/// Every provider name, model id and alias in providers.yaml.
fn catalog_names() -> Vec<String> {
    let mut names: Vec<String> = PROVIDERS.iter().map(|p| p.name.to_string()).collect();
    for m in ModelId::all() {
        names.push(m.info().id.to_string());
        names.extend(m.info().aliases.iter().map(|a| a.to_string()));
    }
    names
}

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_yaml_is_the_only_registry() {
    let mut files = Vec::new();
    rust_files(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(!files.is_empty());
    let names = catalog_names();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for n in &names {
            let lit = format!("\"{n}\"");
            assert!(
                !text.contains(&lit),
                "{} spells {lit}: providers and models belong in providers.yaml",
                f.display()
            );
        }
    }
}
