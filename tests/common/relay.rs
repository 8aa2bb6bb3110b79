//! An in-process llm-relay on 127.0.0.1:<random> for black-box tests (mini-redis style): the
//! real route table and upstream client, with chosen providers pointed at fake upstreams.

use std::net::SocketAddr;
use std::time::Duration;

use llm_relay::catalog::PROVIDERS;
use llm_relay::config::{Config, DEFAULT_MAX_BODY_BYTES, ProviderConfig};
use llm_relay::relay::AppState;
use tokio::sync::oneshot;

/// The key every enabled test provider gets; tests assert it reaches the upstream.
pub fn test_key(provider: &str) -> String {
    format!("sk-test-{provider}")
}

pub struct Relay {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
}

/// Configuration with `enabled` providers (name, base URL) keyed and every other provider unkeyed.
pub fn config(enabled: &[(&str, String)]) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        default_model: None,
        big_model: None,
        small_model: None,
        max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(5),
        stream_idle_timeout: Duration::from_secs(5),
        shutdown_grace: Duration::from_secs(10),
        log_flush: Duration::ZERO,
        providers: PROVIDERS
            .iter()
            .map(|p| {
                let hit = enabled.iter().find(|(n, _)| *n == p.name);
                ProviderConfig {
                    id: p.id,
                    base_url: hit.map_or(p.base_url.to_string(), |(_, u)| u.clone()),
                    api_key: hit.map(|_| test_key(p.name)),
                }
            })
            .collect(),
        ollama: Default::default(),
        image_url_fetch: true,
        server_threads: 1,
    }
}

impl Relay {
    /// Start with `enabled` providers pointed at the given base URLs.
    pub async fn start(enabled: &[(&str, String)]) -> Relay {
        Relay::start_with(config(enabled)).await
    }

    /// Start with a prepared configuration.
    pub async fn start_with(config: Config) -> Relay {
        Relay::start_with_state(AppState::new(config).unwrap()).await
    }

    /// Start with prepared state (e.g. with a usage recorder attached).
    #[allow(dead_code)]
    pub async fn start_with_state(state: AppState) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = llm_relay::server::run(listener, state, async {
                let _ = rx.await;
            })
            .await;
        });
        // Serving before returning: the server task has run, so the tasks it starts (instance
        // discovery) already exist when a test counts the runtime's live tasks. The probe's client
        // keeps no idle connection (none left on the server either).
        let probe = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let live = format!("http://{addr}/health/live");
        for _ in 0..500 {
            if probe.get(&live).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Relay {
            addr,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_raw(&self, path: &str, body: &'static str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The first model of `provider` in the catalog (for tests bound to a provider's fixtures, not
/// to a particular model row).
pub fn first_model_of(provider: &str) -> &'static str {
    llm_relay::catalog::ModelId::all()
        .find(|m| m.info().provider.name() == provider)
        .unwrap_or_else(|| panic!("no model of provider {provider} in providers.yaml"))
        .info()
        .id
}

/// A fake OpenAI upstream replaying the first exchange of `fixture` at `/v1/chat/completions`,
/// and a relay whose `openai` provider points at it.
pub async fn openai_fixture(
    fixture: &str,
) -> (
    super::fake_upstream::FakeUpstream,
    Relay,
    super::fixtures::Exchange,
) {
    let ex = super::fixtures::load(fixture).remove(0);
    let fake = super::fake_upstream::FakeUpstream::start().await;
    fake.replay(&ex, "/v1/chat/completions").await;
    let relay = Relay::start(&[("openai", format!("{}/v1", fake.uri()))]).await;
    (fake, relay, ex)
}

/// Read a streamed response until `needle` shows in its body, waiting at most `wait` per chunk
/// (panics past that or at the end of the body): the text read so far. The response stays open.
pub async fn read_until(resp: &mut reqwest::Response, needle: &str, wait: Duration) -> String {
    let mut seen = String::new();
    while !seen.contains(needle) {
        let chunk = tokio::time::timeout(wait, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} within {wait:?}; read: {seen}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the body ended before {needle:?}; read: {seen}"));
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    seen
}

/// Parse an SSE body into its `data:` payloads (framing per the WHATWG rules the OpenAI SDK uses:
/// events separated by a blank line).
pub fn sse_payloads(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| {
            ev.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_string)
        })
        .collect()
}

/// Parse an NDJSON body into JSON values.
pub fn ndjson(body: &str) -> Vec<serde_json::Value> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
