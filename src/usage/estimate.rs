//! Token estimates for when no count is available: the prompt of a request whose upstream has
//! no token-counting endpoint (Anthropic `count_tokens` for other upstreams, the Anthropic
//! stream's `message_start` for them), and the tokens of a stream cut before the upstream
//! reported its usage ([`super::RequestLog`]).
//!
//! The rule is the common ~4 characters (UTF-8 bytes) per token for English text and code,
//! rounded up; images count a flat 1600 tokens each and every message 4 tokens of framing.

use crate::canonical::{ChatRequest, ContentPart};

/// Characters (UTF-8 bytes) per token of the estimate.
pub const CHARS_PER_TOKEN: u64 = 4;
/// Tokens counted per image (Anthropic: width*height/750, ~1600 at the 1.15 MP size it scales
/// images to).
pub const IMAGE_TOKENS: u64 = 1600;
/// Tokens of framing per message (role markers).
pub const MESSAGE_OVERHEAD: u64 = 4;

/// Tokens for `chars` characters (UTF-8 bytes) of text: `chars / 4` rounded up (0 for none, at
/// least 1 for any).
pub fn tokens_for_chars(chars: u64) -> u64 {
    chars.div_ceil(CHARS_PER_TOKEN)
}

/// An estimate of the prompt tokens of `req`, at least 1: text characters / 4 (system, message
/// text, earlier tool calls and reasoning, tool definitions with their JSON schema), plus 1600
/// per image and 4 per message. Allocates nothing.
pub fn prompt_tokens(req: &ChatRequest) -> u64 {
    let mut chars = 0u64;
    let mut extra = 0u64;
    for s in &req.system {
        chars += s.len() as u64;
    }
    for m in &req.messages {
        extra += MESSAGE_OVERHEAD;
        for p in &m.content {
            match p {
                ContentPart::Text(t) => chars += t.len() as u64,
                ContentPart::Image { .. } | ContentPart::ImageUrl(_) => extra += IMAGE_TOKENS,
            }
        }
        for c in &m.tool_calls {
            chars += (c.name.len() + c.arguments.len()) as u64;
        }
        chars += m.thinking.as_ref().map_or(0, String::len) as u64;
    }
    for t in &req.tools {
        chars += (t.name.len() + t.description.as_ref().map_or(0, String::len)) as u64;
        chars += json_len(&t.parameters);
    }
    (tokens_for_chars(chars) + extra).max(1)
}

/// Length of `v` as compact JSON (what `v.to_string().len()` gives), without building the string.
fn json_len(v: &serde_json::Value) -> u64 {
    /// An `io::Write` that only counts.
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a `Value` into a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{Message, Role, Tool};

    #[test]
    fn chars_round_up_to_tokens() {
        assert_eq!(tokens_for_chars(0), 0);
        assert_eq!(tokens_for_chars(1), 1);
        assert_eq!(tokens_for_chars(4), 1);
        assert_eq!(tokens_for_chars(5), 2);
        assert_eq!(tokens_for_chars(11), 3);
    }

    #[test]
    fn prompt_counts_text_messages_and_tools() {
        let mut req = ChatRequest {
            system: vec!["12345678".into()],
            messages: vec![Message::text(Role::User, "hi")],
            ..ChatRequest::default()
        };
        // (8 + 2) chars -> 3 tokens, plus 4 for the message.
        assert_eq!(prompt_tokens(&req), 7);
        let params = serde_json::json!({"type": "object", "properties": {"q": {"type": "string"}}});
        req.tools.push(Tool {
            name: "find".into(),
            description: Some("look".into()),
            parameters: params.clone(),
            strict: None,
        });
        let chars = 10 + 4 + 4 + params.to_string().len() as u64;
        assert_eq!(json_len(&params), params.to_string().len() as u64);
        assert_eq!(prompt_tokens(&req), tokens_for_chars(chars) + 4);
        // An empty request still counts 1.
        assert_eq!(prompt_tokens(&ChatRequest::default()), 1);
    }
}
