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
//!   I/O, a killed process) rolls everything back, bump included. SQLite readers in WAL mode,
//!   i.e. the reloaders of running servers, keep seeing the old tables until the commit, so the
//!   permit table is never observed empty or half-regenerated.
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

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::Row;

use super::{
    bump_in, decode_rule, now_unix, query_err, read_generation, select_rules, Store, StoreError,
};
use crate::import::{Catalog, Format};
use crate::ranges::{Family, IpRange, Rule, RuleKind, RuleSource};

/// Rows per multi-row `INSERT`. Permit rows bind 7 parameters, so a batch binds 3,500, far
/// below SQLite's limit of 32,766 per statement (and PostgreSQL's 65,535).
pub const BATCH_ROWS: usize = 500;

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

/// How one country changes in a refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountryDiff {
    /// ISO 3166-1 alpha-2 code.
    pub code: String,
    /// English name from the new catalog (empty if the source has none).
    pub name: String,
    /// Whether the country is permitted (its `geolite` rules are regenerated).
    pub permitted: bool,
    /// Ranges in the old catalog.
    pub ranges_before: u64,
    /// Ranges in the new catalog.
    pub ranges_after: u64,
    /// Ranges of the new catalog not in the old one (compared exactly: a range that grew
    /// counts as one removed and one added).
    pub ranges_added: u64,
    /// Ranges of the old catalog not in the new one.
    pub ranges_removed: u64,
    /// `geolite` permit rules of this country before.
    pub rules_before: u64,
    /// `geolite` permit rules of this country after.
    pub rules_after: u64,
    /// Existing permit rules identical to a new range of this country: kept as they are, no
    /// `geolite` rule is added for that range.
    pub identical: Vec<Rule>,
    /// Non-`geolite` permit rules lying entirely inside one new range of this permitted
    /// country (now redundant, but kept).
    pub custom_inside: Vec<Rule>,
    /// Non-`geolite` permit rules partly overlapping new ranges of this permitted country.
    pub custom_overlapping: Vec<Rule>,
}

/// What [`Store::permit_countries`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PermitReport {
    /// The countries newly permitted, with the rules generated for each.
    pub added: Vec<CountryRules>,
    /// Codes that were already permitted (not an error; nothing done for them).
    pub already: Vec<String>,
    /// The new generation, or `None` when nothing changed (nothing was written).
    pub generation: Option<i64>,
}

/// The `geolite` rules generated for (or deleted with) one country.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountryRules {
    /// ISO code.
    pub code: String,
    /// English name (empty if the catalog has none).
    pub name: String,
    /// `geolite` permit rules inserted (`country add`) or deleted (`country rm`).
    pub rules: u64,
    /// Existing permit rules identical to one of its ranges, kept instead of a new rule
    /// (`country add` only).
    pub identical: Vec<Rule>,
}

