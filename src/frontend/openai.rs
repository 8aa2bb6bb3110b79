//! The OpenAI API frontend (`/v1/models`, `/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`; `/v1/responses` lives in [`super::responses`]).
//!
//! Shapes follow OpenAI's OpenAPI spec (`CreateChatCompletionRequest`/`Response`,
//! `CreateChatCompletionStreamResponse`, `ErrorResponse`; ../shared/specs/openai-openapi.yaml and
//! WIRE.md §3). Streams: a role delta first, content deltas, a finish chunk with an empty delta and
//! the real finish reason, a usage chunk (`choices: []`) when `stream_options.include_usage`, then
//! `data: [DONE]`. Errors: `{"error":{"message","type","param","code"}}` with the right status.

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::StreamExt;
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Body, Request, Response, Route, get, handler, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{image_from_url, now_unix, read_json};
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, Message, ResponseFormat, Role, StreamEvent, Tool,
    ToolCall, ToolChoice, Usage,
};
use crate::catalog::ModelId;
use crate::error::ApiError;
use crate::relay::{self, AppState, Reply};
use crate::usage::RequestLog;

/// Routes under `/v1`.
pub fn routes() -> Route {
    Route::new()
        .at("/models", get(list_models))
        .at("/models/*id", get(get_model))
        .at("/chat/completions", post(chat_completions))
        .at("/completions", post(completions))
        .at("/embeddings", post(embeddings))
        .at("/responses", post(super::responses::responses))
}

/// OpenAI's `ErrorResponse` body: `{"error":{"message","type","param","code"}}` (all four keys
/// are required by the spec; `param` and `code` may be null).
fn error_json(e: &ApiError) -> Value {
    json!({"error": {"message": e.to_string(), "type": e.openai_type(), "param": e.openai_param(), "code": e.openai_code()}})
}

/// Render an error as OpenAI's `ErrorResponse` with its status (and `Retry-After`).
pub fn error_response(e: &ApiError) -> Response {
    let body = error_json(e);
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY))
        .content_type("application/json");
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

fn model_object(m: ModelId) -> Value {
    let info = m.info();
    json!({"id": info.id, "object": "model", "created": 0, "owned_by": info.provider.name()})
}

#[handler]
async fn list_models(req: &Request, state: Data<&AppState>) -> Response {
    // Anthropic SDKs list models at the same path, in their own shape.
    if super::anthropic::is_anthropic_client(req) {
        return super::anthropic::models_response(&state);
    }
    // Runtime overrides: disabled models left out, custom models added.
    let data: Vec<Value> = super::usable_models(&state)
        .into_iter()
        .map(|m| json!({"id": m.id(), "object": "model", "created": m.created(), "owned_by": m.owned_by()}))
        .collect();
    json_response(&json!({"object": "list", "data": data}))
}

#[handler]
async fn get_model(req: &Request, state: Data<&AppState>, Path(id): Path<String>) -> Response {
    if super::anthropic::is_anthropic_client(req) {
        return super::anthropic::model_response(&state, &id);
    }
    // Same resolution as chat (DEFAULT_MODEL included), so a name that chats also retrieves.
    match relay::resolve_model(&state, &id) {
        Ok(relay::Target::Catalog(m) | relay::Target::Priced(m, _)) => {
            json_response(&model_object(m))
        }
        Ok(relay::Target::Instance(m)) => json_response(&json!({
            "id": id, "object": "model", "created": m.modified_unix(), "owned_by": m.instance,
        })),
        Ok(relay::Target::Custom(c)) => json_response(&json!({
            "id": id, "object": "model", "created": 0, "owned_by": c.provider,
        })),
        Err(e) => error_response(&e),
    }
}

// ---- request wire types (CreateChatCompletionRequest) ----

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrVec {
    One(String),
    Many(Vec<String>),
}

