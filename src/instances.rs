//! Ollama servers as upstreams (`OLLAMA_INSTANCES`): configuration, model discovery from each
//! server's `GET /api/tags`, and the names their models are exposed under.
//!
//! Owns: the runtime set of instance models, held as an immutable [`Snapshot`] behind an
//! `ArcSwap`. Requests only load the current snapshot (an atomic pointer read, no lock, no wait);
//! discovery builds a new snapshot off the request path and swaps it in. Discovery runs at
//! startup (in the background: the server answers at once, with no instance models until the
//! first answers arrive), every `OLLAMA_REFRESH_SECS` (default 60 s), and on demand when a client
//! lists models, names a model that resolves to nothing, or an instance answers 404 for a model it
//! listed (`upstream::ollama::send_to_instance`) (coalesced, at most one refresh every
//! [`ON_DEMAND_MIN_INTERVAL`]; the triggering request answers from the snapshot in hand).
//! A failing instance is logged (URL without credentials) and keeps its last known models, so a
//! server that restarts does not make its models flicker out of clients' model pickers.
//!
//! Does not own: the compiled catalog (names of enabled providers resolve first, never shadowed),
//! the `/api/chat` wire format (`upstream::ollama`), HTTP status handling (`upstream::client`).
//!
//! # Names (seed 002: "models are namespaced by instance, e.g. `myserver-llama3.2`")
//! An instance `myserver` listing `llama3.2:latest` and `llama3.2:3b` exposes:
//! - namespaced: `myserver-llama3.2:latest` (also `myserver-llama3.2`) and `myserver-llama3.2:3b`;
//! - bare: `llama3.2:latest` (also `llama3.2`) and `llama3.2:3b`, only when unambiguous: no other
//!   instance has that model, no namespaced spelling is the same text, and it is not the catalog
//!   name of an *enabled* provider (one with its API key). A catalog name whose provider has no
//!   key does not hide an instance model: `ollama run mistral` reaches the instance's
//!   `mistral:latest`; with the key configured, `mistral` is the catalog's and
//!   `<instance>-mistral` reaches the instance.
//!
//! Namespaced spellings always win over bare ones (instances `llava` and `gpu`, `gpu` listing
//! `llava-llama3`: `llava-llama3` is `gpu`'s model only if `llava` has no model `llama3`).
//! Instance names are never another instance's name followed by `-` (rejected at configuration),
//! so two namespaced spellings never collide. A bare name several instances list resolves to none
//! of them; such a name, and any name starting with a configured `<instance>-`, answers 404 and
//! never falls back to `DEFAULT_MODEL` ([`Instances::claims`]). Lookups are case-insensitive. A
//! tag is never doubled: `:latest` is added only to names without a tag, as Ollama does.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde_json::Value;

use crate::config::env_var;

/// Default interval between two discoveries of every instance: 60 s.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(60);

/// Longest accepted `OLLAMA_REFRESH_SECS`: one day (86 400 s). Listings and unknown names still
/// refresh on demand in between.
pub const MAX_REFRESH_SECS: u64 = 86_400;

/// On-demand refreshes (listing, unknown model name) run at most this often: 2 s. Keeps a client
/// that polls `/api/tags` or retries an unknown name from hammering the servers.
pub const ON_DEMAND_MIN_INTERVAL: Duration = Duration::from_secs(2);

/// Longest wait for one instance's `/api/tags` answer: 5 s. A slow server delays only its own
/// discovery, never a request.
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest `/api/tags` body accepted: 8 MiB (a server with hundreds of models sends ~100 KB).
/// Enforced while reading.
pub const MAX_TAGS_BYTES: usize = 8 * 1024 * 1024;

/// Largest `/api/show` body accepted: 8 MiB (a model's answer, template and license included, is
/// usually under 100 KB). Enforced while reading.
pub const MAX_SHOW_BYTES: usize = 8 * 1024 * 1024;

/// One configured Ollama server.
#[derive(Debug, Clone)]
pub struct InstanceConfig {
    /// Lower-case name, the namespace of its models (`myserver`). Leaked once at startup so error
    /// and log types keep their `&'static str` provider names.
    pub name: &'static str,
    /// Base URL without trailing slash (`http://host:11434`); `/api/chat` is appended.
    pub base_url: String,
}

/// The `OLLAMA_INSTANCES` / `OLLAMA_REFRESH_SECS` configuration.
#[derive(Debug, Clone)]
pub struct InstancesConfig {
    /// Servers in the order given.
    pub instances: Vec<InstanceConfig>,
    /// Interval between two periodic discoveries (`OLLAMA_REFRESH_SECS`, seconds).
    pub refresh: Duration,
}

impl Default for InstancesConfig {
    fn default() -> Self {
        InstancesConfig {
            instances: Vec::new(),
            refresh: DEFAULT_REFRESH,
        }
    }
}

