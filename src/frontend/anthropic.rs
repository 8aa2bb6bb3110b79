//! The Anthropic Messages API frontend (`POST /v1/messages`, `POST /v1/messages/count_tokens`,
//! and the Anthropic shape of `GET /v1/models` for requests carrying `anthropic-version`), so
//! Anthropic SDKs and Claude Code run on any upstream.
//!
//! Shapes follow anthropic-sdk-python `types/message_create_params.py`, `types/message.py`,
//! `types/raw_message_stream_event.py` (WIRE.md §4). Decoding is tolerant, as real clients need:
//! unknown fields and block types are ignored (Claude Code sends `context_management`,
//! `output_config`, `cache_control`, `role:"system"` entries inside `messages`, ...), never a 400;
//! but a tool without `name` or `input_schema` (OpenAI's tool shape) is Anthropic's 400, not a
//! tool silently lost.
//! Streams send the event sequence of WIRE.md §4.4 with `event:` lines (the SDK routes by them):
//! `message_start`, `ping`, per block `content_block_start` / `content_block_delta` (text_delta,
//! thinking_delta, input_json_delta) / `content_block_stop` (one block open at a time), then
//! `message_delta` (stop reason, output usage) and `message_stop`; upstream failures mid-stream
//! become `event: error`. Errors are `{"type":"error","error":{"type","message"},"request_id"}`
//! with Anthropic's statuses (overloaded upstreams: `overloaded_error`, 529); the `request_id` is
//! the one of the `request-id` header every answer carries.
//!
//! Not here: the Anthropic upstream (`crate::upstream::anthropic`), which this module reuses only
//! for the exact `count_tokens` of Anthropic-served models.

use bytes::Bytes;
use futures_util::StreamExt;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Body, Request, Response, Route, handler, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::openai::{new_id, sse_response};
use super::{image_from_url, read_json};
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, FinishReason, Message, ResponseFormat, Role,
    SignedThinking, StreamEvent, Tool, ToolCall, ToolChoice, Usage,
};
use crate::catalog::{self, Capability, WireFamily};
use crate::error::ApiError;
use crate::relay::{self, AppState, Reply, Target};
use crate::upstream::anthropic::{thinking_block, tool_input};
use crate::usage::RequestLog;
use crate::usage::estimate::prompt_tokens as estimate_tokens;

/// Add the Messages routes to the `/v1` route table (query strings such as Claude Code's
/// `?beta=true` do not take part in routing).
pub fn add_routes(v1: Route) -> Route {
    v1.at("/messages", post(messages))
        .at("/messages/count_tokens", post(count_tokens))
}

/// Whether a request comes from an Anthropic client (the SDKs always send `anthropic-version`).
pub fn is_anthropic_client(req: &Request) -> bool {
    req.headers().contains_key("anthropic-version")
}

// ---- errors ----

/// Anthropic's error `type` and the HTTP status to send for `e` (anthropic-sdk-python
/// `types/shared/error_type.py`; platform.claude.com/docs/en/api/errors). An overloaded
/// upstream (HTTP 529, or 503 from an upstream that uses it for overload) is `overloaded_error`
/// with 529, which Anthropic clients retry.
pub fn error_type_status(e: &ApiError) -> (&'static str, u16) {
    let status = e.status();
    if let ApiError::Upstream {
        status: 503 | 529, ..
    } = e
    {
        return ("overloaded_error", 529);
    }
    let kind = match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        409 => "conflict_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    (kind, status)
}

/// `{"type":"error","error":{"type","message"}}`: the in-stream `event: error` payload as is
/// (WIRE.md §4.5 shows no `request_id` there: a stream's id is in its `request-id` header).
fn error_json(e: &ApiError) -> Value {
    let (kind, _) = error_type_status(e);
    json!({"type": "error", "error": {"type": kind, "message": e.to_string()}})
}

/// A fresh Anthropic request id, `req_` and 24 alphanumerics (WIRE.md §4.1).
fn new_request_id() -> String {
    new_id("req_")
}

/// Render an error as Anthropic's `ErrorResponse` with its status (and `Retry-After`), under a
/// fresh request id (for answers no handler gave an id, such as unknown routes): see
/// `error_response_with_id`.
pub fn error_response(e: &ApiError) -> Response {
    error_response_with_id(e, &new_request_id())
}

/// Render an error as Anthropic's `ErrorResponse`
/// (`{"type":"error","error":{"type","message"},"request_id"}`, WIRE.md §4.6) with its status
/// (and `Retry-After`); `request_id` goes in the body and in the `request-id` header, the same
/// value in both, as Anthropic sends them.
fn error_response_with_id(e: &ApiError, request_id: &str) -> Response {
    let (_, status) = error_type_status(e);
    let mut body = error_json(e);
    body["request_id"] = request_id.into();
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY))
        .content_type("application/json")
        .header("request-id", request_id);
    if let Some(ra) = e.retry_after() {
        resp = resp.header("retry-after", ra);
    }
    resp.body(body.to_string())
}

fn json_response(v: &Value) -> Response {
    Response::builder()
        .content_type("application/json")
        .body(v.to_string())
}

// ---- models ----

/// One model in Anthropic's `ModelInfo` shape (`{"type":"model","id","display_name","created_at"}`;
/// `created_at` is RFC 3339, the process start for catalog models, which carry no date).
fn model_info(id: &str, display_name: &str, created_at: &str) -> Value {
    json!({"type": "model", "id": id, "display_name": display_name, "created_at": created_at})
}

/// `GET /v1/models` in Anthropic's shape (`{"data":[ModelInfo..],"has_more":false,"first_id",
/// "last_id"}`): the same models as the OpenAI-shaped list (runtime overrides applied), with a
/// `request-id` header like every Anthropic answer.
pub fn models_response(state: &AppState) -> Response {
    let data: Vec<Value> = super::usable_models(state)
        .iter()
        .map(|m| {
            let id = m.id();
            model_info(&id, &id, &state.started_at)
        })
        .collect();
    let first = data.first().map(|m| m["id"].clone());
    let last = data.last().map(|m| m["id"].clone());
    with_request_id(
        json_response(
            &json!({"data": data, "has_more": false, "first_id": first, "last_id": last}),
        ),
        &new_request_id(),
    )
}

