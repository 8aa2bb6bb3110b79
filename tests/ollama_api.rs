//! The Ollama API frontend end to end against fake OpenAI-compatible upstreams replaying recorded
//! traffic: NDJSON framing, `done_reason`, durations, names, options mapping, images, errors.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_upstream::FakeUpstream;
use common::fixtures::{Exchange, load};
use common::relay::{Relay, first_model_of, ndjson, openai_fixture};
use serde_json::{Value, json};

const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn recorded_stream(ex: &Exchange) -> (String, Value) {
    let chunks: Vec<Value> = ex
        .sse_data()
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    let usage = chunks
        .iter()
        .find_map(|c| c.get("usage").filter(|u| u.is_object()))
        .unwrap()
        .clone();
    (text, usage)
}

fn is_rfc3339(s: &str) -> bool {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

#[tokio::test]
async fn health_version_tags_show_ps() {
    let relay = Relay::start(&[("openai", "http://127.0.0.1:9/v1".into())]).await;
    let root = relay.get("/").await;
    assert_eq!(root.status(), 200);
    assert_eq!(root.text().await.unwrap(), "Ollama is running");
    let head = relay.http.head(relay.url("/")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let v: Value = relay.get("/api/version").await.json().await.unwrap();
    assert!(v["version"].as_str().unwrap().split('.').count() == 3);

    let tags: Value = relay.get("/api/tags").await.json().await.unwrap();
    let models = tags["models"].as_array().unwrap();
    assert!(!models.is_empty());
    for m in models {
        let name = m["name"].as_str().unwrap();
        assert!(
            name.ends_with(":latest") && !name.ends_with(":latest:latest"),
            "{name}"
        );
        assert_eq!(m["model"], m["name"]);
        let digest = m["digest"].as_str().unwrap();
        assert!(
            digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
            "{digest}"
        );
        assert!(is_rfc3339(m["modified_at"].as_str().unwrap()));
        assert!(m["details"]["family"].is_string());
    }
    let gpt4o = models
        .iter()
        .find(|m| m["name"] == "gpt-4o:latest")
        .unwrap();
    assert_eq!(gpt4o["details"]["families"][0], gpt4o["details"]["family"]);

    for name in [
        "gpt-4o",
        "gpt-4o:latest",
        "GPT-4O",
        "openai/gpt-4o",
        "openai-gpt-4o",
    ] {
        let resp = relay.post("/api/show", &json!({"model": name})).await;
        assert_eq!(resp.status(), 200, "{name}");
        let show: Value = resp.json().await.unwrap();
        let caps: Vec<&str> = show["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert!(
            caps.contains(&"completion") && caps.contains(&"vision") && caps.contains(&"tools"),
            "{caps:?}"
        );
        let arch = show["model_info"]["general.architecture"].as_str().unwrap();
        assert!(
            show["model_info"][format!("{arch}.context_length")]
                .as_u64()
                .unwrap()
                > 0
        );
    }
    // Legacy `name` field.
    assert_eq!(
        relay
            .post("/api/show", &json!({"name": "gpt-4o"}))
            .await
            .status(),
        200
    );
    let missing = relay.post("/api/show", &json!({"model": "nope"})).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap(),
        json!({"error": "model 'nope' not found"})
    );

    let ps: Value = relay.get("/api/ps").await.json().await.unwrap();
    assert!(ps["models"].is_array());
}

#[tokio::test]
async fn pull_succeeds_without_download() {
    let relay = Relay::start(&[("openai", "http://127.0.0.1:9/v1".into())]).await;
    let lines = ndjson(
        &relay
            .post("/api/pull", &json!({"model": "gpt-4o"}))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(lines.last().unwrap(), &json!({"status": "success"}));
    let one: Value = relay
        .post("/api/pull", &json!({"model": "gpt-4o", "stream": false}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one, json!({"status": "success"}));
    assert_eq!(
        relay
            .post("/api/pull", &json!({"model": "nope"}))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn chat_streams_ndjson_by_default() {
    let (fake, relay, ex) = openai_fixture("openai/chat_stream_include_usage.httprr").await;
    let (text, usage) = recorded_stream(&ex);
    let resp = relay
        .post(
            "/api/chat",
            &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Count"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let lines = ndjson(&resp.text().await.unwrap());
    let (last, body) = lines.split_last().unwrap();
    assert!(
        body.iter()
            .all(|l| l["done"] == false && l["model"] == "gpt-4o" && l.get("response").is_none())
    );
    let joined: String = body
        .iter()
        .filter_map(|l| l["message"]["content"].as_str())
        .collect();
    assert_eq!(joined, text);
    assert!(
        lines
            .iter()
            .all(|l| is_rfc3339(l["created_at"].as_str().unwrap()))
    );
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["prompt_eval_count"], usage["prompt_tokens"]);
    assert_eq!(last["eval_count"], usage["completion_tokens"]);
    let total = last["total_duration"].as_u64().unwrap();
    assert!(
        total > 0
            && total
                >= last["eval_duration"].as_u64().unwrap()
                    + last["prompt_eval_duration"].as_u64().unwrap()
    );
    // Ollama streams by default: llm-relay asks the upstream for a stream with usage.
    let up = fake.last_json().await;
    assert_eq!(up["stream"], true);
    assert_eq!(up["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn chat_non_stream_and_options_mapping() {
    let (fake, relay, ex) = openai_fixture("openai/chat_basic.httprr").await;
    let recorded = ex.response_json();
    let resp = relay
        .post(
            "/api/chat",
            &json!({"model": "gpt-4o:latest", "stream": false, "format": "json",
                    "options": {"temperature": 0.3, "top_p": 0.8, "top_k": 20, "num_predict": 64, "stop": ["\n\n"], "seed": 5},
                    "messages": [{"role": "system", "content": "A."}, {"role": "system", "content": "B."},
                                 {"role": "user", "content": "Hello", "images": [PNG_1X1]}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["message"]["role"], "assistant");
    assert_eq!(
        v["message"]["content"],
        recorded["choices"][0]["message"]["content"]
    );
    assert_eq!(v["done"], true);
    assert_eq!(v["done_reason"], "stop");
    assert_eq!(v["prompt_eval_count"], recorded["usage"]["prompt_tokens"]);
    assert_eq!(v["eval_count"], recorded["usage"]["completion_tokens"]);

    let up = fake.last_json().await;
    assert_eq!(up["model"], "gpt-4o");
    assert_eq!(up["temperature"], 0.3);
    assert_eq!(up["top_p"], 0.8);
    assert!(up.get("top_k").is_none(), "OpenAI has no top_k");
    assert_eq!(up["max_tokens"], 64);
    assert_eq!(up["stop"], json!(["\n\n"]));
    assert_eq!(up["seed"], 5);
    assert_eq!(up["response_format"], json!({"type": "json_object"}));
    assert_eq!(
        up["messages"][0],
        json!({"role": "system", "content": "A.\n\nB."})
    );
    assert_eq!(
        up["messages"][1]["content"][1]["image_url"]["url"],
        format!("data:image/png;base64,{PNG_1X1}")
    );
    assert!(up.get("stream").is_none());
}

#[tokio::test]
async fn generate_streams_response_field() {
    let (fake, relay, ex) = openai_fixture("openai/chat_stream_include_usage.httprr").await;
    let (text, _) = recorded_stream(&ex);
    let resp = relay
        .post(
            "/api/generate",
            &json!({"model": "gpt-4o", "prompt": "Count", "system": "Be brief.",
            "format": {"type": "object", "properties": {"n": {"type": "integer"}}}}),
        )
        .await;
    let lines = ndjson(&resp.text().await.unwrap());
    assert!(
        lines
            .iter()
            .all(|l| l.get("message").is_none() && l["response"].is_string())
    );
    let joined: String = lines
        .iter()
        .filter_map(|l| l["response"].as_str())
        .collect();
    assert_eq!(joined, text);
    let last = lines.last().unwrap();
    assert_eq!(
        (last["done"].as_bool(), last["done_reason"].as_str()),
        (Some(true), Some("stop"))
    );
    let up = fake.last_json().await;
    assert_eq!(
        up["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        up["messages"][1],
        json!({"role": "user", "content": "Count"})
    );
    assert_eq!(up["response_format"]["type"], "json_schema");
    assert_eq!(
        up["response_format"]["json_schema"]["schema"]["properties"]["n"]["type"],
        "integer"
    );
}

#[tokio::test]
async fn generate_non_stream() {
    let (_fake, relay, ex) = openai_fixture("openai/chat_basic.httprr").await;
    let v: Value = relay
        .post(
            "/api/generate",
            &json!({"model": "gpt-4o", "prompt": "Hi", "stream": false}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["response"],
        ex.response_json()["choices"][0]["message"]["content"]
    );
    assert_eq!(v["done"], true);
    assert!(v.get("message").is_none());
}

#[tokio::test]
async fn empty_chat_loads_the_model_without_calling_upstream() {
    let (fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let v: Value = relay
        .post(
            "/api/chat",
            &json!({"model": "gpt-4o", "messages": [], "stream": false}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["done_reason"], "load");
    assert!(fake.received().await.is_empty());
}

#[tokio::test]
async fn streamed_tool_calls_arrive_whole_with_object_arguments() {
    let ex = load("deepseek/stream_tool_call.chunks.txt").remove(0);
    let fake = FakeUpstream::start().await;
    fake.replay(&ex, "/chat/completions").await;
    let relay = Relay::start(&[("deepseek", fake.uri())]).await;
    let model = first_model_of("deepseek");
    let tool = json!({"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}});
    let lines = ndjson(
        &relay
            .post("/api/chat", &json!({"model": model, "tools": [tool], "messages": [{"role": "user", "content": "weather?"}]}))
            .await
            .text()
            .await
            .unwrap(),
    );
    let calls: Vec<&Value> = lines
        .iter()
        .filter_map(|l| l["message"].get("tool_calls"))
        .collect();
    assert_eq!(calls.len(), 1, "tool calls come whole, once");
    let call = &calls[0][0];
    assert!(call["function"]["arguments"].is_object(), "{call}");
    assert_eq!(call["function"]["index"], 0);
    assert!(
        lines.iter().any(|l| l["message"]["thinking"].is_string()),
        "reasoning becomes thinking"
    );
    assert_eq!(
        lines.last().unwrap()["done_reason"],
        "stop",
        "tool-call turns end with stop in Ollama"
    );
    assert_eq!(
        fake.last_json().await["tools"][0]["function"]["name"],
        "weather"
    );
}

#[tokio::test]
async fn tool_results_by_name_map_to_call_ids() {
    let (fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let resp = relay
        .post(
            "/api/chat",
            &json!({"model": "gpt-4o", "stream": false, "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Oslo"}}}]},
                {"role": "tool", "tool_name": "weather", "content": "3C"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let up = fake.last_json().await;
    let id = up["messages"][1]["tool_calls"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        up["messages"][1]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Oslo\"}"
    );
    assert_eq!(up["messages"][2]["tool_call_id"], id);
}

#[tokio::test]
async fn errors_in_ollama_format() {
    let relay = Relay::start(&[("openai", "http://127.0.0.1:9/v1".into())]).await;
    let cases: [(&'static str, u16, &str); 5] = [
        ("{\"model\":", 400, "invalid JSON"),
        ("{\"messages\":[]}", 400, "missing field `model`"),
        (
            "{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
            404,
            "model 'nope' not found",
        ),
        (
            "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"images\":[\"aGVsbG8=\"]}]}",
            400,
            "PNG",
        ),
        (
            "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
            502,
            "cannot reach openai",
        ),
    ];
    for (body, status, needle) in cases {
        let resp = relay.post_raw("/api/chat", body).await;
        assert_eq!(resp.status().as_u16(), status, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert!(
            v["error"].as_str().unwrap().contains(needle),
            "{body} -> {v}"
        );
    }
}

#[tokio::test]
async fn integer_options_written_as_floats_are_accepted_as_ollama_does() {
    // Ollama reads `options` through a JSON map (every number a float64) and truncates for its
    // integer options, so `num_predict: 64.0` (Python floats, JavaScript number UIs) works there.
    let (fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let resp = relay
        .post(
            "/api/chat",
            &json!({"model": "gpt-4o", "stream": false,
                    "options": {"top_k": 20.0, "num_predict": 64.0, "seed": 5.0, "num_ctx": 4096.0},
                    "messages": [{"role": "user", "content": "Hello"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let up = fake.last_json().await;
    assert_eq!(up["max_tokens"], 64);
    assert_eq!(up["seed"], 5);
}

#[tokio::test]
async fn head_requests_answer_like_get() {
    let (_fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    for p in ["/api/ps", "/api/tags", "/api/version", "/v1/models"] {
        let head = relay.http.head(relay.url(p)).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {p}");
    }
}

#[tokio::test]
async fn chat_with_only_a_system_message_is_answered_not_a_load() {
    // Ollama loads without generating only when `messages` is empty (server/routes.go).
    let (fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    let v: Value = relay
        .post(
            "/api/chat",
            &json!({"model": "gpt-4o", "stream": false,
                    "messages": [{"role": "system", "content": "Say hello."}]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["done_reason"], "stop", "{v}");
    assert_eq!(fake.received().await.len(), 1);
}

#[tokio::test]
async fn keep_alive_zero_without_input_unloads() {
    // `ollama stop` sends an empty request with keep_alive 0: Ollama answers done_reason "unload".
    let (fake, relay, _) = openai_fixture("openai/chat_basic.httprr").await;
    for (path, body) in [
        (
            "/api/generate",
            json!({"model": "gpt-4o", "prompt": "", "keep_alive": 0, "stream": false}),
        ),
        (
            "/api/chat",
            json!({"model": "gpt-4o", "messages": [], "keep_alive": "0s", "stream": false}),
        ),
    ] {
        let v: Value = relay.post(path, &body).await.json().await.unwrap();
        assert_eq!(v["done_reason"], "unload", "{path}: {v}");
    }
    assert!(fake.received().await.is_empty());
}
