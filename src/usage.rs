//! Per-request accounting hand-off: the one log line per request and the point where usage
//! leaves the request path.
//!
//! A [`RequestLog`] is created when a request arrives and dropped when its response is complete,
//! including when a stream ends early (client disconnect, upstream failure): `Drop` writes the
//! log line and hands the [`Usage`] on. Recording usage records (redb, batched) plugs in at
//! [`RequestLog::drop`] in a later change; nothing here waits on storage.

use std::time::Instant;

use crate::canonical::Usage;

/// Accounting for one API request. Never holds a key or a prompt.
#[derive(Debug)]
pub struct RequestLog {
    method: &'static str,
    path: &'static str,
    /// Model name as the client sent it.
    model: String,
    /// Provider that served it, once routed.
    provider: &'static str,
    /// Upstream model id it was routed to (differs from `model` for aliases and DEFAULT_MODEL;
    /// borrowed for catalog models, owned for Ollama-instance models).
    routed: std::borrow::Cow<'static, str>,
    /// HTTP status sent to the client.
    status: u16,
    started: Instant,
    usage: Usage,
    /// Whether the response (or stream) completed normally.
    complete: bool,
}

impl RequestLog {
    /// Start accounting for a request.
    pub fn new(method: &'static str, path: &'static str) -> Self {
        RequestLog {
            method,
            path,
            model: String::new(),
            provider: "-",
            routed: std::borrow::Cow::Borrowed("-"),
            status: 200,
            started: Instant::now(),
            usage: Usage::default(),
            complete: false,
        }
    }
    /// When the request arrived.
    pub fn started(&self) -> Instant {
        self.started
    }
    /// Record the requested model name.
    pub fn set_model(&mut self, model: &str) {
        model.clone_into(&mut self.model);
    }
    /// Record where the request was routed: provider (catalog provider or Ollama instance name)
    /// and upstream model id.
    pub fn set_route(&mut self, target: &crate::route::Target) {
        self.provider = target.provider_name();
        self.routed = match target {
            crate::route::Target::Catalog(m) => std::borrow::Cow::Borrowed(m.info().id),
            crate::route::Target::Instance(m) => std::borrow::Cow::Owned(m.model.clone()),
        };
    }
    /// Record the HTTP status.
    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }
    /// Record token counts (replaces earlier counts: upstreams report cumulative usage).
    pub fn set_usage(&mut self, usage: Usage) {
        self.usage = usage;
    }
    /// Mark the response as fully delivered.
    pub fn set_complete(&mut self) {
        self.complete = true;
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
        tracing::info!(
            method = self.method,
            path = self.path,
            model = %self.model,
            provider = self.provider,
            routed = %self.routed,
            status = self.status,
            latency_ms,
            prompt_tokens = self.usage.prompt_tokens,
            completion_tokens = self.usage.completion_tokens,
            complete = self.complete,
            "request"
        );
    }
}
