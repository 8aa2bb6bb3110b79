//! The Anthropic Messages dialect (any providers.yaml row with `wire: anthropic`).
//!
//! Request: `POST {base_url}/messages` per Anthropic's `MessageCreateParams` (anthropic-sdk-python
//! `types/message_create_params.py`; WIRE.md §4.2, §7): system prompts go to the top-level
//! `system`, tool results become `tool_result` blocks in a user turn, adjacent same-role turns are
//! merged, `max_tokens` is always sent (required by the API: the client's value, else the
//! model's `default_max_tokens` quirk, else its `max_output_tokens`). Headers (`x-api-key`,
//! `anthropic-version`) come from providers.yaml via `client.rs`.
//!
//! Response: `Message` content blocks (`text`, `thinking`, `tool_use`) and the SSE event stream
//! (`stream.rs`). Usage is normalised to OpenAI semantics (WIRE.md §7.7): the prompt count is
//! `input_tokens + cache_read_input_tokens + cache_creation_input_tokens`.

mod stream;

use serde_json::{Map, Value, json};

use super::{ByteStream, Dialect, EventStream, UpstreamRequest, split_call_id};
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, FinishReason, Message, ResponseFormat, Role,
    SignedThinking, ToolCall, ToolChoice, Usage,
};
use crate::catalog::{Capability, ModelId, Param};
use crate::error::ApiError;

/// Anthropic Messages dialect.
pub struct Anthropic;

/// `max_tokens` when neither the request, the quirks nor the catalog give one (WIRE.md §7.6).
const FALLBACK_MAX_TOKENS: u32 = 4096;

/// Smallest thinking budget the API accepts (`thinking.budget_tokens` >= 1024, WIRE.md §4.2).
const MIN_THINKING_BUDGET: u32 = 1024;

/// Instruction added to the system prompt for `response_format: json_object`, which the
/// Messages API has no field for (WIRE.md §7.6: "prompt or forced tool").
pub const JSON_OBJECT_INSTRUCTION: &str =
    "Respond with one valid JSON object only, without any text before or after it.";

/// Instruction (followed by the schema) for `response_format: json_schema` on models whose
/// quirks drop `response_format`, i.e. without `output_config.format`.
pub const JSON_SCHEMA_INSTRUCTION: &str = "Respond with one valid JSON object only, without any text before or after it, matching this JSON Schema:";

impl Dialect for Anthropic {
    fn encode(&self, model: ModelId, req: &ChatRequest) -> Result<UpstreamRequest, ApiError> {
        let body = encode_body(model, req)?;
        let body = serde_json::to_vec(&body)
            .map_err(|e| ApiError::BadRequest(format!("cannot encode request: {e}")))?;
        Ok(UpstreamRequest {
            path: "/messages".into(),
            body,
        })
    }

    fn decode(&self, provider: &'static str, body: &[u8]) -> Result<ChatResponse, ApiError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::UpstreamInvalid {
            provider,
            reason: format!("not JSON: {e}"),
        })?;
        decode_response(provider, &v)
    }

    fn decode_stream(&self, provider: &'static str, body: ByteStream) -> EventStream {
        stream::decode(provider, body)
    }

    /// Anthropic errors are `{"type":"error","error":{"type":"overloaded_error","message":..}}`
    /// (WIRE.md §4.6): the error `type` is the machine-readable code.
    fn error_code_param(&self, body: &[u8]) -> (Option<String>, Option<String>) {
        let code = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
            v.pointer("/error/type")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        (code, None)
    }
}

/// Thinking budget (tokens) for an OpenAI-style reasoning effort; `None` = no extended thinking.
/// Policy from WIRE.md §7.5 (low ~1024, medium ~4096, high ~16384).
fn thinking_budget(effort: &str) -> Option<u32> {
    match effort {
        "minimal" | "low" => Some(1024),
        "medium" => Some(4096),
        "high" => Some(16384),
        "xhigh" | "max" => Some(32000),
        _ => None,
    }
}

/// A tool-call id as the Messages API accepts it (`^[a-zA-Z0-9_-]+$`): a signature carried for
/// another family is dropped and any other character becomes `_`. Deterministic, so a
/// `tool_use.id` and the `tool_result.tool_use_id` answering it stay equal.
pub fn tool_id(id: &str) -> String {
    let (base, _) = split_call_id(id);
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "toolu_none".into()
    } else {
        clean
    }
}

