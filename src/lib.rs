//! llm-relay: one process that presents many LLM providers behind the Ollama, OpenAI and
//! Anthropic Messages APIs.
//!
//! # Layout
//! - [`catalog`]: the static tables compiled from providers.yaml + pricing.yaml (build.rs via
//!   `codegen/`), and model name resolution.
//! - [`canonical`]: the request/response model every frontend and upstream meets at.
//! - [`frontend`]: client APIs (Ollama `/api/*`, OpenAI `/v1/*`, Anthropic `/v1/messages*`):
//!   decode, encode, error format.
//! - [`upstream`]: wire dialects behind the `Dialect` trait and the shared HTTP client.
//! - [`embed`]: embeddings (`/v1/embeddings`, `/api/embed`) to OpenAI-compatible providers and
//!   Ollama servers.
//! - [`relay`]: resolve, encode, send, peek the stream; [`route`]: the routing target a model
//!   name resolves to (catalog row or Ollama-instance model).
//! - [`instances`]: Ollama servers as upstreams: discovery, snapshot, instance model names.
//! - [`overrides`]: runtime overrides over the catalog (custom providers, models, aliases,
//!   prices, settings) in an `ArcSwap` snapshot, and their admin API handlers.
//! - [`usage`]: per-request accounting: attribution, cost engine, recorder (batched writer),
//!   queries.
//! - [`store`]: persistence behind `UsageSink`/`UsageQuery`/`OverrideStore` (redb).
//! - [`admin`]: the admin server (`ADMIN_PORT`): login, usage endpoints, embedded web UI.
//! - [`health`]: liveness and readiness endpoints for orchestrators.
//! - [`server`]: the route table and the accept loop; the binary serves on `SERVER_THREADS`
//!   threads, one single-threaded runtime and upstream client each ([`server::run_threads`]),
//!   while start-up, signals, the admin server and instance discovery use a 1-worker runtime.
//! - [`config`], [`error`].

pub mod admin;
pub mod canonical;
pub mod catalog;
pub mod config;
pub mod embed;
pub mod error;
pub mod frontend;
pub mod health;
pub mod images;
pub mod instances;
pub mod logbuf;
pub mod overrides;
pub mod relay;
pub mod route;
pub mod server;
pub mod store;
pub mod upstream;
pub mod usage;
