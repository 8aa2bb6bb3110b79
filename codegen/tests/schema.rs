//! The checked-in JSON Schemas (`providers.schema.json`, `pricing.schema.json` at the workspace
//! root) must equal what the schema types produce. After changing `codegen/src/schema.rs`,
//! regenerate them with:
//!
//!     UPDATE_SCHEMAS=1 cargo test -p llm-relay-codegen --test schema

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check(file: &str, expected: &str) {
    let path = root().join(file);
    if std::env::var_os("UPDATE_SCHEMAS").is_some_and(|v| v == "1") {
        std::fs::write(&path, expected).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{file} is stale or missing: it differs from what codegen/src/schema.rs produces.\n\
         Regenerate it with:\n\n    UPDATE_SCHEMAS=1 cargo test -p llm-relay-codegen --test schema\n"
    );
}

#[test]
fn providers_schema_is_current() {
    check(
        "providers.schema.json",
        &llm_relay_codegen::providers_schema(),
    );
}

#[test]
fn pricing_schema_is_current() {
    check("pricing.schema.json", &llm_relay_codegen::pricing_schema());
}

#[test]
fn schemas_are_json_schemas() {
    for schema in [
        llm_relay_codegen::providers_schema(),
        llm_relay_codegen::pricing_schema(),
    ] {
        let v: serde_json::Value = serde_json::from_str(&schema).expect("valid JSON");
        assert!(
            v["$schema"]
                .as_str()
                .is_some_and(|s| s.contains("json-schema.org")),
            "no $schema in {schema}"
        );
        // deny_unknown_fields must reach editors as additionalProperties: false.
        assert_eq!(v["additionalProperties"], serde_json::Value::Bool(false));
    }
}
