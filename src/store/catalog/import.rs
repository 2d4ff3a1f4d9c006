//! Checking a new catalog before it is stored ([`check_catalog`]), and the name its format is
//! stored under. The import/refresh transaction (`store/sql/catalog.rs`) checks first, then
//! replaces the `catalog`, `country` and `catalog_meta` tables; nothing here decides which rules
//! exist.

use crate::import::{Catalog, Format};
use crate::store::StoreError;

/// Refuses a catalog with no ranges or a malformed code, before anything is written.
pub(in crate::store) fn check_catalog(catalog: &Catalog) -> Result<(), StoreError> {
    if catalog.countries.values().all(|c| c.ranges.is_empty()) {
        return Err(StoreError::EmptyCatalog);
    }
    if let Some(bad) = catalog.countries.keys().find(|c| !is_country_code(c)) {
        return Err(StoreError::InvalidCatalog {
            why: format!("{bad:?} is not a two-letter upper-case country code"),
        });
    }
    Ok(())
}

/// Whether `code` looks like an ISO 3166-1 alpha-2 code as the readers produce them.
pub(super) fn is_country_code(code: &str) -> bool {
    code.len() == 2
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// The name stored in `catalog_meta.format`.
pub(in crate::store) fn format_key(format: Format) -> &'static str {
    match format {
        Format::MmdbGeoIp2 => "mmdb-geoip2",
        Format::MmdbCountryCode => "mmdb-country-code",
        Format::GeoLite2Csv => "geolite2-csv",
        Format::RangeCsv => "range-csv",
    }
}
