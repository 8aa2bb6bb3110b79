//! Every recorded OpenAI-compatible exchange in tests/fixtures, replayed through llm-relay's
//! OpenAI frontend: whatever each real provider sent (DeepSeek `reasoning_content`, Groq
//! `x_groq.usage` and `event: error`, Mistral content-part arrays, Perplexity's repeated usage,
//! OpenRouter comments and costs, xAI reasoning outside `completion_tokens`), the client gets the
//! same text, tool calls and token counts, or a clear error. Data-driven: a new fixture file is
//! tested without new test code.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_upstream::FakeUpstream;
use common::fixtures::{Exchange, all_fixture_files, load};
use common::relay::{Relay, first_model_of, sse_payloads};
use llm_relay::catalog::{PROVIDERS, WireFamily};
use serde_json::{Value, json};

/// Text of an OpenAI-style `content`: a string, or Mistral's array of parts (text parts only).
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p["type"] == "text")
            .filter_map(|p| p["text"].as_str())
            .collect(),
        _ => String::new(),
    }
}

/// What a client should see for a recorded exchange: (text, tool call names, prompt and
/// completion tokens from the last usage object, whether the stream carried an error).
struct Expected {
    text: String,
    tools: Vec<String>,
    usage: Option<(u64, u64)>,
    error: bool,
}

fn usage_pair(u: &Value) -> Option<(u64, u64)> {
    let prompt = u["prompt_tokens"].as_u64()?;
    let completion = u["completion_tokens"].as_u64()?;
    let reasoning = u
        .pointer("/completion_tokens_details/reasoning_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    // Providers that count reasoning outside completion_tokens (total = p + c + r) are reported
    // with reasoning included, as OpenAI defines completion_tokens.
    let total = u["total_tokens"].as_u64().unwrap_or(prompt + completion);
    let completion = if reasoning > 0 && total == prompt + completion + reasoning {
        completion + reasoning
    } else {
        completion
    };
    Some((prompt, completion))
}

fn expected(ex: &Exchange) -> Expected {
    if ex.is_sse() {
        let mut e = Expected {
            text: String::new(),
            tools: Vec::new(),
            usage: None,
            error: false,
        };
        let raw = String::from_utf8_lossy(&ex.response_body);
        e.error = raw.contains("event: error");
        for d in ex.sse_data().iter().filter(|d| *d != "[DONE]") {
            let v: Value = serde_json::from_str(d).unwrap();
            if v.get("error").is_some_and(|x| !x.is_null()) {
                e.error = true;
            }
            e.text
                .push_str(&text_of(v.pointer("/choices/0/delta/content")));
            for c in v
                .pointer("/choices/0/delta/tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(n) = c.pointer("/function/name").and_then(Value::as_str) {
                    e.tools.push(n.to_string());
                }
            }
            if let Some(u) = v
                .get("usage")
                .filter(|u| u.is_object())
                .or_else(|| v.pointer("/x_groq/usage"))
            {
                e.usage = usage_pair(u);
            }
        }
        e
    } else {
        let v = ex.response_json();
        let msg = &v["choices"][0]["message"];
        Expected {
            text: text_of(msg.get("content")),
            tools: msg["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    c.pointer("/function/name")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect(),
            usage: v.get("usage").and_then(usage_pair),
            error: false,
        }
    }
}

#[tokio::test]
async fn every_recorded_openai_compatible_answer_reaches_the_client_intact() {
    let mut checked = 0;
    for file in all_fixture_files() {
        let provider = file.split('/').next().unwrap();
        let Some(p) = PROVIDERS
            .iter()
            .find(|p| p.name == provider && p.wire == WireFamily::OpenaiCompat)
        else {
            continue;
        };
        for ex in load(&file)
            .into_iter()
            .filter(|ex| ex.status == 200 && ex.path().ends_with("/chat/completions"))
        {
            let want = expected(&ex);
            let path = ex.path();
            let fake = FakeUpstream::start().await;
            fake.replay(&ex, &path).await;
            let base = format!(
                "{}{}",
                fake.uri(),
                path.trim_end_matches("/chat/completions")
            );
            let relay = Relay::start(&[(p.name, base)]).await;
            let stream = ex.is_sse();
            let body = json!({"model": first_model_of(p.name), "stream": stream, "stream_options": {"include_usage": true},
                              "messages": [{"role": "user", "content": "replay"}]});
            let resp = relay.post("/v1/chat/completions", &body).await;
            assert_eq!(resp.status(), 200, "{file}");
            let (mut text, mut tools, mut usage, mut error) =
                (String::new(), Vec::new(), None, false);
            if stream {
                for payload in sse_payloads(&resp.text().await.unwrap())
                    .iter()
                    .filter(|p| *p != "[DONE]")
                {
                    let v: Value = serde_json::from_str(payload).unwrap();
                    error |= v.get("error").is_some();
                    text.push_str(
                        v.pointer("/choices/0/delta/content")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                    );
                    if let Some(n) = v
                        .pointer("/choices/0/delta/tool_calls/0/function/name")
                        .and_then(Value::as_str)
                    {
                        tools.push(n.to_string());
                    }
                    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                        usage = usage_pair(u);
                    }
                }
            } else {
                let v: Value = resp.json().await.unwrap();
                text = text_of(v.pointer("/choices/0/message/content"));
                tools = v["choices"][0]["message"]["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| c["function"]["name"].as_str().unwrap().to_string())
                    .collect();
                usage = usage_pair(&v["usage"]);
            }
            assert_eq!(error, want.error, "{file}: error surfaced");
            if !want.error {
                assert_eq!(text, want.text, "{file}: text");
                assert_eq!(tools, want.tools, "{file}: tool calls");
                if want.usage.is_some() {
                    assert_eq!(usage, want.usage, "{file}: usage");
                }
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 20,
        "only {checked} recorded exchanges were replayed"
    );
}
