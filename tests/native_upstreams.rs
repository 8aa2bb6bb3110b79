//! The Anthropic Messages and Gemini generateContent upstreams against fake providers replaying
//! real recorded traffic (tests/fixtures/anthropic, tests/fixtures/gemini): what each client API
//! receives (text, reasoning, tool calls, token counts normalised per WIRE.md §7.7), what
//! llm-relay sent upstream (field by field against WIRE.md §4 / §5 / §7), error mapping, tool-call
//! round trips (Anthropic `tool_use` ids, Gemini 3 `thoughtSignature` echo) and streams cut
//! mid-way. Data-driven where it can be: a new recorded file is replayed without new test code.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_upstream::FakeUpstream;
use common::fixtures::{Exchange, all_fixture_files, load};
use common::relay::{Relay, first_model_of, ndjson, sse_payloads, test_key};
use llm_relay::catalog::{ModelId, PROVIDERS, WireFamily};
use serde_json::{Value, json};
use wiremock::ResponseTemplate;
use wiremock::matchers::{method, path};

/// A 1x1 PNG, base64.
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn provider_of(family: WireFamily) -> &'static str {
    PROVIDERS.iter().find(|p| p.wire == family).unwrap().name
}

/// Where the fake serves `model` of `provider` (below the `/base` prefix of the base URL).
fn upstream_path(family: WireFamily, model: &str, stream: bool) -> String {
    match family {
        WireFamily::Anthropic => "/base/messages".into(),
        WireFamily::Gemini if stream => format!("/base/models/{model}:streamGenerateContent"),
        WireFamily::Gemini => format!("/base/models/{model}:generateContent"),
        other => panic!("not a native family: {other:?}"),
    }
}

/// A relay whose `family` provider points at a fake serving `ex` for `model`.
async fn serve(family: WireFamily, model: &str, ex: &Exchange) -> (FakeUpstream, Relay) {
    let fake = FakeUpstream::start().await;
    fake.replay(ex, &upstream_path(family, model, ex.is_sse()))
        .await;
    let relay = Relay::start(&[(provider_of(family), format!("{}/base", fake.uri()))]).await;
    (fake, relay)
}

/// What a client should see: answer text, reasoning text, tool names, (prompt, completion).
#[derive(Debug, Default, PartialEq)]
struct Seen {
    text: String,
    thinking: String,
    tools: Vec<String>,
    usage: Option<(u64, u64)>,
    error: bool,
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// The client view a recording calls for (read by tests/common/native.rs, not by llm-relay).
fn seen(r: common::native::Recorded) -> Seen {
    Seen {
        text: r.text,
        thinking: r.thinking,
        tools: r.tools.into_iter().map(|(name, _)| name).collect(),
        usage: Some(r.usage),
        error: false,
    }
}

fn expected_anthropic(ex: &Exchange) -> Seen {
    seen(common::native::anthropic(ex))
}

fn expected_gemini(ex: &Exchange) -> Seen {
    seen(common::native::gemini(ex))
}

/// The client view through the OpenAI API (SSE or JSON).
async fn via_openai(relay: &Relay, model: &str, stream: bool) -> Seen {
    let body = json!({"model": model, "stream": stream, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "replay"}]});
    let resp = relay.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200, "{model}");
    let mut s = Seen::default();
    if stream {
        for p in sse_payloads(&resp.text().await.unwrap()) {
            if p == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(&p).unwrap();
            s.error |= v.get("error").is_some();
            let d = &v["choices"][0]["delta"];
            s.text.push_str(d["content"].as_str().unwrap_or_default());
            s.thinking
                .push_str(d["reasoning_content"].as_str().unwrap_or_default());
            for c in d["tool_calls"].as_array().into_iter().flatten() {
                if let Some(n) = c["function"]["name"].as_str() {
                    s.tools.push(n.into());
                }
            }
            if v["usage"].is_object() {
                s.usage = Some((
                    u(&v["usage"], "prompt_tokens"),
                    u(&v["usage"], "completion_tokens"),
                ));
            }
        }
    } else {
        let v: Value = resp.json().await.unwrap();
        let m = &v["choices"][0]["message"];
        s.text = m["content"].as_str().unwrap_or_default().into();
        s.thinking = m["reasoning_content"].as_str().unwrap_or_default().into();
        s.tools = m["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["function"]["name"].as_str().unwrap().into())
            .collect();
        s.usage = Some((
            u(&v["usage"], "prompt_tokens"),
            u(&v["usage"], "completion_tokens"),
        ));
    }
    s
}

/// The client view through the Ollama API (NDJSON or JSON).
async fn via_ollama(relay: &Relay, model: &str, stream: bool) -> Seen {
    let body = json!({"model": model, "stream": stream,
                      "messages": [{"role": "user", "content": "replay"}]});
    let resp = relay.post("/api/chat", &body).await;
    assert_eq!(resp.status(), 200, "{model}");
    let lines = if stream {
        ndjson(&resp.text().await.unwrap())
    } else {
        vec![resp.json().await.unwrap()]
    };
    let mut s = Seen::default();
    for v in lines {
        s.error |= v.get("error").is_some();
        let m = &v["message"];
        s.text.push_str(m["content"].as_str().unwrap_or_default());
        s.thinking
            .push_str(m["thinking"].as_str().unwrap_or_default());
        for c in m["tool_calls"].as_array().into_iter().flatten() {
            s.tools.push(c["function"]["name"].as_str().unwrap().into());
            assert!(c["function"]["arguments"].is_object(), "{c}");
        }
        if v["done"] == true {
            s.usage = Some((u(&v, "prompt_eval_count"), u(&v, "eval_count")));
        }
    }
    s
}

#[tokio::test]
async fn every_recorded_anthropic_and_gemini_answer_reaches_both_client_apis() {
    let mut checked = 0;
    for file in all_fixture_files() {
        let (family, expected): (WireFamily, fn(&Exchange) -> Seen) =
            match file.split('/').next().unwrap() {
                "anthropic" => (WireFamily::Anthropic, expected_anthropic),
                "gemini" => (WireFamily::Gemini, expected_gemini),
                _ => continue,
            };
        for ex in load(&file).into_iter().filter(|ex| {
            let p = ex.path();
            ex.status == 200
                && (p.ends_with("/messages")
                    || p.ends_with(":generateContent")
                    || p.ends_with(":streamGenerateContent"))
        }) {
            let want = expected(&ex);
            let model = first_model_of(provider_of(family));
            let (_fake, relay) = serve(family, model, &ex).await;
            let stream = ex.is_sse();
            let got = via_openai(&relay, model, stream).await;
            assert_eq!(got, want, "{file} via the OpenAI API");
            let got = via_ollama(&relay, model, stream).await;
            assert_eq!(got, want, "{file} via the Ollama API");
            checked += 1;
        }
    }
    assert!(checked >= 14, "only {checked} recorded exchanges replayed");
}