/// `GET /v1/models/{id}` in Anthropic's shape (same resolution as a chat request), with a
/// `request-id` header.
pub fn model_response(state: &AppState, id: &str) -> Response {
    let request_id = new_request_id();
    match resolve(state, id) {
        Ok(_) => with_request_id(
            json_response(&model_info(id, id, &state.started_at)),
            &request_id,
        ),
        Err(e) => error_response_with_id(&e, &request_id),
    }
}

// ---- model mapping ----

/// The model name to route an Anthropic-API request for `name` to (seed 004's mapping).
///
/// - `routable`: whether `name` resolves as given to a keyed catalog provider or an Ollama
///   instance. Then it is used as is, so Claude models go to Anthropic when its key is set and
///   any catalog name works unchanged.
/// - Otherwise a name containing `haiku` maps to `small`, one containing `sonnet` or `opus` to
///   `big` (`SMALL_MODEL` / `BIG_MODEL`; case-insensitive), when set.
/// - Anything else is returned unchanged (then `DEFAULT_MODEL` or a 404 applies).
///
/// Pure, so `big`/`small` can come from the environment or from runtime settings.
pub fn map_claude_model<'a>(
    name: &'a str,
    routable: bool,
    big: Option<&'a str>,
    small: Option<&'a str>,
) -> &'a str {
    if routable {
        return name;
    }
    let lower = name.to_ascii_lowercase();
    let mapped = if lower.contains("haiku") {
        small
    } else if lower.contains("sonnet") || lower.contains("opus") {
        big
    } else {
        None
    };
    mapped.filter(|m| !m.trim().is_empty()).unwrap_or(name)
}

/// Resolve a client model name through [`map_claude_model`] (big/small models from the runtime
/// settings) and `relay::resolve_model`.
///
/// Errors: `ModelNotFound` naming the client's model.
fn resolve(state: &AppState, name: &str) -> Result<Target, ApiError> {
    // The runtime settings (admin UI), whose defaults are BIG_MODEL / SMALL_MODEL.
    let snap = state.overrides.load();
    // A custom alias or model of that name (admin UI) is routable as named too.
    let routable = matches!(
        snap.lookup(name),
        crate::overrides::Lookup::Alias(_) | crate::overrides::Lookup::Custom(_)
    ) || catalog::resolve(name)
        .is_some_and(|m| state.config.is_enabled(m.info().provider) && !snap.is_disabled(m))
        || state.instances.resolve(name).is_some();
    let mapped = map_claude_model(name, routable, snap.big_model(), snap.small_model());
    relay::resolve_model(state, mapped).map_err(|e| match e {
        // "model 'claude-sonnet-4-5 -> gpt-x' not found": the mapping is part of the answer.
        ApiError::ModelNotFound(_) if mapped != name => {
            ApiError::ModelNotFound(format!("{name} -> {mapped}"))
        }
        other => other,
    })
}

// ---- request wire types (MessageCreateParams) ----

#[derive(Deserialize)]
#[serde(untagged)]
enum WireContent {
    Text(String),
    Blocks(Vec<Value>),
}

#[derive(Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<WireContent>,
}

#[derive(Deserialize)]
struct WireTool {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    cache_control: Option<Value>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    input_schema: Option<Value>,
}

#[derive(Deserialize)]
struct WireMetadata {
    #[serde(default)]
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct MessagesRequest {
    model: String,
    #[serde(default)]
    messages: Vec<WireMessage>,
    #[serde(default)]
    system: Option<WireContent>,
    /// Required by Anthropic; tolerated when absent (the upstream's default then applies).
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<f64>,
    #[serde(default)]
    tools: Option<Vec<WireTool>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    metadata: Option<WireMetadata>,
    /// `{"type":"enabled","budget_tokens":N}`, `{"type":"adaptive"}` or `{"type":"disabled"}`.
    #[serde(default)]
    thinking: Option<Value>,
    /// `{"effort":"low|medium|high|max", "format":{"type":"json_schema","schema":{..}}}`.
    #[serde(default)]
    output_config: Option<Value>,
    /// Top-level (automatic) prompt caching.
    #[serde(default)]
    cache_control: Option<Value>,
}

/// Whether any block of `content` carries a `cache_control` breakpoint.
fn marks_cache(content: Option<&WireContent>) -> bool {
    match content {
        Some(WireContent::Blocks(blocks)) => blocks
            .iter()
            .any(|b| b.get("cache_control").is_some_and(|c| !c.is_null())),
        _ => false,
    }
}

/// Whether a `cache_control` asks for the 1-hour TTL (`{"type":"ephemeral","ttl":"1h"}`).
fn ttl_1h(cache_control: Option<&Value>) -> bool {
    cache_control
        .and_then(|c| c.get("ttl"))
        .and_then(Value::as_str)
        == Some("1h")
}

/// Whether a block of `content` asks for the 1-hour cache TTL.
fn marks_cache_1h(content: Option<&WireContent>) -> bool {
    match content {
        Some(WireContent::Blocks(blocks)) => blocks.iter().any(|b| ttl_1h(b.get("cache_control"))),
        _ => false,
    }
}

/// What the decoded request asked for that depends on the routed model (set after routing).
#[derive(Debug, Default, Clone, PartialEq)]
struct Thinking {
    /// Reasoning effort asked for (from `output_config.effort` or the thinking budget).
    effort: Option<String>,
    /// Thinking explicitly switched on without a level (`adaptive`) or off (`disabled`).
    on: Option<bool>,
    /// `budget_tokens` of `{"type":"enabled"}`.
    budget: Option<u32>,
}

/// Reasoning effort for a thinking budget (tokens); the inverse of the Anthropic upstream's
/// budgets (WIRE.md §7.5: low ~1024, medium ~4096, high ~16384).
fn effort_of_budget(budget: u64) -> &'static str {
    match budget {
        0..=2047 => "low",
        2048..=8191 => "medium",
        _ => "high",
    }
}

