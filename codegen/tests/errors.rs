//! One test per kind of catalog error: a small broken `providers.yaml` / `pricing.yaml` pair goes
//! through `compile`, the full rendered diagnostics are snapshotted (`snapshots/errors__*.snap`),
//! and the `file:line:col:` prefix is checked against the line that is actually wrong.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_relay_codegen::{Error, Sources, compile};

/// A valid catalog: two providers, three models, two aliases, one provider default.
const PROVIDERS: &str = "\
providers:
  - name: acme
    display_name: Acme
    wire: openai_compat
    base_url: https://api.acme.test/v1
    auth: bearer
    api_key_env: ACME_API_KEY
    models:
      - id: rocket
        family: rocket
        context_length: 8192
        description: Rocket model
      - id: jet
        family: jet
        context_length: 4096
        description: Jet model
  - name: beta
    display_name: Beta
    wire: anthropic
    base_url: https://api.beta.test/v1
    auth: x_api_key
    api_key_env: BETA_API_KEY
    models:
      - id: comet
        family: comet
        context_length: 200000
        description: Comet model
aliases:
  fast: acme/rocket
  smart: beta/comet
";

const PRICING: &str = "\
source: test prices
provider_defaults:
  beta: {cache_read: 0.1}
models:
  acme/rocket: {input: 1.0, output: 2.0}
  acme/jet:
    input: 0.5
    output: 1.5
  beta/comet:
    input: 3.0
    output: 15.0
";

/// `text` with `from` (which must occur exactly once) replaced by `to`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once");
    text.replacen(from, to, 1)
}

/// The diagnostics for a pair that must fail.
fn errors(providers: &str, pricing: &str) -> Vec<Error> {
    let src = Sources {
        providers_name: "providers.yaml",
        providers,
        pricing_name: "pricing.yaml",
        pricing,
    };
    match compile(&src) {
        Ok(_) => panic!("expected the catalog to be rejected"),
        Err(errors) => errors,
    }
}

/// Every diagnostic, one per line, as build.rs prints them.
fn render(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Assert `e` is located in `file` at the `nth` (0-based) occurrence of `snippet` in `text`:
/// that line, and the column where the snippet starts.
fn assert_at(e: &Error, file: &str, text: &str, snippet: &str, nth: usize) {
    let (line, col) = text
        .lines()
        .enumerate()
        .flat_map(|(i, l)| l.match_indices(snippet).map(move |(c, _)| (i + 1, c + 1)))
        .nth(nth)
        .unwrap_or_else(|| panic!("{snippet:?} occurrence {nth} not in the text"));
    let prefix = format!("{file}:{line}:{col}: ");
    let rendered = e.to_string();
    assert!(
        rendered.starts_with(&prefix),
        "expected {prefix:?} (line {line}: {:?}), got {rendered:?}",
        text.lines().nth(line - 1).unwrap_or_default(),
    );
    assert_eq!(e.file, file);
    assert_eq!(e.location, Some((line, col)));
}

#[test]
fn base_catalog_compiles() {
    let src = Sources {
        providers_name: "providers.yaml",
        providers: PROVIDERS,
        pricing_name: "pricing.yaml",
        pricing: PRICING,
    };
    assert!(compile(&src).is_ok());
}

// ---- parse errors (serde / libyaml), located by the YAML parser

#[test]
fn yaml_syntax_error() {
    let p = edit(
        PROVIDERS,
        "description: Rocket model",
        "description: Rocket: model",
    );
    let e = errors(&p, PRICING);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "providers.yaml", &p, ": model", 0);
}

#[test]
fn duplicate_keys_are_refused_not_shadowed() {
    // A copied price entry whose key was not renamed: YAML parsers keep one of the two silently.
    let r = edit(
        PRICING,
        "  beta/comet:\n",
        "  acme/rocket: {input: 99.0, output: 99.0}\n  beta/comet:\n",
    );
    let e = errors(PROVIDERS, &r);
    assert_eq!(e.len(), 1, "{}", render(&e));
    assert!(
        e[0].message.contains("duplicate key `acme/rocket`"),
        "{}",
        render(&e)
    );
    // Located where the `models` mapping starts (serde_yaml reports a mapping's errors there).
    assert_at(&e[0], "pricing.yaml", &r, "acme/rocket", 0);
    // The same for aliases.
    let p = edit(
        PROVIDERS,
        "  smart: beta/comet\n",
        "  smart: beta/comet\n  fast: beta/comet\n",
    );
    let e = errors(&p, PRICING);
    assert_eq!(e.len(), 1, "{}", render(&e));
    assert!(
        e[0].message.contains("duplicate key `fast`"),
        "{}",
        render(&e)
    );
    assert!(
        e[0].to_string().starts_with("providers.yaml:"),
        "{}",
        render(&e)
    );
}

