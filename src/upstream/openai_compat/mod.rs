//! The OpenAI-compatible dialect (OpenAI, Groq, DeepSeek, Mistral, xAI, Perplexity, OpenRouter,
//! HuggingFace router, ... any provider whose providers.yaml row says `wire: openai_compat`).
//!
//! Request: `POST {base_url}/chat/completions` per OpenAI's `CreateChatCompletionRequest`
//! (openai-openapi spec), with the model's YAML quirks applied: completion limit field, dropped and
//! renamed parameters, system prompt delivery. Response decoding accepts the variants real
//! providers send (see tests/fixtures): `reasoning_content` (DeepSeek, xAI) or `reasoning`
//! (Groq, OpenRouter) for thinking, Mistral's content-part arrays, usage under `x_groq`,
//! OpenRouter's `usage.cost`, DeepSeek's `prompt_cache_hit_tokens`.

mod stream;

use serde_json::{Map, Value, json};

use super::{ByteStream, Dialect, EventStream, UpstreamRequest, split_call_id};
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, FinishReason, Message, ResponseFormat, Role, ToolCall,
    ToolChoice, Usage,
};
use crate::catalog::{MaxTokensField, ModelId, PROVIDERS, Param, Quirks, SystemPrompt, UsageQuirk};
use crate::error::ApiError;

/// OpenAI Chat Completions dialect.
pub struct OpenAiCompat;

impl Dialect for OpenAiCompat {
    fn encode(&self, model: ModelId, req: &ChatRequest) -> Result<UpstreamRequest, ApiError> {
        let body = encode_body(model.info().id, model.quirks(), req);
        let body = serde_json::to_vec(&body)
            .map_err(|e| ApiError::BadRequest(format!("cannot encode request: {e}")))?;
        Ok(UpstreamRequest {
            path: "/chat/completions".into(),
            body,
        })
    }

    fn decode(&self, provider: &'static str, body: &[u8]) -> Result<ChatResponse, ApiError> {
        if let Some(r) = decode_typed(provider, body) {
            return r;
        }
        let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::UpstreamInvalid {
            provider,
            reason: format!("not JSON: {e}"),
        })?;
        decode_response(provider, &v)
    }

    fn decode_stream(&self, provider: &'static str, body: ByteStream) -> EventStream {
        stream::decode(provider, body)
    }
}

