//! The cost engine: USD for one request from its normalised token classes ([`Usage`]) and the
//! model's [`Pricing`] (pricing.yaml, compiled).
//!
//! Owns the billing rules; does not own how each provider counts tokens (the upstream decoders
//! normalise that into [`Usage`]: cache reads/writes inside `prompt_tokens`, reasoning inside
//! `completion_tokens`, WIRE.md 7.7) nor where the figure is stored.
//!
//! Rules, in order:
//! 1. A cost the provider reported (OpenRouter `usage.cost`, Perplexity `usage.cost.total_cost`,
//!    xAI `cost_in_usd_ticks`) wins over any estimate.
//! 2. A model without a price has cost `None` ("unpriced"), never 0.
//! 3. Otherwise: uncached prompt x input rate + cache reads x cache-read rate + cache writes x
//!    cache-write rate (the 1-hour part of them, Anthropic `ttl: "1h"`, x the 1-hour
//!    cache-write rate instead) + completion (reasoning included) x output rate, per 1M tokens; the rates
//!    of the highest tier whose threshold the prompt exceeds replace the base rates (Gemini above
//!    200k prompt tokens); plus the flat request fee and the search fee for the search context
//!    size (Perplexity), charged only when the request consumed tokens (a request the provider
//!    never processed, failed before its first token, or never sent costs 0).

use crate::canonical::Usage;
use crate::catalog::Pricing;

/// Tokens per pricing unit: pricing.yaml rates are USD per 1M tokens.
const TOKENS_PER_RATE_UNIT: f64 = 1_000_000.0;

/// Pico-USD per USD: stored costs are integers of 1e-12 USD, so sums are exact and aggregates
/// always equal the sum of per-request costs (max ~18 million USD per u64 sum).
pub const PICO_PER_USD: f64 = 1e12;

/// How much web-search context a search model retrieves (Perplexity `web_search_options.
/// search_context_size`). The default is `Low`, Perplexity's documented default
/// (docs.perplexity.ai/guides/search-context-size-guide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchContextSize {
    /// `low` (default).
    #[default]
    Low,
    /// `medium`.
    Medium,
    /// `high`.
    High,
}

impl SearchContextSize {
    /// Parse `low|medium|high` (case-insensitive); anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            _ => None,
        }
    }
}

/// Where a cost figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CostSource {
    /// The provider computed it and said so in the response.
    Reported,
    /// Computed here from token counts and pricing.yaml.
    Estimated,
    /// No price is known for the model: the cost is unknown (null), not zero.
    #[default]
    Unpriced,
}

impl CostSource {
    /// Stable lower-case name (`reported`, `estimated`, `unpriced`), as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            CostSource::Reported => "reported",
            CostSource::Estimated => "estimated",
            CostSource::Unpriced => "unpriced",
        }
    }
    /// Inverse of [`CostSource::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reported" => Some(CostSource::Reported),
            "estimated" => Some(CostSource::Estimated),
            "unpriced" => Some(CostSource::Unpriced),
            _ => None,
        }
    }
}

/// The cost of one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// USD; `None` when unpriced.
    pub usd: Option<f64>,
    /// Where the figure comes from.
    pub source: CostSource,
}

impl Cost {
    /// The cost in pico-USD (1e-12 USD, rounded), as stored; `None` when unpriced.
    pub fn pico_usd(&self) -> Option<u64> {
        self.usd.map(usd_to_pico)
    }
}

/// USD to pico-USD, rounded; negative or non-finite amounts count as 0.
pub fn usd_to_pico(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * PICO_PER_USD).round() as u64
    } else {
        0
    }
}

/// Pico-USD to USD.
pub fn pico_to_usd(pico: u64) -> f64 {
    pico as f64 / PICO_PER_USD
}

/// The cost of a request with `usage` on a model priced `pricing` (`None`: unpriced), at web-search
/// context `search` (only models with search fees care).
pub fn cost(pricing: Option<&Pricing>, usage: &Usage, search: SearchContextSize) -> Cost {
    if let Some(usd) = usage
        .reported_cost_usd
        .filter(|c| c.is_finite() && *c >= 0.0)
    {
        return Cost {
            usd: Some(usd),
            source: CostSource::Reported,
        };
    }
    match pricing {
        None => Cost {
            usd: None,
            source: CostSource::Unpriced,
        },
        Some(p) => Cost {
            usd: Some(estimate(p, usage, search)),
            source: CostSource::Estimated,
        },
    }
}

/// Per-1M-token rates in effect for one request (base or tier).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rates {
    input: f64,
    output: f64,
    cache_read: f64,
    cache_write: f64,
    cache_write_1h: f64,
}

