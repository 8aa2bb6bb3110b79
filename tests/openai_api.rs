//! The OpenAI API frontend end to end: client -> llm-relay -> fake upstream replaying recorded
//! OpenAI-compatible traffic (tests/fixtures), asserting both what the client got back and what
//! llm-relay sent upstream.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::fake_upstream::FakeUpstream;
use common::fixtures::load;
use common::relay::{Relay, config, first_model_of, openai_fixture, sse_payloads, test_key};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

#[tokio::test]
async fn chat_non_stream_round_trip() {
    let (fake, relay, ex) = openai_fixture("openai/chat_basic.httprr").await;
    let recorded = ex.response_json();
    let resp = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}], "temperature": 0.2, "seed": 7}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        recorded["choices"][0]["message"]["content"]
    );
    assert_eq!(
        body["choices"][0]["finish_reason"],
        recorded["choices"][0]["finish_reason"]
    );
    assert_eq!(
        body["usage"]["prompt_tokens"],
        recorded["usage"]["prompt_tokens"]
    );
    assert_eq!(
        body["usage"]["completion_tokens"],
        recorded["usage"]["completion_tokens"]
    );
    assert_eq!(
        body["usage"]["total_tokens"],
        recorded["usage"]["total_tokens"]
    );

    let sent = fake.received().await;
    assert_eq!(sent.len(), 1);
    let auth = sent[0]
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(auth, format!("Bearer {}", test_key("openai")));
    let up = fake.last_json().await;
    assert_eq!(up["model"], "gpt-4o");
    assert_eq!(
        up["messages"],
        json!([{"role": "user", "content": "Hello"}])
    );
    assert_eq!(up["temperature"], 0.2);
    assert_eq!(up["seed"], 7);
    assert!(up.get("stream").is_none());
    assert!(
        up.get("max_tokens").is_none(),
        "no invented max_tokens default: {up}"
    );
}