/// Tool arguments (JSON text) as the `input` object Anthropic requires: an object stays as is,
/// empty or unparseable text becomes `{}`, another JSON value is wrapped as `{"value": ..}`.
pub fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        Ok(Value::Null) | Err(_) => json!({}),
        Ok(other) => json!({ "value": other }),
    }
}

/// A tool's `input_schema`: the API requires `"type": "object"` (InputSchema), which clients
/// declaring a tool without arguments often leave out (`parameters: {}`).
fn input_schema(parameters: &Value) -> Value {
    match parameters {
        Value::Object(o) if o.contains_key("type") => parameters.clone(),
        Value::Object(o) => {
            let mut o = o.clone();
            o.insert("type".into(), "object".into());
            Value::Object(o)
        }
        _ => json!({"type": "object"}),
    }
}

fn image_block(part: &ContentPart) -> Option<Value> {
    match part {
        ContentPart::Image { media_type, data } => Some(
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}),
        ),
        ContentPart::ImageUrl(url) => {
            Some(json!({"type": "image", "source": {"type": "url", "url": url}}))
        }
        ContentPart::Text(_) => None,
    }
}

/// A signed reasoning block as the Messages API writes it (`thinking` with `signature`, or
/// `redacted_thinking` with `data`), for requests and for Anthropic clients alike.
pub fn thinking_block(t: &SignedThinking) -> Value {
    match t {
        SignedThinking::Thinking {
            thinking,
            signature,
        } => json!({"type": "thinking", "thinking": thinking, "signature": signature}),
        SignedThinking::Redacted { data } => json!({"type": "redacted_thinking", "data": data}),
    }
}

/// Whether the API rejects `t` as a text block ("text content blocks must contain
/// non-whitespace text"): empty or whitespace only.
fn blank(t: &str) -> bool {
    t.trim().is_empty()
}

/// Content blocks of one canonical message (empty or whitespace-only text blocks are rejected
/// by the API, so they are skipped). With `thinking` on, an assistant turn's signed reasoning
/// blocks go first, unchanged (the API verifies each signature and requires them in tool loops).
fn blocks(msg: &Message, thinking: bool) -> Vec<Value> {
    let mut out = Vec::new();
    if thinking && msg.role == Role::Assistant {
        out.extend(msg.signed_thinking.iter().map(thinking_block));
    }
    match msg.role {
        Role::User | Role::Assistant => {
            for p in &msg.content {
                match p {
                    ContentPart::Text(t) if blank(t) => {}
                    ContentPart::Text(t) => out.push(json!({"type": "text", "text": t})),
                    other => out.extend(image_block(other)),
                }
            }
            for c in &msg.tool_calls {
                out.push(
                    json!({"type": "tool_use", "id": tool_id(&c.id), "name": c.name,
                                "input": tool_input(&c.arguments)}),
                );
            }
        }
        Role::Tool => {
            let has_images = msg
                .content
                .iter()
                .any(|p| !matches!(p, ContentPart::Text(_)));
            let content = if has_images {
                Value::Array(
                    msg.content
                        .iter()
                        .filter_map(|p| match p {
                            ContentPart::Text(t) if blank(t) => None,
                            ContentPart::Text(t) => Some(json!({"type": "text", "text": t})),
                            other => image_block(other),
                        })
                        .collect(),
                )
            } else {
                Value::String(msg.joined_text())
            };
            let mut result = json!({"type": "tool_result",
                            "tool_use_id": tool_id(msg.tool_call_id.as_deref().unwrap_or_default())});
            // `content` is optional: a blank result is sent without it.
            if content.as_str().is_none_or(|t| !blank(t)) {
                result["content"] = content;
            }
            out.push(result);
        }
    }
    out
}

/// `messages`: alternating user/assistant turns, tool results in user turns, adjacent same-role
/// turns merged (WIRE.md §7.2); signed reasoning replayed when `thinking` is on.
fn encode_messages(req: &ChatRequest, thinking: bool) -> Vec<Value> {
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for msg in &req.messages {
        let role = match msg.role {
            Role::Assistant => "assistant",
            Role::User | Role::Tool => "user",
        };
        let b = blocks(msg, thinking);
        if b.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((r, existing)) if *r == role => existing.extend(b),
            _ => turns.push((role, b)),
        }
    }
    turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect()
}

