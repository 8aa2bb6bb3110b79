//! The SSE driver the SSE-based dialects share (OpenAI-compatible, Anthropic, Gemini).
//!
//! Framing is parsed by `eventsource-stream` (`\r\n`, comments, multi-line data). The driver hands
//! each event to the dialect's [`SseDecoder`], yields what the decoder queued, and turns a
//! transport failure into an error item. When the body ends, the decoder decides whether the answer
//! was complete ([`SseDecoder::on_end`]); the stream always ends after that, so a body cut short is
//! an error item, never a silent end or a hang.

use std::collections::VecDeque;

use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::StreamExt;

use crate::canonical::StreamEvent;
use crate::error::ApiError;
use crate::upstream::{ByteStream, EventStream};

/// Decoded items waiting to be yielded, and whether the stream is over once they are.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Canonical events (or one final error), in order.
    pub queue: VecDeque<Result<StreamEvent, ApiError>>,
    /// Nothing more is read from the upstream after the queue drains.
    pub ended: bool,
}

impl Pending {
    /// Queue `err` as the last item.
    pub fn fail(&mut self, err: ApiError) {
        self.ended = true;
        self.queue.push_back(Err(err));
    }
}

/// A dialect's per-stream decoding state.
pub(crate) trait SseDecoder: Send + 'static {
    /// Provider name, for error messages.
    fn provider(&self) -> &'static str;
    /// The decoder's output queue.
    fn pending(&mut self) -> &mut Pending;
    /// One SSE event: `event` is the `event:` name (`message` when absent), `data` its data.
    fn on_event(&mut self, event: &str, data: &str);
    /// The body ended: queue the end of a complete answer, or [`cut`] if it was not complete.
    /// The default treats every end as premature (dialects with an explicit terminator end the
    /// stream themselves when it arrives).
    fn on_end(&mut self) {
        let err = cut(self.provider());
        self.pending().fail(err);
    }
}

/// The error for a body that ended before the answer was complete.
pub(crate) fn cut(provider: &'static str) -> ApiError {
    ApiError::UpstreamInvalid {
        provider,
        reason: "the stream ended before the answer was complete".into(),
    }
}

/// Decode an SSE `body` with `decoder` into canonical events.
pub(crate) fn decode<D: SseDecoder>(body: ByteStream, decoder: D) -> EventStream {
    let state = (body.eventsource(), decoder);
    Box::pin(futures_util::stream::unfold(
        state,
        |(mut sse, mut d)| async move {
            loop {
                let pending = d.pending();
                if let Some(item) = pending.queue.pop_front() {
                    return Some((item, (sse, d)));
                }
                if pending.ended {
                    return None;
                }
                match sse.next().await {
                    Some(Ok(ev)) => d.on_event(&ev.event, &ev.data),
                    Some(Err(e)) => {
                        let err = match e {
                            EventStreamError::Transport(api) => api,
                            other => ApiError::UpstreamInvalid {
                                provider: d.provider(),
                                reason: other.to_string(),
                            },
                        };
                        d.pending().fail(err);
                    }
                    None => {
                        d.on_end();
                        d.pending().ended = true;
                    }
                }
            }
        },
    ))
}
