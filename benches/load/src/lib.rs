//! Shared parts of the load-benchmark tools (`benches/run.sh`): the canned OpenAI-compatible
//! payloads the fake upstream serves, and the minimal HTTP/1.1 response reading (head,
//! `Content-Length` and chunked bodies) of the streaming probe.
//!
//! The probe reads HTTP by hand so it sees bytes as they arrive on the socket, not after a client
//! library's buffering. Only what the benchmark needs is supported: no trailers, no
//! read-to-close bodies.

use std::io;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Content deltas per stream; with the role chunk and the finish chunk a stream has
/// `CONTENT_CHUNKS + 2` = 20 `chat.completion.chunk` events, then a usage chunk and `[DONE]`.
pub const CONTENT_CHUNKS: usize = 18;

/// Marker in a request body that makes the fake hold a stream open after its first token
/// (for the 1,000-open-streams RSS figure). The relay forwards message text unchanged.
pub const HOLD_MARKER: &[u8] = b"HOLD-STREAM-OPEN";

const ID: &str = "chatcmpl-BxQk3vT9mZr2LhY7pN4aWc1sEoJd8";
const FINGERPRINT: &str = "fp_7c8e2b9d1a";
const CREATED: u64 = 1_767_225_600;
const UPSTREAM_MODEL: &str = "gpt-4o-mini-2024-07-18";
const TEXT: &str = "Rust's ownership model gives memory safety without a garbage collector: every \
    value has exactly one owner, borrows are checked at compile time, and data races are ruled \
    out by the type system.";

