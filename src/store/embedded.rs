//! The embedded backend: one redb file (`<DATA_DIR>/llm-relay.redb`).
//!
//! Tables:
//! - `meta` (`&str` -> `u64`): `schema_version`, `next_seq`.
//! - `settings` (`&str` -> `&str`).
//! - `overrides` (`&str` -> versioned JSON): runtime catalog overrides (`crate::overrides`).
//! - `requests` (`(time_ms, seq)` -> stored record JSON): raw records, deleted by retention.
//! - `agg_hour`, `agg_day` (`(bucket_start_ms, dims)` -> stored sums JSON), where `dims` is
//!   `tag US provider US model US client` (US = U+001F). Every request adds to one row per tag and
//!   to one row with the empty tag, the "all tags" row that totals read, so a request with three
//!   tags is counted once in totals and once under each tag. Aggregates are never deleted.
//!
//! Writes use redb's default durability (fsync on commit); the writer batches records so one
//! commit carries up to [`crate::usage::recorder::MAX_BATCH`] of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::stored::{decode_agg, decode_record, encode_agg, encode_record, totals_of};
use super::{OverrideStore, StoreError, UsageQuery, UsageSink};
use crate::usage::query::{DAY_MS, Dimension, Filter, Granularity, HOUR_MS, Row, Totals};
use crate::usage::record::UsageRecord;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("settings");
const REQUESTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("requests");
const AGG_HOUR: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("agg_hour");
const AGG_DAY: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("agg_day");
/// Runtime catalog overrides (`crate::overrides`): one row per entity, keyed
/// `<kind> US <id>`, valued with a versioned JSON (`crate::overrides::model`).
const OVERRIDES: TableDefinition<&str, &[u8]> = TableDefinition::new("overrides");

/// Schema version this build writes. Bump it with a step in [`migrate`].
pub const SCHEMA_VERSION: u64 = 2;

/// The database file name inside `DATA_DIR`.
pub const FILE_NAME: &str = "llm-relay.redb";

/// Separator between the dimensions of an aggregate key (ASCII unit separator: not in tags, which
/// drop control characters, nor in provider/model ids or IP addresses).
const SEP: char = '\u{1f}';

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The redb-backed store.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

/// redb's page cache: 16 MiB. redb's default is 1 GiB (`Builder::new`), a ceiling the process
/// would slowly fill with usage pages it rarely reads again; 16 MiB holds the interior B-tree
/// pages of millions of records and the aggregate tables the queries read.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

impl RedbStore {
    /// Open (or create) `<dir>/llm-relay.redb`, creating `dir` if needed, and migrate it to
    /// [`SCHEMA_VERSION`].
    ///
    /// Errors: the directory or file cannot be created or opened (another process has it open, no
    /// permission), the file is not a redb database, or it is from a newer llm-relay.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Backend(format!(
                    "{} is in use by another process (a running llm-relay server holds it \
                     exclusively: stop it first)",
                    path.display()
                )),
                e => StoreError::Backend(format!("cannot open {}: {e}", path.display())),
            })?;
        let txn = db.begin_write().map_err(backend)?;
        migrate(&txn)?;
        txn.commit().map_err(backend)?;
        Ok(RedbStore { db, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version stored in the file.
    ///
    /// Errors: the backend failed.
    pub fn schema_version(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        Ok(meta
            .get("schema_version")
            .map_err(backend)?
            .map_or(0, |v| v.value()))
    }

    fn agg_rows(
        &self,
        table: TableDefinition<(u64, &str), &[u8]>,
        f: &Filter,
        bucket: i64,
        mut each: impl FnMut(u64, Dims<'_>, Totals),
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = txn.open_table(table).map_err(backend)?;
        let start = f.since_ms.map_or(0, |s| floor(s, bucket)).max(0) as u64;
        let end = f.until_ms.map_or(u64::MAX, |u| u.max(0) as u64);
        for item in t.range((start, "")..(end, "")).map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            let (at, dims) = k.value();
            let Some(d) = Dims::parse(dims) else { continue };
            let want_tag = f.tag.as_deref().unwrap_or("");
            if d.tag != want_tag
                || f.provider.as_deref().is_some_and(|p| p != d.provider)
                || f.model.as_deref().is_some_and(|m| m != d.model)
                || f.client.as_deref().is_some_and(|c| c != d.client)
            {
                continue;
            }
            each(at, d, decode_agg(v.value())?);
        }
        Ok(())
    }
}

/// Bring the schema to [`SCHEMA_VERSION`]: create the tables of a new file, run each migration
/// step from the stored version up. The hook for future formats: add `2 => { ... }` steps.
///
/// Errors: the stored version is newer than this build, or the backend failed.
pub fn migrate(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META).map_err(backend)?;
    let found = meta
        .get("schema_version")
        .map_err(backend)?
        .map_or(0, |v| v.value());
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for step in found + 1..=SCHEMA_VERSION {
        // Each version's step; future formats add `if step == 2 { ... }` conversions here.
        if step == 1 {
            // Version 1: the initial tables.
            txn.open_table(SETTINGS).map_err(backend)?;
            txn.open_table(REQUESTS).map_err(backend)?;
            txn.open_table(AGG_HOUR).map_err(backend)?;
            txn.open_table(AGG_DAY).map_err(backend)?;
        }
        if step == 2 {
            // Version 2: the runtime catalog overrides (admin issue).
            txn.open_table(OVERRIDES).map_err(backend)?;
        }
        meta.insert("schema_version", step).map_err(backend)?;
    }
    Ok(())
}

