//! Every cost rule on real pricing.yaml rows, each with its worked example (seed 002's first).
//! Upstream usage JSON goes through the real decoder, so per-provider counting (xAI reasoning
//! outside completion_tokens, provider-reported costs) is covered too.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_relay::canonical::Usage;
use llm_relay::catalog::{Pricing, resolve};
use llm_relay::upstream::openai_compat::{decode_usage as decode_with, usage_quirks};
use llm_relay::usage::cost::{CostSource, SearchContextSize, cost};
use serde_json::json;

/// Decode `usage` JSON as an OpenAI-semantics provider would send it.
fn decode_usage(v: &serde_json::Value) -> Usage {
    decode_with(v, &[])
}

fn price(model: &str) -> &'static Pricing {
    resolve(model)
        .unwrap_or_else(|| panic!("{model} not in the catalog"))
        .pricing()
}

fn usd(model: &str, u: &Usage) -> f64 {
    let c = cost(Some(price(model)), u, SearchContextSize::Low);
    assert_eq!(c.source, CostSource::Estimated);
    c.usd.unwrap()
}

fn assert_usd(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-12, "got {got}, want {want}");
}

#[test]
fn seed_002_anthropic_cache_read() {
    // claude-sonnet-4-5: $3 / $15, cache read 0.1x. Prompt = input 5,000 + cache_read 5,000.
    let u = Usage {
        prompt_tokens: 10_000,
        cache_read_tokens: 5_000,
        completion_tokens: 2_000,
        ..Usage::default()
    };
    assert_usd(usd("claude-sonnet-4-5-20250929", &u), 0.0465);
}

#[test]
fn anthropic_cache_write_at_1_25x() {
    // input_tokens 1,000 (excludes cache) + read 5,000 + write 4,000 = prompt 10,000.
    let u = Usage {
        prompt_tokens: 10_000,
        cache_read_tokens: 5_000,
        cache_write_tokens: 4_000,
        completion_tokens: 2_000,
        ..Usage::default()
    };
    // 1,000 x 3 + 5,000 x 0.3 + 4,000 x 3.75 + 2,000 x 15 = 49,500 per 1M.
    assert_usd(usd("claude-sonnet-4-5-20250929", &u), 0.0495);
}

/// `(input, cache_read, cache_write, cache_write_1h, output)` of `provider/model` read from
/// pricing.yaml itself: the model's own rates, else `provider_defaults` x input (as codegen
/// resolves them), so expected figures follow the YAML rather than repeating it.
fn yaml_rates(key: &str) -> (f64, f64, f64, f64, f64) {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pricing.yaml")).unwrap();
    let y: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let m = &y["models"][key];
    let provider = key.split('/').next().unwrap();
    let d = &y["provider_defaults"][provider];
    let input = m["input"].as_f64().unwrap();
    let rate = |k: &str| m[k].as_f64().or_else(|| d[k].as_f64().map(|x| x * input));
    let cache_write = rate("cache_write").unwrap_or(input);
    (
        input,
        rate("cache_read").unwrap_or(input),
        cache_write,
        rate("cache_write_1h").unwrap_or(cache_write),
        m["output"].as_f64().unwrap(),
    )
}

#[test]
fn anthropic_one_hour_cache_writes_at_their_own_rate() {
    let model = "claude-sonnet-4-5-20250929";
    let (input, read, write, write_1h, output) = yaml_rates("anthropic/claude-sonnet-4-5-20250929");
    // Anthropic bills 1-hour writes at 2x input: $6 per 1M for this model (LiteLLM 6e-06).
    assert_usd(write_1h, 2.0 * input);
    assert_usd(write_1h, 6.0);
    // input_tokens 1,000 + read 5,000 + write 4,000 (3,000 for 5 minutes, 1,000 for 1 hour).
    let u = Usage {
        prompt_tokens: 10_000,
        cache_read_tokens: 5_000,
        cache_write_tokens: 4_000,
        cache_write_1h_tokens: 1_000,
        completion_tokens: 2_000,
        ..Usage::default()
    };
    let want = (1_000.0 * input
        + 5_000.0 * read
        + 3_000.0 * write
        + 1_000.0 * write_1h
        + 2_000.0 * output)
        / 1e6;
    assert_usd(usd(model, &u), want);
    // 1,000 more tokens at $6 instead of $3.75: $0.00225 above the all-5-minute figure (0.0495).
    let all_5m = Usage {
        cache_write_1h_tokens: 0,
        ..u
    };
    assert_usd(
        usd(model, &u) - usd(model, &all_5m),
        1_000.0 * (write_1h - write) / 1e6,
    );
    assert!(usd(model, &u) > usd(model, &all_5m));
}

/// Every compiled model has a 1-hour rate: LiteLLM's for the generated Anthropic entries, 2x
/// input for the hand-written ones, and the ordinary cache-write rate elsewhere.
#[test]
fn one_hour_cache_write_rates_of_the_catalog() {
    let (_, _, _, generated, _) = yaml_rates("anthropic/claude-sonnet-4-6");
    assert_eq!(price("claude-sonnet-4-6").cache_write_1h, generated);
    let hand = price("claude-haiku-4-5-20251001");
    assert_eq!(hand.cache_write_1h, 2.0 * hand.input);
    let other = price("gpt-4o");
    assert_eq!(other.cache_write_1h, other.cache_write);
}

