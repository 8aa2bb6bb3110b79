//! The Ollama native dialect: `POST {base}/api/chat` (Ollama `api/types.go` `ChatRequest` /
//! `ChatResponse`, WIRE.md §2.2-2.5 and §7), used for Ollama servers configured as upstreams
//! (`OLLAMA_INSTANCES`, see `crate::instances`) and for any providers.yaml row with `wire: ollama`.
//!
//! Request: system prompts become leading `role:"system"` messages; images go into a message's
//! `images` as bare base64 (Ollama accepts no URLs and no MIME type); assistant tool calls carry
//! their arguments as a JSON **object**; tool results carry `tool_name` (recovered from the call
//! they answer) and `tool_call_id`; sampling goes into `options` (`num_predict` for the
//! completion limit) over the client's own raw `options` and `keep_alive` when it spoke the
//! Ollama API (`ChatRequest::passthrough`: `num_ctx`, `repeat_penalty`, ... reach the server);
//! `format` is `"json"` or a schema; `think` is a bool or a level.
//! `stream` is always sent (Ollama streams when it is omitted).
//!
//! Response: `message.content`/`thinking`/`tool_calls`, usage from `prompt_eval_count` and
//! `eval_count` (tokens) with the server's durations (`Usage::timings`), `done_reason` `stop` (`tool_calls` when the answer has tool calls) or
//! `length`. Streams are NDJSON, decoded in `stream`.

mod stream;

pub use stream::{MAX_LINE_BYTES, lines};

use serde_json::{Map, Value, json};

use super::{ByteStream, Dialect, EventStream, UpstreamRequest};
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, FinishReason, ResponseFormat, Role, Timings, ToolCall,
    ToolChoice, Usage,
};
use crate::catalog::ModelId;
use crate::error::ApiError;

/// Path of the chat endpoint below an Ollama server's base URL.
pub const CHAT_PATH: &str = "/api/chat";

/// Ollama native upstream dialect.
pub struct Ollama;

impl Dialect for Ollama {
    /// Ollama servers take only base64 `images` (WIRE.md §7.3): URLs are fetched first.
    fn takes_image_url(&self, _url: &str) -> bool {
        false
    }

