//! Tests of `catalog.rs` (kept in their own file to keep the module readable).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::*;
use crate::import::CountryRanges;
use crate::policy::{Builtins, Policy};
use crate::ranges::CUSTOM_COUNTRY;

/// A range from a CIDR, `A-B` or a single address.
fn r(s: &str) -> IpRange {
    s.parse().unwrap()
}

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
                        ranges: ranges.iter().map(|s| r(s)).collect(),
                    },
                )
            })
            .collect(),
        networks: countries.iter().map(|(_, rs)| rs.len() as u64).sum(),
    }
}

async fn open_in(dir: &Path) -> Store {
    Store::open(dir.join("ipcountry.db").to_str().unwrap())
        .await
        .unwrap()
}

async fn custom(store: &Store, kind: RuleKind, range: &str, note: &str) -> Rule {
    store
        .add_rule(kind, r(range), CUSTOM_COUNTRY, RuleSource::Custom, note)
        .await
        .unwrap()
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
        catalog: sqlx::query_as(
            "SELECT country_code, family, start_ip, end_ip FROM catalog \
                 ORDER BY country_code, family, start_ip",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap(),
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
    let partner = custom(&store, RuleKind::Permit, "12.0.0.0/8", "partner").await;
    let inside = custom(&store, RuleKind::Permit, "9.9.9.0/24", "quad9").await;
    let overlapping = custom(
        &store,
        RuleKind::Permit,
        "8.9.255.0-8.10.0.255",
        "straddles",
    )
    .await;
    let office = custom(&store, RuleKind::Permit, "203.0.113.0/24", "office").await;
    let d1 = custom(&store, RuleKind::Deny, "8.8.8.8", "abuse").await;
    let d2 = custom(&store, RuleKind::Deny, "9.9.9.9", "").await;
    store.import_catalog(&old_catalog()).await.unwrap();
    store.permit_countries(&codes(&["us", "CA"])).await.unwrap();
    (
        store,
        vec![partner, inside, overlapping, office],
        vec![d1, d2],
    )
}

#[tokio::test]
async fn schema_has_the_catalog_tables() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&store.pool)
            .await
            .unwrap();
    for t in ["catalog", "country", "catalog_meta", "permitted_country"] {
        assert!(tables.iter().any(|n| n == t), "missing {t} in {tables:?}");
    }
    let status = store.catalog_status().await.unwrap();
    assert_eq!(status.meta, None);
    assert_eq!(status.countries, 0);
    assert!(store.countries().await.unwrap().is_empty());
}

#[tokio::test]
async fn import_stores_the_catalog_and_changes_no_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    custom(&store, RuleKind::Permit, "203.0.113.0/24", "office").await;
    custom(&store, RuleKind::Deny, "203.0.113.66", "").await;
    let before = store.load_policy().await.unwrap();

    let summary = store.import_catalog(&old_catalog()).await.unwrap();
    assert_eq!(summary.countries, 4);
    assert_eq!((summary.v4_ranges, summary.v6_ranges), (5, 1));
    assert_eq!(summary.networks, 6);
    assert!(summary.regenerated.is_empty());
    assert_eq!((summary.geolite_before, summary.geolite_after), (0, 0));
    assert_eq!(summary.generation, before.generation + 1);

    let after = store.load_policy().await.unwrap();
    assert_eq!(after.rules, before.rules, "no rule changed");
    assert_eq!(after.allow_hosts, before.allow_hosts);
    let p = policy(&store).await;
    assert_eq!(
        verdict(&p, "8.8.8.8"),
        None,
        "catalog ranges permit nothing"
    );
    assert_eq!(verdict(&p, "2001:db8::1"), None);

    let rows = store.countries().await.unwrap();
    let us = rows.iter().find(|c| c.code == "US").unwrap();
    assert_eq!(
        us,
        &CountryRow {
            code: "US".into(),
            name: "Name of US".into(),
            v4_ranges: 2,
            v6_ranges: 1,
            permitted: false,
            rules: 0,
        }
    );
    assert_eq!(
        rows.iter().map(|c| c.code.as_str()).collect::<Vec<_>>(),
        ["CA", "DE", "FR", "US"]
    );

    let status = store.catalog_status().await.unwrap();
    let meta = status.meta.unwrap();
    assert_eq!(meta.source, ["test.csv"]);
    assert_eq!(meta.format, "range-csv");
    assert_eq!(meta.built_at, Some(1_700_000_000));
    assert_eq!(meta.networks, 6);
    assert!(meta.imported_at > 1_700_000_000);
    assert_eq!((status.catalog_v4, status.catalog_v6), (5, 1));
    assert_eq!(status.countries, 4);
    assert_eq!(status.permit_by_source.get("custom"), Some(&1));
    assert_eq!(status.permit_by_source.get("geolite"), None);
    assert_eq!(status.deny, 1);
    assert_eq!(status.generation, summary.generation);

    // A second import replaces, not appends.
    store.import_catalog(&new_catalog()).await.unwrap();
    let status = store.catalog_status().await.unwrap();
    assert_eq!((status.catalog_v4, status.catalog_v6), (7, 1));
    assert_eq!(
        store
            .countries()
            .await
            .unwrap()
            .iter()
            .map(|c| c.code.as_str())
            .collect::<Vec<_>>(),
        ["CA", "DE", "NL", "US"]
    );
}

