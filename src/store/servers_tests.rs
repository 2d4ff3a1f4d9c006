//! Tests of the `server` table on the suite's backend (`IPCOUNTRY_TEST_DB`).

use super::*;
use crate::store::tests::open_in;

fn row(id: &str, heartbeat: i64) -> ServerRow {
    ServerRow {
        id: id.to_owned(),
        host: "pbx1".to_owned(),
        pid: 4242,
        listen: vec!["127.0.0.1:4573".to_owned(), "[::1]:4573".to_owned()],
        version: "0.1.0".to_owned(),
        started_at: heartbeat - 5,
        generation: 7,
        loaded_at: heartbeat - 5,
        heartbeat,
    }
}

#[tokio::test]
async fn register_heartbeat_list_deregister() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let generation = store.generation().await.unwrap();
    assert!(store.servers().await.unwrap().is_empty());

    let now = now_unix();
    let mut first = row("pbx1/4242/1", now);
    store.register_server(&first).await.unwrap();
    assert_eq!(store.servers().await.unwrap(), vec![first.clone()]);

    // The same row again: an UPDATE that changes nothing (0 rows on MariaDB) must not insert.
    store.register_server(&first).await.unwrap();
    assert_eq!(store.servers().await.unwrap(), vec![first.clone()]);

    // A heartbeat after a reload: new generation, load time and beat, still one row.
    first.generation = 9;
    first.loaded_at = now + 1;
    first.heartbeat = now + 2;
    store.register_server(&first).await.unwrap();
    let second = row("pbx2/17/1", now);
    store.register_server(&second).await.unwrap();
    assert_eq!(
        store.servers().await.unwrap(),
        vec![first.clone(), second.clone()],
        "one row per id, ordered by host, pid, id"
    );

    assert_eq!(
        store.generation().await.unwrap(),
        generation,
        "writing server rows never bumps the generation"
    );

    store.deregister_server(&first.id).await.unwrap();
    assert_eq!(store.servers().await.unwrap(), vec![second.clone()]);
    // Again: no error, nothing else deleted.
    store.deregister_server(&first.id).await.unwrap();
    assert_eq!(store.servers().await.unwrap(), vec![second]);
    store.close().await;
}

#[tokio::test]
async fn prune_deletes_only_rows_long_dead() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let now = now_unix();
    let day = i64::try_from(PRUNE_AFTER.as_secs()).unwrap();
    let dead = row("dead/1/1", now - 2 * day);
    let stale = row("stale/2/1", now - 120);
    let live = row("live/3/1", now);
    for r in [&dead, &stale, &live] {
        store.register_server(r).await.unwrap();
    }
    assert_eq!(store.prune_servers(PRUNE_AFTER).await.unwrap(), 1);
    let ids: Vec<String> = store
        .servers()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["live/3/1", "stale/2/1"]);
    assert_eq!(store.prune_servers(PRUNE_AFTER).await.unwrap(), 0);
    store.close().await;
}

#[tokio::test]
async fn injection_looking_text_is_stored_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let mut r = row("x'); DROP TABLE server; --", now_unix());
    r.host = "h\"ost'".to_owned();
    store.register_server(&r).await.unwrap();
    assert_eq!(store.servers().await.unwrap(), vec![r]);
    store.close().await;
}

#[test]
fn live_means_a_heartbeat_within_the_stale_limit() {
    let r = row("a/1/1", 1_000);
    let limit = i64::try_from(STALE_AFTER.as_secs()).unwrap();
    assert!(r.is_live(1_000));
    assert!(r.is_live(1_000 + limit));
    assert!(!r.is_live(1_000 + limit + 1));
    // A clock behind the server's: age zero, live.
    assert!(r.is_live(900));
    assert_eq!(r.heartbeat_age(900), Duration::ZERO);
    assert_eq!(r.loaded_age(1_000), Duration::from_secs(5));
}

#[test]
fn the_listen_column_round_trips() {
    let r = row("a/1/1", 1);
    assert_eq!(r.listen_column(), "127.0.0.1:4573,[::1]:4573");
    assert_eq!(ServerRow::split_listen(&r.listen_column()), r.listen);
    assert!(ServerRow::split_listen("").is_empty());
}
