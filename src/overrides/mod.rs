//! Runtime overrides layered over the compiled catalog: custom providers (OpenAI-compatible,
//! Anthropic-compatible, Ollama servers), custom models, overrides of compiled models (prices,
//! context length, capabilities, description, enabled), custom aliases and disabled compiled
//! ones, and the runtime settings (default model, usage settings, Claude-name mapping).
//!
//! Owns: the override data ([`model`]), its persistence through [`crate::store::OverrideStore`]
//! (the `overrides` table and settings keys), and the immutable [`Snapshot`] the request path
//! reads: compiled tables + overrides, held in an `ArcSwap`, rebuilt and swapped on each admin
//! write ([`Overrides::update`]). A request does one `ArcSwap::load` and, when nothing is
//! overridden, nothing else (the compiled `catalog::resolve` stays the fast path; no allocation).
//!
//! Does not own: name resolution order (`relay::resolve_model` asks the snapshot), the admin
//! listener and auth (`src/admin/`), the HTTP handlers' routing under `/api` ([`api`] exports
//! them).
//!
//! # Layout
//! - [`model`]: the override shapes and their stored form.
//! - [`api`]: the admin API handlers for providers, models, aliases, instances, settings and
//!   pricing (admin/API.md).
//! - [`pricing`]: LiteLLM price JSON import (seed 002).

pub mod api;
pub mod model;
pub mod pricing;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use crate::catalog::{
    AuthStyle, MaxTokensField, ModelId, PROVIDERS, Pricing, ProviderId, Quirks, SearchFees,
    SystemPrompt, WireFamily,
};
use crate::config::Config;
use crate::instances::{InstanceConfig, Instances};
use crate::store::{OverrideStore, StoreError};
use crate::usage::record::UsageSettings;
pub use model::*;

/// Setting keys of the runtime settings this module adds (the usage ones are
/// `crate::usage::record::keys`). An empty or missing value means "the environment default".
pub mod keys {
    /// Model used for unknown names (`DEFAULT_MODEL` is its default).
    pub const DEFAULT_MODEL: &str = "catalog.default_model";
    /// Model Claude "opus"/"sonnet" names map to in the Anthropic frontend (`BIG_MODEL`).
    pub const BIG_MODEL: &str = "catalog.big_model";
    /// Model Claude "haiku" names map to in the Anthropic frontend (`SMALL_MODEL`).
    pub const SMALL_MODEL: &str = "catalog.small_model";
}

/// The runtime settings (admin/API.md `Settings`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// Model for names that resolve to nothing (`None`: 404).
    pub default_model: Option<String>,
    /// Tag for requests that name none.
    pub default_tag: String,
    /// Whether requests are recorded.
    pub usage_tracking: bool,
    /// Days raw usage records are kept (0: forever).
    pub retention_days: u32,
    /// Whether client host names are looked up by reverse DNS.
    pub dns_resolution: bool,
    /// Anthropic frontend: model for big Claude names.
    pub big_model: Option<String>,
    /// Anthropic frontend: model for small Claude names.
    pub small_model: Option<String>,
}

impl Settings {
    /// The usage part, as the recorder takes it.
    pub fn usage(&self) -> UsageSettings {
        UsageSettings {
            default_tag: self.default_tag.clone(),
            tracking: self.usage_tracking,
            retention_days: self.retention_days,
            dns: self.dns_resolution,
        }
    }
}

/// Environment defaults of the settings (what an unset stored value falls back to).
#[derive(Debug, Clone)]
pub struct Defaults {
    /// `DEFAULT_MODEL`.
    pub default_model: Option<String>,
    /// `BIG_MODEL`.
    pub big_model: Option<String>,
    /// `SMALL_MODEL`.
    pub small_model: Option<String>,
    /// `USAGE_*`.
    pub usage: UsageSettings,
}

impl Defaults {
    /// From the startup configuration (`DEFAULT_MODEL`, `BIG_MODEL`, `SMALL_MODEL`) and the usage
    /// defaults.
    pub fn from_env(config: &Config, usage: UsageSettings) -> Self {
        Defaults {
            default_model: config.default_model.clone(),
            big_model: config.big_model.clone(),
            small_model: config.small_model.clone(),
            usage,
        }
    }

