//! Pricing sync: import LiteLLM's price JSON (`model_prices_and_context_window.json`, the
//! source pricing.yaml was derived from) into price overrides, keeping every price the operator
//! set by hand (seed 002), with a preview of what changes.
//!
//! Format (LiteLLM, per model key): `input_cost_per_token`, `output_cost_per_token`,
//! `cache_read_input_token_cost`, `cache_creation_input_token_cost`,
//! `cache_creation_input_token_cost_above_1hr` (1-hour cache writes, Anthropic) in USD per
//! token, and `litellm_provider`. Rates here are USD per 1M tokens = LiteLLM per-token cost x 1e6.
//!
//! Matching (as pricing.yaml was derived): a compiled model `provider/id` takes the entry keyed
//! `provider/id`, else the entry keyed `id`, in both cases only when the entry's
//! `litellm_provider` is that provider. Models without an entry are counted as `unmatched` and
//! keep their prices. Custom and discovered models are not touched (they have no LiteLLM name).
//!
//! A cache rate of 0 in the file is treated as absent (see `rate`).
//!
//! Imported prices go to [`ModelOverride::imported`]; hand-set ones ([`ModelOverride::pricing`])
//! win and are never replaced (counted in `kept_user_overrides` when the file differs).

use poem::Body;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::api::{AdminError, Res, read_body};
use super::{ModelOverride, OverrideSet, model_key};
use crate::catalog::ModelId;
use crate::relay::AppState;

/// Largest price file fetched from a URL: 16 MiB (LiteLLM's is about 1.5 MB).
pub const MAX_FETCH_BYTES: usize = 16 * 1024 * 1024;

/// Longest wait for a price file URL: 30 s.
pub const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// LiteLLM rates are USD per token; ours USD per 1M tokens.
const TOKENS_PER_RATE_UNIT: f64 = 1_000_000.0;

/// One price that changes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Change {
    /// Provider name.
    pub provider: String,
    /// Model id.
    pub model: String,
    /// `input`, `output`, `cache_read`, `cache_write` or `cache_write_1h`.
    pub field: &'static str,
    /// Rate in effect now, USD per 1M tokens.
    pub old: Option<f64>,
    /// Rate from the file, USD per 1M tokens.
    pub new: f64,
}

/// What an import does (admin/API.md "Pricing sync").
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// Prices that change.
    pub changes: Vec<Change>,
    /// Prices the file would change but the operator set by hand (kept).
    pub kept_user_overrides: usize,
    /// Compiled models the file has no entry for.
    pub unmatched: usize,
}

/// The LiteLLM entry for compiled model `m`, if any.
pub fn entry_for(data: &Map<String, Value>, m: ModelId) -> Option<&Map<String, Value>> {
    let info = m.info();
    let provider = info.provider.name();
    [model_key(provider, info.id), info.id.to_string()]
        .iter()
        .filter_map(|k| data.get(k).and_then(Value::as_object))
        .find(|e| e.get("litellm_provider").and_then(Value::as_str) == Some(provider))
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
}

/// A per-token cost as USD per 1M tokens, rounded to 1e-9. A cache rate of 0 counts as absent:
/// LiteLLM writes 0 where a provider has no such charge (DeepSeek's
/// `cache_creation_input_token_cost`), while pricing.yaml bills those tokens at the input rate.
fn rate(e: &Map<String, Value>, field: &str) -> Option<f64> {
    let v = e.get(field)?.as_f64()?;
    let r = (v * TOKENS_PER_RATE_UNIT * 1e9).round() / 1e9;
    let cache = field.starts_with("cache_");
    (r.is_finite() && r >= 0.0 && !(cache && r == 0.0)).then_some(r)
}