fn encode_tool_choice(tc: Option<&ToolChoice>, parallel: Option<bool>) -> Option<Value> {
    let mut v = match tc {
        None if parallel == Some(false) => json!({"type": "auto"}),
        None => return None,
        Some(ToolChoice::Auto) => json!({"type": "auto"}),
        Some(ToolChoice::Required) => json!({"type": "any"}),
        Some(ToolChoice::None) => return Some(json!({"type": "none"})),
        Some(ToolChoice::Function(name)) => json!({"type": "tool", "name": name}),
    };
    if parallel == Some(false) {
        v["disable_parallel_tool_use"] = true.into();
    }
    Some(v)
}

/// Build the Messages request body. Public for snapshot tests of canonical -> dialect requests.
///
/// Errors: none today (the signature leaves room for requests the API cannot express).
pub fn encode_body(model: ModelId, req: &ChatRequest) -> Result<Value, ApiError> {
    let info = model.info();
    encode_body_for(
        &ModelFacts {
            id: info.id,
            quirks: model.quirks(),
            max_output_tokens: info.max_output_tokens,
            reasoning: info.has(Capability::Reasoning),
        },
        req,
    )
}

/// What the Messages encoder needs to know about a model: a catalog row's facts, or a custom
/// model's (runtime overrides, `crate::overrides`).
#[derive(Debug, Clone, Copy)]
pub struct ModelFacts<'a> {
    /// Upstream model id.
    pub id: &'a str,
    /// Request quirks.
    pub quirks: &'a crate::catalog::Quirks,
    /// Largest completion, tokens, when known.
    pub max_output_tokens: Option<u32>,
    /// Whether extended thinking may be switched on.
    pub reasoning: bool,
}

