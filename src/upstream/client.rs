//! The one HTTP client for all upstreams, and the request path shared by every dialect:
//! auth header by the provider's `AuthStyle`, extra headers, status handling, timeouts.
//!
//! One `reqwest::Client` (connection pool, HTTP/2, rustls) built at startup with TCP_NODELAY (without
//! it loopback latency jumps to ~40 ms through Nagle + delayed ACK), a connect timeout and an idle
//! read timeout that also bounds the gap between stream chunks, never a total deadline.

use futures_util::StreamExt;

use super::{ByteStream, Dialect};
use crate::catalog::{AuthStyle, ModelId};
use crate::config::Config;
use crate::error::ApiError;

/// Build the shared client.
///
/// Errors: the TLS backend cannot initialise (reported at startup).
pub fn build(config: &Config) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        // A redirect would turn the POST into a GET and could carry the key to another host.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("llm-relay/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Map a transport error to the API error a client should see (timeout 504, connect 502).
pub fn transport_error(provider: &'static str, e: &reqwest::Error, config: &Config) -> ApiError {
    // The cause chain names the URL and the OS error (never a header, so never a key).
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause.push_str(": ");
        cause.push_str(&s.to_string());
        source = s.source();
    }
    tracing::warn!(provider, cause, "upstream request failed");
    if e.is_timeout() {
        ApiError::UpstreamTimeout {
            provider,
            after: config.read_timeout,
        }
    } else if e.is_connect() {
        ApiError::UpstreamUnreachable {
            provider,
            reason: "connection failed".into(),
        }
    } else {
        // reqwest's Display can include the URL but never headers; keep only the kind.
        let kind = if e.is_body() || e.is_decode() {
            "response body interrupted"
        } else {
            "request failed"
        };
        ApiError::UpstreamUnreachable {
            provider,
            reason: kind.into(),
        }
    }
}

/// Most bytes of a non-streamed upstream answer llm-relay reads: 4 x `MAX_BODY_BYTES` (128 MiB
/// by default; the largest real answers, 2,048 embeddings of 3,072 floats, are ~80 MB). A larger
/// (or endless) answer is a 502 instead of memory growing until the process dies.
pub fn max_answer_bytes(config: &Config) -> usize {
    config.max_body_bytes.saturating_mul(4)
}

/// A 2xx upstream response, not yet read.
pub struct Upstream {
    /// Provider name.
    pub provider: &'static str,
    /// The response.
    pub response: reqwest::Response,
}

/// Send `body` to `path` of the model's provider and check the status.
///
/// Errors: no key configured (503), transport failures (502/504), non-2xx upstream status (kept,
/// with the upstream's message and `Retry-After`).
pub async fn send(
    client: &reqwest::Client,
    config: &Config,
    dialect: &dyn Dialect,
    model: ModelId,
    path: &str,
    body: Vec<u8>,
) -> Result<Upstream, ApiError> {
    let info = model.provider();
    let provider = info.name;
    let pc = config.provider(info.id);
    let key = pc.and_then(|p| p.api_key.as_deref());
    let base = pc.map_or(info.base_url, |p| p.base_url.as_str());
    let rb = match upstream_url(base, path) {
        Ok(url) => client.post(url),
        Err(text) => client.post(text),
    };
    let mut rb = rb
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    match (info.auth, key) {
        (AuthStyle::None, _) => {}
        (_, None) => {
            return Err(ApiError::ProviderNotConfigured {
                provider,
                env: info.api_key_env.unwrap_or("API_KEY"),
            });
        }
        (AuthStyle::Bearer, Some(k)) => rb = rb.bearer_auth(k),
        (AuthStyle::XApiKey, Some(k)) => rb = rb.header("x-api-key", k),
        (AuthStyle::XGoogApiKey, Some(k)) => rb = rb.header("x-goog-api-key", k),
    }
    for (k, v) in info.headers {
        rb = rb.header(*k, *v);
    }
    send_request(rb, provider, dialect, config).await
}

/// Most distinct upstream URLs kept parsed per worker thread (providers x paths, plus Ollama
/// instances); the cache is emptied when it would grow past this.
const URL_CACHE_MAX: usize = 256;

