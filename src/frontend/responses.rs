//! The OpenAI Responses API frontend: `POST /v1/responses`, stateless.
//!
//! Shapes follow OpenAI's OpenAPI spec (../shared/specs/openai-openapi.yaml, path `/responses`):
//! the request is `CreateResponse` (`input` as a string or a list of `EasyInputMessage` /
//! `InputMessage` / `OutputMessage` / `FunctionToolCall` / `FunctionCallOutputItemParam` items
//! with `InputTextContent`, `InputImageContent` and `OutputTextContent` parts; `FunctionTool`
//! tools; `ToolChoiceOptions` / `ToolChoiceFunction`; `ResponseTextParam.format`; `Reasoning`),
//! decoded into the canonical [`ChatRequest`] so any upstream llm-relay routes to can answer it.
//! The answer is a `Response` object (`output` items in order: a `ReasoningItem` with
//! `reasoning_text` content when the upstream gave reasoning, an `OutputMessage` with one
//! `output_text` part when there is text, one `FunctionToolCall` per tool call; `ResponseUsage`).
//!
//! Streams (`stream: true`) are SSE with an `event: <type>` line and a `data:` JSON object
//! carrying the same `type` and a `sequence_number` counting from 0; the spec's streams have no
//! `data: [DONE]` terminator, the last event is `response.completed`, `response.incomplete` or
//! `response.failed` (after an `error` event) carrying the whole `Response`. Event order:
//! `response.created`, `response.in_progress`, then per output item `response.output_item.added`,
//! its content events (`response.content_part.added`, `response.output_text.delta`*,
//! `response.output_text.done`, `response.content_part.done` for a message;
//! `response.reasoning_text.delta`*/`.done` for reasoning;
//! `response.function_call_arguments.delta`*/`.done` for a call) and
//! `response.output_item.done`.
//!
//! Signed reasoning (Anthropic thinking signatures and redacted thinking) round-trips
//! statelessly through `ReasoningItem.encrypted_content`: the reasoning item of an answer (the
//! non-streamed item, the streamed `response.output_item.done` item and `response.completed`'s
//! output) carries `llmr1:` + base64 of the JSON of the signed blocks; a `reasoning` input item
//! with such an `encrypted_content` gives its blocks to the next assistant message of the same
//! turn (its `message` and/or `function_call` items), so the Anthropic upstream keeps thinking on
//! in tool loops. Another provider's `encrypted_content` is ignored; one with our prefix that
//! does not decode is a 400 naming the item. The field is written whether or not the client
//! sent `include: ["reasoning.encrypted_content"]`: the spec says `encrypted_content` "is
//! populated by default for reasoning items returned by `POST /v1/responses`" (`ReasoningItem`),
//! and llm-relay never stores anything (`store` is always false here), which is exactly the case
//! the include option exists for. Clients that ignore the field are unaffected. Reasoning items
//! with only redacted thinking (no text) have empty `content` but are still emitted.
//!
//! llm-relay keeps no state: `previous_response_id`, `conversation`, `prompt` (a stored prompt)
//! and `background: true` are a 400; `store` is accepted and ignored (nothing is stored, so a
//! response cannot be retrieved later). Only `function` tools are accepted (hosted tools such as
//! `web_search` are a 400 naming the type). Errors are OpenAI's `ErrorResponse`.

use bytes::Bytes;
use futures_util::StreamExt;
use poem::web::Data;
use poem::{Body, Request, Response, handler};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::openai::{error_response, new_id, sse_response};
use super::{image_from_url, now_unix, read_json};
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, FinishReason, Message, ResponseFormat, Role,
    SignedThinking, StreamEvent, Tool, ToolCall, ToolChoice, Usage,
};
use crate::error::ApiError;
use crate::relay::{self, AppState, Reply};
use crate::usage::RequestLog;

/// The `CreateResponse` fields llm-relay reads (others are ignored). `input` and the fields
/// echoed back are kept as JSON and decoded by hand, for client-readable errors.
#[derive(Deserialize)]
struct CreateResponse {
    model: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    reasoning: Option<Value>,
    #[serde(default)]
    text: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    safety_identifier: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    previous_response_id: Option<String>,
    #[serde(default)]
    conversation: Option<Value>,
    #[serde(default)]
    background: Option<bool>,
    #[serde(default)]
    prompt: Option<Value>,
}

