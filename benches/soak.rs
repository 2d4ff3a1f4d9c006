//! The soak (issue 17): a million mixed calls against a release `ipcountry serve` with the
//! default configuration (but for the port), reporting failed calls, verdicts that differ from
//! what `ipcountry check` says for the same arguments, and the server's RSS and open
//! descriptors at the start, the middle and the end. Nothing may grow.
//!
//! The mix, by call number (of every 100):
//! * 80 **valid** calls: a source and a From from a fixed set (permitted by country, by a custom
//!   entry, denied, strangers, IPv6, the recorded PJSIP and chan_sip From headers), block in one
//!   write; the verdict must be the one `ipcountry check SOURCE FROM` printed before the run;
//! * 8 **hostile** calls: the five recorded `hostile-*` blocks of the fixtures, their
//!   arguments after a stranger source: the answer must be `STRANGER=true`;
//! * 5 **malformed** blocks (a line without a colon, a duplicate name, bytes that are not
//!   UTF-8 in a name): the answer must be the error verdict, `STRANGER=true`;
//! * 5 **slow** calls: a valid block line by line with a 2 ms pause between lines (within the
//!   1 s block deadline): the verdict must be `check`'s;
//! * 2 **hung-up** calls: a valid block, then the connection closed before the reply is read
//!   (nothing to check but that the server carries on).
//!
//! `cargo bench --bench soak`. Knobs: `SOAK_CALLS` (default 1,000,000), `SOAK_CLIENTS`
//! (concurrent callers, default 32). Exits 1 when a call failed, a verdict differed, or the
//! server's descriptors or RSS grew between the middle and the end.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(10);

/// Sources of the valid calls: (source, From). The From is the argument Asterisk would pass.
const VALID: [(&str, &str); 10] = [
    ("81.2.69.160", "\"Bob\" <sip:bob@81.2.69.160>;tag=a1"),
    ("89.160.20.112", "<sip:100@89.160.20.112:5060>"),
    ("203.0.113.7", "sip:alice@203.0.113.7"),
    ("203.0.113.66", "<sip:x@203.0.113.66>"),
    ("198.51.100.9", "<sip:scan@198.51.100.9>;tag=zz"),
    ("81.2.69.160", "<sip:spoof@198.51.100.9>"),
    ("198.51.100.9", "\"friendly\" <sip:x@81.2.69.160>"),
    ("2001:db8::9", "<sip:v6@[2001:db8::9]>"),
    ("2a02:cf40::1", "<sip:v6@[2a02:cf40::1]:5060>"),
    ("203.0.113.7", "<sip:host@pbx.invalid>"),
];

/// What a call is, and what its answer must say.
#[derive(Clone)]
struct Call {
    block: Vec<u8>,
    kind: Kind,
    /// The `IPCOUNTRY_VERDICT` it must get, or `None` for "any, as long as STRANGER=true".
    verdict: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Valid,
    Hostile,
    Malformed,
    Slow,
    HungUp,
}

fn block(args: &[&[u8]]) -> Vec<u8> {
    let mut b = b"agi_network: yes\nagi_network_script: screen\nagi_request: agi://127.0.0.1/screen\nagi_channel: PJSIP/soak-00000001\nagi_uniqueid: 1.1\nagi_callerid: soak\n".to_vec();
    for (i, a) in args.iter().enumerate() {
        b.extend_from_slice(format!("agi_arg_{}: ", i + 1).as_bytes());
        b.extend_from_slice(a);
        b.push(b'\n');
    }
    b.push(b'\n');
    b
}

/// The verdict `ipcountry check` gives: its first word.
fn check(db: &str, source: &str, from: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_ipcountry"))
        .args(["--db", db, "check", source, from])
        .env_remove("RUST_LOG")
        .output()
        .expect("ipcountry check");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("none")
        .to_owned()
}