impl InstancesConfig {
    /// Read `OLLAMA_INSTANCES` (`name=http://host:11434,other=http://...`) and
    /// `OLLAMA_REFRESH_SECS` (seconds, 1 to [`MAX_REFRESH_SECS`]), each also as `<NAME>_FILE`.
    ///
    /// Errors: a malformed list (see [`parse_instances`]) or refresh interval, named in the message.
    pub fn from_env() -> Result<Self, String> {
        let instances = match env_var("OLLAMA_INSTANCES")? {
            Some(v) => parse_instances(&v)?,
            None => Vec::new(),
        };
        let refresh = match env_var("OLLAMA_REFRESH_SECS")? {
            None => DEFAULT_REFRESH,
            Some(v) => match v.parse::<u64>() {
                Ok(s) if (1..=MAX_REFRESH_SECS).contains(&s) => Duration::from_secs(s),
                _ => {
                    return Err(format!(
                        "OLLAMA_REFRESH_SECS={v:?} is not valid: expected seconds from 1 to \
                         {MAX_REFRESH_SECS}"
                    ));
                }
            },
        };
        Ok(InstancesConfig { instances, refresh })
    }
}

/// Parse `name=url` pairs separated by commas (or newlines, for `_FILE` variants).
///
/// Names: letters, digits, `.`, `_`, `-`, starting with a letter or digit, lower-cased, unique,
/// not the name of a catalog provider (their namespaced spellings would clash), and never another
/// name followed by `-` (`gpu` and `gpu-2` would both spell `gpu-2-x`). URLs: http(s),
/// without query; a trailing `/` is dropped.
///
/// Errors: the offending entry and what is expected.
pub fn parse_instances(list: &str) -> Result<Vec<InstanceConfig>, String> {
    let mut out: Vec<InstanceConfig> = Vec::new();
    for entry in list
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let bad = |why: &str| {
            format!(
                "OLLAMA_INSTANCES entry {entry:?} is not valid: {why} (expected name=url, like \
                 myserver=http://192.168.1.100:11434)"
            )
        };
        let (name, url) = entry
            .split_once('=')
            .ok_or_else(|| bad("no '=' between name and URL"))?;
        let name = name.trim().to_ascii_lowercase();
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid_name {
            return Err(bad(
                "the name must be letters, digits, '.', '_' or '-', starting with a letter or digit",
            ));
        }
        if crate::catalog::PROVIDERS.iter().any(|p| p.name == name) {
            return Err(bad(
                "the name is a provider of the catalog; choose another, e.g. my-ollama",
            ));
        }
        if out.iter().any(|i| i.name == name) {
            return Err(bad("the name is used twice"));
        }
        // `a` + model `b-x` and `a-b` + model `x` would both be `a-b-x`.
        if let Some(other) = out.iter().find(|i| {
            let (short, long) = if i.name.len() < name.len() {
                (i.name, name.as_str())
            } else {
                (name.as_str(), i.name)
            };
            long.strip_prefix(short).is_some_and(|r| r.starts_with('-'))
        }) {
            return Err(bad(&format!(
                "the name and {:?} would spell the same namespaced model names (one is the \
                 other followed by '-'); choose names that are not",
                other.name
            )));
        }
        let url = url.trim().trim_end_matches('/');
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {}
            _ => return Err(bad("the URL must be http(s)://host:port")),
        }
        out.push(InstanceConfig {
            name: Box::leak(name.into_boxed_str()),
            base_url: url.to_string(),
        });
    }
    Ok(out)
}

/// Whether `spelling` is a catalog name (see `catalog::resolve`) of a provider in `enabled`.
fn catalog_claims(enabled: &[crate::catalog::ProviderId], spelling: &str) -> bool {
    crate::catalog::resolve(spelling).is_some_and(|m| enabled.contains(&m.info().provider))
}

/// `url` without user name and password, for logs.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string().trim_end_matches('/').to_string()
        }
        Err(_) => "<invalid URL>".into(),
    }
}

/// One model on one instance, as its `/api/tags` listed it.
#[derive(Debug)]
pub struct InstanceModel {
    /// Instance name (`myserver`): the provider name in logs and errors.
    pub instance: &'static str,
    /// The instance's base URL (no trailing slash).
    pub base_url: Arc<str>,
    /// The model name exactly as the instance lists it, with its tag (`llama3.2:latest`); sent as
    /// `model` in `/api/chat`.
    pub model: String,
    /// The instance's `/api/tags` entry (`modified_at`, `size` in bytes, 64-hex `digest`,
    /// `details`), passed on in listings.
    pub entry: Value,
}

impl InstanceModel {
    /// The entry's `modified_at` as Unix seconds (0 when missing or not RFC 3339).
    pub fn modified_unix(&self) -> i64 {
        self.entry
            .get("modified_at")
            .and_then(Value::as_str)
            .and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .map_or(0, time::OffsetDateTime::unix_timestamp)
    }

    /// `<instance>-<model>`, as listed by the Ollama API (`myserver-llama3.2:latest`).
    pub fn namespaced(&self) -> String {
        format!("{}-{}", self.instance, self.model)
    }
}

/// A listed spelling of an instance model.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Name with its tag, as the Ollama API lists it (`myserver-llama3.2:latest`, `llama3.2:3b`).
    pub name: String,
    /// The model.
    pub model: Arc<InstanceModel>,
}

impl Listed {
    /// The OpenAI API id: the name without a `:latest` tag (`myserver-llama3.2`, `llama3.2:3b`),
    /// as the catalog's models are listed there.
    pub fn openai_id(&self) -> &str {
        self.name.strip_suffix(":latest").unwrap_or(&self.name)
    }
}

