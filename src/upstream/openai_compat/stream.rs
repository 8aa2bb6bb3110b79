//! OpenAI-compatible SSE stream -> canonical [`StreamEvent`]s.
//!
//! SSE framing is parsed by `eventsource-stream` (handles `\r\n`, comments such as OpenRouter's
//! `: OPENROUTER PROCESSING`, multi-line data). Normalisation: every usage object becomes a
//! `Usage` event when it arrives (counts are cumulative: the last one wins, and a stream cut short
//! keeps the latest), and `Finish` is always the last event — whatever order the provider used
//! (OpenAI sends usage after the finish chunk; Perplexity repeats it in every chunk; Groq puts it
//! under `x_groq.usage`). An `error` object in a chunk or an `event: error` frame ends the stream
//! with an error (recorded Groq and OpenRouter traffic).

use serde_json::Value;

use super::{content_text, decode_usage, usage_quirks};
use crate::canonical::{FinishReason, StreamEvent};
use crate::error::ApiError;
use crate::upstream::sse::{self, Pending, SseDecoder};
use crate::upstream::{ByteStream, EventStream, error_message_from_json};

/// The parts of a `chat.completion.chunk` the decoder reads; everything else (id, model,
/// citations, ...) is skipped by serde instead of being built into a JSON tree per chunk. `D` is
/// a choice's `delta`: typed [`TypedDelta`] first, a generic `Value` for shapes it does not take.
#[derive(serde::Deserialize)]
struct Chunk<D> {
    #[serde(default = "Vec::new")]
    choices: Vec<Choice<D>>,
    #[serde(default)]
    usage: Value,
    /// Groq puts usage under `x_groq.usage`.
    #[serde(default)]
    x_groq: Value,
    /// OpenRouter / OpenAI mid-stream errors.
    #[serde(default)]
    error: Value,
}

#[derive(serde::Deserialize)]
struct Choice<D> {
    #[serde(default = "Option::default")]
    delta: Option<D>,
    #[serde(default)]
    finish_reason: Value,
}

/// The fields of a `delta` object the decoder reads, without a map per chunk (a content token is
/// one string). Any other shape (a repeated field, a non-object `delta`) fails the typed chunk,
/// which is then decoded with a `Value` delta: same events as ever.
type TypedDelta = super::Obj<DeltaFields>;

#[derive(serde::Deserialize)]
struct DeltaFields {
    #[serde(default)]
    content: Value,
    #[serde(default)]
    reasoning_content: Value,
    #[serde(default)]
    reasoning: Value,
    #[serde(default)]
    tool_calls: Value,
}

/// A `delta` as the decoder reads it: a field by name (`None` or `Null`: absent).
trait DeltaView {
    /// Whether the delta is an object (anything else is skipped).
    fn is_object(&self) -> bool;
    fn field(&self, key: &str) -> Option<&Value>;
}

impl DeltaView for Value {
    fn is_object(&self) -> bool {
        Value::is_object(self)
    }
    fn field(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }
}

impl DeltaView for TypedDelta {
    fn is_object(&self) -> bool {
        true
    }
    fn field(&self, key: &str) -> Option<&Value> {
        let d = &self.0;
        match key {
            "content" => Some(&d.content),
            "reasoning_content" => Some(&d.reasoning_content),
            "reasoning" => Some(&d.reasoning),
            "tool_calls" => Some(&d.tool_calls),
            _ => None,
        }
    }
}

struct State {
    provider: &'static str,
    out: Pending,
    finish: Option<FinishReason>,
    saw_tool_call: bool,
    /// Whether `data: [DONE]` arrived.
    done: bool,
    /// Whether any choice arrived.
    saw_any: bool,
    /// Ids of the tool calls seen so far, by index (for providers that omit `index`).
    tool_ids: Vec<Option<String>>,
    /// The provider's usage quirks, looked up once per stream (some providers send usage in
    /// every chunk).
    usage_quirks: &'static [crate::catalog::UsageQuirk],
}