/// A request using every field the native encoders translate, as an OpenAI client sends it.
fn rich_openai_request(model: &str, stream: bool) -> Value {
    json!({
        "model": model, "stream": stream, "max_tokens": 300, "temperature": 1.5, "top_p": 0.9,
        "stop": ["END"], "seed": 7, "user": "u-1", "parallel_tool_calls": false,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema":
            {"type": "object", "properties": {"c": {"type": ["string", "null"]}}, "additionalProperties": false}}},
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
            "parameters": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"$ref": "#/$defs/Unit"}},
                "required": ["city"], "additionalProperties": false,
                "$defs": {"Unit": {"enum": ["c", "f"]}}}}}],
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": "Use metric."},
            {"role": "user", "content": [{"type": "text", "text": "Weather here?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_B64}")}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "call_a", "content": "11C"},
            {"role": "tool", "tool_call_id": "call_b", "content": "{\"temp\":20}"},
            {"role": "user", "content": "And tomorrow?"}
        ]
    })
}

#[tokio::test]
async fn anthropic_request_is_translated_field_by_field() {
    let ex = load("anthropic/messages_basic.httprr").remove(0);
    let model = first_model_of(provider_of(WireFamily::Anthropic));
    let (fake, relay) = serve(WireFamily::Anthropic, model, &ex).await;
    let resp = relay
        .post("/v1/chat/completions", &rich_openai_request(model, false))
        .await;
    assert_eq!(resp.status(), 200);
    let sent = fake.received().await;
    let req = sent.last().unwrap();
    let h = |k: &str| req.headers.get(k).unwrap().to_str().unwrap().to_string();
    assert_eq!(h("x-api-key"), test_key(provider_of(WireFamily::Anthropic)));
    assert_eq!(h("anthropic-version"), "2023-06-01");
    assert!(req.headers.get("authorization").is_none());
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    let png = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}});
    assert_eq!(
        body,
        json!({
            "model": model,
            "max_tokens": 300,
            "system": "Be terse.\n\nUse metric.",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather here?"}, png]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_b", "name": "get_weather", "input": {"city": "Rome"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_a", "content": "11C"},
                    {"type": "tool_result", "tool_use_id": "call_b", "content": "{\"temp\":20}"},
                    {"type": "text", "text": "And tomorrow?"}]}
            ],
            "temperature": 1.0,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u-1"},
            "output_config": {"format": {"type": "json_schema", "schema":
                {"type": "object", "properties": {"c": {"type": ["string", "null"]}}, "additionalProperties": false}}},
            "tools": [{"name": "get_weather", "description": "Weather for a city", "input_schema":
                {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                 "properties": {"city": {"type": "string"}, "unit": {"$ref": "#/$defs/Unit"}},
                 "required": ["city"], "additionalProperties": false, "$defs": {"Unit": {"enum": ["c", "f"]}}}}],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true}
        })
    );

    // No max_tokens from the client: the catalog default (providers.yaml quirk) is sent.
    let resp = relay
        .post("/api/chat", &json!({"model": model, "stream": false, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    let body = fake.last_json().await;
    let m = ModelId::all().find(|m| m.info().id == model).unwrap();
    assert_eq!(
        body["max_tokens"],
        m.quirks()
            .default_max_tokens
            .or(m.info().max_output_tokens)
            .unwrap()
    );
    assert!(body.get("stream").is_none() && body.get("system").is_none());
}

#[tokio::test]
async fn gemini_request_is_translated_field_by_field() {
    let ex = load("gemini/generate_content_basic.yaml").remove(0);
    let model = first_model_of(provider_of(WireFamily::Gemini));
    let (fake, relay) = serve(WireFamily::Gemini, model, &ex).await;
    let resp = relay
        .post("/v1/chat/completions", &rich_openai_request(model, false))
        .await;
    assert_eq!(resp.status(), 200);
    let sent = fake.received().await;
    let req = sent.last().unwrap();
    assert_eq!(
        req.headers.get("x-goog-api-key").unwrap().to_str().unwrap(),
        test_key(provider_of(WireFamily::Gemini))
    );
    assert!(req.headers.get("authorization").is_none());
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    let calls = &body["contents"][1]["parts"];
    // The client's ids carry no signature; a thinking model gets Google's documented skip value
    // on the first call of the turn (ai.google.dev/gemini-api/docs/thought-signatures).
    let m = ModelId::all().find(|m| m.info().id == model).unwrap();
    if m.info().has(llm_relay::catalog::Capability::Reasoning) {
        assert_eq!(
            calls[0]["thoughtSignature"],
            "skip_thought_signature_validator"
        );
    }
    assert!(calls[1].get("thoughtSignature").is_none());
    let mut body = body;
    for p in body["contents"][1]["parts"].as_array_mut().unwrap() {
        p.as_object_mut().unwrap().remove("thoughtSignature");
    }
    assert_eq!(
        body,
        json!({
            "systemInstruction": {"parts": [{"text": "Be terse.\n\nUse metric."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Weather here?"},
                    {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}]},
                {"role": "model", "parts": [
                    {"functionCall": {"id": "call_a", "name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"id": "call_b", "name": "get_weather", "args": {"city": "Rome"}}}]},
                {"role": "user", "parts": [
                    {"functionResponse": {"id": "call_a", "name": "get_weather", "response": {"result": "11C"}}},
                    {"functionResponse": {"id": "call_b", "name": "get_weather", "response": {"temp": 20}}},
                    {"text": "And tomorrow?"}]}
            ],
            "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Weather for a city",
                "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"},
                    "unit": {"type": "STRING", "enum": ["c", "f"]}}, "required": ["city"]}}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
            "generationConfig": {"temperature": 1.5, "topP": 0.9, "stopSequences": ["END"], "seed": 7,
                "maxOutputTokens": 300, "responseMimeType": "application/json",
                "responseSchema": {"type": "OBJECT", "properties": {"c": {"type": "STRING", "nullable": true}}}}
        })
    );

    // Streams go to streamGenerateContent?alt=sse; Ollama `format: "json"` is JSON mode.
    let ex = load("gemini/stream_generate_content_sse.yaml").remove(0);
    fake.replay(&ex, &upstream_path(WireFamily::Gemini, model, true))
        .await;
    let resp = relay
        .post(
            "/api/chat",
            &json!({"model": model, "format": "json", "options": {"top_k": 3},
                                    "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    let sent = fake.received().await;
    let req = sent.last().unwrap();
    assert_eq!(req.url.query(), Some("alt=sse"));
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        body["generationConfig"],
        json!({"topK": 3, "responseMimeType": "application/json"})
    );
}

/// Upstream error bodies keep their status, message and machine-readable type through both
/// client APIs (WIRE.md §4.6, §5.6, §7.8).
#[tokio::test]
async fn upstream_errors_keep_status_and_message() {
    let cases = [
        (
            WireFamily::Anthropic,
            "anthropic/error_400_invalid_request.yaml",
            400,
            "invalid_request_error",
        ),
        (
            WireFamily::Gemini,
            "gemini/error_429_retry_info.body.json",
            429,
            "RESOURCE_EXHAUSTED",
        ),
        (
            WireFamily::Gemini,
            "gemini/error_403_permission_denied.httprr",
            403,
            "PERMISSION_DENIED",
        ),
    ];
    for (family, file, status, code) in cases {
        let ex = load(file).remove(0);
        assert_eq!(ex.status, status);
        let message = ex.response_json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        let model = first_model_of(provider_of(family));
        for stream in [false, true] {
            let fake = FakeUpstream::start().await;
            fake.replay(&ex, &upstream_path(family, model, stream))
                .await;
            let relay =
                Relay::start(&[(provider_of(family), format!("{}/base", fake.uri()))]).await;
            let body = json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "x"}]});
            let resp = relay.post("/v1/chat/completions", &body).await;
            assert_eq!(resp.status(), status, "{file}");
            if status == 429 {
                // RetryInfo.retryDelay "34.4s" in the body becomes Retry-After: 35.
                assert_eq!(resp.headers().get("retry-after").unwrap(), "35", "{file}");
            }
            let v: Value = resp.json().await.unwrap();
            assert!(
                v["error"]["message"].as_str().unwrap().contains(&message),
                "{v}"
            );
            assert_eq!(v["error"]["code"], code, "{v}");
            let resp = relay.post("/api/chat", &body).await;
            assert_eq!(resp.status(), status, "{file}");
            let v: Value = resp.json().await.unwrap();
            assert!(v["error"].as_str().unwrap().contains(&message), "{v}");
        }
    }
}