#[tokio::test]
async fn country_add_generates_geolite_rules_and_rm_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let office = custom(&store, RuleKind::Permit, "203.0.113.0/24", "office").await;
    assert!(matches!(
        store.permit_countries(&codes(&["US"])).await,
        Err(StoreError::NoCatalog)
    ));
    store.import_catalog(&old_catalog()).await.unwrap();
    let g0 = store.generation().await.unwrap();

    let report = store
        .permit_countries(&codes(&[" us ", "CA", "US"]))
        .await
        .unwrap();
    assert_eq!(report.generation, Some(g0 + 1));
    assert!(report.already.is_empty());
    let added: Vec<(&str, u64)> = report
        .added
        .iter()
        .map(|c| (c.code.as_str(), c.rules))
        .collect();
    assert_eq!(added, [("US", 3), ("CA", 1)]);
    assert_eq!(report.added[0].name, "Name of US");

    let permit = store.list_rules(RuleKind::Permit).await.unwrap();
    assert_eq!(
        geolite(&permit, "US"),
        [r("8.8.0.0/16"), r("9.0.0.0/8"), r("2001:db8::/32")]
    );
    assert_eq!(geolite(&permit, "CA"), [r("24.0.0.0/16")]);
    assert!(permit
        .iter()
        .filter(|r| r.source == RuleSource::Geolite)
        .all(|r| r.note.is_empty() && r.kind == RuleKind::Permit));
    let p = policy(&store).await;
    assert_eq!(
        verdict(&p, "8.8.8.8").as_deref(),
        Some("geolite US 8.8.0.0/16")
    );
    assert_eq!(
        verdict(&p, "2001:db8::5").as_deref(),
        Some("geolite US 2001:db8::/32")
    );
    assert_eq!(verdict(&p, "5.0.0.1"), None, "DE is not permitted");

    // Already permitted: reported, nothing written, generation unchanged.
    let again = store.permit_countries(&codes(&["CA"])).await.unwrap();
    assert_eq!(again.already, ["CA"]);
    assert!(again.added.is_empty());
    assert_eq!(again.generation, None);
    assert_eq!(store.generation().await.unwrap(), g0 + 1);

    let rows = store.countries().await.unwrap();
    let us = rows.iter().find(|c| c.code == "US").unwrap();
    assert!(us.permitted);
    assert_eq!(us.rules, 3);
    assert!(!rows.iter().find(|c| c.code == "DE").unwrap().permitted);

    let removed = store
        .unpermit_countries(&codes(&["ca", "DE"]))
        .await
        .unwrap();
    assert_eq!(
        removed.removed,
        [CountryRules {
            code: "CA".into(),
            name: "Name of CA".into(),
            rules: 1,
            identical: Vec::new(),
        }]
    );
    assert_eq!(removed.not_permitted, ["DE"]);
    assert_eq!(removed.generation, Some(g0 + 2));
    let permit = store.list_rules(RuleKind::Permit).await.unwrap();
    assert!(geolite(&permit, "CA").is_empty());
    assert_eq!(geolite(&permit, "US").len(), 3);
    assert_eq!(customs(&permit), [office]);
    assert_eq!(store.catalog_status().await.unwrap().permitted, ["US"]);

    // Nothing to remove: no write.
    let none = store.unpermit_countries(&codes(&["CA"])).await.unwrap();
    assert_eq!(none.generation, None);
    assert_eq!(none.not_permitted, ["CA"]);
    assert_eq!(store.generation().await.unwrap(), g0 + 2);
}

