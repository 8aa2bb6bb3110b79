//! Client-facing APIs: each module decodes its wire format into the canonical model, calls
//! [`crate::relay`], and encodes the answer (and errors) back in the same format.
//!
//! Shared here: bounded body reading, batching of stream events into writes, JSON decoding with
//! client-readable errors, image handling (media type sniffed from the bytes, not assumed),
//! timestamps.

pub mod anthropic;
pub mod ollama;
pub mod openai;
pub mod responses;

use base64::Engine;
use futures_util::Stream;
use poem::Body;
use serde::de::DeserializeOwned;

use crate::canonical::ContentPart;
use crate::error::ApiError;

/// A model a client can use now, by where it comes from: the one selection behind the model
/// lists of all three APIs (`GET /v1/models` in OpenAI's and Anthropic's shape, `GET /api/tags`).
pub(crate) enum UsableModel {
    /// A catalog model of an enabled provider.
    Catalog(crate::catalog::ModelId),
    /// A model of an Ollama instance, under one of its spellings.
    Instance(crate::instances::Listed),
    /// A custom model (admin UI), listed as `provider/id`.
    Custom {
        /// Its provider.
        provider: String,
        /// Its id at the provider.
        id: String,
    },
}

impl UsableModel {
    /// The name a client puts in `model` in the OpenAI and Anthropic APIs.
    pub fn id(&self) -> String {
        match self {
            UsableModel::Catalog(m) => m.info().id.to_string(),
            UsableModel::Instance(l) => l.openai_id().to_string(),
            UsableModel::Custom { provider, id } => format!("{provider}/{id}"),
        }
    }

    /// Its owner in OpenAI's list: provider, Ollama instance or custom provider.
    pub fn owned_by(&self) -> &str {
        match self {
            UsableModel::Catalog(m) => m.info().provider.name(),
            UsableModel::Instance(l) => l.model.instance,
            UsableModel::Custom { provider, .. } => provider,
        }
    }

    /// Unix seconds (0 for catalog and custom models, which carry no date).
    pub fn created(&self) -> i64 {
        match self {
            UsableModel::Instance(l) => l.model.modified_unix(),
            UsableModel::Catalog(_) | UsableModel::Custom { .. } => 0,
        }
    }
}

/// The models a client can use now, in list order: catalog models of enabled providers that are
/// not disabled at runtime, Ollama-instance models not disabled, then custom models. Starts a
/// background re-discovery of the Ollama instances, so a just-pulled model shows up on the next
/// listing.
pub(crate) fn usable_models(state: &crate::relay::AppState) -> Vec<UsableModel> {
    let snap = state.overrides.load();
    let mut out: Vec<UsableModel> = crate::catalog::ModelId::all()
        .filter(|m| state.config.is_enabled(m.info().provider) && !snap.is_disabled(*m))
        .map(UsableModel::Catalog)
        .collect();
    out.extend(
        state
            .instances
            .snapshot()
            .listed()
            .iter()
            .filter(|l| !snap.instance_disabled(l.model.instance, &l.model.model))
            .map(|l| UsableModel::Instance(l.clone())),
    );
    out.extend(
        snap.custom_routes()
            .into_iter()
            .map(|(c, r)| UsableModel::Custom {
                provider: r.provider.to_string(),
                id: c.id.clone(),
            }),
    );
    state.instances.refresh_soon(&state.client);
    out
}

/// Read a request body up to `limit` bytes and decode it as JSON.
///
/// Errors: too large (413), unreadable, empty, malformed JSON or wrong shape (400, with serde's
/// description of the field and position).
pub async fn read_json<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, ApiError> {
    let bytes = read_request_body(body, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "request body is empty: expected a JSON object".into(),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::from_json(&e))
}

/// Most bytes of an oversized body still read (and discarded) after the limit is passed, before
/// the 413 goes out.
pub const DRAIN_BYTES: usize = 1 << 20;

