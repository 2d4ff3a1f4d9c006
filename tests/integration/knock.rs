//! The knock page in process (issue 16): the real axum server over the harness's FastAGI
//! server and database, driven with raw HTTP/1.1 requests; every knock's effect is screened
//! with a FastAGI call. The harness's policy: permit 203.0.113.0/24, deny 203.0.113.66,
//! builtins on (loopback is permitted), so knocks come "through a proxy" from 198.51.100.x.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipcountry::knock::token::{Token, UserName};
use ipcountry::knock::{http, KnockSettings, Knocker, Parts};
use ipcountry::ranges::RuleKind;
use ipcountry::reload::Source;
use ipcountry::store::KnockUser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{block, ok, play, start_with, Options, TestServer};

/// The harness's server with the knock page beside it.
struct Knock {
    server: TestServer,
    addr: SocketAddr,
}

/// Settings with the loopback peer (the test) as the trusted proxy.
fn proxied() -> KnockSettings {
    KnockSettings {
        trusted_proxies: vec!["127.0.0.1/32".parse().expect("cidr")],
        ..KnockSettings::default()
    }
}

async fn start_knock(settings: KnockSettings) -> Knock {
    start_knock_alerting(settings, None).await
}

async fn start_knock_alerting(
    settings: KnockSettings,
    alerts: Option<ipcountry::alerts::Alerts>,
) -> Knock {
    // An hour between polls: only the knock's own reload request can make an entry live.
    let server = start_with(Options {
        poll: Duration::from_secs(3600),
        ..Options::default()
    })
    .await;
    let knocker = Knocker::new(
        Parts {
            store: Source::Open(server.store.clone()),
            policy: server.policy.clone(),
            reload: server.reload.clone(),
            metrics: server.metrics.clone(),
            alerts,
        },
        settings,
    )
    .await
    .expect("knocker");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(http::serve(
        listener,
        Arc::new(knocker),
        server.shutdown.clone(),
    ));
    Knock { server, addr }
}

/// Adds a user with a fresh token; gives the token as typed.
async fn add_user(knock: &Knock, name: &str, ttl_seconds: i64) -> String {
    let token = Token::generate(UserName::parse(name).expect("name"));
    knock
        .server
        .store
        .add_knock_user(&KnockUser {
            name: name.to_owned(),
            token_hash: token.hash().expect("hash"),
            ttl_seconds,
            created_at: 0,
            rotated_at: 0,
        })
        .await
        .expect("add user");
    token.reveal()
}

/// One HTTP/1.1 request (`Connection: close`); the status and the body.
async fn request(
    addr: SocketAddr,
    method: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} /knock HTTP/1.1\r\nHost: pbx.example.com\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(body.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// A knock with `token`, as forwarded by the trusted proxy for `client` over HTTPS.
async fn knock_from(knock: &Knock, client: &str, token: &str) -> (u16, String) {
    let body = format!("token={}", token.replace('.', "%2E"));
    request(
        knock.addr,
        "POST",
        &[("X-Forwarded-For", client), ("X-Forwarded-Proto", "https")],
        &body,
    )
    .await
}

/// The verdict a FastAGI call from `source` gets.
async fn verdict(knock: &Knock, source: &str) -> String {
    let t = play(
        knock.server.addr,
        &[block(&[source])],
        ok,
        Duration::from_secs(5),
    )
    .await;
    let bytes = t.bytes();
    let v = bytes
        .split("IPCOUNTRY_VERDICT=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no verdict in {bytes:?}"));
    v.to_owned()
}

