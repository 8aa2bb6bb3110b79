//! Edge cases a real upstream or client produces that the happy-path tests do not: streams that
//! end early, missing usage, empty tool arguments, tool calls without `index`, repeated tool
//! names in Ollama histories, redirects, upstream error codes, nullable fields.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_upstream::FakeUpstream;
use common::fixtures::load;
use common::relay::{Relay, config, ndjson, openai_fixture, sse_payloads};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

/// A fake OpenAI upstream answering every chat request with `template`, and a relay using it.
async fn upstream_answering(template: ResponseTemplate) -> (FakeUpstream, Relay) {
    let fake = FakeUpstream::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(template)
        .mount(&fake.server)
        .await;
    let relay = Relay::start(&[("openai", format!("{}/v1", fake.uri()))]).await;
    (fake, relay)
}

fn sse_body(events: &[Value], done: bool) -> String {
    let mut s: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    if done {
        s.push_str("data: [DONE]\n\n");
    }
    s
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

fn user(stream: bool) -> Value {
    json!({"model": "gpt-4o", "stream": stream, "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": "x"}]})
}

#[tokio::test]
async fn a_stream_cut_before_its_end_is_an_error_not_a_stop() {
    // Only [DONE]: nothing to commit a 200 for.
    let (_f, relay) = upstream_answering(
        ResponseTemplate::new(200).set_body_raw(sse_body(&[], true), "text/event-stream"),
    )
    .await;
    assert_eq!(
        relay
            .post("/v1/chat/completions", &user(true))
            .await
            .status(),
        502
    );

    // Text, then the connection ends without a finish reason or [DONE].
    let body = sse_body(&[chunk(json!({"content": "Hi"}), None)], false);
    let (_f, relay) =
        upstream_answering(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
            .await;
    let resp = relay.post("/v1/chat/completions", &user(true)).await;
    assert_eq!(resp.status(), 200);
    let payloads = sse_payloads(&resp.text().await.unwrap());
    assert!(
        payloads
            .iter()
            .all(|p| !p.contains("\"finish_reason\":\"stop\"")),
        "{payloads:?}"
    );
    // WIRE.md §3.6: an error object with a message, then [DONE].
    let err: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
    assert!(err["error"]["message"].is_string(), "{payloads:?}");
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let resp = relay.post("/api/chat", &user(true)).await;
    let lines = ndjson(&resp.text().await.unwrap());
    assert!(
        lines.last().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("ended before"),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| l["done"] != true));
}

#[tokio::test]
async fn usage_is_never_invented() {
    let body = sse_body(
        &[
            chunk(json!({"content": "Hi"}), None),
            chunk(json!({}), Some("stop")),
        ],
        true,
    );
    let (_f, relay) =
        upstream_answering(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
            .await;
    let payloads = sse_payloads(
        &relay
            .post("/v1/chat/completions", &user(true))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert!(
        payloads.iter().all(|p| !p.contains("\"choices\":[]")),
        "no usage chunk without upstream usage: {payloads:?}"
    );
    // Nor usage attached to any other chunk.
    for p in payloads.iter().filter(|p| *p != "[DONE]") {
        let v: Value = serde_json::from_str(p).unwrap();
        assert!(v["usage"].is_null(), "invented usage in {p}");
    }
    let lines = ndjson(
        &relay
            .post("/api/chat", &user(true))
            .await
            .text()
            .await
            .unwrap(),
    );
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert!(
        last.get("eval_count").is_none() && last.get("prompt_eval_count").is_none(),
        "{last}"
    );

    let no_usage = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}]});
    let (_f, relay) = upstream_answering(ResponseTemplate::new(200).set_body_json(no_usage)).await;
    let v: Value = relay
        .post("/v1/chat/completions", &user(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Hi");
    assert!(v["usage"].is_null(), "{v}");
}

#[tokio::test]
async fn tool_calls_without_arguments_get_an_empty_object() {
    let body = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "now", "arguments": ""}}]}}]});
    let (_f, relay) = upstream_answering(ResponseTemplate::new(200).set_body_json(body)).await;
    let v: Value = relay
        .post("/v1/chat/completions", &user(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{}"
    );

    let events = [
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "now", "arguments": ""}}]}),
            None,
        ),
        chunk(json!({}), Some("tool_calls")),
    ];
    let (_f, relay) = upstream_answering(
        ResponseTemplate::new(200).set_body_raw(sse_body(&events, true), "text/event-stream"),
    )
    .await;
    let payloads = sse_payloads(
        &relay
            .post("/v1/chat/completions", &user(true))
            .await
            .text()
            .await
            .unwrap(),
    );
    let args: String = payloads
        .iter()
        .filter(|p| *p != "[DONE]")
        .filter_map(|p| {
            let v: Value = serde_json::from_str(p).unwrap();
            v.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    assert_eq!(args, "{}");
}

#[tokio::test]
async fn tool_calls_without_index_are_kept_apart() {
    let events = [
        chunk(
            json!({"tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "a", "arguments": "{\"x\":1}"}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"id": "call_b", "type": "function", "function": {"name": "b", "arguments": "{\"y\":2}"}}]}),
            None,
        ),
        chunk(json!({}), Some("tool_calls")),
    ];
    let (_f, relay) = upstream_answering(
        ResponseTemplate::new(200).set_body_raw(sse_body(&events, true), "text/event-stream"),
    )
    .await;
    let lines = ndjson(
        &relay
            .post("/api/chat", &user(true))
            .await
            .text()
            .await
            .unwrap(),
    );
    let calls = lines
        .iter()
        .find_map(|l| l["message"].get("tool_calls"))
        .unwrap();
    assert_eq!(calls.as_array().unwrap().len(), 2, "{calls}");
    assert_eq!(calls[0]["function"]["arguments"], json!({"x": 1}));
    assert_eq!(calls[1]["function"]["arguments"], json!({"y": 2}));
}

