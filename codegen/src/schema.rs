//! The input schema of the catalog: serde + schemars types for `providers.yaml` and `pricing.yaml`.
//!
//! Owns the shape of the YAML and nothing else: cross-references are checked in `validate.rs`,
//! Rust is emitted by `generate.rs`. Every struct denies unknown fields so a typo is a build error,
//! and the JSON Schema written from these types (`providers.schema.json`, `pricing.schema.json`)
//! lets editors validate the files as they are typed.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{Deserializer, Error as _, MapAccess, Visitor};

/// Deserialize a mapping, refusing a key that appears twice. YAML parsers keep one of two equal
/// keys silently (a copied entry whose key was not renamed would shadow the original); here it is
/// a build error naming the key, located where the mapping starts (the YAML parser reports custom
/// errors there).
fn unique_keys<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord + fmt::Display,
    V: Deserialize<'de>,
{
    struct Unique<K, V>(PhantomData<(K, V)>);
    impl<'de, K, V> Visitor<'de> for Unique<K, V>
    where
        K: Deserialize<'de> + Ord + fmt::Display,
        V: Deserialize<'de>,
    {
        type Value = BTreeMap<K, V>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<K>()? {
                if out.contains_key(&key) {
                    return Err(A::Error::custom(format!(
                        "duplicate key `{key}` in the mapping that starts here: each key may \
                         appear once (a second entry would silently replace the first)"
                    )));
                }
                let value = map.next_value()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique(PhantomData))
}

/// `providers.yaml`: every provider, its models, the aliases that point at them, and the quirks.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvidersFile {
    /// Upstream providers, in the order they are listed by `/api/tags` and `/v1/models`.
    pub providers: Vec<Provider>,
    /// Short names clients may use, mapped to `provider/model` (the model's `id` under that
    /// provider). Resolution is case-insensitive; an alias must not shadow a model id.
    #[serde(default, deserialize_with = "unique_keys")]
    pub aliases: BTreeMap<String, String>,
}

/// The wire dialect an upstream speaks. Each dialect is one module under `src/upstream/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WireFamily {
    /// OpenAI Chat Completions (`POST {base_url}/chat/completions`, SSE with `data: [DONE]`).
    OpenaiCompat,
    /// Anthropic Messages (`POST {base_url}/messages`).
    Anthropic,
    /// Google Gemini `generateContent` / `streamGenerateContent?alt=sse`.
    Gemini,
    /// Ollama native (`POST {base_url}/api/chat`, NDJSON).
    Ollama,
}

/// How the API key is sent upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>` (OpenAI and most compatible providers).
    Bearer,
    /// `x-api-key: <key>` (Anthropic).
    XApiKey,
    /// `x-goog-api-key: <key>` (Gemini).
    XGoogApiKey,
    /// No key (a local Ollama server).
    None,
}

/// One upstream provider.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Lower-case identifier, `[a-z0-9_]+`; used in `provider/model` names and env var names.
    pub name: String,
    /// Human-readable name for UIs.
    pub display_name: String,
    /// Wire dialect the upstream speaks.
    pub wire: WireFamily,
    /// Base URL including the API version path, without a trailing slash
    /// (e.g. `https://api.openai.com/v1`). Overridable at runtime by `<NAME>_BASE_URL`.
    pub base_url: String,
    /// How the key is sent.
    pub auth: AuthStyle,
    /// Environment variable holding the key (also read as `<VAR>_FILE`). Absent for `auth: none`.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Further variables read for the key, in order, when `api_key_env` is unset (each also as
    /// `<VAR>_FILE`), e.g. `GEMINI_API_KEY` beside `GOOGLE_API_KEY`.
    #[serde(default)]
    pub api_key_env_alternatives: Vec<String>,
    /// Extra request headers sent on every upstream call (e.g. `anthropic-version`).
    #[serde(default, deserialize_with = "unique_keys")]
    pub headers: BTreeMap<String, String>,
    /// Quirks applied to every model of this provider; a model's own quirks override field by field.
    #[serde(default)]
    pub quirks: QuirksSpec,
    /// Where the provider's response `usage` departs from OpenAI's token semantics; the upstream
    /// decoder normalises each (WIRE.md 7.7).
    #[serde(default)]
    pub usage_quirks: Vec<UsageQuirk>,
    /// The provider's models.
    pub models: Vec<Model>,
}

/// A departure from OpenAI `usage` semantics that the decoder corrects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageQuirk {
    /// `completion_tokens_details.reasoning_tokens` are not part of `completion_tokens`
    /// (`total_tokens` = prompt + completion + reasoning, xAI): the decoder adds them, so reasoning
    /// is billed as output.
    ReasoningOutsideCompletion,
}

/// Model capabilities, as Ollama's `/api/show` `capabilities` and the admin UI report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Accepts image input.
    Vision,
    /// Supports tool (function) calling.
    Tools,
    /// A reasoning model (produces reasoning tokens).
    Reasoning,
    /// An embedding model.
    Embeddings,
    /// Search-augmented answers with citations (Perplexity).
    Search,
}

/// One model served by a provider.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// The upstream model id exactly as the provider's API expects it (e.g. `gpt-4o`,
    /// `claude-sonnet-4-5-20250929`, `meta-llama/llama-4-scout-17b-16e-instruct`).
    pub id: String,
    /// Model family (e.g. `gpt-4o`, `claude`, `gemini`), shown by `/api/show` `details.family`.
    pub family: String,
    /// Context window in tokens.
    pub context_length: u32,
    /// Largest completion the model can produce, in tokens (optional).
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    /// What the model can do.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// One-line description.
    pub description: String,
    /// Model-level quirks, overriding the provider's field by field.
    #[serde(default)]
    pub quirks: QuirksSpec,
}

