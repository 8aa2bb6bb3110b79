//! The admin web UI in a real browser: starts the built binary (API + admin listeners on
//! 127.0.0.1, a fake OpenAI upstream replaying tests/fixtures/openai/chat_basic.httprr), produces
//! usage records through the API server (a fake Ollama server is configured as an instance too),
//! then runs tests/ui/admin_ui.mjs, which drives Debian's
//! headless Chromium with playwright-core: log in, add an alias, view the usage page with data and
//! check the chart rendered. Screenshots of every page go to target/ui-artifacts/.
//! Afterwards the alias added in the browser must route a request through the API server.
//!
//! Needs `node`, `tests/ui/node_modules` (installed by `bash tests/run.sh`) and `/usr/bin/chromium`
//! (or `CHROMIUM`). Offline: every socket is on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::process::{ChildGuard, free_port};

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fake_upstream::FakeUpstream;
use common::fixtures;
use serde_json::{Value, json};

const API_KEY: &str = "sk-test-llm-relay-admin-ui";
const PASSWORD: &str = "ui-test-password";
const CHAT_PATH: &str = "/v1/chat/completions";
/// Requests produced before the browser looks at the usage page.
const REQUESTS: u64 = 3;
const ALIAS: &str = "ui-test-alias";
/// Name of the Ollama instance the relay is started with.
const INSTANCE: &str = "homelab";

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// target/ui-artifacts/ (screenshots) and target/tmp/admin_ui/ (logs, database).
fn dirs() -> (PathBuf, PathBuf) {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let artifacts = tmp.parent().unwrap_or(tmp).join("ui-artifacts");
    let work = tmp.join("admin_ui");
    let _ = std::fs::remove_dir_all(&artifacts);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    (artifacts, work)
}