/// The recorded stream with everything from the event containing `marker` on removed, as if
/// the upstream closed the connection mid-answer.
fn cut_at(ex: &Exchange, marker: &str) -> Exchange {
    let body = String::from_utf8(ex.response_body.clone()).unwrap();
    let at = body
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in the recording"));
    // The `event:`/`data:` lines of that event start after the previous blank line (LF or CRLF).
    let start = body[..at]
        .rfind("data:")
        .map(|d| {
            body[..d]
                .rfind("event:")
                .filter(|e| body[*e..d].lines().count() <= 2)
                .unwrap_or(d)
        })
        .unwrap();
    let mut cut = ex.clone();
    cut.response_body = body.as_bytes()[..start].to_vec();
    cut
}

/// A stream the upstream cuts mid-way ends the client's stream with an error event (OpenAI
/// `data: {"error":..}` then `[DONE]`; Ollama an `{"error":..}` line), never a normal finish
/// and never a hang.
#[tokio::test]
async fn a_stream_cut_mid_way_ends_with_an_error_event() {
    let cases = [
        (
            WireFamily::Anthropic,
            cut_at(
                &load("anthropic/messages_stream_tool_use.yaml").remove(0),
                "content_block_stop",
            ),
        ),
        (
            WireFamily::Gemini,
            cut_at(
                &load("gemini/stream_generate_content_sse.yaml").remove(0),
                "finishReason",
            ),
        ),
    ];
    for (family, ex) in cases {
        let model = first_model_of(provider_of(family));
        let (_fake, relay) = serve(family, model, &ex).await;
        let body =
            json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "x"}]});
        let resp = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            relay.post("/v1/chat/completions", &body),
        )
        .await
        .expect("no hang");
        assert_eq!(resp.status(), 200);
        let payloads = sse_payloads(&resp.text().await.unwrap());
        assert_eq!(payloads.last().unwrap(), "[DONE]", "{payloads:?}");
        let err: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("ended before"),
            "{err}"
        );
        assert!(
            payloads
                .iter()
                .all(|p| !p.contains("\"finish_reason\":\"stop\""))
        );
        assert!(
            payloads.iter().any(|p| p.contains("\"content\"")),
            "text came first"
        );

        let resp = relay.post("/api/chat", &body).await;
        let lines = ndjson(&resp.text().await.unwrap());
        assert!(
            lines.last().unwrap()["error"]
                .as_str()
                .unwrap()
                .contains("ended before")
        );
        assert!(lines.iter().all(|l| l["done"] != true), "{lines:?}");
    }
}

