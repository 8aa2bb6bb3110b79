//! Startup configuration from the environment (no config file is needed to start).
//!
//! Every variable can also be given as `<NAME>_FILE`, a path whose trimmed contents are the value
//! (Docker secrets). Provider keys and base URLs come from the variable names in providers.yaml
//! (`api_key_env`, `<PROVIDER>_BASE_URL`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::catalog::{PROVIDERS, ProviderId};

/// Default request body limit: 32 MiB, enough for several base64 images.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// One provider as configured at startup.
#[derive(Clone)]
pub struct ProviderConfig {
    /// Which provider.
    pub id: ProviderId,
    /// Base URL in effect (env override or the YAML default), no trailing slash.
    pub base_url: String,
    /// API key, if set. Never logged (see the `Debug` impl).
    pub api_key: Option<String>,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("id", &self.id)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// API listen address (`HOST`:`PORT`, default 0.0.0.0:11434).
    pub listen: SocketAddr,
    /// Model used when a client names an unknown one (`DEFAULT_MODEL`).
    pub default_model: Option<String>,
    /// Model that Anthropic-API requests for `sonnet`/`opus` Claude models go to when those are
    /// not routable as named (`BIG_MODEL`; any name a chat request accepts, checked per request
    /// since Ollama-instance models are discovered at runtime). See
    /// `frontend::anthropic::map_claude_model`.
    pub big_model: Option<String>,
    /// Same for `haiku` Claude models (`SMALL_MODEL`).
    pub small_model: Option<String>,
    /// Request body limit in bytes (`MAX_BODY_BYTES`, default 32 MiB).
    pub max_body_bytes: usize,
    /// Upstream TCP connect timeout (`UPSTREAM_CONNECT_TIMEOUT_MS`, default 10 000 ms).
    pub connect_timeout: Duration,
    /// Longest silence between two upstream reads, streams included
    /// (`UPSTREAM_READ_TIMEOUT_MS`, default 300 000 ms). Not a total deadline.
    pub read_timeout: Duration,
    /// Longest wait for the next event of an upstream stream, counted in decoded events, not
    /// bytes: an upstream that only sends keep-alive comments or empty lines never trips the read
    /// timeout but trips this one (`STREAM_IDLE_TIMEOUT_MS`, default 300 000 ms). Not a total
    /// deadline: a stream that keeps producing tokens runs as long as it needs.
    pub stream_idle_timeout: Duration,
    /// How long a graceful shutdown (SIGTERM, SIGINT) waits for in-flight requests and streams
    /// after it stops accepting connections; what is still open then is cut (and recorded)
    /// (`SHUTDOWN_GRACE_MS`, default 10 000 ms).
    pub shutdown_grace: Duration,
    /// Threads serving the API, each with its own single-threaded runtime, upstream connections
    /// and (on Linux) listening socket on the port (`SERVER_THREADS`, default: the number of CPUs
    /// the process may use). See `crate::server::run_threads` and `crate::server::bind`.
    pub server_threads: usize,
    /// How long after the first line of a batch each API server thread writes out its buffered
    /// log lines; zero writes every line at once (`LOG_FLUSH_MS`, default 100 ms). See
    /// `crate::logbuf`.
    pub log_flush: Duration,
    /// Providers, indexed in `ProviderId` order.
    pub providers: Vec<ProviderConfig>,
    /// Ollama servers used as upstreams (`OLLAMA_INSTANCES`, `OLLAMA_REFRESH_SECS`).
    pub ollama: crate::instances::InstancesConfig,
    /// Whether http(s) image URLs are fetched for upstreams that take only inline images
    /// (`IMAGE_URL_FETCH`, default true; see `crate::images`).
    pub image_url_fetch: bool,
}

/// Read `name`, or the file named by `name_FILE` (Docker secrets). Empty values count as unset.
///
/// Errors: `name_FILE` is set but cannot be read or is empty (named in the message).
pub fn env_var(name: &str) -> Result<Option<String>, String> {
    if let Some(v) = std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
    {
        return Ok(Some(v));
    }
    let Ok(path) = std::env::var(format!("{name}_FILE")) else {
        return Ok(None);
    };
    let path = path.trim();
    let value = std::fs::read_to_string(path)
        .map_err(|e| format!("{name}_FILE={path:?} cannot be read: {e}"))?;
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("{name}_FILE={path:?} is empty"));
    }
    Ok(Some(value.to_string()))
}

pub(crate) fn env_parse<T: std::str::FromStr>(
    name: &str,
    expected: &str,
) -> Result<Option<T>, String> {
    match env_var(name)? {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}={v:?} is not valid: expected {expected}")),
    }
}

/// Usage tracking configuration from the environment. The runtime settings (default tag,
/// tracking, retention, DNS) are stored in the database once changed there; these are their
/// defaults.
#[derive(Debug, Clone)]
pub struct UsageConfig {
    /// Directory of the database file (`DATA_DIR`, default `./data`).
    pub data_dir: std::path::PathBuf,
    /// Defaults of the runtime settings (`USAGE_DEFAULT_TAG`, `USAGE_TRACKING`,
    /// `USAGE_RETENTION_DAYS`, `USAGE_DNS`).
    pub settings: crate::usage::record::UsageSettings,
    /// Proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`: comma-separated IPs or
    /// CIDR networks; default none).
    pub trusted_proxies: Vec<crate::usage::tags::TrustedProxy>,
}

