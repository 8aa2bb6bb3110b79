//! The generated Rust: snapshot of a small fixed catalog (`tests/data/`), determinism, that it is
//! valid Rust, and that the real `providers.yaml` + `pricing.yaml` at the workspace root compile.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use llm_relay_codegen::{Sources, compile};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compile the two files in `dir`, panicking with the rendered diagnostics on failure.
fn compile_dir(dir: &Path) -> String {
    let providers = read(&dir.join("providers.yaml"));
    let pricing = read(&dir.join("pricing.yaml"));
    let src = Sources {
        providers_name: "providers.yaml",
        providers: &providers,
        pricing_name: "pricing.yaml",
        pricing: &pricing,
    };
    match compile(&src) {
        Ok(code) => code,
        Err(errors) => panic!(
            "{} does not compile:\n{}",
            dir.display(),
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn generated_catalog() {
    insta::assert_snapshot!(compile_dir(&data_dir()));
}

#[test]
fn generation_is_deterministic() {
    let first = compile_dir(&data_dir());
    let second = compile_dir(&data_dir());
    assert_eq!(first, second);
}

#[test]
fn generated_code_parses() {
    let code = compile_dir(&data_dir());
    let file = syn::parse_file(&code).unwrap_or_else(|e| panic!("not valid Rust: {e}\n{code}"));
    assert!(!file.items.is_empty());
    // validate() rejects what would not compile; the fallback must never be reached.
    assert!(!code.contains("compile_error!"));
}

#[test]
fn real_catalog_compiles() {
    let code = compile_dir(&workspace_root());
    let file = syn::parse_file(&code).unwrap_or_else(|e| panic!("not valid Rust: {e}"));
    assert!(!file.items.is_empty());
    assert!(!code.contains("compile_error!"));
    assert_eq!(code, compile_dir(&workspace_root()), "not deterministic");
}