impl Listed {
    /// The Ollama `/api/tags` entry: the instance's own entry (real `modified_at`, `size`,
    /// `digest`, `details`) under this name.
    pub fn ollama_entry(&self) -> Value {
        let mut e = match &self.model.entry {
            Value::Object(o) => o.clone(),
            _ => serde_json::Map::new(),
        };
        e.insert("name".into(), self.name.clone().into());
        e.insert("model".into(), self.name.clone().into());
        for (k, default) in [
            ("modified_at", Value::from("")),
            ("size", Value::from(0)),
            ("digest", Value::from("")),
            ("details", serde_json::json!({})),
        ] {
            e.entry(k).or_insert(default);
        }
        Value::Object(e)
    }

    /// The OpenAI `/v1/models` object: `created` is the instance's `modified_at` (Unix seconds,
    /// as Ollama's own OpenAI layer reports it), `owned_by` the instance name.
    pub fn openai_object(&self) -> Value {
        serde_json::json!({
            "id": self.openai_id(),
            "object": "model",
            "created": self.model.modified_unix(),
            "owned_by": self.model.instance,
        })
    }
}

/// What discovery last learned about one instance.
#[derive(Debug, Clone)]
pub struct InstanceStatus {
    /// Instance name.
    pub name: &'static str,
    /// Models of the last successful discovery, in the instance's order.
    pub models: Vec<Arc<InstanceModel>>,
    /// Whether the last discovery succeeded (`false` also before the first answer).
    pub reachable: bool,
    /// Discoveries that failed in a row (0 after a success).
    pub failures: u32,
    /// When the last discovery answered or failed, Unix ms (`None`: not yet).
    pub last_refresh_ms: Option<i64>,
    /// Why the last discovery failed (`None` after a success), without the URL.
    pub error: Option<String>,
}

/// An immutable view of every instance's models and the names that reach them.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Per instance, in configuration order.
    pub instances: Vec<InstanceStatus>,
    /// Lower-case spelling -> model (unambiguous spellings only).
    by_name: HashMap<String, Arc<InstanceModel>>,
    /// Lower-case spellings that mean several instance models (bare names on two instances).
    ambiguous: std::collections::HashSet<String>,
    /// Listing order: per instance, per model, the namespaced then the bare name.
    listed: Vec<Listed>,
}

impl Snapshot {
    /// Build the name tables from per-instance model lists (see the module doc for the rules).
    /// `catalog_claims(spelling)` says whether a spelling is a catalog name of an enabled
    /// provider (such names are never exposed for an instance model).
    pub fn build(
        instances: Vec<InstanceStatus>,
        catalog_claims: &dyn Fn(&str) -> bool,
    ) -> Snapshot {
        // Every spelling with every model it could mean (pointer identity = same model), the
        // namespaced and the bare ones apart: a namespaced spelling always wins over a bare one.
        type Candidates = HashMap<String, Vec<Arc<InstanceModel>>>;
        fn add(c: &mut Candidates, spelling: String, m: &Arc<InstanceModel>) {
            let v = c.entry(spelling.to_ascii_lowercase()).or_default();
            if !v.iter().any(|x| Arc::ptr_eq(x, m)) {
                v.push(Arc::clone(m));
            }
        }
        let mut namespaced = Candidates::new();
        let mut bare = Candidates::new();
        for st in &instances {
            for m in &st.models {
                for name in spellings(&m.model) {
                    add(&mut namespaced, format!("{}-{name}", m.instance), m);
                    add(&mut bare, name, m);
                }
            }
        }
        let mut ambiguous = std::collections::HashSet::new();
        let mut by_name: HashMap<String, Arc<InstanceModel>> = HashMap::new();
        for (spelling, mut ms) in bare {
            if namespaced.contains_key(&spelling) || catalog_claims(&spelling) {
                continue;
            }
            if ms.len() == 1 {
                by_name.insert(spelling, ms.remove(0));
            } else {
                ambiguous.insert(spelling);
            }
        }
        for (spelling, mut ms) in namespaced {
            // Instance names are never `<other instance>-...` (parse_instances), so only a model
            // listed twice in different letter case can make a namespaced spelling ambiguous.
            if catalog_claims(&spelling) {
                continue;
            }
            if ms.len() == 1 {
                by_name.insert(spelling, ms.remove(0));
            } else {
                ambiguous.insert(spelling);
            }
        }
        let mut listed = Vec::new();
        for st in &instances {
            for m in &st.models {
                for name in [m.namespaced(), m.model.clone()] {
                    let hit = by_name.get(&name.to_ascii_lowercase());
                    if hit.is_some_and(|h| Arc::ptr_eq(h, m)) {
                        listed.push(Listed {
                            name,
                            model: Arc::clone(m),
                        });
                    }
                }
            }
        }
        Snapshot {
            instances,
            by_name,
            ambiguous,
            listed,
        }
    }

    /// Whether `name` is a spelling that means several instance models (so it resolves to none
    /// of them, and must not fall back to `DEFAULT_MODEL` either).
    pub fn is_ambiguous(&self, name: &str) -> bool {
        self.ambiguous.contains(&name.trim().to_ascii_lowercase())
    }

