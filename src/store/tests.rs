//! Tests of the store against real databases: SQLite files in temporary directories, or a
//! database of its own per test on the MariaDB or PostgreSQL server `IPCOUNTRY_TEST_DB` picks
//! (see `store::testing`). Tests of what only SQLite has (files, `:memory:`, WAL) always run on
//! SQLite.

use std::path::Path;

use super::*;
use crate::ranges::{Family, CUSTOM_COUNTRY};

/// A range from a CIDR, `A-B` or a single address (also for the catalog tests).
pub(super) fn net(s: &str) -> IpRange {
    s.parse().unwrap()
}

/// The URL of a new, empty database on the suite's backend (a file in `dir` on SQLite).
pub(super) fn url_in(dir: &Path) -> String {
    testing::fresh_db_url(dir)
}

/// A store on a new database (also for the catalog tests).
pub(super) async fn open_in(dir: &Path) -> Store {
    Store::open(&url_in(dir)).await.unwrap()
}

/// A value bound by [`raw_execute`].
pub(super) enum RawArg {
    Int(i64),
    Bytes(Vec<u8>),
    Text(String),
}

/// Runs `sql` (with `?` placeholders) binding `args`, past every check of the store; gives
/// the rows affected.
pub(super) async fn raw_execute(
    store: &Store,
    sql: &str,
    args: Vec<RawArg>,
) -> Result<u64, sqlx::Error> {
    match &store.pool {
        Pool::Sqlite(p) => sqlite::rules::raw::execute(p, sql, args).await,
        Pool::MySql(p) => mysql::rules::raw::execute(p, sql, args).await,
        Pool::Postgres(p) => postgres::rules::raw::execute(p, sql, args).await,
    }
}

/// The schema's tables, sorted.
pub(super) async fn table_names(store: &Store) -> Vec<String> {
    match &store.pool {
        Pool::Sqlite(p) => sqlite::rules::raw::tables(p).await,
        Pool::MySql(p) => mysql::rules::raw::tables(p).await,
        Pool::Postgres(p) => postgres::rules::raw::tables(p).await,
    }
}

/// How many migrations the database records as applied.
async fn applied_migrations(store: &Store) -> i64 {
    match &store.pool {
        Pool::Sqlite(p) => sqlite::rules::raw::applied_migrations(p).await,
        Pool::MySql(p) => mysql::rules::raw::applied_migrations(p).await,
        Pool::Postgres(p) => postgres::rules::raw::applied_migrations(p).await,
    }
}

/// The whole catalog table, in key order.
pub(super) async fn catalog_rows(store: &Store) -> Vec<(String, i64, Vec<u8>, Vec<u8>)> {
    match &store.pool {
        Pool::Sqlite(p) => sqlite::rules::raw::catalog_rows(p).await,
        Pool::MySql(p) => mysql::rules::raw::catalog_rows(p).await,
        Pool::Postgres(p) => postgres::rules::raw::catalog_rows(p).await,
    }
}

/// One country's catalog ranges, in address order, decoded.
pub(super) async fn catalog_ranges(store: &Store, code: &str) -> Vec<IpRange> {
    catalog_rows(store)
        .await
        .into_iter()
        .filter(|(c, ..)| c == code)
        .map(|(_, family, start, end)| {
            let family = Family::from_number(family).unwrap();
            IpRange::from_bytes(family, &start, &end).unwrap()
        })
        .collect()
}

/// The migrations of the store's backend.
fn migrator(store: &Store) -> &'static sqlx::migrate::Migrator {
    match store.backend() {
        Backend::Sqlite => &sqlite::MIGRATOR,
        Backend::MySql => &mysql::MIGRATOR,
        Backend::Postgres => &postgres::MIGRATOR,
    }
}