fn floor(ms: i64, bucket: i64) -> i64 {
    ms.div_euclid(bucket) * bucket
}

/// The dimensions of an aggregate row.
struct Dims<'a> {
    tag: &'a str,
    provider: &'a str,
    model: &'a str,
    client: &'a str,
}

impl<'a> Dims<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let mut it = s.split(SEP);
        let d = Dims {
            tag: it.next()?,
            provider: it.next()?,
            model: it.next()?,
            client: it.next()?,
        };
        Some(d)
    }
}

fn dims_key(tag: &str, r: &UsageRecord) -> String {
    let client = r.client_ip.as_deref().unwrap_or("");
    // Built in place (no `format!`, no `replace` copies): this runs twice per record and tag.
    let mut k =
        String::with_capacity(tag.len() + r.provider.len() + r.model.len() + client.len() + 3);
    k.push_str(tag);
    k.push(SEP);
    k.extend(r.provider.chars().filter(|&c| c != SEP));
    k.push(SEP);
    k.extend(r.model.chars().filter(|&c| c != SEP));
    k.push(SEP);
    k.push_str(client);
    k
}

impl UsageSink for RedbStore {
    fn check(&self) -> Result<(), StoreError> {
        // A read transaction and one table read: what every query needs.
        self.schema_version().map(|_| ())
    }

    fn write_batch(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        // Fold the batch in memory first: one read-modify-write per aggregate row.
        let mut hours: BTreeMap<(u64, String), Totals> = BTreeMap::new();
        let mut days: BTreeMap<(u64, String), Totals> = BTreeMap::new();
        for r in records {
            let t = totals_of(r);
            let hour = floor(r.time_ms, HOUR_MS).max(0) as u64;
            let day = floor(r.time_ms, DAY_MS).max(0) as u64;
            for tag in std::iter::once("").chain(r.tags.iter().map(String::as_str)) {
                let dims = dims_key(tag, r);
                hours.entry((hour, dims.clone())).or_default().add(&t);
                days.entry((day, dims)).or_default().add(&t);
            }
        }
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let mut meta = txn.open_table(META).map_err(backend)?;
            let mut seq = meta
                .get("next_seq")
                .map_err(backend)?
                .map_or(0, |v| v.value());
            let mut requests = txn.open_table(REQUESTS).map_err(backend)?;
            for r in records {
                let bytes = encode_record(r);
                requests
                    .insert((r.time_ms.max(0) as u64, seq), bytes.as_slice())
                    .map_err(backend)?;
                seq += 1;
            }
            meta.insert("next_seq", seq).map_err(backend)?;
            for (def, rows) in [(AGG_HOUR, &hours), (AGG_DAY, &days)] {
                let mut table = txn.open_table(def).map_err(backend)?;
                for ((at, dims), add) in rows {
                    let key = (*at, dims.as_str());
                    let mut sum = match table.get(key).map_err(backend)? {
                        Some(v) => decode_agg(v.value())?,
                        None => Totals::default(),
                    };
                    sum.add(add);
                    table
                        .insert(key, encode_agg(&sum).as_slice())
                        .map_err(backend)?;
                }
            }
        }
        txn.commit().map_err(backend)
    }

    fn delete_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        let before = before_ms.max(0) as u64;
        let txn = self.db.begin_write().map_err(backend)?;
        let mut n = 0u64;
        {
            let mut requests = txn.open_table(REQUESTS).map_err(backend)?;
            requests
                .retain_in(..(before, 0u64), |_, _| {
                    n += 1;
                    false
                })
                .map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        Ok(n)
    }
}

