//! Anthropic Messages SSE stream -> canonical [`StreamEvent`]s.
//!
//! Event order (anthropic-sdk-python `_streaming.py`, `types/raw_message_stream_event.py`; WIRE.md
//! §4.5): `message_start`, then per content block `content_block_start`, deltas
//! (`text_delta`, `thinking_delta`, `input_json_delta`, `signature_delta`, `citations_delta`),
//! `content_block_stop`; `message_delta` (stop reason, cumulative usage), `message_stop`; `ping`
//! anywhere; `error` in-band once the HTTP status is already 200. Dispatch is on the payload's
//! `type`, which always equals the `event:` name.
//!
//! Normalisation: a `tool_use` block becomes tool call `k` (0-based among the message's tool
//! calls, not the block index), its `partial_json` pieces are argument fragments; usage from
//! `message_start` is merged with each `message_delta` and the running total is emitted as a
//! `Usage` event every time (the last one before `Finish` is final), so a stream cut short still
//! carries the input tokens already billed. A body that ends before `message_stop` is an error, never a silent end.

use serde_json::Value;

use super::{RawUsage, finish_reason};
use crate::canonical::{FinishReason, StreamEvent};
use crate::error::ApiError;
use crate::upstream::sse::{self, Pending, SseDecoder};
use crate::upstream::{ByteStream, EventStream, error_message_from_json};

/// HTTP status of an Anthropic error `type` (anthropic-sdk-python `types/shared/error_type.py`;
/// platform.claude.com/docs/en/api/errors; WIRE.md §4.6). Unknown types are a bad gateway.
pub fn status_of_error_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "conflict_error" => 409,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 502,
    }
}

/// Most content blocks accepted in one message; more is a broken upstream.
const MAX_BLOCKS: usize = 1024;

struct State {
    provider: &'static str,
    out: Pending,
    usage: RawUsage,
    finish: Option<FinishReason>,
    /// Per content-block index: the tool-call index of a `tool_use` block.
    tool_of_block: Vec<Option<u32>>,
    tools: u32,
}