/// Apply the file `data` to `set` (imported prices), returning what changed.
pub fn sync(set: &mut OverrideSet, data: &Map<String, Value>) -> Report {
    let mut report = Report::default();
    for m in ModelId::all() {
        let Some(e) = entry_for(data, m) else {
            report.unmatched += 1;
            continue;
        };
        let info = m.info();
        let key = model_key(info.provider.name(), info.id);
        let c = m.pricing();
        let mut o: ModelOverride = set.models.get(&key).cloned().unwrap_or_default();
        let fields: [(&'static str, &str, f64); 5] = [
            ("input", "input_cost_per_token", c.input),
            ("output", "output_cost_per_token", c.output),
            ("cache_read", "cache_read_input_token_cost", c.cache_read),
            (
                "cache_write",
                "cache_creation_input_token_cost",
                c.cache_write,
            ),
            (
                "cache_write_1h",
                "cache_creation_input_token_cost_above_1hr",
                c.cache_write_1h,
            ),
        ];
        for (field, litellm, compiled) in fields {
            let Some(new) = rate(e, litellm) else {
                continue;
            };
            let (manual, imported) = match field {
                "input" => (o.pricing.input, &mut o.imported.input),
                "output" => (o.pricing.output, &mut o.imported.output),
                "cache_read" => (o.pricing.cache_read, &mut o.imported.cache_read),
                "cache_write" => (o.pricing.cache_write, &mut o.imported.cache_write),
                _ => (o.pricing.cache_write_1h, &mut o.imported.cache_write_1h),
            };
            if let Some(mv) = manual {
                if !same(mv, new) {
                    report.kept_user_overrides += 1;
                }
                continue;
            }
            let old = imported.unwrap_or(compiled);
            if same(old, new) {
                continue;
            }
            *imported = (!same(compiled, new)).then_some(new);
            report.changes.push(Change {
                provider: info.provider.name().to_string(),
                model: info.id.to_string(),
                field,
                old: Some(old),
                new,
            });
        }
        if o.is_empty() {
            set.models.remove(&key);
        } else {
            set.models.insert(key, o);
        }
    }
    report
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncRequest {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    data: Option<Value>,
}

/// Fetch the price file at `url` (http(s), at most [`MAX_FETCH_BYTES`], [`FETCH_TIMEOUT`]).
///
/// Errors: not an http(s) URL (400); transport failure, non-2xx status, too large or not JSON
/// (502).
async fn fetch(state: &AppState, url: &str) -> Result<Value, AdminError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => {
            return Err(AdminError::bad_request(format!(
                "url {url:?} is not an http(s) URL"
            )));
        }
    }
    let resp = state
        .image_client
        .get(url)
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            AdminError::upstream(if e.is_timeout() {
                "price file: timed out".to_string()
            } else {
                "price file: request failed".to_string()
            })
        })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(AdminError::upstream(format!("price file: HTTP {status}")));
    }
    let body = crate::instances::read_limited(resp, MAX_FETCH_BYTES, "price file")
        .await
        .map_err(AdminError::upstream)?;
    serde_json::from_slice(&body)
        .map_err(|e| AdminError::upstream(format!("price file is not JSON: {e}")))
}

/// `POST /api/pricing/preview` (`store` false) and `/api/pricing/import` (`store` true).
pub async fn handle(state: &AppState, body: Body, store: bool) -> Res {
    let r: SyncRequest = read_body(body).await?;
    let data = match (r.url, r.data) {
        (Some(u), None) => fetch(state, u.trim()).await?,
        (None, Some(d)) => d,
        _ => {
            return Err(AdminError::bad_request(
                "expected either {\"url\": \"https://...\"} or {\"data\": {...}}",
            ));
        }
    };
    let Some(obj) = data.as_object() else {
        return Err(AdminError::bad_request(
            "the price data must be a JSON object keyed by model (LiteLLM format)",
        ));
    };
    let report = if store {
        state.overrides.update(|set| Ok(sync(set, obj)))?
    } else {
        let mut set = state.overrides.load().set.clone();
        sync(&mut set, obj)
    };
    super::api::ok(&json!(report))
}