    fn settings(&self) -> Settings {
        Settings {
            default_model: self.default_model.clone(),
            default_tag: self.usage.default_tag.clone(),
            usage_tracking: self.usage.tracking,
            retention_days: self.usage.retention_days,
            dns_resolution: self.usage.dns,
            big_model: self.big_model.clone(),
            small_model: self.small_model.clone(),
        }
    }
}

/// Quirks of custom models: none (the OpenAI names, `max_tokens`, a `system` message).
pub static CUSTOM_QUIRKS: Quirks = Quirks {
    max_tokens_field: MaxTokensField::MaxTokens,
    default_max_tokens: None,
    system_prompt: SystemPrompt::System,
    drop_params: &[],
    rename_params: &[],
};

/// Where a custom model's requests go: everything `relay::chat` needs, resolved when the
/// snapshot is built (the key read from the named environment variable then). Never printed
/// with its key (see the `Debug` impl).
pub struct CustomRoute {
    /// Provider name (custom provider id or compiled provider name), for logs, usage, errors.
    pub provider: &'static str,
    /// Upstream model id.
    pub model: String,
    /// Wire family (OpenAI-compatible or Anthropic).
    pub family: WireFamily,
    /// Base URL, no trailing slash.
    pub base_url: String,
    /// How the key is sent.
    pub auth: AuthStyle,
    /// The key (from the environment), if any.
    key: Option<String>,
    /// Variable the key is read from (named in "not configured" errors).
    pub key_env: Option<&'static str>,
    /// Extra headers (the compiled provider's, or for a custom Anthropic-compatible provider the
    /// compiled Anthropic-family provider's, e.g. the API version header).
    pub headers: &'static [(&'static str, &'static str)],
    /// Prices (`None`: unpriced).
    pub pricing: Option<Arc<Pricing>>,
    /// Capabilities.
    pub capabilities: Caps,
    /// Context window, tokens.
    pub context_length: Option<u32>,
}

impl std::fmt::Debug for CustomRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomRoute")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("key", &self.key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl CustomRoute {
    /// The key, if configured.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

/// A provider or instance name with a `'static` lifetime, leaked once per distinct name (error
/// and log types carry `&'static str` provider names; the number of distinct names an operator
/// creates bounds the memory).
pub fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(n) = names.get(name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// The compiled provider named `name` (case-insensitive).
pub fn compiled_provider(name: &str) -> Option<ProviderId> {
    PROVIDERS
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .map(|p| p.id)
}

/// The compiled model `provider/model` (exact provider, model id case-insensitive).
pub fn compiled_model(provider: &str, model: &str) -> Option<ModelId> {
    let pid = compiled_provider(provider)?;
    ModelId::all().find(|m| m.info().provider == pid && m.info().id.eq_ignore_ascii_case(model))
}

/// The compiled pricing of `m` with the override `fields` applied. Overriding the input or
/// output rate drops the compiled tiers (the override is a flat price).
pub fn apply_prices(m: ModelId, fields: &PriceFields) -> Pricing {
    let c = m.pricing();
    let flat = fields.input.is_some() || fields.output.is_some();
    Pricing {
        input: fields.input.unwrap_or(c.input),
        output: fields.output.unwrap_or(c.output),
        cache_read: fields.cache_read.unwrap_or(c.cache_read),
        cache_write: fields.cache_write.unwrap_or(c.cache_write),
        cache_write_1h: fields.cache_write_1h.unwrap_or(c.cache_write_1h),
        request_fee: c.request_fee,
        search_fees: c.search_fees,
        tiers: if flat { &[] } else { c.tiers },
    }
}

/// The pricing of a custom model (cache rates default to the input rate; 1-hour cache writes to
/// the cache-write rate).
pub fn custom_pricing(p: &Prices) -> Pricing {
    Pricing {
        input: p.input,
        output: p.output,
        cache_read: p.cache_read.unwrap_or(p.input),
        cache_write: p.cache_write.unwrap_or(p.input),
        cache_write_1h: p.cache_write_1h.or(p.cache_write).unwrap_or(p.input),
        request_fee: 0.0,
        search_fees: SearchFees {
            low: 0.0,
            medium: 0.0,
            high: 0.0,
        },
        tiers: &[],
    }
}

/// The immutable view the request path reads: the override set, the settings, and lookup tables
/// derived from them.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// What the operator changed.
    pub set: OverrideSet,
    /// Settings in effect (stored values over the environment defaults).
    pub settings: Settings,
    /// Whether anything changes name resolution or prices (false: the compiled fast path).
    active: bool,
    /// Enabled custom aliases: lower-case alias -> target `provider/model`.
    aliases: HashMap<String, String>,
    /// Disabled compiled aliases, lower-case.
    disabled_aliases: HashSet<String>,
    /// Custom model spellings (lower-case `provider/model`, `provider-model`, bare id when no
    /// compiled name) -> route (`None`: disabled, answers 404).
    custom: HashMap<String, Option<Arc<CustomRoute>>>,
    /// Disabled compiled models (directly or through their provider).
    disabled_models: HashSet<ModelId>,
    /// Compiled models with price overrides.
    priced: HashMap<ModelId, Arc<Pricing>>,
    /// Disabled Ollama instances (lower-case names) and discovered models (`instance/model`,
    /// lower-case).
    disabled_instance: HashSet<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Defaults {
            default_model: None,
            big_model: None,
            small_model: None,
            usage: UsageSettings::default(),
        }
        .settings()
    }
}

