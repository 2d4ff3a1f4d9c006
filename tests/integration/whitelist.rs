//! `whitelist-gen` against a MariaDB seeded with FreePBX-shaped tables (the shapes of FreePBX
//! core 16's `module.xml`, rows as FreePBX writes them): a hostname trunk, a PJSIP trunk with
//! `sip_server` and `match`, an IAX2 trunk, a disabled trunk, a dynamic and an IPv6 extension.
//! Run twice: the second run adds nothing. Then a trunk goes, and its rule is stale.

use std::process::{Command, Output};

use sqlx::{Connection, Executor};

use ipcountry::store::{testing, Backend};

const SCHEMA: &[&str] = &[
    "CREATE TABLE trunks (trunkid INT NOT NULL DEFAULT 0, name VARCHAR(50) NOT NULL DEFAULT '',
        tech VARCHAR(20) NOT NULL, outcid VARCHAR(255) NOT NULL DEFAULT '',
        keepcid VARCHAR(4) DEFAULT 'off', maxchans VARCHAR(6) DEFAULT '',
        failscript VARCHAR(255) NOT NULL DEFAULT '', dialoutprefix VARCHAR(255) NOT NULL DEFAULT '',
        channelid VARCHAR(190) NOT NULL DEFAULT '', usercontext VARCHAR(255),
        provider VARCHAR(40), disabled VARCHAR(4) DEFAULT 'off', `continue` VARCHAR(4) DEFAULT 'off',
        routedisplay VARCHAR(4) DEFAULT 'on', PRIMARY KEY (trunkid, tech, channelid))",
    "CREATE TABLE sip (id VARCHAR(20) NOT NULL DEFAULT '-1', keyword VARCHAR(30) NOT NULL DEFAULT '',
        data VARCHAR(8100) NOT NULL, flags INT NOT NULL DEFAULT 0, PRIMARY KEY (id, keyword))",
    "CREATE TABLE pjsip (id VARCHAR(20) NOT NULL DEFAULT '-1', keyword VARCHAR(30) NOT NULL DEFAULT '',
        data VARCHAR(8100) NOT NULL, flags INT NOT NULL DEFAULT 0, PRIMARY KEY (id, keyword))",
    "CREATE TABLE iax (id VARCHAR(20) NOT NULL DEFAULT '-1', keyword VARCHAR(30) NOT NULL DEFAULT '',
        data VARCHAR(255) NOT NULL, flags INT NOT NULL DEFAULT 0, PRIMARY KEY (id, keyword))",
    "CREATE TABLE devices (id VARCHAR(20) NOT NULL DEFAULT '', tech VARCHAR(10) NOT NULL DEFAULT '',
        dial VARCHAR(255) NOT NULL DEFAULT '', devicetype VARCHAR(5) NOT NULL DEFAULT '',
        user VARCHAR(50), description VARCHAR(50), emergency_cid VARCHAR(100),
        hint_override VARCHAR(100), KEY id (id), KEY tech (tech))",
];

const TRUNKS: &[(i64, &str, &str, &str, &str)] = &[
    (1, "sipgate", "sip", "sipgate", "off"),
    (2, "carrier", "pjsip", "carrier", "off"),
    (3, "iaxpeer", "iax", "iaxpeer", "off"),
    (4, "old", "sip", "old", "on"),
];

/// (table, id, keyword, data, flags), as FreePBX writes them (flags count the keyword order).
const ROWS: &[(&str, &str, &str, &str, i64)] = &[
    ("sip", "tr-peer-1", "account", "sipgate", 2),
    ("sip", "tr-peer-1", "host", "localhost", 3),
    ("sip", "tr-peer-1", "type", "peer", 4),
    ("sip", "tr-user-1", "host", "localhost", 2),
    ("sip", "tr-peer-4", "host", "192.0.2.99", 2),
    ("sip", "101", "host", "dynamic", 10),
    ("sip", "101", "sipdriver", "chan_sip", 11),
    ("sip", "102", "host", "2001:db8::102", 10),
    ("sip", "102", "sipdriver", "chan_sip", 11),
    ("sip", "103", "match", "198.51.100.0/255.255.255.0", 20),
    ("sip", "103", "sipdriver", "chan_pjsip", 21),
    ("pjsip", "2", "trunk_name", "carrier", 0),
    ("pjsip", "2", "sip_server", "203.0.113.50", 0),
    ("pjsip", "2", "sip_server_port", "5060", 0),
    ("pjsip", "2", "match", "203.0.113.48/29", 0),
    ("iax", "tr-peer-3", "host", "198.51.100.33", 2),
    ("iax", "tr-peer-3", "type", "friend", 3),
];