impl StringOrVec {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrVec::One(s) => vec![s],
            StringOrVec::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireContent {
    Text(String),
    Parts(Vec<WirePart>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WirePart {
    Text {
        text: String,
    },
    ImageUrl {
        image_url: WireImageUrl,
    },
    Refusal {
        #[allow(dead_code)]
        refusal: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireImageUrl {
    Url(String),
    Object { url: String },
}

#[derive(Deserialize)]
struct WireToolCall {
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
    content: Option<WireContent>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default, alias = "reasoning")]
    reasoning_content: Option<String>,
}

#[derive(Deserialize)]
struct WireTool {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct ChatCompletionRequest {
    model: String,
    messages: Vec<WireMessage>,
    /// Nullable in the spec (`stream: null` = false).
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    stop: Option<StringOrVec>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[serde(default)]
    frequency_penalty: Option<f64>,
    #[serde(default)]
    reasoning_effort: Option<String>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    tools: Option<Vec<WireTool>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    user: Option<String>,
    // Forwarded as-is to OpenAI-compatible upstreams (`ChatRequest::openai_extra`); keep in step
    // with `forwarded_fields`.
    #[serde(default)]
    logprobs: Option<Value>,
    #[serde(default)]
    top_logprobs: Option<Value>,
    #[serde(default)]
    logit_bias: Option<Value>,
    #[serde(default)]
    service_tier: Option<Value>,
    #[serde(default)]
    store: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    prediction: Option<Value>,
    #[serde(default)]
    modalities: Option<Value>,
    #[serde(default)]
    audio: Option<Value>,
    #[serde(default)]
    verbosity: Option<Value>,
    #[serde(default)]
    web_search_options: Option<Value>,
    #[serde(default)]
    search_domain_filter: Option<Value>,
    #[serde(default)]
    search_recency_filter: Option<Value>,
    #[serde(default)]
    search_mode: Option<Value>,
    #[serde(default)]
    return_images: Option<Value>,
    #[serde(default)]
    return_related_questions: Option<Value>,
    #[serde(default)]
    provider: Option<Value>,
    #[serde(default)]
    models: Option<Value>,
    #[serde(default)]
    transforms: Option<Value>,
    #[serde(default)]
    plugins: Option<Value>,
}

/// The fields of `r` that llm-relay forwards without modelling them, by their wire names (see
/// `ChatRequest::openai_extra`); `None` when the client sent none (the common case: no map).
fn forwarded_fields(r: &mut ChatCompletionRequest) -> Option<serde_json::Map<String, Value>> {
    let mut m = serde_json::Map::new();
    macro_rules! take {
        ($($field:ident),*) => {
            $(if let Some(v) = r.$field.take() {
                m.insert(stringify!($field).into(), v);
            })*
        };
    }
    take!(
        logprobs,
        top_logprobs,
        logit_bias,
        service_tier,
        store,
        metadata,
        prediction,
        modalities,
        audio,
        verbosity,
        web_search_options,
        search_domain_filter,
        search_recency_filter,
        search_mode,
        return_images,
        return_related_questions,
        provider,
        models,
        transforms,
        plugins
    );
    (!m.is_empty()).then_some(m)
}

fn decode_content(content: Option<WireContent>) -> Result<Vec<ContentPart>, ApiError> {
    match content {
        None => Ok(Vec::new()),
        Some(WireContent::Text(t)) => Ok(vec![ContentPart::Text(t)]),
        Some(WireContent::Parts(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for p in parts {
                match p {
                    WirePart::Text { text } => out.push(ContentPart::Text(text)),
                    WirePart::ImageUrl {
                        image_url: WireImageUrl::Url(u) | WireImageUrl::Object { url: u },
                    } => out.push(image_from_url(&u)?),
                    WirePart::Refusal { .. } => {}
                    WirePart::Other => {
                        return Err(ApiError::BadRequest(
                            "unsupported content part: only text and image_url are accepted".into(),
                        ));
                    }
                }
            }
            Ok(out)
        }
    }
}

fn decode_response_format(v: Value) -> Result<Option<ResponseFormat>, ApiError> {
    match v.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Some(ResponseFormat::Text)),
        Some("json_object") => Ok(Some(ResponseFormat::JsonObject)),
        Some("json_schema") => {
            let js = v.get("json_schema").cloned().unwrap_or(Value::Null);
            Ok(Some(ResponseFormat::JsonSchema {
                name: js
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("response")
                    .to_string(),
                schema: js.get("schema").cloned().unwrap_or_else(|| json!({})),
                strict: js.get("strict").and_then(Value::as_bool),
            }))
        }
        _ => Err(ApiError::BadRequest(
            "response_format.type must be text, json_object or json_schema".into(),
        )),
    }
}

fn decode_tool_choice(v: Value) -> Result<ToolChoice, ApiError> {
    match &v {
        Value::String(s) if s == "auto" => Ok(ToolChoice::Auto),
        Value::String(s) if s == "none" => Ok(ToolChoice::None),
        Value::String(s) if s == "required" => Ok(ToolChoice::Required),
        _ => v
            .pointer("/function/name")
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Function(n.to_string()))
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "tool_choice must be auto, none, required or a function".into(),
                )
            }),
    }
}

/// Decode a `CreateChatCompletionRequest` into the canonical request. Returns it with the
/// `include_usage` flag.
/// Decode a `/v1/chat/completions` request body into the canonical request, as the handler does
/// once the body is read (the entry point of the decoder fuzz pass, tests/fuzz.rs).
///
/// Errors: malformed JSON, wrong shape or an unsupported value (400).
pub fn decode_chat_body(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let wire: ChatCompletionRequest =
        serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    decode_chat(wire).map(|(req, _)| req)
}

