//! Client-facing APIs: each module decodes its wire format into the canonical model, calls
//! [`crate::relay`], and encodes the answer (and errors) back in the same format.
//!
//! Shared here: bounded body reading, JSON decoding with client-readable errors, image
//! handling (media type sniffed from the bytes, not assumed), timestamps.

pub mod anthropic;
pub mod ollama;
pub mod openai;

use base64::Engine;
use poem::Body;
use serde::de::DeserializeOwned;

use crate::canonical::ContentPart;
use crate::error::ApiError;

/// Read a request body up to `limit` bytes and decode it as JSON.
///
/// Errors: too large (413), unreadable, empty, malformed JSON or wrong shape (400, with serde's
/// description of the field and position).
pub async fn read_json<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, ApiError> {
    let bytes = body.into_bytes_limit(limit).await.map_err(|e| match e {
        poem::error::ReadBodyError::PayloadTooLarge => ApiError::PayloadTooLarge { limit },
        other => ApiError::BadRequest(format!("cannot read request body: {other}")),
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "request body is empty: expected a JSON object".into(),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::from_json(&e))
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