/// An in-band Anthropic `event: error` (overloaded after the 200) reaches the client as an error
/// event with the upstream's message.
#[tokio::test]
async fn anthropic_in_band_error_event_is_passed_on() {
    let model = first_model_of(provider_of(WireFamily::Anthropic));
    let body = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"m\",\"stop_reason\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n\
        event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
        event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n\
        event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let fake = FakeUpstream::start().await;
    wiremock::Mock::given(method("POST"))
        .and(path("/base/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .mount(&fake.server)
        .await;
    let relay = Relay::start(&[(
        provider_of(WireFamily::Anthropic),
        format!("{}/base", fake.uri()),
    )])
    .await;
    let req =
        json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let payloads = sse_payloads(
        &relay
            .post("/v1/chat/completions", &req)
            .await
            .text()
            .await
            .unwrap(),
    );
    assert!(
        payloads.iter().any(|p| p.contains("\"Hel\"")),
        "{payloads:?}"
    );
    let err: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Overloaded")),
        "{payloads:?}"
    );
    assert_eq!(payloads.last().unwrap(), "[DONE]");
}

/// Anthropic tool calls: recorded parallel `tool_use` blocks reach the OpenAI client with their
/// `toolu_` ids; the client's tool results go back as `tool_result` blocks in one user turn,
/// answering those ids.
#[tokio::test]
async fn anthropic_tool_round_trip() {
    let exs = load("anthropic/messages_tool_use_parallel.yaml");
    let model = first_model_of(provider_of(WireFamily::Anthropic));
    let (fake, relay) = serve(WireFamily::Anthropic, model, &exs[0]).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let resp = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": model, "tools": tools,
            "messages": [{"role": "user", "content": "go"}]}),
        )
        .await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let calls = v["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap()
        .clone();
    let recorded: Vec<Value> = exs[0].response_json()["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .cloned()
        .collect();
    assert_eq!(calls.len(), recorded.len());
    for (c, r) in calls.iter().zip(&recorded) {
        assert_eq!(c["id"], r["id"]);
        assert_eq!(c["function"]["name"], r["name"]);
        let args: Value =
            serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, r["input"]);
    }
    let mut messages = vec![
        json!({"role": "user", "content": "go"}),
        v["choices"][0]["message"].clone(),
    ];
    for c in &calls {
        messages.push(json!({"role": "tool", "tool_call_id": c["id"], "content": "done"}));
    }
    relay
        .post(
            "/v1/chat/completions",
            &json!({"model": model, "tools": tools, "messages": messages}),
        )
        .await;
    let body = fake.last_json().await;
    let results = body["messages"][2]["content"].as_array().unwrap();
    assert_eq!(body["messages"][2]["role"], "user");
    assert_eq!(results.len(), recorded.len());
    for (b, r) in results.iter().zip(&recorded) {
        assert_eq!(b["type"], "tool_result");
        assert_eq!(b["tool_use_id"], r["id"]);
    }
    assert_eq!(
        body["messages"][1]["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .count(),
        recorded.len()
    );
}

/// Gemini 3 `thoughtSignature`: the recorded streamed function call reaches the client (through
/// either API) with its signature carried in the call id, and the next turn sends exactly that
/// signature back on the `functionCall` part, with the `functionResponse` named after the call.
#[tokio::test]
async fn gemini_thought_signature_is_echoed_on_the_next_turn() {
    let exs = load("gemini/stream_tool_call_thought_signature_sse.yaml");
    let recorded: Value = serde_json::from_str(&exs[0].sse_data()[0]).unwrap();
    let part = &recorded["candidates"][0]["content"]["parts"][0];
    let signature = part["thoughtSignature"].as_str().unwrap();
    let name = part["functionCall"]["name"].as_str().unwrap();
    let model = first_model_of(provider_of(WireFamily::Gemini));
    let (fake, relay) = serve(WireFamily::Gemini, model, &exs[0]).await;
    let tools = json!([{"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}]);

    // OpenAI API, streamed.
    let payloads = sse_payloads(
        &relay
            .post(
                "/v1/chat/completions",
                &json!({"model": model, "stream": true, "tools": tools,
                "messages": [{"role": "user", "content": "capital?"}]}),
            )
            .await
            .text()
            .await
            .unwrap(),
    );
    let call = payloads
        .iter()
        .filter(|p| *p != "[DONE]")
        .map(|p| serde_json::from_str::<Value>(p).unwrap())
        .find_map(|v| v.pointer("/choices/0/delta/tool_calls/0").cloned())
        .unwrap();
    let id = call["id"].as_str().unwrap().to_string();
    assert!(
        id.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "{id}"
    );
    assert!(
        payloads
            .iter()
            .any(|p| p.contains("\"finish_reason\":\"tool_calls\""))
    );

    fake.replay_if(
        &exs[1],
        &upstream_path(WireFamily::Gemini, model, true),
        |r: &wiremock::Request| String::from_utf8_lossy(&r.body).contains("functionResponse"),
    )
    .await;
    let next = json!({"model": model, "stream": true, "tools": tools, "messages": [
        {"role": "user", "content": "capital?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
            "function": {"name": name, "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": id, "content": "Mexico"}]});
    let resp = relay.post("/v1/chat/completions", &next).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("Mexico City"));
    let body = fake.last_json().await;
    let sent_call = &body["contents"][1]["parts"][0];
    assert_eq!(sent_call["thoughtSignature"], signature);
    assert_eq!(sent_call["functionCall"]["name"], name);
    let base = sent_call["functionCall"]["id"].as_str().unwrap();
    assert!(id.starts_with(base) && !base.contains("__sig__"));
    assert_eq!(
        body["contents"][2]["parts"][0]["functionResponse"],
        json!({"id": base, "name": name, "response": {"result": "Mexico"}})
    );

    // Ollama API: the call id it hands out carries the signature the same way.
    let resp = relay
        .post(
            "/api/chat",
            &json!({"model": model, "tools": tools,
            "messages": [{"role": "user", "content": "capital?"}]}),
        )
        .await;
    let lines = ndjson(&resp.text().await.unwrap());
    let call = lines
        .iter()
        .find_map(|l| l.pointer("/message/tool_calls/0").cloned())
        .unwrap();
    assert_eq!(call["function"]["name"], name);
    assert!(call["id"].as_str().unwrap().contains("__sig__"));

    // The same id sent to another family loses the signature (WIRE.md §7.4).
    let anthropic = llm_relay::upstream::anthropic::tool_id(&id);
    assert_eq!(anthropic, base);
}

/// Reasoning requests become each dialect's thinking control (WIRE.md §7.5): Anthropic
/// `thinking.budget_tokens` (>= 1024, below `max_tokens`, default sampling), not inside a tool
/// loop; Gemini `thinkingConfig` (`thinkingBudget` 0 for `none`, thoughts included otherwise).
#[tokio::test]
async fn reasoning_effort_becomes_a_thinking_budget() {
    use llm_relay::catalog::Capability;
    let reasoning_model = |family: WireFamily| {
        ModelId::all()
            .find(|m| m.provider().wire == family && m.info().has(Capability::Reasoning))
            .unwrap()
    };
    let m = reasoning_model(WireFamily::Anthropic);
    let model = m.info().id;
    let ex = load("anthropic/messages_thinking.yaml").remove(0);
    let (fake, relay) = serve(WireFamily::Anthropic, model, &ex).await;
    let resp = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": model, "reasoning_effort": "high", "max_tokens": 2000,
            "temperature": 0.3, "top_k": 5, "messages": [{"role": "user", "content": "think"}]}),
        )
        .await;
    let v: Value = resp.json().await.unwrap();
    let want = common::native::anthropic(&ex);
    assert!(!want.thinking.is_empty());
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"],
        want.thinking.as_str()
    );
    let body = fake.last_json().await;
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 16384})
    );
    let max = (2000 + 16384).min(m.info().max_output_tokens.unwrap_or(u32::MAX));
    assert_eq!(body["max_tokens"], max);
    assert!(
        body.get("temperature").is_none() && body.get("top_k").is_none(),
        "{body}"
    );

    // Ollama `think` levels map the same way.
    relay
        .post(
            "/api/chat",
            &json!({"model": model, "stream": false, "think": "low",
            "messages": [{"role": "user", "content": "think"}]}),
        )
        .await;
    assert_eq!(fake.last_json().await["thinking"]["budget_tokens"], 1024);

    // Inside a tool loop the client cannot send the signed thinking block back: no thinking.
    relay
        .post("/v1/chat/completions", &json!({"model": model, "reasoning_effort": "high", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "r"}]}))
        .await;
    assert!(fake.last_json().await.get("thinking").is_none());

    let m = reasoning_model(WireFamily::Gemini);
    let model = m.info().id;
    let ex = load("gemini/stream_thinking_sse.yaml").remove(0);
    let (fake, relay) = serve(WireFamily::Gemini, model, &ex).await;
    let payloads = sse_payloads(
        &relay
            .post(
                "/v1/chat/completions",
                &json!({"model": model, "stream": true, "reasoning_effort": "low",
                "messages": [{"role": "user", "content": "think"}]}),
            )
            .await
            .text()
            .await
            .unwrap(),
    );
    let thinking: String = payloads
        .iter()
        .filter(|p| *p != "[DONE]")
        .filter_map(|p| {
            serde_json::from_str::<Value>(p).unwrap()["choices"][0]["delta"]["reasoning_content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(thinking, common::native::gemini(&ex).thinking);
    assert_eq!(
        fake.last_json().await["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 1024, "includeThoughts": true})
    );
    relay
        .post(
            "/v1/chat/completions",
            &json!({"model": model, "stream": true, "reasoning_effort": "none",
            "messages": [{"role": "user", "content": "quick"}]}),
        )
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        fake.last_json().await["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 0})
    );
}

/// Anthropic rejects extended thinking together with a `tool_choice` that forces tool use
/// (`any` / `tool`): "Thinking may not be enabled when tool_choice forces tool use" (Anthropic
/// extended-thinking docs, feature compatibility). The client's forced choice is kept and thinking
/// is left off; `auto` and `none` keep thinking.
#[tokio::test]
async fn anthropic_forced_tool_choice_leaves_thinking_off() {
    use llm_relay::catalog::Capability;
    let m = ModelId::all()
        .find(|m| m.provider().wire == WireFamily::Anthropic && m.info().has(Capability::Reasoning))
        .unwrap();
    let model = m.info().id;
    let ex = load("anthropic/messages_basic.httprr").remove(0);
    let (fake, relay) = serve(WireFamily::Anthropic, model, &ex).await;
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters":
        {"type": "object", "properties": {"x": {"type": "string"}}}}}]);
    for (choice, want_type, thinking) in [
        (json!("required"), "any", false),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            "tool",
            false,
        ),
        (json!("auto"), "auto", true),
        (json!("none"), "none", true),
    ] {
        let resp = relay
            .post(
                "/v1/chat/completions",
                &json!({"model": model, "reasoning_effort": "medium", "tools": tools,
                    "tool_choice": choice, "messages": [{"role": "user", "content": "x"}]}),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let body = fake.last_json().await;
        assert_eq!(body["tool_choice"]["type"], want_type, "{body}");
        assert_eq!(body.get("thinking").is_some(), thinking, "{choice}: {body}");
    }
}

