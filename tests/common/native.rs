//! What a recorded Anthropic or Gemini answer says, read straight from the recording per the
//! providers' wire formats (WIRE.md §4.4-4.5, §5.3-5.4) and normalised per WIRE.md §7.7, so tests
//! can compare what clients of llm-relay receive without trusting llm-relay's own decoders.

use serde_json::{Map, Value};

use super::fixtures::Exchange;

/// The content of one recorded answer.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recorded {
    /// Answer text.
    pub text: String,
    /// Reasoning text (Anthropic `thinking`, Gemini `thought` parts).
    pub thinking: String,
    /// Tool calls: (name, arguments object).
    pub tools: Vec<(String, Value)>,
    /// (prompt tokens incl. cache, completion tokens incl. reasoning).
    pub usage: (u64, u64),
}

fn n(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// A recorded Anthropic Messages answer (JSON or SSE).
pub fn anthropic(ex: &Exchange) -> Recorded {
    let mut r = Recorded::default();
    let mut usage = Map::new();
    let mut take_usage = |v: &Value| {
        for (k, x) in v.as_object().into_iter().flatten() {
            usage.insert(k.clone(), x.clone());
        }
    };
    if ex.is_sse() {
        // Per block index: tool name and argument JSON pieces.
        let mut blocks: Vec<(usize, String, String)> = Vec::new();
        for d in ex.sse_data() {
            let v: Value = serde_json::from_str(&d).unwrap();
            let index = v["index"].as_u64().unwrap_or(0) as usize;
            match v["type"].as_str().unwrap() {
                "message_start" => take_usage(&v["message"]["usage"]),
                "message_delta" => take_usage(&v["usage"]),
                "content_block_start" if v["content_block"]["type"] == "tool_use" => blocks.push((
                    index,
                    v["content_block"]["name"].as_str().unwrap().into(),
                    String::new(),
                )),
                "content_block_delta" => {
                    let d = &v["delta"];
                    r.text.push_str(d["text"].as_str().unwrap_or_default());
                    r.thinking
                        .push_str(d["thinking"].as_str().unwrap_or_default());
                    if let Some(p) = d["partial_json"].as_str()
                        && let Some(b) = blocks.iter_mut().find(|b| b.0 == index)
                    {
                        b.2.push_str(p);
                    }
                }
                _ => {}
            }
        }
        r.tools = blocks
            .into_iter()
            .map(|(_, name, args)| {
                let args = if args.is_empty() {
                    Value::Object(Map::new())
                } else {
                    serde_json::from_str(&args).unwrap()
                };
                (name, args)
            })
            .collect();
    } else {
        let v = ex.response_json();
        for b in v["content"].as_array().unwrap() {
            match b["type"].as_str().unwrap() {
                "text" => r.text.push_str(b["text"].as_str().unwrap()),
                "thinking" => r.thinking.push_str(b["thinking"].as_str().unwrap()),
                "tool_use" => r
                    .tools
                    .push((b["name"].as_str().unwrap().into(), b["input"].clone())),
                _ => {}
            }
        }
        take_usage(&v["usage"]);
    }
    let usage = Value::Object(usage);
    r.usage = (
        n(&usage, "input_tokens")
            + n(&usage, "cache_read_input_tokens")
            + n(&usage, "cache_creation_input_tokens"),
        n(&usage, "output_tokens"),
    );
    r
}

/// A recorded Gemini generateContent answer (JSON or `alt=sse`).
pub fn gemini(ex: &Exchange) -> Recorded {
    let mut r = Recorded::default();
    let bodies: Vec<Value> = if ex.is_sse() {
        ex.sse_data()
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    } else {
        vec![ex.response_json()]
    };
    for v in bodies {
        for p in v["candidates"][0]["content"]["parts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(fc) = p.get("functionCall") {
                let args = fc
                    .get("args")
                    .cloned()
                    .unwrap_or_else(|| Value::Object(Map::new()));
                r.tools.push((fc["name"].as_str().unwrap().into(), args));
            } else if p["thought"] == true {
                r.thinking.push_str(p["text"].as_str().unwrap_or_default());
            } else {
                r.text.push_str(p["text"].as_str().unwrap_or_default());
            }
        }
        let m = &v["usageMetadata"];
        if m.is_object() {
            r.usage = (
                n(m, "promptTokenCount") + n(m, "toolUsePromptTokenCount"),
                n(m, "candidatesTokenCount") + n(m, "thoughtsTokenCount"),
            );
        }
    }
    r
}
