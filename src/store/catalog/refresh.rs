//! Import and refresh: replacing the catalog and regenerating the `geolite` rules of every
//! permitted country from it, in one transaction ([`Store::import_catalog`],
//! [`Store::refresh`], and the dry run, which reports and rolls back).

use std::collections::BTreeMap;

use serde::Serialize;

use super::diff::{classify, range_diffs_in, CountryDiff};
use super::geolite::{delete_geolite_in, insert_geolite_in, taken_ranges};
use super::import::{check_catalog, write_catalog_in};
use super::tables::{family_counts, geolite_counts_in, permitted_in};
use crate::import::Catalog;
use crate::ranges::RuleKind;
use crate::store::{bump_in, query_err, select_rules, Store, StoreError};

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
        let (summary, _) = self.replace_catalog(catalog, Mode::Import).await?;
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
        let (summary, countries) = self.replace_catalog(catalog, mode).await?;
        Ok(RefreshReport {
            dry_run,
            summary,
            countries,
        })
    }

    /// The shared body of import, refresh and dry run.
    async fn replace_catalog(
        &self,
        catalog: &Catalog,
        mode: Mode,
    ) -> Result<(ImportSummary, Vec<CountryDiff>), StoreError> {
        const CONTEXT: &str = "replacing the catalog";
        check_catalog(catalog)?;
        let mut tx = self.pool.begin().await.map_err(query_err(CONTEXT))?;
        let generation = bump_in(&mut tx).await?;
        let permitted = permitted_in(&mut tx).await?;
        let missing: Vec<String> = permitted
            .iter()
            .filter(|c| !catalog.countries.contains_key(*c))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(StoreError::MissingCountries { codes: missing });
        }
        let rules_before = geolite_counts_in(&mut tx).await?;
        let mut diffs = if mode == Mode::Import {
            BTreeMap::new()
        } else {
            range_diffs_in(&mut tx, catalog, &permitted).await?
        };

        write_catalog_in(&mut tx, catalog).await?;
        delete_geolite_in(&mut tx, None).await?;
        let others = select_rules(&mut tx, RuleKind::Permit).await?;
        let mut taken = taken_ranges(others.clone());
        let mut identical_kept = 0;
        let mut geolite_after = 0;
        for code in &permitted {
            let Some(country) = catalog.countries.get(code) else {
                continue; // unreachable: `missing` is empty
            };
            let generated = insert_geolite_in(&mut tx, code, &country.ranges, &mut taken).await?;
            identical_kept += generated.identical.len() as u64;
            geolite_after += generated.inserted;
            if let Some(diff) = diffs.get_mut(code) {
                diff.rules_after = generated.inserted;
                diff.identical = generated.identical;
                let (inside, overlapping) = classify(&others, &country.ranges);
                diff.custom_inside = inside;
                diff.custom_overlapping = overlapping;
            }
        }
        for (code, diff) in &mut diffs {
            diff.rules_before = rules_before.get(code).copied().unwrap_or(0);
        }

        let (v4_ranges, v6_ranges) =
            family_counts(catalog.countries.values().flat_map(|c| &c.ranges));
        let summary = ImportSummary {
            countries: catalog.countries.len() as u64,
            v4_ranges,
            v6_ranges,
            networks: catalog.networks,
            regenerated: permitted.into_iter().collect(),
            geolite_before: rules_before.values().sum(),
            geolite_after,
            identical_kept,
            generation: if mode == Mode::DryRun {
                generation - 1
            } else {
                generation
            },
        };
        if mode == Mode::DryRun {
            tx.rollback().await.map_err(query_err(CONTEXT))?;
        } else {
            tx.commit().await.map_err(query_err(CONTEXT))?;
        }
        Ok((summary, diffs.into_values().collect()))
    }
}

/// Which entry point [`Store::replace_catalog`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `import`: no per-country report.
    Import,
    /// `refresh`: report and commit.
    Refresh,
    /// `refresh --dry-run`: report and roll back.
    DryRun,
}
