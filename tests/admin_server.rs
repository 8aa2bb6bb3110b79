//! The admin listener of the built binary: the password generated on first start (printed once
//! as a banner, then only its hash kept), `ADMIN_ENABLED=false`, and the catalog routes of the
//! overrides layer nested behind the admin auth (session and CSRF).
//! Offline: every socket is on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::process::{ChildGuard, free_port};

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn work_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("admin_server-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Relay {
    child: ChildGuard,
    api: String,
    admin: String,
    log: PathBuf,
}

impl Relay {
    /// Start the binary with `env` on free ports, data in `dir/data`, log in `dir/<log>`; wait
    /// until the API server answers.
    async fn start(dir: &Path, log: &str, env: &[(&str, &str)]) -> Relay {
        let (port, admin_port) = (free_port(), free_port());
        let log = dir.join(log);
        let out = File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-relay"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("ADMIN_PORT", admin_port.to_string())
            .env("RUST_LOG", "info")
            .env("DATA_DIR", dir.join("data"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn llm-relay");
        let mut r = Relay {
            child: ChildGuard(child),
            api: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            log,
        };
        let http = client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = r.child.0.try_wait().unwrap() {
                panic!("llm-relay exited ({s}); log:\n{}", r.log());
            }
            if http
                .get(format!("{}/", r.api))
                .send()
                .await
                .is_ok_and(|x| x.status().is_success())
            {
                break;
            }
            assert!(Instant::now() < deadline, "not ready; log:\n{}", r.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        r
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stop gracefully (SIGTERM is not portable from std: kill, then wait).
    fn stop(self) {
        drop(self.child);
    }

    async fn login(&self, password: &str) -> Option<(String, String)> {
        let resp = client()
            .post(format!("{}/api/login", self.admin))
            .json(&json!({"password": password}))
            .send()
            .await
            .unwrap();
        if resp.status() != 200 {
            return None;
        }
        let cookie = resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let body: Value = resp.json().await.unwrap();
        Some((cookie, body["csrf_token"].as_str().unwrap().to_string()))
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// The generated password from the banner lines of the log.
fn banner_password(log: &str) -> Option<String> {
    let mut lines = log.lines();
    lines.find(|l| l.contains("ADMIN PASSWORD NOT SET - Generated random password:"))?;
    lines.next().map(|l| l.trim().to_string())
}

#[tokio::test]
async fn a_generated_password_is_printed_once_and_works_after_a_restart() {
    let dir = work_dir("generated");
    let r = Relay::start(&dir, "first.log", &[]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let password = loop {
        if let Some(p) = banner_password(&r.log()) {
            break p;
        }
        assert!(Instant::now() < deadline, "no banner; log:\n{}", r.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(password.len(), 24, "{password:?}");
    assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(r.log().contains(&"=".repeat(60)), "seed 001's banner rule");
    assert!(r.login(&password).await.is_some());
    assert!(r.login("something else").await.is_none());
    r.stop();
    // The database holds only the hash.
    let db = std::fs::read(dir.join("data/llm-relay.redb")).unwrap();
    assert!(
        !db.windows(password.len()).any(|w| w == password.as_bytes()),
        "password in clear in the database"
    );

    let r = Relay::start(&dir, "second.log", &[]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.login(&password).await.is_none() {
        assert!(Instant::now() < deadline, "admin not up; log:\n{}", r.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        banner_password(&r.log()).is_none(),
        "printed once, not at every start"
    );
    assert!(!r.log().contains(&password));
}

#[tokio::test]
async fn admin_enabled_false_starts_no_admin_listener() {
    let dir = work_dir("disabled");
    let r = Relay::start(&dir, "relay.log", &[("ADMIN_ENABLED", "false")]).await;
    assert!(
        client().get(format!("{}/", r.admin)).send().await.is_err(),
        "admin port must be closed"
    );
    assert!(r.log().contains("admin server disabled"), "{}", r.log());
    // No password is generated either.
    assert!(banner_password(&r.log()).is_none());
}

#[tokio::test]
async fn catalog_routes_sit_behind_the_admin_session_and_csrf() {
    let dir = work_dir("nested");
    let r = Relay::start(&dir, "relay.log", &[("ADMIN_PASSWORD", "nested-routes-pw")]).await;
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (cookie, csrf) = loop {
        if let Some(s) = r.login("nested-routes-pw").await {
            break s;
        }
        assert!(Instant::now() < deadline, "admin not up; log:\n{}", r.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for path in [
        "/api/providers",
        "/api/models",
        "/api/aliases",
        "/api/settings",
        "/api/instances",
    ] {
        let resp = http.get(format!("{}{path}", r.admin)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path} without a session");
        let resp = http
            .get(format!("{}{path}", r.admin))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path} with a session");
    }
    let settings: Value = http
        .get(format!("{}/api/settings", r.admin))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !settings.to_string().contains("argon2"),
        "the password hash is never a setting: {settings}"
    );

    let models: Value = http
        .get(format!("{}/api/models", r.admin))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m = &models["models"][0];
    let target = format!(
        "{}/{}",
        m["provider"].as_str().unwrap(),
        m["id"].as_str().unwrap()
    );
    let add = |csrf: Option<&str>| {
        let mut req = http
            .post(format!("{}/api/aliases", r.admin))
            .header("cookie", &cookie)
            .json(&json!({"alias": "nested-alias", "target": target}));
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        req.send()
    };
    assert_eq!(add(None).await.unwrap().status(), 403, "no CSRF token");
    assert_eq!(
        add(Some("wrong")).await.unwrap().status(),
        403,
        "wrong CSRF token"
    );
    let resp = add(Some(&csrf)).await.unwrap();
    assert_eq!(
        resp.status(),
        201,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}