    /// The instance model `name` means, if exactly one (case-insensitive, `:latest` optional).
    pub fn resolve(&self, name: &str) -> Option<Arc<InstanceModel>> {
        self.by_name.get(&name.trim().to_ascii_lowercase()).cloned()
    }

    /// Listed names in order (namespaced and unambiguous bare names).
    pub fn listed(&self) -> &[Listed] {
        &self.listed
    }
}

/// The spellings of an Ollama model name: itself, and without `:latest` when it has that tag.
fn spellings(model: &str) -> Vec<String> {
    let mut v = vec![model.to_string()];
    if let Some(base) = model.strip_suffix(":latest") {
        v.push(base.to_string());
    }
    v
}

/// The configured instances and the current snapshot of their models.
pub struct Instances {
    /// Instances in effect: the `OLLAMA_INSTANCES` entries, then custom ones added at runtime
    /// ([`Instances::set_custom`]).
    config: ArcSwap<InstancesConfig>,
    /// The `OLLAMA_INSTANCES` entries.
    env: Vec<InstanceConfig>,
    /// Whether no instance is configured (read on the request path without a load).
    empty: AtomicBool,
    /// Catalog providers with a key (or needing none): only their names shadow instance models.
    enabled: Vec<crate::catalog::ProviderId>,
    snapshot: ArcSwap<Snapshot>,
    /// A discovery is running (periodic and on-demand ones never overlap).
    refreshing: AtomicBool,
    /// When the last on-demand refresh started, ms after `epoch`.
    last_on_demand_ms: AtomicU64,
    epoch: Instant,
}

impl std::fmt::Debug for Instances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instances")
            .field("instances", &self.config.load().instances.len())
            .finish()
    }
}

/// Clears the `refreshing` flag when a discovery ends, also when its task is cancelled.
struct RefreshGuard<'a>(&'a AtomicBool);

