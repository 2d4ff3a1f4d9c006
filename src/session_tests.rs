//! Tests of `session.rs` over in-memory pipes: the fail-closed answers, and the property that
//! no From header, however hostile, gets a stranger through.

use super::*;
use crate::agi::args::separate_args;
use crate::agi::env::encode_block;
use crate::policy::{Builtins, Policy};
use crate::ranges::{Rule, RuleKind, RuleSource};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn context(reply: ReplyMode) -> Context {
    let rule = |id, kind, range: &str| Rule {
        id,
        kind,
        range: range.parse().expect("range"),
        country: "AA".into(),
        source: RuleSource::Custom,
        note: String::new(),
        terms: Default::default(),
    };
    Context {
        policy: Arc::new(SharedPolicy::new(Policy::compile(
            Some(1),
            vec![
                rule(1, RuleKind::Permit, "203.0.113.0/24"),
                rule(1, RuleKind::Deny, "203.0.113.66"),
            ],
            Vec::new(),
            Builtins::On,
        ))),
        resolver: HostResolver::disabled(),
        settings: SessionSettings {
            env_timeout: Duration::from_millis(500),
            reply_timeout: Duration::from_millis(500),
            reply,
            ..SessionSettings::default()
        },
        reload: Arc::new(Notify::new()),
        failures: Default::default(),
        metrics: Default::default(),
        alerts: None,
    }
}

/// Plays Asterisk over an in-memory pipe: writes `input`, answers every command line with
/// `200 result=1`, and returns the command lines the session sent and its outcome.
async fn call(ctx: &Context, input: &[u8], peer: Option<SocketAddr>) -> (Vec<String>, Outcome) {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (r, w) = tokio::io::split(theirs);
    let conn = AgiConnection::new(r, w, ctx.settings.limits);
    let session = run(conn, ctx, peer);
    let asterisk = async move {
        let (mut r, mut w) = tokio::io::split(ours);
        w.write_all(input).await.expect("write the block");
        let mut commands = Vec::new();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = r.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                commands.push(String::from_utf8(line).expect("commands are UTF-8"));
                let _ = w.write_all(b"200 result=1\n").await;
            }
        }
        commands
    };
    let (outcome, commands) = tokio::join!(session, asterisk);
    (commands, outcome)
}

fn block(args: &[&[u8]]) -> Vec<u8> {
    let mut b = b"agi_network: yes\nagi_network_script: screen\nagi_uniqueid: 1.1\n".to_vec();
    for (i, a) in args.iter().enumerate() {
        b.extend_from_slice(format!("agi_arg_{}: ", i + 1).as_bytes());
        b.extend_from_slice(a);
        b.push(b'\n');
    }
    b.push(b'\n');
    b
}

fn error_answer(reason: &str) -> Vec<String> {
    vec![
        "SET VARIABLE STRANGER \"true\"\n".to_owned(),
        "SET VARIABLE IPCOUNTRY_VERDICT \"error\"\n".to_owned(),
        format!("SET VARIABLE IPCOUNTRY_REASON \"{reason}\"\n"),
    ]
}

