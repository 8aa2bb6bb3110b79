//! Embeddings: the canonical request and answer behind OpenAI's `POST /v1/embeddings` and
//! Ollama's `POST /api/embed` (and legacy `/api/embeddings`), and the routing to an upstream.
//!
//! Upstreams: an OpenAI-compatible provider's `POST {base}/embeddings` (catalog models marked
//! `capabilities: [embeddings]` in providers.yaml, custom OpenAI-compatible models) and an Ollama
//! server's `POST /api/embed` (discovered instance models). Wire shapes: OpenAI
//! `CreateEmbeddingRequest`/`CreateEmbeddingResponse` (openai-openapi.yaml, WIRE.md §3.7: `data[]`
//! of `{object, index, embedding}`, `usage.prompt_tokens`); Ollama `/api/embed` (WIRE.md §2.7:
//! `embeddings`, `prompt_eval_count`, nanosecond `total_duration`/`load_duration`). Anthropic and
//! Gemini upstreams serve no embeddings through llm-relay (400).
//!
//! Vectors are kept as `f32`: OpenAI's base64 encoding is little-endian float32 (WIRE.md §2.9)
//! and Ollama computes float32, so nothing is lost, and JSON numbers print as the shortest `f32`
//! text, as both providers print them.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::canonical::Timings;
use crate::catalog::{Capability, WireFamily};
use crate::error::ApiError;
use crate::relay::AppState;
use crate::route::Target;
use crate::upstream::client;

/// Most inputs in one request (OpenAI: `input` arrays of at most 2048 items, WIRE.md §3.7).
pub const MAX_INPUTS: usize = 2048;

/// What to embed.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedInput {
    /// Texts, one vector each.
    Texts(Vec<String>),
    /// Token id arrays (OpenAI `int[]` / `int[][]`), one vector each; OpenAI-compatible upstreams
    /// only.
    Tokens(Vec<Vec<u32>>),
}

impl EmbedInput {
    /// Number of inputs (= vectors expected back).
    pub fn len(&self) -> usize {
        match self {
            EmbedInput::Texts(t) => t.len(),
            EmbedInput::Tokens(t) => t.len(),
        }
    }

    /// Whether there is nothing to embed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Characters of the texts (0 for token arrays), for a token estimate.
    pub fn chars(&self) -> u64 {
        match self {
            EmbedInput::Texts(t) => t.iter().map(|s| s.len() as u64).sum(),
            EmbedInput::Tokens(_) => 0,
        }
    }

    /// Token ids given directly (they are the prompt tokens).
    pub fn token_count(&self) -> u64 {
        match self {
            EmbedInput::Texts(_) => 0,
            EmbedInput::Tokens(t) => t.iter().map(|v| v.len() as u64).sum(),
        }
    }
}

/// A canonical embeddings request.
#[derive(Debug, Clone)]
pub struct EmbedRequest {
    /// Model name as the client gave it (resolved like a chat model).
    pub model: String,
    /// What to embed.
    pub input: EmbedInput,
    /// Requested vector length (OpenAI `dimensions`, Ollama `dimensions`), when given.
    pub dimensions: Option<u32>,
    /// OpenAI `user` (forwarded to OpenAI-compatible upstreams unless the model's quirks drop it).
    pub user: Option<String>,
    /// Ollama fields forwarded to Ollama servers as sent (`truncate`, `options`, `keep_alive`).
    pub ollama: Map<String, Value>,
    /// Asked through Ollama's legacy `/api/embeddings` (one `prompt`): an Ollama server gets it
    /// on its own `/api/embeddings`, whose vectors are not normalised as `/api/embed`'s are.
    pub legacy: bool,
}

/// A canonical embeddings answer.
#[derive(Debug, Clone, Default)]
pub struct Embeddings {
    /// One vector per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Prompt tokens the upstream reported (OpenAI `usage.prompt_tokens`, Ollama
    /// `prompt_eval_count`), `None` when it reported none.
    pub prompt_tokens: Option<u64>,
    /// Durations an Ollama server reported (`None` for other upstreams).
    pub timings: Option<Timings>,
}

