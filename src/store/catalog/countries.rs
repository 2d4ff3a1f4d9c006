//! `country add` and `country rm`: permitting a catalog country turns its ranges into
//! `geolite` permit rules ([`Store::permit_countries`]); unpermitting deletes them
//! ([`Store::unpermit_countries`]). One transaction each; custom rules are never touched.

use std::collections::HashSet;

use serde::Serialize;

use crate::ranges::Rule;
use crate::store::{on_pool, Store, StoreError};

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
        on_pool!(self, catalog::permit_countries(codes))
    }

    /// Stops permitting countries (`ipcountry country rm CA`): forgets them and deletes their
    /// `geolite` permit rules, in one transaction. Custom rules stay.
    ///
    /// A code neither permitted nor in the catalog is [`StoreError::UnknownCountries`]
    /// (nothing written); a catalog country that is not permitted is reported, not an error.
    pub async fn unpermit_countries(&self, codes: &[String]) -> Result<UnpermitReport, StoreError> {
        on_pool!(self, catalog::unpermit_countries(codes))
    }
}

/// [`StoreError::UnknownCountries`] listing the codes that are not `known`, in order, if any.
pub(in crate::store) fn refuse_unknown(
    codes: &[String],
    known: impl Fn(&str) -> bool,
) -> Result<(), StoreError> {
    let unknown: Vec<String> = codes.iter().filter(|c| !known(c)).cloned().collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(StoreError::UnknownCountries { codes: unknown })
    }
}

/// Upper-cased, trimmed, de-duplicated codes in their given order.
pub(in crate::store) fn normalize_codes(codes: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    codes
        .iter()
        .map(|c| c.trim().to_ascii_uppercase())
        .filter(|c| seen.insert(c.clone()))
        .collect()
}
