//! Admin API handlers for the catalog, settings and pricing (admin/API.md sections Providers,
//! Models, Aliases, Ollama instances, Settings, Pricing sync).
//!
//! [`routes`] is nested under `/api` by the admin server (`src/admin/`), which owns the listener,
//! auth, sessions and CSRF, and attaches the API server's [`AppState`] with `.data(state)`: the
//! handlers read it through `Data<&AppState>`. Every write goes through
//! [`super::Overrides::update`] / [`super::Overrides::set_settings`], so the API server sees it
//! at the next request. Errors: `{"error": {"type", "message"}}` with the contract's statuses.
//! Keys are never returned: providers carry the variable NAME and `key_configured`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use poem::web::{Data, Path, Query};
use poem::{Body, Response, Route, delete, get, handler, post, put};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::{
    Caps, CustomAlias, CustomModel, CustomProvider, Family, OverrideError, PriceFields, Prices,
    Snapshot, compiled_model, compiled_provider, model_key,
};
use crate::catalog::{Capability, ModelId, PROVIDERS, ProviderId, WireFamily};
use crate::relay::AppState;

/// Largest admin request body: 16 MiB (a LiteLLM price file is ~1.5 MB).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Longest a provider "test connection" waits for the upstream's model listing: 10 s.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer "test connection" reads, bytes (a model list of the largest providers is
/// well under 2 MiB; the base URL is any host the session names).
pub const MAX_PROBE_BYTES: usize = 8 * 1024 * 1024;

/// The catalog/settings/pricing routes, relative to `/api`.
pub fn routes() -> Route {
    Route::new()
        .at("/providers", get(list_providers).post(create_provider))
        .at(
            "/providers/:id",
            put(update_provider).delete(delete_provider),
        )
        .at("/providers/:id/test", post(test_provider))
        .at("/models", get(list_models).post(create_model))
        .at(
            "/models/override",
            put(override_model).delete(clear_override),
        )
        .at("/models/custom", delete(delete_custom_model))
        .at("/aliases", get(list_aliases).post(create_alias))
        .at("/aliases/:alias", put(update_alias).delete(delete_alias))
        .at("/instances", get(list_instances))
        .at("/settings", get(get_settings).put(put_settings))
        .at("/pricing/preview", post(pricing_preview))
        .at("/pricing/import", post(pricing_import))
}

// ---- errors and bodies ----

/// An admin API error (admin/API.md "Errors").
#[derive(Debug)]
pub struct AdminError {
    /// HTTP status.
    pub status: u16,
    /// `bad_request`, `not_found`, `conflict`, `payload_too_large`, `internal`, `upstream`.
    pub kind: &'static str,
    /// Human text (never a key).
    pub message: String,
}

impl AdminError {
    /// Invalid input (400).
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::bad(msg)
    }
    fn bad(msg: impl Into<String>) -> Self {
        AdminError {
            status: 400,
            kind: "bad_request",
            message: msg.into(),
        }
    }
    fn not_found(msg: impl Into<String>) -> Self {
        AdminError {
            status: 404,
            kind: "not_found",
            message: msg.into(),
        }
    }
    fn conflict(msg: impl Into<String>) -> Self {
        AdminError {
            status: 409,
            kind: "conflict",
            message: msg.into(),
        }
    }
    /// A failed upstream fetch (pricing URL).
    pub fn upstream(msg: impl Into<String>) -> Self {
        AdminError {
            status: 502,
            kind: "upstream",
            message: msg.into(),
        }
    }

    /// The error response.
    pub fn response(&self) -> Response {
        json_status(
            self.status,
            &json!({"error": {"type": self.kind, "message": self.message}}),
        )
    }
}

impl From<OverrideError> for AdminError {
    fn from(e: OverrideError) -> Self {
        match e {
            OverrideError::BadRequest(m) => AdminError::bad(m),
            OverrideError::NotFound(m) => AdminError::not_found(m),
            OverrideError::Conflict(m) => AdminError::conflict(m),
            OverrideError::Store(e) => {
                tracing::error!(error = %e, "override store failed");
                AdminError {
                    status: 500,
                    kind: "internal",
                    message: "the database failed; nothing was changed".into(),
                }
            }
        }
    }
}

/// A handler result: the response or the error to render.
pub type Res = Result<Response, AdminError>;