/// Decode a client's `input`: a string or an array of strings, and for the OpenAI API (`openai`)
/// also its token-id forms (`int[]`: one input, `int[][]`: several).
///
/// Errors (400): another shape, an empty array; for the OpenAI API also an empty string or
/// token array and more than [`MAX_INPUTS`] inputs (`CreateEmbeddingRequest`: "cannot be an
/// empty string", at most 2048 items; Ollama has no such limits).
pub fn input_from_json(v: Value, openai: bool) -> Result<EmbedInput, ApiError> {
    let tokens = openai;
    let shape = if tokens {
        "input must be a string, an array of strings, an array of token ids or an array of token-id arrays"
    } else {
        "input must be a string or an array of strings"
    };
    let bad = || ApiError::BadRequest(shape.into());
    let input = match v {
        Value::String(s) => EmbedInput::Texts(vec![s]),
        Value::Array(items) if items.is_empty() => {
            return Err(ApiError::BadRequest("input must not be empty".into()));
        }
        Value::Array(items) => match &items[0] {
            Value::String(_) => EmbedInput::Texts(
                items
                    .into_iter()
                    .map(|i| match i {
                        Value::String(s) => Ok(s),
                        _ => Err(bad()),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Value::Number(_) if tokens => EmbedInput::Tokens(vec![
                serde_json::from_value(Value::Array(items)).map_err(|_| bad())?,
            ]),
            Value::Array(_) if tokens => {
                EmbedInput::Tokens(serde_json::from_value(Value::Array(items)).map_err(|_| bad())?)
            }
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    if !openai {
        return Ok(input);
    }
    if input.len() > MAX_INPUTS {
        return Err(ApiError::BadRequest(format!(
            "input has {} items; at most {MAX_INPUTS} are allowed",
            input.len()
        )));
    }
    let empty = match &input {
        EmbedInput::Texts(t) => t.iter().any(String::is_empty),
        EmbedInput::Tokens(t) => t.iter().any(Vec::is_empty),
    };
    if empty {
        return Err(ApiError::BadRequest(
            "input must not contain an empty string or token array".into(),
        ));
    }
    Ok(input)
}

/// The prompt tokens to report and record: the upstream's count, else the token ids given, else
/// an estimate from the texts (characters / 4, as for cut streams).
pub fn prompt_tokens(req: &EmbedRequest, answer: &Embeddings) -> u64 {
    answer.prompt_tokens.unwrap_or_else(|| {
        req.input.token_count() + crate::usage::estimate::tokens_for_chars(req.input.chars())
    })
}

/// Whether `target` is a catalog model marked as an embedding model (providers.yaml
/// `capabilities: [embeddings]`), which chat refuses. Custom models are not refused chat (their
/// capabilities are the operator's description, which may list chat capabilities too), nor are
/// Ollama-instance models (not known to be either): their upstream decides.
pub fn is_embedding_model(target: &Target) -> bool {
    match target {
        Target::Catalog(m) | Target::Priced(m, _) => m.info().has(Capability::Embeddings),
        Target::Custom(_) | Target::Instance(_) => false,
    }
}

/// The error for a chat request to an embedding model (400; Ollama answers the same case with
/// 400 "does not support chat").
pub fn chat_to_embedding_model(model: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "model '{model}' is an embedding model and does not support chat; use /v1/embeddings or /api/embed"
    ))
}

/// Route `req` to `target`'s upstream and decode its vectors.
///
/// Errors: a catalog model that is no embedding model, or a provider family without embeddings
/// (400); token-array input for an Ollama server (400); provider without key (503); upstream
/// status (kept); transport failures (502/504); an answer without one vector per input (502).
pub async fn embed(
    state: &AppState,
    target: &Target,
    req: &EmbedRequest,
) -> Result<Embeddings, ApiError> {
    let provider = target.provider_name();
    let body = match target {
        Target::Catalog(m) | Target::Priced(m, _) => {
            let info = m.info();
            if !info.has(Capability::Embeddings) {
                return Err(not_embedding(&req.model));
            }
            if info.provider.info().wire != WireFamily::OpenaiCompat {
                return Err(no_embeddings_api(provider));
            }
            let drop_user = m.quirks().drops(crate::catalog::Param::User);
            let body = openai_body(info.id, req, drop_user);
            client::send(
                &state.client,
                &state.config,
                &crate::upstream::openai_compat::OpenAiCompat,
                *m,
                "/embeddings",
                body,
            )
            .await?
            .into_bytes(&state.config)
            .await?
        }
        Target::Custom(c) => {
            if !c.capabilities.embeddings {
                return Err(not_embedding(&req.model));
            }
            if c.family != WireFamily::OpenaiCompat {
                return Err(no_embeddings_api(provider));
            }
            let rb = crate::relay::custom_request(
                state,
                c,
                "/embeddings",
                openai_body(&c.model, req, false),
            )?;
            client::send_request(
                rb,
                provider,
                &crate::upstream::openai_compat::OpenAiCompat,
                &state.config,
            )
            .await?
            .into_bytes(&state.config)
            .await?
        }
        Target::Instance(m) => {
            let body = ollama_body(&m.model, req)?;
            let path = if req.legacy {
                "/api/embeddings"
            } else {
                "/api/embed"
            };
            crate::upstream::ollama::post_to_instance(state, &m.base_url, m.instance, path, body)
                .await
                .inspect_err(|e| {
                    if e.status() == 404 {
                        state.instances.refresh_soon(&state.client);
                    }
                })?
                .into_bytes(&state.config)
                .await?
        }
    };
    let answer = match target {
        Target::Instance(_) if req.legacy => decode_ollama_legacy(&body),
        Target::Instance(_) => decode_ollama(&body),
        _ => decode_openai(&body),
    }
    .map_err(|reason| ApiError::UpstreamInvalid { provider, reason })?;
    if answer.vectors.len() != req.input.len() {
        return Err(ApiError::UpstreamInvalid {
            provider,
            reason: format!(
                "{} embeddings for {} inputs",
                answer.vectors.len(),
                req.input.len()
            ),
        });
    }
    Ok(answer)
}

fn not_embedding(model: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "model '{model}' is not an embedding model (providers.yaml capabilities: [embeddings])"
    ))
}

fn no_embeddings_api(provider: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "provider '{provider}' serves no embeddings through llm-relay (only OpenAI-compatible providers and Ollama servers)"
    ))
}

