//! The binary's configuration handling and commands, run as a user would: environment in,
//! exit status and output checked. Every configuration mistake must stop the start with a
//! message naming the variable and what it expects, never be silently ignored.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

use llm_relay::catalog::ModelId;

fn relay(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-relay"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn models_lists_the_whole_catalog() {
    let o = relay(&["models"], &[]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert_eq!(out.lines().count(), ModelId::all().count());
    for m in ModelId::all() {
        assert!(out.contains(m.info().id), "{}", m.info().id);
    }
}

#[test]
fn keys_come_from_variables_or_files_and_are_never_printed() {
    let dir = std::env::temp_dir().join(format!("llm-relay-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("openai_key");
    std::fs::write(&key_file, "sk-from-file-123\n").unwrap();
    let o = relay(
        &["check"],
        &[
            ("OPENAI_API_KEY_FILE", key_file.to_str().unwrap()),
            ("GROQ_API_KEY", "gsk-direct-456"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let line = |p: &str| out.lines().find(|l| l.starts_with(p)).unwrap().to_string();
    assert!(line("openai ").contains("enabled"), "{out}");
    assert!(line("groq ").contains("enabled"), "{out}");
    assert!(line("mistral ").contains("no key"), "{out}");
    assert!(!out.contains("sk-from-file-123") && !out.contains("gsk-direct-456"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn configuration_mistakes_stop_the_start_with_a_clear_message() {
    let cases: [(&str, &str, &str); 9] = [
        (
            "PORT",
            "abc",
            "PORT=\"abc\" is not valid: expected a port number",
        ),
        ("PORT", "99999", "PORT=\"99999\" is not valid"),
        ("HOST", "localhost", "expected an IP address"),
        (
            "OPENAI_API_KEY_FILE",
            "/nonexistent/key",
            "OPENAI_API_KEY_FILE=\"/nonexistent/key\" cannot be read",
        ),
        (
            "OPENAI_BASE_URL",
            "notaurl",
            "OPENAI_BASE_URL=\"notaurl\" is not valid: expected an http(s) URL",
        ),
        (
            "DEFAULT_MODEL",
            "no-such-model",
            "DEFAULT_MODEL=\"no-such-model\" is not a model in the catalog",
        ),
        (
            "MAX_BODY_BYTES",
            "lots",
            "MAX_BODY_BYTES=\"lots\" is not valid",
        ),
        ("SERVER_THREADS", "0", "SERVER_THREADS must be at least 1"),
        (
            "SERVER_THREADS",
            "two",
            "SERVER_THREADS=\"two\" is not valid: expected a number of threads",
        ),
    ];
    for (var, value, message) in cases {
        let o = relay(&["check"], &[(var, value)]);
        assert_eq!(o.status.code(), Some(2), "{var}={value}");
        assert!(
            stderr(&o).contains(message),
            "{var}={value}: {}",
            stderr(&o)
        );
    }
}

/// A provider whose key has alternative variables (providers.yaml `api_key_env_alternatives`,
/// e.g. Gemini's `GEMINI_API_KEY` beside `GOOGLE_API_KEY`) is enabled by any of them.
#[test]
fn alternative_key_variables_enable_their_provider() {
    for p in llm_relay::catalog::PROVIDERS
        .iter()
        .filter(|p| !p.api_key_env_alternatives.is_empty())
    {
        for var in p.api_key_env_alternatives {
            let o = relay(&["check"], &[(var, "alt-key-789")]);
            assert!(o.status.success(), "{}", stderr(&o));
            let out = stdout(&o);
            let line = out
                .lines()
                .find(|l| l.starts_with(&format!("{} ", p.name)))
                .unwrap();
            assert!(line.contains("enabled"), "{var}: {out}");
            assert!(!out.contains("alt-key-789"), "{out}");
        }
    }
}

/// Walkthrough findings: `check` validates everything the server would (usage settings too) and
/// shows them; `models` and `usage` do not depend on server-only variables; `usage` never creates
/// an empty database in a wrong DATA_DIR; RUST_LOG is read like every variable (`_FILE` too) and
/// a bad value is an error.
#[test]
fn commands_check_what_they_use_and_nothing_else() {
    let o = relay(&["check"], &[("USAGE_TRACKING", "maybe")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("USAGE_TRACKING=\"maybe\""),
        "{}",
        stderr(&o)
    );
    let o = relay(
        &["check"],
        &[("DEFAULT_MODEL", "gpt-4o"), ("OPENAI_API_KEY", "k")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("default model gpt-4o"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("usage database ./data/llm-relay.redb"),
        "{}",
        stdout(&o)
    );

    let o = relay(&["models"], &[("PORT", "abc")]);
    assert!(o.status.success(), "{}", stderr(&o));

    let dir = std::env::temp_dir().join(format!("llm-relay-cli-nodb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = relay(
        &["usage"],
        &[("DATA_DIR", dir.to_str().unwrap()), ("PORT", "abc")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no usage database at"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.exists(), "usage must not create a database");

    let o = relay(
        &["check"],
        &[("RUST_LOG_FILE", "/nonexistent/llm-relay-log")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("RUST_LOG_FILE"), "{}", stderr(&o));
    let o = relay(&["check"], &[("RUST_LOG", "info,[")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("RUST_LOG="), "{}", stderr(&o));
}
