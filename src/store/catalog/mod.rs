//! Country catalogs in the store: the `catalog`, `country`, `catalog_meta` and
//! `permitted_country` tables, and the `geolite` permit rules generated from them.
//!
//! # Where it sits
//!
//! `import::read` turns a GeoLite-style database into a [`Catalog`] without touching the store;
//! the CLI hands that to [`Store::import_catalog`] or [`Store::refresh`]. `country add` /
//! `country rm` ([`Store::permit_countries`], [`Store::unpermit_countries`]) turn a country's
//! catalog ranges into permit rules (source `geolite`, the country's code) and back. Running
//! servers see the generation change and compile the new rules like any others; nothing here
//! talks to a server.
//!
//! # Guarantees
//!
//! - Every operation is ONE transaction whose first statement bumps the generation (which also
//!   takes the write lock, see the parent module). A failure anywhere (bad row, constraint,
//!   I/O, a killed process, a database server that goes away) rolls everything back, bump
//!   included. Readers, i.e. the reloaders of running servers, read a snapshot (SQLite in WAL
//!   mode, InnoDB's and PostgreSQL's MVCC in `REPEATABLE READ`) and keep seeing the old tables
//!   until the commit, so the permit table is never observed empty or half-regenerated.
//! - Importing a catalog changes no verdict by itself. If countries are already permitted,
//!   [`Store::import_catalog`] does what [`Store::refresh`] does: it regenerates their
//!   `geolite` rules from the new catalog in the same transaction, so the permit table never
//!   disagrees with the catalog.
//! - `custom` and `builtin` permit rules, the whole `deny` table and the allowed hosts are never
//!   touched. A catalog range identical to an existing permit rule (the table is unique on
//!   `(family, start_ip, end_ip)`) is not inserted: the existing rule is kept and reported.
//! - A permitted country missing from a new catalog makes the import/refresh fail with
//!   [`StoreError::MissingCountries`]: silently dropping it would turn its callers into
//!   strangers. `country rm` it first if that is intended.
//!
//! # Speed
//!
//! Rows are written with multi-row `INSERT ... VALUES (..), (..), ...` statements of
//! [`BATCH_ROWS`] rows, inside the one transaction; the prepared statement of a full batch is
//! cached by sqlx and reused. The full DB-IP catalog (about 700,000 merged ranges) is stored in
//! a few seconds (see README, "Countries").
//!
//! # Layout
//!
//! One concept a file, for the types, the checks and the pure parts; the SQL of all of them is
//! in `store/sql/catalog.rs`, compiled once per backend (see the parent module's "One code
//! path"), in the same order:
//!
//! - `refresh`: [`Store::import_catalog`] and [`Store::refresh`], the one transaction they
//!   share, and their reports.
//! - `countries`: [`Store::permit_countries`], [`Store::unpermit_countries`] and their
//!   reports; code normalization.
//! - `report`: [`Store::countries`], [`Store::catalog_status`] (read-only).
//! - `import`: checking a new catalog before it is written.
//! - `diff`: the per-country changes a refresh reports; classifying custom rules.
//! - `geolite`: which ranges get a `geolite` permit rule.
//! - `tables`: the multi-row `INSERT`s and counts.
//!
//! [`Catalog`]: crate::import::Catalog
//! [`Store::import_catalog`]: super::Store::import_catalog
//! [`Store::refresh`]: super::Store::refresh
//! [`Store::permit_countries`]: super::Store::permit_countries
//! [`Store::unpermit_countries`]: super::Store::unpermit_countries
//! [`StoreError::MissingCountries`]: super::StoreError::MissingCountries
//! [`BATCH_ROWS`]: tables::BATCH_ROWS
//! [`Store::countries`]: super::Store::countries
//! [`Store::catalog_status`]: super::Store::catalog_status

mod countries;
mod diff;
mod geolite;
mod import;
mod refresh;
mod report;
mod tables;
#[cfg(test)]
mod tests;

pub use countries::{CountryRules, PermitReport, UnpermitReport};
pub use diff::CountryDiff;
pub use refresh::{ImportSummary, RefreshReport};
pub use report::{CatalogMeta, CatalogStatus, CountryRow};

pub(in crate::store) use countries::{normalize_codes, refuse_unknown};
pub(in crate::store) use diff::classify;
pub(in crate::store) use geolite::{taken_ranges, Generated};
pub(in crate::store) use import::{check_catalog, format_key};
pub(in crate::store) use refresh::Mode;
pub(in crate::store) use tables::{count, family_counts, BatchInsert, BATCH_ROWS};
