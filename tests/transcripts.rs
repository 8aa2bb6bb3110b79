//! Snapshot tests (insta) of what crosses each boundary, so a change in wire output is a
//! reviewed diff: canonical -> OpenAI-compatible request JSON for each kind of quirk, and the
//! client-side stream transcripts (OpenAI SSE, Ollama NDJSON) for a recorded upstream stream.
//! Volatile fields (ids, timestamps, durations) are replaced before snapshotting.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::relay::{ndjson, openai_fixture, sse_payloads};
use llm_relay::canonical::{
    ChatRequest, ContentPart, Message, ResponseFormat, Role, Tool, ToolCall,
};
use llm_relay::catalog::{MaxTokensField, ModelId, SystemPrompt};
use llm_relay::upstream::openai_compat::encode_body;
use serde_json::{Value, json};

/// A request that exercises every field the encoder handles.
fn full_request() -> ChatRequest {
    ChatRequest {
        model: "client-name".into(),
        system: vec!["Be terse.".into(), "Answer in English.".into()],
        messages: vec![
            Message {
                content: vec![
                    ContentPart::Text("What is in this image?".into()),
                    ContentPart::Image {
                        media_type: "image/png".into(),
                        data: "iVBORw0KGgo=".into(),
                    },
                ],
                ..Message::text(Role::User, "")
            },
            Message {
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "lookup".into(),
                    arguments: "{\"q\":\"x\"}".into(),
                }],
                content: vec![],
                ..Message::text(Role::Assistant, "")
            },
            Message {
                tool_call_id: Some("call_1".into()),
                ..Message::text(Role::Tool, "found")
            },
        ],
        stream: true,
        max_tokens: Some(256),
        temperature: Some(0.2),
        top_p: Some(0.9),
        top_k: Some(40),
        stop: vec!["END".into()],
        seed: Some(7),
        reasoning_effort: Some("low".into()),
        response_format: Some(ResponseFormat::JsonObject),
        tools: vec![Tool {
            name: "lookup".into(),
            description: Some("Look up".into()),
            parameters: json!({"type": "object"}),
            strict: None,
        }],
        user: Some("u1".into()),
        ..ChatRequest::default()
    }
}

/// The first catalog model matching `pred`, with its upstream JSON for `full_request()`.
fn encoded(pred: impl Fn(ModelId) -> bool) -> Value {
    let m = ModelId::all()
        .find(|m| pred(*m))
        .expect("a catalog model with this quirk");
    let mut body = encode_body(m.info().id, m.quirks(), &full_request());
    body["model"] = "<model>".into();
    body
}

#[test]
fn openai_compat_request_plain_model() {
    let body = encoded(|m| {
        let q = m.quirks();
        q.drop_params.is_empty()
            && q.rename_params.is_empty()
            && q.system_prompt == SystemPrompt::System
    });
    insta::assert_json_snapshot!(body);
}

#[test]
fn openai_compat_request_reasoning_model() {
    let body = encoded(|m| {
        let q = m.quirks();
        q.max_tokens_field == MaxTokensField::MaxCompletionTokens
            && q.system_prompt == SystemPrompt::Developer
    });
    insta::assert_json_snapshot!(body);
}

#[test]
fn openai_compat_request_system_merged_into_user() {
    insta::assert_json_snapshot!(encoded(
        |m| m.quirks().system_prompt == SystemPrompt::MergeIntoUser
    ));
}

#[test]
fn openai_compat_request_renamed_params() {
    insta::assert_json_snapshot!(encoded(|m| !m.quirks().rename_params.is_empty()));
}

fn scrub(mut v: Value) -> Value {
    for key in [
        "id",
        "created",
        "created_at",
        "total_duration",
        "prompt_eval_duration",
        "eval_duration",
    ] {
        if v.get(key).is_some() {
            v[key] = "<scrubbed>".into();
        }
    }
    v
}

#[tokio::test]
async fn openai_sse_transcript() {
    let (_fake, relay, _) = openai_fixture("openai/chat_stream_include_usage.httprr").await;
    let resp = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
                    "messages": [{"role": "user", "content": "Count from 1 to 5"}]}),
        )
        .await;
    let transcript: Vec<Value> = sse_payloads(&resp.text().await.unwrap())
        .iter()
        .map(|p| {
            if p == "[DONE]" {
                Value::String(p.clone())
            } else {
                scrub(serde_json::from_str(p).unwrap())
            }
        })
        .collect();
    insta::assert_json_snapshot!(transcript);
}

