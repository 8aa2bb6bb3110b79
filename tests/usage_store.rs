//! The usage database as a file: a checked-in version-1 database must stay readable by every
//! later build (persisted data is forever), and `llm-relay usage` prints it as a table.
//!
//! `tests/fixtures/usage/v1.redb` was written by `write_v1_fixture` below (run it with
//! `cargo test --test usage_store -- --ignored` only when deliberately creating a new version's
//! fixture; never overwrite an old one).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use llm_relay::store::embedded::{FILE_NAME, RedbStore};
use llm_relay::store::{OverrideStore, UsageQuery, UsageSink};
use llm_relay::usage::UsageRecord;
use llm_relay::usage::cost::CostSource;
use llm_relay::usage::query::{Dimension, Filter, Granularity};
use llm_relay::usage::record::keys;

const FIXTURE: &str = "tests/fixtures/usage/v1.redb";
/// 2025-11-20T10:00:00Z, Unix ms.
const T0: i64 = 1_763_632_800_000;

fn fixture_records() -> Vec<UsageRecord> {
    let base = UsageRecord {
        time_ms: T0,
        frontend: "openai-api".into(),
        endpoint: "/v1/chat/completions".into(),
        provider: "anthropic".into(),
        model: "claude-sonnet-4-5-20250929".into(),
        model_requested: "claude-sonnet".into(),
        tags: vec!["alice".into(), "project-x".into()],
        client_ip: Some("192.0.2.10".into()),
        client_host: Some("alice-laptop".into()),
        user_agent: Some("OpenAI/Python 2.8.1".into()),
        stream: true,
        status: 200,
        error: None,
        complete: true,
        latency_ms: 1_500,
        ttft_ms: Some(300),
        input_tokens: 10_000,
        output_tokens: 2_000,
        reasoning_tokens: 0,
        cached_input_tokens: 0,
        cache_read_tokens: 5_000,
        cache_write_tokens: 0,
        cache_write_1h_tokens: 0,
        // Seed 002's worked example: $0.0465.
        cost_pico_usd: Some(46_500_000_000),
        cost_source: CostSource::Estimated,
        tokens_estimated: false,
    };
    vec![
        base.clone(),
        UsageRecord {
            time_ms: T0 + 60_000,
            provider: "openrouter".into(),
            model: "anthropic/claude-sonnet-4.5".into(),
            model_requested: "openrouter/anthropic/claude-sonnet-4.5".into(),
            tags: vec!["bob".into()],
            client_ip: Some("192.0.2.11".into()),
            client_host: None,
            stream: false,
            input_tokens: 194,
            output_tokens: 2,
            cache_read_tokens: 0,
            cost_pico_usd: Some(950_000_000_000),
            cost_source: CostSource::Reported,
            ..base.clone()
        },
        UsageRecord {
            time_ms: T0 + 86_400_000,
            frontend: "ollama-api".into(),
            endpoint: "/api/chat".into(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            model_requested: "gpt-4o".into(),
            tags: vec!["default".into()],
            status: 504,
            error: Some("upstream_timeout".into()),
            complete: false,
            ttft_ms: None,
            input_tokens: 0,
            output_tokens: 0,
            cache_read_tokens: 0,
            cost_pico_usd: None,
            cost_source: CostSource::Unpriced,
            ..base
        },
    ]
}

struct TempDir(PathBuf);

impl TempDir {
    fn with_fixture(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("llm-relay-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE),
            dir.join(FILE_NAME),
        )
        .unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Wrote `v1.redb` when records were stored as version 1. This build writes version-2 records
/// (`tokens_estimated`): running it now would replace the version-1 fixture with version-2
/// values, so do not (a version-2 fixture needs its own file and test).
#[test]
#[ignore = "writes tests/fixtures/usage/v1.redb; run deliberately"]
fn write_v1_fixture() {
    let dir = std::env::temp_dir().join(format!("llm-relay-fixture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = RedbStore::open(&dir).unwrap();
    store.write_batch(&fixture_records()).unwrap();
    store.set_setting(keys::RETENTION_DAYS, "30").unwrap();
    drop(store);
    std::fs::copy(
        dir.join(FILE_NAME),
        Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn checked_in_v1_database_stays_readable() {
    let dir = TempDir::with_fixture("v1");
    let store = RedbStore::open(&dir.0).unwrap();
    // Opening migrates the version-1 file to the current schema (the overrides table added).
    assert_eq!(
        store.schema_version().unwrap(),
        llm_relay::store::embedded::SCHEMA_VERSION
    );
    let mut records = store.recent(&Filter::default(), 10).unwrap();
    records.reverse();
    assert_eq!(records, fixture_records());
    assert_eq!(
        store.get_setting(keys::RETENTION_DAYS).unwrap().as_deref(),
        Some("30")
    );
    let t = store.summary(&Filter::default()).unwrap();
    assert_eq!((t.requests, t.errors, t.unpriced_requests), (3, 1, 1));
    assert_eq!(t.cost_pico_usd, 996_500_000_000);
    let by_tag = store.breakdown(&Filter::default(), Dimension::Tag).unwrap();
    let tags: Vec<&str> = by_tag.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(tags, ["bob", "alice", "project-x", "default"]);
    let days = store.series(&Filter::default(), Granularity::Day).unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!(days[0].key, "2025-11-20T00:00:00Z");
    let alice = Filter {
        tag: Some("alice".into()),
        ..Filter::default()
    };
    assert_eq!(store.summary(&alice).unwrap().cost_pico_usd, 46_500_000_000);
}

fn cli(args: &[&str], data_dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_llm-relay"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn usage_command_prints_tables() {
    let dir = TempDir::with_fixture("cli");
    let o = cli(&["usage", "--by", "tag"], &dir.0);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    for want in [
        "tag",
        "alice",
        "project-x",
        "bob",
        "TOTAL",
        "0.996500*",
        "no price",
    ] {
        assert!(out.contains(want), "{want} missing in:\n{out}");
    }
    let o = cli(
        &["usage", "--since", "2025-11-21", "--by", "provider"],
        &dir.0,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("openai") && !out.contains("openrouter"),
        "{out}"
    );
    let o = cli(&["usage"], &dir.0);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("2025-11-20T00:00:00Z") && out.contains("2025-11-21T00:00:00Z"));
    let o = cli(&["usage", "--by", "colour"], &dir.0);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--by"));
    let o = cli(&["usage", "--since", "yesterday"], &dir.0);
    assert_eq!(o.status.code(), Some(2));
}

/// The server binary records, and a graceful shutdown (SIGINT) commits before it exits: the next
/// `llm-relay usage` sees the request.
#[test]
fn server_flushes_usage_on_graceful_shutdown() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = std::env::temp_dir().join(format!("llm-relay-shutdown-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_llm-relay"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", &dir)
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        // The admin server runs too (any free port): the shutdown must stop both.
        .env("ADMIN_PORT", "0")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.split("listen=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // An unknown model: answered (404) and recorded without any upstream.
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    let body = r#"{"model":"no-such-model@carol","messages":[{"role":"user","content":"hi"}]}"#;
    write!(
        sock,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    sock.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let o = cli(&["usage", "--by", "tag"], &dir);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("carol"), "{out}");
    let store = RedbStore::open(&dir).unwrap();
    let r = store.recent(&Filter::default(), 1).unwrap().remove(0);
    assert_eq!(r.model_requested, "no-such-model");
    assert_eq!(r.error.as_deref(), Some("model_not_found"));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Day rows come from the same hour-resolution bounds as the totals: a `--since` inside a day
/// must not pull in that day's earlier hours (rows summing to more than TOTAL).
#[test]
fn day_series_agrees_with_totals_for_bounds_inside_a_day() {
    let dir = std::env::temp_dir().join(format!("llm-relay-dayseries-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = RedbStore::open(&dir).unwrap();
    let hour = 3_600_000;
    let rec = |t: i64| UsageRecord {
        time_ms: t,
        tags: vec!["a".into()],
        status: 200,
        cost_pico_usd: Some(7),
        cost_source: CostSource::Estimated,
        ..UsageRecord::default()
    };
    // 2025-11-20 01:00 and 10:00, 2025-11-21 02:00 and 20:00 (UTC).
    let day0 = T0 - 10 * hour;
    let times = [
        day0 + hour,
        day0 + 10 * hour,
        day0 + 26 * hour,
        day0 + 44 * hour,
    ];
    store.write_batch(&times.map(rec)).unwrap();
    for (since, until) in [
        (Some(day0 + 5 * hour), None),
        (None, Some(day0 + 30 * hour)),
        (Some(day0 + 5 * hour), Some(day0 + 30 * hour)),
        (Some(day0), Some(day0 + 48 * hour)),
    ] {
        let f = Filter {
            since_ms: since,
            until_ms: until,
            ..Filter::default()
        };
        let total = store.summary(&f).unwrap();
        let rows = store.series(&f, Granularity::Day).unwrap();
        let sum: u64 = rows.iter().map(|r| r.totals.requests).sum();
        let cost: u64 = rows.iter().map(|r| r.totals.cost_pico_usd).sum();
        assert_eq!(
            (sum, cost),
            (total.requests, total.cost_pico_usd),
            "{since:?}..{until:?}"
        );
    }
    let f = Filter {
        since_ms: Some(day0 + 5 * hour),
        until_ms: Some(day0 + 30 * hour),
        ..Filter::default()
    };
    assert_eq!(store.summary(&f).unwrap().requests, 2);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `docker stop` and systemd send SIGTERM: it is a graceful shutdown too, and records are kept.
#[test]
fn server_flushes_usage_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = std::env::temp_dir().join(format!("llm-relay-sigterm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_llm-relay"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", &dir)
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        // The admin server runs too (any free port): the shutdown must stop both.
        .env("ADMIN_PORT", "0")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.split("listen=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    let body = r#"{"model":"no-such-model@dave","messages":[{"role":"user","content":"hi"}]}"#;
    write!(
        sock,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    sock.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let store = RedbStore::open(&dir).unwrap();
    let r = store.recent(&Filter::default(), 1).unwrap();
    assert_eq!(r.len(), 1, "the record was lost");
    assert_eq!(r[0].tags, ["dave"]);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--tag` is normalised like stored tags (case, key-looking values hashed), so `--tag Alice`
/// finds `alice`.
#[test]
fn usage_command_normalises_the_tag_filter() {
    let dir = TempDir::with_fixture("cli-tag");
    let o = cli(&["usage", "--tag", " Alice ", "--by", "provider"], &dir.0);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let total = out.lines().find(|l| l.starts_with("TOTAL")).unwrap();
    let requests: u64 = total.split_whitespace().nth(1).unwrap().parse().unwrap();
    // Exactly alice's requests: neither 0 (filter not normalised) nor everyone's (ignored).
    let all = cli(&["usage", "--by", "provider"], &dir.0);
    let all_out = String::from_utf8_lossy(&all.stdout);
    let everyone: u64 = all_out
        .lines()
        .find(|l| l.starts_with("TOTAL"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert!(requests > 0 && requests < everyone, "{out}\n{all_out}");
}

/// The server holds the database exclusively: the command says so instead of failing obscurely.
#[test]
fn usage_command_while_the_database_is_held_says_why() {
    let dir = TempDir::with_fixture("cli-locked");
    let held = RedbStore::open(&dir.0).unwrap();
    let o = cli(&["usage"], &dir.0);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("stop it first"), "{err}");
    drop(held);
    assert!(cli(&["usage"], &dir.0).status.success());
}

/// A database from a newer llm-relay is reported as such, not as "held by a running server".
#[test]
fn usage_command_on_a_newer_database_names_the_version() {
    let dir = TempDir::with_fixture("cli-newer");
    {
        let db = redb::Database::create(dir.0.join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap();
            meta.insert("schema_version", 99).unwrap();
        }
        txn.commit().unwrap();
    }
    let o = cli(&["usage"], &dir.0);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("schema version 99"), "{err}");
    assert!(!err.contains("stop it first"), "{err}");
}

/// Ages must be positive and in range: a negative or absurd age is a usage error, not a silent
/// future bound or an overflow panic.
#[test]
fn usage_command_rejects_bad_ages() {
    let dir = TempDir::with_fixture("cli-ages");
    for bad in ["-5h", "99999999999999999h", "99999999999999999d"] {
        let o = cli(&["usage", &format!("--since={bad}")], &dir.0);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{bad}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert!(cli(&["usage", "--since", "0h"], &dir.0).status.success());
}

#[test]
fn settings_are_written_together_and_survive_reopening() {
    let dir = TempDir::with_fixture("settings-batch");
    {
        let store = RedbStore::open(&dir.0).unwrap();
        store.set_setting("a", "old").unwrap();
        store.set_setting("b", "gone").unwrap();
        store
            .write_settings(&[("a", Some("new")), ("b", None), ("c", Some("added"))])
            .unwrap();
    }
    let store = RedbStore::open(&dir.0).unwrap();
    assert_eq!(store.get_setting("a").unwrap().as_deref(), Some("new"));
    assert_eq!(store.get_setting("b").unwrap(), None);
    assert_eq!(store.get_setting("c").unwrap().as_deref(), Some("added"));
}
