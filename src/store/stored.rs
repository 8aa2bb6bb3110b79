//! The stored (on-disk) forms of usage data, versioned: a new field means a new `Stored*V<n>`
//! type and a conversion, never a silent change of an existing one.
//!
//! Encoding: JSON (serde) with a leading `v` version number, so old values stay readable by a
//! newer build.

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::usage::cost::CostSource;
use crate::usage::query::Totals;
use crate::usage::record::UsageRecord;

/// A usage record as stored in the `requests` table (version 1).
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredRecordV1 {
    /// Format version: 1.
    pub v: u8,
    /// Arrival, Unix ms.
    pub t: i64,
    /// Client API.
    pub frontend: String,
    /// Path.
    pub endpoint: String,
    /// Provider.
    pub provider: String,
    /// Resolved model id.
    pub model: String,
    /// Model as asked.
    pub model_requested: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Client IP.
    pub client_ip: Option<String>,
    /// Client host name.
    pub client_host: Option<String>,
    /// User-Agent.
    pub user_agent: Option<String>,
    /// Stream flag.
    pub stream: bool,
    /// HTTP status.
    pub status: u16,
    /// Error kind.
    pub error: Option<String>,
    /// Delivered completely.
    pub complete: bool,
    /// Latency, ms.
    pub latency_ms: u64,
    /// Time to first token, ms.
    pub ttft_ms: Option<u64>,
    /// Token classes (see [`UsageRecord`]).
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Reasoning tokens.
    pub reasoning: u64,
    /// Cached input tokens.
    pub cached_input: u64,
    /// Cache reads.
    pub cache_read: u64,
    /// Cache writes.
    pub cache_write: u64,
    /// Cost, pico-USD (`None`: unpriced).
    pub cost_pico: Option<u64>,
    /// `reported` | `estimated` | `unpriced`.
    pub cost_source: String,
}

impl From<StoredRecordV1> for UsageRecord {
    /// A version-1 record: its token counts were all the upstream's (`tokens_estimated` false).
    fn from(s: StoredRecordV1) -> Self {
        UsageRecord {
            time_ms: s.t,
            frontend: s.frontend.into(),
            endpoint: s.endpoint.into(),
            provider: s.provider.into(),
            model: s.model.into(),
            model_requested: s.model_requested,
            tags: s.tags,
            client_ip: s.client_ip,
            client_host: s.client_host,
            user_agent: s.user_agent,
            stream: s.stream,
            status: s.status,
            error: s.error.map(Into::into),
            complete: s.complete,
            latency_ms: s.latency_ms,
            ttft_ms: s.ttft_ms,
            input_tokens: s.input,
            output_tokens: s.output,
            reasoning_tokens: s.reasoning,
            cached_input_tokens: s.cached_input,
            cache_read_tokens: s.cache_read,
            cache_write_tokens: s.cache_write,
            cost_pico_usd: s.cost_pico,
            cost_source: CostSource::parse(&s.cost_source).unwrap_or_default(),
            tokens_estimated: false,
        }
    }
}

/// A usage record as stored in the `requests` table (version 2): version 1 plus
/// `tokens_estimated`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredRecordV2 {
    /// Format version: 2.
    pub v: u8,
    /// Arrival, Unix ms.
    pub t: i64,
    /// Client API.
    pub frontend: String,
    /// Path.
    pub endpoint: String,
    /// Provider.
    pub provider: String,
    /// Resolved model id.
    pub model: String,
    /// Model as asked.
    pub model_requested: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Client IP.
    pub client_ip: Option<String>,
    /// Client host name.
    pub client_host: Option<String>,
    /// User-Agent.
    pub user_agent: Option<String>,
    /// Stream flag.
    pub stream: bool,
    /// HTTP status.
    pub status: u16,
    /// Error kind.
    pub error: Option<String>,
    /// Delivered completely.
    pub complete: bool,
    /// Latency, ms.
    pub latency_ms: u64,
    /// Time to first token, ms.
    pub ttft_ms: Option<u64>,
    /// Token classes (see [`UsageRecord`]).
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Reasoning tokens.
    pub reasoning: u64,
    /// Cached input tokens.
    pub cached_input: u64,
    /// Cache reads.
    pub cache_read: u64,
    /// Cache writes.
    pub cache_write: u64,
    /// Cost, pico-USD (`None`: unpriced).
    pub cost_pico: Option<u64>,
    /// `reported` | `estimated` | `unpriced`.
    pub cost_source: String,
    /// Input or output tokens are llm-relay's estimate (see [`UsageRecord::tokens_estimated`]).
    pub tokens_estimated: bool,
}