fn json_status(status: u16, v: &Value) -> Response {
    Response::builder()
        .status(poem::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("application/json")
        .body(serde_json::to_vec(v).unwrap_or_default())
}

pub(crate) fn ok(v: &Value) -> Res {
    Ok(json_status(200, v))
}

fn created(v: &Value) -> Res {
    Ok(json_status(201, v))
}

fn no_content() -> Res {
    Ok(Response::builder()
        .status(poem::http::StatusCode::NO_CONTENT)
        .finish())
}

fn respond(r: Res) -> Response {
    r.unwrap_or_else(|e| e.response())
}

/// Read a JSON body of at most [`MAX_BODY_BYTES`].
///
/// Errors: too large (413), empty or not the expected JSON (400, serde's message).
pub async fn read_body<T: for<'de> Deserialize<'de>>(body: Body) -> Result<T, AdminError> {
    use crate::frontend::{BodyError, read_body_limited};
    let bytes = read_body_limited(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => AdminError {
                status: 413,
                kind: "payload_too_large",
                message: format!("request body larger than {MAX_BODY_BYTES} bytes"),
            },
            BodyError::Read(other) => AdminError::bad(format!("cannot read request body: {other}")),
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(AdminError::bad(
            "request body is empty: expected a JSON object",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| AdminError::bad(format!("invalid JSON body: {e}")))
}

/// Present-or-absent for partial updates: `Some(None)` = set to null.
fn some<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

// ---- providers ----

/// A family as the API names it (`openai`, `anthropic`, `gemini`, `ollama`); serde spells the
/// names, so no provider name is written out here (the YAML is the only registry).
#[derive(serde::Serialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum FamilyView {
    Openai,
    Anthropic,
    Gemini,
    Ollama,
}

fn family_name(w: WireFamily) -> FamilyView {
    match w {
        WireFamily::OpenaiCompat => FamilyView::Openai,
        WireFamily::Anthropic => FamilyView::Anthropic,
        WireFamily::Gemini => FamilyView::Gemini,
        WireFamily::Ollama => FamilyView::Ollama,
    }
}

fn custom_family_name(f: Family) -> Family {
    f
}

fn key_set(var: Option<&str>) -> bool {
    var.is_some_and(|v| crate::config::env_var(v).ok().flatten().is_some())
}

fn provider_views(state: &AppState, snap: &Snapshot) -> Vec<Value> {
    let instances = state.instances.snapshot();
    let mut out = Vec::new();
    let custom_count = |p: &str| {
        snap.set
            .custom_models
            .values()
            .filter(|c| c.provider == p)
            .count()
    };
    for p in &PROVIDERS {
        let models: Vec<ModelId> = ModelId::all()
            .filter(|m| m.info().provider == p.id)
            .collect();
        let aliases: usize = models.iter().map(|m| m.info().aliases.len()).sum();
        let pc = state.config.provider(p.id);
        out.push(json!({
            "id": p.name,
            "name": p.display_name,
            "source": "builtin",
            "family": family_name(p.wire),
            "base_url": pc.map_or(p.base_url, |c| c.base_url.as_str()),
            "api_key_env": p.api_key_env,
            "key_configured": pc.is_some_and(|c| c.api_key.is_some()),
            "enabled": !snap.set.disabled_providers.contains(p.name),
            "model_count": models.len() + custom_count(p.name),
            "alias_count": aliases,
        }));
    }
    let discovered = |name: &str| {
        instances
            .instances
            .iter()
            .find(|s| s.name == name)
            .map_or(0, |s| s.models.len())
    };
    for i in state.instances.configured() {
        if !state.instances.is_env(i.name) {
            continue;
        }
        out.push(json!({
            "id": i.name,
            "name": i.name,
            "source": "env",
            "family": "ollama",
            "base_url": crate::instances::redact_url(&i.base_url),
            "api_key_env": null,
            "key_configured": false,
            "enabled": !snap.set.disabled_providers.contains(i.name),
            "model_count": discovered(i.name),
            "alias_count": 0,
        }));
    }
    for p in snap.set.providers.values() {
        out.push(custom_provider_view(p, snap, discovered(&p.id)));
    }
    out
}

fn custom_provider_view(p: &CustomProvider, snap: &Snapshot, discovered: usize) -> Value {
    let models = if p.family == Family::Ollama {
        discovered
    } else {
        snap.set
            .custom_models
            .values()
            .filter(|c| c.provider == p.id)
            .count()
    };
    let aliases = snap
        .set
        .aliases
        .values()
        .filter(|a| a.target.split_once('/').is_some_and(|(pr, _)| pr == p.id))
        .count();
    json!({
        "id": p.id,
        "name": p.id,
        "source": "custom",
        "family": custom_family_name(p.family),
        "base_url": if p.family == Family::Ollama { crate::instances::redact_url(&p.base_url) } else { p.base_url.clone() },
        "api_key_env": p.api_key_env,
        "key_configured": key_set(p.api_key_env.as_deref()),
        "enabled": p.enabled,
        "model_count": models,
        "alias_count": aliases,
    })
}

fn find_provider(state: &AppState, snap: &Snapshot, id: &str) -> Result<Value, AdminError> {
    provider_views(state, snap)
        .into_iter()
        .find(|p| p["id"] == id)
        .ok_or_else(|| AdminError::not_found(format!("no provider {id:?}")))
}

#[handler]
fn list_providers(state: Data<&AppState>) -> Response {
    let snap = state.overrides.load();
    respond(ok(&json!({"providers": provider_views(&state, &snap)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProvider {
    id: String,
    family: Family,
    base_url: String,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

fn valid_provider_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

fn valid_base_url(url: &str) -> Result<String, AdminError> {
    let url = url.trim().trim_end_matches('/');
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {
            Ok(url.to_string())
        }
        _ => Err(AdminError::bad(format!(
            "base_url {url:?} is not valid: expected an http(s) URL without query"
        ))),
    }
}

/// An environment variable NAME (`[A-Za-z_][A-Za-z0-9_]{0,127}`), never a key, and none of the
/// relay's own `ADMIN_*` variables.
fn valid_env_name(v: &str) -> Result<String, AdminError> {
    let b = v.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if ok && v.to_ascii_uppercase().starts_with("ADMIN_") {
        // The relay's own secrets: "test connection" and requests would send the value to the
        // provider's base URL, which the admin session chooses.
        return Err(AdminError::bad(
            "api_key_env cannot name an ADMIN_* variable (the admin password is no provider key)",
        ));
    }
    if ok {
        Ok(v.to_string())
    } else {
        Err(AdminError::bad(
            "api_key_env must be the NAME of an environment variable holding the key \
             (letters, digits, _), never the key itself",
        ))
    }
}

#[handler]
async fn create_provider(state: Data<&AppState>, body: Body) -> Response {
    respond(
        async {
            let p: NewProvider = read_body(body).await?;
            if !valid_provider_id(&p.id) {
                return Err(AdminError::bad(format!(
                    "provider id {:?} is not valid: expected [a-z0-9][a-z0-9_-]{{0,62}}",
                    p.id
                )));
            }
            let base_url = valid_base_url(&p.base_url)?;
            let api_key_env = p.api_key_env.as_deref().map(valid_env_name).transpose()?;
            let instance_names: Vec<String> = state
                .instances
                .configured()
                .iter()
                .map(|i| i.name.to_string())
                .collect();
            if compiled_provider(&p.id).is_some() || instance_names.contains(&p.id) {
                return Err(AdminError::conflict(format!(
                    "provider {:?} already exists",
                    p.id
                )));
            }
            if p.family == Family::Ollama
                && let Some(n) = instance_names.iter().find(|n| {
                    p.id.starts_with(&format!("{n}-")) || n.starts_with(&format!("{}-", p.id))
                })
            {
                return Err(AdminError::bad(format!(
                    "Ollama provider id {:?} clashes with instance {n:?}: one name may not be the \
                     other followed by '-' (their model names would collide)",
                    p.id
                )));
            }
            let provider = CustomProvider {
                id: p.id.clone(),
                family: p.family,
                base_url,
                api_key_env,
                enabled: p.enabled.unwrap_or(true),
            };
            state.overrides.update(|set| {
                if set.providers.contains_key(&provider.id) {
                    return Err(OverrideError::Conflict(format!(
                        "provider {:?} already exists",
                        provider.id
                    )));
                }
                set.providers.insert(provider.id.clone(), provider.clone());
                Ok(())
            })?;
            state.instances.refresh_soon(&state.client);
            let snap = state.overrides.load();
            created(&find_provider(&state, &snap, &p.id)?)
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderPatch {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default, deserialize_with = "some")]
    api_key_env: Option<Option<String>>,
}

#[handler]
async fn update_provider(state: Data<&AppState>, Path(id): Path<String>, body: Body) -> Response {
    respond(
        async {
            let patch: ProviderPatch = read_body(body).await?;
            let base_url = patch.base_url.as_deref().map(valid_base_url).transpose()?;
            let api_key_env = match &patch.api_key_env {
                Some(Some(v)) => Some(Some(valid_env_name(v)?)),
                Some(None) => Some(None),
                None => None,
            };
            let builtin = compiled_provider(&id).map(ProviderId::name).or_else(|| {
                state
                    .instances
                    .configured()
                    .iter()
                    .find(|i| i.name == id && state.instances.is_env(i.name))
                    .map(|i| i.name)
            });
            state.overrides.update(|set| {
                if let Some(p) = set.providers.get_mut(&id) {
                    if let Some(e) = patch.enabled {
                        p.enabled = e;
                    }
                    if let Some(u) = &base_url {
                        p.base_url.clone_from(u);
                    }
                    if let Some(k) = &api_key_env {
                        p.api_key_env.clone_from(k);
                    }
                    return Ok(());
                }
                let Some(name) = builtin else {
                    return Err(OverrideError::NotFound(format!("no provider {id:?}")));
                };
                if base_url.is_some() || api_key_env.is_some() {
                    return Err(OverrideError::BadRequest(format!(
                        "provider {id:?} is built in (providers.yaml or OLLAMA_INSTANCES): only \
                         `enabled` can change; its URL and key come from the environment"
                    )));
                }
                match patch.enabled {
                    Some(false) => {
                        set.disabled_providers.insert(name.to_string());
                    }
                    Some(true) => {
                        set.disabled_providers.remove(name);
                    }
                    None => {}
                }
                Ok(())
            })?;
            state.instances.refresh_soon(&state.client);
            let snap = state.overrides.load();
            ok(&find_provider(&state, &snap, &id)?)
        }
        .await,
    )
}

#[handler]
fn delete_provider(state: Data<&AppState>, Path(id): Path<String>) -> Response {
    respond((|| {
        state.overrides.update(|set| {
            if set.providers.remove(&id).is_none() {
                return Err(
                    if compiled_provider(&id).is_some() || state.instances.is_env(&id) {
                        OverrideError::BadRequest(format!(
                            "provider {id:?} is built in: disable it instead"
                        ))
                    } else {
                        OverrideError::NotFound(format!("no provider {id:?}"))
                    },
                );
            }
            let prefix = format!("{id}/");
            set.custom_models.retain(|k, _| !k.starts_with(&prefix));
            set.models.retain(|k, _| !k.starts_with(&prefix));
            // Aliases to its models would dangle, and revive on a provider of the same id.
            set.aliases.retain(|_, a| !a.target.starts_with(&prefix));
            Ok(())
        })?;
        no_content()
    })())
}

/// Where "test connection" sends its model listing, with which headers.
struct Probe {
    url: String,
    headers: Vec<(&'static str, String)>,
    key: Option<String>,
}

fn probe_for(state: &AppState, snap: &Snapshot, id: &str) -> Result<Probe, AdminError> {
    use crate::catalog::AuthStyle;
    let auth = |style: AuthStyle, key: Option<&String>| -> Vec<(&'static str, String)> {
        match (style, key) {
            (AuthStyle::Bearer, Some(k)) => vec![("authorization", format!("Bearer {k}"))],
            (AuthStyle::XApiKey, Some(k)) => vec![("x-api-key", k.clone())],
            (AuthStyle::XGoogApiKey, Some(k)) => vec![("x-goog-api-key", k.clone())],
            _ => Vec::new(),
        }
    };
    if let Some(pid) = compiled_provider(id) {
        let info = pid.info();
        let pc = state.config.provider(pid);
        let base = pc.map_or(info.base_url, |c| c.base_url.as_str());
        let key = pc.and_then(|c| c.api_key.clone());
        let mut headers = auth(info.auth, key.as_ref());
        headers.extend(info.headers.iter().map(|(k, v)| (*k, (*v).to_string())));
        let url = match info.wire {
            WireFamily::Ollama => format!("{base}/api/tags"),
            _ => format!("{base}/models"),
        };
        return Ok(Probe { url, headers, key });
    }
    if let Some(p) = snap.set.providers.get(id) {
        let key = p
            .api_key_env
            .as_deref()
            .and_then(|v| crate::config::env_var(v).ok().flatten());
        let (url, headers) = match p.family {
            Family::Ollama => (format!("{}/api/tags", p.base_url), Vec::new()),
            Family::Openai => (
                format!("{}/models", p.base_url),
                auth(AuthStyle::Bearer, key.as_ref()),
            ),
            Family::Anthropic => {
                let mut h = auth(AuthStyle::XApiKey, key.as_ref());
                if let Some(a) = PROVIDERS.iter().find(|p| p.wire == WireFamily::Anthropic) {
                    h.extend(a.headers.iter().map(|(k, v)| (*k, (*v).to_string())));
                }
                (format!("{}/models", p.base_url), h)
            }
        };
        return Ok(Probe { url, headers, key });
    }
    if let Some(i) = state.instances.configured().iter().find(|i| i.name == id) {
        return Ok(Probe {
            url: format!("{}/api/tags", i.base_url),
            headers: Vec::new(),
            key: None,
        });
    }
    Err(AdminError::not_found(format!("no provider {id:?}")))
}

#[handler]
async fn test_provider(state: Data<&AppState>, Path(id): Path<String>) -> Response {
    let snap = state.overrides.load_full();
    let probe = match probe_for(&state, &snap, &id) {
        Ok(p) => p,
        Err(e) => return e.response(),
    };
    let mut rb = state.client.get(&probe.url).timeout(TEST_TIMEOUT);
    for (k, v) in &probe.headers {
        rb = rb.header(*k, v);
    }
    let started = Instant::now();
    let result = rb.send().await;
    let latency_ms = started.elapsed().as_millis() as u64;
    // Never echo the key, even when an upstream quotes it back in its error message.
    let scrub = |s: String| match &probe.key {
        Some(k) if !k.is_empty() => s.replace(k.as_str(), "***"),
        _ => s,
    };
    let v = match result {
        Err(e) => {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            json!({"ok": false, "status": null, "latency_ms": latency_ms,
                   "message": kind, "models": null})
        }
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = match crate::instances::read_limited(resp, MAX_PROBE_BYTES, "answer").await {
                Ok(b) => b,
                Err(e) => {
                    return json_status(
                        200,
                        &json!({"ok": false, "status": status, "latency_ms": latency_ms,
                                "message": scrub(e), "models": null}),
                    );
                }
            };
            if (200..300).contains(&status) {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let n = v
                    .get("data")
                    .or_else(|| v.get("models"))
                    .and_then(Value::as_array)
                    .map(Vec::len);
                json!({"ok": true, "status": status, "latency_ms": latency_ms,
                       "message": "ok", "models": n})
            } else {
                let msg = crate::upstream::error_message_from_json(&body);
                json!({"ok": false, "status": status, "latency_ms": latency_ms,
                       "message": scrub(format!("HTTP {status}: {msg}")), "models": null})
            }
        }
    };
    json_status(200, &v)
}

// ---- models ----

fn caps_of(m: ModelId) -> Caps {
    let i = m.info();
    Caps {
        vision: i.has(Capability::Vision),
        tools: i.has(Capability::Tools),
        reasoning: i.has(Capability::Reasoning),
        embeddings: i.has(Capability::Embeddings),
    }
}

fn pricing_json(p: &crate::catalog::Pricing) -> Value {
    json!({"input": p.input, "output": p.output, "cache_read": p.cache_read,
           "cache_write": p.cache_write, "cache_write_1h": p.cache_write_1h})
}

/// Custom aliases by lower-case target `provider/model`.
fn aliases_by_target(snap: &Snapshot) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for a in snap.set.aliases.values() {
        out.entry(a.target.to_ascii_lowercase())
            .or_default()
            .push(a.alias.clone());
    }
    out
}

fn builtin_view(
    m: ModelId,
    snap: &Snapshot,
    custom_aliases: &HashMap<String, Vec<String>>,
) -> Value {
    let info = m.info();
    let provider = info.provider.name();
    let key = model_key(provider, info.id);
    let o = snap.set.models.get(&key);
    let compiled_caps = caps_of(m);
    let caps = o.and_then(|o| o.capabilities).unwrap_or(compiled_caps);
    let mut aliases: Vec<String> = info
        .aliases
        .iter()
        .filter(|a| !snap.set.disabled_aliases.contains(**a))
        .map(|a| (*a).to_string())
        .collect();
    if let Some(c) = custom_aliases.get(&key.to_ascii_lowercase()) {
        aliases.extend(c.iter().cloned());
    }
    let pricing = snap
        .pricing(m)
        .map_or_else(|| pricing_json(m.pricing()), |p| pricing_json(p));
    json!({
        "provider": provider,
        "id": info.id,
        "source": "builtin",
        "enabled": !snap.is_disabled(m),
        "overridden": o.is_some(),
        "context_length": o.and_then(|o| o.context_length).unwrap_or(info.context_length),
        "capabilities": caps,
        "description": o.and_then(|o| o.description.clone()).unwrap_or_else(|| info.description.to_string()),
        "pricing": pricing,
        "compiled": {
            "context_length": info.context_length,
            "capabilities": compiled_caps,
            "description": info.description,
            "pricing": pricing_json(m.pricing()),
        },
        "aliases": aliases,
    })
}

fn custom_view(
    c: &CustomModel,
    snap: &Snapshot,
    custom_aliases: &HashMap<String, Vec<String>>,
) -> Value {
    let key = model_key(&c.provider, &c.id);
    let provider_enabled = snap
        .set
        .providers
        .get(&c.provider)
        .is_none_or(|p| p.enabled)
        && !snap.set.disabled_providers.contains(&c.provider);
    json!({
        "provider": c.provider,
        "id": c.id,
        "source": "custom",
        "enabled": c.enabled && provider_enabled,
        "overridden": false,
        "context_length": c.context_length,
        "capabilities": c.capabilities,
        "description": c.description,
        "pricing": c.pricing.map(|p| json!({"input": p.input, "output": p.output,
            "cache_read": p.cache_read, "cache_write": p.cache_write,
            "cache_write_1h": p.cache_write_1h})),
        "compiled": null,
        "aliases": custom_aliases.get(&key.to_ascii_lowercase()).cloned().unwrap_or_default(),
    })
}

fn discovered_view(
    m: &crate::instances::InstanceModel,
    snap: &Snapshot,
    custom_aliases: &HashMap<String, Vec<String>>,
) -> Value {
    let key = model_key(m.instance, &m.model);
    let vision = m
        .entry
        .pointer("/details/families")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == "clip" || x == "mllama"));
    json!({
        "provider": m.instance,
        "id": m.model,
        "source": "discovered",
        "enabled": !snap.instance_disabled(m.instance, &m.model),
        "overridden": snap.set.models.contains_key(&key),
        "context_length": null,
        "capabilities": Caps { vision, ..Caps::default() },
        "description": null,
        "pricing": null,
        "compiled": null,
        "aliases": custom_aliases.get(&key.to_ascii_lowercase()).cloned().unwrap_or_default(),
    })
}

fn all_models(state: &AppState, snap: &Snapshot) -> Vec<Value> {
    let ca = aliases_by_target(snap);
    let mut out: Vec<Value> = ModelId::all().map(|m| builtin_view(m, snap, &ca)).collect();
    out.extend(
        snap.set
            .custom_models
            .values()
            .map(|c| custom_view(c, snap, &ca)),
    );
    for st in &state.instances.snapshot().instances {
        out.extend(st.models.iter().map(|m| discovered_view(m, snap, &ca)));
    }
    out
}

/// The model `provider`/`model` as the API shows it.
fn model_view(state: &AppState, provider: &str, model: &str) -> Result<Value, AdminError> {
    let snap = state.overrides.load();
    let ca = aliases_by_target(&snap);
    if let Some(c) = snap.set.custom_models.get(&model_key(provider, model)) {
        return Ok(custom_view(c, &snap, &ca));
    }
    if let Some(m) = compiled_model(provider, model) {
        return Ok(builtin_view(m, &snap, &ca));
    }
    if let Some(m) = discovered(state, provider, model) {
        return Ok(discovered_view(&m, &snap, &ca));
    }
    Err(AdminError::not_found(format!(
        "no model {model:?} on provider {provider:?}"
    )))
}

fn discovered(
    state: &AppState,
    provider: &str,
    model: &str,
) -> Option<std::sync::Arc<crate::instances::InstanceModel>> {
    state
        .instances
        .snapshot()
        .instances
        .iter()
        .filter(|s| s.name == provider)
        .flat_map(|s| s.models.iter())
        .find(|m| m.model == model)
        .cloned()
}

#[handler]
fn list_models(state: Data<&AppState>) -> Response {
    let snap = state.overrides.load();
    respond(ok(&json!({"models": all_models(&state, &snap)})))
}

fn check_price(v: Option<f64>, field: &str) -> Result<(), AdminError> {
    match v {
        Some(x) if !x.is_finite() || x < 0.0 => Err(AdminError::bad(format!(
            "pricing.{field} must be a non-negative number (USD per 1M tokens)"
        ))),
        _ => Ok(()),
    }
}

fn check_prices(p: &PriceFields) -> Result<(), AdminError> {
    check_price(p.input, "input")?;
    check_price(p.output, "output")?;
    check_price(p.cache_read, "cache_read")?;
    check_price(p.cache_write, "cache_write")?;
    check_price(p.cache_write_1h, "cache_write_1h")
}

fn valid_model_id(id: &str) -> Result<(), AdminError> {
    if id.trim().is_empty() || id.len() > 256 || id.chars().any(char::is_control) || id != id.trim()
    {
        return Err(AdminError::bad(
            "model id must be 1-256 characters, no control characters or surrounding spaces",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewModel {
    provider: String,
    id: String,
    #[serde(default)]
    context_length: Option<u32>,
    #[serde(default)]
    capabilities: Option<Caps>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    pricing: Option<PriceFields>,
}

#[handler]
async fn create_model(state: Data<&AppState>, body: Body) -> Response {
    respond(
        async {
            let m: NewModel = read_body(body).await?;
            valid_model_id(&m.id)?;
            let pricing = match m.pricing {
                None => None,
                Some(p) => {
                    check_prices(&p)?;
                    match (p.input, p.output) {
                        (Some(input), Some(output)) => Some(Prices {
                            input,
                            output,
                            cache_read: p.cache_read,
                            cache_write: p.cache_write,
                            cache_write_1h: p.cache_write_1h,
                        }),
                        _ => {
                            return Err(AdminError::bad(
                                "pricing needs at least input and output (USD per 1M tokens)",
                            ));
                        }
                    }
                }
            };
            let snap = state.overrides.load_full();
            match (
                snap.set.providers.get(&m.provider),
                compiled_provider(&m.provider),
            ) {
                (Some(p), _) if p.family == Family::Ollama => {
                    return Err(AdminError::bad(format!(
                        "provider {:?} is an Ollama server: its models are discovered",
                        m.provider
                    )));
                }
                (Some(_), _) => {}
                (None, Some(pid)) => {
                    if !matches!(
                        pid.info().wire,
                        WireFamily::OpenaiCompat | WireFamily::Anthropic
                    ) {
                        return Err(AdminError::bad(format!(
                            "custom models on provider {:?} are not supported (only \
                             OpenAI-compatible and Anthropic-family providers)",
                            m.provider
                        )));
                    }
                    if compiled_model(&m.provider, &m.id).is_some() {
                        return Err(AdminError::conflict(format!(
                            "model {:?} of {:?} is built in: override it instead",
                            m.id, m.provider
                        )));
                    }
                }
                (None, None) => {
                    return Err(AdminError::bad(format!("no provider {:?}", m.provider)));
                }
            }
            let model = CustomModel {
                provider: m.provider.clone(),
                id: m.id.clone(),
                context_length: m.context_length,
                capabilities: m.capabilities.unwrap_or_default(),
                description: m.description,
                pricing,
                enabled: true,
            };
            state.overrides.update(|set| {
                let key = model_key(&model.provider, &model.id);
                if set.custom_models.contains_key(&key) {
                    return Err(OverrideError::Conflict(format!(
                        "model {:?} of {:?} already exists",
                        model.id, model.provider
                    )));
                }
                set.custom_models.insert(key, model.clone());
                Ok(())
            })?;
            created(&model_view(&state, &m.provider, &m.id)?)
        }
        .await,
    )
}

#[derive(Deserialize)]
struct ModelRef {
    provider: String,
    model: String,
}

/// The `?provider=P&model=M` query, or the contract's 400.
type ModelQuery = poem::Result<Query<ModelRef>>;

fn model_ref(q: ModelQuery) -> Result<ModelRef, AdminError> {
    q.map(|Query(r)| r).map_err(|_| {
        AdminError::bad("query parameters `provider` and `model` are required (URL-encoded)")
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelPatch {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    context_length: Option<u32>,
    #[serde(default)]
    capabilities: Option<Caps>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    pricing: Option<PriceFields>,
}

#[handler]
async fn override_model(state: Data<&AppState>, q: ModelQuery, body: Body) -> Response {
    respond(
        async {
            let r = model_ref(q)?;
            let patch: ModelPatch = read_body(body).await?;
            if let Some(p) = &patch.pricing {
                check_prices(p)?;
            }
            let key = model_key(&r.provider, &r.model);
            let compiled = compiled_model(&r.provider, &r.model);
            let is_discovered = discovered(&state, &r.provider, &r.model).is_some();
            state.overrides.update(|set| {
                if let Some(c) = set.custom_models.get_mut(&key) {
                    if let Some(e) = patch.enabled {
                        c.enabled = e;
                    }
                    if patch.context_length.is_some() {
                        c.context_length = patch.context_length;
                    }
                    if let Some(caps) = patch.capabilities {
                        c.capabilities = caps;
                    }
                    if patch.description.is_some() {
                        c.description.clone_from(&patch.description);
                    }
                    if let Some(p) = patch.pricing {
                        let base = c.pricing;
                        let input = p.input.or(base.map(|b| b.input));
                        let output = p.output.or(base.map(|b| b.output));
                        let (Some(input), Some(output)) = (input, output) else {
                            return Err(OverrideError::BadRequest(
                                "pricing needs input and output for an unpriced model".into(),
                            ));
                        };
                        c.pricing = Some(Prices {
                            input,
                            output,
                            cache_read: p.cache_read.or(base.and_then(|b| b.cache_read)),
                            cache_write: p.cache_write.or(base.and_then(|b| b.cache_write)),
                            cache_write_1h: p
                                .cache_write_1h
                                .or(base.and_then(|b| b.cache_write_1h)),
                        });
                    }
                    return Ok(());
                }
                let key = match compiled {
                    // The canonical spelling of the compiled model.
                    Some(m) => model_key(m.info().provider.name(), m.info().id),
                    None if is_discovered => {
                        if patch.context_length.is_some()
                            || patch.capabilities.is_some()
                            || patch.description.is_some()
                            || patch.pricing.is_some()
                        {
                            return Err(OverrideError::BadRequest(
                                "a discovered model can only be enabled or disabled".into(),
                            ));
                        }
                        key.clone()
                    }
                    None => {
                        return Err(OverrideError::NotFound(format!(
                            "no model {:?} on provider {:?}",
                            r.model, r.provider
                        )));
                    }
                };
                let o = set.models.entry(key.clone()).or_default();
                if let Some(e) = patch.enabled {
                    // Enabled is the compiled state: not stored.
                    o.enabled = (!e).then_some(false);
                }
                if patch.context_length.is_some() {
                    o.context_length = patch.context_length;
                }
                if patch.capabilities.is_some() {
                    o.capabilities = patch.capabilities;
                }
                if patch.description.is_some() {
                    o.description.clone_from(&patch.description);
                }
                if let Some(p) = patch.pricing {
                    o.pricing = p.or(&o.pricing);
                }
                if o.is_empty() {
                    set.models.remove(&key);
                }
                Ok(())
            })?;
            ok(&model_view(&state, &r.provider, &r.model)?)
        }
        .await,
    )
}

#[handler]
fn clear_override(state: Data<&AppState>, q: ModelQuery) -> Response {
    respond((|| {
        let r = model_ref(q)?;
        let key = match compiled_model(&r.provider, &r.model) {
            Some(m) => model_key(m.info().provider.name(), m.info().id),
            None => model_key(&r.provider, &r.model),
        };
        state.overrides.update(|set| {
            if set.custom_models.contains_key(&key) {
                return Err(OverrideError::BadRequest(
                    "a custom model has no compiled values to restore: edit or delete it".into(),
                ));
            }
            Ok(set.models.remove(&key))
        })?;
        ok(&model_view(&state, &r.provider, &r.model)?)
    })())
}

#[handler]
fn delete_custom_model(state: Data<&AppState>, q: ModelQuery) -> Response {
    respond((|| {
        let r = model_ref(q)?;
        let key = model_key(&r.provider, &r.model);
        let builtin = compiled_model(&r.provider, &r.model).is_some();
        state
            .overrides
            .update(|set| match set.custom_models.remove(&key) {
                Some(_) => {
                    // Its custom aliases would dangle, and revive on a model of the same name.
                    set.aliases.retain(|_, a| a.target != key);
                    Ok(())
                }
                None if builtin => Err(OverrideError::BadRequest(
                    "a built-in model cannot be deleted: disable it instead".into(),
                )),
                None => Err(OverrideError::NotFound(format!(
                    "no custom model {:?} on provider {:?}",
                    r.model, r.provider
                ))),
            })?;
        no_content()
    })())
}

// ---- aliases ----

fn alias_views(snap: &Snapshot) -> Vec<Value> {
    let mut out = Vec::new();
    for m in ModelId::all() {
        let info = m.info();
        for a in info.aliases {
            out.push(json!({
                "alias": a,
                "target": model_key(info.provider.name(), info.id),
                "source": "builtin",
                "enabled": !snap.set.disabled_aliases.contains(*a),
            }));
        }
    }
    out.extend(snap.set.aliases.values().map(custom_alias_view));
    out
}

fn custom_alias_view(a: &CustomAlias) -> Value {
    json!({"alias": a.alias, "target": a.target, "source": "custom", "enabled": a.enabled})
}

/// The compiled alias `alias` (lower-case) stands for, if it is one.
fn builtin_alias(alias: &str) -> Option<ModelId> {
    ModelId::all().find(|m| {
        m.info()
            .aliases
            .iter()
            .any(|a| a.eq_ignore_ascii_case(alias))
    })
}

fn valid_alias(a: &str) -> Result<(), AdminError> {
    let ok = !a.is_empty()
        && a.len() <= 128
        && a.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(AdminError::bad(format!(
            "alias {a:?} is not valid: expected [A-Za-z0-9._:-]{{1,128}}"
        )))
    }
}

/// `target` as a canonical `provider/model`, when it resolves (no alias, no default model).
fn resolve_target(state: &AppState, target: &str) -> Result<String, AdminError> {
    crate::relay::resolve_exact(state, target)
        .map(|t| model_key(t.provider_name(), t.upstream_model()))
        .ok_or_else(|| {
            AdminError::bad(format!(
                "target {target:?} does not resolve to an enabled model (expected provider/model)"
            ))
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAlias {
    alias: String,
    target: String,
}

#[handler]
fn list_aliases(state: Data<&AppState>) -> Response {
    let snap = state.overrides.load();
    respond(ok(&json!({"aliases": alias_views(&snap)})))
}

#[handler]
async fn create_alias(state: Data<&AppState>, body: Body) -> Response {
    respond(
        async {
            let a: NewAlias = read_body(body).await?;
            valid_alias(&a.alias)?;
            let target = resolve_target(&state, &a.target)?;
            let alias = CustomAlias {
                alias: a.alias.clone(),
                target,
                enabled: true,
            };
            state.overrides.update(|set| {
                let key = alias.alias.to_ascii_lowercase();
                if set.aliases.contains_key(&key) {
                    return Err(OverrideError::Conflict(format!(
                        "alias {:?} already exists",
                        alias.alias
                    )));
                }
                set.aliases.insert(key, alias.clone());
                Ok(())
            })?;
            created(&custom_alias_view(&alias))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasPatch {
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

#[handler]
async fn update_alias(state: Data<&AppState>, Path(alias): Path<String>, body: Body) -> Response {
    respond(
        async {
            let patch: AliasPatch = read_body(body).await?;
            let target = patch
                .target
                .as_deref()
                .map(|t| resolve_target(&state, t))
                .transpose()?;
            let key = alias.to_ascii_lowercase();
            let builtin = builtin_alias(&key);
            let view = state.overrides.update(|set| {
                if let Some(a) = set.aliases.get_mut(&key) {
                    if let Some(t) = &target {
                        a.target.clone_from(t);
                    }
                    if let Some(e) = patch.enabled {
                        a.enabled = e;
                    }
                    return Ok(custom_alias_view(a));
                }
                let Some(m) = builtin else {
                    return Err(OverrideError::NotFound(format!("no alias {alias:?}")));
                };
                if target.is_some() {
                    return Err(OverrideError::BadRequest(format!(
                        "alias {alias:?} is built in: only `enabled` can change (add a custom \
                         alias of the same name to point it elsewhere)"
                    )));
                }
                match patch.enabled {
                    Some(false) => {
                        set.disabled_aliases.insert(key.clone());
                    }
                    Some(true) => {
                        set.disabled_aliases.remove(&key);
                    }
                    None => {}
                }
                Ok(json!({
                    "alias": key,
                    "target": model_key(m.info().provider.name(), m.info().id),
                    "source": "builtin",
                    "enabled": !set.disabled_aliases.contains(&key),
                }))
            })?;
            ok(&view)
        }
        .await,
    )
}

#[handler]
fn delete_alias(state: Data<&AppState>, Path(alias): Path<String>) -> Response {
    respond((|| {
        let key = alias.to_ascii_lowercase();
        let builtin = builtin_alias(&key).is_some();
        state
            .overrides
            .update(|set| match set.aliases.remove(&key) {
                Some(_) => Ok(()),
                None if builtin => Err(OverrideError::BadRequest(format!(
                    "alias {alias:?} is built in: disable it instead"
                ))),
                None => Err(OverrideError::NotFound(format!("no alias {alias:?}"))),
            })?;
        no_content()
    })())
}

// ---- instances ----

fn rfc3339_ms(ms: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
}

#[handler]
fn list_instances(state: Data<&AppState>) -> Response {
    let snap = state.overrides.load();
    let inst = state.instances.snapshot();
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for i in state.instances.configured() {
        let st = inst.instances.iter().find(|s| s.name == i.name);
        let env = state.instances.is_env(i.name);
        let enabled = if env {
            !snap.set.disabled_providers.contains(i.name)
        } else {
            snap.set.providers.get(i.name).is_none_or(|p| p.enabled)
        };
        seen.push(i.name.to_string());
        let models: Vec<Value> = st
            .map(|s| {
                s.models
                    .iter()
                    .map(|m| {
                        json!({
                            "name": m.model,
                            "size": m.entry.get("size").and_then(Value::as_i64),
                            "family": m.entry.pointer("/details/family").and_then(Value::as_str),
                            "parameter_size": m.entry.pointer("/details/parameter_size").and_then(Value::as_str),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(json!({
            "name": i.name,
            "base_url": crate::instances::redact_url(&i.base_url),
            "source": if env { "env" } else { "custom" },
            "enabled": enabled,
            "reachable": st.is_some_and(|s| s.reachable),
            "last_refresh": st.and_then(|s| s.last_refresh_ms).and_then(rfc3339_ms),
            "error": st.and_then(|s| s.error.clone()),
            "models": models,
        }));
    }
    // Disabled custom Ollama providers are not polled; still listed.
    for p in snap.set.providers.values() {
        if p.family == Family::Ollama && !seen.contains(&p.id) {
            out.push(json!({
                "name": p.id,
                "base_url": crate::instances::redact_url(&p.base_url),
                "source": "custom",
                "enabled": p.enabled,
                "reachable": false,
                "last_refresh": null,
                "error": null,
                "models": [],
            }));
        }
    }
    state.instances.refresh_soon(&state.client);
    respond(ok(&json!({"instances": out})))
}

// ---- settings ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsPatch {
    #[serde(default, deserialize_with = "some")]
    default_model: Option<Option<String>>,
    #[serde(default)]
    default_tag: Option<String>,
    #[serde(default)]
    usage_tracking: Option<bool>,
    #[serde(default)]
    retention_days: Option<u32>,
    #[serde(default)]
    dns_resolution: Option<bool>,
    #[serde(default, deserialize_with = "some")]
    big_model: Option<Option<String>>,
    #[serde(default, deserialize_with = "some")]
    small_model: Option<Option<String>>,
}

#[handler]
fn get_settings(state: Data<&AppState>) -> Response {
    let snap = state.overrides.load();
    respond(ok(&json!(snap.settings)))
}

#[handler]
async fn put_settings(state: Data<&AppState>, body: Body) -> Response {
    respond(
        async {
            let patch: SettingsPatch = read_body(body).await?;
            // Validate the patch first, then apply it to the settings in effect under the
            // write lock (a copy read here could be stale by the time it is stored).
            let mut names: Vec<Option<Option<String>>> = Vec::new();
            for (field, value) in [
                ("default_model", patch.default_model),
                ("big_model", patch.big_model),
                ("small_model", patch.small_model),
            ] {
                names.push(match value {
                    None => None,
                    Some(None) => Some(None),
                    Some(Some(name)) if name.trim().is_empty() => Some(None),
                    Some(Some(name)) => {
                        if crate::relay::resolve_exact(&state, &name).is_none() {
                            return Err(AdminError::bad(format!(
                                "{field} {name:?} does not resolve to an enabled model"
                            )));
                        }
                        Some(Some(name.trim().to_string()))
                    }
                });
            }
            let default_tag = match patch.default_tag {
                Some(t) => Some(
                    crate::usage::tags::normalise(&t)
                        .into_iter()
                        .next()
                        .ok_or_else(|| {
                            AdminError::bad(format!("default_tag {t:?} is not a tag"))
                        })?,
                ),
                None => None,
            };
            let s = state.overrides.update_settings(
                |s| {
                    let slots = [&mut s.default_model, &mut s.big_model, &mut s.small_model];
                    for (slot, name) in slots.into_iter().zip(names) {
                        if let Some(name) = name {
                            *slot = name;
                        }
                    }
                    if let Some(t) = default_tag {
                        s.default_tag = t;
                    }
                    if let Some(b) = patch.usage_tracking {
                        s.usage_tracking = b;
                    }
                    if let Some(d) = patch.retention_days {
                        s.retention_days = d;
                    }
                    if let Some(b) = patch.dns_resolution {
                        s.dns_resolution = b;
                    }
                },
                // The recorder (default tag, tracking, retention, DNS) takes them at once.
                |s| state.usage.apply_settings(s.usage()),
            )?;
            ok(&json!(s))
        }
        .await,
    )
}

// ---- pricing ----

#[handler]
async fn pricing_preview(state: Data<&AppState>, body: Body) -> Response {
    respond(super::pricing::handle(&state, body, false).await)
}

#[handler]
async fn pricing_import(state: Data<&AppState>, body: Body) -> Response {
    respond(super::pricing::handle(&state, body, true).await)
}
