//! The Anthropic Messages dialect. Not written yet: every call answers 501 so the provider's models are
//! listed and resolvable while requests fail clearly instead of silently.

use super::{ByteStream, Dialect, EventStream, UpstreamRequest, not_yet};
use crate::canonical::{ChatRequest, ChatResponse};
use crate::catalog::ModelId;
use crate::error::ApiError;

/// Anthropic Messages upstream dialect (placeholder).
pub struct Anthropic;

impl Dialect for Anthropic {
    fn encode(&self, _model: ModelId, _req: &ChatRequest) -> Result<UpstreamRequest, ApiError> {
        Err(not_yet("Anthropic Messages"))
    }
    fn decode(&self, _provider: &'static str, _body: &[u8]) -> Result<ChatResponse, ApiError> {
        Err(not_yet("Anthropic Messages"))
    }
    fn decode_stream(&self, _provider: &'static str, _body: ByteStream) -> EventStream {
        Box::pin(futures_util::stream::once(async {
            Err(not_yet("Anthropic Messages"))
        }))
    }
}
