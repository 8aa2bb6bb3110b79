//! The Ollama API frontend (`/`, `/api/version`, `/api/tags`, `/api/show`, `/api/ps`,
//! `/api/chat`, `/api/generate`, `/api/pull`, `/api/embed`, legacy `/api/embeddings`).
//!
//! Shapes follow Ollama's `api/types.go` and docs/api.md (WIRE.md §2): NDJSON streaming by default
//! (`stream` defaults to true), `created_at` in RFC 3339 with nanoseconds, durations in
//! nanoseconds, `done_reason` on the final chunk, errors as `{"error":"..."}`. Model names are
//! listed as `<id>:latest` (never doubled) and `name:latest` resolves to `name`.

use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Body, Request, Response, Route, get, handler, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{image_from_base64, now_rfc3339, read_json};
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, FinishReason, Message, ResponseFormat, Role,
    StreamEvent, Tool, ToolCall,
};
use crate::catalog::{Capability, ModelId};
use crate::error::ApiError;
use crate::relay::{self, AppState, Reply, Target};
use crate::usage::RequestLog;

/// Version reported by `/api/version`: a recent Ollama release, so clients that gate features on
/// the server version (tools, thinking, structured output) enable them.
pub const OLLAMA_VERSION: &str = "0.12.6";

/// Routes at the root and under `/api`.
pub fn routes() -> Route {
    Route::new()
        .at("/", get(health).head(health))
        .at("/api/version", get(version).head(version))
        .at("/api/tags", get(tags).head(tags))
        .at("/api/show", post(show))
        .at("/api/ps", get(ps))
        .at("/api/chat", post(chat))
        .at("/api/generate", post(generate))
        .at("/api/pull", post(pull))
        .at("/api/embed", post(embed))
        .at("/api/embeddings", post(embeddings_legacy))
}

/// Render an error as Ollama does: `{"error":"..."}` with the status.
pub fn error_response(e: &ApiError) -> Response {
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY))
        .content_type("application/json; charset=utf-8");
    if let Some(ra) = e.retry_after() {
        resp = resp.header("retry-after", ra);
    }
    resp.body(json!({"error": e.to_string()}).to_string())
}

fn json_response(v: &Value) -> Response {
    Response::builder()
        .content_type("application/json; charset=utf-8")
        .body(v.to_string())
}

#[handler]
fn health() -> &'static str {
    "Ollama is running"
}

#[handler]
fn version() -> Response {
    json_response(&json!({"version": OLLAMA_VERSION}))
}

/// `<id>:latest`, or the id itself when it already carries a tag.
fn ollama_name(m: ModelId) -> String {
    let id = m.info().id;
    if id.contains(':') {
        id.to_string()
    } else {
        format!("{id}:latest")
    }
}

/// A stable 64-hex digest per model (sha256 of `provider/id`), as Ollama's manifest digests look.
fn digest(m: ModelId) -> String {
    let info = m.info();
    let hash = Sha256::digest(format!("{}/{}", info.provider.name(), info.id));
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn details(m: ModelId) -> Value {
    let info = m.info();
    json!({
        "parent_model": "",
        "format": "api",
        "family": info.family,
        "families": [info.family],
        "parameter_size": "",
        "quantization_level": "",
    })
}

/// Timestamp used as `modified_at` for catalog models: when this process started.
fn modified_at(state: &AppState) -> &str {
    &state.started_at
}

fn capabilities(m: ModelId) -> Vec<&'static str> {
    let info = m.info();
    if info.has(Capability::Embeddings) {
        return vec!["embedding"];
    }
    let mut caps = vec!["completion"];
    if info.has(Capability::Tools) {
        caps.push("tools");
    }
    if info.has(Capability::Vision) {
        caps.push("vision");
    }
    if info.has(Capability::Reasoning) {
        caps.push("thinking");
    }
    caps
}

#[handler]
async fn tags(state: Data<&AppState>) -> Response {
    // Runtime overrides: disabled models left out, custom models added; Ollama-instance models
    // (see crate::instances for the names) as the instance lists them.
    let models: Vec<Value> = super::usable_models(&state)
        .into_iter()
        .map(|m| match m {
            super::UsableModel::Catalog(m) => {
                let name = ollama_name(m);
                json!({"name": name, "model": name, "modified_at": modified_at(&state), "size": 0,
                       "digest": digest(m), "details": details(m)})
            }
            super::UsableModel::Instance(l) => l.ollama_entry(),
            super::UsableModel::Custom { provider, id } => {
                // Ollama names carry a tag; `:latest` only where the id has none (as Ollama does).
                let tag = if id.contains(':') { "" } else { ":latest" };
                let name = format!("{provider}/{id}{tag}");
                json!({"name": name, "model": name, "modified_at": modified_at(&state), "size": 0,
                       "digest": "", "details": {"parent_model": "", "format": "api", "family": "",
                       "families": [], "parameter_size": "", "quantization_level": ""}})
            }
        })
        .collect();
    json_response(&json!({"models": models}))
}

