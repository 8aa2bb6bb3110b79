//! A bounded fuzz pass (proptest) over what parses untrusted bytes:
//!
//! - the frontends' request decoders (OpenAI `/v1/chat/completions` and `/v1/responses`, Ollama
//!   `/api/chat` and `/api/generate`, Anthropic `/v1/messages`): any body decodes or is a 400 (for Anthropic:
//!   rendered as an `invalid_request_error` with a 4xx status), never a panic; a decoded request
//!   then encodes for every upstream dialect or is a 400;
//! - the upstream stream decoders (SSE: OpenAI-compatible, Anthropic, Gemini; NDJSON: Ollama):
//!   any body, cut into any chunks, ends (no hang, no panic) and decodes to the same events
//!   however it is cut (framing and UTF-8 split across TCP reads).
//!
//! Inputs: mutations of a seed corpus (the recorded traffic in tests/fixtures/ plus the files in
//! tests/fuzz/corpus/<target>/, where a found crasher is added as a new file), structured random
//! JSON built from the wire formats' field names, and raw random bytes. Failures proptest finds
//! are also kept in tests/fuzz.proptest-regressions and replayed first on every run.
//!
//! Bounded: `FUZZ_CASES` cases per target (default 512, about half a minute for all targets in a
//! debug build on 2 cores); raise it for a longer local pass, e.g. `FUZZ_CASES=20000 cargo test
//! --release --test fuzz`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use bytes::Bytes;
use futures_util::StreamExt;
use llm_relay::canonical::ChatRequest;
use llm_relay::catalog::{ModelId, PROVIDERS, WireFamily};
use llm_relay::error::ApiError;
use llm_relay::upstream::{ByteStream, Dialect};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        // Failures are persisted next to this file (cargo runs tests from the package root).
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/fuzz.proptest-regressions",
            ),
        )),
        ..Config::default()
    })
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target)
}

/// The checked-in seeds of `target` (every file in its corpus directory).
fn corpus_files(target: &str) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(corpus_dir(target)) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// The wire family of a fixture directory (`ollama` is the Ollama instance dialect).
fn family_of_dir(dir: &str) -> Option<WireFamily> {
    if dir == "ollama" {
        return Some(WireFamily::Ollama);
    }
    PROVIDERS.iter().find(|p| p.name == dir).map(|p| p.wire)
}

/// Every recorded exchange, with the wire family of its directory.
fn recorded() -> Vec<(WireFamily, common::fixtures::Exchange)> {
    let mut out = Vec::new();
    for file in common::fixtures::all_fixture_files() {
        let Some(family) = file.split('/').next().and_then(family_of_dir) else {
            continue;
        };
        for ex in common::fixtures::load(&file) {
            out.push((family, ex));
        }
    }
    out
}

/// JSON fragments and bytes that break parsers: inserted by the mutator.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ",",
    ":",
    "null",
    "true",
    "-1",
    "0",
    "1e999",
    "-0.0",
    "18446744073709551616",
    "\\u0000",
    "\\ud800",
    "\\",
    "\u{feff}",
    "\u{10ffff}",
    "\u{e9}",
    "\n",
    "\r\n",
    "\n\n",
    "data: ",
    "event: ",
    ": keep-alive\n\n",
    "data: [DONE]\n\n",
    "\u{0}",
];

