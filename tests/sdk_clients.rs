//! Real clients against the built binary: the official `openai` and `ollama` Python SDKs
//! (tests/clients/test_sdks.py, run with pytest) talk to `llm-relay`, which talks to a fake OpenAI
//! upstream on 127.0.0.1 replaying recorded traffic (tests/fixtures/openai/), and to a fake Ollama
//! server configured as an instance (`OLLAMA_INSTANCES`, tests/fixtures/ollama/).
//!
//! Needs `LLM_RELAY_PYTHON`: a Python with the packages of tests/clients/requirements.txt.
//! `bash tests/run.sh` creates that venv and sets it. Offline: every socket is on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::process::{ChildGuard, free_port, read_log, run_logged};

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::fake_upstream::FakeUpstream;
use common::fixtures::{self, Exchange};
use llm_relay::catalog::ModelId;
use serde_json::{Value, json};
use wiremock::Request;
use wiremock::matchers::body_partial_json;

/// The key llm-relay is started with; the fake upstream must receive it as a bearer token.
const API_KEY: &str = "sk-test-llm-relay-sdk-clients";
/// Where every OpenAI-compatible chat request lands (base URL `<fake>/v1`).
const CHAT_PATH: &str = "/v1/chat/completions";
/// The embedding model the SDK tests call, and the vectors the fake upstream answers (values
/// exact in float32, so base64 and JSON answers compare exactly).
const EMBED_MODEL: &str = "text-embedding-3-small";
const EMBED_VECTORS: [[f32; 3]; 2] = [[0.5, -0.25, 0.125], [1.0, 0.0, -2.0]];
/// A real 1x1 RGBA PNG (valid IHDR/IDAT/IEND CRCs), base64.
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
/// Name of the Ollama instance the relay is started with.
const INSTANCE: &str = "homelab";
/// Upper bound for the whole pytest run; the SDK clients also time out after 30 s per call.
const PYTEST_TIMEOUT: Duration = Duration::from_secs(300);

fn load_one(rel: &str) -> Exchange {
    let mut exs = fixtures::load(rel);
    assert_eq!(exs.len(), 1, "{rel}: expected exactly one exchange");
    exs.remove(0)
}

/// Usage counts as the SDKs report them.
fn usage(u: &Value) -> Value {
    json!({
        "prompt_tokens": u["prompt_tokens"],
        "completion_tokens": u["completion_tokens"],
        "total_tokens": u["total_tokens"],
    })
}

/// What the Python tests must see of the Ollama instance: the names it exposes (rules in
/// src/instances.rs: namespaced always, bare unless a keyed provider's catalog name) and the recorded
/// answers.
fn instance_expectations(tags: &Exchange, complete: &Exchange, stream: &Exchange) -> Value {
    let tags = tags.response_json();
    let mut ollama_names = Vec::new();
    for m in tags["models"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        ollama_names.push(format!("{INSTANCE}-{name}"));
        // Only the keyed provider's catalog names hide a bare name (the relay keys only openai).
        if llm_relay::catalog::resolve(name).is_none_or(|m| m.info().provider.name() != "openai") {
            ollama_names.push(name.to_string());
        }
    }
    let openai_ids: Vec<&str> = ollama_names
        .iter()
        .map(|n| n.strip_suffix(":latest").unwrap_or(n))
        .collect();
    let llama = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "llama3.2:latest")
        .unwrap();
    let c = complete.response_json();
    let (mut text, mut last) = (String::new(), Value::Null);
    for line in String::from_utf8_lossy(&stream.response_body).lines() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).unwrap();
        text.push_str(v["message"]["content"].as_str().unwrap_or_default());
        last = v;
    }
    json!({
        "name": INSTANCE,
        "ollama_names": ollama_names,
        "openai_ids": openai_ids,
        "digest": llama["digest"],
        "parameter_size": llama["details"]["parameter_size"],
        "complete": {"content": c["message"]["content"], "thinking": c["message"]["thinking"],
                     "prompt_tokens": c["prompt_eval_count"], "completion_tokens": c["eval_count"]},
        "stream": {"text": text, "prompt_tokens": last["prompt_eval_count"],
                   "completion_tokens": last["eval_count"]},
    })
}