/// Models loaded on the Ollama servers configured as upstreams (their own `/api/ps`, under the
/// names llm-relay lists); nothing else is ever loaded: catalog models run at their provider.
#[handler]
async fn ps(state: Data<&AppState>) -> Response {
    // An owned snapshot: the instances are awaited for up to the discovery timeout.
    let snap = state.overrides.load_full();
    let models = crate::instances::loaded(&state.client, &state.instances, &|i, m| {
        snap.instance_disabled(i, m)
    })
    .await;
    json_response(&json!({"models": models}))
}

#[derive(Deserialize)]
struct ShowRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[handler]
async fn show(state: Data<&AppState>, body: Body) -> Response {
    let result = async {
        let r: ShowRequest = read_json(body, state.config.max_body_bytes).await?;
        let name = r.model.or(r.name).ok_or_else(|| ApiError::BadRequest("model is required".into()))?;
        // Same resolution as chat (DEFAULT_MODEL included): `ollama run` shows, then chats.
        let m = match relay::resolve_model(&state, &name)? {
            Target::Catalog(m) | Target::Priced(m, _) => m,
            Target::Custom(c) => {
                let caps = if c.capabilities.embeddings {
                    json!(["embedding"])
                } else if c.capabilities.vision {
                    json!(["completion", "vision"])
                } else {
                    json!(["completion"])
                };
                return Ok(json!({
                    "license": "",
                    "modelfile": format!("# Served by llm-relay from provider {}\nFROM {}\n", c.provider, c.model),
                    "parameters": "",
                    "template": "{{ .Prompt }}",
                    "system": "",
                    "details": {"parent_model": "", "format": "", "family": "", "families": [], "parameter_size": "", "quantization_level": ""},
                    "model_info": {"general.basename": c.model},
                    "capabilities": caps,
                    "modified_at": modified_at(&state),
                }));
            }
            Target::Instance(im) => {
                // The instance no longer has it: 404 as Ollama says it, and re-discover.
                return crate::instances::show(&state.client, &im).await.ok_or_else(|| {
                    state.instances.refresh_soon(&state.client);
                    ApiError::ModelNotFound(name.clone())
                });
            }
        };
        let info = m.info();
        let arch = info.family;
        let mut model_info = Map::new();
        model_info.insert("general.architecture".into(), arch.into());
        model_info.insert("general.basename".into(), info.id.into());
        // A runtime override of the context length (admin API) is what clients see.
        let context_length = state
            .overrides
            .load()
            .set
            .models
            .get(&crate::overrides::model_key(info.provider.name(), info.id))
            .and_then(|o| o.context_length)
            .unwrap_or(info.context_length);
        model_info.insert(format!("{arch}.context_length"), context_length.into());
        Ok::<_, ApiError>(json!({
            "license": "",
            "modelfile": format!("# Served by llm-relay from provider {}\nFROM {}\n", info.provider.name(), info.id),
            "parameters": "",
            "template": "{{ .Prompt }}",
            "system": "",
            "details": details(m),
            "model_info": model_info,
            "capabilities": capabilities(m),
            "modified_at": modified_at(&state),
        }))
    }
    .await;
    match result {
        Ok(v) => json_response(&v),
        Err(e) => error_response(&e),
    }
}

#[derive(Deserialize)]
struct PullRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    insecure: Option<bool>,
    #[serde(default)]
    stream: Option<bool>,
}

/// Starts a re-discovery of the instances when dropped: when a forwarded pull's answer ends,
/// fails or is abandoned by the client, so a pulled model is listed at once (the on-demand rate
/// limit would otherwise leave it unknown for a while).
struct RediscoverOnDrop {
    instances: std::sync::Arc<crate::instances::Instances>,
    client: reqwest::Client,
}

impl Drop for RediscoverOnDrop {
    fn drop(&mut self) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (instances, client) = (std::sync::Arc::clone(&self.instances), self.client.clone());
            rt.spawn(async move {
                instances.refresh(&client).await;
            });
        }
    }
}

