//! The Anthropic Messages API frontend end to end: an Anthropic client -> llm-relay -> fake
//! upstreams replaying recorded OpenAI, Gemini and Anthropic traffic (tests/fixtures), asserting
//! what the client got back (shapes and event sequence of WIRE.md §4) and what went upstream.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_upstream::FakeUpstream;
use common::fixtures::{Exchange, load};
use common::relay::{Relay, config, first_model_of, openai_fixture};
use llm_relay::catalog::{PROVIDERS, WireFamily};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn provider_of(family: WireFamily) -> &'static str {
    PROVIDERS.iter().find(|p| p.wire == family).unwrap().name
}

/// `(event, data)` pairs of an Anthropic SSE body; every event must carry an `event:` line that
/// names the same type as its data (the SDK dispatches on the line).
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("event without event: line: {e}"));
            let data: Value =
                serde_json::from_str(e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap())
                    .unwrap();
            assert_eq!(data["type"], name, "{e}");
            (name.to_string(), data)
        })
        .collect()
}

/// Text of the recorded OpenAI stream and its usage chunk.
fn openai_stream_text(ex: &Exchange) -> (String, Value) {
    let mut text = String::new();
    let mut usage = Value::Null;
    for d in ex.sse_data() {
        if d == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&d).unwrap();
        text.push_str(
            v.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        if v["usage"].is_object() {
            usage = v["usage"].clone();
        }
    }
    (text, usage)
}