#[tokio::test]
async fn ollama_results_of_the_same_tool_answer_calls_in_order() {
    let (fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let resp = relay
        .post(
            "/api/chat",
            &json!({"model": "gpt-4o", "stream": false, "messages": [
                {"role": "user", "content": "weather in A and B?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": "w", "arguments": {"city": "A"}}},
                    {"function": {"name": "w", "arguments": {"city": "B"}}}]},
                {"role": "tool", "tool_name": "w", "content": "A: 1C"},
                {"role": "tool", "tool_name": "w", "content": "B: 2C"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let up = fake.last_json().await;
    let ids: Vec<&str> = up["messages"][1]["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_ne!(ids[0], ids[1]);
    assert_eq!(up["messages"][2]["tool_call_id"], ids[0]);
    assert_eq!(up["messages"][3]["tool_call_id"], ids[1]);
}

#[tokio::test]
async fn upstream_error_code_and_param_reach_the_client() {
    let ex = load("openai/error_400_unsupported_parameter.body.json").remove(0);
    let recorded = ex.response_json();
    let (_f, relay) = upstream_answering(
        ResponseTemplate::new(400).set_body_raw(ex.response_body.clone(), "application/json"),
    )
    .await;
    let resp = relay.post("/v1/chat/completions", &user(false)).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unsupported_parameter");
    assert_eq!(v["error"]["code"], recorded["error"]["code"]);
    assert_eq!(v["error"]["param"], recorded["error"]["param"]);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(recorded["error"]["message"].as_str().unwrap()),
        "{v}"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let fake = FakeUpstream::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(307).insert_header("location", "/elsewhere"))
        .mount(&fake.server)
        .await;
    let relay = Relay::start(&[("openai", format!("{}/v1", fake.uri()))]).await;
    assert_eq!(
        relay
            .post("/v1/chat/completions", &user(false))
            .await
            .status(),
        502
    );
    let received = fake.received().await;
    assert_eq!(received.len(), 1, "the key must not follow a redirect");
}

#[tokio::test]
async fn nullable_stream_and_default_model_show() {
    let (fake, _r, _) = openai_fixture("openai/chat_basic.httprr").await;
    let mut cfg = config(&[("openai", format!("{}/v1", fake.uri()))]);
    cfg.default_model = Some("gpt-4o".into());
    let relay = Relay::start_with(cfg).await;
    let resp = relay.post("/v1/chat/completions", &json!({"model": "gpt-4o", "stream": null, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["object"],
        "chat.completion"
    );
    // `ollama run some-name` shows before it chats: with DEFAULT_MODEL both must succeed.
    assert_eq!(
        relay
            .post("/api/show", &json!({"model": "some-name"}))
            .await
            .status(),
        200
    );
    assert_eq!(relay.get("/v1/models/some-name").await.status(), 200);
}

#[tokio::test]
async fn non_streamed_ollama_metrics_have_real_durations() {
    let (_f, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let v: Value = relay
        .post("/api/chat", &json!({"model": "gpt-4o", "stream": false, "messages": [{"role": "user", "content": "x"}]}))
        .await
        .json()
        .await
        .unwrap();
    assert!(v["eval_count"].as_u64().unwrap() > 0);
    assert!(
        v["eval_duration"].as_u64().unwrap() > 0,
        "tokens/s must be finite: {v}"
    );
    assert!(v["prompt_eval_duration"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn mistral_gets_no_fields_it_rejects() {
    let fake = FakeUpstream::start().await;
    let ex = load("mistral/stream_magistral_thinking.yaml").remove(0);
    fake.replay(&ex, "/v1/chat/completions").await;
    let relay = Relay::start(&[("mistral", format!("{}/v1", fake.uri()))]).await;
    let model = common::relay::first_model_of("mistral");
    let resp = relay
        .post("/v1/chat/completions", &json!({"model": model, "stream": true, "user": "u", "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    let payloads = sse_payloads(&resp.text().await.unwrap());
    assert!(
        payloads.iter().any(|p| p.contains("\"choices\":[]")),
        "Mistral reports usage unasked"
    );
    let up = fake.last_json().await;
    assert!(
        up.get("stream_options").is_none() && up.get("user").is_none(),
        "{up}"
    );
}