/// Longest time spent reading those bytes.
pub const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a request body could not be read ([`read_body_limited`]).
#[derive(Debug)]
pub enum BodyError {
    /// More than the limit, bytes.
    TooLarge,
    /// The connection failed while reading (the transport's message).
    Read(String),
}

/// The body's bytes, at most `limit` of them. A body that arrives in one chunk (the usual case:
/// a request that fits the server's read buffer) is returned as is, without a copy. Used by the
/// API frontends and the admin API alike.
///
/// An oversized body is read on, and discarded, for up to [`DRAIN_BYTES`] and [`DRAIN_TIME`]
/// before the caller answers 413: a client still sending when the server closes the connection
/// with unread data gets a TCP reset instead of the answer (seen as a connection error by the
/// SDKs, and as a flaky `tests/faults.rs` under load); past those bounds the connection is
/// closed anyway, as nginx's lingering close does.
///
/// Errors: more than `limit` bytes ([`BodyError::TooLarge`]), a read error ([`BodyError::Read`]).
pub async fn read_body_limited(body: Body, limit: usize) -> Result<bytes::Bytes, BodyError> {
    use futures_util::StreamExt;
    let mut stream = std::pin::pin!(body.into_bytes_stream());
    let mut chunks: Vec<bytes::Bytes> = Vec::new();
    let mut len = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        len += chunk.len();
        if len > limit {
            let _ = tokio::time::timeout(DRAIN_TIME, async {
                let mut drained = 0usize;
                while let Some(Ok(c)) = stream.next().await {
                    drained += c.len();
                    if drained > DRAIN_BYTES {
                        break;
                    }
                }
            })
            .await;
            return Err(BodyError::TooLarge);
        }
        chunks.push(chunk);
    }
    Ok(match chunks.len() {
        0 => bytes::Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => chunks.concat().into(),
    })
}

/// [`read_body_limited`] with the API frontends' errors: 413 past `limit`, 400 on a read error.
async fn read_request_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    read_body_limited(body, limit).await.map_err(|e| match e {
        BodyError::TooLarge => ApiError::PayloadTooLarge { limit },
        BodyError::Read(e) => ApiError::BadRequest(format!("cannot read request body: {e}")),
    })
}

/// Most events encoded into one response write (only events that are already available).
pub(crate) const STREAM_BATCH: usize = 64;

/// Scheduler rounds [`ready_batches`] waits, in a row, for a next event that is not ready yet.
const BATCH_YIELDS: u32 = 2;

/// Batches of the items of `stream` that are available now, at most `max` each, for one
/// response write per batch: [`StreamExt::ready_chunks`], but when nothing more is ready it
/// yields to the runtime (up to [`BATCH_YIELDS`] times in a row) and looks again before closing
/// the batch.
///
/// Why: an upstream body arrives through hyper's connection task one HTTP chunk per hand-off,
/// so right after one event is taken the next is never "ready" yet, even when the socket already
/// holds the whole stream; `ready_chunks` then wrote (and the client was woken for) every event
/// separately: 21 `sendto` calls for a 20-token burst. Yielding lets the connection task decode
/// the next chunk first. Measured (benches/load fake, 20-chunk streams, c=32): batches of 1
/// with `ready_chunks` or one yield, 18 + 2 with two, and CPU per stream 220 -> 143 µs. When
/// events arrive one by one (a live model), a batch is one event and the yields cost two
/// scheduler rounds (microseconds), never a wait for more data.
pub(crate) fn ready_batches<S>(stream: S, max: usize) -> impl Stream<Item = Vec<S::Item>> + Send
where
    S: Stream + Send + Unpin,
    S::Item: Send,
{
    use futures_util::{FutureExt, StreamExt};
    futures_util::stream::unfold(Some(stream), move |state| async move {
        let mut s = state?;
        let mut batch = vec![s.next().await?];
        let mut ended = false;
        let mut yielded = 0u32;
        while batch.len() < max {
            match s.next().now_or_never() {
                Some(Some(item)) => {
                    batch.push(item);
                    yielded = 0;
                }
                Some(None) => {
                    ended = true;
                    break;
                }
                None if yielded >= BATCH_YIELDS => break,
                None => {
                    tokio::task::yield_now().await;
                    yielded += 1;
                }
            }
        }
        Some((batch, (!ended).then_some(s)))
    })
}

