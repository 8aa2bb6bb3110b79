//! The API error: one enum for everything a request can fail with, one exhaustive `status()`, and
//! a message safe to show clients. Each frontend renders it in its own wire format (OpenAI
//! `{"error":{...}}`, Ollama `{"error":"..."}`, Anthropic `{"type":"error","error":{...}}`). Upstream bodies are summarised to their message
//! field; keys and prompts are never part of an error.

use std::time::Duration;

/// Why a request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// Malformed JSON, missing field, wrong type, unsupported value (400).
    #[error("{0}")]
    BadRequest(String),
    /// The model name resolves to nothing (404).
    #[error("model '{0}' not found")]
    ModelNotFound(String),
    /// The provider has no key configured on this server (503).
    #[error(
        "provider '{provider}' is not configured: set {env} (or {env}_FILE) on the llm-relay server"
    )]
    ProviderNotConfigured {
        /// Provider name.
        provider: &'static str,
        /// Env var that would enable it.
        env: &'static str,
    },
    /// The request body exceeds `MAX_BODY_BYTES` (413).
    #[error("request body exceeds the {limit} byte limit")]
    PayloadTooLarge {
        /// Limit, bytes.
        limit: usize,
    },
    /// The upstream answered with an error status; status and message are kept.
    #[error("{provider} returned HTTP {status}: {message}")]
    Upstream {
        /// Provider name.
        provider: &'static str,
        /// Upstream HTTP status (400..=599).
        status: u16,
        /// The upstream's own error message (its `error.message` or similar), never its headers.
        message: String,
        /// `Retry-After` value to pass on (429/503).
        retry_after: Option<String>,
        /// The upstream's error code (`insufficient_quota`, `unsupported_parameter`, ...).
        code: Option<String>,
        /// The request parameter the upstream blamed.
        param: Option<String>,
    },
    /// The upstream reported an error inside a 2xx stream (an `error` object or `event: error`)
    /// (502 if it happens before the first event; otherwise sent in-stream).
    #[error("{provider} failed mid-stream: {message}")]
    UpstreamStream {
        /// Provider name.
        provider: &'static str,
        /// The upstream's message.
        message: String,
    },
    /// No byte from the upstream within the read timeout (504).
    #[error("{provider} did not answer within {} ms", .after.as_millis())]
    UpstreamTimeout {
        /// Provider name.
        provider: &'static str,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// Connection to the upstream failed (refused, DNS, TLS) (502).
    #[error("cannot reach {provider}: {reason}")]
    UpstreamUnreachable {
        /// Provider name.
        provider: &'static str,
        /// Short reason.
        reason: String,
    },
    /// The upstream answered 2xx with something we cannot decode (502).
    #[error("{provider} sent an invalid response: {reason}")]
    UpstreamInvalid {
        /// Provider name.
        provider: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// No such endpoint (404), e.g. an OpenAI route llm-relay does not serve yet.
    #[error("llm-relay has no endpoint {method} {path}")]
    UnknownRoute {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
    },
    /// The route or feature exists in the client API but not in llm-relay (yet) (501).
    #[error("{0}")]
    NotImplemented(String),
}

impl ApiError {
    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::ModelNotFound(_) | ApiError::UnknownRoute { .. } => 404,
            ApiError::ProviderNotConfigured { .. } => 503,
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::Upstream { status, .. } => *status,
            ApiError::UpstreamTimeout { .. } => 504,
            ApiError::UpstreamUnreachable { .. }
            | ApiError::UpstreamInvalid { .. }
            | ApiError::UpstreamStream { .. } => 502,
            ApiError::NotImplemented(_) => 501,
        }
    }

    /// OpenAI error `type` for this error (developers.openai.com/docs/guides/error-codes).
    pub fn openai_type(&self) -> &'static str {
        match self.status() {
            400 | 404 | 413 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            _ => "api_error",
        }
    }

    /// OpenAI error `code`: the upstream's own code when it gave one, else the standard one.
    pub fn openai_code(&self) -> Option<&str> {
        match self {
            ApiError::ModelNotFound(_) => Some("model_not_found"),
            ApiError::Upstream {
                code: Some(code), ..
            } => Some(code),
            ApiError::Upstream { status: 429, .. } => Some("rate_limit_exceeded"),
            _ => None,
        }
    }

    /// OpenAI error `param`: the request parameter at fault, when known.
    pub fn openai_param(&self) -> Option<&str> {
        match self {
            ApiError::Upstream { param, .. } => param.as_deref(),
            _ => None,
        }
    }

    /// `Retry-After` header to send, if any.
    pub fn retry_after(&self) -> Option<&str> {
        match self {
            ApiError::Upstream { retry_after, .. } => retry_after.as_deref(),
            _ => None,
        }
    }

    /// Build a 400 from a serde_json error, keeping serde's description (field, type, position).
    pub fn from_json(e: &serde_json::Error) -> Self {
        ApiError::BadRequest(format!("invalid JSON body: {e}"))
    }
}
