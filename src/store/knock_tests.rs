//! Tests of the knock users and the knock transaction on the suite's backend
//! (`IPCOUNTRY_TEST_DB`).

use super::*;
use crate::ranges::{RuleKind, RuleSource, Terms, CUSTOM_COUNTRY};
use crate::store::now_unix;
use crate::store::tests::{net, open_in};

fn alice(hash: &str) -> KnockUser {
    KnockUser {
        name: "alice".to_owned(),
        token_hash: hash.to_owned(),
        ttl_seconds: 3600,
        created_at: 100,
        rotated_at: 100,
    }
}

fn request<'a>(user: &'a str, hash: &'a str, ip: &str, cap: usize) -> KnockRequest<'a> {
    let now = now_unix();
    KnockRequest {
        user,
        token_hash: hash,
        range: net(ip),
        expires_at: now + 3600,
        cap,
        now,
    }
}

#[tokio::test]
async fn users_are_added_listed_rotated_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let generation = store.generation().await.unwrap();
    store.add_knock_user(&alice("h1")).await.unwrap();
    let err = store.add_knock_user(&alice("h2")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateUser { ref name } if name == "alice"),
        "{err}"
    );
    let mut bob = alice("hb");
    bob.name = "bob".to_owned();
    store.add_knock_user(&bob).await.unwrap();
    let names: Vec<String> = store
        .knock_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(store.knock_user("alice").await.unwrap(), Some(alice("h1")));
    assert_eq!(
        store.knock_user("Alice").await.unwrap(),
        None,
        "names are exact"
    );
    assert_eq!(
        store.generation().await.unwrap(),
        generation,
        "users are not policy"
    );

    let rotated = store.rotate_knock_token("alice", "h3", 200).await.unwrap();
    assert_eq!(
        (rotated.token_hash.as_str(), rotated.rotated_at),
        ("h3", 200)
    );
    assert_eq!(
        store.knock_user("alice").await.unwrap().unwrap().token_hash,
        "h3"
    );
    assert!(matches!(
        store.rotate_knock_token("carol", "x", 1).await,
        Err(StoreError::NotFound { .. })
    ));

    store
        .knock(request("alice", "h3", "198.51.100.7", 4))
        .await
        .unwrap();
    let (gone, entries) = store.remove_knock_user("alice").await.unwrap();
    assert_eq!(gone.name, "alice");
    assert_eq!(entries.len(), 1, "her entry goes with her");
    assert!(store.list_rules(RuleKind::Permit).await.unwrap().is_empty());
    assert!(matches!(
        store.remove_knock_user("alice").await,
        Err(StoreError::NotFound { .. })
    ));
    store.close().await;
}

#[tokio::test]
async fn a_knock_adds_an_expiring_entry_and_keeps_to_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    store.add_knock_user(&alice("h")).await.unwrap();
    let before = store.generation().await.unwrap();
    let Knocked::Add {
        rule,
        replaced,
        generation,
    } = store
        .knock(request("alice", "h", "198.51.100.1", 2))
        .await
        .unwrap()
    else {
        panic!("not added");
    };
    assert!(generation > before);
    assert_eq!(store.generation().await.unwrap(), generation);
    assert!(replaced.is_empty());
    assert_eq!(rule.note, "knock:alice");
    assert_eq!(rule.source, RuleSource::Custom);
    assert_eq!(rule.kind, RuleKind::Permit);
    assert_eq!(rule.range, net("198.51.100.1"));
    assert!(rule.terms.expires_at.is_some_and(|t| t > now_unix()));
    assert_eq!(
        store.list_rules(RuleKind::Permit).await.unwrap(),
        vec![rule.clone()]
    );

    // A second address fits; a third replaces the oldest (the first).
    store
        .knock(request("alice", "h", "198.51.100.2", 2))
        .await
        .unwrap();
    let Knocked::Add { replaced, .. } = store
        .knock(request("alice", "h", "198.51.100.3", 2))
        .await
        .unwrap()
    else {
        panic!("not added");
    };
    assert_eq!(replaced, vec![rule]);
    let ranges: Vec<String> = store
        .list_rules(RuleKind::Permit)
        .await
        .unwrap()
        .iter()
        .map(|r| r.range.to_string())
        .collect();
    assert_eq!(ranges, ["198.51.100.2/32", "198.51.100.3/32"]);

    // Knocking again from an address that has an entry renews it (one entry, new id).
    let Knocked::Add {
        rule: again,
        replaced,
        ..
    } = store
        .knock(request("alice", "h", "198.51.100.3", 2))
        .await
        .unwrap()
    else {
        panic!("not added");
    };
    assert_eq!(replaced.len(), 1);
    assert_eq!(replaced[0].range, again.range);
    assert_eq!(store.list_rules(RuleKind::Permit).await.unwrap().len(), 2);
    store.close().await;
}

#[tokio::test]
async fn a_knock_leaves_the_admin_s_entries_and_the_deny_table_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    store.add_knock_user(&alice("h")).await.unwrap();
    let office = store
        .add_rule(
            RuleKind::Permit,
            net("203.0.113.7"),
            CUSTOM_COUNTRY,
            RuleSource::Custom,
            "office",
            Terms::default(),
        )
        .await
        .unwrap();
    let deny = store
        .add_rule(
            RuleKind::Deny,
            net("198.51.100.66"),
            CUSTOM_COUNTRY,
            RuleSource::Custom,
            "",
            Terms::default(),
        )
        .await
        .unwrap();
    let generation = store.generation().await.unwrap();
    assert_eq!(
        store
            .knock(request("alice", "h", "203.0.113.7", 4))
            .await
            .unwrap(),
        Knocked::Keep(office.clone())
    );
    assert_eq!(
        store.generation().await.unwrap(),
        generation,
        "nothing changed"
    );
    // A token that changed since it was verified (rotated), or a user removed: nothing.
    assert_eq!(
        store
            .knock(request("alice", "old", "198.51.100.9", 4))
            .await
            .unwrap(),
        Knocked::Gone
    );
    assert_eq!(
        store
            .knock(request("carol", "h", "198.51.100.9", 4))
            .await
            .unwrap(),
        Knocked::Gone
    );
    assert_eq!(store.generation().await.unwrap(), generation);
    // The store adds a permit for a denied address if asked (the knock page does not ask),
    // and the deny rule stays as it was.
    store
        .knock(request("alice", "h", "198.51.100.66", 4))
        .await
        .unwrap();
    assert_eq!(store.list_rules(RuleKind::Deny).await.unwrap(), vec![deny]);
    assert!(store
        .list_rules(RuleKind::Permit)
        .await
        .unwrap()
        .contains(&office));
    store.close().await;
}
