//! Usage queries: filters, totals, time series, breakdowns and recent requests, answered from the
//! hourly/daily aggregates (never a scan of raw records, except `recent`), plus the text table the
//! `llm-relay usage` command prints.
//!
//! Owns the query shapes and their rendering; the storage that answers them implements
//! [`crate::store::UsageQuery`].

use super::cost::pico_to_usd;

/// One hour, ms.
pub const HOUR_MS: i64 = 3_600_000;
/// One day (UTC), ms.
pub const DAY_MS: i64 = 86_400_000;

/// Which requests a query covers. Times are Unix ms, `since` inclusive, `until` exclusive; the
/// aggregate-based queries work at hour resolution (a bound inside an hour includes that hour).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// From (inclusive), Unix ms.
    pub since_ms: Option<i64>,
    /// To (exclusive), Unix ms.
    pub until_ms: Option<i64>,
    /// Only requests carrying this tag.
    pub tag: Option<String>,
    /// Only this provider.
    pub provider: Option<String>,
    /// Only this (resolved) model id.
    pub model: Option<String>,
    /// Only this client IP.
    pub client: Option<String>,
}

/// Time-series bucket size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// One bucket per UTC hour.
    Hour,
    /// One bucket per UTC day.
    Day,
}

impl Granularity {
    /// Bucket length, ms.
    pub fn ms(self) -> i64 {
        match self {
            Granularity::Hour => HOUR_MS,
            Granularity::Day => DAY_MS,
        }
    }
}

/// What a breakdown groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// Each tag (a request with two tags counts in both rows).
    Tag,
    /// Provider.
    Provider,
    /// Resolved model id.
    Model,
    /// Client IP.
    Client,
}

impl Dimension {
    /// Parse `tag|provider|model|client`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tag" => Some(Dimension::Tag),
            "provider" => Some(Dimension::Provider),
            "model" => Some(Dimension::Model),
            "client" => Some(Dimension::Client),
            _ => None,
        }
    }
}

/// Sums over a set of requests. Tokens in tokens, cost in pico-USD (exact sums), latency in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Requests.
    pub requests: u64,
    /// Requests that failed (status >= 400 or an error kind).
    pub errors: u64,
    /// Prompt tokens (cached included).
    pub input_tokens: u64,
    /// Completion tokens (reasoning included).
    pub output_tokens: u64,
    /// Reasoning tokens.
    pub reasoning_tokens: u64,
    /// Cache hits counted inside the prompt.
    pub cached_input_tokens: u64,
    /// Separately billed cache reads.
    pub cache_read_tokens: u64,
    /// Cache writes.
    pub cache_write_tokens: u64,
    /// Sum of the priced requests' costs, pico-USD.
    pub cost_pico_usd: u64,
    /// Requests whose cost the provider reported.
    pub reported_cost_requests: u64,
    /// Requests without a price (their cost is unknown, not in `cost_pico_usd`).
    pub unpriced_requests: u64,
    /// Sum of latencies, ms (mean = this / requests).
    pub latency_ms_sum: u64,
}

impl Totals {
    /// Add `other` into `self`.
    pub fn add(&mut self, o: &Totals) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
        self.cached_input_tokens += o.cached_input_tokens;
        self.cache_read_tokens += o.cache_read_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.cost_pico_usd += o.cost_pico_usd;
        self.reported_cost_requests += o.reported_cost_requests;
        self.unpriced_requests += o.unpriced_requests;
        self.latency_ms_sum += o.latency_ms_sum;
    }
    /// Total cost, USD (priced requests only).
    pub fn cost_usd(&self) -> f64 {
        pico_to_usd(self.cost_pico_usd)
    }
    /// Mean latency, ms.
    pub fn mean_latency_ms(&self) -> u64 {
        self.latency_ms_sum.checked_div(self.requests).unwrap_or(0)
    }
}

/// A breakdown row or time-series point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Group name (tag, provider, model, client), or bucket start as RFC 3339 for series.
    pub key: String,
    /// Its sums.
    pub totals: Totals,
}