    fn encode(&self, model: ModelId, req: &ChatRequest) -> Result<UpstreamRequest, ApiError> {
        Ok(UpstreamRequest {
            path: CHAT_PATH.into(),
            body: encode_chat(model.info().id, req)?,
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
}

/// Send `req` to the instance serving `m`: `POST {base}/api/chat`, no auth header (Ollama has
/// none; credentials in the instance URL go out as HTTP Basic auth, for a reverse proxy). A 404
/// (model removed there since the last discovery) also triggers a background re-discovery.
///
/// Errors: as [`encode_chat`], plus transport failures and upstream statuses
/// (`client::send_request`), named after the instance.
pub async fn send_to_instance(
    state: &crate::relay::AppState,
    m: &crate::instances::InstanceModel,
    req: &ChatRequest,
) -> Result<(&'static dyn Dialect, super::client::Upstream), ApiError> {
    let body = encode_chat(&m.model, req)?;
    let upstream = post_to_instance(state, &m.base_url, m.instance, CHAT_PATH, body)
        .await
        .inspect_err(|e| {
            // The model was removed from the instance since the last discovery: re-discover.
            if e.status() == 404 {
                state.instances.refresh_soon(&state.client);
            }
        })?;
    Ok((&Ollama, upstream))
}

/// POST the JSON `body` to `path` of the Ollama server `instance` at `base_url` (no auth: Ollama
/// servers take none) and check the status, as every request llm-relay sends an instance does
/// (chat, embeddings, loads, pulls).
///
/// Errors: the server's status and message (kept), transport failures (502/504).
pub async fn post_to_instance(
    state: &crate::relay::AppState,
    base_url: &str,
    instance: &'static str,
    path: &str,
    body: Vec<u8>,
) -> Result<super::client::Upstream, ApiError> {
    let rb = state
        .client
        .post(format!("{base_url}{path}"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    super::client::send_request(rb, instance, &Ollama, &state.config).await
}

/// Serialized `/api/chat` body for `model` (the name exactly as the Ollama server lists it).
///
/// Errors: a request Ollama cannot express (400): an image given by URL, tool-call arguments that
/// are not a JSON object.
pub fn encode_chat(model: &str, req: &ChatRequest) -> Result<Vec<u8>, ApiError> {
    let body = encode_body(model, req)?;
    serde_json::to_vec(&body)
        .map_err(|e| ApiError::BadRequest(format!("cannot encode request: {e}")))
}

/// The `/api/chat` JSON body. Public for snapshot tests of canonical -> dialect requests.
///
/// Errors: as [`encode_chat`].
pub fn encode_body(model: &str, req: &ChatRequest) -> Result<Value, ApiError> {
    let mut m = Map::new();
    m.insert("model".into(), model.into());
    m.insert("messages".into(), Value::Array(encode_messages(req)?));
    m.insert("stream".into(), req.stream.into());
    // tool_choice "none" means no tools (WIRE.md §7.4: Ollama has no tool_choice); "required"
    // and a named function cannot be enforced and are left to the model.
    let no_tools = matches!(req.tool_choice, Some(ToolChoice::None));
    if !req.tools.is_empty() && !no_tools {
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
                json!({"type": "function", "function": f})
            })
            .collect();
        m.insert("tools".into(), Value::Array(tools));
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            m.insert("format".into(), "json".into());
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            m.insert("format".into(), schema.clone());
        }
    }
    if let Some(think) = think(req) {
        m.insert("think".into(), think);
    }
    // The client's own native fields (Ollama frontend): its raw `options` under the mapped
    // canonical ones, and `keep_alive` etc. as they are.
    let mut options = Map::new();
    for (k, v) in req.passthrough.iter().flatten() {
        match (k.as_str(), v) {
            ("options", Value::Object(raw)) => options.clone_from(raw),
            ("options", _) => {}
            _ => {
                m.entry(k.as_str()).or_insert_with(|| v.clone());
            }
        }
    }
    options.extend(encode_options(req));
    if !options.is_empty() {
        m.insert("options".into(), Value::Object(options));
    }
    Ok(Value::Object(m))
}

/// Ollama `think`: an explicit switch wins; otherwise the reasoning effort, mapped as Ollama's own
/// OpenAI layer does (WIRE.md §2.9): `none` -> `false`, `minimal` -> `"low"`, `xhigh`/`ultra` ->
/// `"max"`, `low|medium|high|max` as they are. Unknown levels are not sent.
fn think(req: &ChatRequest) -> Option<Value> {
    if let Some(on) = req.think {
        return Some(on.into());
    }
    let effort = req.reasoning_effort.as_deref()?.to_ascii_lowercase();
    match effort.as_str() {
        "none" => Some(false.into()),
        "minimal" => Some("low".into()),
        "low" | "medium" | "high" | "max" => Some(effort.into()),
        "xhigh" | "ultra" => Some("max".into()),
        _ => None,
    }
}

/// `options` (api.Options, WIRE.md §2.5): only what the client set.
fn encode_options(req: &ChatRequest) -> Map<String, Value> {
    let mut o = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            o.insert(k.into(), v);
        }
    };
    put("temperature", req.temperature.map(Value::from));
    put("top_p", req.top_p.map(Value::from));
    put("top_k", req.top_k.map(Value::from));
    put("num_predict", req.max_tokens.map(Value::from));
    put("stop", (!req.stop.is_empty()).then(|| json!(req.stop)));
    put("seed", req.seed.map(Value::from));
    put("presence_penalty", req.presence_penalty.map(Value::from));
    put("frequency_penalty", req.frequency_penalty.map(Value::from));
    o
}

