//! `ipcountry audit` and `watch` end to end: the real binary against the scripted AMI server
//! (`ipcountry::ami::scripted`), which replays the recorded Asterisk 20 sessions of
//! `../shared/fixtures/asterisk-ami/` byte for byte (or, for the contact whose address moves,
//! the recorded bytes with its address replaced); and `--from-cli` on the recorded CLI text.

use std::path::Path;
use std::process::Output;
use std::time::Instant;

use ipcountry::ami::scripted::{fixture, fixtures, login_reply, Running, ScriptedAmi};
use tokio::io::AsyncWriteExt;

/// A fresh database for one test.
struct Db {
    url: String,
    dir: tempfile::TempDir,
}

impl Db {
    fn new() -> Db {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = ipcountry::store::testing::fresh_db_url(dir.path());
        Db { url, dir }
    }

    async fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ipcountry"));
        cmd.env("IPCOUNTRY_DB", &self.url)
            .env_remove("RUST_LOG")
            .env_remove("IPCOUNTRY_AMI")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ipcountry");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(bytes) = stdin {
            input.write_all(bytes).await.expect("write stdin");
        }
        drop(input);
        child.wait_with_output().await.expect("run ipcountry")
    }

    async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args, None).await;
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(o: &Output) -> Vec<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&o.stdout)))
        .as_array()
        .expect("an array")
        .clone()
}

/// Run 1 of the captures: PJSIP contacts (`contacts` as given), outbound registrations,
/// chan_sip peers, no chan_iax2.
pub(crate) fn run1_with(contacts: Vec<u8>) -> ScriptedAmi {
    ScriptedAmi::asterisk()
        .on("ipc-contacts-1", contacts)
        .on(
            "ipc-regout-1",
            fixture("pjsipshowregistrationsoutbound.response.raw"),
        )
        .on("ipc-sippeers-1", fixture("sippeers.response.raw"))
        .on("ipc-iax-1", fixture("iaxpeerlist.response.raw"))
}

async fn run1() -> Running {
    run1_with(fixture("pjsipshowcontacts.response.raw"))
        .start()
        .await
}