impl Drop for RefreshGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Instances {
    /// No models yet: discovery fills them in ([`Instances::spawn_refresher`]). `enabled` says
    /// which catalog providers can be used (`Config::is_enabled`): only their model names hide an
    /// instance model's bare name.
    pub fn new(
        config: InstancesConfig,
        enabled: impl Fn(crate::catalog::ProviderId) -> bool,
    ) -> Self {
        let enabled: Vec<crate::catalog::ProviderId> = crate::catalog::PROVIDERS
            .iter()
            .map(|p| p.id)
            .filter(|id| enabled(*id))
            .collect();
        let statuses = config
            .instances
            .iter()
            .map(|i| InstanceStatus {
                name: i.name,
                models: Vec::new(),
                reachable: false,
                failures: 0,
                last_refresh_ms: None,
                error: None,
            })
            .collect();
        let snapshot = Snapshot::build(statuses, &|n| catalog_claims(&enabled, n));
        Instances {
            empty: AtomicBool::new(config.instances.is_empty()),
            env: config.instances.clone(),
            config: ArcSwap::from_pointee(config),
            enabled,
            snapshot: ArcSwap::from_pointee(snapshot),
            refreshing: AtomicBool::new(false),
            last_on_demand_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Whether any instance is configured.
    pub fn is_empty(&self) -> bool {
        self.empty.load(Ordering::Acquire)
    }

    /// The instances in effect, `OLLAMA_INSTANCES` entries first.
    pub fn configured(&self) -> Vec<InstanceConfig> {
        self.config.load().instances.clone()
    }

    /// Whether `name` is an `OLLAMA_INSTANCES` entry (not one added at runtime).
    pub fn is_env(&self, name: &str) -> bool {
        self.env.iter().any(|i| i.name == name)
    }

    /// Replace the instances added at runtime (custom Ollama providers, `crate::overrides`) by
    /// `custom`; `OLLAMA_INSTANCES` entries stay (a custom one with an env entry's name is
    /// ignored). Kept instances keep their models; new ones have none until their discovery
    /// (the next [`Instances::refresh_soon`] runs at once).
    pub fn set_custom(&self, custom: Vec<InstanceConfig>) {
        let mut list = self.env.clone();
        for c in custom {
            if !list.iter().any(|i| i.name == c.name) {
                list.push(c);
            }
        }
        let old = self.config.load_full();
        let unchanged = old.instances.len() == list.len()
            && old
                .instances
                .iter()
                .zip(&list)
                .all(|(a, b)| a.name == b.name && a.base_url == b.base_url);
        if unchanged {
            return;
        }
        let current = self.snapshot.load_full();
        let statuses = list
            .iter()
            .map(|i| {
                let same_url = old
                    .instances
                    .iter()
                    .any(|o| o.name == i.name && o.base_url == i.base_url);
                current
                    .instances
                    .iter()
                    .find(|s| s.name == i.name && same_url)
                    .cloned()
                    .unwrap_or(InstanceStatus {
                        name: i.name,
                        models: Vec::new(),
                        reachable: false,
                        failures: 0,
                        last_refresh_ms: None,
                        error: None,
                    })
            })
            .collect();
        self.empty.store(list.is_empty(), Ordering::Release);
        self.config.store(Arc::new(InstancesConfig {
            instances: list,
            refresh: old.refresh,
        }));
        let snapshot = Snapshot::build(statuses, &|n| catalog_claims(&self.enabled, n));
        self.snapshot.store(Arc::new(snapshot));
        self.last_on_demand_ms.store(0, Ordering::Release);
    }

    /// The current snapshot (an atomic load; never waits).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The instance model `name` means in the current snapshot.
    pub fn resolve(&self, name: &str) -> Option<Arc<InstanceModel>> {
        if self.is_empty() {
            return None;
        }
        self.snapshot.load().resolve(name)
    }

    /// Whether `name` belongs to the instances without resolving: it starts with a configured
    /// `<instance>-` (a model not discovered yet, or not there), or it is a bare name several
    /// instances list. Such a name must answer "not found", never fall back to `DEFAULT_MODEL`
    /// (that would send a prompt meant for a local server to another provider).
    pub fn claims(&self, name: &str) -> bool {
        let lower = name.trim().to_ascii_lowercase();
        self.config.load().instances.iter().any(|i| {
            lower
                .strip_prefix(i.name)
                .is_some_and(|rest| rest.starts_with('-'))
        }) || self.snapshot.load().is_ambiguous(&lower)
    }

    /// The instance a pull of `name` goes to, and the model name to pull there: the instance
    /// `name` is namespaced with (`<instance>-<model>`), else the only configured instance (a
    /// bare name). `None` with several instances and a bare name, or with none.
    pub fn pull_target(&self, name: &str) -> Option<(InstanceConfig, String)> {
        let name = name.trim();
        let lower = name.to_ascii_lowercase();
        let instances = self.configured();
        for i in &instances {
            if let Some(rest) = lower.strip_prefix(i.name)
                && rest.starts_with('-')
                && rest.len() > 1
            {
                return Some((i.clone(), name[i.name.len() + 1..].to_string()));
            }
        }
        match instances.as_slice() {
            [only] => Some((only.clone(), name.to_string())),
            _ => None,
        }
    }

    /// Discover every instance once, concurrently, swapping in a new snapshot as each instance
    /// answers (a slow or down instance, up to [`DISCOVERY_TIMEOUT`], never delays the models of
    /// the others). Skipped when another discovery is running. Returns whether it ran.
    pub async fn refresh(&self, client: &reqwest::Client) -> bool {
        if self.is_empty()
            || self
                .refreshing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return false;
        }
        let _guard = RefreshGuard(&self.refreshing);
        let config = self.config.load_full();
        let mut pending: futures_util::stream::FuturesUnordered<_> = config
            .instances
            .iter()
            .map(|i| async move { (i, discover(client, i).await) })
            .collect();
        while let Some((i, result)) = futures_util::StreamExt::next(&mut pending).await {
            // Only one discovery runs at a time: nothing else writes the snapshot meanwhile.
            let current = self.snapshot.load_full();
            // Removed (custom instance deleted) while it was being discovered.
            if !self
                .config
                .load()
                .instances
                .iter()
                .any(|c| c.name == i.name)
            {
                continue;
            }
            let before = current.instances.iter().find(|s| s.name == i.name);
            let status = self.status_after(i, before, result);
            let mut statuses = current.instances.clone();
            // Instances removed at runtime meanwhile (`set_custom`) leave with their models.
            let configured = self.config.load();
            statuses.retain(|s| configured.instances.iter().any(|c| c.name == s.name));
            match statuses.iter_mut().find(|s| s.name == i.name) {
                Some(s) => *s = status,
                None => statuses.push(status),
            }
            let snapshot = Snapshot::build(statuses, &|n| catalog_claims(&self.enabled, n));
            self.snapshot.store(Arc::new(snapshot));
        }
        true
    }

    /// The status of instance `i` after a discovery `result`, given its status `before`; logs
    /// what changed (discovered, first failure of an outage).
    fn status_after(
        &self,
        i: &InstanceConfig,
        before: Option<&InstanceStatus>,
        result: Result<Vec<Arc<InstanceModel>>, String>,
    ) -> InstanceStatus {
        let was_reachable = before.is_some_and(|s| s.reachable);
        let failures = before.map_or(0, |s| s.failures);
        match result {
            Ok(models) => {
                if !was_reachable || before.is_some_and(|s| s.models.len() != models.len()) {
                    tracing::info!(
                        instance = i.name,
                        url = %redact_url(&i.base_url),
                        models = models.len(),
                        "ollama instance discovered"
                    );
                }
                InstanceStatus {
                    name: i.name,
                    models,
                    reachable: true,
                    failures: 0,
                    last_refresh_ms: Some(crate::usage::recorder::now_ms()),
                    error: None,
                }
            }
            Err(reason) => {
                // Warn on the first failure of a streak (also the very first discovery); repeat
                // failures of a down instance only at debug level.
                if failures == 0 {
                    tracing::warn!(
                        instance = i.name,
                        url = %redact_url(&i.base_url),
                        reason,
                        "ollama instance discovery failed; keeping its last known models"
                    );
                } else {
                    tracing::debug!(instance = i.name, reason, "ollama instance still down");
                }
                InstanceStatus {
                    name: i.name,
                    models: before.map(|s| s.models.clone()).unwrap_or_default(),
                    reachable: false,
                    failures: failures.saturating_add(1),
                    last_refresh_ms: Some(crate::usage::recorder::now_ms()),
                    error: Some(reason),
                }
            }
        }
    }

    /// Start a discovery in the background unless one ran within [`ON_DEMAND_MIN_INTERVAL`] or is
    /// running; returns at once. Needs a Tokio runtime (does nothing outside one).
    pub fn refresh_soon(self: &Arc<Self>, client: &reqwest::Client) {
        if self.is_empty() || self.refreshing.load(Ordering::Acquire) {
            return;
        }
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_on_demand_ms.load(Ordering::Acquire);
        let min = ON_DEMAND_MIN_INTERVAL.as_millis() as u64;
        if last != 0 && now.saturating_sub(last) < min {
            return;
        }
        if self
            .last_on_demand_ms
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = Arc::clone(self);
        let client = client.clone();
        rt.spawn(async move {
            this.refresh(&client).await;
        });
    }

    /// Discover now, then every `refresh` interval, until the returned task is aborted.
    pub fn spawn_refresher(
        self: &Arc<Self>,
        client: reqwest::Client,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            // Runs also with no instance configured: custom ones can be added at runtime.
            let mut tick = tokio::time::interval(this.config.load().refresh);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.refresh(&client).await;
            }
        })
    }
}