/// What [`Store::unpermit_countries`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnpermitReport {
    /// The countries no longer permitted, with the number of `geolite` rules deleted for each.
    pub removed: Vec<CountryRules>,
    /// Codes of the catalog that were not permitted (not an error).
    pub not_permitted: Vec<String>,
    /// The new generation, or `None` when nothing changed.
    pub generation: Option<i64>,
}

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

    /// Permits countries of the catalog (`ipcountry country add US CA`): records them and
    /// turns their catalog ranges into `geolite` permit rules, in one transaction.
    ///
    /// Codes are matched case-insensitively. Any code not in the catalog fails the whole call
    /// with [`StoreError::UnknownCountries`] listing them, and nothing is written; no catalog at
    /// all is [`StoreError::NoCatalog`]. Codes already permitted are reported, not an error.
    /// When nothing is new, nothing is written and the generation stays.
    pub async fn permit_countries(&self, codes: &[String]) -> Result<PermitReport, StoreError> {
        const CONTEXT: &str = "permitting countries";
        let codes = normalize_codes(codes);
        let mut tx = self.pool.begin().await.map_err(query_err(CONTEXT))?;
        let generation = bump_in(&mut tx).await?;
        if read_meta(&mut tx).await?.is_none() {
            return Err(StoreError::NoCatalog);
        }
        let names = country_names_in(&mut tx).await?;
        let unknown: Vec<String> = codes
            .iter()
            .filter(|c| !names.contains_key(*c))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(StoreError::UnknownCountries { codes: unknown });
        }
        let permitted = permitted_in(&mut tx).await?;
        let (already, new): (Vec<String>, Vec<String>) =
            codes.into_iter().partition(|c| permitted.contains(c));
        if new.is_empty() {
            tx.rollback().await.map_err(query_err(CONTEXT))?;
            return Ok(PermitReport {
                added: Vec::new(),
                already,
                generation: None,
            });
        }
        let now = now_unix();
        for code in &new {
            sqlx::query("INSERT INTO permitted_country (code, added_at) VALUES (?, ?)")
                .bind(code)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(query_err(CONTEXT))?;
            // There should be none; a stale rule from an older version must not collide.
            delete_geolite_in(&mut tx, Some(code)).await?;
        }
        let mut taken = HashMap::new();
        for code in &new {
            taken.extend(taken_ranges(identical_rules_in(&mut tx, code).await?));
        }
        let mut added = Vec::with_capacity(new.len());
        for code in new {
            let ranges = catalog_ranges_in(&mut tx, &code).await?;
            let generated = insert_geolite_in(&mut tx, &code, &ranges, &mut taken).await?;
            added.push(CountryRules {
                name: names.get(&code).cloned().unwrap_or_default(),
                code,
                rules: generated.inserted,
                identical: generated.identical,
            });
        }
        tx.commit().await.map_err(query_err(CONTEXT))?;
        Ok(PermitReport {
            added,
            already,
            generation: Some(generation),
        })
    }

    /// Stops permitting countries (`ipcountry country rm CA`): forgets them and deletes their
    /// `geolite` permit rules, in one transaction. Custom rules stay.
    ///
    /// A code neither permitted nor in the catalog is [`StoreError::UnknownCountries`]
    /// (nothing written); a catalog country that is not permitted is reported, not an error.
    pub async fn unpermit_countries(&self, codes: &[String]) -> Result<UnpermitReport, StoreError> {
        const CONTEXT: &str = "unpermitting countries";
        let codes = normalize_codes(codes);
        let mut tx = self.pool.begin().await.map_err(query_err(CONTEXT))?;
        let generation = bump_in(&mut tx).await?;
        let names = country_names_in(&mut tx).await?;
        let permitted = permitted_in(&mut tx).await?;
        let unknown: Vec<String> = codes
            .iter()
            .filter(|c| !permitted.contains(*c) && !names.contains_key(*c))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(StoreError::UnknownCountries { codes: unknown });
        }
        let (remove, not_permitted): (Vec<String>, Vec<String>) =
            codes.into_iter().partition(|c| permitted.contains(c));
        if remove.is_empty() {
            tx.rollback().await.map_err(query_err(CONTEXT))?;
            return Ok(UnpermitReport {
                removed: Vec::new(),
                not_permitted,
                generation: None,
            });
        }
        let mut removed = Vec::with_capacity(remove.len());
        for code in remove {
            sqlx::query("DELETE FROM permitted_country WHERE code = ?")
                .bind(&code)
                .execute(&mut *tx)
                .await
                .map_err(query_err(CONTEXT))?;
            let deleted = delete_geolite_in(&mut tx, Some(&code)).await?;
            removed.push(CountryRules {
                name: names.get(&code).cloned().unwrap_or_default(),
                code,
                rules: deleted,
                identical: Vec::new(),
            });
        }
        tx.commit().await.map_err(query_err(CONTEXT))?;
        Ok(UnpermitReport {
            removed,
            not_permitted,
            generation: Some(generation),
        })
    }

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
            if let std::collections::btree_map::Entry::Vacant(slot) = out.entry(code.clone()) {
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

/// The rules generated for one country.
struct Generated {
    /// Rows inserted.
    inserted: u64,
    /// Existing rules identical to one of its ranges.
    identical: Vec<Rule>,
}

/// The name stored in `catalog_meta.format`.
fn format_key(format: Format) -> &'static str {
    match format {
        Format::MmdbGeoIp2 => "mmdb-geoip2",
        Format::MmdbCountryCode => "mmdb-country-code",
        Format::GeoLite2Csv => "geolite2-csv",
        Format::RangeCsv => "range-csv",
    }
}

