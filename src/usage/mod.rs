//! Per-request accounting: the one log line per request and the point where usage leaves the
//! request path.
//!
//! A [`RequestLog`] is created when a request arrives ([`RequestLog::start`]) and dropped when its
//! response is complete, including when a stream ends early (client disconnect, upstream
//! failure): `Drop` writes the log line, prices the [`Usage`] seen so far ([`cost`]; a stream cut
//! before the upstream reported some counts gets them estimated, [`estimate`], and the record says
//! `tokens_estimated`) and hands a [`UsageRecord`] to the [`Recorder`] (a non-blocking
//! `try_send`; nothing here waits on storage).
//!
//! # Layout
//! - [`tags`]: attribution (tags, client IP, User-Agent).
//! - [`cost`]: the pricing engine.
//! - [`record`]: the record and the runtime settings.
//! - [`recorder`]: bounded channel + batching writer thread.
//! - [`query`]: query shapes and the CLI table.
//! - [`dns`]: reverse DNS for host names (writer side).
//! - [`estimate`]: chars/4 token estimates (prompts; streams cut before their usage).

pub mod cost;
pub mod dns;
pub mod estimate;
pub mod query;
pub mod record;
pub mod recorder;
pub mod tags;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::canonical::{ChatRequest, Usage};
use crate::catalog::{Pricing, WireFamily};
use crate::error::ApiError;
pub use record::UsageRecord;
pub use recorder::Recorder;

/// Accounting for one API request. Never holds a key (key-looking tags are hashed on arrival) or
/// a prompt.
#[derive(Debug)]
pub struct RequestLog {
    method: &'static str,
    path: &'static str,
    /// Model name as the client sent it (`@tag` suffix stripped).
    model: String,
    /// Provider that served it, once routed (`-` before).
    provider: Cow<'static, str>,
    /// Upstream model id it was routed to (differs from `model` for aliases and DEFAULT_MODEL).
    routed: Cow<'static, str>,
    /// HTTP status sent to the client.
    status: u16,
    started: Instant,
    /// Arrival, Unix ms.
    started_ms: i64,
    usage: Usage,
    /// Whether the response (or stream) completed normally.
    complete: bool,
    /// Where records go (`None`: log only).
    recorder: Option<Arc<Recorder>>,
    tag_sources: tags::TagSources,
    tags: Vec<String>,
    client_ip: Option<IpAddr>,
    user_agent: Option<String>,
    stream: bool,
    error: Option<&'static str>,
    first_token: Option<Instant>,
    pricing: Option<&'static Pricing>,
    /// Runtime override price (wins over `pricing`; `crate::overrides`).
    pricing_override: Option<Arc<Pricing>>,
    /// The upstream speaks the Anthropic wire family: it bills cache reads separately from the
    /// prompt, and its `message_start` carries a provisional output count (see
    /// `usage_after_output`).
    anthropic_wire: bool,
    /// Web-search context size the request asked for (Perplexity's per-request fee depends on it).
    search: cost::SearchContextSize,
    /// Estimate of the prompt, tokens ([`estimate::prompt_tokens`]): computed for streams only,
    /// used when one is cut before the upstream reported its prompt count.
    prompt_estimate: Option<u64>,
    /// Characters (UTF-8 bytes) of answer text, reasoning text and tool-call names and arguments
    /// streamed to the client so far (a running sum: no allocation per event).
    streamed_chars: u64,
    /// The latest usage arrived after some output was streamed. Matters for the Anthropic wire
    /// family (`anthropic_wire`): its `message_start` carries a provisional output count (1)
    /// before any output, the real one comes in `message_delta` at the end (anthropic fixtures:
    /// `"output_tokens":1` in `message_start`).
    usage_after_output: bool,
}

impl RequestLog {
    /// Start accounting for a request that is logged but not recorded (no attribution).
    pub fn new(method: &'static str, path: &'static str) -> Self {
        RequestLog {
            method,
            path,
            model: String::new(),
            provider: Cow::Borrowed("-"),
            routed: Cow::Borrowed("-"),
            status: 200,
            started: Instant::now(),
            started_ms: recorder::now_ms(),
            usage: Usage::default(),
            complete: false,
            recorder: None,
            tag_sources: tags::TagSources::default(),
            tags: Vec::new(),
            client_ip: None,
            user_agent: None,
            stream: false,
            error: None,
            first_token: None,
            pricing: None,
            pricing_override: None,
            anthropic_wire: false,
            search: cost::SearchContextSize::default(),
            prompt_estimate: None,
            streamed_chars: 0,
            usage_after_output: false,
        }
    }