/// [`encode_body`] for a model described by `facts`.
///
/// Errors: none today (the signature leaves room for requests the API cannot express).
pub fn encode_body_for(facts: &ModelFacts<'_>, req: &ChatRequest) -> Result<Value, ApiError> {
    struct Info {
        max_output_tokens: Option<u32>,
    }
    let info = Info {
        max_output_tokens: facts.max_output_tokens,
    };
    let q = facts.quirks;
    let mut m = Map::new();
    m.insert("model".into(), facts.id.into());
    // Above the model's output limit the API answers 400; the catalog knows the limit.
    let mut max_tokens = req
        .max_tokens
        .or(q.default_max_tokens)
        .or(info.max_output_tokens)
        .unwrap_or(FALLBACK_MAX_TOKENS)
        .min(info.max_output_tokens.unwrap_or(u32::MAX));

    // Extended thinking when the client asks for reasoning and the model has it. The budget
    // must be >= 1024 and < max_tokens; the client's limit is kept for the visible answer.
    // Not inside a tool loop whose last assistant turn lacks its signed thinking: with thinking
    // on, the API requires that turn to start with it (Anthropic extended-thinking docs,
    // "thinking with tool use"). Anthropic clients echo it (`Message::signed_thinking`); OpenAI
    // and Ollama clients cannot.
    let in_tool_loop = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
        .is_some_and(|m| !m.tool_calls.is_empty() && m.signed_thinking.is_empty());
    // Nor with a `tool_choice` that forces tool use (`any` / `tool`): the API rejects thinking
    // with it ("Thinking may not be enabled when tool_choice forces tool use"); the client's
    // choice is kept.
    let forces_tool = !req.tools.is_empty()
        && !q.drops(Param::Tools)
        && matches!(
            req.tool_choice,
            Some(ToolChoice::Required | ToolChoice::Function(_))
        );
    let mut thinking = None;
    if facts.reasoning
        && !in_tool_loop
        && !forces_tool
        && let Some(mut budget) = req.thinking_budget.or_else(|| {
            req.reasoning_effort
                .as_deref()
                // Thinking switched on without a level (Ollama `think: true`): the medium budget.
                .or(req.think.filter(|on| *on).map(|_| "medium"))
                .and_then(thinking_budget)
        })
    {
        if budget >= max_tokens {
            max_tokens = max_tokens.saturating_add(budget);
        }
        if let Some(cap) = info.max_output_tokens {
            max_tokens = max_tokens.min(cap);
        }
        budget = budget.min(max_tokens.saturating_sub(1));
        if budget >= MIN_THINKING_BUDGET {
            thinking = Some(budget);
        }
    }
    m.insert("max_tokens".into(), max_tokens.into());

    let mut system = req.system.join("\n\n");
    // JSON mode has no Messages field; a schema does (`output_config.format`) unless the model's
    // quirks drop `response_format` (models without structured outputs): then it is asked for in
    // the system prompt.
    let instruction = match &req.response_format {
        Some(ResponseFormat::JsonObject) => Some(JSON_OBJECT_INSTRUCTION.to_string()),
        Some(ResponseFormat::JsonSchema { schema, .. }) if q.drops(Param::ResponseFormat) => {
            Some(format!("{JSON_SCHEMA_INSTRUCTION}\n{schema}"))
        }
        _ => None,
    };
    if let Some(text) = instruction {
        if !system.is_empty() {
            system.push_str("\n\n");
        }
        system.push_str(&text);
    }
    if !system.is_empty() {
        m.insert("system".into(), system.into());
    }
    m.insert(
        "messages".into(),
        Value::Array(encode_messages(req, thinking.is_some())),
    );
    if req.stream {
        m.insert("stream".into(), true.into());
    }
    let mut put = |p: Param, key: &str, v: Option<Value>| {
        if let Some(v) = v
            && !q.drops(p)
        {
            m.insert(key.into(), v);
        }
    };
    // With thinking the API requires default sampling (temperature 1, no top_k; WIRE.md §7.5).
    if thinking.is_none() {
        // Anthropic's temperature range is 0..1 (OpenAI's is 0..2): clamp.
        put(
            Param::Temperature,
            "temperature",
            req.temperature.map(|t| t.clamp(0.0, 1.0).into()),
        );
        // Claude 4.5 models reject both together ("`temperature` and `top_p` cannot both be
        // specified for this model"; the API reference: alter one, not both): temperature wins.
        let temperature_sent = req.temperature.is_some() && !q.drops(Param::Temperature);
        put(
            Param::TopP,
            "top_p",
            req.top_p.filter(|_| !temperature_sent).map(Value::from),
        );
        put(Param::TopK, "top_k", req.top_k.map(Value::from));
    }
    // Blank stop sequences are rejected ("stop_sequences: each stop sequence must contain
    // non-whitespace"); OpenAI clients often send "\n": left out.
    let stop: Vec<&String> = req.stop.iter().filter(|s| !blank(s)).collect();
    put(
        Param::Stop,
        "stop_sequences",
        (!stop.is_empty()).then(|| json!(stop)),
    );
    put(
        Param::User,
        "metadata",
        req.user.as_ref().map(|u| json!({"user_id": u})),
    );
    if let Some(budget) = thinking {
        m.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    }
    if req.cache_prompt {
        let cc = if req.cache_ttl_1h {
            json!({"type": "ephemeral", "ttl": "1h"})
        } else {
            json!({"type": "ephemeral"})
        };
        m.insert("cache_control".into(), cc);
    }
    if let Some(ResponseFormat::JsonSchema { schema, .. }) = &req.response_format
        && !q.drops(Param::ResponseFormat)
    {
        m.insert(
            "output_config".into(),
            json!({"format": {"type": "json_schema", "schema": schema}}),
        );
    }
    if !req.tools.is_empty() && !q.drops(Param::Tools) {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut v = json!({"name": t.name, "input_schema": input_schema(&t.parameters)});
                if let Some(d) = &t.description {
                    v["description"] = d.clone().into();
                }
                v
            })
            .collect();
        m.insert("tools".into(), Value::Array(tools));
        if let Some(tc) = encode_tool_choice(req.tool_choice.as_ref(), req.parallel_tool_calls) {
            m.insert("tool_choice".into(), tc);
        }
    }
    Ok(Value::Object(m))
}