fn decode_chat(mut r: ChatCompletionRequest) -> Result<(ChatRequest, bool), ApiError> {
    if r.n.is_some_and(|n| n != 1) {
        return Err(ApiError::BadRequest("only n=1 is supported".into()));
    }
    if r.messages.is_empty() {
        return Err(ApiError::BadRequest(
            "messages must contain at least one message".into(),
        ));
    }
    let openai_extra = forwarded_fields(&mut r);
    let mut req = ChatRequest {
        model: r.model,
        stream: r.stream.unwrap_or(false),
        max_tokens: r.max_completion_tokens.or(r.max_tokens),
        temperature: r.temperature,
        top_p: r.top_p,
        stop: r.stop.map(StringOrVec::into_vec).unwrap_or_default(),
        seed: r.seed,
        presence_penalty: r.presence_penalty,
        frequency_penalty: r.frequency_penalty,
        reasoning_effort: r.reasoning_effort,
        parallel_tool_calls: r.parallel_tool_calls,
        user: r.user,
        openai_extra,
        ..ChatRequest::default()
    };
    if let Some(rf) = r.response_format {
        req.response_format = decode_response_format(rf)?;
    }
    for t in r.tools.unwrap_or_default() {
        if t.kind.as_deref().is_some_and(|k| k != "function") {
            return Err(ApiError::BadRequest(
                "only function tools are supported".into(),
            ));
        }
        req.tools.push(Tool {
            name: t.function.name,
            description: t.function.description,
            parameters: t
                .function
                .parameters
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            strict: t.function.strict,
        });
    }
    if let Some(tc) = r.tool_choice {
        req.tool_choice = Some(decode_tool_choice(tc)?);
    }
    for m in r.messages {
        let role = match m.role.as_str() {
            "system" | "developer" => {
                let text = Message {
                    content: decode_content(m.content)?,
                    ..Message::text(Role::User, "")
                }
                .joined_text();
                req.system.push(text);
                continue;
            }
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" | "function" => Role::Tool,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown message role '{other}'"
                )));
            }
        };
        let tool_calls = m
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
        req.messages.push(Message {
            role,
            content: decode_content(m.content)?,
            tool_calls,
            tool_call_id: m.tool_call_id,
            name: m.name,
            thinking: m.reasoning_content,
            signed_thinking: Vec::new(),
        });
    }
    let include_usage = req.stream
        && r.stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
    Ok((req, include_usage))
}

fn usage_json(u: &Usage) -> Value {
    let mut v = json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    });
    if u.cache_write_tokens > 0 {
        v["prompt_tokens_details"]["cache_write_tokens"] = u.cache_write_tokens.into();
    }
    v
}

/// A random id: `prefix` and 24 alphanumerics (`chatcmpl-...`, `msg_...`).
pub(crate) fn new_id(prefix: &str) -> String {
    let mut s = String::from(prefix);
    for _ in 0..24 {
        s.push(fastrand::alphanumeric());
    }
    s
}

/// OpenAI's `chat.completion` object, serialized straight from the canonical response instead of
/// through a `serde_json::Value` tree. Fields are declared in alphabetical order of their JSON
/// names, so the bytes are those of the `Value` (serde_json's map keeps keys sorted) that
/// `completion_json_value` (tests) builds.
#[derive(serde::Serialize)]
struct CompletionOut<'a> {
    choices: [CompletionChoiceOut<'a>; 1],
    created: i64,
    id: &'a str,
    model: &'a str,
    object: &'static str,
    system_fingerprint: (),
    usage: Option<UsageOut>,
}

#[derive(serde::Serialize)]
struct CompletionChoiceOut<'a> {
    finish_reason: &'static str,
    index: u32,
    logprobs: (),
    message: CompletionMessageOut<'a>,
}

#[derive(serde::Serialize)]
struct CompletionMessageOut<'a> {
    /// `null` only when the answer is tool calls without text.
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    refusal: (),
    role: &'static str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
}

#[derive(serde::Serialize)]
struct ToolCallOut<'a> {
    function: FunctionOut<'a>,
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(serde::Serialize)]
struct FunctionOut<'a> {
    arguments: &'a str,
    name: &'a str,
}

/// OpenAI's `CompletionUsage` (alphabetical, like [`CompletionOut`]); the same object as
/// [`usage_json`].
#[derive(serde::Serialize)]
struct UsageOut {
    completion_tokens: u64,
    completion_tokens_details: ReasoningDetailsOut,
    prompt_tokens: u64,
    prompt_tokens_details: PromptDetailsOut,
    total_tokens: u64,
}

#[derive(serde::Serialize)]
struct ReasoningDetailsOut {
    reasoning_tokens: u64,
}