/// Adds a custom rule (also for the catalog tests).
pub(super) async fn add_custom(store: &Store, kind: RuleKind, range: &str, note: &str) -> Rule {
    store
        .add_rule(
            kind,
            net(range),
            CUSTOM_COUNTRY,
            RuleSource::Custom,
            note,
            Terms::default(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn creates_the_schema_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let tables = table_names(&store).await;
    for t in ["allow_host", "deny", "generation", "permit"] {
        assert!(
            tables.iter().any(|n| n == t),
            "missing table {t} in {tables:?}"
        );
    }
    assert_eq!(store.generation().await.unwrap(), 0);
    assert!(store.list_rules(RuleKind::Permit).await.unwrap().is_empty());
    store.close().await;
}

#[tokio::test]
async fn a_sqlite_file_is_created_on_first_use_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    assert!(!path.exists());
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    assert!(path.exists());
    assert_eq!(store.backend(), Backend::Sqlite);
    let Pool::Sqlite(pool) = &store.pool else {
        unreachable!("a path is SQLite");
    };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    store.close().await;
}

#[tokio::test]
async fn sqlite_url_form_opens_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("url.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url).await.unwrap();
    add_custom(&store, RuleKind::Permit, "192.0.2.0/24", "").await;
    store.close().await;
    assert!(path.exists());
}

#[tokio::test]
async fn in_memory_database_works() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    add_custom(&store, RuleKind::Deny, "198.51.100.0/24", "spam").await;
    // Several concurrent users of the single connection still see one database.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.list_rules(RuleKind::Deny).await.unwrap().len()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 1);
    }
    assert_eq!(store.generation().await.unwrap(), 1);
}

#[tokio::test]
async fn add_list_remove_both_tables_and_families() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let p4 = add_custom(&store, RuleKind::Permit, "203.0.113.0/24", "office").await;
    let p6 = add_custom(&store, RuleKind::Permit, "2001:db8::/32", "v6 office").await;
    let d4 = store
        .add_rule(
            RuleKind::Deny,
            net("203.0.113.66"),
            "US",
            RuleSource::Geolite,
            "",
            Terms::default(),
        )
        .await
        .unwrap();
    let d6 = add_custom(&store, RuleKind::Deny, "2001:db8::66", "bad").await;

    assert_eq!(p4.kind, RuleKind::Permit);
    assert_eq!(p4.range, net("203.0.113.0/24"));
    assert_eq!(p4.country, "AA");
    assert_eq!(p4.note, "office");
    assert_eq!(d4.source, RuleSource::Geolite);
    assert_eq!(d4.country, "US");

    assert_eq!(
        store.list_rules(RuleKind::Permit).await.unwrap(),
        vec![p4.clone(), p6.clone()]
    );
    assert_eq!(
        store.list_rules(RuleKind::Deny).await.unwrap(),
        vec![d4.clone(), d6.clone()]
    );

    assert_eq!(
        store.find_rule(RuleKind::Permit, p6.range).await.unwrap(),
        Some(p6.clone())
    );
    assert_eq!(
        store.find_rule(RuleKind::Deny, p6.range).await.unwrap(),
        None
    );

    assert_eq!(
        store.remove_rule(RuleKind::Permit, p4.id).await.unwrap(),
        p4
    );
    assert_eq!(
        store
            .remove_rule_by_range(RuleKind::Deny, d6.range)
            .await
            .unwrap(),
        d6
    );
    assert_eq!(store.list_rules(RuleKind::Permit).await.unwrap(), vec![p6]);
    assert_eq!(store.list_rules(RuleKind::Deny).await.unwrap(), vec![d4]);
}

#[tokio::test]
async fn same_range_may_be_in_both_tables() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    add_custom(&store, RuleKind::Permit, "192.0.2.0/24", "").await;
    add_custom(&store, RuleKind::Deny, "192.0.2.0/24", "").await;
    assert_eq!(store.list_rules(RuleKind::Deny).await.unwrap().len(), 1);
}

