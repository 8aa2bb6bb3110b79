//! The Gemini dialect (any providers.yaml row with `wire: gemini`): `generateContent` and
//! `streamGenerateContent?alt=sse` of the Generative Language API v1beta.
//!
//! Request (`GenerateContentRequest`, camelCase JSON; python-genai `models.py` `_*_to_mldev`
//! converters; WIRE.md §5.2, §7): turns with roles `user`/`model` (adjacent same-role turns
//! merged), `systemInstruction`, parts `text` / `inlineData` / `functionCall` /
//! `functionResponse` (in a `user` turn, its `name` recovered from the call it answers),
//! `generationConfig`, tool declarations whose JSON Schemas are converted to Gemini's subset
//! ([`schema`]), `toolConfig.functionCallingConfig`. The key goes in `x-goog-api-key`
//! (providers.yaml `auth: x_goog_api_key`).
//!
//! Response: candidate parts (`thought: true` text is reasoning), `finishReason` (a function call
//! ends with `STOP`: it is reported as `tool_calls`), `usageMetadata` normalised to OpenAI
//! semantics (WIRE.md §7.7: `thoughtsTokenCount` is outside `candidatesTokenCount`, so the
//! completion is their sum). Gemini 3 `thoughtSignature`s on function calls travel inside the
//! call id (see [`super::SIGNATURE_SEPARATOR`]) and are sent back on the next turn.

pub mod schema;
mod stream;

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::{
    ByteStream, Dialect, EventStream, SIGNATURE_SEPARATOR, UpstreamRequest, split_call_id,
};
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, FinishReason, ResponseFormat, Role, ToolCall,
    ToolChoice, Usage,
};
use crate::catalog::{Capability, ModelId, Param};
use crate::error::ApiError;

/// Gemini generateContent dialect.
pub struct Gemini;

/// Prefix of Files API URIs, the only image URLs Gemini reads itself (`fileData.fileUri`).
const FILES_API_PREFIX: &str = "https://generativelanguage.googleapis.com/";

/// Signature sent on a function call that has none (history from another model, or a client
/// that dropped the id): Google's documented value that skips signature validation
/// (ai.google.dev/gemini-api/docs/thought-signatures, FAQ). Only sent to thinking models.
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

impl Dialect for Gemini {
    /// Only Gemini Files API URIs; other URLs are fetched and sent inline (WIRE.md §7.3).
    fn takes_image_url(&self, url: &str) -> bool {
        url.starts_with(FILES_API_PREFIX)
    }

    fn encode(&self, model: ModelId, req: &ChatRequest) -> Result<UpstreamRequest, ApiError> {
        let body = encode_body(model, req)?;
        let body = serde_json::to_vec(&body)
            .map_err(|e| ApiError::BadRequest(format!("cannot encode request: {e}")))?;
        let id = model.info().id;
        let path = if req.stream {
            format!("/models/{id}:streamGenerateContent?alt=sse")
        } else {
            format!("/models/{id}:generateContent")
        };
        Ok(UpstreamRequest { path, body })
    }