#[derive(serde::Serialize)]
struct PromptDetailsOut {
    #[serde(skip_serializing_if = "is_zero")]
    cache_write_tokens: u64,
    cached_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl UsageOut {
    fn new(u: &Usage) -> Self {
        UsageOut {
            completion_tokens: u.completion_tokens,
            completion_tokens_details: ReasoningDetailsOut {
                reasoning_tokens: u.reasoning_tokens,
            },
            prompt_tokens: u.prompt_tokens,
            prompt_tokens_details: PromptDetailsOut {
                cache_write_tokens: u.cache_write_tokens,
                cached_tokens: u.cache_read_tokens,
            },
            total_tokens: u.prompt_tokens + u.completion_tokens,
        }
    }
}

/// The `chat.completion` body for `r`, JSON bytes.
fn completion_body(id: &str, model: &str, created: i64, r: &ChatResponse) -> Vec<u8> {
    let out = CompletionOut {
        choices: [CompletionChoiceOut {
            finish_reason: r.finish_reason.as_openai(),
            index: 0,
            logprobs: (),
            message: CompletionMessageOut {
                content: (r.tool_calls.is_empty() || !r.content.is_empty())
                    .then_some(r.content.as_str()),
                reasoning_content: r.thinking.as_deref(),
                refusal: (),
                role: "assistant",
                tool_calls: r
                    .tool_calls
                    .iter()
                    .map(|c| ToolCallOut {
                        function: FunctionOut {
                            arguments: &c.arguments,
                            name: &c.name,
                        },
                        id: &c.id,
                        kind: "function",
                    })
                    .collect(),
            },
        }],
        created,
        id,
        model,
        object: "chat.completion",
        system_fingerprint: (),
        usage: r.usage.as_ref().map(UsageOut::new),
    };
    // Serializing these types cannot fail (string keys, no maps, no non-finite floats).
    serde_json::to_vec(&out).unwrap_or_default()
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// What a stream has sent of one tool call: `id`/`type` and `name` go out once, on the call's
/// first fragment (accumulating clients, like the openai SDK's stream helpers, concatenate a
/// repeated `id` or `name`; the AI SDK rejects a first fragment without an `id`).
#[derive(Clone, Copy, Default)]
struct CallSent {
    /// `id` and `type` were sent.
    header: bool,
    /// `function.name` was sent.
    name: bool,
    /// Some argument text was sent.
    args: bool,
}

/// Per-stream encoder state: chunk envelope fields and what has been seen.
struct ChatStreamEncoder {
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
    usage: Option<Usage>,
    /// Per tool-call index: what was already sent for that call.
    tool_args_sent: Vec<CallSent>,
    /// Cached start of every chunk (see `envelope`).
    envelope: String,
}

impl ChatStreamEncoder {
    fn with_envelope(mut self) -> Self {
        self.envelope = self.envelope();
        self
    }

    /// `data: {"id":..,"object":"chat.completion.chunk",..,"choices":[{"index":0,"delta":`, the
    /// part of every chunk that never changes within a stream.
    fn envelope(&self) -> String {
        let head = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                          "system_fingerprint": Value::Null})
        .to_string();
        // `head` is a JSON object: drop its closing brace and append the choices array opening.
        format!(
            "data: {},\"choices\":[{{\"index\":0,\"delta\":",
            &head[..head.len() - 1]
        )
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        self.chunk_raw(&delta.to_string(), finish)
    }

    /// One `chat.completion.chunk` SSE event around `delta` (serialized JSON object), built from
    /// the cached envelope: streams are the hot path, so no JSON tree per chunk.
    fn chunk_raw(&self, delta: &str, finish: Option<&str>) -> Bytes {
        let finish = match finish {
            Some(f) => format!("\"{f}\""),
            None => "null".into(),
        };
        let usage = if self.include_usage {
            ",\"usage\":null"
        } else {
            ""
        };
        let mut s = String::with_capacity(self.envelope.len() + delta.len() + 64);
        s.push_str(&self.envelope);
        s.push_str(delta);
        s.push_str(",\"logprobs\":null,\"finish_reason\":");
        s.push_str(&finish);
        s.push_str("}]");
        s.push_str(usage);
        s.push_str("}\n\n");
        Bytes::from(s)
    }

    /// `{"<field>":"<text>"}` with `text` JSON-escaped.
    fn text_delta(field: &str, text: &str) -> String {
        let quoted = serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into());
        format!("{{\"{field}\":{quoted}}}")
    }

    /// `{}` for every tool call that got no argument text, so clients can always parse them.
    fn missing_arguments(&self) -> Vec<Bytes> {
        self.tool_args_sent
            .iter()
            .enumerate()
            .filter(|(_, sent)| !sent.args)
            .map(|(i, _)| {
                self.chunk(
                    json!({"tool_calls": [{"index": i, "function": {"arguments": "{}"}}]}),
                    None,
                )
            })
            .collect()
    }

    fn event(&mut self, ev: StreamEvent) -> Vec<Bytes> {
        match ev {
            StreamEvent::TextDelta(t) => {
                vec![self.chunk_raw(&Self::text_delta("content", &t), None)]
            }
            StreamEvent::ThinkingDelta(t) => {
                vec![self.chunk_raw(&Self::text_delta("reasoning_content", &t), None)]
            }
            // Signatures and the matched stop sequence have no OpenAI field.
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
                if self.tool_args_sent.len() <= i {
                    self.tool_args_sent.resize(i + 1, CallSent::default());
                }
                let sent = &mut self.tool_args_sent[i];
                sent.args |= !arguments.is_empty();
                let mut call = json!({"index": index, "function": {"arguments": arguments}});
                if !sent.header {
                    sent.header = true;
                    call["id"] = id
                        .unwrap_or_else(crate::upstream::openai_compat::new_call_id)
                        .into();
                    call["type"] = "function".into();
                }
                if let (false, Some(name)) = (sent.name, name) {
                    sent.name = true;
                    call["function"]["name"] = name.into();
                }
                vec![self.chunk(json!({"tool_calls": [call]}), None)]
            }
            StreamEvent::Usage(u) => {
                self.usage = Some(u);
                Vec::new()
            }
            StreamEvent::Finish(reason) => {
                let mut out = self.missing_arguments();
                out.push(self.chunk(json!({}), Some(reason.as_openai())));
                // The usage chunk reports what the upstream counted; none is invented.
                if let (true, Some(u)) = (self.include_usage, self.usage) {
                    out.push(sse(&json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                        "system_fingerprint": Value::Null, "choices": [], "usage": usage_json(&u),
                    })));
                }
                out.push(Bytes::from_static(b"data: [DONE]\n\n"));
                out
            }
        }
    }
}