#[tokio::test]
async fn list_is_in_address_order_across_all_sixteen_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    // Inserted out of order; some differ only in the first byte, some only in the last.
    let inputs = [
        "ffff::",
        "::1",
        "2001:db8::",
        "::100",
        "1::",
        "2001:db8::1",
        "::",
        "10.0.0.0/8",
        "9.255.255.255",
        "255.255.255.255",
        "0.0.0.0",
    ];
    for s in inputs {
        add_custom(&store, RuleKind::Permit, s, s).await;
    }
    // Pseudo-random IPv6 ranges, so every byte position gets exercised.
    let mut x: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
    for _ in 0..40 {
        x = x
            .wrapping_mul(0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645)
            .wrapping_add(1442695040888963407);
        let start = x >> (x as u32 % 120);
        let range = IpRange::v6(start, start.saturating_add(x & 0xff)).unwrap();
        if store
            .find_rule(RuleKind::Permit, range)
            .await
            .unwrap()
            .is_none()
        {
            store
                .add_rule(
                    RuleKind::Permit,
                    range,
                    "AA",
                    RuleSource::Custom,
                    "",
                    Terms::default(),
                )
                .await
                .unwrap();
        }
    }
    let listed: Vec<IpRange> = store
        .list_rules(RuleKind::Permit)
        .await
        .unwrap()
        .iter()
        .map(|r| r.range)
        .collect();
    let mut expected = listed.clone();
    expected.sort(); // IpRange orders V4 before V6, then by start, then by end.
    assert_eq!(listed, expected);
    assert!(listed.len() > inputs.len());
    let v6: Vec<IpRange> = listed
        .iter()
        .copied()
        .filter(|r| r.family() == Family::V6)
        .collect();
    let pos = |s: &str| v6.iter().position(|r| *r == net(s)).unwrap();
    assert!(pos("::") < pos("::1"));
    assert!(pos("::1") < pos("::100"));
    assert!(pos("::100") < pos("1::"));
    assert!(pos("1::") < pos("2001:db8::"));
    assert!(pos("2001:db8::") < pos("2001:db8::1"));
    assert!(pos("2001:db8::1") < pos("ffff::"));
}

#[tokio::test]
async fn duplicate_rule_names_the_existing_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    add_custom(&store, RuleKind::Permit, "198.51.100.0/24", "").await;
    let first = add_custom(&store, RuleKind::Permit, "203.0.113.0/24", "office").await;
    let generation = store.generation().await.unwrap();

    let err = store
        .add_rule(
            RuleKind::Permit,
            net("203.0.113.0/24"),
            "AA",
            RuleSource::Custom,
            "again",
            Terms::default(),
        )
        .await
        .unwrap_err();
    match &err {
        StoreError::Duplicate { existing } => assert_eq!(**existing, first),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!("already in permit: #{} 203.0.113.0/24 \"office\"", first.id)
    );
    // A failed change neither bumps the generation nor adds a row.
    assert_eq!(store.generation().await.unwrap(), generation);
    assert_eq!(store.list_rules(RuleKind::Permit).await.unwrap().len(), 2);
}

#[tokio::test]
async fn duplicate_allow_host() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let first = store
        .add_allow_host("*.example.com", "vendor", None)
        .await
        .unwrap();
    let err = store
        .add_allow_host("*.example.com", "", None)
        .await
        .unwrap_err();
    match &err {
        StoreError::DuplicateHost { existing } => assert_eq!(*existing, first),
        other => panic!("expected DuplicateHost, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "already in allow_host: #{} *.example.com \"vendor\"",
            first.id
        )
    );
    assert_eq!(store.list_allow_hosts().await.unwrap(), vec![first]);
}

#[tokio::test]
async fn removing_what_is_not_there_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    add_custom(&store, RuleKind::Permit, "192.0.2.0/24", "").await;
    let generation = store.generation().await.unwrap();

    // (the error, the table it names, and what it says was looked for, where that is checked)
    let cases = [
        (
            store.remove_rule(RuleKind::Deny, 1).await.unwrap_err(),
            "deny",
            Some("#1"),
        ),
        (
            store
                .remove_rule_by_range(RuleKind::Permit, net("192.0.2.0/25"))
                .await
                .unwrap_err(),
            "permit",
            Some("192.0.2.0/25"),
        ),
        (
            store.remove_allow_host("nobody.example").await.unwrap_err(),
            "allow_host",
            None,
        ),
        (
            store.remove_allow_host("#99").await.unwrap_err(),
            "allow_host",
            None,
        ),
    ];
    for (err, table, what) in &cases {
        assert!(
            matches!(err, StoreError::NotFound { table: t, what: w }
                if t == table && what.is_none_or(|what| w == what)),
            "{err:?}"
        );
    }
    assert_eq!(cases[0].0.to_string(), "not found in deny: #1");

    assert_eq!(store.generation().await.unwrap(), generation);
    assert_eq!(store.list_rules(RuleKind::Permit).await.unwrap().len(), 1);
}

