//! Streams pass through chunk by chunk: a paced upstream sends its first SSE event and then waits
//! until the test has seen that event arrive at the client. If llm-relay buffered the stream,
//! the first event would never arrive before the upstream finishes and the test would time out.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::relay::Relay;
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

fn chunk(data: &str) -> Vec<u8> {
    let event = format!("data: {data}\n\n");
    format!("{:x}\r\n{event}\r\n", event.len()).into_bytes()
}

/// A one-shot upstream on 127.0.0.1 that streams "first", waits for `release`, then "second".
async fn paced_upstream(release: oneshot::Receiver<()>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        sock.set_nodelay(true).unwrap();
        // Read the request head and body (Content-Length framed; llm-relay sends a JSON body).
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        loop {
            let n = sock.read(&mut tmp).await.unwrap();
            buf.extend_from_slice(&tmp[..n]);
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..pos]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buf.len() >= pos + 4 + len {
                    break;
                }
            }
        }
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        sock.write_all(head.as_bytes()).await.unwrap();
        let ev = |content: &str| {
            json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
            .to_string()
        };
        sock.write_all(&chunk(&ev("first"))).await.unwrap();
        sock.flush().await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(10), release).await;
        sock.write_all(&chunk(&ev("second"))).await.unwrap();
        let fin = json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
        sock.write_all(&chunk(&fin.to_string())).await.unwrap();
        sock.write_all(&chunk("[DONE]")).await.unwrap();
        sock.write_all(b"0\r\n\r\n").await.unwrap();
        sock.flush().await.unwrap();
    });
    format!("http://{addr}")
}

async fn first_arrives_before_upstream_continues(path: &str, body: serde_json::Value) {
    let (tx, rx) = oneshot::channel();
    let base = paced_upstream(rx).await;
    let relay = Relay::start(&[("openai", base)]).await;
    let resp = relay.post(path, &body).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    let got_first = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(Ok(b)) = stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&b));
            if seen.contains("first") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        got_first,
        Ok(true),
        "{path}: the first upstream chunk was held back; got so far: {seen:?}"
    );
    assert!(!seen.contains("second"));
    tx.send(()).unwrap();
    while let Some(Ok(b)) = stream.next().await {
        seen.push_str(&String::from_utf8_lossy(&b));
    }
    assert!(seen.contains("second"), "{seen}");
}

#[tokio::test]
async fn openai_stream_is_not_buffered() {
    first_arrives_before_upstream_continues(
        "/v1/chat/completions",
        json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
}

#[tokio::test]
async fn ollama_stream_is_not_buffered() {
    first_arrives_before_upstream_continues(
        "/api/chat",
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
}