/// How a name stands in the overrides (see [`Snapshot::lookup`]).
#[derive(Debug)]
pub enum Lookup<'a> {
    /// Nothing overridden for this name: resolve as compiled.
    None,
    /// A custom alias: resolve this `provider/model` target instead.
    Alias(&'a str),
    /// A custom model.
    Custom(Arc<CustomRoute>),
    /// Disabled (model, provider or custom alias target): 404.
    Disabled,
    /// A disabled compiled alias: the catalog must not resolve it.
    AliasDisabled,
}

/// `s` lower-cased, borrowed when it already is (no allocation for the usual names).
fn lower(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(s.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

impl Snapshot {
    /// Whether any override changes name resolution or prices.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// What the overrides say about the client name `name` (trimmed, any case, `:latest`
    /// optional), before the compiled catalog is asked.
    pub fn lookup(&self, name: &str) -> Lookup<'_> {
        if !self.active {
            return Lookup::None;
        }
        let l = lower(name.trim());
        let forms = [Some(l.as_ref()), l.strip_suffix(":latest")];
        for n in forms.into_iter().flatten() {
            if let Some(t) = self.aliases.get(n) {
                return Lookup::Alias(t);
            }
            if let Some(c) = self.custom.get(n) {
                return c.clone().map_or(Lookup::Disabled, Lookup::Custom);
            }
            if self.disabled_aliases.contains(n) {
                return Lookup::AliasDisabled;
            }
        }
        Lookup::None
    }

    /// Whether compiled model `m` is disabled (itself or its provider).
    pub fn is_disabled(&self, m: ModelId) -> bool {
        self.active && self.disabled_models.contains(&m)
    }

    /// The override pricing of compiled model `m`, if any.
    pub fn pricing(&self, m: ModelId) -> Option<&Arc<Pricing>> {
        if !self.active {
            return None;
        }
        self.priced.get(&m)
    }

    /// Whether the discovered model `model` of instance `instance` (or the whole instance) is
    /// disabled.
    pub fn instance_disabled(&self, instance: &str, model: &str) -> bool {
        if !self.active || self.disabled_instance.is_empty() {
            return false;
        }
        let i = instance.to_ascii_lowercase();
        self.disabled_instance.contains(&i)
            || self
                .disabled_instance
                .contains(&format!("{i}/{}", model.to_ascii_lowercase()))
    }

    /// The default model name for unknown names (setting over `DEFAULT_MODEL`).
    pub fn default_model(&self) -> Option<&str> {
        self.settings.default_model.as_deref()
    }

    /// The model big Claude names map to in the Anthropic frontend (setting over `BIG_MODEL`).
    pub fn big_model(&self) -> Option<&str> {
        self.settings.big_model.as_deref()
    }

    /// The model small Claude names map to in the Anthropic frontend (setting over
    /// `SMALL_MODEL`).
    pub fn small_model(&self) -> Option<&str> {
        self.settings.small_model.as_deref()
    }

    /// Custom models that resolve (enabled, provider enabled), for listings.
    pub fn custom_routes(&self) -> Vec<(&CustomModel, Arc<CustomRoute>)> {
        self.set
            .custom_models
            .values()
            .filter_map(|c| {
                self.custom
                    .get(&model_key(&c.provider, &c.id).to_ascii_lowercase())
                    .and_then(Clone::clone)
                    .map(|r| (c, r))
            })
            .collect()
    }

    /// Enabled custom aliases (alias, target), for listings.
    pub fn custom_aliases(&self) -> impl Iterator<Item = &CustomAlias> {
        self.set.aliases.values().filter(|a| a.enabled)
    }

    /// Build the snapshot of `set` with `settings` over `config`.
    pub fn build(set: OverrideSet, settings: Settings, config: &Config) -> Snapshot {
        let mut s = Snapshot {
            settings,
            ..Snapshot::default()
        };
        for a in set.aliases.values().filter(|a| a.enabled) {
            s.aliases
                .insert(a.alias.to_ascii_lowercase(), a.target.clone());
        }
        s.disabled_aliases = set.disabled_aliases.iter().cloned().collect();
        let disabled_pids: HashSet<ProviderId> = set
            .disabled_providers
            .iter()
            .filter_map(|p| compiled_provider(p))
            .collect();
        for m in ModelId::all() {
            if disabled_pids.contains(&m.info().provider) {
                s.disabled_models.insert(m);
            }
        }
        for p in &set.disabled_providers {
            if compiled_provider(p).is_none() {
                s.disabled_instance.insert(p.to_ascii_lowercase());
            }
        }
        for (key, o) in &set.models {
            let Some((provider, model)) = key.split_once('/') else {
                continue;
            };
            match compiled_model(provider, model) {
                Some(m) => {
                    if o.enabled == Some(false) {
                        s.disabled_models.insert(m);
                    }
                    let prices = o.prices();
                    if !prices.is_empty() {
                        s.priced.insert(m, Arc::new(apply_prices(m, &prices)));
                    }
                }
                None => {
                    if o.enabled == Some(false) {
                        s.disabled_instance.insert(key.to_ascii_lowercase());
                    }
                }
            }
        }
        for c in set.custom_models.values() {
            let route = custom_route(&set, c, config).map(Arc::new);
            let p = c.provider.to_ascii_lowercase();
            let id = c.id.to_ascii_lowercase();
            let mut spellings = vec![format!("{p}/{id}"), format!("{p}-{id}")];
            if crate::catalog::resolve(&id).is_none() {
                spellings.push(id.clone());
            }
            for sp in spellings {
                s.custom.entry(sp).or_insert_with(|| route.clone());
            }
        }
        s.active = !(s.aliases.is_empty()
            && s.disabled_aliases.is_empty()
            && s.custom.is_empty()
            && s.disabled_models.is_empty()
            && s.priced.is_empty()
            && s.disabled_instance.is_empty());
        s.set = set;
        s
    }
}

/// The route of custom model `c` (`None`: it or its provider is disabled, or its provider is
/// unknown or of a family custom models cannot use).
fn custom_route(set: &OverrideSet, c: &CustomModel, config: &Config) -> Option<CustomRoute> {
    if !c.enabled {
        return None;
    }
    let pricing = c.pricing.as_ref().map(|p| Arc::new(custom_pricing(p)));
    if let Some(p) = set.providers.get(&c.provider) {
        if !p.enabled {
            return None;
        }
        let (family, auth, headers) = match p.family {
            Family::Openai => (WireFamily::OpenaiCompat, AuthStyle::Bearer, &[][..]),
            Family::Anthropic => (
                WireFamily::Anthropic,
                AuthStyle::XApiKey,
                PROVIDERS
                    .iter()
                    .find(|p| p.wire == WireFamily::Anthropic)
                    .map_or(&[][..], |p| p.headers),
            ),
            Family::Ollama => return None,
        };
        let key_env = p.api_key_env.as_deref().map(intern);
        let key = key_env.and_then(|v| crate::config::env_var(v).ok().flatten());
        return Some(CustomRoute {
            provider: intern(&p.id),
            model: c.id.clone(),
            family,
            base_url: p.base_url.clone(),
            auth: if key_env.is_some() {
                auth
            } else {
                AuthStyle::None
            },
            key,
            key_env,
            headers,
            pricing,
            capabilities: c.capabilities,
            context_length: c.context_length,
        });
    }
    let pid = compiled_provider(&c.provider)?;
    if set.disabled_providers.contains(pid.name()) {
        return None;
    }
    let info = pid.info();
    if !matches!(info.wire, WireFamily::OpenaiCompat | WireFamily::Anthropic) {
        return None;
    }
    let pc = config.provider(pid);
    Some(CustomRoute {
        provider: info.name,
        model: c.id.clone(),
        family: info.wire,
        base_url: pc.map_or(info.base_url.to_string(), |p| p.base_url.clone()),
        auth: info.auth,
        key: pc.and_then(|p| p.api_key.clone()),
        key_env: info.api_key_env,
        headers: info.headers,
        pricing,
        capabilities: c.capabilities,
        context_length: c.context_length,
    })
}

/// A failed override write: what the admin API answers.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    /// Invalid input (400).
    #[error("{0}")]
    BadRequest(String),
    /// Unknown provider, model or alias (404).
    #[error("{0}")]
    NotFound(String),
    /// Already exists (409).
    #[error("{0}")]
    Conflict(String),
    /// The store failed (500).
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The runtime overrides: the current [`Snapshot`] and the store writes go to.
pub struct Overrides {
    config: Arc<Config>,
    store: Option<Arc<dyn OverrideStore>>,
    defaults: Defaults,
    instances: Arc<Instances>,
    snapshot: ArcSwap<Snapshot>,
    /// Serialises writers (read-modify-write of the set); readers never take it.
    write: Mutex<()>,
}

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overrides")
            .field("stored", &self.store.is_some())
            .finish()
    }
}

