//! The canonical request/response model every frontend decodes into and every upstream dialect
//! encodes from (N + M translation, never pair by pair).
//!
//! A frontend never sees a provider wire type and an upstream never sees a client wire type: they
//! meet here. Token counts are in tokens; costs are in USD.

use serde_json::Value;

/// Who wrote a message. System prompts are not messages: they live in [`ChatRequest::system`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// A tool result (`tool_call_id` names the call it answers).
    Tool,
}

/// One piece of message content.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentPart {
    /// Plain text.
    Text(String),
    /// Inline image: media type (sniffed from the bytes where the client gave none) and base64 data.
    Image {
        /// `image/png`, `image/jpeg`, `image/gif`, `image/webp`.
        media_type: String,
        /// Standard base64, no `data:` prefix.
        data: String,
    },
    /// Image by http(s) URL (only clients that send URLs produce this).
    ImageUrl(String),
}

/// A tool call made by the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// Call id (`call_...`); generated when the upstream gives none. May carry an opaque
    /// upstream signature after `upstream::SIGNATURE_SEPARATOR` (Gemini 3 `thoughtSignature`),
    /// so a client that echoes the id echoes the signature; only that upstream reads it.
    pub id: String,
    /// Function name.
    pub name: String,
    /// Arguments as JSON text (OpenAI carries a string, Ollama an object: both map here).
    pub arguments: String,
}

/// One conversation turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Author.
    pub role: Role,
    /// Content parts in order.
    pub content: Vec<ContentPart>,
    /// Tool calls (assistant turns).
    pub tool_calls: Vec<ToolCall>,
    /// For `Role::Tool`: the call this answers.
    pub tool_call_id: Option<String>,
    /// Optional participant / tool name.
    pub name: Option<String>,
    /// Reasoning text the model produced earlier (assistant turns).
    pub thinking: Option<String>,
    /// Reasoning blocks an Anthropic upstream signed, as an Anthropic client echoes them
    /// (assistant turns; in order). Only the Anthropic dialect sends them back (the API checks
    /// each signature against its exact text, and with thinking on requires them in tool loops);
    /// every other dialect ignores them.
    pub signed_thinking: Vec<SignedThinking>,
}

/// A reasoning block kept whole so it can be replayed to the upstream that signed it
/// (Anthropic `thinking` with `signature`, or `redacted_thinking` with encrypted `data`;
/// anthropic-sdk-python `types/thinking_block_param.py`, `redacted_thinking_block_param.py`).
#[derive(Debug, Clone, PartialEq)]
pub enum SignedThinking {
    /// Visible reasoning text and its signature.
    Thinking {
        /// The reasoning text, exactly as produced.
        thinking: String,
        /// Opaque signature over it.
        signature: String,
    },
    /// Reasoning the provider encrypted (`data` is opaque).
    Redacted {
        /// Encrypted reasoning.
        data: String,
    },
}

impl Message {
    /// A message with only text.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: vec![ContentPart::Text(text.into())],
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
            thinking: None,
            signed_thinking: Vec::new(),
        }
    }

    /// All text parts joined (images skipped).
    pub fn joined_text(&self) -> String {
        let mut out = String::new();
        for p in &self.content {
            if let ContentPart::Text(t) = p {
                out.push_str(t);
            }
        }
        out
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// Function name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Value,
    /// OpenAI `strict` flag, passed through.
    pub strict: Option<bool>,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    /// Model decides.
    Auto,
    /// No tool.
    None,
    /// Some tool.
    Required,
    /// This function.
    Function(String),
}

/// Structured-output request.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// Schema name (OpenAI requires one; frontends without a name use `response`).
        name: String,
        /// The JSON Schema.
        schema: Value,
        /// OpenAI `strict`.
        strict: Option<bool>,
    },
}

