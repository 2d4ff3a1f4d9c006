//! Screening over real FastAGI: the recorded Asterisk blocks replayed byte for byte, in the
//! TCP segments Asterisk used, with the exact command bytes asserted.

use std::time::Duration;

use crate::harness::{self, block, ok, play, recorded_segments, verdict_commands};

const OFFICE: &str = "permit #1 203.0.113.0/24 office";

/// (case, STRANGER, verdict, reason) for every recorded `screen` call, under the fixtures' toy
/// policy with DNS disabled.
const CASES: &[(&str, bool, &str, &str)] = &[
    ("pjsip-ipv4", false, "permitted", OFFICE),
    (
        "pjsip-ipv6",
        true,
        "stranger",
        "no permit range for 2001:db8::1",
    ),
    (
        "pjsip-hostname",
        false,
        "permitted",
        "allow-host sipgate.com",
    ),
    (
        "pjsip-anonymous",
        true,
        "stranger",
        "cannot resolve anonymous.invalid: reserved .invalid name",
    ),
    ("pjsip-sips", false, "permitted", OFFICE),
    ("pjsip-addr-spec", false, "permitted", OFFICE),
    ("pjsip-tel-uri", true, "stranger", "From has no host"),
    (
        "pjsip-display-comma-userphone",
        true,
        "stranger",
        "cannot resolve gw.example.com: DNS disabled",
    ),
    ("pjsip-display-escaped", false, "permitted", OFFICE),
    ("pjsip-uppercase-scheme", false, "permitted", OFFICE),
    ("pjsip-no-user", false, "permitted", OFFICE),
    ("pjsip-uri-params-headers", false, "permitted", OFFICE),
    ("pjsip-over-ipv6-transport", false, "permitted", OFFICE),
    ("pjsip-bad-ipv4", true, "stranger", "unparseable From"),
    ("chansip-ipv4", false, "permitted", OFFICE),
    (
        "chansip-ipv6",
        true,
        "stranger",
        "no permit range for 2001:db8::1",
    ),
    (
        "chansip-hostname",
        false,
        "permitted",
        "allow-host sipgate.com",
    ),
    (
        "chansip-anonymous",
        true,
        "stranger",
        "cannot resolve anonymous.invalid: reserved .invalid name",
    ),
    ("chansip-display-escaped", false, "permitted", OFFICE),
    ("chansip-sips", false, "permitted", OFFICE),
    ("chansip-tel-uri", true, "stranger", "From has no host"),
    ("chansip-bad-ipv4", true, "stranger", "unparseable From"),
    ("chansip-bad-ipv6", true, "stranger", "unparseable From"),
    (
        "chansip-over-ipv6-uri-with-port",
        true,
        "stranger",
        "no permit range for 2001:db8::1",
    ),
    ("agi-url-ipv6", false, "permitted", OFFICE),
    ("args-from-variable", false, "permitted", OFFICE),
    ("args-quoted-from", true, "stranger", "bad source address"),
    ("args-literal", true, "stranger", "bad source address"),
    (
        "args-literal-escaped-semicolon",
        true,
        "stranger",
        "bad source address",
    ),
    ("legacy-cut-ip", false, "permitted", OFFICE),
    ("legacy-pipe", false, "permitted", OFFICE),
    ("url-query-args", false, "permitted", OFFICE),
];

#[tokio::test]
async fn recorded_calls_get_exact_commands() {
    let server = harness::start().await;
    for &(case, stranger, verdict, reason) in CASES {
        let segments = recorded_segments(case);
        let t = play(server.addr, &segments, ok, Duration::from_secs(5)).await;
        assert_eq!(
            t.bytes(),
            verdict_commands(stranger, verdict, reason),
            "case {case}"
        );
        assert!(
            t.closed,
            "case {case}: the server must close the connection"
        );
    }
    server.shutdown.cancel();
}

