//! The packaging files say what the code does: `.env.example` lists every variable the server
//! reads (each read in src/ and every provider's key and base-URL variable), the Dockerfile pins
//! its base images by digest, builds `--locked` with the reproducibility flags, runs as a
//! non-root user with a `/data` volume and a HEALTHCHECK, and both compose files publish the API
//! and admin ports, mount `/data` and check health; the Swarm file takes keys as secrets only.
//! Offline and static: building the image needs Docker Hub (`docker build .` where it is
//! reachable; `docker-compose config` validates the compose files).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use llm_relay::catalog::PROVIDERS;
use serde_yaml::Value;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `env_var("X")`, `env_parse("X", ..)` (also `env_parse::<T>("X", ..)`), `env_bool("X")` in
/// src/ (the config readers).
fn variables_read_in_src() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
                continue;
            }
            let mut text = std::fs::read_to_string(&path).unwrap();
            // `env_parse::<usize>("X", ..)` reads X as well: drop the turbofish.
            while let Some(at) = text.find("env_parse::<") {
                let end = text[at..].find(">(").map_or(text.len(), |e| at + e + 1);
                text.replace_range(at + "env_parse".len()..end, "");
            }
            for reader in ["env_var(\"", "env_parse(\"", "env_bool(\""] {
                for part in text.split(reader).skip(1) {
                    let name: String = part
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if !name.is_empty() && !out.contains(&name) {
                        out.push(name);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out
}

#[test]
fn env_example_lists_every_variable_the_server_reads() {
    let example = read(".env.example");
    let listed: Vec<&str> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    let mut wanted = variables_read_in_src();
    assert!(
        wanted.contains(&"STREAM_IDLE_TIMEOUT_MS".to_string()) && wanted.len() > 15,
        "the scan of src/ found too little: {wanted:?}"
    );
    for p in &PROVIDERS {
        wanted.push(p.base_url_env.to_string());
        wanted.extend(p.api_key_env.map(str::to_string));
        wanted.extend(p.api_key_env_alternatives.iter().map(|s| s.to_string()));
    }
    let missing: Vec<_> = wanted
        .iter()
        .filter(|w| !listed.contains(&w.as_str()))
        .collect();
    assert!(missing.is_empty(), ".env.example lacks {missing:?}");
    assert!(
        example.contains("_FILE"),
        "the _FILE variants are documented"
    );
}

#[test]
fn dockerfile_is_pinned_locked_reproducible_non_root_with_data_and_healthcheck() {
    let df = read("Dockerfile");
    let froms: Vec<&str> = df
        .lines()
        .filter(|l| l.starts_with("ARG ") && l.contains("_IMAGE="))
        .collect();
    assert_eq!(froms.len(), 2, "builder and runtime images: {froms:?}");
    for f in &froms {
        let digest = f.split("@sha256:").nth(1).unwrap_or_default();
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "not pinned by digest: {f}"
        );
    }
    assert_eq!(
        df.lines().filter(|l| l.starts_with("FROM ")).count(),
        2,
        "multi-stage"
    );
    for needle in [
        "cargo build --locked",
        "--remap-path-prefix",
        "SOURCE_DATE_EPOCH",
        "USER 10001",
        "VOLUME [\"/data\"]",
        "HEALTHCHECK",
        "\"llm-relay\", \"health\"",
        "EXPOSE 11434 8080",
    ] {
        assert!(df.contains(needle), "Dockerfile lacks {needle:?}");
    }
    let repro = read("scripts/repro.sh");
    for needle in [
        "--locked",
        "--remap-path-prefix",
        "SOURCE_DATE_EPOCH",
        "sha256sum",
    ] {
        assert!(repro.contains(needle), "scripts/repro.sh lacks {needle:?}");
    }
}

fn service(file: &str) -> Value {
    let doc: Value = serde_yaml::from_str(&read(file)).unwrap();
    doc["services"]["llm-relay"].clone()
}

#[test]
fn compose_files_publish_both_ports_keep_data_and_check_health() {
    for file in ["docker-compose.yml", "docker-compose.swarm.yml"] {
        let s = service(file);
        let ports: Vec<&str> = s["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(ports, ["11434:11434", "8080:8080"], "{file}");
        assert_eq!(
            s["volumes"][0].as_str(),
            Some("llm-relay-data:/data"),
            "{file}"
        );
        assert_eq!(
            s["healthcheck"]["test"][1].as_str(),
            Some("llm-relay"),
            "{file}"
        );
        assert!(s["stop_grace_period"].is_string(), "{file}");
    }
    // Swarm: every key comes from a secret file, none from the environment.
    let s = service("docker-compose.swarm.yml");
    let env = s["environment"].as_mapping().unwrap();
    let secrets: Vec<&str> = s["secrets"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(!secrets.is_empty());
    for (k, v) in env {
        let k = k.as_str().unwrap();
        assert!(!k.ends_with("_API_KEY"), "a key in the environment: {k}");
        if let Some(var) = k.strip_suffix("_FILE") {
            assert!(
                PROVIDERS.iter().any(|p| p.api_key_env == Some(var)),
                "{k} is not a provider key variable"
            );
            let secret = v.as_str().unwrap().strip_prefix("/run/secrets/").unwrap();
            assert!(
                secrets.contains(&secret),
                "{k}: secret {secret} not granted"
            );
        }
    }
}
