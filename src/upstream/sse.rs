//! The SSE driver the SSE-based dialects share (OpenAI-compatible, Anthropic, Gemini).
//!
//! Framing follows the WHATWG "event stream interpretation" rules (HTML Living Standard §9.2.6):
//! lines end in `\n`, `\r\n` or `\r`, `:` starts a comment, `data:` lines of one event are joined
//! with `\n`, a blank line dispatches, a leading BOM is skipped and an unterminated last event is
//! dropped. The driver hands each event to the dialect's [`SseDecoder`], yields what the decoder
//! queued, and turns a transport failure into an error item.
//!
//! The framing is our own, not `eventsource-stream`'s: that crate copies the rest of its buffer
//! after every line (`String::split_off`), quadratic in the events one read carries. A 20-chunk
//! stream read in one go cost ~8,400 instructions per event there, ~21% of the relay's CPU for the
//! whole stream (callgrind, `benches/run.sh`); here each byte is looked at once. Events are still
//! handed over one at a time, yielding what each queued before the next is framed. When the body ends, the decoder decides whether the answer
//! was complete ([`SseDecoder::on_end`]); the stream always ends after that, so a body cut short is
//! an error item, never a silent end or a hang.

use std::collections::VecDeque;

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

/// Incremental SSE framing: bytes in, `(event, data)` pairs out to a decoder, one event at a time
/// (a decoder error replaces what it queued for the current event only, as if events arrived one
/// by one).
#[derive(Debug, Default)]
struct Framer {
    /// Bytes read and not yet framed start at `buf[pos]`.
    buf: Vec<u8>,
    pos: usize,
    /// The last line ended with `\r` at the end of the buffer: a `\n` first in the next read is
    /// part of that line ending.
    after_cr: bool,
    /// The first bytes were seen (a BOM is skipped only there).
    started: bool,
    /// `event:` of the event being built (empty: `message`).
    event: String,
    /// `data:` lines of the event being built, each followed by `\n`.
    data: String,
}

impl Framer {
    /// Add a read to the buffer.
    fn push(&mut self, bytes: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
        } else {
            self.buf.drain(..self.pos);
        }
        self.pos = 0;
        self.buf.extend_from_slice(bytes);
    }

    /// Frame buffered lines until `d` has queued something or ended; `Ok(false)` when no complete
    /// line is left (read more).
    ///
    /// Errors: a line that is not UTF-8.
    fn step<D: SseDecoder>(&mut self, d: &mut D) -> Result<bool, ApiError> {
        if self.after_cr && self.pos < self.buf.len() {
            self.after_cr = false;
            if self.buf[self.pos] == b'\n' {
                self.pos += 1;
            }
        }
        if !self.started && self.pos < self.buf.len() {
            const BOM: &[u8] = "\u{feff}".as_bytes();
            let rest = &self.buf[self.pos..];
            if rest.len() < BOM.len() && BOM.starts_with(rest) {
                // Maybe a BOM cut by the read: decide when more bytes are there.
                return Ok(false);
            }
            self.started = true;
            if rest.starts_with(BOM) {
                self.pos += BOM.len();
            }
        }
        loop {
            let rest = &self.buf[self.pos..];
            let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                return Ok(false);
            };
            let end = match (rest[i], rest.get(i + 1)) {
                (b'\r', Some(b'\n')) => i + 2,
                (b'\r', None) => {
                    self.after_cr = true;
                    i + 1
                }
                _ => i + 1,
            };
            let (start, line_end) = (self.pos, self.pos + i);
            self.pos += end;
            // The line is borrowed from `buf` while `event`/`data` are updated: split the borrow.
            let buf = std::mem::take(&mut self.buf);
            let r = self.line(&buf[start..line_end], d);
            self.buf = buf;
            r?;
            let pending = d.pending();
            if pending.ended || !pending.queue.is_empty() {
                return Ok(true);
            }
        }
    }

    /// One line (without its ending).
    fn line<D: SseDecoder>(&mut self, line: &[u8], d: &mut D) -> Result<(), ApiError> {
        if line.is_empty() {
            if !self.data.is_empty() {
                self.data.pop();
                let event = if self.event.is_empty() {
                    "message"
                } else {
                    &self.event
                };
                d.on_event(event, &self.data);
            }
            self.event.clear();
            self.data.clear();
            return Ok(());
        }
        let line = std::str::from_utf8(line).map_err(|e| ApiError::UpstreamInvalid {
            provider: d.provider(),
            reason: format!("stream is not UTF-8 text: {e}"),
        })?;
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        // `id` and `retry` matter to reconnecting browsers only; no dialect reads them.
        match field {
            "event" => {
                self.event.clear();
                self.event.push_str(value);
            }
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            _ => {}
        }
        Ok(())
    }
}