/// Turn a canonical event stream into an SSE body, feeding usage into the request log.
fn stream_body(
    events: crate::upstream::EventStream,
    mut enc: ChatStreamEncoder,
    first: Bytes,
    mut log: RequestLog,
    text_completion: bool,
) -> Body {
    let head = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(first) });
    // Events that are already available are encoded into one buffer and written together:
    // one write per upstream read instead of one per event, without waiting for anything.
    let rest = super::ready_batches(events, super::STREAM_BATCH).map(move |batch| {
        let mut buf = Vec::new();
        for ev in batch {
            log.observe(&ev);
            let out: Vec<Bytes> = match ev {
                Ok(ev) => {
                    if text_completion {
                        enc.text_event(ev)
                    } else {
                        enc.event(ev)
                    }
                }
                Err(e) => {
                    vec![
                        sse(&error_json(&e)),
                        Bytes::from_static(b"data: [DONE]\n\n"),
                    ]
                }
            };
            out.iter().for_each(|b| buf.extend_from_slice(b));
        }
        Ok::<Bytes, std::io::Error>(Bytes::from(buf))
    });
    Body::from_bytes_stream(head.chain(rest))
}

/// A `text/event-stream` response around `body`, unbuffered by proxies.
pub(crate) fn sse_response(body: Body) -> Response {
    Response::builder()
        .content_type("text/event-stream")
        .header("cache-control", "no-cache")
        .header("x-accel-buffering", "no")
        .body(body)
}

#[handler]
async fn chat_completions(req: &Request, state: Data<&AppState>, body: Body) -> Response {
    crate::usage::logged(chat_completions_inner(&state, req, body).await)
}

async fn chat_completions_inner(state: &AppState, http: &Request, body: Body) -> Response {
    let mut log = RequestLog::start(&state.usage, http, "/v1/chat/completions");
    let result = async {
        let wire: ChatCompletionRequest = read_json(body, state.config.max_body_bytes).await?;
        let (mut req, include_usage) = decode_chat(wire)?;
        log.set_request(&mut req);
        let model = relay::resolve_model(state, &req.model)?;
        log.set_route(&model);
        let reply = relay::chat(state, &model, &req, &mut |u| log.set_usage(u)).await?;
        Ok::<_, ApiError>((req, include_usage, reply))
    }
    .await;
    match result {
        Err(e) => {
            log.set_error(&e);
            error_response(&e)
        }
        Ok((req, _, Reply::Complete(r))) => {
            if let Some(u) = r.usage {
                log.set_usage(u);
            }
            log.set_complete();
            Response::builder()
                .content_type("application/json")
                .body(completion_body(
                    &new_id("chatcmpl-"),
                    &req.model,
                    now_unix(),
                    &r,
                ))
        }
        Ok((req, include_usage, Reply::Stream(events))) => {
            log.set_first_token();
            let enc = ChatStreamEncoder {
                id: new_id("chatcmpl-"),
                model: req.model,
                created: now_unix(),
                include_usage,
                usage: None,
                tool_args_sent: Vec::new(),
                envelope: String::new(),
            }
            .with_envelope();
            let first = enc.chunk(json!({"role": "assistant", "content": ""}), None);
            sse_response(stream_body(events, enc, first, log, false))
        }
    }
}

// ---- legacy completions (CreateCompletionRequest) ----

#[derive(Deserialize)]
#[serde(untagged)]
enum Prompt {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct CompletionRequest {
    model: String,
    prompt: Prompt,
    #[serde(default)]
    suffix: Option<String>,
    /// Return the prompt before the completion (`text` = prompt + completion).
    #[serde(default)]
    echo: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    stop: Option<StringOrVec>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[serde(default)]
    frequency_penalty: Option<f64>,
    #[serde(default)]
    user: Option<String>,
    #[serde(flatten)]
    _rest: HashMap<String, Value>,
}

impl ChatStreamEncoder {
    fn text_chunk(&self, text: &str, finish: Option<&str>) -> Bytes {
        sse(&json!({
            "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
            "choices": [{"text": text, "index": 0, "logprobs": Value::Null, "finish_reason": finish}],
        }))
    }

