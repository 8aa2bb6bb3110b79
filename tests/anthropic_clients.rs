//! Real Anthropic clients against the built binary:
//!
//! - the official `anthropic` Python SDK (tests/clients/test_anthropic_sdk.py, run with pytest):
//!   create, stream, tool-use round trip, image, count_tokens, models, errors, against a scripted
//!   fake OpenAI upstream, a fake Gemini upstream and a fake Ollama instance replaying recorded
//!   traffic (tests/fixtures/gemini, tests/fixtures/ollama);
//! - Claude Code itself (`@anthropic-ai/claude-code`, pinned in tests/claude-code/package.json,
//!   its native binary), run non-interactively (`claude -p ... --output-format json
//!   --allowedTools Bash`) with a fresh HOME against llm-relay backed by the scripted fake OpenAI
//!   upstream, which answers the first turn with a Bash tool call and the second with a text that
//!   quotes the tool's output: Claude Code must run the tool and print that answer.
//!
//! Needs `LLM_RELAY_PYTHON` (a Python with tests/clients/requirements.txt) and `LLM_RELAY_CLAUDE`
//! (the Claude Code binary); `bash tests/run.sh` installs both and sets them. Offline: every
//! socket is on 127.0.0.1 and Claude Code runs with CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::process::{ChildGuard, free_port, read_log, run_logged};

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fake_upstream::FakeUpstream;
use common::fixtures::{self, Exchange};
use common::relay::first_model_of;
use llm_relay::catalog::{PROVIDERS, WireFamily};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, Request, ResponseTemplate};

/// The key llm-relay is started with for the OpenAI upstream.
const API_KEY: &str = "sk-test-llm-relay-anthropic-clients";
/// Where the scripted fake answers OpenAI chat requests (base URL `<fake>/v1`).
const CHAT_PATH: &str = "/v1/chat/completions";
/// Name of the Ollama instance the relay is started with.
const INSTANCE: &str = "homelab";
/// `BIG_MODEL` / `SMALL_MODEL` of the relay: Claude names map to these OpenAI models.
const BIG: &str = "gpt-4o";
const SMALL: &str = "gpt-4o-mini";
/// Token counts the scripted fake reports on every answer.
const PROMPT_TOKENS: u64 = 21;
const COMPLETION_TOKENS: u64 = 7;
/// What the scripted fake answers a plain prompt.
const HELLO: &str = "Hello from the fake OpenAI upstream.";
/// The marker the Bash tool call prints, and the prefix of the answer quoting a tool result.
const TOOL_MARKER: &str = "relay-tool-ok";
const FINAL_PREFIX: &str = "FINAL ANSWER: the tool said";
/// Upper bound for a whole client run (pytest or Claude Code); they also time out per call.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

// ---- the scripted OpenAI-compatible upstream ----

/// What the scripted fake answers.
enum Answer {
    Text(String),
    Tool(&'static str, Value),
}

/// The script: a turn answering tool results quotes them; an image is acknowledged; a request
/// offering `Bash` (Claude Code) or `get_weather` (the SDK test) gets a call to it; anything
/// else gets [`HELLO`].
fn script(body: &Value) -> Answer {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let text_of = |m: &Value| match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    };
    if last["role"] == "tool" {
        let results: Vec<String> = messages
            .iter()
            .rev()
            .take_while(|m| m["role"] == "tool")
            .map(|m| text_of(m).trim().to_string())
            .collect();
        return Answer::Text(format!("{FINAL_PREFIX} {}", results.join(", ")));
    }
    if last["content"].to_string().contains("\"image_url\"") {
        return Answer::Text("I see a 1x1 image.".into());
    }
    let tools: Vec<&str> = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    if tools.contains(&"Bash") {
        return Answer::Tool(
            "Bash",
            json!({"command": format!("echo {TOOL_MARKER}"), "description": "Print a marker"}),
        );
    }
    if tools.contains(&"get_weather") {
        return Answer::Tool("get_weather", json!({"city": "Paris"}));
    }
    Answer::Text(HELLO.into())
}