/// A chat request in canonical form.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The model name exactly as the client sent it.
    pub model: String,
    /// System prompts in order (several are concatenated by the upstream encoder).
    pub system: Vec<String>,
    /// Conversation turns.
    pub messages: Vec<Message>,
    /// Whether the client wants a stream.
    pub stream: bool,
    /// Completion-token limit (tokens); `None` = let the upstream decide.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Top-k sampling (not an OpenAI parameter; forwarded where the dialect has it).
    pub top_k: Option<u32>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Sampling seed.
    pub seed: Option<i64>,
    /// Presence penalty (-2..2).
    pub presence_penalty: Option<f64>,
    /// Frequency penalty (-2..2).
    pub frequency_penalty: Option<f64>,
    /// Reasoning effort (`none|minimal|low|medium|high|xhigh|max`), passed through.
    pub reasoning_effort: Option<String>,
    /// Thinking switched on or off without a level (Ollama `think: true|false`); a level goes to
    /// `reasoning_effort`. `None` = the model's default.
    pub think: Option<bool>,
    /// Thinking budget the client asked for, tokens (Anthropic `thinking.budget_tokens`); used by
    /// dialects that take a budget, before `reasoning_effort`. `None` = none given.
    pub thinking_budget: Option<u32>,
    /// Structured output.
    pub response_format: Option<ResponseFormat>,
    /// Callable tools.
    pub tools: Vec<Tool>,
    /// Tool choice.
    pub tool_choice: Option<ToolChoice>,
    /// Parallel tool calls flag.
    pub parallel_tool_calls: Option<bool>,
    /// End-user identifier (OpenAI `user`).
    pub user: Option<String>,
    /// Native Ollama request fields as the client sent them, for Ollama upstreams only: the raw
    /// `options` object (`num_ctx`, `min_p`, `repeat_penalty`, `num_gpu`, ...; the mapped
    /// fields above are also set from it) and `keep_alive` (duration string or seconds). Set by
    /// the Ollama frontend; only the Ollama dialect writes it (top-level keys, `options` merged
    /// under the canonical fields), every other dialect ignores it. `None` = nothing extra.
    pub passthrough: Option<serde_json::Map<String, Value>>,
    /// OpenAI request fields llm-relay forwards without modelling them, as the client sent them:
    /// `logprobs`, `top_logprobs`, `logit_bias`, `service_tier`, `store`, `metadata`,
    /// `prediction`, `modalities`, `audio`, `verbosity`, `web_search_options`, and the
    /// OpenAI-compatible providers' own extensions (Perplexity `search_*`/`return_*`, OpenRouter
    /// `provider`/`models`/`transforms`/`plugins`). Set by the OpenAI frontend; only the
    /// OpenAI-compatible dialect writes them (never over a field it set itself), every other
    /// dialect ignores them. `None` = nothing extra.
    pub openai_extra: Option<serde_json::Map<String, Value>>,
    /// The client asked for prompt caching (Anthropic `cache_control` on any block or at the
    /// top level). The Anthropic dialect then asks for automatic caching (a top-level
    /// `cache_control`, which caches up to the last cacheable block), since per-block breakpoints
    /// are not modelled; other dialects cache on their own or not at all.
    pub cache_prompt: bool,
    /// Some `cache_control` of the request asked for the 1-hour TTL (`"ttl": "1h"`, WIRE.md §4.2;
    /// billed at 2x input instead of 1.25x): the Anthropic dialect's one top-level
    /// `cache_control` then asks for it (the longest TTL any breakpoint asked for).
    pub cache_ttl_1h: bool,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// Natural end or stop sequence.
    Stop,
    /// Token limit reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// Filtered by the provider.
    ContentFilter,
    /// The upstream failed mid-generation.
    Error,
}

impl FinishReason {
    /// OpenAI `finish_reason` string.
    pub fn as_openai(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Error => "stop",
        }
    }
    /// Parse an OpenAI-style finish reason (unknown values map to `Stop`).
    pub fn from_openai(s: &str) -> Self {
        match s {
            "length" => FinishReason::Length,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            // Mistral `error`; DeepSeek `insufficient_system_resource` (WIRE.md §7.1).
            "error" | "insufficient_system_resource" => FinishReason::Error,
            _ => FinishReason::Stop,
        }
    }
}

