//! Upstream dialects: one module per wire family behind the [`Dialect`] trait, plus the shared
//! HTTP client ([`client`]). Providers are data (providers.yaml); the generated
//! `catalog::dialect(ProviderId)` picks the module a provider speaks.
//!
//! A dialect only translates: canonical request -> upstream JSON, upstream JSON/stream -> canonical
//! response/events. Auth headers, timeouts and status handling are in `client.rs`, the same for all.

pub mod anthropic;
pub mod client;
pub mod gemini;
pub mod ollama;
pub mod openai_compat;
pub(crate) mod sse;

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

use crate::canonical::{ChatRequest, ChatResponse, StreamEvent};
use crate::catalog::ModelId;
use crate::error::ApiError;

/// A normalised upstream stream.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ApiError>> + Send>>;

/// Raw upstream body bytes, transport errors already mapped.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, ApiError>> + Send>>;

/// What a dialect wants sent: a path below the provider's base URL and a JSON body.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// Path appended to the base URL, starting with `/` (e.g. `/chat/completions`).
    pub path: String,
    /// Serialized JSON body.
    pub body: Vec<u8>,
}

/// One wire family's translator.
pub trait Dialect: Send + Sync {
    /// Encode `req` for `model` (quirks from the catalog applied).
    ///
    /// Errors: a request this dialect cannot express (400).
    fn encode(&self, model: ModelId, req: &ChatRequest) -> Result<UpstreamRequest, ApiError>;

    /// Decode a complete 2xx response body.
    ///
    /// Errors: `UpstreamInvalid` when the body is not the expected JSON.
    fn decode(&self, provider: &'static str, body: &[u8]) -> Result<ChatResponse, ApiError>;

    /// Turn a 2xx streamed body into canonical events, chunk by chunk (no buffering).
    fn decode_stream(&self, provider: &'static str, body: ByteStream) -> EventStream;

    /// Whether the upstream takes this http(s) image URL as is. Upstreams that take only inline
    /// images say no, and llm-relay fetches the image first (`crate::images`).
    fn takes_image_url(&self, _url: &str) -> bool {
        true
    }

    /// Extract a human-readable message from an upstream error body (status >= 400).
    fn error_message(&self, body: &[u8]) -> String {
        error_message_from_json(body)
    }

    /// A `Retry-After` value (seconds) carried in an error body, for upstreams that say when to
    /// retry there instead of in the header (Gemini `google.rpc.RetryInfo`). The header wins.
    fn retry_after(&self, _body: &[u8]) -> Option<String> {
        None
    }

    /// The upstream's machine-readable error `code` and `param`, when its body has them
    /// (OpenAI `ErrorResponse`: `unsupported_parameter`, `insufficient_quota`,
    /// `context_length_exceeded`, ...). Passed on so clients can tell errors apart.
    fn error_code_param(&self, body: &[u8]) -> (Option<String>, Option<String>) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return (None, None);
        };
        let field = |k: &str| match v.pointer(&format!("/error/{k}")) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        (field("code"), field("param"))
    }
}

/// Common shapes of error bodies: `{"error":{"message":..}}`, `{"error":".."}`, `{"message":..}`,
/// `{"detail":..}`; otherwise the first 200 bytes of the body as text.
pub fn error_message_from_json(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let candidates = [
            v.pointer("/error/message"),
            v.get("error").filter(|e| e.is_string()),
            v.get("message"),
            v.get("detail"),
            v.pointer("/detail/0/msg"),
        ];
        for c in candidates.into_iter().flatten() {
            if let Some(s) = c.as_str() {
                return s.to_string();
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "no error message".into();
    }
    text.chars().take(200).collect()
}

/// Separator between a tool-call id and an upstream signature carried inside it.
///
/// Gemini 3 attaches an opaque `thoughtSignature` to `functionCall` parts and rejects the next
/// turn with 400 when it is not sent back (ai.google.dev/gemini-api/docs/thought-signatures).
/// Clients only echo the call id, so the Gemini dialect appends the signature to the id it hands
/// out (`call_x` + this separator + base64url signature) and reads it back from the id of the
/// assistant turn's tool call; every other dialect sends only the part before the separator
/// (WIRE.md §7.4: signatures are replayed to the same family only). Ids keep to `[A-Za-z0-9_-]`.
pub const SIGNATURE_SEPARATOR: &str = "__sig__";

/// Split a canonical tool-call id into the id proper and the signature carried in it, if any
/// (see [`SIGNATURE_SEPARATOR`]).
pub fn split_call_id(id: &str) -> (&str, Option<&str>) {
    match id.split_once(SIGNATURE_SEPARATOR) {
        Some((base, sig)) if !sig.is_empty() => (base, Some(sig)),
        Some((base, _)) => (base, None),
        None => (id, None),
    }
}