#[tokio::test]
async fn allow_hosts_add_list_remove_by_pattern_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let a = store
        .add_allow_host("sip.example.net", "", None)
        .await
        .unwrap();
    let b = store
        .add_allow_host("*.example.com", "wildcard", None)
        .await
        .unwrap();
    let c = store
        .add_allow_host("pbx.example.org", "", None)
        .await
        .unwrap();
    assert!(a.created_at > 1_600_000_000);
    // Ordered by pattern.
    assert_eq!(
        store.list_allow_hosts().await.unwrap(),
        vec![b.clone(), c.clone(), a.clone()]
    );

    assert_eq!(store.remove_allow_host("*.example.com").await.unwrap(), b);
    assert_eq!(store.remove_allow_host(&a.id.to_string()).await.unwrap(), a);
    assert_eq!(
        store
            .remove_allow_host(&format!("#{}", c.id))
            .await
            .unwrap(),
        c
    );
    assert!(store.list_allow_hosts().await.unwrap().is_empty());
}

#[tokio::test]
async fn generation_counts_changes_not_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    assert_eq!(store.generation().await.unwrap(), 0);

    let rule = add_custom(&store, RuleKind::Permit, "192.0.2.0/24", "").await;
    assert_eq!(store.generation().await.unwrap(), 1);
    let deny = add_custom(&store, RuleKind::Deny, "2001:db8::/48", "").await;
    assert_eq!(store.generation().await.unwrap(), 2);
    store.add_allow_host("a.example", "", None).await.unwrap();
    assert_eq!(store.generation().await.unwrap(), 3);

    // Reads leave it alone.
    store.list_rules(RuleKind::Permit).await.unwrap();
    store.list_rules(RuleKind::Deny).await.unwrap();
    store.find_rule(RuleKind::Permit, rule.range).await.unwrap();
    store.list_allow_hosts().await.unwrap();
    assert_eq!(store.load_policy().await.unwrap().generation, 3);
    assert_eq!(store.generation().await.unwrap(), 3);

    store.remove_rule(RuleKind::Permit, rule.id).await.unwrap();
    assert_eq!(store.generation().await.unwrap(), 4);
    store
        .remove_rule_by_range(RuleKind::Deny, deny.range)
        .await
        .unwrap();
    assert_eq!(store.generation().await.unwrap(), 5);
    store.remove_allow_host("a.example").await.unwrap();
    assert_eq!(store.generation().await.unwrap(), 6);
    assert_eq!(store.bump_generation().await.unwrap(), 7);
    assert_eq!(store.generation().await.unwrap(), 7);
}

#[tokio::test]
async fn load_policy_returns_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let p1 = add_custom(&store, RuleKind::Permit, "2001:db8::/32", "").await;
    let p2 = add_custom(&store, RuleKind::Permit, "192.0.2.0/24", "").await;
    let d1 = add_custom(&store, RuleKind::Deny, "192.0.2.66", "bad").await;
    let h = store
        .add_allow_host("pbx.example.org", "", None)
        .await
        .unwrap();

    let policy = store.load_policy().await.unwrap();
    assert_eq!(policy.generation, 4);
    assert_eq!(policy.rules, vec![p2, p1, d1]);
    assert_eq!(policy.allow_hosts, vec![h]);
}

#[tokio::test]
async fn reopening_keeps_data_and_does_not_rerun_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let url = url_in(dir.path());
    let store = Store::open(&url).await.unwrap();
    let kept = add_custom(&store, RuleKind::Permit, "192.0.2.0/24", "kept").await;
    let gone = add_custom(&store, RuleKind::Permit, "198.51.100.0/24", "").await;
    store.remove_rule(RuleKind::Permit, gone.id).await.unwrap();
    store.add_allow_host("a.example", "", None).await.unwrap();
    store.close().await;

    let store = Store::open(&url).await.unwrap();
    assert_eq!(
        store.list_rules(RuleKind::Permit).await.unwrap(),
        vec![kept.clone()]
    );
    assert_eq!(store.list_allow_hosts().await.unwrap().len(), 1);
    assert_eq!(store.generation().await.unwrap(), 4);
    let applied = applied_migrations(&store).await;
    assert_eq!(applied, migrator(&store).iter().count() as i64);
    // Ids are never reused, even for the highest deleted row, across reopen.
    let next = add_custom(&store, RuleKind::Permit, "198.51.100.0/24", "").await;
    assert!(
        next.id > gone.id,
        "id {} reused (deleted was {})",
        next.id,
        gone.id
    );
}

