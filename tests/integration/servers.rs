//! "No silent second database" (issue 12): a change made where no server looks says so, naming
//! the database; a running `ipcountry serve` registers in its database, `status` lists it, and
//! a clean exit takes its row away again. On the suite's backend (`IPCOUNTRY_TEST_DB`), but for
//! the default relative SQLite path, which is SQLite by definition.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::backends::Server;

/// `ipcountry` with `db` (none: the default `sqlite://ipcountry.db`), run in `dir`, with an
/// empty configuration file (an installed `/etc/ipcountry/ipcountry.toml` must not count).
fn ipcountry(dir: &Path, db: Option<&str>, args: &[&str]) -> Output {
    let conf = dir.join("empty.toml");
    std::fs::write(&conf, "").expect("write the config");
    let mut c = Command::new(env!("CARGO_BIN_EXE_ipcountry"));
    c.current_dir(dir)
        .env_remove("IPCOUNTRY_DB")
        .env_remove("RUST_LOG")
        .env_remove("IPCOUNTRY_SNAPSHOT_CACHE")
        .arg("--config")
        .arg(&conf);
    if let Some(db) = db {
        c.env("IPCOUNTRY_DB", db);
    }
    c.args(args).output().expect("run ipcountry")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `ipcountry --json status`'s `servers`, and the database's generation.
fn servers(dir: &Path, db: &str) -> (Vec<serde_json::Value>, i64) {
    let o = ipcountry(dir, Some(db), &["--json", "status"]);
    assert!(o.status.success(), "status: {}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status JSON");
    let servers = v["servers"].as_array().expect("a servers list").clone();
    (servers, v["generation"].as_i64().expect("generation"))
}

#[test]
fn a_change_from_another_directory_names_the_database_and_says_no_server_uses_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = ipcountry(dir.path(), None, &["permit", "add", "203.0.113.0/24"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).starts_with("added permit: #1"), "{o:?}");
    let db = dir.path().join("ipcountry.db");
    assert!(
        db.exists(),
        "the default database is relative to the directory"
    );
    let want = format!("note: no server is using {}\n", db.display());
    assert!(
        db.is_absolute() && text(&o.stderr).contains(&want),
        "stderr {:?} lacks {want:?}",
        text(&o.stderr)
    );
    // Listing changes nothing: no note.
    let o = ipcountry(dir.path(), None, &["permit", "list"]);
    assert!(o.status.success());
    assert!(!text(&o.stderr).contains("note:"), "{o:?}");
    // A refused change (a duplicate, exit 1) changed nothing: no note either.
    let o = ipcountry(dir.path(), None, &["permit", "add", "203.0.113.0/24"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!text(&o.stderr).contains("note:"), "{o:?}");
    let o = ipcountry(dir.path(), None, &["status"]);
    assert!(
        text(&o.stdout).contains("servers:    no server is using this database"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn a_running_server_is_listed_current_and_its_row_goes_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = ipcountry::store::testing::fresh_db_url(dir.path());
    let o = ipcountry(dir.path(), Some(&db), &["deny", "add", "198.51.100.7"]);
    assert!(
        text(&o.stderr).contains("note: no server is using"),
        "{o:?}"
    );

    let mut server = Server::start(&db, &["--heartbeat", "200ms", "--poll", "200ms"]);
    let listen = server.addr.to_string();
    let o = ipcountry(dir.path(), Some(&db), &["permit", "add", "203.0.113.0/24"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        !text(&o.stderr).contains("note:"),
        "a server uses the database: {}",
        text(&o.stderr)
    );

    // The server reloads the change and says so at its next beat.
    let started = Instant::now();
    let row = loop {
        let (rows, generation) = servers(dir.path(), &db);
        if let [row] = rows.as_slice() {
            if row["generation"].as_i64() == Some(generation) {
                break row.clone();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no current server row: {rows:#?} (database at {generation})"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(row["listen"], serde_json::json!([listen]));
    assert_eq!(row["pid"].as_u64(), Some(u64::from(server.child.id())));
    assert_eq!(row["live"], true);
    assert_eq!(row["behind"], 0);
    let o = ipcountry(dir.path(), Some(&db), &["status"]);
    let out = text(&o.stdout);
    assert!(
        out.contains(&format!("listening on {listen}")) && out.contains("(current)"),
        "{out}"
    );

    // SIGTERM: a clean exit deletes the row.
    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < end, "serve did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{:#?}", server.lines());
    assert_eq!(servers(dir.path(), &db).0, Vec::<serde_json::Value>::new());
    let o = ipcountry(dir.path(), Some(&db), &["permit", "rm", "203.0.113.0/24"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("note: no server is using"),
        "{o:?}"
    );
}