#[tokio::test]
async fn recorded_calls_byte_by_byte() {
    // The worst framing Asterisk could produce: one byte per segment.
    let server = harness::start().await;
    let header =
        std::fs::read(harness::fixtures().join("sessions/pjsip-ipv4.header.raw")).expect("raw");
    let segments: Vec<Vec<u8>> = header.iter().map(|b| vec![*b]).collect();
    let t = play(server.addr, &segments, ok, Duration::from_secs(5)).await;
    assert_eq!(t.bytes(), verdict_commands(false, "permitted", OFFICE));
    server.shutdown.cancel();
}

#[tokio::test]
async fn unknown_or_missing_script_sets_nothing() {
    let server = harness::start().await;
    for case in ["no-script", "getfrom-pjsip", "slow-server"] {
        let t = play(
            server.addr,
            &recorded_segments(case),
            ok,
            Duration::from_secs(5),
        )
        .await;
        assert!(t.closed, "{case}");
        assert_eq!(t.commands.len(), 1, "{case}: {:?}", t.commands);
        assert!(
            t.commands[0].starts_with("VERBOSE \"ipcountry: unknown AGI script"),
            "{case}: {:?}",
            t.commands
        );
        assert!(!t.bytes().contains("SET VARIABLE"), "{case}");
    }
    server.shutdown.cancel();
}

