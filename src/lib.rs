//! llm-relay: one process that presents many LLM providers behind the Ollama and OpenAI APIs.
//!
//! # Layout
//! - [`catalog`]: the static tables compiled from providers.yaml + pricing.yaml (build.rs via
//!   `codegen/`), and model name resolution.
//! - [`canonical`]: the request/response model every frontend and upstream meets at.
//! - [`frontend`]: client APIs (Ollama `/api/*`, OpenAI `/v1/*`): decode, encode, error format.
//! - [`upstream`]: wire dialects behind the `Dialect` trait and the shared HTTP client.
//! - [`relay`]: resolve, encode, send, peek the stream; [`route`]: the routing target a model
//!   name resolves to (catalog row or Ollama-instance model).
//! - [`instances`]: Ollama servers as upstreams: discovery, snapshot, instance model names.
//! - [`usage`]: per-request accounting: attribution, cost engine, recorder (batched writer),
//!   queries.
//! - [`store`]: persistence behind `UsageSink`/`UsageQuery`/`OverrideStore` (redb).
//! - [`health`]: liveness and readiness endpoints for orchestrators.
//! - [`config`], [`server`], [`error`].

pub mod canonical;
pub mod catalog;
pub mod config;
pub mod error;
pub mod frontend;
pub mod health;
pub mod images;
pub mod instances;
pub mod relay;
pub mod route;
pub mod server;
pub mod store;
pub mod upstream;
pub mod usage;