/// The request fields a `Response` echoes (spec `Response.required`: `instructions`, `tools`,
/// `tool_choice`, `temperature`, `top_p`, `parallel_tool_calls`, `metadata`; also
/// `max_output_tokens`, `text`, `reasoning`).
struct Echo {
    instructions: Option<String>,
    tools: Vec<Value>,
    tool_choice: Value,
    temperature: Option<f64>,
    top_p: Option<f64>,
    parallel_tool_calls: bool,
    metadata: Value,
    max_output_tokens: Option<u32>,
    text: Value,
    reasoning: Value,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// Decode a `/v1/responses` request body into the canonical request and the fields its answer
/// echoes.
///
/// Errors: malformed JSON, wrong shape, a stateful feature or an unsupported item, part or tool
/// type (400).
fn decode(r: CreateResponse) -> Result<(ChatRequest, Echo), ApiError> {
    if r.previous_response_id.is_some() {
        return Err(bad(
            "previous_response_id is not supported: llm-relay is stateless and stores no \
             responses; send the whole conversation in input",
        ));
    }
    if r.conversation.as_ref().is_some_and(|c| !c.is_null()) {
        return Err(bad(
            "conversation is not supported: llm-relay is stateless and stores no \
             conversations; send the whole conversation in input",
        ));
    }
    if r.background == Some(true) {
        return Err(bad(
            "background is not supported: llm-relay is stateless and cannot run responses in \
             the background",
        ));
    }
    if r.prompt.as_ref().is_some_and(|p| !p.is_null()) {
        return Err(bad(
            "prompt (a stored prompt template) is not supported: llm-relay is stateless; send \
             instructions and input instead",
        ));
    }
    let mut req = ChatRequest {
        model: r.model,
        stream: r.stream.unwrap_or(false),
        max_tokens: r.max_output_tokens,
        temperature: r.temperature,
        top_p: r.top_p,
        parallel_tool_calls: r.parallel_tool_calls,
        user: r.user.or(r.safety_identifier),
        ..ChatRequest::default()
    };
    if let Some(i) = r.instructions.as_ref().filter(|i| !i.is_empty()) {
        req.system.push(i.clone());
    }
    let reasoning = r.reasoning.unwrap_or(Value::Null);
    match &reasoning {
        Value::Null => {}
        Value::Object(o) => match o.get("effort") {
            None | Some(Value::Null) => {}
            Some(Value::String(e)) => req.reasoning_effort = Some(e.clone()),
            Some(_) => return Err(bad("reasoning.effort must be a string")),
        },
        _ => return Err(bad("reasoning must be an object")),
    }
    let text = r.text.unwrap_or(Value::Null);
    match &text {
        Value::Null => {}
        Value::Object(o) => {
            if let Some(f) = o.get("format").filter(|f| !f.is_null()) {
                req.response_format = Some(decode_format(f)?);
            }
        }
        _ => return Err(bad("text must be an object")),
    }
    let tools = r.tools.unwrap_or_default();
    for t in &tools {
        req.tools.push(decode_tool(t)?);
    }
    let tool_choice = match r.tool_choice {
        None | Some(Value::Null) => Value::String("auto".into()),
        Some(tc) => {
            req.tool_choice = Some(decode_tool_choice(&tc)?);
            tc
        }
    };
    match r.input {
        None | Some(Value::Null) => return Err(bad("input is required")),
        Some(Value::String(s)) => req.messages.push(Message::text(Role::User, s)),
        Some(Value::Array(items)) => {
            let mut pending = Vec::new();
            for (i, item) in items.iter().enumerate() {
                decode_item(&mut req, &mut pending, item).map_err(|e| match e {
                    ApiError::BadRequest(m) => bad(format!("input[{i}]: {m}")),
                    other => other,
                })?;
            }
        }
        Some(_) => return Err(bad("input must be a string or an array of input items")),
    }
    if req.messages.is_empty() && req.system.is_empty() {
        return Err(bad(
            "input must contain at least one message or function call output (or instructions)",
        ));
    }
    let echo = Echo {
        instructions: r.instructions,
        tools,
        tool_choice,
        temperature: r.temperature,
        top_p: r.top_p,
        parallel_tool_calls: r.parallel_tool_calls.unwrap_or(true),
        metadata: r.metadata.unwrap_or_else(|| json!({})),
        max_output_tokens: r.max_output_tokens,
        text: if text.is_null() {
            json!({"format": {"type": "text"}})
        } else {
            text
        },
        reasoning,
    };
    Ok((req, echo))
}

/// `ResponseTextParam.format` (`TextResponseFormatConfiguration`): `text`, `json_object`, or
/// `json_schema` with `name`, `schema` and `strict` beside `type` (not nested as in Chat
/// Completions).
fn decode_format(f: &Value) -> Result<ResponseFormat, ApiError> {
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => Ok(ResponseFormat::JsonSchema {
            name: f
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("response")
                .to_string(),
            schema: f
                .get("schema")
                .filter(|s| s.is_object())
                .cloned()
                .ok_or_else(|| bad("text.format.schema must be a JSON Schema object"))?,
            strict: f.get("strict").and_then(Value::as_bool),
        }),
        _ => Err(bad(
            "text.format.type must be text, json_object or json_schema",
        )),
    }
}

/// A `FunctionTool`; any other tool type is a 400 naming it.
fn decode_tool(t: &Value) -> Result<Tool, ApiError> {
    match t.get("type").and_then(Value::as_str) {
        Some("function") => {}
        Some(other) => {
            return Err(bad(format!(
                "tool type '{other}' is not supported: only function tools are"
            )));
        }
        None => {
            return Err(bad(
                "every tool needs a type (only function tools are supported)",
            ));
        }
    }
    let name = t
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("a function tool needs a name"))?;
    Ok(Tool {
        name: name.to_string(),
        description: t
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string),
        parameters: t
            .get("parameters")
            .filter(|p| p.is_object())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        strict: t.get("strict").and_then(Value::as_bool),
    })
}

/// `ToolChoiceOptions` (`auto|none|required`) or `ToolChoiceFunction` (`{type:"function",
/// name}`).
fn decode_tool_choice(v: &Value) -> Result<ToolChoice, ApiError> {
    match v {
        Value::String(s) if s == "auto" => Ok(ToolChoice::Auto),
        Value::String(s) if s == "none" => Ok(ToolChoice::None),
        Value::String(s) if s == "required" => Ok(ToolChoice::Required),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => o
            .get("name")
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Function(n.to_string()))
            .ok_or_else(|| bad("tool_choice of type function needs a name")),
        _ => Err(bad(
            "tool_choice must be auto, none, required or {\"type\":\"function\",\"name\":...}",
        )),
    }
}

/// The string field `key` of an input item.
fn str_field<'a>(item: &'a Value, key: &str, kind: &str) -> Result<&'a str, ApiError> {
    item.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("a {kind} item needs a string {key}")))
}

