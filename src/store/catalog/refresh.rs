//! Import and refresh: replacing the catalog and regenerating the `geolite` rules of every
//! permitted country from it, in one transaction ([`Store::import_catalog`],
//! [`Store::refresh`], and the dry run, which reports and rolls back). The transaction itself is
//! `replace_catalog` in `store/sql/catalog.rs`.

use serde::Serialize;

use super::diff::CountryDiff;
use crate::import::Catalog;
use crate::store::{on_pool, Store, StoreError};

/// What [`Store::import_catalog`] stored (and what [`Store::refresh`] stored or would store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Countries in the new catalog.
    pub countries: u64,
    /// IPv4 ranges in the new catalog (merged, as stored).
    pub v4_ranges: u64,
    /// IPv6 ranges in the new catalog.
    pub v6_ranges: u64,
    /// Networks the reader saw before merging.
    pub networks: u64,
    /// The permitted countries whose `geolite` rules were regenerated, in code order.
    pub regenerated: Vec<String>,
    /// `geolite` permit rules before the change.
    pub geolite_before: u64,
    /// `geolite` permit rules after the change.
    pub geolite_after: u64,
    /// Catalog ranges of permitted countries not turned into rules because an identical permit
    /// rule (custom, or another country's) already exists; that rule is kept.
    pub identical_kept: u64,
    /// The generation after the change (unchanged for a dry run).
    pub generation: i64,
}

/// What [`Store::refresh`] changed, or would change (`dry_run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefreshReport {
    /// Nothing was written: the transaction was rolled back.
    pub dry_run: bool,
    /// The totals.
    pub summary: ImportSummary,
    /// Per country, in code order: every permitted country, and every other country whose
    /// ranges changed (including countries new to, or gone from, the catalog).
    pub countries: Vec<CountryDiff>,
}

impl Store {
    /// Replaces the catalog with `catalog`, in one transaction.
    ///
    /// With no country permitted, no verdict changes. With countries permitted, this is
    /// [`Store::refresh`] without the report: their `geolite` rules are regenerated from the new
    /// catalog in the same transaction. Fails, changing nothing, on an empty catalog
    /// ([`StoreError::EmptyCatalog`]), a malformed country code ([`StoreError::InvalidCatalog`])
    /// or a permitted country absent from it ([`StoreError::MissingCountries`]).
    pub async fn import_catalog(&self, catalog: &Catalog) -> Result<ImportSummary, StoreError> {
        let (summary, _) = on_pool!(self, catalog::replace_catalog(catalog, Mode::Import))?;
        Ok(summary)
    }

    /// Replaces the catalog and regenerates the `geolite` permit rules of every permitted
    /// country from it, in ONE transaction, and reports the per-country changes.
    ///
    /// `custom`/`builtin` permit rules, the deny table and the allowed hosts are untouched; a
    /// new range identical to an existing permit rule keeps that rule. The generation is bumped
    /// once. With `dry_run`, everything is done and measured inside the transaction, which is
    /// then rolled back: the report is exactly what a real refresh would do, and nothing
    /// (generation included) changes. Errors as for [`Store::import_catalog`].
    pub async fn refresh(
        &self,
        catalog: &Catalog,
        dry_run: bool,
    ) -> Result<RefreshReport, StoreError> {
        let mode = if dry_run { Mode::DryRun } else { Mode::Refresh };
        let (summary, countries) = on_pool!(self, catalog::replace_catalog(catalog, mode))?;
        Ok(RefreshReport {
            dry_run,
            summary,
            countries,
        })
    }
}

/// Which entry point the import/refresh transaction serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store) enum Mode {
    /// `import`: no per-country report.
    Import,
    /// `refresh`: report and commit.
    Refresh,
    /// `refresh --dry-run`: report and roll back.
    DryRun,
}