    /// Legacy completions stream: only text is sent; reasoning and tool calls have no field there.
    fn text_event(&mut self, ev: StreamEvent) -> Vec<Bytes> {
        match ev {
            StreamEvent::TextDelta(t) => vec![self.text_chunk(&t, None)],
            StreamEvent::Usage(u) => {
                self.usage = Some(u);
                Vec::new()
            }
            StreamEvent::Finish(reason) => {
                let mut out = vec![self.text_chunk("", Some(reason.as_openai()))];
                if let (true, Some(u)) = (self.include_usage, self.usage) {
                    out.push(sse(&json!({
                        "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                        "choices": [], "usage": usage_json(&u),
                    })));
                }
                out.push(Bytes::from_static(b"data: [DONE]\n\n"));
                out
            }
            StreamEvent::ThinkingDelta(_)
            | StreamEvent::ThinkingSignature(_)
            | StreamEvent::RedactedThinking(_)
            | StreamEvent::StopSequence(_)
            | StreamEvent::ToolCallDelta { .. } => Vec::new(),
        }
    }
}

#[handler]
async fn completions(req: &Request, state: Data<&AppState>, body: Body) -> Response {
    crate::usage::logged(completions_inner(&state, req, body).await)
}

async fn completions_inner(state: &AppState, http: &Request, body: Body) -> Response {
    let mut log = RequestLog::start(&state.usage, http, "/v1/completions");
    let result = async {
        let r: CompletionRequest = read_json(body, state.config.max_body_bytes).await?;
        if r.n.is_some_and(|n| n != 1) {
            return Err(ApiError::BadRequest("only n=1 is supported".into()));
        }
        if r.suffix.is_some() {
            return Err(ApiError::BadRequest("suffix is not supported".into()));
        }
        let prompt = match r.prompt {
            Prompt::One(p) => p,
            Prompt::Many(v) if v.len() == 1 => v.into_iter().next().unwrap_or_default(),
            Prompt::Many(_) => {
                return Err(ApiError::BadRequest(
                    "only one prompt per request is supported".into(),
                ));
            }
        };
        let echo = r.echo.unwrap_or(false).then(|| prompt.clone());
        let mut req = ChatRequest {
            model: r.model,
            messages: vec![Message::text(Role::User, prompt)],
            stream: r.stream.unwrap_or(false),
            max_tokens: r.max_tokens,
            temperature: r.temperature,
            top_p: r.top_p,
            stop: r.stop.map(StringOrVec::into_vec).unwrap_or_default(),
            seed: r.seed,
            presence_penalty: r.presence_penalty,
            frequency_penalty: r.frequency_penalty,
            user: r.user,
            ..ChatRequest::default()
        };
        log.set_request(&mut req);
        let model = relay::resolve_model(state, &req.model)?;
        log.set_route(&model);
        let include_usage = req.stream
            && r.stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false);
        let reply = relay::chat(state, &model, &req, &mut |u| log.set_usage(u)).await?;
        Ok((req, include_usage, echo, reply))
    }
    .await;
    match result {
        Err(e) => {
            log.set_error(&e);
            error_response(&e)
        }
        Ok((req, _, echo, Reply::Complete(r))) => {
            if let Some(u) = r.usage {
                log.set_usage(u);
            }
            log.set_complete();
            let text = match echo {
                Some(prompt) => prompt + &r.content,
                None => r.content,
            };
            json_response(&json!({
                "id": new_id("cmpl-"), "object": "text_completion", "created": now_unix(), "model": req.model,
                "choices": [{"text": text, "index": 0, "logprobs": Value::Null, "finish_reason": r.finish_reason.as_openai()}],
                "usage": r.usage.as_ref().map(usage_json),
            }))
        }
        Ok((req, include_usage, echo, Reply::Stream(events))) => {
            log.set_first_token();
            let enc = ChatStreamEncoder {
                id: new_id("cmpl-"),
                model: req.model,
                created: now_unix(),
                include_usage,
                usage: None,
                tool_args_sent: Vec::new(),
                envelope: String::new(),
            }
            .with_envelope();
            // The legacy stream has no role delta: its first event is encoded like any other.
            let mut events = events;
            let first = events.next().await;
            // Accounted for like the events `stream_body` sees.
            if let Some(item) = &first {
                log.observe(item);
            }
            let first_events = match first {
                Some(Ok(ev)) => vec![ev],
                Some(Err(e)) => return error_response(&e),
                None => Vec::new(),
            };
            let mut enc = enc;
            let mut first = Vec::new();
            // `echo`: the prompt is the first text of the stream.
            if let Some(prompt) = echo.filter(|p| !p.is_empty()) {
                first.extend_from_slice(&enc.text_chunk(&prompt, None));
            }
            for ev in first_events {
                for b in enc.text_event(ev) {
                    first.extend_from_slice(&b);
                }
            }
            sse_response(stream_body(events, enc, Bytes::from(first), log, true))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::FinishReason;

    fn decode(v: Value) -> Result<(ChatRequest, bool), ApiError> {
        let wire: ChatCompletionRequest =
            serde_json::from_value(v).map_err(|e| ApiError::from_json(&e))?;
        decode_chat(wire)
    }

    #[test]
    fn several_system_messages_are_kept_in_order() {
        let (req, _) = decode(json!({"model": "m", "messages": [
            {"role": "system", "content": "a"}, {"role": "developer", "content": [{"type": "text", "text": "b"}]},
            {"role": "user", "content": "hi"}]}))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(req.system, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(req.messages.len(), 1);
    }

    #[test]
    fn max_completion_tokens_wins_and_n_must_be_one() {
        let (req, _) = decode(
            json!({"model": "m", "max_tokens": 5, "max_completion_tokens": 9,
            "messages": [{"role": "user", "content": "x"}]}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(req.max_tokens, Some(9));
        assert!(
            decode(json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]}))
                .is_err()
        );
    }

    /// The `Value` the `chat.completion` body was built as before [`completion_body`].
    fn completion_json_value(id: &str, model: &str, created: i64, r: &ChatResponse) -> Value {
        let mut message =
            json!({"role": "assistant", "content": r.content, "refusal": Value::Null});
        if !r.tool_calls.is_empty() {
            if r.content.is_empty() {
                message["content"] = Value::Null;
            }
            message["tool_calls"] = r
            .tool_calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
        }
        if let Some(t) = &r.thinking {
            message["reasoning_content"] = t.clone().into();
        }
        json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": Value::Null, "finish_reason": r.finish_reason.as_openai()}],
            "usage": r.usage.as_ref().map(usage_json),
            "system_fingerprint": Value::Null,
        })
    }

