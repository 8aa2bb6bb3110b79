//! The usage endpoints of the admin API (`/api/usage/*`, admin/API.md "Usage"): summary, time
//! series, breakdowns and recent requests, answered live by [`crate::store::UsageQuery`] on the
//! database the recorder writes.
//!
//! Owns the query-string filters and the JSON shapes; the queries themselves live in
//! `crate::usage::query` and `crate::store`.

use std::collections::HashMap;

use poem::web::{Data, Json, Query};
use poem::{Route, get, handler};
use serde_json::{Value, json};

use super::{AdminError, AdminState};
use crate::usage::query::{Dimension, Filter, Granularity, Totals, parse_time};
use crate::usage::record::UsageRecord;

/// Default `since` of every usage route: the last 7 days.
pub const DEFAULT_SINCE: &str = "7d";
/// Default and largest `limit` of `/api/usage/recent`.
pub const DEFAULT_RECENT: usize = 100;
/// Largest `limit` of `/api/usage/recent`.
pub const MAX_RECENT: usize = 1000;

/// The usage routes, relative to `/api/usage`.
pub fn routes() -> Route {
    Route::new()
        .at("/summary", get(summary))
        .at("/series", get(series))
        .at("/breakdown", get(breakdown))
        .at("/recent", get(recent))
}

type Params = poem::Result<Query<HashMap<String, String>>>;

fn params(p: Params) -> Result<HashMap<String, String>, AdminError> {
    p.map(|Query(q)| q)
        .map_err(|e| AdminError::BadRequest(format!("invalid query string: {e}")))
}

/// The filter of a usage request: `since` (default 7d), `until`, `tag`, `provider`, `model`,
/// `client`. Tags are normalised the way records are stored (lower-cased, key-looking values
/// hashed). Empty values count as absent. `provider` and `model` are matched as given (a value
/// from a breakdown row); [`Candidates`] adds the other spellings a person may type.
///
/// Errors: a time bound that does not parse.
pub fn filter(
    q: &HashMap<String, String>,
    now_ms: i64,
) -> Result<(Filter, Candidates), AdminError> {
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let time = |k: &str, v: &str| {
        parse_time(v, now_ms).map_err(|e| AdminError::BadRequest(format!("{k}: {e}")))
    };
    let provider = get("provider").map(|p| candidates(p, [p.to_lowercase()]));
    let model = get("model").map(|m| {
        let resolved = crate::catalog::resolve(m).map(|id| id.info().id.to_string());
        candidates(m, resolved.into_iter().chain([m.to_lowercase()]))
    });
    let f = Filter {
        since_ms: Some(time("since", get("since").unwrap_or(DEFAULT_SINCE))?),
        until_ms: get("until").map(|v| time("until", v)).transpose()?,
        tag: get("tag").map(|t| {
            crate::usage::tags::normalise(t)
                .into_iter()
                .next()
                .unwrap_or_else(|| t.to_string())
        }),
        provider: provider.as_ref().and_then(|c| c.first().cloned()),
        model: model.as_ref().and_then(|c| c.first().cloned()),
        client: get("client").map(str::to_string),
    };
    Ok((
        f,
        Candidates {
            provider: provider.unwrap_or_default(),
            model: model.unwrap_or_default(),
        },
    ))
}

fn candidates(given: &str, others: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = vec![given.to_string()];
    for o in others {
        if !out.contains(&o) {
            out.push(o);
        }
    }
    out
}

/// Spellings of the `provider` and `model` filters, the value as given first: records keep the
/// upstream's exact ids (`Org/Model-Name`, an instance called `GPU`), while a person may type an
/// alias or another case. The first spelling that has records in the window is used.
#[derive(Debug, Default, Clone)]
pub struct Candidates {
    /// Provider spellings: as given, lower-cased.
    pub provider: Vec<String>,
    /// Model spellings: as given, the catalog id it resolves to, lower-cased.
    pub model: Vec<String>,
}

impl Candidates {
    /// Set `f.provider`/`f.model` to the first spelling with records (else the value as given).
    ///
    /// Errors: the backend failed.
    pub fn apply(
        &self,
        store: &dyn crate::store::UsageQuery,
        f: &mut Filter,
    ) -> Result<(), crate::store::StoreError> {
        if self.provider.len() > 1 {
            f.provider = first_with_records(store, f, &self.provider, |f, v| f.provider = v)?;
        }
        if self.model.len() > 1 {
            f.model = first_with_records(store, f, &self.model, |f, v| f.model = v)?;
        }
        Ok(())
    }
}

fn first_with_records(
    store: &dyn crate::store::UsageQuery,
    f: &Filter,
    spellings: &[String],
    set: impl Fn(&mut Filter, Option<String>),
) -> Result<Option<String>, crate::store::StoreError> {
    for s in spellings {
        let mut probe = f.clone();
        set(&mut probe, Some(s.clone()));
        if store.summary(&probe)?.requests > 0 {
            return Ok(Some(s.clone()));
        }
    }
    Ok(spellings.first().cloned())
}