impl From<&UsageRecord> for StoredRecordV2 {
    fn from(r: &UsageRecord) -> Self {
        StoredRecordV2 {
            v: 2,
            t: r.time_ms,
            frontend: r.frontend.to_string(),
            endpoint: r.endpoint.to_string(),
            provider: r.provider.to_string(),
            model: r.model.to_string(),
            model_requested: r.model_requested.clone(),
            tags: r.tags.clone(),
            client_ip: r.client_ip.clone(),
            client_host: r.client_host.clone(),
            user_agent: r.user_agent.clone(),
            stream: r.stream,
            status: r.status,
            error: r.error.as_deref().map(str::to_string),
            complete: r.complete,
            latency_ms: r.latency_ms,
            ttft_ms: r.ttft_ms,
            input: r.input_tokens,
            output: r.output_tokens,
            reasoning: r.reasoning_tokens,
            cached_input: r.cached_input_tokens,
            cache_read: r.cache_read_tokens,
            cache_write: r.cache_write_tokens,
            cost_pico: r.cost_pico_usd,
            cost_source: r.cost_source.as_str().into(),
            tokens_estimated: r.tokens_estimated,
        }
    }
}

impl From<StoredRecordV2> for UsageRecord {
    fn from(s: StoredRecordV2) -> Self {
        UsageRecord {
            time_ms: s.t,
            frontend: s.frontend.into(),
            endpoint: s.endpoint.into(),
            provider: s.provider.into(),
            model: s.model.into(),
            model_requested: s.model_requested,
            tags: s.tags,
            client_ip: s.client_ip,
            client_host: s.client_host,
            user_agent: s.user_agent,
            stream: s.stream,
            status: s.status,
            error: s.error.map(Into::into),
            complete: s.complete,
            latency_ms: s.latency_ms,
            ttft_ms: s.ttft_ms,
            input_tokens: s.input,
            output_tokens: s.output,
            reasoning_tokens: s.reasoning,
            cached_input_tokens: s.cached_input,
            cache_read_tokens: s.cache_read,
            cache_write_tokens: s.cache_write,
            cost_pico_usd: s.cost_pico,
            cost_source: CostSource::parse(&s.cost_source).unwrap_or_default(),
            tokens_estimated: s.tokens_estimated,
        }
    }
}

/// [`StoredRecordV2`] borrowing the record's strings instead of copying them (~10 `String`s per
/// record on the usage writer): the same fields in the same order, so the same bytes.
#[derive(Serialize)]
struct StoredRecordV2Ref<'a> {
    v: u8,
    t: i64,
    frontend: &'a str,
    endpoint: &'a str,
    provider: &'a str,
    model: &'a str,
    model_requested: &'a str,
    tags: &'a [String],
    client_ip: Option<&'a str>,
    client_host: Option<&'a str>,
    user_agent: Option<&'a str>,
    stream: bool,
    status: u16,
    error: Option<&'a str>,
    complete: bool,
    latency_ms: u64,
    ttft_ms: Option<u64>,
    input: u64,
    output: u64,
    reasoning: u64,
    cached_input: u64,
    cache_read: u64,
    cache_write: u64,
    cost_pico: Option<u64>,
    cost_source: &'a str,
    tokens_estimated: bool,
}

