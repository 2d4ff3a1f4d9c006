//! Read-only reports on the catalog: `ipcountry countries` ([`Store::countries`]) and
//! `ipcountry status` ([`Store::catalog_status`]), each read in one transaction, and the
//! catalog's origin ([`CatalogMeta`]).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::{on_pool, Store, StoreError};

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
        on_pool!(self, catalog::countries())
    }

    /// The catalog's origin and the table counts, read as one snapshot.
    pub async fn catalog_status(&self) -> Result<CatalogStatus, StoreError> {
        on_pool!(self, catalog::catalog_status())
    }
}