/// Pass a pull on to an Ollama server (WIRE.md §2.7). The server is always asked for a stream
/// (it then answers at once and keeps sending progress lines; with `stream: false` it would send
/// nothing until the download ends and trip `UPSTREAM_READ_TIMEOUT_MS`, cancelling it). A client
/// that asked for a stream gets the progress lines as they come, and a failure mid-way as an
/// `{"error": "..."}` line, as Ollama sends it; one that did not gets the last line as one
/// object, or the error with status 500. The instances are re-discovered afterwards.
/// Errors before the answer starts: the server's status and message, or 502/504.
async fn pull_on_instance(
    state: &AppState,
    instance: &crate::instances::InstanceConfig,
    model: &str,
    insecure: Option<bool>,
    stream: Option<bool>,
) -> Response {
    let mut body = serde_json::Map::new();
    body.insert("model".into(), model.into());
    if let Some(i) = insecure {
        body.insert("insecure".into(), i.into());
    }
    body.insert("stream".into(), true.into());
    let upstream = match crate::upstream::ollama::post_to_instance(
        state,
        &instance.base_url,
        instance.name,
        "/api/pull",
        Value::Object(body).to_string().into_bytes(),
    )
    .await
    {
        Ok(u) => u,
        Err(e) => return error_response(&e),
    };
    let guard = RediscoverOnDrop {
        instances: std::sync::Arc::clone(&state.instances),
        client: state.client.clone(),
    };
    let mut chunks = upstream.into_stream(&state.config);
    if stream == Some(false) {
        // The last progress line is the answer (`{"status":"success"}` or `{"error":...}`).
        let mut lines = crate::upstream::ollama::lines(instance.name, chunks);
        let mut last = None;
        while let Some(line) = lines.next().await {
            match line {
                Ok(l) if l.trim().is_empty() => {}
                Ok(l) => last = Some(l),
                Err(e) => return error_response(&e),
            }
        }
        drop(guard);
        let answer: Value = last
            .and_then(|l| serde_json::from_str(&l).ok())
            .unwrap_or_else(|| json!({}));
        if let Some(err) = answer.get("error") {
            return Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .content_type("application/json; charset=utf-8")
                .body(json!({"error": err}).to_string());
        }
        return json_response(&answer);
    }
    let mut guard = Some(guard);
    let mut failed = false;
    let lines = futures_util::stream::poll_fn(move |cx| {
        use std::task::Poll;
        if failed {
            guard.take();
            return Poll::Ready(None);
        }
        match chunks.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok::<_, std::io::Error>(b))),
            Poll::Ready(Some(Err(e))) => {
                // Cut mid-way: the error as Ollama's own NDJSON error line, then the end.
                failed = true;
                let line = format!("{}\n", json!({"error": e.to_string()}));
                Poll::Ready(Some(Ok(bytes::Bytes::from(line))))
            }
            Poll::Ready(None) => {
                guard.take();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    });
    Response::builder()
        .content_type("application/x-ndjson")
        .body(Body::from_bytes_stream(lines))
}

#[handler]
async fn pull(state: Data<&AppState>, body: Body) -> Response {
    let r: PullRequest = match read_json(body, state.config.max_body_bytes).await {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let Some(name) = r.model.or(r.name) else {
        return error_response(&ApiError::BadRequest("model is required".into()));
    };
    // A model of an Ollama server (already there: an update; `<instance>-<model>` or, with one
    // server, a bare name not in the catalog: a new one) is pulled by that server.
    let target = relay::resolve_exact(&state, &name);
    let on_instance = match &target {
        Some(relay::Target::Instance(m)) => state
            .instances
            .configured()
            .into_iter()
            .find(|i| i.name == m.instance)
            .map(|i| (i, m.model.clone())),
        Some(_) => None,
        // Only a name llm-relay does not know otherwise (no catalog model, alias or custom model,
        // enabled or not) is new to a server: a custom alias must never start a registry download.
        None => {
            let known = !matches!(
                state.overrides.load().lookup(&name),
                crate::overrides::Lookup::None
            ) || crate::catalog::resolve(&name).is_some();
            if known {
                None
            } else {
                state.instances.pull_target(&name)
            }
        }
    };
    if let Some((instance, model)) = on_instance {
        // An instance (or model) the admin disabled is not reachable through llm-relay; a name
        // without a tag means `:latest`, as the server lists it.
        let snap = state.overrides.load();
        let disabled = snap.instance_disabled(instance.name, &model)
            || (!model.contains(':')
                && snap.instance_disabled(instance.name, &format!("{model}:latest")));
        if disabled {
            return error_response(&ApiError::ModelNotFound(name));
        }
        return pull_on_instance(&state, &instance, &model, r.insecure, r.stream).await;
    }
    if relay::resolve_model(&state, &name).is_err() {
        return error_response(&ApiError::ModelNotFound(name));
    }
    // Nothing to download: the model runs at its provider.
    if r.stream == Some(false) {
        return json_response(&json!({"status": "success"}));
    }
    Response::builder()
        .content_type("application/x-ndjson")
        .body("{\"status\":\"pulling manifest\"}\n{\"status\":\"success\"}\n")
}

// ---- chat / generate ----

#[derive(Deserialize)]
struct Options {
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default, deserialize_with = "integer_option")]
    top_k: Option<i64>,
    #[serde(default, deserialize_with = "integer_option")]
    num_predict: Option<i64>,
    #[serde(default)]
    stop: Option<Vec<String>>,
    #[serde(default, deserialize_with = "integer_option")]
    seed: Option<i64>,
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[serde(default)]
    frequency_penalty: Option<f64>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    function: WireFunctionCall,
}

#[derive(Deserialize)]
struct WireFunctionCall {
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    images: Option<Vec<String>>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    tool_name: Option<String>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
}