/// Encode a record (as a [`StoredRecordV2`]).
pub fn encode_record(r: &UsageRecord) -> Vec<u8> {
    let s = StoredRecordV2Ref {
        v: 2,
        t: r.time_ms,
        frontend: &r.frontend,
        endpoint: &r.endpoint,
        provider: &r.provider,
        model: &r.model,
        model_requested: &r.model_requested,
        tags: &r.tags,
        client_ip: r.client_ip.as_deref(),
        client_host: r.client_host.as_deref(),
        user_agent: r.user_agent.as_deref(),
        stream: r.stream,
        status: r.status,
        error: r.error.as_deref(),
        complete: r.complete,
        latency_ms: r.latency_ms,
        ttft_ms: r.ttft_ms,
        input: r.input_tokens,
        output: r.output_tokens,
        reasoning: r.reasoning_tokens,
        cached_input: r.cached_input_tokens,
        cache_read: r.cache_read_tokens,
        cache_write: r.cache_write_tokens,
        cost_pico: r.cost_pico_usd,
        cost_source: r.cost_source.as_str(),
        tokens_estimated: r.tokens_estimated,
    };
    serde_json::to_vec(&s).unwrap_or_default()
}

/// Decode a stored record (any known version: 2, or 1 read with `tokens_estimated` false).
///
/// The `v` field is read first, then the value is decoded as that version (2: what this build
/// writes; 1: older builds, read with `tokens_estimated` false).
///
/// Errors: not JSON with a `v`, an unknown version, or not that version's shape.
pub fn decode_record(bytes: &[u8]) -> Result<UsageRecord, StoreError> {
    #[derive(Deserialize)]
    struct Version {
        v: u8,
    }
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("usage record: {e}"));
    match serde_json::from_slice::<Version>(bytes).map_err(corrupt)?.v {
        2 => serde_json::from_slice::<StoredRecordV2>(bytes)
            .map(UsageRecord::from)
            .map_err(corrupt),
        1 => serde_json::from_slice::<StoredRecordV1>(bytes)
            .map(UsageRecord::from)
            .map_err(corrupt),
        v => Err(StoreError::Corrupt(format!(
            "usage record: unknown version {v}"
        ))),
    }
}

/// Aggregate sums as stored in the `agg_hour`/`agg_day` tables (version 1); see [`Totals`].
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StoredAggV1 {
    /// Format version: 1.
    pub v: u8,
    /// Requests.
    pub n: u64,
    /// Errors.
    pub err: u64,
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Reasoning tokens.
    pub reasoning: u64,
    /// Cached input tokens.
    pub cached_input: u64,
    /// Cache reads.
    pub cache_read: u64,
    /// Cache writes.
    pub cache_write: u64,
    /// Cost, pico-USD.
    pub cost_pico: u64,
    /// Requests with a provider-reported cost.
    pub reported: u64,
    /// Requests without a price.
    pub unpriced: u64,
    /// Latency sum, ms.
    pub latency_ms: u64,
}

impl From<&Totals> for StoredAggV1 {
    fn from(t: &Totals) -> Self {
        StoredAggV1 {
            v: 1,
            n: t.requests,
            err: t.errors,
            input: t.input_tokens,
            output: t.output_tokens,
            reasoning: t.reasoning_tokens,
            cached_input: t.cached_input_tokens,
            cache_read: t.cache_read_tokens,
            cache_write: t.cache_write_tokens,
            cost_pico: t.cost_pico_usd,
            reported: t.reported_cost_requests,
            unpriced: t.unpriced_requests,
            latency_ms: t.latency_ms_sum,
        }
    }
}

impl From<StoredAggV1> for Totals {
    fn from(s: StoredAggV1) -> Self {
        Totals {
            requests: s.n,
            errors: s.err,
            input_tokens: s.input,
            output_tokens: s.output,
            reasoning_tokens: s.reasoning,
            cached_input_tokens: s.cached_input,
            cache_read_tokens: s.cache_read,
            cache_write_tokens: s.cache_write,
            cost_pico_usd: s.cost_pico,
            reported_cost_requests: s.reported,
            unpriced_requests: s.unpriced,
            latency_ms_sum: s.latency_ms,
        }
    }
}