/// Media types every upstream dialect accepts for inline images.
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// The media type of an image from its first bytes (the `infer` crate's magic numbers), if it is
/// one every upstream dialect accepts (PNG, JPEG, GIF, WebP).
pub fn image_type(bytes: &[u8]) -> Option<&'static str> {
    infer::get(bytes).and_then(|t| IMAGE_TYPES.iter().copied().find(|m| *m == t.mime_type()))
}

/// Sniff the image type from the first bytes of base64 `data` (the `infer` crate's magic numbers).
///
/// Errors: the data does not start with valid base64 (400).
fn sniff(data: &str) -> Result<Option<&'static str>, ApiError> {
    // 64 base64 characters decode to 48 bytes, enough for every signature we accept.
    let head: String = data
        .chars()
        .filter(|c| !c.is_whitespace())
        .take(64)
        .collect();
    if !head.is_ascii() {
        return Err(ApiError::BadRequest(
            "image data is not valid base64".into(),
        ));
    }
    let head = head.trim_end_matches('=');
    let head = &head[..head.len() - head.len() % 4];
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(head)
        .map_err(|_| ApiError::BadRequest("image data is not valid base64".into()))?;
    if bytes.is_empty() {
        return Err(ApiError::BadRequest("image data is empty".into()));
    }
    Ok(image_type(&bytes))
}

/// A base64 image without a declared type (Ollama `images`): the type is sniffed.
///
/// Errors: not base64, or not PNG/JPEG/GIF/WebP (400).
pub fn image_from_base64(data: &str) -> Result<ContentPart, ApiError> {
    let data = data.trim();
    let media_type = sniff(data)?.ok_or_else(|| {
        ApiError::BadRequest("image is not a base64-encoded PNG, JPEG, GIF or WebP".into())
    })?;
    Ok(ContentPart::Image {
        media_type: media_type.into(),
        data: data.to_string(),
    })
}

/// An OpenAI `image_url.url`: a `data:<mime>;base64,<data>` URL (type sniffed from the bytes,
/// the declared type used only when sniffing fails) or an http(s) URL passed on as is.
///
/// Errors: another scheme, or a data URL that is not base64 (400).
pub fn image_from_url(url: &str) -> Result<ContentPart, ApiError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| ApiError::BadRequest("malformed data URL in image_url".into()))?;
        if !meta.ends_with(";base64") {
            return Err(ApiError::BadRequest(
                "image data URLs must be base64-encoded".into(),
            ));
        }
        let declared = meta.trim_end_matches(";base64");
        let media_type = match sniff(data)? {
            Some(t) => t.to_string(),
            None if IMAGE_TYPES.contains(&declared) => declared.to_string(),
            None => {
                return Err(ApiError::BadRequest(
                    "image is not a PNG, JPEG, GIF or WebP".into(),
                ));
            }
        };
        return Ok(ContentPart::Image {
            media_type,
            data: data.to_string(),
        });
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(ContentPart::ImageUrl(url.to_string()));
    }
    Err(ApiError::BadRequest(
        "image_url must be an http(s) URL or a base64 data URL".into(),
    ))
}