/// One input item, appended to `req` (system and developer messages go to `req.system`).
///
/// `pending` holds the signed thinking of `reasoning` items not yet attached: the next assistant
/// message or function call of the same turn takes it; any other item drops it (reasoning with
/// no assistant turn after it has nothing to be replayed with).
fn decode_item(
    req: &mut ChatRequest,
    pending: &mut Vec<SignedThinking>,
    item: &Value,
) -> Result<(), ApiError> {
    if !item.is_object() {
        return Err(bad("an input item must be an object"));
    }
    let kind = item.get("type").and_then(Value::as_str);
    if kind == Some("reasoning") {
        // Reasoning from an earlier turn: only its signed blocks (in our `encrypted_content`)
        // are replayed; the visible text and summary are not.
        if let Some(blocks) = item
            .get("encrypted_content")
            .and_then(Value::as_str)
            .map(decode_carrier)
            .transpose()
            .map_err(|e| bad(format!("reasoning item: malformed encrypted_content: {e}")))?
            .flatten()
        {
            pending.extend(blocks);
        }
        return Ok(());
    }
    let before = req.messages.len();
    let result = decode_item_inner(req, item, kind);
    // The assistant message this item made or extended takes the pending signed thinking.
    let assistant = matches!(kind, None | Some("message" | "function_call"))
        && req
            .messages
            .last()
            .is_some_and(|m| m.role == Role::Assistant)
        && (req.messages.len() > before || kind == Some("function_call"));
    match req.messages.last_mut() {
        Some(m) if assistant && result.is_ok() => m.signed_thinking.append(pending),
        _ => pending.clear(),
    }
    result
}

/// A non-`reasoning` input item of type `kind`, appended to `req`.
fn decode_item_inner(
    req: &mut ChatRequest,
    item: &Value,
    kind: Option<&str>,
) -> Result<(), ApiError> {
    match kind {
        // `EasyInputMessage` may leave `type` out.
        None | Some("message") => decode_message(req, item),
        Some("function_call") => {
            let call = ToolCall {
                id: str_field(item, "call_id", "function_call")?.to_string(),
                name: str_field(item, "name", "function_call")?.to_string(),
                arguments: match item.get("arguments") {
                    Some(Value::String(s)) => s.clone(),
                    None | Some(Value::Null) => "{}".into(),
                    Some(v) => v.to_string(),
                },
            };
            // Calls right after an assistant turn belong to it (text, then calls).
            match req.messages.last_mut() {
                Some(m) if m.role == Role::Assistant => m.tool_calls.push(call),
                _ => req.messages.push(Message {
                    content: Vec::new(),
                    tool_calls: vec![call],
                    ..Message::text(Role::Assistant, "")
                }),
            }
            Ok(())
        }
        Some("function_call_output") => {
            let call_id = str_field(item, "call_id", "function_call_output")?;
            let content = match item.get("output") {
                Some(Value::String(s)) => vec![ContentPart::Text(s.clone())],
                Some(Value::Array(parts)) => decode_parts(parts)?,
                _ => {
                    return Err(bad(
                        "a function_call_output item needs an output string or content array",
                    ));
                }
            };
            req.messages.push(Message {
                content,
                tool_call_id: Some(call_id.to_string()),
                ..Message::text(Role::Tool, "")
            });
            Ok(())
        }
        Some("item_reference") => Err(bad(
            "item_reference is not supported: llm-relay is stateless and stores no items",
        )),
        Some(other) => Err(bad(format!("input item type '{other}' is not supported"))),
    }
}

/// The prefix of the `encrypted_content` llm-relay writes (version 1 of its carrier); any
/// other `encrypted_content` is someone else's and is ignored.
const CARRIER_PREFIX: &str = "llmr1:";

