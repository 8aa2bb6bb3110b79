//! The Anthropic and Gemini stream decoders against every recorded stream, cut and re-chunked:
//! whatever byte boundaries the network produces (down to one byte per read, CRLF split in two),
//! the events are the same; a body cut anywhere before its end gives events then exactly one
//! error, never a silent `Finish` and never a hang; the whole body ends with exactly one `Finish`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::fixtures::{all_fixture_files, load};
use futures_util::StreamExt;
use llm_relay::canonical::StreamEvent;
use llm_relay::catalog::{PROVIDERS, WireFamily, dialect};
use llm_relay::error::ApiError;
use llm_relay::upstream::split_call_id;

/// Decode `body` delivered in pieces of `chunk` bytes.
async fn decode(
    family: WireFamily,
    body: &[u8],
    chunk: usize,
) -> Vec<Result<StreamEvent, ApiError>> {
    let p = PROVIDERS.iter().find(|p| p.wire == family).unwrap();
    let pieces: Vec<Result<Bytes, ApiError>> = body
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stream = dialect(p.id).decode_stream(p.name, Box::pin(futures_util::stream::iter(pieces)));
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.collect::<Vec<_>>(),
    )
    .await
    .expect("the decoder hung")
}

/// The events, with generated call ids reduced to the signature they carry (ids Gemini does not
/// give are random `call_` ids).
fn ok_events(items: &[Result<StreamEvent, ApiError>]) -> Vec<StreamEvent> {
    items
        .iter()
        .filter_map(|i| i.as_ref().ok().cloned())
        .map(|e| match e {
            StreamEvent::ToolCallDelta {
                index,
                id: Some(id),
                name,
                arguments,
            } if id.starts_with("call_") => StreamEvent::ToolCallDelta {
                index,
                id: Some(split_call_id(&id).1.unwrap_or("<generated>").to_string()),
                name,
                arguments,
            },
            other => other,
        })
        .collect()
}

#[tokio::test]
async fn recorded_streams_survive_any_chunking_and_any_cut() {
    let mut checked = 0;
    for file in all_fixture_files() {
        let family = match file.split('/').next().unwrap() {
            "anthropic" => WireFamily::Anthropic,
            "gemini" => WireFamily::Gemini,
            _ => continue,
        };
        for ex in load(&file)
            .into_iter()
            .filter(|e| e.status == 200 && e.is_sse())
        {
            let body = &ex.response_body;
            let whole = decode(family, body, body.len()).await;
            assert!(whole.iter().all(Result::is_ok), "{file}: {whole:?}");
            let finishes = whole
                .iter()
                .filter(|e| matches!(e, Ok(StreamEvent::Finish(_))))
                .count();
            assert_eq!(finishes, 1, "{file}");
            assert!(
                matches!(whole.last(), Some(Ok(StreamEvent::Finish(_)))),
                "{file}"
            );

            for chunk in [1, 2, 3, 7, 64] {
                let items = decode(family, body, chunk).await;
                assert_eq!(
                    ok_events(&items),
                    ok_events(&whole),
                    "{file}: chunks of {chunk}"
                );
            }

            // Every cut short of the last event: events so far, then one error.
            let step = (body.len() / 40).max(1);
            let end_of_last_event = body.len()
                - body
                    .iter()
                    .rev()
                    .take_while(|b| b.is_ascii_whitespace())
                    .count();
            let last_event_start = String::from_utf8_lossy(&body[..end_of_last_event])
                .rfind("data:")
                .unwrap();
            for cut in (0..last_event_start).step_by(step) {
                let items = decode(family, &body[..cut], 5).await;
                let last = items
                    .last()
                    .unwrap_or_else(|| panic!("{file}: nothing at cut {cut}"));
                assert!(last.is_err(), "{file}: cut at {cut} ended with {last:?}");
                assert_eq!(
                    items.iter().filter(|i| i.is_err()).count(),
                    1,
                    "{file} cut {cut}"
                );
                assert!(
                    !items
                        .iter()
                        .any(|i| matches!(i, Ok(StreamEvent::Finish(_)))),
                    "{file}: cut at {cut} finished normally"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} recorded streams");
}
