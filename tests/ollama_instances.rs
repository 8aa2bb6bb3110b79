//! Ollama servers as upstreams (`OLLAMA_INSTANCES`), end to end: fake instances replay recorded
//! Ollama traffic (tests/fixtures/ollama/: a real `/api/tags` listing, real `/api/chat` answers),
//! and clients use both APIs. Checks the names listed and resolved (namespaced, bare only when
//! unambiguous), what llm-relay sent to `/api/chat` field by field (WIRE.md §2.2), what clients
//! received, discovery of an instance that comes up late, and failures mid-request.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::fake_upstream::FakeUpstream;
use common::fixtures::{Exchange, load};
use common::relay::{Relay, config, first_model_of, ndjson, sse_payloads};
use llm_relay::instances::{InstancesConfig, parse_instances};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::body_partial_json;

/// A real 1x1 RGBA PNG, base64.
const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn one(rel: &str) -> Exchange {
    load(rel).remove(0)
}

/// The recorded `/api/tags` answer as JSON.
fn recorded_tags() -> Value {
    one("ollama/tags.yaml").response_json()
}

/// A fake Ollama server: `/api/tags` from the recording; `/api/chat` answers with `stream` /
/// `non_stream` exchanges chosen by the request's `stream` flag.
async fn fake_instance(stream: Option<&str>, non_stream: Option<&str>) -> FakeUpstream {
    let fake = FakeUpstream::start().await;
    fake.replay(&one("ollama/tags.yaml"), "/api/tags").await;
    if let Some(f) = stream {
        fake.replay_if(
            &one(f),
            "/api/chat",
            body_partial_json(json!({"stream": true})),
        )
        .await;
    }
    if let Some(f) = non_stream {
        fake.replay_if(
            &one(f),
            "/api/chat",
            body_partial_json(json!({"stream": false})),
        )
        .await;
    }
    fake
}

/// A relay with no catalog provider keyed and the given instances (`name=url,...`).
async fn relay_with(instances: &str, refresh: Duration) -> Relay {
    let mut cfg = config(&[]);
    cfg.ollama = InstancesConfig {
        instances: parse_instances(instances).unwrap(),
        refresh,
    };
    Relay::start_with(cfg).await
}