/// Which field carries the completion-token limit upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    /// `max_tokens` (classic chat models, most compatible providers).
    MaxTokens,
    /// `max_completion_tokens` (OpenAI reasoning models; `max_tokens` is rejected with 400).
    MaxCompletionTokens,
}

/// How system prompts are delivered upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SystemPrompt {
    /// One `system` message (several client system messages are concatenated).
    System,
    /// One `developer` message (OpenAI o-series / GPT-5).
    Developer,
    /// Prepended to the first user message (models that reject both roles, e.g. o1-mini).
    MergeIntoUser,
}

/// A request parameter a quirk can drop or rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Param {
    Temperature,
    TopP,
    TopK,
    Seed,
    Stop,
    PresencePenalty,
    FrequencyPenalty,
    ReasoningEffort,
    ResponseFormat,
    Tools,
    StreamOptions,
    User,
}

/// Quirks declared as data. Every field is optional so a model can override only what differs
/// from its provider; `generate.rs` merges provider and model into one resolved `Quirks` table.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuirksSpec {
    /// Field that carries the completion-token limit.
    #[serde(default)]
    pub max_tokens_field: Option<MaxTokensField>,
    /// Completion-token limit sent when the client gives none, for providers that require one
    /// (Anthropic). Unset means: send no limit.
    #[serde(default)]
    pub default_max_tokens: Option<u32>,
    /// How system prompts are sent.
    #[serde(default)]
    pub system_prompt: Option<SystemPrompt>,
    /// Parameters the upstream rejects and that are removed before sending.
    #[serde(default)]
    pub drop_params: Option<Vec<Param>>,
    /// Parameters sent under another JSON name (e.g. Mistral's `seed` -> `random_seed`).
    #[serde(default)]
    pub rename_params: Option<BTreeMap<Param, String>>,
}

/// `pricing.yaml`: what each model costs, as the provider bills it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PricingFile {
    /// Where the figures come from and when they were taken.
    pub source: String,
    /// Cache multipliers applied to a model's input rate when the model gives no explicit
    /// cache rate, per provider name.
    #[serde(default, deserialize_with = "unique_keys")]
    pub provider_defaults: BTreeMap<String, CacheMultipliers>,
    /// Prices keyed by `provider/model` (the model's `id` in `providers.yaml`).
    #[serde(deserialize_with = "unique_keys")]
    pub models: BTreeMap<String, Price>,
}

/// Cache rates as multiples of the input rate (Anthropic: read 0.1x, 5-minute write 1.25x,
/// 1-hour write 2x).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheMultipliers {
    /// Cache-read rate = input rate x this.
    #[serde(default)]
    pub cache_read: Option<f64>,
    /// Cache-write rate = input rate x this.
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// 1-hour cache-write rate = input rate x this (Anthropic `cache_control` `ttl: "1h"`).
    #[serde(default)]
    pub cache_write_1h: Option<f64>,
}

/// Rates in USD per 1M tokens (and USD per request for `request_fee`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// USD per 1M prompt (input) tokens.
    pub input: f64,
    /// USD per 1M completion (output) tokens, reasoning tokens included.
    pub output: f64,
    /// USD per 1M cache-read prompt tokens; default: provider multiplier, else the input rate.
    #[serde(default)]
    pub cache_read: Option<f64>,
    /// USD per 1M cache-write prompt tokens; default: provider multiplier, else the input rate.
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// USD per 1M prompt tokens written to the cache with a 1-hour lifetime (Anthropic
    /// `cache_control: {"type": "ephemeral", "ttl": "1h"}`; the usage field
    /// `cache_creation.ephemeral_1h_input_tokens`; LiteLLM
    /// `cache_creation_input_token_cost_above_1hr`); default: provider `cache_write_1h`
    /// multiplier x input, else the `cache_write` rate.
    #[serde(default)]
    pub cache_write_1h: Option<f64>,
    /// USD per request on top of tokens, whatever the request (a flat fee).
    #[serde(default)]
    pub request_fee: Option<f64>,
    /// USD per request by web-search context size (Perplexity's search fee; LiteLLM
    /// `search_context_cost_per_query`), charged on top of tokens and `request_fee`.
    #[serde(default)]
    pub search_fees: Option<SearchFees>,
    /// Higher rates that apply to the whole request once the prompt exceeds a threshold
    /// (Gemini Pro above 200k prompt tokens).
    #[serde(default)]
    pub tiers: Vec<PriceTier>,
}

/// Per-request search fee in USD for each search context size (LiteLLM
/// `search_context_cost_per_query.search_context_size_{low,medium,high}`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchFees {
    /// USD per request at `search_context_size: low` (Perplexity's default).
    pub low: f64,
    /// USD per request at `search_context_size: medium`.
    pub medium: f64,
    /// USD per request at `search_context_size: high`.
    pub high: f64,
}

/// Rates for prompts larger than `above_prompt_tokens`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceTier {
    /// Threshold in prompt tokens; the tier applies when the prompt is strictly larger.
    pub above_prompt_tokens: u64,
    /// USD per 1M prompt tokens in this tier.
    pub input: f64,
    /// USD per 1M completion tokens in this tier.
    pub output: f64,
    /// USD per 1M cache-read tokens in this tier (default: the base cache-read rule applied to
    /// this tier's input rate).
    #[serde(default)]
    pub cache_read: Option<f64>,
}