fn decode_thinking(thinking: Option<&Value>, output_config: Option<&Value>) -> Thinking {
    let mut t = Thinking::default();
    match thinking.and_then(|v| v.get("type")).and_then(Value::as_str) {
        Some("enabled") => {
            let budget = thinking
                .and_then(|v| v.get("budget_tokens"))
                .and_then(Value::as_u64);
            t.effort = Some(effort_of_budget(budget.unwrap_or(4096)).into());
            t.budget = budget.map(|b| u32::try_from(b).unwrap_or(u32::MAX));
        }
        Some("adaptive") => t.on = Some(true),
        Some("disabled") => t.on = Some(false),
        _ => {}
    }
    if let Some(effort) = output_config
        .and_then(|o| o.get("effort"))
        .and_then(Value::as_str)
        .filter(|_| t.on != Some(false))
    {
        t.effort = Some(effort.to_string());
    }
    t
}

/// A base64 or URL image block (`source.type` `base64` / `url`).
///
/// Errors: another source type, or data that is not a PNG/JPEG/GIF/WebP image (400).
fn decode_image(block: &Value) -> Result<ContentPart, ApiError> {
    let source = block.get("source").unwrap_or(&Value::Null);
    let field = |k: &str| source.get(k).and_then(Value::as_str).unwrap_or_default();
    match field("type") {
        "base64" => image_from_url(&format!(
            "data:{};base64,{}",
            field("media_type"),
            field("data")
        )),
        "url" => image_from_url(field("url")),
        other => Err(ApiError::BadRequest(format!(
            "image source type '{other}' is not supported: use base64 or url"
        ))),
    }
}

/// Text of a block list (`text` blocks only), for system prompts.
fn blocks_text(blocks: &[Value]) -> String {
    let mut out = String::new();
    for b in blocks {
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(t);
        }
    }
    out
}

/// The canonical `Role::Tool` message of a `tool_result` block (content: a string or text and
/// image blocks; `is_error` results are marked so every upstream's model sees the failure).
fn decode_tool_result(block: &Value) -> Result<Message, ApiError> {
    let mut content = Vec::new();
    match block.get("content") {
        Some(Value::String(s)) => content.push(ContentPart::Text(s.clone())),
        Some(Value::Array(parts)) => {
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => content.push(ContentPart::Text(
                        p.get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    )),
                    Some("image") => content.push(decode_image(p)?),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    if block.get("is_error").and_then(Value::as_bool) == Some(true) {
        content.insert(0, ContentPart::Text("Error: ".into()));
    }
    Ok(Message {
        role: Role::Tool,
        content,
        tool_calls: Vec::new(),
        tool_call_id: Some(
            block
                .get("tool_use_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        name: None,
        thinking: None,
        signed_thinking: Vec::new(),
    })
}

/// Decode one Anthropic message into canonical messages: a user turn's `tool_result` blocks
/// become `Role::Tool` messages first (the upstreams want them right after the assistant turn
/// that called), then the rest of the turn; an assistant turn's `tool_use` blocks become tool
/// calls and its `thinking` blocks its reasoning. Unknown block types are skipped.
fn decode_message(role: Role, content: Option<WireContent>) -> Result<Vec<Message>, ApiError> {
    let mut msg = Message {
        content: Vec::new(),
        ..Message::text(role, "")
    };
    let mut out = Vec::new();
    match content {
        None => {}
        Some(WireContent::Text(t)) => msg.content.push(ContentPart::Text(t)),
        Some(WireContent::Blocks(blocks)) => {
            for b in &blocks {
                let text = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or_default();
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => msg.content.push(ContentPart::Text(text("text").into())),
                    Some("image") => msg.content.push(decode_image(b)?),
                    Some("tool_use") if role == Role::Assistant => {
                        msg.tool_calls.push(ToolCall {
                            id: text("id").to_string(),
                            name: text("name").to_string(),
                            arguments: b
                                .get("input")
                                .filter(|i| !i.is_null())
                                .map_or_else(|| "{}".into(), Value::to_string),
                        });
                    }
                    Some("tool_result") => out.push(decode_tool_result(b)?),
                    // Echoed reasoning: carried whole (text and signature) for an Anthropic
                    // upstream, which verifies it; every other upstream ignores it. Unsigned
                    // reasoning cannot be replayed anywhere: dropped.
                    Some("thinking")
                        if role == Role::Assistant && !text("signature").is_empty() =>
                    {
                        msg.signed_thinking.push(SignedThinking::Thinking {
                            thinking: text("thinking").to_string(),
                            signature: text("signature").to_string(),
                        });
                    }
                    Some("redacted_thinking") if role == Role::Assistant => {
                        msg.signed_thinking.push(SignedThinking::Redacted {
                            data: text("data").to_string(),
                        });
                    }
                    // redacted_thinking, document, search_result, server tool blocks, ...
                    _ => {}
                }
            }
        }
    }
    let has_any =
        !msg.content.is_empty() || !msg.tool_calls.is_empty() || !msg.signed_thinking.is_empty();
    if has_any || out.is_empty() {
        out.push(msg);
    }
    Ok(out)
}

/// Added to the 400 of a tool in OpenAI's shape (Anthropic's own message names only the field).
const OPENAI_TOOL_HINT: &str = concat!(
    r#" (a tool here is {"name","description","input_schema"}, "#,
    r#"not a Chat Completions {"type":"function","function":{..}})"#
);

/// The client tools of `tools` (Anthropic's `Tool`: `name` and `input_schema` required, `type`
/// absent or `custom`). Server tools (`web_search_20250305`, `bash_20250124`,
/// `text_editor_...`: a `type` of their own, and a `name`) have no schema to offer another
/// upstream and are skipped.
///
/// Errors: a tool without `name`, or a client tool without `input_schema` such as one in OpenAI's
/// `{"type":"function","function":{..}}` shape: 400 naming the field as Anthropic does
/// (`tools.0.input_schema: Field required`).
fn decode_tools(tools: Vec<WireTool>) -> Result<Vec<Tool>, ApiError> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.into_iter().enumerate() {
        let missing = |field: &str, hint: &str| {
            ApiError::BadRequest(format!("tools.{i}.{field}: Field required{hint}"))
        };
        match t.kind.as_deref() {
            None | Some("custom") => {}
            // Never an Anthropic tool type: the OpenAI shape (Chat Completions or Responses).
            Some("function") => return Err(missing("input_schema", OPENAI_TOOL_HINT)),
            Some(_) if t.name.is_some() => continue,
            Some(_) => return Err(missing("name", "")),
        }
        let Some(name) = t.name else {
            return Err(missing("name", ""));
        };
        let Some(parameters) = t.input_schema else {
            return Err(missing("input_schema", ""));
        };
        out.push(Tool {
            name,
            description: t.description,
            parameters,
            strict: None,
        });
    }
    Ok(out)
}

fn decode_tool_choice(v: &Value) -> (Option<ToolChoice>, Option<bool>) {
    let parallel = v
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .filter(|d| *d)
        .map(|_| false);
    let choice = match v.get("type").and_then(Value::as_str) {
        Some("auto") => Some(ToolChoice::Auto),
        Some("any") => Some(ToolChoice::Required),
        Some("none") => Some(ToolChoice::None),
        Some("tool") => v
            .get("name")
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Function(n.to_string())),
        _ => None,
    };
    (choice, parallel)
}

/// Decode a `/v1/messages` request body into the canonical request, as the handler does once
/// the body is read (the entry point of the decoder fuzz pass, tests/fuzz.rs). The thinking
/// settings that depend on the routed model are applied later by the handler and not returned.
///
/// Errors: an empty body, malformed JSON, wrong shape or an unsupported value (400, rendered by
/// [`error_response`] as `invalid_request_error`).
pub fn decode_messages_body(body: &[u8]) -> Result<ChatRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "request body is empty: expected a JSON object".into(),
        ));
    }
    let wire: MessagesRequest =
        serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    decode_request(wire).map(|(req, _)| req)
}