/// Decode an SSE `body` with `decoder` into canonical events.
pub(crate) fn decode<D: SseDecoder>(body: ByteStream, decoder: D) -> EventStream {
    let state = (body, Framer::default(), decoder);
    Box::pin(futures_util::stream::unfold(
        state,
        |(mut body, mut framer, mut d)| async move {
            loop {
                let pending = d.pending();
                if let Some(item) = pending.queue.pop_front() {
                    return Some((item, (body, framer, d)));
                }
                if pending.ended {
                    return None;
                }
                match framer.step(&mut d) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        d.pending().fail(e);
                        continue;
                    }
                }
                match body.next().await {
                    Some(Ok(bytes)) => framer.push(&bytes),
                    Some(Err(e)) => d.pending().fail(e),
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

    /// Records every event it is given.
    #[derive(Default)]
    struct Collect {
        out: Pending,
        events: Vec<(String, String)>,
        end_after: Option<usize>,
    }

    impl SseDecoder for Collect {
        fn provider(&self) -> &'static str {
            "test"
        }
        fn pending(&mut self) -> &mut Pending {
            &mut self.out
        }
        fn on_event(&mut self, event: &str, data: &str) {
            self.events.push((event.to_string(), data.to_string()));
            if self.end_after == Some(self.events.len()) {
                self.out.ended = true;
            }
        }
    }

    /// Feed `reads` one after another, framing everything buffered after each, as the driver
    /// does (it pops the queue in between; `Collect` queues nothing).
    fn feed(f: &mut Framer, d: &mut Collect, bytes: &[u8]) -> Result<(), ApiError> {
        f.push(bytes);
        while f.step(d)? {
            if d.out.ended {
                break;
            }
        }
        Ok(())
    }

    fn frame(reads: &[&[u8]]) -> Vec<(String, String)> {
        let (mut f, mut d) = (Framer::default(), Collect::default());
        for r in reads {
            feed(&mut f, &mut d, r).unwrap();
        }
        d.events
    }

    fn ev(event: &str, data: &str) -> (String, String) {
        (event.to_string(), data.to_string())
    }

    #[test]
    fn events_split_anywhere_frame_the_same() {
        let wire: &[u8] = b"\xef\xbb\xbfdata: a\r\n\r\n: comment\n\nevent: error\ndata:{\"x\":1}\ndata:  two\r\rdata: b\n\ndata: cut";
        let want = vec![
            ev("message", "a"),
            ev("error", "{\"x\":1}\n two"),
            ev("message", "b"),
        ];
        assert_eq!(frame(&[wire]), want);
        for cut in 1..wire.len() {
            assert_eq!(frame(&[&wire[..cut], &wire[cut..]]), want, "split at {cut}");
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(frame(&bytes), want);
    }

    #[test]
    fn event_without_data_is_not_dispatched_and_its_name_does_not_leak() {
        assert_eq!(
            frame(&[b"event: ping\n\ndata: x\n\n"]),
            vec![ev("message", "x")]
        );
        assert_eq!(frame(&[b"data\n\n"]), vec![ev("message", "")]);
    }

    #[test]
    fn nothing_is_framed_after_the_decoder_ended() {
        let (mut f, mut d) = (Framer::default(), Collect::default());
        d.end_after = Some(1);
        feed(&mut f, &mut d, b"data: 1\n\ndata: 2\n\n").unwrap();
        assert_eq!(d.events, vec![ev("message", "1")]);
    }

    #[test]
    fn invalid_utf8_is_an_upstream_error() {
        let (mut f, mut d) = (Framer::default(), Collect::default());
        let err = feed(&mut f, &mut d, b"data: \xff\n\n").unwrap_err();
        assert!(matches!(err, ApiError::UpstreamInvalid { .. }), "{err:?}");
    }
}
