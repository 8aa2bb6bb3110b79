//! Persistence: usage records, their aggregates and settings, behind traits so another backend
//! (PostgreSQL for replicas) can follow the embedded one.
//!
//! - [`UsageSink`]: the writer's side (batches of records, retention).
//! - [`UsageQuery`]: the read side (summary, series, breakdowns, recent).
//! - [`OverrideStore`]: runtime settings and catalog overrides (`crate::overrides`).
//!
//! Persisted data is forever: values are written as versioned `Stored*` types ([`stored`]) with
//! explicit conversions, and the database carries a schema version with a migration hook
//! ([`embedded::migrate`]). Owns no request-path code: only the writer task calls [`UsageSink`].

pub mod embedded;
pub mod stored;

use crate::usage::query::{Dimension, Filter, Granularity, Row, Totals};
use crate::usage::record::UsageRecord;

/// A storage failure (I/O, corruption, a database from a newer version). Never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed.
    #[error("usage database: {0}")]
    Backend(String),
    /// The database was written by a newer llm-relay (schema version above ours).
    #[error(
        "usage database has schema version {found}; this llm-relay understands up to {supported}"
    )]
    TooNew {
        /// Version in the file.
        found: u64,
        /// Newest version this build knows.
        supported: u64,
    },
    /// A stored value cannot be decoded.
    #[error("usage database: corrupt value: {0}")]
    Corrupt(String),
}

/// Where the writer puts records.
pub trait UsageSink: Send + Sync {
    /// Store `records` and fold them into the hourly and daily aggregates, in one transaction
    /// (all or nothing). Records must already carry at least one tag.
    ///
    /// Errors: the backend failed; nothing of the batch is stored.
    fn write_batch(&self, records: &[UsageRecord]) -> Result<(), StoreError>;

    /// Delete raw records older than `before_ms` (Unix ms); aggregates stay. Returns how many.
    ///
    /// Errors: the backend failed.
    fn delete_before(&self, before_ms: i64) -> Result<u64, StoreError>;

    /// Whether the store can be read now (the readiness probe, `GET /health/ready`): a cheap
    /// read that touches the backend. The default (a sink with nothing to check) is ready.
    ///
    /// Errors: the backend failed.
    fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Read side of the usage data.
pub trait UsageQuery: Send + Sync {
    /// Totals over `f` (each request once, however many tags it has).
    ///
    /// Errors: the backend failed.
    fn summary(&self, f: &Filter) -> Result<Totals, StoreError>;

    /// Totals per bucket over `f`, ascending; empty buckets are left out. Row keys are bucket
    /// starts in RFC 3339.
    ///
    /// Errors: the backend failed.
    fn series(&self, f: &Filter, g: Granularity) -> Result<Vec<Row>, StoreError>;

    /// Totals per `by` value over `f`, most expensive first (then most requests).
    ///
    /// Errors: the backend failed.
    fn breakdown(&self, f: &Filter, by: Dimension) -> Result<Vec<Row>, StoreError>;

    /// The newest `limit` raw records matching `f`, newest first.
    ///
    /// Errors: the backend failed.
    fn recent(&self, f: &Filter, limit: usize) -> Result<Vec<UsageRecord>, StoreError>;
}

/// Runtime settings and catalog overrides (custom providers, models, aliases, model overrides;
/// see `crate::overrides`). Only admin writes and startup call it, never the request path.
pub trait OverrideStore: Send + Sync {
    /// The stored value of `key`, `None` when unset.
    ///
    /// Errors: the backend failed.
    fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Store `value` under `key`.
    ///
    /// Errors: the backend failed.
    fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;

    /// Remove `key` (unset: the environment default applies again).
    ///
    /// Errors: the backend failed.
    fn delete_setting(&self, key: &str) -> Result<(), StoreError>;

    /// Set (`Some`) or remove (`None`) several settings in one transaction: all or nothing.
    ///
    /// Errors: the backend failed; no setting changed.
    fn write_settings(&self, changes: &[(&str, Option<&str>)]) -> Result<(), StoreError>;

    /// Every stored override row: `(key, versioned JSON value)`, in key order.
    ///
    /// Errors: the backend failed.
    fn load_overrides(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Apply override row changes in one transaction (all or nothing): `Some(value)` stores,
    /// `None` deletes.
    ///
    /// Errors: the backend failed; nothing is changed.
    fn write_overrides(&self, changes: &[(String, Option<Vec<u8>>)]) -> Result<(), StoreError>;
}