#[derive(Deserialize)]
struct WireTool {
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

#[derive(Deserialize)]
struct ChatWire {
    model: String,
    #[serde(default)]
    messages: Vec<WireMessage>,
    #[serde(default)]
    tools: Option<Vec<WireTool>>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    options: Option<Value>,
    #[serde(default)]
    keep_alive: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    think: Option<Value>,
}

#[derive(Deserialize)]
struct GenerateWire {
    model: String,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    images: Option<Vec<String>>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    options: Option<Value>,
    #[serde(default)]
    keep_alive: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    think: Option<Value>,
}

/// Map `options` onto the canonical fields and keep the raw object and `keep_alive` in
/// `passthrough` (Ollama upstreams get every option, `num_ctx` included).
///
/// Errors: `options` that is not an object or has a mapped field of the wrong type.
fn apply_native(
    req: &mut ChatRequest,
    options: Option<Value>,
    keep_alive: Option<Value>,
) -> Result<(), ApiError> {
    let mut passthrough = Map::new();
    match options {
        None | Some(Value::Null) => {}
        Some(raw @ Value::Object(_)) => {
            let o: Options = serde_json::from_value(raw.clone())
                .map_err(|e| ApiError::BadRequest(format!("invalid options: {e}")))?;
            apply_options(req, o);
            passthrough.insert("options".into(), raw);
        }
        Some(_) => return Err(ApiError::BadRequest("options must be an object".into())),
    }
    if let Some(k) = keep_alive.filter(|k| !k.is_null()) {
        passthrough.insert("keep_alive".into(), k);
    }
    req.passthrough = (!passthrough.is_empty()).then_some(passthrough);
    Ok(())
}

/// An integer option as Ollama reads it: any JSON number, a fractional one truncated (Ollama
/// decodes `options` into a map of float64 and converts for its integer fields, so `64.0` works).
fn integer_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Int(i64),
        Float(f64),
    }
    Ok(Option::<Num>::deserialize(d)?.map(|n| match n {
        Num::Int(i) => i,
        Num::Float(f) => f as i64,
    }))
}

fn apply_options(req: &mut ChatRequest, o: Options) {
    req.temperature = o.temperature;
    req.top_p = o.top_p;
    req.top_k = o.top_k.map(|k| k.clamp(0, u32::MAX as i64) as u32);
    // num_predict -1 (or any negative) means unbounded in Ollama.
    req.max_tokens = o
        .num_predict
        .filter(|n| *n > 0)
        .map(|n| n.min(u32::MAX as i64) as u32);
    req.stop = o.stop.unwrap_or_default();
    req.seed = o.seed;
    req.presence_penalty = o.presence_penalty;
    req.frequency_penalty = o.frequency_penalty;
}

/// Ollama `format`: `"json"` or a JSON Schema object.
fn decode_format(f: Option<Value>) -> Result<Option<ResponseFormat>, ApiError> {
    match f {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some(ResponseFormat::JsonObject)),
        Some(schema @ Value::Object(_)) => Ok(Some(ResponseFormat::JsonSchema {
            name: "response".into(),
            schema,
            strict: None,
        })),
        Some(_) => Err(ApiError::BadRequest(
            "format must be \"json\" or a JSON schema object".into(),
        )),
    }
}

/// Ollama `think`: a level (`low|medium|high|max`) becomes the reasoning effort; `true`/`false`
/// become the canonical on/off switch (kept for Ollama upstreams and the Anthropic and Gemini
/// dialects; OpenAI-compatible upstreams have no portable switch and leave the model's default).
fn decode_think(t: Option<Value>) -> (Option<String>, Option<bool>) {
    match t {
        Some(Value::String(s)) => (Some(s), None),
        Some(Value::Bool(b)) => (None, Some(b)),
        _ => (None, None),
    }
}

fn images(list: Option<Vec<String>>) -> Result<Vec<ContentPart>, ApiError> {
    list.unwrap_or_default()
        .iter()
        .map(|d| image_from_base64(d))
        .collect()
}

/// Decode an `/api/chat` request body into the canonical request, as the handler does once the
/// body is read (the entry point of the decoder fuzz pass, tests/fuzz.rs).
///
/// Errors: malformed JSON, wrong shape or an unsupported value (400).
pub fn decode_chat_body(body: &[u8]) -> Result<ChatRequest, ApiError> {
    decode_chat(serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?)
}

/// Decode an `/api/generate` request body into the canonical request (see [`decode_chat_body`]).
///
/// Errors: malformed JSON, wrong shape or an unsupported value (400).
pub fn decode_generate_body(body: &[u8]) -> Result<ChatRequest, ApiError> {
    decode_generate(serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?)
}