/// Whether `code` looks like an ISO 3166-1 alpha-2 code as the readers produce them.
fn is_country_code(code: &str) -> bool {
    code.len() == 2
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Refuses a catalog with no ranges or a malformed code, before anything is written.
fn check_catalog(catalog: &Catalog) -> Result<(), StoreError> {
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

/// Upper-cased, trimmed, de-duplicated codes in their given order.
fn normalize_codes(codes: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    codes
        .iter()
        .map(|c| c.trim().to_ascii_uppercase())
        .filter(|c| seen.insert(c.clone()))
        .collect()
}

/// The `(IPv4, IPv6)` counts of some ranges.
fn family_counts<'a>(ranges: impl Iterator<Item = &'a IpRange>) -> (u64, u64) {
    ranges.fold((0, 0), |(v4, v6), r| match r.family() {
        Family::V4 => (v4 + 1, v6),
        Family::V6 => (v4, v6 + 1),
    })
}

/// A database count as `u64` (negative counts cannot happen; they read as 0).
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The permit rules already present, by range: `Some(rule)` for stored rules, `None` for ranges
/// generated in this transaction.
fn taken_ranges(rules: Vec<Rule>) -> HashMap<IpRange, Option<Rule>> {
    rules.into_iter().map(|r| (r.range, Some(r))).collect()
}

/// Splits the non-`geolite` rules among `others` into those entirely inside one of `ranges`
/// and those partly overlapping them. Identical rules are neither (they are reported as
/// `identical`).
fn classify(others: &[Rule], ranges: &[IpRange]) -> (Vec<Rule>, Vec<Rule>) {
    let mut sorted: Vec<(Family, u128, u128)> = ranges.iter().map(bounds).collect();
    sorted.sort_unstable();
    let mut inside = Vec::new();
    let mut overlapping = Vec::new();
    for rule in others.iter().filter(|r| r.source != RuleSource::Geolite) {
        let (family, start, end) = bounds(&rule.range);
        // Ranges of one country are disjoint, so their ends are sorted too: the first range
        // that can touch the rule is the first whose end is not below the rule's start.
        let first = sorted.partition_point(|&(f, _, e)| (f, e) < (family, start));
        let touching = sorted[first..]
            .iter()
            .take_while(|&&(f, s, _)| f == family && s <= end);
        let hits: Vec<&(Family, u128, u128)> = touching.collect();
        match hits.as_slice() {
            [] => {}
            // Identical: reported as `identical`, not here.
            [&(_, s, e)] if s == start && e == end => {}
            [&(_, s, e)] if s <= start && end <= e => inside.push(rule.clone()),
            _ => overlapping.push(rule.clone()),
        }
    }
    (inside, overlapping)
}

/// A range as `(family, start, end)` with both ends widened to `u128`.
fn bounds(r: &IpRange) -> (Family, u128, u128) {
    match *r {
        IpRange::V4 { start, end } => (Family::V4, u128::from(start), u128::from(end)),
        IpRange::V6 { start, end } => (Family::V6, start, end),
    }
}

/// A typed column, or a query error naming `context`.
fn get<'r, T>(row: &'r SqliteRow, column: &str, context: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column).map_err(query_err(context))
}

/// `SELECT COUNT(*) ...` as `u64`.
async fn count_in(conn: &mut SqliteConnection, sql: &'static str) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(sql)
        .fetch_one(&mut *conn)
        .await
        .map_err(query_err("counting rows"))?;
    Ok(count(n))
}

/// The permitted country codes.
async fn permitted_in(conn: &mut SqliteConnection) -> Result<BTreeSet<String>, StoreError> {
    let codes: Vec<String> = sqlx::query_scalar("SELECT code FROM permitted_country")
        .fetch_all(&mut *conn)
        .await
        .map_err(query_err("reading the permitted countries"))?;
    Ok(codes.into_iter().collect())
}

/// The catalog's countries and their names.
async fn country_names_in(
    conn: &mut SqliteConnection,
) -> Result<BTreeMap<String, String>, StoreError> {
    const CONTEXT: &str = "reading the countries";
    let rows = sqlx::query("SELECT code, name FROM country")
        .fetch_all(&mut *conn)
        .await
        .map_err(query_err(CONTEXT))?;
    rows.iter()
        .map(|row| Ok((get(row, "code", CONTEXT)?, get(row, "name", CONTEXT)?)))
        .collect()
}