/// What the Python tests must see, taken from the fixtures and the catalog.
fn expectations(basic: &Exchange, stream: &Exchange, image: &Exchange, o3: &Exchange) -> Value {
    let complete = |ex: &Exchange| {
        let v = ex.response_json();
        json!({"content": v["choices"][0]["message"]["content"], "usage": usage(&v["usage"])})
    };
    let mut text = String::new();
    let mut stream_usage = Value::Null;
    for data in stream.sse_data() {
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(&data).unwrap();
        if let Some(t) = chunk
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
        {
            text.push_str(t);
        }
        if chunk["usage"].is_object() {
            stream_usage = usage(&chunk["usage"]);
        }
    }
    assert!(
        !text.is_empty() && stream_usage.is_object(),
        "stream fixture has text and usage"
    );
    let mut o3_mini = complete(o3);
    o3_mini["reasoning_tokens"] =
        o3.response_json()["usage"]["completion_tokens_details"]["reasoning_tokens"].clone();

    let openai_models: Vec<&str> = ModelId::all()
        .filter(|m| m.info().provider.name() == "openai")
        .map(|m| m.info().id)
        .collect();
    let gpt4o = ModelId::all()
        .find(|m| m.info().id == "gpt-4o")
        .expect("gpt-4o in providers.yaml");
    json!({
        "png_base64": PNG_B64,
        "openai_models": openai_models,
        "context_length": {"gpt-4o": gpt4o.info().context_length},
        "chat_basic": complete(basic),
        "chat_stream": {"text": text, "usage": stream_usage},
        "chat_image": complete(image),
        "o3_mini": o3_mini,
    })
}

/// Logs of the last run (relay and pytest), kept for inspection: target/tmp/sdk_clients/.
fn log_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk_clients");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Start `llm-relay` with only OpenAI configured, pointed at `upstream`, and one Ollama instance.
fn spawn_relay(port: u16, upstream: &str, instance: &str, log: &Path) -> ChildGuard {
    let out = File::create(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_llm-relay"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        // No admin server: it would take port 8080 (tests/admin_*.rs cover it).
        .env("ADMIN_ENABLED", "false")
        .env("OPENAI_API_KEY", API_KEY)
        .env("OPENAI_BASE_URL", format!("{upstream}/v1"))
        .env("OLLAMA_INSTANCES", format!("{INSTANCE}={instance}"))
        .env("RUST_LOG", "info")
        // Usage database beside the logs, not ./data in the source tree.
        .env("DATA_DIR", log.with_file_name("data"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn llm-relay");
    ChildGuard(child)
}

/// Wait until `GET /` answers "Ollama is running" (or fail with the relay's log).
async fn wait_ready(relay: &mut ChildGuard, base: &str, log: &Path) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = relay.0.try_wait().unwrap() {
            panic!("llm-relay exited early ({status}); log:\n{}", read_log(log));
        }
        if let Ok(r) = client.get(format!("{base}/")).send().await
            && r.status().is_success()
            && r.text()
                .await
                .is_ok_and(|t| t.contains("Ollama is running"))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "llm-relay did not answer GET / within 30 s; log:\n{}",
            read_log(log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until the relay lists `name` (instance discovery runs in the background at startup).
async fn wait_discovered(base: &str, name: &str, log: &Path) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/api/tags")).send().await
            && r.text().await.is_ok_and(|t| t.contains(name))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "llm-relay did not list {name} within 30 s; log:\n{}",
            read_log(log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Run pytest on tests/clients/test_sdks.py; returns its exit status and combined output.
fn run_pytest(
    python: &str,
    base: &str,
    expected: &Value,
    log: &Path,
) -> (Option<ExitStatus>, String) {
    run_pytest_file(python, "tests/clients/test_sdks.py", base, expected, log)
}

/// Run pytest on one file of tests/clients/; returns its exit status and combined output.
fn run_pytest_file(
    python: &str,
    file: &str,
    base: &str,
    expected: &Value,
    log: &Path,
) -> (Option<ExitStatus>, String) {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider", file])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LLM_RELAY_URL", base)
        .env("LLM_RELAY_EXPECTED", expected.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost");
    run_logged(cmd, log, PYTEST_TIMEOUT)
}

/// Text of every message of an upstream chat body (string content and text parts).
fn message_texts(body: &Value) -> String {
    let mut s = String::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        match &m["content"] {
            Value::String(t) => s.push_str(t),
            Value::Array(parts) => {
                for p in parts {
                    s.push_str(p["text"].as_str().unwrap_or_default());
                }
            }
            _ => {}
        }
        s.push('\n');
    }
    s
}

/// The upstream bodies whose messages carry `tag` (each Python test tags its prompt).
fn tagged<'a>(bodies: &'a [Value], tag: &str) -> Vec<&'a Value> {
    bodies
        .iter()
        .filter(|b| message_texts(b).contains(tag))
        .collect()
}

fn one<'a>(bodies: &'a [Value], tag: &str) -> &'a Value {
    let found = tagged(bodies, tag);
    assert_eq!(
        found.len(),
        1,
        "expected one upstream request tagged {tag}, got {found:#?}"
    );
    found[0]
}

