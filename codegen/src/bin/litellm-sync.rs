//! `litellm-sync`: refresh the generated blocks of `providers.yaml` and `pricing.yaml` from
//! LiteLLM's price database (see `llm_relay_codegen::litellm` for the rules).
//!
//! Usage, from the repository root:
//! `cargo run -p llm-relay-codegen --bin litellm-sync -- <litellm_model_prices.json> [--as-of YYYY-MM-DD] [--dir DIR] [-v]`
//!
//! Rewrites `DIR/providers.yaml` and `DIR/pricing.yaml` (DIR defaults to `.`), prints how many
//! models each provider got and, with `-v`, every skipped LiteLLM entry with its reason. Then
//! `cargo build` validates the result as usual.

use std::path::PathBuf;
use std::process::ExitCode;

use llm_relay_codegen::litellm;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("litellm-sync: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut json = None;
    let mut as_of = litellm::today_utc();
    let mut dir = PathBuf::from(".");
    let mut verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--as-of" => as_of = args.next().ok_or("--as-of needs YYYY-MM-DD")?,
            "--dir" => dir = PathBuf::from(args.next().ok_or("--dir needs a directory")?),
            "-v" | "--verbose" => verbose = true,
            "-h" | "--help" => {
                println!(
                    "usage: litellm-sync <litellm_model_prices.json> [--as-of YYYY-MM-DD] [--dir DIR] [-v]"
                );
                return Ok(());
            }
            _ if json.is_none() => json = Some(PathBuf::from(a)),
            _ => return Err(format!("unexpected argument {a:?} (see --help)")),
        }
    }
    let json = json.ok_or("missing the LiteLLM JSON path (see --help)")?;
    let read =
        |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let db: serde_json::Value = serde_json::from_str(&read(&json)?)
        .map_err(|e| format!("{}: not JSON: {e}", json.display()))?;
    let db = db
        .as_object()
        .ok_or_else(|| format!("{}: expected an object of models", json.display()))?;
    let providers_path = dir.join("providers.yaml");
    let pricing_path = dir.join("pricing.yaml");
    let r = litellm::refresh(&read(&providers_path)?, &read(&pricing_path)?, db, &as_of)?;
    std::fs::write(&providers_path, &r.providers)
        .map_err(|e| format!("{}: {e}", providers_path.display()))?;
    std::fs::write(&pricing_path, &r.pricing)
        .map_err(|e| format!("{}: {e}", pricing_path.display()))?;
    for (p, n) in &r.added {
        println!("{p}: {n} generated models");
    }
    println!(
        "{} LiteLLM chat entries skipped (as of {as_of}; -v lists them)",
        r.skipped.len()
    );
    for n in &r.notes {
        println!("note: {n}");
    }
    if verbose {
        for (m, why) in &r.skipped {
            println!("  skip {m}: {why}");
        }
    }
    Ok(())
}