async fn seed(url: &str) {
    let mut conn = sqlx::MySqlConnection::connect(url).await.expect("connect");
    for s in SCHEMA {
        conn.execute(*s).await.expect("create");
    }
    for (id, name, tech, channel, disabled) in TRUNKS {
        sqlx::query(
            "INSERT INTO trunks (trunkid, name, tech, channelid, disabled) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(name)
        .bind(tech)
        .bind(channel)
        .bind(disabled)
        .execute(&mut conn)
        .await
        .expect("trunk");
    }
    for (table, id, keyword, data, flags) in ROWS {
        let sql = format!("INSERT INTO {table} (id, keyword, data, flags) VALUES (?, ?, ?, ?)");
        sqlx::query(&sql)
            .bind(id)
            .bind(keyword)
            .bind(data)
            .bind(flags)
            .execute(&mut conn)
            .await
            .expect("row");
    }
    for (id, tech) in [("101", "sip"), ("102", "sip"), ("103", "pjsip")] {
        sqlx::query("INSERT INTO devices (id, tech, dial, devicetype, user, description) VALUES (?, ?, ?, 'fixed', ?, ?)")
            .bind(id)
            .bind(tech)
            .bind(format!("{}/{id}", tech.to_uppercase()))
            .bind(id)
            .bind(format!("Phone {id}"))
            .execute(&mut conn)
            .await
            .expect("device");
    }
    conn.close().await.expect("close");
}

fn run(db: &str, freepbx: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipcountry"))
        .env("IPCOUNTRY_DB", db)
        .env("IPCOUNTRY_FREEPBX_DB", freepbx)
        .env_remove("SSH_CONNECTION")
        .env_remove("RUST_LOG")
        .arg("whitelist-gen")
        .args(args)
        .output()
        .expect("run ipcountry")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn permits(db: &str) -> Vec<(String, String)> {
    let o = Command::new(env!("CARGO_BIN_EXE_ipcountry"))
        .env("IPCOUNTRY_DB", db)
        .args(["--no-builtins", "permit", "list", "--json"])
        .output()
        .expect("permit list");
    let rules: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let mut v: Vec<(String, String)> = rules
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["note"].as_str().unwrap_or("").to_owned(),
                r["range"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn whitelist_gen_reads_freepbx_and_is_idempotent() {
    let Some(server) = std::env::var(testing::server_var(Backend::MySql))
        .ok()
        .filter(|s| !s.is_empty())
    else {
        assert!(
            !testing::in_ci(),
            "whitelist-gen needs IPCOUNTRY_TEST_MYSQL (CI)"
        );
        eprintln!("NOTICE: IPCOUNTRY_TEST_MYSQL not set: whitelist-gen test skipped");
        return;
    };
    let freepbx = testing::create_database(Backend::MySql, &server);
    seed(&freepbx).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = testing::fresh_db_url(dir.path());

    let first = run(&db, &freepbx, &[]);
    assert!(first.status.success(), "{}", text(&first));
    let want = [
        ("freepbx:extension:102", "2001:db8::102/128"),
        ("freepbx:extension:103", "198.51.100.0/24"),
        ("freepbx:trunk:carrier", "203.0.113.48/29"),
        ("freepbx:trunk:carrier", "203.0.113.50/32"),
        ("freepbx:trunk:iaxpeer", "198.51.100.33/32"),
        ("freepbx:trunk:sipgate", "127.0.0.1/32"),
    ];
    let got = permits(&db);
    for (note, range) in want {
        assert!(
            got.contains(&(note.to_owned(), range.to_owned())),
            "{note} {range} missing: {got:?}\n{}",
            text(&first)
        );
    }
    assert!(
        !got.iter().any(|(_, r)| r.starts_with("192.0.2.99")),
        "disabled trunk: {got:?}"
    );
    let out = text(&first);
    assert!(out.contains("added   #"), "{out}");
    assert!(out.contains("note: this server's address is") || !out.contains("--permit-self"));

    // Again: nothing added, everything kept.
    let second = run(&db, &freepbx, &[]);
    assert!(second.status.success(), "{}", text(&second));
    let out2 = text(&second);
    let added = got.len();
    assert!(
        out2.contains(&format!("added 0, kept {added}, stale 0")),
        "{out2}"
    );
    assert_eq!(permits(&db), got);

    // The IAX trunk goes: its rule is stale, then pruned.
    let mut conn = sqlx::MySqlConnection::connect(&freepbx)
        .await
        .expect("connect");
    conn.execute("DELETE FROM iax WHERE id = 'tr-peer-3'")
        .await
        .expect("delete");
    conn.close().await.expect("close");
    let third = text(&run(&db, &freepbx, &[]));
    assert!(third.contains("stale 1"), "{third}");
    assert!(
        third.contains("freepbx:trunk:iaxpeer (no trunk or extension names it"),
        "{third}"
    );
    let pruned = text(&run(&db, &freepbx, &["--prune"]));
    assert!(pruned.contains("removed #"), "{pruned}");
    assert!(!permits(&db)
        .iter()
        .any(|(n, _)| n == "freepbx:trunk:iaxpeer"));

    // The admin's SSH session, offered, then permitted (the server's own address likewise).
    let mut offered = Command::new(env!("CARGO_BIN_EXE_ipcountry"));
    offered
        .env("IPCOUNTRY_DB", &db)
        .env("IPCOUNTRY_FREEPBX_DB", &freepbx)
        .env("SSH_CONNECTION", "192.0.2.44 50022 192.0.2.1 22")
        .arg("whitelist-gen");
    let o = offered.output().expect("run");
    assert!(
        text(&o).contains(
            "note: your SSH session comes from 192.0.2.44; --permit-ssh-client permits it"
        ),
        "{}",
        text(&o)
    );
    let o = offered.arg("--permit-ssh-client").output().expect("run");
    assert!(o.status.success(), "{}", text(&o));
    assert!(permits(&db).contains(&(
        "whitelist-gen:ssh-session".to_owned(),
        "192.0.2.44/32".to_owned()
    )));

    // A wrong password: an error that does not show it.
    let host = server.rsplit_once('@').map_or(server.as_str(), |(_, h)| h);
    let bad = testing::with_database(&format!("mysql://nobody:Secr3tPw@{host}"), "asterisk");
    let o = run(&db, &bad, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!text(&o).contains("Secr3tPw"), "{}", text(&o));
}