#[tokio::test]
async fn every_failure_after_a_complete_block_is_answered_stranger() {
    let ctx = context(ReplyMode::SetVariable);
    let cases: &[(&[u8], &str)] = &[
        (
            b"agi_a: 1\nagi_a: 2\n\n",
            "bad AGI environment: AGI environment line 2: variable name repeats an earlier line",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "bad AGI environment: AGI environment line 1: does not start with `agi_`",
        ),
        (
            b"agi_network: yes\n\n",
            "no AGI script name (the URL needs a path: agi://host:4573/screen)",
        ),
        (
            b"agi_network_script: scren\nagi_arg_1: 198.51.100.9\n\n",
            "unknown AGI script \\\"scren\\\" (this server runs `screen`)",
        ),
        (
            b"agi_network_script: screen?from=203.0.113.7&src=127.0.0.1\n\n",
            "unknown AGI script \\\"screen?from=203.0.113.7&src=127.0.0.1\\\" (this server runs `screen`)",
        ),
    ];
    for (input, reason) in cases {
        let (commands, outcome) = call(&ctx, input, None).await;
        assert_eq!(
            commands,
            error_answer(reason),
            "{}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(outcome, Outcome::Failed);
    }
    // A line over the limit: the block is read to its end, then answered.
    let mut long = b"agi_network_script: screen\nagi_arg_1: ".to_vec();
    long.extend(vec![b'x'; 20_000]);
    long.extend(b"\n\n");
    let (commands, outcome) = call(&ctx, &long, None).await;
    assert_eq!(
        commands,
        error_answer("AGI environment over the limits: AGI line longer than 8192 bytes")
    );
    assert_eq!(outcome, Outcome::Failed);
    // Reload from another host is refused, and answered.
    let peer: SocketAddr = "192.0.2.1:5000".parse().expect("addr");
    let (commands, _) = call(&ctx, b"agi_network_script: reload\n\n", Some(peer)).await;
    assert_eq!(
        commands,
        error_answer("reload is only taken from a loopback address")
    );
}

#[tokio::test]
async fn the_error_answer_in_mset_mode() {
    let ctx = context(ReplyMode::MSet);
    let (commands, outcome) = call(&ctx, b"agi_x: 1\nagi_x: 2\n\n", None).await;
    assert_eq!(
        commands,
        ["EXEC MSet \"STRANGER=true,IPCOUNTRY_VERDICT=error,IPCOUNTRY_REASON=bad AGI environment: AGI environment line 2: variable name repeats an earlier line\"\n"]
    );
    assert_eq!(outcome, Outcome::Failed);
}

#[tokio::test]
async fn nothing_is_sent_without_a_complete_block() {
    let ctx = context(ReplyMode::SetVariable);
    for input in [
        &b""[..],
        b"agi_network: yes\n",
        b"agi_network: yes\nagi_arg_1: 1.2.3.4",
    ] {
        let (commands, outcome) = call(&ctx, input, None).await;
        assert!(commands.is_empty(), "{commands:?}");
        assert_eq!(outcome, Outcome::Dropped);
    }
}

#[tokio::test]
async fn a_byte_that_is_not_utf8_in_the_display_name_changes_nothing() {
    let ctx = context(ReplyMode::SetVariable);
    // A permitted caller from a permitted source: permitted.
    let (commands, _) = call(
        &ctx,
        &block(&[b"203.0.113.7:5060", b"Bob \xc3 <sip:bob@203.0.113.7>;tag=1"]),
        None,
    )
    .await;
    assert_eq!(commands[0], "SET VARIABLE STRANGER \"false\"\n");
    // The same byte in the host: a stranger.
    let (commands, _) = call(
        &ctx,
        &block(&[b"203.0.113.7:5060", b"Bob <sip:bob@203.0.113.\xc3>;tag=1"]),
        None,
    )
    .await;
    assert_eq!(commands[0], "SET VARIABLE STRANGER \"true\"\n");
    assert_eq!(
        commands[2],
        "SET VARIABLE IPCOUNTRY_REASON \"unparseable From\"\n"
    );
}

#[test]
fn reasons_are_capped_at_a_character_boundary() {
    let long = "é".repeat(MAX_REASON);
    let capped = cap(&long, MAX_REASON);
    assert_eq!(capped.len(), MAX_REASON);
    assert!(capped.chars().all(|c| c == 'é'));
    assert_eq!(cap("short", MAX_REASON), "short");
}

/// A From header as a caller could write it: any bytes, weighted towards the ones Asterisk's
/// argument splitter and the From parser treat specially.
fn hostile_from() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b",".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"(".to_vec()),
        Just(b")".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"<".to_vec()),
        Just(b">".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\xc3".to_vec()),
        Just(b" ".to_vec()),
        Just(b"203.0.113.7".to_vec()),
        Just(b"127.0.0.1".to_vec()),
        Just(b"sip:bob@203.0.113.7".to_vec()),
        Just(b"<sip:bob@203.0.113.7:5060>".to_vec()),
        Just(b"[::1]:5060".to_vec()),
        Just(b";tag=x".to_vec()),
        "[ -~]{0,6}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..4),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the From, placed after a stranger's source in `AGI(url,${source},${From})`
    /// and split as Asterisk splits it, the call is never permitted, and it is answered: the
    /// first command sets `STRANGER` to `true`.
    #[test]
    fn no_from_gets_a_stranger_through(
        from in hostile_from(),
        source in prop_oneof![Just("198.51.100.9:5060"), Just("198.51.100.9"), Just("[2001:db8::9]:5060")],
        mset in any::<bool>(),
    ) {
        let ctx = context(if mset { ReplyMode::MSet } else { ReplyMode::SetVariable });
        let mut text = format!("{source},").into_bytes();
        text.extend_from_slice(&from);
        let args = separate_args(&text);
        let mut input = b"agi_network: yes\nagi_network_script: screen\n".to_vec();
        for (i, a) in args.iter().enumerate() {
            input.extend_from_slice(format!("agi_arg_{}: ", i + 1).as_bytes());
            input.extend_from_slice(a);
            input.push(b'\n');
        }
        input.push(b'\n');
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let (commands, _) = rt.block_on(call(&ctx, &input, None));
        let first = commands.first().cloned().unwrap_or_default();
        prop_assert!(
            first.starts_with("SET VARIABLE STRANGER \"true\"") || first.starts_with("EXEC MSet \"STRANGER=true,"),
            "first command {:?} for args {:?}", first, args
        );
        prop_assert!(!commands.iter().any(|c| c.contains("permitted") || c.contains("\"false\"") || c.contains("=false")));
    }
}

#[test]
fn encode_block_is_what_the_tests_replay() {
    // The test helper above and the library's encoder agree on the plain case.
    let ours = block(&[b"198.51.100.9"]);
    let lib = encode_block(&[
        ("network", "yes"),
        ("network_script", "screen"),
        ("uniqueid", "1.1"),
        ("arg_1", "198.51.100.9"),
    ])
    .expect("valid");
    assert_eq!(ours, lib);
}
