//! Sanity checks for the recorded-traffic fixtures and the fake-upstream replay helper.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::fake_upstream::FakeUpstream;
use common::fixtures::{self, Exchange};

#[test]
fn every_fixture_loads() {
    let files = fixtures::all_fixture_files();
    assert!(
        files.len() >= 40,
        "expected the copied fixtures, found only {files:?}"
    );
    for rel in &files {
        let exchanges = fixtures::load(rel);
        assert!(!exchanges.is_empty(), "{rel}: no exchanges");
        for (i, ex) in exchanges.iter().enumerate() {
            assert!(ex.status >= 100, "{rel} #{i}: status {}", ex.status);
            assert!(
                !ex.response_body.is_empty(),
                "{rel} #{i}: empty response body"
            );
            assert!(!ex.method.is_empty(), "{rel} #{i}: no method");
            assert!(
                ex.path().starts_with('/'),
                "{rel} #{i}: path {:?}",
                ex.path()
            );
            if ex.is_sse() {
                let text = String::from_utf8_lossy(&ex.response_body);
                assert!(
                    text.lines().any(|l| l.starts_with("data:")),
                    "{rel} #{i}: SSE body without a data: line"
                );
                assert!(!ex.sse_data().is_empty(), "{rel} #{i}: sse_data() empty");
            } else if ex
                .response_header("content-type")
                .is_some_and(|ct| ct.contains("json"))
            {
                // Every JSON body must parse, either whole or (NDJSON streams, e.g. Ollama
                // Cloud serves them as application/json) line by line.
                if serde_json::from_slice::<serde_json::Value>(&ex.response_body).is_err() {
                    for line in String::from_utf8_lossy(&ex.response_body).lines() {
                        if !line.trim().is_empty() {
                            serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| {
                                panic!("{rel} #{i}: body is neither JSON nor NDJSON: {e}")
                            });
                        }
                    }
                }
            }
            if let Some(ct) = ex.request_header("content-type")
                && ct.contains("json")
                && ex.request_body.is_some()
            {
                assert!(
                    ex.request_json().is_some(),
                    "{rel} #{i}: request body is not JSON"
                );
            }
            // httprr bodies are byte-exact: the decoded body must match Content-Length.
            if rel.ends_with(".httprr")
                && let Some(cl) = ex.response_header("content-length")
            {
                assert_eq!(
                    cl.parse::<usize>().unwrap(),
                    ex.response_body.len(),
                    "{rel} #{i}: Content-Length mismatch"
                );
            }
        }
    }
}

#[test]
fn formats_parse_as_expected() {
    let basic = fixtures::load("openai/chat_basic.httprr");
    assert_eq!(basic.len(), 1);
    let ex = &basic[0];
    assert_eq!(ex.method, "POST");
    assert_eq!(ex.url, "https://api.openai.com/v1/chat/completions");
    assert_eq!(ex.path(), "/v1/chat/completions");
    assert_eq!(ex.status, 200);
    assert!(!ex.is_sse());
    assert_eq!(ex.request_json().unwrap()["model"], "gpt-3.5-turbo");
    assert_eq!(ex.response_json()["object"], "chat.completion");
    assert_eq!(ex.request_header("user-agent"), Some("langchaingo-httprr"));

    let stream = &fixtures::load("openai/chat_stream_include_usage.httprr")[0];
    assert!(stream.is_sse());
    assert_eq!(stream.sse_data().last().map(String::as_str), Some("[DONE]"));

    let or = fixtures::load("openrouter/stream_then_429.httprr");
    assert_eq!(or.len(), 2);
    assert_eq!(or[1].status, 429);
    assert_eq!(or[0].path(), "/api/v1/chat/completions");

    let groq = &fixtures::load("groq/chat_basic.yaml")[0];
    assert_eq!(groq.path(), "/openai/v1/chat/completions");
    assert_eq!(
        groq.response_json()["x_groq"]["id"],
        "req_01jr8hj0hzeq9b86xqb5dn7wqs"
    );
    assert_eq!(
        groq.request_json().unwrap()["model"],
        "llama-3.3-70b-versatile"
    );

    let mistral = &fixtures::load("mistral/stream_magistral_thinking.yaml")[0];
    assert_eq!(mistral.path(), "/v1/chat/completions");
    assert!(mistral.is_sse());

    let err = &fixtures::load("openai/error_400_unsupported_parameter.body.json")[0];
    assert_eq!(err.status, 400);
    assert_eq!(
        err.response_json()["error"]["code"],
        "unsupported_parameter"
    );

    let chunks = &fixtures::load("xai/stream_tool_call.chunks.txt")[0];
    assert!(chunks.is_sse());
    let data = chunks.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(data.iter().filter(|d| *d == "[DONE]").count(), 1);
    for d in &data[..data.len() - 1] {
        serde_json::from_str::<serde_json::Value>(d).expect("chunk is JSON");
    }
}

async fn post_json(url: &str, ex: &Exchange) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .json(&ex.request_json().expect("fixture has a JSON request"))
        .send()
        .await
        .expect("request to fake upstream")
}

#[tokio::test]
async fn fake_upstream_replays_chat_basic() {
    let ex = fixtures::load("openai/chat_basic.httprr").remove(0);
    let upstream = FakeUpstream::start().await;
    assert!(upstream.uri().starts_with("http://127.0.0.1:"));
    upstream.replay(&ex, "/v1/chat/completions").await;

    let resp = post_json(&format!("{}/v1/chat/completions", upstream.uri()), &ex).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "9999");
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.as_ref(), ex.response_body.as_slice());

    let received = upstream.received().await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].url.path(), "/v1/chat/completions");
    assert_eq!(received[0].method.as_str(), "POST");
    assert_eq!(upstream.last_json().await, ex.request_json().unwrap());
}

#[tokio::test]
async fn fake_upstream_replays_sequence_and_sse() {
    let exs = fixtures::load("openrouter/stream_then_429.httprr");
    let upstream = FakeUpstream::start().await;
    upstream
        .replay_sequence(&exs, "/api/v1/chat/completions")
        .await;
    let url = format!("{}/api/v1/chat/completions", upstream.uri());

    let first = post_json(&url, &exs[0]).await;
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(first.headers()["content-type"], "text/event-stream");
    assert_eq!(
        first.bytes().await.unwrap().as_ref(),
        exs[0].response_body.as_slice()
    );

    let second = post_json(&url, &exs[1]).await;
    assert_eq!(second.status().as_u16(), 429);
    assert_eq!(second.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(
        second.bytes().await.unwrap().as_ref(),
        exs[1].response_body.as_slice()
    );

    assert_eq!(post_json(&url, &exs[1]).await.status().as_u16(), 404);
    assert_eq!(upstream.received().await.len(), 3);
}

#[tokio::test]
async fn fake_upstream_delay() {
    let ex = fixtures::load("xai/chat_tool_call.body.json").remove(0);
    let upstream = FakeUpstream::start().await;
    upstream
        .replay_with_delay(&ex, "/v1/chat/completions", Duration::from_millis(300))
        .await;
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", upstream.uri()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        ex.response_body.as_slice()
    );
}