#[test]
fn yaml_syntax_error_keeps_context() {
    // An unterminated quote is found at the end of the file; the message says where it started.
    let r = edit(PRICING, "source: test prices", "source: \"test prices");
    let e = errors(PROVIDERS, &r);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert!(e[0].to_string().starts_with("pricing.yaml:"));
    assert!(
        e[0].message.contains("at line 1 column 9"),
        "{}",
        e[0].message
    );
}

#[test]
fn unknown_field_provider() {
    let p = edit(
        PROVIDERS,
        "    auth: bearer\n",
        "    auth: bearer\n    timeout: 30\n",
    );
    let e = errors(&p, PRICING);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "providers.yaml", &p, "timeout", 0);
}

#[test]
fn unknown_field_model() {
    let p = edit(PROVIDERS, "context_length: 4096", "context_lenght: 4096");
    let e = errors(&p, PRICING);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "providers.yaml", &p, "context_lenght", 0);
}

#[test]
fn unknown_field_price() {
    let r = edit(PRICING, "    input: 0.5", "    inptu: 0.5");
    let e = errors(PROVIDERS, &r);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "pricing.yaml", &r, "inptu", 0);
}

#[test]
fn unknown_enum_value() {
    let p = edit(PROVIDERS, "wire: openai_compat", "wire: opneai");
    let e = errors(&p, PRICING);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "providers.yaml", &p, "opneai", 0);
}

#[test]
fn missing_required_field() {
    // serde reports a missing field at the start of the mapping that lacks it.
    let p = edit(PROVIDERS, "        family: jet\n", "");
    let e = errors(&p, PRICING);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "providers.yaml", &p, "id: jet", 0);
}

#[test]
fn wrong_type() {
    let p = edit(PROVIDERS, "context_length: 8192", "context_length: \"big\"");
    let e = errors(&p, PRICING);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "providers.yaml", &p, "\"big\"", 0);
}

#[test]
fn parse_errors_in_both_files_reported_together() {
    let p = edit(PROVIDERS, "wire: anthropic", "wire: anthropik");
    let r = edit(PRICING, "    output: 15.0", "    output: lots");
    let e = errors(&p, &r);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 2);
    assert_at(&e[0], "providers.yaml", &p, "anthropik", 0);
    assert_at(&e[1], "pricing.yaml", &r, "lots", 0);
}

// ---- validation errors, located by validate.rs

#[test]
fn duplicate_provider() {
    let p = edit(
        PROVIDERS,
        "aliases:\n",
        "  - name: acme\n    display_name: Acme again\n    wire: openai_compat\n    base_url: https://eu.acme.test/v1\n    auth: bearer\n    api_key_env: ACME_EU_KEY\n    models:\n      - id: glider\n        family: glider\n        context_length: 1000\n        description: Glider\naliases:\n",
    );
    let r = format!("{PRICING}  acme/glider: {{input: 1, output: 1}}\n");
    let e = errors(&p, &r);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    // The second definition is the one reported.
    assert_at(&e[0], "providers.yaml", &p, "name: acme", 1);
}

#[test]
fn bad_provider_name() {
    let p = PROVIDERS
        .replace("name: beta", "name: Beta-Co")
        .replace("beta/comet", "Beta-Co/comet");
    let r = PRICING
        .replace("beta/comet", "Beta-Co/comet")
        .replace("  beta:", "  Beta-Co:");
    let e = errors(&p, &r);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "providers.yaml", &p, "name: Beta-Co", 0);
}

#[test]
fn base_url_not_a_url() {
    let p = edit(PROVIDERS, "https://api.beta.test/v1", "api.beta.test/v1");
    let e = errors(&p, PRICING);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "providers.yaml", &p, "base_url", 1);
}

#[test]
fn base_url_not_http() {
    let p = edit(
        PROVIDERS,
        "https://api.acme.test/v1",
        "ftp://api.acme.test/v1",
    );
    let e = errors(&p, PRICING);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "providers.yaml", &p, "base_url", 0);
}

#[test]
fn base_url_trailing_slash() {
    let p = edit(
        PROVIDERS,
        "https://api.beta.test/v1",
        "https://api.beta.test/v1/",
    );
    let e = errors(&p, PRICING);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "providers.yaml", &p, "base_url", 1);
}

#[test]
fn auth_without_api_key_env() {
    let p = edit(PROVIDERS, "    api_key_env: BETA_API_KEY\n", "");
    let e = errors(&p, PRICING);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "providers.yaml", &p, "auth: x_api_key", 0);
}

#[test]
fn alias_unknown_target() {
    let p = edit(PROVIDERS, "fast: acme/rocket", "fast: acme/rockit");
    let p = edit(&p, "smart: beta/comet", "smart: comet");
    let e = errors(&p, PRICING);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 2);
    assert_at(&e[0], "providers.yaml", &p, "fast:", 0);
    assert_at(&e[1], "providers.yaml", &p, "smart:", 0);
}