/// Largest tool-call index accepted; a larger one is a broken upstream, not a real response.
const MAX_TOOL_CALLS: usize = 128;

/// Decode an OpenAI-style SSE body.
pub fn decode(provider: &'static str, body: ByteStream) -> EventStream {
    sse::decode(
        body,
        State {
            provider,
            out: Pending::default(),
            finish: None,
            saw_tool_call: false,
            done: false,
            saw_any: false,
            tool_ids: Vec::new(),
            usage_quirks: usage_quirks(provider),
        },
    )
}

impl SseDecoder for State {
    fn provider(&self) -> &'static str {
        self.provider
    }
    fn pending(&mut self) -> &mut Pending {
        &mut self.out
    }
    fn on_event(&mut self, event: &str, data: &str) {
        State::on_event(self, event, data);
    }
    /// End of body: complete only if the upstream said so (`[DONE]` or a finish reason).
    fn on_end(&mut self) {
        if self.done || self.finish.is_some() {
            self.finish_stream();
        } else {
            self.out.fail(sse::cut(self.provider));
        }
    }
}

impl State {
    fn finish_stream(&mut self) {
        self.out.ended = true;
        let mut reason = self.finish.unwrap_or(FinishReason::Stop);
        if self.saw_tool_call && reason == FinishReason::Stop {
            reason = FinishReason::ToolCalls;
        }
        self.out.queue.push_back(Ok(StreamEvent::Finish(reason)));
    }

    fn fail(&mut self, message: String) {
        self.out.ended = true;
        self.out.queue.clear();
        self.out.queue.push_back(Err(ApiError::UpstreamStream {
            provider: self.provider,
            message,
        }));
    }

    fn on_event(&mut self, event: &str, data: &str) {
        let data = data.trim();
        if data.is_empty() {
            return;
        }
        if data == "[DONE]" {
            self.done = true;
            if self.finish.is_none() && !self.saw_any {
                self.out.fail(ApiError::UpstreamInvalid {
                    provider: self.provider,
                    reason: "the stream ended without an answer".into(),
                });
                return;
            }
            self.finish_stream();
            return;
        }
        if let Ok(v) = serde_json::from_str::<Chunk<TypedDelta>>(data) {
            self.on_chunk(event, data, v);
            return;
        }
        match serde_json::from_str::<Chunk<Value>>(data) {
            Ok(v) => self.on_chunk(event, data, v),
            Err(e) => {
                self.out.fail(ApiError::UpstreamInvalid {
                    provider: self.provider,
                    reason: format!("bad stream chunk: {e}"),
                });
            }
        }
    }