/// Anthropic rejects text blocks that are empty or whitespace only ("messages: text content
/// blocks must contain non-whitespace text"): they are not sent, in any role, nor as a
/// `tool_result`'s text.
#[tokio::test]
async fn anthropic_whitespace_only_text_is_not_sent() {
    let ex = load("anthropic/messages_basic.httprr").remove(0);
    let model = first_model_of(provider_of(WireFamily::Anthropic));
    let (fake, relay) = serve(WireFamily::Anthropic, model, &ex).await;
    let resp = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": model, "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": " \n"}]},
                {"role": "assistant", "content": "\n\n", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "  "},
                {"role": "user", "content": "\t"},
                {"role": "user", "content": "go on"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body = fake.last_json().await;
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"},
                                         {"type": "text", "text": "go on"}]}
        ])
    );
}

/// Claude 4.5 models reject a request with both sampling controls ("`temperature` and `top_p`
/// cannot both be specified for this model. Please use only one."; the Messages API reference
/// says to alter one, not both): temperature is kept, `top_p` alone still goes through.
#[tokio::test]
async fn anthropic_temperature_and_top_p_are_not_both_sent() {
    let ex = load("anthropic/messages_basic.httprr").remove(0);
    let model = first_model_of(provider_of(WireFamily::Anthropic));
    let (fake, relay) = serve(WireFamily::Anthropic, model, &ex).await;
    for (sampling, temperature, top_p) in [
        (
            json!({"temperature": 0.2, "top_p": 0.4}),
            json!(0.2),
            Value::Null,
        ),
        (json!({"top_p": 0.4}), Value::Null, json!(0.4)),
        (json!({"temperature": 0.2}), json!(0.2), Value::Null),
    ] {
        let mut req = json!({"model": model, "messages": [{"role": "user", "content": "x"}]});
        for (k, v) in sampling.as_object().unwrap() {
            req[k] = v.clone();
        }
        assert_eq!(relay.post("/v1/chat/completions", &req).await.status(), 200);
        let body = fake.last_json().await;
        assert_eq!(body["temperature"], temperature, "{sampling}: {body}");
        assert_eq!(body["top_p"], top_p, "{sampling}: {body}");
    }
}

/// Anthropic rejects empty or whitespace-only stop sequences ("stop_sequences: each stop
/// sequence must contain non-whitespace"), which OpenAI clients commonly send (`"\n"`): they are
/// left out, the others kept.
#[tokio::test]
async fn anthropic_blank_stop_sequences_are_left_out() {
    let ex = load("anthropic/messages_basic.httprr").remove(0);
    let model = first_model_of(provider_of(WireFamily::Anthropic));
    let (fake, relay) = serve(WireFamily::Anthropic, model, &ex).await;
    for (stop, want) in [
        (json!(["\n", "END", ""]), json!(["END"])),
        (json!("\n\n"), Value::Null),
    ] {
        let resp = relay
            .post(
                "/v1/chat/completions",
                &json!({"model": model, "stop": stop, "messages": [{"role": "user", "content": "x"}]}),
            )
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(fake.last_json().await["stop_sequences"], want, "{stop}");
    }
}

/// Ollama `think: true` / `false` (no level) switches thinking on or off on the native dialects
/// too: Anthropic gets a thinking budget (the `medium` one), Gemini `includeThoughts` (the model's
/// own budget). `false` and no `think` send nothing (Anthropic thinks only when asked; Gemini Pro
/// models reject a budget of 0 and return no thoughts unless asked).
#[tokio::test]
async fn ollama_think_switch_reaches_native_dialects() {
    use llm_relay::catalog::Capability;
    let reasoning_model = |family: WireFamily| {
        ModelId::all()
            .find(|m| m.provider().wire == family && m.info().has(Capability::Reasoning))
            .unwrap()
            .info()
            .id
    };
    let chat = |model: &str, think: Value| {
        let mut v = json!({"model": model, "stream": false,
                           "messages": [{"role": "user", "content": "x"}]});
        if !think.is_null() {
            v["think"] = think;
        }
        v
    };
    let model = reasoning_model(WireFamily::Anthropic);
    let ex = load("anthropic/messages_thinking.yaml").remove(0);
    let (fake, relay) = serve(WireFamily::Anthropic, model, &ex).await;
    for (think, want) in [
        (
            json!(true),
            json!({"type": "enabled", "budget_tokens": 4096}),
        ),
        (json!(false), Value::Null),
        (Value::Null, Value::Null),
    ] {
        let resp = relay.post("/api/chat", &chat(model, think.clone())).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(fake.last_json().await["thinking"], want, "think {think}");
    }

    let model = reasoning_model(WireFamily::Gemini);
    let ex = load("gemini/generate_content_basic.yaml").remove(0);
    let (fake, relay) = serve(WireFamily::Gemini, model, &ex).await;
    for (think, want) in [
        (json!(true), json!({"includeThoughts": true})),
        (json!(false), Value::Null),
        (Value::Null, Value::Null),
    ] {
        let resp = relay.post("/api/chat", &chat(model, think.clone())).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            fake.last_json().await["generationConfig"]["thinkingConfig"],
            want,
            "think {think}"
        );
    }
}