thread_local! {
    /// Parsed upstream URLs by their text. reqwest parses a `&str`/`String` URL on every request
    /// (~20,000 instructions with the host's IDNA processing: 7% of a relayed non-streamed
    /// request, callgrind); a parsed `Url` is only cloned.
    static URLS: std::cell::RefCell<std::collections::HashMap<String, reqwest::Url>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// `base` + `path` as a parsed URL, from the per-thread cache. A text that does not parse is
/// passed on as text, so reqwest reports it as before.
fn upstream_url(base: &str, path: &str) -> Result<reqwest::Url, String> {
    let text = format!("{base}{path}");
    URLS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(url) = cache.get(&text) {
            return Ok(url.clone());
        }
        let Ok(url) = reqwest::Url::parse(&text) else {
            return Err(text);
        };
        if cache.len() >= URL_CACHE_MAX {
            cache.clear();
        }
        cache.insert(text, url.clone());
        Ok(url)
    })
}

/// Send a prepared request (URL, auth, body set) and check the status: the part of [`send`]
/// shared with upstreams that are not catalog providers (Ollama instances).
///
/// Errors: transport failures (502/504), non-2xx upstream status (kept, with the upstream's
/// message and `Retry-After`).
pub async fn send_request(
    rb: reqwest::RequestBuilder,
    provider: &'static str,
    dialect: &dyn Dialect,
    config: &Config,
) -> Result<Upstream, ApiError> {
    let response = rb
        .send()
        .await
        .map_err(|e| transport_error(provider, &e, config))?;
    let status = response.status();
    if status.is_success() {
        return Ok(Upstream { provider, response });
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Error bodies are small; cap what we read so a misbehaving upstream cannot exhaust memory.
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk);
        if body.len() > 64 * 1024 {
            break;
        }
    }
    let retry_after = retry_after.or_else(|| dialect.retry_after(&body));
    let code = status.as_u16();
    let (error_code, param) = dialect.error_code_param(&body);
    Err(ApiError::Upstream {
        code: error_code,
        param,
        provider,
        status: if (400..=599).contains(&code) {
            code
        } else {
            502
        },
        message: dialect.error_message(&body),
        retry_after,
    })
}

impl Upstream {
    /// The body as a stream of chunks, transport errors mapped.
    pub fn into_stream(self, config: &Config) -> ByteStream {
        let provider = self.provider;
        let read_timeout = config.read_timeout;
        Box::pin(self.response.bytes_stream().map(move |r| {
            r.map_err(|e| {
                if e.is_timeout() {
                    ApiError::UpstreamTimeout {
                        provider,
                        after: read_timeout,
                    }
                } else {
                    ApiError::UpstreamUnreachable {
                        provider,
                        reason: "stream interrupted".into(),
                    }
                }
            })
        }))
    }

    /// The whole body (non-streamed responses). A body that arrives in one piece (the usual
    /// case) is returned without a copy.
    ///
    /// Errors: transport failures (502/504); an answer larger than [`max_answer_bytes`] (502).
    pub async fn into_bytes(self, config: &Config) -> Result<bytes::Bytes, ApiError> {
        let provider = self.provider;
        let limit = max_answer_bytes(config);
        let too_large = || ApiError::UpstreamInvalid {
            provider,
            reason: format!("answer larger than {limit} bytes"),
        };
        let mut response = self.response;
        let declared = response.content_length();
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut next = async || {
            response
                .chunk()
                .await
                .map_err(|e| transport_error(provider, &e, config))
        };
        let Some(first) = next().await? else {
            return Ok(bytes::Bytes::new());
        };
        if first.len() > limit {
            return Err(too_large());
        }
        let Some(second) = next().await? else {
            return Ok(first);
        };
        // Sized once when the length is declared (no doubling copies of a large answer).
        let size = declared.map_or(first.len() + second.len(), |n| n as usize);
        let mut body = bytes::BytesMut::with_capacity(size.min(limit));
        body.extend_from_slice(&first);
        let mut chunk = second;
        loop {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
            match next().await? {
                Some(c) => chunk = c,
                None => return Ok(body.freeze()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_are_parsed_once_and_bad_ones_passed_on_as_text() {
        let first = upstream_url("http://127.0.0.1:9/v1", "/chat/completions").unwrap();
        assert_eq!(first.as_str(), "http://127.0.0.1:9/v1/chat/completions");
        let again = upstream_url("http://127.0.0.1:9/v1", "/chat/completions").unwrap();
        assert_eq!(again, first);
        let other = upstream_url("http://127.0.0.1:9/v1", "/embeddings").unwrap();
        assert_eq!(other.path(), "/v1/embeddings");
        assert_eq!(
            upstream_url("not a url", "/x").unwrap_err(),
            "not a url/x".to_string()
        );
    }
}
