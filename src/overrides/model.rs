//! The override data (what an operator changed at runtime) and its stored, versioned form.
//!
//! Owns the shapes only: [`OverrideSet`] is the whole set as it lives in memory (inside the
//! snapshot) and as the admin API edits it; [`OverrideSet::rows`] / [`OverrideSet::from_rows`]
//! turn it into the rows of the `overrides` table and back. Every row value is
//! `{"v": 1, "data": {...}}`: a changed or removed field means a new version and a conversion,
//! never a silent change of an existing one (persisted data is forever). An added optional field
//! that older builds may ignore and whose absence means "unset" (`Prices::cache_write_1h`) stays
//! in the same version: none of these structs rejects unknown fields. Never holds a secret: providers carry
//! the NAME of the environment variable with their key.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// Wire family of a custom provider (admin/API.md `family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// OpenAI Chat Completions compatible (`POST {base_url}/chat/completions`, Bearer key).
    Openai,
    /// Anthropic Messages compatible (`POST {base_url}/messages`, `x-api-key`).
    Anthropic,
    /// An Ollama server: its models are discovered like `OLLAMA_INSTANCES` entries.
    Ollama,
}

/// A provider added at runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomProvider {
    /// Lower-case id, `[a-z0-9][a-z0-9_-]{0,62}`: the provider name in logs, usage and
    /// `provider/model` spellings.
    pub id: String,
    /// Wire family.
    pub family: Family,
    /// Base URL, http(s), no trailing slash (OpenAI: with the version path, e.g. `.../v1`).
    pub base_url: String,
    /// Name of the environment variable holding the key (read at snapshot build, also as
    /// `<VAR>_FILE`); `None`: no key sent.
    pub api_key_env: Option<String>,
    /// Whether its models resolve.
    pub enabled: bool,
}

/// What a model can do (admin/API.md `capabilities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Caps {
    /// Image input.
    pub vision: bool,
    /// Tool calling.
    pub tools: bool,
    /// Reasoning tokens.
    pub reasoning: bool,
    /// Embedding model.
    pub embeddings: bool,
}

/// Prices of a custom model, USD per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Prices {
    /// Prompt tokens.
    pub input: f64,
    /// Completion tokens (reasoning included).
    pub output: f64,
    /// Cache-read prompt tokens (`None`: the input rate).
    #[serde(default)]
    pub cache_read: Option<f64>,
    /// Cache-write prompt tokens (`None`: the input rate).
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// 1-hour cache-write prompt tokens (Anthropic `ttl: "1h"`; `None`: the cache-write rate).
    /// Left out of the stored JSON when `None`, so values written before it existed are
    /// unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<f64>,
}

/// Price fields of an override, USD per 1M tokens; `None` keeps the compiled value.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PriceFields {
    /// Prompt tokens.
    pub input: Option<f64>,
    /// Completion tokens.
    pub output: Option<f64>,
    /// Cache-read prompt tokens.
    pub cache_read: Option<f64>,
    /// Cache-write prompt tokens.
    pub cache_write: Option<f64>,
    /// 1-hour cache-write prompt tokens (Anthropic `ttl: "1h"`); left out of the stored JSON
    /// when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<f64>,
}

impl PriceFields {
    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        *self == PriceFields::default()
    }

    /// `self`'s fields, each falling back to `other`'s.
    pub fn or(&self, other: &PriceFields) -> PriceFields {
        PriceFields {
            input: self.input.or(other.input),
            output: self.output.or(other.output),
            cache_read: self.cache_read.or(other.cache_read),
            cache_write: self.cache_write.or(other.cache_write),
            cache_write_1h: self.cache_write_1h.or(other.cache_write_1h),
        }
    }
}

/// A change to a compiled (providers.yaml) or discovered (Ollama) model. Every `None` keeps the
/// compiled value; discovered models only use `enabled`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelOverride {
    /// Enabled (`Some(false)`: the model answers 404 and is not listed).
    pub enabled: Option<bool>,
    /// Context window, tokens.
    pub context_length: Option<u32>,
    /// Capabilities.
    pub capabilities: Option<Caps>,
    /// One-line description.
    pub description: Option<String>,
    /// Prices the operator set by hand (win over imported ones; a pricing import keeps them).
    pub pricing: PriceFields,
    /// Prices from a pricing import (LiteLLM JSON).
    pub imported: PriceFields,
}

impl ModelOverride {
    /// Whether the override changes nothing (then it is not stored).
    pub fn is_empty(&self) -> bool {
        *self == ModelOverride::default()
    }

    /// The price fields in effect: hand-set over imported.
    pub fn prices(&self) -> PriceFields {
        self.pricing.or(&self.imported)
    }
}

/// A model added at runtime on any provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomModel {
    /// Provider id (custom or compiled).
    pub provider: String,
    /// Upstream model id, exactly as the provider expects it.
    pub id: String,
    /// Context window, tokens.
    #[serde(default)]
    pub context_length: Option<u32>,
    /// Capabilities.
    #[serde(default)]
    pub capabilities: Caps,
    /// One-line description.
    #[serde(default)]
    pub description: Option<String>,
    /// Prices (`None`: unpriced, its cost is recorded as null).
    #[serde(default)]
    pub pricing: Option<Prices>,
    /// Enabled.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// A custom alias: `alias` -> `target` (`provider/model`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomAlias {
    /// The alias as given (lookups are case-insensitive).
    pub alias: String,
    /// `provider/model`.
    pub target: String,
    /// Enabled.
    pub enabled: bool,
}