/// Token counts of one request, every class separately (tokens).
///
/// Semantics follow OpenAI's `CompletionUsage`: `cache_read_tokens` and `cache_write_tokens` are
/// part of `prompt_tokens`; `reasoning_tokens` are part of `completion_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    /// Prompt (input) tokens, cached ones included.
    pub prompt_tokens: u64,
    /// Completion (output) tokens, reasoning included.
    pub completion_tokens: u64,
    /// Reasoning tokens within the completion.
    pub reasoning_tokens: u64,
    /// Prompt tokens read from the provider's cache.
    pub cache_read_tokens: u64,
    /// Prompt tokens written to the provider's cache.
    pub cache_write_tokens: u64,
    /// The part of `cache_write_tokens` written with a 1-hour lifetime (tokens; at most
    /// `cache_write_tokens`), priced at the model's 1-hour cache-write rate. Source: Anthropic
    /// usage `cache_creation.ephemeral_1h_input_tokens` (writes under `cache_control`
    /// `ttl: "1h"`); 0 when the upstream gives no split (then every write is a 5-minute one).
    pub cache_write_1h_tokens: u64,
    /// Cost the provider itself reported (OpenRouter `usage.cost`), USD.
    pub reported_cost_usd: Option<f64>,
    /// Server-side timings an Ollama upstream reported (`None` for other upstreams).
    pub timings: Option<Timings>,
}

/// Durations an Ollama server reports on its final object, nanoseconds; each `None` when the
/// server left it out (Ollama's cloud models send only `total_duration`). The Ollama frontend
/// reports these instead of its own measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timings {
    /// Whole request at the server (ns).
    pub total_duration: Option<u64>,
    /// Model loading (ns).
    pub load_duration: Option<u64>,
    /// Prompt evaluation (ns).
    pub prompt_eval_duration: Option<u64>,
    /// Generation (ns).
    pub eval_duration: Option<u64>,
}

/// A complete (non-streamed) answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// Upstream response id, when given.
    pub id: Option<String>,
    /// Model id the upstream reports.
    pub model: String,
    /// Answer text.
    pub content: String,
    /// Reasoning text, when the upstream returns it.
    pub thinking: Option<String>,
    /// The reasoning as signed blocks, when the upstream signs it (Anthropic), for clients that
    /// can echo them (see [`Message::signed_thinking`]).
    pub signed_thinking: Vec<SignedThinking>,
    /// Tool calls.
    pub tool_calls: Vec<ToolCall>,
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// The stop sequence that ended it, when the upstream says which (Anthropic
    /// `stop_sequence`); `None` otherwise.
    pub stop_sequence: Option<String>,
    /// Token counts, when the upstream reported them.
    pub usage: Option<Usage>,
}

/// One event of a normalised stream. Frontends frame these (SSE / NDJSON) at the edge.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// Answer text.
    TextDelta(String),
    /// Reasoning text.
    ThinkingDelta(String),
    /// The signature that ends the current reasoning block (Anthropic `signature_delta`); a
    /// reasoning delta after it starts a new block.
    ThinkingSignature(String),
    /// A whole encrypted reasoning block (Anthropic `redacted_thinking`).
    RedactedThinking(String),
    /// A tool-call fragment: `id`/`name` on the first fragment of call `index`, argument text after.
    ToolCallDelta {
        /// Position of the call in this response (0-based).
        index: u32,
        /// Call id (first fragment).
        id: Option<String>,
        /// Function name (first fragment).
        name: Option<String>,
        /// A piece of the JSON argument text.
        arguments: String,
    },
    /// Token counts (may come once, at the end).
    Usage(Usage),
    /// The stop sequence that ended the generation (before `Finish`; only upstreams that say
    /// which one send it: Anthropic).
    StopSequence(String),
    /// Generation ended.
    Finish(FinishReason),
}
