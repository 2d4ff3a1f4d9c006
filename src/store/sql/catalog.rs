//! The shared SQL of the country catalog (`catalog`, `country`, `catalog_meta`,
//! `permitted_country`) and of the `geolite` permit rules generated from it, written once and
//! compiled for each backend like `rules.rs` beside it. The types, the checks and the pure
//! parts live in `store/catalog/`, one concept a file; this file holds what talks to the
//! database, in the same order: import/refresh, country add/rm, reports, then the shared reads.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sqlx::{Pool, Row};

use super::rules::{begin_read, bump_in, decode_range, decode_rule, read_generation, select_rules};
use super::{sql, Conn, Db, DbRow};
use crate::import::{Catalog, CountryRanges};
use crate::ranges::{Family, IpRange, Rule, RuleKind, RuleSource};
use crate::store::catalog::{
    check_catalog, classify, count, family_counts, format_key, normalize_codes, refuse_unknown,
    taken_ranges, BatchInsert, CatalogMeta, CatalogStatus, CountryDiff, CountryRow, CountryRules,
    Generated, ImportSummary, Mode, PermitReport, UnpermitReport, BATCH_ROWS,
};
use crate::store::{now_unix, query_err, StoreError};

// ---------------------------------------------------------------------------------------------
// Import and refresh: one transaction.