impl Overrides {
    /// No store: nothing overridden, writes are kept in memory only (tests, `Recorder`-less
    /// servers).
    pub fn in_memory(config: Arc<Config>, instances: Arc<Instances>, defaults: Defaults) -> Self {
        let snapshot = Snapshot::build(OverrideSet::default(), defaults.settings(), &config);
        Overrides {
            config,
            store: None,
            defaults,
            instances,
            snapshot: ArcSwap::from_pointee(snapshot),
            write: Mutex::new(()),
        }
    }

    /// Load the overrides and settings from `store` and build the first snapshot; custom Ollama
    /// providers are added to `instances`.
    ///
    /// Errors: the store failed or holds a value this build cannot read.
    pub fn open(
        config: Arc<Config>,
        instances: Arc<Instances>,
        defaults: Defaults,
        store: Arc<dyn OverrideStore>,
    ) -> Result<Self, StoreError> {
        let set = OverrideSet::from_rows(store.load_overrides()?)?;
        let settings = load_settings(store.as_ref(), &defaults)?;
        let snapshot = Snapshot::build(set, settings, &config);
        let set = &snapshot.set;
        tracing::info!(
            custom_providers = set.providers.len(),
            custom_models = set.custom_models.len(),
            model_overrides = set.models.len(),
            custom_aliases = set.aliases.len(),
            disabled_providers = set.disabled_providers.len(),
            disabled_aliases = set.disabled_aliases.len(),
            "runtime overrides loaded"
        );
        let o = Overrides {
            config,
            store: Some(store),
            defaults,
            instances,
            snapshot: ArcSwap::from_pointee(snapshot),
            write: Mutex::new(()),
        };
        o.sync_instances();
        Ok(o)
    }

