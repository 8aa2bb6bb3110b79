//! The routing service between frontends and upstreams: resolve the model, encode with the
//! provider's dialect, send, and hand back a complete response or a peeked stream.
//!
//! Frontends call [`chat`] with a canonical request and never see a provider type. For streams,
//! the first upstream event is awaited before returning, so an upstream that fails before its
//! first token becomes a real HTTP error status instead of a broken 200 stream.

use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt;

use crate::canonical::{ChatRequest, ChatResponse, FinishReason, StreamEvent, Usage};
use crate::catalog::{self, ModelId};
use crate::config::Config;
use crate::error::ApiError;
use crate::instances::Instances;
pub use crate::route::Target;
use crate::upstream::{Dialect, EventStream, client};

/// Shared state of the API server: configuration and the one upstream HTTP client.
#[derive(Clone)]
pub struct AppState {
    /// Startup configuration.
    pub config: Arc<Config>,
    /// The shared upstream client.
    pub client: reqwest::Client,
    /// Process start time, RFC 3339 (reported as `modified_at` of catalog models).
    pub started_at: String,
    /// Ollama servers configured as upstreams and the snapshot of their models.
    pub instances: Arc<Instances>,
    /// Usage recording (disabled unless [`AppState::with_recorder`] attached one).
    pub usage: Arc<crate::usage::Recorder>,
    /// Client for fetching image URLs for upstreams that take only inline images
    /// (`crate::images`); separate because it follows redirects.
    pub image_client: reqwest::Client,
    /// Runtime overrides of the catalog and settings (in memory unless
    /// [`AppState::with_override_store`] attached a store).
    pub overrides: Arc<crate::overrides::Overrides>,
}

impl AppState {
    /// Build the state: the shared client from the configuration.
    ///
    /// Errors: the HTTP client cannot be built (TLS backend).
    pub fn new(config: Config) -> Result<Self, reqwest::Error> {
        let client = client::build(&config)?;
        let image_client = crate::images::client(config.connect_timeout)?;
        let instances = Arc::new(Instances::new(config.ollama.clone(), |p| {
            config.is_enabled(p)
        }));
        let defaults = crate::overrides::Defaults::from_env(
            &config,
            crate::usage::record::UsageSettings::default(),
        );
        let config = Arc::new(config);
        let overrides = Arc::new(crate::overrides::Overrides::in_memory(
            Arc::clone(&config),
            Arc::clone(&instances),
            defaults,
        ));
        Ok(AppState {
            config,
            client,
            started_at: crate::frontend::now_rfc3339(),
            instances,
            usage: crate::usage::Recorder::disabled(),
            image_client,
            overrides,
        })
    }

    /// Load the runtime overrides and settings from `store` (settings over the environment
    /// defaults `usage`, `DEFAULT_MODEL`, `BIG_MODEL`, `SMALL_MODEL`); admin writes go there.
    ///
    /// Errors: the store failed or holds a value this build cannot read.
    pub fn with_override_store(
        mut self,
        store: Arc<dyn crate::store::OverrideStore>,
        usage: crate::usage::record::UsageSettings,
    ) -> Result<Self, crate::store::StoreError> {
        let defaults = crate::overrides::Defaults::from_env(&self.config, usage);
        self.overrides = Arc::new(crate::overrides::Overrides::open(
            Arc::clone(&self.config),
            Arc::clone(&self.instances),
            defaults,
            store,
        )?);
        Ok(self)
    }

    /// The same state with upstream clients of its own, for one API server thread
    /// ([`crate::server::run_threads`]): a pooled upstream connection is driven by a task on the
    /// runtime that opened it, so each single-threaded runtime keeps its own pool and a request
    /// never crosses threads. Everything else (configuration, overrides, instances, recorder) is
    /// shared.
    ///
    /// Errors: the HTTP client cannot be built (TLS backend).
    pub fn with_own_clients(&self) -> Result<Self, reqwest::Error> {
        Ok(AppState {
            client: client::build(&self.config)?,
            image_client: crate::images::client(self.config.connect_timeout)?,
            ..self.clone()
        })
    }

    /// Record usage through `recorder`.
    pub fn with_recorder(mut self, recorder: Arc<crate::usage::Recorder>) -> Self {
        self.usage = recorder;
        self
    }
}

/// What the upstream produced.
// A reply is moved once, from `chat` to its frontend; boxing the complete answer would only add
// an allocation per request (it outgrew the stream variant when `Usage` gained Ollama timings).
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    /// A complete response (`stream: false`).
    Complete(ChatResponse),
    /// A stream whose first event has already arrived (it is re-emitted first).
    Stream(EventStream),
}