#[tokio::test]
async fn hangup_mid_call_stops_and_closes() {
    let server = harness::start().await;
    // Asterisk sends HANGUP unprompted, then still answers the command it had: the server must
    // send nothing more and close.
    let t = play(
        server.addr,
        &[block(&["<sip:bob@203.0.113.7>", "127.0.0.1"])],
        |n, _| {
            if n == 0 {
                b"HANGUP\n200 result=1\n".to_vec()
            } else {
                b"200 result=1\n".to_vec()
            }
        },
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        t.commands,
        vec!["SET VARIABLE STRANGER \"false\"\n".to_owned()]
    );
    assert!(t.closed);

    // HANGUP already buffered right behind the block: nothing is sent at all.
    let mut seg = block(&["<sip:bob@203.0.113.7>", "127.0.0.1"]);
    seg.extend_from_slice(b"HANGUP\n");
    let t = play(server.addr, &[seg], ok, Duration::from_secs(5)).await;
    assert!(t.commands.is_empty(), "{:?}", t.commands);
    assert!(t.closed);

    // A dead channel (511) also ends the call.
    let t = play(
        server.addr,
        &[block(&["<sip:bob@203.0.113.7>", "127.0.0.1"])],
        |_, _| b"511 Command Not Permitted on a dead channel or intercept routine\n".to_vec(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(t.commands.len(), 1);
    assert!(t.closed);
    server.shutdown.cancel();
}

#[tokio::test]
async fn refused_commands_do_not_stop_the_verdict() {
    let server = harness::start().await;
    // 510 and the multi-line 520 usage reply: the server logs them and goes on.
    let t = play(
        server.addr,
        &[block(&["203.0.113.66", "127.0.0.1"])],
        |n, _| match n {
            0 => b"510 Invalid or unknown command\n".to_vec(),
            1 => b"520-Invalid command syntax.  Proper usage follows:\n Usage: SET VARIABLE <variablename> <value>\n520 End of proper usage.\n".to_vec(),
            _ => b"200 result=1\n".to_vec(),
        },
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        t.bytes(),
        verdict_commands(true, "denied", "deny #1 203.0.113.66/32")
    );
    assert!(t.closed);
    server.shutdown.cancel();
}

#[tokio::test]
async fn silent_asterisk_is_abandoned_after_the_reply_deadline() {
    let server = harness::start().await;
    let t = play(
        server.addr,
        &[block(&["<sip:bob@203.0.113.7>", "127.0.0.1"])],
        |_, _| Vec::new(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(t.commands.len(), 1);
    assert!(
        t.closed,
        "the server must give up on a peer that never answers"
    );
    server.shutdown.cancel();
}

#[tokio::test]
async fn from_header_cannot_inject_agi_commands() {
    let server = harness::start().await;
    // A hostile "From" that tries to smuggle a command after a newline and quotes.
    let evil = "x\" \nEXEC Dial \"SIP/premium-rate\n";
    let mut b = block(&[]);
    b.truncate(b.len() - 1);
    // agi_arg_1 cannot contain a raw LF in a real block (it would end the line), but a CR or
    // quote can reach us: use CR and quotes here.
    b.extend_from_slice(format!("agi_arg_1: {}\n\n", evil.replace('\n', "\r")).as_bytes());
    let t = play(server.addr, &[b], ok, Duration::from_secs(5)).await;
    for c in &t.commands {
        assert!(c.starts_with("SET VARIABLE "), "{c:?}");
        assert_eq!(c.matches('\n').count(), 1, "{c:?}");
        assert!(!c.contains('\r'), "{c:?}");
    }
    assert_eq!(t.commands.len(), 3, "{:?}", t.commands);
    server.shutdown.cancel();
}

// The CLI runs as a blocking child process: keep a worker free for the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_change_reaches_the_running_server() {
    let server = harness::start().await;
    let call = || async {
        play(
            server.addr,
            &[block(&["198.51.100.9", "127.0.0.1"])],
            ok,
            Duration::from_secs(5),
        )
        .await
    };
    assert!(call().await.bytes().contains("STRANGER \"true\""));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipcountry"))
        .args([
            "--db",
            &server.db_url,
            "permit",
            "add",
            "198.51.100.0/24",
            "--note",
            "branch",
        ])
        .output()
        .expect("run ipcountry");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server polls the generation every 100 ms here.
    let mut permitted = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = call().await;
        if t.bytes().contains("STRANGER \"false\"") {
            assert!(
                t.bytes().contains("permit #3 198.51.100.0/24 branch"),
                "{}",
                t.bytes()
            );
            permitted = true;
            break;
        }
    }
    assert!(permitted, "the CLI change never reached the server");
    server.shutdown.cancel();
}

// The CLI runs as a blocking child process: keep a worker free for the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_request_over_agi_rebuilds_now() {
    // A long poll interval: only the explicit reload can pick the change up in time.
    let server = harness::start_with(harness::Options {
        poll: Duration::from_secs(3600),
        ..Default::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    server
        .store
        .add_rule(
            ipcountry::ranges::RuleKind::Deny,
            "203.0.113.7".parse().expect("range"),
            "AA",
            ipcountry::ranges::RuleSource::Custom,
            "",
        )
        .await
        .expect("add");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipcountry"))
        .args([
            "--db",
            &server.db_url,
            "reload",
            "--server",
            &server.addr.to_string(),
        ])
        .output()
        .expect("run ipcountry");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("reloads now"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut denied = false;
    for _ in 0..50 {
        let t = play(
            server.addr,
            &[block(&["203.0.113.7", "127.0.0.1"])],
            ok,
            Duration::from_secs(5),
        )
        .await;
        if t.bytes().contains("\"denied\"") {
            denied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(denied, "reload did not take effect");
    server.shutdown.cancel();
}

#[tokio::test]
async fn database_down_keeps_the_last_good_snapshot() {
    let server = harness::start().await;
    let before = server.policy.load();
    // The database disappears: the store's pool is closed under the running server.
    server.store.close().await;
    let err = ipcountry::reload::reload_now(
        &server.store,
        &server.policy,
        ipcountry::policy::Builtins::On,
    )
    .await;
    assert!(err.is_err(), "a reload from a closed store must fail");
    assert!(
        std::sync::Arc::ptr_eq(&before, &server.policy.load()),
        "the old snapshot must stay"
    );
    // ... and calls are still screened with it, through several poll rounds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = play(
        server.addr,
        &[block(&["203.0.113.66", "127.0.0.1"])],
        ok,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        t.bytes(),
        verdict_commands(true, "denied", "deny #1 203.0.113.66/32")
    );
    server.shutdown.cancel();
}
