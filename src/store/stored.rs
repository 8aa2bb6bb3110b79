//! The stored (on-disk) forms of usage data, versioned: a new field means a new version number
//! `v`, and older versions keep decoding (a field a version lacks is read with its default),
//! never a silent change of an existing one. The one exception is an optional count that is
//! left out when zero and read as zero when absent (`cache_write_1h`): values without it are
//! byte-for-byte what the version wrote, and older builds of the same version ignore it when
//! present (only unknown versions are errors), so it needs no new version.
//!
//! Encoding: JSON (serde) with a leading `v` version number, so old values stay readable by a
//! newer build.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::usage::cost::CostSource;
use crate::usage::query::Totals;
use crate::usage::record::UsageRecord;

/// A usage record as stored in the `requests` table. Version 2, what this build writes; version 1
/// is the same without `tokens_estimated` (read as `false`: its counts were all the upstream's).
/// Written from borrowed strings ([`encode_record`]: no copy of ~10 `String`s per record on the
/// usage writer), read into owned ones.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredRecord<'a> {
    /// Format version: 2 (1 for older values).
    pub v: u8,
    /// Arrival, Unix ms.
    pub t: i64,
    /// Client API.
    pub frontend: Cow<'a, str>,
    /// Path.
    pub endpoint: Cow<'a, str>,
    /// Provider.
    pub provider: Cow<'a, str>,
    /// Resolved model id.
    pub model: Cow<'a, str>,
    /// Model as asked.
    pub model_requested: Cow<'a, str>,
    /// Tags.
    pub tags: Cow<'a, [String]>,
    /// Client IP.
    pub client_ip: Option<Cow<'a, str>>,
    /// Client host name.
    pub client_host: Option<Cow<'a, str>>,
    /// User-Agent.
    pub user_agent: Option<Cow<'a, str>>,
    /// Stream flag.
    pub stream: bool,
    /// HTTP status.
    pub status: u16,
    /// Error kind.
    pub error: Option<Cow<'a, str>>,
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
    /// The 1-hour part of `cache_write` (see [`UsageRecord::cache_write_1h_tokens`]); written
    /// only when not zero, absent reads as 0 (values of every version without it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_1h: u64,
    /// Cost, pico-USD (`None`: unpriced).
    pub cost_pico: Option<u64>,
    /// `reported` | `estimated` | `unpriced`.
    pub cost_source: Cow<'a, str>,
    /// Input or output tokens are llm-relay's estimate (see [`UsageRecord::tokens_estimated`]);
    /// version 2 on.
    #[serde(default)]
    pub tokens_estimated: bool,
}

/// Whether a count is zero (optional stored counts are left out then).
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The version [`encode_record`] writes.
pub const RECORD_VERSION: u8 = 2;

impl From<StoredRecord<'_>> for UsageRecord {
    fn from(s: StoredRecord<'_>) -> Self {
        UsageRecord {
            time_ms: s.t,
            frontend: s.frontend.into_owned().into(),
            endpoint: s.endpoint.into_owned().into(),
            provider: s.provider.into_owned().into(),
            model: s.model.into_owned().into(),
            model_requested: s.model_requested.into_owned(),
            tags: s.tags.into_owned(),
            client_ip: s.client_ip.map(Cow::into_owned),
            client_host: s.client_host.map(Cow::into_owned),
            user_agent: s.user_agent.map(Cow::into_owned),
            stream: s.stream,
            status: s.status,
            error: s.error.map(|e| e.into_owned().into()),
            complete: s.complete,
            latency_ms: s.latency_ms,
            ttft_ms: s.ttft_ms,
            input_tokens: s.input,
            output_tokens: s.output,
            reasoning_tokens: s.reasoning,
            cached_input_tokens: s.cached_input,
            cache_read_tokens: s.cache_read,
            cache_write_tokens: s.cache_write,
            cache_write_1h_tokens: s.cache_write_1h,
            cost_pico_usd: s.cost_pico,
            cost_source: CostSource::parse(&s.cost_source).unwrap_or_default(),
            tokens_estimated: s.tokens_estimated,
        }
    }
}