#[tokio::test]
async fn chat_stream_role_first_finish_usage_done() {
    let (fake, relay, ex) = openai_fixture("openai/chat_stream_include_usage.httprr").await;
    let recorded: Vec<Value> = ex
        .sse_data()
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let recorded_text: String = recorded
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    let recorded_usage = recorded
        .iter()
        .find_map(|c| c.get("usage").filter(|u| u.is_object()))
        .unwrap()
        .clone();

    let resp = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
                    "messages": [{"role": "user", "content": "Count from 1 to 5"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let payloads = sse_payloads(&resp.text().await.unwrap());
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["role"], "assistant",
        "role delta first"
    );
    assert!(
        chunks[1..]
            .iter()
            .all(|c| c.pointer("/choices/0/delta/role").is_none()),
        "role only once"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(text, recorded_text);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"]["prompt_tokens"],
        recorded_usage["prompt_tokens"]
    );
    assert_eq!(
        usage_chunk["usage"]["completion_tokens"],
        recorded_usage["completion_tokens"]
    );
    let ids: std::collections::HashSet<&str> =
        chunks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "one id per stream");

    let up = fake.last_json().await;
    assert_eq!(up["stream"], true);
    assert_eq!(up["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn stream_without_include_usage_has_no_usage_chunk() {
    let (_fake, relay, _) = openai_fixture("openai/chat_stream_include_usage.httprr").await;
    let resp = relay
        .post("/v1/chat/completions", &json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    let payloads = sse_payloads(&resp.text().await.unwrap());
    assert!(
        payloads.iter().all(|p| !p.contains("\"usage\"")),
        "{payloads:?}"
    );
    let finish: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn reasoning_model_quirks_reach_the_upstream() {
    let (fake, relay, ex) = openai_fixture("openai/chat_o3_mini_reasoning_tokens.yaml").await;
    let recorded = ex.response_json();
    let resp = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "o3-mini", "max_tokens": 300, "temperature": 0.5, "top_p": 0.9, "reasoning_effort": "low",
                    "messages": [{"role": "system", "content": "Be terse."}, {"role": "system", "content": "Answer in English."},
                                 {"role": "user", "content": "How many r in strawberry?"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"],
        recorded["usage"]["completion_tokens_details"]["reasoning_tokens"]
    );
    let up = fake.last_json().await;
    assert_eq!(up["max_completion_tokens"], 300);
    assert!(up.get("max_tokens").is_none());
    assert!(
        up.get("temperature").is_none() && up.get("top_p").is_none(),
        "dropped for reasoning models: {up}"
    );
    assert_eq!(up["reasoning_effort"], "low");
    assert_eq!(
        up["messages"][0],
        json!({"role": "developer", "content": "Be terse.\n\nAnswer in English."})
    );
    assert_eq!(up["messages"][1]["role"], "user");
}

#[tokio::test]
async fn tools_response_format_and_images_are_forwarded() {
    let (fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let tool = json!({"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}});
    let resp = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt-4o", "tools": [tool], "tool_choice": "auto", "user": "u1",
                    "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
                    "messages": [{"role": "user", "content": [
                        {"type": "text", "text": "What is this?"},
                        // Declared JPEG, really PNG: the sniffed type wins.
                        {"type": "image_url", "image_url": {"url": format!("data:image/jpeg;base64,{PNG_1X1}")}}]}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let up = fake.last_json().await;
    assert_eq!(up["tools"][0], tool);
    assert_eq!(up["tool_choice"], "auto");
    assert_eq!(up["user"], "u1");
    assert_eq!(up["response_format"]["json_schema"]["name"], "w");
    assert_eq!(
        up["messages"][0]["content"][1]["image_url"]["url"],
        format!("data:image/png;base64,{PNG_1X1}")
    );
}

#[tokio::test]
async fn unmodelled_openai_fields_are_forwarded_as_sent() {
    let (fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let extra = json!({
        "logprobs": true, "top_logprobs": 2, "logit_bias": {"50256": -100},
        "service_tier": "flex", "store": false, "metadata": {"run": "r1"},
        "verbosity": "low", "web_search_options": {"search_context_size": "high"},
        "search_domain_filter": ["example.org"], "return_related_questions": true,
        "provider": {"order": ["a", "b"]}, "models": ["m1", "m2"], "transforms": ["middle-out"],
        "plugins": [{"id": "web"}]
    });
    let mut body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let resp = relay.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    let up = fake.last_json().await;
    for (k, v) in extra.as_object().unwrap() {
        assert_eq!(&up[k], v, "{k} was not forwarded as sent");
    }
    // The fields llm-relay sets itself are its own: the resolved upstream model id.
    assert_eq!(up["model"], "gpt-4o");
    // Nothing is invented when the client sends none of them.
    relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    let up = fake.last_json().await;
    for k in extra.as_object().unwrap().keys() {
        assert!(up.get(k).is_none(), "{k} sent though the client did not");
    }
}

#[tokio::test]
async fn tool_call_history_round_trips() {
    let (fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let resp = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let up = fake.last_json().await;
    assert_eq!(
        up["messages"][1]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(up["messages"][1]["content"], Value::Null);
    assert_eq!(
        up["messages"][2],
        json!({"role": "tool", "tool_call_id": "call_1", "content": "18C"})
    );
}

#[tokio::test]
async fn streamed_tool_calls_from_recorded_deepseek_traffic() {
    let ex = load("deepseek/stream_tool_call.chunks.txt").remove(0);
    let fake = FakeUpstream::start().await;
    fake.replay(&ex, "/chat/completions").await;
    let relay = Relay::start(&[("deepseek", fake.uri())]).await;
    let model = first_model_of("deepseek");
    let resp = relay
        .post("/v1/chat/completions", &json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "weather?"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    let payloads = sse_payloads(&resp.text().await.unwrap());
    let chunks: Vec<Value> = payloads
        .iter()
        .filter(|p| *p != "[DONE]")
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    let first_call = chunks
        .iter()
        .find_map(|c| c.pointer("/choices/0/delta/tool_calls/0"))
        .unwrap();
    assert!(first_call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(first_call["type"], "function");
    let args: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                .and_then(Value::as_str)
        })
        .collect();
    assert!(
        serde_json::from_str::<Value>(&args).is_ok(),
        "arguments reassemble to JSON: {args}"
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert!(
        chunks
            .iter()
            .any(|c| c.pointer("/choices/0/delta/reasoning_content").is_some()),
        "reasoning passed on"
    );
}

#[tokio::test]
async fn mistral_seed_is_renamed() {
    let ex = load("mistral/chat_basic.yaml").remove(0);
    let fake = FakeUpstream::start().await;
    fake.replay(&ex, "/v1/chat/completions").await;
    let relay = Relay::start(&[("mistral", format!("{}/v1", fake.uri()))]).await;
    let resp = relay
        .post("/v1/chat/completions", &json!({"model": "mistral-small-latest", "seed": 42, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    let up = fake.last_json().await;
    assert_eq!(up["random_seed"], 42);
    assert!(up.get("seed").is_none());
}

#[tokio::test]
async fn upstream_errors_keep_status_and_message() {
    for (fixture, status) in [
        ("openrouter/error_401_no_auth.yaml", 401),
        ("openai/error_400_unsupported_parameter.body.json", 400),
    ] {
        let ex = load(fixture).remove(0);
        assert_eq!(ex.status, status);
        let fake = FakeUpstream::start().await;
        fake.replay(&ex, "/chat/completions").await;
        let relay = Relay::start(&[("openai", fake.uri()), ("openrouter", fake.uri())]).await;
        let model = if fixture.starts_with("openrouter") {
            first_model_of("openrouter")
        } else {
            "gpt-4o"
        };
        let resp = relay
            .post(
                "/v1/chat/completions",
                &json!({"model": model, "messages": [{"role": "user", "content": "x"}]}),
            )
            .await;
        assert_eq!(resp.status().as_u16(), status, "{fixture}");
        let body: Value = resp.json().await.unwrap();
        let upstream_msg = ex
            .response_json()
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap()
            .to_string();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&upstream_msg),
            "{body}"
        );
        assert!(
            body["error"].get("type").is_some()
                && body["error"].get("param").is_some()
                && body["error"].get("code").is_some()
        );
    }
}

#[tokio::test]
async fn upstream_429_keeps_retry_after() {
    let ex = load("openrouter/error_429_rate_limited.yaml").remove(0);
    let fake = FakeUpstream::start().await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "7")
                .set_body_raw(ex.response_body.clone(), "application/json"),
        )
        .mount(&fake.server)
        .await;
    let relay = Relay::start(&[("openrouter", fake.uri())]).await;
    let model = first_model_of("openrouter");
    for (path, stream) in [
        ("/v1/chat/completions", false),
        ("/v1/chat/completions", true),
        ("/api/chat", true),
    ] {
        let resp = relay.post(path, &json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "x"}]})).await;
        assert_eq!(
            resp.status(),
            429,
            "{path} stream={stream}: a failure before the first chunk is a real status"
        );
        assert_eq!(resp.headers()["retry-after"], "7");
    }
}

#[tokio::test]
async fn midstream_error_becomes_an_sse_error_object() {
    let ex = load("openrouter/stream_midstream_error.yaml").remove(0);
    let fake = FakeUpstream::start().await;
    fake.replay(&ex, "/chat/completions").await;
    let relay = Relay::start(&[("openrouter", fake.uri())]).await;
    let model = first_model_of("openrouter");
    let resp = relay
        .post("/v1/chat/completions", &json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(
        resp.status(),
        200,
        "headers were committed after the first chunk"
    );
    let payloads = sse_payloads(&resp.text().await.unwrap());
    let err: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Token limit reached"),
        "{err}"
    );
    assert_eq!(payloads.last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn upstream_timeout_is_504_and_refused_is_502() {
    let ex = load("openai/chat_basic.httprr").remove(0);
    let fake = FakeUpstream::start().await;
    fake.replay_with_delay(&ex, "/v1/chat/completions", Duration::from_secs(3))
        .await;
    let mut cfg = config(&[("openai", format!("{}/v1", fake.uri()))]);
    cfg.read_timeout = Duration::from_millis(300);
    let relay = Relay::start_with(cfg).await;
    let resp = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(resp.status(), 504);

    // A port nothing listens on: bind, learn the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay = Relay::start(&[("openai", format!("http://127.0.0.1:{port}/v1"))]).await;
    let resp = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach openai")
    );
}

#[tokio::test]
async fn bad_input_gets_openai_errors() {
    let relay = Relay::start(&[("openai", "http://127.0.0.1:9/v1".into())]).await;
    let cases: [(&'static str, u16, &str); 6] = [
        ("{\"model\":", 400, "invalid JSON"),
        ("{\"messages\":[]}", 400, "missing field `model`"),
        (
            "{\"model\":\"gpt-4o\",\"messages\":\"hi\"}",
            400,
            "invalid type",
        ),
        (
            "{\"model\":\"no-such-model\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
            404,
            "no-such-model",
        ),
        (
            "{\"model\":\"claude-sonnet\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
            503,
            "ANTHROPIC_API_KEY",
        ),
        ("", 400, "empty"),
    ];
    for (body, status, needle) in cases {
        let resp = relay.post_raw("/v1/chat/completions", body).await;
        assert_eq!(resp.status().as_u16(), status, "{body}");
        let v: Value = resp.json().await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body} -> {msg}");
    }
    let mut cfg = config(&[]);
    cfg.max_body_bytes = 1024;
    let relay = Relay::start_with(cfg).await;
    let big =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    assert_eq!(relay.post("/v1/chat/completions", &big).await.status(), 413);
}

#[tokio::test]
async fn default_model_catches_unknown_names() {
    let (fake, _r, _) = openai_fixture("openai/chat_basic.httprr").await;
    let mut cfg = config(&[("openai", format!("{}/v1", fake.uri()))]);
    cfg.default_model = Some("gpt-4o-mini".into());
    let relay = Relay::start_with(cfg).await;
    let resp = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "whatever", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(fake.last_json().await["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn models_list_only_enabled_providers_and_ids_with_slashes_resolve() {
    let relay = Relay::start(&[("groq", "http://127.0.0.1:9".into())]).await;
    let list: Value = relay.get("/v1/models").await.json().await.unwrap();
    assert_eq!(list["object"], "list");
    let data = list["data"].as_array().unwrap();
    assert!(!data.is_empty());
    assert!(
        data.iter()
            .all(|m| m["owned_by"] == "groq" && m["object"] == "model")
    );
    let slashed = data
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .find(|id| id.contains('/'))
        .unwrap();
    let one: Value = relay
        .get(&format!("/v1/models/{slashed}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], slashed);
    assert_eq!(relay.get("/v1/models/not-a-model").await.status(), 404);
}

#[tokio::test]
async fn legacy_completions() {
    let (fake, relay, ex) = openai_fixture("openai/chat_basic.httprr").await;
    let resp = relay
        .post(
            "/v1/completions",
            &json!({"model": "gpt-4o", "prompt": "Say hi", "max_tokens": 20}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(
        body["choices"][0]["text"],
        ex.response_json()["choices"][0]["message"]["content"]
    );
    let up = fake.last_json().await;
    assert_eq!(
        up["messages"],
        json!([{"role": "user", "content": "Say hi"}])
    );
    assert_eq!(up["max_tokens"], 20);

    let (_f, relay, _) = openai_fixture("openai/chat_stream_include_usage.httprr").await;
    let resp = relay
        .post(
            "/v1/completions",
            &json!({"model": "gpt-4o", "prompt": "Count", "stream": true}),
        )
        .await;
    let payloads = sse_payloads(&resp.text().await.unwrap());
    let first: Value = serde_json::from_str(&payloads[0]).unwrap();
    assert_eq!(first["object"], "text_completion");
    assert_eq!(payloads.last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn legacy_completions_echo_returns_the_prompt_before_the_completion() {
    let (_fake, relay, ex) = openai_fixture("openai/chat_basic.httprr").await;
    let resp = relay
        .post(
            "/v1/completions",
            &json!({"model": "gpt-4o", "prompt": "Say hi", "echo": true}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let answer = ex.response_json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(body["choices"][0]["text"], format!("Say hi{answer}"));

    let (_f, relay, _) = openai_fixture("openai/chat_stream_include_usage.httprr").await;
    let resp = relay
        .post(
            "/v1/completions",
            &json!({"model": "gpt-4o", "prompt": "Count", "stream": true, "echo": true}),
        )
        .await;
    let payloads = sse_payloads(&resp.text().await.unwrap());
    let first: Value = serde_json::from_str(&payloads[0]).unwrap();
    assert_eq!(first["choices"][0]["text"], "Count");
    assert_eq!(first["choices"][0]["finish_reason"], Value::Null);
    assert_eq!(payloads.last().unwrap(), "[DONE]");
}