/// Build the upstream JSON body. Public for snapshot tests of canonical -> dialect requests.
pub fn encode_body(model_id: &str, q: &Quirks, req: &ChatRequest) -> Value {
    let mut m = Map::new();
    m.insert("model".into(), model_id.into());
    m.insert("messages".into(), Value::Array(encode_messages(q, req)));
    if req.stream {
        m.insert("stream".into(), true.into());
        if !q.drops(Param::StreamOptions) {
            m.insert(
                q.field(Param::StreamOptions).into(),
                json!({"include_usage": true}),
            );
        }
    }
    if let Some(n) = req.max_tokens.or(q.default_max_tokens) {
        let field = match q.max_tokens_field {
            MaxTokensField::MaxTokens => "max_tokens",
            MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
        };
        m.insert(field.into(), n.into());
    }
    let mut put = |p: Param, v: Option<Value>| {
        if let Some(v) = v
            && !q.drops(p)
        {
            m.insert(q.field(p).into(), v);
        }
    };
    put(Param::Temperature, req.temperature.map(Value::from));
    put(Param::TopP, req.top_p.map(Value::from));
    put(Param::Stop, (!req.stop.is_empty()).then(|| json!(req.stop)));
    put(Param::Seed, req.seed.map(Value::from));
    put(
        Param::PresencePenalty,
        req.presence_penalty.map(Value::from),
    );
    put(
        Param::FrequencyPenalty,
        req.frequency_penalty.map(Value::from),
    );
    put(
        Param::ReasoningEffort,
        req.reasoning_effort.clone().map(Value::from),
    );
    put(Param::User, req.user.clone().map(Value::from));
    put(
        Param::ResponseFormat,
        req.response_format.as_ref().map(encode_response_format),
    );
    if !req.tools.is_empty() && !q.drops(Param::Tools) {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                let mut f = Map::new();
                f.insert("name".into(), t.name.clone().into());
                if let Some(d) = &t.description {
                    f.insert("description".into(), d.clone().into());
                }
                f.insert("parameters".into(), t.parameters.clone());
                if let Some(s) = t.strict {
                    f.insert("strict".into(), s.into());
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        m.insert(q.field(Param::Tools).into(), Value::Array(tools));
        if let Some(tc) = &req.tool_choice {
            m.insert(
                "tool_choice".into(),
                match tc {
                    ToolChoice::Auto => "auto".into(),
                    ToolChoice::None => "none".into(),
                    ToolChoice::Required => "required".into(),
                    ToolChoice::Function(name) => {
                        json!({"type": "function", "function": {"name": name}})
                    }
                },
            );
        }
        if let Some(p) = req.parallel_tool_calls {
            m.insert("parallel_tool_calls".into(), p.into());
        }
    }
    for (k, v) in req.openai_extra.iter().flatten() {
        if !m.contains_key(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    Value::Object(m)
}

fn encode_response_format(rf: &ResponseFormat) -> Value {
    match rf {
        ResponseFormat::Text => json!({"type": "text"}),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        } => {
            let mut s = Map::new();
            s.insert("name".into(), name.clone().into());
            s.insert("schema".into(), schema.clone());
            if let Some(st) = strict {
                s.insert("strict".into(), (*st).into());
            }
            json!({"type": "json_schema", "json_schema": s})
        }
    }
}

fn encode_messages(q: &Quirks, req: &ChatRequest) -> Vec<Value> {
    let mut out = Vec::with_capacity(req.messages.len() + 1);
    let system = req.system.join("\n\n");
    let mut merge_pending = None;
    if !system.is_empty() {
        match q.system_prompt {
            SystemPrompt::System => out.push(json!({"role": "system", "content": system})),
            SystemPrompt::Developer => out.push(json!({"role": "developer", "content": system})),
            SystemPrompt::MergeIntoUser => merge_pending = Some(system),
        }
    }
    // Tool messages carry text only: images a tool returned (an Anthropic `tool_result` with
    // image blocks, e.g. Claude Code reading a screenshot) follow the tool messages as a user
    // message, so the model still sees them.
    let mut tool_images: Vec<Value> = Vec::new();
    for msg in &req.messages {
        if msg.role != Role::Tool && !tool_images.is_empty() {
            out.push(tool_images_message(std::mem::take(&mut tool_images)));
        }
        if msg.role == Role::Tool {
            tool_images.extend(msg.content.iter().filter_map(image_part));
        }
        let mut v = encode_message(msg);
        if msg.role == Role::User
            && let Some(sys) = merge_pending.take()
        {
            prepend_text(&mut v, &sys);
        }
        out.push(v);
    }
    if !tool_images.is_empty() {
        out.push(tool_images_message(tool_images));
    }
    if let Some(sys) = merge_pending {
        out.insert(0, json!({"role": "user", "content": sys}));
    }
    out
}

/// Text of the user message carrying the images of the tool results before it.
const TOOL_IMAGES_TEXT: &str = "Images returned by the tool calls above:";

fn tool_images_message(images: Vec<Value>) -> Value {
    let mut content = vec![json!({"type": "text", "text": TOOL_IMAGES_TEXT})];
    content.extend(images);
    json!({"role": "user", "content": content})
}

/// An image content part as OpenAI's `image_url` part (`None` for text).
fn image_part(p: &ContentPart) -> Option<Value> {
    match p {
        ContentPart::Text(_) => None,
        ContentPart::Image { media_type, data } => Some(
            json!({"type": "image_url", "image_url": {"url": format!("data:{media_type};base64,{data}")}}),
        ),
        ContentPart::ImageUrl(url) => Some(json!({"type": "image_url", "image_url": {"url": url}})),
    }
}

fn prepend_text(v: &mut Value, prefix: &str) {
    match v.get_mut("content") {
        Some(Value::String(s)) => *s = format!("{prefix}\n\n{s}"),
        Some(Value::Array(parts)) => parts.insert(0, json!({"type": "text", "text": prefix})),
        _ => {}
    }
}

fn encode_content(parts: &[ContentPart]) -> Value {
    match parts {
        [] => Value::String(String::new()),
        [ContentPart::Text(t)] => Value::String(t.clone()),
        parts => Value::Array(
            parts
                .iter()
                .map(|p| match p {
                    ContentPart::Text(t) => json!({"type": "text", "text": t}),
                    image => image_part(image).unwrap_or(Value::Null),
                })
                .collect(),
        ),
    }
}

fn encode_message(msg: &Message) -> Value {
    match msg.role {
        Role::User => {
            let mut v = json!({"role": "user", "content": encode_content(&msg.content)});
            if let Some(n) = &msg.name {
                v["name"] = n.clone().into();
            }
            v
        }
        Role::Tool => json!({
            "role": "tool",
            "tool_call_id": msg.tool_call_id.as_deref().map_or("", |id| split_call_id(id).0),
            "content": msg.joined_text(),
        }),
        Role::Assistant => {
            let mut v = json!({"role": "assistant"});
            let text = msg.joined_text();
            v["content"] = if text.is_empty() && !msg.tool_calls.is_empty() {
                Value::Null
            } else {
                text.into()
            };
            if !msg.tool_calls.is_empty() {
                v["tool_calls"] = msg
                    .tool_calls
                    .iter()
                    .map(|c| json!({"id": split_call_id(&c.id).0, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                    .collect();
            }
            v
        }
    }
}

/// Decode a non-streamed `chat.completion` object.
fn decode_response(provider: &'static str, v: &Value) -> Result<ChatResponse, ApiError> {
    let invalid = |reason: &str| ApiError::UpstreamInvalid {
        provider,
        reason: reason.into(),
    };
    let choice = at(v, "/choices/0").ok_or_else(|| invalid("no choices in response"))?;
    let msg = choice
        .get("message")
        .ok_or_else(|| invalid("choice without message"))?;
    let (content, part_thinking) = content_text(msg.get("content"));
    let thinking = reasoning_text(msg).or(part_thinking);
    let tool_calls: Vec<ToolCall> = msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|c| ToolCall {
                    id: c
                        .get("id")
                        .and_then(Value::as_str)
                        .map_or_else(new_call_id, str::to_string),
                    name: at(c, "/function/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    arguments: arguments_text(at(c, "/function/arguments")),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map_or(FinishReason::Stop, FinishReason::from_openai);
    if !tool_calls.is_empty() && finish == FinishReason::Stop {
        finish = FinishReason::ToolCalls;
    }
    Ok(ChatResponse {
        id: v.get("id").and_then(Value::as_str).map(str::to_string),
        model: v
            .get("model")
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
            .get("usage")
            .filter(|u| u.is_object())
            .map(|u| decode_usage(u, usage_quirks(provider))),
    })
}

/// The parts of a non-streamed `chat.completion` object the decoder reads, decoded straight into
/// structs (unknown fields are skipped) instead of a generic JSON tree: no map per object, no
/// `String` per key. Any shape these types do not take (a number where a string is expected, a
/// choice that is not an object, a duplicate field, ...) fails here and falls back to the generic
/// [`decode_response`], so the result never differs from the generic path's.
#[derive(serde::Deserialize)]
struct Completion {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Option<Vec<Obj<CompletionChoice>>>,
    /// Absent or `null`: no usage (a non-object fails the typed decoding).
    #[serde(default)]
    usage: Option<Obj<WireUsage>>,
}

/// An OpenAI-style `usage` object, the fields [`decode_usage`] reads.
#[derive(serde::Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens_details: Option<Obj<WireCompletionDetails>>,
    #[serde(default)]
    prompt_tokens_details: Option<Obj<WirePromptDetails>>,
    #[serde(default)]
    prompt_cache_hit_tokens: Option<u64>,
    /// A number (USD) or an object with `total_cost` (see [`reported_cost`]).
    #[serde(default)]
    cost: Value,
    #[serde(default)]
    cost_in_usd_ticks: Value,
}

#[derive(serde::Deserialize)]
struct WireCompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(serde::Deserialize)]
struct WirePromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_write_tokens: Option<u64>,
}

impl WireUsage {
    fn usage(self, quirks: &[UsageQuirk]) -> Usage {
        let costs = Value::Object(
            [
                ("cost".to_string(), self.cost),
                ("cost_in_usd_ticks".to_string(), self.cost_in_usd_ticks),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .collect(),
        );
        UsageCounts {
            prompt: self.prompt_tokens,
            completion: self.completion_tokens,
            total: self.total_tokens,
            reasoning: self
                .completion_tokens_details
                .and_then(|d| d.0.reasoning_tokens),
            cached: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.0.cached_tokens),
            cache_hit: self.prompt_cache_hit_tokens,
            cache_write: self
                .prompt_tokens_details
                .and_then(|d| d.0.cache_write_tokens),
            reported_cost: reported_cost(&costs),
        }
        .usage(quirks)
    }
}

#[derive(serde::Deserialize)]
struct CompletionChoice {
    /// Absent: `None`; `null`: `Some(None)` (the generic path reads a null message as empty).
    #[serde(default, deserialize_with = "present")]
    message: Option<Option<Obj<CompletionMessage>>>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(serde::Deserialize, Default)]
struct CompletionMessage {
    #[serde(default)]
    content: Value,
    #[serde(default)]
    reasoning_content: Value,
    #[serde(default)]
    reasoning: Value,
    #[serde(default)]
    tool_calls: Option<Vec<Obj<CompletionToolCall>>>,
}

#[derive(serde::Deserialize)]
struct CompletionToolCall {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    function: Option<Obj<CompletionFunction>>,
}

#[derive(serde::Deserialize)]
struct CompletionFunction {
    #[serde(default)]
    name: Value,
    #[serde(default)]
    arguments: Option<Value>,
}

/// `T` read only from a JSON object. serde's derived structs also take an array (fields by
/// position), a shape the generic decoder reads differently (PHP-style `"usage": []`, say).
struct Obj<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Obj<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        d.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// A field that is present (also as `null`), for `#[serde(default, deserialize_with)]`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// [`decode_response`] over the typed [`Completion`]; `None` when the body does not fit those
/// types (the caller then takes the generic path).
fn decode_typed(provider: &'static str, body: &[u8]) -> Option<Result<ChatResponse, ApiError>> {
    let Obj(c): Obj<Completion> = serde_json::from_slice(body).ok()?;
    let invalid = |reason: &str| ApiError::UpstreamInvalid {
        provider,
        reason: reason.into(),
    };
    let Some(Obj(choice)) = c.choices.and_then(|cs| cs.into_iter().next()) else {
        return Some(Err(invalid("no choices in response")));
    };
    let Some(msg) = choice.message else {
        return Some(Err(invalid("choice without message")));
    };
    let msg = msg.map(|m| m.0).unwrap_or_default();
    let (content, part_thinking) = match msg.content {
        // The common case: the answer's string is moved, not copied.
        Value::String(s) => (s, None),
        other => content_text(Some(&other)),
    };
    let thinking = [&msg.reasoning_content, &msg.reasoning]
        .into_iter()
        .find_map(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or(part_thinking);
    let tool_calls: Vec<ToolCall> = msg
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(|Obj(c)| {
            let (name, arguments) = match c.function {
                Some(Obj(f)) => (
                    f.name.as_str().unwrap_or_default().to_string(),
                    arguments_text(f.arguments.as_ref()),
                ),
                None => (String::new(), arguments_text(None)),
            };
            ToolCall {
                id: c.id.as_str().map_or_else(new_call_id, str::to_string),
                name,
                arguments,
            }
        })
        .collect();
    let mut finish = choice
        .finish_reason
        .as_deref()
        .map_or(FinishReason::Stop, FinishReason::from_openai);
    if !tool_calls.is_empty() && finish == FinishReason::Stop {
        finish = FinishReason::ToolCalls;
    }
    Some(Ok(ChatResponse {
        id: c.id,
        model: c.model.unwrap_or_default(),
        content,
        thinking,
        signed_thinking: Vec::new(),
        tool_calls,
        finish_reason: finish,
        stop_sequence: None,
        usage: c.usage.map(|u| u.0.usage(usage_quirks(provider))),
    }))
}

/// Text of a `content` field that is a string, null, or an array of parts (Mistral sends
/// `[{"type":"thinking","thinking":[{"type":"text","text":..}]},{"type":"text","text":..}]`).
/// Returns (answer text, thinking text from parts).
fn content_text(content: Option<&Value>) -> (String, Option<String>) {
    match content {
        Some(Value::String(s)) => (s.clone(), None),
        Some(Value::Array(parts)) => {
            let (mut text, mut thinking) = (String::new(), String::new());
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        text.push_str(p.get("text").and_then(Value::as_str).unwrap_or_default())
                    }
                    Some("thinking") => {
                        let (t, _) = content_text(p.get("thinking"));
                        thinking.push_str(&t);
                    }
                    _ => {}
                }
            }
            (text, (!thinking.is_empty()).then_some(thinking))
        }
        _ => (String::new(), None),
    }
}

/// `reasoning_content` (DeepSeek, xAI) or `reasoning` (Groq, OpenRouter) as a string.
fn reasoning_text(msg: &Value) -> Option<String> {
    ["reasoning_content", "reasoning"]
        .iter()
        .find_map(|k| msg.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Tool arguments as JSON text: OpenAI sends a string; some providers send an object; missing
/// or empty arguments become `{}` so clients can always parse them.
fn arguments_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_) | Value::Null) | None => "{}".into(),
        Some(other) => other.to_string(),
    }
}

