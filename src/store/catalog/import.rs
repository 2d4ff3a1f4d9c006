//! Storing a new catalog: checking it ([`check_catalog`]) and replacing the `catalog`,
//! `country` and `catalog_meta` tables with it ([`write_catalog_in`]). `refresh` runs both
//! inside the import/refresh transaction; nothing here decides which rules exist.

use sqlx::sqlite::SqliteConnection;

use super::tables::{family_counts, BatchInsert, BATCH_ROWS};
use crate::import::{Catalog, CountryRanges, Format};
use crate::ranges::IpRange;
use crate::store::{now_unix, query_err, StoreError};

/// Refuses a catalog with no ranges or a malformed code, before anything is written.
pub(super) fn check_catalog(catalog: &Catalog) -> Result<(), StoreError> {
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

/// Replaces the catalog tables' contents with `catalog`.
pub(super) async fn write_catalog_in(
    conn: &mut SqliteConnection,
    catalog: &Catalog,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "storing the catalog";
    for sql in [
        "DELETE FROM catalog",
        "DELETE FROM country",
        "DELETE FROM catalog_meta",
    ] {
        sqlx::query(sql)
            .execute(&mut *conn)
            .await
            .map_err(query_err(CONTEXT))?;
    }
    let source: Vec<String> = catalog
        .source
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let source = serde_json::to_string(&source).unwrap_or_else(|_| "[]".to_owned());
    sqlx::query(
        "INSERT INTO catalog_meta \
         (id, source, format, built_at, database_type, networks, imported_at) \
         VALUES (1, ?, ?, ?, ?, ?, ?)",
    )
    .bind(source)
    .bind(format_key(catalog.format))
    .bind(catalog.built_at)
    .bind(catalog.database_type.as_deref())
    .bind(i64::try_from(catalog.networks).unwrap_or(i64::MAX))
    .bind(now_unix())
    .execute(&mut *conn)
    .await
    .map_err(query_err(CONTEXT))?;

    let countries: Vec<(&String, &CountryRanges)> = catalog.countries.iter().collect();
    let insert = BatchInsert::new(
        "INSERT INTO country (code, name, v4_ranges, v6_ranges) VALUES ",
        "(?, ?, ?, ?)",
    );
    for chunk in countries.chunks(BATCH_ROWS) {
        let sql = insert.sql(chunk.len());
        let mut query = sqlx::query(&sql);
        for (code, country) in chunk {
            let (v4, v6) = family_counts(country.ranges.iter());
            query = query
                .bind(code.as_str())
                .bind(country.name.as_deref().unwrap_or(""))
                .bind(i64::try_from(v4).unwrap_or(i64::MAX))
                .bind(i64::try_from(v6).unwrap_or(i64::MAX));
        }
        query
            .execute(&mut *conn)
            .await
            .map_err(query_err(CONTEXT))?;
    }

    let rows: Vec<(&str, IpRange)> = catalog
        .countries
        .iter()
        .flat_map(|(code, c)| c.ranges.iter().map(move |r| (code.as_str(), *r)))
        .collect();
    let insert = BatchInsert::new(
        "INSERT INTO catalog (country_code, family, start_ip, end_ip) VALUES ",
        "(?, ?, ?, ?)",
    );
    for chunk in rows.chunks(BATCH_ROWS) {
        let sql = insert.sql(chunk.len());
        let mut query = sqlx::query(&sql);
        for (code, range) in chunk {
            query = query
                .bind(*code)
                .bind(range.family().number())
                .bind(range.start_bytes())
                .bind(range.end_bytes());
        }
        query
            .execute(&mut *conn)
            .await
            .map_err(query_err(CONTEXT))?;
    }
    Ok(())
}

/// The name stored in `catalog_meta.format`.
pub(super) fn format_key(format: Format) -> &'static str {
    match format {
        Format::MmdbGeoIp2 => "mmdb-geoip2",
        Format::MmdbCountryCode => "mmdb-country-code",
        Format::GeoLite2Csv => "geolite2-csv",
        Format::RangeCsv => "range-csv",
    }
}
