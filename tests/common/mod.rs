//! Shared test support: recorded-traffic fixture loader and wiremock-based fake upstreams.
//!
//! Each integration test that needs these does `mod common;`. Not every test uses every
//! helper, hence `dead_code` is allowed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

pub mod fake_upstream;
pub mod fixtures;
pub mod native;
pub mod process;
pub mod relay;
pub mod tmp;
