//! Ollama NDJSON stream -> canonical [`StreamEvent`]s.
//!
//! Lines are split by tokio-util's `LinesCodec` with a maximum line length (a server that never
//! sends `\n` cannot make us buffer without bound). Per line (WIRE.md §2.3, §2.8): `thinking` and
//! `content` deltas, whole `tool_calls` (one `ToolCallDelta` per call carrying all its arguments),
//! `{"error":"..."}` ends the stream with an error, and the `done:true` line gives usage
//! (`prompt_eval_count`, `eval_count`) and `done_reason`. A body that ends before `done:true` (cut
//! connection) ends with an error, never as a normal finish.

use std::io;

use futures_util::{Stream, StreamExt};
use serde_json::Value;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::io::StreamReader;

use super::{decode_tool_calls, decode_usage, finish_reason};
use crate::canonical::StreamEvent;
use crate::error::ApiError;
use crate::upstream::{ByteStream, EventStream};

/// Longest NDJSON line accepted: 16 MiB. One line is one token or one whole tool call, so real
/// lines are small; the limit only stops a misbehaving server.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Carries an [`ApiError`] through the `io::Error` that `StreamReader` requires.
#[derive(Debug)]
struct Carried(ApiError);

impl std::fmt::Display for Carried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Carried {}

struct State<L> {
    lines: L,
    provider: &'static str,
    /// Index of the next tool call in this answer.
    next_call: u32,
    /// Events decoded from the current line, not yet handed out.
    pending: std::collections::VecDeque<StreamEvent>,
    /// `done:true` arrived (or an error ended the stream).
    ended: bool,
}

fn line_error(provider: &'static str, e: LinesCodecError) -> ApiError {
    match e {
        LinesCodecError::MaxLineLengthExceeded => ApiError::UpstreamInvalid {
            provider,
            reason: format!("NDJSON line longer than {MAX_LINE_BYTES} bytes"),
        },
        LinesCodecError::Io(e) => match e.downcast::<Carried>() {
            Ok(Carried(api)) => api,
            Err(e) => ApiError::UpstreamInvalid {
                provider,
                reason: format!("stream is not UTF-8 text: {e}"),
            },
        },
    }
}

/// Decode one line into `st.pending`.
///
/// Errors: not JSON, or an `error` line.
fn decode_line<L>(st: &mut State<L>, line: &str) -> Result<(), ApiError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(());
    }
    let v: Value = serde_json::from_str(line).map_err(|e| ApiError::UpstreamInvalid {
        provider: st.provider,
        reason: format!("NDJSON line is not JSON: {e}"),
    })?;
    if let Some(e) = v.get("error") {
        let message = e.as_str().map_or_else(|| e.to_string(), str::to_string);
        return Err(ApiError::UpstreamStream {
            provider: st.provider,
            message,
        });
    }
    let msg = v.get("message").unwrap_or(&Value::Null);
    if let Some(t) = msg.get("thinking").and_then(Value::as_str)
        && !t.is_empty()
    {
        st.pending
            .push_back(StreamEvent::ThinkingDelta(t.to_string()));
    }
    if let Some(t) = msg.get("content").and_then(Value::as_str)
        && !t.is_empty()
    {
        st.pending.push_back(StreamEvent::TextDelta(t.to_string()));
    }
    if let Some(calls) = msg.get("tool_calls") {
        for c in decode_tool_calls(calls) {
            st.pending.push_back(StreamEvent::ToolCallDelta {
                index: st.next_call,
                id: Some(c.id),
                name: Some(c.name),
                arguments: c.arguments,
            });
            st.next_call += 1;
        }
    }
    if v.get("done").and_then(Value::as_bool) == Some(true) {
        if let Some(u) = decode_usage(&v) {
            st.pending.push_back(StreamEvent::Usage(u));
        }
        st.pending.push_back(StreamEvent::Finish(finish_reason(
            v.get("done_reason").and_then(Value::as_str),
            st.next_call > 0,
        )));
        st.ended = true;
    }
    Ok(())
}

/// The lines of an NDJSON body as they arrive (at most [`MAX_LINE_BYTES`] each): a transport
/// failure, an overlong line or text that is not UTF-8 is an error item.
pub fn lines(
    provider: &'static str,
    body: ByteStream,
) -> impl Stream<Item = Result<String, ApiError>> + Unpin + Send {
    let reader = StreamReader::new(body.map(|r| r.map_err(|e| io::Error::other(Carried(e)))));
    FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_LINE_BYTES))
        .map(move |r| r.map_err(|e| line_error(provider, e)))
}

