//! Country catalogs: reading GeoLite-style country databases into per-country merged ranges.
//!
//! This is the contract between the readers (`import::*`, which never touch the store) and the
//! store's catalog/refresh code. [`read`] detects the format of the given file(s), reads every
//! network, groups them by two-letter country code, and merges adjacent and overlapping ranges
//! of each country, so a country's thousands of networks become as few rows as possible.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::ranges::IpRange;

/// The formats ipcountry can import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum Format {
    /// MaxMind DB with the GeoIP2/GeoLite2 Country schema (`country.iso_code`).
    MmdbGeoIp2,
    /// MaxMind DB with the ip-location-db schema (`country_code`).
    MmdbCountryCode,
    /// GeoLite2 CSV (`*-Blocks-IPv4.csv`, `*-Blocks-IPv6.csv`, `*-Locations-en.csv`).
    GeoLite2Csv,
    /// Plain range CSV: `start,end,country_code` (optionally gzipped).
    RangeCsv,
}

/// Which field gives a network's country in the GeoIP2 schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CountryField {
    /// `country.iso_code`, falling back to `registered_country.iso_code` (the default).
    #[default]
    CountryThenRegistered,
    /// `country.iso_code` only (networks without it are skipped).
    Country,
    /// `registered_country.iso_code` only.
    Registered,
}

/// Options for [`read`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Which country field to use for the GeoIP2 schema.
    pub country_field: CountryField,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
}

/// One country's ranges, merged and sorted (IPv4 first, then IPv6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountryRanges {
    /// English name, when the source has one.
    pub name: Option<String>,
    /// Disjoint, non-adjacent, sorted ranges.
    pub ranges: Vec<IpRange>,
}

/// A whole catalog read from one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// The detected format.
    pub format: Format,
    /// The file(s) it came from, as given.
    pub source: Vec<PathBuf>,
    /// The database's build time (Unix seconds), when the source records one.
    pub built_at: Option<i64>,
    /// The database type from the metadata (`GeoLite2-Country`), when known.
    pub database_type: Option<String>,
    /// Ranges by upper-case ISO 3166-1 alpha-2 code.
    pub countries: BTreeMap<String, CountryRanges>,
    /// Networks read in total (before merging).
    pub networks: u64,
}
