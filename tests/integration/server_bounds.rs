//! The server's bounds: malformed and oversized blocks are answered `STRANGER`, stalled
//! peers are dropped, without delaying anyone else; many concurrent calls are all answered; shutdown drains calls in flight.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{self, block, error_commands, line_segments, ok, play, verdict_commands};

/// Reads until EOF (or the deadline): what the server sent, and whether it closed.
async fn drain(s: &mut TcpStream, deadline: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn malformed_blocks_are_answered_stranger() {
    let server = harness::start().await;
    for (bad, reason) in [
        (
            &b"this is not agi\n\n"[..],
            "bad AGI environment: AGI environment line 1: does not start with `agi_`",
        ),
        (
            b"agi_network yes\n\n",
            "bad AGI environment: AGI environment line 1: no `: ` after the variable name",
        ),
        (
            b"\xff\xfe\xfd: x\n\n",
            "bad AGI environment: AGI environment line 1: does not start with `agi_`",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "bad AGI environment: AGI environment line 1: does not start with `agi_`",
        ),
        (
            b"agi_network_script: screen\nagi_arg_1: 198.51.100.9\nagi_arg_1: 127.0.0.1\n\n",
            "bad AGI environment: AGI environment line 3: variable name repeats an earlier line",
        ),
    ] {
        let t = play(server.addr, &[bad.to_vec()], ok, Duration::from_secs(3)).await;
        assert!(t.closed, "{bad:?}");
        assert_eq!(t.bytes(), error_commands(reason), "{bad:?}");
    }
    // A line over the limit, in a block that does end: read to its end, then answered.
    let mut long = b"agi_network: yes\nagi_network_script: screen\nagi_arg_1: ".to_vec();
    long.extend(vec![b'x'; 100_000]);
    long.extend(b"\nagi_arg_2: y\n\n");
    let t = play(
        server.addr,
        &line_segments(&long),
        ok,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(
        t.bytes(),
        error_commands("AGI environment over the limits: AGI line longer than 8192 bytes")
    );
    // ... and the server is fine afterwards.
    let t = play(
        server.addr,
        &[block(&["127.0.0.1", "203.0.113.7"])],
        ok,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        t.bytes(),
        verdict_commands(false, "permitted", "permit #1 203.0.113.0/24 office")
    );
    server.shutdown.cancel();
}

#[tokio::test]
async fn giant_line_and_giant_block_are_cut_off() {
    let server = harness::start().await;
    // One 1 MiB line: the server must stop reading long before the end.
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    let giant = vec![b'a'; 1 << 20];
    let _ = s.write_all(b"agi_network: ").await;
    let _ = s.write_all(&giant).await; // may fail with a reset once the server has closed
    let (sent, closed) = drain(&mut s, Duration::from_secs(3)).await;
    assert!(closed && sent.is_empty());

    // Many short lines, never a blank one.
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    let mut lines = Vec::new();
    for i in 0..5000 {
        lines.extend_from_slice(format!("agi_x{i}: y\n").as_bytes());
    }
    let _ = s.write_all(&lines).await;
    let (sent, closed) = drain(&mut s, Duration::from_secs(3)).await;
    assert!(closed && sent.is_empty());
    server.shutdown.cancel();
}

#[tokio::test]
async fn stalled_and_vanished_peers_do_not_block_other_calls() {
    let server = harness::start().await;
    // 20 peers send half a block and stall; 20 more connect and say nothing; one vanishes.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        s.write_all(b"agi_network: yes\nagi_network_script: screen\n")
            .await
            .expect("write");
        stalled.push(s);
        stalled.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    {
        let mut gone = TcpStream::connect(server.addr).await.expect("connect");
        gone.write_all(b"agi_network: yes\n").await.expect("write");
    }
    // A real call is answered at once, while they stall.
    let t = play(
        server.addr,
        &[block(&["127.0.0.1", "203.0.113.66"])],
        ok,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(
        t.bytes(),
        verdict_commands(true, "denied", "deny #1 203.0.113.66/32")
    );
    // The stalled peers are dropped after the block deadline (500 ms in tests).
    for mut s in stalled {
        let (sent, closed) = drain(&mut s, Duration::from_secs(3)).await;
        assert!(closed, "a stalled peer must be dropped");
        assert!(sent.is_empty());
    }
    server.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_are_all_answered() {
    // This process holds both ends: 1,000 client sockets and the server's. The shell's soft
    // limit (often 1,024) must not decide the test: raise it as `serve` does.
    ipcountry::fdlimit::ensure(ipcountry::fdlimit::needed(1000 + 256, 1))
        .expect("the open-files limit this test needs");
    // 1,000 calls at once against a cap of 256 sessions: the rest wait in the backlog.
    let server = harness::start_with(harness::Options {
        env_timeout: Duration::from_secs(10),
        reply_timeout: Duration::from_secs(10),
        ..Default::default()
    })
    .await;
    let addr = server.addr;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..1000u32 {
        calls.spawn(async move {
            // Alternate a permitted, a denied and a stranger caller.
            let (from, want) = match i % 3 {
                0 => ("203.0.113.7", "IPCOUNTRY_VERDICT=permitted,"),
                1 => ("203.0.113.66", "IPCOUNTRY_VERDICT=denied,"),
                _ => ("198.51.100.9", "IPCOUNTRY_VERDICT=stranger,"),
            };
            let t = play(
                addr,
                &[block(&["127.0.0.1", from])],
                ok,
                Duration::from_secs(60),
            )
            .await;
            (
                t.closed && t.commands.len() == 1 && t.bytes().contains(want),
                i,
            )
        });
    }
    let mut answered = 0;
    while let Some(r) = calls.join_next().await {
        let (good, i) = r.expect("call task");
        assert!(good, "call {i} was not answered correctly");
        answered += 1;
    }
    assert_eq!(answered, 1000);
    server.shutdown.cancel();
}

#[tokio::test]
async fn shutdown_finishes_calls_in_flight_and_refuses_new_ones() {
    let server = harness::start().await;
    // A call whose "Asterisk" answers slowly, so it is in flight when shutdown starts.
    let addr = server.addr;
    let slow = tokio::spawn(async move {
        play(
            addr,
            &[block(&["127.0.0.1", "203.0.113.7"])],
            |_, _| {
                std::thread::sleep(Duration::from_millis(150));
                b"200 result=1\n".to_vec()
            },
            Duration::from_secs(10),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown.cancel();
    let t = slow.await.expect("slow call");
    assert_eq!(
        t.bytes(),
        verdict_commands(false, "permitted", "permit #1 203.0.113.0/24 office"),
        "the call in flight must be completed"
    );
    assert!(t.closed);
    tokio::time::timeout(Duration::from_secs(5), server.handle)
        .await
        .expect("server stops within the grace period")
        .expect("server task");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new calls after shutdown"
    );
}

/// An address of this machine that is not loopback: the one the kernel would send from to a
/// documentation address (a UDP "connect" sends nothing), else the first global IPv4 address
/// `ip` lists, else a dummy interface's made for the test (CI runs as root).
fn non_loopback_address() -> std::net::IpAddr {
    if let Some(ip) = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.123:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
    {
        return ip;
    }
    let out = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "scope", "global"])
        .output()
        .expect("ip (iproute2) is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some(ip) = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|ip| ip.parse().ok())
    {
        return ip;
    }
    // No global address: a dummy interface of our own (CI runs as root).
    let ip = "198.18.0.1";
    for args in [
        &["link", "add", "ipc-test0", "type", "dummy"][..],
        &["addr", "add", "198.18.0.1/32", "dev", "ipc-test0"],
        &["link", "set", "ipc-test0", "up"],
    ] {
        let st = std::process::Command::new("ip")
            .args(args)
            .status()
            .expect("ip");
        assert!(st.success(), "ip {args:?}");
    }
    ip.parse().expect("ip")
}

#[tokio::test]
async fn only_allowed_clients_are_served_off_loopback() {
    let ip = non_loopback_address();
    let listen = std::net::SocketAddr::new(ip, 0);
    let call_from = |addr: std::net::SocketAddr| async move {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(std::net::SocketAddr::new(ip, 0))
            .expect("bind the client");
        let mut s = socket.connect(addr).await.expect("connect");
        let _ = s.write_all(&block(&["127.0.0.1", "203.0.113.7"])).await;
        let mut sent = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return sent,
                Ok(Ok(n)) => {
                    sent.extend_from_slice(&buf[..n]);
                    let _ = s.write_all(b"200 result=0\n").await;
                }
            }
        }
    };
    // Not allowed: closed before anything is read, nothing sent.
    let server = harness::start_with(harness::Options {
        listen,
        ..Default::default()
    })
    .await;
    assert!(
        call_from(server.addr).await.is_empty(),
        "a client off the list gets nothing"
    );
    server.shutdown.cancel();
    // Allowed: answered.
    let server = harness::start_with(harness::Options {
        listen,
        allow_clients: vec![ipnet::IpNet::from(ip)],
        ..Default::default()
    })
    .await;
    let sent = String::from_utf8(call_from(server.addr).await).expect("utf8");
    assert_eq!(
        sent,
        verdict_commands(false, "permitted", "permit #1 203.0.113.0/24 office")
    );
    server.shutdown.cancel();
}