/// Decode an Anthropic SSE body.
pub fn decode(provider: &'static str, body: ByteStream) -> EventStream {
    sse::decode(
        body,
        State {
            provider,
            out: Pending::default(),
            usage: RawUsage::default(),
            finish: None,
            tool_of_block: Vec::new(),
            tools: 0,
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
    fn on_event(&mut self, _event: &str, data: &str) {
        State::on_event(self, data);
    }
    // `message_stop` ends a complete stream itself: a body ending before it was cut (default).
}

impl State {
    fn fail(&mut self, err: ApiError) {
        self.out.fail(err);
    }

    /// Merge a `usage` object and pass the running total on at once (input tokens are known at
    /// `message_start`): a stream cut short (client gone, upstream failure) still accounts for
    /// what was billed so far. Counts are cumulative, so later events replace earlier ones.
    fn on_usage(&mut self, u: &Value) {
        self.usage.merge(u);
        self.out
            .queue
            .push_back(Ok(StreamEvent::Usage(self.usage.canonical())));
    }

    fn finish_stream(&mut self) {
        self.out.ended = true;
        let mut reason = self.finish.unwrap_or(FinishReason::Stop);
        if self.tools > 0 && reason == FinishReason::Stop {
            reason = FinishReason::ToolCalls;
        }
        self.out.queue.push_back(Ok(StreamEvent::Finish(reason)));
    }

    fn on_event(&mut self, data: &str) {
        let data = data.trim();
        if data.is_empty() {
            return;
        }
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                return self.fail(ApiError::UpstreamInvalid {
                    provider: self.provider,
                    reason: format!("bad stream event: {e}"),
                });
            }
        };
        let index = v.get("index").and_then(Value::as_u64).map(|i| i as usize);
        match v.get("type").and_then(Value::as_str).unwrap_or_default() {
            "message_start" => {
                if let Some(u) = v.pointer("/message/usage").filter(|u| u.is_object()) {
                    self.on_usage(u);
                }
            }
            "content_block_start" => {
                let Some(i) = index.filter(|i| *i < MAX_BLOCKS) else {
                    return self.fail(ApiError::UpstreamInvalid {
                        provider: self.provider,
                        reason: "content block index missing or out of range".into(),
                    });
                };
                // Borrowed, not cloned: this runs for every token.
                let block = v.get("content_block").unwrap_or(&Value::Null);
                let text = |k: &str| block.get(k).and_then(Value::as_str).unwrap_or_default();
                match block.get("type").and_then(Value::as_str) {
                    Some("text") if !text("text").is_empty() => {
                        self.out
                            .queue
                            .push_back(Ok(StreamEvent::TextDelta(text("text").to_string())));
                    }
                    Some("thinking") if !text("thinking").is_empty() => {
                        self.out.queue.push_back(Ok(StreamEvent::ThinkingDelta(
                            text("thinking").to_string(),
                        )));
                    }
                    Some("redacted_thinking") => {
                        self.out
                            .queue
                            .push_back(Ok(StreamEvent::RedactedThinking(text("data").to_string())));
                    }
                    Some("tool_use") => {
                        if self.tools as usize >= MAX_BLOCKS {
                            return self.fail(ApiError::UpstreamInvalid {
                                provider: self.provider,
                                reason: "too many tool calls".into(),
                            });
                        }
                        if self.tool_of_block.len() <= i {
                            self.tool_of_block.resize(i + 1, None);
                        }
                        let k = self.tools;
                        self.tools += 1;
                        self.tool_of_block[i] = Some(k);
                        // `input` is `{}` at start; the arguments arrive as input_json_delta.
                        let initial = block
                            .get("input")
                            .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                            .map(Value::to_string)
                            .unwrap_or_default();
                        self.out.queue.push_back(Ok(StreamEvent::ToolCallDelta {
                            index: k,
                            id: Some(text("id"))
                                .filter(|s| !s.is_empty())
                                .map(str::to_string),
                            name: Some(text("name").to_string()),
                            arguments: initial,
                        }));
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                // Borrowed, not cloned: this runs for every token.
                let delta = v.get("delta").unwrap_or(&Value::Null);
                let text = |k: &str| delta.get(k).and_then(Value::as_str).unwrap_or_default();
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let t = text("text");
                        if !t.is_empty() {
                            self.out
                                .queue
                                .push_back(Ok(StreamEvent::TextDelta(t.to_string())));
                        }
                    }
                    Some("thinking_delta") => {
                        let t = text("thinking");
                        if !t.is_empty() {
                            self.out
                                .queue
                                .push_back(Ok(StreamEvent::ThinkingDelta(t.to_string())));
                        }
                    }
                    Some("input_json_delta") => {
                        let part = text("partial_json");
                        let tool = index.and_then(|i| self.tool_of_block.get(i).copied().flatten());
                        match tool {
                            Some(k) if !part.is_empty() => {
                                self.out.queue.push_back(Ok(StreamEvent::ToolCallDelta {
                                    index: k,
                                    id: None,
                                    name: None,
                                    arguments: part.to_string(),
                                }));
                            }
                            Some(_) => {}
                            None => self.fail(ApiError::UpstreamInvalid {
                                provider: self.provider,
                                reason: "input_json_delta outside a tool_use block".into(),
                            }),
                        }
                    }
                    // The signature closing a thinking block, for clients that echo it.
                    Some("signature_delta") => {
                        let s = text("signature");
                        if !s.is_empty() {
                            self.out
                                .queue
                                .push_back(Ok(StreamEvent::ThinkingSignature(s.to_string())));
                        }
                    }
                    // citations_delta: nothing a client API carries.
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.finish = Some(finish_reason(r));
                }
                if let Some(s) = v.pointer("/delta/stop_sequence").and_then(Value::as_str) {
                    self.out
                        .queue
                        .push_back(Ok(StreamEvent::StopSequence(s.to_string())));
                }
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    self.on_usage(u);
                }
            }
            "message_stop" => self.finish_stream(),
            "error" => {
                // The error's type says what an HTTP status would have (WIRE.md §4.6): an
                // overload before the first token reaches the client as 529, not a generic 502.
                let kind = v.pointer("/error/type").and_then(Value::as_str);
                self.fail(ApiError::Upstream {
                    provider: self.provider,
                    status: kind.map_or(502, status_of_error_type),
                    message: error_message_from_json(data.as_bytes()),
                    retry_after: None,
                    code: kind.map(str::to_string),
                    param: None,
                })
            }
            // ping, content_block_stop, and event types added later.
            _ => {}
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
            usage: RawUsage::default(),
            finish: None,
            tool_of_block: Vec::new(),
            tools: 0,
        }
    }

    fn last_usage(s: &State) -> crate::canonical::Usage {
        s.out
            .queue
            .iter()
            .rev()
            .find_map(|e| match e {
                Ok(StreamEvent::Usage(u)) => Some(*u),
                _ => None,
            })
            .unwrap()
    }

    /// `message_start` and `message_delta` shaped as WIRE.md §4.5 and the recorded streams show
    /// them (e.g. fixture `anthropic/messages_stream_thinking.yaml`: the split only in
    /// `message_start`, `message_delta` repeating the cumulative counts without it), with cache
    /// reads and writes, 300 of the writes 1-hour ones, and the model name replaced.
    #[test]
    fn one_hour_cache_writes_from_message_start_survive_message_delta() {
        let mut s = state();
        s.on_event(
            r#"{"type":"message_start","message":{"model":"m","id":"msg_01QC4g3HwBThD4BaNtBckFDJ","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":418,"cache_read_input_tokens":1111,"cache_creation":{"ephemeral_5m_input_tokens":118,"ephemeral_1h_input_tokens":300},"output_tokens":1,"service_tier":"standard","inference_geo":"not_available"}}}"#,
        );
        let u = last_usage(&s);
        assert_eq!(
            (
                u.prompt_tokens,
                u.cache_write_tokens,
                u.cache_write_1h_tokens
            ),
            (1541, 418, 300)
        );
        s.on_event(
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":12,"cache_creation_input_tokens":418,"cache_read_input_tokens":1111,"output_tokens":30}}"#,
        );
        let u = last_usage(&s);
        assert_eq!(
            (
                u.prompt_tokens,
                u.cache_write_tokens,
                u.cache_write_1h_tokens,
                u.completion_tokens
            ),
            (1541, 418, 300, 30)
        );
        // A `message_delta` that carries the split too (allowed by the SDK types) updates it.
        s.on_event(
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"cache_creation_input_tokens":418,"cache_creation":{"ephemeral_5m_input_tokens":18,"ephemeral_1h_input_tokens":400},"output_tokens":31}}"#,
        );
        assert_eq!(last_usage(&s).cache_write_1h_tokens, 400);
    }
}
