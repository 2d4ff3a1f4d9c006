//! Issue 15: the policy in the kernel. Generated rulesets go through the real `nft -c`; the
//! table is applied inside network namespaces made by the test (two of them joined by a veth
//! pair), and UDP datagrams from a permitted, a denied and a stranger source reach the VoIP
//! port or not as the policy says, while the stranger still reaches port 22; `--rollback`
//! brings back the table before. The ipset + iptables output is loaded in a namespace too.
//! Everything that touches the kernel runs in a namespace of the test's own, never in the
//! machine's. Needs root, `ip` (iproute2), `unshare`, `nft`, `ipset`, `iptables`: a test
//! that lacks them fails in CI and is skipped with a notice otherwise.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ipcountry::firewall::apply::{self, Nft};
use ipcountry::store::testing;

/// The variable that makes [`firewall_in_a_network_namespace`] act as its own helper (the
/// listener or the sender) when the test binary is run again inside a namespace.
const ROLE_VAR: &str = "IPCOUNTRY_FW_TEST_ROLE";

struct Db {
    url: String,
    dir: tempfile::TempDir,
}

impl Db {
    fn new() -> Db {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = testing::fresh_db_url(dir.path());
        Db { url, dir }
    }

    /// A SQLite file whatever the suite's backend: for `ipcountry` run inside a network
    /// namespace, which has no route to the database servers on the host's loopback (the
    /// tables come from the snapshot either way).
    fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("ipcountry.db").display());
        Db { url, dir }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ipcountry"));
        c.env("IPCOUNTRY_DB", &self.url)
            .env_remove("RUST_LOG")
            .env_remove("IPCOUNTRY_STATE_DIR");
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd().args(args).output().expect("run ipcountry");
        ok(&o, &format!("ipcountry {args:?}"))
    }
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Whether the kernel tools can run here (root, and the programs installed).
fn kernel_tools(tools: &[&str]) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let missing: Vec<&&str> = tools
        .iter()
        .filter(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .map_or(true, |s| !s.success())
        })
        .collect();
    if root && missing.is_empty() {
        return true;
    }
    assert!(
        !testing::in_ci(),
        "the firewall tests need root and {tools:?} (missing: {missing:?}, root: {root})"
    );
    eprintln!("NOTICE: firewall test skipped (root: {root}, missing: {missing:?})");
    false
}

/// `nft -c -f FILE` in a network namespace of its own (nothing is loaded anywhere).
fn nft_check(file: &Path) -> Output {
    Command::new("unshare")
        .args(["--net", "nft", "-c", "-f"])
        .arg(file)
        .output()
        .expect("run unshare nft")
}

fn interval_count(ruleset: &str, set: &str) -> usize {
    let line = ruleset
        .lines()
        .find(|l| l.starts_with("# intervals: "))
        .expect("intervals line");
    line.split(", ")
        .find_map(|p| {
            p.trim_start_matches("# intervals: ")
                .strip_prefix(&format!("{set} "))
                .map(|n| n.parse().expect("count"))
        })
        .expect("set count")
}

#[test]
fn generated_rulesets_pass_nft_check() {
    if !kernel_tools(&["nft", "unshare"]) {
        return;
    }
    let db = Db::new();
    let file = db.dir.path().join("r.nft");
    // An empty policy (no builtins), then the builtins only.
    for (args, permit4) in [
        (&["--no-builtins", "firewall"][..], 0),
        (&["firewall"][..], 6),
    ] {
        let text = db.ok(args);
        assert_eq!(interval_count(&text, "permit4"), permit4, "{text}");
        std::fs::write(&file, &text).unwrap();
        ok(&nft_check(&file), &format!("nft -c of {args:?}"));
    }
    // The full country set: US, CA and DE from the GeoLite2 database.
    let Some(mmdb) = full_geolite() else { return };
    db.ok(&["import", mmdb.to_str().unwrap()]);
    db.ok(&["country", "add", "US", "CA", "DE"]);
    let text = db.ok(&["firewall"]);
    assert!(
        interval_count(&text, "permit4") > 20_000,
        "{}",
        &text[..200]
    );
    assert!(interval_count(&text, "permit6") > 5_000);
    std::fs::write(&file, &text).unwrap();
    ok(&nft_check(&file), "nft -c of the full country set");
    // A ruleset the kernel refuses is refused by --apply's check, and nothing changes: no
    // backup is written (the check runs first; nft -c loads nothing anywhere).
    let state = db.dir.path().join("state");
    let refused = apply::apply(
        &Nft::default(),
        "table inet ipcountry { bogus }\n",
        &state,
        true,
    );
    assert!(
        matches!(
            refused,
            Err(ipcountry::firewall::FirewallError::Refused { .. })
        ),
        "{refused:?}"
    );
    assert!(apply::backups(&state).unwrap().is_empty());
}