/// Map a `stop_reason` (anthropic-sdk-python `types/stop_reason.py`; WIRE.md §7.1).
pub fn finish_reason(s: &str) -> FinishReason {
    match s {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        // end_turn, stop_sequence, pause_turn, and anything newer.
        _ => FinishReason::Stop,
    }
}

fn count(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

/// Anthropic `usage` (start) merged with a later cumulative `usage` (`message_delta`), each
/// field taken from the latest object that has it (WIRE.md §4.5).
#[derive(Debug, Default, Clone, Copy)]
pub struct RawUsage {
    input: Option<u64>,
    output: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    /// `cache_creation.ephemeral_1h_input_tokens`: the 1-hour part of `cache_write`.
    cache_write_1h: Option<u64>,
    thinking: Option<u64>,
}

impl RawUsage {
    /// Take the fields present in `v` (a `Usage` or `MessageDeltaUsage` object).
    pub fn merge(&mut self, v: &Value) {
        self.input = count(v, "input_tokens").or(self.input);
        self.output = count(v, "output_tokens").or(self.output);
        self.cache_read = count(v, "cache_read_input_tokens").or(self.cache_read);
        self.cache_write = count(v, "cache_creation_input_tokens").or(self.cache_write);
        self.cache_write_1h = v
            .pointer("/cache_creation/ephemeral_1h_input_tokens")
            .and_then(Value::as_u64)
            .or(self.cache_write_1h);
        self.thinking = v
            .pointer("/output_tokens_details/thinking_tokens")
            .and_then(Value::as_u64)
            .or(self.thinking);
    }

    /// Canonical usage: cached input is part of the prompt, thinking part of the completion;
    /// the 1-hour cache writes (`cache_creation.ephemeral_1h_input_tokens`, 0 when the server
    /// sends no `cache_creation`) are a part of the cache writes, clamped to them.
    pub fn canonical(&self) -> Usage {
        let cache_read = self.cache_read.unwrap_or(0);
        let cache_write = self.cache_write.unwrap_or(0);
        Usage {
            prompt_tokens: self.input.unwrap_or(0) + cache_read + cache_write,
            completion_tokens: self.output.unwrap_or(0),
            reasoning_tokens: self.thinking.unwrap_or(0),
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
            cache_write_1h_tokens: self.cache_write_1h.unwrap_or(0).min(cache_write),
            reported_cost_usd: None,
            timings: None,
        }
    }
}

/// Decode a non-streamed `Message`.
fn decode_response(provider: &'static str, v: &Value) -> Result<ChatResponse, ApiError> {
    if v.get("type").and_then(Value::as_str) == Some("error") {
        return Err(ApiError::UpstreamStream {
            provider,
            message: super::error_message_from_json(v.to_string().as_bytes()),
        });
    }
    let blocks =
        v.get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| ApiError::UpstreamInvalid {
                provider,
                reason: "message without content".into(),
            })?;
    let (mut content, mut thinking) = (String::new(), String::new());
    let mut tool_calls = Vec::new();
    let mut signed_thinking = Vec::new();
    for b in blocks {
        let text = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or_default();
        match b.get("type").and_then(Value::as_str) {
            Some("text") => content.push_str(text("text")),
            Some("thinking") => {
                thinking.push_str(text("thinking"));
                if !text("signature").is_empty() {
                    signed_thinking.push(SignedThinking::Thinking {
                        thinking: text("thinking").to_string(),
                        signature: text("signature").to_string(),
                    });
                }
            }
            Some("redacted_thinking") => signed_thinking.push(SignedThinking::Redacted {
                data: text("data").to_string(),
            }),
            Some("tool_use") => tool_calls.push(ToolCall {
                id: match text("id") {
                    "" => super::openai_compat::new_call_id(),
                    id => id.to_string(),
                },
                name: text("name").to_string(),
                arguments: b
                    .get("input")
                    .filter(|i| !i.is_null())
                    .map_or_else(|| "{}".to_string(), Value::to_string),
            }),
            // Server-tool blocks: nothing a client API can show.
            _ => {}
        }
    }
    let mut finish = v
        .get("stop_reason")
        .and_then(Value::as_str)
        .map_or(FinishReason::Stop, finish_reason);
    if !tool_calls.is_empty() && finish == FinishReason::Stop {
        finish = FinishReason::ToolCalls;
    }
    let usage = v.get("usage").filter(|u| u.is_object()).map(|u| {
        let mut raw = RawUsage::default();
        raw.merge(u);
        raw.canonical()
    });
    Ok(ChatResponse {
        id: v.get("id").and_then(Value::as_str).map(str::to_string),
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        content,
        thinking: (!thinking.is_empty()).then_some(thinking),
        signed_thinking,
        tool_calls,
        finish_reason: finish,
        stop_sequence: v
            .get("stop_sequence")
            .and_then(Value::as_str)
            .map(str::to_string),
        usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_puts_cache_inside_prompt() {
        let mut raw = RawUsage::default();
        raw.merge(&json!({"input_tokens": 10, "cache_read_input_tokens": 1111,
                          "cache_creation_input_tokens": 418, "output_tokens": 1}));
        raw.merge(&json!({"output_tokens": 30}));
        let u = raw.canonical();
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.cache_read_tokens,
                u.cache_write_tokens
            ),
            (1539, 30, 1111, 418)
        );
    }

    /// The recorded cache answer (fixture `anthropic/messages_cache_usage.yaml`, 2nd exchange:
    /// 3 input, 418 written, 1,111 read, 33 output) with 300 of its 418 writes made 1-hour ones
    /// (`cache_control` `ttl: "1h"`), the model name replaced.
    fn cache_answer(cache_creation: Option<Value>) -> Value {
        let mut usage = json!({"input_tokens": 3, "cache_creation_input_tokens": 418,
            "cache_read_input_tokens": 1111, "output_tokens": 33, "service_tier": "standard",
            "inference_geo": "not_available"});
        if let Some(c) = cache_creation {
            usage["cache_creation"] = c;
        }
        json!({"content": [{"text": "Python is a beginner-friendly, versatile programming language.",
            "type": "text"}], "id": "msg_01KPaKTJSqAKoZri7Ujrny58", "model": "m",
            "role": "assistant", "stop_reason": "end_turn", "stop_sequence": null,
            "type": "message", "usage": usage})
    }

    #[test]
    fn one_hour_cache_writes_are_decoded_from_cache_creation() {
        let split = json!({"ephemeral_1h_input_tokens": 300, "ephemeral_5m_input_tokens": 118});
        let u = decode_response("p", &cache_answer(Some(split)))
            .unwrap()
            .usage
            .unwrap();
        assert_eq!(
            (
                u.prompt_tokens,
                u.cache_read_tokens,
                u.cache_write_tokens,
                u.cache_write_1h_tokens,
                u.completion_tokens
            ),
            (1532, 1111, 418, 300, 33)
        );
        // No `cache_creation` (older servers, Anthropic-compatible upstreams): no 1-hour part.
        let u = decode_response("p", &cache_answer(None))
            .unwrap()
            .usage
            .unwrap();
        assert_eq!((u.cache_write_tokens, u.cache_write_1h_tokens), (418, 0));
        // An inconsistent split never exceeds the writes.
        let too_many = json!({"ephemeral_1h_input_tokens": 5000, "ephemeral_5m_input_tokens": 0});
        let u = decode_response("p", &cache_answer(Some(too_many)))
            .unwrap()
            .usage
            .unwrap();
        assert_eq!(u.cache_write_1h_tokens, 418);
    }

    #[test]
    fn ids_are_made_acceptable() {
        assert_eq!(tool_id("call_abc"), "call_abc");
        assert_eq!(tool_id("call_abc__sig__AbC-_"), "call_abc");
        assert_eq!(tool_id("a.b/c"), "a_b_c");
        assert_eq!(tool_id(""), "toolu_none");
    }

    #[test]
    fn stop_reasons() {
        assert_eq!(finish_reason("end_turn"), FinishReason::Stop);
        assert_eq!(finish_reason("stop_sequence"), FinishReason::Stop);
        assert_eq!(finish_reason("max_tokens"), FinishReason::Length);
        assert_eq!(
            finish_reason("model_context_window_exceeded"),
            FinishReason::Length
        );
        assert_eq!(finish_reason("tool_use"), FinishReason::ToolCalls);
        assert_eq!(finish_reason("refusal"), FinishReason::ContentFilter);
    }
}