/// Decode a `MessageCreateParams` body into the canonical request and the thinking it asked for.
///
/// Errors: a non-positive `max_tokens`, a tool without `name` or `input_schema`
/// ([`decode_tools`]), an unknown message role, an image that is not a PNG/JPEG/GIF/WebP (400).
fn decode_request(r: MessagesRequest) -> Result<(ChatRequest, Thinking), ApiError> {
    let max_tokens = match r.max_tokens {
        Some(0) => {
            return Err(ApiError::BadRequest(
                "max_tokens: must be greater than or equal to 1".into(),
            ));
        }
        Some(n) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
        None => None,
    };
    let thinking = decode_thinking(r.thinking.as_ref(), r.output_config.as_ref());
    let cache_prompt = r.cache_control.as_ref().is_some_and(|c| !c.is_null())
        || marks_cache(r.system.as_ref())
        || r.messages.iter().any(|m| marks_cache(m.content.as_ref()))
        || r.tools
            .iter()
            .flatten()
            .any(|t| t.cache_control.as_ref().is_some_and(|c| !c.is_null()));
    let cache_ttl_1h = ttl_1h(r.cache_control.as_ref())
        || marks_cache_1h(r.system.as_ref())
        || r.messages
            .iter()
            .any(|m| marks_cache_1h(m.content.as_ref()))
        || r.tools
            .iter()
            .flatten()
            .any(|t| ttl_1h(t.cache_control.as_ref()));
    let mut req = ChatRequest {
        cache_prompt,
        cache_ttl_1h,
        model: r.model,
        stream: r.stream.unwrap_or(false),
        max_tokens,
        temperature: r.temperature,
        top_p: r.top_p,
        top_k: r
            .top_k
            .filter(|k| *k >= 1.0)
            .map(|k| k.min(f64::from(u32::MAX)) as u32),
        stop: r.stop_sequences.unwrap_or_default(),
        user: r.metadata.and_then(|m| m.user_id),
        ..ChatRequest::default()
    };
    if let Some(schema) = r
        .output_config
        .as_ref()
        .and_then(|o| o.get("format"))
        .filter(|f| f.get("type").and_then(Value::as_str) == Some("json_schema"))
        .and_then(|f| f.get("schema"))
    {
        req.response_format = Some(ResponseFormat::JsonSchema {
            name: "response".into(),
            schema: schema.clone(),
            strict: None,
        });
    }
    match r.system {
        Some(WireContent::Text(t)) if !t.is_empty() => req.system.push(t),
        Some(WireContent::Blocks(blocks)) => {
            for b in &blocks {
                if let Some(t) = b.get("text").and_then(Value::as_str) {
                    req.system.push(t.to_string());
                }
            }
        }
        _ => {}
    }
    req.tools = decode_tools(r.tools.unwrap_or_default())?;
    if let Some(tc) = r.tool_choice.as_ref() {
        let (choice, parallel) = decode_tool_choice(tc);
        req.tool_choice = choice;
        req.parallel_tool_calls = parallel;
    }
    for m in r.messages {
        let role = match m.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            // Claude Code puts `role:"system"` entries inside `messages`.
            "system" => {
                let text = match m.content {
                    Some(WireContent::Text(t)) => t,
                    Some(WireContent::Blocks(b)) => blocks_text(&b),
                    None => String::new(),
                };
                if !text.is_empty() {
                    req.system.push(text);
                }
                continue;
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "messages: unknown role '{other}' (expected user or assistant)"
                )));
            }
        };
        req.messages.extend(decode_message(role, m.content)?);
    }
    if req.messages.is_empty() {
        return Err(ApiError::BadRequest(
            "messages: at least one message is required".into(),
        ));
    }
    Ok((req, thinking))
}