/// Names and values from the wire formats, for structured inputs.
const KEYS: &[&str] = &[
    "model",
    "messages",
    "input",
    "instructions",
    "call_id",
    "output",
    "max_output_tokens",
    "reasoning",
    "effort",
    "role",
    "content",
    "prompt",
    "stream",
    "tools",
    "tool_calls",
    "function",
    "arguments",
    "name",
    "type",
    "image_url",
    "url",
    "images",
    "text",
    "options",
    "format",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "n",
    "seed",
    "response_format",
    "json_schema",
    "schema",
    "tool_choice",
    "tool_call_id",
    "stream_options",
    "include_usage",
    "keep_alive",
    "think",
    "system",
    "raw",
    "suffix",
    "echo",
    "num_predict",
    "top_k",
    "parameters",
    "properties",
    "index",
    "id",
    "delta",
    "choices",
    "usage",
    "data",
    "input_audio",
    "reasoning_effort",
    "tool_name",
    "thinking",
    "logprobs",
    "user",
];
const WORDS: &[&str] = &[
    "",
    "user",
    "assistant",
    "system",
    "tool",
    "developer",
    "function",
    "text",
    "image_url",
    "json_object",
    "json_schema",
    "message",
    "input_text",
    "input_image",
    "output_text",
    "function_call",
    "function_call_output",
    "auto",
    "none",
    "required",
    "data:image/png;base64,iVBORw0KGgo=",
    "data:,",
    "http://127.0.0.1:9/x.png",
    "\u{e9}\u{1f600}",
    "x",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
        prop::sample::select(KEYS).prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// A request-shaped object: a model, messages with wire roles, and random other fields.
fn structured_request() -> impl Strategy<Value = Vec<u8>> {
    let message = (
        prop::sample::select(WORDS),
        json_value(),
        prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..3),
    )
        .prop_map(|(role, content, extra)| {
            let mut m = serde_json::json!({"role": role, "content": content});
            for (k, v) in extra {
                m[k] = v;
            }
            m
        });
    (
        prop::collection::vec(message, 0..4),
        prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..5),
        json_value(),
    )
        .prop_map(|(messages, extra, prompt)| {
            let mut r = serde_json::json!({"model": "x", "messages": messages, "prompt": prompt});
            for (k, v) in extra {
                r[k] = v;
            }
            serde_json::to_vec(&r).unwrap()
        })
}

/// `seed` with byte-level mutations applied (flip, insert, delete, splice a token, truncate).
fn mutate(mut b: Vec<u8>, ops: &[(u32, u8, u8)]) -> Vec<u8> {
    for &(pos, op, byte) in ops {
        let at = if b.is_empty() {
            0
        } else {
            pos as usize % (b.len() + 1)
        };
        match op % 5 {
            0 if at < b.len() => b[at] ^= byte | 1,
            1 => b.insert(at, byte),
            2 if at < b.len() => {
                b.remove(at);
            }
            3 => {
                let t = TOKENS[byte as usize % TOKENS.len()].as_bytes();
                b.splice(at..at, t.iter().copied());
            }
            4 if byte < 16 => b.truncate(at),
            _ => {}
        }
    }
    b
}

/// Inputs for a target: mutated seeds, structured JSON (requests only) and raw bytes.
fn inputs(seeds: Vec<Vec<u8>>, structured: bool) -> BoxedStrategy<Vec<u8>> {
    assert!(!seeds.is_empty(), "a fuzz target needs at least one seed");
    let n = seeds.len();
    let mutated = (
        0..n,
        prop::collection::vec((any::<u32>(), any::<u8>(), any::<u8>()), 0..10),
    )
        .prop_map(move |(i, ops)| mutate(seeds[i].clone(), &ops));
    let raw = prop::collection::vec(any::<u8>(), 0..256);
    if structured {
        prop_oneof![4 => mutated, 4 => structured_request(), 1 => raw].boxed()
    } else {
        prop_oneof![8 => mutated, 1 => raw].boxed()
    }
}

type Decoder = fn(&[u8]) -> Result<ChatRequest, ApiError>;

