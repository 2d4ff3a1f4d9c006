//! The shared SQL of the `peer_seen` table (what `watch` remembers of each peer) and the
//! catalog lookup of one address's country, written once and compiled for each backend like
//! `sql/rules.rs` (`super` is the backend). None of it bumps the generation: it is not policy.

use std::net::IpAddr;

use sqlx::{Pool, Row};

use super::{sql, Db};
use crate::ranges::IpRange;
use crate::store::{query_err, SeenPeer, StoreError};

/// Every row, ordered by kind, name, then last seen (newest last).
pub(in crate::store) async fn seen_peers(pool: &Pool<Db>) -> Result<Vec<SeenPeer>, StoreError> {
    const CONTEXT: &str = "reading the peers seen";
    let rows = sqlx::query(&sql(
        "SELECT kind, name, ip, country, verdict, first_seen, last_seen FROM peer_seen \
         ORDER BY kind, name, last_seen, ip",
    ))
    .fetch_all(pool)
    .await
    .map_err(query_err(CONTEXT))?;
    rows.iter()
        .map(|r| {
            Ok(SeenPeer {
                kind: r.try_get(0)?,
                name: r.try_get(1)?,
                ip: r.try_get(2)?,
                country: r.try_get(3)?,
                verdict: r.try_get(4)?,
                first_seen: r.try_get(5)?,
                last_seen: r.try_get(6)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(query_err(CONTEXT))
}

/// Writes these rows (replacing any with the same kind, name and ip) and deletes rows last
/// seen before `forget_before`, in one transaction.
pub(in crate::store) async fn record_peers(
    pool: &Pool<Db>,
    rows: &[SeenPeer],
    forget_before: i64,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "recording the peers seen";
    let mut tx = pool.begin().await.map_err(query_err(CONTEXT))?;
    for row in rows {
        sqlx::query(&sql(
            "DELETE FROM peer_seen WHERE kind = ? AND name = ? AND ip = ?",
        ))
        .bind(&row.kind)
        .bind(&row.name)
        .bind(&row.ip)
        .execute(&mut *tx)
        .await
        .map_err(query_err(CONTEXT))?;
        sqlx::query(&sql(
            "INSERT INTO peer_seen (kind, name, ip, country, verdict, first_seen, last_seen) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&row.kind)
        .bind(&row.name)
        .bind(&row.ip)
        .bind(&row.country)
        .bind(&row.verdict)
        .bind(row.first_seen)
        .bind(row.last_seen)
        .execute(&mut *tx)
        .await
        .map_err(query_err(CONTEXT))?;
    }
    sqlx::query(&sql("DELETE FROM peer_seen WHERE last_seen < ?"))
        .bind(forget_before)
        .execute(&mut *tx)
        .await
        .map_err(query_err(CONTEXT))?;
    tx.commit().await.map_err(query_err(CONTEXT))
}

/// The catalog's country for `ip`, if a catalog range holds it.
pub(in crate::store) async fn catalog_country(
    pool: &Pool<Db>,
    ip: IpAddr,
) -> Result<Option<String>, StoreError> {
    let range = IpRange::from_addrs(ip, ip).map_err(|_| StoreError::Corrupt {
        table: "catalog",
        id: 0,
        why: "an address is not a range",
    })?;
    let row = sqlx::query(&sql(
        "SELECT country_code FROM catalog WHERE family = ? AND start_ip <= ? AND end_ip >= ? \
         ORDER BY start_ip DESC LIMIT 1",
    ))
    .bind(range.family().number())
    .bind(range.start_bytes())
    .bind(range.end_bytes())
    .fetch_optional(pool)
    .await
    .map_err(query_err("looking up a country"))?;
    row.map(|r| r.try_get(0))
        .transpose()
        .map_err(query_err("looking up a country"))
}