fn encode_messages(req: &ChatRequest) -> Result<Vec<Value>, ApiError> {
    let mut out: Vec<Value> = req
        .system
        .iter()
        .map(|s| json!({"role": "system", "content": s}))
        .collect();
    // Tool results name the tool they answer (`tool_name`); recover it from the call id.
    let mut calls: Vec<(&str, &str)> = Vec::new();
    for msg in &req.messages {
        let role = match msg.role {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        };
        let mut m = Map::new();
        m.insert("role".into(), role.into());
        m.insert("content".into(), msg.joined_text().into());
        let mut images = Vec::new();
        for p in &msg.content {
            match p {
                ContentPart::Text(_) => {}
                ContentPart::Image { data, .. } => images.push(Value::from(data.as_str())),
                ContentPart::ImageUrl(_) => {
                    return Err(ApiError::BadRequest(
                        "Ollama servers accept only inline images: send the image as base64 \
                         (a data: URL), not as an http(s) URL"
                            .into(),
                    ));
                }
            }
        }
        if !images.is_empty() {
            m.insert("images".into(), Value::Array(images));
        }
        if let Some(t) = msg.thinking.as_deref().filter(|t| !t.is_empty()) {
            m.insert("thinking".into(), t.into());
        }
        if !msg.tool_calls.is_empty() {
            let mut list = Vec::with_capacity(msg.tool_calls.len());
            for (i, c) in msg.tool_calls.iter().enumerate() {
                calls.push((c.id.as_str(), c.name.as_str()));
                list.push(json!({
                    "id": c.id,
                    "function": {"index": i, "name": c.name, "arguments": arguments_object(c)?},
                }));
            }
            m.insert("tool_calls".into(), Value::Array(list));
        }
        if msg.role == Role::Tool {
            let by_id = msg
                .tool_call_id
                .as_deref()
                .and_then(|id| calls.iter().find(|(i, _)| *i == id).map(|(_, n)| *n));
            if let Some(name) = msg.name.as_deref().or(by_id) {
                m.insert("tool_name".into(), name.into());
            }
            if let Some(id) = &msg.tool_call_id {
                m.insert("tool_call_id".into(), id.clone().into());
            }
        }
        out.push(Value::Object(m));
    }
    Ok(out)
}

/// Canonical arguments (JSON text) as the object Ollama expects; empty text is `{}`.
fn arguments_object(c: &ToolCall) -> Result<Value, ApiError> {
    if c.arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(&c.arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(ApiError::BadRequest(format!(
            "arguments of tool call '{}' must be a JSON object for Ollama",
            c.name
        ))),
    }
}

/// Ollama tool calls (`[{id?, function:{index, name, arguments:{obj}}}]`) in canonical form;
/// missing ids are generated.
fn decode_tool_calls(v: &Value) -> Vec<ToolCall> {
    let Some(list) = v.as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|c| {
            let f = c.get("function")?;
            let name = f.get("name")?.as_str()?.to_string();
            let arguments = match f.get("arguments") {
                None | Some(Value::Null) => "{}".to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(a) => a.to_string(),
            };
            let id = c
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map_or_else(super::openai_compat::new_call_id, str::to_string);
            Some(ToolCall {
                id,
                name,
                arguments,
            })
        })
        .collect()
}

