//! `--reply mset`: the verdict in one `EXEC MSet` round trip instead of three `SET VARIABLE`s,
//! checked byte for byte on recorded Asterisk blocks, with the comma rewriting of the reason.

use std::sync::Arc;
use std::time::Duration;

use ipcountry::policy::{Builtins, SharedPolicy};
use ipcountry::ranges::{RuleKind, RuleSource};
use ipcountry::resolve::HostResolver;
use ipcountry::session::{Context, ReplyMode, SessionSettings};
use ipcountry::store::Store;
use ipcountry::{reload, server};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::harness::{block, line_segments, play, seed, source_first};

/// A server over the fixtures' toy policy (plus one permit whose note has a comma, quotes and
/// a backslash) that replies with `EXEC MSet`.
async fn start_mset() -> (std::net::SocketAddr, CancellationToken, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("ipcountry.db").display());
    let store = Store::open(&url).await.expect("open store");
    seed(&store).await;
    store
        .add_rule(
            RuleKind::Permit,
            "198.51.100.0/24".parse().expect("range"),
            "AA",
            RuleSource::Custom,
            r#"lab, "bench" \ 2"#,
            Default::default(),
        )
        .await
        .expect("add rule");
    let policy = reload::build(&store, Builtins::On).await.expect("policy");
    store.close().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let ctx = Arc::new(Context {
        policy: Arc::new(SharedPolicy::new(policy)),
        resolver: HostResolver::disabled(),
        settings: SessionSettings {
            env_timeout: Duration::from_millis(500),
            reply_timeout: Duration::from_millis(500),
            reply: ReplyMode::MSet,
            ..SessionSettings::default()
        },
        reload: Arc::new(Notify::new()),
        failures: Default::default(),
        metrics: Default::default(),
        alerts: None,
    });
    tokio::spawn(server::run(
        vec![listener],
        ctx,
        server::ServerOptions::default(),
        shutdown.clone(),
    ));
    (addr, shutdown, dir)
}

/// What Asterisk answers to `EXEC MSet` (MSet's return value, 0).
fn mset_ok(_: usize, _: &str) -> Vec<u8> {
    b"200 result=0\n".to_vec()
}

fn mset_line(stranger: bool, verdict: &str, reason: &str) -> String {
    format!(
        "EXEC MSet \"STRANGER={stranger},IPCOUNTRY_VERDICT={verdict},IPCOUNTRY_REASON={reason}\"\n"
    )
}

#[tokio::test]
async fn recorded_calls_get_one_mset_line() {
    let (addr, shutdown, _dir) = start_mset().await;
    let cases = [
        (
            "pjsip-ipv4",
            false,
            "permitted",
            "permit #1 203.0.113.0/24 office",
        ),
        (
            "chansip-ipv6",
            true,
            "stranger",
            "no permit range for 2001:db8::1",
        ),
        ("pjsip-tel-uri", true, "stranger", "From has no host"),
        (
            "pjsip-hostname",
            false,
            "permitted",
            "allow-host sipgate.com",
        ),
    ];
    for (case, stranger, verdict, reason) in cases {
        let t = play(
            addr,
            &line_segments(&source_first(case).0),
            mset_ok,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(
            t.commands,
            vec![mset_line(stranger, verdict, reason)],
            "case {case}"
        );
        assert!(
            t.closed,
            "case {case}: the server must close after the reply"
        );
    }
    shutdown.cancel();
}

#[tokio::test]
async fn deny_and_rewritten_reason() {
    let (addr, shutdown, _dir) = start_mset().await;
    let t = play(
        addr,
        &[block(&["127.0.0.1:5060", "<sip:bob@203.0.113.66>"])],
        mset_ok,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        t.commands,
        vec![mset_line(true, "denied", "deny #1 203.0.113.66/32")]
    );
    // The note `lab, "bench" \ 2`: no comma, quote or backslash reaches MSet's parser.
    let t = play(
        addr,
        &[block(&["198.51.100.20", "<sip:carol@198.51.100.20>"])],
        mset_ok,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        t.commands,
        vec![mset_line(
            false,
            "permitted",
            "permit #3 198.51.100.0/24 lab; 'bench' / 2"
        )]
    );
    assert_eq!(t.commands[0].matches(',').count(), 2);
    assert!(t.closed);
    shutdown.cancel();
}

#[tokio::test]
async fn hangup_before_the_reply_ends_the_call() {
    let (addr, shutdown, _dir) = start_mset().await;
    // HANGUP right behind the block: nothing is sent.
    let mut seg = block(&["127.0.0.1", "<sip:bob@203.0.113.7>"]);
    seg.extend_from_slice(b"HANGUP\n");
    let t = play(addr, &[seg], mset_ok, Duration::from_secs(5)).await;
    assert!(t.commands.is_empty(), "{:?}", t.commands);
    assert!(t.closed);
    // Line by line, as Asterisk writes: the same single command.
    let header = block(&["127.0.0.1", "<sip:bob@203.0.113.7>"]);
    let lines: Vec<Vec<u8>> = header
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    let t = play(addr, &lines, mset_ok, Duration::from_secs(5)).await;
    assert_eq!(
        t.commands,
        vec![mset_line(
            false,
            "permitted",
            "permit #1 203.0.113.0/24 office"
        )]
    );
    shutdown.cancel();
}
