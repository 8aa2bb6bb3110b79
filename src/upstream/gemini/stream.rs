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

use std::collections::VecDeque;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use serde_json::Value;

use super::{PartKind, candidate_parts, decode_usage, in_band_error, part_kind, parts_finish};
use crate::canonical::{FinishReason, StreamEvent, Usage};
use crate::error::ApiError;
use crate::upstream::{ByteStream, EventStream};

/// Most function calls accepted in one answer; more is a broken upstream.
const MAX_TOOL_CALLS: u32 = 1024;

struct State<S> {
    sse: S,
    provider: &'static str,
    queue: VecDeque<Result<StreamEvent, ApiError>>,
    /// The last usage emitted (repeats are not re-emitted).
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    tools: u32,
    ended: bool,
}

/// Decode a Gemini SSE body.
pub fn decode(provider: &'static str, body: ByteStream) -> EventStream {
    let state = State {
        sse: body.eventsource(),
        provider,
        queue: VecDeque::new(),
        usage: None,
        finish: None,
        tools: 0,
        ended: false,
    };
    Box::pin(futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.queue.pop_front() {
                return Some((item, st));
            }
            if st.ended {
                return None;
            }
            match st.sse.next().await {
                Some(Ok(ev)) => st.on_data(&ev.data),
                Some(Err(e)) => {
                    st.ended = true;
                    st.queue.push_back(Err(match e {
                        eventsource_stream::EventStreamError::Transport(api) => api,
                        other => ApiError::UpstreamInvalid {
                            provider: st.provider,
                            reason: other.to_string(),
                        },
                    }));
                }
                None if st.finish.is_some() => st.finish_stream(),
                None => {
                    st.ended = true;
                    st.queue.push_back(Err(ApiError::UpstreamInvalid {
                        provider: st.provider,
                        reason: "the stream ended before the answer was complete".into(),
                    }));
                }
            }
        }
    }))
}

impl<S: Stream + Unpin> State<S> {
    fn finish_stream(&mut self) {
        self.ended = true;
        let mut reason = self.finish.unwrap_or(FinishReason::Stop);
        if self.tools > 0 && reason == FinishReason::Stop {
            reason = FinishReason::ToolCalls;
        }
        self.queue.push_back(Ok(StreamEvent::Finish(reason)));
    }

    fn on_data(&mut self, data: &str) {
        let data = data.trim();
        if data.is_empty() {
            return;
        }
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                self.ended = true;
                self.queue.push_back(Err(ApiError::UpstreamInvalid {
                    provider: self.provider,
                    reason: format!("bad stream chunk: {e}"),
                }));
                return;
            }
        };
        if v.get("error").is_some_and(|e| !e.is_null()) {
            self.ended = true;
            self.queue
                .push_back(Err(in_band_error(self.provider, &v, data.as_bytes())));
            return;
        }
        for p in candidate_parts(&v) {
            match part_kind(p) {
                PartKind::Text(t) if !t.is_empty() => {
                    self.queue
                        .push_back(Ok(StreamEvent::TextDelta(t.to_string())));
                }
                PartKind::Thought(t) if !t.is_empty() => {
                    self.queue
                        .push_back(Ok(StreamEvent::ThinkingDelta(t.to_string())));
                }
                PartKind::Call(_) if self.tools >= MAX_TOOL_CALLS => {
                    self.ended = true;
                    self.queue.push_back(Err(ApiError::UpstreamInvalid {
                        provider: self.provider,
                        reason: "too many tool calls".into(),
                    }));
                    return;
                }
                PartKind::Call(c) => {
                    self.queue.push_back(Ok(StreamEvent::ToolCallDelta {
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
                self.queue.push_back(Ok(StreamEvent::Usage(u)));
            }
        }
        if let Some(f) = parts_finish(&v) {
            self.finish = Some(f);
        }
    }
}