async fn wait_for(
    what: &str,
    log: &Path,
    relay: &mut ChildGuard,
    mut ok: impl AsyncFnMut() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = relay.0.try_wait().unwrap() {
            panic!("llm-relay exited early ({status}); log:\n{}", read_log(log));
        }
        if ok().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within 30 s failed; log:\n{}",
            read_log(log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn admin_ui_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} not found: install Debian's chromium (apt-get install chromium) or set CHROMIUM"
    );
    assert!(
        root.join("tests/ui/node_modules/playwright-core").exists(),
        "tests/ui/node_modules is missing: run the suite with `bash tests/run.sh` (it runs npm ci in tests/ui)"
    );

    let basic = fixtures::load("openai/chat_basic.httprr").remove(0);
    let model = basic.request_json().unwrap()["model"]
        .as_str()
        .unwrap()
        .to_string();
    let id = llm_relay::catalog::resolve(&model).expect("fixture model in the catalog");
    let target = format!("{}/{}", id.info().provider.name(), id.info().id);
    let upstream = FakeUpstream::start().await;
    upstream.replay(&basic, CHAT_PATH).await;
    // An Ollama server configured as an instance, for the Ollama instances page.
    let tags = fixtures::load("ollama/tags.yaml").remove(0);
    let instance_model = tags.response_json()["models"][0].clone();
    let instance = FakeUpstream::start().await;
    instance.replay(&tags, "/api/tags").await;
    wiremock::Mock::given(wiremock::matchers::path("/api/show"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({
            "details": instance_model["details"], "model_info": {},
            "capabilities": ["completion"], "modified_at": instance_model["modified_at"],
        })))
        .mount(&instance.server)
        .await;

    let (artifacts, work) = dirs();
    let log = work.join("llm-relay.log");
    let (port, admin_port) = (free_port(), free_port());
    let (api, admin) = (
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{admin_port}"),
    );
    let out = File::create(&log).unwrap();
    let mut relay = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_llm-relay"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("ADMIN_PORT", admin_port.to_string())
            .env("ADMIN_PASSWORD", PASSWORD)
            .env("OPENAI_API_KEY", API_KEY)
            .env("OPENAI_BASE_URL", format!("{}/v1", upstream.uri()))
            .env("OLLAMA_INSTANCES", format!("{INSTANCE}={}", instance.uri()))
            .env("RUST_LOG", "info")
            .env("DATA_DIR", work.join("data"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn llm-relay"),
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    wait_for("API server ready", &log, &mut relay, async || {
        http.get(format!("{api}/"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    wait_for("admin server ready", &log, &mut relay, async || {
        http.get(format!("{admin}/"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;

    let chat = |model: &str| {
        http.post(format!("{api}{CHAT_PATH}"))
            .bearer_auth("ui-test")
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    for _ in 0..REQUESTS {
        let resp = chat(&model).await.unwrap();
        assert_eq!(
            resp.status(),
            200,
            "{}",
            resp.text().await.unwrap_or_default()
        );
    }

    // The records reach the database within the recorder's flush interval; the admin API reads
    // them live.
    let login = http
        .post(format!("{admin}/api/login"))
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    wait_for(
        "usage records in the admin API",
        &log,
        &mut relay,
        async || {
            let Ok(r) = http
                .get(format!("{admin}/api/usage/summary?since=24h"))
                .header("cookie", &cookie)
                .send()
                .await
            else {
                return false;
            };
            r.json::<Value>()
                .await
                .is_ok_and(|t| t["requests"] == REQUESTS)
        },
    )
    .await;

    let instance_name = instance_model["name"].as_str().unwrap().to_string();
    wait_for("instance models discovered", &log, &mut relay, async || {
        let Ok(r) = http
            .get(format!("{admin}/api/instances"))
            .header("cookie", &cookie)
            .send()
            .await
        else {
            return false;
        };
        r.text().await.is_ok_and(|t| t.contains(&instance_name))
    })
    .await;

    let node_log = work.join("node.log");
    let out = File::create(&node_log).unwrap();
    let mut node = Command::new("node")
        .arg("tests/ui/admin_ui.mjs")
        .current_dir(root)
        .env("ADMIN_URL", &admin)
        .env("ADMIN_PASSWORD", PASSWORD)
        .env("ALIAS_NAME", ALIAS)
        .env("ALIAS_TARGET", &target)
        .env("EXPECTED_REQUESTS", REQUESTS.to_string())
        .env("INSTANCE_MODEL", &instance_name)
        .env("ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("run node (is Node.js installed?)");
    // Bounded: a stalled browser fails the test instead of hanging it.
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = node.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = node.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let output = read_log(&node_log);
    assert!(
        status.is_some_and(|s| s.success()),
        "browser test failed ({status:?}):\n{output}\nllm-relay log:\n{}\nscreenshots: {}",
        read_log(&log),
        artifacts.display()
    );
    println!("{output}");
    for page in [
        "01-dashboard",
        "02-providers",
        "04-instances",
        "05-aliases",
        "06-usage",
        "08-settings",
    ] {
        let png = artifacts.join(format!("{page}.png"));
        assert!(
            std::fs::metadata(&png).is_ok_and(|m| m.len() > 5_000),
            "{} missing",
            png.display()
        );
    }

    // What the browser changed is in the admin API.
    let get = |path: &str| {
        http.get(format!("{admin}{path}"))
            .header("cookie", &cookie)
            .send()
    };
    let settings: Value = get("/api/settings").await.unwrap().json().await.unwrap();
    assert_eq!(settings["default_tag"], "ui-default", "{settings}");
    let providers: Value = get("/api/providers").await.unwrap().json().await.unwrap();
    let added = providers["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "ui-test-provider")
        .unwrap_or_else(|| panic!("provider added in the UI: {providers}"));
    assert_eq!(added["api_key_env"], "UI_TEST_PROVIDER_KEY");
    assert_eq!(added["source"], "custom");
    let models: Value = get("/api/models").await.unwrap().json().await.unwrap();
    assert!(
        models["models"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["overridden"] == false),
        "the override set in the UI was cleared in the UI"
    );

    // The alias added in the browser routes at once through the API server.
    let before = upstream.received().await.len();
    let resp = chat(ALIAS).await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "alias added in the UI: {}",
        resp.text().await.unwrap_or_default()
    );
    let received = upstream.received().await;
    assert_eq!(received.len(), before + 1);
    let sent: Value = serde_json::from_slice(&received[before].body).unwrap();
    assert_eq!(
        sent["model"],
        id.info().id,
        "the alias reached its target model"
    );
}