#[test]
fn duplicate_alias_ignoring_case() {
    let p = edit(
        PROVIDERS,
        "  smart: beta/comet\n",
        "  smart: beta/comet\n  Fast: acme/jet\n",
    );
    let e = errors(&p, PRICING);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    // The later spelling in the file is the duplicate, whatever the sort order of the keys.
    assert_at(&e[0], "providers.yaml", &p, "Fast:", 0);
}

#[test]
fn ambiguous_model_id_across_providers() {
    let p = edit(
        PROVIDERS,
        "        description: Comet model\n",
        "        description: Comet model\n      - id: rocket\n        family: rocket\n        context_length: 1000\n        description: Beta's rocket\n",
    );
    let r = format!("{PRICING}  beta/rocket: {{input: 1, output: 1}}\n");
    let e = errors(&p, &r);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    // Reported at the second model with that id, naming the first.
    assert_at(&e[0], "providers.yaml", &p, "id: rocket", 1);
}

#[test]
fn model_ids_differing_only_in_punctuation() {
    // `jet-1` and `jet1` both become the Rust variant `AcmeJet1`.
    let p = edit(
        PROVIDERS,
        "      - id: jet\n",
        "      - id: jet-1\n        family: jet\n        context_length: 10\n        description: J\n      - id: jet1\n",
    );
    let r = edit(
        PRICING,
        "  acme/jet:\n",
        "  acme/jet-1: {input: 1, output: 1}\n  acme/jet1:\n",
    );
    let e = errors(&p, &r);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "providers.yaml", &p, "id: jet1", 0);
}

#[test]
fn ambiguous_alias_equals_model_id() {
    let p = edit(PROVIDERS, "  smart: beta/comet\n", "  jet: beta/comet\n");
    let e = errors(&p, PRICING);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "providers.yaml", &p, "jet: beta/comet", 0);
}

#[test]
fn model_not_priced() {
    let r = edit(
        PRICING,
        "  acme/jet:\n    input: 0.5\n    output: 1.5\n",
        "",
    );
    let e = errors(PROVIDERS, &r);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "providers.yaml", PROVIDERS, "id: jet", 0);
}

#[test]
fn price_for_unknown_model() {
    let r = format!("{PRICING}  acme/rockett: {{input: 1, output: 1}}\n");
    let e = errors(PROVIDERS, &r);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "pricing.yaml", &r, "acme/rockett", 0);
}

#[test]
fn negative_price() {
    let r = edit(PRICING, "input: 0.5", "input: -0.5");
    let e = errors(PROVIDERS, &r);
    insta::assert_snapshot!(render(&e));
    // Only the bad rate: the model is not also reported as unpriced.
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "pricing.yaml", &r, "input: -0.5", 0);
}

#[test]
fn nan_price() {
    // A flow mapping: the column points at the field inside it.
    let r = edit(PRICING, "output: 2.0", "output: .nan");
    let e = errors(PROVIDERS, &r);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "pricing.yaml", &r, "output: .nan", 0);
}

#[test]
fn tiers_not_ascending() {
    let r = edit(
        PRICING,
        "    output: 15.0\n",
        "    output: 15.0\n    tiers:\n      - {above_prompt_tokens: 200000, input: 6.0, output: 22.5}\n      - {above_prompt_tokens: 100000, input: 4.0, output: 18.0}\n",
    );
    let e = errors(PROVIDERS, &r);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "pricing.yaml", &r, "above_prompt_tokens: 100000", 0);
}

#[test]
fn provider_defaults_unknown_provider() {
    let r = edit(
        PRICING,
        "  beta: {cache_read: 0.1}\n",
        "  beta: {cache_read: 0.1}\n  gamma: {cache_read: 0.5}\n",
    );
    let e = errors(PROVIDERS, &r);
    insta::assert_snapshot!(render(&e));
    assert_eq!(e.len(), 1);
    assert_at(&e[0], "pricing.yaml", &r, "gamma", 0);
}

#[test]
fn multiple_errors_reported_together() {
    let p = edit(
        PROVIDERS,
        "https://api.acme.test/v1",
        "https://api.acme.test/v1/",
    );
    let p = edit(&p, "smart: beta/comet", "smart: beta/komet");
    let r = edit(PRICING, "  acme/jet:\n", "  acme/jett:\n");
    let r = edit(&r, "input: 3.0", "input: -3.0");
    let e = errors(&p, &r);
    insta::assert_snapshot!(render(&e));
    // providers.yaml first, then pricing.yaml; each in the order it is checked.
    assert_eq!(e.len(), 5);
    assert_at(&e[0], "providers.yaml", &p, "base_url", 0);
    assert_at(&e[1], "providers.yaml", &p, "smart:", 0);
    assert_at(&e[2], "providers.yaml", &p, "id: jet", 0);
    assert_at(&e[3], "pricing.yaml", &r, "acme/jett", 0);
    assert_at(&e[4], "pricing.yaml", &r, "input: -3.0", 0);
}