/// Anthropic's `input_schema` requires `"type": "object"` (InputSchema in the API spec); a client
/// declaring a no-argument tool with `parameters: {}` still gets a valid tool.
#[tokio::test]
async fn anthropic_input_schema_always_has_an_object_type() {
    let ex = load("anthropic/messages_basic.httprr").remove(0);
    let model = first_model_of(provider_of(WireFamily::Anthropic));
    let (fake, relay) = serve(WireFamily::Anthropic, model, &ex).await;
    let resp = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": model, "messages": [{"role": "user", "content": "x"}], "tools": [
                {"type": "function", "function": {"name": "a", "parameters": {}}},
                {"type": "function", "function": {"name": "b", "parameters": {"properties": {"x": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "c"}}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body = fake.last_json().await;
    let schemas: Vec<&Value> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["input_schema"])
        .collect();
    assert_eq!(schemas[0], &json!({"type": "object"}));
    assert_eq!(
        schemas[1],
        &json!({"type": "object", "properties": {"x": {"type": "string"}}})
    );
    assert_eq!(schemas[2]["type"], "object");
}

/// Image URLs: Anthropic reads them itself (`source.type: url`, recorded in
/// anthropic/messages_image_url.yaml); Gemini does not, so llm-relay fetches the image (following
/// a redirect), sniffs its type and sends it inline (WIRE.md §7.3); a URL that does not give an
/// image, or fetching turned off, is a clear 400 and nothing reaches Gemini.
#[tokio::test]
async fn image_urls_per_dialect() {
    let ex = load("anthropic/messages_image_url.yaml").remove(0);
    let recorded_url = ex.request_json().unwrap()["messages"][0]["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "image")
        .unwrap()["source"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let model = first_model_of(provider_of(WireFamily::Anthropic));
    let (fake, relay) = serve(WireFamily::Anthropic, model, &ex).await;
    let req = |model: &str| {
        json!({"model": model, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": recorded_url}}]}]})
    };
    let resp = relay.post("/v1/chat/completions", &req(model)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        common::native::anthropic(&ex).text.as_str()
    );
    assert_eq!(
        fake.last_json().await["messages"][0]["content"][1],
        json!({"type": "image", "source": {"type": "url", "url": recorded_url}})
    );

    // A local image server: the PNG behind a redirect, an HTML page, a missing file.
    let images = FakeUpstream::start().await;
    let png = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, PNG_B64).unwrap();
    wiremock::Mock::given(method("GET"))
        .and(path("/moved.png"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/pic"))
        .mount(&images.server)
        .await;
    wiremock::Mock::given(method("GET"))
        .and(path("/pic"))
        // Served with a wrong type on purpose: the bytes decide.
        .respond_with(ResponseTemplate::new(200).set_body_raw(png, "application/octet-stream"))
        .mount(&images.server)
        .await;
    wiremock::Mock::given(method("GET"))
        .and(path("/page"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("<html></html>", "text/html"))
        .mount(&images.server)
        .await;
    let url = |p: &str| format!("{}{p}?sig=secret", images.uri());

    let model = first_model_of(provider_of(WireFamily::Gemini));
    let ex = load("gemini/generate_content_basic.yaml").remove(0);
    let (fake, relay) = serve(WireFamily::Gemini, model, &ex).await;
    let with_url = |u: String| {
        json!({"model": model, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": u}}]}]})
    };
    let resp = relay
        .post("/v1/chat/completions", &with_url(url("/moved.png")))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        fake.last_json().await["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": PNG_B64}})
    );
    let sent = fake.received().await.len();
    for (p, why) in [("/page", "not a PNG"), ("/missing", "404")] {
        let resp = relay.post("/v1/chat/completions", &with_url(url(p))).await;
        assert_eq!(resp.status(), 400, "{p}");
        let msg = resp.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains(why) && msg.contains(p), "{msg}");
        assert!(
            !msg.contains("secret"),
            "the query string is not echoed: {msg}"
        );
    }
    assert_eq!(
        fake.received().await.len(),
        sent,
        "nothing more reached Gemini"
    );

    // Fetching turned off: a 400 asking for inline data, and no fetch.
    let mut cfg = common::relay::config(&[(
        provider_of(WireFamily::Gemini),
        format!("{}/base", fake.uri()),
    )]);
    cfg.image_url_fetch = false;
    let fetches = images.received().await.len();
    let relay = Relay::start_with(cfg).await;
    let resp = relay
        .post("/v1/chat/completions", &with_url(url("/moved.png")))
        .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("IMAGE_URL_FETCH=false"),
        "{v}"
    );
    assert_eq!(images.received().await.len(), fetches);
    assert_eq!(fake.received().await.len(), sent);
}

/// Anthropic's overload status 529 with its error body (ANT-SDK `types/shared/error_type.py`,
/// WIRE.md §4.6) keeps its status, `Retry-After` and `overloaded_error` type (no recording of a
/// 529 exists in the shared fixtures; the body follows the documented shape).
#[tokio::test]
async fn anthropic_overloaded_529_is_passed_on() {
    let model = first_model_of(provider_of(WireFamily::Anthropic));
    let fake = FakeUpstream::start().await;
    wiremock::Mock::given(method("POST"))
        .and(path("/base/messages"))
        .respond_with(
            ResponseTemplate::new(529)
                .insert_header("retry-after", "7")
                .set_body_raw(
                    r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#,
                    "application/json",
                ),
        )
        .mount(&fake.server)
        .await;
    let relay = Relay::start(&[(
        provider_of(WireFamily::Anthropic),
        format!("{}/base", fake.uri()),
    )])
    .await;
    let body =
        json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let resp = relay.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 529);
    assert_eq!(resp.headers().get("retry-after").unwrap(), "7");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "overloaded_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Overloaded")
    );
    let resp = relay.post("/api/chat", &body).await;
    assert_eq!(resp.status(), 529);
}

/// Through the Ollama API: `format` (a schema or `"json"`), tools and `tool_name` results reach
/// both native dialects in their own shapes.
#[tokio::test]
async fn ollama_format_tools_and_results_to_native_dialects() {
    let schema =
        json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
    let tools = json!([{"type": "function", "function": {"name": "count", "description": "Count",
        "parameters": {"type": "object", "properties": {"what": {"type": "string"}}}}}]);
    let messages = json!([
        {"role": "user", "content": "how many?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "count", "arguments": {"what": "cats"}}}]},
        {"role": "tool", "tool_name": "count", "content": "3"}
    ]);
    let req = |model: &str| json!({"model": model, "stream": false, "format": schema, "tools": tools, "messages": messages});

    let model = first_model_of(provider_of(WireFamily::Anthropic));
    let (fake, relay) = serve(
        WireFamily::Anthropic,
        model,
        &load("anthropic/messages_basic.httprr").remove(0),
    )
    .await;
    assert_eq!(relay.post("/api/chat", &req(model)).await.status(), 200);
    let b = fake.last_json().await;
    assert_eq!(
        b["output_config"],
        json!({"format": {"type": "json_schema", "schema": schema}})
    );
    assert_eq!(
        b["tools"][0]["input_schema"],
        tools[0]["function"]["parameters"]
    );
    let call = &b["messages"][1]["content"][0];
    assert_eq!(
        (call["type"].as_str(), &call["input"]),
        (Some("tool_use"), &json!({"what": "cats"}))
    );
    assert_eq!(b["messages"][2]["content"][0]["tool_use_id"], call["id"]);
    assert_eq!(b["messages"][2]["content"][0]["content"], "3");
    let resp = relay
        .post("/api/chat", &json!({"model": model, "stream": false, "format": "json", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        fake.last_json().await["system"]
            .as_str()
            .unwrap()
            .contains("JSON object")
    );

    let model = first_model_of(provider_of(WireFamily::Gemini));
    let (fake, relay) = serve(
        WireFamily::Gemini,
        model,
        &load("gemini/generate_content_basic.yaml").remove(0),
    )
    .await;
    assert_eq!(relay.post("/api/chat", &req(model)).await.status(), 200);
    let b = fake.last_json().await;
    assert_eq!(
        b["generationConfig"]["responseMimeType"],
        "application/json"
    );
    assert_eq!(
        b["generationConfig"]["responseSchema"],
        json!({"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}, "required": ["n"]})
    );
    assert_eq!(
        b["tools"][0]["functionDeclarations"][0]["parameters"],
        json!({"type": "OBJECT", "properties": {"what": {"type": "STRING"}}})
    );
    assert_eq!(
        b["contents"][1]["parts"][0]["functionCall"]["args"],
        json!({"what": "cats"})
    );
    assert_eq!(
        b["contents"][2]["parts"][0]["functionResponse"]["response"],
        json!({"result": "3"})
    );
    assert_eq!(
        b["contents"][2]["parts"][0]["functionResponse"]["name"],
        "count"
    );
}

/// An Anthropic `event: error` before any content (HTTP already 200) reaches the client as the
/// status its type stands for: `overloaded_error` -> 529, with the type as the code.
#[tokio::test]
async fn anthropic_error_event_before_content_keeps_its_status() {
    let model = first_model_of(provider_of(WireFamily::Anthropic));
    let body = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"m\",\"stop_reason\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n\
        event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let fake = FakeUpstream::start().await;
    wiremock::Mock::given(method("POST"))
        .and(path("/base/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .mount(&fake.server)
        .await;
    let relay = Relay::start(&[(
        provider_of(WireFamily::Anthropic),
        format!("{}/base", fake.uri()),
    )])
    .await;
    let req =
        json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let resp = relay.post("/v1/chat/completions", &req).await;
    assert_eq!(resp.status(), 529);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "overloaded_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Overloaded")
    );
}

/// A Gemini error object inside a 200 stream keeps the status and code it names.
#[tokio::test]
async fn gemini_in_band_error_keeps_its_status() {
    let model = first_model_of(provider_of(WireFamily::Gemini));
    let body = "data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}\r\n\r\n";
    let fake = FakeUpstream::start().await;
    wiremock::Mock::given(method("POST"))
        .and(path(upstream_path(WireFamily::Gemini, model, true)))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .mount(&fake.server)
        .await;
    let relay = Relay::start(&[(
        provider_of(WireFamily::Gemini),
        format!("{}/base", fake.uri()),
    )])
    .await;
    let req =
        json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let resp = relay.post("/v1/chat/completions", &req).await;
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "UNAVAILABLE");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("overloaded")
    );
}

/// A completion limit above the model's catalog `max_output_tokens` is capped (both dialects
/// reject larger values); Gemini's int32 seed gets a wrapped int64 client seed.
#[tokio::test]
async fn limits_are_capped_at_the_catalog_and_seeds_fit() {
    for (family, fixture) in [
        (WireFamily::Anthropic, "anthropic/messages_basic.httprr"),
        (WireFamily::Gemini, "gemini/generate_content_basic.yaml"),
    ] {
        let model = first_model_of(provider_of(family));
        let m = ModelId::all().find(|m| m.info().id == model).unwrap();
        let cap = m.info().max_output_tokens.unwrap();
        let (fake, relay) = serve(family, model, &load(fixture).remove(0)).await;
        let resp = relay
            .post(
                "/v1/chat/completions",
                &json!({"model": model, "max_tokens": cap + 1000, "seed": 4294967297_i64,
                "messages": [{"role": "user", "content": "x"}]}),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let b = fake.last_json().await;
        match family {
            WireFamily::Anthropic => assert_eq!(b["max_tokens"], cap),
            _ => {
                assert_eq!(b["generationConfig"]["maxOutputTokens"], cap);
                assert_eq!(b["generationConfig"]["seed"], 1);
            }
        }
    }
}

/// How a raw upstream misbehaves after its first events.
#[derive(Clone, Copy, Debug)]
enum Then {
    /// Keeps the connection open and sends nothing more.
    Stall,
    /// Drops the connection in the middle of the chunked body (no terminating chunk).
    Drop,
}

/// A one-shot raw HTTP upstream on 127.0.0.1: reads one request, answers 200 `text/event-stream`
/// (chunked) with `events`, then misbehaves as `then` says.
async fn raw_upstream(events: Vec<String>, then: Then) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut tmp = [0u8; 8192];
        loop {
            let n = sock.read(&mut tmp).await.unwrap();
            buf.extend_from_slice(&tmp[..n]);
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..pos]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buf.len() >= pos + 4 + len {
                    break;
                }
            }
        }
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        sock.write_all(head.as_bytes()).await.unwrap();
        for e in &events {
            sock.write_all(format!("{:x}\r\n{e}\r\n", e.len()).as_bytes())
                .await
                .unwrap();
        }
        sock.flush().await.unwrap();
        match then {
            Then::Stall => tokio::time::sleep(std::time::Duration::from_secs(30)).await,
            Then::Drop => {
                // Announce a chunk, send half of it, and close.
                sock.write_all(b"40\r\ndata: {\"partial\":").await.unwrap();
                sock.flush().await.unwrap();
            }
        }
    });
    format!("http://{addr}")
}