/// Apply what depends on the routed model: `max_tokens` capped to the model's output limit
/// (Claude Code asks for up to 128000), and thinking only for models that reason (a reasoning
/// effort sent to a model without reasoning is a 400 at most upstreams).
fn fit_to_target(req: &mut ChatRequest, thinking: &Thinking, target: &Target) {
    let Some(model) = target.catalog() else {
        // Ollama-instance models: their capabilities are not known here; thinking only when the
        // client switched it on explicitly with a level.
        req.reasoning_effort = None;
        return;
    };
    let info = model.info();
    if let (Some(max), Some(cap)) = (req.max_tokens, info.max_output_tokens) {
        req.max_tokens = Some(max.min(cap));
    }
    if info.has(Capability::Reasoning) {
        req.reasoning_effort = thinking.effort.clone();
        req.think = thinking.on;
        req.thinking_budget = thinking.budget;
    }
}

// ---- response encoding ----

/// `stop_reason` and `stop_sequence` of an answer.
fn stop_fields(r: FinishReason, stop_sequence: Option<&str>) -> (&'static str, Value) {
    match (r, stop_sequence) {
        (FinishReason::Stop, Some(s)) => ("stop_sequence", s.into()),
        (r, _) => (stop_reason(r), Value::Null),
    }
}

fn stop_reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop | FinishReason::Error => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
    }
}

/// Anthropic `usage`: `input_tokens` excludes cache reads and writes (WIRE.md §7.7), and
/// `cache_creation` splits the writes by lifetime as Anthropic does
/// (`{"ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"}`, summing to
/// `cache_creation_input_tokens`; WIRE.md §4.4). Upstreams without the split report every write
/// as a 5-minute one.
fn usage_json(u: &Usage) -> Value {
    let input = u
        .prompt_tokens
        .saturating_sub(u.cache_read_tokens + u.cache_write_tokens);
    let write_1h = u.cache_write_1h_tokens.min(u.cache_write_tokens);
    json!({
        "input_tokens": input,
        "output_tokens": u.completion_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": u.cache_write_tokens - write_1h,
            "ephemeral_1h_input_tokens": write_1h,
        },
    })
}

/// `message_delta`'s `usage`: the cumulative counts without `cache_creation`, which Anthropic
/// sends only in `message_start` and complete messages (recorded streams, WIRE.md §4.5).
fn delta_usage_json(u: &Usage) -> Value {
    let mut v = usage_json(u);
    if let Some(m) = v.as_object_mut() {
        m.remove("cache_creation");
    }
    v
}

/// A `tool_use` id for a call the upstream gave none.
fn tool_use_id(id: Option<String>) -> String {
    id.filter(|i| !i.is_empty())
        .unwrap_or_else(|| new_id("toolu_"))
}

/// A complete `Message` (non-streamed answer). `model` is the name the client asked for.
fn message_json(id: &str, model: &str, r: &ChatResponse, estimate: u64) -> Value {
    let mut content = Vec::new();
    if !r.signed_thinking.is_empty() {
        content.extend(r.signed_thinking.iter().map(thinking_block));
    } else if let Some(t) = r.thinking.as_ref().filter(|t| !t.is_empty()) {
        // Unsigned reasoning (OpenAI-compatible, Gemini, Ollama upstreams): shown, never
        // replayable, so the signature is empty.
        content.push(json!({"type": "thinking", "thinking": t, "signature": ""}));
    }
    if !r.content.is_empty() {
        content.push(json!({"type": "text", "text": r.content}));
    }
    for c in &r.tool_calls {
        content.push(
            json!({"type": "tool_use", "id": tool_use_id(Some(c.id.clone())),
                            "name": c.name, "input": tool_input(&c.arguments)}),
        );
    }
    let usage = r.usage.unwrap_or(Usage {
        prompt_tokens: estimate,
        ..Usage::default()
    });
    let (stop_reason, stop_sequence) = stop_fields(r.finish_reason, r.stop_sequence.as_deref());
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage_json(&usage),
    })
}

/// One SSE event with its `event:` line (the SDK dispatches on it, WIRE.md §1).
fn frame(out: &mut Vec<u8>, event: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// The content block a stream has open.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Open {
    None,
    Text,
    Thinking,
    /// A `tool_use` block for the canonical tool call of this index.
    Tool(u32),
}

/// Per-stream encoder state: canonical events in, Anthropic SSE events out.
struct StreamEncoder {
    id: String,
    model: String,
    /// Prompt-token estimate for `message_start` when the upstream reports usage only at the end.
    estimate: u64,
    started: bool,
    /// Index of the next content block.
    next_block: u32,
    open: Open,
    /// Canonical tool-call indexes that already had a block.
    tools_seen: Vec<u32>,
    usage: Option<Usage>,
    /// The stop sequence the upstream said ended the answer.
    stop_sequence: Option<String>,
}

impl StreamEncoder {
    fn new(model: String, estimate: u64) -> Self {
        StreamEncoder {
            id: new_id("msg_"),
            model,
            estimate,
            started: false,
            next_block: 0,
            open: Open::None,
            tools_seen: Vec::new(),
            usage: None,
            stop_sequence: None,
        }
    }

