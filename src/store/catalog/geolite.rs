//! The `geolite` permit rules: generated from a country's catalog ranges, skipping ranges an
//! identical permit rule already has ([`taken_ranges`]), and deleted per country or all at
//! once (the SQL is in `store/sql/catalog.rs`). Used by `country add`/`rm` and by
//! import/refresh.

use std::collections::HashMap;

use crate::ranges::{IpRange, Rule};

/// The rules generated for one country.
pub(in crate::store) struct Generated {
    /// Rows inserted.
    pub(in crate::store) inserted: u64,
    /// Existing rules identical to one of its ranges.
    pub(in crate::store) identical: Vec<Rule>,
}

/// The permit rules already present, by range: `Some(rule)` for stored rules, `None` for ranges
/// generated in this transaction.
pub(in crate::store) fn taken_ranges(rules: Vec<Rule>) -> HashMap<IpRange, Option<Rule>> {
    rules.into_iter().map(|r| (r.range, Some(r))).collect()
}