/// The frontends' request decoders and their seeds.
fn request_targets() -> Vec<(&'static str, Decoder, Vec<Vec<u8>>)> {
    let rec = recorded();
    let bodies = |family: WireFamily, path: &str| -> Vec<Vec<u8>> {
        rec.iter()
            .filter(|(f, ex)| *f == family && ex.path().ends_with(path))
            .filter_map(|(_, ex)| ex.request_body.clone())
            .collect()
    };
    let with_corpus = |target: &str, mut seeds: Vec<Vec<u8>>| {
        seeds.extend(corpus_files(target));
        seeds
    };
    vec![
        (
            "openai_chat_request",
            llm_relay::frontend::openai::decode_chat_body as Decoder,
            with_corpus(
                "openai_chat_request",
                bodies(WireFamily::OpenaiCompat, "/chat/completions"),
            ),
        ),
        (
            "ollama_chat_request",
            llm_relay::frontend::ollama::decode_chat_body,
            with_corpus(
                "ollama_chat_request",
                bodies(WireFamily::Ollama, "/api/chat"),
            ),
        ),
        (
            "ollama_generate_request",
            llm_relay::frontend::ollama::decode_generate_body,
            with_corpus("ollama_generate_request", Vec::new()),
        ),
        (
            "responses_request",
            llm_relay::frontend::responses::decode_body,
            with_corpus("responses_request", Vec::new()),
        ),
        (
            "anthropic_request",
            llm_relay::frontend::anthropic::decode_messages_body,
            with_corpus(
                "anthropic_request",
                bodies(WireFamily::Anthropic, "/messages"),
            ),
        ),
    ]
}

/// One catalog model of each wire family (with a provider that has one).
fn one_model_per_family() -> Vec<ModelId> {
    let mut out: Vec<ModelId> = Vec::new();
    for m in ModelId::all() {
        let wire = m.info().provider.info().wire;
        if !out.iter().any(|o| o.info().provider.info().wire == wire) {
            out.push(m);
        }
    }
    out
}

#[test]
fn request_decoders_answer_400_or_a_request_that_every_dialect_encodes() {
    let models = one_model_per_family();
    for (target, decode, seeds) in request_targets() {
        let check = |body: &[u8]| -> Result<(), TestCaseError> {
            match decode(body) {
                Err(e) => {
                    prop_assert_eq!(e.status(), 400, "{}: {}", target, e);
                    // What the Anthropic handler sends for it (`error_response`): a 4xx
                    // `invalid_request_error`, the type Anthropic clients do not retry.
                    let (kind, status) = llm_relay::frontend::anthropic::error_type_status(&e);
                    if target == "anthropic_request" {
                        prop_assert_eq!(
                            (kind, status),
                            ("invalid_request_error", 400),
                            "{}: {}",
                            target,
                            e
                        );
                    }
                }
                Ok(req) => {
                    for m in &models {
                        let dialect = llm_relay::catalog::dialect(m.info().provider);
                        if let Err(e) = dialect.encode(*m, &req) {
                            prop_assert_eq!(e.status(), 400, "{} -> {:?}: {}", target, m, e);
                        }
                    }
                    if let Err(e) = llm_relay::upstream::ollama::Ollama.encode(models[0], &req) {
                        prop_assert_eq!(e.status(), 400, "{} -> ollama: {}", target, e);
                    }
                }
            }
            Ok(())
        };
        // The corpus itself first (regressions), then the generated cases.
        for seed in &seeds {
            check(seed).unwrap_or_else(|e| panic!("{target}: corpus seed fails: {e}"));
        }
        runner()
            .run(&inputs(seeds, true), |body| check(&body))
            .unwrap_or_else(|e| panic!("{target}: {e}"));
    }
}

/// Decode `chunks` with `dialect`: the events (as `Debug` text) up to the first error, and
/// whether an error ended them.
fn decode_stream(
    rt: &tokio::runtime::Runtime,
    dialect: &dyn Dialect,
    chunks: Vec<Vec<u8>>,
) -> (Vec<String>, bool) {
    let body: ByteStream = Box::pin(futures_util::stream::iter(
        chunks.into_iter().map(|c| Ok(Bytes::from(c))),
    ));
    let items = rt.block_on(dialect.decode_stream("fuzz", body).collect::<Vec<_>>());
    let mut events = Vec::new();
    for item in items {
        match item {
            Ok(ev) => events.push(without_generated_ids(&format!("{ev:?}"))),
            Err(_) => return (events, true),
        }
    }
    (events, false)
}

/// `text` with the tool-call ids llm-relay generates (`call_` + 24 random alphanumerics, for
/// upstreams that send none) replaced by `call_*`: they differ between two decodes by design.
fn without_generated_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("call_") {
        out.push_str(&rest[..at + 5]);
        rest = &rest[at + 5..];
        let n = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
        if n == 24 {
            out.push('*');
            rest = &rest[n..];
        }
    }
    out.push_str(rest);
    out
}

