//! The catalog tables' shared SQL: the reads several catalog operations need (permitted
//! countries, names, ranges, `geolite` rule counts), the count helpers, and the multi-row
//! `INSERT` statements every bulk write uses.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::Row;

use crate::ranges::{Family, IpRange, RuleSource};
use crate::store::{decode_range, query_err, StoreError};

/// Rows per multi-row `INSERT`. Permit rows bind 7 parameters, so a batch binds 3,500, far
/// below SQLite's limit of 32,766 per statement (and PostgreSQL's 65,535).
pub(super) const BATCH_ROWS: usize = 500;

/// The multi-row `INSERT` statements for rows written in batches of [`BATCH_ROWS`]: the full
/// batch's statement is built once (and its prepared form cached by sqlx); a shorter last
/// batch gets its own.
pub(super) struct BatchInsert {
    head: &'static str,
    row: &'static str,
    full: String,
}

impl BatchInsert {
    /// `head` (`INSERT INTO t (a, b) VALUES `) and one `row` of placeholders (`(?, ?)`).
    pub(super) fn new(head: &'static str, row: &'static str) -> Self {
        BatchInsert {
            head,
            row,
            full: values_sql(head, row, BATCH_ROWS),
        }
    }

    /// The statement for a batch of `rows` rows.
    pub(super) fn sql(&self, rows: usize) -> Cow<'_, str> {
        if rows == BATCH_ROWS {
            Cow::Borrowed(&self.full)
        } else {
            Cow::Owned(values_sql(self.head, self.row, rows))
        }
    }
}

/// `head` followed by `rows` copies of `row`, comma-separated.
fn values_sql(head: &str, row: &str, rows: usize) -> String {
    let mut sql = String::with_capacity(head.len() + rows * (row.len() + 2));
    sql.push_str(head);
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(row);
    }
    sql
}

/// A typed column, or a query error naming `context`.
pub(super) fn get<'r, T>(
    row: &'r SqliteRow,
    column: &str,
    context: &'static str,
) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column).map_err(query_err(context))
}

/// A database count as `u64` (negative counts cannot happen; they read as 0).
pub(super) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// `SELECT COUNT(*) ...` as `u64`.
pub(super) async fn count_in(
    conn: &mut SqliteConnection,
    sql: &'static str,
) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(sql)
        .fetch_one(&mut *conn)
        .await
        .map_err(query_err("counting rows"))?;
    Ok(count(n))
}

/// The permitted country codes.
pub(super) async fn permitted_in(
    conn: &mut SqliteConnection,
) -> Result<BTreeSet<String>, StoreError> {
    let codes: Vec<String> = sqlx::query_scalar("SELECT code FROM permitted_country")
        .fetch_all(&mut *conn)
        .await
        .map_err(query_err("reading the permitted countries"))?;
    Ok(codes.into_iter().collect())
}

/// The catalog's countries and their names.
pub(super) async fn country_names_in(
    conn: &mut SqliteConnection,
) -> Result<BTreeMap<String, String>, StoreError> {
    const CONTEXT: &str = "reading the countries";
    let rows = sqlx::query("SELECT code, name FROM country")
        .fetch_all(&mut *conn)
        .await
        .map_err(query_err(CONTEXT))?;
    rows.iter()
        .map(|row| Ok((get(row, "code", CONTEXT)?, get(row, "name", CONTEXT)?)))
        .collect()
}

/// `geolite` permit rules per country code.
pub(super) async fn geolite_counts_in(
    conn: &mut SqliteConnection,
) -> Result<BTreeMap<String, u64>, StoreError> {
    const CONTEXT: &str = "counting geolite rules";
    let rows = sqlx::query(
        "SELECT country_code, COUNT(*) AS n FROM permit WHERE source = ? GROUP BY country_code",
    )
    .bind(RuleSource::Geolite.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(query_err(CONTEXT))?;
    rows.iter()
        .map(|row| {
            let n: i64 = get(row, "n", CONTEXT)?;
            Ok((get(row, "country_code", CONTEXT)?, count(n)))
        })
        .collect()
}

/// One country's catalog ranges, in address order.
pub(super) async fn catalog_ranges_in(
    conn: &mut SqliteConnection,
    code: &str,
) -> Result<Vec<IpRange>, StoreError> {
    const CONTEXT: &str = "reading catalog ranges";
    let rows = sqlx::query(
        "SELECT family, start_ip, end_ip FROM catalog WHERE country_code = ? \
         ORDER BY family, start_ip",
    )
    .bind(code)
    .fetch_all(&mut *conn)
    .await
    .map_err(query_err(CONTEXT))?;
    rows.iter()
        .map(|row| {
            let corrupt = |why| StoreError::CorruptCatalog {
                country: code.to_owned(),
                why,
            };
            // This runs for every row of the catalog in a refresh.
            decode_range(row, 0, corrupt)
        })
        .collect()
}

/// The `(IPv4, IPv6)` counts of some ranges.
pub(super) fn family_counts<'a>(ranges: impl Iterator<Item = &'a IpRange>) -> (u64, u64) {
    ranges.fold((0, 0), |(v4, v6), r| match r.family() {
        Family::V4 => (v4 + 1, v6),
        Family::V6 => (v4, v6 + 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_sql_repeats_the_row() {
        assert_eq!(
            values_sql("INSERT INTO t VALUES ", "(?, ?)", 1),
            "INSERT INTO t VALUES (?, ?)"
        );
        assert_eq!(values_sql("X ", "(?)", 3), "X (?), (?), (?)");
    }

    #[test]
    fn batch_insert_builds_the_full_statement_once() {
        let insert = BatchInsert::new("X ", "(?)");
        assert!(matches!(insert.sql(BATCH_ROWS), Cow::Borrowed(_)));
        assert_eq!(insert.sql(BATCH_ROWS), values_sql("X ", "(?)", BATCH_ROWS));
        assert_eq!(insert.sql(2), "X (?), (?)");
    }
}
