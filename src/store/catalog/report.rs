//! Read-only reports on the catalog: `ipcountry countries` ([`Store::countries`]) and
//! `ipcountry status` ([`Store::catalog_status`]), each read in one transaction, and the
//! catalog's origin ([`CatalogMeta`]).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::sqlite::SqliteConnection;

use super::tables::{count, count_in, geolite_counts_in, get, permitted_in};
use crate::ranges::Family;
use crate::store::{query_err, read_generation, Store, StoreError};

/// One country of the catalog, for `ipcountry countries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountryRow {
    /// ISO code.
    pub code: String,
    /// English name (empty if the catalog has none).
    pub name: String,
    /// IPv4 ranges in the catalog.
    pub v4_ranges: u64,
    /// IPv6 ranges in the catalog.
    pub v6_ranges: u64,
    /// Whether the country is permitted.
    pub permitted: bool,
    /// `geolite` permit rules of this country in the permit table.
    pub rules: u64,
}

/// Where the catalog came from (the `catalog_meta` row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogMeta {
    /// The file(s) it was read from, as given to `import` / `refresh`.
    pub source: Vec<String>,
    /// The detected format (`mmdb-geoip2`, `mmdb-country-code`, `geolite2-csv`, `range-csv`).
    pub format: String,
    /// The database's own build time (Unix seconds), when it records one.
    pub built_at: Option<i64>,
    /// The database type from its metadata (`GeoLite2-Country`), when known.
    pub database_type: Option<String>,
    /// Networks read before merging.
    pub networks: u64,
    /// When it was imported (Unix seconds).
    pub imported_at: i64,
}

/// Counts for `ipcountry status`, read in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogStatus {
    /// The catalog's origin, or `None` if no catalog was ever imported.
    pub meta: Option<CatalogMeta>,
    /// Countries in the catalog.
    pub countries: u64,
    /// IPv4 ranges in the catalog.
    pub catalog_v4: u64,
    /// IPv6 ranges in the catalog.
    pub catalog_v6: u64,
    /// Permitted country codes, in order.
    pub permitted: Vec<String>,
    /// Permit rules by source (`custom`, `geolite`, ...).
    pub permit_by_source: BTreeMap<String, u64>,
    /// Deny rules.
    pub deny: u64,
    /// Allowed host patterns.
    pub allow_hosts: u64,
    /// The generation counter.
    pub generation: i64,
}

impl Store {
    /// Every country of the catalog (plus any permitted country the catalog lacks), in code
    /// order, with its range counts, whether it is permitted and its `geolite` rule count.
    pub async fn countries(&self) -> Result<Vec<CountryRow>, StoreError> {
        const CONTEXT: &str = "listing countries";
        let mut tx = self.pool.begin().await.map_err(query_err(CONTEXT))?;
        let rows =
            sqlx::query("SELECT code, name, v4_ranges, v6_ranges FROM country ORDER BY code")
                .fetch_all(&mut *tx)
                .await
                .map_err(query_err(CONTEXT))?;
        let permitted = permitted_in(&mut tx).await?;
        let rules = geolite_counts_in(&mut tx).await?;
        tx.commit().await.map_err(query_err(CONTEXT))?;
        let mut out = BTreeMap::new();
        for row in &rows {
            let code: String = get(row, "code", CONTEXT)?;
            let v4: i64 = get(row, "v4_ranges", CONTEXT)?;
            let v6: i64 = get(row, "v6_ranges", CONTEXT)?;
            out.insert(
                code.clone(),
                CountryRow {
                    permitted: permitted.contains(&code),
                    rules: rules.get(&code).copied().unwrap_or(0),
                    name: get(row, "name", CONTEXT)?,
                    v4_ranges: count(v4),
                    v6_ranges: count(v6),
                    code,
                },
            );
        }
        for code in permitted {
            if let Entry::Vacant(slot) = out.entry(code.clone()) {
                slot.insert(CountryRow {
                    rules: rules.get(&code).copied().unwrap_or(0),
                    code,
                    name: String::new(),
                    v4_ranges: 0,
                    v6_ranges: 0,
                    permitted: true,
                });
            }
        }
        Ok(out.into_values().collect())
    }

    /// The catalog's origin and the table counts, read as one snapshot.
    pub async fn catalog_status(&self) -> Result<CatalogStatus, StoreError> {
        const CONTEXT: &str = "reading the status";
        let mut tx = self.pool.begin().await.map_err(query_err(CONTEXT))?;
        let generation = read_generation(&mut tx).await?;
        let meta = read_meta(&mut tx).await?;
        let mut catalog_v4 = 0;
        let mut catalog_v6 = 0;
        let rows = sqlx::query("SELECT family, COUNT(*) AS n FROM catalog GROUP BY family")
            .fetch_all(&mut *tx)
            .await
            .map_err(query_err(CONTEXT))?;
        for row in &rows {
            let family: i64 = get(row, "family", CONTEXT)?;
            let n: i64 = get(row, "n", CONTEXT)?;
            match Family::from_number(family) {
                Some(Family::V4) => catalog_v4 = count(n),
                Some(Family::V6) => catalog_v6 = count(n),
                None => {}
            }
        }
        let countries = count_in(&mut tx, "SELECT COUNT(*) FROM country").await?;
        let deny = count_in(&mut tx, "SELECT COUNT(*) FROM deny").await?;
        let allow_hosts = count_in(&mut tx, "SELECT COUNT(*) FROM allow_host").await?;
        let rows = sqlx::query("SELECT source, COUNT(*) AS n FROM permit GROUP BY source")
            .fetch_all(&mut *tx)
            .await
            .map_err(query_err(CONTEXT))?;
        let mut permit_by_source = BTreeMap::new();
        for row in &rows {
            let source: String = get(row, "source", CONTEXT)?;
            let n: i64 = get(row, "n", CONTEXT)?;
            permit_by_source.insert(source, count(n));
        }
        let permitted = permitted_in(&mut tx).await?.into_iter().collect();
        tx.commit().await.map_err(query_err(CONTEXT))?;
        Ok(CatalogStatus {
            meta,
            countries,
            catalog_v4,
            catalog_v6,
            permitted,
            permit_by_source,
            deny,
            allow_hosts,
            generation,
        })
    }
}

/// The `catalog_meta` row, if a catalog was imported.
pub(super) async fn read_meta(
    conn: &mut SqliteConnection,
) -> Result<Option<CatalogMeta>, StoreError> {
    const CONTEXT: &str = "reading the catalog origin";
    let row = sqlx::query(
        "SELECT source, format, built_at, database_type, networks, imported_at \
         FROM catalog_meta WHERE id = 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(query_err(CONTEXT))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let source: String = get(&row, "source", CONTEXT)?;
    let networks: i64 = get(&row, "networks", CONTEXT)?;
    Ok(Some(CatalogMeta {
        // Written by `write_catalog_in` as a JSON array; anything else is shown as one entry.
        source: serde_json::from_str(&source).unwrap_or_else(|_| vec![source]),
        format: get(&row, "format", CONTEXT)?,
        built_at: get(&row, "built_at", CONTEXT)?,
        database_type: get(&row, "database_type", CONTEXT)?,
        networks: count(networks),
        imported_at: get(&row, "imported_at", CONTEXT)?,
    }))
}