#[tokio::test]
async fn country_add_keeps_permit_rules_identical_to_catalog_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let partner = custom(&store, RuleKind::Permit, "9.0.0.0/8", "partner").await;
    // XA and XB share one range (a bad catalog, but it must not fail the insert).
    let cat = catalog(&[
        ("US", &["8.8.0.0/16", "9.0.0.0/8"]),
        ("XA", &["77.0.0.0/16"]),
        ("XB", &["77.0.0.0/16", "78.0.0.0/16"]),
    ]);
    store.import_catalog(&cat).await.unwrap();
    let report = store
        .permit_countries(&codes(&["US", "XA", "XB"]))
        .await
        .unwrap();
    let got: Vec<(&str, u64, usize)> = report
        .added
        .iter()
        .map(|c| (c.code.as_str(), c.rules, c.identical.len()))
        .collect();
    assert_eq!(got, [("US", 1, 1), ("XA", 1, 0), ("XB", 1, 0)]);
    assert_eq!(report.added[0].identical, std::slice::from_ref(&partner));
    let permit = store.list_rules(RuleKind::Permit).await.unwrap();
    assert_eq!(geolite(&permit, "US"), [r("8.8.0.0/16")]);
    assert_eq!(customs(&permit), std::slice::from_ref(&partner));
    // Added later, XB finds 77.0.0.0/16 taken by XA's stored rule.
    store.unpermit_countries(&codes(&["XB"])).await.unwrap();
    let again = store.permit_countries(&codes(&["XB"])).await.unwrap();
    assert_eq!(again.added[0].rules, 1);
    assert_eq!(again.added[0].identical.len(), 1);
    assert_eq!(again.added[0].identical[0].country, "XA");
    // Removing US leaves the custom rule.
    store.unpermit_countries(&codes(&["US"])).await.unwrap();
    let permit = store.list_rules(RuleKind::Permit).await.unwrap();
    assert_eq!(customs(&permit), [partner]);
}

#[tokio::test]
async fn unknown_country_codes_fail_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = seeded(dir.path()).await;
    let before = dump(&store).await;
    match store.permit_countries(&codes(&["DE", "xx", "QQ"])).await {
        Err(StoreError::UnknownCountries { codes }) => assert_eq!(codes, ["XX", "QQ"]),
        other => panic!("expected UnknownCountries, got {other:?}"),
    }
    assert_eq!(dump(&store).await, before, "DE was not permitted either");
    match store.unpermit_countries(&codes(&["US", "ZZ"])).await {
        Err(e @ StoreError::UnknownCountries { .. }) => {
            assert_eq!(
                e.to_string(),
                "unknown country code: ZZ (not in the catalog; see `ipcountry countries`)"
            );
        }
        other => panic!("expected UnknownCountries, got {other:?}"),
    }
    assert_eq!(dump(&store).await, before, "US is still permitted");
}