impl Rates {
    /// The base rates, replaced by the highest tier whose threshold `prompt_tokens` exceeds.
    /// Tiers carry no cache-write rates: they scale with the tier's input rate (the base
    /// write/input ratios, e.g. Anthropic's 1.25x and 2x).
    fn for_prompt(p: &Pricing, prompt_tokens: u64) -> Self {
        let base = Rates {
            input: p.input,
            output: p.output,
            cache_read: p.cache_read,
            cache_write: p.cache_write,
            cache_write_1h: p.cache_write_1h,
        };
        match p
            .tiers
            .iter()
            .rev()
            .find(|t| prompt_tokens > t.above_prompt_tokens)
        {
            None => base,
            Some(t) => {
                let scale = |rate: f64| {
                    if p.input > 0.0 {
                        rate * t.input / p.input
                    } else {
                        rate
                    }
                };
                Rates {
                    input: t.input,
                    output: t.output,
                    cache_read: t.cache_read,
                    cache_write: scale(p.cache_write),
                    cache_write_1h: scale(p.cache_write_1h),
                }
            }
        }
    }
}

/// Estimate from pricing.yaml (rule 3 above), USD.
pub fn estimate(p: &Pricing, u: &Usage, search: SearchContextSize) -> f64 {
    if u.prompt_tokens == 0 && u.completion_tokens == 0 && u.reasoning_tokens == 0 {
        // Nothing processed: no per-request fees either.
        return 0.0;
    }
    let r = Rates::for_prompt(p, u.prompt_tokens);
    // Cache classes are inside the prompt; clamp so inconsistent counts never go negative.
    let cache_read = u.cache_read_tokens.min(u.prompt_tokens);
    let cache_write = u.cache_write_tokens.min(u.prompt_tokens - cache_read);
    let cache_write_1h = u.cache_write_1h_tokens.min(cache_write);
    let uncached = u.prompt_tokens - cache_read - cache_write;
    // Reasoning is billed as output and is inside the completion count.
    let output = u.completion_tokens.max(u.reasoning_tokens);
    let tokens = uncached as f64 * r.input
        + cache_read as f64 * r.cache_read
        + (cache_write - cache_write_1h) as f64 * r.cache_write
        + cache_write_1h as f64 * r.cache_write_1h
        + output as f64 * r.output;
    let search_fee = match search {
        SearchContextSize::Low => p.search_fees.low,
        SearchContextSize::Medium => p.search_fees.medium,
        SearchContextSize::High => p.search_fees.high,
    };
    tokens / TOKENS_PER_RATE_UNIT + p.request_fee + search_fee
}

#[cfg(test)]
mod tests {
    //! Each rule with a hand-built price (catalog entries are exercised in tests/usage_cost.rs).
    use super::*;
    use crate::catalog::{PriceTier, SearchFees};

    const NO_FEES: SearchFees = SearchFees {
        low: 0.0,
        medium: 0.0,
        high: 0.0,
    };

    fn price(input: f64, output: f64, cache_read: f64, cache_write: f64) -> Pricing {
        Pricing {
            input,
            output,
            cache_read,
            cache_write,
            cache_write_1h: cache_write,
            request_fee: 0.0,
            search_fees: NO_FEES,
            tiers: &[],
        }
    }