    /// The current snapshot (one atomic load; never waits).
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// The current snapshot as an owned `Arc` (for holding across an `.await`).
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The startup configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The environment defaults of the settings.
    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }

    /// Edit the override set: `f` changes a copy; the changed rows are stored in one
    /// transaction, then the new snapshot is swapped in (requests see it at once).
    ///
    /// Errors: `f`'s error (nothing changed), or the store failed (nothing changed).
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut OverrideSet) -> Result<T, OverrideError>,
    ) -> Result<T, OverrideError> {
        let _w = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.snapshot.load_full();
        let mut set = current.set.clone();
        let out = f(&mut set)?;
        let changes = set.diff(&current.set);
        if let Some(store) = &self.store
            && !changes.is_empty()
        {
            store.write_overrides(&changes)?;
        }
        let snapshot = Snapshot::build(set, current.settings.clone(), &self.config);
        self.snapshot.store(Arc::new(snapshot));
        self.sync_instances();
        Ok(out)
    }

    /// Store `settings` (values equal to the environment default are unset) and swap in a
    /// snapshot with them.
    ///
    /// Errors: the store failed (the snapshot keeps the old settings).
    pub fn set_settings(&self, settings: Settings) -> Result<(), OverrideError> {
        let _w = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        self.store_settings(settings)
    }

    /// Edit the settings in effect: `f` changes a copy of the current ones, which are then
    /// stored and swapped in, and `applied` sees them, all under the write lock, so parallel
    /// partial updates of different fields all stay (none works on a stale copy) and `applied`
    /// calls come in the order the settings took effect.
    ///
    /// Errors: the store failed (the snapshot keeps the old settings; `applied` is not called).
    pub fn update_settings(
        &self,
        f: impl FnOnce(&mut Settings),
        applied: impl FnOnce(&Settings),
    ) -> Result<Settings, OverrideError> {
        let _w = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let mut settings = self.snapshot.load().settings.clone();
        f(&mut settings);
        self.store_settings(settings.clone())?;
        applied(&settings);
        Ok(settings)
    }

    /// [`Overrides::set_settings`] with the write lock held by the caller.
    fn store_settings(&self, settings: Settings) -> Result<(), OverrideError> {
        if let Some(store) = &self.store {
            // One transaction: a failed write leaves the stored settings as they were.
            let rows = settings_rows(&settings, &self.defaults.settings());
            let changes: Vec<(&str, Option<&str>)> = rows
                .iter()
                .map(|(key, value, default)| match value {
                    Some(v) if Some(v) != default.as_ref() => (*key, Some(v.as_str())),
                    _ => (*key, None),
                })
                .collect();
            store.write_settings(&changes)?;
        }
        let current = self.snapshot.load_full();
        let snapshot = Snapshot::build(current.set.clone(), settings, &self.config);
        self.snapshot.store(Arc::new(snapshot));
        Ok(())
    }

    /// Tell the instances which custom Ollama providers are enabled (env ones stay).
    fn sync_instances(&self) {
        let snap = self.snapshot.load();
        let custom: Vec<InstanceConfig> = snap
            .set
            .providers
            .values()
            .filter(|p| p.family == Family::Ollama && p.enabled)
            .map(|p| InstanceConfig {
                name: intern(&p.id),
                base_url: p.base_url.clone(),
            })
            .collect();
        self.instances.set_custom(custom);
    }
}