/// The `encrypted_content` carrying signed thinking blocks: [`CARRIER_PREFIX`] + base64 of a
/// JSON array of the blocks in Anthropic's shape (`{"type":"thinking","thinking","signature"}`,
/// `{"type":"redacted_thinking","data"}`). `None` when there are none.
fn encode_carrier(blocks: &[SignedThinking]) -> Option<String> {
    use base64::Engine;
    if blocks.is_empty() {
        return None;
    }
    let list: Vec<Value> = blocks
        .iter()
        .map(|b| match b {
            SignedThinking::Thinking {
                thinking,
                signature,
            } => json!({"type": "thinking", "thinking": thinking, "signature": signature}),
            SignedThinking::Redacted { data } => json!({"type": "redacted_thinking", "data": data}),
        })
        .collect();
    let raw = Value::Array(list).to_string();
    Some(format!(
        "{CARRIER_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
}

/// The signed thinking blocks in an `encrypted_content`: `Ok(None)` when it is not ours
/// (another provider's), an error naming the fault when it has our prefix but is malformed.
fn decode_carrier(s: &str) -> Result<Option<Vec<SignedThinking>>, String> {
    use base64::Engine;
    let Some(b64) = s.strip_prefix(CARRIER_PREFIX) else {
        return Ok(None);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("not base64 ({e})"))?;
    let list: Vec<Value> =
        serde_json::from_slice(&raw).map_err(|e| format!("not a JSON array ({e})"))?;
    let field = |b: &Value, k: &str| {
        b.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("a block has no string {k}"))
    };
    list.iter()
        .map(|b| match b.get("type").and_then(Value::as_str) {
            Some("thinking") => Ok(SignedThinking::Thinking {
                thinking: field(b, "thinking")?,
                signature: field(b, "signature")?,
            }),
            Some("redacted_thinking") => Ok(SignedThinking::Redacted {
                data: field(b, "data")?,
            }),
            _ => Err("a block is neither thinking nor redacted_thinking".to_string()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// An `EasyInputMessage`, `InputMessage` or (assistant) `OutputMessage`.
fn decode_message(req: &mut ChatRequest, item: &Value) -> Result<(), ApiError> {
    let role = item
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("a message needs a role"))?;
    let content = match item.get("content") {
        Some(Value::String(s)) => vec![ContentPart::Text(s.clone())],
        Some(Value::Array(parts)) => decode_parts(parts)?,
        _ => {
            return Err(bad(
                "a message needs content: a string or an array of parts",
            ));
        }
    };
    let role = match role {
        "system" | "developer" => {
            let m = Message {
                content,
                ..Message::text(Role::User, "")
            };
            req.system.push(m.joined_text());
            return Ok(());
        }
        "user" => Role::User,
        "assistant" => Role::Assistant,
        other => return Err(bad(format!("unknown message role '{other}'"))),
    };
    req.messages.push(Message {
        content,
        ..Message::text(role, "")
    });
    Ok(())
}

/// Content parts: `input_text` / `output_text` (text), `input_image` (`image_url`: http(s) or
/// base64 data URL; `detail` is not modelled), `refusal` (dropped).
fn decode_parts(parts: &[Value]) -> Result<Vec<ContentPart>, ApiError> {
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text") => {
                let text = p
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("a text part needs a string text"))?;
                out.push(ContentPart::Text(text.to_string()));
            }
            Some("input_image") => match p.get("image_url").and_then(Value::as_str) {
                Some(url) => out.push(image_from_url(url)?),
                None if p.get("file_id").is_some_and(|f| !f.is_null()) => {
                    return Err(bad(
                        "input_image with file_id is not supported: send image_url (an http(s) \
                         or base64 data URL)",
                    ));
                }
                None => return Err(bad("an input_image part needs an image_url")),
            },
            Some("refusal") => {}
            Some(other) => {
                return Err(bad(format!(
                    "content part type '{other}' is not supported: only input_text, \
                     input_image and output_text are"
                )));
            }
            None => return Err(bad("every content part needs a type")),
        }
    }
    Ok(out)
}

// ---- the answer (`Response`) ----

/// `ResponseUsage`: tokens; cached and cache-written tokens are part of `input_tokens`,
/// reasoning tokens part of `output_tokens`.
fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens, "cache_write_tokens": u.cache_write_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

/// `status`, `incomplete_details` and `error` of a finished response.
fn outcome(reason: FinishReason) -> (&'static str, Value, Value) {
    match reason {
        FinishReason::Length => (
            "incomplete",
            json!({"reason": "max_output_tokens"}),
            Value::Null,
        ),
        FinishReason::ContentFilter => (
            "incomplete",
            json!({"reason": "content_filter"}),
            Value::Null,
        ),
        FinishReason::Error => (
            "failed",
            Value::Null,
            json!({"code": "server_error", "message": "the upstream ended the generation with an error"}),
        ),
        FinishReason::Stop | FinishReason::ToolCalls => ("completed", Value::Null, Value::Null),
    }
}

/// Everything of a `Response` but its outcome: id, model, creation time and the echoed request.
struct Envelope {
    id: String,
    model: String,
    created_at: i64,
    echo: Echo,
}

impl Envelope {
    /// The `Response` object with `status`, `output`, and (when known) `usage`.
    fn response(
        &self,
        status: &str,
        incomplete: Value,
        error: Value,
        output: Vec<Value>,
        usage: Option<&Usage>,
    ) -> Value {
        let e = &self.echo;
        let mut v = json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "completed_at": if status == "completed" { Value::from(now_unix()) } else { Value::Null },
            "error": error,
            "incomplete_details": incomplete,
            "instructions": e.instructions,
            "max_output_tokens": e.max_output_tokens,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": e.parallel_tool_calls,
            "previous_response_id": Value::Null,
            "reasoning": e.reasoning,
            "store": false,
            "temperature": e.temperature,
            "text": e.text,
            "tool_choice": e.tool_choice,
            "tools": e.tools,
            "top_p": e.top_p,
            "truncation": "disabled",
            "metadata": e.metadata,
        });
        if let Some(u) = usage {
            v["usage"] = usage_json(u);
        }
        v
    }
}