/// Resolve a client model name, in this order:
/// 0. runtime overrides (`crate::overrides`): a custom alias resolves its target; a custom model
///    its route; a disabled model, provider or custom model answers 404; a disabled compiled
///    alias is not a catalog name;
/// 1. a catalog name of an enabled provider (one with its key);
/// 2. a model discovered on an Ollama instance (see `crate::instances` for the names);
/// 3. a catalog name of a provider without key (answered later with 503 "not configured");
/// 4. a name the instances claim without resolving it (`<instance>-...` not discovered (yet), or
///    a bare name several instances list): 404, never the default model, so a prompt meant for
///    a local server never reaches another provider;
/// 5. the default model (the `default_model` setting, whose default is `DEFAULT_MODEL`).
///
/// Catalog models with an override price resolve to [`Target::Priced`]. One snapshot load per
/// call; with no override, no allocation beyond the compiled path's.
///
/// A name not found in 1-3 also asks for a background re-discovery of the instances
/// (rate-limited; this request is not delayed), so a model just pulled there resolves soon after.
///
/// Errors: `ModelNotFound` naming the client's model.
pub fn resolve_model(state: &AppState, name: &str) -> Result<Target, ApiError> {
    let snap = state.overrides.load();
    resolve_in(state, &snap, name, true, true)
        .ok_or_else(|| ApiError::ModelNotFound(name.to_string()))
}

/// [`resolve_model`] without step 5 (the default model): for embeddings, where another model's
/// vectors under the name asked for would silently corrupt the client's vector store. An unknown
/// name is a 404, as Ollama and OpenAI answer it.
///
/// Errors: `ModelNotFound` naming the client's model.
pub fn resolve_model_no_default(state: &AppState, name: &str) -> Result<Target, ApiError> {
    let snap = state.overrides.load();
    resolve_in(state, &snap, name, true, false)
        .ok_or_else(|| ApiError::ModelNotFound(name.to_string()))
}

/// The model `name` means by itself: overrides and catalog, no custom alias, no default model
/// (targets of aliases and settings are checked with it).
pub fn resolve_exact(state: &AppState, name: &str) -> Option<Target> {
    let snap = state.overrides.load();
    resolve_in(state, &snap, name, false, false)
}

/// [`resolve_model`] against `snap`; `top` = a client name (aliases apply, and the default model
/// when `default`), not an alias target or the default model itself.
fn resolve_in(
    state: &AppState,
    snap: &crate::overrides::Snapshot,
    name: &str,
    top: bool,
    default: bool,
) -> Option<Target> {
    use crate::overrides::Lookup;
    let mut alias_disabled = false;
    match snap.lookup(name) {
        Lookup::None => {}
        Lookup::Alias(target) if top => return resolve_in(state, snap, target, false, false),
        Lookup::Alias(_) => {}
        Lookup::Custom(route) => return Some(Target::Custom(route)),
        Lookup::Disabled => return None,
        Lookup::AliasDisabled => alias_disabled = true,
    }
    let catalog = if alias_disabled {
        None
    } else {
        catalog::resolve(name)
    };
    if let Some(m) = catalog
        && snap.is_disabled(m)
    {
        return None;
    }
    let target = |m: ModelId| match snap.pricing(m) {
        Some(p) => Target::Priced(m, Arc::clone(p)),
        None => Target::Catalog(m),
    };
    if let Some(m) = catalog.filter(|m| state.config.is_enabled(m.info().provider)) {
        return Some(target(m));
    }
    if let Some(m) = state.instances.resolve(name) {
        if snap.instance_disabled(m.instance, &m.model) {
            return None;
        }
        return Some(Target::Instance(m));
    }
    if let Some(m) = catalog {
        return Some(target(m));
    }
    // `instance/model`, the form alias targets and the admin API use for discovered models
    // (clients say `instance-model`); allocates only on this fall-through path.
    if let Some((i, m)) = name.split_once('/')
        && let Some(m) = state.instances.resolve(&format!("{i}-{m}"))
    {
        if snap.instance_disabled(m.instance, &m.model) {
            return None;
        }
        return Some(Target::Instance(m));
    }
    state.instances.refresh_soon(&state.client);
    if !top || !default || state.instances.claims(name) {
        return None;
    }
    snap.default_model()
        .and_then(|d| resolve_in(state, snap, d, false, false))
}