    /// Start accounting for `req` (a model request at `path`): reads the tag headers, client IP
    /// (trusted proxies from `recorder`) and User-Agent now; records on drop when `recorder` is
    /// recording.
    pub fn start(recorder: &Arc<Recorder>, req: &poem::Request, path: &'static str) -> Self {
        let mut log = RequestLog::new("POST", path);
        if req.method() == poem::http::Method::GET {
            log.method = "GET";
        }
        if !recorder.is_recording() {
            return log;
        }
        let headers = req.headers();
        let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
        log.client_ip = tags::client_ip(peer, headers, recorder.trusted_proxies());
        log.user_agent = tags::user_agent(headers);
        log.tag_sources = tags::TagSources::from_headers(headers);
        log.tags = log.tag_sources.resolve(None);
        log.recorder = Some(Arc::clone(recorder));
        log
    }

    /// When the request arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The prompt estimate (tokens, [`estimate::prompt_tokens`]) of the request given to
    /// [`RequestLog::set_request`], when it was computed: for streams.
    pub fn prompt_estimate(&self) -> Option<u64> {
        self.prompt_estimate
    }

    /// Record the requested model name (as given; see [`RequestLog::set_request`] to strip a tag
    /// suffix).
    pub fn set_model(&mut self, model: &str) {
        model.clone_into(&mut self.model);
    }

    /// Record the decoded request: strips a `model@tag` suffix from `req.model` (always, before
    /// model resolution) and applies the tag precedence, records the model asked and the stream
    /// flag.
    pub fn set_request(&mut self, req: &mut ChatRequest) {
        self.set_model_tagged(&mut req.model);
        self.stream = req.stream;
        // Kept for a stream cut before its usage (see `usage_with_estimates`; also shown in the
        // access log when usage tracking is off); a few additions per message, no allocation.
        self.prompt_estimate = req.stream.then(|| estimate::prompt_tokens(req));
        // `web_search_options.search_context_size` (WIRE.md §6.1); Perplexity's default is low.
        self.search = req
            .openai_extra
            .as_ref()
            .and_then(|x| x.get("web_search_options"))
            .and_then(|w| w.get("search_context_size"))
            .and_then(serde_json::Value::as_str)
            .and_then(cost::SearchContextSize::parse)
            .unwrap_or_default();
    }

    /// Record the requested model of a request without a [`ChatRequest`] (embeddings): strips a
    /// `model@tag` suffix from `model` (before model resolution), applies the tag precedence and
    /// records the model asked.
    pub fn set_model_tagged(&mut self, model: &mut String) {
        let (name, suffix) = tags::split_model_suffix(model);
        if suffix.is_some() {
            self.tags = self.tag_sources.resolve(suffix);
        }
        if name.len() != model.len() {
            *model = name.to_string();
        }
        self.set_model(model);
    }

    /// Record where the request was routed: provider (catalog provider or Ollama instance name),
    /// upstream model id and, for catalog models, the price.
    pub fn set_route(&mut self, target: &crate::route::Target) {
        self.provider = Cow::Borrowed(target.provider_name());
        self.pricing_override = None;
        match target {
            crate::route::Target::Catalog(model) => {
                let info = model.info();
                self.routed = Cow::Borrowed(info.id);
                self.pricing = Some(model.pricing());
                self.anthropic_wire = info.provider.info().wire == WireFamily::Anthropic;
            }
            crate::route::Target::Priced(model, pricing) => {
                let info = model.info();
                self.routed = Cow::Borrowed(info.id);
                self.pricing = Some(model.pricing());
                self.pricing_override = Some(Arc::clone(pricing));
                self.anthropic_wire = info.provider.info().wire == WireFamily::Anthropic;
            }
            crate::route::Target::Custom(c) => {
                self.routed = Cow::Owned(c.model.clone());
                self.pricing = None;
                self.pricing_override = c.pricing.clone();
                self.anthropic_wire = c.family == WireFamily::Anthropic;
            }
            // Ollama-instance models have no catalog price: their cost is recorded as null
            // ("unpriced"), never 0.
            crate::route::Target::Instance(m) => {
                self.routed = Cow::Owned(m.model.clone());
                self.pricing = None;
                self.anthropic_wire = false;
            }
        }
    }