#[tokio::test]
async fn refresh_keeps_custom_and_deny_and_regenerates_permitted_countries_only() {
    let dir = tempfile::tempdir().unwrap();
    let (store, custom_rules, deny_rules) = seeded(dir.path()).await;
    let g0 = store.generation().await.unwrap();

    let report = store.refresh(&new_catalog(), false).await.unwrap();
    assert!(!report.dry_run);
    assert_eq!(report.summary.generation, g0 + 1);
    assert_eq!(store.generation().await.unwrap(), g0 + 1, "one bump");

    let permit = store.list_rules(RuleKind::Permit).await.unwrap();
    assert_eq!(
        customs(&permit),
        custom_rules,
        "custom rules untouched, same ids"
    );
    assert_eq!(
        store.list_rules(RuleKind::Deny).await.unwrap(),
        deny_rules,
        "deny table untouched"
    );
    // The new US ranges, except 12.0.0.0/8 which the custom "partner" rule already has.
    assert_eq!(
        geolite(&permit, "US"),
        [r("8.8.0.0/15"), r("9.0.0.0/8"), r("2001:db8::/32")]
    );
    assert_eq!(geolite(&permit, "CA"), [r("24.0.0.0/16")]);
    for not_permitted in ["DE", "NL", "FR"] {
        assert!(geolite(&permit, not_permitted).is_empty());
    }

    let p = policy(&store).await;
    assert_eq!(
        verdict(&p, "8.9.0.1").as_deref(),
        Some("geolite US 8.8.0.0/15"),
        "the grown range is permitted"
    );
    assert_eq!(
        verdict(&p, "12.1.2.3").as_deref(),
        Some("permit #1 12.0.0.0/8 partner"),
        "the identical custom rule decides"
    );
    assert_eq!(
        verdict(&p, "8.8.8.8").as_deref(),
        Some("deny #1 8.8.8.8/32 abuse")
    );
    assert_eq!(verdict(&p, "5.2.0.1"), None);
    assert_eq!(
        store.catalog_status().await.unwrap().permitted,
        ["CA", "US"]
    );
}

#[tokio::test]
async fn dry_run_reports_the_per_country_diff_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, custom_rules, _) = seeded(dir.path()).await;
    let [partner, quad9, straddles, _office] = <[Rule; 4]>::try_from(custom_rules).unwrap();
    let before = dump(&store).await;

    let dry = store.refresh(&new_catalog(), true).await.unwrap();
    assert_eq!(dump(&store).await, before, "a dry run writes nothing");
    assert!(dry.dry_run);
    assert_eq!(dry.summary.generation, before.generation);
    assert_eq!(dry.summary.geolite_before, 4);
    assert_eq!(dry.summary.geolite_after, 4);
    assert_eq!(dry.summary.identical_kept, 1);
    assert_eq!(dry.summary.regenerated, ["CA", "US"]);

    let row = |code: &str| dry.countries.iter().find(|c| c.code == code).unwrap();
    let counts = |c: &CountryDiff| {
        (
            c.permitted,
            c.ranges_before,
            c.ranges_after,
            c.ranges_added,
            c.ranges_removed,
            c.rules_before,
            c.rules_after,
        )
    };
    assert_eq!(
        dry.countries
            .iter()
            .map(|c| c.code.as_str())
            .collect::<Vec<_>>(),
        ["CA", "DE", "FR", "NL", "US"],
        "permitted countries and changed countries, in code order"
    );
    assert_eq!(counts(row("CA")), (true, 1, 1, 0, 0, 1, 1));
    assert_eq!(counts(row("DE")), (false, 1, 2, 1, 0, 0, 0));
    assert_eq!(counts(row("FR")), (false, 1, 0, 0, 1, 0, 0));
    assert_eq!(counts(row("NL")), (false, 0, 1, 1, 0, 0, 0));
    assert_eq!(counts(row("US")), (true, 3, 4, 2, 1, 3, 3));
    let us = row("US");
    assert_eq!(us.name, "Name of US");
    assert_eq!(us.identical, [partner]);
    assert_eq!(us.custom_inside, [quad9]);
    assert_eq!(us.custom_overlapping, [straddles]);
    assert!(row("CA").custom_inside.is_empty() && row("CA").identical.is_empty());

    // The real refresh reports the same, and then the data has changed.
    let real = store.refresh(&new_catalog(), false).await.unwrap();
    assert_eq!(real.countries, dry.countries);
    assert_eq!(
        ImportSummary {
            generation: dry.summary.generation + 1,
            ..dry.summary.clone()
        },
        real.summary
    );
    assert_ne!(dump(&store).await, before);
}

#[tokio::test]
async fn a_permitted_country_missing_from_the_new_catalog_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = seeded(dir.path()).await;
    let before = dump(&store).await;
    let without_ca = catalog(&[("US", &["8.8.0.0/16"]), ("DE", &["5.0.0.0/16"])]);
    for result in [
        store.refresh(&without_ca, false).await.map(|_| ()),
        store.refresh(&without_ca, true).await.map(|_| ()),
        store.import_catalog(&without_ca).await.map(|_| ()),
    ] {
        match result {
            Err(StoreError::MissingCountries { codes }) => assert_eq!(codes, ["CA"]),
            other => panic!("expected MissingCountries, got {other:?}"),
        }
    }
    assert_eq!(dump(&store).await, before);
}