    fn on_chunk<D: DeltaView>(&mut self, event: &str, data: &str, v: Chunk<D>) {
        if event == "error" || !v.error.is_null() {
            self.fail(error_message_from_json(data.as_bytes()));
            return;
        }
        if let Some(u) = Some(&v.usage)
            .filter(|u| u.is_object())
            .or_else(|| v.x_groq.get("usage").filter(|u| u.is_object()))
        {
            // Emitted as it arrives (cumulative counts), so a stream cut short still accounts
            // for the tokens reported so far (Perplexity repeats a running usage in every chunk).
            self.out
                .queue
                .push_back(Ok(StreamEvent::Usage(decode_usage(u, self.usage_quirks))));
        }
        let Some(choice) = v.choices.first() else {
            return;
        };
        if let Some(delta) = choice.delta.as_ref().filter(|d| d.is_object()) {
            for key in ["reasoning_content", "reasoning"] {
                if let Some(t) = delta
                    .field(key)
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    self.out
                        .queue
                        .push_back(Ok(StreamEvent::ThinkingDelta(t.to_string())));
                    break;
                }
            }
            let (text, thinking) = content_text(delta.field("content"));
            if let Some(t) = thinking {
                self.out.queue.push_back(Ok(StreamEvent::ThinkingDelta(t)));
            }
            if !text.is_empty() {
                self.out.queue.push_back(Ok(StreamEvent::TextDelta(text)));
            }
            if let Some(calls) = delta.field("tool_calls").and_then(Value::as_array) {
                for c in calls {
                    self.saw_tool_call = true;
                    let id = c
                        .get("id")
                        .and_then(Value::as_str)
                        .filter(|id| !id.is_empty());
                    let index = match c.get("index").and_then(Value::as_u64) {
                        Some(i) => i as usize,
                        // No index (some compatible providers): a new id starts a new call,
                        // fragments without an id continue the last one.
                        None => match id {
                            Some(id) => self
                                .tool_ids
                                .iter()
                                .position(|t| t.as_deref() == Some(id))
                                .unwrap_or(self.tool_ids.len()),
                            None => self.tool_ids.len().saturating_sub(1),
                        },
                    };
                    if index >= MAX_TOOL_CALLS {
                        self.fail(format!("tool call index {index} is out of range"));
                        return;
                    }
                    if self.tool_ids.len() <= index {
                        self.tool_ids.resize(index + 1, None);
                    }
                    if let Some(id) = id {
                        self.tool_ids[index] = Some(id.to_string());
                    }
                    let index = index as u32;
                    let arguments = match super::at(c, "/function/arguments") {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Null) | None => String::new(),
                        Some(other) => other.to_string(),
                    };
                    self.out.queue.push_back(Ok(StreamEvent::ToolCallDelta {
                        index,
                        id: c.get("id").and_then(Value::as_str).map(str::to_string),
                        name: super::at(c, "/function/name")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        arguments,
                    }));
                }
            }
        }
        if let Some(r) = choice.finish_reason.as_str() {
            if r == "error" {
                self.fail("the upstream reported an error mid-stream".into());
                return;
            }
            self.finish = Some(FinishReason::from_openai(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            provider: "p",
            out: Pending::default(),
            finish: None,
            saw_tool_call: false,
            done: false,
            saw_any: false,
            tool_ids: Vec::new(),
            usage_quirks: &[],
        }
    }

    /// The typed `delta` gives the events the generic `Value` delta gives, and the shapes it does
    /// not take (repeated field, non-object delta) still decode, through the generic path.
    #[test]
    fn typed_delta_agrees_with_generic() {
        let chunks = [
            r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"choices":[{"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}"#,
            r#"{"choices":[{"delta":{"reasoning_content":"","reasoning":"think"}}]}"#,
            r#"{"choices":[{"delta":{"reasoning_content":"rc","content":[{"type":"thinking","thinking":[{"type":"text","text":"t"}]},{"type":"text","text":"x"}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"t1","function":{"name":"f","arguments":"{\"a\""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":{"b":1}}}]}}]}"#,
            r#"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#,
            r#"{"choices":[{"delta":"text"}]}"#,
            r#"{"choices":[{"delta":null,"finish_reason":"length"}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
            r#"{"choices":[],"x_groq":{"usage":{"prompt_tokens":1}}}"#,
        ];
        let mut typed_ok = 0;
        for data in chunks {
            let (mut typed, mut generic) = (state(), state());
            if let Ok(v) = serde_json::from_str::<Chunk<TypedDelta>>(data) {
                typed_ok += 1;
                typed.on_chunk("", data, v);
                let v = serde_json::from_str::<Chunk<Value>>(data).unwrap();
                generic.on_chunk("", data, v);
                assert_eq!(
                    format!("{:?} {:?}", typed.out, typed.finish),
                    format!("{:?} {:?}", generic.out, generic.finish),
                    "{data}"
                );
            }
            // Whatever the path, on_event decodes every chunk (no "bad stream chunk").
            let mut s = state();
            s.on_event("", data);
            assert!(s.out.queue.iter().all(Result::is_ok), "{data}");
        }
        assert!(typed_ok >= 8, "{typed_ok}");
    }
}
