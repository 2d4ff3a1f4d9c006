//! Entries with terms (issue 12), through the real `ipcountry serve` on the suite's backend:
//! a deny entry that expires stops matching within a second of its time although the server
//! polls only every 5 s; a shadow rule changes no verdict, and is logged and counted when it
//! would have; monitor mode lets a stranger through with the real verdict.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::backends::{run_ok, verdict, Server};
use crate::harness::{self, block, ok, play};
use crate::screening::{http_get, metric};

fn unix_now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// The `expires_at` of the first entry in a `list --json` output.
fn expires_at(json: &[u8]) -> i64 {
    let v: serde_json::Value = serde_json::from_slice(json).expect("json");
    v[0]["terms"]["expires_at"]
        .as_i64()
        .unwrap_or_else(|| panic!("no expires_at in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_deny_stops_matching_on_time_with_a_5s_poll() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = harness::db_url(dir.path());
    run_ok(&db, &["permit", "add", "203.0.113.0/24"]);
    let added = run_ok(
        &db,
        &[
            "deny",
            "add",
            "203.0.113.7",
            "--for",
            "3s",
            "--note",
            "scan",
        ],
    );
    assert!(
        String::from_utf8_lossy(&added.stdout).contains("[expires "),
        "{}",
        String::from_utf8_lossy(&added.stdout)
    );
    let at = expires_at(&run_ok(&db, &["--json", "deny", "list"]).stdout);
    let server = Server::start(&db, &["--poll", "5s"]);
    assert_eq!(verdict(server.addr, "203.0.113.7").await, "denied");
    // Ask every 50 ms: never permitted before its second, permitted within one after it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let flipped = loop {
        let asked = unix_now_f64();
        let got = verdict(server.addr, "203.0.113.7").await;
        match got.as_str() {
            "denied" => assert!(
                asked < at as f64 + 1.0,
                "still denied at {asked}, expiry {at}"
            ),
            "permitted" => break unix_now_f64(),
            other => panic!("unexpected verdict {other}"),
        }
        assert!(Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let late = flipped - at as f64;
    eprintln!("the deny entry stopped matching {late:.3}s after its expiry time");
    assert!(
        (0.0..=1.0).contains(&late),
        "permitted {late:.3}s after expiry"
    );
    // Listed as expired, not deleted; `purge` deletes it, once.
    let list = run_ok(&db, &["deny", "list"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("[expired "),
        "{}",
        String::from_utf8_lossy(&list.stdout)
    );
    let purged = run_ok(&db, &["purge"]);
    assert_eq!(
        String::from_utf8_lossy(&purged.stdout).trim(),
        "purged 1 expired: 0 permit, 1 deny, 0 allow-host"
    );
    let again = run_ok(&db, &["purge"]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "nothing has expired"
    );
    assert_eq!(
        String::from_utf8_lossy(&run_ok(&db, &["deny", "list"]).stdout).trim(),
        ""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_rule_is_logged_and_counted_and_decides_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = harness::db_url(dir.path());
    run_ok(
        &db,
        &["permit", "add", "203.0.113.0/24", "--note", "office"],
    );
    run_ok(
        &db,
        &["deny", "add", "203.0.113.8", "--shadow", "--note", "trial"],
    );
    run_ok(
        &db,
        &[
            "permit",
            "add",
            "198.51.100.0/24",
            "--shadow",
            "--note",
            "partner?",
        ],
    );
    let mut server = Server::start(&db, &["--metrics", "127.0.0.1:0"]);
    // Logged by the metrics task, maybe after "listening on".
    assert!(server.wait_log("metrics on http://", Duration::from_secs(10)));
    let metrics_addr: std::net::SocketAddr = server
        .lines()
        .iter()
        .find_map(|l| l.split("metrics on http://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .expect("metrics address in the log");
    // Permitted as before: the shadow deny decides nothing...
    let t = play(
        server.addr,
        &[block(&["203.0.113.8", "203.0.113.8"])],
        ok,
        Duration::from_secs(5),
    )
    .await;
    assert!(
        t.bytes()
            .contains("STRANGER=false,IPCOUNTRY_VERDICT=permitted,IPCOUNTRY_REASON=permit #1"),
        "{:?}",
        t.bytes()
    );
    // ... nor does the shadow permit: still a stranger.
    assert_eq!(verdict(server.addr, "198.51.100.9").await, "stranger");
    // A caller no shadow rule touches is not logged as one.
    assert_eq!(verdict(server.addr, "203.0.113.9").await, "permitted");
    assert!(server.wait_log("would_be=\"permitted\"", Duration::from_secs(5)));
    let shadow_lines: Vec<String> = server
        .lines()
        .iter()
        .filter(|l| l.contains("shadow rule matched"))
        .cloned()
        .collect();
    assert_eq!(shadow_lines.len(), 2, "{shadow_lines:#?}");
    assert!(
        shadow_lines[0].contains("source=203.0.113.8")
            && shadow_lines[0].contains("would_be=\"denied\"")
            && shadow_lines[0].contains("verdict=\"permitted\"")
            && shadow_lines[0].contains("rule=shadow deny #1 203.0.113.8/32 trial"),
        "{}",
        shadow_lines[0]
    );
    assert!(
        shadow_lines[1].contains("source=198.51.100.9")
            && shadow_lines[1].contains("verdict=\"stranger\""),
        "{}",
        shadow_lines[1]
    );
    let (status, text) = http_get(metrics_addr, "/metrics").await;
    assert_eq!(status, 200);
    let value = |name: &str| metric(&text, name).unwrap_or_else(|| panic!("{name} in\n{text}"));
    assert_eq!(
        value(r#"ipcountry_shadow_matches_total{would_be="denied",verdict="permitted"}"#),
        1.0
    );
    assert_eq!(
        value(r#"ipcountry_shadow_matches_total{would_be="permitted",verdict="stranger"}"#),
        1.0
    );
    // `check` says the same, and exits by the real verdict.
    let o = crate::backends::ipcountry(&db)
        .args(["check", "203.0.113.8"])
        .output()
        .expect("check");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "permitted (permit #1 203.0.113.0/24 office)\n  shadow: would be denied (shadow deny #1 203.0.113.8/32 trial); not applied\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_mode_lets_a_stranger_through_with_the_real_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = harness::db_url(dir.path());
    run_ok(&db, &["permit", "add", "203.0.113.0/24"]);
    run_ok(&db, &["deny", "add", "203.0.113.66"]);
    let mut server = Server::start(&db, &["--monitor"]);
    for (ip, real) in [("198.51.100.9", "stranger"), ("203.0.113.66", "denied")] {
        let t = play(server.addr, &[block(&[ip, ip])], ok, Duration::from_secs(5)).await;
        assert!(
            t.bytes()
                .contains(&format!("STRANGER=false,IPCOUNTRY_VERDICT={real},")),
            "{ip}: {:?}",
            t.bytes()
        );
    }
    assert!(server.wait_log("monitor=true", Duration::from_secs(5)));
    let lines = server.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("source=198.51.100.9") && l.contains("verdict=\"stranger\"")),
        "{lines:#?}"
    );
}