    fn decode(&self, provider: &'static str, body: &[u8]) -> Result<ChatResponse, ApiError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::UpstreamInvalid {
            provider,
            reason: format!("not JSON: {e}"),
        })?;
        if v.get("error").is_some_and(|e| !e.is_null()) {
            return Err(in_band_error(provider, &v, body));
        }
        let mut parts = Parts::default();
        parts.read(&v);
        let (content, thinking, tool_calls) = parts.into_response();
        let mut finish = parts_finish(&v).unwrap_or(FinishReason::Stop);
        if !tool_calls.is_empty() && finish == FinishReason::Stop {
            finish = FinishReason::ToolCalls;
        }
        Ok(ChatResponse {
            id: v
                .get("responseId")
                .and_then(Value::as_str)
                .map(str::to_string),
            model: v
                .get("modelVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            content,
            thinking,
            signed_thinking: Vec::new(),
            tool_calls,
            finish_reason: finish,
            stop_sequence: None,
            usage: v
                .get("usageMetadata")
                .filter(|u| u.is_object())
                .map(decode_usage),
        })
    }

    fn decode_stream(&self, provider: &'static str, body: ByteStream) -> EventStream {
        stream::decode(provider, body)
    }

    /// 429s carry `{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"34.4s"}` in
    /// `error.details` (WIRE.md §5.6) and no `Retry-After` header: passed on as whole seconds,
    /// rounded up.
    fn retry_after(&self, body: &[u8]) -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let delay = v
            .pointer("/error/details")?
            .as_array()?
            .iter()
            .find(|d| {
                d.get("@type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
            })?
            .get("retryDelay")?
            .as_str()?;
        let secs: f64 = delay.strip_suffix('s')?.parse().ok()?;
        (secs.is_finite() && secs >= 0.0).then(|| format!("{}", secs.ceil() as u64))
    }

    /// Gemini errors are `{"error":{"code":429,"message":..,"status":"RESOURCE_EXHAUSTED"}}`
    /// (WIRE.md §5.6): the `status` string is the machine-readable code.
    fn error_code_param(&self, body: &[u8]) -> (Option<String>, Option<String>) {
        let code = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
            v.pointer("/error/status")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        (code, None)
    }
}

/// An `{"error":{"code","message","status"}}` object inside a 2xx body (WIRE.md §5.6): its
/// `code` is the HTTP status it stands for, its `status` the machine-readable code.
pub(super) fn in_band_error(provider: &'static str, v: &Value, raw: &[u8]) -> ApiError {
    let status = v
        .pointer("/error/code")
        .and_then(Value::as_u64)
        .filter(|c| (400..=599).contains(c))
        .map_or(502, |c| c as u16);
    ApiError::Upstream {
        provider,
        status,
        message: super::error_message_from_json(raw),
        retry_after: None,
        code: v
            .pointer("/error/status")
            .and_then(Value::as_str)
            .map(str::to_string),
        param: None,
    }
}

/// Map a `finishReason` (python-genai `FinishReason`; WIRE.md §7.1).
pub fn finish_reason(s: &str) -> FinishReason {
    match s {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => FinishReason::ContentFilter,
        "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" | "TOO_MANY_TOOL_CALLS" | "LANGUAGE" => {
            FinishReason::Error
        }
        // STOP, OTHER, FINISH_REASON_UNSPECIFIED, NO_IMAGE, IMAGE_OTHER, and anything newer.
        _ => FinishReason::Stop,
    }
}

/// The finish reason of a response: the first candidate's, or `content_filter` when the prompt
/// itself was blocked (`promptFeedback.blockReason`, no candidates).
fn parts_finish(v: &Value) -> Option<FinishReason> {
    if let Some(r) = v
        .pointer("/candidates/0/finishReason")
        .and_then(Value::as_str)
    {
        return Some(finish_reason(r));
    }
    v.pointer("/promptFeedback/blockReason")
        .and_then(Value::as_str)
        .map(|_| FinishReason::ContentFilter)
}

/// `usageMetadata` in canonical form (WIRE.md §5.3, §7.7).
pub fn decode_usage(v: &Value) -> Usage {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let thoughts = n("thoughtsTokenCount");
    Usage {
        prompt_tokens: n("promptTokenCount") + n("toolUsePromptTokenCount"),
        completion_tokens: n("candidatesTokenCount") + thoughts,
        reasoning_tokens: thoughts,
        cache_read_tokens: n("cachedContentTokenCount"),
        cache_write_tokens: 0,
        cache_write_1h_tokens: 0,
        reported_cost_usd: None,
        timings: None,
    }
}