fn rfc3339(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn sorted(groups: BTreeMap<String, Totals>) -> Vec<Row> {
    let mut rows: Vec<Row> = groups
        .into_iter()
        .map(|(key, totals)| Row { key, totals })
        .collect();
    rows.sort_by(|a, b| {
        b.totals
            .cost_pico_usd
            .cmp(&a.totals.cost_pico_usd)
            .then(b.totals.requests.cmp(&a.totals.requests))
            .then(a.key.cmp(&b.key))
    });
    rows
}

impl UsageQuery for RedbStore {
    fn summary(&self, f: &Filter) -> Result<Totals, StoreError> {
        let mut total = Totals::default();
        self.agg_rows(AGG_HOUR, f, HOUR_MS, |_, _, t| total.add(&t))?;
        Ok(total)
    }

    fn series(&self, f: &Filter, g: Granularity) -> Result<Vec<Row>, StoreError> {
        // Daily rows come from the daily table only when both bounds are whole UTC days; a bound
        // inside a day is applied at hour resolution, like `summary`, so the rows always add up
        // to the totals (hourly rows folded into their day).
        let day_aligned = |b: Option<i64>| b.is_none_or(|ms| ms.rem_euclid(DAY_MS) == 0);
        let (table, resolution) = match g {
            Granularity::Day if day_aligned(f.since_ms) && day_aligned(f.until_ms) => {
                (AGG_DAY, DAY_MS)
            }
            _ => (AGG_HOUR, HOUR_MS),
        };
        let mut buckets: BTreeMap<u64, Totals> = BTreeMap::new();
        self.agg_rows(table, f, resolution, |at, _, t| {
            let bucket = floor(at as i64, g.ms()).max(0) as u64;
            buckets.entry(bucket).or_default().add(&t)
        })?;
        Ok(buckets
            .into_iter()
            .map(|(at, totals)| Row {
                key: rfc3339(at),
                totals,
            })
            .collect())
    }

    fn breakdown(&self, f: &Filter, by: Dimension) -> Result<Vec<Row>, StoreError> {
        let mut groups: BTreeMap<String, Totals> = BTreeMap::new();
        if by == Dimension::Tag && f.tag.is_none() {
            // Every tag row (non-empty tag), whatever the tag.
            let txn = self.db.begin_read().map_err(backend)?;
            let t = txn.open_table(AGG_HOUR).map_err(backend)?;
            let start = f.since_ms.map_or(0, |s| floor(s, HOUR_MS)).max(0) as u64;
            let end = f.until_ms.map_or(u64::MAX, |u| u.max(0) as u64);
            for item in t.range((start, "")..(end, "")).map_err(backend)? {
                let (k, v) = item.map_err(backend)?;
                let (_, dims) = k.value();
                let Some(d) = Dims::parse(dims) else { continue };
                if d.tag.is_empty()
                    || f.provider.as_deref().is_some_and(|p| p != d.provider)
                    || f.model.as_deref().is_some_and(|m| m != d.model)
                    || f.client.as_deref().is_some_and(|c| c != d.client)
                {
                    continue;
                }
                groups
                    .entry(d.tag.to_string())
                    .or_default()
                    .add(&decode_agg(v.value())?);
            }
        } else {
            self.agg_rows(AGG_HOUR, f, HOUR_MS, |_, d, t| {
                let key = match by {
                    Dimension::Tag => d.tag,
                    Dimension::Provider => d.provider,
                    Dimension::Model => d.model,
                    Dimension::Client => d.client,
                };
                groups.entry(key.to_string()).or_default().add(&t);
            })?;
        }
        Ok(sorted(groups))
    }

    fn recent(&self, f: &Filter, limit: usize) -> Result<Vec<UsageRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = txn.open_table(REQUESTS).map_err(backend)?;
        let start = f.since_ms.unwrap_or(0).max(0) as u64;
        let end = f.until_ms.map_or(u64::MAX, |u| u.max(0) as u64);
        let mut out = Vec::new();
        for item in t.range((start, 0u64)..(end, 0u64)).map_err(backend)?.rev() {
            if out.len() >= limit {
                break;
            }
            let (_, v) = item.map_err(backend)?;
            let r = decode_record(v.value())?;
            if f.tag.as_ref().is_some_and(|t| !r.tags.contains(t))
                || f.provider.as_ref().is_some_and(|p| *p != r.provider)
                || f.model.as_ref().is_some_and(|m| *m != r.model)
                || f.client
                    .as_ref()
                    .is_some_and(|c| Some(c) != r.client_ip.as_ref())
            {
                continue;
            }
            out.push(r);
        }
        Ok(out)
    }
}

impl OverrideStore for RedbStore {
    fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = txn.open_table(SETTINGS).map_err(backend)?;
        Ok(t.get(key).map_err(backend)?.map(|v| v.value().to_string()))
    }

    fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let mut t = txn.open_table(SETTINGS).map_err(backend)?;
            t.insert(key, value).map_err(backend)?;
        }
        txn.commit().map_err(backend)
    }

    fn delete_setting(&self, key: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let mut t = txn.open_table(SETTINGS).map_err(backend)?;
            t.remove(key).map_err(backend)?;
        }
        txn.commit().map_err(backend)
    }

    fn write_settings(&self, changes: &[(&str, Option<&str>)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let mut t = txn.open_table(SETTINGS).map_err(backend)?;
            for (k, v) in changes {
                match v {
                    Some(v) => {
                        t.insert(*k, *v).map_err(backend)?;
                    }
                    None => {
                        t.remove(*k).map_err(backend)?;
                    }
                }
            }
        }
        txn.commit().map_err(backend)
    }

    fn load_overrides(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = txn.open_table(OVERRIDES).map_err(backend)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn write_overrides(&self, changes: &[(String, Option<Vec<u8>>)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let mut t = txn.open_table(OVERRIDES).map_err(backend)?;
            for (k, v) in changes {
                match v {
                    Some(v) => {
                        t.insert(k.as_str(), v.as_slice()).map_err(backend)?;
                    }
                    None => {
                        t.remove(k.as_str()).map_err(backend)?;
                    }
                }
            }
        }
        txn.commit().map_err(backend)
    }
}