#[tokio::test]
async fn two_stores_on_one_database_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let url = url_in(dir.path());
    let a = Store::open(&url).await.unwrap();
    let b = Store::open(&url).await.unwrap();

    let rule = add_custom(&a, RuleKind::Deny, "203.0.113.0/24", "from a").await;
    assert_eq!(
        b.list_rules(RuleKind::Deny).await.unwrap(),
        vec![rule.clone()]
    );
    assert_eq!(b.generation().await.unwrap(), 1);

    b.add_allow_host("b.example", "", None).await.unwrap();
    assert_eq!(a.list_allow_hosts().await.unwrap().len(), 1);
    assert_eq!(a.generation().await.unwrap(), 2);

    let err = b
        .add_rule(
            RuleKind::Deny,
            rule.range,
            "AA",
            RuleSource::Custom,
            "",
            Terms::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate { existing } if *existing == rule));

    b.remove_rule(RuleKind::Deny, rule.id).await.unwrap();
    assert!(a.list_rules(RuleKind::Deny).await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_writers_on_one_database_add_each_range_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = url_in(dir.path());
    let a = Store::open(&url).await.unwrap();
    let b = Store::open(&url).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        // Each range is attempted twice, once through each store.
        let range = IpRange::v4(0xc000_0200 + i / 2, 0xc000_0200 + i / 2).unwrap();
        tasks.push(tokio::spawn(async move {
            store
                .add_rule(
                    RuleKind::Permit,
                    range,
                    "AA",
                    RuleSource::Custom,
                    "",
                    Terms::default(),
                )
                .await
        }));
    }
    let (mut added, mut duplicates) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => added += 1,
            Err(StoreError::Duplicate { .. }) => duplicates += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!((added, duplicates), (8, 8));
    assert_eq!(a.list_rules(RuleKind::Permit).await.unwrap().len(), 8);
    assert_eq!(b.generation().await.unwrap(), 8);
}

#[tokio::test]
async fn unopenable_databases_are_connect_errors_naming_them_without_the_password() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let settings = PoolSettings {
        max_connections: 1,
        acquire_timeout: Duration::from_secs(2),
    };
    for (url, shown) in [
        ("/nonexistent-dir/x.db", "/nonexistent-dir/x.db"),
        (
            "mysql://ipc:s3cret@127.0.0.1:1/ipcountry",
            "mysql://ipc:***@127.0.0.1:1/ipcountry",
        ),
        (
            "mariadb://ipc:s3cret@127.0.0.1:1/ipcountry",
            "mariadb://ipc:***@127.0.0.1:1/ipcountry",
        ),
        (
            "postgres://ipc:s3cret@127.0.0.1:1/ipcountry",
            "postgres://ipc:***@127.0.0.1:1/ipcountry",
        ),
        ("oracle://ipc:s3cret@db/x", "oracle://ipc:***@db/x"),
    ] {
        let err = Store::open_with(url, &settings).await.unwrap_err();
        assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
        let chain = format!("{err} {err:?}");
        assert!(err.to_string().contains(shown), "{err}");
        assert!(!chain.contains("s3cret"), "{chain}");
    }
}

#[tokio::test]
async fn injection_looking_text_is_stored_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let url = url_in(dir.path());
    let store = Store::open(&url).await.unwrap();
    let evil = "'); DROP TABLE permit;--";
    let rule = add_custom(&store, RuleKind::Permit, "192.0.2.0/24", evil).await;
    let host = store.add_allow_host(evil, evil, None).await.unwrap();
    let store = {
        store.close().await;
        Store::open(&url).await.unwrap()
    };
    assert!(table_names(&store).await.iter().any(|t| t == "permit"));
    let listed = store.list_rules(RuleKind::Permit).await.unwrap();
    assert_eq!(listed, vec![rule]);
    assert_eq!(listed[0].note, evil);
    assert_eq!(store.list_allow_hosts().await.unwrap(), vec![host.clone()]);
    assert_eq!(store.remove_allow_host(evil).await.unwrap(), host);
}

