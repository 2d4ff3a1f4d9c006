//! Tests of the catalog operations through [`Store`], end to end on a fresh database
//! of the suite's backend (see `store::testing`):
//! the fixtures here, the tests in `import` (storing catalogs), `countries` (`country
//! add`/`rm`) and `refresh` (refresh, dry run, import over permitted countries, atomicity).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::*;
use crate::import::{Catalog, CountryRanges, Format};
use crate::policy::{Builtins, Policy};
use crate::ranges::{IpRange, Rule, RuleKind, RuleSource};
use crate::store::tests::{add_custom, catalog_rows, net, open_in};
use crate::store::{Store, StoreError};

mod countries;
mod import;
mod refresh;

/// A catalog from `(code, ranges)` pairs; names are `Name of XX`.
fn catalog(countries: &[(&str, &[&str])]) -> Catalog {
    Catalog {
        format: Format::RangeCsv,
        source: vec![PathBuf::from("test.csv")],
        built_at: Some(1_700_000_000),
        database_type: None,
        countries: countries
            .iter()
            .map(|(code, ranges)| {
                (
                    (*code).to_owned(),
                    CountryRanges {
                        name: Some(format!("Name of {code}")),
                        ranges: ranges.iter().map(|s| net(s)).collect(),
                    },
                )
            })
            .collect(),
        networks: countries.iter().map(|(_, rs)| rs.len() as u64).sum(),
    }
}

fn codes(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Everything the catalog code can touch, to compare before and after.
#[derive(Debug, PartialEq)]
struct Dump {
    generation: i64,
    permit: Vec<Rule>,
    deny: Vec<Rule>,
    catalog: Vec<(String, i64, Vec<u8>, Vec<u8>)>,
    countries: Vec<CountryRow>,
    meta: Option<CatalogMeta>,
    permitted: Vec<String>,
}

async fn dump(store: &Store) -> Dump {
    let status = store.catalog_status().await.unwrap();
    Dump {
        generation: store.generation().await.unwrap(),
        permit: store.list_rules(RuleKind::Permit).await.unwrap(),
        deny: store.list_rules(RuleKind::Deny).await.unwrap(),
        catalog: catalog_rows(store).await,
        countries: store.countries().await.unwrap(),
        meta: status.meta,
        permitted: status.permitted,
    }
}

fn geolite(rules: &[Rule], code: &str) -> Vec<IpRange> {
    rules
        .iter()
        .filter(|r| r.source == RuleSource::Geolite && r.country == code)
        .map(|r| r.range)
        .collect()
}

/// The non-geolite rules, in id order.
fn customs(rules: &[Rule]) -> Vec<Rule> {
    let mut out: Vec<Rule> = rules
        .iter()
        .filter(|r| r.source != RuleSource::Geolite)
        .cloned()
        .collect();
    out.sort_by_key(|r| r.id);
    out
}

async fn policy(store: &Store) -> Policy {
    let data = store.load_policy().await.unwrap();
    Policy::try_compile(Some(data.generation), data.rules, Vec::new(), Builtins::Off).unwrap()
}

fn verdict(policy: &Policy, ip: &str) -> Option<String> {
    policy
        .table()
        .lookup(ip.parse::<IpAddr>().unwrap())
        .map(ToString::to_string)
}

/// The crafted "old" catalog of the refresh tests.
fn old_catalog() -> Catalog {
    catalog(&[
        ("CA", &["24.0.0.0/16"]),
        ("DE", &["5.0.0.0/16"]),
        ("FR", &["62.0.0.0/16"]),
        ("US", &["8.8.0.0/16", "9.0.0.0/8", "2001:db8::/32"]),
    ])
}

/// The crafted "new" catalog: US grows one range and gains one, DE gains one, FR is gone,
/// NL is new, CA is unchanged.
fn new_catalog() -> Catalog {
    catalog(&[
        ("CA", &["24.0.0.0/16"]),
        ("DE", &["5.0.0.0/16", "5.2.0.0/24"]),
        ("NL", &["145.0.0.0/16"]),
        (
            "US",
            &["8.8.0.0/15", "9.0.0.0/8", "12.0.0.0/8", "2001:db8::/32"],
        ),
    ])
}

/// A store with the old catalog, US and CA permitted, four custom permit rules and two
/// deny rules.
async fn seeded(dir: &Path) -> (Store, Vec<Rule>, Vec<Rule>) {
    let store = open_in(dir).await;
    let partner = add_custom(&store, RuleKind::Permit, "12.0.0.0/8", "partner").await;
    let inside = add_custom(&store, RuleKind::Permit, "9.9.9.0/24", "quad9").await;
    let overlapping = add_custom(
        &store,
        RuleKind::Permit,
        "8.9.255.0-8.10.0.255",
        "straddles",
    )
    .await;
    let office = add_custom(&store, RuleKind::Permit, "203.0.113.0/24", "office").await;
    let d1 = add_custom(&store, RuleKind::Deny, "8.8.8.8", "abuse").await;
    let d2 = add_custom(&store, RuleKind::Deny, "9.9.9.9", "").await;
    store.import_catalog(&old_catalog()).await.unwrap();
    store.permit_countries(&codes(&["us", "CA"])).await.unwrap();
    (
        store,
        vec![partner, inside, overlapping, office],
        vec![d1, d2],
    )
}