#[tokio::test]
async fn import_with_permitted_countries_regenerates_like_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let (store, custom_rules, deny_rules) = seeded(dir.path()).await;
    let summary = store.import_catalog(&new_catalog()).await.unwrap();
    assert_eq!(summary.regenerated, ["CA", "US"]);
    assert_eq!((summary.geolite_before, summary.geolite_after), (4, 4));
    assert_eq!(summary.identical_kept, 1);
    let permit = store.list_rules(RuleKind::Permit).await.unwrap();
    assert_eq!(customs(&permit), custom_rules);
    assert_eq!(store.list_rules(RuleKind::Deny).await.unwrap(), deny_rules);
    assert_eq!(
        geolite(&permit, "US"),
        [r("8.8.0.0/15"), r("9.0.0.0/8"), r("2001:db8::/32")]
    );
}

#[tokio::test]
async fn bad_catalogs_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = seeded(dir.path()).await;
    let before = dump(&store).await;
    let empty = catalog(&[]);
    assert!(matches!(
        store.import_catalog(&empty).await,
        Err(StoreError::EmptyCatalog)
    ));
    let no_ranges = catalog(&[("US", &[]), ("CA", &[])]);
    assert!(matches!(
        store.refresh(&no_ranges, false).await,
        Err(StoreError::EmptyCatalog)
    ));
    let bad_code = catalog(&[
        ("US", &["8.8.0.0/16"]),
        ("CA", &["24.0.0.0/16"]),
        ("usa", &["1.0.0.0/8"]),
    ]);
    assert!(matches!(
        store.refresh(&bad_code, false).await,
        Err(StoreError::InvalidCatalog { .. })
    ));
    // Two ranges of one country with the same start violate the catalog's key.
    let dup = catalog(&[
        ("CA", &["24.0.0.0/16"]),
        ("US", &["8.8.0.0/16", "8.8.0.0/15"]),
    ]);
    assert!(matches!(
        store.refresh(&dup, false).await,
        Err(StoreError::Query { .. })
    ));
    assert_eq!(dump(&store).await, before);
}

/// A failure injected at the very end of a refresh (after the catalog was replaced, all
/// geolite rules deleted and CA's regenerated) leaves the old data intact.
#[tokio::test]
async fn a_refresh_failing_midway_leaves_the_old_data_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = seeded(dir.path()).await;
    sqlx::query(
        "CREATE TRIGGER inject BEFORE INSERT ON permit WHEN NEW.country_code = 'US' \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .execute(&store.pool)
    .await
    .unwrap();
    let before = dump(&store).await;
    let err = store.refresh(&new_catalog(), false).await.unwrap_err();
    assert!(
        format!("{:?}", err).contains("injected failure"),
        "unexpected error {err:?}"
    );
    assert_eq!(dump(&store).await, before);

    // Same with the failure while the catalog itself is written (last country).
    sqlx::query("DROP TRIGGER inject")
        .execute(&store.pool)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER inject_catalog BEFORE INSERT ON catalog WHEN NEW.country_code = 'US' \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .execute(&store.pool)
    .await
    .unwrap();
    assert!(store.import_catalog(&new_catalog()).await.is_err());
    assert_eq!(dump(&store).await, before);
}

/// Many ranges: several batches (and a partial one) per table, round-tripped exactly.
#[tokio::test]
async fn large_catalogs_are_written_in_batches_and_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let n4 = BATCH_ROWS * 3 + 17;
    let n6 = BATCH_ROWS + 1;
    let mut ranges: Vec<IpRange> = (0..n4 as u32)
        .map(|i| IpRange::v4(0x0100_0000 + i * 4, 0x0100_0000 + i * 4 + 1).unwrap())
        .collect();
    ranges.extend(
        (0..n6 as u128)
            .map(|i| IpRange::v6((0x2001 << 112) + i * 16, (0x2001 << 112) + i * 16 + 7).unwrap()),
    );
    let mut cat = catalog(&[("CA", &["24.0.0.0/16"])]);
    cat.countries.insert(
        "US".into(),
        CountryRanges {
            name: None,
            ranges: ranges.clone(),
        },
    );
    let summary = store.import_catalog(&cat).await.unwrap();
    assert_eq!(summary.v4_ranges, n4 as u64 + 1);
    assert_eq!(summary.v6_ranges, n6 as u64);
    let mut conn = store.pool.acquire().await.unwrap();
    assert_eq!(catalog_ranges_in(&mut conn, "US").await.unwrap(), ranges);
    drop(conn);
    let report = store.permit_countries(&codes(&["US"])).await.unwrap();
    assert_eq!(report.added[0].rules, (n4 + n6) as u64);
    assert_eq!(report.added[0].name, "");
    let permit = store.list_rules(RuleKind::Permit).await.unwrap();
    assert_eq!(geolite(&permit, "US"), ranges);
}

