//! The `geolite` permit rules: generated from a country's catalog ranges (skipping ranges an
//! identical permit rule already has), and deleted per country or all at once. Used by
//! `country add`/`rm` (`countries`) and by import/refresh (`refresh`).

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use sqlx::sqlite::SqliteConnection;

use super::tables::{BatchInsert, BATCH_ROWS};
use crate::ranges::{IpRange, Rule, RuleKind, RuleSource};
use crate::store::{decode_rule, now_unix, query_err, StoreError};

/// The rules generated for one country.
pub(super) struct Generated {
    /// Rows inserted.
    pub(super) inserted: u64,
    /// Existing rules identical to one of its ranges.
    pub(super) identical: Vec<Rule>,
}

/// The permit rules already present, by range: `Some(rule)` for stored rules, `None` for ranges
/// generated in this transaction.
pub(super) fn taken_ranges(rules: Vec<Rule>) -> HashMap<IpRange, Option<Rule>> {
    rules.into_iter().map(|r| (r.range, Some(r))).collect()
}

/// The permit rules whose range is identical to one of `code`'s catalog ranges (custom
/// entries, or another country's geolite rules), found by the unique indexes rather than by
/// reading the whole permit table.
pub(super) async fn identical_rules_in(
    conn: &mut SqliteConnection,
    code: &str,
) -> Result<Vec<Rule>, StoreError> {
    let rows = sqlx::query(
        "SELECT p.id AS id, p.family AS family, p.start_ip AS start_ip, p.end_ip AS end_ip, \
                p.country_code AS country_code, p.source AS source, p.note AS note \
         FROM catalog c JOIN permit p \
           ON p.family = c.family AND p.start_ip = c.start_ip AND p.end_ip = c.end_ip \
         WHERE c.country_code = ?",
    )
    .bind(code)
    .fetch_all(&mut *conn)
    .await
    .map_err(query_err(
        "looking up permit rules identical to catalog ranges",
    ))?;
    rows.iter()
        .map(|row| decode_rule(RuleKind::Permit, row))
        .collect()
}

/// Deletes the `geolite` permit rules of one country, or of all (`None`); returns how many.
pub(super) async fn delete_geolite_in(
    conn: &mut SqliteConnection,
    code: Option<&str>,
) -> Result<u64, StoreError> {
    const CONTEXT: &str = "deleting geolite rules";
    let done = match code {
        Some(code) => {
            sqlx::query("DELETE FROM permit WHERE source = ? AND country_code = ?")
                .bind(RuleSource::Geolite.as_str())
                .bind(code)
                .execute(&mut *conn)
                .await
        }
        None => {
            sqlx::query("DELETE FROM permit WHERE source = ?")
                .bind(RuleSource::Geolite.as_str())
                .execute(&mut *conn)
                .await
        }
    }
    .map_err(query_err(CONTEXT))?;
    Ok(done.rows_affected())
}

/// Inserts a `geolite` permit rule for each of `ranges` not already `taken` (by a stored rule,
/// which is then reported as identical, or by another country's range generated in this
/// transaction, which is skipped), in batches.
pub(super) async fn insert_geolite_in(
    conn: &mut SqliteConnection,
    code: &str,
    ranges: &[IpRange],
    taken: &mut HashMap<IpRange, Option<Rule>>,
) -> Result<Generated, StoreError> {
    const CONTEXT: &str = "generating geolite rules";
    const HEAD: &str = "INSERT INTO permit \
        (family, start_ip, end_ip, country_code, source, note, created_at) VALUES ";
    const ROW: &str = "(?, ?, ?, ?, ?, ?, ?)";
    let mut identical = Vec::new();
    let mut fresh = Vec::with_capacity(ranges.len());
    for range in ranges {
        match taken.entry(*range) {
            Entry::Occupied(e) => {
                if let Some(rule) = e.get() {
                    identical.push(rule.clone());
                }
            }
            Entry::Vacant(e) => {
                e.insert(None);
                fresh.push(*range);
            }
        }
    }
    let now = now_unix();
    let source = RuleSource::Geolite.as_str();
    let insert = BatchInsert::new(HEAD, ROW);
    for chunk in fresh.chunks(BATCH_ROWS) {
        let sql = insert.sql(chunk.len());
        let mut query = sqlx::query(&sql);
        for range in chunk {
            query = query
                .bind(range.family().number())
                .bind(range.start_bytes())
                .bind(range.end_bytes())
                .bind(code)
                .bind(source)
                .bind("")
                .bind(now);
        }
        query
            .execute(&mut *conn)
            .await
            .map_err(query_err(CONTEXT))?;
    }
    Ok(Generated {
        inserted: fresh.len() as u64,
        identical,
    })
}