/// The recorded hostile blocks, their arguments moved after a stranger source.
fn hostile() -> Vec<Vec<u8>> {
    let dir = common::fixtures_dir().join("sessions");
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("hostile-") && n.ends_with(".header.raw"))
        .collect();
    names.sort();
    for name in names {
        let raw = std::fs::read(dir.join(&name)).expect("hostile block");
        let mut b: Vec<u8> = Vec::new();
        let mut args: Vec<&[u8]> = vec![b"198.51.100.9"];
        for line in raw.split_inclusive(|&c| c == b'\n') {
            if line == b"\n" {
                continue;
            }
            if line.starts_with(b"agi_arg_") {
                let at = line
                    .iter()
                    .position(|&c| c == b' ')
                    .map_or(line.len(), |i| i + 1);
                args.push(line[at..].strip_suffix(b"\n").unwrap_or(&line[at..]));
            } else {
                b.extend_from_slice(line);
            }
        }
        for (i, a) in args.iter().enumerate() {
            b.extend_from_slice(format!("agi_arg_{}: ", i + 1).as_bytes());
            b.extend_from_slice(a);
            b.push(b'\n');
        }
        b.push(b'\n');
        out.push(b);
    }
    assert_eq!(out.len(), 5, "the five recorded hostile blocks");
    out
}

fn calls(db: &str) -> Vec<Call> {
    let mut valid = Vec::new();
    for (source, from) in VALID {
        let verdict = check(db, source, from);
        assert!(
            ["permitted", "denied", "stranger"].contains(&verdict.as_str()),
            "check {source} {from}: {verdict}"
        );
        valid.push(Call {
            block: block(&[source.as_bytes(), from.as_bytes()]),
            kind: Kind::Valid,
            verdict: Some(verdict),
        });
    }
    for case in ["pjsip-ipv4", "chansip-ipv4", "pjsip-ipv6"] {
        let path = common::fixtures_dir().join(format!("sip/{case}.invite.txt"));
        let invite = std::fs::read_to_string(&path).expect("invite");
        let from = invite
            .lines()
            .find_map(|l| l.strip_prefix("From: "))
            .expect("a From line")
            .trim()
            .to_owned();
        let source = "198.51.100.9";
        let verdict = check(db, source, &from);
        valid.push(Call {
            block: block(&[source.as_bytes(), from.as_bytes()]),
            kind: Kind::Valid,
            verdict: Some(verdict),
        });
    }
    let malformed = [
        b"agi_network: yes\nagi_arg_1 198.51.100.9\n\n".to_vec(),
        b"agi_network: yes\nagi_arg_1: 81.2.69.160\nagi_arg_1: 81.2.69.160\n\n".to_vec(),
        b"agi_network: yes\nagi_\xff\xfe: x\nagi_arg_1: 81.2.69.160\n\n".to_vec(),
    ];
    let hostile = hostile();
    let mut mix = Vec::with_capacity(100);
    for i in 0..100 {
        let call = match i {
            0..=79 => valid[i % valid.len()].clone(),
            80..=87 => Call {
                block: hostile[i % hostile.len()].clone(),
                kind: Kind::Hostile,
                verdict: None,
            },
            88..=92 => Call {
                block: malformed[i % malformed.len()].clone(),
                kind: Kind::Malformed,
                verdict: Some("error".to_owned()),
            },
            93..=97 => Call {
                kind: Kind::Slow,
                ..valid[i % valid.len()].clone()
            },
            _ => Call {
                kind: Kind::HungUp,
                verdict: None,
                ..valid[i % valid.len()].clone()
            },
        };
        mix.push(call);
    }
    mix
}

/// One call; `Err` with what went wrong.
async fn play(addr: SocketAddr, call: &Call) -> Result<(), String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).ok();
    let io = |e: std::io::Error| format!("{:?}: {e}", call.kind);
    if call.kind == Kind::Slow {
        for line in call.block.split_inclusive(|&b| b == b'\n') {
            s.write_all(line).await.map_err(io)?;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    } else {
        s.write_all(&call.block).await.map_err(io)?;
    }
    if call.kind == Kind::HungUp {
        return Ok(());
    }
    let mut got = Vec::new();
    let mut answered = 0;
    let mut buf = [0u8; 2048];
    loop {
        let n = s.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        // Asterisk's answer to each command line received and not yet answered.
        for line in got.split_inclusive(|&b| b == b'\n').skip(answered) {
            if !line.ends_with(b"\n") {
                break;
            }
            let reply: &[u8] = if line.starts_with(b"EXEC ") {
                b"200 result=0\n"
            } else {
                b"200 result=1\n"
            };
            s.write_all(reply).await.ok();
            answered += 1;
        }
    }
    let text = String::from_utf8_lossy(&got);
    if !text.contains("STRANGER=true") && !text.contains("STRANGER=false") {
        return Err(format!("{:?}: no verdict: {text:?}", call.kind));
    }
    match &call.verdict {
        Some(v) if !text.contains(&format!("IPCOUNTRY_VERDICT={v},")) => {
            Err(format!("{:?}: expected {v}: {text:?}", call.kind))
        }
        None if !text.contains("STRANGER=true") => {
            Err(format!("{:?}: let through: {text:?}", call.kind))
        }
        _ => Ok(()),
    }
}