/// Everything an operator changed, as one value (cloned, edited and swapped in on each write).
/// Map keys: providers by id; models by `provider/model` (provider ids have no `/`, so the first
/// `/` splits them); aliases by lower-case alias.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OverrideSet {
    /// Custom providers.
    pub providers: BTreeMap<String, CustomProvider>,
    /// Disabled compiled providers and `OLLAMA_INSTANCES` entries, by name.
    pub disabled_providers: BTreeSet<String>,
    /// Overrides of compiled and discovered models.
    pub models: BTreeMap<String, ModelOverride>,
    /// Custom models.
    pub custom_models: BTreeMap<String, CustomModel>,
    /// Custom aliases.
    pub aliases: BTreeMap<String, CustomAlias>,
    /// Disabled compiled aliases (lower-case).
    pub disabled_aliases: BTreeSet<String>,
}

/// `provider/model`, the key of model maps.
pub fn model_key(provider: &str, model: &str) -> String {
    format!("{provider}/{model}")
}

/// Row key separator (ASCII unit separator: in no id).
const SEP: char = '\u{1f}';

/// A stored row value: `{"v": 1, "data": ...}`.
#[derive(Serialize, Deserialize)]
struct StoredV1<T> {
    v: u8,
    data: T,
}

fn encode<T: Serialize>(data: &T) -> Vec<u8> {
    serde_json::to_vec(&StoredV1 { v: 1, data }).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    let s: StoredV1<T> = serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("override {key:?}: {e}")))?;
    if s.v != 1 {
        return Err(StoreError::Corrupt(format!(
            "override {key:?}: unknown version {}",
            s.v
        )));
    }
    Ok(s.data)
}

impl OverrideSet {
    /// The set as table rows: key `<kind> US <id>` -> versioned JSON.
    pub fn rows(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.providers {
            out.insert(format!("provider{SEP}{k}"), encode(v));
        }
        for k in &self.disabled_providers {
            out.insert(format!("disabled_provider{SEP}{k}"), encode(&true));
        }
        for (k, v) in &self.models {
            out.insert(format!("model{SEP}{k}"), encode(v));
        }
        for (k, v) in &self.custom_models {
            out.insert(format!("custom_model{SEP}{k}"), encode(v));
        }
        for (k, v) in &self.aliases {
            out.insert(format!("alias{SEP}{k}"), encode(v));
        }
        for k in &self.disabled_aliases {
            out.insert(format!("disabled_alias{SEP}{k}"), encode(&true));
        }
        out
    }

    /// Rebuild the set from table rows (unknown kinds are skipped, so an older build can read a
    /// file a newer one added kinds to).
    ///
    /// Errors: a row of a known kind that does not decode.
    pub fn from_rows(rows: Vec<(String, Vec<u8>)>) -> Result<Self, StoreError> {
        let mut set = OverrideSet::default();
        for (key, value) in rows {
            let Some((kind, id)) = key.split_once(SEP) else {
                continue;
            };
            let id = id.to_string();
            match kind {
                "provider" => {
                    set.providers.insert(id, decode(&key, &value)?);
                }
                "disabled_provider" => {
                    set.disabled_providers.insert(id);
                }
                "model" => {
                    set.models.insert(id, decode(&key, &value)?);
                }
                "custom_model" => {
                    set.custom_models.insert(id, decode(&key, &value)?);
                }
                "alias" => {
                    set.aliases.insert(id, decode(&key, &value)?);
                }
                "disabled_alias" => {
                    set.disabled_aliases.insert(id);
                }
                _ => {}
            }
        }
        Ok(set)
    }

    /// The row changes that turn `old` into `self` (`None` = delete).
    pub fn diff(&self, old: &OverrideSet) -> Vec<(String, Option<Vec<u8>>)> {
        let (new_rows, old_rows) = (self.rows(), old.rows());
        let mut out = Vec::new();
        for (k, v) in &new_rows {
            if old_rows.get(k) != Some(v) {
                out.push((k.clone(), Some(v.clone())));
            }
        }
        for k in old_rows.keys() {
            if !new_rows.contains_key(k) {
                out.push((k.clone(), None));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_diff() {
        let mut set = OverrideSet::default();
        set.providers.insert(
            "local".into(),
            CustomProvider {
                id: "local".into(),
                family: Family::Openai,
                base_url: "http://127.0.0.1:1/v1".into(),
                api_key_env: Some("LOCAL_KEY".into()),
                enabled: true,
            },
        );
        set.models.insert(
            model_key("p", "m/x:1"),
            ModelOverride {
                pricing: PriceFields {
                    input: Some(1.5),
                    ..PriceFields::default()
                },
                ..ModelOverride::default()
            },
        );
        set.disabled_aliases.insert("a".into());
        let back = OverrideSet::from_rows(set.rows().into_iter().collect()).unwrap();
        assert_eq!(back, set);
        let mut changed = set.clone();
        changed.disabled_aliases.clear();
        let d = changed.diff(&set);
        assert_eq!(d.len(), 1);
        assert!(d[0].1.is_none());
        assert!(
            OverrideSet::from_rows(vec![(
                "model\u{1f}x".into(),
                b"{\"v\":9,\"data\":{}}".to_vec()
            )])
            .is_err()
        );
    }
}
