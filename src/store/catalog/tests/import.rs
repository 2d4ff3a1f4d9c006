//! Storing catalogs: what `import` writes, and what it refuses.

use super::*;
use crate::store::catalog::BATCH_ROWS;
use crate::store::tests::{catalog_ranges, table_names};

#[tokio::test]
async fn schema_has_the_catalog_tables() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let tables = table_names(&store).await;
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
    add_custom(&store, RuleKind::Permit, "203.0.113.0/24", "office").await;
    add_custom(&store, RuleKind::Deny, "203.0.113.66", "").await;
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
    assert_eq!(catalog_ranges(&store, "US").await, ranges);
    let report = store.permit_countries(&codes(&["US"])).await.unwrap();
    assert_eq!(report.added[0].rules, (n4 + n6) as u64);
    assert_eq!(report.added[0].name, "");
    let permit = store.list_rules(RuleKind::Permit).await.unwrap();
    assert_eq!(geolite(&permit, "US"), ranges);
}
