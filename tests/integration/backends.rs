//! Issue 13 on the suite's backend (`IPCOUNTRY_TEST_DB`), with real `ipcountry serve`
//! processes: two servers on one database, a database server stopped and restarted under a
//! stream of calls, and a refresh of a full country database while calls stream.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipcountry::ranges::{RuleKind, RuleSource};
use ipcountry::store::testing;
use ipcountry::store::Backend;

use crate::harness::{self, block, ok, play};

pub(crate) fn ipcountry(db: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ipcountry"));
    c.env("IPCOUNTRY_DB", db)
        .env_remove("RUST_LOG")
        .env_remove("IPCOUNTRY_SNAPSHOT_CACHE");
    c
}

pub(crate) fn run_ok(db: &str, args: &[&str]) -> Output {
    let o = ipcountry(db).args(args).output().expect("run ipcountry");
    assert!(
        o.status.success(),
        "ipcountry {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A `serve` process, killed if the test ends first, with its log lines on a channel.
pub(crate) struct Server {
    pub(crate) child: std::process::Child,
    pub(crate) addr: SocketAddr,
    log: Receiver<String>,
    /// Every log line read so far.
    seen: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Server {
    /// Starts `ipcountry serve` on 127.0.0.1:0 with `extra` flags and waits until it listens.
    pub(crate) fn start(db: &str, extra: &[&str]) -> Server {
        let mut child = ipcountry(db)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let addr = loop {
            let line = log
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("serve did not start listening: {seen:#?}"));
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split_whitespace().next().expect("addr");
                let addr = addr.parse().expect("socket addr");
                seen.push(line);
                break addr;
            }
            seen.push(line);
        };
        Server {
            child,
            addr,
            log,
            seen,
        }
    }

    /// Every log line so far.
    pub(crate) fn lines(&mut self) -> &[String] {
        self.seen.extend(self.log.try_iter());
        &self.seen
    }

    /// Waits up to `deadline` for a log line containing `needle`.
    pub(crate) fn wait_log(&mut self, needle: &str, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        loop {
            if self.lines().iter().any(|l| l.contains(needle)) {
                return true;
            }
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The verdict the server at `addr` gives a call from `ip` (source and From): `permitted`,
/// `denied`, `stranger`, or what went wrong.
pub(crate) async fn verdict(addr: SocketAddr, ip: &str) -> String {
    let t = play(addr, &[block(&[ip, ip])], ok, Duration::from_secs(5)).await;
    let bytes = t.bytes();
    for v in ["permitted", "denied", "stranger", "error"] {
        if bytes.contains(&format!("IPCOUNTRY_VERDICT={v},")) {
            return v.to_owned();
        }
    }
    format!("no verdict: {bytes:?}")
}

/// Waits up to `deadline` until `addr` gives `ip` the verdict `want`; the time it took.
async fn until_verdict(addr: SocketAddr, ip: &str, want: &str, deadline: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let got = verdict(addr, ip).await;
        if got == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < deadline,
            "{addr} still says {got} for {ip} after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two `ipcountry serve` processes on different ports share one database: a `deny add` made
/// with the CLI flips a caller on both, within the poll interval (MariaDB, SQLite), and on
/// PostgreSQL within a second with polling all but off (an hour): LISTEN/NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_follow_a_cli_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = harness::db_url(dir.path());
    let backend = Backend::of(&db).expect("backend");
    run_ok(
        &db,
        &["permit", "add", "203.0.113.0/24", "--note", "office"],
    );
    let (poll, within) = match backend {
        Backend::Postgres => ("3600s", Duration::from_secs(1)),
        Backend::Sqlite | Backend::MySql => ("500ms", Duration::from_secs(3)),
    };
    let a = Server::start(&db, &["--poll", poll]);
    let b = Server::start(&db, &["--poll", poll]);
    assert_ne!(a.addr, b.addr);
    for s in [&a, &b] {
        assert_eq!(verdict(s.addr, "203.0.113.7").await, "permitted");
    }
    let changed = Instant::now();
    run_ok(&db, &["deny", "add", "203.0.113.7", "--note", "fraud"]);
    let (ta, tb) = tokio::join!(
        until_verdict(a.addr, "203.0.113.7", "denied", within),
        until_verdict(b.addr, "203.0.113.7", "denied", within),
    );
    eprintln!(
        "{backend}: deny add reached both servers {:?} / {:?} after the CLI returned ({:?} in all)",
        ta,
        tb,
        changed.elapsed()
    );
    // And back, through either server's database: the CLI again.
    run_ok(&db, &["deny", "rm", "203.0.113.7"]);
    until_verdict(a.addr, "203.0.113.7", "permitted", within).await;
    until_verdict(b.addr, "203.0.113.7", "permitted", within).await;
}

/// The outage server for the suite's backend: its URL and the commands that stop and start it
/// (`.ci/db-servers env`). `None` on SQLite (no server process), or when not configured outside
/// CI (a notice is printed); a panic when not configured in CI.
fn outage_server(test: &str) -> Option<(Backend, String, String, String)> {
    let backend = testing::suite_backend();
    let prefix = match backend {
        Backend::Sqlite => {
            eprintln!("NOTICE: {test}: not applicable on SQLite (no database server process)");
            return None;
        }
        Backend::MySql => "IPCOUNTRY_TEST_OUTAGE_MYSQL",
        Backend::Postgres => "IPCOUNTRY_TEST_OUTAGE_POSTGRES",
    };
    let get = |suffix: &str| {
        std::env::var(format!("{prefix}{suffix}"))
            .ok()
            .filter(|v| !v.is_empty())
    };
    match (get(""), get("_STOP"), get("_START")) {
        (Some(url), Some(stop), Some(start)) => Some((backend, url, stop, start)),
        _ if testing::in_ci() => {
            panic!("{test}: needs {prefix}, {prefix}_STOP and {prefix}_START (CI)")
        }
        _ => {
            eprintln!("NOTICE: {test} skipped: {prefix}, {prefix}_STOP, {prefix}_START not set");
            None
        }
    }
}

fn shell(command: &str) {
    let st = Command::new("sh")
        .args(["-c", command])
        .status()
        .expect("run shell");
    assert!(st.success(), "{command} failed: {st:?}");
}

/// The database server is stopped (the real process) while calls stream: no call fails or
/// changes its verdict, the server logs the outage once and the return once, a server started
/// meanwhile serves its snapshot cache (and one without a cache refuses to start), `status`
/// shows the snapshot's age; after the restart a change is picked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_server_changes_no_verdict() {
    let Some((backend, server_url, stop, start)) =
        outage_server("a_stopped_database_server_changes_no_verdict")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = testing::create_database(backend, &server_url);
    run_ok(&db, &["permit", "add", "203.0.113.0/24"]);
    run_ok(&db, &["deny", "add", "203.0.113.66"]);
    let cache = dir.path().join("snapshot.json");
    let cache_arg = cache.to_str().expect("utf8 path");
    let flags = [
        "--poll",
        "200ms",
        "--db-timeout",
        "1s",
        "--snapshot-cache",
        cache_arg,
    ];
    let mut server = Server::start(&db, &flags);
    let addr = server.addr;
    let expected = [
        ("203.0.113.7", "permitted"),
        ("203.0.113.66", "denied"),
        ("198.51.100.9", "stranger"),
    ];
    for (ip, want) in expected {
        assert_eq!(verdict(addr, ip).await, want);
    }
    assert!(cache.exists(), "the snapshot cache was not written");

    let stop_calls = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let wrong = Arc::new(Mutex::new(Vec::new()));
    let caller = {
        let (stop_calls, calls, wrong) = (stop_calls.clone(), calls.clone(), wrong.clone());
        tokio::spawn(async move {
            while !stop_calls.load(Ordering::Relaxed) {
                for (ip, want) in expected {
                    let got = verdict(addr, ip).await;
                    if got != want {
                        wrong.lock().expect("lock").push(format!("{ip}: {got}"));
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::spawn_blocking({
        let stop = stop.clone();
        move || shell(&stop)
    })
    .await
    .expect("stop");
    assert!(
        server.wait_log("database unreachable", Duration::from_secs(10)),
        "the outage was not logged: {:#?}",
        server.lines()
    );
    // Several polls with the database down: still one line.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // A server started now has no database: without a cache it refuses, with one it serves it.
    let refused = ipcountry(&db)
        .args(["serve", "--listen", "127.0.0.1:0", "--db-timeout", "1s"])
        .output()
        .expect("serve");
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("does not start"), "{why}");
    assert!(
        !why.contains("ipcountry-test"),
        "the password was printed: {why}"
    );
    let cached_copy = dir.path().join("copy.json");
    std::fs::copy(&cache, &cached_copy).expect("copy the cache");
    let mut from_cache = Server::start(
        &db,
        &[
            "--db-timeout",
            "1s",
            "--snapshot-cache",
            cached_copy.to_str().expect("utf8"),
        ],
    );
    assert!(
        from_cache.wait_log("serving the snapshot cache", Duration::from_secs(5)),
        "{:#?}",
        from_cache.lines()
    );
    for (ip, want) in expected {
        assert_eq!(verdict(from_cache.addr, ip).await, want, "from the cache");
    }
    // `status` cannot reach the database, but says how old the server's snapshot is.
    let status = ipcountry(&db)
        .env("IPCOUNTRY_SNAPSHOT_CACHE", &cache)
        .env("IPCOUNTRY_DB_TIMEOUT", "1s")
        .arg("status")
        .output()
        .expect("status");
    assert_eq!(status.status.code(), Some(2));
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(
        said.contains("last confirmed against the database"),
        "{said}"
    );

    tokio::task::spawn_blocking({
        let start = start.clone();
        move || shell(&start)
    })
    .await
    .expect("start");
    assert!(
        server.wait_log("database reachable again", Duration::from_secs(20)),
        "the return was not logged: {:#?}",
        server.lines()
    );
    stop_calls.store(true, Ordering::Relaxed);
    caller.await.expect("caller");
    let wrong = wrong.lock().expect("lock").clone();
    assert!(wrong.is_empty(), "calls changed verdict: {wrong:?}");
    let made = calls.load(Ordering::Relaxed);
    assert!(made >= 30, "only {made} calls");
    let lines = server.lines().to_vec();
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count("database unreachable"), 1, "{lines:#?}");
    assert_eq!(count("database reachable again"), 1, "{lines:#?}");

    // After the restart a change is picked up, by both servers (the one from the cache has
    // opened its store since).
    run_ok(&db, &["deny", "add", "203.0.113.7"]);
    until_verdict(addr, "203.0.113.7", "denied", Duration::from_secs(10)).await;
    until_verdict(
        from_cache.addr,
        "203.0.113.7",
        "denied",
        Duration::from_secs(20),
    )
    .await;
    eprintln!("{backend}: {made} calls during the outage, none changed");
}

/// The full GeoLite2 country database (`../shared/data/full`), if there.
pub(crate) fn full_geolite() -> Option<PathBuf> {
    let path = harness::data_dir().join("full/GeoLite2-Country-2019-12-24.mmdb");
    if path.exists() {
        return Some(path);
    }
    assert!(!testing::in_ci(), "missing {} (CI)", path.display());
    eprintln!(
        "NOTICE: full GeoLite2 database not found at {}: skipped",
        path.display()
    );
    None
}

/// A refresh of the full GeoLite2 country database (US, CA and DE permitted: some 100,000
/// rules regenerated in one transaction) under a running server on the suite's backend, calls
/// streaming all along: not one finds a stranger window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_refresh_under_streaming_calls_has_no_stranger_window() {
    let Some(mmdb) = full_geolite() else {
        return;
    };
    let mmdb = mmdb.to_str().expect("utf8 path").to_owned();
    let server = harness::start().await;
    let db = server.db_url.clone();
    let started = Instant::now();
    let import = {
        let (db, mmdb) = (db.clone(), mmdb.clone());
        tokio::task::spawn_blocking(move || {
            run_ok(&db, &["import", &mmdb]);
            run_ok(&db, &["country", "add", "US", "CA", "DE"]);
        })
    };
    import.await.expect("import");
    let imported = started.elapsed();
    // One address from each permitted country's generated rules, and the seed's custom rule.
    let rules = server
        .store
        .list_rules(RuleKind::Permit)
        .await
        .expect("rules");
    let mut probes: Vec<String> = ["US", "CA", "DE"]
        .iter()
        .map(|code| {
            let rule = rules
                .iter()
                .find(|r| r.source == RuleSource::Geolite && r.country == *code)
                .expect("a rule of the country");
            rule.range
                .to_string()
                .split(['/', '-'])
                .next()
                .expect("start")
                .to_owned()
        })
        .collect();
    probes.push("203.0.113.7".to_owned());
    for ip in &probes {
        until_verdict(server.addr, ip, "permitted", Duration::from_secs(60)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let caller = {
        let (stop, calls, probes, addr) =
            (stop.clone(), calls.clone(), probes.clone(), server.addr);
        tokio::spawn(async move {
            let mut refused = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for ip in &probes {
                    let got = verdict(addr, ip).await;
                    if got != "permitted" {
                        refused.push(format!("{ip}: {got}"));
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            }
            refused
        })
    };
    let refreshed = Instant::now();
    let generation = server.store.generation().await.expect("generation");
    tokio::task::spawn_blocking({
        let (db, mmdb) = (db.clone(), mmdb.clone());
        move || run_ok(&db, &["refresh", &mmdb])
    })
    .await
    .expect("refresh");
    let refresh_took = refreshed.elapsed();
    // Until the server has reloaded onto the refreshed tables, and a little after.
    let end = Instant::now() + Duration::from_secs(60);
    while server.policy.load().generation() <= Some(generation) {
        assert!(Instant::now() < end, "the server never reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let refused = caller.await.expect("caller");
    assert!(
        refused.is_empty(),
        "calls found a stranger window: {refused:?}"
    );
    let made = calls.load(Ordering::Relaxed);
    assert!(made >= probes.len() * 3, "only {made} calls");
    eprintln!(
        "{}: import + country add {imported:?}, refresh {refresh_took:?}, {made} calls, none refused",
        server.store.backend()
    );
    server.shutdown.cancel();
}
