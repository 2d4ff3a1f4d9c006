//! Country catalogs end to end: the `ipcountry` binary importing small hand-written range CSVs
//! (`start,end,country_code`) from a temporary directory, `countries`, `country add/rm`,
//! `refresh [--dry-run]`, `status`, `check`; and a running server answering calls while the
//! catalog is refreshed under it.
//!
//! The CLI tests need the catalog readers (`ipcountry::import::read`); the server test uses
//! the store directly with hand-built catalogs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipcountry::import::{Catalog, CountryRanges, Format};
use ipcountry::ranges::IpRange;

use crate::harness::{self, block, ok, play};

/// The "old" catalog: US 8.8.0.0/16 and 9.0.0.0/8 and 2001:db8::/32, CA 24.0.0.0/16, DE
/// 5.0.0.0/16, FR 62.0.0.0/16.
const OLD_CSV: &str = "\
8.8.0.0,8.8.255.255,US
9.0.0.0,9.255.255.255,US
24.0.0.0,24.0.255.255,CA
5.0.0.0,5.0.255.255,DE
62.0.0.0,62.0.255.255,FR
2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,US
";

/// The "new" catalog: US grows 8.8.0.0/16 to /15 (as two adjacent rows, which must be merged)
/// and gains 12.0.0.0/8; DE gains 5.2.0.0/24; FR is gone; NL is new; CA is unchanged.
const NEW_CSV: &str = "\
8.8.0.0,8.8.255.255,US
8.9.0.0,8.9.255.255,US
9.0.0.0,9.255.255.255,US
12.0.0.0,12.255.255.255,US
24.0.0.0,24.0.255.255,CA
5.0.0.0,5.0.255.255,DE
5.2.0.0,5.2.0.255,DE
145.0.0.0,145.0.255.255,NL
2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,US
";