/// Find `needle` in `hay` (both short: request heads and bodies of a few hundred bytes).
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` (ASCII case-insensitive) in a response or request head.
pub fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    let head = std::str::from_utf8(head).ok()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Read until `buf` holds a complete head (`\r\n\r\n`); returns the head's length including the
/// blank line, or `None` on a clean EOF before any byte.
///
/// Errors: EOF inside a head, or a head over 64 KiB.
pub async fn read_head<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> io::Result<Option<usize>> {
    loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            return Ok(Some(i + 4));
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "head over 64 KiB",
            ));
        }
        if r.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
    }
}

/// Make `buf` hold at least `n` bytes.
///
/// Errors: EOF first.
pub async fn fill<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, n: usize) -> io::Result<()> {
    while buf.len() < n {
        if r.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// One `chat.completion.chunk` with `delta` (a JSON object) and `finish` (JSON).
fn chunk(delta: &str, finish: &str) -> String {
    format!(
        r#"{{"id":"{ID}","object":"chat.completion.chunk","created":{CREATED},"model":"{UPSTREAM_MODEL}","service_tier":"default","system_fingerprint":"{FINGERPRINT}","choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}],"usage":null}}"#
    )
}

fn usage() -> String {
    format!(
        r#"{{"prompt_tokens":42,"completion_tokens":{CONTENT_CHUNKS},"total_tokens":{},"prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}}"#,
        42 + CONTENT_CHUNKS
    )
}

/// The content tokens: the first `CONTENT_CHUNKS` words of a fixed text, space-joined.
fn tokens() -> Vec<String> {
    let words: Vec<&str> = TEXT.split_whitespace().collect();
    (0..CONTENT_CHUNKS)
        .map(|i| {
            let w = words.get(i % words.len()).copied().unwrap_or("x");
            if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

/// A JSON string literal (the benchmark text has no characters needing escapes but quotes).
fn js(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Pre-rendered upstream answers (bodies only; the fake's HTTP server frames them).
pub struct Canned {
    /// A `chat.completion` JSON body.
    pub completion: Bytes,
    /// SSE events, each `data: ...\n\n`: 20 chunks (role, 18 tokens, finish), a usage chunk and
    /// `[DONE]`.
    pub events: Vec<Bytes>,
}

impl Canned {
    /// Render every answer once.
    pub fn new() -> Canned {
        let toks = tokens();
        let content: String = toks.concat();
        let completion = format!(
            r#"{{"id":"{ID}","object":"chat.completion","created":{CREATED},"model":"{UPSTREAM_MODEL}","choices":[{{"index":0,"message":{{"role":"assistant","content":{},"refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],"usage":{},"service_tier":"default","system_fingerprint":"{FINGERPRINT}"}}"#,
            js(&content),
            usage()
        );
        let mut events = vec![chunk(
            r#"{"role":"assistant","content":"","refusal":null}"#,
            "null",
        )];
        events.extend(
            toks.iter()
                .map(|t| chunk(&format!(r#"{{"content":{}}}"#, js(t)), "null")),
        );
        events.push(chunk("{}", r#""stop""#));
        events.push(format!(
            r#"{{"id":"{ID}","object":"chat.completion.chunk","created":{CREATED},"model":"{UPSTREAM_MODEL}","service_tier":"default","system_fingerprint":"{FINGERPRINT}","choices":[],"usage":{}}}"#,
            usage()
        ));
        events.push("[DONE]".to_string());
        Canned {
            completion: Bytes::from(completion),
            events: events
                .iter()
                .map(|e| Bytes::from(format!("data: {e}\n\n")))
                .collect(),
        }
    }
}

impl Default for Canned {
    fn default() -> Self {
        Canned::new()
    }
}

/// Body framing of a response, from its head.
pub enum Framing {
    /// `Content-Length: n`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl Framing {
    /// The framing a response head declares.
    ///
    /// Errors: neither a length nor chunked (read-to-close is not supported).
    pub fn of(head: &[u8]) -> io::Result<Framing> {
        if header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            return Ok(Framing::Chunked);
        }
        header(head, "content-length")
            .and_then(|v| v.parse().ok())
            .map(Framing::Length)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no body framing"))
    }
}

/// Read the rest of a chunked body whose first `start` bytes of `buf` are already consumed (the
/// head). Calls `on_data` once, when the first data byte is in `buf`. Leaves in `buf` whatever
/// follows the body (a pipelined response). Returns the data length.
///
/// Errors: I/O, EOF, or a malformed chunk size line.
pub async fn read_chunked<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    start: usize,
    mut on_data: impl FnMut(),
) -> io::Result<usize> {
    let mut pos = start;
    let mut total = 0;
    let mut first = true;
    loop {
        let line_end = loop {
            if let Some(i) = find(&buf[pos..], b"\r\n") {
                break pos + i;
            }
            if r.read_buf(buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        };
        let size_text = std::str::from_utf8(&buf[pos..line_end]).unwrap_or("");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        pos = line_end + 2;
        if size == 0 {
            // No trailers: the final CRLF.
            fill(r, buf, pos + 2).await?;
            buf.drain(..pos + 2);
            return Ok(total);
        }
        if first {
            fill(r, buf, pos + 1).await?;
            on_data();
            first = false;
        }
        fill(r, buf, pos + size + 2).await?;
        pos += size + 2;
        total += size;
    }
}

/// Sorted-sample percentile `p` (0-100), nearest rank; 0 for an empty sample.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_stream_has_twenty_chunks_usage_and_done() {
        let c = Canned::new();
        assert_eq!(c.events.len(), CONTENT_CHUNKS + 4);
        let text: Vec<u8> = c.events.concat();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(
            text.matches("chat.completion.chunk").count(),
            CONTENT_CHUNKS + 3
        );
        assert!(text.ends_with("data: [DONE]\n\n"));
        assert_eq!(text.matches("\"usage\":{").count(), 1);
    }

    #[tokio::test]
    async fn chunked_body_is_read_to_its_end() {
        let wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n!\r\n0\r\n\r\nNEXT";
        let mut r = &wire[..];
        let mut buf = Vec::new();
        let head = read_head(&mut r, &mut buf).await.unwrap().unwrap();
        assert!(matches!(
            Framing::of(&buf[..head]).unwrap(),
            Framing::Chunked
        ));
        let mut seen = false;
        let n = read_chunked(&mut r, &mut buf, head, || seen = true)
            .await
            .unwrap();
        assert!(seen);
        assert_eq!(n, 6);
        assert_eq!(buf, b"NEXT");
    }
}