/// A `ReasoningItem`: the text as one `reasoning_text` part (none when empty, e.g. only
/// redacted thinking), and the signed blocks, if any, in `encrypted_content`.
fn reasoning_item(id: &str, text: &str, signed: &[SignedThinking], status: &str) -> Value {
    let content = if text.is_empty() {
        json!([])
    } else {
        json!([{"type": "reasoning_text", "text": text}])
    };
    let mut item =
        json!({"type": "reasoning", "id": id, "summary": [], "content": content, "status": status});
    if let Some(c) = encode_carrier(signed) {
        item["encrypted_content"] = c.into();
    }
    item
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn message_item(id: &str, content: Vec<Value>, status: &str) -> Value {
    json!({"type": "message", "id": id, "role": "assistant", "status": status, "content": content})
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": arguments, "status": status})
}

/// The `Response` for a complete canonical answer.
fn complete_body(env: &Envelope, r: &ChatResponse) -> Value {
    let (status, incomplete, error) = outcome(r.finish_reason);
    let item_status = if status == "incomplete" {
        "incomplete"
    } else {
        "completed"
    };
    let mut output = Vec::new();
    let thinking = r.thinking.as_deref().unwrap_or_default();
    if !thinking.is_empty() || !r.signed_thinking.is_empty() {
        output.push(reasoning_item(
            &new_id("rs_"),
            thinking,
            &r.signed_thinking,
            item_status,
        ));
    }
    if !r.content.is_empty() {
        output.push(message_item(
            &new_id("msg_"),
            vec![output_text(&r.content)],
            item_status,
        ));
    }
    for c in &r.tool_calls {
        output.push(call_item(
            &new_id("fc_"),
            &c.id,
            &c.name,
            &c.arguments,
            "completed",
        ));
    }
    env.response(status, incomplete, error, output, r.usage.as_ref())
}

// ---- streaming ----

/// The output item being streamed.
enum Open {
    /// None yet, or the last one was closed.
    Nothing,
    /// A `reasoning` item.
    Reasoning(OpenReasoning),
    /// A `message` item: output index, id, text so far.
    Message(usize, String, String),
    /// `function_call` items, by canonical call index (kept open together, since fragments of
    /// several calls may interleave).
    Calls(Vec<OpenCall>),
}

/// A `reasoning` item being streamed.
struct OpenReasoning {
    /// Output index.
    output_index: usize,
    id: String,
    /// All reasoning text so far.
    text: String,
    /// Where in `text` the block not yet signed starts.
    unsigned_from: usize,
    /// The signed blocks so far (a signature ends its block).
    signed: Vec<SignedThinking>,
}

/// A `function_call` item being streamed.
struct OpenCall {
    index: u32,
    output_index: usize,
    id: String,
    call_id: String,
    name: String,
    arguments: String,
}

/// Per-stream state: the envelope, the next `sequence_number`, the finished output items and
/// the open one.
struct StreamEncoder {
    env: Envelope,
    seq: u64,
    output: Vec<Value>,
    open: Open,
    usage: Option<Usage>,
    /// A terminal event (`response.completed|incomplete|failed`) was sent.
    done: bool,
}

impl StreamEncoder {
    fn new(env: Envelope) -> Self {
        StreamEncoder {
            env,
            seq: 0,
            output: Vec::new(),
            open: Open::Nothing,
            usage: None,
            done: false,
        }
    }

    /// One SSE event: `event: <type>` and the data with `type` and the next `sequence_number`.
    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut data: Map<String, Value>) {
        data.insert("type".into(), kind.into());
        data.insert("sequence_number".into(), self.seq.into());
        self.seq += 1;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(Value::Object(data).to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    fn emit_json(&mut self, out: &mut Vec<u8>, kind: &str, data: Value) {
        let map = match data {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self.emit(out, kind, map);
    }

    /// `response.created` and `response.in_progress`.
    fn start(&mut self, out: &mut Vec<u8>) {
        let r = self
            .env
            .response("in_progress", Value::Null, Value::Null, Vec::new(), None);
        self.emit_json(out, "response.created", json!({"response": r}));
        let r = self
            .env
            .response("in_progress", Value::Null, Value::Null, Vec::new(), None);
        self.emit_json(out, "response.in_progress", json!({"response": r}));
    }

    /// Close the open item (its `.done` events and `response.output_item.done`).
    fn close(&mut self, out: &mut Vec<u8>, status: &str) {
        match std::mem::replace(&mut self.open, Open::Nothing) {
            Open::Nothing => {}
            Open::Reasoning(r) => {
                let (oi, id, text) = (r.output_index, &r.id, &r.text);
                if !text.is_empty() {
                    self.emit_json(
                        out,
                        "response.reasoning_text.done",
                        json!({"item_id": id, "output_index": oi, "content_index": 0, "text": text}),
                    );
                }
                let item = reasoning_item(id, text, &r.signed, status);
                self.emit_json(
                    out,
                    "response.output_item.done",
                    json!({"output_index": oi, "item": item}),
                );
                self.output.push(item);
            }
            Open::Message(oi, id, text) => {
                self.emit_json(
                    out,
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": oi, "content_index": 0, "text": text, "logprobs": []}),
                );
                self.emit_json(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": oi, "content_index": 0, "part": output_text(&text)}),
                );
                let item = message_item(&id, vec![output_text(&text)], status);
                self.emit_json(
                    out,
                    "response.output_item.done",
                    json!({"output_index": oi, "item": item}),
                );
                self.output.push(item);
            }
            Open::Calls(calls) => {
                for mut c in calls {
                    // A call that got no argument text still parses.
                    if c.arguments.is_empty() {
                        c.arguments = "{}".into();
                    }
                    self.emit_json(
                        out,
                        "response.function_call_arguments.done",
                        json!({"item_id": c.id, "output_index": c.output_index, "name": c.name, "arguments": c.arguments}),
                    );
                    // A call cut by the token limit or a failure is not complete (FunctionToolCall
                    // `status`: in_progress | completed | incomplete).
                    let item = call_item(&c.id, &c.call_id, &c.name, &c.arguments, status);
                    self.emit_json(
                        out,
                        "response.output_item.done",
                        json!({"output_index": c.output_index, "item": item}),
                    );
                    self.output.push(item);
                }
            }
        }
    }

    /// The open `reasoning` item, opened (`response.output_item.added`) after closing any other
    /// open item if needed.
    fn reasoning(&mut self, out: &mut Vec<u8>) -> Option<&mut OpenReasoning> {
        if !matches!(self.open, Open::Reasoning(_)) {
            self.close(out, "completed");
            let oi = self.next_index();
            let id = new_id("rs_");
            self.emit_json(
                out,
                "response.output_item.added",
                json!({"output_index": oi, "item": {"type": "reasoning", "id": id, "summary": [], "content": [], "status": "in_progress"}}),
            );
            self.open = Open::Reasoning(OpenReasoning {
                output_index: oi,
                id,
                text: String::new(),
                unsigned_from: 0,
                signed: Vec::new(),
            });
        }
        match &mut self.open {
            Open::Reasoning(r) => Some(r),
            _ => None,
        }
    }

    /// The output index the next item gets.
    fn next_index(&self) -> usize {
        self.output.len()
            + match &self.open {
                Open::Nothing => 0,
                Open::Reasoning(_) | Open::Message(..) => 1,
                Open::Calls(c) => c.len(),
            }
    }

    fn event(&mut self, out: &mut Vec<u8>, ev: StreamEvent) {
        if self.done {
            return;
        }
        match ev {
            StreamEvent::ThinkingDelta(t) => {
                if t.is_empty() {
                    return;
                }
                let Some(r) = self.reasoning(out) else {
                    return;
                };
                r.text.push_str(&t);
                let data = json!({"item_id": r.id, "output_index": r.output_index, "content_index": 0, "delta": t});
                self.emit_json(out, "response.reasoning_text.delta", data);
            }
            // A signature ends its thinking block (the text since the last one); a signature
            // without text (thinking display omitted) or a redacted block still makes an item,
            // so the client can send it back.
            StreamEvent::ThinkingSignature(signature) => {
                if let Some(r) = self.reasoning(out) {
                    let thinking = r
                        .text
                        .get(r.unsigned_from..)
                        .unwrap_or_default()
                        .to_string();
                    r.unsigned_from = r.text.len();
                    r.signed.push(SignedThinking::Thinking {
                        thinking,
                        signature,
                    });
                }
            }
            StreamEvent::RedactedThinking(data) => {
                if let Some(r) = self.reasoning(out) {
                    r.signed.push(SignedThinking::Redacted { data });
                }
            }
            StreamEvent::TextDelta(t) => {
                if t.is_empty() {
                    return;
                }
                if !matches!(self.open, Open::Message(..)) {
                    self.close(out, "completed");
                    let oi = self.next_index();
                    let id = new_id("msg_");
                    self.emit_json(
                        out,
                        "response.output_item.added",
                        json!({"output_index": oi, "item": message_item(&id, Vec::new(), "in_progress")}),
                    );
                    self.emit_json(
                        out,
                        "response.content_part.added",
                        json!({"item_id": id, "output_index": oi, "content_index": 0, "part": output_text("")}),
                    );
                    self.open = Open::Message(oi, id, String::new());
                }
                if let Open::Message(oi, id, text) = &mut self.open {
                    text.push_str(&t);
                    let data = json!({"item_id": id, "output_index": oi, "content_index": 0, "delta": t, "logprobs": []});
                    self.emit_json(out, "response.output_text.delta", data);
                }
            }
            StreamEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                if !matches!(self.open, Open::Calls(_)) {
                    self.close(out, "completed");
                    self.open = Open::Calls(Vec::new());
                }
                let oi = self.next_index();
                let Open::Calls(calls) = &mut self.open else {
                    return;
                };
                let mut added = None;
                let c = match calls.iter().position(|c| c.index == index) {
                    Some(p) => {
                        let c = &mut calls[p];
                        // A name that came after the first fragment still reaches the `.done`
                        // events and the final item.
                        if let (true, Some(n)) = (c.name.is_empty(), name) {
                            c.name = n;
                        }
                        c
                    }
                    None => {
                        let c = OpenCall {
                            index,
                            output_index: oi,
                            id: new_id("fc_"),
                            call_id: id.unwrap_or_else(crate::upstream::openai_compat::new_call_id),
                            name: name.unwrap_or_default(),
                            arguments: String::new(),
                        };
                        added = Some(call_item(&c.id, &c.call_id, &c.name, "", "in_progress"));
                        calls.push(c);
                        match calls.last_mut() {
                            Some(c) => c,
                            None => return,
                        }
                    }
                };
                c.arguments.push_str(&arguments);
                let (item_id, output_index) = (c.id.clone(), c.output_index);
                if let Some(item) = added {
                    self.emit_json(
                        out,
                        "response.output_item.added",
                        json!({"output_index": output_index, "item": item}),
                    );
                }
                if !arguments.is_empty() {
                    let data = json!({"item_id": item_id, "output_index": output_index, "delta": arguments});
                    self.emit_json(out, "response.function_call_arguments.delta", data);
                }
            }
            StreamEvent::Usage(u) => self.usage = Some(u),
            StreamEvent::Finish(reason) => {
                let (status, incomplete, error) = outcome(reason);
                self.close(
                    out,
                    if status == "incomplete" {
                        "incomplete"
                    } else {
                        "completed"
                    },
                );
                let output = std::mem::take(&mut self.output);
                let r = self
                    .env
                    .response(status, incomplete, error, output, self.usage.as_ref());
                let kind = match status {
                    "incomplete" => "response.incomplete",
                    "failed" => "response.failed",
                    _ => "response.completed",
                };
                self.emit_json(out, kind, json!({"response": r}));
                self.done = true;
            }
            // The matched stop sequence has no field here.
            StreamEvent::StopSequence(_) => {}
        }
    }

    /// An upstream failure mid-stream: an `error` event, then `response.failed` with what was
    /// produced so far.
    fn fail(&mut self, out: &mut Vec<u8>, e: &ApiError) {
        if self.done {
            return;
        }
        self.close(out, "incomplete");
        let code = e.openai_code().unwrap_or(e.openai_type()).to_string();
        self.emit_json(
            out,
            "error",
            json!({"code": code, "message": e.to_string(), "param": e.openai_param()}),
        );
        let error_code = if e.status() == 429 {
            "rate_limit_exceeded"
        } else {
            "server_error"
        };
        let output = std::mem::take(&mut self.output);
        let r = self.env.response(
            "failed",
            Value::Null,
            json!({"code": error_code, "message": e.to_string()}),
            output,
            self.usage.as_ref(),
        );
        self.emit_json(out, "response.failed", json!({"response": r}));
        self.done = true;
    }
}

/// The SSE body of a stream: `first` (the opening events), then the encoded upstream events,
/// each accounted for in `log`.
fn stream_body(
    events: crate::upstream::EventStream,
    mut enc: StreamEncoder,
    first: Vec<u8>,
    mut log: RequestLog,
) -> Body {
    let head =
        futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(Bytes::from(first)) });
    let rest = super::ready_batches(events, super::STREAM_BATCH).map(move |batch| {
        let mut buf = Vec::new();
        for ev in batch {
            log.observe(&ev);
            match ev {
                Ok(ev) => enc.event(&mut buf, ev),
                Err(e) => enc.fail(&mut buf, &e),
            }
        }
        Ok::<Bytes, std::io::Error>(Bytes::from(buf))
    });
    Body::from_bytes_stream(head.chain(rest))
}