/// `geolite` permit rules per country code.
async fn geolite_counts_in(
    conn: &mut SqliteConnection,
) -> Result<BTreeMap<String, u64>, StoreError> {
    const CONTEXT: &str = "counting geolite rules";
    let rows = sqlx::query(
        "SELECT country_code, COUNT(*) AS n FROM permit WHERE source = ? GROUP BY country_code",
    )
    .bind(RuleSource::Geolite.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(query_err(CONTEXT))?;
    rows.iter()
        .map(|row| {
            let n: i64 = get(row, "n", CONTEXT)?;
            Ok((get(row, "country_code", CONTEXT)?, count(n)))
        })
        .collect()
}

/// The `catalog_meta` row, if a catalog was imported.
async fn read_meta(conn: &mut SqliteConnection) -> Result<Option<CatalogMeta>, StoreError> {
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

/// The permit rules whose range is identical to one of `code`'s catalog ranges (custom
/// entries, or another country's geolite rules), found by the unique indexes rather than by
/// reading the whole permit table.
async fn identical_rules_in(
    conn: &mut SqliteConnection,
    code: &str,
) -> Result<Vec<Rule>, StoreError> {
    let rows = sqlx::query(
        "SELECT p.id AS id, p.family AS family, p.start_ip AS start_ip, p.end_ip AS end_ip, \
                p.country_code AS country_code, p.source AS source, p.note AS note \
         FROM catalog c JOIN permit p \
           ON p.family = c.family AND p.start_ip = c.start_ip AND p.end_ip = c.end_ip \
         WHERE c.country_code = ?",
    )
    .bind(code)
    .fetch_all(&mut *conn)
    .await
    .map_err(query_err(
        "looking up permit rules identical to catalog ranges",
    ))?;
    rows.iter()
        .map(|row| decode_rule(RuleKind::Permit, row))
        .collect()
}

/// One country's catalog ranges, in address order.
async fn catalog_ranges_in(
    conn: &mut SqliteConnection,
    code: &str,
) -> Result<Vec<IpRange>, StoreError> {
    const CONTEXT: &str = "reading catalog ranges";
    let rows = sqlx::query(
        "SELECT family, start_ip, end_ip FROM catalog WHERE country_code = ? \
         ORDER BY family, start_ip",
    )
    .bind(code)
    .fetch_all(&mut *conn)
    .await
    .map_err(query_err(CONTEXT))?;
    rows.iter()
        .map(|row| {
            let corrupt = |why| StoreError::CorruptCatalog {
                country: code.to_owned(),
                why,
            };
            // By index and borrowed: this runs for every row of the catalog in a refresh.
            let family: i64 = row
                .try_get(0)
                .map_err(|_| corrupt("family is not an integer"))?;
            let family =
                Family::from_number(family).ok_or_else(|| corrupt("family is not 4 or 6"))?;
            let start: &[u8] = row
                .try_get(1)
                .map_err(|_| corrupt("start_ip is not a blob"))?;
            let end: &[u8] = row
                .try_get(2)
                .map_err(|_| corrupt("end_ip is not a blob"))?;
            IpRange::from_bytes(family, start, end)
                .ok_or_else(|| corrupt("start_ip/end_ip do not fit the family, or start > end"))
        })
        .collect()
}

/// Per-country range diffs between the stored catalog and `catalog`: every permitted country
/// and every country whose ranges change. Rule counts are filled in later.
async fn range_diffs_in(
    conn: &mut SqliteConnection,
    catalog: &Catalog,
    permitted: &BTreeSet<String>,
) -> Result<BTreeMap<String, CountryDiff>, StoreError> {
    let old_codes = country_names_in(conn).await?;
    let codes: BTreeSet<&String> = old_codes.keys().chain(catalog.countries.keys()).collect();
    let mut diffs = BTreeMap::new();
    for code in codes {
        let old: HashSet<IpRange> = if old_codes.contains_key(code) {
            catalog_ranges_in(conn, code).await?.into_iter().collect()
        } else {
            HashSet::new()
        };
        let (name, new) = match catalog.countries.get(code) {
            Some(c) => (c.name.clone().unwrap_or_default(), c.ranges.as_slice()),
            None => (old_codes.get(code).cloned().unwrap_or_default(), &[][..]),
        };
        let new_set: HashSet<&IpRange> = new.iter().collect();
        let common = new_set.iter().filter(|r| old.contains(**r)).count() as u64;
        let ranges_after = new_set.len() as u64;
        let ranges_before = old.len() as u64;
        let is_permitted = permitted.contains(code);
        let changed = ranges_after != common || ranges_before != common;
        if !is_permitted && !changed {
            continue;
        }
        diffs.insert(
            code.clone(),
            CountryDiff {
                code: code.clone(),
                name,
                permitted: is_permitted,
                ranges_before,
                ranges_after,
                ranges_added: ranges_after - common,
                ranges_removed: ranges_before - common,
                rules_before: 0,
                rules_after: 0,
                identical: Vec::new(),
                custom_inside: Vec::new(),
                custom_overlapping: Vec::new(),
            },
        );
    }
    Ok(diffs)
}

/// Replaces the catalog tables' contents with `catalog`.
async fn write_catalog_in(
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

    let countries: Vec<(&String, &crate::import::CountryRanges)> =
        catalog.countries.iter().collect();
    for chunk in countries.chunks(BATCH_ROWS) {
        let sql = values_sql(
            "INSERT INTO country (code, name, v4_ranges, v6_ranges) VALUES ",
            "(?, ?, ?, ?)",
            chunk.len(),
        );
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
    let full = values_sql(
        "INSERT INTO catalog (country_code, family, start_ip, end_ip) VALUES ",
        "(?, ?, ?, ?)",
        BATCH_ROWS,
    );
    for chunk in rows.chunks(BATCH_ROWS) {
        let partial;
        let sql = if chunk.len() == BATCH_ROWS {
            &full
        } else {
            partial = values_sql(
                "INSERT INTO catalog (country_code, family, start_ip, end_ip) VALUES ",
                "(?, ?, ?, ?)",
                chunk.len(),
            );
            &partial
        };
        let mut query = sqlx::query(sql);
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

/// Deletes the `geolite` permit rules of one country, or of all (`None`); returns how many.
async fn delete_geolite_in(
    conn: &mut SqliteConnection,
    code: Option<&str>,
) -> Result<u64, StoreError> {
    const CONTEXT: &str = "deleting geolite rules";
    let done = match code {
        Some(code) => {
            sqlx::query("DELETE FROM permit WHERE source = ? AND country_code = ?")
                .bind(RuleSource::Geolite.as_str())
                .bind(code)
                .execute(&mut *conn)
                .await
        }
        None => {
            sqlx::query("DELETE FROM permit WHERE source = ?")
                .bind(RuleSource::Geolite.as_str())
                .execute(&mut *conn)
                .await
        }
    }
    .map_err(query_err(CONTEXT))?;
    Ok(done.rows_affected())
}

/// Inserts a `geolite` permit rule for each of `ranges` not already `taken` (by a stored rule,
/// which is then reported as identical, or by another country's range generated in this
/// transaction, which is skipped), in batches.
async fn insert_geolite_in(
    conn: &mut SqliteConnection,
    code: &str,
    ranges: &[IpRange],
    taken: &mut HashMap<IpRange, Option<Rule>>,
) -> Result<Generated, StoreError> {
    const CONTEXT: &str = "generating geolite rules";
    const HEAD: &str = "INSERT INTO permit \
        (family, start_ip, end_ip, country_code, source, note, created_at) VALUES ";
    const ROW: &str = "(?, ?, ?, ?, ?, ?, ?)";
    let mut identical = Vec::new();
    let mut fresh = Vec::with_capacity(ranges.len());
    for range in ranges {
        match taken.entry(*range) {
            Entry::Occupied(e) => {
                if let Some(rule) = e.get() {
                    identical.push(rule.clone());
                }
            }
            Entry::Vacant(e) => {
                e.insert(None);
                fresh.push(*range);
            }
        }
    }
    let now = now_unix();
    let source = RuleSource::Geolite.as_str();
    let full = values_sql(HEAD, ROW, BATCH_ROWS);
    for chunk in fresh.chunks(BATCH_ROWS) {
        let partial;
        let sql = if chunk.len() == BATCH_ROWS {
            &full
        } else {
            partial = values_sql(HEAD, ROW, chunk.len());
            &partial
        };
        let mut query = sqlx::query(sql);
        for range in chunk {
            query = query
                .bind(range.family().number())
                .bind(range.start_bytes())
                .bind(range.end_bytes())
                .bind(code)
                .bind(source)
                .bind("")
                .bind(now);
        }
        query
            .execute(&mut *conn)
            .await
            .map_err(query_err(CONTEXT))?;
    }
    Ok(Generated {
        inserted: fresh.len() as u64,
        identical,
    })
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

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