/// Turn an NDJSON body into canonical events, line by line as bytes arrive.
pub fn decode(provider: &'static str, body: ByteStream) -> EventStream {
    let lines = lines(provider, body);
    let st = State {
        lines,
        provider,
        next_call: 0,
        pending: std::collections::VecDeque::new(),
        ended: false,
    };
    Box::pin(futures_util::stream::unfold(Some(st), next))
}

async fn next<L>(st: Option<State<L>>) -> Option<(Result<StreamEvent, ApiError>, Option<State<L>>)>
where
    L: Stream<Item = Result<String, ApiError>> + Unpin,
{
    let mut st = st?;
    loop {
        if let Some(ev) = st.pending.pop_front() {
            return Some((Ok(ev), Some(st)));
        }
        if st.ended {
            return None;
        }
        match st.lines.next().await {
            Some(Ok(line)) => {
                if let Err(e) = decode_line(&mut st, &line) {
                    return Some((Err(e), None));
                }
            }
            Some(Err(e)) => return Some((Err(e), None)),
            None => {
                return Some((
                    Err(ApiError::UpstreamStream {
                        provider: st.provider,
                        message: "the stream ended before its final (done) line".into(),
                    }),
                    None,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{FinishReason, Usage};

    fn run(chunks: Vec<Result<&'static str, ApiError>>) -> Vec<Result<StreamEvent, ApiError>> {
        let body: ByteStream = Box::pin(futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| c.map(|s| bytes::Bytes::from_static(s.as_bytes()))),
        ));
        let rt = tokio::runtime::Builder::new_current_thread().build();
        let Ok(rt) = rt else { return Vec::new() };
        rt.block_on(decode("t", body).collect())
    }

    #[test]
    fn text_split_across_chunks_then_usage_and_finish() {
        let out = run(vec![
            Ok("{\"message\":{\"role\":\"assistant\",\"content\":\"Hel"),
            Ok("lo\"},\"done\":false}\n{\"message\":{\"role\":\"assistant\",\"content\":\"\"},"),
            Ok(
                "\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":16,\"eval_count\":22}\n",
            ),
        ]);
        let ok: Vec<_> = out.into_iter().filter_map(Result::ok).collect();
        assert_eq!(
            ok,
            vec![
                StreamEvent::TextDelta("Hello".into()),
                StreamEvent::Usage(Usage {
                    prompt_tokens: 16,
                    completion_tokens: 22,
                    ..Usage::default()
                }),
                StreamEvent::Finish(FinishReason::Stop),
            ]
        );
    }

    #[test]
    fn cut_stream_and_error_line_end_with_errors() {
        let out = run(vec![Ok(
            "{\"message\":{\"role\":\"assistant\",\"content\":\"a\"},\"done\":false}\n",
        )]);
        assert!(matches!(
            out.last(),
            Some(Err(ApiError::UpstreamStream { .. }))
        ));
        let out = run(vec![Ok("{\"error\":\"model crashed\"}\n")]);
        assert!(
            matches!(out.as_slice(), [Err(ApiError::UpstreamStream { message, .. })] if message == "model crashed")
        );
        let out = run(vec![Err(ApiError::UpstreamTimeout {
            provider: "t",
            after: std::time::Duration::from_secs(1),
        })]);
        assert!(matches!(
            out.as_slice(),
            [Err(ApiError::UpstreamTimeout { .. })]
        ));
    }

    #[test]
    fn tool_calls_whole_and_finish_is_tool_calls() {
        let out = run(vec![Ok(concat!(
            "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"index\":0,\"name\":\"f\",\"arguments\":{\"a\":1}}}]},\"done\":false}\n",
            "{\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\"}\n"
        ))]);
        assert!(matches!(
            out.first(),
            Some(Ok(StreamEvent::ToolCallDelta { index: 0, name: Some(n), arguments, .. })) if n == "f" && arguments == "{\"a\":1}"
        ));
        assert!(matches!(
            out.last(),
            Some(Ok(StreamEvent::Finish(FinishReason::ToolCalls)))
        ));
    }
}
