//! Issue 17's faults of the database under the real `ipcountry` binary: `kill -9` during a
//! refresh (on the suite's backend), and, for the SQLite file, a full disk, a read-only file
//! system and a corrupt file at start. Each must end in a clear error and lose nothing.
//!
//! The full disk and the read-only file system are real: a small tmpfs mounted in a mount
//! namespace of the test's own (`unshare -m`, root), so nothing outside the test sees it.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use ipcountry::store::testing;

use crate::backends::{ipcountry, run_ok};
use crate::harness;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `script` with `sh` in a mount namespace of its own, `$B` the binary and `$M` an empty
/// tmpfs of `size`; its output, or `None` (with a notice) where mount namespaces are not
/// available outside CI.
fn in_tmpfs(dir: &Path, size: &str, script: &str) -> Option<String> {
    let m = dir.join("mnt");
    std::fs::create_dir_all(&m).expect("mount point");
    let o = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "set -u\nmount -t tmpfs -o size={size} ipcountry-test \"$M\" || exit 99\n{script}"
        ))
        .env("M", &m)
        .env("B", env!("CARGO_BIN_EXE_ipcountry"))
        .env(
            "IPCOUNTRY_DB",
            format!("sqlite://{}/ipcountry.db", m.display()),
        )
        .env_remove("RUST_LOG")
        .output();
    let ran =
        matches!(&o, Ok(o) if o.status.code() != Some(99) && text(&o.stdout).starts_with("ran\n"));
    if !ran {
        assert!(
            !testing::in_ci(),
            "a mount namespace with a tmpfs is needed (root, util-linux's unshare): {o:?}"
        );
        eprintln!("NOTICE: no mount namespace here ({o:?}); skipped");
        return None;
    }
    let o = o.expect("ran");
    Some(text(&o.stdout) + &text(&o.stderr))
}

/// A full disk: `permit add` on a full tmpfs fails with a clear error, then a catalog import
/// runs out of space half-way; once space is back, the database holds exactly what it held
/// before both, and takes the same changes.
#[test]
fn a_full_disk_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mmdb = crate::backends::full_geolite();
    let Some(mmdb) = mmdb else { return };
    let Some(out) = in_tmpfs(
        dir.path(),
        "4m",
        &format!(
            r#"echo ran
"$B" permit add 203.0.113.0/24 --note before >/dev/null 2>&1 || echo "SETUP FAILED"
"$B" permit list > "$M/../before.txt"
dd if=/dev/zero of="$M/fill" bs=4k 2>/dev/null
"$B" permit add 198.51.100.0/24 --note lost; echo "add rc=$?"
rm "$M/fill"; dd if=/dev/zero of="$M/fill" bs=1k count=2500 2>/dev/null
"$B" import '{}'; echo "import rc=$?"
rm "$M/fill"
"$B" permit list > "$M/../after.txt"
"$B" countries > "$M/../countries.txt" 2>&1; echo "countries rc=$?"
"$B" permit add 198.51.100.0/24 --note later >/dev/null; echo "later rc=$?"
"#,
            mmdb.display()
        ),
    ) else {
        return;
    };
    assert!(
        !out.contains("SETUP FAILED") && !out.contains("panicked"),
        "{out}"
    );
    assert!(out.contains("add rc=2"), "{out}");
    assert!(
        out.contains("disk is full") || out.contains("is the disk full"),
        "no clear error for the full disk: {out}"
    );
    assert!(out.contains("import rc=2"), "{out}");
    assert!(out.contains("database or disk is full"), "{out}");
    let before = std::fs::read_to_string(dir.path().join("before.txt")).expect("before");
    let after = std::fs::read_to_string(dir.path().join("after.txt")).expect("after");
    assert_eq!(before, after, "the rules changed: {out}");
    assert!(before.contains("\"before\"") && !after.contains("lost"));
    // The import that ran out of space left no catalog behind.
    let countries = std::fs::read_to_string(dir.path().join("countries.txt")).expect("c");
    assert!(!countries.contains("United States"), "{countries}");
    assert!(out.contains("later rc=0"), "{out}");
}

