//! The multi-row `INSERT` statements every bulk write of the catalog uses, and the count
//! helpers. (The catalog's SQL itself is in `store/sql/catalog.rs`.)

use std::borrow::Cow;

use crate::ranges::{Family, IpRange};

/// Rows per multi-row `INSERT`. Permit rows bind 7 parameters, so a batch binds 3,500, far
/// below SQLite's limit of 32,766 per statement (and the 65,535 of PostgreSQL and MariaDB).
pub(in crate::store) const BATCH_ROWS: usize = 500;

/// A backend's placeholder rewriting (`?` → `$1`, ... on PostgreSQL).
pub(in crate::store) type Render = for<'a> fn(&'a str) -> Cow<'a, str>;

/// The multi-row `INSERT` statements for rows written in batches of [`BATCH_ROWS`]: the full
/// batch's statement is built (and rendered for the backend) once, and its prepared form cached
/// by sqlx; a shorter last batch gets its own.
pub(in crate::store) struct BatchInsert {
    head: &'static str,
    row: &'static str,
    render: Render,
    full: String,
}

impl BatchInsert {
    /// `head` (`INSERT INTO t (a, b) VALUES `) and one `row` of placeholders (`(?, ?)`),
    /// rendered for the backend with `render`.
    pub(in crate::store) fn new(head: &'static str, row: &'static str, render: Render) -> Self {
        BatchInsert {
            head,
            row,
            render,
            full: render(&values_sql(head, row, BATCH_ROWS)).into_owned(),
        }
    }

    /// The statement for a batch of `rows` rows.
    pub(in crate::store) fn sql(&self, rows: usize) -> Cow<'_, str> {
        if rows == BATCH_ROWS {
            Cow::Borrowed(&self.full)
        } else {
            Cow::Owned((self.render)(&values_sql(self.head, self.row, rows)).into_owned())
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

/// A database count as `u64` (negative counts cannot happen; they read as 0).
pub(in crate::store) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The `(IPv4, IPv6)` counts of some ranges.
pub(in crate::store) fn family_counts<'a>(ranges: impl Iterator<Item = &'a IpRange>) -> (u64, u64) {
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
        let insert = BatchInsert::new("X ", "(?)", |s| Cow::Borrowed(s));
        assert!(matches!(insert.sql(BATCH_ROWS), Cow::Borrowed(_)));
        assert_eq!(insert.sql(BATCH_ROWS), values_sql("X ", "(?)", BATCH_ROWS));
        assert_eq!(insert.sql(2), "X (?), (?)");
    }
}