/// `POST /v1/responses`.
#[handler]
pub(crate) async fn responses(req: &Request, state: Data<&AppState>, body: Body) -> Response {
    crate::usage::logged(responses_inner(&state, req, body).await)
}

async fn responses_inner(state: &AppState, http: &Request, body: Body) -> Response {
    let mut log = RequestLog::start(&state.usage, http, "/v1/responses");
    let result = async {
        let wire: CreateResponse = read_json(body, state.config.max_body_bytes).await?;
        let (mut req, echo) = decode(wire)?;
        log.set_request(&mut req);
        let model = relay::resolve_model(state, &req.model)?;
        log.set_route(&model);
        let reply = relay::chat(state, &model, &req, &mut |u| log.set_usage(u)).await?;
        Ok::<_, ApiError>((req, echo, reply))
    }
    .await;
    match result {
        Err(e) => {
            log.set_error(&e);
            error_response(&e)
        }
        Ok((req, echo, reply)) => {
            let env = Envelope {
                id: new_id("resp_"),
                model: req.model,
                created_at: now_unix(),
                echo,
            };
            match reply {
                Reply::Complete(r) => {
                    if let Some(u) = r.usage {
                        log.set_usage(u);
                    }
                    log.set_complete();
                    Response::builder()
                        .content_type("application/json")
                        .body(complete_body(&env, &r).to_string())
                }
                Reply::Stream(events) => {
                    log.set_first_token();
                    let mut enc = StreamEncoder::new(env);
                    let mut first = Vec::new();
                    enc.start(&mut first);
                    sse_response(stream_body(events, enc, first, log))
                }
            }
        }
    }
}