/// The OpenAI `CreateEmbeddingRequest` body for `model`: `input`, `dimensions` and `user` when
/// given; `encoding_format` is left out (its default is `float`), so every upstream answers with
/// number arrays.
pub fn openai_body(model: &str, req: &EmbedRequest, drop_user: bool) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("model".into(), model.into());
    m.insert(
        "input".into(),
        match &req.input {
            EmbedInput::Texts(t) => json!(t),
            EmbedInput::Tokens(t) => json!(t),
        },
    );
    if let Some(d) = req.dimensions {
        m.insert("dimensions".into(), d.into());
    }
    if let (Some(u), false) = (&req.user, drop_user) {
        m.insert("user".into(), u.as_str().into());
    }
    serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
}

/// The Ollama `/api/embed` body for `model` (the name as the server lists it): `input` as an
/// array, `dimensions` when given, the client's Ollama fields as sent.
///
/// Errors: token-array input (400: Ollama takes text only).
pub fn ollama_body(model: &str, req: &EmbedRequest) -> Result<Vec<u8>, ApiError> {
    let EmbedInput::Texts(texts) = &req.input else {
        return Err(ApiError::BadRequest(
            "token-array input cannot be embedded by an Ollama server (text only)".into(),
        ));
    };
    let mut m = req.ollama.clone();
    m.insert("model".into(), model.into());
    match (req.legacy, texts.as_slice()) {
        (true, [prompt]) => {
            m.insert("prompt".into(), prompt.as_str().into());
        }
        _ => {
            m.insert("input".into(), json!(texts));
        }
    }
    if let Some(d) = req.dimensions {
        m.insert("dimensions".into(), d.into());
    }
    Ok(serde_json::to_vec(&Value::Object(m)).unwrap_or_default())
}

/// Ask an Ollama server to load (or, with `keep_alive` 0, unload) `model` the way Ollama
/// clients do: an empty `/api/generate` (`embed` false) or an empty `/api/embed` (`embed`
/// true, for embedding models, which do not generate), with the client's Ollama fields
/// (`keep_alive`, `options`). What `ollama stop`, Open WebUI's unload and a warm-up send.
///
/// Errors: upstream status (kept), transport failures (502/504).
pub async fn load_on_instance(
    state: &AppState,
    m: &crate::instances::InstanceModel,
    embed: bool,
    mut fields: Map<String, Value>,
) -> Result<(), ApiError> {
    fields.retain(|k, _| matches!(k.as_str(), "keep_alive" | "options"));
    fields.insert("model".into(), m.model.as_str().into());
    let path = if embed {
        fields.insert("input".into(), json!([]));
        "/api/embed"
    } else {
        "/api/generate"
    };
    let body = serde_json::to_vec(&Value::Object(fields)).unwrap_or_default();
    crate::upstream::ollama::post_to_instance(state, &m.base_url, m.instance, path, body)
        .await?
        .into_bytes(&state.config)
        .await?;
    Ok(())
}