    /// `message_start` (usage: the upstream's, if it came first, else the estimate) and `ping`.
    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let usage = self.usage.unwrap_or(Usage {
            prompt_tokens: self.estimate,
            ..Usage::default()
        });
        let mut u = usage_json(&usage);
        u["output_tokens"] = 0.into();
        frame(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": Value::Null, "stop_sequence": Value::Null, "usage": u}}),
        );
        frame(out, "ping", &json!({"type": "ping"}));
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if self.open != Open::None {
            frame(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": self.next_block - 1}),
            );
            self.open = Open::None;
        }
    }

    /// Close the open block (if another) and open `kind` with `block` as its start.
    fn open(&mut self, out: &mut Vec<u8>, kind: Open, block: Value) {
        self.close(out);
        frame(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.next_block, "content_block": block}),
        );
        self.next_block += 1;
        self.open = kind;
    }

    /// A `content_block_delta` carrying text (`text_delta`/`text`, `thinking_delta`/`thinking`,
    /// `input_json_delta`/`partial_json`), written without a JSON tree: this runs per token.
    fn text_delta(&self, out: &mut Vec<u8>, kind: &str, field: &str, text: &str) {
        out.extend_from_slice(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
        );
        out.extend_from_slice((self.next_block - 1).to_string().as_bytes());
        out.extend_from_slice(b",\"delta\":{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"");
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(b"\":");
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
        out.extend_from_slice(b"}}\n\n");
    }

    fn delta(&self, out: &mut Vec<u8>, delta: Value) {
        frame(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": self.next_block - 1, "delta": delta}),
        );
    }

    fn event(&mut self, out: &mut Vec<u8>, ev: StreamEvent) {
        match ev {
            StreamEvent::Usage(u) => {
                self.usage = Some(u);
                return;
            }
            StreamEvent::StopSequence(s) => {
                self.stop_sequence = Some(s);
                return;
            }
            _ => {}
        }
        self.start(out);
        match ev {
            StreamEvent::TextDelta(t) if t.is_empty() => {}
            StreamEvent::TextDelta(t) => {
                if self.open != Open::Text {
                    self.open(out, Open::Text, json!({"type": "text", "text": ""}));
                }
                self.text_delta(out, "text_delta", "text", &t);
            }
            StreamEvent::ThinkingDelta(t) if t.is_empty() => {}
            StreamEvent::ThinkingDelta(t) => {
                if self.open != Open::Thinking {
                    self.open(
                        out,
                        Open::Thinking,
                        json!({"type": "thinking", "thinking": "", "signature": ""}),
                    );
                }
                self.text_delta(out, "thinking_delta", "thinking", &t);
            }
            StreamEvent::ThinkingSignature(s) => {
                // The signature ends its block (as Anthropic streams it); a signature without
                // text (thinking `display: "omitted"`) still gets its block.
                if self.open != Open::Thinking {
                    self.open(
                        out,
                        Open::Thinking,
                        json!({"type": "thinking", "thinking": "", "signature": ""}),
                    );
                }
                self.delta(out, json!({"type": "signature_delta", "signature": s}));
                self.close(out);
            }
            StreamEvent::RedactedThinking(data) => {
                self.open(
                    out,
                    Open::Thinking,
                    json!({"type": "redacted_thinking", "data": data}),
                );
                self.close(out);
            }
            StreamEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                if self.open != Open::Tool(index) {
                    if self.tools_seen.contains(&index) {
                        // A fragment for a call whose block is closed (an upstream interleaving
                        // parallel calls): Anthropic streams cannot reopen a block.
                        tracing::warn!(index, "tool-call fragment after its block closed: dropped");
                        return;
                    }
                    self.tools_seen.push(index);
                    // Claude Code ignores `input` here: the arguments follow as input_json_delta.
                    self.open(
                        out,
                        Open::Tool(index),
                        json!({"type": "tool_use", "id": tool_use_id(id),
                               "name": name.unwrap_or_default(), "input": {}}),
                    );
                }
                if !arguments.is_empty() {
                    self.text_delta(out, "input_json_delta", "partial_json", &arguments);
                }
            }
            StreamEvent::Finish(reason) => {
                self.close(out);
                let usage = self.usage.unwrap_or(Usage {
                    prompt_tokens: self.estimate,
                    ..Usage::default()
                });
                let (stop_reason, stop_sequence) =
                    stop_fields(reason, self.stop_sequence.as_deref());
                frame(
                    out,
                    "message_delta",
                    &json!({"type": "message_delta",
                            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                            "usage": delta_usage_json(&usage)}),
                );
                frame(out, "message_stop", &json!({"type": "message_stop"}));
            }
            StreamEvent::Usage(_) | StreamEvent::StopSequence(_) => {}
        }
    }

    /// A keep-alive `ping` (after `message_start`, which always comes first).
    fn ping(&mut self, out: &mut Vec<u8>) {
        if self.started {
            frame(out, "ping", &json!({"type": "ping"}));
        } else {
            self.start(out);
        }
    }

    /// An upstream failure mid-stream: `event: error` (WIRE.md §4.6).
    fn error(&mut self, out: &mut Vec<u8>, e: &ApiError) {
        self.start(out);
        frame(out, "error", &error_json(e));
    }
}

/// Silence after which a stream sends a `ping` (WIRE.md §7.9: "emit ping if idle"), so proxies
/// with idle timeouts and clients watching for stalls keep the stream while a reasoning model
/// thinks without output. Anthropic itself pings at roughly this rate.
const PING_AFTER: std::time::Duration = std::time::Duration::from_secs(15);

/// An upstream item, or a stretch of [`PING_AFTER`] without one.
enum Tick {
    Item(Result<StreamEvent, ApiError>),
    Idle,
}

/// `events` with [`Tick::Idle`] inserted after every [`PING_AFTER`] of silence; ends with them.
fn with_idle_ticks(
    events: crate::upstream::EventStream,
) -> impl futures_util::Stream<Item = Tick> + Send {
    let start = tokio::time::Instant::now() + PING_AFTER;
    let timer = tokio::time::interval_at(start, PING_AFTER);
    futures_util::stream::unfold((events, timer), |(mut events, mut timer)| async move {
        tokio::select! {
            item = events.next() => {
                timer.reset();
                item.map(|i| (Tick::Item(i), (events, timer)))
            }
            _ = timer.tick() => Some((Tick::Idle, (events, timer))),
        }
    })
}

