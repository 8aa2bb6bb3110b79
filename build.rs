//! Compiles providers.yaml + pricing.yaml into $OUT_DIR/catalog.rs through the codegen crate.
//! A bad entry fails the build with `file:line:col: entry: problem` lines and no backtrace.

use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=providers.yaml");
    println!("cargo::rerun-if-changed=pricing.yaml");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(errors) = llm_relay_codegen::build(&manifest_dir, &out_dir) {
        // Each `cargo::error=` line is printed by cargo as `error: llm-relay@x.y.z: <message>` and
        // fails the build ("build script logged errors") without the exit-status dump that a
        // non-zero exit adds around it.
        for e in &errors {
            println!("cargo::error={e}");
        }
    }
}