/// Parse a time bound to Unix ms: RFC 3339 (`2026-11-01T00:00:00Z`), a date (`2026-11-01`,
/// UTC midnight) or an age back from `now_ms` (`24h`, `7d`). Used by `llm-relay usage --since`
/// and the admin usage endpoints.
///
/// Errors: anything else, or an age reaching back before 1970 (message names the value).
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    for (suffix, unit_ms) in [('h', 3_600_000i64), ('d', 86_400_000)] {
        // An age: a whole number of hours or days, not negative, back no further than 1970.
        if let Some(n) = s
            .strip_suffix(suffix)
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            return n
                .parse::<i64>()
                .ok()
                .and_then(|n| n.checked_mul(unit_ms))
                .map(|back| now_ms - back)
                .filter(|t| *t >= 0)
                .ok_or_else(|| format!("{s:?} reaches back before 1970"));
        }
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    if let Ok(t) = time::OffsetDateTime::parse(&format!("{s}T00:00:00Z"), &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339, YYYY-MM-DD or an age like 24h / 7d"
    ))
}

/// How a row without a value (no provider/model: the request never reached one; no client IP)
/// is named in the table.
const NO_VALUE: &str = "(none)";

/// Render rows as an aligned text table (the `llm-relay usage` output), with a total line.
pub fn render_table(heading: &str, rows: &[Row], total: &Totals) -> String {
    let name = |key: &str| -> String {
        if key.is_empty() {
            NO_VALUE.to_string()
        } else {
            key.to_string()
        }
    };
    let width = rows
        .iter()
        .map(|r| name(&r.key).chars().count())
        .chain([heading.len(), 5])
        .max()
        .unwrap_or(5);
    let mut out = format!(
        "{heading:<width$}  {:>9}  {:>6}  {:>12}  {:>12}  {:>10}  {:>10}  {:>11}  {:>12}\n",
        "requests", "errors", "input", "output", "reasoning", "cached", "cache_write", "cost_usd"
    );
    let line = |key: &str, t: &Totals| {
        let cost = if t.requests > 0 && t.unpriced_requests == t.requests {
            // Nothing in this row has a price: its cost is unknown, not 0.
            "-".to_string()
        } else if t.unpriced_requests > 0 {
            format!("{:.6}*", t.cost_usd())
        } else {
            format!("{:.6}", t.cost_usd())
        };
        format!(
            "{key:<width$}  {:>9}  {:>6}  {:>12}  {:>12}  {:>10}  {:>10}  {:>11}  {:>12}\n",
            t.requests,
            t.errors,
            t.input_tokens,
            t.output_tokens,
            t.reasoning_tokens,
            t.cached_input_tokens + t.cache_read_tokens,
            t.cache_write_tokens,
            cost
        )
    };
    for r in rows {
        out.push_str(&line(&name(&r.key), &r.totals));
    }
    out.push_str(&line("TOTAL", total));
    if total.unpriced_requests > 0 {
        out.push_str(&format!(
            "* {} request(s) have no price; their cost is unknown and not included (- : none priced)\n",
            total.unpriced_requests
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_without_a_value_are_named_in_the_table() {
        // Requests that never reached a provider (unknown model, bad request) have no provider
        // or model: their row must not be a blank key.
        let t = Totals {
            requests: 1,
            errors: 1,
            ..Totals::default()
        };
        let out = render_table(
            "provider",
            &[Row {
                key: String::new(),
                totals: t,
            }],
            &t,
        );
        let row = out.lines().nth(1).unwrap_or_default();
        assert!(row.starts_with("(none)"), "{out}");
    }

    #[test]
    fn unpriced_rows_show_no_cost_and_cache_writes_have_a_column() {
        let unpriced = Totals {
            requests: 2,
            unpriced_requests: 2,
            ..Totals::default()
        };
        let priced = Totals {
            requests: 1,
            cache_write_tokens: 418,
            cost_pico_usd: 1_500_000,
            ..Totals::default()
        };
        let mut total = unpriced;
        total.add(&priced);
        let rows = [
            Row {
                key: "gpu".into(),
                totals: unpriced,
            },
            Row {
                key: "cloud".into(),
                totals: priced,
            },
        ];
        let out = render_table("provider", &rows, &total);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].contains("cache_write"), "{out}");
        assert!(
            lines[1].ends_with(" -"),
            "all unpriced: unknown, not 0: {out}"
        );
        assert!(
            lines[2].contains(" 418 ") && lines[2].ends_with(" 0.000002"),
            "{out}"
        );
        assert!(
            lines[3].ends_with(" 0.000002*"),
            "partly unpriced total: {out}"
        );
    }
}