#[tokio::test]
async fn corrupt_rows_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    add_custom(&store, RuleKind::Permit, "192.0.2.0/24", "").await;

    // An IPv4 row with 16-byte addresses.
    insert_deny(&store, 4, vec![0_u8; 16], vec![0_u8; 16], "custom")
        .await
        .unwrap();
    corrupt_deny(&store, 1).await;
    // The whole policy load fails rather than returning a partial policy.
    assert!(matches!(
        store.load_policy().await,
        Err(StoreError::Corrupt { .. })
    ));
    clear_deny(&store).await;

    // start > end.
    insert_deny(
        &store,
        4,
        vec![10_u8, 0, 0, 1],
        vec![10_u8, 0, 0, 0],
        "custom",
    )
    .await
    .unwrap();
    corrupt_deny(&store, 2).await;
    clear_deny(&store).await;

    // An unknown source.
    insert_deny(&store, 6, vec![0_u8; 16], vec![0_u8; 16], "martian")
        .await
        .unwrap();
    let err = corrupt_deny(&store, 3).await;
    assert!(matches!(
        err,
        StoreError::Corrupt {
            why: "unknown source",
            ..
        }
    ));
    assert_eq!(err.to_string(), "corrupt row #3 in deny: unknown source");

    // Text where a blob belongs.
    raw_execute(
        &store,
        "UPDATE deny SET source = 'custom', start_ip = 'abcd'",
        vec![],
    )
    .await
    .unwrap();
    corrupt_deny(&store, 3).await;

    // The family column refuses anything but 4 and 6.
    let bad = insert_deny(&store, 5, vec![0_u8; 4], vec![0_u8; 4], "custom").await;
    assert!(bad.is_err());
}

/// Inserts a `deny` row as given, past every check of the store.
async fn insert_deny(
    store: &Store,
    family: i64,
    start_ip: Vec<u8>,
    end_ip: Vec<u8>,
    source: &str,
) -> Result<(), sqlx::Error> {
    raw_execute(
        store,
        "INSERT INTO deny (family, start_ip, end_ip, country_code, source, note, created_at) \
         VALUES (?, ?, ?, 'AA', ?, '', 0)",
        vec![
            RawArg::Int(family),
            RawArg::Bytes(start_ip),
            RawArg::Bytes(end_ip),
            RawArg::Text(source.to_owned()),
        ],
    )
    .await
    .map(drop)
}

/// Lists the deny table, asserts that this fails on row `#id` as corrupt, and returns the error.
async fn corrupt_deny(store: &Store, id: i64) -> StoreError {
    let err = store.list_rules(RuleKind::Deny).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { table: "deny", id: got, .. } if got == id),
        "{err:?}"
    );
    err
}

async fn clear_deny(store: &Store) {
    raw_execute(store, "DELETE FROM deny", vec![])
        .await
        .unwrap();
}

#[tokio::test]
async fn unique_constraint_is_recognised_as_a_duplicate() {
    // The path taken when a concurrent writer wins the race between our SELECT and INSERT.
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let rule = add_custom(&store, RuleKind::Permit, "192.0.2.0/24", "").await;
    let raw = raw_execute(
        &store,
        "INSERT INTO permit (family, start_ip, end_ip, country_code, source, note, created_at) \
         VALUES (?, ?, ?, 'AA', 'custom', '', 0)",
        vec![
            RawArg::Int(4),
            RawArg::Bytes(rule.range.start_bytes()),
            RawArg::Bytes(rule.range.end_bytes()),
        ],
    )
    .await
    .unwrap_err();
    assert!(is_unique_violation(&raw), "{raw:?}");
    let other = raw_execute(&store, "SELECT * FROM no_such_table", vec![])
        .await
        .unwrap_err();
    assert!(!is_unique_violation(&other));
}