/// A fresh `call_` id for tool calls the upstream left unnamed.
pub fn new_call_id() -> String {
    let mut s = String::from("call_");
    for _ in 0..24 {
        s.push(fastrand::alphanumeric());
    }
    s
}

fn u(v: &Value, ptr: &str) -> Option<u64> {
    at(v, ptr).and_then(Value::as_u64)
}

/// `v.pointer(ptr)` for pointers without `~` escapes (all of ours are literals), without the two
/// `String`s `Value::pointer` builds per path segment to unescape them: a non-streamed answer
/// looks up ~10 pointers (usage fields), ~1,000 instructions each that way (callgrind).
fn at<'a>(v: &'a Value, ptr: &str) -> Option<&'a Value> {
    if ptr.contains('~') {
        return v.pointer(ptr);
    }
    let Some(path) = ptr.strip_prefix('/') else {
        return ptr.is_empty().then_some(v);
    };
    path.split('/').try_fold(v, |v, key| match v {
        Value::Object(m) => m.get(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// The `usage_quirks` providers.yaml declares for `provider` (none for a provider the catalog
/// does not know).
pub fn usage_quirks(provider: &str) -> &'static [UsageQuirk] {
    PROVIDERS
        .iter()
        .find(|p| p.name == provider)
        .map_or(&[], |p| p.usage_quirks)
}

/// Decode an OpenAI-style `usage` object into canonical token classes, correcting the provider's
/// declared `quirks`.
///
/// `cached_tokens` (OpenAI, xAI, OpenRouter) or DeepSeek's `prompt_cache_hit_tokens` are cache
/// reads; `prompt_tokens_details.cache_write_tokens` (newest OpenAI spec) are cache writes.
/// A provider-computed cost (see `reported_cost`) becomes `reported_cost_usd`.
/// With [`UsageQuirk::ReasoningOutsideCompletion`] (xAI: total = prompt + completion +
/// reasoning, tests/fixtures/xai) reasoning is added to the completion, unless `total_tokens`
/// shows it is already inside.
pub fn decode_usage(v: &Value, quirks: &[UsageQuirk]) -> Usage {
    UsageCounts {
        prompt: u(v, "/prompt_tokens"),
        completion: u(v, "/completion_tokens"),
        total: u(v, "/total_tokens"),
        reasoning: u(v, "/completion_tokens_details/reasoning_tokens"),
        cached: u(v, "/prompt_tokens_details/cached_tokens"),
        cache_hit: u(v, "/prompt_cache_hit_tokens"),
        cache_write: u(v, "/prompt_tokens_details/cache_write_tokens"),
        reported_cost: reported_cost(v),
    }
    .usage(quirks)
}

/// The counts of an OpenAI-style `usage` object (`None`: absent or not an unsigned integer), read
/// from a JSON tree ([`decode_usage`]) or a typed answer ([`WireUsage`]); one place turns them
/// into [`Usage`].
struct UsageCounts {
    prompt: Option<u64>,
    completion: Option<u64>,
    total: Option<u64>,
    reasoning: Option<u64>,
    cached: Option<u64>,
    cache_hit: Option<u64>,
    cache_write: Option<u64>,
    reported_cost: Option<f64>,
}

impl UsageCounts {
    fn usage(self, quirks: &[UsageQuirk]) -> Usage {
        let prompt = self.prompt.unwrap_or(0);
        let mut completion = self.completion.unwrap_or(0);
        let reasoning = self.reasoning.unwrap_or(0);
        if quirks.contains(&UsageQuirk::ReasoningOutsideCompletion)
            && reasoning > 0
            && self.total != Some(prompt + completion)
        {
            completion += reasoning;
        }
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            reasoning_tokens: reasoning,
            cache_read_tokens: self
                .cached
                .filter(|n| *n > 0)
                .or(self.cache_hit)
                .unwrap_or(0),
            cache_write_tokens: self.cache_write.unwrap_or(0),
            cache_write_1h_tokens: 0,
            reported_cost_usd: self.reported_cost,
            timings: None,
        }
    }
}

/// USD per xAI cost tick: `cost_in_usd_ticks` counts units of 1e-10 USD (WIRE.md 6.4: the
/// recorded grok-3-mini fixtures match its list price exactly at this scale).
const USD_PER_TICK: f64 = 1e-10;

/// The cost the provider itself computed, USD, recognised by field shape (no provider names):
/// a number `cost` (OpenRouter, USD-denominated credits), `cost.total_cost` (Perplexity, tokens +
/// search fee), or `cost_in_usd_ticks` (xAI).
fn reported_cost(v: &Value) -> Option<f64> {
    v.get("cost")
        .and_then(Value::as_f64)
        .or_else(|| at(v, "/cost/total_cost").and_then(Value::as_f64))
        .or_else(|| {
            v.get("cost_in_usd_ticks")
                .and_then(Value::as_f64)
                .map(|t| t * USD_PER_TICK)
        })
        .filter(|c| c.is_finite() && *c >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed decoding of a non-streamed answer gives what the generic one gives, for every
    /// shape the typed one accepts; the shapes it does not accept go the generic way.
    #[test]
    fn typed_decode_agrees_with_generic() {
        let bodies = [
            r#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":1}},"system_fingerprint":"fp"}"#,
            r#"{"id":"c2","model":"m","choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},{"id":"t2","function":{"name":"g","arguments":{"b":2}}},{"id":"t3","function":{"name":"h"}},{"id":"t4","function":{"name":"i","arguments":null}},{"id":"t5","function":null},{"id":"t6"}]},"finish_reason":"stop"}]}"#,
            r#"{"choices":[{"message":{"content":[{"type":"thinking","thinking":[{"type":"text","text":"hm"}]},{"type":"text","text":"A"},{"type":"text","text":"B"}]},"finish_reason":"length"}],"usage":null}"#,
            r#"{"choices":[{"message":{"content":"x","reasoning_content":"","reasoning":"r"}}],"usage":{"prompt_tokens":1,"prompt_cache_hit_tokens":5,"cost":0.5}}"#,
            r#"{"choices":[{"message":{"content":"x","reasoning":"r"},"finish_reason":null}],"usage":[]}"#,
            r#"{"choices":[{"message":{"content":"x","reasoning_content":"rc","reasoning":"r"}}]}"#,
            r#"{"choices":[{"message":null,"finish_reason":"content_filter"}]}"#,
            r#"{"choices":[{"finish_reason":"stop"}]}"#,
            r#"{"choices":[]}"#,
            r#"{"choices":null}"#,
            r#"{"choices":{"0":{"message":{"content":"x"}}}}"#,
            r#"{"id":7,"choices":[{"message":{"content":"x"}}]}"#,
            r#"{"id":"a","id":"b","choices":[{"message":{"content":"x"}}]}"#,
            r#"{"choices":[{"message":{"content":7}}]}"#,
            r#"{"choices":[{"message":"x"}]}"#,
            r#"{"choices":[{"message":{"content":"x","tool_calls":{"id":"t"}}}]}"#,
            r#"{"choices":[{"message":{"content":"x","tool_calls":["t"]}}]}"#,
            r#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":303,"prompt_tokens_details":{"cached_tokens":0,"cache_write_tokens":4},"completion_tokens_details":{"reasoning_tokens":290},"cost_in_usd_ticks":1176500}}"#,
            r#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":10,"completion_tokens":251,"cost":{"total_cost":0.005261},"prompt_tokens_details":null}}"#,
            r#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":1.5,"completion_tokens":-1,"cost":-2}}"#,
            r#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":3,"prompt_tokens_details":[]}}"#,
            r#"{"choices":[["x"]]}"#,
            r#"{"choices":[{"message":[{"content":"x"}]}]}"#,
            r#"{}"#,
            r#"[]"#,
            r#"[null,null,[{"message":{"content":"x"}}]]"#,
        ];
        let mut typed = 0;
        for body in bodies {
            let generic = serde_json::from_str::<Value>(body)
                .map_err(|e| e.to_string())
                .and_then(|v| decode_response("p", &v).map_err(|e| e.to_string()));
            if let Some(r) = decode_typed("p", body.as_bytes()) {
                typed += 1;
                assert_eq!(r.map_err(|e| e.to_string()), generic, "{body}");
            }
        }
        // The common shapes take the typed path (the test would pass vacuously otherwise).
        assert!(typed >= 10, "{typed}");
    }

    #[test]
    fn at_agrees_with_value_pointer() {
        let v = json!({"a": {"b": [1, {"c": 2}]}, "x/y": 3, "": 4});
        for p in [
            "", "/a", "/a/b", "/a/b/0", "/a/b/1/c", "/a/b/2", "/a/z", "/x~1y", "/", "a", "/a/b/x",
        ] {
            assert_eq!(at(&v, p), v.pointer(p), "{p}");
        }
    }

    #[test]
    fn xai_reasoning_outside_completion_is_normalised() {
        let v = json!({"prompt_tokens":12,"completion_tokens":1,"total_tokens":303,
            "prompt_tokens_details":{"cached_tokens":11},"completion_tokens_details":{"reasoning_tokens":290}});
        let u = decode_usage(&v, &[UsageQuirk::ReasoningOutsideCompletion]);
        // Without the quirk the counts are taken as OpenAI defines them.
        assert_eq!(decode_usage(&v, &[]).completion_tokens, 1);
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.reasoning_tokens,
                u.cache_read_tokens
            ),
            (12, 291, 290, 11)
        );
    }

    #[test]
    fn openai_reasoning_inside_completion_is_kept() {
        let v = json!({"prompt_tokens":10,"completion_tokens":300,"total_tokens":310,
            "completion_tokens_details":{"reasoning_tokens":256}});
        assert_eq!(decode_usage(&v, &[]).completion_tokens, 300);
        // A quirk-declared provider whose total shows reasoning already inside is not doubled.
        let quirk = [UsageQuirk::ReasoningOutsideCompletion];
        assert_eq!(decode_usage(&v, &quirk).completion_tokens, 300);
    }

    #[test]
    fn xai_ticks_and_perplexity_total_cost_are_reported_costs() {
        // tests/fixtures/xai/chat_reasoning_text.body.json: 1176500 ticks = $0.00011765, which is
        // grok-3-mini's list price for 10 uncached + 2 cached input and 1 + 228 output tokens.
        let v = json!({"prompt_tokens":12,"completion_tokens":1,"total_tokens":241,
            "prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":228},
            "cost_in_usd_ticks":1176500});
        let c = decode_usage(&v, &[]).reported_cost_usd.unwrap_or_default();
        assert!((c - 0.000_117_65).abs() < 1e-15, "{c}");
        let v = json!({"prompt_tokens":10,"completion_tokens":251,"total_tokens":261,
            "search_context_size":"low","cost":{"input_tokens_cost":0.00001,"output_tokens_cost":0.000251,
            "request_cost":0.005,"total_cost":0.005261}});
        assert_eq!(decode_usage(&v, &[]).reported_cost_usd, Some(0.005261));
        assert_eq!(
            decode_usage(&json!({"prompt_tokens":1}), &[]).reported_cost_usd,
            None
        );
    }

    #[test]
    fn deepseek_cache_hit_and_openrouter_cost() {
        let v = json!({"prompt_tokens":339,"completion_tokens":83,"total_tokens":422,"prompt_cache_hit_tokens":320,"cost":0.000669});
        let u = decode_usage(&v, &[]);
        assert_eq!(u.cache_read_tokens, 320);
        assert_eq!(u.reported_cost_usd, Some(0.000669));
    }
}