/// Standard base64 (as Gemini sends `thoughtSignature`) -> URL-safe without padding, so a call
/// id stays within `[A-Za-z0-9_-]`.
fn to_url_safe(sig: &str) -> String {
    sig.chars()
        .filter(|c| *c != '=')
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

/// The inverse of [`to_url_safe`]: standard base64 with padding, byte-identical to what Gemini
/// sent.
fn from_url_safe(sig: &str) -> String {
    let mut s: String = sig
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

/// The canonical id of a Gemini function call: its own `id` (or a fresh `call_` id) with the
/// `thoughtSignature`, if any, attached.
pub fn call_id(own: Option<&str>, signature: Option<&str>) -> String {
    let base = own
        .filter(|s| !s.is_empty())
        .map_or_else(super::openai_compat::new_call_id, str::to_string);
    match signature.filter(|s| !s.is_empty()) {
        Some(sig) => format!("{base}{SIGNATURE_SEPARATOR}{}", to_url_safe(sig)),
        None => base,
    }
}

/// What the parts of one or more responses carried, in order.
#[derive(Default)]
struct Parts {
    text: String,
    thinking: String,
    calls: Vec<ToolCall>,
}

impl Parts {
    fn read(&mut self, v: &Value) {
        for p in candidate_parts(v) {
            match part_kind(p) {
                PartKind::Text(t) => self.text.push_str(t),
                PartKind::Thought(t) => self.thinking.push_str(t),
                PartKind::Call(c) => self.calls.push(c),
                PartKind::Other => {}
            }
        }
    }

    fn into_response(self) -> (String, Option<String>, Vec<ToolCall>) {
        let thinking = (!self.thinking.is_empty()).then_some(self.thinking);
        (self.text, thinking, self.calls)
    }
}

/// Parts of the first candidate (`n` is always 1 here).
fn candidate_parts(v: &Value) -> impl Iterator<Item = &Value> {
    v.pointer("/candidates/0/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// One response part, classified.
enum PartKind<'a> {
    Text(&'a str),
    Thought(&'a str),
    Call(ToolCall),
    Other,
}

fn part_kind(p: &Value) -> PartKind<'_> {
    if let Some(fc) = p.get("functionCall") {
        return PartKind::Call(ToolCall {
            id: call_id(
                fc.get("id").and_then(Value::as_str),
                p.get("thoughtSignature").and_then(Value::as_str),
            ),
            name: fc
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            arguments: fc
                .get("args")
                .filter(|a| !a.is_null())
                .map_or_else(|| "{}".to_string(), Value::to_string),
        });
    }
    match p.get("text").and_then(Value::as_str) {
        Some(t) if p.get("thought").and_then(Value::as_bool) == Some(true) => PartKind::Thought(t),
        Some(t) => PartKind::Text(t),
        None => PartKind::Other,
    }
}

/// Thinking budget (tokens) for an OpenAI-style reasoning effort (WIRE.md §7.5 policy); `0`
/// turns thinking off where the model allows it.
fn thinking_budget(effort: &str) -> Option<i64> {
    match effort {
        "none" => Some(0),
        "minimal" | "low" => Some(1024),
        "medium" => Some(4096),
        "high" => Some(16384),
        "xhigh" | "max" => Some(32768),
        _ => None,
    }
}

fn inline_part(part: &ContentPart) -> Result<Option<Value>, ApiError> {
    Ok(match part {
        ContentPart::Text(t) if t.is_empty() => None,
        ContentPart::Text(t) => Some(json!({"text": t})),
        ContentPart::Image { media_type, data } => {
            Some(json!({"inlineData": {"mimeType": media_type, "data": data}}))
        }
        ContentPart::ImageUrl(url) if url.starts_with(FILES_API_PREFIX) => {
            Some(json!({"fileData": {"fileUri": url}}))
        }
        ContentPart::ImageUrl(_) => {
            return Err(ApiError::BadRequest(
                "Gemini models take images inline: send the image as base64 (a data: URL), not an http(s) URL".into(),
            ));
        }
    })
}

/// A tool result as the `response` object Gemini requires: a JSON object stays as is, any other
/// text is wrapped as `{"result": text}` (WIRE.md §7.2).
fn tool_response(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "result": text }),
    }
}

fn encode_contents(model: ModelId, req: &ChatRequest) -> Result<Vec<Value>, ApiError> {
    let thinking_model = model.info().has(Capability::Reasoning);
    // Function names by call id, for functionResponse.name.
    let names: HashMap<&str, &str> = req
        .messages
        .iter()
        .flat_map(|m| &m.tool_calls)
        .map(|c| (split_call_id(&c.id).0, c.name.as_str()))
        .collect();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for msg in &req.messages {
        let mut parts = Vec::new();
        let role = match msg.role {
            Role::User => {
                for p in &msg.content {
                    parts.extend(inline_part(p)?);
                }
                "user"
            }
            Role::Assistant => {
                for p in &msg.content {
                    parts.extend(inline_part(p)?);
                }
                let any_signature = msg
                    .tool_calls
                    .iter()
                    .any(|c| split_call_id(&c.id).1.is_some());
                for (i, c) in msg.tool_calls.iter().enumerate() {
                    let (id, sig) = split_call_id(&c.id);
                    let args = match serde_json::from_str::<Value>(&c.arguments) {
                        Ok(v @ Value::Object(_)) => v,
                        _ => json!({}),
                    };
                    let mut part =
                        json!({"functionCall": {"id": id, "name": c.name, "args": args}});
                    match sig {
                        Some(s) => part["thoughtSignature"] = from_url_safe(s).into(),
                        // Only the first call of a turn carries a signature (parallel calls).
                        None if i == 0 && !any_signature && thinking_model => {
                            part["thoughtSignature"] = SKIP_SIGNATURE.into();
                        }
                        None => {}
                    }
                    parts.push(part);
                }
                "model"
            }
            Role::Tool => {
                let id = msg.tool_call_id.as_deref().map(|i| split_call_id(i).0);
                let name = id
                    .and_then(|i| names.get(i).copied())
                    .or(msg.name.as_deref())
                    .unwrap_or_default();
                let mut fr = json!({"name": name, "response": tool_response(&msg.joined_text())});
                if let Some(id) = id {
                    fr["id"] = id.into();
                }
                parts.push(json!({ "functionResponse": fr }));
                // Images returned by a tool go along as inline data in the same user turn.
                for p in msg
                    .content
                    .iter()
                    .filter(|p| !matches!(p, ContentPart::Text(_)))
                {
                    parts.extend(inline_part(p)?);
                }
                "user"
            }
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((r, existing)) if *r == role => existing.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    Ok(turns
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect())
}

/// Build the `GenerateContentRequest` body. Public for snapshot tests.
///
/// Errors: an image given by URL (Gemini reads only inline data or Files API URIs) (400).
pub fn encode_body(model: ModelId, req: &ChatRequest) -> Result<Value, ApiError> {
    let info = model.info();
    let q = model.quirks();
    let mut m = Map::new();
    m.insert(
        "contents".into(),
        Value::Array(encode_contents(model, req)?),
    );
    let system = req.system.join("\n\n");
    if !system.is_empty() {
        m.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system}]}),
        );
    }
    if !req.tools.is_empty() && !q.drops(Param::Tools) {
        let decls: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut d = json!({"name": t.name});
                // A function without arguments is declared without `parameters` (an OBJECT with
                // no properties is not a useful schema for Gemini).
                let params = schema::convert(&t.parameters);
                if params
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|p| !p.is_empty())
                    || params.get("type").is_some_and(|t| t != "OBJECT")
                {
                    d["parameters"] = params;
                }
                if let Some(desc) = &t.description {
                    d["description"] = desc.clone().into();
                }
                d
            })
            .collect();
        m.insert("tools".into(), json!([{ "functionDeclarations": decls }]));
        if let Some(tc) = &req.tool_choice {
            let cfg = match tc {
                ToolChoice::Auto => json!({"mode": "AUTO"}),
                ToolChoice::None => json!({"mode": "NONE"}),
                ToolChoice::Required => json!({"mode": "ANY"}),
                ToolChoice::Function(name) => {
                    json!({"mode": "ANY", "allowedFunctionNames": [name]})
                }
            };
            m.insert("toolConfig".into(), json!({ "functionCallingConfig": cfg }));
        }
    }

    let mut g = Map::new();
    let mut put = |p: Param, key: &str, v: Option<Value>| {
        if let Some(v) = v
            && !q.drops(p)
        {
            g.insert(key.into(), v);
        }
    };
    put(
        Param::Temperature,
        "temperature",
        req.temperature.map(Value::from),
    );
    put(Param::TopP, "topP", req.top_p.map(Value::from));
    put(Param::TopK, "topK", req.top_k.map(Value::from));
    put(
        Param::Stop,
        "stopSequences",
        (!req.stop.is_empty()).then(|| json!(req.stop)),
    );
    // `GenerationConfig.seed` is an int32 (python-genai `types.py`); OpenAI seeds are int64:
    // wrapped, so the same client seed always gives the same upstream seed.
    put(Param::Seed, "seed", req.seed.map(|s| Value::from(s as i32)));
    put(
        Param::PresencePenalty,
        "presencePenalty",
        req.presence_penalty.map(Value::from),
    );
    put(
        Param::FrequencyPenalty,
        "frequencyPenalty",
        req.frequency_penalty.map(Value::from),
    );
    if let Some(n) = req.max_tokens.or(q.default_max_tokens) {
        // Capped at the model's output limit from the catalog.
        let n = n.min(info.max_output_tokens.unwrap_or(u32::MAX));
        g.insert("maxOutputTokens".into(), n.into());
    }
    if !q.drops(Param::ResponseFormat) {
        match &req.response_format {
            Some(ResponseFormat::JsonObject) => {
                g.insert("responseMimeType".into(), "application/json".into());
            }
            Some(ResponseFormat::JsonSchema { schema: s, .. }) => {
                g.insert("responseMimeType".into(), "application/json".into());
                g.insert("responseSchema".into(), schema::convert(s));
            }
            Some(ResponseFormat::Text) | None => {}
        }
    }
    if info.has(Capability::Reasoning) && !q.drops(Param::ReasoningEffort) {
        let cfg = match req.reasoning_effort.as_deref().and_then(thinking_budget) {
            Some(0) => Some(json!({"thinkingBudget": 0})),
            Some(budget) => Some(json!({"thinkingBudget": budget, "includeThoughts": true})),
            // Switched on without a level (Ollama `think: true`): the model's own budget, with
            // its thoughts returned. `think: false` sends nothing: thinking cannot be switched off
            // on the Pro models (a budget of 0 is rejected there), and thoughts are not returned
            // unless asked for.
            None if req.reasoning_effort.is_none() && req.think == Some(true) => {
                Some(json!({"includeThoughts": true}))
            }
            None => None,
        };
        if let Some(cfg) = cfg {
            g.insert("thinkingConfig".into(), cfg);
        }
    }
    if !g.is_empty() {
        m.insert("generationConfig".into(), Value::Object(g));
    }
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trips_through_the_id() {
        let sig = "EpwICpkI+X/y8A==";
        let id = call_id(None, Some(sig));
        let (base, carried) = split_call_id(&id);
        assert!(base.starts_with("call_") && !base.contains(SIGNATURE_SEPARATOR));
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
        assert_eq!(carried.map(from_url_safe).as_deref(), Some(sig));
        assert_eq!(call_id(Some("abc"), None), "abc");
    }

    #[test]
    fn usage_adds_thoughts_to_the_completion() {
        let u = decode_usage(&json!({"promptTokenCount":29,"candidatesTokenCount":15,
            "totalTokenCount":937,"thoughtsTokenCount":893,"cachedContentTokenCount":7}));
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.reasoning_tokens,
                u.cache_read_tokens
            ),
            (29, 908, 893, 7)
        );
    }

    #[test]
    fn blocked_prompt_is_a_content_filter_finish() {
        let r = Gemini
            .decode(
                "p",
                br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":5}}"#,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.finish_reason, FinishReason::ContentFilter);
        assert_eq!(r.content, "");
        assert_eq!(r.usage.map(|u| u.prompt_tokens), Some(5));
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(finish_reason("STOP"), FinishReason::Stop);
        assert_eq!(finish_reason("MAX_TOKENS"), FinishReason::Length);
        assert_eq!(finish_reason("SAFETY"), FinishReason::ContentFilter);
        assert_eq!(
            finish_reason("MALFORMED_FUNCTION_CALL"),
            FinishReason::Error
        );
        assert_eq!(finish_reason("OTHER"), FinishReason::Stop);
    }
}