fn decode_chat(w: ChatWire) -> Result<ChatRequest, ApiError> {
    if w.model.trim().is_empty() {
        return Err(ApiError::BadRequest("model is required".into()));
    }
    let mut req = ChatRequest {
        model: w.model,
        stream: w.stream.unwrap_or(true),
        ..ChatRequest::default()
    };
    apply_native(&mut req, w.options, w.keep_alive)?;
    req.response_format = decode_format(w.format)?;
    (req.reasoning_effort, req.think) = decode_think(w.think);
    for t in w.tools.unwrap_or_default() {
        req.tools.push(Tool {
            name: t.function.name,
            description: t.function.description,
            parameters: t
                .function
                .parameters
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            strict: None,
        });
    }
    // Ollama tool results carry `tool_name` (newer clients: `tool_call_id`). Each result answers
    // the first still-unanswered call with that name, in order, so two calls of one tool get
    // their own results.
    let mut unanswered: Vec<(String, String)> = Vec::new();
    for m in w.messages {
        let text = m.content.unwrap_or_default();
        let role = match m.role.to_ascii_lowercase().as_str() {
            "system" => {
                req.system.push(text);
                continue;
            }
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown message role '{other}'"
                )));
            }
        };
        let mut content = Vec::new();
        if !text.is_empty() || role == Role::Tool {
            content.push(ContentPart::Text(text));
        }
        content.extend(images(m.images)?);
        let tool_calls: Vec<ToolCall> = m
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .map(|c| ToolCall {
                id: c
                    .id
                    .unwrap_or_else(crate::upstream::openai_compat::new_call_id),
                name: c.function.name,
                arguments: match c.function.arguments {
                    Some(Value::String(s)) => s,
                    Some(Value::Null) | None => "{}".into(),
                    Some(v) => v.to_string(),
                },
            })
            .collect();
        for c in &tool_calls {
            unanswered.push((c.name.clone(), c.id.clone()));
        }
        let tool_call_id = if role == Role::Tool {
            let pos = match (&m.tool_call_id, m.tool_name.as_deref()) {
                (Some(id), _) => unanswered.iter().position(|(_, i)| i == id),
                (None, Some(name)) => unanswered.iter().position(|(n, _)| n == name),
                (None, None) => (!unanswered.is_empty()).then_some(0),
            };
            let matched = pos.map(|p| unanswered.remove(p).1);
            m.tool_call_id.or(matched)
        } else {
            None
        };
        req.messages.push(Message {
            role,
            content,
            tool_calls,
            tool_call_id,
            name: m.tool_name,
            thinking: m.thinking,
            signed_thinking: Vec::new(),
        });
    }
    Ok(req)
}

fn decode_generate(w: GenerateWire) -> Result<ChatRequest, ApiError> {
    if w.model.trim().is_empty() {
        return Err(ApiError::BadRequest("model is required".into()));
    }
    if w.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::BadRequest(
            "suffix (fill-in-the-middle) is not supported".into(),
        ));
    }
    let mut req = ChatRequest {
        model: w.model,
        stream: w.stream.unwrap_or(true),
        ..ChatRequest::default()
    };
    apply_native(&mut req, w.options, w.keep_alive)?;
    req.response_format = decode_format(w.format)?;
    (req.reasoning_effort, req.think) = decode_think(w.think);
    if let Some(s) = w.system.filter(|s| !s.is_empty()) {
        req.system.push(s);
    }
    let mut content = vec![ContentPart::Text(w.prompt.unwrap_or_default())];
    content.extend(images(w.images)?);
    req.messages.push(Message {
        content,
        ..Message::text(Role::User, "")
    });
    Ok(req)
}

fn done_reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Length => "length",
        _ => "stop",
    }
}

/// Timing of one request, reported in nanoseconds as Ollama does.
struct Timing {
    start: Instant,
    first_token: Option<Instant>,
}

impl Timing {
    /// Ollama's metrics (all nanoseconds). Streams: prompt evaluation lasts until the first
    /// token, evaluation from there to the end. Non-streamed answers cannot be split, so the
    /// whole upstream call counts as evaluation (`first_token` = when it was sent). Token counts
    /// are omitted when the upstream reported none, as Ollama omits empty metrics.
    ///
    /// An Ollama upstream's own durations (`Usage::timings`) replace the local measurement, each
    /// one it reported: the client sees the server's real load and evaluation times.
    fn metrics(&self, v: &mut Value, usage: Option<&crate::canonical::Usage>) {
        let now = Instant::now();
        let first = self.first_token.unwrap_or(now);
        let ns = |d: std::time::Duration| d.as_nanos().clamp(1, i64::MAX as u128) as i64;
        let reported = usage.and_then(|u| u.timings).unwrap_or_default();
        let pick = |r: Option<u64>, local: i64| {
            r.map_or(Value::from(local), |n| Value::from(n.min(i64::MAX as u64)))
        };
        v["total_duration"] = pick(reported.total_duration, ns(now - self.start));
        v["load_duration"] = pick(reported.load_duration, 0);
        if let Some(u) = usage {
            v["prompt_eval_count"] = u.prompt_tokens.into();
        }
        v["prompt_eval_duration"] = pick(reported.prompt_eval_duration, ns(first - self.start));
        if let Some(u) = usage {
            v["eval_count"] = u.completion_tokens.into();
        }
        v["eval_duration"] = pick(reported.eval_duration, ns(now - first));
    }
}

fn tool_calls_json(calls: &[ToolCall]) -> Value {
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            // Ollama clients decode `arguments` as a map: anything but an object becomes `{}`.
            let args: Value = serde_json::from_str(&c.arguments)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            json!({"id": c.id, "function": {"index": i, "name": c.name, "arguments": args}})
        })
        .collect()
}

/// Which Ollama endpoint: chat messages or generate's `response` text.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Chat,
    Generate,
}