/// Decode a `/v1/responses` request body (`CreateResponse` JSON) into the canonical request, as
/// the handler does once the body is read (the entry point of the decoder fuzz pass,
/// tests/fuzz.rs).
///
/// Errors: malformed JSON, wrong shape, a stateful feature or an unsupported item, part or tool
/// type (400).
pub fn decode_body(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let wire: CreateResponse = serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    decode(wire).map(|(r, _)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(v: Value) -> Result<ChatRequest, ApiError> {
        decode_body(v.to_string().as_bytes())
    }

    #[test]
    fn string_input_and_instructions() {
        let r = dec(
            json!({"model": "m", "input": "hi", "instructions": "be brief",
                           "max_output_tokens": 9, "reasoning": {"effort": "low"}}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.system, vec!["be brief".to_string()]);
        assert_eq!(r.messages, vec![Message::text(Role::User, "hi")]);
        assert_eq!(r.max_tokens, Some(9));
        assert_eq!(r.reasoning_effort.as_deref(), Some("low"));
    }

    #[test]
    fn items_map_to_messages_tool_calls_and_results() {
        let r = dec(json!({"model": "m", "input": [
            {"role": "developer", "content": "sys"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "checking", "annotations": []}]},
            {"type": "function_call", "call_id": "call_1", "name": "w", "arguments": "{\"c\":1}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}
        ]}))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.system, vec!["sys".to_string()]);
        assert_eq!(r.messages.len(), 3);
        assert_eq!(r.messages[1].role, Role::Assistant);
        assert_eq!(r.messages[1].joined_text(), "checking");
        assert_eq!(r.messages[1].tool_calls[0].id, "call_1");
        assert_eq!(r.messages[2].role, Role::Tool);
        assert_eq!(r.messages[2].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(r.messages[2].joined_text(), "sunny");
    }

    #[test]
    fn stateful_and_unsupported_inputs_are_400() {
        for v in [
            json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
            json!({"model": "m", "input": "x", "conversation": "conv_1"}),
            json!({"model": "m", "input": "x", "background": true}),
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
            json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}),
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
            json!({"model": "m", "input": 5}),
            json!({"model": "m", "input": [7]}),
            json!({"model": "m"}),
            json!({"model": "m", "input": "x", "text": {"format": {"type": "xml"}}}),
            json!({"model": "m", "input": "x", "tool_choice": {"type": "web_search_preview"}}),
        ] {
            let e = dec(v.clone()).err();
            assert!(matches!(e, Some(ApiError::BadRequest(_))), "{v} -> {e:?}");
        }
    }

    #[test]
    fn carrier_round_trips_and_rejects_malformed() {
        let blocks = vec![
            SignedThinking::Thinking {
                thinking: "plan".into(),
                signature: "sig".into(),
            },
            SignedThinking::Redacted {
                data: "opaque".into(),
            },
        ];
        let c = encode_carrier(&blocks).unwrap_or_default();
        assert!(c.starts_with(CARRIER_PREFIX), "{c}");
        assert_eq!(decode_carrier(&c), Ok(Some(blocks)));
        assert_eq!(encode_carrier(&[]), None);
        assert_eq!(decode_carrier("gAAAAABforeign"), Ok(None));
        for bad in ["llmr1:!!", "llmr1:e30=", "llmr1:W3sidHlwZSI6InRleHQifV0="] {
            assert!(decode_carrier(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reasoning_items_attach_signed_thinking_to_the_next_assistant_turn() {
        let c = encode_carrier(&[SignedThinking::Thinking {
            thinking: "plan".into(),
            signature: "sig".into(),
        }])
        .unwrap_or_default();
        let r = dec(json!({"model": "m", "input": [
            {"role": "user", "content": "weather?"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": c},
            {"type": "function_call", "call_id": "call_1", "name": "w", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "foreign"},
            {"type": "message", "role": "assistant", "content": "done"}
        ]}))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.messages.len(), 4);
        assert_eq!(r.messages[1].signed_thinking.len(), 1);
        assert_eq!(r.messages[1].tool_calls.len(), 1);
        assert!(r.messages[3].signed_thinking.is_empty());
        let e = dec(json!({"model": "m", "input": [
            {"role": "user", "content": "x"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "llmr1:%%"}
        ]}));
        assert!(
            matches!(&e, Err(ApiError::BadRequest(m)) if m.starts_with("input[1]")),
            "{e:?}"
        );
    }

    #[test]
    fn streamed_signatures_reach_the_reasoning_item() {
        let mut enc = StreamEncoder::new(test_envelope());
        let mut out = Vec::new();
        enc.start(&mut out);
        for ev in [
            StreamEvent::ThinkingDelta("a".into()),
            StreamEvent::ThinkingDelta("b".into()),
            StreamEvent::ThinkingSignature("s1".into()),
            StreamEvent::RedactedThinking("r".into()),
            StreamEvent::TextDelta("Hi".into()),
            StreamEvent::RedactedThinking("r2".into()),
            StreamEvent::Finish(FinishReason::Stop),
        ] {
            enc.event(&mut out, ev);
        }
        let evs = events(&out);
        let items: Vec<&Value> = evs
            .iter()
            .filter(|e| e["type"] == "response.output_item.done")
            .map(|e| &e["item"])
            .collect();
        assert_eq!(items.len(), 3);
        let blocks = |i: &Value| {
            decode_carrier(i["encrypted_content"].as_str().unwrap_or_default())
                .ok()
                .flatten()
        };
        assert_eq!(
            blocks(items[0]),
            Some(vec![
                SignedThinking::Thinking {
                    thinking: "ab".into(),
                    signature: "s1".into()
                },
                SignedThinking::Redacted { data: "r".into() }
            ])
        );
        assert_eq!(items[0]["content"][0]["text"], "ab");
        assert_eq!(items[2]["content"], json!([]));
        assert_eq!(
            blocks(items[2]),
            Some(vec![SignedThinking::Redacted { data: "r2".into() }])
        );
        let done = &evs[evs.len() - 1]["response"]["output"];
        assert_eq!(done[0], *items[0]);
    }

    /// The envelope of a request that set nothing but its model.
    fn test_envelope() -> Envelope {
        Envelope {
            id: "resp_x".into(),
            model: "m".into(),
            created_at: 1,
            echo: Echo {
                instructions: None,
                tools: Vec::new(),
                tool_choice: json!("auto"),
                temperature: None,
                top_p: None,
                parallel_tool_calls: true,
                metadata: json!({}),
                max_output_tokens: None,
                text: json!({"format": {"type": "text"}}),
                reasoning: Value::Null,
            },
        }
    }

    fn events(out: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(out)
            .split("\n\n")
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (ev, data) = s.split_once('\n').unwrap_or_default();
                let v: Value =
                    serde_json::from_str(data.trim_start_matches("data: ")).unwrap_or_default();
                assert_eq!(ev.trim_start_matches("event: "), v["type"]);
                v
            })
            .collect()
    }

    #[test]
    fn stream_events_in_order_with_sequence_numbers() {
        let mut enc = StreamEncoder::new(test_envelope());
        let mut out = Vec::new();
        enc.start(&mut out);
        for ev in [
            StreamEvent::ThinkingDelta("hm".into()),
            StreamEvent::TextDelta("Hi".into()),
            StreamEvent::TextDelta(" there".into()),
            StreamEvent::ToolCallDelta {
                index: 0,
                id: Some("call_1".into()),
                name: Some("f".into()),
                arguments: String::new(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: "{}".into(),
            },
            StreamEvent::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                ..Usage::default()
            }),
            StreamEvent::Finish(FinishReason::ToolCalls),
        ] {
            enc.event(&mut out, ev);
        }
        let evs = events(&out);
        let types: Vec<&str> = evs.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(
            types,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.reasoning_text.delta",
                "response.reasoning_text.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, e) in evs.iter().enumerate() {
            assert_eq!(e["sequence_number"], i as u64);
        }
        let done = &evs[evs.len() - 1]["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"].as_array().map(Vec::len), Some(3));
        assert_eq!(done["output"][1]["content"][0]["text"], "Hi there");
        assert_eq!(done["output"][2]["call_id"], "call_1");
        assert_eq!(done["usage"]["total_tokens"], 7);
    }
}
