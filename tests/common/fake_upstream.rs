//! A fake provider on 127.0.0.1 (wiremock) that answers with recorded exchanges.
//!
//! Note: wiremock sends each body in one piece after the (optional) delay; SSE bodies are
//! replayed byte-exact but not paced chunk by chunk.

use std::time::Duration;

use wiremock::matchers::{method, path as path_matcher};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::fixtures::Exchange;

/// Response headers that describe the recorded connection/encoding rather than the content;
/// hyper recomputes framing for the replayed body, so these are never replayed.
const SKIPPED_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "content-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

pub struct FakeUpstream {
    pub server: MockServer,
}

impl FakeUpstream {
    /// Start a mock server bound to `127.0.0.1:<random port>`.
    pub async fn start() -> Self {
        Self {
            server: MockServer::start().await,
        }
    }

    /// Base URI, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Answer every `<ex.method> <path>` request (all copied fixtures are POST) with the recorded
    /// status, headers and body of `ex`. `path` is matched exactly (no query), e.g.
    /// `ex.path()` or a custom one like `/v1/chat/completions`.
    pub async fn replay(&self, ex: &Exchange, path: &str) {
        self.mount(ex, path, None, None).await;
    }

    /// Like [`replay`](Self::replay) but the whole response is held back for `delay`.
    pub async fn replay_with_delay(&self, ex: &Exchange, path: &str, delay: Duration) {
        self.mount(ex, path, Some(delay), None).await;
    }

    /// Answer successive requests to `path` with `exs[0]`, `exs[1]`, ... (each used once);
    /// further requests get wiremock's default 404. Use it for multi-interaction cassettes
    /// (e.g. 429 then 200 retry flows).
    pub async fn replay_sequence(&self, exs: &[Exchange], path: &str) {
        for ex in exs {
            self.mount(ex, path, None, Some(1)).await;
        }
    }

    async fn mount(&self, ex: &Exchange, path: &str, delay: Option<Duration>, times: Option<u64>) {
        let mut mock = Mock::given(method(ex.method.as_str()))
            .and(path_matcher(path))
            .respond_with(template(ex, delay));
        if let Some(n) = times {
            mock = mock.up_to_n_times(n);
        }
        mock.mount(&self.server).await;
    }

    /// Every request the server received so far (what llm-relay sent upstream), in order.
    pub async fn received(&self) -> Vec<Request> {
        self.server.received_requests().await.unwrap_or_default()
    }

    /// JSON body of the last received request. Panics if none was received or it is not JSON.
    pub async fn last_json(&self) -> serde_json::Value {
        let requests = self.received().await;
        let last = requests
            .last()
            .expect("fake upstream has not received any request");
        serde_json::from_slice(&last.body).unwrap_or_else(|e| {
            panic!(
                "last request to fake upstream ({} {}) has a non-JSON body: {e}\n{}",
                last.method,
                last.url,
                String::from_utf8_lossy(&last.body)
            )
        })
    }
}

fn template(ex: &Exchange, delay: Option<Duration>) -> ResponseTemplate {
    let mut t = ResponseTemplate::new(ex.status);
    for (name, value) in &ex.response_headers {
        let lower = name.to_ascii_lowercase();
        if SKIPPED_HEADERS.contains(&lower.as_str()) || lower == "content-type" {
            continue;
        }
        // append, not insert: e.g. several `set-cookie` values.
        t = t.append_header(lower.as_str(), value.as_bytes().to_vec());
    }
    t = match ex.response_header("content-type") {
        Some(ct) => t.set_body_raw(ex.response_body.clone(), ct),
        None => t.set_body_bytes(ex.response_body.clone()),
    };
    if let Some(d) = delay {
        t = t.set_delay(d);
    }
    t
}

impl FakeUpstream {
    /// Like [`replay`](Self::replay), but only for requests that also satisfy `matcher`, e.g.
    /// `wiremock::matchers::body_partial_json(json!({"stream": true}))` or a closure
    /// `|r: &wiremock::Request| ...`. Mounted with wiremock's highest priority, so it wins over
    /// plain `replay` mounts of the same path (a catch-all); among several conditional mounts that
    /// all match, the first mounted wins. Lets one path serve several fixtures (stream vs not,
    /// per model).
    pub async fn replay_if(
        &self,
        ex: &Exchange,
        path: &str,
        matcher: impl wiremock::Match + 'static,
    ) {
        Mock::given(method(ex.method.as_str()))
            .and(path_matcher(path))
            .and(matcher)
            .respond_with(template(ex, None))
            .with_priority(1)
            .mount(&self.server)
            .await;
    }
}
