//! The OpenAI Responses API frontend (`POST /v1/responses`) end to end: client -> llm-relay ->
//! fake upstream replaying recorded traffic (tests/fixtures/openai, tests/fixtures/anthropic),
//! asserting the `Response` object / SSE event stream the client got (shapes per
//! openai-openapi.yaml `Response`, `ResponseStreamEvent`) and what llm-relay sent upstream.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::fake_upstream::FakeUpstream;
use common::fixtures::load;
use common::relay::{Relay, config, first_model_of, openai_fixture};
use common::tmp::TempDir;
use llm_relay::relay::AppState;
use llm_relay::store::UsageQuery;
use llm_relay::store::embedded::RedbStore;
use llm_relay::usage::query::Filter;
use llm_relay::usage::record::UsageSettings;
use llm_relay::usage::recorder::Recorder;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

/// The events of a Responses SSE body: (`event:` name, data). Panics on a frame without both.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let ev = f
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("frame without event: {f:?}"));
            let data = f
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("frame without data: {f:?}"));
            (ev.to_string(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

/// Event names and data, after checking each name equals its `type` and `sequence_number`
/// counts from 0.
fn checked_events(body: &str) -> (Vec<String>, Vec<Value>) {
    let evs = events(body);
    for (i, (name, data)) in evs.iter().enumerate() {
        assert_eq!(data["type"], name.as_str(), "{data}");
        assert_eq!(data["sequence_number"], i as u64, "{data}");
    }
    evs.into_iter().unzip()
}

fn error_of(body: &Value) -> &str {
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert!(body["error"].get("param").is_some() && body["error"].get("code").is_some());
    body["error"]["message"].as_str().unwrap()
}

#[tokio::test]
async fn text_answer_is_a_response_object_with_echo_and_usage() {
    let (fake, relay, ex) = openai_fixture("openai/chat_basic.httprr").await;
    let recorded = ex.response_json();
    let resp = relay
        .post(
            "/v1/responses",
            &json!({"model": "gpt-4o", "input": "Hello", "instructions": "Be brief.",
                    "temperature": 0.2, "max_output_tokens": 50, "metadata": {"k": "v"},
                    "store": true, "user": "u1"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["id"].as_str().unwrap().starts_with("resp_"), "{body}");
    assert_eq!(body["object"], "response");
    assert!(body["created_at"].as_i64().unwrap() > 0);
    assert_eq!(body["status"], "completed");
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(body["error"], Value::Null);
    assert_eq!(body["incomplete_details"], Value::Null);
    // Echoed request fields (spec `Response.required`).
    assert_eq!(body["instructions"], "Be brief.");
    assert_eq!(body["metadata"], json!({"k": "v"}));
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["top_p"], Value::Null);
    assert_eq!(body["tools"], json!([]));
    assert_eq!(body["tool_choice"], "auto");
    assert_eq!(body["parallel_tool_calls"], true);
    assert_eq!(body["max_output_tokens"], 50);
    let output = body["output"].as_array().unwrap();
    assert_eq!(output.len(), 1, "{body}");
    let msg = &output[0];
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["role"], "assistant");
    assert_eq!(msg["status"], "completed");
    assert!(msg["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(msg["content"][0]["type"], "output_text");
    assert_eq!(msg["content"][0]["annotations"], json!([]));
    assert_eq!(
        msg["content"][0]["text"],
        recorded["choices"][0]["message"]["content"]
    );
    let u = &body["usage"];
    assert_eq!(u["input_tokens"], recorded["usage"]["prompt_tokens"]);
    assert_eq!(u["output_tokens"], recorded["usage"]["completion_tokens"]);
    assert_eq!(u["total_tokens"], recorded["usage"]["total_tokens"]);
    assert!(u["input_tokens_details"]["cached_tokens"].is_u64());
    assert!(u["output_tokens_details"]["reasoning_tokens"].is_u64());

    let up = fake.last_json().await;
    assert_eq!(up["model"], "gpt-4o");
    let msgs = up["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "system");
    assert_eq!(msgs[0]["content"], "Be brief.");
    assert_eq!(msgs[1], json!({"role": "user", "content": "Hello"}));
    assert_eq!(up["temperature"], 0.2);
    let limit = up
        .get("max_completion_tokens")
        .or(up.get("max_tokens"))
        .unwrap();
    assert_eq!(limit, 50);
    assert_eq!(up["user"], "u1");
    assert!(up.get("store").is_none(), "store is not forwarded: {up}");
}

#[tokio::test]
async fn stream_events_in_spec_order_with_sequence_numbers() {
    let (_fake, relay, ex) = openai_fixture("openai/chat_stream_include_usage.httprr").await;
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
            "/v1/responses",
            &json!({"model": "gpt-4o", "stream": true, "input": [{"role": "user", "content": "Count from 1 to 5"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = resp.text().await.unwrap();
    assert!(!text.contains("[DONE]"), "no [DONE] in a Responses stream");
    let (names, data) = checked_events(&text);
    let deltas = names
        .iter()
        .filter(|n| *n == "response.output_text.delta")
        .count();
    assert!(deltas >= 1);
    let mut want: Vec<&str> = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    want.extend(std::iter::repeat_n("response.output_text.delta", deltas));
    want.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names, want);
    assert_eq!(data[0]["response"]["status"], "in_progress");
    assert_eq!(data[2]["item"]["type"], "message");
    assert_eq!(data[2]["item"]["status"], "in_progress");
    let streamed: String = data
        .iter()
        .filter(|d| d["type"] == "response.output_text.delta")
        .map(|d| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, recorded_text);
    let done = &data[data.len() - 4];
    assert_eq!(done["text"], recorded_text.as_str());
    let fin = &data[data.len() - 1]["response"];
    assert_eq!(fin["status"], "completed");
    assert_eq!(fin["id"], data[0]["response"]["id"]);
    assert_eq!(
        fin["output"][0]["content"][0]["text"],
        recorded_text.as_str()
    );
    assert_eq!(
        fin["usage"]["input_tokens"],
        recorded_usage["prompt_tokens"]
    );
    assert_eq!(
        fin["usage"]["output_tokens"],
        recorded_usage["completion_tokens"]
    );
}

#[tokio::test]
async fn tool_calls_become_function_call_items() {
    let (fake, relay, ex) = openai_fixture("openai/chat_tool_calls.yaml").await;
    let recorded = ex.response_json();
    let resp = relay
        .post(
            "/v1/responses",
            &json!({"model": "gpt-4o", "input": "What is the largest city in the user country?",
                    "tool_choice": "required", "parallel_tool_calls": false,
                    "tools": [{"type": "function", "name": "get_user_country", "description": "",
                               "parameters": {"type": "object", "properties": {}, "additionalProperties": false}, "strict": true}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let want = recorded["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap();
    let calls: Vec<&Value> = body["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "function_call")
        .collect();
    assert_eq!(calls.len(), want.len(), "{body}");
    for (got, want) in calls.iter().zip(want) {
        assert!(got["id"].as_str().unwrap().starts_with("fc_"));
        assert_eq!(got["call_id"], want["id"]);
        assert_eq!(got["name"], want["function"]["name"]);
        assert_eq!(got["arguments"], want["function"]["arguments"]);
        assert_eq!(got["status"], "completed");
    }
    assert_eq!(body["status"], "completed");
    assert_eq!(body["tool_choice"], "required");
    assert_eq!(body["tools"][0]["name"], "get_user_country");

    let up = fake.last_json().await;
    assert_eq!(up["tool_choice"], "required");
    assert_eq!(up["parallel_tool_calls"], false);
    assert_eq!(up["tools"][0]["type"], "function");
    assert_eq!(up["tools"][0]["function"]["name"], "get_user_country");
    assert_eq!(up["tools"][0]["function"]["strict"], true);
}

#[tokio::test]
async fn function_call_and_output_items_reach_the_upstream_as_a_tool_round_trip() {
    let (fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let resp = relay
        .post(
            "/v1/responses",
            &json!({"model": "gpt-4o",
                    "tools": [{"type": "function", "name": "get_capital", "parameters": {"type": "object", "properties": {"country": {"type": "string"}}}}],
                    "tool_choice": {"type": "function", "name": "get_capital"},
                    "input": [
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Capital of the UK?"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "id": "fc_1", "call_id": "call_abc", "name": "get_capital", "arguments": "{\"country\":\"UK\"}", "status": "completed"},
                {"type": "function_call_output", "call_id": "call_abc", "output": "London"}
            ]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let up = fake.last_json().await;
    let msgs = up["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "{up}");
    assert_eq!(msgs[0]["role"], "user");
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[1]["tool_calls"][0]["id"], "call_abc");
    assert_eq!(msgs[1]["tool_calls"][0]["type"], "function");
    assert_eq!(msgs[1]["tool_calls"][0]["function"]["name"], "get_capital");
    assert_eq!(
        msgs[1]["tool_calls"][0]["function"]["arguments"],
        "{\"country\":\"UK\"}"
    );
    assert_eq!(msgs[2]["role"], "tool");
    assert_eq!(msgs[2]["tool_call_id"], "call_abc");
    assert_eq!(msgs[2]["content"], "London");
    assert_eq!(
        up["tool_choice"],
        json!({"type": "function", "function": {"name": "get_capital"}})
    );
}

#[tokio::test]
async fn streamed_tool_call_events() {
    let (_fake, relay, ex) = openai_fixture("openai/chat_stream_tool_calls.yaml").await;
    let recorded_args: String = ex
        .sse_data()
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| {
            c.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    let resp = relay
        .post(
            "/v1/responses",
            &json!({"model": "gpt-4o", "stream": true, "input": "What is the capital of the UK? Use the tool, then answer.",
                    "tools": [{"type": "function", "name": "get_capital", "parameters": {"type": "object", "properties": {}}}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let (names, data) = checked_events(&resp.text().await.unwrap());
    let added = data
        .iter()
        .find(|d| d["type"] == "response.output_item.added" && d["item"]["type"] == "function_call")
        .unwrap();
    assert_eq!(added["item"]["name"], "get_capital");
    assert_eq!(added["item"]["status"], "in_progress");
    let item_id = added["item"]["id"].as_str().unwrap();
    let streamed: String = data
        .iter()
        .filter(|d| d["type"] == "response.function_call_arguments.delta")
        .map(|d| {
            assert_eq!(d["item_id"], item_id);
            d["delta"].as_str().unwrap()
        })
        .collect();
    assert_eq!(streamed, recorded_args);
    let done = data
        .iter()
        .find(|d| d["type"] == "response.function_call_arguments.done")
        .unwrap();
    assert_eq!(done["arguments"], recorded_args.as_str());
    assert_eq!(done["name"], "get_capital");
    let pos = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert!(pos("response.function_call_arguments.done") < names.len() - 1);
    assert_eq!(names.last().unwrap(), "response.completed");
    let fin = &data[data.len() - 1]["response"];
    let item = fin["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap();
    assert_eq!(item["arguments"], recorded_args.as_str());
    assert_eq!(item["id"], item_id);
    assert!(fin["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn reasoning_tokens_are_reported() {
    let (fake, relay, ex) = openai_fixture("openai/chat_o3_mini_reasoning_tokens.yaml").await;
    let recorded = ex.response_json();
    let resp = relay
        .post(
            "/v1/responses",
            &json!({"model": "gpt-4o", "input": "hello", "reasoning": {"effort": "low"}}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["usage"]["output_tokens_details"]["reasoning_tokens"],
        recorded["usage"]["completion_tokens_details"]["reasoning_tokens"]
    );
    assert_eq!(body["reasoning"], json!({"effort": "low"}));
    assert_eq!(fake.last_json().await["reasoning_effort"], "low");
}

#[tokio::test]
async fn json_schema_format_reaches_the_upstream() {
    let (fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false});
    let format = json!({"type": "json_schema", "name": "city", "schema": schema, "strict": true});
    let resp = relay
        .post(
            "/v1/responses",
            &json!({"model": "gpt-4o", "input": "x", "text": {"format": format}}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["text"]["format"], format);
    assert_eq!(
        fake.last_json().await["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": true}})
    );
}

#[tokio::test]
async fn stateful_and_unsupported_requests_are_400_and_never_reach_the_upstream() {
    let (fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let cases = [
        (
            json!({"model": "gpt-4o", "input": "x", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"model": "gpt-4o", "input": "x", "conversation": "conv_1"}),
            "conversation",
        ),
        (
            json!({"model": "gpt-4o", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "gpt-4o", "input": "x", "tools": [{"type": "web_search"}]}),
            "web_search",
        ),
        (
            json!({"model": "gpt-4o", "input": "x", "tools": [{"type": "file_search", "vector_store_ids": []}]}),
            "file_search",
        ),
        (json!({"model": "gpt-4o", "input": 5}), "input"),
        (
            json!({"model": "gpt-4o", "input": [{"type": "message", "role": "user"}]}),
            "content",
        ),
        (
            json!({"model": "gpt-4o", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x/y.png"}]}]}),
            "image_url",
        ),
        (
            json!({"model": "gpt-4o", "input": [{"type": "function_call_output", "output": "x"}]}),
            "call_id",
        ),
        (json!({"input": "x"}), "model"),
    ];
    for (req, needle) in cases {
        let resp = relay.post("/v1/responses", &req).await;
        assert_eq!(resp.status(), 400, "{req}");
        let body: Value = resp.json().await.unwrap();
        let msg = error_of(&body);
        assert!(msg.contains(needle), "{req}: {msg}");
    }
    let resp = relay.post_raw("/v1/responses", "{not json").await;
    assert_eq!(resp.status(), 400);
    error_of(&resp.json().await.unwrap());
    // Nothing at all to send is a 400 too...
    let resp = relay
        .post("/v1/responses", &json!({"model": "gpt-4o", "input": []}))
        .await;
    assert_eq!(resp.status(), 400);
    assert!(fake.received().await.is_empty());
    // ...but instructions alone are a request the spec allows: they go upstream as the system
    // prompt.
    let resp = relay
        .post(
            "/v1/responses",
            &json!({"model": "gpt-4o", "input": [], "instructions": "Say hi."}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let sent = fake.last_json().await;
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "Say hi."}])
    );
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
    for stream in [false, true] {
        let resp = relay
            .post(
                "/v1/responses",
                &json!({"model": model, "stream": stream, "input": "x"}),
            )
            .await;
        assert_eq!(resp.status(), 429, "stream={stream}");
        assert_eq!(resp.headers()["retry-after"], "7");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"]["message"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn midstream_error_is_an_error_event_then_response_failed() {
    let ex = load("openrouter/stream_midstream_error.yaml").remove(0);
    let fake = FakeUpstream::start().await;
    fake.replay(&ex, "/chat/completions").await;
    let relay = Relay::start(&[("openrouter", fake.uri())]).await;
    let model = first_model_of("openrouter");
    let resp = relay
        .post(
            "/v1/responses",
            &json!({"model": model, "stream": true, "input": "x"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let (names, data) = checked_events(&resp.text().await.unwrap());
    let n = names.len();
    assert_eq!(names[n - 2], "error");
    assert!(
        data[n - 2]["message"]
            .as_str()
            .unwrap()
            .contains("Token limit reached"),
        "{}",
        data[n - 2]
    );
    assert_eq!(names[n - 1], "response.failed");
    assert_eq!(data[n - 1]["response"]["status"], "failed");
    assert!(data[n - 1]["response"]["error"]["message"].is_string());
}

#[tokio::test]
async fn length_finish_is_incomplete_with_max_output_tokens() {
    let fake = FakeUpstream::start().await;
    let body = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Once upon"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}});
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&fake.server)
        .await;
    let relay = Relay::start(&[("openai", format!("{}/v1", fake.uri()))]).await;
    let resp = relay
        .post(
            "/v1/responses",
            &json!({"model": "gpt-4o", "input": "story", "max_output_tokens": 2}),
        )
        .await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "incomplete");
    assert_eq!(
        body["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(body["output"][0]["content"][0]["text"], "Once upon");
    assert_eq!(body["completed_at"], Value::Null);
}

/// An Anthropic upstream (native Messages dialect) serves the Responses API too.
#[tokio::test]
async fn anthropic_upstream_answers_and_streams_tool_calls() {
    let provider = "anthropic";
    let model = first_model_of(provider);
    for (fixture, stream) in [
        ("anthropic/messages_basic.httprr", false),
        ("anthropic/messages_stream_tool_use.yaml", true),
    ] {
        let ex = load(fixture).remove(0);
        let want = common::native::anthropic(&ex);
        let fake = FakeUpstream::start().await;
        fake.replay(&ex, "/base/messages").await;
        let relay = Relay::start(&[(provider, format!("{}/base", fake.uri()))]).await;
        let resp = relay
            .post(
                "/v1/responses",
                &json!({"model": model, "stream": stream, "input": "hi", "instructions": "Be terse.",
                        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}),
            )
            .await;
        assert_eq!(resp.status(), 200, "{fixture}");
        let body = if stream {
            let (names, data) = checked_events(&resp.text().await.unwrap());
            assert_eq!(names.last().unwrap(), "response.completed", "{fixture}");
            data.last().unwrap()["response"].clone()
        } else {
            resp.json().await.unwrap()
        };
        let output = body["output"].as_array().unwrap();
        let text: String = output
            .iter()
            .filter(|i| i["type"] == "message")
            .map(|i| i["content"][0]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, want.text, "{fixture}");
        let tools: Vec<(String, Value)> = output
            .iter()
            .filter(|i| i["type"] == "function_call")
            .map(|i| {
                (
                    i["name"].as_str().unwrap().to_string(),
                    serde_json::from_str(i["arguments"].as_str().unwrap()).unwrap(),
                )
            })
            .collect();
        assert_eq!(tools, want.tools, "{fixture}");
        assert_eq!(
            (
                body["usage"]["input_tokens"].as_u64().unwrap(),
                body["usage"]["output_tokens"].as_u64().unwrap()
            ),
            want.usage,
            "{fixture}"
        );
        let up = fake.last_json().await;
        assert_eq!(up["system"], "Be terse.", "{fixture}");
        assert_eq!(up["tools"][0]["name"], "get_weather");
    }
}

#[tokio::test]
async fn every_request_leaves_a_priced_usage_record() {
    let dir = TempDir::new("responses-usage");
    let ex = load("openai/chat_basic.httprr").remove(0);
    let fake = FakeUpstream::start().await;
    fake.replay(&ex, "/v1/chat/completions").await;
    let store = Arc::new(RedbStore::open(&dir.0).unwrap());
    let recorder = Recorder::start(store.clone(), UsageSettings::default(), Vec::new()).unwrap();
    let state = AppState::new(config(&[("openai", format!("{}/v1", fake.uri()))]))
        .unwrap()
        .with_recorder(recorder.clone());
    let relay = Relay::start_with_state(state).await;
    let model = first_model_of("openai");
    let resp = relay
        .post("/v1/responses", &json!({"model": model, "input": "Hello"}))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let resp = relay
        .post(
            "/v1/responses",
            &json!({"model": model, "input": "x", "previous_response_id": "resp_1"}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let r = recorder.clone();
    tokio::task::spawn_blocking(move || r.flush())
        .await
        .unwrap();
    let recs = store.recent(&Filter::default(), 2).unwrap();
    assert_eq!(recs.len(), 2);
    let (bad, ok) = (&recs[0], &recs[1]);
    assert_eq!(ok.endpoint, "/v1/responses");
    assert_eq!(ok.frontend, "openai-api");
    assert_eq!(ok.provider, "openai");
    assert_eq!(ok.status, 200);
    assert!(ok.complete);
    assert_eq!(
        ok.input_tokens,
        body["usage"]["input_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        ok.output_tokens,
        body["usage"]["output_tokens"].as_u64().unwrap()
    );
    assert!(ok.cost_pico_usd.is_some_and(|c| c > 0), "{ok:?}");
    assert_eq!(bad.endpoint, "/v1/responses");
    assert_eq!(bad.status, 400);
}

/// The `encrypted_content` of the only reasoning item of `output`.
fn carrier_of(output: &Value) -> String {
    let items: Vec<&Value> = output
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "reasoning")
        .collect();
    assert_eq!(items.len(), 1, "{output}");
    items[0]["encrypted_content"]
        .as_str()
        .unwrap_or_else(|| panic!("no encrypted_content: {output}"))
        .to_string()
}

/// The recorded thinking blocks' signatures of an Anthropic answer, JSON or SSE.
fn recorded_signatures(ex: &common::fixtures::Exchange, stream: bool) -> String {
    if stream {
        ex.sse_data()
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| {
                v.pointer("/delta/signature")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect()
    } else {
        ex.response_json()["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["signature"].as_str())
            .collect()
    }
}

/// Anthropic signed thinking reaches the client in the reasoning item's `encrypted_content`
/// (non-streamed, and streamed in `response.output_item.done` and `response.completed`), and
/// sent back with the tool round trip it reaches the upstream's assistant turn unchanged, with
/// thinking still on.
#[tokio::test]
async fn anthropic_signed_thinking_round_trips_through_encrypted_content() {
    let provider = "anthropic";
    let model = first_model_of(provider);
    for (fixture, stream) in [
        ("anthropic/messages_thinking.yaml", false),
        ("anthropic/messages_stream_thinking.yaml", true),
    ] {
        let ex = load(fixture).remove(0);
        let want_sig = recorded_signatures(&ex, stream);
        assert!(!want_sig.is_empty(), "{fixture}");
        let fake = FakeUpstream::start().await;
        fake.replay(&ex, "/base/messages").await;
        let relay = Relay::start(&[(provider, format!("{}/base", fake.uri()))]).await;
        let resp = relay
            .post(
                "/v1/responses",
                &json!({"model": model, "stream": stream, "input": "think",
                        "reasoning": {"effort": "low"}}),
            )
            .await;
        assert_eq!(resp.status(), 200, "{fixture}");
        let (carrier, reasoning_text) = if stream {
            let (names, data) = checked_events(&resp.text().await.unwrap());
            let done: Vec<&Value> = names
                .iter()
                .zip(&data)
                .filter(|(n, d)| {
                    *n == "response.output_item.done" && d["item"]["type"] == "reasoning"
                })
                .map(|(_, d)| &d["item"])
                .collect();
            assert_eq!(done.len(), 1, "{fixture}");
            let from_done = done[0]["encrypted_content"].as_str().unwrap().to_string();
            let completed = &data.last().unwrap()["response"]["output"];
            assert_eq!(carrier_of(completed), from_done, "{fixture}");
            (from_done, done[0]["content"][0]["text"].clone())
        } else {
            let body: Value = resp.json().await.unwrap();
            let r = body["output"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["type"] == "reasoning")
                .unwrap()
                .clone();
            (carrier_of(&body["output"]), r["content"][0]["text"].clone())
        };
        assert!(carrier.starts_with("llmr1:"), "{carrier}");

        // The tool loop's next step: reasoning item, the call and its output.
        let resp = relay
            .post(
                "/v1/responses",
                &json!({"model": model, "stream": stream, "reasoning": {"effort": "low"},
                        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
                        "input": [
                    {"role": "user", "content": "think"},
                    {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": carrier},
                    {"type": "function_call", "call_id": "toolu_1", "name": "f", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "toolu_1", "output": "ok"}]}),
            )
            .await;
        assert_eq!(resp.status(), 200, "{fixture}");
        let sent = fake.last_json().await;
        assert_eq!(sent["thinking"]["type"], "enabled", "{fixture}: {sent}");
        let turn = &sent["messages"][1];
        assert_eq!(turn["role"], "assistant", "{sent}");
        assert_eq!(turn["content"][0]["type"], "thinking", "{sent}");
        assert_eq!(turn["content"][0]["signature"], want_sig.as_str(), "{sent}");
        assert_eq!(turn["content"][0]["thinking"], reasoning_text, "{sent}");
        assert_eq!(turn["content"][1]["type"], "tool_use", "{sent}");
    }
}

/// Another provider's `encrypted_content` is ignored (no signed thinking, no error); a
/// malformed one with llm-relay's prefix is a 400 naming the item.
#[tokio::test]
async fn foreign_encrypted_content_is_ignored_and_malformed_ours_is_400() {
    let provider = "anthropic";
    let model = first_model_of(provider);
    let ex = load("anthropic/messages_thinking.yaml").remove(0);
    let fake = FakeUpstream::start().await;
    fake.replay(&ex, "/base/messages").await;
    let relay = Relay::start(&[(provider, format!("{}/base", fake.uri()))]).await;
    let input = |enc: &str| {
        json!({"model": model, "reasoning": {"effort": "low"},
               "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
               "input": [
            {"role": "user", "content": "think"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": enc},
            {"type": "function_call", "call_id": "toolu_1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "toolu_1", "output": "ok"}]})
    };
    let resp = relay
        .post("/v1/responses", &input("gAAAAABoOpaqueOpenAIReasoning=="))
        .await;
    assert_eq!(resp.status(), 200);
    let sent = fake.last_json().await;
    let turn = &sent["messages"][1];
    assert_eq!(turn["content"][0]["type"], "tool_use", "{sent}");
    // No signed thinking for the tool loop's last turn: thinking is off for this step.
    assert!(sent.get("thinking").is_none(), "{sent}");

    let before = fake.received().await.len();
    let resp = relay
        .post("/v1/responses", &input("llmr1:not base64!"))
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    let msg = error_of(&body);
    assert!(
        msg.contains("input[1]") && msg.contains("encrypted_content"),
        "{msg}"
    );
    assert_eq!(fake.received().await.len(), before);
}