/// `done_reason` -> canonical (WIRE.md §7.1): `length` is Length; `stop` (and anything else) is
/// Stop, or ToolCalls when the answer called tools.
fn finish_reason(done_reason: Option<&str>, called_tools: bool) -> FinishReason {
    match done_reason {
        Some("length") => FinishReason::Length,
        _ if called_tools => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// Usage from the final object's `prompt_eval_count` / `eval_count` (tokens) and its durations
/// (`total_duration`, `load_duration`, `prompt_eval_duration`, `eval_duration`, ns), when present.
fn decode_usage(v: &Value) -> Option<Usage> {
    let prompt = v.get("prompt_eval_count").and_then(Value::as_u64);
    let completion = v.get("eval_count").and_then(Value::as_u64);
    let ns = |k: &str| v.get(k).and_then(Value::as_u64);
    let timings = Timings {
        total_duration: ns("total_duration"),
        load_duration: ns("load_duration"),
        prompt_eval_duration: ns("prompt_eval_duration"),
        eval_duration: ns("eval_duration"),
    };
    let timings = (timings != Timings::default()).then_some(timings);
    if prompt.is_none() && completion.is_none() && timings.is_none() {
        return None;
    }
    Some(Usage {
        prompt_tokens: prompt.unwrap_or(0),
        completion_tokens: completion.unwrap_or(0),
        timings,
        ..Usage::default()
    })
}

/// Decode a complete (`stream:false`) `/api/chat` answer.
///
/// Errors: `UpstreamStream` for an `{"error":...}` body, `UpstreamInvalid` without `message`.
pub fn decode_response(provider: &'static str, v: &Value) -> Result<ChatResponse, ApiError> {
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Err(ApiError::UpstreamStream {
            provider,
            message: e.to_string(),
        });
    }
    let msg = v.get("message").ok_or_else(|| ApiError::UpstreamInvalid {
        provider,
        reason: "no message in the answer".into(),
    })?;
    let text = |k: &str| msg.get(k).and_then(Value::as_str).unwrap_or_default();
    let tool_calls = msg
        .get("tool_calls")
        .map(decode_tool_calls)
        .unwrap_or_default();
    let thinking = Some(text("thinking")).filter(|t| !t.is_empty());
    Ok(ChatResponse {
        id: None,
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        content: text("content").to_string(),
        thinking: thinking.map(str::to_string),
        signed_thinking: Vec::new(),
        finish_reason: finish_reason(
            v.get("done_reason").and_then(Value::as_str),
            !tool_calls.is_empty(),
        ),
        stop_sequence: None,
        tool_calls,
        usage: decode_usage(v),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{Message, Tool};

    #[test]
    fn encodes_messages_tools_format_options_think() {
        let mut assistant = Message::text(Role::Assistant, "");
        assistant.tool_calls.push(ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Tokyo"}"#.into(),
        });
        let mut tool = Message::text(Role::Tool, "sunny");
        tool.tool_call_id = Some("call_1".into());
        let mut user = Message::text(Role::User, "what is this?");
        user.content.push(ContentPart::Image {
            media_type: "image/png".into(),
            data: "iVBORw0KGgo=".into(),
        });
        let req = ChatRequest {
            model: "x".into(),
            system: vec!["be brief".into()],
            messages: vec![user, assistant, tool],
            max_tokens: Some(50),
            temperature: Some(0.0),
            stop: vec!["\n\n".into()],
            tools: vec![Tool {
                name: "get_weather".into(),
                description: None,
                parameters: json!({"type": "object"}),
                strict: None,
            }],
            response_format: Some(ResponseFormat::JsonObject),
            reasoning_effort: Some("minimal".into()),
            ..ChatRequest::default()
        };
        let v = encode_body("llama3.2:latest", &req).ok();
        let expected = json!({
            "model": "llama3.2:latest",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "what is this?", "images": ["iVBORw0KGgo="]},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "call_1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}}}]},
                {"role": "tool", "content": "sunny", "tool_name": "get_weather", "tool_call_id": "call_1"},
            ],
            "stream": false,
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            "format": "json",
            "think": "low",
            "options": {"temperature": 0.0, "num_predict": 50, "stop": ["\n\n"]},
        });
        assert_eq!(v, Some(expected));
    }

    #[test]
    fn rejects_image_urls_and_non_object_arguments() {
        let mut user = Message::text(Role::User, "x");
        user.content
            .push(ContentPart::ImageUrl("https://example.com/a.png".into()));
        let req = ChatRequest {
            messages: vec![user],
            ..ChatRequest::default()
        };
        assert!(matches!(
            encode_body("m", &req),
            Err(ApiError::BadRequest(_))
        ));
        let mut a = Message::text(Role::Assistant, "");
        a.tool_calls.push(ToolCall {
            id: "c".into(),
            name: "f".into(),
            arguments: "[1]".into(),
        });
        let req = ChatRequest {
            messages: vec![a],
            ..ChatRequest::default()
        };
        assert!(matches!(
            encode_body("m", &req),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn decodes_recorded_tool_call_answer() {
        // tests/fixtures/ollama/cloud_chat_tool_call_thinking.httprr (response body).
        let v = json!({"model":"gpt-oss:120b","created_at":"2026-03-03T23:44:44.118089028Z","message":{"role":"assistant","content":"","thinking":"User asks about weather in San Francisco. Use function getWeather.","tool_calls":[{"id":"call_mo1wm122","function":{"index":0,"name":"getWeather","arguments":{"location":"San Francisco, CA"}}}]},"done":true,"done_reason":"stop","total_duration":603200867,"prompt_eval_count":145,"eval_count":44});
        let r = decode_response("t", &v).ok();
        let r = r.as_ref();
        assert_eq!(r.map(|r| r.finish_reason), Some(FinishReason::ToolCalls));
        assert_eq!(
            r.map(|r| r.tool_calls.clone()),
            Some(vec![ToolCall {
                id: "call_mo1wm122".into(),
                name: "getWeather".into(),
                arguments: r#"{"location":"San Francisco, CA"}"#.into(),
            }])
        );
        assert_eq!(
            r.and_then(|r| r.usage)
                .map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((145, 44))
        );
        assert!(r.is_some_and(|r| r.thinking.is_some()));
    }
}
