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

/// The UTF-8 byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Drops the UTF-8 byte order marks a body starts with, also when they arrive split across
/// reads. `eventsource-stream` 0.2.3 strips a leading mark itself by slicing `&s[1..]`, inside the
/// 3-byte character, and panics on any stream that starts with one (found by tests/fuzz.rs), so
/// none may reach it. WHATWG SSE drops one leading mark; a second one would only make the first
/// line's field name unknown (that line ignored), so dropping every leading mark loses at most
/// that deviation.
struct StripBom {
    inner: ByteStream,
    /// The first bytes while they could still be (part of) a mark; `None` once past them.
    head: Option<Vec<u8>>,
}

/// Whether `b` could still grow into a byte order mark.
fn bom_prefix(b: &[u8]) -> bool {
    b.len() < BOM.len() && BOM.starts_with(b)
}

impl futures_util::Stream for StripBom {
    type Item = Result<bytes::Bytes, ApiError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            let Some(head) = this.head.as_mut() else {
                return this.inner.as_mut().poll_next(cx);
            };
            let mut chunk = match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => chunk,
                Poll::Ready(Some(Err(e))) => {
                    this.head = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    // Ended inside what could have been a mark: those bytes are the body.
                    let rest = this.head.take().unwrap_or_default();
                    return Poll::Ready((!rest.is_empty()).then(|| Ok(rest.into())));
                }
            };
            if head.is_empty() {
                // The common case: the first read decides, without a copy.
                while chunk.starts_with(BOM) {
                    chunk = chunk.slice(BOM.len()..);
                }
                if chunk.is_empty() {
                    continue;
                }
                if bom_prefix(&chunk) {
                    head.extend_from_slice(&chunk);
                    continue;
                }
                this.head = None;
                return Poll::Ready(Some(Ok(chunk)));
            }
            head.extend_from_slice(&chunk);
            while head.starts_with(BOM) {
                head.drain(..BOM.len());
            }
            if head.is_empty() || bom_prefix(head) {
                continue;
            }
            let first = this.head.take().unwrap_or_default();
            return Poll::Ready(Some(Ok(first.into())));
        }
    }
}

/// Most bytes one SSE event may take (64 MiB; lines included, up to the blank line that ends
/// it): `eventsource-stream` buffers an event's lines until that blank line, so an upstream that
/// never sends one would otherwise grow the buffer until memory runs out. Large enough for an
/// image sent inline in one event by an image-generating model.
pub const MAX_EVENT_BYTES: usize = 64 * 1024 * 1024;

/// Where the body is relative to SSE event boundaries (WIRE: lines end with `\r\n`, `\n` or
/// `\r`; a blank line ends an event).
#[derive(Debug, Clone, Copy)]
struct EventBound {
    /// Bytes since the last blank line.
    run: usize,
    /// The last byte ended a line.
    at_line_start: bool,
    /// The last byte was `\r` (a `\n` right after it belongs to the same line end).
    prev_cr: bool,
}

impl EventBound {
    fn new() -> Self {
        EventBound {
            run: 0,
            at_line_start: true,
            prev_cr: false,
        }
    }

    /// Account for `chunk`; the bytes of the event still open afterwards.
    fn feed(&mut self, chunk: &[u8]) -> usize {
        // The usual case, a chunk of whole events: it ends with a blank line, whatever came before.
        if chunk.ends_with(b"\n\n") || chunk.ends_with(b"\r\r") || chunk.ends_with(b"\r\n\r\n") {
            *self = EventBound {
                run: 0,
                at_line_start: true,
                prev_cr: chunk.ends_with(b"\r"),
            };
            return 0;
        }
        for &b in chunk {
            self.run += 1;
            match b {
                b'\n' if self.prev_cr => self.prev_cr = false,
                b'\n' | b'\r' => {
                    self.prev_cr = b == b'\r';
                    if self.at_line_start {
                        self.run = 0;
                    }
                    self.at_line_start = true;
                }
                _ => {
                    self.prev_cr = false;
                    self.at_line_start = false;
                }
            }
        }
        self.run
    }
}

/// `body`, ended by an error item once one event grows past `limit` bytes without the blank line
/// that ends it (what is buffered stays below `limit` plus one read).
fn bounded_events(body: ByteStream, provider: &'static str, limit: usize) -> ByteStream {
    use futures_util::future::ready;
    Box::pin(
        body.scan((EventBound::new(), false), move |(bound, over), item| {
            if *over {
                return ready(None);
            }
            if let Ok(chunk) = &item
                && bound.feed(chunk) > limit
            {
                *over = true;
                return ready(Some(Err(ApiError::UpstreamInvalid {
                    provider,
                    reason: format!("SSE event larger than {limit} bytes"),
                })));
            }
            ready(Some(item))
        }),
    )
}

/// Decode an SSE `body` with `decoder` into canonical events.
pub(crate) fn decode<D: SseDecoder>(body: ByteStream, decoder: D) -> EventStream {
    let body = bounded_events(body, decoder.provider(), MAX_EVENT_BYTES);
    let body: ByteStream = Box::pin(StripBom {
        inner: body,
        head: Some(Vec::new()),
    });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> ByteStream {
        let items: Vec<Result<bytes::Bytes, ApiError>> = parts
            .iter()
            .map(|p| Ok(bytes::Bytes::from_static(p)))
            .collect();
        Box::pin(futures_util::stream::iter(items))
    }

    #[tokio::test]
    async fn an_event_larger_than_the_limit_ends_the_body_with_an_error() {
        // Short lines without the blank line that ends the event grow it all the same.
        let out: Vec<_> = bounded_events(
            chunks(&[b"data: 1\ndata: 2\n", b"data: 3\n", b"data: 4\n"]),
            "p",
            25,
        )
        .collect()
        .await;
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out[0].is_ok() && out[1].is_ok());
        let err = out[2].as_ref().unwrap_err();
        assert_eq!(err.status(), 502);
        assert!(
            err.to_string().contains("SSE event larger than 25 bytes"),
            "{err}"
        );
        // Events that end in time pass untouched, whatever the body's length, with every line
        // ending, and with a blank line split across reads.
        let out: Vec<_> = bounded_events(
            chunks(&[
                b"data: 0123456789\n\n",
                b"data: 0123456789\r\n\r\n",
                b"data: 0123456789\r\r",
                b"data: 0123456789\n",
                b"\ndata: 0123456789\r",
                b"\n\r\ndata: x",
                b"\n\n",
            ]),
            "p",
            20,
        )
        .collect()
        .await;
        assert!(out.iter().all(Result::is_ok), "{out:?}");
        assert_eq!(out.len(), 7);
    }
}