/// `Totals` as JSON (admin/API.md): token counts, `cost_usd` (USD, priced requests only),
/// `mean_latency_ms`.
pub fn totals_json(t: &Totals) -> serde_json::Map<String, Value> {
    let v = json!({
        "requests": t.requests,
        "errors": t.errors,
        "input_tokens": t.input_tokens,
        "output_tokens": t.output_tokens,
        "reasoning_tokens": t.reasoning_tokens,
        "cached_input_tokens": t.cached_input_tokens,
        "cache_read_tokens": t.cache_read_tokens,
        "cache_write_tokens": t.cache_write_tokens,
        "cost_usd": t.cost_usd(),
        "reported_cost_requests": t.reported_cost_requests,
        "unpriced_requests": t.unpriced_requests,
        "mean_latency_ms": t.mean_latency_ms(),
    });
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// One recent request as JSON (admin/API.md `/api/usage/recent`).
pub fn record_json(r: &UsageRecord) -> Value {
    // Cached prompt tokens of providers that count them inside the prompt show as cache reads.
    json!({
        "time": rfc3339_ms(r.time_ms),
        "tags": r.tags,
        "provider": r.provider,
        "model": r.model,
        "model_requested": r.model_requested,
        "endpoint": r.endpoint,
        "client_ip": r.client_ip,
        "client_host": r.client_host,
        "user_agent": r.user_agent,
        "api": r.frontend.strip_suffix("-api").unwrap_or(&r.frontend),
        "stream": r.stream,
        "status": r.status,
        "error": r.error,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "reasoning_tokens": r.reasoning_tokens,
        "cached_input_tokens": r.cached_input_tokens,
        "cache_read_tokens": r.cache_read_tokens,
        "cache_write_tokens": r.cache_write_tokens,
        "cache_write_1h_tokens": r.cache_write_1h_tokens,
        "cost_usd": r.cost_usd(),
        "cost_source": r.cost_source.as_str(),
        "tokens_estimated": r.tokens_estimated,
        "ttft_ms": r.ttft_ms,
        "latency_ms": r.latency_ms,
    })
}

/// Run a blocking store query off the async workers.
async fn blocking<T: Send + 'static>(
    state: &AdminState,
    f: impl FnOnce(&dyn crate::store::UsageQuery) -> Result<T, crate::store::StoreError>
    + Send
    + 'static,
) -> Result<T, AdminError> {
    let store = std::sync::Arc::clone(&state.usage);
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| AdminError::Internal(format!("usage query failed: {e}")))?
        .map_err(AdminError::from)
}

fn now_ms() -> i64 {
    crate::usage::recorder::now_ms()
}

/// `GET /api/usage/summary` → Totals.
#[handler]
pub async fn summary(state: Data<&AdminState>, q: Params) -> Result<Json<Value>, AdminError> {
    let (mut f, c) = filter(&params(q)?, now_ms())?;
    let t = blocking(&state, move |s| {
        c.apply(s, &mut f)?;
        s.summary(&f)
    })
    .await?;
    Ok(Json(Value::Object(totals_json(&t))))
}

/// `GET /api/usage/series?granularity=hour|day` (default `hour`) →
/// `{"granularity", "points": [{"t", ...Totals}]}`.
#[handler]
pub async fn series(state: Data<&AdminState>, q: Params) -> Result<Json<Value>, AdminError> {
    let q = params(q)?;
    let (name, g) = match q.get("granularity").map(|s| s.trim()) {
        None | Some("" | "hour") => ("hour", Granularity::Hour),
        Some("day") => ("day", Granularity::Day),
        Some(other) => {
            return Err(AdminError::BadRequest(format!(
                "granularity {other:?}: expected hour or day"
            )));
        }
    };
    let (mut f, c) = filter(&q, now_ms())?;
    let rows = blocking(&state, move |s| {
        c.apply(s, &mut f)?;
        s.series(&f, g)
    })
    .await?;
    let points: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut m = totals_json(&r.totals);
            m.insert("t".into(), Value::String(r.key.clone()));
            Value::Object(m)
        })
        .collect();
    Ok(Json(json!({"granularity": name, "points": points})))
}

/// `GET /api/usage/breakdown?by=tag|provider|model|client` → `{"by", "rows": [{"key", ...Totals}]}`
/// (most expensive first; `key` is `""` for requests without a value).
#[handler]
pub async fn breakdown(state: Data<&AdminState>, q: Params) -> Result<Json<Value>, AdminError> {
    let q = params(q)?;
    let by_name = q
        .get("by")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let by = Dimension::parse(&by_name).ok_or_else(|| {
        AdminError::BadRequest(format!(
            "by {by_name:?}: expected tag, provider, model or client"
        ))
    })?;
    let (mut f, c) = filter(&q, now_ms())?;
    let rows = blocking(&state, move |s| {
        c.apply(s, &mut f)?;
        s.breakdown(&f, by)
    })
    .await?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut m = totals_json(&r.totals);
            m.insert("key".into(), Value::String(r.key.clone()));
            Value::Object(m)
        })
        .collect();
    Ok(Json(json!({"by": by_name, "rows": rows})))
}

/// `GET /api/usage/recent?limit=N` (default 100, at most 1000) → `{"records": [...]}`, newest
/// first.
#[handler]
pub async fn recent(state: Data<&AdminState>, q: Params) -> Result<Json<Value>, AdminError> {
    let q = params(q)?;
    let limit = match q.get("limit").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => DEFAULT_RECENT,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_RECENT).contains(n))
            .ok_or_else(|| {
                AdminError::BadRequest(format!("limit {s:?}: expected 1 to {MAX_RECENT}"))
            })?,
    };
    let (mut f, c) = filter(&q, now_ms())?;
    let records = blocking(&state, move |s| {
        c.apply(s, &mut f)?;
        s.recent(&f, limit)
    })
    .await?;
    let records: Vec<Value> = records.iter().map(record_json).collect();
    Ok(Json(json!({"records": records})))
}