/// Turn a canonical event stream into the SSE body, feeding usage into the request log.
fn stream_body(
    events: crate::upstream::EventStream,
    mut enc: StreamEncoder,
    mut log: RequestLog,
) -> Body {
    let body = super::ready_batches(Box::pin(with_idle_ticks(events)), super::STREAM_BATCH).map(
        move |batch| {
            let mut buf = Vec::new();
            for tick in batch {
                match tick {
                    Tick::Item(ev) => {
                        log.observe(&ev);
                        match ev {
                            Ok(ev) => enc.event(&mut buf, ev),
                            Err(e) => enc.error(&mut buf, &e),
                        }
                    }
                    Tick::Idle => enc.ping(&mut buf),
                }
            }
            Ok::<Bytes, std::io::Error>(Bytes::from(buf))
        },
    );
    Body::from_bytes_stream(body)
}

// ---- handlers ----

/// Add the `request-id` header Anthropic sends on every answer (WIRE.md §4.1: a fresh
/// `req_<24 alphanumerics>` per request, also the `request_id` of an error body; the SDKs
/// expose it as `_request_id` and on their errors).
fn with_request_id(mut resp: Response, request_id: &str) -> Response {
    if let Ok(v) = request_id.parse() {
        resp.headers_mut().insert("request-id", v);
    }
    resp
}

#[handler]
async fn messages(req: &Request, state: Data<&AppState>, body: Body) -> Response {
    let id = new_request_id();
    with_request_id(
        crate::usage::logged(messages_inner(&state, req, body, &id).await),
        &id,
    )
}

async fn messages_inner(
    state: &AppState,
    http: &Request,
    body: Body,
    request_id: &str,
) -> Response {
    let mut log = RequestLog::start(&state.usage, http, "/v1/messages");
    let result = async {
        let wire: MessagesRequest = read_json(body, state.config.max_body_bytes).await?;
        let (mut req, thinking) = decode_request(wire)?;
        log.set_request(&mut req);
        let target = resolve(state, &req.model)?;
        log.set_route(&target);
        fit_to_target(&mut req, &thinking, &target);
        let reply = relay::chat(state, &target, &req, &mut |u| log.set_usage(u)).await?;
        Ok::<_, ApiError>((req, reply))
    }
    .await;
    match result {
        Err(e) => {
            let resp = error_response_with_id(&e, request_id);
            // The status sent (529 for an overloaded upstream's 503), not the upstream's.
            log.set_error_with_status(&e, resp.status().as_u16());
            resp
        }
        Ok((req, Reply::Complete(r))) => {
            if let Some(u) = r.usage {
                log.set_usage(u);
            }
            log.set_complete();
            let estimate = if r.usage.is_none() {
                estimate_tokens(&req)
            } else {
                0
            };
            json_response(&message_json(&new_id("msg_"), &req.model, &r, estimate))
        }
        Ok((req, Reply::Stream(events))) => {
            log.set_first_token();
            // The request log already estimated the stream's prompt.
            let estimate = log
                .prompt_estimate()
                .unwrap_or_else(|| estimate_tokens(&req));
            let enc = StreamEncoder::new(req.model.clone(), estimate);
            sse_response(stream_body(events, enc, log))
        }
    }
}

/// Keys of a Messages request that `count_tokens` takes (anthropic-sdk-python
/// `types/message_count_tokens_params.py`).
const COUNT_TOKENS_KEYS: [&str; 6] = [
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
];

#[handler]
async fn count_tokens(state: Data<&AppState>, body: Body) -> Response {
    let id = new_request_id();
    let resp = match count_tokens_inner(&state, body).await {
        Ok(n) => json_response(&json!({"input_tokens": n})),
        Err(e) => error_response_with_id(&e, &id),
    };
    with_request_id(resp, &id)
}