fn complete_json(kind: Kind, model: &str, r: &ChatResponse, timing: &Timing) -> Value {
    let mut v = json!({"model": model, "created_at": now_rfc3339()});
    match kind {
        Kind::Chat => {
            let mut msg = json!({"role": "assistant", "content": r.content});
            if let Some(t) = &r.thinking {
                msg["thinking"] = t.clone().into();
            }
            if !r.tool_calls.is_empty() {
                msg["tool_calls"] = tool_calls_json(&r.tool_calls);
            }
            v["message"] = msg;
        }
        Kind::Generate => {
            v["response"] = r.content.clone().into();
            if let Some(t) = &r.thinking {
                v["thinking"] = t.clone().into();
            }
        }
    }
    v["done"] = true.into();
    v["done_reason"] = done_reason(r.finish_reason).into();
    timing.metrics(&mut v, r.usage.as_ref());
    v
}

fn ndjson(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

/// Stream encoder: text and thinking deltas go out as they come; tool calls are assembled from
/// their fragments and sent whole (Ollama sends tool calls complete, in a `done:false` chunk).
struct NdjsonEncoder {
    kind: Kind,
    model: String,
    timing: Timing,
    usage: Option<crate::canonical::Usage>,
    calls: Vec<ToolCall>,
}

impl NdjsonEncoder {
    fn delta(&self, content: &str, thinking: Option<&str>) -> Bytes {
        let mut v = json!({"model": self.model, "created_at": now_rfc3339()});
        match self.kind {
            Kind::Chat => {
                let mut msg = json!({"role": "assistant", "content": content});
                if let Some(t) = thinking {
                    msg["thinking"] = t.into();
                }
                v["message"] = msg;
            }
            Kind::Generate => {
                v["response"] = content.into();
                if let Some(t) = thinking {
                    v["thinking"] = t.into();
                }
            }
        }
        v["done"] = false.into();
        ndjson(&v)
    }

    fn event(&mut self, ev: StreamEvent) -> Vec<Bytes> {
        if self.timing.first_token.is_none()
            && matches!(
                ev,
                StreamEvent::TextDelta(_)
                    | StreamEvent::ThinkingDelta(_)
                    | StreamEvent::ToolCallDelta { .. }
            )
        {
            self.timing.first_token = Some(Instant::now());
        }
        match ev {
            StreamEvent::TextDelta(t) => vec![self.delta(&t, None)],
            StreamEvent::ThinkingDelta(t) => vec![self.delta("", Some(&t))],
            // Signatures and the matched stop sequence have no Ollama field.
            StreamEvent::ThinkingSignature(_)
            | StreamEvent::RedactedThinking(_)
            | StreamEvent::StopSequence(_) => Vec::new(),
            StreamEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                let i = index as usize;
                while self.calls.len() <= i {
                    self.calls.push(ToolCall {
                        id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                    });
                }
                let call = &mut self.calls[i];
                if let Some(id) = id {
                    call.id = id;
                }
                if let Some(name) = name {
                    call.name = name;
                }
                call.arguments.push_str(&arguments);
                Vec::new()
            }
            StreamEvent::Usage(u) => {
                self.usage = Some(u);
                Vec::new()
            }
            StreamEvent::Finish(reason) => {
                let mut out = Vec::new();
                if !self.calls.is_empty() {
                    for c in &mut self.calls {
                        if c.id.is_empty() {
                            c.id = crate::upstream::openai_compat::new_call_id();
                        }
                    }
                    let mut v =
                        json!({"model": self.model, "created_at": now_rfc3339(), "done": false});
                    let calls = tool_calls_json(&self.calls);
                    match self.kind {
                        Kind::Chat => {
                            v["message"] =
                                json!({"role": "assistant", "content": "", "tool_calls": calls})
                        }
                        Kind::Generate => {
                            v["response"] = "".into();
                            v["tool_calls"] = calls;
                        }
                    }
                    out.push(ndjson(&v));
                }
                let mut v = json!({"model": self.model, "created_at": now_rfc3339()});
                match self.kind {
                    Kind::Chat => v["message"] = json!({"role": "assistant", "content": ""}),
                    Kind::Generate => v["response"] = "".into(),
                }
                v["done"] = true.into();
                v["done_reason"] = done_reason(reason).into();
                self.timing.metrics(&mut v, self.usage.as_ref());
                out.push(ndjson(&v));
                out
            }
        }
    }
}

/// An empty chat (no messages at all, system ones included) or an empty generate prompt asks
/// Ollama to load the model (server/routes.go).
fn is_load_request(kind: Kind, req: &ChatRequest) -> bool {
    match kind {
        Kind::Chat => req.messages.is_empty() && req.system.is_empty(),
        Kind::Generate => {
            req.messages.is_empty()
                || (req.messages.len() == 1
                    && req.messages[0]
                        .content
                        .iter()
                        .all(|p| matches!(p, ContentPart::Text(t) if t.is_empty())))
        }
    }
}

/// `keep_alive` of zero (`0`, `"0"`, `"0s"`, `"0m"`...): with a load request, Ollama unloads.
fn keep_alive_is_zero(req: &ChatRequest) -> bool {
    match req.passthrough.as_ref().and_then(|p| p.get("keep_alive")) {
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => s
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .parse::<f64>()
            .is_ok_and(|n| n == 0.0),
        _ => false,
    }
}