/// Names in the relay's `/api/tags`.
async fn ollama_names(relay: &Relay) -> Vec<String> {
    let v: Value = relay.get("/api/tags").await.json().await.unwrap();
    v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

/// Wait until `/api/tags` lists `name` (discovery runs in the background), or fail.
async fn wait_listed(relay: &Relay, name: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if ollama_names(relay).await.iter().any(|n| n == name) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} not listed within {within:?}: {:?}",
            ollama_names(relay).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Requests the fake received at `path`, bodies as JSON.
async fn received_at(fake: &FakeUpstream, path: &str) -> Vec<Value> {
    fake.received()
        .await
        .iter()
        .filter(|r| r.url.path() == path)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

/// How many requests the fake received at `path`.
async fn hits(fake: &FakeUpstream, path: &str) -> usize {
    fake.received()
        .await
        .iter()
        .filter(|r| r.url.path() == path)
        .count()
}

/// Log lines written by `tracing_subscriber::fmt` in one test.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const SLOW: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn discovery_lists_namespaced_and_bare_names_in_both_apis() {
    let fake = fake_instance(None, None).await;
    let relay = relay_with(&format!("myserver={}", fake.uri()), SLOW).await;
    wait_listed(&relay, "myserver-llama3.2:latest", Duration::from_secs(10)).await;

    let tags: Value = relay.get("/api/tags").await.json().await.unwrap();
    let listed = tags["models"].as_array().unwrap();
    let by_name = |n: &str| listed.iter().find(|m| m["name"] == n).cloned();
    let recorded = recorded_tags();
    for rec in recorded["models"].as_array().unwrap() {
        let name = rec["name"].as_str().unwrap();
        // No catalog provider is keyed here, so even `deepseek-r1:latest` (a catalog alias) is
        // the instance's (see catalog_names_hide_instance_models_only_when_their_provider_is_keyed).
        for exposed in [format!("myserver-{name}"), name.to_string()] {
            let m = by_name(&exposed).unwrap_or_else(|| panic!("{exposed} not listed"));
            assert_eq!(m["model"], exposed.as_str());
            // The instance's real metadata, not invented values.
            for k in ["digest", "size", "modified_at", "details"] {
                assert_eq!(m[k], rec[k], "{exposed}: {k}");
            }
            assert_eq!(m["digest"].as_str().unwrap().len(), 64);
        }
    }
    let names = ollama_names(&relay).await;
    assert!(names.iter().all(|n| !n.contains(":latest:")), "{names:?}");
    // Catalog models are still listed first (none keyed here: none listed), nothing twice.
    let mut dedup = names.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), names.len());

    // OpenAI: ids without `:latest`, owned by the instance, created = modified_at.
    let v: Value = relay.get("/v1/models").await.json().await.unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for id in [
        "myserver-llama3.2",
        "llama3.2",
        "myserver-gemma3:4b",
        "gemma3:4b",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert!(!ids.iter().any(|i| i.ends_with(":latest")));
    let m: Value = relay
        .get("/v1/models/myserver-llama3.2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["owned_by"], "myserver");
    assert_eq!(m["object"], "model");
    let modified = time::OffsetDateTime::parse(
        "2025-06-23T17:01:52.264371207-04:00",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(m["created"], modified.unix_timestamp());
    let r = relay.get("/v1/models/otherserver-llama3.2").await;
    assert_eq!(r.status(), 404);

    // /api/show: the instance fails /api/show (500): the relay answers from its listing. (A 404
    // there means the model is gone: show_of_a_model_the_instance_no_longer_has_is_a_404.)
    wiremock::Mock::given(wiremock::matchers::path("/api/show"))
        .respond_with(wiremock::ResponseTemplate::new(500))
        .mount(&fake.server)
        .await;
    let r = relay
        .post("/api/show", &json!({"model": "llama3.2:3b-nope"}))
        .await;
    assert_eq!(r.status(), 404);
    let r = relay.post("/api/show", &json!({"model": "llama3.2"})).await;
    assert_eq!(r.status(), 200);
    let show: Value = r.json().await.unwrap();
    assert_eq!(show["details"]["parameter_size"], "3.2B");
    assert!(
        show["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("completion"))
    );
}

#[tokio::test]
async fn show_is_the_instances_own_answer() {
    let fake = fake_instance(None, None).await;
    let show = json!({"license": "L", "template": "{{ .Prompt }}", "details": {"family": "llama"},
                      "model_info": {"llama.context_length": 131072}, "capabilities": ["completion", "tools"]});
    wiremock::Mock::given(wiremock::matchers::path("/api/show"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(&show))
        .mount(&fake.server)
        .await;
    let relay = relay_with(&format!("box={}", fake.uri()), SLOW).await;
    wait_listed(&relay, "box-llama3.2:latest", Duration::from_secs(10)).await;
    let r = relay
        .post("/api/show", &json!({"model": "box-llama3.2"}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), show);
    assert_eq!(
        received_at(&fake, "/api/show").await,
        [json!({"model": "llama3.2:latest"})]
    );
}

#[tokio::test]
async fn ambiguous_bare_names_are_neither_listed_nor_resolved() {
    let a = fake_instance(None, Some("ollama/cloud_chat_nonstream_thinking.httprr")).await;
    let b = fake_instance(None, Some("ollama/cloud_chat_nonstream_thinking.httprr")).await;
    let relay = relay_with(&format!("a={},b={}", a.uri(), b.uri()), SLOW).await;
    wait_listed(&relay, "a-llama3.2:latest", Duration::from_secs(10)).await;
    wait_listed(&relay, "b-llama3.2:latest", Duration::from_secs(10)).await;
    let names = ollama_names(&relay).await;
    assert!(!names.contains(&"llama3.2:latest".to_string()), "{names:?}");
    let v: Value = relay.get("/v1/models").await.json().await.unwrap();
    assert!(
        !v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "llama3.2")
    );

    let msg = json!([{"role": "user", "content": "hi"}]);
    let r = relay
        .post(
            "/api/chat",
            &json!({"model": "llama3.2", "messages": msg, "stream": false}),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "model 'llama3.2' not found"})
    );
    let r = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "llama3.2", "messages": msg}),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "model_not_found"
    );

    // The namespaced name reaches its own instance only.
    let r = relay
        .post(
            "/api/chat",
            &json!({"model": "b-llama3.2", "messages": msg, "stream": false}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(received_at(&a, "/api/chat").await.is_empty());
    assert_eq!(received_at(&b, "/api/chat").await.len(), 1);
}

#[tokio::test]
async fn ollama_chat_reaches_api_chat_with_images_tools_format_options_think() {
    let fake = fake_instance(
        Some("ollama/chat_stream.httprr"),
        Some("ollama/cloud_chat_tool_call_thinking.httprr"),
    )
    .await;
    let relay = relay_with(&format!("myserver={}", fake.uri()), SLOW).await;
    wait_listed(&relay, "llama3.2:latest", Duration::from_secs(10)).await;
    let tools = json!([{"type": "function", "function": {"name": "getWeather",
        "description": "Get the current weather for a location.",
        "parameters": {"type": "object", "required": ["location"], "properties": {"location": {"type": "string"}}}}}]);
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
    // Mapped options and native-only ones (Open WebUI sends num_ctx): all reach the instance.
    let options = json!({"temperature": 0.2, "top_p": 0.9, "top_k": 40, "num_predict": 64,
        "stop": ["END"], "seed": 7, "num_ctx": 8192, "min_p": 0.05, "repeat_penalty": 1.1,
        "repeat_last_n": 64, "num_gpu": 99, "mirostat": 0});
    let body = json!({
        "model": "myserver-llama3.2",
        "stream": false,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is in this image?", "images": [PNG_1X1]},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "getWeather", "arguments": {"location": "Paris"}}}]},
            {"role": "tool", "content": "{\"temp\": 21}", "tool_name": "getWeather"},
        ],
        "tools": tools,
        "format": schema,
        "options": options,
        "keep_alive": "10m",
        "think": true,
    });
    let r = relay.post("/api/chat", &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    // What the client got: the recorded answer (tool call arguments as an object, thinking).
    assert_eq!(v["model"], "myserver-llama3.2");
    assert_eq!(v["done"], true);
    assert_eq!(v["done_reason"], "stop");
    assert_eq!(v["prompt_eval_count"], 145);
    assert_eq!(v["eval_count"], 44);
    // The instance's own duration (this cloud model reports only the total), not ours.
    assert_eq!(v["total_duration"], 603200867);
    let call = &v["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_mo1wm122");
    assert_eq!(call["function"]["name"], "getWeather");
    assert_eq!(
        call["function"]["arguments"],
        json!({"location": "San Francisco, CA"})
    );
    assert!(
        v["message"]["thinking"]
            .as_str()
            .unwrap()
            .contains("getWeather")
    );

    // What the instance got, field by field.
    let sent = received_at(&fake, "/api/chat").await.remove(0);
    assert_eq!(sent["model"], "llama3.2:latest");
    assert_eq!(sent["stream"], false);
    assert_eq!(sent["think"], true);
    assert_eq!(sent["format"], schema);
    assert_eq!(sent["tools"], tools);
    assert_eq!(sent["options"], options);
    assert_eq!(sent["keep_alive"], "10m");
    let msgs = sent["messages"].as_array().unwrap();
    assert_eq!(
        msgs[0],
        json!({"role": "system", "content": "You are terse."})
    );
    assert_eq!(
        msgs[1],
        json!({"role": "user", "content": "What is in this image?", "images": [PNG_1X1]})
    );
    assert_eq!(msgs[2]["role"], "assistant");
    let sent_call = &msgs[2]["tool_calls"][0];
    assert_eq!(sent_call["function"]["name"], "getWeather");
    assert_eq!(sent_call["function"]["index"], 0);
    assert_eq!(
        sent_call["function"]["arguments"],
        json!({"location": "Paris"})
    );
    assert_eq!(msgs[3]["role"], "tool");
    assert_eq!(msgs[3]["tool_name"], "getWeather");
    assert_eq!(msgs[3]["content"], "{\"temp\": 21}");
    // The client's call had no id: the relay gave it one, and the result answers that id.
    let call_id = sent_call["id"].as_str().unwrap();
    assert!(!call_id.is_empty());
    assert_eq!(msgs[3]["tool_call_id"], call_id);

    // Streaming (the default): NDJSON passes through, usage from the final line.
    let r = relay
        .post(
            "/api/chat",
            &json!({"model": "llama3.2", "messages": [{"role": "user", "content": "Count from 1 to 5"}],
                    "options": {"num_predict": 50, "temperature": 0}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let lines = ndjson(&r.text().await.unwrap());
    let text: String = lines
        .iter()
        .filter_map(|l| l["message"]["content"].as_str())
        .collect();
    assert_eq!(text, "Okay, here we go!\n\n1, 2, 3, 4, 5\n");
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["prompt_eval_count"], 16);
    assert_eq!(last["eval_count"], 22);
    // Every duration the instance reported, as it reported it (ns).
    for (k, ns) in [
        ("total_duration", 171946792),
        ("load_duration", 38473250),
        ("prompt_eval_duration", 27608250),
        ("eval_duration", 105611917),
    ] {
        assert_eq!(last[k], ns, "{k}");
    }
    let sent = received_at(&fake, "/api/chat").await.remove(1);
    assert_eq!(
        sent,
        json!({"model": "llama3.2:latest", "stream": true,
               "messages": [{"role": "user", "content": "Count from 1 to 5"}],
               "options": {"num_predict": 50, "temperature": 0.0}})
    );

    // /api/generate goes through /api/chat too.
    let r = relay
        .post(
            "/api/generate",
            &json!({"model": "llama3.2", "prompt": "Count from 1 to 5", "system": "terse",
                    "options": {"num_ctx": 4096, "num_predict": -1}, "keep_alive": 0}),
        )
        .await;
    let lines = ndjson(&r.text().await.unwrap());
    let text: String = lines
        .iter()
        .filter_map(|l| l["response"].as_str())
        .collect();
    assert_eq!(text, "Okay, here we go!\n\n1, 2, 3, 4, 5\n");
    let sent = received_at(&fake, "/api/chat").await.remove(2);
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "terse"}, {"role": "user", "content": "Count from 1 to 5"}])
    );
    assert_eq!(sent["options"], json!({"num_ctx": 4096, "num_predict": -1}));
    assert_eq!(sent["keep_alive"], 0);
}