/// The full GeoLite2 country database (`../shared/data/full`), if there.
fn full_geolite() -> Option<PathBuf> {
    let data = std::env::var_os("IPCOUNTRY_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let path = data.join("full/GeoLite2-Country-2019-12-24.mmdb");
    if path.exists() {
        return Some(path);
    }
    assert!(!testing::in_ci(), "missing {} (CI)", path.display());
    eprintln!("NOTICE: {} not found: skipped", path.display());
    None
}

/// Two network namespaces joined by a veth pair, deleted on drop (panics included).
struct Netns {
    server: String,
    client: String,
}

/// The server's address; the client has a permitted, a denied and a stranger address.
const SERVER: &str = "198.51.100.1";
const PERMITTED: &str = "198.51.100.10";
const DENIED: &str = "198.51.100.20";
const STRANGER: &str = "203.0.113.9";

impl Netns {
    fn new() -> Netns {
        // Unique per process and per test (the tests run in parallel); interface names have
        // at most 15 bytes.
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let ns = Netns {
            server: format!("ipc-fw-srv-{pid}-{n}"),
            client: format!("ipc-fw-cli-{pid}-{n}"),
        };
        let (s_if, c_if) = (format!("ipcfw{n}s{pid}"), format!("ipcfw{n}c{pid}"));
        let steps: Vec<Vec<String>> = vec![
            vec!["netns", "add", &ns.server],
            vec!["netns", "add", &ns.client],
            vec!["link", "add", &s_if, "type", "veth", "peer", "name", &c_if],
            vec!["link", "set", &s_if, "netns", &ns.server],
            vec!["link", "set", &c_if, "netns", &ns.client],
            vec![
                "-n",
                &ns.server,
                "addr",
                "add",
                "198.51.100.1/24",
                "dev",
                &s_if,
            ],
            vec![
                "-n",
                &ns.server,
                "addr",
                "add",
                "203.0.113.1/24",
                "dev",
                &s_if,
            ],
            vec!["-n", &ns.server, "link", "set", &s_if, "up"],
            vec!["-n", &ns.server, "link", "set", "lo", "up"],
            vec![
                "-n",
                &ns.client,
                "addr",
                "add",
                "198.51.100.10/24",
                "dev",
                &c_if,
            ],
            vec![
                "-n",
                &ns.client,
                "addr",
                "add",
                "198.51.100.20/24",
                "dev",
                &c_if,
            ],
            vec![
                "-n",
                &ns.client,
                "addr",
                "add",
                "203.0.113.9/24",
                "dev",
                &c_if,
            ],
            vec!["-n", &ns.client, "link", "set", &c_if, "up"],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(String::from).collect())
        .collect();
        for step in steps {
            let o = Command::new("ip").args(&step).output().expect("run ip");
            ok(&o, &format!("ip {step:?}"));
        }
        ns
    }

    /// `ip netns exec NS program args...`.
    fn exec(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    fn listing(&self) -> Option<String> {
        let o = self
            .exec(&self.server, "nft")
            .args(["list", "table", "inet", "ipcountry"])
            .output()
            .expect("nft list");
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and with it the pair.
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs this test again inside `ns` as the helper `role`.
fn helper(ns: &Netns, which: &str, role: &str) -> Command {
    let exe = std::env::current_exe().expect("test binary");
    let mut c = ns.exec(which, exe.to_str().expect("utf-8 path"));
    c.args([
        "firewall::firewall_in_a_network_namespace",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE_VAR, role);
    c
}

/// The helpers: `listen` binds UDP 5060 and 22, prints `READY`, then one `GOT <port> <source>`
/// line per datagram until a `done` datagram on port 22 (or 20 s); `send` sends from each
/// client address to the server (twice, in case ARP holds the first one back), then `done`.
fn act_as(role: &str) {
    match role {
        "listen" => {
            let sip = UdpSocket::bind("0.0.0.0:5060").expect("bind 5060");
            let ssh = UdpSocket::bind("0.0.0.0:22").expect("bind 22");
            for s in [&sip, &ssh] {
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            }
            println!("READY");
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut buf = [0u8; 64];
            let mut done = None;
            while Instant::now() < deadline
                && done.is_none_or(|d: Instant| d.elapsed() < Duration::from_millis(300))
            {
                for (port, s) in [(5060, &sip), (22, &ssh)] {
                    if let Ok((n, from)) = s.recv_from(&mut buf) {
                        println!("GOT {port} {}", from.ip());
                        if &buf[..n] == b"done" && done.is_none() {
                            done = Some(Instant::now());
                        }
                    }
                }
            }
            println!("END");
        }
        "send" => {
            for _ in 0..2 {
                for src in [PERMITTED, DENIED, STRANGER] {
                    let s = UdpSocket::bind((src, 0)).expect("bind source");
                    s.send_to(b"INVITE", (SERVER, 5060)).expect("send");
                }
                let s = UdpSocket::bind((STRANGER, 0)).expect("bind source");
                s.send_to(b"ssh", (SERVER, 22)).expect("send");
                std::thread::sleep(Duration::from_millis(100));
            }
            let s = UdpSocket::bind((STRANGER, 0)).expect("bind source");
            s.send_to(b"done", (SERVER, 22)).expect("send");
        }
        other => panic!("unknown role {other}"),
    }
}

/// What reached the listener: `(port, source)` pairs.
fn exchange(ns: &Netns) -> Vec<(u16, String)> {
    let mut listener = helper(ns, &ns.server, "listen")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the listener");
    let mut lines = BufReader::new(listener.stdout.take().expect("stdout")).lines();
    for line in lines.by_ref() {
        // libtest's `test name ... ` comes first on the same line.
        if line.expect("listener output").ends_with("READY") {
            break;
        }
    }
    let sent = helper(ns, &ns.client, "send")
        .output()
        .expect("run the sender");
    ok(&sent, "sender");
    let mut got = Vec::new();
    // Read to the end (libtest's report follows `END`): a closed pipe would fail the child.
    for line in lines {
        let line = line.expect("listener output");
        if let Some(rest) = line.strip_prefix("GOT ") {
            let (port, src) = rest.split_once(' ').expect("GOT port source");
            got.push((port.parse().expect("port"), src.to_owned()));
        }
    }
    let _ = listener.wait();
    got
}

/// A listing without the `expires ...` of timeout set elements (they count down).
fn without_expiry(listing: &str) -> String {
    let mut out = String::new();
    let mut rest = listing;
    while let Some(i) = rest.find(" expires ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + " expires ".len()..];
        let end = tail.find([',', ' ', '\n', '}']).unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn firewall_in_a_network_namespace() {
    if let Ok(role) = std::env::var(ROLE_VAR) {
        act_as(&role);
        return;
    }
    if !kernel_tools(&["nft", "ip"]) {
        return;
    }
    let db = Db::sqlite();
    let state = db.dir.path().join("state");
    let state = state.to_str().unwrap().to_owned();
    let ns = Netns::new();
    let apply = |db: &Db| {
        let exe = env!("CARGO_BIN_EXE_ipcountry");
        let mut c = ns.exec(&ns.server, exe);
        c.env("IPCOUNTRY_DB", &db.url)
            .args(["firewall", "--apply", "--state-dir", &state]);
        ok(&c.output().expect("firewall --apply"), "firewall --apply")
    };
    // Before the firewall, everything arrives.
    let got = exchange(&ns);
    for src in [PERMITTED, DENIED, STRANGER] {
        assert!(
            got.contains(&(5060, src.to_owned())),
            "{src} without a table: {got:?}"
        );
    }
    // The first table: the office network permitted.
    db.ok(&["permit", "add", "198.51.100.0/24", "--note", "office"]);
    let out = apply(&db);
    assert!(
        out.contains("to go back: ipcountry firewall --rollback --state-dir"),
        "{out}"
    );
    // A stranger blocked at run time, with an hour to go: it outlives the next apply.
    let add = ns
        .exec(&ns.server, "nft")
        .args(["add", "element", "inet", "ipcountry", "strangers4"])
        .arg("{ 203.0.113.77 timeout 1h }")
        .output()
        .expect("nft add element");
    ok(&add, "nft add element");
    let first = ns.listing().expect("the table after the first apply");
    // The second: one office address denied (deny beats permit).
    db.ok(&["deny", "add", DENIED, "--note", "scanner"]);
    apply(&db);
    let got = exchange(&ns);
    assert!(
        got.contains(&(5060, PERMITTED.to_owned())),
        "permitted: {got:?}"
    );
    assert!(!got.contains(&(5060, DENIED.to_owned())), "denied: {got:?}");
    assert!(
        !got.contains(&(5060, STRANGER.to_owned())),
        "stranger: {got:?}"
    );
    assert!(
        got.contains(&(22, STRANGER.to_owned())),
        "port 22 is not filtered: {got:?}"
    );
    let second = ns.listing().expect("the table after the second apply");
    assert!(second.contains("198.51.100.20"), "{second}");
    assert!(second.contains("203.0.113.77 timeout 59m"), "{second}");
    assert!(
        second.contains("counter packets 2 "),
        "the drops are counted: {second}"
    );
    // Rollback: the first table again, exactly as it was listed.
    let exe = env!("CARGO_BIN_EXE_ipcountry");
    let rolled = ns
        .exec(&ns.server, exe)
        .args(["firewall", "--rollback", "--state-dir", &state])
        .output()
        .expect("rollback");
    ok(&rolled, "firewall --rollback");
    assert_eq!(
        ns.listing().as_deref().map(without_expiry),
        Some(without_expiry(&first))
    );
    let got = exchange(&ns);
    assert!(
        got.contains(&(5060, DENIED.to_owned())),
        "denied no more: {got:?}"
    );
    assert!(
        !got.contains(&(5060, STRANGER.to_owned())),
        "stranger: {got:?}"
    );
    // Once more: back to no table at all, then nothing left to roll back to.
    ok(
        &ns.exec(&ns.server, exe)
            .args(["firewall", "--rollback", "--state-dir", &state])
            .output()
            .expect("rollback"),
        "second rollback",
    );
    assert_eq!(ns.listing(), None);
    let none = ns
        .exec(&ns.server, exe)
        .args(["firewall", "--rollback", "--state-dir", &state])
        .output()
        .expect("rollback");
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no backup to roll back to"));
}

#[test]
fn ipset_and_iptables_output_loads_in_a_namespace() {
    if !kernel_tools(&["unshare", "ipset", "iptables-restore", "ip6tables-restore"]) {
        return;
    }
    let db = Db::new();
    db.ok(&["permit", "add", "198.51.100.0/24"]);
    db.ok(&["permit", "add", "198.51.100.200-198.51.101.10"]);
    db.ok(&["deny", "add", "2001:db8::7"]);
    let dir = db.dir.path();
    for (format, file) in [("ipset", "sets"), ("iptables", "v4"), ("ip6tables", "v6")] {
        std::fs::write(dir.join(file), db.ok(&["firewall", "--format", format])).unwrap();
    }
    // Twice: the second restore swaps the sets in over the first ones.
    let script = "set -e
        for i in 1 2; do
            ipset restore < sets
            iptables-restore --test --noflush < v4
            iptables-restore --noflush < v4
            ip6tables-restore --noflush < v6
        done
        iptables -C INPUT -j ipcountry 2>/dev/null || iptables -I INPUT -j ipcountry
        ipset list ipcountry-permit4
        ipset list ipcountry-deny6
        iptables -S ipcountry
        iptables -S ipcountry-voip
        ip6tables -S ipcountry-voip
        ipset list -n";
    let o = Command::new("unshare")
        .args(["--net", "sh", "-c", script])
        .current_dir(dir)
        .output()
        .expect("unshare");
    let out = ok(&o, "ipset + iptables restore");
    for want in [
        "198.51.100.0/24",
        "198.51.101.0/29",
        "10.0.0.0/8",
        "2001:db8::7",
        "-A ipcountry -p udp -m udp -m multiport --dports 4569,5060:5061,10000:20000 -j ipcountry-voip",
        "-A ipcountry-voip -m set --match-set ipcountry-deny4 src -j DROP",
        "-A ipcountry-voip -m set --match-set ipcountry-permit6 src -j ACCEPT",
        "ipcountry-strangers6",
    ] {
        assert!(out.contains(want), "{want} missing from:\n{out}");
    }
    assert!(
        !out.contains("-tmp"),
        "temporary sets are destroyed:\n{out}"
    );
}

/// `serve --firewall` in the server namespace: the table follows every snapshot change, and a
/// failed apply keeps the old table, logged with its count.
#[test]
fn serve_keeps_the_table_in_step() {
    if !kernel_tools(&["nft", "ip"]) {
        return;
    }
    let db = Db::sqlite();
    let state = db.dir.path().join("state");
    db.ok(&["permit", "add", "198.51.100.0/24"]);
    let ns = Netns::new();
    let mut serve = ns.exec(&ns.server, env!("CARGO_BIN_EXE_ipcountry"));
    serve
        .env("IPCOUNTRY_DB", &db.url)
        .env("RUST_LOG", "info")
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--poll",
            "100ms",
            "--firewall",
        ])
        .arg("--state-dir")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop(serve.spawn().expect("start serve"));
    let (tx, log) = std::sync::mpsc::channel::<String>();
    let stderr = child.0.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |what: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match log.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no log line with {what:?}");
    };
    let first = wait_for("firewall table applied");
    assert!(
        first.contains("backup="),
        "the first apply keeps a backup: {first}"
    );
    assert!(ns.listing().expect("table").contains("198.51.100.0/24"));
    db.ok(&["deny", "add", DENIED]);
    let second = wait_for("firewall table applied");
    assert!(second.contains("deny4 +1 -0"), "{second}");
    assert!(ns.listing().expect("table").contains(DENIED));
    // The next apply cannot write its ruleset file: it fails, and the table stays.
    let before = ns.listing().expect("table");
    std::fs::remove_file(state.join(apply::RULESET_FILE)).unwrap();
    std::fs::create_dir(state.join(apply::RULESET_FILE)).unwrap();
    db.ok(&["deny", "add", "198.51.100.21"]);
    let failed = wait_for("firewall table not applied");
    assert!(failed.contains("failures=1"), "{failed}");
    assert_eq!(ns.listing().as_deref(), Some(before.as_str()));
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_firewall_drop_in_verifies_with_the_service() {
    if !kernel_tools(&["systemd-analyze"]) {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    let dir = tempfile::tempdir().expect("tempdir");
    // The drop-in's [Service] section appended to the unit: what systemd makes of the two.
    let mut unit = std::fs::read_to_string(root.join("ipcountry.service")).unwrap();
    unit.push_str(&std::fs::read_to_string(root.join("ipcountry-firewall.conf")).unwrap());
    let unit = unit.replace("/usr/bin/ipcountry", env!("CARGO_BIN_EXE_ipcountry"));
    std::fs::write(dir.path().join("ipcountry.service"), unit).unwrap();
    std::fs::copy(
        root.join("ipcountry.socket"),
        dir.path().join("ipcountry.socket"),
    )
    .unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("ipcountry.service"))
        .arg(dir.path().join("ipcountry.socket"))
        .output()
        .expect("systemd-analyze");
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `watch --block --block-kernel`: a new ko peer's address goes into the kernel's strangers
/// set of a loaded table, with --block-for as its timeout, besides the deny entry. `watch`
/// runs here, beside the scripted AMI server; its `nft` is a wrapper that runs the real one
/// inside the test's namespace, where the table was applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_block_kernel_puts_the_stranger_in_the_kernel_set() {
    if !kernel_tools(&["nft", "ip"]) {
        return;
    }
    let db = Db::sqlite();
    let state = db.dir.path().join("state");
    let ns = Netns::new();
    let mmdb = crate::harness::data_dir().join("maxmind-test-data/GeoLite2-Country-Test.mmdb");
    db.ok(&["import", mmdb.to_str().expect("utf8")]);
    db.ok(&["country", "add", "GB", "SE"]);
    let mut apply = ns.exec(&ns.server, env!("CARGO_BIN_EXE_ipcountry"));
    apply.env("IPCOUNTRY_DB", &db.url).args([
        "firewall",
        "--apply",
        "--state-dir",
        state.to_str().expect("utf8"),
    ]);
    ok(
        &apply.output().expect("firewall --apply"),
        "firewall --apply",
    );

    let bin = db.dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    // The real nft by its path: the wrapper is first in the PATH watch and `ip` see.
    let real = Command::new("sh")
        .args(["-c", "command -v nft"])
        .output()
        .expect("command -v nft");
    let real = ok(&real, "command -v nft").trim().to_owned();
    let wrapper = bin.join("nft");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec ip netns exec '{}' '{real}' \"$@\"\n",
            ns.server
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    // 101 registers from GB (permitted); carrier-b from 198.51.100.20, a stranger.
    let ami = crate::audit::run1_with(crate::audit::contacts_from("81.2.69.160"))
        .start()
        .await;
    let mut watch = db.cmd();
    watch.env("PATH", &path).args([
        "watch",
        "--once",
        "--block",
        "--block-for",
        "2h",
        "--block-kernel",
        "--ami",
        &ami.url("ipcountry", "s3cret"),
    ]);
    let o = tokio::process::Command::from(watch)
        .output()
        .await
        .expect("watch");
    drop(ami);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "a ko peer: {err}");
    assert!(err.contains("blocked in the kernel"), "{err}");
    let set = ns
        .exec(&ns.server, "nft")
        .args(["list", "set", "inet", "ipcountry", "strangers4"])
        .output()
        .expect("nft list set");
    let set = ok(&set, "nft list set");
    assert!(set.contains("198.51.100.20 timeout 2h"), "{set}");
    assert!(!set.contains("81.2.69.160"), "{set}");
    // And the deny entry, as without --block-kernel.
    assert!(db.ok(&["deny", "list"]).contains("watch:carrier-b"));
}