/// Route a chat request to its upstream, handing `on_usage` the running usage a stream reports
/// while its first real event is awaited (Anthropic's `message_start`), so the caller accounts
/// for input tokens already billed even when the stream fails or the client leaves before the
/// first token.
///
/// Errors: unknown model (404), provider without key (503), an embedding model, a request the
/// dialect cannot express or an image URL that cannot be fetched for an inline-only upstream
/// (400), upstream status
/// (kept), transport failures (502/504), and, for streams, a failure before the first event.
pub async fn chat(
    state: &AppState,
    target: &Target,
    req: &ChatRequest,
    on_usage: &mut (dyn FnMut(Usage) + Send),
) -> Result<Reply, ApiError> {
    if crate::embed::is_embedding_model(target) {
        return Err(crate::embed::chat_to_embedding_model(&req.model));
    }
    // Image URLs the upstream cannot take are fetched and inlined first (rare: no copy otherwise).
    let dialect: &'static dyn Dialect = match target {
        Target::Catalog(model) | Target::Priced(model, _) => {
            catalog::dialect(model.info().provider)
        }
        Target::Instance(_) => &crate::upstream::ollama::Ollama,
        Target::Custom(c) => custom_dialect(c),
    };
    let inlined;
    let req = if crate::images::needs_fetch(req, |u| dialect.takes_image_url(u)) {
        inlined = crate::images::inline_urls(
            &state.image_client,
            state.config.image_url_fetch,
            req,
            |u| dialect.takes_image_url(u),
        )
        .await?;
        &inlined
    } else {
        req
    };
    let (dialect, upstream) = match target {
        Target::Catalog(model) | Target::Priced(model, _) => {
            send_to_catalog(state, *model, req).await?
        }
        Target::Instance(m) => crate::upstream::ollama::send_to_instance(state, m, req).await?,
        Target::Custom(c) => send_to_custom(state, c, req).await?,
    };
    let name = upstream.provider;
    if req.stream {
        // An error finish reason ends the stream with an error item (the frontends send it as their
        // in-stream error event, WIRE.md §7.1) instead of a normal-looking finish.
        let decoded = dialect.decode_stream(name, upstream.into_stream(&state.config));
        let mut events = IdleTimeout::new(decoded, state.config.stream_idle_timeout, name).map(
            move |ev| match ev {
                Ok(StreamEvent::Finish(FinishReason::Error)) => Err(generation_failed(name)),
                other => other,
            },
        );
        // Usage-only events (Anthropic's `message_start`, a Gemini chunk without parts) do not
        // count as the first event: a failure after them still gets a real HTTP status. The
        // latest of them is re-emitted before the first real event.
        let mut usage = None;
        loop {
            match events.next().await {
                Some(Ok(StreamEvent::Usage(u))) => {
                    on_usage(u);
                    usage = Some(u);
                }
                Some(Ok(first)) => {
                    // No allocation: the (at most two) re-emitted events are an iterator.
                    let head = usage
                        .map(|u| Ok(StreamEvent::Usage(u)))
                        .into_iter()
                        .chain([Ok(first)]);
                    return Ok(Reply::Stream(Box::pin(
                        futures_util::stream::iter(head).chain(events),
                    )));
                }
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(ApiError::UpstreamInvalid {
                        provider: name,
                        reason: "empty stream".into(),
                    });
                }
            }
        }
    } else {
        let body = upstream.into_bytes(&state.config).await?;
        let answer = dialect.decode(name, &body)?;
        if answer.finish_reason == FinishReason::Error {
            return Err(generation_failed(name));
        }
        Ok(Reply::Complete(answer))
    }
}

/// Ends a stream with [`ApiError::UpstreamTimeout`] when the upstream yields no event for `after`
/// (`STREAM_IDLE_TIMEOUT_MS`): a stream that sends only keep-alive comments, or nothing, never
/// ends otherwise. Only time spent waiting on the upstream counts (not time the client took to
/// ask for the next event). One timer per stream, re-armed when the stream first waits after an
/// event (no timer per event).
struct IdleTimeout {
    inner: crate::upstream::EventStream,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    after: std::time::Duration,
    provider: &'static str,
    /// The timer runs for the current wait (false after an event until the next wait starts).
    armed: bool,
    done: bool,
}

impl IdleTimeout {
    fn new(
        inner: crate::upstream::EventStream,
        after: std::time::Duration,
        provider: &'static str,
    ) -> Self {
        IdleTimeout {
            inner,
            timer: Box::pin(tokio::time::sleep(after)),
            after,
            provider,
            armed: true,
            done: false,
        }
    }
}

impl futures_util::Stream for IdleTimeout {
    type Item = Result<StreamEvent, ApiError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => {
                self.armed = false;
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !self.armed {
                    self.armed = true;
                    let deadline = tokio::time::Instant::now() + self.after;
                    self.timer.as_mut().reset(deadline);
                }
                self.poll_timer(cx)
            }
        }
    }
}

