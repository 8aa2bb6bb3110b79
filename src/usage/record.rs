//! The usage record: what one API request leaves behind (tokens by class, cost, attribution),
//! and the runtime usage settings.
//!
//! Owns the in-memory shapes only; their stored (versioned) forms live in `crate::store`.
//! Provider and model are strings, not catalog ids: records outlive catalog changes and
//! dynamically discovered models have no compiled id. Labels that are usually static (frontend,
//! endpoint, catalog provider and model ids, error kinds) are `Cow<'static, str>`, so recording a
//! request allocates only what the request itself brought (model name asked, tags, User-Agent).

use std::borrow::Cow;

use super::cost::CostSource;

/// One request's usage. Token counts in tokens, times in ms, cost in pico-USD (1e-12 USD).
///
/// Token classes follow OpenAI semantics: `input_tokens` is the whole prompt, and the cached
/// classes (`cached_input_tokens` for providers whose cache hits are part of the prompt count:
/// OpenAI, DeepSeek, xAI, Groq, OpenRouter; `cache_read_tokens`/`cache_write_tokens` for
/// providers that bill cache reads and writes separately: Anthropic) are parts of it;
/// `reasoning_tokens` are part of `output_tokens`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UsageRecord {
    /// When the request arrived, Unix ms (UTC).
    pub time_ms: i64,
    /// Client API: `openai-api`, `ollama-api`, `anthropic-api`.
    pub frontend: Cow<'static, str>,
    /// Path called (`/v1/chat/completions`).
    pub endpoint: Cow<'static, str>,
    /// Provider that served it (`""` when the request failed before routing).
    pub provider: Cow<'static, str>,
    /// Upstream model id it was routed to (`""` before routing).
    pub model: Cow<'static, str>,
    /// Model name as the client sent it, `@tag` suffix stripped.
    pub model_requested: String,
    /// Attribution tags, normalised, at least one once stored (the default tag when none given).
    pub tags: Vec<String>,
    /// Client IP address (text).
    pub client_ip: Option<String>,
    /// Client host name by reverse DNS, when the setting is on and the lookup had finished.
    pub client_host: Option<String>,
    /// Client User-Agent.
    pub user_agent: Option<String>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// HTTP status sent to the client (a stream that failed midway keeps the failure status).
    pub status: u16,
    /// Error kind (`upstream_timeout`, `client_disconnected`, ...), `None` on success.
    pub error: Option<Cow<'static, str>>,
    /// Whether the answer was delivered completely.
    pub complete: bool,
    /// Arrival to last byte (or to the disconnect), ms.
    pub latency_ms: u64,
    /// Arrival to first token, ms (streams: first upstream event; complete answers: the answer).
    pub ttft_ms: Option<u64>,
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Completion tokens, reasoning included.
    pub output_tokens: u64,
    /// Reasoning tokens (within `output_tokens`).
    pub reasoning_tokens: u64,
    /// Cache hits of providers that count them inside the prompt (within `input_tokens`).
    pub cached_input_tokens: u64,
    /// Cache reads of providers that bill them separately (within `input_tokens`).
    pub cache_read_tokens: u64,
    /// Cache writes (within `input_tokens`).
    pub cache_write_tokens: u64,
    /// The part of `cache_write_tokens` written with a 1-hour lifetime (Anthropic
    /// `cache_creation.ephemeral_1h_input_tokens`), priced at the 1-hour cache-write rate.
    pub cache_write_1h_tokens: u64,
    /// Cost in pico-USD; `None` when unpriced (never 0 for "unknown").
    pub cost_pico_usd: Option<u64>,
    /// Whether the cost is provider-reported, estimated or unknown.
    pub cost_source: CostSource,
    /// Whether `input_tokens` or `output_tokens` (or both) are llm-relay's estimate (characters
    /// / 4, `crate::usage::estimate`) rather than the upstream's count: a stream cut before the
    /// upstream reported them (client disconnect, shutdown, idle timeout, upstream failure).
    pub tokens_estimated: bool,
}

impl UsageRecord {
    /// Cost in USD; `None` when unpriced.
    pub fn cost_usd(&self) -> Option<f64> {
        self.cost_pico_usd.map(super::cost::pico_to_usd)
    }
    /// Whether the request counts as an error (status >= 400 or an error kind).
    pub fn is_error(&self) -> bool {
        self.status >= 400 || self.error.is_some()
    }
}

/// Usage settings that can change at runtime (stored in the database; environment variables give
/// the defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSettings {
    /// Tag for requests that name none (`USAGE_DEFAULT_TAG`, default `default`).
    pub default_tag: String,
    /// Whether requests are recorded at all (`USAGE_TRACKING`, default on).
    pub tracking: bool,
    /// Days raw records are kept; 0 keeps them forever (`USAGE_RETENTION_DAYS`, default 90).
    /// Hourly and daily aggregates are never deleted.
    pub retention_days: u32,
    /// Whether client host names are looked up by reverse DNS (`USAGE_DNS`, default off).
    pub dns: bool,
}

impl Default for UsageSettings {
    fn default() -> Self {
        UsageSettings {
            default_tag: "default".into(),
            tracking: true,
            retention_days: 90,
            dns: false,
        }
    }
}

/// Setting keys in the settings table.
pub mod keys {
    /// [`super::UsageSettings::default_tag`].
    pub const DEFAULT_TAG: &str = "usage.default_tag";
    /// [`super::UsageSettings::tracking`] (`true`/`false`).
    pub const TRACKING: &str = "usage.tracking";
    /// [`super::UsageSettings::retention_days`] (decimal).
    pub const RETENTION_DAYS: &str = "usage.retention_days";
    /// [`super::UsageSettings::dns`] (`true`/`false`).
    pub const DNS: &str = "usage.dns";
}

impl UsageSettings {
    /// Overlay stored values (`get(key)`) on `self` (the environment defaults); unparsable stored
    /// values are ignored.
    pub fn overlay(mut self, get: impl Fn(&str) -> Option<String>) -> Self {
        if let Some(t) = get(keys::DEFAULT_TAG)
            .map(|t| super::tags::normalise(&t))
            .and_then(|t| t.into_iter().next())
        {
            self.default_tag = t;
        }
        if let Some(b) = get(keys::TRACKING).and_then(|v| v.parse().ok()) {
            self.tracking = b;
        }
        if let Some(d) = get(keys::RETENTION_DAYS).and_then(|v| v.parse().ok()) {
            self.retention_days = d;
        }
        if let Some(b) = get(keys::DNS).and_then(|v| v.parse().ok()) {
            self.dns = b;
        }
        self
    }
}