#[derive(Deserialize)]
struct OpenAiAnswer {
    data: Vec<OpenAiItem>,
    #[serde(default)]
    usage: Option<OpenAiUsage>,
}

#[derive(Deserialize)]
struct OpenAiItem {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vector,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Vector {
    Floats(Vec<f32>),
    /// Base64 of little-endian float32 (an upstream that ignored the default `float`).
    Base64(String),
}

#[derive(Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
}

/// Decode an OpenAI `CreateEmbeddingResponse`: vectors put in `index` order (items without an
/// index keep their position), base64 vectors decoded.
///
/// Errors: not that shape, a bad base64 vector, or indexes that are not a permutation.
pub fn decode_openai(body: &[u8]) -> Result<Embeddings, String> {
    let a: OpenAiAnswer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let n = a.data.len();
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; n];
    for (pos, item) in a.data.into_iter().enumerate() {
        let i = item.index.unwrap_or(pos);
        let v = match item.embedding {
            Vector::Floats(v) => v,
            Vector::Base64(s) => from_base64(&s)?,
        };
        match slots.get_mut(i) {
            Some(slot @ None) => *slot = Some(v),
            _ => return Err(format!("embedding index {i} out of range or repeated")),
        }
    }
    Ok(Embeddings {
        vectors: slots.into_iter().flatten().collect(),
        prompt_tokens: a.usage.and_then(|u| u.prompt_tokens),
        timings: None,
    })
}

#[derive(Deserialize)]
struct OllamaAnswer {
    embeddings: Vec<Vec<f32>>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    total_duration: Option<u64>,
    #[serde(default)]
    load_duration: Option<u64>,
}

/// Decode an Ollama `/api/embed` answer (WIRE.md §2.7).
///
/// Errors: not that shape.
pub fn decode_ollama(body: &[u8]) -> Result<Embeddings, String> {
    let a: OllamaAnswer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(Embeddings {
        vectors: a.embeddings,
        prompt_tokens: a.prompt_eval_count,
        timings: Some(Timings {
            total_duration: a.total_duration,
            load_duration: a.load_duration,
            prompt_eval_duration: None,
            eval_duration: None,
        }),
    })
}

#[derive(Deserialize)]
struct OllamaLegacyAnswer {
    embedding: Vec<f32>,
}

/// Decode an Ollama legacy `/api/embeddings` answer (`{"embedding":[...]}`, WIRE.md §2.7): one
/// vector, no token count.
///
/// Errors: not that shape.
pub fn decode_ollama_legacy(body: &[u8]) -> Result<Embeddings, String> {
    let a: OllamaLegacyAnswer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(Embeddings {
        vectors: vec![a.embedding],
        prompt_tokens: None,
        timings: None,
    })
}