/// A read-only file system: reading and writing fail with the reason and what to check, and
/// once it is writable again nothing was lost.
#[test]
fn a_read_only_file_system_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(out) = in_tmpfs(
        dir.path(),
        "4m",
        r#"echo ran
"$B" permit add 203.0.113.0/24 --note before >/dev/null 2>&1 || echo "SETUP FAILED"
"$B" permit list > "$M/../before.txt"
mount -o remount,ro "$M"
"$B" permit add 198.51.100.0/24 --note lost; echo "add rc=$?"
mount -o remount,rw "$M"
"$B" permit list > "$M/../after.txt"
"#,
    ) else {
        return;
    };
    assert!(
        !out.contains("SETUP FAILED") && !out.contains("panicked"),
        "{out}"
    );
    assert!(out.contains("add rc=2"), "{out}");
    assert!(
        out.contains("may not write") || out.contains("read-only"),
        "no clear error for the read-only file system: {out}"
    );
    let before = std::fs::read_to_string(dir.path().join("before.txt")).expect("before");
    let after = std::fs::read_to_string(dir.path().join("after.txt")).expect("after");
    assert_eq!(before, after);
}

/// A database file that is not one, and one cut short: `serve` refuses to start, exit 2, with
/// a message that names the file and says what to do; no panic.
#[test]
fn a_corrupt_database_file_at_start_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.db");
    let noise: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&garbage, noise).expect("write");
    let cut = dir.path().join("cut.db");
    let url = format!("sqlite://{}", cut.display());
    run_ok(&url, &["permit", "add", "203.0.113.0/24"]);
    let mmdb = harness::data_dir().join("maxmind-test-data/GeoLite2-Country-Test.mmdb");
    run_ok(&url, &["import", mmdb.to_str().expect("utf8")]);
    let len = std::fs::metadata(&cut).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate");
    for path in [&garbage, &cut] {
        let url = format!("sqlite://{}", path.display());
        let o = ipcountry(&url)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .output()
            .expect("serve");
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("restore it from a backup"), "{err}");
    }
}

/// What a refresh must leave whole: the permit and deny tables and the catalog's countries.
fn state(db: &str) -> String {
    let mut s = text(&run_ok(db, &["permit", "list"]).stdout);
    s += &text(&run_ok(db, &["deny", "list"]).stdout);
    s += &text(&run_ok(db, &["countries"]).stdout);
    s
}

/// A database with the MaxMind test catalog, US and DE permitted, a custom permit and a deny.
fn small_start(db: &str) {
    let test = harness::data_dir().join("maxmind-test-data/GeoLite2-Country-Test.mmdb");
    run_ok(db, &["import", test.to_str().expect("utf8")]);
    run_ok(db, &["country", "add", "US", "DE"]);
    run_ok(db, &["permit", "add", "203.0.113.0/24", "--note", "office"]);
    run_ok(db, &["deny", "add", "8.8.4.4"]);
}

/// `kill -9` of a refresh half-way through (the full GeoLite2 file replacing MaxMind's test
/// catalog, US and DE permitted: some 50,000 rules written in one transaction), on the suite's
/// backend: the tables are what they were before it, or, had it committed, what a finished
/// refresh makes; never a mixture. `check` then reads them, and a refresh runs to its end.
#[test]
fn kill_9_during_refresh_leaves_the_old_data_whole() {
    let Some(geolite) = crate::backends::full_geolite() else {
        return;
    };
    let geolite = geolite.to_str().expect("utf8");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = harness::db_url(dir.path());
    small_start(&db);
    let before = state(&db);

    // How long a whole refresh takes here, and what it makes, on a second database that
    // starts the same.
    let probe_dir = tempfile::tempdir().expect("tempdir");
    let probe = harness::db_url(probe_dir.path());
    small_start(&probe);
    let started = Instant::now();
    run_ok(&probe, &["refresh", geolite]);
    let whole = started.elapsed();
    let refreshed = state(&probe);
    assert_ne!(
        before, refreshed,
        "the catalogs must differ for this test to mean anything"
    );

    let mut killed_mid_way = 0;
    for fraction in [0.4, 0.7] {
        let mut child = ipcountry(&db)
            .args(["refresh", geolite])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("refresh");
        std::thread::sleep(whole.mul_f64(fraction));
        crate::binary::signal(child.id(), "KILL");
        let _ = child.wait();
        let after = state(&db);
        if after == before {
            killed_mid_way += 1;
        } else {
            // It committed before the signal: then it is a whole refresh.
            assert_eq!(
                after, refreshed,
                "a refresh killed at {fraction} left a mixture"
            );
            break;
        }
    }
    eprintln!("a whole refresh took {whole:?}; {killed_mid_way} killed mid-way left the old data");
    let o = ipcountry(&db)
        .args(["check", "203.0.113.7"])
        .output()
        .expect("check");
    assert!(
        text(&o.stdout).starts_with("permitted"),
        "{}",
        text(&o.stdout)
    );
    // And a refresh run to its end afterwards makes what it makes on the untouched copy.
    run_ok(&db, &["refresh", geolite]);
    assert_eq!(state(&db).lines().count(), refreshed.lines().count());
}