/// `POST {base}/api/show` for `m`: the instance's own answer (template, parameters,
/// `model_info`, `capabilities`) with `model_info` kept as is, or `None` when the instance answers
/// 404 (the model is gone there: the caller answers "not found"). When the instance cannot
/// answer within [`DISCOVERY_TIMEOUT`] (or answers another error, or more than
/// [`MAX_SHOW_BYTES`]), a minimal answer built from its `/api/tags` entry (details,
/// `modified_at`, capabilities `completion`).
pub async fn show(client: &reqwest::Client, m: &InstanceModel) -> Option<Value> {
    let answer = async {
        let resp = client
            .post(format!("{}/api/show", m.base_url))
            .json(&serde_json::json!({"model": m.model}))
            .timeout(DISCOVERY_TIMEOUT)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let body = read_limited(resp, MAX_SHOW_BYTES, "/api/show").await?;
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) if v.is_object() => Ok(Some(v)),
            _ => Err("not a JSON object".to_string()),
        }
    }
    .await;
    match answer {
        Ok(v) => v,
        Err(reason) => {
            tracing::warn!(instance = m.instance, model = %m.model, reason, "ollama instance /api/show failed; answering from its model list");
            Some(serde_json::json!({
                "license": "",
                "modelfile": format!("# Served by llm-relay from Ollama instance {}\nFROM {}\n", m.instance, m.model),
                "parameters": "",
                "template": "{{ .Prompt }}",
                "system": "",
                "details": m.entry.get("details").cloned().unwrap_or_else(|| serde_json::json!({})),
                "model_info": {},
                "capabilities": ["completion"],
                "modified_at": m.entry.get("modified_at").cloned().unwrap_or_else(|| "".into()),
            }))
        }
    }
}