/// An upstream that stalls (read timeout) or drops the connection after the first tokens:
/// the client has the first text, then an error event, within bounded time, through both APIs
/// and both native dialects.
#[tokio::test]
async fn a_stalled_or_dropped_native_stream_ends_with_an_error_not_a_hang() {
    let anthropic_events = vec![
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"m\",\"stop_reason\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n".to_string(),
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_string(),
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"first\"}}\n\n".to_string(),
    ];
    let gemini_events = vec![
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"first\"}],\"role\":\"model\"},\"index\":0}]}\r\n\r\n".to_string(),
    ];
    for (family, events) in [
        (WireFamily::Anthropic, anthropic_events),
        (WireFamily::Gemini, gemini_events),
    ] {
        for then in [Then::Stall, Then::Drop] {
            for api in ["/v1/chat/completions", "/api/chat"] {
                let base = raw_upstream(events.clone(), then).await;
                let mut cfg = common::relay::config(&[(provider_of(family), base)]);
                cfg.read_timeout = std::time::Duration::from_millis(300);
                let relay = Relay::start_with(cfg).await;
                let model = first_model_of(provider_of(family));
                let body = json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "x"}]});
                let text = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                    relay.post(api, &body).await.text().await.unwrap()
                })
                .await
                .unwrap_or_else(|_| panic!("{family:?} {then:?} {api}: the client stream hung"));
                assert!(text.contains("first"), "{family:?} {then:?} {api}: {text}");
                let last_error = if api.starts_with("/v1") {
                    let p = sse_payloads(&text);
                    assert_eq!(p.last().unwrap(), "[DONE]");
                    serde_json::from_str::<Value>(&p[p.len() - 2]).unwrap()["error"]["message"]
                        .as_str()
                        .map(str::to_string)
                } else {
                    ndjson(&text).last().unwrap()["error"]
                        .as_str()
                        .map(str::to_string)
                };
                let msg = last_error
                    .unwrap_or_else(|| panic!("{family:?} {then:?} {api}: no error event: {text}"));
                match then {
                    Then::Stall => assert!(msg.contains("did not answer"), "{msg}"),
                    Then::Drop => assert!(!msg.is_empty()),
                }
            }
        }
    }
}

