//! Gemini `streamGenerateContent?alt=sse` -> canonical [`StreamEvent`]s.
//!
//! Each SSE `data:` is a whole `GenerateContentResponse` holding only the new parts (WIRE.md
//! §5.4; CRLF framing is handled by `eventsource-stream`). Text parts become text deltas, `thought`
//! parts reasoning deltas, a `functionCall` part (always whole) one complete tool-call delta.
//! `usageMetadata` is cumulative and repeated: each new total is emitted as a `Usage` event when
//! it arrives (the last one before `Finish` is final), so a stream cut short still carries the
//! tokens billed so far. The stream has no terminator: it is complete only if a `finishReason` arrived before
//! the body ended; otherwise the client gets an error, never a silent end. An `error` object in a
//! chunk ends the stream with that error.

use serde_json::Value;

use super::{PartKind, candidate_parts, decode_usage, in_band_error, part_kind, parts_finish};
use crate::canonical::{FinishReason, StreamEvent, Usage};
use crate::error::ApiError;
use crate::upstream::sse::{self, Pending, SseDecoder};
use crate::upstream::{ByteStream, EventStream};

/// Most function calls accepted in one answer; more is a broken upstream.
const MAX_TOOL_CALLS: u32 = 1024;

struct State {
    provider: &'static str,
    out: Pending,
    /// The last usage emitted (repeats are not re-emitted).
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    tools: u32,
}

/// Decode a Gemini SSE body.
pub fn decode(provider: &'static str, body: ByteStream) -> EventStream {
    sse::decode(
        body,
        State {
            provider,
            out: Pending::default(),
            usage: None,
            finish: None,
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
        self.on_data(data);
    }
    /// The stream has no terminator: complete only if a finish reason arrived.
    fn on_end(&mut self) {
        if self.finish.is_some() {
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
        if self.tools > 0 && reason == FinishReason::Stop {
            reason = FinishReason::ToolCalls;
        }
        self.out.queue.push_back(Ok(StreamEvent::Finish(reason)));
    }

    fn on_data(&mut self, data: &str) {
        let data = data.trim();
        if data.is_empty() {
            return;
        }
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                self.out.fail(ApiError::UpstreamInvalid {
                    provider: self.provider,
                    reason: format!("bad stream chunk: {e}"),
                });
                return;
            }
        };
        if v.get("error").is_some_and(|e| !e.is_null()) {
            self.out.ended = true;
            self.out
                .queue
                .push_back(Err(in_band_error(self.provider, &v, data.as_bytes())));
            return;
        }
        for p in candidate_parts(&v) {
            match part_kind(p) {
                PartKind::Text(t) if !t.is_empty() => {
                    self.out
                        .queue
                        .push_back(Ok(StreamEvent::TextDelta(t.to_string())));
                }
                PartKind::Thought(t) if !t.is_empty() => {
                    self.out
                        .queue
                        .push_back(Ok(StreamEvent::ThinkingDelta(t.to_string())));
                }
                PartKind::Call(_) if self.tools >= MAX_TOOL_CALLS => {
                    self.out.fail(ApiError::UpstreamInvalid {
                        provider: self.provider,
                        reason: "too many tool calls".into(),
                    });
                    return;
                }
                PartKind::Call(c) => {
                    self.out.queue.push_back(Ok(StreamEvent::ToolCallDelta {
                        index: self.tools,
                        id: Some(c.id),
                        name: Some(c.name),
                        arguments: c.arguments,
                    }));
                    self.tools += 1;
                }
                _ => {}
            }
        }
        if let Some(u) = v.get("usageMetadata").filter(|u| u.is_object()) {
            let u = decode_usage(u);
            if self.usage != Some(u) {
                self.usage = Some(u);
                self.out.queue.push_back(Ok(StreamEvent::Usage(u)));
            }
        }
        if let Some(f) = parts_finish(&v) {
            self.finish = Some(f);
        }
    }
}
