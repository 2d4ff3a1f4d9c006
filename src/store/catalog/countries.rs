//! `country add` and `country rm`: permitting a catalog country turns its ranges into
//! `geolite` permit rules ([`Store::permit_countries`]); unpermitting deletes them
//! ([`Store::unpermit_countries`]). One transaction each; custom rules are never touched.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::geolite::{delete_geolite_in, identical_rules_in, insert_geolite_in, taken_ranges};
use super::report::read_meta;
use super::tables::{catalog_ranges_in, country_names_in, permitted_in};
use crate::ranges::Rule;
use crate::store::{bump_in, now_unix, query_err, Store, StoreError};

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

impl Store {
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
}

/// [`StoreError::UnknownCountries`] listing the codes that are not `known`, in order, if any.
fn refuse_unknown(codes: &[String], known: impl Fn(&str) -> bool) -> Result<(), StoreError> {
    let unknown: Vec<String> = codes.iter().filter(|c| !known(c)).cloned().collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(StoreError::UnknownCountries { codes: unknown })
    }
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