/// A Gemini answer that ends with an error finish reason (`MALFORMED_FUNCTION_CALL`, WIRE.md §7.1)
/// is an error for the client, not a normal `stop`: an in-stream error event after the text
/// streamed so far (OpenAI SSE error object, Ollama `{"error"}` line), a 502 when not streamed.
/// Deliberately no `stop` chunk before the error event (WIRE.md §7.1's encode table allows "stop
/// + error event where possible"): a client that stops reading at a finish reason must not take
/// the partial answer for a complete one.
#[tokio::test]
async fn gemini_error_finish_reason_reaches_clients_as_an_error() {
    let model = first_model_of(provider_of(WireFamily::Gemini));
    let fake = FakeUpstream::start().await;
    let text = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Let me"}]}, "index": 0}]});
    let end = json!({"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "MALFORMED_FUNCTION_CALL", "index": 0}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7}});
    wiremock::Mock::given(method("POST"))
        .and(path(upstream_path(WireFamily::Gemini, model, true)))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            format!("data: {text}\r\n\r\ndata: {end}\r\n\r\n"),
            "text/event-stream",
        ))
        .mount(&fake.server)
        .await;
    wiremock::Mock::given(method("POST"))
        .and(path(upstream_path(WireFamily::Gemini, model, false)))
        .respond_with(ResponseTemplate::new(200).set_body_json(&end))
        .mount(&fake.server)
        .await;
    let relay = Relay::start(&[(
        provider_of(WireFamily::Gemini),
        format!("{}/base", fake.uri()),
    )])
    .await;
    let ask = |stream: bool| json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]});

    let resp = relay.post("/v1/chat/completions", &ask(true)).await;
    assert_eq!(resp.status(), 200);
    let payloads = sse_payloads(&resp.text().await.unwrap());
    assert!(
        payloads.iter().any(|p| p.contains("Let me")),
        "{payloads:?}"
    );
    assert!(
        !payloads
            .iter()
            .any(|p| p.contains("\"finish_reason\":\"stop\"")),
        "{payloads:?}"
    );
    let err: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ended the generation with an error"),
        "{err}"
    );
    assert_eq!(payloads.last().unwrap(), "[DONE]");

    let resp = relay.post("/api/chat", &ask(true)).await;
    let lines = ndjson(&resp.text().await.unwrap());
    assert!(lines.last().unwrap()["error"].is_string(), "{lines:?}");
    assert!(!lines.iter().any(|l| l["done"] == true), "{lines:?}");

    let resp = relay.post("/v1/chat/completions", &ask(false)).await;
    assert_eq!(resp.status(), 502);
}

/// Cache and reasoning token classes from recorded Anthropic and Gemini answers reach OpenAI
/// clients with OpenAI's semantics (WIRE.md §7.7): cached tokens inside `prompt_tokens` and in
/// `prompt_tokens_details.cached_tokens`, reasoning inside `completion_tokens` and in
/// `completion_tokens_details.reasoning_tokens`. Expectations come from the recordings.
#[tokio::test]
async fn recorded_cache_and_reasoning_counts_reach_openai_clients() {
    let ask =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]});

    // Anthropic: second exchange writes 418 cache tokens and reads 1111.
    let ex = load("anthropic/messages_cache_usage.yaml").remove(1);
    let u = ex.response_json()["usage"].clone();
    let (input, read, write, output) = (
        u["input_tokens"].as_u64().unwrap(),
        u["cache_read_input_tokens"].as_u64().unwrap(),
        u["cache_creation_input_tokens"].as_u64().unwrap(),
        u["output_tokens"].as_u64().unwrap(),
    );
    assert!(
        read > 0 && write > 0,
        "the recording has both cache classes"
    );
    let model = first_model_of(provider_of(WireFamily::Anthropic));
    let (_fake, relay) = serve(WireFamily::Anthropic, model, &ex).await;
    let v: Value = relay
        .post("/v1/chat/completions", &ask(model))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], input + read + write, "{v}");
    assert_eq!(
        v["usage"]["prompt_tokens_details"]["cached_tokens"], read,
        "{v}"
    );
    assert_eq!(v["usage"]["completion_tokens"], output, "{v}");

    // Gemini: a generateContent answer over cached content, with thoughts.
    let ex = load("gemini/generate_content_cached_content.yaml")
        .into_iter()
        .find(|e| e.path().ends_with(":generateContent"))
        .unwrap();
    let m = ex.response_json()["usageMetadata"].clone();
    let n = |k: &str| m[k].as_u64().unwrap_or(0);
    assert!(n("cachedContentTokenCount") > 0 && n("thoughtsTokenCount") > 0);
    let model = first_model_of(provider_of(WireFamily::Gemini));
    let (_fake, relay) = serve(WireFamily::Gemini, model, &ex).await;
    let v: Value = relay
        .post("/v1/chat/completions", &ask(model))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], n("promptTokenCount"), "{v}");
    assert_eq!(
        v["usage"]["prompt_tokens_details"]["cached_tokens"],
        n("cachedContentTokenCount"),
        "{v}"
    );
    assert_eq!(
        v["usage"]["completion_tokens"],
        n("candidatesTokenCount") + n("thoughtsTokenCount"),
        "{v}"
    );
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        n("thoughtsTokenCount"),
        "{v}"
    );
}
