//! Compiles the declarative catalog (`providers.yaml` + `pricing.yaml`) into Rust.
//!
//! Three pure steps, as in ucd-generate: [`parse`] (YAML -> [`schema`] types, serde errors carry
//! line and column), [`validate`] (cross-references: alias targets, duplicate spellings, every model
//! priced, URLs), [`generate`] (syn/quote -> prettyplease). `build.rs` calls [`build`]; a failure
//! prints compiler-style messages (`providers.yaml:42:7: ...`) and fails the build. This crate knows
//! nothing about HTTP or the runtime; the types the generated code names live in
//! `llm-relay::catalog::types`.
//!
//! Not used by the build: [`litellm`] and the `litellm-sync` binary refresh the generated blocks
//! of both YAML files from LiteLLM's price database (README "Catalog").

pub mod generate;
pub mod litellm;
pub mod schema;
pub mod validate;

use std::fmt;
use std::path::Path;

pub use generate::generate;
pub use validate::{Catalog, validate};

/// One problem in a catalog file, rendered like a compiler diagnostic:
/// `file:line:column: entry: message` (line/column and entry when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// File name as the user knows it (`providers.yaml`).
    pub file: String,
    /// 1-based line and column, when the problem can be located in the text.
    pub location: Option<(usize, usize)>,
    /// Entry path, e.g. `providers[openai].models[gpt-4o]` or `aliases.sonnet`.
    pub entry: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, col)) = self.location {
            write!(f, ":{line}:{col}")?;
        }
        if let Some(entry) = &self.entry {
            write!(f, ": {entry}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The two source texts with the names they are reported under.
#[derive(Debug, Clone)]
pub struct Sources<'a> {
    /// Name used in messages for the providers file.
    pub providers_name: &'a str,
    /// Text of `providers.yaml`.
    pub providers: &'a str,
    /// Name used in messages for the pricing file.
    pub pricing_name: &'a str,
    /// Text of `pricing.yaml`.
    pub pricing: &'a str,
}

/// Parse both files into the schema types. Errors carry the serde location and message
/// (unknown field, wrong type, unknown enum value, missing field).
pub fn parse(
    src: &Sources<'_>,
) -> Result<(schema::ProvidersFile, schema::PricingFile), Vec<Error>> {
    let providers = parse_one::<schema::ProvidersFile>(src.providers_name, src.providers);
    let pricing = parse_one::<schema::PricingFile>(src.pricing_name, src.pricing);
    match (providers, pricing) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (a, b) => Err(a.err().into_iter().chain(b.err()).collect()),
    }
}

fn parse_one<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, Error> {
    serde_yaml::from_str(text).map_err(|e| {
        let location = e.location().map(|l| (l.line(), l.column()));
        // serde_yaml puts " at line L column C" after the problem; the location is already in
        // front, so drop that copy but keep any context after it (", while parsing a block
        // mapping at line 3 column 5").
        let mut message = e.to_string();
        if let Some((line, col)) = location {
            message = message.replacen(&format!(" at line {line} column {col}"), "", 1);
        }
        Error {
            file: file.to_string(),
            location,
            entry: None,
            message,
        }
    })
}

/// Parse, validate and generate in one call: the generated Rust source on success.
pub fn compile(src: &Sources<'_>) -> Result<String, Vec<Error>> {
    let (providers, pricing) = parse(src)?;
    let catalog = validate(src, providers, pricing)?;
    Ok(generate(&catalog))
}

/// JSON Schema (draft 2020-12) of `providers.yaml`, pretty-printed with a trailing newline.
pub fn providers_schema() -> String {
    schema_json(schemars::schema_for!(schema::ProvidersFile))
}

/// JSON Schema (draft 2020-12) of `pricing.yaml`, pretty-printed with a trailing newline.
pub fn pricing_schema() -> String {
    schema_json(schemars::schema_for!(schema::PricingFile))
}

fn schema_json(schema: schemars::Schema) -> String {
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

/// Entry point for `build.rs`: read `providers.yaml` and `pricing.yaml` from `manifest_dir`,
/// write `catalog.rs` into `out_dir`. Returns the diagnostics on failure (I/O problems included).
pub fn build(manifest_dir: &Path, out_dir: &Path) -> Result<(), Vec<Error>> {
    let read = |name: &str| {
        std::fs::read_to_string(manifest_dir.join(name)).map_err(|e| {
            vec![Error {
                file: name.into(),
                location: None,
                entry: None,
                message: format!("cannot read: {e}"),
            }]
        })
    };
    let providers = read("providers.yaml")?;
    let pricing = read("pricing.yaml")?;
    let src = Sources {
        providers_name: "providers.yaml",
        providers: &providers,
        pricing_name: "pricing.yaml",
        pricing: &pricing,
    };
    let code = compile(&src)?;
    std::fs::write(out_dir.join("catalog.rs"), code).map_err(|e| {
        vec![Error {
            file: "catalog.rs".into(),
            location: None,
            entry: None,
            message: format!("cannot write: {e}"),
        }]
    })
}
