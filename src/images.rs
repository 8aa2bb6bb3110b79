//! Fetching http(s) image URLs for upstreams that only take inline images.
//!
//! OpenAI clients may send `image_url.url = "https://..."`. Anthropic and OpenAI-compatible
//! upstreams take the URL as is; Gemini (except its own Files API URIs) and Ollama servers take
//! only inline bytes, so the URL "must be fetched and inlined" (WIRE.md §7.3). llm-relay does that
//! before encoding, only for those targets: GET with redirects (at most 5), a total timeout, a size
//! cap ([`MAX_IMAGE_BYTES`]), and the media type sniffed from the bytes (PNG, JPEG, GIF, WebP;
//! anything else is refused). Turned off with `IMAGE_URL_FETCH=false` (then such requests get a
//! 400 asking for inline data), for deployments whose clients must not make the server fetch
//! URLs.

use std::time::Duration;

use base64::Engine;

use crate::canonical::{ChatRequest, ContentPart};
use crate::error::ApiError;

/// Largest image fetched from a URL: 20 MiB (Gemini's limit for a whole inline request is 20 MB;
/// Ollama has none).
pub const MAX_IMAGE_BYTES: usize = 20 * 1024 * 1024;

/// Longest time one image fetch may take, headers and body: 30 s.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Most redirects followed for one image.
const MAX_REDIRECTS: usize = 5;

/// The HTTP client for image fetches: its own (the upstream client follows no redirects), with
/// redirects capped and the connect timeout of the upstream client.
///
/// Errors: the TLS backend cannot be initialised.
pub fn client(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .connect_timeout(connect_timeout)
        .timeout(FETCH_TIMEOUT)
        .tcp_nodelay(true)
        .build()
}

/// Whether `req` carries an http(s) image URL that `takes_url` refuses.
pub fn needs_fetch(req: &ChatRequest, takes_url: impl Fn(&str) -> bool) -> bool {
    req.messages
        .iter()
        .flat_map(|m| &m.content)
        .any(|p| matches!(p, ContentPart::ImageUrl(u) if !takes_url(u)))
}

/// A copy of `req` whose image URLs that `takes_url` refuses are replaced by the fetched images
/// (`ContentPart::Image`, standard base64, sniffed media type). Fetches run one after another,
/// in message order.
///
/// Errors (400, the URL being the client's): fetching is turned off (`enabled == false`), the URL
/// is not http(s), the fetch fails or times out, the server answers a non-2xx status, the body is
/// larger than [`MAX_IMAGE_BYTES`], or it is not a PNG, JPEG, GIF or WebP image.
pub async fn inline_urls(
    client: &reqwest::Client,
    enabled: bool,
    req: &ChatRequest,
    takes_url: impl Fn(&str) -> bool,
) -> Result<ChatRequest, ApiError> {
    let mut out = req.clone();
    for part in out.messages.iter_mut().flat_map(|m| m.content.iter_mut()) {
        if let ContentPart::ImageUrl(url) = part
            && !takes_url(url)
        {
            if !enabled {
                return Err(ApiError::BadRequest(
                    "this model takes images inline only and fetching image URLs is turned off \
                     here (IMAGE_URL_FETCH=false): send the image as base64 (a data: URL)"
                        .into(),
                ));
            }
            *part = fetch(client, url).await?;
        }
    }
    Ok(out)
}

/// GET one image. The URL is named in errors without its query string (which may carry a
/// signature or token).
async fn fetch(client: &reqwest::Client, url: &str) -> Result<ContentPart, ApiError> {
    let shown = url.split(['?', '#']).next().unwrap_or(url);
    let bad = |why: String| ApiError::BadRequest(format!("image {shown}: {why}"));
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(bad("only http(s) and data: URLs are accepted".into()));
    }
    let resp = client.get(url).send().await.map_err(|e| {
        bad(if e.is_timeout() {
            format!("no answer within {} s", FETCH_TIMEOUT.as_secs())
        } else {
            "could not be fetched".into()
        })
    })?;
    if !resp.status().is_success() {
        return Err(bad(format!("the server answered {}", resp.status())));
    }
    let bytes = crate::instances::read_limited(resp, MAX_IMAGE_BYTES, "the image")
        .await
        .map_err(bad)?;
    let media_type = crate::frontend::image_type(&bytes)
        .ok_or_else(|| bad("not a PNG, JPEG, GIF or WebP image".into()))?;
    Ok(ContentPart::Image {
        media_type: media_type.to_string(),
        data: base64::engine::general_purpose::STANDARD.encode(&bytes),
    })
}