    #[test]
    fn completion_body_is_the_json_tree_byte_for_byte() {
        let call = |id: &str| ToolCall {
            id: id.into(),
            name: "f".into(),
            arguments: "{\"a\":\"\\u00e9\\n\"}".into(),
        };
        let usage = Usage {
            prompt_tokens: 9,
            completion_tokens: 4,
            reasoning_tokens: 2,
            cache_read_tokens: 3,
            ..Usage::default()
        };
        let base = ChatResponse {
            id: None,
            model: "m".into(),
            content: "Hi \"there\"\n\u{e9}".into(),
            thinking: None,
            signed_thinking: Vec::new(),
            tool_calls: Vec::new(),
            finish_reason: crate::canonical::FinishReason::Stop,
            stop_sequence: None,
            usage: None,
        };
        let cases = [
            base.clone(),
            ChatResponse {
                usage: Some(usage),
                thinking: Some("hm".into()),
                ..base.clone()
            },
            ChatResponse {
                usage: Some(Usage {
                    cache_write_tokens: 7,
                    ..usage
                }),
                content: String::new(),
                tool_calls: vec![call("c1"), call("c2")],
                finish_reason: crate::canonical::FinishReason::ToolCalls,
                ..base.clone()
            },
            ChatResponse {
                tool_calls: vec![call("c1")],
                finish_reason: crate::canonical::FinishReason::Length,
                ..base.clone()
            },
        ];
        for r in &cases {
            let want = completion_json_value("chatcmpl-x", "m@t", 17, r).to_string();
            let got = completion_body("chatcmpl-x", "m@t", 17, r);
            assert_eq!(String::from_utf8_lossy(&got), want);
        }
    }

    fn encoder() -> ChatStreamEncoder {
        ChatStreamEncoder {
            id: "x".into(),
            model: "m".into(),
            created: 1,
            include_usage: false,
            usage: None,
            tool_args_sent: Vec::new(),
            envelope: String::new(),
        }
        .with_envelope()
    }

    fn tool_call_of(b: &[Bytes]) -> Value {
        assert_eq!(b.len(), 1);
        let s = String::from_utf8_lossy(&b[0]);
        let v: Value = serde_json::from_str(s.trim().trim_start_matches("data: ")).unwrap();
        v["choices"][0]["delta"]["tool_calls"][0].clone()
    }