    fn usage(prompt: u64, completion: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            ..Usage::default()
        }
    }

    fn usd(p: &Pricing, u: &Usage) -> f64 {
        cost(Some(p), u, SearchContextSize::Low)
            .usd
            .unwrap_or(f64::NAN)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn seed_002_worked_example() {
        // 10,000 input of which 5,000 cached + 2,000 output at $3/$15, cache reads 0.1x.
        let p = price(3.0, 15.0, 0.3, 3.75);
        let u = Usage {
            cache_read_tokens: 5_000,
            ..usage(10_000, 2_000)
        };
        assert!(close(usd(&p, &u), 0.0465), "{}", usd(&p, &u));
    }

    #[test]
    fn cache_write_is_billed_at_its_own_rate() {
        // prompt = 1,000 input + 5,000 read + 4,000 written (Anthropic input_tokens excludes both).
        let p = price(3.0, 15.0, 0.3, 3.75);
        let u = Usage {
            cache_read_tokens: 5_000,
            cache_write_tokens: 4_000,
            ..usage(10_000, 2_000)
        };
        // 1,000x3 + 5,000x0.3 + 4,000x3.75 + 2,000x15 = 49,500 per 1M.
        assert!(close(usd(&p, &u), 0.0495));
    }

    #[test]
    fn one_hour_cache_writes_are_billed_at_their_own_rate() {
        // Anthropic-style rates: 5-minute writes 1.25x input, 1-hour writes 2x.
        let p = Pricing {
            cache_write_1h: 6.0,
            ..price(3.0, 15.0, 0.3, 3.75)
        };
        let u = Usage {
            cache_read_tokens: 5_000,
            cache_write_tokens: 4_000,
            cache_write_1h_tokens: 1_000,
            ..usage(10_000, 2_000)
        };
        // 1,000x3 + 5,000x0.3 + 3,000x3.75 + 1,000x6 + 2,000x15 = 51,750 per 1M.
        assert!(close(usd(&p, &u), 0.05175), "{}", usd(&p, &u));
        // More 1-hour tokens than writes (an inconsistent upstream): clamped to the writes.
        let all_1h = Usage {
            cache_write_1h_tokens: 9_000,
            ..u
        };
        assert!(close(usd(&p, &all_1h), 0.0585), "{}", usd(&p, &all_1h));
    }

    #[test]
    fn tier_scales_one_hour_cache_writes_with_its_input_rate() {
        static TIERS: [PriceTier; 1] = [PriceTier {
            above_prompt_tokens: 100,
            input: 0.5,
            output: 2.5,
            cache_read: 0.05,
        }];
        let p = Pricing {
            cache_write_1h: 0.2,
            tiers: &TIERS,
            ..price(0.1, 0.5, 0.01, 0.125)
        };
        let u = Usage {
            cache_write_tokens: 1_000,
            cache_write_1h_tokens: 1_000,
            ..usage(1_000, 0)
        };
        // Tier input 5x base: 1-hour writes at 0.2 x 5 = 1.0 per 1M.
        assert!(close(usd(&p, &u), 0.001), "{}", usd(&p, &u));
    }

    #[test]
    fn reasoning_is_output() {
        let p = price(1.1, 4.4, 0.55, 1.1);
        let u = Usage {
            reasoning_tokens: 2_500,
            ..usage(1_000, 3_000)
        };
        assert!(close(usd(&p, &u), 0.0143));
    }

    #[test]
    fn tier_rates_replace_base_rates_above_the_threshold() {
        static TIERS: [PriceTier; 1] = [PriceTier {
            above_prompt_tokens: 200_000,
            input: 2.5,
            output: 15.0,
            cache_read: 0.25,
        }];
        let p = Pricing {
            tiers: &TIERS,
            ..price(1.25, 10.0, 0.125, 1.25)
        };
        assert!(close(usd(&p, &usage(200_000, 1_000)), 0.26));
        assert!(close(usd(&p, &usage(250_000, 1_000)), 0.64));
    }

    #[test]
    fn search_fee_by_context_size() {
        let p = Pricing {
            search_fees: SearchFees {
                low: 0.005,
                medium: 0.008,
                high: 0.012,
            },
            ..price(1.0, 1.0, 1.0, 1.0)
        };
        let u = usage(10, 251);
        let at = |s| cost(Some(&p), &u, s).usd.unwrap_or(f64::NAN);
        assert!(close(at(SearchContextSize::Low), 0.005261));
        assert!(close(at(SearchContextSize::Medium), 0.008261));
        assert!(close(at(SearchContextSize::High), 0.012261));
    }

    #[test]
    fn reported_cost_wins_and_unpriced_is_null() {
        let p = price(3.0, 15.0, 0.3, 3.75);
        let u = Usage {
            reported_cost_usd: Some(0.95),
            ..usage(194, 2)
        };
        let c = cost(Some(&p), &u, SearchContextSize::Low);
        assert_eq!((c.usd, c.source), (Some(0.95), CostSource::Reported));
        let c = cost(None, &usage(10, 10), SearchContextSize::Low);
        assert_eq!(
            (c.usd, c.source, c.pico_usd()),
            (None, CostSource::Unpriced, None)
        );
        // A reported cost needs no price.
        let c = cost(None, &u, SearchContextSize::Low);
        assert_eq!(c.source, CostSource::Reported);
    }

    #[test]
    fn inconsistent_counts_never_go_negative() {
        let p = price(1.0, 1.0, 0.5, 2.0);
        let u = Usage {
            cache_read_tokens: 80,
            cache_write_tokens: 80,
            ..usage(100, 0)
        };
        // 80 read + 20 written (clamped), 0 uncached.
        assert!(close(usd(&p, &u), (80.0 * 0.5 + 20.0 * 2.0) / 1e6));
    }

    #[test]
    fn pico_usd_round_trip() {
        assert_eq!(usd_to_pico(0.0465), 46_500_000_000);
        assert!(close(pico_to_usd(46_500_000_000), 0.0465));
        assert_eq!(usd_to_pico(f64::NAN), 0);
    }
}