/// The totals one record contributes.
pub fn totals_of(r: &UsageRecord) -> Totals {
    Totals {
        requests: 1,
        errors: u64::from(r.is_error()),
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        reasoning_tokens: r.reasoning_tokens,
        cached_input_tokens: r.cached_input_tokens,
        cache_read_tokens: r.cache_read_tokens,
        cache_write_tokens: r.cache_write_tokens,
        cost_pico_usd: r.cost_pico_usd.unwrap_or(0),
        reported_cost_requests: u64::from(r.cost_source == CostSource::Reported),
        unpriced_requests: u64::from(r.cost_pico_usd.is_none()),
        latency_ms_sum: r.latency_ms,
    }
}

/// Encode aggregate sums.
pub fn encode_agg(t: &Totals) -> Vec<u8> {
    serde_json::to_vec(&StoredAggV1::from(t)).unwrap_or_default()
}

/// Decode aggregate sums.
///
/// Errors: not a known aggregate format.
pub fn decode_agg(bytes: &[u8]) -> Result<Totals, StoreError> {
    serde_json::from_slice::<StoredAggV1>(bytes)
        .map(Totals::from)
        .map_err(|e| StoreError::Corrupt(format!("usage aggregate: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The borrowed encoding writes exactly the bytes of the owned `StoredRecordV2`, and they
    /// decode back to the record.
    #[test]
    fn encode_record_is_stored_record_v2() {
        let r = UsageRecord {
            time_ms: 1_700_000_000_123,
            frontend: "x-api".into(),
            endpoint: "/v1/chat/completions".into(),
            provider: "p".into(),
            model: "m".into(),
            model_requested: "m \"q\"".into(),
            tags: vec!["a".into(), "b\u{e9}".into()],
            client_ip: Some("127.0.0.1".into()),
            client_host: None,
            user_agent: Some("ua/1".into()),
            stream: true,
            status: 502,
            error: Some("upstream_status".into()),
            complete: false,
            latency_ms: 12,
            ttft_ms: Some(3),
            input_tokens: 1,
            output_tokens: 2,
            reasoning_tokens: 3,
            cached_input_tokens: 4,
            cache_read_tokens: 5,
            cache_write_tokens: 6,
            cost_pico_usd: Some(7),
            cost_source: CostSource::default(),
            tokens_estimated: true,
        };
        let bytes = encode_record(&r);
        let owned = serde_json::to_vec(&StoredRecordV2::from(&r)).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            String::from_utf8_lossy(&owned)
        );
        assert!(bytes.starts_with(b"{\"v\":2,"));
        assert_eq!(decode_record(&bytes).ok(), Some(r.clone()));
        let r = UsageRecord {
            tokens_estimated: false,
            ..r
        };
        assert_eq!(decode_record(&encode_record(&r)).ok(), Some(r));
    }

    /// A value a version-1 build wrote (verbatim) still decodes, with `tokens_estimated` false.
    #[test]
    fn existing_v1_value_decodes_as_not_estimated() {
        let v1 = br#"{"v":1,"t":1700000000123,"frontend":"openai-api","endpoint":"/v1/chat/completions","provider":"p","model":"m","model_requested":"m","tags":["a"],"client_ip":"127.0.0.1","client_host":null,"user_agent":"ua/1","stream":true,"status":200,"error":"client_disconnected","complete":false,"latency_ms":12,"ttft_ms":3,"input":10,"output":2,"reasoning":0,"cached_input":0,"cache_read":0,"cache_write":0,"cost_pico":7,"cost_source":"estimated"}"#;
        let r = decode_record(v1).unwrap_or_default();
        assert_eq!(
            (r.time_ms, r.input_tokens, r.output_tokens, r.cost_pico_usd),
            (1_700_000_000_123, 10, 2, Some(7))
        );
        assert_eq!(r.error.as_deref(), Some("client_disconnected"));
        assert_eq!(r.cost_source, CostSource::Estimated);
        assert!(!r.tokens_estimated);
    }

    /// A version this build does not know is an error, not a guess.
    #[test]
    fn unknown_record_version_is_corrupt() {
        let mut v3 = String::from_utf8_lossy(&encode_record(&UsageRecord::default())).into_owned();
        v3 = v3.replacen("{\"v\":2,", "{\"v\":3,", 1);
        assert!(decode_record(v3.as_bytes()).is_err());
        assert!(decode_record(b"{\"v\":1}").is_err());
    }
}