/// The prompt tokens of a Messages request: Anthropic's own count when the model is served by
/// an Anthropic-family upstream (its `/messages/count_tokens`), else the estimate of
/// [`crate::usage::estimate::prompt_tokens`].
///
/// Errors: bad request (400), unknown model (404), the upstream's errors.
async fn count_tokens_inner(state: &AppState, body: Body) -> Result<u64, ApiError> {
    let wire: MessagesRequest = read_json(body, state.config.max_body_bytes).await?;
    let (mut req, _) = decode_request(wire)?;
    let (model, _) = crate::usage::tags::split_model_suffix(&req.model);
    req.model = model.to_string();
    let target = resolve(state, &req.model)?;
    let Some(model) = target
        .catalog()
        .filter(|m| m.info().provider.info().wire == WireFamily::Anthropic)
        .filter(|m| state.config.is_enabled(m.info().provider))
    else {
        return Ok(estimate_tokens(&req));
    };
    req.stream = false;
    let mut encoded = crate::upstream::anthropic::encode_body(model, &req)?;
    if let Value::Object(m) = &mut encoded {
        m.retain(|k, _| COUNT_TOKENS_KEYS.contains(&k.as_str()));
    }
    let body = serde_json::to_vec(&encoded)
        .map_err(|e| ApiError::BadRequest(format!("cannot encode request: {e}")))?;
    let dialect = catalog::dialect(model.info().provider);
    let upstream = crate::upstream::client::send(
        &state.client,
        &state.config,
        dialect,
        model,
        "/messages/count_tokens",
        body,
    )
    .await?;
    let provider = model.info().provider.name();
    let bytes = upstream.into_bytes(&state.config).await?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("input_tokens").and_then(Value::as_u64))
        .ok_or_else(|| ApiError::UpstreamInvalid {
            provider,
            reason: "count_tokens answer without input_tokens".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(v: Value) -> (ChatRequest, Thinking) {
        let wire: MessagesRequest = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
        decode_request(wire).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn claude_names_map_to_big_and_small_only_when_not_routable() {
        let (big, small) = (Some("big-one"), Some("small-one"));
        assert_eq!(
            map_claude_model("claude-3-haiku-x", false, big, small),
            "small-one"
        );
        assert_eq!(
            map_claude_model("claude-Sonnet-9", false, big, small),
            "big-one"
        );
        assert_eq!(
            map_claude_model("claude-opus-9", false, big, small),
            "big-one"
        );
        assert_eq!(
            map_claude_model("claude-opus-9", true, big, small),
            "claude-opus-9"
        );
        assert_eq!(map_claude_model("other", false, big, small), "other");
        assert_eq!(
            map_claude_model("claude-opus-9", false, None, small),
            "claude-opus-9"
        );
    }

    #[test]
    fn claude_code_shapes_decode() {
        let (req, thinking) = decode(json!({
            "model": "m", "max_tokens": 128000, "stream": true,
            "system": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "b"}],
            "thinking": {"type": "enabled", "budget_tokens": 31999},
            "context_management": {"edits": []}, "output_config": {"x": 1},
            "messages": [
                {"role": "system", "content": "c"},
                {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "Bash", "input": {"command": "pwd"}},
                    {"type": "brand_new_block"}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "/x"}]},
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "boom", "is_error": true},
                    {"type": "text", "text": "go on"}]}
            ]
        }));
        assert_eq!(req.system, ["a", "b", "c"]);
        assert!(req.cache_prompt, "cache_control on a system block");
        assert_eq!(req.max_tokens, Some(128000));
        assert_eq!(thinking.effort.as_deref(), Some("high"));
        assert_eq!(thinking.budget, Some(31999));
        assert_eq!(req.messages.len(), 5, "{:?}", req.messages);
        let a = &req.messages[1];
        assert_eq!(a.role, Role::Assistant);
        // Signed reasoning is carried whole (only an Anthropic upstream replays it).
        assert_eq!(a.thinking, None);
        assert_eq!(
            a.signed_thinking,
            [SignedThinking::Thinking {
                thinking: "hmm".into(),
                signature: "sig".into()
            }]
        );
        assert_eq!(a.tool_calls.len(), 2);
        assert_eq!(a.tool_calls[0].arguments, r#"{"command":"ls"}"#);
        assert_eq!(req.messages[2].tool_call_id.as_deref(), Some("toolu_2"));
        assert_eq!(req.messages[3].tool_call_id.as_deref(), Some("toolu_1"));
        assert!(req.messages[3].joined_text().starts_with("Error: "));
        assert_eq!(req.messages[4].joined_text(), "go on");
    }

    #[test]
    fn stream_events_come_in_anthropic_order() {
        let mut enc = StreamEncoder::new("m".into(), 7);
        let mut out = Vec::new();
        for ev in [
            StreamEvent::TextDelta("a".into()),
            StreamEvent::ToolCallDelta {
                index: 0,
                id: Some("c1".into()),
                name: Some("f".into()),
                arguments: String::new(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: "{\"x\":1}".into(),
            },
            StreamEvent::Usage(Usage {
                prompt_tokens: 10,
                completion_tokens: 3,
                ..Usage::default()
            }),
            StreamEvent::Finish(FinishReason::ToolCalls),
        ] {
            enc.event(&mut out, ev);
        }
        let text = String::from_utf8(out).unwrap_or_default();
        let events: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            events,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(
            text.contains(r#""input_tokens":7"#),
            "estimate in message_start"
        );
        assert!(text.contains(r#""partial_json":"{\"x\":1}""#));
        assert!(text.contains(r#""stop_reason":"tool_use""#));
        assert!(text.contains(r#""output_tokens":3"#));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_upstream_gets_pings_and_the_stream_still_ends() {
        let one = || Ok(StreamEvent::TextDelta("a".into()));
        // An upstream that sends one event and then nothing: pings every PING_AFTER.
        let silent: crate::upstream::EventStream =
            Box::pin(futures_util::stream::iter([one()]).chain(futures_util::stream::pending()));
        let ticks: Vec<Tick> = with_idle_ticks(silent).take(3).collect().await;
        assert!(matches!(
            ticks.as_slice(),
            [Tick::Item(Ok(_)), Tick::Idle, Tick::Idle]
        ));
        // An upstream that ends: so does the stream, without pings.
        let done: crate::upstream::EventStream = Box::pin(futures_util::stream::iter([one()]));
        let ticks: Vec<Tick> = with_idle_ticks(done).collect().await;
        assert!(matches!(ticks.as_slice(), [Tick::Item(Ok(_))]));
    }

    #[test]
    fn a_tool_in_openai_shape_is_a_400_showing_the_anthropic_shape() {
        let decode_err = |tools: Value| {
            let wire: MessagesRequest = serde_json::from_value(json!({
                "model": "m", "tools": tools, "messages": [{"role": "user", "content": "x"}]
            }))
            .unwrap_or_else(|e| panic!("{e}"));
            match decode_request(wire) {
                Err(ApiError::BadRequest(m)) => m,
                other => panic!("{:?}", other.map(|(r, _)| r.tools)),
            }
        };
        let m = decode_err(json!([{"type": "function", "function": {"name": "f"}}]));
        assert_eq!(
            m,
            format!("tools.0.input_schema: Field required{OPENAI_TOOL_HINT}")
        );
        assert!(
            m.contains(r#"{"name","description","input_schema"}"#),
            "{m}"
        );
        assert_eq!(
            decode_err(json!([{"type": "bash_20250124", "name": "bash"}, {"type": "x"}])),
            "tools.1.name: Field required"
        );
    }

    #[test]
    fn overload_is_529() {
        let e = ApiError::Upstream {
            provider: "p",
            status: 503,
            message: "busy".into(),
            retry_after: None,
            code: None,
            param: None,
        };
        assert_eq!(error_type_status(&e), ("overloaded_error", 529));
        assert_eq!(
            error_type_status(&ApiError::BadRequest("x".into())),
            ("invalid_request_error", 400)
        );
    }
}