async fn run(
    state: &AppState,
    http: &Request,
    kind: Kind,
    path: &'static str,
    body: Body,
) -> Response {
    let mut log = RequestLog::start(&state.usage, http, path);
    let start = log.started();
    let mut sent_at = start;
    let result = async {
        let mut req = match kind {
            Kind::Chat => decode_chat(read_json(body, state.config.max_body_bytes).await?)?,
            Kind::Generate => decode_generate(read_json(body, state.config.max_body_bytes).await?)?,
        };
        log.set_request(&mut req);
        let model = relay::resolve_model(state, &req.model)?;
        log.set_route(&model);
        if is_load_request(kind, &req) {
            // An Ollama server upstream really loads (or unloads: `ollama stop`) the model, so its
            // `/api/ps` (ours too) shows it; catalog models have nothing to load.
            if let relay::Target::Instance(m) = &model {
                let fields = req.passthrough.clone().unwrap_or_default();
                crate::embed::load_on_instance(state, m, false, fields).await?;
            }
            return Ok((req, None));
        }
        sent_at = Instant::now();
        let reply = relay::chat(state, &model, &req, &mut |u| log.set_usage(u)).await?;
        Ok::<_, ApiError>((req, Some(reply)))
    }
    .await;
    match result {
        Ok((req, None)) => {
            // Ollama answers an empty request with done_reason "load", or "unload" when it came
            // with keep_alive 0 (server/routes.go).
            log.set_complete();
            let reason = if keep_alive_is_zero(&req) {
                "unload"
            } else {
                "load"
            };
            let mut v = json!({"model": req.model, "created_at": now_rfc3339()});
            match kind {
                Kind::Chat => v["message"] = json!({"role": "assistant", "content": ""}),
                Kind::Generate => v["response"] = "".into(),
            }
            v["done"] = true.into();
            v["done_reason"] = reason.into();
            let body = if req.stream {
                ndjson(&v)
            } else {
                Bytes::from(v.to_string())
            };
            let ct = if req.stream {
                "application/x-ndjson"
            } else {
                "application/json; charset=utf-8"
            };
            Response::builder().content_type(ct).body(body)
        }
        Err(e) => {
            log.set_error(&e);
            error_response(&e)
        }
        Ok((req, Some(Reply::Complete(r)))) => {
            if let Some(u) = r.usage {
                log.set_usage(u);
            }
            log.set_complete();
            let timing = Timing {
                start,
                first_token: Some(sent_at),
            };
            json_response(&complete_json(kind, &req.model, &r, &timing))
        }
        Ok((req, Some(Reply::Stream(events)))) => {
            log.set_first_token();
            let mut enc = NdjsonEncoder {
                kind,
                model: req.model,
                timing: Timing {
                    start,
                    first_token: None,
                },
                usage: None,
                calls: Vec::new(),
            };
            // Already-available events go out in one write (see STREAM_BATCH).
            let stream = super::ready_batches(events, super::STREAM_BATCH).map(move |batch| {
                let mut buf = Vec::new();
                for ev in batch {
                    log.observe(&ev);
                    let out = match ev {
                        Ok(ev) => enc.event(ev),
                        Err(e) => vec![ndjson(&json!({"error": e.to_string()}))],
                    };
                    out.iter().for_each(|b| buf.extend_from_slice(b));
                }
                Ok::<Bytes, std::io::Error>(Bytes::from(buf))
            });
            Response::builder()
                .content_type("application/x-ndjson")
                .body(Body::from_bytes_stream(stream))
        }
    }
}

#[handler]
async fn chat(req: &Request, state: Data<&AppState>, body: Body) -> Response {
    crate::usage::logged(run(&state, req, Kind::Chat, "/api/chat", body).await)
}