fn row<'a>(rows: &'a [serde_json::Value], peer: &str, kind: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["peer"] == peer && r["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} {peer} in {rows:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_over_ami_screens_every_peer_with_the_policy() {
    let db = Db::new();
    let ami = run1().await;
    let url = ami.url("ipcountry", "s3cret");
    let o = db.run(&["--json", "audit", "--ami", &url], None).await;
    assert_eq!(
        o.status.code(),
        Some(1),
        "carrier-b is a stranger: {}",
        text(&o.stderr)
    );
    assert!(
        text(&o.stderr).contains("note: IAXpeerlist: not available (chan_iax2 not loaded)"),
        "{}",
        text(&o.stderr)
    );
    let rows = json(&o);
    assert_eq!(rows.len(), 11);
    let carrier = row(&rows, "carrier-b", "sip");
    assert_eq!(carrier["address"], "198.51.100.20:5060");
    assert_eq!(carrier["ip"], "198.51.100.20");
    assert_eq!(carrier["verdict"], "stranger");
    assert_eq!(carrier["ok"], false);
    let v6 = rows
        .iter()
        .find(|r| r["address"] == "sip:101@[::1]:15202")
        .expect("101 over IPv6");
    assert_eq!(
        (&v6["ip"], &v6["verdict"], &v6["ok"]),
        (&"::1".into(), &"permitted".into(), &true.into())
    );
    assert!(
        v6["rule"].as_str().is_some_and(|r| r.contains("::1")),
        "{v6}"
    );
    assert_eq!(row(&rows, "104", "pjsip-contact")["verdict"], "unreachable");
    assert_eq!(row(&rows, "104", "pjsip-contact")["ok"], true);
    assert_eq!(row(&rows, "202", "sip")["verdict"], "unreachable");
    assert_eq!(
        row(&rows, "reg-dead", "pjsip-registration")["verdict"],
        "unreachable"
    );
    assert_eq!(
        row(&rows, "reg-to-chansip", "pjsip-registration")["verdict"],
        "permitted"
    );
    assert!(carrier["last_country"].is_null());

    // The policy is the store's: permit the carrier, deny 101's IPv6 address.
    db.ok(&["permit", "add", "198.51.100.20", "--note", "carrier-b"])
        .await;
    let o = db.run(&["audit", "--ami", &url], None).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let table = text(&o.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("peer "), "{table}");
    assert!(lines[0].contains("rule / country"), "{table}");
    let carrier = lines
        .iter()
        .find(|l| l.starts_with("carrier-b "))
        .expect("carrier-b");
    assert!(
        carrier.contains("permitted") && carrier.contains("carrier-b") && carrier.ends_with("ok"),
        "{carrier}"
    );
    // Columns line up: every row has its verdict where the header has it.
    let col = lines[0].find("verdict").expect("verdict column");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l[col..].starts_with(['p', 'd', 's', 'u'])),
        "{table}"
    );
    db.ok(&["deny", "add", "::1"]).await;
    let o = db.run(&["--json", "audit", "--ami", &url], None).await;
    assert_eq!(o.status.code(), Some(1));
    let rows = json(&o);
    let v6 = rows
        .iter()
        .find(|r| r["address"] == "sip:101@[::1]:15202")
        .expect("v6");
    assert_eq!(v6["verdict"], "denied");
    assert!(
        v6["rule"].as_str().is_some_and(|r| r.starts_with("deny #")),
        "{v6}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_errors_exit_2_and_never_show_the_secret() {
    let db = Db::new();
    let bad = ScriptedAmi::asterisk()
        .on_last(
            "login-1",
            login_reply(&fixture("login-bad.from-asterisk.raw")),
        )
        .start()
        .await;
    let o = db
        .run(
            &["audit", "--ami", &bad.url("ipcountry", "wrong-secret")],
            None,
        )
        .await;
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("login refused") && err.contains("Authentication failed"),
        "{err}"
    );
    assert!(err.contains("ami://ipcountry:***@127.0.0.1:"), "{err}");
    assert!(!err.contains("wrong-secret"), "{err}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let o = db
        .run(
            &["audit", "--ami", &format!("ami://u:hunter2@{addr}")],
            None,
        )
        .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("connection refused"),
        "{}",
        text(&o.stderr)
    );
    assert!(!text(&o.stderr).contains("hunter2"));

    let o = db.run(&["audit"], None).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("no AMI given"),
        "{}",
        text(&o.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ami_from_the_environment_and_the_secret_from_a_file() {
    let db = Db::new();
    let ami = run1().await;
    let secret = db.dir.path().join("ami.secret");
    std::fs::write(&secret, "s3cret\n").expect("secret");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ipcountry"));
    let o = cmd
        .env("IPCOUNTRY_DB", &db.url)
        .env("IPCOUNTRY_AMI", format!("ami://ipcountry@{}", ami.addr))
        .args(["audit", "--ami-secret-file", secret.to_str().expect("path")])
        .output()
        .await
        .expect("run");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("carrier-b"));
    assert!(text(&ami.received()).contains("Secret: s3cret\r\n"));
    // --help shows neither the variable's value nor the secret.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ipcountry"));
    let help = cmd
        .env("IPCOUNTRY_AMI", "ami://ipcountry:topsecret@127.0.0.1")
        .args(["audit", "--help"])
        .output()
        .await
        .expect("help");
    assert!(
        !text(&help.stdout).contains("topsecret"),
        "{}",
        text(&help.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_from_cli_text() {
    let db = Db::new();
    let cli = |name: &str| std::fs::read(fixtures().join("cli").join(name)).expect("capture");
    let o = db
        .run(
            &["--json", "audit", "--from-cli", "pjsip"],
            Some(&cli("pjsip-show-contacts.txt")),
        )
        .await;
    assert_eq!(
        o.status.code(),
        Some(1),
        "carrier-a is a stranger: {}",
        text(&o.stderr)
    );
    let rows = json(&o);
    assert_eq!(rows.len(), 5);
    assert_eq!(
        row(&rows, "carrier-a", "pjsip-contact")["ip"],
        "203.0.113.50"
    );
    assert_eq!(
        row(&rows, "carrier-a", "pjsip-contact")["verdict"],
        "stranger"
    );
    assert_eq!(row(&rows, "104", "pjsip-contact")["verdict"], "unreachable");
    let o = db
        .run(
            &["--json", "audit", "--from-cli", "sip"],
            Some(&cli("chansip-ipv6/sip-show-peers.txt")),
        )
        .await;
    let rows = json(&o);
    assert_eq!(row(&rows, "201", "sip")["ip"], "::1");
    assert_eq!(row(&rows, "201", "sip")["verdict"], "permitted");
    assert_eq!(row(&rows, "pjsip-in", "sip")["verdict"], "unreachable");
    assert_eq!(row(&rows, "carrier-b", "sip")["verdict"], "stranger");
}

/// The recorded `PJSIPShowContacts` answer with `n` contacts: its first `ContactList` event
/// repeated, each with an address and endpoint of its own.
fn many_contacts(n: u32) -> Vec<u8> {
    let raw = text(&fixture("pjsipshowcontacts.response.raw"));
    let blocks: Vec<&str> = raw.split("\r\n\r\n").filter(|b| !b.is_empty()).collect();
    let (response, first, complete) = (blocks[0], blocks[1], blocks[blocks.len() - 1]);
    let mut out = format!("{response}\r\n\r\n");
    for i in 0..n {
        let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        out.push_str(
            &first
                .replace("127.0.0.1", &ip)
                .replace("Endpoint: 101", &format!("Endpoint: p{i}"))
                .replace("ObjectName: 101;", &format!("ObjectName: p{i};")),
        );
        out.push_str("\r\n\r\n");
    }
    out.push_str(&complete.replace("ListItems: 4", &format!("ListItems: {n}")));
    out.push_str("\r\n\r\n");
    out.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_of_a_thousand_contacts() {
    let db = Db::new();
    db.ok(&["permit", "list"]).await; // creates the schema before the clock starts
    let ami = run1_with(many_contacts(1000)).start().await;
    let url = ami.url("ipcountry", "s3cret");
    let started = Instant::now();
    let o = db.run(&["--json", "audit", "--ami", &url], None).await;
    let took = started.elapsed();
    let rows = json(&o);
    assert_eq!(
        rows.iter().filter(|r| r["kind"] == "pjsip-contact").count(),
        1000
    );
    assert!(rows
        .iter()
        .filter(|r| r["kind"] == "pjsip-contact")
        .all(|r| r["verdict"] == "permitted"));
    // A figure, not an assertion: the whole process, AMI session and database included.
    println!("audit of 1,000 scripted contacts (+ 7 other peers): {took:?} for the whole `ipcountry audit` process");
}

/// Run 1's contacts, with 101's IPv4 contact registered from `ip` instead of 127.0.0.1.
pub(crate) fn contacts_from(ip: &str) -> Vec<u8> {
    text(&fixture("pjsipshowcontacts.response.raw"))
        .replace("sip:101@127.0.0.1:15201", &format!("sip:101@{ip}:15201"))
        .into_bytes()
}

fn alerts(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event a line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_once_twice_drift_alerts_once_then_never_again() {
    let db = Db::new();
    let mmdb = crate::harness::data_dir().join("maxmind-test-data/GeoLite2-Country-Test.mmdb");
    db.ok(&["import", mmdb.to_str().expect("path")]).await;
    // 81.2.69.160 is GB and 89.160.20.112 SE in this database: both permitted.
    db.ok(&["country", "add", "GB", "SE"]).await;
    let log = db.dir.path().join("alerts.jsonl");
    let hook = format!("cat >> '{}'", log.display());
    let watch = |ami: &Running| {
        vec![
            "watch".to_owned(),
            "--once".to_owned(),
            "--block".to_owned(),
            "--block-for".to_owned(),
            "2h".to_owned(),
            "--on-stranger".to_owned(),
            hook.clone(),
            "--ami".to_owned(),
            ami.url("ipcountry", "s3cret"),
        ]
    };
    let run = |ami: Running| {
        let args = watch(&ami);
        let db = &db;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = db.run(&args, None).await;
            drop(ami);
            o
        }
    };

    // First pass: 101 registers from GB. carrier-b is a new ko peer: alerted and blocked.
    let o = run(run1_with(contacts_from("81.2.69.160")).start().await).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("new ko peer"),
        "{}",
        text(&o.stderr)
    );
    let events = alerts(&log);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["callerid"], "carrier-b");
    assert_eq!(events[0]["source"], "198.51.100.20");
    assert_eq!(events[0]["verdict"], "stranger");
    let deny: Vec<serde_json::Value> =
        serde_json::from_str(&db.ok(&["--json", "deny", "list"]).await).expect("json");
    assert_eq!(deny.len(), 1);
    assert_eq!(deny[0]["note"], "watch:carrier-b");
    assert!(deny[0]["terms"]["expires_at"].is_i64(), "{}", deny[0]);

    // Second pass: 101 now registers from SE, a permitted country: drift, one alert.
    let o = run(run1_with(contacts_from("89.160.20.112")).start().await).await;
    let err = text(&o.stderr);
    assert!(
        err.contains("registration drift: 101 moved from GB to SE"),
        "{err}"
    );
    let events = alerts(&log);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1]["callerid"], "101");
    assert_eq!(events[1]["source"], "89.160.20.112");
    assert_eq!(events[1]["verdict"], "permitted");
    assert_eq!(events[1]["country"], "SE");
    assert!(
        events[1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("101 moved from GB to SE")),
        "{}",
        events[1]
    );

    // Third pass, same addresses: nothing new.
    let o = run(run1_with(contacts_from("89.160.20.112")).start().await).await;
    assert!(!text(&o.stderr).contains("drift"), "{}", text(&o.stderr));
    assert_eq!(alerts(&log).len(), 2);

    // audit shows the last country beside the current one.
    let ami = run1_with(contacts_from("81.2.69.160")).start().await;
    let o = db
        .run(
            &["--json", "audit", "--ami", &ami.url("ipcountry", "s3cret")],
            None,
        )
        .await;
    let rows = json(&o);
    let gb = rows
        .iter()
        .find(|r| r["address"] == "sip:101@81.2.69.160:15201")
        .expect("101 from GB");
    assert_eq!(
        (&gb["country"], &gb["last_country"]),
        (&"GB".into(), &"SE".into())
    );
}
