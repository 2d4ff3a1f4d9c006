//! Refresh, its dry run, import over permitted countries, and their atomicity.

use super::*;
use crate::store::tests::raw_execute;
use crate::store::Backend;
use std::collections::BTreeSet;

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
        [net("8.8.0.0/15"), net("9.0.0.0/8"), net("2001:db8::/32")]
    );
    assert_eq!(geolite(&permit, "CA"), [net("24.0.0.0/16")]);
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
        [net("8.8.0.0/15"), net("9.0.0.0/8"), net("2001:db8::/32")]
    );
}

/// Makes every insert of a US row into `table` (`permit` or `catalog`) fail, with a trigger
/// in the backend's own syntax.
async fn inject_failure(store: &Store, table: &str) {
    let statements = match store.backend() {
        Backend::Sqlite => vec![format!(
            "CREATE TRIGGER inject_{table} BEFORE INSERT ON {table} WHEN NEW.country_code = 'US' \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )],
        Backend::MySql => vec![format!(
            "CREATE TRIGGER inject_{table} BEFORE INSERT ON {table} FOR EACH ROW \
             BEGIN IF NEW.country_code = 'US' THEN \
             SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected failure'; END IF; END"
        )],
        Backend::Postgres => vec![
            "CREATE OR REPLACE FUNCTION inject_failure() RETURNS trigger LANGUAGE plpgsql AS \
             'BEGIN IF NEW.country_code = ''US'' THEN RAISE EXCEPTION ''injected failure''; \
             END IF; RETURN NEW; END'"
                .to_owned(),
            format!(
                "CREATE TRIGGER inject_{table} BEFORE INSERT ON {table} FOR EACH ROW \
                 EXECUTE FUNCTION inject_failure()"
            ),
        ],
    };
    for sql in statements {
        raw_execute(store, &sql, vec![]).await.unwrap();
    }
}

/// A failure injected at the very end of a refresh (after the catalog was replaced, all
/// geolite rules deleted and CA's regenerated) leaves the old data intact.
#[tokio::test]
async fn a_refresh_failing_midway_leaves_the_old_data_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = seeded(dir.path()).await;
    inject_failure(&store, "permit").await;
    let before = dump(&store).await;
    let err = store.refresh(&new_catalog(), false).await.unwrap_err();
    assert!(
        format!("{:?}", err).contains("injected failure"),
        "unexpected error {err:?}"
    );
    assert_eq!(dump(&store).await, before);

    // Same with the failure while the catalog itself is written (last country).
    let drop_trigger = match store.backend() {
        Backend::Postgres => "DROP TRIGGER inject_permit ON permit",
        Backend::Sqlite | Backend::MySql => "DROP TRIGGER inject_permit",
    };
    raw_execute(&store, drop_trigger, vec![]).await.unwrap();
    inject_failure(&store, "catalog").await;
    assert!(store.import_catalog(&new_catalog()).await.is_err());
    assert_eq!(dump(&store).await, before);
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
    add_custom(&store, RuleKind::Permit, "203.0.113.0/24", "office").await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let newest = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let reader = {
        let store = store.clone();
        let (stop, newest) = (stop.clone(), newest.clone());
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
                newest.fetch_max(data.generation, std::sync::atomic::Ordering::Relaxed);
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
    // Let the reader observe the new state too (a load that began before the commit still
    // reads the old snapshot; on a loaded machine one load can take a while).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while newest.load(std::sync::atomic::Ordering::Relaxed) <= g
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = reader.await.unwrap();
    let allowed: BTreeSet<_> = [(g, 3000, 1), (g + 1, 2000, 1)].into();
    assert!(seen.is_subset(&allowed), "a reader saw {seen:?}");
    assert!(seen.contains(&(g + 1, 2000, 1)), "{seen:?}");
}