    /// Account for one item of a stream, as every frontend's stream encoder does: usage replaces
    /// the counts so far, `Finish` completes the request, an error is recorded (and logged at
    /// warn: the client already has a 200), and the characters of text, reasoning and tool calls
    /// are counted (for the estimate of a stream cut before its usage).
    pub fn observe(&mut self, item: &Result<crate::canonical::StreamEvent, ApiError>) {
        use crate::canonical::StreamEvent;
        match item {
            Ok(StreamEvent::TextDelta(t) | StreamEvent::ThinkingDelta(t)) => {
                self.streamed_chars += t.len() as u64;
            }
            Ok(StreamEvent::ToolCallDelta {
                name, arguments, ..
            }) => {
                self.streamed_chars +=
                    (arguments.len() + name.as_ref().map_or(0, String::len)) as u64;
            }
            Ok(StreamEvent::Usage(u)) => self.set_usage(*u),
            Ok(StreamEvent::Finish(_)) => self.set_complete(),
            Ok(_) => {}
            Err(e) => {
                self.set_error(e);
                tracing::warn!(error = %e, "upstream failed mid-stream");
            }
        }
    }

    /// Record a failure: its status ([`ApiError::status`], what the OpenAI and Ollama APIs send)
    /// and kind.
    pub fn set_error(&mut self, e: &ApiError) {
        self.status = e.status();
        self.error = Some(error_kind(e));
    }

    /// Record a failure answered with `status` rather than [`ApiError::status`], for an API that
    /// maps statuses (the Anthropic API answers an overloaded upstream's 503 with 529): the record
    /// keeps the status the client got.
    pub fn set_error_with_status(&mut self, e: &ApiError, status: u16) {
        self.set_error(e);
        self.status = status;
    }

    /// Record that the first token (or first stream event) arrived now (only the first call
    /// counts).
    pub fn set_first_token(&mut self) {
        self.first_token.get_or_insert_with(Instant::now);
    }

    /// Record token counts (replaces earlier counts: upstreams report cumulative usage).
    pub fn set_usage(&mut self, usage: Usage) {
        self.usage = usage;
        self.usage_after_output = self.streamed_chars > 0;
    }

    /// Mark the response as fully delivered.
    pub fn set_complete(&mut self) {
        self.complete = true;
    }

    /// The usage to record, and whether part of it is estimated. The upstream's counts, except
    /// for a stream that started (its first event arrived: `first_token`) and did not complete
    /// (client gone, shutdown, idle timeout, upstream failure), where the classes the upstream
    /// had not reported yet are estimated (chars / 4, [`estimate`]):
    /// - prompt tokens, when no prompt count arrived: the estimate of the request;
    /// - completion tokens, when no completion count arrived (OpenAI-compatible upstreams report
    ///   usage in their last chunk, Ollama in its `done` line), or, from an Anthropic-family
    ///   upstream, none after output was streamed (its real output count comes in
    ///   `message_delta`; `message_start` has a provisional one): the estimate of the characters
    ///   streamed, when larger than the count reported.
    ///
    /// An estimate also drops a provider-reported cost (it would not cover the estimated tokens):
    /// the cost is then computed from the estimate (`estimated`, or `unpriced`).
    fn usage_with_estimates(&self) -> (Usage, bool) {
        let mut u = self.usage;
        if !self.stream || self.complete || self.first_token.is_none() {
            return (u, false);
        }
        let mut estimated = false;
        if u.prompt_tokens == 0
            && let Some(p) = self.prompt_estimate
        {
            u.prompt_tokens = p;
            estimated = true;
        }
        let output_reported = (u.completion_tokens > 0 || u.reasoning_tokens > 0)
            && (self.usage_after_output || !self.anthropic_wire);
        let output = estimate::tokens_for_chars(self.streamed_chars);
        if !output_reported && output > u.completion_tokens.max(u.reasoning_tokens) {
            u.completion_tokens = output;
            estimated = true;
        }
        if estimated {
            u.reported_cost_usd = None;
        }
        (u, estimated)
    }