pub(crate) fn env_bool(name: &str) -> Result<Option<bool>, String> {
    match env_var(name)? {
        None => Ok(None),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" => Ok(Some(false)),
            _ => Err(format!("{name}={v:?} is not valid: expected true or false")),
        },
    }
}

impl UsageConfig {
    /// Read the usage configuration from the process environment.
    ///
    /// Errors: a set but unusable variable, named with what is expected.
    pub fn from_env() -> Result<UsageConfig, String> {
        let defaults = crate::usage::record::UsageSettings::default();
        let default_tag = match env_var("USAGE_DEFAULT_TAG")? {
            None => defaults.default_tag,
            Some(t) => crate::usage::tags::normalise(&t)
                .into_iter()
                .next()
                .ok_or_else(|| format!("USAGE_DEFAULT_TAG={t:?} is not valid: expected a tag"))?,
        };
        let trusted_proxies = match env_var("TRUSTED_PROXIES")? {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(crate::usage::tags::TrustedProxy::parse)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("TRUSTED_PROXIES: {e}"))?,
        };
        Ok(UsageConfig {
            data_dir: env_var("DATA_DIR")?.map_or_else(|| "./data".into(), Into::into),
            settings: crate::usage::record::UsageSettings {
                default_tag,
                tracking: env_bool("USAGE_TRACKING")?.unwrap_or(defaults.tracking),
                retention_days: env_parse("USAGE_RETENTION_DAYS", "a number of days (0 = keep)")?
                    .unwrap_or(defaults.retention_days),
                dns: env_bool("USAGE_DNS")?.unwrap_or(defaults.dns),
            },
            trusted_proxies,
        })
    }
}

impl Config {
    /// Read the configuration from the process environment.
    ///
    /// Errors: a variable that is set but unusable, named in the message with what is expected:
    /// `PORT=abc`, `HOST=localhost` (an IP address is needed), an unreadable `<NAME>_FILE`, a base
    /// URL that is not http(s), a `DEFAULT_MODEL` that is not in the catalog, a malformed
    /// `OLLAMA_INSTANCES`.
    pub fn from_env() -> Result<Config, String> {
        let host: IpAddr = env_parse("HOST", "an IP address such as 0.0.0.0 or 127.0.0.1")?
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let port: u16 = env_parse("PORT", "a port number 0-65535")?.unwrap_or(11434);
        let mut providers = Vec::with_capacity(PROVIDERS.len());
        for p in &PROVIDERS {
            let base_url = match env_var(p.base_url_env)? {
                Some(u) => {
                    let u = u.trim_end_matches('/').to_string();
                    match reqwest::Url::parse(&u) {
                        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => u,
                        _ => {
                            return Err(format!(
                                "{}={u:?} is not valid: expected an http(s) URL with the API version path, like {}",
                                p.base_url_env, p.base_url
                            ));
                        }
                    }
                }
                None => p.base_url.to_string(),
            };
            let mut api_key = match p.api_key_env {
                Some(var) => env_var(var)?,
                None => None,
            };
            for var in p.api_key_env_alternatives {
                if api_key.is_none() {
                    api_key = env_var(var)?;
                }
            }
            providers.push(ProviderConfig {
                id: p.id,
                base_url,
                api_key,
            });
        }
        let default_model = env_var("DEFAULT_MODEL")?;
        if let Some(m) = &default_model
            && crate::catalog::resolve(m).is_none()
        {
            return Err(format!(
                "DEFAULT_MODEL={m:?} is not a model in the catalog (`llm-relay models` lists them)"
            ));
        }
        Ok(Config {
            listen: SocketAddr::new(host, port),
            default_model,
            big_model: env_var("BIG_MODEL")?,
            small_model: env_var("SMALL_MODEL")?,
            max_body_bytes: env_parse("MAX_BODY_BYTES", "a size in bytes")?
                .unwrap_or(DEFAULT_MAX_BODY_BYTES),
            connect_timeout: Duration::from_millis(
                env_parse("UPSTREAM_CONNECT_TIMEOUT_MS", "milliseconds")?.unwrap_or(10_000),
            ),
            read_timeout: Duration::from_millis(
                env_parse("UPSTREAM_READ_TIMEOUT_MS", "milliseconds")?.unwrap_or(300_000),
            ),
            stream_idle_timeout: Duration::from_millis(
                env_parse("STREAM_IDLE_TIMEOUT_MS", "milliseconds")?.unwrap_or(300_000),
            ),
            shutdown_grace: Duration::from_millis(
                env_parse("SHUTDOWN_GRACE_MS", "milliseconds")?.unwrap_or(10_000),
            ),
            server_threads: match env_parse::<usize>("SERVER_THREADS", "a number of threads")? {
                Some(0) => return Err("SERVER_THREADS must be at least 1".into()),
                Some(n) => n,
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
            log_flush: Duration::from_millis(
                env_parse("LOG_FLUSH_MS", "milliseconds")?.unwrap_or(100),
            ),
            providers,
            ollama: crate::instances::InstancesConfig::from_env()?,
            image_url_fetch: env_bool("IMAGE_URL_FETCH")?.unwrap_or(true),
        })
    }

    /// The configuration of `id`.
    pub fn provider(&self, id: ProviderId) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.id == id)
    }

    /// Whether `id` can be used: it has a key, or needs none.
    pub fn is_enabled(&self, id: ProviderId) -> bool {
        let info = id.info();
        info.api_key_env.is_none() || self.provider(id).is_some_and(|p| p.api_key.is_some())
    }
}