fn image_urls(body: &Value) -> Vec<&str> {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|p| p["type"] == "image_url")
        .filter_map(|p| p["image_url"]["url"].as_str())
        .collect()
}

/// What llm-relay sent upstream while the SDK tests ran.
fn check_upstream_requests(requests: &[Request]) {
    assert!(!requests.is_empty(), "the fake upstream received nothing");
    let mut bodies = Vec::new();
    for r in requests {
        assert!(
            r.method.as_str() == "POST" && [CHAT_PATH, "/v1/embeddings"].contains(&r.url.path()),
            "unexpected upstream request {} {}",
            r.method,
            r.url
        );
        let auth = r.headers.get("authorization").and_then(|v| v.to_str().ok());
        assert_eq!(
            auth,
            Some(format!("Bearer {API_KEY}").as_str()),
            "upstream Authorization of {}",
            r.url
        );
        let ct = r.headers.get("content-type").and_then(|v| v.to_str().ok());
        assert_eq!(ct, Some("application/json"));
        bodies.push(serde_json::from_slice::<Value>(&r.body).expect("upstream body is JSON"));
    }
    // Embeddings from both SDKs (the openai one asks for base64, which is not forwarded: the
    // upstream answers floats and llm-relay encodes).
    let embeds: Vec<&Value> = requests
        .iter()
        .zip(&bodies)
        .filter(|(r, _)| r.url.path() == "/v1/embeddings")
        .map(|(_, b)| b)
        .collect();
    for tag in ["[oa-emb]", "[oa-emb-float]", "[ol-emb]", "[ol-emb-legacy]"] {
        let b = embeds
            .iter()
            .find(|b| b.to_string().contains(tag))
            .unwrap_or_else(|| panic!("no embeddings request with {tag}: {embeds:?}"));
        assert_eq!(b["model"], EMBED_MODEL, "{tag}: {b}");
        assert!(b.get("encoding_format").is_none(), "{tag}: {b}");
    }
    for b in &bodies {
        let model = b["model"].as_str().unwrap_or_default();
        assert!(
            !model.ends_with(":latest"),
            "Ollama tag leaked upstream: {b}"
        );
    }

    // openai SDK, non-stream: parameters passed through for a non-reasoning model.
    let b = one(&bodies, "[oa-chat]");
    assert_eq!(b["model"], "gpt-3.5-turbo");
    assert_eq!(b["max_tokens"], 50, "{b}");
    assert_eq!(b["temperature"], 0.0, "{b}");
    assert!(b.get("stream").is_none_or(|s| s == false), "{b}");

    // Streams always ask the upstream for usage.
    for tag in [
        "[oa-stream]",
        "[oa-stream-nousage]",
        "[oa-cmpl-stream]",
        "[ol-stream]",
        "[ol-gen-stream]",
    ] {
        let b = one(&bodies, tag);
        assert_eq!(b["stream"], true, "{tag}: {b}");
        assert_eq!(
            b["stream_options"],
            json!({"include_usage": true}),
            "{tag}: {b}"
        );
    }

    // Responses API: instructions first as the system message, max_output_tokens as the limit;
    // a stream asks for usage like every stream; a 400 never reaches the upstream.
    let b = one(&bodies, "[oa-resp]");
    assert_eq!(b["model"], "gpt-3.5-turbo");
    assert_eq!(
        b["messages"],
        json!([{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "[oa-resp] Hello, how are you?"}]),
        "{b}"
    );
    assert_eq!(b["max_tokens"], 50, "{b}");
    assert!(
        b.get("store").is_none() && b.get("metadata").is_none(),
        "{b}"
    );
    let b = one(&bodies, "[oa-resp-stream]");
    assert_eq!(b["stream"], true, "{b}");
    assert_eq!(b["stream_options"], json!({"include_usage": true}), "{b}");
    assert!(tagged(&bodies, "[oa-resp-prev]").is_empty());

    // Legacy completions: the prompt becomes one user message.
    let b = one(&bodies, "[oa-cmpl]");
    assert_eq!(
        b["messages"],
        json!([{"role": "user", "content": "[oa-cmpl] Hello, how are you?"}])
    );
    assert_eq!(b["max_tokens"], 50, "{b}");

    // Reasoning model quirks (providers.yaml o3-mini): max_tokens renamed, sampling dropped,
    // system delivered as developer.
    let b = one(&bodies, "[oa-o3]");
    assert_eq!(b["model"], "o3-mini");
    assert_eq!(b["max_completion_tokens"], 100, "{b}");
    assert!(
        b.get("max_tokens").is_none(),
        "max_tokens sent to o3-mini: {b}"
    );
    assert!(
        b.get("temperature").is_none(),
        "temperature sent to o3-mini: {b}"
    );
    assert_eq!(
        b["messages"][0],
        json!({"role": "developer", "content": "Be brief."}),
        "{b}"
    );

    // Images: the data URL (openai SDK) and raw bytes / base64 (ollama SDK) arrive as a PNG data URL.
    let data_url = format!("data:image/png;base64,{PNG_B64}");
    let oa_image = one(&bodies, "[oa-image]");
    let ol_images = tagged(&bodies, "[ol-image]");
    assert_eq!(ol_images.len(), 2, "ollama image requests: {ol_images:#?}");
    for b in std::iter::once(oa_image).chain(ol_images) {
        assert_eq!(b["model"], "gpt-4o");
        assert_eq!(image_urls(b), vec![data_url.as_str()], "{b}");
    }

    // Ollama: `:latest` stripped, options mapped, generate's prompt becomes a user message.
    let b = one(&bodies, "[ol-chat]");
    assert_eq!(b["model"], "gpt-3.5-turbo");
    assert_eq!(b["temperature"], 0.0, "{b}");
    assert_eq!(b["max_tokens"], 50, "{b}");
    let b = one(&bodies, "[ol-gen]");
    assert_eq!(
        b["messages"],
        json!([{"role": "user", "content": "[ol-gen] Hello, how are you?"}])
    );

    // Unknown models are answered by llm-relay itself.
    assert!(tagged(&bodies, "[oa-404]").is_empty() && tagged(&bodies, "[ol-404]").is_empty());
}