#[test]
fn openai_cached_tokens_inside_prompt() {
    // gpt-4o: $2.50 / $10, cached $1.25; OpenAI usage JSON, cached_tokens within prompt_tokens.
    let u = decode_usage(&json!({"prompt_tokens":10000,"completion_tokens":2000,
        "prompt_tokens_details":{"cached_tokens":5000}}));
    // 5,000 x 2.5 + 5,000 x 1.25 + 2,000 x 10 = 38,750 per 1M.
    assert_usd(usd("gpt-4o", &u), 0.03875);
}

#[test]
fn deepseek_cache_hits_and_reasoning_as_output() {
    // deepseek-reasoner: $0.28 / $0.42, cache hit $0.028 (WIRE.md 6.3 example usage).
    let u = decode_usage(
        &json!({"prompt_tokens":339,"completion_tokens":83,"total_tokens":422,
        "prompt_tokens_details":{"cached_tokens":320},"completion_tokens_details":{"reasoning_tokens":39},
        "prompt_cache_hit_tokens":320,"prompt_cache_miss_tokens":19}),
    );
    assert_usd(
        usd("deepseek-reasoner", &u),
        (19.0 * 0.28 + 320.0 * 0.028 + 83.0 * 0.42) / 1e6,
    );
}

#[test]
fn openai_reasoning_billed_as_output() {
    // o3-mini: $1.10 / $4.40; reasoning 2,500 of 3,000 completion tokens.
    let u = decode_usage(&json!({"prompt_tokens":1000,"completion_tokens":3000,
        "completion_tokens_details":{"reasoning_tokens":2500}}));
    assert_usd(usd("o3-mini", &u), 0.0143);
}

#[test]
fn xai_reasoning_outside_completion_and_ticks() {
    // Recorded grok-3-mini usage: completion 1 + reasoning 228 (outside), cached 2 of 12.
    let raw = json!({"prompt_tokens":12,"completion_tokens":1,"total_tokens":241,
        "prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":228},
        "cost_in_usd_ticks":1176500});
    // providers.yaml declares xAI's usage_quirks: reasoning_outside_completion.
    let u = decode_with(&raw, usage_quirks("xai"));
    assert_eq!(u.completion_tokens, 229);
    // The reported cost wins ...
    let c = cost(Some(price("grok-3-mini")), &u, SearchContextSize::Low);
    assert_eq!(c.source, CostSource::Reported);
    assert_usd(c.usd.unwrap(), 0.000_117_65);
    // ... and the estimate from the normalised counts agrees with it: $0.30 / $0.50, cached $0.075.
    let est = Usage {
        reported_cost_usd: None,
        ..u
    };
    assert_usd(usd("grok-3-mini", &est), 0.000_117_65);
}

#[test]
fn gemini_thoughts_and_tier_above_200k() {
    // gemini-2.5-pro: $1.25 / $10 up to 200k prompt tokens, $2.50 / $15 above.
    // Gemini completion = candidates + thoughts (normalised by its decoder).
    let at = |prompt| Usage {
        prompt_tokens: prompt,
        completion_tokens: 400 + 600,
        reasoning_tokens: 600,
        ..Usage::default()
    };
    assert_usd(usd("gemini-2.5-pro", &at(200_000)), 0.26);
    assert_usd(usd("gemini-2.5-pro", &at(250_000)), 0.64);
}

#[test]
fn perplexity_search_fee_by_context_size() {
    // sonar: $1 / $1 per 1M plus $0.005 / $0.008 / $0.012 per request (low / medium / high).
    let u = Usage {
        prompt_tokens: 10,
        completion_tokens: 251,
        ..Usage::default()
    };
    let at = |s| cost(Some(price("sonar")), &u, s).usd.unwrap();
    assert_usd(at(SearchContextSize::Low), 0.005261);
    assert_usd(at(SearchContextSize::Medium), 0.008261);
    assert_usd(at(SearchContextSize::High), 0.012261);
    // Perplexity's own total wins when the response carries it.
    let r = decode_usage(&json!({"prompt_tokens":10,"completion_tokens":251,
        "cost":{"request_cost":0.006,"total_cost":0.006261}}));
    let c = cost(Some(price("sonar")), &r, SearchContextSize::Low);
    assert_eq!((c.usd, c.source), (Some(0.006261), CostSource::Reported));
}

#[test]
fn openrouter_reported_cost_wins() {
    let u = decode_usage(&json!({"prompt_tokens":194,"completion_tokens":2,"cost":0.95}));
    let c = cost(
        Some(price("openrouter/anthropic/claude-sonnet-4.5")),
        &u,
        SearchContextSize::Low,
    );
    assert_eq!((c.usd, c.source), (Some(0.95), CostSource::Reported));
}

#[test]
fn unpriced_model_costs_null_not_zero() {
    let u = Usage {
        prompt_tokens: 100,
        completion_tokens: 100,
        ..Usage::default()
    };
    let c = cost(None, &u, SearchContextSize::Low);
    assert_eq!(
        (c.usd, c.source, c.pico_usd()),
        (None, CostSource::Unpriced, None)
    );
}

#[test]
fn no_tokens_no_request_fees() {
    // A request the provider never processed (upstream error before any token, provider not
    // configured, an Ollama load request that is never sent) consumed nothing: Perplexity's
    // per-request search fee is not charged for it.
    let c = cost(
        Some(price("sonar")),
        &Usage::default(),
        SearchContextSize::Low,
    );
    assert_eq!((c.usd, c.source), (Some(0.0), CostSource::Estimated));
    // One token is a processed request: the fee applies.
    let one = Usage {
        prompt_tokens: 1,
        ..Usage::default()
    };
    assert_usd(usd("sonar", &one), 0.005 + 1e-6);
}
