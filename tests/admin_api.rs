//! The admin server's own API (admin/API.md "Auth" and "Usage"), black-box over a real listener
//! on 127.0.0.1: login (wrong password, cookie attributes), expired sessions, CSRF, logout, the
//! failed-login rate limit, password change (and its survival across a restart), the usage
//! endpoints over records written through the real redb store, the embedded UI and the OpenAPI
//! document.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::tmp::TempDir;

use std::sync::Arc;
use std::time::Duration;

use llm_relay::admin::{self, AdminConfig, AdminState, auth};
use llm_relay::store::embedded::RedbStore;
use llm_relay::store::{OverrideStore, UsageSink};
use llm_relay::usage::cost::CostSource;
use llm_relay::usage::record::UsageRecord;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

/// A running admin server.
struct Admin {
    base: String,
    http: reqwest::Client,
    store: Arc<RedbStore>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Admin {
    async fn start(dir: &TempDir, password: Option<&str>, ttl: Duration) -> Admin {
        let store = Arc::new(RedbStore::open(&dir.0).unwrap());
        Self::start_with(store, password, ttl).await
    }

    async fn start_with(store: Arc<RedbStore>, password: Option<&str>, ttl: Duration) -> Admin {
        Self::start_full(store, password, ttl, Vec::new()).await
    }

    async fn start_full(
        store: Arc<RedbStore>,
        password: Option<&str>,
        ttl: Duration,
        trusted_proxies: Vec<llm_relay::usage::tags::TrustedProxy>,
    ) -> Admin {
        let config = AdminConfig {
            enabled: true,
            listen: "127.0.0.1:0".parse().unwrap(),
            password: password.map(str::to_string),
            session_ttl: ttl,
        };
        let state = AdminState::new(&config, Arc::clone(&store), trusted_proxies).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = admin::app(state, poem::Route::new());
        let task = tokio::spawn(async move {
            admin::run(listener, app, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Admin {
            base,
            http: reqwest::Client::new(),
            store,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stop the server and hand back its store (the "restart" keeps the database).
    async fn stop(mut self) -> Arc<RedbStore> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        Arc::clone(&self.store)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn login(&self, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/api/login"))
            .json(&json!({ "password": password }))
            .send()
            .await
            .unwrap()
    }

    /// Log in with `password`: the session cookie (`name=value`) and the CSRF token.
    async fn session(&self, password: &str) -> Session {
        let resp = self.login(password).await;
        assert_eq!(resp.status(), 200);
        let cookie = set_cookie(&resp);
        let body: Value = resp.json().await.unwrap();
        Session {
            cookie: cookie.split(';').next().unwrap().to_string(),
            csrf: body["csrf_token"].as_str().unwrap().to_string(),
        }
    }

    async fn get(&self, s: &Session, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(self.url(path))
            .header("cookie", &s.cookie)
            .send()
            .await
            .unwrap();
        status_json(resp).await
    }

    async fn post(&self, s: &Session, path: &str, csrf: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self
            .http
            .post(self.url(path))
            .header("cookie", &s.cookie)
            .json(&body);
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        status_json(req.send().await.unwrap()).await
    }
}

struct Session {
    cookie: String,
    csrf: String,
}

fn set_cookie(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("set-cookie")
        .expect("Set-Cookie")
        .to_str()
        .unwrap()
        .to_string()
}

async fn status_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn error_type(v: &Value) -> &str {
    v["error"]["type"].as_str().unwrap_or("(no error type)")
}

#[tokio::test]
async fn login_gives_a_strict_httponly_session_cookie_and_a_wrong_password_is_401() {
    let dir = TempDir::new("login");
    let a = Admin::start(&dir, Some(PASSWORD), admin::SESSION_TTL).await;

    let resp = a.login("not the password").await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("set-cookie").is_none());
    let (_, body) = status_json(resp).await;
    assert_eq!(error_type(&body), "unauthorized");

    // No cookie: every API route but login answers 401.
    let (status, body) = status_json(a.http.get(a.url("/api/session")).send().await.unwrap()).await;
    assert_eq!((status, error_type(&body)), (401, "unauthorized"));
    let (status, _) = status_json(
        a.http
            .get(a.url("/api/usage/summary"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    // A made-up cookie is no session either.
    let forged = Session {
        cookie: format!("{}={}", auth::COOKIE, "00".repeat(32)),
        csrf: String::new(),
    };
    assert_eq!(a.get(&forged, "/api/session").await.0, 401);

    let resp = a.login(PASSWORD).await;
    assert_eq!(resp.status(), 200);
    let cookie = set_cookie(&resp);
    let attrs: Vec<&str> = cookie.split(';').map(str::trim).collect();
    let (name, value) = attrs[0].split_once('=').unwrap();
    assert_eq!(name, "llm_relay_session");
    assert_eq!(value.len(), 64, "256-bit token, hex: {cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(attrs.contains(&attr), "{attr} missing: {cookie}");
    }
    let body: Value = resp.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap();
    assert_eq!(csrf.len(), 64);
    assert_ne!(csrf, value, "the CSRF token is not the cookie");
    let expires = time::OffsetDateTime::parse(
        body["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let hours = (expires - time::OffsetDateTime::now_utc()).whole_minutes();
    assert!((11 * 60..=12 * 60).contains(&hours), "{body}");

    let s = Session {
        cookie: attrs[0].to_string(),
        csrf: csrf.to_string(),
    };
    let (status, body) = a.get(&s, "/api/session").await;
    assert_eq!(status, 200);
    assert_eq!(body["csrf_token"], csrf);

    // A body that is not the login shape is a 400 in the admin error format.
    let resp = a
        .http
        .post(a.url("/api/login"))
        .header("content-type", "application/json")
        .body("{\"pass\": 1}")
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(resp).await;
    assert_eq!((status, error_type(&body)), (400, "bad_request"));
    a.stop().await;
}

#[tokio::test]
async fn an_expired_session_is_refused() {
    let dir = TempDir::new("expired");
    // Sessions that end the moment they start.
    let a = Admin::start(&dir, Some(PASSWORD), Duration::ZERO).await;
    let s = a.session(PASSWORD).await;
    let (status, body) = a.get(&s, "/api/session").await;
    assert_eq!((status, error_type(&body)), (401, "unauthorized"));
    assert_eq!(a.get(&s, "/api/usage/summary").await.0, 401);
    a.stop().await;
}

#[tokio::test]
async fn state_changing_requests_need_the_sessions_csrf_token_and_logout_ends_the_session() {
    let dir = TempDir::new("csrf");
    let a = Admin::start(&dir, Some(PASSWORD), admin::SESSION_TTL).await;
    let s = a.session(PASSWORD).await;
    let other = a.session(PASSWORD).await;

    let (status, body) = a.post(&s, "/api/logout", None, json!({})).await;
    assert_eq!((status, error_type(&body)), (403, "forbidden"));
    // Another session's token is the wrong token.
    let (status, body) = a
        .post(&s, "/api/logout", Some(&other.csrf), json!({}))
        .await;
    assert_eq!((status, error_type(&body)), (403, "forbidden"));
    let (status, _) = a
        .post(
            &s,
            "/api/password",
            Some("x"),
            json!({"current": PASSWORD, "new": "whatever-long"}),
        )
        .await;
    assert_eq!(status, 403);
    // Refused requests changed nothing: the session is alive, the password unchanged.
    assert_eq!(a.get(&s, "/api/session").await.0, 200);
    assert_eq!(a.login(PASSWORD).await.status(), 200);

    let resp = a
        .http
        .post(a.url("/api/logout"))
        .header("cookie", &s.cookie)
        .header("x-csrf-token", &s.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let cleared = set_cookie(&resp);
    assert!(
        cleared.starts_with("llm_relay_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert_eq!(a.get(&s, "/api/session").await.0, 401);
    // Only that session ended.
    assert_eq!(a.get(&other, "/api/session").await.0, 200);
    a.stop().await;
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_client() {
    let dir = TempDir::new("ratelimit");
    let a = Admin::start(&dir, Some(PASSWORD), admin::SESSION_TTL).await;
    for i in 0..auth::MAX_FAILURES {
        assert_eq!(a.login("wrong").await.status(), 401, "failure {i}");
    }
    // Blocked: also the right password.
    let resp = a.login(PASSWORD).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let (_, body) = status_json(resp).await;
    assert_eq!(error_type(&body), "rate_limited");
    a.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_limited_and_https_cookies_are_secure() {
    let dir = TempDir::new("proxy");
    let store = Arc::new(RedbStore::open(&dir.0).unwrap());
    let proxy = llm_relay::usage::tags::TrustedProxy::parse("127.0.0.1").unwrap();
    let a = Admin::start_full(store, Some(PASSWORD), admin::SESSION_TTL, vec![proxy]).await;
    let login = |client: &'static str, password: &'static str| {
        a.http
            .post(a.url("/api/login"))
            .header("x-forwarded-for", client)
            .header("x-forwarded-proto", "https")
            .json(&json!({ "password": password }))
            .send()
    };
    for _ in 0..auth::MAX_FAILURES {
        assert_eq!(login("198.51.100.1", "wrong").await.unwrap().status(), 401);
    }
    assert_eq!(login("198.51.100.1", PASSWORD).await.unwrap().status(), 429);
    // Another client behind the same proxy is not blocked, and over HTTPS its cookie is Secure.
    let resp = login("198.51.100.2", PASSWORD).await.unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = set_cookie(&resp);
    assert!(cookie.split(';').any(|a| a.trim() == "Secure"), "{cookie}");
    // Plain HTTP (no forwarded proto): no Secure flag, or the browser would never send it back.
    let resp = a.login(PASSWORD).await;
    assert!(!set_cookie(&resp).contains("Secure"));
    a.stop().await;
}

#[tokio::test]
async fn password_change_ends_other_sessions_and_survives_a_restart() {
    let dir = TempDir::new("password");
    // No ADMIN_PASSWORD and an empty database: a password is generated and only its hash stored.
    let a = Admin::start(&dir, None, admin::SESSION_TTL).await;
    let hash = a
        .store
        .get_setting(auth::PASSWORD_HASH_KEY)
        .unwrap()
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let store = a.stop().await;

    // ADMIN_PASSWORD wins over the stored (generated) one.
    let a = Admin::start_with(store, Some(PASSWORD), admin::SESSION_TTL).await;
    let s = a.session(PASSWORD).await;
    let other = a.session(PASSWORD).await;
    let new = "a new password 42";

    let (status, body) = a
        .post(
            &s,
            "/api/password",
            Some(&s.csrf),
            json!({"current": PASSWORD, "new": "short"}),
        )
        .await;
    assert_eq!((status, error_type(&body)), (400, "bad_request"));
    let (status, body) = a
        .post(
            &s,
            "/api/password",
            Some(&s.csrf),
            json!({"current": "wrong", "new": new}),
        )
        .await;
    assert_eq!((status, error_type(&body)), (403, "forbidden"));
    let (status, _) = a
        .post(
            &s,
            "/api/password",
            Some(&s.csrf),
            json!({"current": PASSWORD, "new": new}),
        )
        .await;
    assert_eq!(status, 204);

    assert_eq!(a.get(&s, "/api/session").await.0, 200, "this session stays");
    assert_eq!(
        a.get(&other, "/api/session").await.0,
        401,
        "every other ends"
    );
    assert_eq!(a.login(PASSWORD).await.status(), 401);
    assert_eq!(a.login(new).await.status(), 200);
    let stored = a
        .store
        .get_setting(auth::PASSWORD_HASH_KEY)
        .unwrap()
        .unwrap();
    assert!(stored.starts_with("$argon2id$") && !stored.contains(new));
    let store = a.stop().await;

    // Restart without ADMIN_PASSWORD: the changed password is the one in effect.
    let a = Admin::start_with(store, None, admin::SESSION_TTL).await;
    assert_eq!(a.login(new).await.status(), 200);
    assert_eq!(a.login(PASSWORD).await.status(), 401);
    a.stop().await;
}

#[tokio::test]
async fn sessions_survive_a_restart_until_logout_expiry_or_a_new_password() {
    let dir = TempDir::new("sessions");
    let a = Admin::start(&dir, Some(PASSWORD), admin::SESSION_TTL).await;
    let kept = a.session(PASSWORD).await;
    let ended = a.session(PASSWORD).await;
    let (status, _) = a
        .post(&ended, "/api/logout", Some(&ended.csrf), json!({}))
        .await;
    assert_eq!(status, 204);
    // Stored as digests: no cookie token in the database.
    let stored = a.store.get_setting(auth::SESSIONS_KEY).unwrap().unwrap();
    for s in [&kept, &ended] {
        let token = s.cookie.split('=').nth(1).unwrap();
        assert!(!stored.contains(token), "{stored}");
    }
    let store = a.stop().await;

    // Restart, same password: the live session goes on (same CSRF token), the ended one not.
    let a = Admin::start_with(store, Some(PASSWORD), admin::SESSION_TTL).await;
    let (status, body) = a.get(&kept, "/api/session").await;
    assert_eq!(
        (status, body["csrf_token"].as_str()),
        (200, Some(kept.csrf.as_str()))
    );
    assert_eq!(a.get(&ended, "/api/session").await.0, 401);
    let (status, _) = a.post(&kept, "/api/logout", Some("wrong"), json!({})).await;
    assert_eq!(status, 403, "the CSRF check still applies");
    let store = a.stop().await;

    // A password changed while the server was down (ADMIN_PASSWORD) ends every session.
    let a = Admin::start_with(store, Some("another password 7"), admin::SESSION_TTL).await;
    assert_eq!(a.get(&kept, "/api/session").await.0, 401);
    let store = a.stop().await;

    // An expired session is not brought back.
    let a = Admin::start_with(store, Some(PASSWORD), Duration::from_secs(1)).await;
    let short = a.session(PASSWORD).await;
    let store = a.stop().await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let a = Admin::start_with(store, Some(PASSWORD), admin::SESSION_TTL).await;
    assert_eq!(a.get(&short, "/api/session").await.0, 401);
    a.stop().await;
}

/// Three requests an hour ago, on two providers, two tags and two clients.
fn records(now_ms: i64) -> Vec<UsageRecord> {
    let base = UsageRecord {
        time_ms: now_ms - 3_600_000,
        frontend: "openai-api".into(),
        endpoint: "/v1/chat/completions".into(),
        provider: "prov-a".into(),
        model: "model-a".into(),
        model_requested: "model-a".into(),
        tags: vec!["alice".into()],
        client_ip: Some("192.0.2.10".into()),
        client_host: None,
        user_agent: Some("test-agent".into()),
        stream: true,
        status: 200,
        error: None,
        complete: true,
        latency_ms: 1_000,
        ttft_ms: Some(200),
        input_tokens: 1_000,
        output_tokens: 100,
        reasoning_tokens: 10,
        cached_input_tokens: 0,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        cache_write_1h_tokens: 0,
        cost_pico_usd: Some(2_000_000_000), // $0.002
        cost_source: CostSource::Estimated,
        tokens_estimated: false,
    };
    vec![
        base.clone(),
        UsageRecord {
            time_ms: base.time_ms + 1_000,
            tags: vec!["bob".into()],
            client_ip: Some("192.0.2.11".into()),
            latency_ms: 3_000,
            // A stream cut before its usage: counts estimated by llm-relay.
            tokens_estimated: true,
            ..base.clone()
        },
        UsageRecord {
            time_ms: base.time_ms + 2_000,
            frontend: "ollama-api".into(),
            provider: "prov-b".into(),
            model: "model-b".into(),
            tags: vec!["bob".into()],
            stream: false,
            status: 502,
            error: Some("upstream_error".into()),
            input_tokens: 50,
            output_tokens: 0,
            reasoning_tokens: 0,
            cost_pico_usd: None,
            cost_source: CostSource::Unpriced,
            ttft_ms: None,
            latency_ms: 2_000,
            ..base.clone()
        },
    ]
}

#[tokio::test]
async fn usage_endpoints_answer_from_the_live_store() {
    let dir = TempDir::new("usage");
    let a = Admin::start(&dir, Some(PASSWORD), admin::SESSION_TTL).await;
    let s = a.session(PASSWORD).await;
    // Written through the real store while the admin server runs (as the recorder does).
    let now = llm_relay::usage::recorder::now_ms();
    a.store.write_batch(&records(now)).unwrap();

    let (status, t) = a.get(&s, "/api/usage/summary").await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["requests"], 3);
    assert_eq!(t["errors"], 1);
    assert_eq!(t["input_tokens"], 2_050);
    assert_eq!(t["output_tokens"], 200);
    assert_eq!(t["reasoning_tokens"], 20);
    assert_eq!(t["unpriced_requests"], 1);
    assert_eq!(t["mean_latency_ms"], 2_000);
    assert!(
        (t["cost_usd"].as_f64().unwrap() - 0.004).abs() < 1e-12,
        "{t}"
    );

    // Filters: provider, tag, client; a window that holds none of them.
    let (_, t) = a.get(&s, "/api/usage/summary?provider=prov-b").await;
    assert_eq!(
        (t["requests"].as_u64(), t["errors"].as_u64()),
        (Some(1), Some(1))
    );
    let (_, t) = a.get(&s, "/api/usage/summary?tag=BOB").await;
    assert_eq!(t["requests"], 2, "tags are matched normalised");
    let (_, t) = a.get(&s, "/api/usage/summary?client=192.0.2.11").await;
    assert_eq!(t["requests"], 1);
    let (_, t) = a
        .get(&s, "/api/usage/summary?since=2000-01-01&until=2000-01-02")
        .await;
    assert_eq!(t["requests"], 0);

    let (status, series) = a
        .get(&s, "/api/usage/series?granularity=hour&since=24h")
        .await;
    assert_eq!(status, 200);
    assert_eq!(series["granularity"], "hour");
    let points = series["points"].as_array().unwrap();
    assert_eq!(
        points
            .iter()
            .map(|p| p["requests"].as_u64().unwrap())
            .sum::<u64>(),
        3
    );
    assert!(
        points[0]["t"].as_str().unwrap().ends_with(":00:00Z"),
        "{series}"
    );
    let (_, series) = a.get(&s, "/api/usage/series?granularity=day").await;
    assert_eq!(series["granularity"], "day");

    let (status, b) = a.get(&s, "/api/usage/breakdown?by=provider").await;
    assert_eq!(status, 200);
    assert_eq!(b["by"], "provider");
    let rows = b["rows"].as_array().unwrap();
    assert_eq!(rows[0]["key"], "prov-a", "most expensive first: {b}");
    assert_eq!(rows[0]["requests"], 2);
    assert_eq!(rows[1]["key"], "prov-b");
    let (_, b) = a
        .get(&s, "/api/usage/breakdown?by=tag&provider=prov-a")
        .await;
    let keys: Vec<&str> = b["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 2);
    assert!(keys.contains(&"alice") && keys.contains(&"bob"), "{b}");

    let (status, r) = a.get(&s, "/api/usage/recent?limit=2").await;
    assert_eq!(status, 200);
    let recs = r["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    // Newest first: the failed request.
    assert_eq!(recs[0]["provider"], "prov-b");
    assert_eq!(recs[0]["api"], "ollama");
    assert_eq!(recs[0]["status"], 502);
    assert_eq!(recs[0]["error"], "upstream_error");
    assert_eq!(recs[0]["cost_usd"], Value::Null);
    assert_eq!(recs[0]["cost_source"], "unpriced");
    assert_eq!(recs[0]["tokens_estimated"], false);
    assert_eq!(recs[1]["api"], "openai");
    assert_eq!(recs[1]["tokens_estimated"], true);
    assert_eq!(recs[1]["ttft_ms"], 200);
    assert_eq!(recs[1]["latency_ms"], 3_000);
    assert_eq!(recs[1]["tags"], json!(["bob"]));
    assert!((recs[1]["cost_usd"].as_f64().unwrap() - 0.002).abs() < 1e-12);

    // Provider and model filters match the stored ids as given (drill-down from a breakdown row:
    // case kept), and also as a person types them (another case, a catalog alias).
    let aliased = llm_relay::catalog::ModelId::all()
        .find(|m| !m.info().aliases.is_empty())
        .unwrap();
    let base = records(now).remove(0);
    a.store
        .write_batch(&[
            UsageRecord {
                provider: "GPU-Box".into(),
                model: "Org/Mixed-Case:7B".into(),
                ..base.clone()
            },
            UsageRecord {
                provider: aliased.info().provider.name().into(),
                model: aliased.info().id.into(),
                ..base.clone()
            },
        ])
        .unwrap();
    let (_, t) = a
        .get(
            &s,
            "/api/usage/summary?provider=GPU-Box&model=Org/Mixed-Case:7B",
        )
        .await;
    assert_eq!(t["requests"], 1, "exact stored ids: {t}");
    let (_, r) = a.get(&s, "/api/usage/recent?model=Org/Mixed-Case:7B").await;
    assert_eq!(r["records"].as_array().unwrap().len(), 1);
    let (_, t) = a.get(&s, "/api/usage/summary?provider=gpu-box").await;
    assert_eq!(t["requests"], 0, "another case is another provider");
    let (_, t) = a
        .get(
            &s,
            &format!(
                "/api/usage/summary?model={}",
                aliased.info().aliases[0].to_uppercase()
            ),
        )
        .await;
    assert_eq!(
        t["requests"], 1,
        "an alias, in any case, finds its model: {t}"
    );
    let (_, t) = a.get(&s, "/api/usage/summary?provider=PROV-A").await;
    assert_eq!(t["requests"], 2, "a provider typed in upper case: {t}");

    // Bad parameters: 400 in the admin error format.
    for path in [
        "/api/usage/breakdown?by=colour",
        "/api/usage/breakdown",
        "/api/usage/series?granularity=minute",
        "/api/usage/recent?limit=0",
        "/api/usage/recent?limit=1001",
        "/api/usage/summary?since=yesterday",
    ] {
        let (status, body) = a.get(&s, path).await;
        assert_eq!(
            (status, error_type(&body)),
            (400, "bad_request"),
            "{path}: {body}"
        );
    }
    a.stop().await;
}

#[tokio::test]
async fn the_ui_is_embedded_and_the_openapi_document_lists_the_contract() {
    let dir = TempDir::new("ui");
    let a = Admin::start(&dir, Some(PASSWORD), admin::SESSION_TTL).await;
    let resp = a.http.get(a.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = resp.text().await.unwrap();
    assert!(html.contains("/assets/app.js") && html.contains("chart.umd.min.js"));
    for (path, kind) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/pages.js", "text/javascript"),
        ("/assets/vendor/chart.umd.min.js", "text/javascript"),
        ("/assets/style.css", "text/css"),
    ] {
        let resp = a.http.get(a.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
    }
    let chart = a
        .http
        .get(a.url("/assets/vendor/chart.umd.min.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(chart.contains("Chart.js v4."), "the vendored library");
    assert_eq!(
        a.http
            .get(a.url("/assets/../Cargo.toml"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        a.http
            .get(a.url("/assets/nothing.js"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // The OpenAPI document needs a session like every other /api route.
    assert_eq!(
        a.http
            .get(a.url("/api/openapi.json"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let s = a.session(PASSWORD).await;
    let (status, doc) = a.get(&s, "/api/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // Every route of admin/API.md is in it.
    let contract =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/admin/API.md")).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for line in contract.lines() {
        for method in ["GET", "POST", "PUT", "DELETE"] {
            let Some(rest) = line
                .trim_start_matches("- ")
                .strip_prefix(&format!("`{method} "))
            else {
                continue;
            };
            let path = rest.split(['`', '?']).next().unwrap();
            if !path.starts_with("/api") {
                continue;
            }
            let op = paths.get(path).and_then(|p| p.get(method.to_lowercase()));
            assert!(
                op.is_some(),
                "{method} {path} of admin/API.md missing in openapi.json"
            );
        }
    }

    // An unknown API route, with a session: 404 in the admin error format.
    let (status, body) = a.get(&s, "/api/nothing-here").await;
    assert_eq!((status, error_type(&body)), (404, "not_found"));
    a.stop().await;
}

#[tokio::test]
async fn concurrent_wrong_logins_cannot_outrun_the_rate_limit() {
    // A burst of parallel guesses must not all pass the check before any failure is counted.
    let dir = TempDir::new("ratelimit-burst");
    let a = Admin::start(&dir, Some(PASSWORD), admin::SESSION_TTL).await;
    let guesses = (0..4 * auth::MAX_FAILURES).map(|i| {
        a.http
            .post(a.url("/api/login"))
            .json(&json!({ "password": format!("wrong guess {i}") }))
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(guesses)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        checked <= auth::MAX_FAILURES,
        "{checked} passwords were checked in one window: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert_eq!(a.login(PASSWORD).await.status(), 429);
    a.stop().await;
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_does_not_escape_the_rate_limit() {
    let dir = TempDir::new("ratelimit-xff");
    let a = Admin::start(&dir, Some(PASSWORD), admin::SESSION_TTL).await;
    for i in 0..3 * auth::MAX_FAILURES {
        let status = a
            .http
            .post(a.url("/api/login"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({ "password": "wrong" }))
            .send()
            .await
            .unwrap()
            .status();
        if i >= auth::MAX_FAILURES {
            assert_eq!(status, 429, "guess {i} with a spoofed X-Forwarded-For");
        }
    }
    a.stop().await;
}

#[tokio::test]
async fn a_huge_login_body_is_refused_before_it_is_read_whole() {
    // Login is the one route open without a session: its body must be bounded.
    let dir = TempDir::new("login-size");
    let a = Admin::start(&dir, Some(PASSWORD), admin::SESSION_TTL).await;
    let big = "x".repeat(2 * 1024 * 1024);
    let resp = a
        .http
        .post(a.url("/api/login"))
        .json(&json!({ "password": big }))
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(resp).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(error_type(&body), "payload_too_large");
    // A chunked body (no Content-Length) is bounded too.
    let chunks =
        futures_util::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024])));
    let resp = a
        .http
        .post(a.url("/api/login"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // A body within the drain bound past the limit is read to its end before the 413. Before,
    // the server answered at the limit and closed with unread data, which sends a TCP reset:
    // the client's next write failed.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(a.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let len = 300 * 1024;
    tcp.write_all(
        format!(
            "POST /api/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             connection: close\r\ncontent-length: {len}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // Three parts with pauses: a server that closed after the first has the second answered
    // with a reset, and the third write fails. An HTTP client surfaces that failure instead of
    // the answer (reqwest: a connection error).
    for part in 0..3 {
        tcp.write_all(&vec![b' '; len / 3])
            .await
            .unwrap_or_else(|e| {
                panic!("part {part}: {e}: the server stopped reading the body while it was sent")
            });
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 413"),
        "{read:?}: {text:?} (a reset instead of the answer?)"
    );
    a.stop().await;
}

#[tokio::test]
async fn ipv6_clients_are_limited_per_64_prefix() {
    // One IPv6 client holds a whole /64: counting single addresses would give it 2^64 tries.
    let dir = TempDir::new("ratelimit-v6");
    let store = Arc::new(RedbStore::open(&dir.0).unwrap());
    let proxy = llm_relay::usage::tags::TrustedProxy::parse("127.0.0.1").unwrap();
    let a = Admin::start_full(store, Some(PASSWORD), admin::SESSION_TTL, vec![proxy]).await;
    let login = |client: String| {
        a.http
            .post(a.url("/api/login"))
            .header("x-forwarded-for", client)
            .json(&json!({ "password": "wrong" }))
            .send()
    };
    for i in 0..auth::MAX_FAILURES {
        let status = login(format!("2001:db8:1:2::{:x}", i + 1))
            .await
            .unwrap()
            .status();
        assert_eq!(status, 401);
    }
    let status = login("2001:db8:1:2:ffff::9".into()).await.unwrap().status();
    assert_eq!(status, 429, "another address of the same /64");
    // Another /64 is another client.
    let status = login("2001:db8:1:3::1".into()).await.unwrap().status();
    assert_eq!(status, 401);
    a.stop().await;
}