impl IdleTimeout {
    /// The upstream is waited on: poll the timer (registers the waker).
    fn poll_timer(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<StreamEvent, ApiError>>> {
        use std::task::Poll;
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.done = true;
                tracing::warn!(
                    provider = self.provider,
                    idle_ms = self.after.as_millis() as u64,
                    "upstream stream idle: cut"
                );
                Poll::Ready(Some(Err(ApiError::UpstreamTimeout {
                    provider: self.provider,
                    after: self.after,
                })))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The error for an answer the upstream ended with an error finish reason (Gemini
/// `MALFORMED_FUNCTION_CALL`/`UNEXPECTED_TOOL_CALL`/`TOO_MANY_TOOL_CALLS`/`LANGUAGE`, Mistral
/// `error`, DeepSeek `insufficient_system_resource`; WIRE.md §7.1): 502 before the first event,
/// an in-stream error after it.
fn generation_failed(provider: &'static str) -> ApiError {
    ApiError::UpstreamStream {
        provider,
        message: "the model ended the generation with an error (no complete answer)".into(),
    }
}

/// Encode `req` with the dialect of `model`'s provider and send it (the compiled-catalog path).
///
/// Errors: provider without key (503), request the dialect cannot express (400), upstream status
/// (kept), transport failures (502/504).
async fn send_to_catalog(
    state: &AppState,
    model: ModelId,
    req: &ChatRequest,
) -> Result<(&'static dyn Dialect, client::Upstream), ApiError> {
    let provider = model.info().provider;
    if !state.config.is_enabled(provider) {
        let info = provider.info();
        return Err(ApiError::ProviderNotConfigured {
            provider: info.name,
            env: info.api_key_env.unwrap_or("API_KEY"),
        });
    }
    let dialect = catalog::dialect(provider);
    let encoded = dialect.encode(model, req)?;
    let upstream = client::send(
        &state.client,
        &state.config,
        dialect,
        model,
        &encoded.path,
        encoded.body,
    )
    .await?;
    Ok((dialect, upstream))
}

/// The dialect of a custom model's wire family (OpenAI-compatible or Anthropic).
fn custom_dialect(c: &crate::overrides::CustomRoute) -> &'static dyn Dialect {
    match c.family {
        catalog::WireFamily::Anthropic => &crate::upstream::anthropic::Anthropic,
        _ => &crate::upstream::openai_compat::OpenAiCompat,
    }
}

/// Encode `req` for a custom model (no quirks) and send it to its provider's base URL with the
/// key read from the variable the override names.
///
/// Errors: a key variable named but unset (503), request the dialect cannot express (400),
/// upstream status (kept), transport failures (502/504).
async fn send_to_custom(
    state: &AppState,
    c: &crate::overrides::CustomRoute,
    req: &ChatRequest,
) -> Result<(&'static dyn Dialect, client::Upstream), ApiError> {
    let dialect = custom_dialect(c);
    let (path, body) = match c.family {
        catalog::WireFamily::Anthropic => {
            let facts = crate::upstream::anthropic::ModelFacts {
                id: &c.model,
                quirks: &crate::overrides::CUSTOM_QUIRKS,
                max_output_tokens: None,
                reasoning: c.capabilities.reasoning,
            };
            (
                "/messages",
                crate::upstream::anthropic::encode_body_for(&facts, req)?,
            )
        }
        _ => (
            "/chat/completions",
            crate::upstream::openai_compat::encode_body(
                &c.model,
                &crate::overrides::CUSTOM_QUIRKS,
                req,
            ),
        ),
    };
    let body = serde_json::to_vec(&body)
        .map_err(|e| ApiError::BadRequest(format!("cannot encode request: {e}")))?;
    let rb = custom_request(state, c, path, body)?;
    let upstream = client::send_request(rb, c.provider, dialect, &state.config).await?;
    Ok((dialect, upstream))
}

/// A POST of the JSON `body` to `path` under a custom model's base URL, with its provider's auth
/// header (the key read from the variable the override names) and extra headers.
///
/// Errors: a key variable named but unset (503 `ProviderNotConfigured`).
pub(crate) fn custom_request(
    state: &AppState,
    c: &crate::overrides::CustomRoute,
    path: &str,
    body: Vec<u8>,
) -> Result<reqwest::RequestBuilder, ApiError> {
    use crate::catalog::AuthStyle;
    let mut rb = state
        .client
        .post(format!("{}{path}", c.base_url))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    match (c.auth, c.key()) {
        (AuthStyle::None, _) => {}
        (_, None) => {
            return Err(ApiError::ProviderNotConfigured {
                provider: c.provider,
                env: c.key_env.unwrap_or("API_KEY"),
            });
        }
        (AuthStyle::Bearer, Some(k)) => rb = rb.bearer_auth(k),
        (AuthStyle::XApiKey, Some(k)) => rb = rb.header("x-api-key", k),
        (AuthStyle::XGoogApiKey, Some(k)) => rb = rb.header("x-goog-api-key", k),
    }
    for (k, v) in c.headers {
        rb = rb.header(*k, *v);
    }
    Ok(rb)
}