/// What llm-relay sent to the Ollama instance: native `/api/chat` bodies for the upstream name.
fn check_instance_requests(requests: &[Request]) {
    let bodies: Vec<Value> = requests
        .iter()
        .filter(|r| r.url.path() == "/api/chat")
        .map(|r| serde_json::from_slice(&r.body).expect("instance body is JSON"))
        .collect();
    for (tag, stream) in [
        ("[oa-inst]", false),
        ("[oa-inst-stream]", true),
        ("[ol-inst]", false),
        ("[ol-inst-stream]", true),
    ] {
        let b = one(&bodies, tag);
        assert_eq!(b["model"], "llama3.2:latest", "{tag}: {b}");
        assert_eq!(b["stream"], stream, "{tag}: {b}");
        assert_eq!(b["messages"][0]["role"], "user", "{tag}: {b}");
    }
    assert_eq!(
        one(&bodies, "[ol-inst]")["options"],
        json!({"temperature": 0.0})
    );
    // Images from both SDKs reach the instance as bare base64 in the message's `images`.
    for tag in ["[oa-inst-img]", "[ol-inst-img]"] {
        let b = one(&bodies, tag);
        assert_eq!(b["messages"][0]["images"], json!([PNG_B64]), "{tag}: {b}");
        assert_eq!(
            b["messages"][0]["content"],
            format!("{tag} What is this?"),
            "{tag}: {b}"
        );
    }
    assert!(
        requests.iter().any(|r| r.url.path() == "/api/tags"),
        "the instance was never asked for its models"
    );
    let embed: Vec<Value> = requests
        .iter()
        .filter(|r| r.url.path() == "/api/embed")
        .map(|r| serde_json::from_slice(&r.body).expect("instance body is JSON"))
        .collect();
    let b = embed
        .iter()
        .find(|b| b.to_string().contains("[ol-inst-emb]"))
        .unwrap_or_else(|| panic!("no /api/embed request from the ollama SDK: {embed:?}"));
    assert_eq!(b["model"], "llama3.2:latest", "{b}");
    assert_eq!(b["input"], json!(["[ol-inst-emb] Hello world"]), "{b}");
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_and_ollama_python_sdks_against_the_binary() {
    let Some(python) = std::env::var("LLM_RELAY_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
    else {
        panic!(
            "LLM_RELAY_PYTHON is not set. This test runs the openai/ollama Python SDKs against \
             the binary; run the suite with `bash tests/run.sh`, which creates the venv \
             (target/sdk-venv) and sets LLM_RELAY_PYTHON."
        );
    };

    let basic = load_one("openai/chat_basic.httprr");
    let stream = load_one("openai/chat_stream_include_usage.httprr");
    let image = load_one("openai/chat_image_url.httprr");
    let o3 = load_one("openai/chat_o3_mini_reasoning_tokens.yaml");
    for ex in [&basic, &stream, &image, &o3] {
        assert_eq!(ex.path(), CHAT_PATH, "fixture recorded at another path");
    }
    let mut expected = expectations(&basic, &stream, &image, &o3);
    expected["embeddings"] =
        json!({"model": EMBED_MODEL, "vectors": EMBED_VECTORS, "prompt_tokens": 9});
    let tags = load_one("ollama/tags.yaml");
    let inst_embed = load_one("ollama/embed.httprr");
    let inst_complete = load_one("ollama/cloud_chat_nonstream_thinking.httprr");
    let inst_stream = load_one("ollama/chat_stream.httprr");
    expected["instance"] = instance_expectations(&tags, &inst_complete, &inst_stream);
    expected["instance"]["embed"] = inst_embed.response_json();
    let instance = FakeUpstream::start().await;
    instance.replay(&tags, "/api/tags").await;
    instance.replay(&inst_embed, "/api/embed").await;
    instance
        .replay_if(
            &inst_stream,
            "/api/chat",
            body_partial_json(json!({"stream": true})),
        )
        .await;
    instance.replay(&inst_complete, "/api/chat").await;
    // The instance's own /api/show (a real server answers it for every model it lists; a 404
    // there would mean the model is gone).
    let llama = tags.response_json()["models"][0].clone();
    wiremock::Mock::given(wiremock::matchers::path("/api/show"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({
            "license": "", "modelfile": "FROM llama3.2", "parameters": "", "template": "{{ .Prompt }}",
            "details": llama["details"], "model_info": {}, "capabilities": ["completion", "tools"],
            "modified_at": llama["modified_at"],
        })))
        .mount(&instance.server)
        .await;

    // One path, four fixtures: chosen by model, stream flag, image content; else the basic one.
    let upstream = FakeUpstream::start().await;
    upstream
        .replay_if(
            &o3,
            CHAT_PATH,
            body_partial_json(json!({"model": "o3-mini"})),
        )
        .await;
    upstream
        .replay_if(
            &stream,
            CHAT_PATH,
            body_partial_json(json!({"stream": true})),
        )
        .await;
    upstream
        .replay_if(&image, CHAT_PATH, |r: &Request| {
            String::from_utf8_lossy(&r.body).contains("\"image_url\"")
        })
        .await;
    upstream.replay(&basic, CHAT_PATH).await;
    // Embeddings: two vectors for a two-text input, one for one (no recorded OpenAI embeddings
    // exchange exists; the shape is CreateEmbeddingResponse, WIRE.md §3.7).
    for n in [1usize, 2] {
        let data: Vec<Value> = EMBED_VECTORS[..n]
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
            .collect();
        wiremock::Mock::given(wiremock::matchers::path("/v1/embeddings"))
            .and(move |r: &Request| {
                serde_json::from_slice::<Value>(&r.body)
                    .is_ok_and(|b| b["input"].as_array().is_some_and(|a| a.len() == n))
            })
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({
                "object": "list", "data": data, "model": EMBED_MODEL,
                "usage": {"prompt_tokens": 9, "total_tokens": 9}})))
            .mount(&upstream.server)
            .await;
    }

    let logs = log_dir();
    let relay_log = logs.join("llm-relay.log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut relay = spawn_relay(port, &upstream.uri(), &instance.uri(), &relay_log);
    wait_ready(&mut relay, &base, &relay_log).await;
    wait_discovered(&base, &format!("{INSTANCE}-llama3.2:latest"), &relay_log).await;

    let pytest_log = logs.join("pytest.log");
    let (status, output) = {
        let (python, base, expected, log) = (
            python.clone(),
            base.clone(),
            expected.clone(),
            pytest_log.clone(),
        );
        tokio::task::spawn_blocking(move || run_pytest(&python, &base, &expected, &log))
            .await
            .unwrap()
    };
    println!("pytest output:\n{output}");
    match status {
        Some(s) if s.success() => {}
        other => panic!(
            "pytest failed ({}) with LLM_RELAY_PYTHON={python}\n--- pytest ---\n{output}\n--- llm-relay log ---\n{}",
            other.map_or("timed out".to_string(), |s| s.to_string()),
            read_log(&relay_log)
        ),
    }

    check_upstream_requests(&upstream.received().await);
    check_instance_requests(&instance.received().await);
    drop(relay);
}

// ---------------------------------------------------------------------------------------------
// Native upstreams: Anthropic Messages and Gemini generateContent behind the same SDK clients.
// ---------------------------------------------------------------------------------------------

/// A matcher on the upstream request body: its text contains every `needle`, and its `stream`
/// flag is `stream` (Anthropic; `None` = either).
fn body_with(stream: Option<bool>, needles: &'static [&'static str]) -> impl Fn(&Request) -> bool {
    move |r: &Request| {
        let text = String::from_utf8_lossy(&r.body);
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        needles.iter().all(|n| text.contains(n))
            && stream.is_none_or(|s| (v["stream"] == true) == s)
    }
}