/// `(key, stored value, default value)` per setting, as strings (`None`: unset).
fn settings_rows(
    s: &Settings,
    d: &Settings,
) -> Vec<(&'static str, Option<String>, Option<String>)> {
    use crate::usage::record::keys as u;
    vec![
        (
            keys::DEFAULT_MODEL,
            s.default_model.clone(),
            d.default_model.clone(),
        ),
        (keys::BIG_MODEL, s.big_model.clone(), d.big_model.clone()),
        (
            keys::SMALL_MODEL,
            s.small_model.clone(),
            d.small_model.clone(),
        ),
        (
            u::DEFAULT_TAG,
            Some(s.default_tag.clone()),
            Some(d.default_tag.clone()),
        ),
        (
            u::TRACKING,
            Some(s.usage_tracking.to_string()),
            Some(d.usage_tracking.to_string()),
        ),
        (
            u::RETENTION_DAYS,
            Some(s.retention_days.to_string()),
            Some(d.retention_days.to_string()),
        ),
        (
            u::DNS,
            Some(s.dns_resolution.to_string()),
            Some(d.dns_resolution.to_string()),
        ),
    ]
}

/// Stored settings over the environment defaults.
///
/// Errors: the store failed.
fn load_settings(store: &dyn OverrideStore, d: &Defaults) -> Result<Settings, StoreError> {
    let err = std::cell::RefCell::new(None);
    let get = |k: &str| match store.get_setting(k) {
        Ok(v) => v.filter(|v| !v.is_empty()),
        Err(e) => {
            err.borrow_mut().get_or_insert(e);
            None
        }
    };
    let usage = d.usage.clone().overlay(get);
    let s = Settings {
        default_model: get(keys::DEFAULT_MODEL).or_else(|| d.default_model.clone()),
        big_model: get(keys::BIG_MODEL).or_else(|| d.big_model.clone()),
        small_model: get(keys::SMALL_MODEL).or_else(|| d.small_model.clone()),
        default_tag: usage.default_tag,
        usage_tracking: usage.tracking,
        retention_days: usage.retention_days,
        dns_resolution: usage.dns,
    };
    match err.into_inner() {
        Some(e) => Err(e),
        None => Ok(s),
    }
}