/// Current time as RFC 3339 with nanoseconds, UTC (`2025-07-07T20:22:19.184789Z`), as Go's
/// `time.Time` JSON that Ollama clients parse.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Current Unix time, seconds.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A body of `n` chunks of 1 KiB that counts how many were read.
    fn counted_body(n: usize) -> (Body, Arc<AtomicUsize>) {
        let pulled = Arc::new(AtomicUsize::new(0));
        let p = Arc::clone(&pulled);
        let chunks = futures_util::stream::iter(0..n).map(move |_| {
            p.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1024]))
        });
        (Body::from_bytes_stream(chunks), pulled)
    }

    /// A stream fed like hyper's response body: a producer task hands over one item at a time and
    /// can only put the next one in after the consumer took the last (a one-slot channel).
    fn handed_over(n: u32) -> impl Stream<Item = u32> + Send + Unpin {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for i in 0..n {
                if tx.send(i).await.is_err() {
                    return;
                }
            }
        });
        tokio_stream_from(rx)
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<u32>,
    ) -> impl Stream<Item = u32> + Send + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }

    #[tokio::test]
    async fn ready_batches_gathers_what_a_one_slot_hand_off_already_holds() {
        // What `ready_chunks` does with such a stream: one item per batch, so one write each.
        let singles: Vec<Vec<u32>> = handed_over(20).ready_chunks(STREAM_BATCH).collect().await;
        assert_eq!(singles.len(), 20, "{singles:?}");
        // `ready_batches` waits a scheduler round or two for the producer: far fewer writes, and
        // every item once, in order.
        let batches: Vec<Vec<u32>> = ready_batches(handed_over(20), STREAM_BATCH).collect().await;
        assert!(batches.len() <= 3, "{batches:?}");
        assert_eq!(batches.concat(), (0..20).collect::<Vec<_>>());
        // The cap holds.
        let capped: Vec<Vec<u32>> = ready_batches(handed_over(20), 8).collect().await;
        assert!(capped.iter().all(|b| b.len() <= 8), "{capped:?}");
        assert_eq!(capped.concat(), (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn an_oversized_body_is_read_to_its_end_within_the_drain_bound_then_413() {
        // 400 KiB against 256 KiB: the rest is read too, so the client is not reset mid-send.
        let (body, pulled) = counted_body(400);
        let err = read_request_body(body, 256 * 1024).await.unwrap_err();
        assert!(matches!(err, ApiError::PayloadTooLarge { limit } if limit == 256 * 1024));
        assert_eq!(pulled.load(Ordering::SeqCst), 400);
        // 4 MiB: reading stops a little past DRAIN_BYTES beyond the limit.
        let (body, pulled) = counted_body(4096);
        assert!(read_request_body(body, 256 * 1024).await.is_err());
        let read = pulled.load(Ordering::SeqCst);
        assert!(
            (256 + 1024..256 + 1024 + 8).contains(&read),
            "{read} chunks read"
        );
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_whole_and_one_chunk_is_not_copied() {
        let (body, _) = counted_body(3);
        assert_eq!(
            read_request_body(body, 3 * 1024).await.unwrap().len(),
            3 * 1024
        );
        let one = bytes::Bytes::from(vec![b'x'; 100]);
        let got = read_request_body(Body::from_bytes(one.clone()), 100)
            .await
            .unwrap();
        assert_eq!(got.as_ptr(), one.as_ptr());
    }

    // 1x1 PNG and the first bytes of a JPEG, base64.
    const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    const JPEG: &str = "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////////////////////////////////////";

    #[test]
    fn sniffs_png_and_jpeg_not_assumed() {
        assert_eq!(
            image_from_base64(PNG).ok(),
            Some(ContentPart::Image {
                media_type: "image/png".into(),
                data: PNG.into()
            })
        );
        let jpeg = image_from_base64(JPEG).ok();
        assert!(
            matches!(jpeg, Some(ContentPart::Image { ref media_type, .. }) if media_type == "image/jpeg")
        );
    }

    #[test]
    fn data_url_declared_type_is_corrected_by_sniffing() {
        let part = image_from_url(&format!("data:image/jpeg;base64,{PNG}")).ok();
        assert!(
            matches!(part, Some(ContentPart::Image { ref media_type, .. }) if media_type == "image/png")
        );
    }

    #[test]
    fn rejects_non_images() {
        assert!(image_from_base64("aGVsbG8gd29ybGQ=").is_err());
        assert!(image_from_url("ftp://x/y.png").is_err());
    }
}