    #[test]
    fn streamed_tool_call_id_type_name_only_on_first_fragment() {
        // An upstream that repeats id and name on every fragment (accumulating clients such as
        // the openai SDK concatenate repeated strings), or that sends no id at all.
        let mut enc = encoder();
        let frag = |id: Option<&str>, args: &str| StreamEvent::ToolCallDelta {
            index: 0,
            id: id.map(str::to_string),
            name: Some("get_weather".into()),
            arguments: args.into(),
        };
        let first = tool_call_of(&enc.event(frag(Some("call_1"), "")));
        assert_eq!(first["id"], "call_1");
        assert_eq!(first["type"], "function");
        assert_eq!(first["function"]["name"], "get_weather");
        let second = tool_call_of(&enc.event(frag(Some("call_1"), "{\"a\":1}")));
        assert!(
            second.get("id").is_none() && second.get("type").is_none(),
            "{second}"
        );
        assert!(second["function"].get("name").is_none(), "{second}");
        assert_eq!(second["function"]["arguments"], "{\"a\":1}");

        // No id from the upstream: one is generated for the first fragment.
        let mut enc = encoder();
        let first = tool_call_of(&enc.event(frag(None, "")));
        assert!(
            first["id"].as_str().is_some_and(|s| !s.is_empty()),
            "{first}"
        );
        assert_eq!(first["type"], "function");
        let second = tool_call_of(&enc.event(frag(None, "{}")));
        assert!(second.get("id").is_none() && second["function"].get("name").is_none());
    }

    #[test]
    fn finish_chunk_then_usage_then_done() {
        let mut enc = ChatStreamEncoder {
            id: "x".into(),
            model: "m".into(),
            created: 1,
            include_usage: true,
            usage: None,
            tool_args_sent: Vec::new(),
            envelope: String::new(),
        }
        .with_envelope();
        assert!(
            enc.event(StreamEvent::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                ..Usage::default()
            }))
            .is_empty()
        );
        let out: Vec<String> = enc
            .event(StreamEvent::Finish(FinishReason::Length))
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert_eq!(out.len(), 3);
        assert!(out[0].contains(r#""finish_reason":"length""#) && out[0].contains(r#""delta":{}"#));
        assert!(out[1].contains(r#""choices":[]"#) && out[1].contains(r#""total_tokens":7"#));
        assert_eq!(out[2], "data: [DONE]\n\n");
    }
}

// ---- embeddings (CreateEmbeddingRequest / CreateEmbeddingResponse, WIRE.md §3.7) ----

#[derive(Deserialize)]
struct EmbeddingRequest {
    model: String,
    input: Value,
    /// `float` (default) or `base64` (little-endian float32; the `openai` Python SDK asks for it).
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<u32>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(serde::Serialize)]
struct EmbeddingOut<'a> {
    object: &'static str,
    data: Vec<EmbeddingItem<'a>>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(serde::Serialize)]
struct EmbeddingItem<'a> {
    object: &'static str,
    index: usize,
    embedding: EmbeddingVector<'a>,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum EmbeddingVector<'a> {
    Floats(&'a [f32]),
    Base64(String),
}

#[derive(serde::Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// The `CreateEmbeddingResponse` body: one `embedding` object per input in input order, `model`
/// as the client named it, `usage.prompt_tokens` = `total_tokens`.
fn embedding_body(model: &str, vectors: &[Vec<f32>], base64: bool, tokens: u64) -> Vec<u8> {
    let out = EmbeddingOut {
        object: "list",
        data: vectors
            .iter()
            .enumerate()
            .map(|(index, v)| EmbeddingItem {
                object: "embedding",
                index,
                embedding: if base64 {
                    EmbeddingVector::Base64(crate::embed::to_base64(v))
                } else {
                    EmbeddingVector::Floats(v)
                },
            })
            .collect(),
        model,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    serde_json::to_vec(&out).unwrap_or_default()
}

#[handler]
async fn embeddings(req: &Request, state: Data<&AppState>, body: Body) -> Response {
    crate::usage::logged(embeddings_inner(&state, req, body).await)
}

async fn embeddings_inner(state: &AppState, http: &Request, body: Body) -> Response {
    let mut log = RequestLog::start(&state.usage, http, "/v1/embeddings");
    let result = async {
        let mut w: EmbeddingRequest = read_json(body, state.config.max_body_bytes).await?;
        let base64 = match w.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "encoding_format must be 'float' or 'base64', got '{other}'"
                )));
            }
        };
        log.set_model_tagged(&mut w.model);
        let req = crate::embed::EmbedRequest {
            input: crate::embed::input_from_json(w.input, true)?,
            model: w.model,
            dimensions: w.dimensions,
            user: w.user,
            ollama: serde_json::Map::new(),
            legacy: false,
        };
        // No default-model fallback: another model's vectors under this name would corrupt the
        // client's vector store.
        let target = relay::resolve_model_no_default(state, &req.model)?;
        log.set_route(&target);
        let answer = crate::embed::embed(state, &target, &req).await?;
        Ok::<_, ApiError>((req, base64, answer))
    }
    .await;
    match result {
        Err(e) => {
            log.set_error(&e);
            error_response(&e)
        }
        Ok((req, base64, answer)) => {
            let tokens = crate::embed::prompt_tokens(&req, &answer);
            log.set_usage(Usage {
                prompt_tokens: tokens,
                ..Usage::default()
            });
            log.set_complete();
            Response::builder()
                .content_type("application/json")
                .body(embedding_body(&req.model, &answer.vectors, base64, tokens))
        }
    }
}