fn recorded_json(r: &common::native::Recorded) -> Value {
    json!({"text": r.text, "usage": [r.usage.0, r.usage.1],
           "tools": r.tools.iter().map(|(n, a)| json!([n, a])).collect::<Vec<_>>()})
}

fn provider(family: llm_relay::catalog::WireFamily) -> &'static llm_relay::catalog::ProviderInfo {
    llm_relay::catalog::PROVIDERS
        .iter()
        .find(|p| p.wire == family)
        .unwrap()
}

/// Start `llm-relay` with only the given environment (plus HOST/PORT/PATH).
fn spawn_relay_env(port: u16, env: &[(&str, String)], log: &Path) -> ChildGuard {
    let out = File::create(log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-relay"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("ADMIN_ENABLED", "false")
        .env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn llm-relay");
    ChildGuard(child)
}

/// Upstream bodies received by `fake` whose text carries `tag`.
async fn bodies_tagged(fake: &FakeUpstream, tag: &str) -> Vec<(Request, Value)> {
    fake.received()
        .await
        .into_iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains(tag))
        .map(|r| {
            let v = serde_json::from_slice(&r.body).unwrap();
            (r, v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdks_through_anthropic_and_gemini_upstreams() {
    use common::native;
    use llm_relay::catalog::WireFamily;
    let Some(python) = std::env::var("LLM_RELAY_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
    else {
        panic!("LLM_RELAY_PYTHON is not set: run the suite with `bash tests/run.sh`");
    };
    let ant = provider(WireFamily::Anthropic);
    let gem = provider(WireFamily::Gemini);
    let first = |p: &llm_relay::catalog::ProviderInfo| {
        ModelId::all()
            .find(|m| m.info().provider == p.id)
            .unwrap()
            .info()
            .id
    };
    let (ant_model, gem_model) = (first(ant), first(gem));

    // Anthropic: one path, routed by what the request carries (first matching mount wins).
    let a_basic = load_one("anthropic/messages_basic.httprr");
    let a_stream = load_one("anthropic/messages_stream_text.httprr");
    let a_image = load_one("anthropic/messages_stream_image_base64.yaml");
    let a_tools = fixtures::load("anthropic/messages_tool_use_parallel.yaml");
    let a_stream_tools = fixtures::load("anthropic/messages_stream_tool_use.yaml");
    let a_up = FakeUpstream::start().await;
    let ap = "/v1/messages";
    a_up.replay_if(
        &a_stream_tools[1],
        ap,
        body_with(Some(true), &["tool_result"]),
    )
    .await;
    a_up.replay_if(&a_tools[1], ap, body_with(None, &["tool_result"]))
        .await;
    a_up.replay_if(
        &a_stream_tools[0],
        ap,
        body_with(Some(true), &["\"tools\""]),
    )
    .await;
    a_up.replay_if(&a_tools[0], ap, body_with(None, &["\"tools\""]))
        .await;
    a_up.replay_if(&a_image, ap, body_with(Some(true), &["\"image\""]))
        .await;
    a_up.replay_if(&a_stream, ap, body_with(Some(true), &[]))
        .await;
    a_up.replay(&a_basic, ap).await;

    // Gemini: the model and the stream flag are in the path.
    let g_basic = load_one("gemini/generate_content_basic.yaml");
    let g_stream = load_one("gemini/stream_generate_content_sse.yaml");
    let g_image = fixtures::load("gemini/generate_content_inline_image_then_429.yaml").remove(0);
    let g_tools = fixtures::load("gemini/generate_content_tool_calls.yaml");
    let g_sig = fixtures::load("gemini/stream_tool_call_thought_signature_sse.yaml");
    let g_up = FakeUpstream::start().await;
    let gp = format!("/v1beta/models/{gem_model}:generateContent");
    let gsp = format!("/v1beta/models/{gem_model}:streamGenerateContent");
    g_up.replay_if(&g_sig[1], &gsp, body_with(None, &["functionResponse"]))
        .await;
    g_up.replay_if(&g_sig[0], &gsp, body_with(None, &["functionDeclarations"]))
        .await;
    g_up.replay(&g_stream, &gsp).await;
    g_up.replay_if(&g_tools[1], &gp, body_with(None, &["functionResponse"]))
        .await;
    g_up.replay_if(&g_tools[0], &gp, body_with(None, &["functionDeclarations"]))
        .await;
    g_up.replay_if(&g_image, &gp, body_with(None, &["inlineData"]))
        .await;
    g_up.replay(&g_basic, &gp).await;

    let signature = serde_json::from_str::<Value>(&g_sig[0].sse_data()[0]).unwrap()["candidates"]
        [0]["content"]["parts"][0]["thoughtSignature"]
        .as_str()
        .unwrap()
        .to_string();
    let expected = json!({
        "png_base64": PNG_B64,
        "anthropic": {
            "model": ant_model,
            "basic": recorded_json(&native::anthropic(&a_basic)),
            "stream": recorded_json(&native::anthropic(&a_stream)),
            "image": recorded_json(&native::anthropic(&a_image)),
            "tools": recorded_json(&native::anthropic(&a_tools[0])),
            "tools_answer": recorded_json(&native::anthropic(&a_tools[1])),
            "stream_tools": recorded_json(&native::anthropic(&a_stream_tools[0])),
            "stream_tools_answer": recorded_json(&native::anthropic(&a_stream_tools[1])),
        },
        "gemini": {
            "model": gem_model,
            "basic": recorded_json(&native::gemini(&g_basic)),
            "stream": recorded_json(&native::gemini(&g_stream)),
            "image": recorded_json(&native::gemini(&g_image)),
            "tools": recorded_json(&native::gemini(&g_tools[0])),
            "tools_answer": recorded_json(&native::gemini(&g_tools[1])),
            "stream_tools": recorded_json(&native::gemini(&g_sig[0])),
            "stream_tools_answer": recorded_json(&native::gemini(&g_sig[1])),
        },
    });

    let ant_key = "sk-ant-test-sdk";
    let gem_key = "gem-test-sdk";
    // Gemini's key under its alternative variable (GEMINI_API_KEY), as Google's own SDKs read it.
    let gem_key_var = gem
        .api_key_env_alternatives
        .first()
        .copied()
        .unwrap_or(gem.api_key_env.unwrap());
    let env = [
        (ant.api_key_env.unwrap(), ant_key.to_string()),
        (ant.base_url_env, format!("{}/v1", a_up.uri())),
        (gem_key_var, gem_key.to_string()),
        (gem.base_url_env, format!("{}/v1beta", g_up.uri())),
    ];
    let logs = log_dir();
    let relay_log = logs.join("llm-relay-native.log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut relay = spawn_relay_env(port, &env, &relay_log);
    wait_ready(&mut relay, &base, &relay_log).await;
    let pytest_log = logs.join("pytest-native.log");
    let (status, output) = {
        let (python, base, expected, log) = (
            python.clone(),
            base.clone(),
            expected.clone(),
            pytest_log.clone(),
        );
        tokio::task::spawn_blocking(move || {
            run_pytest_file(
                &python,
                "tests/clients/test_sdks_native.py",
                &base,
                &expected,
                &log,
            )
        })
        .await
        .unwrap()
    };
    println!("pytest output:\n{output}");
    match status {
        Some(s) if s.success() => {}
        other => panic!(
            "pytest failed ({})\n--- pytest ---\n{output}\n--- llm-relay log ---\n{}",
            other.map_or("timed out".to_string(), |s| s.to_string()),
            read_log(&relay_log)
        ),
    }

    // What llm-relay sent to Anthropic: auth and version headers on every request, max_tokens
    // always present, tool results answering the recorded tool_use ids, the PNG as a base64 block.
    for r in a_up.received().await {
        assert_eq!(r.url.path(), ap);
        assert_eq!(r.headers.get("x-api-key").unwrap(), ant_key);
        let (k, v) = ant.headers[0];
        assert_eq!(r.headers.get(k).unwrap(), v);
        let b: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(b["model"], ant_model);
        assert!(b["max_tokens"].as_u64().unwrap() > 0, "{b}");
    }
    for tag in ["[na-tools]", "[na-ol-tools]"] {
        let reqs = bodies_tagged(&a_up, tag).await;
        assert_eq!(reqs.len(), 2, "{tag}: {reqs:#?}");
        let follow = &reqs[1].1;
        let uses: Vec<&Value> = follow["messages"][1]["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| &b["id"])
            .collect();
        let results: Vec<&Value> = follow["messages"][2]["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "tool_result")
            .map(|b| &b["tool_use_id"])
            .collect();
        assert_eq!(uses.len(), 4, "{follow}");
        assert_eq!(uses, results, "{tag}: {follow}");
    }
    for tag in ["[na-image]", "[na-ol-image]"] {
        let (_, b) = bodies_tagged(&a_up, tag).await.remove(0);
        let img = b["messages"][0]["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["type"] == "image")
            .unwrap()
            .clone();
        assert_eq!(
            img["source"],
            json!({"type": "base64", "media_type": "image/png", "data": PNG_B64}),
            "{tag}"
        );
    }

    // What llm-relay sent to Gemini: the key read from GEMINI_API_KEY in x-goog-api-key, the
    // recorded thoughtSignature echoed on the next turn (OpenAI SDK keeps the call id), and
    // Google's documented skip value when a client drops ids (Ollama SDK).
    for r in g_up.received().await {
        assert_eq!(r.headers.get("x-goog-api-key").unwrap(), gem_key);
        assert!(r.headers.get("authorization").is_none());
    }
    let reqs = bodies_tagged(&g_up, "[ng-stream-tools]").await;
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].0.url.query(), Some("alt=sse"));
    assert_eq!(
        reqs[1].1["contents"][1]["parts"][0]["thoughtSignature"],
        signature.as_str()
    );
    let reqs = bodies_tagged(&g_up, "[ng-ol-tools]").await;
    assert_eq!(reqs.len(), 2);
    let m = ModelId::all().find(|m| m.info().id == gem_model).unwrap();
    if m.info().has(llm_relay::catalog::Capability::Reasoning) {
        assert_eq!(
            reqs[1].1["contents"][1]["parts"][0]["thoughtSignature"],
            "skip_thought_signature_validator"
        );
    }
    for tag in ["[ng-image]", "[ng-ol-image]"] {
        let (_, b) = bodies_tagged(&g_up, tag).await.remove(0);
        assert_eq!(
            b["contents"][0]["parts"][1],
            json!({"inlineData": {"mimeType": "image/png", "data": PNG_B64}}),
            "{tag}"
        );
    }
    drop(relay);
}
