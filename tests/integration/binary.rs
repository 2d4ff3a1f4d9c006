//! The real `ipcountry serve` process: it prints where it listens, reloads on SIGHUP, and exits 0
//! after draining on SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{block, ok, play};

fn ipcountry(db: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ipcountry"));
    c.env("IPCOUNTRY_DB", db).env_remove("RUST_LOG");
    c
}

/// A child process that is killed if the test ends before it does (a failed assertion must
/// not leave a server running, holding the test's output pipe open).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub(crate) fn signal(pid: u32, sig: &str) {
    let st = Command::new("sh")
        .args(["-c", &format!("kill -{sig} {pid}")])
        .status()
        .expect("kill");
    assert!(st.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reloads_on_sighup_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("ipcountry.db").display().to_string();
    let o = ipcountry(&db)
        .args(["permit", "add", "203.0.113.0/24"])
        .output()
        .expect("run");
    assert!(o.status.success());

    // Port 0 and a poll interval of an hour: only SIGHUP can make the change visible.
    let mut child = Reaped(
        ipcountry(&db)
            .args(["serve", "--listen", "127.0.0.1:0", "--poll", "3600s"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr: SocketAddr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("serve printed nothing");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .expect("addr")
                .parse()
                .expect("socket addr");
        }
    };

    let call = || async {
        play(
            addr,
            &[block(&["127.0.0.1", "203.0.113.7"])],
            ok,
            Duration::from_secs(5),
        )
        .await
    };
    assert!(call()
        .await
        .bytes()
        .contains("IPCOUNTRY_VERDICT=permitted,"));

    // Text the caller wrote reaches the log escaped: no CR, no terminal escape.
    let hostile = String::from_utf8(block(&["127.0.0.1", "198.51.100.9"]))
        .expect("utf8")
        .replace(
            "agi_callerid: bob",
            "agi_callerid: bob\r\u{1b}[2Jforged: line",
        );
    let t = play(addr, &[hostile.into_bytes()], ok, Duration::from_secs(5)).await;
    assert!(t.bytes().contains("IPCOUNTRY_VERDICT=stranger,"));
    let logged = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the call was logged");
        if line.contains("forged") {
            break line;
        }
    };
    assert!(
        logged.contains(r"bob\r\u{1b}[2Jforged: line"),
        "escaped in the log: {logged:?}"
    );
    assert!(
        !logged.contains('\r') && !logged.contains('\u{1b}'),
        "{logged:?}"
    );

    let o = ipcountry(&db)
        .args(["deny", "add", "203.0.113.7"])
        .output()
        .expect("run");
    assert!(o.status.success());
    signal(child.0.id(), "HUP");
    let mut denied = false;
    for _ in 0..50 {
        if call().await.bytes().contains("IPCOUNTRY_VERDICT=denied,") {
            denied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(denied, "SIGHUP did not reload the tables");

    signal(child.0.id(), "TERM");
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = child.0.try_wait().expect("wait") {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = status.expect("serve did not exit after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("server stopped")),
        "{rest:?}"
    );
}

/// A program CI installs (the `systemd` package); a test that needs it fails under `CI=true`
/// when it is missing, and says so and passes without `CI`.
fn need(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is needed (apt-get install systemd)"
        );
        eprintln!("NOTICE: {program} not found; skipped (CI installs it)");
    }
    found
}

#[test]
fn the_shipped_units_verify() {
    if !need("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    for unit in ["ipcountry.service", "ipcountry.socket"] {
        let text = std::fs::read_to_string(root.join(unit)).expect("unit");
        // The unit names the installed binary; this one is the build's.
        let text = text.replace("/usr/bin/ipcountry", env!("CARGO_BIN_EXE_ipcountry"));
        std::fs::write(dir.path().join(unit), text).expect("write");
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_its_socket_from_systemd() {
    if !need("systemd-socket-activate") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("ipcountry.db").display().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // systemd holds the socket and execs the server on the first connection; --listen is
    // ignored when a socket is passed.
    let mut child = Reaped(
        Command::new("systemd-socket-activate")
            .args(["-l", &addr.to_string()])
            .arg(format!("--setenv=IPCOUNTRY_DB={db}"))
            .args([
                env!("CARGO_BIN_EXE_ipcountry"),
                "serve",
                "--listen",
                "127.0.0.1:1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("systemd-socket-activate"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The connection waits in systemd's socket until the server runs.
    let mut answered = None;
    for _ in 0..50 {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            drop(s);
            let t = play(
                addr,
                &[block(&["127.0.0.1", "198.51.100.9"])],
                ok,
                Duration::from_secs(5),
            )
            .await;
            answered = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = answered.expect("the socket was there");
    assert!(
        t.bytes().contains("IPCOUNTRY_VERDICT=stranger,"),
        "{}",
        t.bytes()
    );
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        if line.contains("using a socket from systemd") {
            return;
        }
        lines.push(line);
    }
    panic!("the server did not say it took systemd's socket: {lines:?}");
}