fn usage(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let total = env_or("SOAK_CALLS", 1_000_000);
    let clients = env_or("SOAK_CLIENTS", 32).max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("soak.db").display());
    let cli = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_ipcountry"))
            .arg("--db")
            .arg(&db)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .expect("ipcountry");
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let test_mmdb = common::data_dir().join("maxmind-test-data/GeoLite2-Country-Test.mmdb");
    cli(&["import", test_mmdb.to_str().expect("utf8")]);
    cli(&["country", "add", "GB", "SE"]);
    cli(&["permit", "add", "203.0.113.0/24", "--note", "office"]);
    cli(&["deny", "add", "203.0.113.66", "--note", "known scanner"]);
    let mix = Arc::new(calls(&db));
    let mut expected: Vec<String> = mix
        .iter()
        .filter(|c| c.kind == Kind::Valid)
        .filter_map(|c| c.verdict.clone())
        .collect();
    expected.sort();
    expected.dedup();
    println!(
        "verdicts `ipcountry check` gives the valid calls: {}",
        expected.join(", ")
    );

    let mut server = Server::serve(dir.path(), "soak", &db, &[], None);
    let addr = server.addr;
    let pid = server.child.id();
    std::thread::sleep(Duration::from_millis(300));
    let start = usage(pid);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(AtomicU64::new(0));
    let middle: Arc<Mutex<Option<(u64, usize)>>> = Arc::new(Mutex::new(None));
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (mix, next, done, failed, failures, middle) = (
                mix.clone(),
                next.clone(),
                done.clone(),
                failed.clone(),
                failures.clone(),
                middle.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    if i == total / 2 {
                        *middle.lock().expect("lock") = Some(usage(pid));
                    }
                    let call = &mix[i % mix.len()];
                    let r = tokio::time::timeout(DEADLINE, play(addr, call)).await;
                    let err = match r {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e),
                        Err(_) => Some(format!("{:?}: no answer within {DEADLINE:?}", call.kind)),
                    };
                    if let Some(e) = err {
                        failures.fetch_add(1, Ordering::Relaxed);
                        let mut f = failed.lock().expect("lock");
                        if f.len() < 20 {
                            f.push(format!("call {i}: {e}"));
                        }
                    }
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if d % 100_000 == 0 {
                        eprintln!(
                            "{d} calls, {:.0} calls/s, server {:?}",
                            d as f64 / started.elapsed().as_secs_f64(),
                            usage(pid)
                        );
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("client");
        }
    });
    let took = started.elapsed();
    // Let the hung-up calls' sessions end (reply deadline, 2 s) before the last reading.
    std::thread::sleep(Duration::from_secs(3));
    let end = usage(pid);
    let middle = middle.lock().expect("lock").unwrap_or(start);
    server.stop();
    let failures = failures.load(Ordering::Relaxed);
    println!(
        "soak: {total} calls ({clients} clients) in {:.1} s, {:.0} calls/s",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );
    println!("| | start | middle | end |");
    println!("|---|---|---|---|");
    println!(
        "| server RSS (KiB) | {} | {} | {} |",
        start.0, middle.0, end.0
    );
    println!(
        "| server open descriptors | {} | {} | {} |",
        start.1, middle.1, end.1
    );
    println!("failed calls or wrong verdicts: {failures}");
    for f in failed.lock().expect("lock").iter() {
        println!("  {f}");
    }
    let grew = end.1 > start.1 || end.0 > middle.0 + middle.0 / 10;
    if grew {
        println!(
            "GREW: descriptors {} -> {}, RSS {} -> {} KiB",
            start.1, end.1, middle.0, end.0
        );
    }
    if failures > 0 || grew {
        std::process::exit(1);
    }
}