async fn knock_entries(knock: &Knock) -> Vec<String> {
    knock
        .server
        .store
        .list_rules(RuleKind::Permit)
        .await
        .expect("list")
        .into_iter()
        .filter(|r| r.note.starts_with("knock:"))
        .map(|r| format!("{} {}", r.range, r.note))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_token_permits_the_address_at_once() {
    let k = start_knock(proxied()).await;
    let token = add_user(&k, "alice", 3600).await;
    assert_eq!(verdict(&k, "198.51.100.7").await, "stranger");
    let (status, page) = request(
        k.addr,
        "GET",
        &[
            ("X-Forwarded-For", "198.51.100.7"),
            ("X-Forwarded-Proto", "https"),
        ],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<b id=\"address\">198.51.100.7</b>"),
        "the address to be permitted is shown before: {page}"
    );
    assert!(page.contains("<form method=\"post\""));

    let (status, page) = knock_from(&k, "198.51.100.7", &token).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("198.51.100.7 is permitted until "), "{page}");
    assert!(page.contains("(1h)"), "{page}");
    // Live at once: the poll is an hour away; the knock asked for the reload.
    assert_eq!(verdict(&k, "198.51.100.7").await, "permitted");
    assert_eq!(knock_entries(&k).await, ["198.51.100.7/32 knock:alice"]);
    let metrics = k.server.metrics.render();
    assert!(
        metrics.contains("ipcountry_knocks_total{outcome=\"permitted\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_and_an_unknown_user_get_the_same_answer() {
    let k = start_knock(proxied()).await;
    let token = add_user(&k, "alice", 3600).await;
    let secret_len = token.len() - "alice.".len();
    let wrong = format!("alice.{}", "a".repeat(secret_len));
    let unknown = format!("carol.{}", &token["alice.".len()..]);
    let (s1, wrong_page) = knock_from(&k, "198.51.100.7", &wrong).await;
    let (s2, unknown_page) = knock_from(&k, "198.51.100.7", &unknown).await;
    let (s3, garbage_page) = knock_from(&k, "198.51.100.7", "nonsense").await;
    assert_eq!((s1, s2, s3), (403, 403, 403));
    assert_eq!(wrong_page, unknown_page, "no user enumeration");
    assert_eq!(wrong_page, garbage_page);
    assert!(wrong_page.contains("That token is not valid."));
    assert!(knock_entries(&k).await.is_empty());
    assert_eq!(verdict(&k, "198.51.100.7").await, "stranger");
    assert!(k
        .server
        .metrics
        .render()
        .contains("ipcountry_knocks_total{outcome=\"refused\"} 3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_token_is_refused_after_rotate() {
    let k = start_knock(proxied()).await;
    let old = add_user(&k, "alice", 3600).await;
    assert_eq!(knock_from(&k, "198.51.100.7", &old).await.0, 200);
    let new = Token::generate(UserName::parse("alice").expect("name"));
    k.server
        .store
        .rotate_knock_token("alice", &new.hash().expect("hash"), 1)
        .await
        .expect("rotate");
    let (status, page) = knock_from(&k, "198.51.100.8", &old).await;
    assert_eq!(status, 403, "replayed after rotate: {page}");
    assert_eq!(knock_from(&k, "198.51.100.8", &new.reveal()).await.0, 200);
    assert_eq!(
        knock_entries(&k).await,
        ["198.51.100.7/32 knock:alice", "198.51.100.8/32 knock:alice"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_are_limited_per_address_and_per_user() {
    let k = start_knock(KnockSettings {
        per_address: 2,
        per_user: 3,
        ..proxied()
    })
    .await;
    let token = add_user(&k, "alice", 3600).await;
    let wrong = format!("alice.{}", "b".repeat(token.len() - "alice.".len()));
    assert_eq!(knock_from(&k, "198.51.100.7", &wrong).await.0, 403);
    assert_eq!(knock_from(&k, "198.51.100.7", &wrong).await.0, 403);
    // The address is spent: even the right token waits.
    let (status, page) = knock_from(&k, "198.51.100.7", &token).await;
    assert_eq!(status, 429, "{page}");
    assert!(page.contains("Too many attempts"));
    // Another address, same user: the user's third attempt is the last one allowed.
    assert_eq!(knock_from(&k, "198.51.100.20", &wrong).await.0, 403);
    assert_eq!(knock_from(&k, "198.51.100.21", &token).await.0, 429);
    assert!(knock_entries(&k).await.is_empty());
    assert_eq!(verdict(&k, "198.51.100.7").await, "stranger");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_oldest_entry_is_replaced() {
    let k = start_knock(KnockSettings {
        cap: 2,
        ..proxied()
    })
    .await;
    let token = add_user(&k, "alice", 3600).await;
    for client in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        assert_eq!(knock_from(&k, client, &token).await.0, 200);
    }
    assert_eq!(
        knock_entries(&k).await,
        ["198.51.100.2/32 knock:alice", "198.51.100.3/32 knock:alice"]
    );
    assert_eq!(verdict(&k, "198.51.100.1").await, "stranger");
    assert_eq!(verdict(&k, "198.51.100.2").await, "permitted");
    assert_eq!(verdict(&k, "198.51.100.3").await, "permitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_honoured_only_from_a_trusted_proxy() {
    // No trusted proxy: the header is the client's own claim, and ignored.
    let k = start_knock(KnockSettings::default()).await;
    let token = add_user(&k, "alice", 3600).await;
    let (status, page) = knock_from(&k, "198.51.100.7", &token).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("127.0.0.1 is permitted"), "{page}");
    assert_eq!(knock_entries(&k).await, ["127.0.0.1/32 knock:alice"]);
    assert_eq!(verdict(&k, "198.51.100.7").await, "stranger");

    // A trusted proxy that does not say HTTPS, for a client off loopback: refused unread.
    let k = start_knock(proxied()).await;
    let token = add_user(&k, "alice", 3600).await;
    let body = format!("token={token}");
    let (status, page) = request(
        k.addr,
        "POST",
        &[("X-Forwarded-For", "198.51.100.7")],
        &body,
    )
    .await;
    assert_eq!(status, 403);
    assert!(page.contains("HTTPS required"), "{page}");
    assert!(knock_entries(&k).await.is_empty());
    // ... unless plain HTTP is allowed.
    let k = start_knock(KnockSettings {
        allow_http: true,
        ..proxied()
    })
    .await;
    let token = add_user(&k, "alice", 3600).await;
    let body = format!("token={token}");
    let forwarded = [("X-Forwarded-For", "198.51.100.7")];
    assert_eq!(request(k.addr, "POST", &forwarded, &body).await.0, 200);
    assert_eq!(verdict(&k, "198.51.100.7").await, "permitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_knock_from_a_denied_address_is_still_denied() {
    let k = start_knock(proxied()).await;
    let token = add_user(&k, "alice", 3600).await;
    assert_eq!(verdict(&k, "203.0.113.66").await, "denied");
    let (status, page) = knock_from(&k, "203.0.113.66", &token).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("blocked by this server"), "{page}");
    assert!(knock_entries(&k).await.is_empty(), "nothing added");
    assert_eq!(verdict(&k, "203.0.113.66").await, "denied");
    assert_eq!(
        k.server
            .store
            .list_rules(RuleKind::Deny)
            .await
            .expect("deny")
            .len(),
        1,
        "the deny rule is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_knock_goes_to_the_alert_hook() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = dir.path().join("events");
    let alerts = ipcountry::alerts::Alerts::start(
        ipcountry::alerts::AlertSettings {
            command: format!("cat >> '{}'", events.display()),
            dedup: Duration::from_secs(600),
            per_minute: 100,
            queue: 16,
        },
        tokio_util::sync::CancellationToken::new(),
    );
    let k = start_knock_alerting(proxied(), Some(alerts)).await;
    let token = add_user(&k, "alice", 3600).await;
    assert_eq!(knock_from(&k, "198.51.100.7", &token).await.0, 200);
    assert_eq!(knock_from(&k, "198.51.100.9", "alice.wrong").await.0, 403);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let lines: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON event a line"))
            .collect();
        if lines.len() >= 2 {
            break lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events so far: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by_source = |ip: &str| {
        lines
            .iter()
            .find(|e| e["source"] == ip)
            .unwrap_or_else(|| panic!("no event for {ip}: {lines:?}"))
    };
    let ok = by_source("198.51.100.7");
    assert_eq!(ok["verdict"], "knocked");
    assert_eq!(ok["callerid"], "alice");
    assert!(
        ok["rule"]
            .as_str()
            .is_some_and(|r| r.contains("knock:alice")),
        "{ok}"
    );
    let refused = by_source("198.51.100.9");
    assert_eq!(refused["verdict"], "knock-refused");
    assert_eq!(refused["reason"], "unknown user or wrong token");
    assert!(
        !refused.to_string().contains("alice.wrong"),
        "no token in the event"
    );
}
