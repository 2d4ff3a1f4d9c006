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

fn signal(pid: u32, sig: &str) {
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