#[tokio::test]
async fn ollama_ndjson_transcript() {
    let (_fake, relay, _) = openai_fixture("openai/chat_stream_include_usage.httprr").await;
    let resp = relay.post("/api/chat", &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Count from 1 to 5"}]})).await;
    let transcript: Vec<Value> = ndjson(&resp.text().await.unwrap())
        .into_iter()
        .map(scrub)
        .collect();
    insta::assert_json_snapshot!(transcript);
}

/// The first catalog model of `family` with reasoning, with `full_request()` encoded by that
/// family's dialect (model id replaced so a catalog edit is not a snapshot change).
fn encoded_native(family: llm_relay::catalog::WireFamily) -> Value {
    use llm_relay::catalog::{Capability, WireFamily};
    let m = ModelId::all()
        .find(|m| m.provider().wire == family && m.info().has(Capability::Reasoning))
        .expect("a reasoning model of this family");
    let mut body = match family {
        WireFamily::Anthropic => {
            llm_relay::upstream::anthropic::encode_body(m, &full_request()).unwrap()
        }
        _ => llm_relay::upstream::gemini::encode_body(m, &full_request()).unwrap(),
    };
    if body.get("model").is_some() {
        body["model"] = "<model>".into();
    }
    body
}

/// Anthropic Messages: system on top, image block, tool_use/tool_result, thinking budget from
/// `reasoning_effort: low` (sampling dropped), JSON-object instruction in the system prompt.
#[test]
fn anthropic_request_reasoning_model() {
    insta::assert_json_snapshot!(encoded_native(llm_relay::catalog::WireFamily::Anthropic));
}

/// Gemini generateContent: systemInstruction, inlineData, functionCall (skip signature on a
/// thinking model) / functionResponse, converted schema, thinkingConfig, JSON mode.
#[test]
fn gemini_request_reasoning_model() {
    insta::assert_json_snapshot!(encoded_native(llm_relay::catalog::WireFamily::Gemini));
}

/// A relay whose `family` provider replays the first exchange of `fixture` (stream or not).
async fn native_fixture(
    family: llm_relay::catalog::WireFamily,
    fixture: &str,
) -> (
    common::fake_upstream::FakeUpstream,
    common::relay::Relay,
    &'static str,
) {
    use llm_relay::catalog::{PROVIDERS, WireFamily};
    let p = PROVIDERS.iter().find(|p| p.wire == family).unwrap();
    let model = common::relay::first_model_of(p.name);
    let ex = common::fixtures::load(fixture).remove(0);
    let path = match family {
        WireFamily::Anthropic => "/base/messages".to_string(),
        _ => format!("/base/models/{model}:streamGenerateContent"),
    };
    let fake = common::fake_upstream::FakeUpstream::start().await;
    fake.replay(&ex, &path).await;
    let relay = common::relay::Relay::start(&[(p.name, format!("{}/base", fake.uri()))]).await;
    (fake, relay, model)
}

/// OpenAI SSE as a client sees a recorded Anthropic stream with text then a `tool_use` block.
#[tokio::test]
async fn openai_sse_transcript_from_anthropic_tool_stream() {
    let (_fake, relay, model) = native_fixture(
        llm_relay::catalog::WireFamily::Anthropic,
        "anthropic/messages_stream_tool_use.yaml",
    )
    .await;
    let resp = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": model, "stream": true, "stream_options": {"include_usage": true},
                    "messages": [{"role": "user", "content": "temperature?"}]}),
        )
        .await;
    let transcript: Vec<Value> = sse_payloads(&resp.text().await.unwrap())
        .iter()
        .map(|p| {
            if p == "[DONE]" {
                Value::String(p.clone())
            } else {
                let mut v = scrub(serde_json::from_str(p).unwrap());
                v["model"] = "<model>".into();
                v
            }
        })
        .collect();
    insta::assert_json_snapshot!(transcript);
}

/// Ollama NDJSON as a client sees a recorded Gemini stream (`alt=sse`, CRLF framing).
#[tokio::test]
async fn ollama_ndjson_transcript_from_gemini_stream() {
    let (_fake, relay, model) = native_fixture(
        llm_relay::catalog::WireFamily::Gemini,
        "gemini/stream_generate_content_sse.yaml",
    )
    .await;
    let resp = relay
        .post(
            "/api/chat",
            &json!({"model": model, "messages": [{"role": "user", "content": "capital?"}]}),
        )
        .await;
    let transcript: Vec<Value> = ndjson(&resp.text().await.unwrap())
        .into_iter()
        .map(|v| {
            let mut v = scrub(v);
            v["model"] = "<model>".into();
            v
        })
        .collect();
    insta::assert_json_snapshot!(transcript);
}