    /// The usage record this request leaves (what `Drop` sends) with `usage` as its counts (from
    /// [`RequestLog::usage_with_estimates`]), tags possibly empty (the writer applies the default
    /// tag). Moves the request's strings out: call once, at the end.
    fn take_record(&mut self, usage: Usage, tokens_estimated: bool) -> UsageRecord {
        let now = Instant::now();
        let latency_ms = now.duration_since(self.started).as_millis() as u64;
        let ttft_ms = self
            .first_token
            .or((self.complete && !self.stream && self.status < 400).then_some(now))
            .map(|t| t.duration_since(self.started).as_millis() as u64);
        let error = self
            .error
            .or((!self.complete).then_some("client_disconnected"));
        let routed = self.provider != "-";
        // The search context size the request asked for prices Perplexity's per-request fee.
        let c = if routed {
            let pricing = self.pricing_override.as_deref().or(self.pricing);
            cost::cost(pricing, &usage, self.search)
        } else {
            // Never routed (bad request, unknown model): nothing was billed.
            cost::Cost {
                usd: Some(0.0),
                source: cost::CostSource::Estimated,
            }
        };
        let u = &usage;
        let (cached_input, cache_read) = if self.anthropic_wire {
            (0, u.cache_read_tokens)
        } else {
            (u.cache_read_tokens, 0)
        };
        let (provider, model) = if routed {
            (
                std::mem::take(&mut self.provider),
                std::mem::take(&mut self.routed),
            )
        } else {
            (Cow::Borrowed(""), Cow::Borrowed(""))
        };
        UsageRecord {
            time_ms: self.started_ms,
            frontend: Cow::Borrowed(frontend_of(self.path)),
            endpoint: Cow::Borrowed(self.path),
            provider,
            model,
            model_requested: std::mem::take(&mut self.model),
            tags: std::mem::take(&mut self.tags),
            client_ip: self.client_ip.map(|ip| ip.to_string()),
            client_host: None,
            user_agent: self.user_agent.take(),
            stream: self.stream,
            status: self.status,
            error: error.map(Cow::Borrowed),
            complete: self.complete,
            latency_ms,
            ttft_ms,
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens.max(u.reasoning_tokens),
            reasoning_tokens: u.reasoning_tokens,
            cached_input_tokens: cached_input,
            cache_read_tokens: cache_read,
            cache_write_tokens: u.cache_write_tokens,
            cache_write_1h_tokens: u.cache_write_1h_tokens.min(u.cache_write_tokens),
            cost_pico_usd: c.pico_usd(),
            cost_source: c.source,
            tokens_estimated,
        }
    }
}

/// The client API a path belongs to: `openai-api` (`/v1/...`), `anthropic-api` (`/v1/messages`),
/// `ollama-api` (`/api/...`). Suffixed so they never read as provider names.
fn frontend_of(path: &str) -> &'static str {
    if path.starts_with("/v1/messages") {
        "anthropic-api"
    } else if path.starts_with("/v1/") {
        "openai-api"
    } else {
        "ollama-api"
    }
}

/// A stable name for an error's kind, as stored in usage records.
pub fn error_kind(e: &ApiError) -> &'static str {
    match e {
        ApiError::BadRequest(_) => "bad_request",
        ApiError::ModelNotFound(_) => "model_not_found",
        ApiError::ProviderNotConfigured { .. } => "provider_not_configured",
        ApiError::PayloadTooLarge { .. } => "payload_too_large",
        ApiError::Upstream { .. } => "upstream_status",
        ApiError::UpstreamStream { .. } => "upstream_stream",
        ApiError::UpstreamTimeout { .. } => "upstream_timeout",
        ApiError::UpstreamUnreachable { .. } => "upstream_unreachable",
        ApiError::UpstreamInvalid { .. } => "upstream_invalid",
        ApiError::UnknownRoute { .. } => "unknown_route",
        ApiError::NotImplemented(_) => "not_implemented",
    }
}

/// Marker in a response's extensions: the handler accounts for this request with a
/// [`RequestLog`], so the server's generic access log skips it (one line per request).
#[derive(Debug, Clone, Copy)]
pub struct Logged;