/// Readers (a running server's reloader) never see a half-done refresh: every snapshot
/// they load has either all the old geolite rules or all the new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_never_see_a_partial_permit_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let make = |step: u32, n: u32| {
        let ranges: Vec<String> = (0..n)
            .map(|i| {
                let start = 0x0100_0000 + i * step;
                IpRange::v4(start, start + 1).unwrap().to_string()
            })
            .collect();
        ranges
    };
    let old: Vec<String> = make(4, 3000);
    let new: Vec<String> = make(8, 2000);
    let old_refs: Vec<&str> = old.iter().map(String::as_str).collect();
    let new_refs: Vec<&str> = new.iter().map(String::as_str).collect();
    store
        .import_catalog(&catalog(&[("US", &old_refs)]))
        .await
        .unwrap();
    store.permit_countries(&codes(&["US"])).await.unwrap();
    custom(&store, RuleKind::Permit, "203.0.113.0/24", "office").await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let store = store.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let data = store.load_policy().await.unwrap();
                let geo = data
                    .rules
                    .iter()
                    .filter(|r| r.source == RuleSource::Geolite)
                    .count();
                let custom = data.rules.len() - geo;
                seen.insert((data.generation, geo, custom));
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let g = store.generation().await.unwrap();
    store
        .refresh(&catalog(&[("US", &new_refs)]), false)
        .await
        .unwrap();
    // Let the reader observe the new state too.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = reader.await.unwrap();
    let allowed: BTreeSet<_> = [(g, 3000, 1), (g + 1, 2000, 1)].into();
    assert!(seen.is_subset(&allowed), "a reader saw {seen:?}");
    assert!(seen.contains(&(g + 1, 2000, 1)), "{seen:?}");
}

#[test]
fn classify_splits_inside_and_overlapping() {
    let rule = |range: &str, source| Rule {
        id: 1,
        kind: RuleKind::Permit,
        range: r(range),
        country: CUSTOM_COUNTRY.into(),
        source,
        note: String::new(),
    };
    let ranges = [r("10.0.0.0/8"), r("12.0.0.0/8"), r("2001:db8::/32")];
    let others = [
        rule("10.1.0.0/16", RuleSource::Custom),             // inside
        rule("12.0.0.0/8", RuleSource::Custom),              // identical
        rule("11.255.255.0-12.0.0.255", RuleSource::Custom), // overlapping
        rule("9.0.0.0-13.0.0.0", RuleSource::Custom),        // covers two: overlapping
        rule("11.0.0.0/8", RuleSource::Custom),              // between: neither
        rule("2001:db8::1", RuleSource::Custom),             // inside, v6
        rule("10.2.0.0/16", RuleSource::Geolite),            // not a custom rule
        rule("0.0.0.10", RuleSource::Custom),                // v4 below everything
    ];
    let (inside, overlapping) = classify(&others, &ranges);
    let names = |v: &[Rule]| v.iter().map(|r| r.range.to_string()).collect::<Vec<_>>();
    assert_eq!(names(&inside), ["10.1.0.0/16", "2001:db8::1/128"]);
    assert_eq!(
        names(&overlapping),
        ["11.255.255.0-12.0.0.255", "9.0.0.0-13.0.0.0"]
    );
}

#[test]
fn values_sql_repeats_the_row() {
    assert_eq!(
        values_sql("INSERT INTO t VALUES ", "(?, ?)", 1),
        "INSERT INTO t VALUES (?, ?)"
    );
    assert_eq!(values_sql("X ", "(?)", 3), "X (?), (?), (?)");
}