/// Encode a record (a [`StoredRecord`] of version [`RECORD_VERSION`], borrowing its strings).
pub fn encode_record(r: &UsageRecord) -> Vec<u8> {
    let s = StoredRecord {
        v: RECORD_VERSION,
        t: r.time_ms,
        frontend: Cow::Borrowed(&r.frontend),
        endpoint: Cow::Borrowed(&r.endpoint),
        provider: Cow::Borrowed(&r.provider),
        model: Cow::Borrowed(&r.model),
        model_requested: Cow::Borrowed(&r.model_requested),
        tags: Cow::Borrowed(&r.tags),
        client_ip: r.client_ip.as_deref().map(Cow::Borrowed),
        client_host: r.client_host.as_deref().map(Cow::Borrowed),
        user_agent: r.user_agent.as_deref().map(Cow::Borrowed),
        stream: r.stream,
        status: r.status,
        error: r.error.as_deref().map(Cow::Borrowed),
        complete: r.complete,
        latency_ms: r.latency_ms,
        ttft_ms: r.ttft_ms,
        input: r.input_tokens,
        output: r.output_tokens,
        reasoning: r.reasoning_tokens,
        cached_input: r.cached_input_tokens,
        cache_read: r.cache_read_tokens,
        cache_write: r.cache_write_tokens,
        cache_write_1h: r.cache_write_1h_tokens,
        cost_pico: r.cost_pico_usd,
        cost_source: Cow::Borrowed(r.cost_source.as_str()),
        tokens_estimated: r.tokens_estimated,
    };
    serde_json::to_vec(&s).unwrap_or_default()
}

/// Decode a stored record of any known version (1 or 2).
///
/// Errors: not a [`StoredRecord`], or a version this build does not know (above
/// [`RECORD_VERSION`] or 0).
pub fn decode_record(bytes: &[u8]) -> Result<UsageRecord, StoreError> {
    let s: StoredRecord<'_> = serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("usage record: {e}")))?;
    match s.v {
        1 | RECORD_VERSION => Ok(UsageRecord::from(s)),
        v => Err(StoreError::Corrupt(format!(
            "usage record: unknown version {v}"
        ))),
    }
}

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

    /// The encoding is version 2's field names and order (pinned: existing databases hold it),
    /// and it decodes back to the record.
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
            cache_write_1h_tokens: 0,
            cost_pico_usd: Some(7),
            cost_source: CostSource::default(),
            tokens_estimated: true,
        };
        let bytes = encode_record(&r);
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            r#"{"v":2,"t":1700000000123,"frontend":"x-api","endpoint":"/v1/chat/completions","provider":"p","model":"m","model_requested":"m \"q\"","tags":["a","bé"],"client_ip":"127.0.0.1","client_host":null,"user_agent":"ua/1","stream":true,"status":502,"error":"upstream_status","complete":false,"latency_ms":12,"ttft_ms":3,"input":1,"output":2,"reasoning":3,"cached_input":4,"cache_read":5,"cache_write":6,"cost_pico":7,"cost_source":"unpriced","tokens_estimated":true}"#
        );
        assert!(bytes.starts_with(b"{\"v\":2,"));
        assert_eq!(decode_record(&bytes).ok(), Some(r.clone()));
        let r = UsageRecord {
            tokens_estimated: false,
            ..r
        };
        assert_eq!(decode_record(&encode_record(&r)).ok(), Some(r));
    }

    /// 1-hour cache writes: left out when 0 (the pinned bytes above are unchanged), written
    /// right after `cache_write` otherwise, and read back; still version 2.
    #[test]
    fn one_hour_cache_writes_are_an_optional_v2_field() {
        let r = UsageRecord {
            cache_write_tokens: 418,
            cache_write_1h_tokens: 300,
            ..UsageRecord::default()
        };
        let bytes = encode_record(&r);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("{\"v\":2,"), "{text}");
        assert!(
            text.contains("\"cache_write\":418,\"cache_write_1h\":300,\"cost_pico\""),
            "{text}"
        );
        assert_eq!(decode_record(&bytes).ok(), Some(r));
        let none = encode_record(&UsageRecord::default());
        assert!(!String::from_utf8_lossy(&none).contains("cache_write_1h"));
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