/// Mark `resp` as accounted for by its handler's [`RequestLog`].
pub fn logged(mut resp: poem::Response) -> poem::Response {
    resp.extensions_mut().insert(Logged);
    resp
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        let latency_ms = self.started.elapsed().as_millis() as u64;
        let (usage, estimated) = self.usage_with_estimates();
        // The counts the usage record gets; `tokens_estimated=true` only on estimated ones.
        tracing::info!(
            method = self.method,
            path = self.path,
            model = %self.model,
            provider = %self.provider,
            routed = %self.routed,
            status = self.status,
            latency_ms,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            complete = self.complete,
            tokens_estimated = estimated.then_some(true),
            "request"
        );
        if let Some(recorder) = self.recorder.take() {
            let record = self.take_record(usage, estimated);
            recorder.record(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{StreamEvent, Usage};

    /// A streamed request whose first event arrived, with `prompt` as its prompt estimate.
    fn started_stream(prompt: u64) -> RequestLog {
        let mut log = RequestLog::new("POST", "/v1/chat/completions");
        log.stream = true;
        log.prompt_estimate = Some(prompt);
        log.set_first_token();
        log
    }

    fn text(t: &str) -> Result<StreamEvent, ApiError> {
        Ok(StreamEvent::TextDelta(t.into()))
    }

    fn usage(prompt: u64, completion: u64) -> Result<StreamEvent, ApiError> {
        Ok(StreamEvent::Usage(Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            reported_cost_usd: Some(1.0),
            ..Usage::default()
        }))
    }

    /// Usage only at the end (OpenAI-compatible, Ollama), cut before it: both classes estimated
    /// from the request and from text, reasoning and tool calls streamed.
    #[test]
    fn a_cut_stream_without_usage_is_estimated() {
        let mut log = started_stream(7);
        log.observe(&text("Hello"));
        log.observe(&Ok(StreamEvent::ThinkingDelta("abc".into())));
        log.observe(&Ok(StreamEvent::ToolCallDelta {
            index: 0,
            id: Some("c".into()),
            name: Some("f".into()),
            arguments: "{}".into(),
        }));
        let (u, estimated) = log.usage_with_estimates();
        // 5 + 3 + 1 + 2 = 11 characters: 3 tokens.
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, estimated),
            (7, 3, true)
        );
    }

    /// Anthropic: input and a provisional output count at `message_start`, before any output;
    /// the input count is kept, the output estimated from what followed.
    #[test]
    fn an_anthropic_count_before_the_output_keeps_the_prompt_and_estimates_the_output() {
        let mut log = started_stream(7);
        log.anthropic_wire = true;
        log.observe(&usage(25, 1));
        log.observe(&text(&"x".repeat(40)));
        let (u, estimated) = log.usage_with_estimates();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, estimated),
            (25, 10, true)
        );
        assert_eq!(u.reported_cost_usd, None);
    }

    /// A completion count reported (a running usage in every chunk, before the text of its
    /// chunk): the upstream's counts stand.
    #[test]
    fn reported_counts_are_kept() {
        let mut log = started_stream(7);
        log.observe(&usage(12, 1));
        log.observe(&text(&"x".repeat(400)));
        let (u, estimated) = log.usage_with_estimates();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, estimated),
            (12, 1, false)
        );
        assert_eq!(u.reported_cost_usd, Some(1.0));

        // Anthropic's final count (`message_delta`, after the output).
        let mut log = started_stream(7);
        log.anthropic_wire = true;
        log.observe(&usage(25, 1));
        log.observe(&text(&"x".repeat(400)));
        log.observe(&usage(25, 90));
        let (u, estimated) = log.usage_with_estimates();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, estimated),
            (25, 90, false)
        );
    }

    /// No estimate for a complete stream, a stream that never started, or an answer that was
    /// not streamed; nothing streamed estimates no output.
    #[test]
    fn complete_unstarted_and_unstreamed_requests_are_not_estimated() {
        let mut log = started_stream(7);
        log.observe(&text("Hello"));
        log.observe(&Ok(StreamEvent::Finish(
            crate::canonical::FinishReason::Stop,
        )));
        assert_eq!(log.usage_with_estimates(), (Usage::default(), false));

        let mut log = started_stream(7);
        log.first_token = None;
        assert_eq!(log.usage_with_estimates(), (Usage::default(), false));

        let mut log = RequestLog::new("POST", "/v1/chat/completions");
        log.set_first_token();
        assert_eq!(log.usage_with_estimates(), (Usage::default(), false));

        // Cut before any output: the prompt only.
        let log = started_stream(7);
        let (u, estimated) = log.usage_with_estimates();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, estimated),
            (7, 0, true)
        );
    }
}