/// Cut `body` at the given points (sorted, deduplicated, in range).
fn cut(body: &[u8], points: &[u32]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = points
        .iter()
        .map(|p| *p as usize % (body.len() + 1))
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for p in at {
        out.push(body[start..p].to_vec());
        start = p;
    }
    out.push(body[start..].to_vec());
    out
}

#[test]
fn stream_decoders_end_and_do_not_depend_on_chunk_boundaries() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let rec = recorded();
    let ollama = llm_relay::upstream::ollama::Ollama;
    let targets: Vec<(&str, WireFamily, &dyn Dialect)> = vec![
        (
            "sse_openai_compat",
            WireFamily::OpenaiCompat,
            catalog_dialect(WireFamily::OpenaiCompat),
        ),
        (
            "sse_anthropic",
            WireFamily::Anthropic,
            catalog_dialect(WireFamily::Anthropic),
        ),
        (
            "sse_gemini",
            WireFamily::Gemini,
            catalog_dialect(WireFamily::Gemini),
        ),
        ("ndjson_ollama", WireFamily::Ollama, &ollama),
    ];
    for (target, family, dialect) in targets {
        let mut seeds: Vec<Vec<u8>> = rec
            .iter()
            .filter(|(f, ex)| {
                *f == family
                    && ex.status == 200
                    && ex
                        .response_header("content-type")
                        .is_some_and(|ct| ct.contains("event-stream") || ct.contains("ndjson"))
            })
            .map(|(_, ex)| ex.response_body.clone())
            .collect();
        seeds.extend(corpus_files(target));
        let check = |body: &[u8], points: &[u32]| -> Result<(), TestCaseError> {
            let whole = decode_stream(&rt, dialect, vec![body.to_vec()]);
            let pieces = decode_stream(&rt, dialect, cut(body, points));
            prop_assert_eq!(&whole, &pieces, "{}: depends on chunk boundaries", target);
            Ok(())
        };
        for seed in &seeds {
            // Every seed, also cut at every byte (the worst case of small TCP reads).
            let every: Vec<u32> = (0..seed.len() as u32).collect();
            check(seed, &every).unwrap_or_else(|e| panic!("{target}: corpus seed fails: {e}"));
        }
        let strategy = (
            inputs(seeds, false),
            prop::collection::vec(any::<u32>(), 0..12),
        );
        runner()
            .run(&strategy, |(body, points)| check(&body, &points))
            .unwrap_or_else(|e| panic!("{target}: {e}"));
    }
}

/// The dialect of the first provider of `family` in the catalog.
fn catalog_dialect(family: WireFamily) -> &'static dyn Dialect {
    let p = PROVIDERS
        .iter()
        .find(|p| p.wire == family)
        .unwrap_or_else(|| panic!("no provider of {family:?} in providers.yaml"));
    llm_relay::catalog::dialect(p.id)
}

/// The Anthropic seeds are requests the decoder takes (so the mutations start from valid
/// requests, not from a 400): the recorded request bodies and the corpus's JSON files.
#[test]
fn anthropic_seeds_decode() {
    let rec = recorded();
    let mut seeds: Vec<Vec<u8>> = rec
        .iter()
        .filter(|(f, ex)| *f == WireFamily::Anthropic && ex.path().ends_with("/messages"))
        .filter_map(|(_, ex)| ex.request_body.clone())
        .collect();
    let recorded_n = seeds.len();
    assert!(
        recorded_n >= 5,
        "recorded Anthropic request bodies: {recorded_n}"
    );
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir("anthropic_request"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    seeds.extend(files.iter().map(|p| std::fs::read(p).unwrap()));
    for (i, seed) in seeds.iter().enumerate() {
        let req = llm_relay::frontend::anthropic::decode_messages_body(seed)
            .unwrap_or_else(|e| panic!("seed {i}: {e}: {}", String::from_utf8_lossy(seed)));
        assert!(!req.messages.is_empty(), "seed {i}");
    }
}