async fn post(relay: &Relay, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(relay.url(path))
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", "client-tag")
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn create_non_stream_against_openai_upstream() {
    let (fake, relay, ex) = openai_fixture("openai/chat_basic.httprr").await;
    let recorded = ex.response_json();
    let resp = post(
        &relay,
        "/v1/messages",
        &json!({"model": "gpt-4o", "max_tokens": 100, "system": "Be brief.",
                "stop_sequences": ["END"], "temperature": 0.5,
                "messages": [{"role": "user", "content": "Hello"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "gpt-4o");
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["stop_sequence"], Value::Null);
    assert_eq!(body["content"][0]["type"], "text");
    assert_eq!(
        body["content"][0]["text"],
        recorded["choices"][0]["message"]["content"]
    );
    assert_eq!(
        body["usage"]["input_tokens"],
        recorded["usage"]["prompt_tokens"]
    );
    assert_eq!(
        body["usage"]["output_tokens"],
        recorded["usage"]["completion_tokens"]
    );
    assert_eq!(body["usage"]["cache_read_input_tokens"], 0);
    let sent = fake.last_json().await;
    assert_eq!(sent["model"], "gpt-4o");
    assert_eq!(sent["messages"][0]["content"], "Be brief.");
    assert_eq!(sent["messages"][1]["content"], "Hello");
    assert_eq!(sent["stop"], json!(["END"]));
    assert_eq!(sent["temperature"], 0.5);
}

#[tokio::test]
async fn stream_text_has_the_anthropic_event_sequence() {
    let (_fake, relay, ex) = openai_fixture("openai/chat_stream_include_usage.httprr").await;
    let (want_text, want_usage) = openai_stream_text(&ex);
    let resp = post(
        &relay,
        "/v1/messages?beta=true",
        &json!({"model": "gpt-4o", "max_tokens": 100, "stream": true,
                "messages": [{"role": "user", "content": "Count"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let evs = events(&resp.text().await.unwrap());
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    let n = names.len();
    assert_eq!(names[..3], ["message_start", "ping", "content_block_start"]);
    assert_eq!(
        names[n - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(
        names[3..n - 3].iter().all(|e| *e == "content_block_delta"),
        "{names:?}"
    );
    let text: String = evs
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text, want_text);
    // An estimate at the start (the upstream counts only at the end), the real count at the end.
    assert!(
        evs[0].1["message"]["usage"]["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    let delta = &evs[n - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        delta["usage"]["output_tokens"],
        want_usage["completion_tokens"]
    );
    assert_eq!(delta["usage"]["input_tokens"], want_usage["prompt_tokens"]);
}

#[tokio::test]
async fn streamed_tool_call_becomes_a_tool_use_block_with_input_json_deltas() {
    let ex = load("openai/chat_stream_tool_calls.yaml").remove(0);
    let mut want_args = String::new();
    let mut want_id = String::new();
    for d in ex.sse_data() {
        if let Ok(v) = serde_json::from_str::<Value>(&d)
            && let Some(c) = v.pointer("/choices/0/delta/tool_calls/0")
        {
            want_args.push_str(c["function"]["arguments"].as_str().unwrap_or_default());
            if let Some(id) = c["id"].as_str() {
                want_id = id.to_string();
            }
        }
    }
    let fake = FakeUpstream::start().await;
    fake.replay(&ex, "/v1/chat/completions").await;
    let relay = Relay::start(&[("openai", format!("{}/v1", fake.uri()))]).await;
    let resp = post(
        &relay,
        "/v1/messages",
        &json!({"model": "gpt-4o-mini", "max_tokens": 200, "stream": true,
                "tool_choice": {"type": "auto"},
                "tools": [{"name": "get_capital", "description": "", "input_schema": {
                    "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                    "properties": {"country": {"type": "string"}, "n": {"type": "number", "exclusiveMinimum": 0}},
                    "required": ["country"], "additionalProperties": false}}],
                "messages": [{"role": "user", "content": "What is the capital of the UK?"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let evs = events(&resp.text().await.unwrap());
    let start = evs
        .iter()
        .find(|(n, d)| n == "content_block_start" && d["content_block"]["type"] == "tool_use")
        .expect("a tool_use block");
    assert_eq!(start.1["content_block"]["name"], "get_capital");
    assert_eq!(start.1["content_block"]["id"], want_id.as_str());
    assert_eq!(start.1["content_block"]["input"], json!({}));
    let index = &start.1["index"];
    let args: String = evs
        .iter()
        .filter(|(_, d)| &d["index"] == index && d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(args, want_args);
    assert!(serde_json::from_str::<Value>(&args).unwrap().is_object());
    let delta = evs.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
    // Blocks never overlap: each start follows the previous stop.
    let mut open = false;
    for (n, _) in &evs {
        match n.as_str() {
            "content_block_start" => {
                assert!(!open);
                open = true;
            }
            "content_block_stop" => {
                assert!(open);
                open = false;
            }
            _ => {}
        }
    }
    // The tool went upstream with its schema, the choice as OpenAI's.
    let sent = fake.last_json().await;
    assert_eq!(sent["tools"][0]["function"]["name"], "get_capital");
    assert_eq!(sent["tool_choice"], "auto");
}

#[tokio::test]
async fn tool_round_trip_and_claude_code_shapes_reach_openai() {
    let (fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let resp = post(
        &relay,
        "/v1/messages?beta=true",
        &json!({
            "model": "gpt-4o", "max_tokens": 128000,
            "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
            "thinking": {"type": "enabled", "budget_tokens": 31999},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "output_config": {"effort": "high"},
            "metadata": {"user_id": "u-1"},
            "messages": [
                {"role": "system", "content": "inner system"},
                {"role": "user", "content": [{"type": "text", "text": "list", "cache_control": {"type": "ephemeral"}},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_1X1}}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "plan", "signature": "c2ln"},
                    {"type": "tool_use", "id": "toolu_a", "name": "Bash", "input": {"command": "ls"}},
                    {"type": "tool_use", "id": "toolu_b", "name": "Bash", "input": {"command": "pwd"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_b", "content": [{"type": "text", "text": "/w"}]},
                    {"type": "tool_result", "tool_use_id": "toolu_a", "content": "denied", "is_error": true},
                    {"type": "some_future_block", "x": 1}]}
            ],
            "tools": [{"name": "Bash", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}},
                      {"type": "web_search_20250305", "name": "web_search", "max_uses": 1}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true}
        }),
    )
    .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let sent = fake.last_json().await;
    let msgs = sent["messages"].as_array().unwrap();
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "tool"]);
    let system = msgs[0]["content"].as_str().unwrap();
    assert!(system.contains("sys") && system.contains("inner system"));
    assert_eq!(msgs[1]["content"][1]["type"], "image_url");
    assert_eq!(msgs[2]["tool_calls"][0]["id"], "toolu_a");
    assert_eq!(
        msgs[2]["tool_calls"][1]["function"]["arguments"],
        r#"{"command":"pwd"}"#
    );
    assert_eq!(msgs[3]["tool_call_id"], "toolu_b");
    assert_eq!(msgs[4]["tool_call_id"], "toolu_a");
    assert!(msgs[4]["content"].to_string().contains("Error: "));
    // Capped to the model's output limit; no reasoning effort for a model without reasoning;
    // server tools are not sent to another provider.
    let cap = llm_relay::catalog::resolve("gpt-4o")
        .unwrap()
        .info()
        .max_output_tokens
        .unwrap();
    let sent_max = sent["max_tokens"]
        .as_u64()
        .or(sent["max_completion_tokens"].as_u64())
        .unwrap();
    assert_eq!(sent_max, u64::from(cap));
    assert!(sent.get("reasoning_effort").is_none(), "{sent}");
    assert_eq!(sent["tools"].as_array().unwrap().len(), 1);
    assert_eq!(sent["tool_choice"], "required");
    assert_eq!(sent["parallel_tool_calls"], false);
}

#[tokio::test]
async fn claude_names_map_to_big_and_small_models() {
    let fake = FakeUpstream::start().await;
    let ex = load("openai/chat_basic.httprr").remove(0);
    fake.replay(&ex, "/v1/chat/completions").await;
    let mut cfg = config(&[("openai", format!("{}/v1", fake.uri()))]);
    cfg.big_model = Some("gpt-4o".into());
    cfg.small_model = Some("gpt-4o-mini".into());
    let relay = Relay::start_with(cfg).await;
    for (asked, routed) in [
        ("claude-sonnet-4-5-20250929", "gpt-4o"),
        ("claude-opus-4-1", "gpt-4o"),
        ("claude-haiku-4-5", "gpt-4o-mini"),
        ("gpt-4o-mini", "gpt-4o-mini"),
    ] {
        let resp = post(
            &relay,
            "/v1/messages",
            &json!({"model": asked, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(resp.status(), 200, "{asked}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["model"], asked);
        assert_eq!(fake.last_json().await["model"], routed, "{asked}");
    }
}

#[tokio::test]
async fn claude_names_go_to_anthropic_when_it_is_keyed() {
    let ex = load("anthropic/messages_basic.httprr").remove(0);
    let fake = FakeUpstream::start().await;
    fake.replay(&ex, "/base/messages").await;
    let anthropic = provider_of(WireFamily::Anthropic);
    let mut cfg = config(&[(anthropic, format!("{}/base", fake.uri()))]);
    cfg.big_model = Some("gpt-4o".into());
    let relay = Relay::start_with(cfg).await;
    let model = first_model_of(anthropic);
    let resp = post(
        &relay,
        "/v1/messages",
        &json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let recorded = ex.response_json();
    assert_eq!(body["content"][0]["text"], recorded["content"][0]["text"]);
    assert_eq!(
        body["usage"]["input_tokens"],
        recorded["usage"]["input_tokens"]
    );
    let sent = fake.last_json().await;
    assert_eq!(sent["model"], model);
    assert!(sent.get("cache_control").is_none(), "{sent}");

    // Claude Code marks its system prompt for caching: Anthropic is asked to cache automatically.
    let resp = post(
        &relay,
        "/v1/messages",
        &json!({"model": model, "max_tokens": 10,
                "system": [{"type": "text", "text": "long prompt", "cache_control": {"type": "ephemeral"}}],
                "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let sent = fake.last_json().await;
    assert_eq!(
        sent["cache_control"],
        json!({"type": "ephemeral"}),
        "{sent}"
    );

    // A breakpoint asking for the 1-hour TTL (WIRE.md §4.2) makes the top-level marker ask for it
    // too (the longest TTL asked for), so Anthropic reports and bills 1-hour writes.
    for (system_cc, message_cc) in [
        (json!({"type": "ephemeral", "ttl": "1h"}), Value::Null),
        (
            json!({"type": "ephemeral"}),
            json!({"type": "ephemeral", "ttl": "1h"}),
        ),
    ] {
        let resp = post(
            &relay,
            "/v1/messages",
            &json!({"model": model, "max_tokens": 10,
                    "system": [{"type": "text", "text": "long prompt", "cache_control": system_cc}],
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": message_cc}]}]}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let sent = fake.last_json().await;
        assert_eq!(
            sent["cache_control"],
            json!({"type": "ephemeral", "ttl": "1h"}),
            "{sent}"
        );
    }
}

#[tokio::test]
async fn count_tokens_exact_from_anthropic_estimated_elsewhere() {
    let exs = load("anthropic/count_tokens_then_messages.yaml");
    let count = exs
        .iter()
        .find(|e| e.path().ends_with("/count_tokens"))
        .unwrap();
    let fake = FakeUpstream::start().await;
    fake.replay(count, "/base/messages/count_tokens").await;
    let anthropic = provider_of(WireFamily::Anthropic);
    let relay = Relay::start(&[(anthropic, format!("{}/base", fake.uri()))]).await;
    let req = json!({"model": first_model_of(anthropic), "system": "s", "max_tokens": 5,
                     "messages": [{"role": "user", "content": "Hello there"}]});
    let resp = post(&relay, "/v1/messages/count_tokens", &req).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["input_tokens"], count.response_json()["input_tokens"]);
    let sent = fake.last_json().await;
    assert!(sent.get("max_tokens").is_none() && sent["messages"].is_array());

    // An OpenAI-served model: an estimate that grows with the prompt.
    let (_fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let mut sizes = Vec::new();
    for text in ["hi", &"word ".repeat(400)] {
        let resp = post(
            &relay,
            "/v1/messages/count_tokens",
            &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        sizes.push(v["input_tokens"].as_u64().unwrap());
    }
    assert!(
        sizes[0] >= 1 && sizes[1] > 400 && sizes[1] < 700,
        "{sizes:?}"
    );
}

/// An OpenAI upstream whose chat completions answer 503 "overloaded".
async fn overloaded_upstream() -> FakeUpstream {
    let fake = FakeUpstream::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(503).set_body_json(
            json!({"error": {"message": "The engine is currently overloaded", "type": "server_error"}}),
        ))
        .mount(&fake.server)
        .await;
    fake
}

#[tokio::test]
async fn errors_are_in_anthropic_format() {
    let fake = overloaded_upstream().await;
    let relay = Relay::start(&[("openai", format!("{}/v1", fake.uri()))]).await;
    let check = |status: u16, kind: &'static str| {
        move |(got, body): (u16, Value)| {
            assert_eq!(got, status, "{body}");
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], kind, "{body}");
            assert!(body["error"]["message"].as_str().unwrap().len() > 3);
        }
    };
    let call = |body: Value| {
        let relay = &relay;
        async move {
            let resp = post(relay, "/v1/messages", &body).await;
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    check(529, "overloaded_error")(
        call(json!({"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}))
            .await,
    );
    check(404, "not_found_error")(
        call(json!({"model": "no-such-model", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}))
            .await,
    );
    check(400, "invalid_request_error")(call(json!({"max_tokens": 5})).await);
    check(400, "invalid_request_error")(
        call(json!({"model": "gpt-4o", "max_tokens": 5, "messages": []})).await,
    );
    let resp = reqwest::Client::new()
        .get(relay.url("/v1/messages/batches"))
        .send()
        .await
        .unwrap();
    check(404, "not_found_error")((resp.status().as_u16(), resp.json().await.unwrap()));
}

#[tokio::test]
async fn models_in_anthropic_shape_for_anthropic_clients() {
    let (_fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let resp = reqwest::Client::new()
        .get(relay.url("/v1/models"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    let resp_id = resp.headers().get("request-id").cloned();
    let body: Value = resp.json().await.unwrap();
    let data = body["data"].as_array().unwrap();
    assert!(data.iter().any(|m| m["id"] == "gpt-4o"));
    assert!(
        data.iter()
            .all(|m| m["type"] == "model" && m["created_at"].is_string())
    );
    assert_eq!(body["has_more"], false);
    assert_eq!(body["first_id"], data[0]["id"]);
    // Every Anthropic answer carries a request id, lists and single models too.
    let model = reqwest::Client::new()
        .get(relay.url("/v1/models/gpt-4o"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(model.status(), 200);
    for h in [resp_id, model.headers().get("request-id").cloned()] {
        let h = h.expect("request-id header");
        assert!(h.to_str().unwrap().starts_with("req_"), "{h:?}");
    }
    // Without the header: OpenAI's shape, unchanged.
    let body: Value = relay.get("/v1/models").await.json().await.unwrap();
    assert_eq!(body["object"], "list");
}

#[tokio::test]
async fn gemini_stream_reaches_an_anthropic_client() {
    let ex = load("gemini/stream_generate_content_sse.yaml").remove(0);
    let want = common::native::gemini(&ex);
    let gemini = provider_of(WireFamily::Gemini);
    let model = first_model_of(gemini);
    let fake = FakeUpstream::start().await;
    fake.replay(&ex, &format!("/base/models/{model}:streamGenerateContent"))
        .await;
    let relay = Relay::start(&[(gemini, format!("{}/base", fake.uri()))]).await;
    let resp = post(
        &relay,
        "/v1/messages",
        &json!({"model": model, "max_tokens": 50, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let evs = events(&resp.text().await.unwrap());
    let text: String = evs
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text, want.text);
    let delta = evs.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["usage"]["output_tokens"], want.usage.1);
    assert_eq!(evs.last().unwrap().0, "message_stop");
}

#[tokio::test]
async fn signed_thinking_round_trips_through_an_anthropic_upstream() {
    // The recorded stream's thinking block ends with a signature_delta: the client gets it.
    let ex = load("anthropic/messages_stream_thinking.yaml").remove(0);
    let want_sig: String = ex
        .sse_data()
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v.pointer("/delta/signature")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    assert!(!want_sig.is_empty());
    let anthropic = provider_of(WireFamily::Anthropic);
    let model = first_model_of(anthropic);
    let fake = FakeUpstream::start().await;
    fake.replay(&ex, "/base/messages").await;
    let relay = Relay::start(&[(anthropic, format!("{}/base", fake.uri()))]).await;
    let resp = post(
        &relay,
        "/v1/messages",
        &json!({"model": model, "max_tokens": 4096, "stream": true,
                "thinking": {"type": "enabled", "budget_tokens": 2048},
                "messages": [{"role": "user", "content": "think"}]}),
    )
    .await;
    let evs = events(&resp.text().await.unwrap());
    let start = evs
        .iter()
        .find(|(n, d)| n == "content_block_start" && d["content_block"]["type"] == "thinking")
        .expect("a thinking block");
    let index = &start.1["index"];
    let sig: String = evs
        .iter()
        .filter(|(_, d)| &d["index"] == index && d["delta"]["type"] == "signature_delta")
        .map(|(_, d)| d["delta"]["signature"].as_str().unwrap())
        .collect();
    assert_eq!(sig, want_sig);
    // The client's budget went upstream as given.
    assert_eq!(
        fake.last_json().await["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );

    // The client echoes the signed block in a tool loop: it goes back first in the assistant
    // turn, unchanged, and thinking stays on.
    let resp = post(
        &relay,
        "/v1/messages",
        &json!({"model": model, "max_tokens": 4096, "stream": true,
                "thinking": {"type": "enabled", "budget_tokens": 2048},
                "tools": [{"name": "f", "input_schema": {"type": "object"}}],
                "messages": [
                    {"role": "user", "content": "think"},
                    {"role": "assistant", "content": [
                        {"type": "thinking", "thinking": "plan", "signature": want_sig},
                        {"type": "redacted_thinking", "data": "opaque"},
                        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let sent = fake.last_json().await;
    assert_eq!(sent["thinking"]["budget_tokens"], 2048, "{sent}");
    assert_eq!(
        sent["messages"][1]["content"][0],
        json!({"type": "thinking", "thinking": "plan", "signature": want_sig})
    );
    assert_eq!(
        sent["messages"][1]["content"][1],
        json!({"type": "redacted_thinking", "data": "opaque"})
    );
    assert_eq!(sent["messages"][1]["content"][2]["type"], "tool_use");

    // To a non-Anthropic upstream, echoed thinking is dropped silently.
    let (ofake, orelay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let resp = post(
        &orelay,
        "/v1/messages",
        &json!({"model": "gpt-4o", "max_tokens": 100, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "secret plan", "signature": want_sig}, {"type": "text", "text": "hello"}]},
            {"role": "user", "content": "again"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let sent = ofake.last_json().await;
    assert!(!sent.to_string().contains("secret plan"), "{sent}");
    assert_eq!(sent["messages"][1]["content"], "hello");
}

#[tokio::test]
async fn upstream_failure_mid_stream_becomes_an_error_event() {
    let fake = FakeUpstream::start().await;
    let chunk = |delta: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
        )
    };
    let body = chunk(json!({"role": "assistant", "content": ""}))
        + &chunk(json!({"content": "partial"}))
        + "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n";
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .mount(&fake.server)
        .await;
    let relay = Relay::start(&[("openai", format!("{}/v1", fake.uri()))]).await;
    let resp = post(
        &relay,
        "/v1/messages",
        &json!({"model": "gpt-4o", "max_tokens": 10, "stream": true,
                "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let header_id = resp.headers()["request-id"].to_str().unwrap().to_string();
    let evs = events(&resp.text().await.unwrap());
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "error"
        ]
    );
    let err = &evs[4].1;
    assert_eq!(err["error"]["type"], "api_error");
    assert!(err["error"]["message"].as_str().unwrap().contains("boom"));
    // The in-stream error event of WIRE.md §4.5 is `{"type":"error","error":{..}}` only: the
    // request id is in the stream's `request-id` header, not repeated here.
    assert_eq!(err.as_object().unwrap().len(), 2, "{err}");
    assert!(header_id.starts_with("req_"), "{header_id}");
}

#[tokio::test]
async fn each_request_leaves_one_usage_record_of_the_anthropic_api() {
    let ex = load("openai/chat_stream_include_usage.httprr").remove(0);
    let (_, want_usage) = openai_stream_text(&ex);
    let fake = FakeUpstream::start().await;
    fake.replay(&ex, "/v1/chat/completions").await;
    let rec = Recording::start(&[("openai", format!("{}/v1", fake.uri()))]).await;
    let resp = post(
        &rec.relay,
        "/v1/messages?beta=true",
        &json!({"model": "gpt-4o", "max_tokens": 10, "stream": true,
                "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    // The stream's record is sent when its body is dropped, just after the last byte.
    let records = rec.records(1).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r.frontend, "anthropic-api");
    assert_eq!(r.endpoint, "/v1/messages");
    assert_eq!(r.tags, ["client-tag"], "x-api-key is the tag");
    assert!(r.stream && r.complete && r.status == 200);
    assert_eq!(
        r.input_tokens,
        want_usage["prompt_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        r.output_tokens,
        want_usage["completion_tokens"].as_u64().unwrap()
    );
    rec.recorder.shutdown();
}

/// What an Anthropic client received, in the terms of `common::native::Recorded`.
fn received(body: &str, stream: bool) -> common::native::Recorded {
    let mut r = common::native::Recorded::default();
    let mut usage = serde_json::Map::new();
    let mut take = |u: &Value| {
        for (k, v) in u.as_object().into_iter().flatten() {
            usage.insert(k.clone(), v.clone());
        }
    };
    if stream {
        let mut tools: Vec<(Value, String, String)> = Vec::new();
        for (name, d) in events(body) {
            match name.as_str() {
                "message_start" => take(&d["message"]["usage"]),
                "message_delta" => take(&d["usage"]),
                "content_block_start" if d["content_block"]["type"] == "tool_use" => tools.push((
                    d["index"].clone(),
                    d["content_block"]["name"].as_str().unwrap().into(),
                    String::new(),
                )),
                "content_block_delta" => {
                    let x = &d["delta"];
                    r.text.push_str(x["text"].as_str().unwrap_or_default());
                    r.thinking
                        .push_str(x["thinking"].as_str().unwrap_or_default());
                    if let Some(p) = x["partial_json"].as_str() {
                        let t = tools.iter_mut().find(|t| t.0 == d["index"]).unwrap();
                        t.2.push_str(p);
                    }
                }
                "error" => panic!("error event: {d}"),
                _ => {}
            }
        }
        r.tools = tools
            .into_iter()
            .map(|(_, n, a)| {
                let a = if a.is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(&a).unwrap()
                };
                (n, a)
            })
            .collect();
    } else {
        let v: Value = serde_json::from_str(body).unwrap();
        for b in v["content"].as_array().unwrap() {
            match b["type"].as_str().unwrap() {
                "text" => r.text.push_str(b["text"].as_str().unwrap()),
                "thinking" => r.thinking.push_str(b["thinking"].as_str().unwrap()),
                "tool_use" => r
                    .tools
                    .push((b["name"].as_str().unwrap().into(), b["input"].clone())),
                _ => {}
            }
        }
        take(&v["usage"]);
    }
    let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
    r.usage = (
        n("input_tokens") + n("cache_read_input_tokens") + n("cache_creation_input_tokens"),
        n("output_tokens"),
    );
    r
}

#[tokio::test]
async fn every_recorded_anthropic_and_gemini_answer_reaches_anthropic_clients() {
    let mut checked = 0;
    for file in common::fixtures::all_fixture_files() {
        let family = match file.split('/').next().unwrap() {
            "anthropic" => WireFamily::Anthropic,
            "gemini" => WireFamily::Gemini,
            _ => continue,
        };
        for ex in load(&file).into_iter().filter(|ex| {
            let p = ex.path();
            ex.status == 200
                && (p.ends_with("/messages")
                    || p.ends_with(":generateContent")
                    || p.ends_with(":streamGenerateContent"))
        }) {
            let want = match family {
                WireFamily::Anthropic => common::native::anthropic(&ex),
                _ => common::native::gemini(&ex),
            };
            let provider = provider_of(family);
            let model = first_model_of(provider);
            let stream = ex.is_sse();
            let at = match family {
                WireFamily::Anthropic => "/base/messages".to_string(),
                _ if stream => format!("/base/models/{model}:streamGenerateContent"),
                _ => format!("/base/models/{model}:generateContent"),
            };
            let fake = FakeUpstream::start().await;
            fake.replay(&ex, &at).await;
            let relay = Relay::start(&[(provider, format!("{}/base", fake.uri()))]).await;
            let resp = post(
                &relay,
                "/v1/messages",
                &json!({"model": model, "max_tokens": 1000, "stream": stream,
                        "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
            assert_eq!(resp.status(), 200, "{file}");
            let got = received(&resp.text().await.unwrap(), stream);
            assert_eq!(got, want, "{file}");
            checked += 1;
        }
    }
    assert!(checked >= 14, "only {checked} recorded exchanges replayed");
}

#[tokio::test]
async fn images_in_tool_results_reach_an_openai_upstream_after_the_tool_messages() {
    let (fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let resp = post(
        &relay,
        "/v1/messages",
        &json!({"model": "gpt-4o", "max_tokens": 10, "messages": [
            {"role": "user", "content": "read the screenshot"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_r", "name": "Read", "input": {"file_path": "/s.png"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_r", "content": [
                {"type": "text", "text": "the file"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_1X1}}]}]}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let sent = fake.last_json().await;
    let msgs = sent["messages"].as_array().unwrap();
    assert_eq!(msgs[2]["role"], "tool");
    assert_eq!(msgs[2]["content"], "the file");
    assert_eq!(msgs[3]["role"], "user");
    assert_eq!(
        msgs[3]["content"][1]["image_url"]["url"],
        format!("data:image/png;base64,{PNG_1X1}")
    );
}

#[tokio::test]
async fn the_matched_stop_sequence_reaches_the_client() {
    let anthropic = provider_of(WireFamily::Anthropic);
    let model = first_model_of(anthropic);
    let fake = FakeUpstream::start().await;
    let message = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": "one two"}], "stop_reason": "stop_sequence",
        "stop_sequence": "END", "usage": {"input_tokens": 5, "output_tokens": 2}});
    let sse = [
        ("message_start", json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 5, "output_tokens": 1}}})),
        ("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "one two"}})),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        ("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"}, "usage": {"output_tokens": 2}})),
        ("message_stop", json!({"type": "message_stop"})),
    ]
    .iter()
    .map(|(e, d)| format!("event: {e}\ndata: {d}\n\n"))
    .collect::<String>();
    Mock::given(method("POST"))
        .and(path("/base/messages"))
        .and(wiremock::matchers::body_partial_json(
            json!({"stream": true}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_raw(sse, "text/event-stream"))
        .with_priority(1)
        .mount(&fake.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/base/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(message))
        .mount(&fake.server)
        .await;
    let relay = Relay::start(&[(anthropic, format!("{}/base", fake.uri()))]).await;
    let req = |stream: bool| {
        json!({"model": model, "max_tokens": 10, "stream": stream, "stop_sequences": ["END"],
               "messages": [{"role": "user", "content": "count"}]})
    };
    let body: Value = post(&relay, "/v1/messages", &req(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["stop_reason"], "stop_sequence");
    assert_eq!(body["stop_sequence"], "END");
    assert_eq!(fake.last_json().await["stop_sequences"], json!(["END"]));
    let evs = events(
        &post(&relay, "/v1/messages", &req(true))
            .await
            .text()
            .await
            .unwrap(),
    );
    let delta = &evs.iter().find(|(n, _)| n == "message_delta").unwrap().1;
    assert_eq!(delta["delta"]["stop_reason"], "stop_sequence");
    assert_eq!(delta["delta"]["stop_sequence"], "END");
}

#[tokio::test]
async fn every_answer_carries_a_request_id_header() {
    // Anthropic answers every request with `request-id` (WIRE.md §4.1); the SDKs expose it as
    // `_request_id` / `APIStatusError.request_id`, and Claude Code logs it.
    let (_fake, relay, _ex) = openai_fixture("openai/chat_basic.httprr").await;
    let msg = json!({"model": "gpt-4o", "max_tokens": 10,
                     "messages": [{"role": "user", "content": "Hello"}]});
    let mut seen = Vec::new();
    for (path, body, status) in [
        ("/v1/messages", msg.clone(), 200),
        (
            "/v1/messages/count_tokens",
            json!({"model": "gpt-4o", "messages": msg["messages"]}),
            200,
        ),
        (
            "/v1/messages",
            json!({"model": "no-such-model", "max_tokens": 5,
                                "messages": [{"role": "user", "content": "x"}]}),
            404,
        ),
        ("/v1/messages", json!({"max_tokens": 5}), 400),
    ] {
        let resp = post(&relay, path, &body).await;
        assert_eq!(resp.status(), status, "{path} {body}");
        let id = resp
            .headers()
            .get("request-id")
            .unwrap_or_else(|| panic!("no request-id on {path} {status}"))
            .to_str()
            .unwrap()
            .to_string();
        assert!(id.starts_with("req_") && id.len() > 10, "{id}");
        seen.push(id);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4, "ids repeat: {seen:?}");
}

/// Status and body of an Anthropic error response, checked to carry one `req_...` id in both
/// the `request-id` header and the body's `request_id` (WIRE.md §4.6:
/// `{"type":"error","error":{..},"request_id":"req_.."}`).
async fn error_with_request_id(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let header = resp
        .headers()
        .get("request-id")
        .unwrap_or_else(|| panic!("no request-id header on a {status}"))
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["request_id"], header.as_str(), "{status}: {body}");
    assert!(header.starts_with("req_") && header.len() > 10, "{header}");
    (status, body)
}

#[tokio::test]
async fn error_bodies_carry_the_request_id_of_the_header() {
    let fake = overloaded_upstream().await;
    let relay = Relay::start_with(llm_relay::config::Config {
        max_body_bytes: 4096,
        ..config(&[("openai", format!("{}/v1", fake.uri()))])
    })
    .await;
    let msg = |model: &str| {
        json!({"model": model, "max_tokens": 5,
               "messages": [{"role": "user", "content": "x"}]})
    };
    let big = json!({"model": "gpt-4o", "max_tokens": 5,
                     "messages": [{"role": "user", "content": "x".repeat(8192)}]});
    let mut ids = Vec::new();
    for (path, body, status, kind) in [
        ("/v1/messages", msg("gpt-4o"), 529, "overloaded_error"),
        ("/v1/messages", msg("no-such-model"), 404, "not_found_error"),
        (
            "/v1/messages",
            json!({"max_tokens": 5}),
            400,
            "invalid_request_error",
        ),
        ("/v1/messages", big, 413, "request_too_large"),
        (
            "/v1/messages/count_tokens",
            json!({"model": "gpt-4o"}),
            400,
            "invalid_request_error",
        ),
        (
            "/v1/messages/no-such-route",
            msg("gpt-4o"),
            404,
            "not_found_error",
        ),
    ] {
        let (got, body) = error_with_request_id(post(&relay, path, &body).await).await;
        assert_eq!(
            (got, body["error"]["type"].as_str()),
            (status, Some(kind)),
            "{path}: {body}"
        );
        ids.push(body["request_id"].as_str().unwrap().to_string());
    }
    // A path under /v1/messages that is not served (answered by the router: no handler ran).
    let resp = reqwest::Client::new()
        .get(relay.url("/v1/messages/batches"))
        .send()
        .await
        .unwrap();
    let (got, body) = error_with_request_id(resp).await;
    assert_eq!(got, 404, "{body}");
    ids.push(body["request_id"].as_str().unwrap().to_string());
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "ids repeat: {ids:?}");
}

#[tokio::test]
async fn tools_without_input_schema_or_name_are_a_400_naming_the_field() {
    let (fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let schema = json!({"type": "object", "properties": {}});
    let with_tools = |tools: Value| {
        json!({"model": "gpt-4o", "max_tokens": 5, "tools": tools,
               "messages": [{"role": "user", "content": "x"}]})
    };
    for (tools, field) in [
        // The OpenAI shape.
        (
            json!([{"type": "function", "function": {"name": "f", "parameters": schema}}]),
            "tools.0.input_schema",
        ),
        (
            json!([{"name": "ok", "input_schema": schema}, {"name": "g"}]),
            "tools.1.input_schema",
        ),
        (
            json!([{"type": "custom", "name": "g", "parameters": schema}]),
            "tools.0.input_schema",
        ),
        (
            json!([{"name": "ok", "input_schema": schema}, {"input_schema": schema}]),
            "tools.1.name",
        ),
        (
            json!([{"type": "custom", "input_schema": schema}]),
            "tools.0.name",
        ),
        // A server-tool type without the name every server tool has.
        (json!([{"type": "web_search_20250305"}]), "tools.0.name"),
    ] {
        for path in ["/v1/messages", "/v1/messages/count_tokens"] {
            let resp = post(&relay, path, &with_tools(tools.clone())).await;
            assert_eq!(resp.status(), 400, "{path} {tools}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("{field}: Field required")),
                "{tools}: {message}"
            );
        }
    }
    assert!(fake.received().await.is_empty(), "nothing went upstream");
    // Genuine server tools (a type other than custom, and a name) are still accepted and left
    // out for a non-Anthropic upstream, as before.
    let resp = post(
        &relay,
        "/v1/messages",
        &with_tools(json!([
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 1},
            {"type": "bash_20250124", "name": "bash"},
            {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
            {"type": "custom", "name": "mine", "input_schema": schema}])),
    )
    .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let sent = fake.last_json().await;
    let names: Vec<&str> = sent["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mine"]);
}

/// A relay whose usage records go to a fresh store, and a way to wait for `n` records.
struct Recording {
    relay: Relay,
    recorder: std::sync::Arc<llm_relay::usage::recorder::Recorder>,
    store: std::sync::Arc<llm_relay::store::embedded::RedbStore>,
    _dir: common::tmp::TempDir,
}

impl Recording {
    async fn start(upstreams: &[(&str, String)]) -> Recording {
        use llm_relay::relay::AppState;
        use llm_relay::store::embedded::RedbStore;
        use llm_relay::usage::record::UsageSettings;
        use llm_relay::usage::recorder::Recorder;
        let dir = common::tmp::TempDir::new("anthropic-usage");
        let store = std::sync::Arc::new(RedbStore::open(&dir.0).unwrap());
        let recorder =
            Recorder::start(store.clone(), UsageSettings::default(), Vec::new()).unwrap();
        let state = AppState::new(config(upstreams))
            .unwrap()
            .with_recorder(recorder.clone());
        let relay = Relay::start_with_state(state).await;
        Recording {
            relay,
            recorder,
            store,
            _dir: dir,
        }
    }

    /// The records once there are `n` (newest first); what there is after ~2 s otherwise.
    async fn records(&self, n: usize) -> Vec<llm_relay::usage::UsageRecord> {
        use llm_relay::store::UsageQuery;
        use llm_relay::usage::query::Filter;
        let mut records = Vec::new();
        for _ in 0..200 {
            let r = self.recorder.clone();
            tokio::task::spawn_blocking(move || r.flush())
                .await
                .unwrap();
            records = self.store.recent(&Filter::default(), 10).unwrap();
            if records.len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        records
    }
}

#[tokio::test]
async fn an_overloaded_upstream_is_recorded_with_the_529_the_client_got() {
    let fake = overloaded_upstream().await;
    let rec = Recording::start(&[("openai", format!("{}/v1", fake.uri()))]).await;
    let msg = json!({"model": "gpt-4o", "max_tokens": 5,
                     "messages": [{"role": "user", "content": "x"}]});
    let resp = post(&rec.relay, "/v1/messages", &msg).await;
    assert_eq!(resp.status(), 529);
    let records = rec.records(1).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].frontend, "anthropic-api");
    assert_eq!(records[0].status, 529, "{records:#?}");
    assert_eq!(records[0].error.as_deref(), Some("upstream_status"));
    // The OpenAI API passes the upstream's status through, and records that.
    let resp = rec
        .relay
        .http
        .post(rec.relay.url("/v1/chat/completions"))
        .json(&json!({"model": "gpt-4o", "messages": msg["messages"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let records = rec.records(2).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let openai = records.iter().find(|r| r.frontend == "openai-api").unwrap();
    assert_eq!(openai.status, 503, "{records:#?}");
    rec.recorder.shutdown();
}

/// The recorded cache answer (`anthropic/messages_cache_usage.yaml`, 2nd exchange: 3 input,
/// 418 written, 1,111 read, 33 output) with 300 of its 418 writes made 1-hour ones, as Anthropic
/// reports writes under `cache_control` `ttl: "1h"`: the client sees the same split, and the
/// stored record prices the 1-hour part at the 1-hour rate.
#[tokio::test]
async fn one_hour_cache_writes_reach_the_client_and_are_priced_apart() {
    let mut ex = load("anthropic/messages_cache_usage.yaml").remove(1);
    let mut answer = ex.response_json();
    assert_eq!(
        answer["usage"]["cache_creation"]["ephemeral_5m_input_tokens"],
        418
    );
    answer["usage"]["cache_creation"] =
        json!({"ephemeral_1h_input_tokens": 300, "ephemeral_5m_input_tokens": 118});
    ex.response_body = serde_json::to_vec(&answer).unwrap();
    let model = answer["model"].as_str().unwrap().to_string();
    let fake = FakeUpstream::start().await;
    fake.replay(&ex, "/base/messages").await;
    let rec = Recording::start(&[("anthropic", format!("{}/base", fake.uri()))]).await;
    let resp = post(
        &rec.relay,
        "/v1/messages",
        &json!({"model": model, "max_tokens": 100,
                "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let u = &body["usage"];
    assert_eq!(
        (
            &u["input_tokens"],
            &u["cache_read_input_tokens"],
            &u["cache_creation_input_tokens"]
        ),
        (&json!(3), &json!(1111), &json!(418))
    );
    assert_eq!(
        u["cache_creation"],
        json!({"ephemeral_5m_input_tokens": 118, "ephemeral_1h_input_tokens": 300})
    );
    let records = rec.records(1).await;
    let r = &records[0];
    assert_eq!(
        (
            r.input_tokens,
            r.cache_read_tokens,
            r.cache_write_tokens,
            r.cache_write_1h_tokens
        ),
        (1532, 1111, 418, 300)
    );
    // 3 uncached + 1,111 read + 118 five-minute + 300 one-hour writes + 33 output.
    let p = llm_relay::catalog::resolve(&model).unwrap().pricing();
    assert_eq!(p.cache_write_1h, 2.0 * p.input);
    let want = (3.0 * p.input
        + 1111.0 * p.cache_read
        + 118.0 * p.cache_write
        + 300.0 * p.cache_write_1h
        + 33.0 * p.output)
        / 1e6;
    let got = r.cost_usd().unwrap();
    assert!((got - want).abs() < 1e-12, "got {got}, want {want}");
    let all_5m =
        (3.0 * p.input + 1111.0 * p.cache_read + 418.0 * p.cache_write + 33.0 * p.output) / 1e6;
    assert!(got > all_5m);
    rec.recorder.shutdown();
}