#[handler]
async fn generate(req: &Request, state: Data<&AppState>, body: Body) -> Response {
    crate::usage::logged(run(&state, req, Kind::Generate, "/api/generate", body).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_call_arguments_are_always_an_object() {
        // Ollama's clients decode `arguments` as a map (ollama-python: `Mapping[str, Any]`), so
        // argument text that is not a JSON object (`null`, empty, cut off) becomes `{}`.
        let call = |args: &str| ToolCall {
            id: "call_1".into(),
            name: "f".into(),
            arguments: args.into(),
        };
        let v = tool_calls_json(&[call("null"), call(""), call("[1]"), call(r#"{"a":1}"#)]);
        assert_eq!(v[0]["function"]["arguments"], json!({}));
        assert_eq!(v[1]["function"]["arguments"], json!({}));
        assert_eq!(v[2]["function"]["arguments"], json!({}));
        assert_eq!(v[3]["function"]["arguments"], json!({"a": 1}));
        assert_eq!(v[3]["function"]["index"], 3);
    }
}

// ---- embeddings (WIRE.md §2.7) ----

/// `/api/embed` request: `input` (string | string[]), `dimensions`; `truncate`, `options` and
/// `keep_alive` are forwarded to Ollama servers as sent.
#[derive(Deserialize)]
struct EmbedWire {
    #[serde(default)]
    model: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    dimensions: Option<u32>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Legacy `/api/embeddings` request: one `prompt`.
#[derive(Deserialize)]
struct EmbeddingsLegacyWire {
    #[serde(default)]
    model: String,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// `/api/embed` answer (WIRE.md §2.7; durations in ns).
#[derive(serde::Serialize)]
struct EmbedOut<'a> {
    model: &'a str,
    embeddings: &'a [Vec<f32>],
    total_duration: u64,
    load_duration: u64,
    prompt_eval_count: u64,
}

/// Legacy `/api/embeddings` answer.
#[derive(serde::Serialize)]
struct EmbeddingsLegacyOut<'a> {
    embedding: &'a [f32],
}

/// The Ollama fields passed on to Ollama servers (the rest of the body is dropped).
fn ollama_embed_fields(mut rest: Map<String, Value>) -> Map<String, Value> {
    rest.retain(|k, _| matches!(k.as_str(), "truncate" | "options" | "keep_alive"));
    rest
}

#[handler]
async fn embed(req: &Request, state: Data<&AppState>, body: Body) -> Response {
    crate::usage::logged(embed_inner(&state, req, body, false).await)
}

#[handler]
async fn embeddings_legacy(req: &Request, state: Data<&AppState>, body: Body) -> Response {
    crate::usage::logged(embed_inner(&state, req, body, true).await)
}

/// `/api/embed` (`legacy` false) answers `{"model","embeddings":[[...]],"total_duration",
/// "load_duration","prompt_eval_count"}`; `/api/embeddings` (`legacy`) answers
/// `{"embedding":[...]}`. An empty input (Ollama's way to load a model) is answered without an
/// upstream call: no vectors.
async fn embed_inner(state: &AppState, http: &Request, body: Body, legacy: bool) -> Response {
    let path = if legacy {
        "/api/embeddings"
    } else {
        "/api/embed"
    };
    let mut log = RequestLog::start(&state.usage, http, path);
    let start = log.started();
    let result = async {
        let (mut model, input, dimensions, rest) = if legacy {
            let w: EmbeddingsLegacyWire = read_json(body, state.config.max_body_bytes).await?;
            (
                w.model,
                w.prompt.filter(|p| !p.is_empty()).map(Value::from),
                None,
                w.rest,
            )
        } else {
            let w: EmbedWire = read_json(body, state.config.max_body_bytes).await?;
            let input = w.input.filter(|i| match i {
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            });
            (w.model, input, w.dimensions, w.rest)
        };
        if model.trim().is_empty() {
            return Err(ApiError::BadRequest("model is required".into()));
        }
        log.set_model_tagged(&mut model);
        // No default-model fallback: another model's vectors under this name would corrupt the
        // client's vector store.
        let target = relay::resolve_model_no_default(state, &model)?;
        log.set_route(&target);
        let Some(input) = input else {
            // Ollama's way to load a model: an Ollama server upstream loads it.
            if let relay::Target::Instance(m) = &target {
                crate::embed::load_on_instance(state, m, true, ollama_embed_fields(rest)).await?;
            }
            return Ok::<_, ApiError>((model, None));
        };
        let req = crate::embed::EmbedRequest {
            input: crate::embed::input_from_json(input, false)?,
            model,
            dimensions,
            user: None,
            ollama: ollama_embed_fields(rest),
            legacy,
        };
        let answer = crate::embed::embed(state, &target, &req).await?;
        let tokens = crate::embed::prompt_tokens(&req, &answer);
        Ok((req.model, Some((answer, tokens))))
    }
    .await;
    match result {
        Err(e) => {
            log.set_error(&e);
            error_response(&e)
        }
        Ok((model, answer)) => {
            let tokens = answer.as_ref().map_or(0, |(_, t)| *t);
            log.set_usage(crate::canonical::Usage {
                prompt_tokens: tokens,
                ..Default::default()
            });
            log.set_complete();
            let (vectors, timings) = match answer {
                Some((a, _)) => (a.vectors, a.timings.unwrap_or_default()),
                None => (Vec::new(), Default::default()),
            };
            // Typed, so each f32 prints as its shortest f32 text (a `Value` would widen it to
            // f64 and print 0.0057293195 as 0.005729319527745247).
            let body = if legacy {
                serde_json::to_vec(&EmbeddingsLegacyOut {
                    embedding: vectors.first().map_or(&[][..], Vec::as_slice),
                })
            } else {
                let ns = start.elapsed().as_nanos().clamp(1, i64::MAX as u128) as u64;
                serde_json::to_vec(&EmbedOut {
                    model: &model,
                    embeddings: &vectors,
                    total_duration: timings.total_duration.unwrap_or(ns),
                    load_duration: timings.load_duration.unwrap_or(0),
                    prompt_eval_count: tokens,
                })
            };
            Response::builder()
                .content_type("application/json; charset=utf-8")
                .body(body.unwrap_or_default())
        }
    }
}