#[test]
fn the_url_picks_the_backend() {
    for (url, backend) in [
        ("sqlite://ipcountry.db", Some(Backend::Sqlite)),
        ("sqlite::memory:", Some(Backend::Sqlite)),
        ("./ipcountry.db", Some(Backend::Sqlite)),
        ("/var/lib/ipcountry/ipcountry.db", Some(Backend::Sqlite)),
        ("mysql://u:p@h/db", Some(Backend::MySql)),
        ("mariadb://u:p@h/db", Some(Backend::MySql)),
        ("MySQL://u:p@h/db", Some(Backend::MySql)),
        ("postgres://u:p@h/db", Some(Backend::Postgres)),
        ("postgresql://u:p@h/db", Some(Backend::Postgres)),
        ("oracle://u:p@h/db", None),
        ("", None),
    ] {
        assert_eq!(Backend::of(url).ok(), backend, "{url}");
    }
}

#[tokio::test]
async fn terms_are_stored_and_purge_removes_only_what_expired() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let now = now_unix();
    let terms = |expires_at, shadow| Terms { expires_at, shadow };
    let expired = store
        .add_rule(
            RuleKind::Deny,
            net("198.51.100.7"),
            CUSTOM_COUNTRY,
            RuleSource::Custom,
            "scanner",
            terms(Some(now - 10), false),
        )
        .await
        .unwrap();
    let later = store
        .add_rule(
            RuleKind::Deny,
            net("198.51.100.8"),
            CUSTOM_COUNTRY,
            RuleSource::Custom,
            "",
            terms(Some(now + 3600), true),
        )
        .await
        .unwrap();
    let shadow_permit = store
        .add_rule(
            RuleKind::Permit,
            net("203.0.113.0/24"),
            CUSTOM_COUNTRY,
            RuleSource::Custom,
            "",
            terms(None, true),
        )
        .await
        .unwrap();
    let old_host = store
        .add_allow_host("old.example.com", "", Some(now - 1))
        .await
        .unwrap();
    store
        .add_allow_host("new.example.com", "", Some(now + 60))
        .await
        .unwrap();
    // What was written is what is read, by every reader.
    assert_eq!(
        store.list_rules(RuleKind::Deny).await.unwrap(),
        vec![expired.clone(), later.clone()]
    );
    let data = store.load_policy().await.unwrap();
    assert!(data.rules.contains(&shadow_permit) && data.rules.contains(&later));
    assert_eq!(data.allow_hosts[1], old_host);
    assert_eq!(data.allow_hosts[1].expires_at, Some(now - 1));
    // An expired entry in the way of a new one says so.
    let err = store
        .add_rule(
            RuleKind::Deny,
            net("198.51.100.7"),
            CUSTOM_COUNTRY,
            RuleSource::Custom,
            "",
            Terms::default(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("(expired; `ipcountry purge` removes it)"),
        "{err}"
    );
    // Purge: the expired rule and host go, in one new generation; the rest stays.
    let before = store.generation().await.unwrap();
    let purged = store.purge_expired(now_unix()).await.unwrap();
    assert_eq!(
        purged,
        Purged {
            permit: 0,
            deny: 1,
            allow_hosts: 1
        }
    );
    assert_eq!(store.generation().await.unwrap(), before + 1);
    assert_eq!(store.list_rules(RuleKind::Deny).await.unwrap(), vec![later]);
    let hosts = store.list_allow_hosts().await.unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].pattern, "new.example.com");
    // Nothing left to purge: no new generation, so no server reloads.
    assert_eq!(store.purge_expired(now_unix()).await.unwrap().total(), 0);
    assert_eq!(store.generation().await.unwrap(), before + 1);
}

#[tokio::test]
async fn closing_the_store_does_not_wait_for_its_change_listener() {
    let dir = tempfile::tempdir().unwrap();
    let url = url_in(dir.path());
    let store = Store::open(&url).await.unwrap();
    let mut changes = store.listen().await.unwrap();
    assert_eq!(
        changes.is_some(),
        store.backend() == Backend::Postgres,
        "only PostgreSQL announces changes"
    );
    let wait = std::time::Duration::from_secs(10);
    assert!(
        tokio::time::timeout(wait, store.close()).await.is_ok(),
        "Store::close waited for the change listener's connection"
    );
    // The listener still hears a change committed through another store.
    if let Some(changes) = changes.as_mut() {
        let other = Store::open(&url).await.unwrap();
        other.bump_generation().await.unwrap();
        match tokio::time::timeout(wait, changes.next()).await {
            Ok(Ok(Change::Announced)) => {}
            other => panic!("expected an announcement, got {other:?}"),
        }
        other.close().await;
    }
}