/// The body of `resp`, read chunk by chunk and abandoned as soon as it passes `limit` bytes (a
/// server cannot make us buffer more than that, with or without `content-length`).
///
/// Errors: too large (naming `what`), or the transport failed mid-body.
pub(crate) async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
    what: &str,
) -> Result<Vec<u8>, String> {
    let too_large = || format!("{what} body larger than {limit} bytes");
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Most bytes of one instance's `/api/ps` answer read (a handful of loaded models).
pub const MAX_PS_BYTES: usize = 1024 * 1024;

/// The models the instances have loaded, as Ollama's `GET /api/ps` lists them (WIRE.md §2.7:
/// `name`, `model`, `size`, `digest`, `details`, `expires_at`, `size_vram`, `context_length`),
/// under the names llm-relay lists them by (`<instance>-<model>` first, as in `/api/tags`). The
/// instances are asked concurrently, each within [`DISCOVERY_TIMEOUT`]; one that fails or
/// answers something else is left out (logged at warn). `hidden(instance, model)` says what the
/// admin disabled (`model` "" asks about the whole instance): those are left out (a disabled
/// instance is not asked). A loaded model llm-relay does not list (pulled since the last
/// discovery) keeps the instance's name, namespaced (`<instance>-<model>`).
pub async fn loaded(
    client: &reqwest::Client,
    instances: &Instances,
    hidden: &(dyn Fn(&str, &str) -> bool + Sync),
) -> Vec<Value> {
    let snap = instances.snapshot();
    let asks = instances
        .configured()
        .into_iter()
        .filter(|i| !hidden(i.name, ""))
        .map(|i| async move {
            let answer = async {
                let resp = client
                    .get(format!("{}/api/ps", i.base_url))
                    .timeout(DISCOVERY_TIMEOUT)
                    .send()
                    .await
                    .map_err(|e| describe(&e))?;
                if !resp.status().is_success() {
                    return Err(format!(
                        "GET /api/ps answered HTTP {}",
                        resp.status().as_u16()
                    ));
                }
                let body = read_limited(resp, MAX_PS_BYTES, "/api/ps").await?;
                #[derive(serde::Deserialize)]
                struct Ps {
                    models: Vec<Value>,
                }
                serde_json::from_slice::<Ps>(&body)
                    .map(|p| p.models)
                    .map_err(|e| format!("/api/ps is not a model list: {e}"))
            }
            .await;
            match answer {
                Ok(models) => (i.name, models),
                Err(reason) => {
                    tracing::warn!(instance = i.name, reason, "ollama instance /api/ps failed");
                    (i.name, Vec::new())
                }
            }
        });
    let mut out = Vec::new();
    for (instance, models) in futures_util::future::join_all(asks).await {
        for mut entry in models {
            let Some(own) = entry
                .get("model")
                .or_else(|| entry.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                continue;
            };
            if hidden(instance, &own) {
                continue;
            }
            let name = snap
                .listed()
                .iter()
                .find(|l| l.model.instance == instance && l.model.model.eq_ignore_ascii_case(&own))
                .map_or_else(|| format!("{instance}-{own}"), |l| l.name.clone());
            if let Value::Object(o) = &mut entry {
                o.insert("name".into(), name.clone().into());
                o.insert("model".into(), name.into());
            }
            out.push(entry);
        }
    }
    out
}

/// `GET {base}/api/tags` -> the instance's models (WIRE.md §2.6 `ListModelResponse`).
///
/// Errors: a short reason (transport, status, shape), without credentials.
async fn discover(
    client: &reqwest::Client,
    i: &InstanceConfig,
) -> Result<Vec<Arc<InstanceModel>>, String> {
    let resp = client
        .get(format!("{}/api/tags", i.base_url))
        .timeout(DISCOVERY_TIMEOUT)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("GET /api/tags answered HTTP {}", status.as_u16()));
    }
    let body = read_limited(resp, MAX_TAGS_BYTES, "/api/tags").await?;
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| format!("/api/tags is not JSON: {e}"))?;
    let list = v
        .get("models")
        .and_then(Value::as_array)
        .ok_or("/api/tags has no models array")?;
    let base_url: Arc<str> = Arc::from(i.base_url.as_str());
    let mut models: Vec<Arc<InstanceModel>> = Vec::with_capacity(list.len());
    for entry in list {
        let Some(name) = entry
            .get("model")
            .or_else(|| entry.get("name"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        // Ollama names always carry a tag; add the default one where a server left it out.
        let model = if name.contains(':') {
            name.to_string()
        } else {
            format!("{name}:latest")
        };
        if models.iter().any(|m| m.model == model) {
            continue;
        }
        models.push(Arc::new(InstanceModel {
            instance: i.name,
            base_url: Arc::clone(&base_url),
            model,
            entry: entry.clone(),
        }));
    }
    Ok(models)
}

/// A transport error in a few words, without the URL (which may carry credentials).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body interrupted"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(instance: &'static str, name: &str) -> Arc<InstanceModel> {
        Arc::new(InstanceModel {
            instance,
            base_url: Arc::from("http://x"),
            model: name.into(),
            entry: Value::Null,
        })
    }

    /// A snapshot where every catalog name counts (every provider enabled).
    fn snapshot(list: &[(&'static str, &[&str])]) -> Snapshot {
        snapshot_with(list, &|n| crate::catalog::resolve(n).is_some())
    }

    fn snapshot_with(
        list: &[(&'static str, &[&str])],
        catalog_claims: &dyn Fn(&str) -> bool,
    ) -> Snapshot {
        Snapshot::build(
            list.iter()
                .map(|(inst, models)| InstanceStatus {
                    name: inst,
                    models: models.iter().map(|m| model(inst, m)).collect(),
                    reachable: true,
                    failures: 0,
                    last_refresh_ms: None,
                    error: None,
                })
                .collect(),
            catalog_claims,
        )
    }

    fn names(s: &Snapshot) -> Vec<&str> {
        s.listed().iter().map(|l| l.name.as_str()).collect()
    }

    #[test]
    fn namespaced_and_bare_names_never_doubled() {
        let s = snapshot(&[("myserver", &["llama3.2:latest", "llama3.2:3b"])]);
        assert_eq!(
            names(&s),
            [
                "myserver-llama3.2:latest",
                "llama3.2:latest",
                "myserver-llama3.2:3b",
                "llama3.2:3b"
            ]
        );
        for spelling in [
            "myserver-llama3.2",
            "MyServer-Llama3.2:latest",
            "llama3.2",
            "llama3.2:latest",
        ] {
            assert_eq!(
                s.resolve(spelling).map(|m| m.model.clone()).as_deref(),
                Some("llama3.2:latest"),
                "{spelling}"
            );
        }
        assert!(s.resolve("llama3.2:latest:latest").is_none());
        assert!(s.resolve("myserver-llama3.2:1b").is_none());
        assert_eq!(s.listed()[0].openai_id(), "myserver-llama3.2");
        assert_eq!(s.listed()[3].openai_id(), "llama3.2:3b");
    }

    #[test]
    fn ambiguous_bare_names_are_dropped() {
        let s = snapshot(&[("a", &["llama3.2:latest"]), ("b", &["llama3.2:latest"])]);
        assert_eq!(names(&s), ["a-llama3.2:latest", "b-llama3.2:latest"]);
        assert!(s.resolve("llama3.2").is_none());
        assert!(s.is_ambiguous("Llama3.2") && s.is_ambiguous("llama3.2:latest"));
        assert!(!s.is_ambiguous("a-llama3.2"));
        assert_eq!(s.resolve("b-llama3.2").map(|m| m.instance), Some("b"));
        // `a` + `b-x` and `a-b` + `x` both spell `a-b-x` (such instance names are rejected at
        // configuration; the snapshot still never picks one).
        let s = snapshot(&[("a", &["b-x:latest"]), ("a-b", &["x:latest"])]);
        assert!(s.resolve("a-b-x").is_none());
        assert!(s.resolve("b-x").is_some() && s.resolve("x").is_some());
    }

    #[test]
    fn namespaced_names_win_over_bare_ones() {
        // `gpu` lists `llava-llama3`; `llava` lists `llama3`: `llava-llama3` is llava's model,
        // gpu's stays reachable as `gpu-llava-llama3`.
        let s = snapshot(&[
            ("llava", &["llama3:latest"]),
            ("gpu", &["llava-llama3:latest"]),
        ]);
        let at = |n: &str| s.resolve(n).map(|m| (m.instance, m.model.clone()));
        assert_eq!(at("llava-llama3"), Some(("llava", "llama3:latest".into())));
        assert_eq!(
            at("llava-llama3:latest"),
            Some(("llava", "llama3:latest".into()))
        );
        assert_eq!(
            at("gpu-llava-llama3"),
            Some(("gpu", "llava-llama3:latest".into()))
        );
        assert_eq!(at("llama3"), Some(("llava", "llama3:latest".into())));
        assert_eq!(
            names(&s),
            [
                "llava-llama3:latest",
                "llama3:latest",
                "gpu-llava-llama3:latest"
            ]
        );
        // Without the clash the bare name reaches gpu.
        let s = snapshot(&[
            ("llava", &["phi3:latest"]),
            ("gpu", &["llava-llama3:latest"]),
        ]);
        assert_eq!(s.resolve("llava-llama3").map(|m| m.instance), Some("gpu"));
    }

    #[test]
    fn only_enabled_catalog_names_hide_bare_names() {
        let catalog_id = crate::catalog::ModelId::all()
            .next()
            .map(|m| m.info().id.to_string())
            .unwrap_or_default();
        let tagged = format!("{catalog_id}:latest");
        // Its provider has no key: the instance model keeps the bare name.
        let s = snapshot_with(&[("box", &[tagged.as_str()])], &|_| false);
        assert_eq!(s.resolve(&catalog_id).map(|m| m.instance), Some("box"));
        assert_eq!(names(&s), [format!("box-{tagged}"), tagged.clone()]);
    }

    #[test]
    fn catalog_names_are_never_shadowed() {
        let catalog_id = crate::catalog::ModelId::all()
            .next()
            .map(|m| m.info().id.to_string())
            .unwrap_or_default();
        let tagged = format!("{catalog_id}:latest");
        let s = snapshot(&[("box", &[tagged.as_str()])]);
        assert!(s.resolve(&catalog_id).is_none());
        assert_eq!(names(&s), [format!("box-{tagged}")]);
    }

    #[tokio::test]
    async fn an_endless_tags_body_is_cut_at_the_limit_while_reading() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
            return;
        };
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tokio::spawn(async move {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                        transfer-encoding: chunked\r\n\r\n";
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // `{"models":[` then spaces, forever (no content-length to check up front).
            let chunk = " ".repeat(64 * 1024);
            let first = "b\r\n{\"models\":[\r\n";
            let _ = sock.write_all(first.as_bytes()).await;
            let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
            while sock.write_all(framed.as_bytes()).await.is_ok() {}
        });
        let cfg = InstanceConfig {
            name: "big",
            base_url: format!("http://{addr}"),
        };
        let started = Instant::now();
        let r = discover(&reqwest::Client::new(), &cfg).await;
        let err = r.err().unwrap_or_default();
        assert!(err.contains("larger than"), "{err}");
        // Cut at the limit, not at the discovery timeout.
        assert!(
            started.elapsed() < DISCOVERY_TIMEOUT,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn parses_instance_lists() {
        let l = parse_instances("MyServer=http://10.0.0.2:11434/, gpu=https://u:p@gpu.lan");
        let l = l.unwrap_or_default();
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[0].name, l[0].base_url.as_str()),
            ("myserver", "http://10.0.0.2:11434")
        );
        assert_eq!(redact_url(&l[1].base_url), "https://gpu.lan");
        for bad in [
            "http://x:11434",
            "a=ftp://x",
            "a=http://x,a=http://y",
            "-a=http://x",
            "a b=http://x",
            "gpu=http://x,gpu-2=http://y",
            "gpu-2=http://x,GPU=http://y",
        ] {
            assert!(parse_instances(bad).is_err(), "{bad}");
        }
        let provider = crate::catalog::PROVIDERS[0].name;
        assert!(parse_instances(&format!("{provider}=http://x")).is_err());
        // A shared prefix without `-` right after it is fine.
        assert!(parse_instances("gpu=http://x,gpu2=http://y,gp-u=http://z").is_ok());
    }
}
