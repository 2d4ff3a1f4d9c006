//! `country add` and `country rm`.

use super::*;

#[tokio::test]
async fn country_add_generates_geolite_rules_and_rm_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let office = add_custom(&store, RuleKind::Permit, "203.0.113.0/24", "office").await;
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
        [net("8.8.0.0/16"), net("9.0.0.0/8"), net("2001:db8::/32")]
    );
    assert_eq!(geolite(&permit, "CA"), [net("24.0.0.0/16")]);
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
    let partner = add_custom(&store, RuleKind::Permit, "9.0.0.0/8", "partner").await;
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
    assert_eq!(geolite(&permit, "US"), [net("8.8.0.0/16")]);
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