struct Cli {
    db: String,
    dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        let dir = tempfile::tempdir().expect("tempdir");
        // A file in `dir` on SQLite, a database of its own on a server (IPCOUNTRY_TEST_DB).
        let db = ipcountry::store::testing::fresh_db_url(dir.path());
        Cli { db, dir }
    }

    /// Writes `text` to `name` in the test's directory and returns its path.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write csv");
        path
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ipcountry"))
            .env("IPCOUNTRY_DB", &self.db)
            .env_remove("RUST_LOG")
            .args(args)
            .output()
            .expect("run ipcountry")
    }

    /// Runs and asserts exit 0.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "ipcountry {args:?}\nstdout: {}\nstderr: {}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).expect("JSON output")
    }

    /// Everything the catalog commands may touch, for before/after comparisons.
    fn state(&self) -> (String, String, String, serde_json::Value) {
        let status = self.json(&["status"]);
        (
            self.ok(&["permit", "list"]),
            self.ok(&["deny", "list"]),
            self.ok(&["countries"]),
            status["generation"].clone(),
        )
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

#[test]
fn import_then_permit_countries_and_check_names_the_country() {
    let cli = Cli::new();
    let old = cli.file("old.csv", OLD_CSV);
    let out = cli.ok(&["import", path(&old)]);
    assert!(out.contains("range CSV"), "format named: {out}");
    assert!(out.contains("read 6 networks"), "{out}");
    assert!(out.contains("4 countries"), "{out}");

    // Importing changes no verdict.
    let o = cli.run(&["check", "8.8.8.8"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o).trim(), "stranger (no permit range for 8.8.8.8)");

    let countries = cli.ok(&["countries"]);
    let us = countries
        .lines()
        .find(|l| l.starts_with("US "))
        .expect("US listed");
    assert!(
        us.contains(" 2 ") && us.contains(" 1 ") && us.ends_with("no"),
        "{us}"
    );

    let out = cli.ok(&["country", "add", "us", "CA"]);
    assert!(out.contains("permitted US"), "{out}");
    assert!(out.contains("3 geolite rules"), "{out}");
    let o = cli.run(&["check", "8.8.8.8"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).trim(), "permitted (geolite US 8.8.0.0/16)");
    assert_eq!(
        stdout(&cli.run(&["check", "2001:db8::7"])).trim(),
        "permitted (geolite US 2001:db8::/32)"
    );
    assert_eq!(cli.run(&["check", "5.0.0.1"]).status.code(), Some(1));

    // Already permitted: reported, exit 0.
    let out = cli.ok(&["country", "add", "CA"]);
    assert!(out.contains("already permitted: CA"), "{out}");

    let rows = cli.json(&["countries"]);
    let rows = rows.as_array().expect("array");
    let us = rows.iter().find(|r| r["code"] == "US").expect("US");
    assert_eq!(us["permitted"], true);
    assert_eq!(us["v4_ranges"], 2);
    assert_eq!(us["v6_ranges"], 1);
    assert_eq!(us["rules"], 3);

    let out = cli.ok(&["country", "rm", "ca"]);
    assert!(
        out.contains("no longer permitted: CA (1 geolite rules removed)"),
        "{out}"
    );
    assert_eq!(cli.run(&["check", "24.0.0.1"]).status.code(), Some(1));
    assert_eq!(cli.run(&["check", "8.8.8.8"]).status.code(), Some(0));
}

#[test]
fn unknown_country_code_is_refused_and_changes_nothing() {
    let cli = Cli::new();
    let o = cli.run(&["country", "add", "US"]);
    assert_eq!(o.status.code(), Some(1), "no catalog yet");
    assert!(stderr(&o).contains("no country catalog"), "{}", stderr(&o));

    let old = cli.file("old.csv", OLD_CSV);
    cli.ok(&["import", path(&old)]);
    cli.ok(&["country", "add", "US"]);
    let before = cli.state();
    let o = cli.run(&["country", "add", "DE", "XX"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown country code: XX"),
        "{}",
        stderr(&o)
    );
    assert_eq!(cli.state(), before, "DE was not permitted either");
}

#[test]
fn refresh_keeps_custom_and_deny_entries_and_follows_the_new_catalog() {
    let cli = Cli::new();
    let old = cli.file("old.csv", OLD_CSV);
    let new = cli.file("new.csv", NEW_CSV);
    cli.ok(&["import", path(&old)]);
    cli.ok(&["country", "add", "US", "CA"]);
    cli.ok(&["permit", "add", "203.0.113.0/24", "--note", "office"]);
    cli.ok(&["permit", "add", "12.0.0.0/8", "--note", "partner"]);
    cli.ok(&["deny", "add", "8.8.8.8", "--note", "abuse"]);
    let custom_before: Vec<String> = cli
        .ok(&["permit", "list"])
        .lines()
        .filter(|l| l.contains("custom"))
        .map(str::to_owned)
        .collect();
    assert_eq!(custom_before.len(), 2);
    let deny_before = cli.ok(&["deny", "list"]);
    assert_eq!(cli.run(&["check", "8.9.0.1"]).status.code(), Some(1));

    let out = cli.ok(&["refresh", path(&new)]);
    assert!(out.contains("US"), "{out}");
    assert!(
        out.contains("kept permit #"),
        "identical custom rule reported: {out}"
    );

    let permit = cli.ok(&["permit", "list"]);
    let custom_after: Vec<String> = permit
        .lines()
        .filter(|l| l.contains("custom"))
        .map(str::to_owned)
        .collect();
    assert_eq!(custom_after, custom_before, "custom entries untouched");
    assert_eq!(
        cli.ok(&["deny", "list"]),
        deny_before,
        "deny table untouched"
    );
    assert_eq!(
        stdout(&cli.run(&["check", "8.9.0.1"])).trim(),
        "permitted (geolite US 8.8.0.0/15)",
        "adjacent rows merged into one rule"
    );
    assert_eq!(
        stdout(&cli.run(&["check", "8.8.8.8"])).trim(),
        "denied (deny #1 8.8.8.8/32 abuse)"
    );
    assert!(
        stdout(&cli.run(&["check", "12.1.2.3"])).contains("partner"),
        "the custom rule identical to a new US range decides"
    );
    assert!(!permit.contains(" DE "), "DE is not permitted: {permit}");
}

#[test]
fn dry_run_reports_the_diff_and_writes_nothing() {
    let cli = Cli::new();
    let old = cli.file("old.csv", OLD_CSV);
    let new = cli.file("new.csv", NEW_CSV);
    cli.ok(&["import", path(&old)]);
    cli.ok(&["country", "add", "US", "CA"]);
    cli.ok(&["permit", "add", "9.9.9.0/24", "--note", "quad9"]);
    let before = cli.state();

    let report = cli.json(&["refresh", "--dry-run", path(&new)]);
    assert_eq!(cli.state(), before, "a dry run writes nothing");
    assert_eq!(report["dry_run"], true);
    let by_code: BTreeMap<String, &serde_json::Value> = report["countries"]
        .as_array()
        .expect("countries")
        .iter()
        .map(|c| (c["code"].as_str().expect("code").to_owned(), c))
        .collect();
    assert_eq!(
        by_code.keys().map(String::as_str).collect::<Vec<_>>(),
        ["CA", "DE", "FR", "NL", "US"]
    );
    let us = by_code["US"];
    assert_eq!(us["ranges_before"], 3);
    assert_eq!(us["ranges_after"], 4);
    assert_eq!(us["ranges_added"], 2);
    assert_eq!(us["ranges_removed"], 1);
    assert_eq!(us["rules_before"], 3);
    assert_eq!(us["rules_after"], 4);
    assert_eq!(us["custom_inside"][0]["note"], "quad9");
    assert_eq!(by_code["FR"]["ranges_removed"], 1);
    assert_eq!(by_code["NL"]["ranges_added"], 1);
    assert_eq!(by_code["CA"]["ranges_added"], 0);

    let text = cli.ok(&["refresh", "--dry-run", path(&new)]);
    assert!(text.contains("dry run: nothing was changed"), "{text}");
    assert!(text.contains("(+2 -1)"), "{text}");
    assert_eq!(cli.state(), before);
}

#[test]
fn a_permitted_country_missing_from_the_new_catalog_is_refused() {
    let cli = Cli::new();
    let old = cli.file("old.csv", OLD_CSV);
    let new = cli.file("new.csv", NEW_CSV);
    cli.ok(&["import", path(&old)]);
    cli.ok(&["country", "add", "FR"]);
    let before = cli.state();
    let o = cli.run(&["refresh", path(&new)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("FR"), "{}", stderr(&o));
    assert_eq!(cli.state(), before);
}

#[test]
fn bad_rows_fail_cleanly_and_write_nothing() {
    let cli = Cli::new();
    let old = cli.file("old.csv", OLD_CSV);
    cli.ok(&["import", path(&old)]);
    cli.ok(&["country", "add", "US"]);
    let before = cli.state();
    let bad = cli.file(
        "bad.csv",
        "8.8.0.0,8.8.255.255,US\n9.0.0.0,not-an-ip,US\n24.0.0.0,24.0.255.255,CA\n",
    );
    for cmd in ["import", "refresh"] {
        let o = cli.run(&[cmd, path(&bad)]);
        assert_ne!(o.status.code(), Some(0), "{cmd} of a bad CSV must fail");
        let err = stderr(&o);
        assert!(
            err.contains("bad.csv") && err.contains('2'),
            "file and line number reported: {err}"
        );
        assert_eq!(cli.state(), before, "{cmd} wrote nothing");
    }
}

#[test]
fn status_shows_the_catalog_counts_generation_and_snapshot_memory() {
    let cli = Cli::new();
    let out = cli.ok(&["status"]);
    assert!(out.contains("none imported"), "{out}");
    let old = cli.file("old.csv", OLD_CSV);
    cli.ok(&["import", path(&old)]);
    cli.ok(&["country", "add", "US"]);
    let out = cli.ok(&["status"]);
    assert!(out.contains("old.csv"), "source file named: {out}");
    assert!(out.contains("4 countries, 5 IPv4 + 1 IPv6 ranges"), "{out}");
    assert!(out.contains("permitted:  US"), "{out}");
    assert!(out.contains("3 geolite"), "{out}");
    assert!(out.contains("bytes per rule"), "{out}");
    let json = cli.json(&["status"]);
    assert_eq!(json["generation"], 2);
    assert_eq!(json["catalog_v4"], 5);
    assert_eq!(json["permit_by_source"]["geolite"], 3);
    let snapshot = &json["snapshot"];
    // 3 geolite rules plus the compiled-in builtins.
    assert!(snapshot["rules"].as_u64().expect("rules") > 3);
    assert!(snapshot["segment_bytes"].as_u64().expect("bytes") > 0);
    assert!(snapshot["bytes_per_rule"].as_f64().expect("per rule") > 0.0);
}

/// A catalog with `n` two-address US ranges from 100.0.0.0 (step 4), plus `extra` US ranges
/// and DE 5.0.0.0/16.
fn big_catalog(n: u32, extra: &[&str]) -> Catalog {
    let mut us: Vec<IpRange> = (0..n)
        .map(|i| {
            let start = 0x6400_0000 + i * 4;
            IpRange::v4(start, start + 1).expect("range")
        })
        .collect();
    us.extend(extra.iter().map(|s| s.parse::<IpRange>().expect("range")));
    us.sort();
    let mut countries = BTreeMap::new();
    countries.insert(
        "US".to_owned(),
        CountryRanges {
            name: Some("United States".into()),
            ranges: us,
        },
    );
    countries.insert(
        "DE".to_owned(),
        CountryRanges {
            name: Some("Germany".into()),
            ranges: vec!["5.0.0.0/16".parse().expect("range")],
        },
    );
    Catalog {
        format: Format::RangeCsv,
        source: vec![PathBuf::from("hand-built")],
        built_at: None,
        database_type: None,
        networks: u64::from(n) + 1 + extra.len() as u64,
        countries,
    }
}

/// Calls a running server with `ip` as both the From host and the source; true if permitted.
async fn permitted(addr: std::net::SocketAddr, ip: &str) -> bool {
    let t = play(addr, &[block(&[ip, ip])], ok, Duration::from_secs(5)).await;
    let bytes = t.bytes();
    assert!(
        bytes.contains("STRANGER"),
        "the server answered no verdict: {bytes:?}"
    );
    bytes.contains("STRANGER=false,")
}

/// The acceptance test: calls keep arriving while the catalog is refreshed under a
/// running server, and not one of them, before, during or after, finds a stranger window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_answers_every_call_during_refresh() {
    let server = harness::start().await;
    let a = big_catalog(5000, &["8.8.0.0/16", "9.0.0.0/8"]);
    let b = big_catalog(4000, &["8.8.0.0/15", "12.0.0.0/8"]);
    server.store.import_catalog(&a).await.expect("import");
    server
        .store
        .permit_countries(&["US".to_owned()])
        .await
        .expect("country add");
    let mut reloaded = false;
    for _ in 0..100 {
        if permitted(server.addr, "8.8.8.8").await {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "the server never picked up country add");

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let caller = {
        let stop = stop.clone();
        let calls = calls.clone();
        let addr = server.addr;
        tokio::spawn(async move {
            let mut refused = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // In both catalogs, and a custom rule of the seed.
                for ip in ["8.8.8.8", "100.0.0.1", "203.0.113.7"] {
                    if !permitted(addr, ip).await {
                        refused.push(ip);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            }
            refused
        })
    };
    for catalog in [&b, &a, &b] {
        let report = server.store.refresh(catalog, false).await.expect("refresh");
        assert!(report.summary.geolite_after > 0);
        // Give the server (polling every 100 ms) time to reload onto the new snapshot.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let refused = caller.await.expect("caller task");
    assert!(
        refused.is_empty(),
        "calls found a stranger window: {refused:?}"
    );
    assert!(calls.load(Ordering::Relaxed) >= 9, "too few calls made");

    // After the last refresh (catalog b): 9.0.0.0/8 is gone, 12.0.0.0/8 and 8.9/16 are in.
    assert!(!permitted(server.addr, "9.1.1.1").await);
    assert!(permitted(server.addr, "12.1.1.1").await);
    assert!(permitted(server.addr, "8.9.1.1").await);
    assert!(
        !permitted(server.addr, "5.0.0.1").await,
        "DE never permitted"
    );
    server.shutdown.cancel();
}