/// The shared body of import, refresh and dry run (see `Store::refresh`).
pub(in crate::store) async fn replace_catalog(
    pool: &Pool<Db>,
    catalog: &Catalog,
    mode: Mode,
) -> Result<(ImportSummary, Vec<CountryDiff>), StoreError> {
    const CONTEXT: &str = "replacing the catalog";
    check_catalog(catalog)?;
    let mut tx = pool.begin().await.map_err(query_err(CONTEXT))?;
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

    let (v4_ranges, v6_ranges) = family_counts(catalog.countries.values().flat_map(|c| &c.ranges));
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

/// Replaces the catalog tables' contents with `catalog`.
async fn write_catalog_in(conn: &mut Conn, catalog: &Catalog) -> Result<(), StoreError> {
    const CONTEXT: &str = "storing the catalog";
    for text in [
        "DELETE FROM catalog",
        "DELETE FROM country",
        "DELETE FROM catalog_meta",
    ] {
        sqlx::query(text)
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
    sqlx::query(&sql("INSERT INTO catalog_meta \
         (id, source, format, built_at, database_type, networks, imported_at) \
         VALUES (1, ?, ?, ?, ?, ?, ?)"))
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
        sql,
    );
    for chunk in countries.chunks(BATCH_ROWS) {
        let text = insert.sql(chunk.len());
        let mut query = sqlx::query(&text);
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
        sql,
    );
    for chunk in rows.chunks(BATCH_ROWS) {
        let text = insert.sql(chunk.len());
        let mut query = sqlx::query(&text);
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

/// Per-country range diffs between the stored catalog and `catalog`: every permitted country
/// and every country whose ranges change. Rule counts are filled in later.
async fn range_diffs_in(
    conn: &mut Conn,
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

// ---------------------------------------------------------------------------------------------
// `country add` and `country rm`.

/// Permits catalog countries (see `Store::permit_countries`).
pub(in crate::store) async fn permit_countries(
    pool: &Pool<Db>,
    codes: &[String],
) -> Result<PermitReport, StoreError> {
    const CONTEXT: &str = "permitting countries";
    let codes = normalize_codes(codes);
    let mut tx = pool.begin().await.map_err(query_err(CONTEXT))?;
    let generation = bump_in(&mut tx).await?;
    if read_meta(&mut tx).await?.is_none() {
        return Err(StoreError::NoCatalog);
    }
    let names = country_names_in(&mut tx).await?;
    refuse_unknown(&codes, |c| names.contains_key(c))?;
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
        sqlx::query(&sql(
            "INSERT INTO permitted_country (code, added_at) VALUES (?, ?)",
        ))
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

/// Stops permitting countries (see `Store::unpermit_countries`).
pub(in crate::store) async fn unpermit_countries(
    pool: &Pool<Db>,
    codes: &[String],
) -> Result<UnpermitReport, StoreError> {
    const CONTEXT: &str = "unpermitting countries";
    let codes = normalize_codes(codes);
    let mut tx = pool.begin().await.map_err(query_err(CONTEXT))?;
    let generation = bump_in(&mut tx).await?;
    let names = country_names_in(&mut tx).await?;
    let permitted = permitted_in(&mut tx).await?;
    refuse_unknown(&codes, |c| permitted.contains(c) || names.contains_key(c))?;
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
        sqlx::query(&sql("DELETE FROM permitted_country WHERE code = ?"))
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

// ---------------------------------------------------------------------------------------------
// The `geolite` rules.

/// The permit rules whose range is identical to one of `code`'s catalog ranges (custom
/// entries, or another country's geolite rules), found by the unique indexes rather than by
/// reading the whole permit table.
async fn identical_rules_in(conn: &mut Conn, code: &str) -> Result<Vec<Rule>, StoreError> {
    let rows = sqlx::query(&sql(
        "SELECT p.id AS id, p.family AS family, p.start_ip AS start_ip, p.end_ip AS end_ip, \
                p.country_code AS country_code, p.source AS source, p.note AS note, \
                p.expires_at AS expires_at, p.shadow AS shadow \
         FROM catalog c JOIN permit p \
           ON p.family = c.family AND p.start_ip = c.start_ip AND p.end_ip = c.end_ip \
         WHERE c.country_code = ?",
    ))
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

/// Deletes the `geolite` permit rules of one country, or of all (`None`); returns how many.
async fn delete_geolite_in(conn: &mut Conn, code: Option<&str>) -> Result<u64, StoreError> {
    const CONTEXT: &str = "deleting geolite rules";
    let done = match code {
        Some(code) => {
            sqlx::query(&sql(
                "DELETE FROM permit WHERE source = ? AND country_code = ?",
            ))
            .bind(RuleSource::Geolite.as_str())
            .bind(code)
            .execute(&mut *conn)
            .await
        }
        None => {
            sqlx::query(&sql("DELETE FROM permit WHERE source = ?"))
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
    conn: &mut Conn,
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
    let insert = BatchInsert::new(HEAD, ROW, sql);
    for chunk in fresh.chunks(BATCH_ROWS) {
        let text = insert.sql(chunk.len());
        let mut query = sqlx::query(&text);
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

// ---------------------------------------------------------------------------------------------
// Reports (read-only, one snapshot each).

/// Every country of the catalog (see `Store::countries`).
pub(in crate::store) async fn countries(pool: &Pool<Db>) -> Result<Vec<CountryRow>, StoreError> {
    const CONTEXT: &str = "listing countries";
    let mut tx = begin_read(pool, CONTEXT).await?;
    let rows = sqlx::query("SELECT code, name, v4_ranges, v6_ranges FROM country")
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

/// The catalog's origin and the table counts (see `Store::catalog_status`).
pub(in crate::store) async fn catalog_status(pool: &Pool<Db>) -> Result<CatalogStatus, StoreError> {
    const CONTEXT: &str = "reading the status";
    let mut tx = begin_read(pool, CONTEXT).await?;
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

/// The `catalog_meta` row, if a catalog was imported.
async fn read_meta(conn: &mut Conn) -> Result<Option<CatalogMeta>, StoreError> {
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

// ---------------------------------------------------------------------------------------------
// The shared reads.

/// A typed column, or a query error naming `context`.
fn get<'r, T>(row: &'r DbRow, column: &str, context: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Db> + sqlx::Type<Db>,
{
    row.try_get(column).map_err(query_err(context))
}

/// `SELECT COUNT(*) ...` as `u64`.
async fn count_in(conn: &mut Conn, text: &'static str) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(text)
        .fetch_one(&mut *conn)
        .await
        .map_err(query_err("counting rows"))?;
    Ok(count(n))
}

/// The permitted country codes.
async fn permitted_in(conn: &mut Conn) -> Result<BTreeSet<String>, StoreError> {
    let codes: Vec<String> = sqlx::query_scalar("SELECT code FROM permitted_country")
        .fetch_all(&mut *conn)
        .await
        .map_err(query_err("reading the permitted countries"))?;
    Ok(codes.into_iter().collect())
}

/// The catalog's countries and their names.
async fn country_names_in(conn: &mut Conn) -> Result<BTreeMap<String, String>, StoreError> {
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
async fn geolite_counts_in(conn: &mut Conn) -> Result<BTreeMap<String, u64>, StoreError> {
    const CONTEXT: &str = "counting geolite rules";
    let rows = sqlx::query(&sql(
        "SELECT country_code, COUNT(*) AS n FROM permit WHERE source = ? GROUP BY country_code",
    ))
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

/// One country's catalog ranges, in address order.
async fn catalog_ranges_in(conn: &mut Conn, code: &str) -> Result<Vec<IpRange>, StoreError> {
    const CONTEXT: &str = "reading catalog ranges";
    let rows = sqlx::query(&sql(
        "SELECT family, start_ip, end_ip FROM catalog WHERE country_code = ? \
         ORDER BY family, start_ip",
    ))
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
            // This runs for every row of the catalog in a refresh.
            decode_range(row, 0, corrupt)
        })
        .collect()
}