fn usage() -> Value {
    json!({"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
           "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS})
}

/// An OpenAI chat answer for `body`, streamed (SSE in chunks, usage chunk, `[DONE]`) or not.
fn scripted_response(r: &Request) -> ResponseTemplate {
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let answer = script(&body);
    if body["stream"] != true {
        let (message, finish) = match answer {
            Answer::Text(t) => (json!({"role": "assistant", "content": t}), "stop"),
            Answer::Tool(name, args) => (
                json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_fake_1", "type": "function",
                       "function": {"name": name, "arguments": args.to_string()}}]}),
                "tool_calls",
            ),
        };
        return ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage()}));
    }
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut sse = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    let finish = match answer {
        Answer::Text(t) => {
            // Two pieces, split on a character boundary.
            let mid = t
                .char_indices()
                .nth(t.chars().count() / 2)
                .map_or(0, |(i, _)| i);
            for piece in [&t[..mid], &t[mid..]] {
                sse.push_str(&chunk(json!({"content": piece}), Value::Null));
            }
            "stop"
        }
        Answer::Tool(name, args) => {
            let args = args.to_string();
            let mid = args.len() / 2;
            sse.push_str(&chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_fake_1", "type": "function",
                                       "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ));
            for piece in [&args[..mid], &args[mid..]] {
                sse.push_str(&chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    Value::Null,
                ));
            }
            "tool_calls"
        }
    };
    sse.push_str(&chunk(json!({}), json!(finish)));
    sse.push_str(&format!(
        "data: {}\n\ndata: [DONE]\n\n",
        json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
               "choices": [], "usage": usage()})
    ));
    ResponseTemplate::new(200).set_body_raw(sse.into_bytes(), "text/event-stream")
}

async fn scripted_openai() -> FakeUpstream {
    let fake = FakeUpstream::start().await;
    Mock::given(method("POST"))
        .and(path(CHAT_PATH))
        .respond_with(scripted_response)
        .mount(&fake.server)
        .await;
    fake
}

// ---- the relay binary ----

/// Logs of the last run, kept for inspection: target/tmp/anthropic_clients/<name>/.
fn log_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("anthropic_clients")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn provider_of(family: WireFamily) -> &'static llm_relay::catalog::ProviderInfo {
    PROVIDERS.iter().find(|p| p.wire == family).unwrap()
}