#[tokio::test]
async fn openai_chat_is_translated_to_api_chat_and_back() {
    let fake = fake_instance(
        Some("ollama/cloud_chat_stream_thinking.httprr"),
        Some("ollama/cloud_chat_nonstream_thinking.httprr"),
    )
    .await;
    let relay = relay_with(&format!("myserver={}", fake.uri()), SLOW).await;
    wait_listed(&relay, "llama3.2:latest", Duration::from_secs(10)).await;
    let body = json!({
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is the capital of France?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_1X1}")}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "lookup", "arguments": "{\"q\":\"France\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Paris"},
        ],
        "max_tokens": 100,
        "temperature": 0,
        "seed": 3,
        "stop": "###",
        "response_format": {"type": "json_object"},
        "reasoning_effort": "low",
    });
    let r = relay.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "llama3.2");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "The capital of France is **Paris**."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // The instance's thinking comes back as reasoning_content, whole.
    let recorded = one("ollama/cloud_chat_nonstream_thinking.httprr").response_json();
    let thinking = recorded["message"]["thinking"].as_str().unwrap();
    assert!(!thinking.is_empty());
    assert_eq!(v["choices"][0]["message"]["reasoning_content"], thinking);
    assert_eq!(v["usage"]["prompt_tokens"], 74);
    assert_eq!(v["usage"]["completion_tokens"], 40);
    assert_eq!(v["usage"]["total_tokens"], 114);

    let sent = received_at(&fake, "/api/chat").await.remove(0);
    assert_eq!(sent["model"], "llama3.2:latest");
    assert_eq!(sent["stream"], false);
    assert_eq!(sent["format"], "json");
    assert_eq!(sent["think"], "low");
    assert_eq!(
        sent["options"],
        json!({"temperature": 0.0, "num_predict": 100, "stop": ["###"], "seed": 3})
    );
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the capital of France?", "images": [PNG_1X1]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "function": {"index": 0, "name": "lookup", "arguments": {"q": "France"}}}]},
            {"role": "tool", "content": "Paris", "tool_name": "lookup", "tool_call_id": "call_1"},
        ])
    );

    // Streaming: thinking then text deltas, finish, usage chunk, [DONE].
    let r = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "myserver-llama3.2", "stream": true, "stream_options": {"include_usage": true},
                    "messages": [{"role": "user", "content": "Count from 1 to 5"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let payloads = sse_payloads(&r.text().await.unwrap());
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    let recorded: String =
        String::from_utf8_lossy(&one("ollama/cloud_chat_stream_thinking.httprr").response_body)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["message"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
    assert!(!recorded.is_empty());
    assert_eq!(text, recorded);
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/reasoning_content")
                .and_then(Value::as_str)
        })
        .collect();
    let recorded_thinking: String =
        String::from_utf8_lossy(&one("ollama/cloud_chat_stream_thinking.httprr").response_body)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["message"]["thinking"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
    assert!(!recorded_thinking.is_empty());
    assert_eq!(reasoning, recorded_thinking);
    assert!(
        chunks
            .iter()
            .any(|c| c.pointer("/choices/0/finish_reason") == Some(&json!("stop")))
    );
    let usage = chunks
        .iter()
        .find_map(|c| c.get("usage").filter(|u| u.is_object()))
        .unwrap();
    assert_eq!(
        (
            usage["prompt_tokens"].clone(),
            usage["completion_tokens"].clone()
        ),
        (json!(74), json!(57))
    );
    assert_eq!(received_at(&fake, "/api/chat").await[1]["stream"], true);
}

#[tokio::test]
async fn openai_tool_call_from_an_instance() {
    let fake = fake_instance(None, Some("ollama/cloud_chat_tool_call_thinking.httprr")).await;
    let relay = relay_with(&format!("myserver={}", fake.uri()), SLOW).await;
    wait_listed(&relay, "llama3.2:latest", Duration::from_secs(10)).await;
    let tools = json!([{"type": "function", "function": {"name": "getWeather", "parameters": {"type": "object"}}}]);
    let r = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "llama3.2", "tools": tools, "tool_choice": "auto",
                    "messages": [{"role": "user", "content": "What's the weather like in San Francisco?"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let c = &v["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls");
    let call = &c["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_mo1wm122");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "getWeather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"location": "San Francisco, CA"}));
    assert_eq!(received_at(&fake, "/api/chat").await[0]["tools"], tools);

    // tool_choice "none": no tools sent (Ollama has no tool_choice).
    let _ = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "llama3.2", "tools": tools, "tool_choice": "none",
                    "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert!(
        received_at(&fake, "/api/chat").await[1]
            .get("tools")
            .is_none()
    );
}

#[tokio::test]
async fn instance_errors_keep_their_status_and_message_in_each_format() {
    let fake = fake_instance(None, Some("ollama/error_400_tools_not_supported.httprr")).await;
    let relay = relay_with(&format!("myserver={}", fake.uri()), SLOW).await;
    wait_listed(&relay, "gemma3:4b", Duration::from_secs(10)).await;
    let msg = json!([{"role": "user", "content": "Which date do we have today?"}]);
    let tools = json!([{"type": "function", "function": {"name": "getTime", "parameters": {"type": "object"}}}]);
    let r = relay
        .post(
            "/api/chat",
            &json!({"model": "gemma3:4b", "stream": false, "messages": msg, "tools": tools}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"],
        "myserver returned HTTP 400: registry.ollama.ai/library/gemma3:1b does not support tools"
    );
    let r = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "gemma3:4b", "messages": msg, "tools": tools}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not support tools")
    );
    assert_eq!(v["error"]["type"], "invalid_request_error");

    // An http(s) image URL cannot be sent to Ollama: a clear 400 before any upstream call.
    let r = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "gemma3:4b", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(received_at(&fake, "/api/chat").await.len(), 2);
}

#[tokio::test]
async fn an_instance_down_at_startup_is_picked_up_by_a_later_refresh() {
    // Capture this test's logs (current-thread runtime: the discovery task runs on this thread).
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Nothing answers /api/tags yet (wiremock's default 404): discovery fails and is logged,
    // without the credentials of the URL.
    let fake = FakeUpstream::start().await;
    let with_credentials = fake.uri().replace("http://", "http://admin:hunter2@");
    let relay = relay_with(
        &format!("late={with_credentials}"),
        Duration::from_millis(300),
    )
    .await;
    // Wait for three failed attempts (startup, then every 300 ms).
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.received().await.len() < 3 {
        assert!(Instant::now() < deadline, "no periodic discovery attempts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !ollama_names(&relay)
            .await
            .iter()
            .any(|n| n.starts_with("late-"))
    );
    let text = logs.text();
    // Logged once per outage, not at every periodic attempt.
    assert_eq!(
        text.matches("ollama instance discovery failed").count(),
        1,
        "{text}"
    );
    assert!(
        text.contains("instance=\"late\"") || text.contains("instance=late"),
        "{text}"
    );
    assert!(text.contains("HTTP 404"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // Credentials in the URL go to the server as HTTP Basic auth (a reverse proxy in front).
    let tags_requests = fake.received().await;
    let auth = tags_requests[0].headers.get("authorization").unwrap();
    assert_eq!(auth, "Basic YWRtaW46aHVudGVyMg==");
    let r = relay
        .post(
            "/api/chat",
            &json!({"model": "late-llama3.2", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 404);
    // The server comes up: the periodic refresh finds its models.
    fake.replay(&one("ollama/tags.yaml"), "/api/tags").await;
    wait_listed(&relay, "late-llama3.2:latest", Duration::from_secs(10)).await;
}

#[tokio::test]
async fn listing_refreshes_on_demand() {
    let fake = FakeUpstream::start().await;
    let relay = relay_with(&format!("late={}", fake.uri()), SLOW).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.replay(&one("ollama/tags.yaml"), "/api/tags").await;
    // The periodic refresh is an hour away: listings (rate-limited to one refresh per 2 s)
    // trigger the re-discovery; each listing answers from the snapshot it has.
    wait_listed(&relay, "late-llama3.2:latest", Duration::from_secs(10)).await;
}

/// A raw HTTP server that lists one model, then answers `/api/chat` with a 200 NDJSON head and
/// one line before closing the connection (stream cut), or closes without answering (`stream:
/// false`).
async fn cutting_instance() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut n = 0;
                // Read the head and the body (small requests: until the JSON object closes).
                loop {
                    let Ok(k) = sock.read(&mut buf[n..]).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    n += k;
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if let Some(i) = text.find("\r\n\r\n") {
                        let head = &text[..i];
                        if head.starts_with("GET") || text[i..].trim_end().ends_with('}') {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                if text.starts_with("GET /api/tags") {
                    let body = r#"{"models":[{"name":"flaky:latest","model":"flaky:latest","modified_at":"2025-06-23T17:01:52.264371207-04:00","size":1,"digest":"a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72","details":{}}]}"#;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                } else if text.contains("\"stream\":true") {
                    let line = "{\"model\":\"flaky:latest\",\"created_at\":\"2025-08-20T13:48:24.316155Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Okay\"},\"done\":false}\n";
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{line}\r\n",
                        line.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // Close without finishing.
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_instance_failing_mid_request_gives_502_and_a_cut_stream_ends_with_an_error() {
    let url = cutting_instance().await;
    let relay = relay_with(&format!("flakybox={url}"), SLOW).await;
    wait_listed(&relay, "flaky:latest", Duration::from_secs(10)).await;
    let msg = json!([{"role": "user", "content": "hi"}]);

    // Connection closed before any answer: 502 in each client's format.
    let r = relay
        .post(
            "/api/chat",
            &json!({"model": "flaky", "stream": false, "messages": msg}),
        )
        .await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("flakybox"), "{v}");
    let r = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "flakybox-flaky", "messages": msg}),
        )
        .await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "api_error");

    // Stream cut after one line: the text so far, then an error line / event; no hang.
    let started = Instant::now();
    let r = relay
        .post("/api/chat", &json!({"model": "flaky", "messages": msg}))
        .await;
    assert_eq!(r.status(), 200);
    let lines = ndjson(&r.text().await.unwrap());
    assert_eq!(lines[0]["message"]["content"], "Okay");
    assert!(
        lines.last().unwrap()["error"].as_str().is_some(),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l["done"] == true));

    let r = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "flaky", "stream": true, "messages": msg}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let payloads = sse_payloads(&r.text().await.unwrap());
    // WIRE.md §3.6: an error object with a message, then [DONE].
    let err: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
    assert!(err["error"]["message"].is_string(), "{payloads:?}");
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

fn run_cli(env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_llm-relay"));
    cmd.arg("check")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn ollama_instances_configuration_is_checked_and_shown_without_credentials() {
    for (value, message) in [
        ("http://host:11434", "no '=' between name and URL"),
        ("a=ftp://host", "the URL must be http(s)://host:port"),
        ("a=http://x,A=http://y", "the name is used twice"),
        ("my server=http://x", "the name must be letters, digits"),
    ] {
        let o = run_cli(&[("OLLAMA_INSTANCES", value)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{value}: {err}");
        assert!(err.contains("OLLAMA_INSTANCES entry"), "{value}: {err}");
        assert!(err.contains(message), "{value}: {err}");
    }
    let provider = llm_relay::catalog::PROVIDERS[0].name;
    let o = run_cli(&[("OLLAMA_INSTANCES", &format!("{provider}=http://x:11434"))]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is a provider of the catalog"));
    for bad in ["0", "86401", "soon"] {
        let o = run_cli(&[("OLLAMA_REFRESH_SECS", bad)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("OLLAMA_REFRESH_SECS={bad:?} is not valid")),
            "{err}"
        );
    }

    // Also from a file (Docker secrets), newline-separated; shown with credentials removed.
    let dir = std::env::temp_dir().join(format!("llm-relay-instances-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("instances");
    std::fs::write(
        &file,
        "gpu=http://admin:hunter2@10.0.0.5:11434\nlaptop=http://127.0.0.1:11434/\n",
    )
    .unwrap();
    let o = run_cli(&[
        ("OLLAMA_INSTANCES_FILE", file.to_str().unwrap()),
        ("OLLAMA_REFRESH_SECS", "30"),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("gpu") && out.contains("http://10.0.0.5:11434"),
        "{out}"
    );
    assert!(out.contains("laptop") && out.contains("every 30s"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The recorded tool-call answer (cloud_chat_tool_call_thinking) as Ollama streams it: thinking,
/// then the whole tool call in a `done:false` line, then the final line (WIRE.md §2.3).
fn tool_call_ndjson() -> String {
    let v = one("ollama/cloud_chat_tool_call_thinking.httprr").response_json();
    let head = json!({"model": v["model"], "created_at": v["created_at"]});
    let mut lines = Vec::new();
    let mut line = head.clone();
    line["message"] =
        json!({"role": "assistant", "content": "", "thinking": v["message"]["thinking"]});
    line["done"] = false.into();
    lines.push(line);
    let mut line = head.clone();
    line["message"] =
        json!({"role": "assistant", "content": "", "tool_calls": v["message"]["tool_calls"]});
    line["done"] = false.into();
    lines.push(line);
    let mut line = v.clone();
    line["message"] = json!({"role": "assistant", "content": ""});
    lines.push(line);
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[tokio::test]
async fn streamed_tool_calls_reach_both_clients_whole() {
    let fake = fake_instance(None, None).await;
    wiremock::Mock::given(wiremock::matchers::path("/api/chat"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_raw(tool_call_ndjson(), "application/x-ndjson"),
        )
        .mount(&fake.server)
        .await;
    let relay = relay_with(&format!("myserver={}", fake.uri()), SLOW).await;
    wait_listed(&relay, "llama3.2:latest", Duration::from_secs(10)).await;
    let tools = json!([{"type": "function", "function": {"name": "getWeather", "parameters": {"type": "object"}}}]);
    let msg = json!([{"role": "user", "content": "What's the weather like in San Francisco?"}]);

    let r = relay
        .post(
            "/api/chat",
            &json!({"model": "llama3.2", "messages": msg, "tools": tools}),
        )
        .await;
    let lines = ndjson(&r.text().await.unwrap());
    let calls: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"]["tool_calls"].is_array())
        .collect();
    assert_eq!(calls.len(), 1, "{lines:?}");
    let call = &calls[0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_mo1wm122");
    assert_eq!(
        call["function"]["arguments"],
        json!({"location": "San Francisco, CA"})
    );
    assert!(lines.iter().any(|l| l["message"]["thinking"].is_string()));
    let last = lines.last().unwrap();
    assert_eq!(
        (last["done"].clone(), last["done_reason"].clone()),
        (json!(true), json!("stop"))
    );
    assert_eq!(
        (
            last["prompt_eval_count"].clone(),
            last["eval_count"].clone()
        ),
        (json!(145), json!(44))
    );

    let r = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "llama3.2", "messages": msg, "tools": tools, "stream": true}),
        )
        .await;
    let payloads = sse_payloads(&r.text().await.unwrap());
    let chunks: Vec<Value> = payloads
        .iter()
        .filter(|p| *p != "[DONE]")
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0"))
        .collect();
    assert_eq!(deltas[0]["id"], "call_mo1wm122");
    assert_eq!(deltas[0]["function"]["name"], "getWeather");
    let args: String = deltas
        .iter()
        .filter_map(|d| d["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"location": "San Francisco, CA"})
    );
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/finish_reason")
                .filter(|f| !f.is_null())
        })
        .collect();
    assert_eq!(finish, [&json!("tool_calls")]);
}

#[tokio::test]
async fn a_model_removed_from_its_instance_is_rediscovered_after_a_404() {
    let fake = fake_instance(None, None).await;
    wiremock::Mock::given(wiremock::matchers::path("/api/chat"))
        .respond_with(
            wiremock::ResponseTemplate::new(404)
                .set_body_json(json!({"error": "model 'llama3.2:latest' not found"})),
        )
        .mount(&fake.server)
        .await;
    let relay = relay_with(&format!("myserver={}", fake.uri()), SLOW).await;
    wait_listed(&relay, "myserver-llama3.2:latest", Duration::from_secs(10)).await;
    // Past the on-demand rate limit of the listings above, and after any discovery they started
    // has finished (one still running when the listing changes would already see it empty, and
    // the first chat below would not reach the instance).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // The model is deleted on the server (its listing is now empty).
    wiremock::Mock::given(wiremock::matchers::path("/api/tags"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({"models": []})))
        .with_priority(1)
        .mount(&fake.server)
        .await;
    let msg = json!([{"role": "user", "content": "hi"}]);
    let body = json!({"model": "myserver-llama3.2", "stream": false, "messages": msg});
    let r = relay.post("/api/chat", &body).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "myserver returned HTTP 404: model 'llama3.2:latest' not found"
    );
    // That 404 started a re-discovery: the name soon stops resolving (the relay's own 404).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = relay.post("/api/chat", &body).await;
        let v: Value = r.json().await.unwrap();
        if v["error"] == "model 'myserver-llama3.2' not found" {
            break;
        }
        assert!(Instant::now() < deadline, "still routed: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Snapshot of the canonical -> `/api/chat` encoding (reviewed diff on any change): every field
/// the Ollama dialect writes.
#[test]
fn api_chat_request_snapshot() {
    use llm_relay::canonical::{
        ChatRequest, ContentPart, Message, ResponseFormat, Role, Tool, ToolCall,
    };
    let req = ChatRequest {
        model: "client-name".into(),
        system: vec!["Be terse.".into(), "Answer in English.".into()],
        messages: vec![
            Message {
                content: vec![
                    ContentPart::Text("What is in this image?".into()),
                    ContentPart::Image {
                        media_type: "image/png".into(),
                        data: PNG_1X1.into(),
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
                thinking: Some("I should look it up.".into()),
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
        presence_penalty: Some(0.5),
        frequency_penalty: Some(0.25),
        reasoning_effort: Some("xhigh".into()),
        response_format: Some(ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
            strict: Some(true),
        }),
        tools: vec![Tool {
            name: "lookup".into(),
            description: Some("Look up".into()),
            parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
            strict: Some(true),
        }],
        user: Some("u1".into()),
        ..ChatRequest::default()
    };
    let body = llm_relay::upstream::ollama::encode_body("llama3.2:latest", &req).unwrap();
    insta::assert_json_snapshot!("api_chat_request", body);
}

/// A relay with the given catalog providers keyed, `DEFAULT_MODEL`, and instances.
async fn relay_full(
    enabled: &[(&str, String)],
    default_model: Option<&str>,
    instances: &str,
) -> Relay {
    let mut cfg = config(enabled);
    cfg.default_model = default_model.map(str::to_string);
    cfg.ollama = InstancesConfig {
        instances: parse_instances(instances).unwrap(),
        refresh: SLOW,
    };
    Relay::start_with(cfg).await
}

#[tokio::test]
async fn instance_names_never_fall_back_to_default_model() {
    // DEFAULT_MODEL is a keyed catalog model served by `cloud`: a fallback would reach it.
    let cloud = FakeUpstream::start().await;
    let default = first_model_of("openai");
    let down = FakeUpstream::start().await; // never lists anything (404)
    let a = fake_instance(None, None).await;
    let b = fake_instance(None, None).await;
    let relay = relay_full(
        &[("openai", format!("{}/v1", cloud.uri()))],
        Some(default),
        &format!("late={},a={},b={}", down.uri(), a.uri(), b.uri()),
    )
    .await;
    wait_listed(&relay, "a-llama3.2:latest", Duration::from_secs(10)).await;
    wait_listed(&relay, "b-llama3.2:latest", Duration::from_secs(10)).await;
    let msg = json!([{"role": "user", "content": "private"}]);
    // (a) an instance that never answered; a model an instance does not have; (b) a bare name
    // two instances list.
    for name in ["late-llama3.2", "a-nope:1b", "LLAMA3.2", "llama3.2:latest"] {
        let r = relay
            .post(
                "/api/chat",
                &json!({"model": name, "messages": msg, "stream": false}),
            )
            .await;
        assert_eq!(r.status(), 404, "{name}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": format!("model '{name}' not found")})
        );
        let r = relay
            .post(
                "/v1/chat/completions",
                &json!({"model": name, "messages": msg}),
            )
            .await;
        assert_eq!(r.status(), 404, "{name}");
        let r = relay.post("/api/show", &json!({"model": name})).await;
        assert_eq!(r.status(), 404, "{name}");
    }
    assert!(cloud.received().await.is_empty());
    // Any other unknown name still takes DEFAULT_MODEL (the fallback is really configured).
    let _ = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": "some-unknown-model", "messages": msg}),
        )
        .await;
    assert_eq!(cloud.received().await.len(), 1);
}

#[tokio::test]
async fn catalog_names_hide_instance_models_only_when_their_provider_is_keyed() {
    // The recorded listing has `deepseek-r1:latest`, also a catalog alias.
    let name = "deepseek-r1";
    let provider = llm_relay::catalog::resolve(name)
        .expect("deepseek-r1 is a catalog alias")
        .info()
        .provider
        .name();
    let msg = json!([{"role": "user", "content": "hi"}]);
    let body = json!({"model": name, "messages": msg, "stream": false});

    // No key for that provider: the bare name is the instance's, listed and resolved.
    let box_ = fake_instance(None, Some("ollama/cloud_chat_nonstream_thinking.httprr")).await;
    let relay = relay_with(&format!("box={}", box_.uri()), SLOW).await;
    wait_listed(&relay, "deepseek-r1:latest", Duration::from_secs(10)).await;
    let r = relay.post("/api/chat", &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        received_at(&box_, "/api/chat").await[0]["model"],
        "deepseek-r1:latest"
    );
    let r = relay
        .post(
            "/v1/chat/completions",
            &json!({"model": name, "messages": msg}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(received_at(&box_, "/api/chat").await.len(), 2);

    // Keyed: the catalog wins the bare name; the namespaced one still reaches the instance.
    let cloud = FakeUpstream::start().await;
    let gpu = fake_instance(None, Some("ollama/cloud_chat_nonstream_thinking.httprr")).await;
    let relay = relay_full(
        &[(provider, cloud.uri())],
        None,
        &format!("gpu={}", gpu.uri()),
    )
    .await;
    wait_listed(&relay, "gpu-deepseek-r1:latest", Duration::from_secs(10)).await;
    let _ = relay.post("/api/chat", &body).await;
    assert_eq!(cloud.received().await.len(), 1);
    assert!(received_at(&gpu, "/api/chat").await.is_empty());
    let r = relay
        .post(
            "/api/chat",
            &json!({"model": "gpu-deepseek-r1", "messages": msg, "stream": false}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(received_at(&gpu, "/api/chat").await.len(), 1);
}

#[tokio::test]
async fn show_of_a_model_the_instance_no_longer_has_is_a_404() {
    let fake = fake_instance(None, None).await;
    wiremock::Mock::given(wiremock::matchers::path("/api/show"))
        .respond_with(
            wiremock::ResponseTemplate::new(404)
                .set_body_json(json!({"error": "model 'llama3.2:latest' not found"})),
        )
        .mount(&fake.server)
        .await;
    let relay = relay_with(&format!("box={}", fake.uri()), SLOW).await;
    wait_listed(&relay, "box-llama3.2:latest", Duration::from_secs(10)).await;
    let r = relay
        .post("/api/show", &json!({"model": "box-llama3.2"}))
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "model 'box-llama3.2' not found"})
    );
}

#[tokio::test]
async fn a_slow_instance_does_not_delay_the_models_of_the_others() {
    let slow = FakeUpstream::start().await;
    wiremock::Mock::given(wiremock::matchers::path("/api/tags"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_json(recorded_tags())
                .set_delay(Duration::from_secs(4)),
        )
        .mount(&slow.server)
        .await;
    let fast = fake_instance(None, None).await;
    let started = Instant::now();
    let relay = relay_with(&format!("slow={},fast={}", slow.uri(), fast.uri()), SLOW).await;
    wait_listed(&relay, "fast-llama3.2:latest", Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "fast instance listed after {:?}",
        started.elapsed()
    );
    assert!(
        !ollama_names(&relay)
            .await
            .iter()
            .any(|n| n.starts_with("slow-"))
    );
    // The slow one joins when it answers (within the discovery timeout).
    wait_listed(&relay, "slow-llama3.2:latest", Duration::from_secs(10)).await;
}

#[tokio::test]
async fn the_refresher_stops_when_the_server_future_is_dropped() {
    let fake = fake_instance(None, None).await;
    let mut cfg = config(&[]);
    cfg.ollama = InstancesConfig {
        instances: parse_instances(&format!("x={}", fake.uri())).unwrap(),
        refresh: Duration::from_millis(100),
    };
    let state = llm_relay::relay::AppState::new(cfg).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // Never shut down gracefully: the task running the server is aborted (its future dropped).
    let server = tokio::spawn(llm_relay::server::run(
        listener,
        state,
        std::future::pending::<()>(),
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while hits(&fake, "/api/tags").await < 2 {
        assert!(Instant::now() < deadline, "no periodic discovery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.abort();
    let _ = server.await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after_drop = hits(&fake, "/api/tags").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(hits(&fake, "/api/tags").await, after_drop);
}

#[tokio::test]
async fn on_demand_refreshes_are_throttled_to_one_per_interval() {
    let a = fake_instance(None, None).await;
    let b = fake_instance(None, None).await;
    let relay = relay_with(&format!("a={},b={}", a.uri(), b.uri()), SLOW).await;
    wait_listed(&relay, "b-llama3.2:latest", Duration::from_secs(10)).await;
    // Past the on-demand interval: the next listing may refresh once, no more.
    tokio::time::sleep(llm_relay::instances::ON_DEMAND_MIN_INTERVAL + Duration::from_millis(200))
        .await;
    let before = (hits(&a, "/api/tags").await, hits(&b, "/api/tags").await);
    let msg = json!([{"role": "user", "content": "x"}]);
    for i in 0..10 {
        let _ = relay.get("/api/tags").await;
        let _ = relay.get("/v1/models").await;
        let r = relay
            .post(
                "/api/chat",
                &json!({"model": format!("unknown-{i}"), "messages": msg, "stream": false}),
            )
            .await;
        assert_eq!(r.status(), 404);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = (hits(&a, "/api/tags").await, hits(&b, "/api/tags").await);
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 1));
}

#[tokio::test]
async fn an_instance_that_goes_down_keeps_its_last_known_models() {
    let fake = fake_instance(None, None).await;
    let relay = relay_with(&format!("box={}", fake.uri()), Duration::from_millis(200)).await;
    wait_listed(&relay, "box-llama3.2:latest", Duration::from_secs(10)).await;
    // The server goes away (every request now 404s, /api/tags included).
    fake.server.reset().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while hits(&fake, "/api/tags").await < 3 {
        assert!(
            Instant::now() < deadline,
            "no discovery attempts after the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let names = ollama_names(&relay).await;
    for n in ["box-llama3.2:latest", "llama3.2:latest", "box-gemma3:4b"] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    // Still resolved (the request reaches the instance, which now answers 404 itself).
    let r = relay
        .post(
            "/api/chat",
            &json!({"model": "box-llama3.2", "messages": [{"role": "user", "content": "x"}], "stream": false}),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(received_at(&fake, "/api/chat").await.len(), 1);
}

/// `/api/ps` lists what the instances have loaded (their own `/api/ps`, WIRE.md §2.7 shape) under
/// the names the relay lists; an instance whose `/api/ps` fails is left out, not an error.
#[tokio::test]
async fn api_ps_lists_the_models_loaded_on_the_instances() {
    let good = fake_instance(None, None).await;
    let loaded = json!({"name": "llama3.2:latest", "model": "llama3.2:latest", "size": 5137025024u64,
        "digest": "2ae6f6dd7a3dd734790bbbf58b8909a606e0e7e97e94b7604e0aa7ae4490e6d8",
        "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                    "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
        "expires_at": "2024-06-04T14:38:31.83753-07:00", "size_vram": 5137025024u64, "context_length": 4096});
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/api/ps"))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_body_json(json!({"models": [loaded.clone()]})),
        )
        .mount(&good.server)
        .await;
    let broken = fake_instance(None, None).await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/api/ps"))
        .respond_with(wiremock::ResponseTemplate::new(500))
        .mount(&broken.server)
        .await;
    let relay = relay_with(
        &format!("gpu={},down={}", good.uri(), broken.uri()),
        Duration::from_secs(60),
    )
    .await;
    wait_listed(&relay, "gpu-llama3.2:latest", Duration::from_secs(5)).await;
    let resp = relay.get("/api/ps").await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "{v}");
    let mut expected = loaded;
    expected["name"] = "gpu-llama3.2:latest".into();
    expected["model"] = "gpu-llama3.2:latest".into();
    assert_eq!(models[0], expected);
    assert_eq!(hits(&broken, "/api/ps").await, 1);
}

/// `ollama stop` (an empty `/api/generate` with `keep_alive: 0`) and a warm-up (an empty
/// `/api/chat`) reach the Ollama server, so it really unloads / loads the model.
#[tokio::test]
async fn load_and_unload_requests_reach_the_instance() {
    let fake = fake_instance(None, None).await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/api/generate"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({
            "model": "llama3.2:latest", "created_at": "2025-01-01T00:00:00Z", "response": "",
            "done": true, "done_reason": "unload"})))
        .mount(&fake.server)
        .await;
    let relay = relay_with(&format!("gpu={}", fake.uri()), Duration::from_secs(60)).await;
    wait_listed(&relay, "gpu-llama3.2:latest", Duration::from_secs(5)).await;
    let resp = relay
        .post(
            "/api/generate",
            &json!({"model": "gpu-llama3.2", "keep_alive": 0}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["done_reason"], "unload");
    let resp = relay
        .post(
            "/api/chat",
            &json!({"model": "gpu-llama3.2", "messages": [], "keep_alive": "10m"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        received_at(&fake, "/api/generate").await,
        vec![
            json!({"model": "llama3.2:latest", "keep_alive": 0}),
            json!({"model": "llama3.2:latest", "keep_alive": "10m"}),
        ]
    );
    assert_eq!(hits(&fake, "/api/chat").await, 0);
}

/// `ollama pull <instance>-<model>` (or a bare name with one server) is pulled by that Ollama
/// server: its NDJSON progress comes back as it sent it (tests/fixtures/ollama/pull_then_chat.httprr,
/// the first exchange), and the instances are re-discovered at once so the model is listed. A
/// catalog model still answers success without a download.
#[tokio::test]
async fn pulls_of_instance_models_are_done_by_the_instance() {
    let pull = load("ollama/pull_then_chat.httprr").remove(0);
    assert_eq!(pull.path(), "/api/pull");
    let fake = fake_instance(None, None).await;
    fake.replay(&pull, "/api/pull").await;
    let relay = relay_with(&format!("gpu={}", fake.uri()), Duration::from_secs(3600)).await;
    wait_listed(&relay, "gpu-llama3.2:latest", Duration::from_secs(5)).await;
    let tags_before = hits(&fake, "/api/tags").await;

    let resp = relay
        .post(
            "/api/pull",
            &json!({"model": "gpu-gemma3:1b", "stream": true}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.as_ref(), pull.response_body.as_slice());
    assert_eq!(
        received_at(&fake, "/api/pull").await,
        vec![json!({"model": "gemma3:1b", "stream": true})]
    );
    // Re-discovered right after the pull, not at the next hourly refresh.
    let deadline = Instant::now() + Duration::from_secs(5);
    while hits(&fake, "/api/tags").await == tags_before {
        assert!(Instant::now() < deadline, "no re-discovery after the pull");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // With one server a bare new name goes there too; a model already there is updated there.
    // The server is always asked for a stream (a non-streamed pull sends nothing until the
    // download ends); a client that asked for one object gets the last progress line.
    let resp = relay
        .post("/api/pull", &json!({"name": "phi4", "stream": false}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"status": "success"})
    );
    let resp = relay
        .post("/api/pull", &json!({"model": "gpu-llama3.2"}))
        .await;
    assert_eq!(resp.status(), 200);
    let pulled: Vec<Value> = received_at(&fake, "/api/pull").await;
    assert_eq!(pulled[1], json!({"model": "phi4", "stream": true}));
    assert_eq!(
        pulled[2],
        json!({"model": "llama3.2:latest", "stream": true})
    );

    // A catalog model has nothing to download (no instance call).
    let resp = relay
        .post("/api/pull", &json!({"model": "gpt-4o", "stream": false}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"status": "success"})
    );
    assert_eq!(hits(&fake, "/api/pull").await, 3);
}

/// A pull the server breaks off mid-way ends with Ollama's own NDJSON error line (not a cut
/// body), and the instances are still re-discovered.
#[tokio::test]
async fn a_pull_cut_mid_way_ends_with_an_error_line() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tags_hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hits_in = std::sync::Arc::clone(&tags_hits);
    tokio::spawn(async move {
        let tags = recorded_tags().to_string();
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let tags = tags.clone();
            let hits_in = std::sync::Arc::clone(&hits_in);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                if head.starts_with("GET /api/tags") {
                    hits_in.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{tags}",
                        tags.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                } else {
                    // One progress line, then the connection dies without the last chunk.
                    let line = "{\"status\":\"pulling manifest\"}\n";
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{line}\r\n",
                        line.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.flush().await;
                }
            });
        }
    });
    let relay = relay_with(&format!("gpu=http://{addr}"), Duration::from_secs(3600)).await;
    wait_listed(&relay, "gpu-llama3.2:latest", Duration::from_secs(5)).await;
    let before = tags_hits.load(std::sync::atomic::Ordering::SeqCst);
    let resp = relay
        .post("/api/pull", &json!({"model": "gpu-gemma3:1b"}))
        .await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    let lines = ndjson(&body);
    assert_eq!(lines[0], json!({"status": "pulling manifest"}), "{body}");
    assert!(
        lines.last().unwrap()["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while tags_hits.load(std::sync::atomic::Ordering::SeqCst) == before {
        assert!(
            Instant::now() < deadline,
            "no re-discovery after the cut pull"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