/// A vector as OpenAI's `encoding_format: "base64"` gives it: the little-endian float32 bytes,
/// standard base64 with padding (WIRE.md §2.9).
pub fn to_base64(v: &[f32]) -> String {
    use base64::Engine;
    let mut bytes = Vec::with_capacity(v.len() * 4);
    for x in v {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The inverse of [`to_base64`].
///
/// Errors: not base64, or a length that is not a whole number of float32s.
pub fn from_base64(s: &str) -> Result<Vec<f32>, String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("embedding is not base64: {e}"))?;
    if bytes.len() % 4 != 0 {
        return Err("base64 embedding is not a whole number of float32s".into());
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_inputs_decode_to_texts_or_token_arrays() {
        assert_eq!(
            input_from_json(json!("a"), true).unwrap(),
            EmbedInput::Texts(vec!["a".into()])
        );
        assert_eq!(
            input_from_json(json!(["a", "b"]), false).unwrap(),
            EmbedInput::Texts(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            input_from_json(json!([1, 2]), true).unwrap(),
            EmbedInput::Tokens(vec![vec![1, 2]])
        );
        assert_eq!(
            input_from_json(json!([[1], [2, 3]]), true).unwrap(),
            EmbedInput::Tokens(vec![vec![1], vec![2, 3]])
        );
        for bad in [json!([1, 2]), json!(7), json!(["a", 1]), json!([{"a": 1}])] {
            assert_eq!(input_from_json(bad, false).unwrap_err().status(), 400);
        }
        for bad in [
            json!([]),
            json!([-1]),
            json!([[1], "a"]),
            json!(null),
            json!(""),
            json!(["a", ""]),
            json!([[1], []]),
        ] {
            assert_eq!(input_from_json(bad, true).unwrap_err().status(), 400);
        }
        // Ollama: no item limit, empty strings passed on.
        let many = Value::Array(vec![json!("x"); MAX_INPUTS + 1]);
        assert_eq!(input_from_json(many, false).unwrap().len(), MAX_INPUTS + 1);
        assert!(input_from_json(json!(""), false).is_ok());
        let many = Value::Array(vec![json!("x"); MAX_INPUTS + 1]);
        assert!(
            input_from_json(many, true)
                .unwrap_err()
                .to_string()
                .contains("at most 2048")
        );
    }

    #[test]
    fn base64_is_little_endian_float32_and_round_trips() {
        let v = [1.0f32, -0.5, 0.0057293195];
        let s = to_base64(&v);
        // 1.0f32 = 0x3f800000 -> bytes 00 00 80 3f
        assert!(s.starts_with("AACAPw"), "{s}");
        assert_eq!(from_base64(&s).unwrap(), v);
        assert!(from_base64("AAA=").is_err());
        assert!(from_base64("not base64!").is_err());
    }

    #[test]
    fn openai_answers_are_put_in_index_order() {
        let body = br#"{"object":"list","data":[
            {"object":"embedding","index":1,"embedding":[0.5,0.25]},
            {"object":"embedding","index":0,"embedding":"AACAPwAAAL8="}],
            "model":"m","usage":{"prompt_tokens":7,"total_tokens":7}}"#;
        let e = decode_openai(body).unwrap();
        assert_eq!(e.vectors, vec![vec![1.0, -0.5], vec![0.5, 0.25]]);
        assert_eq!(e.prompt_tokens, Some(7));
        let repeated = br#"{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[2]}]}"#;
        assert!(decode_openai(repeated).is_err());
        let out_of_range = br#"{"data":[{"index":3,"embedding":[1]}]}"#;
        assert!(decode_openai(out_of_range).is_err());
    }

    #[test]
    fn ollama_bodies_carry_the_clients_fields_and_refuse_tokens() {
        let mut ollama = Map::new();
        ollama.insert("keep_alive".into(), "5m".into());
        let mut req = EmbedRequest {
            model: "x".into(),
            input: EmbedInput::Texts(vec!["hi".into()]),
            dimensions: Some(8),
            user: None,
            ollama,
            legacy: false,
        };
        let v: Value = serde_json::from_slice(&ollama_body("nomic:latest", &req).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"model": "nomic:latest", "input": ["hi"], "dimensions": 8, "keep_alive": "5m"})
        );
        req.legacy = true;
        req.dimensions = None;
        let v: Value = serde_json::from_slice(&ollama_body("nomic:latest", &req).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"model": "nomic:latest", "prompt": "hi", "keep_alive": "5m"})
        );
        req.input = EmbedInput::Tokens(vec![vec![1, 2]]);
        assert_eq!(ollama_body("m", &req).unwrap_err().status(), 400);
    }

    #[test]
    fn openai_bodies_leave_out_encoding_format_and_dropped_user() {
        let req = EmbedRequest {
            model: "alias".into(),
            input: EmbedInput::Tokens(vec![vec![1, 2], vec![3]]),
            dimensions: None,
            user: Some("u1".into()),
            ollama: Map::new(),
            legacy: false,
        };
        let v: Value = serde_json::from_slice(&openai_body("id", &req, false)).unwrap();
        assert_eq!(
            v,
            json!({"model": "id", "input": [[1, 2], [3]], "user": "u1"})
        );
        let v: Value = serde_json::from_slice(&openai_body("id", &req, true)).unwrap();
        assert_eq!(v, json!({"model": "id", "input": [[1, 2], [3]]}));
    }
}