/// Start `llm-relay` with OpenAI at `openai` (BIG_MODEL/SMALL_MODEL set) plus `extra` env.
fn spawn_relay(port: u16, openai: &str, extra: &[(String, String)], log: &Path) -> ChildGuard {
    let out = File::create(log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-relay"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("ADMIN_ENABLED", "false")
        .env("OPENAI_API_KEY", API_KEY)
        .env("OPENAI_BASE_URL", format!("{openai}/v1"))
        .env("BIG_MODEL", BIG)
        .env("SMALL_MODEL", SMALL)
        .env("RUST_LOG", "info")
        .env("DATA_DIR", log.with_file_name("data"));
    for (k, v) in extra {
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

/// Wait until `GET /v1/models` answers and lists `name` (instance discovery runs in the
/// background at startup), or fail with the relay's log.
async fn wait_listed(relay: &mut ChildGuard, base: &str, name: &str, log: &Path) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = relay.0.try_wait().unwrap() {
            panic!("llm-relay exited early ({status}); log:\n{}", read_log(log));
        }
        if let Ok(r) = client.get(format!("{base}/v1/models")).send().await
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

fn bodies(requests: &[Request], p: &str) -> Vec<Value> {
    requests
        .iter()
        .filter(|r| r.url.path() == p)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

// ---- the anthropic Python SDK ----

fn load_one(rel: &str) -> Exchange {
    let mut exs = fixtures::load(rel);
    assert_eq!(exs.len(), 1, "{rel}: expected exactly one exchange");
    exs.remove(0)
}

/// What a recorded Ollama answer says: (content, thinking, prompt tokens, completion tokens).
fn ollama_answer(ex: &Exchange) -> Value {
    let (mut text, mut thinking, mut last) = (String::new(), String::new(), Value::Null);
    for line in String::from_utf8_lossy(&ex.response_body).lines() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).unwrap();
        text.push_str(v["message"]["content"].as_str().unwrap_or_default());
        thinking.push_str(v["message"]["thinking"].as_str().unwrap_or_default());
        last = v;
    }
    json!({"text": text, "thinking": thinking, "input_tokens": last["prompt_eval_count"],
           "output_tokens": last["eval_count"]})
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_python_sdk_against_the_binary() {
    let Some(python) = std::env::var("LLM_RELAY_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
    else {
        panic!(
            "LLM_RELAY_PYTHON is not set. This test runs the anthropic Python SDK against the \
             binary; run the suite with `bash tests/run.sh`, which creates the venv \
             (target/sdk-venv) and sets LLM_RELAY_PYTHON."
        );
    };
    let openai = scripted_openai().await;

    // Gemini: recorded answers, streamed and not.
    let gemini = provider_of(WireFamily::Gemini);
    let gemini_model = first_model_of(gemini.name);
    let g_complete = load_one("gemini/generate_content_basic.yaml");
    let g_stream = load_one("gemini/stream_generate_content_sse.yaml");
    let gfake = FakeUpstream::start().await;
    gfake
        .replay(
            &g_complete,
            &format!("/base/models/{gemini_model}:generateContent"),
        )
        .await;
    gfake
        .replay(
            &g_stream,
            &format!("/base/models/{gemini_model}:streamGenerateContent"),
        )
        .await;
    let recorded = |ex: &Exchange| {
        let r = common::native::gemini(ex);
        json!({"text": r.text, "input_tokens": r.usage.0, "output_tokens": r.usage.1})
    };

    // Ollama instance: its tags and recorded chat answers.
    let tags = load_one("ollama/tags.yaml");
    let o_complete = load_one("ollama/cloud_chat_nonstream_thinking.httprr");
    let o_stream = load_one("ollama/chat_stream.httprr");
    let instance = FakeUpstream::start().await;
    instance.replay(&tags, "/api/tags").await;
    instance
        .replay_if(
            &o_stream,
            "/api/chat",
            body_partial_json(json!({"stream": true})),
        )
        .await;
    instance.replay(&o_complete, "/api/chat").await;
    let instance_model = format!("{INSTANCE}-llama3.2");

    let expected = json!({
        "hello": HELLO, "final_prefix": FINAL_PREFIX,
        "input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS,
        "big": BIG,
        "gemini": {"model": gemini_model, "complete": recorded(&g_complete), "stream": recorded(&g_stream)},
        "ollama": {"model": instance_model, "complete": ollama_answer(&o_complete), "stream": ollama_answer(&o_stream)},
    });

    let logs = log_dir("sdk");
    let relay_log = logs.join("llm-relay.log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let extra = [
        (
            gemini.api_key_env.unwrap().to_string(),
            "test-gemini-key".to_string(),
        ),
        (
            gemini.base_url_env.to_string(),
            format!("{}/base", gfake.uri()),
        ),
        (
            "OLLAMA_INSTANCES".to_string(),
            format!("{INSTANCE}={}", instance.uri()),
        ),
    ];
    let mut relay = spawn_relay(port, &openai.uri(), &extra, &relay_log);
    wait_listed(&mut relay, &base, &instance_model, &relay_log).await;

    let mut cmd = Command::new(&python);
    cmd.args([
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/clients/test_anthropic_sdk.py",
    ])
    .current_dir(env!("CARGO_MANIFEST_DIR"))
    .env_clear()
    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
    .env("LLM_RELAY_URL", &base)
    .env("LLM_RELAY_EXPECTED", expected.to_string())
    .env("PYTHONDONTWRITEBYTECODE", "1")
    .env("NO_PROXY", "127.0.0.1,localhost");
    let log = logs.join("pytest.log");
    let (status, output) = tokio::task::spawn_blocking(move || run_logged(cmd, &log, RUN_TIMEOUT))
        .await
        .unwrap();
    println!("pytest output:\n{output}");
    match status {
        Some(s) if s.success() => {}
        other => panic!(
            "pytest failed ({}) with LLM_RELAY_PYTHON={python}\n--- pytest ---\n{output}\n--- llm-relay log ---\n{}",
            other.map_or("timed out".to_string(), |s| s.to_string()),
            read_log(&relay_log)
        ),
    }

    // What went upstream: Claude names as BIG_MODEL/SMALL_MODEL, the tool result after the call,
    // the image as a data URL.
    let sent = bodies(&openai.received().await, CHAT_PATH);
    let tagged = |tag: &str| -> Vec<&Value> {
        sent.iter()
            .filter(|b| b["messages"].to_string().contains(tag))
            .collect()
    };
    assert_eq!(tagged("[an-create]")[0]["model"], BIG);
    assert_eq!(tagged("[an-haiku]")[0]["model"], SMALL);
    let round = tagged("[an-tools]");
    assert_eq!(round.len(), 2, "{round:#?}");
    let msgs = round[1]["messages"].as_array().unwrap();
    assert_eq!(msgs[msgs.len() - 2]["tool_calls"][0]["id"], "call_fake_1");
    assert_eq!(msgs[msgs.len() - 1]["tool_call_id"], "call_fake_1");
    let image = tagged("[an-image]");
    assert!(
        image[0]["messages"]
            .to_string()
            .contains("data:image/png;base64,"),
        "{image:#?}"
    );
    assert!(
        bodies(&instance.received().await, "/api/chat")
            .iter()
            .all(|b| b["model"] == "llama3.2:latest")
    );
    drop(relay);
}

// ---- Claude Code ----

/// The Claude Code binary: `LLM_RELAY_CLAUDE`, set by tests/run.sh after installing the pinned
/// npm package.
fn claude_binary() -> PathBuf {
    match std::env::var_os("LLM_RELAY_CLAUDE").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "LLM_RELAY_CLAUDE is not set. This test runs Claude Code against the binary; run the \
             suite with `bash tests/run.sh`, which installs @anthropic-ai/claude-code \
             (tests/claude-code/) and sets LLM_RELAY_CLAUDE."
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_runs_a_tool_turn_through_the_relay() {
    let claude = claude_binary();
    let openai = scripted_openai().await;
    let logs = log_dir("claude-code");
    let relay_log = logs.join("llm-relay.log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut relay = spawn_relay(port, &openai.uri(), &[], &relay_log);
    wait_listed(&mut relay, &base, BIG, &relay_log).await;

    // A fresh HOME and working directory: no user settings, no login, no project files.
    let home = logs.join("home");
    let work = logs.join("work");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let mut cmd = Command::new(&claude);
    cmd.args([
        "-p",
        "Run the shell command that prints the marker, then tell me what it printed.",
        "--output-format",
        "json",
        "--allowedTools",
        "Bash",
    ])
    .current_dir(&work)
    .env_clear()
    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
    .env("HOME", &home)
    .env("ANTHROPIC_BASE_URL", &base)
    .env("ANTHROPIC_AUTH_TOKEN", "claude-code-test")
    .env("ANTHROPIC_MODEL", "claude-sonnet-4-5")
    .env("ANTHROPIC_SMALL_FAST_MODEL", "claude-haiku-4-5")
    .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
    .env("DISABLE_AUTOUPDATER", "1")
    .env("NO_PROXY", "127.0.0.1,localhost");
    let log = logs.join("claude.log");
    let (status, output) = tokio::task::spawn_blocking(move || run_logged(cmd, &log, RUN_TIMEOUT))
        .await
        .unwrap();
    let fail = |why: &str| -> ! {
        panic!(
            "{why}\n--- claude ---\n{output}\n--- llm-relay log ---\n{}",
            read_log(&relay_log)
        )
    };
    if !status.is_some_and(|s| s.success()) {
        fail(&format!("claude exited with {status:?}"));
    }
    // `--output-format json` prints one JSON object (the last line of output).
    let result: Value = output
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
        .unwrap_or_else(|| fail("no JSON result from claude"));
    let want = format!("{FINAL_PREFIX} {TOOL_MARKER}");
    if result["is_error"] != false || !result["result"].as_str().is_some_and(|r| r.contains(&want))
    {
        fail(&format!(
            "claude did not print the upstream's answer {want:?}"
        ));
    }

    // Upstream: the tool call's output came back as the tool result of the second turn, and the
    // Claude model name was mapped to BIG_MODEL.
    let sent = bodies(&openai.received().await, CHAT_PATH);
    let with_result = sent
        .iter()
        .find(|b| {
            b["messages"].as_array().into_iter().flatten().any(|m| {
                m["role"] == "tool"
                    && m["tool_call_id"] == "call_fake_1"
                    && m["content"].to_string().contains(TOOL_MARKER)
            })
        })
        .unwrap_or_else(|| fail("no upstream request carried the Bash tool result"));
    assert_eq!(with_result["model"], BIG);
    assert_eq!(with_result["stream"], true);
    drop(relay);
}
