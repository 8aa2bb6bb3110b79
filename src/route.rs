//! Where a request goes: the runtime routing target that a model name resolves to.
//!
//! Catalog models are compile-time rows ([`ModelId`], a `Copy` enum: the fast path, nothing
//! allocated); models discovered on Ollama servers (`OLLAMA_INSTANCES`) are runtime data
//! ([`InstanceModel`], shared by `Arc`); runtime overrides (`crate::overrides`) add catalog rows
//! with an override price ([`Target::Priced`]) and custom models ([`CustomRoute`]). Frontends
//! resolve a name once
//! (`relay::resolve_model`) and pass the target to `relay::chat` and the request log; they
//! never look inside it.

use std::sync::Arc;

use crate::catalog::ModelId;
use crate::instances::InstanceModel;
use crate::overrides::CustomRoute;

/// A resolved model: a compiled catalog row or a model discovered on an Ollama instance.
#[derive(Debug, Clone)]
pub enum Target {
    /// A providers.yaml model.
    Catalog(ModelId),
    /// A model listed by an Ollama server's `/api/tags`.
    Instance(Arc<InstanceModel>),
    /// A providers.yaml model whose prices are overridden at runtime (USD per 1M tokens).
    Priced(ModelId, Arc<crate::catalog::Pricing>),
    /// A custom model (runtime overrides) on a custom or compiled provider.
    Custom(Arc<CustomRoute>),
}

impl Target {
    /// Provider name for logs, usage records and errors: the catalog provider (`providers.yaml`
    /// `name`) or the instance name from `OLLAMA_INSTANCES`.
    pub fn provider_name(&self) -> &'static str {
        match self {
            Target::Catalog(m) | Target::Priced(m, _) => m.info().provider.name(),
            Target::Instance(m) => m.instance,
            Target::Custom(c) => c.provider,
        }
    }

    /// The model id sent upstream (`gpt-4o`, `llama3.2:latest`).
    pub fn upstream_model(&self) -> &str {
        match self {
            Target::Catalog(m) | Target::Priced(m, _) => m.info().id,
            Target::Instance(m) => &m.model,
            Target::Custom(c) => &c.model,
        }
    }

    /// The catalog row, when it is one (pricing, quirks, capabilities).
    pub fn catalog(&self) -> Option<ModelId> {
        match self {
            Target::Catalog(m) | Target::Priced(m, _) => Some(*m),
            Target::Instance(_) | Target::Custom(_) => None,
        }
    }
}

impl From<ModelId> for Target {
    fn from(m: ModelId) -> Self {
        Target::Catalog(m)
    }
}
