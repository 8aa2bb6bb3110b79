//! The catalog: the static tables compiled from providers.yaml + pricing.yaml, and the only door
//! to generated names. Model name resolution lives here and nowhere else.
//!
//! Accepted spellings (case-insensitive): alias (`claude-sonnet`), model id (`gpt-4o`),
//! `provider-name` (`openai-gpt-4o`), `provider/name` (`openai/gpt-4o`), each optionally with the
//! Ollama tag `:latest`.

mod types;

pub use types::*;

/// The generated code (see `codegen/src/generate.rs`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
mod generated {
    use super::types::*;
    include!(concat!(env!("OUT_DIR"), "/catalog.rs"));
}

pub use generated::{MODELS, ModelId, PRICING_SOURCE, PROVIDERS, ProviderId, dialect};

/// Longest name worth looking up; longer input cannot be a catalog name.
const MAX_NAME_LEN: usize = 256;

/// Resolve a client-supplied model name to a catalog model.
///
/// Tries the name as given, then without an Ollama `:latest` tag. Returns `None` for unknown names.
pub fn resolve(name: &str) -> Option<ModelId> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    generated::resolve(&lower)
        .or_else(|| lower.strip_suffix(":latest").and_then(generated::resolve))
}

impl ModelId {
    /// Every model, in file order.
    pub fn all() -> impl Iterator<Item = ModelId> {
        ModelId::ALL.into_iter()
    }
    /// Static facts about the model.
    pub fn info(self) -> &'static ModelInfo {
        &MODELS[self as usize]
    }
    /// Prices (USD per 1M tokens).
    pub fn pricing(self) -> &'static Pricing {
        generated::pricing(self)
    }
    /// Request quirks.
    pub fn quirks(self) -> &'static Quirks {
        generated::quirks(self)
    }
    /// The serving provider.
    pub fn provider(self) -> &'static ProviderInfo {
        self.info().provider.info()
    }
}
