//! Heap allocations on the per-call hot path, counted (not timed): a counting global
//! allocator (`stats_alloc`, a dev-dependency: it wraps `System` and needs no `unsafe` here,
//! which the crate's `unsafe_code = "forbid"` would refuse) sees every allocation of one
//! screened call, driven in memory with the recorded Asterisk block.
//!
//! What is asserted:
//! * a table lookup, a verdict (`kind`) and a snapshot `load()` allocate nothing;
//! * each part of a call allocates at most what it is known to need (so a new allocation
//!   fails the test where it is made, and an improvement does not): the connection its read
//!   buffer (commands are encoded into its spare room), parsing the block (`AgiEnv::parse`)
//!   the text, the variables and the argument list, building the request (`CallArgs` +
//!   `ScreenRequest::parse`) only the From's parameter lists, `decide` the list of checks, the
//!   reason's text one string, and the `MSet` command its argument;
//! * a whole call through `session::run` allocates at most the sum of its parts, plus
//!   [`SLACK`]: the session, the timers, sending and replies add nothing.
//!
//! The counts are printed (`cargo test --test alloc -- --nocapture`) and quoted in
//! BENCHMARKS.md. One `#[test]` only: the counters are global, and tests run in parallel.

use std::alloc::System;
use std::net::IpAddr;
use std::sync::Arc;

use ipcountry::agi::command::Command;
use ipcountry::agi::connection::{AgiConnection, Limits};
use ipcountry::agi::env::AgiEnv;
use ipcountry::decision::{self, Trust};
use ipcountry::policy::{Builtins, Policy, SharedPolicy};
use ipcountry::ranges::{IpRange, Rule, RuleKind, RuleSource};
use ipcountry::request::{CallArgs, ScreenRequest};
use ipcountry::resolve::HostResolver;
use ipcountry::session::{self, Context, Outcome, ReplyMode, SessionSettings};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::Notify;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations a whole call may make beyond the sum of its parts: none (the session's
/// futures live in the caller's, and the runtime's timers and pipes need nothing per call).
const SLACK: usize = 0;

const CALLS: usize = 200;

fn allocations(f: impl FnOnce()) -> usize {
    let region = Region::new(GLOBAL);
    f();
    region.change().allocations
}

fn rule(id: i64, kind: RuleKind, range: &str) -> Rule {
    Rule {
        id,
        kind,
        range: range.parse::<IpRange>().expect("range"),
        country: "AA".into(),
        source: RuleSource::Custom,
        note: "office".into(),
        terms: Default::default(),
    }
}

/// The recorded `pjsip-ipv4` block with its two arguments in the source-first order.
fn block() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/asterisk-agi/sessions/pjsip-ipv4.header.raw"
    );
    let raw = String::from_utf8(std::fs::read(path).expect("the recorded block")).expect("utf8");
    let (from, source) = (
        "agi_arg_1: Bob <sip:bob@203.0.113.7>;tag=27303SIPpTag001\n",
        "agi_arg_2: 127.0.0.1:15201\n",
    );
    assert!(raw.contains(from) && raw.contains(source), "the recording");
    raw.replace(from, "agi_arg_1: 127.0.0.1:15201\n")
        .replace(
            source,
            "agi_arg_2: Bob <sip:bob@203.0.113.7>;tag=27303SIPpTag001\n",
        )
        .into_bytes()
}

/// Plays Asterisk on the in-memory pipes: the block, then `200 result=1` to each command,
/// until the server closes. Returns the number of commands.
async fn asterisk(
    mut to_server: DuplexStream,
    mut from_server: DuplexStream,
    block: &[u8],
) -> usize {
    to_server.write_all(block).await.expect("write block");
    let mut buf = [0u8; 512];
    let mut commands = 0;
    loop {
        let n = from_server.read(&mut buf).await.expect("read");
        if n == 0 {
            return commands;
        }
        for _ in buf[..n].iter().filter(|&&b| b == b'\n') {
            commands += 1;
            to_server.write_all(b"200 result=1\n").await.expect("reply");
        }
    }
}

/// Two in-memory pipes (server in/client out, server out/client in), each written and
/// drained once so their buffers exist before any counting starts.
async fn primed_pipes() -> (DuplexStream, DuplexStream, DuplexStream, DuplexStream) {
    let (mut srv_in, mut cli_out) = tokio::io::duplex(64 * 1024);
    let (mut srv_out, mut cli_in) = tokio::io::duplex(64 * 1024);
    let mut sink = vec![0u8; 4096];
    cli_out.write_all(&[0u8; 4096]).await.expect("pre-grow");
    srv_in.read_exact(&mut sink).await.expect("drain");
    srv_out.write_all(&[0u8; 4096]).await.expect("pre-grow");
    cli_in.read_exact(&mut sink).await.expect("drain");
    (srv_in, cli_out, srv_out, cli_in)
}

/// One call through `session::run` on fresh in-memory pipes (created, and filled once with
/// a throwaway byte so their buffers exist, before counting starts).
async fn one_call(ctx: &Context, block: &[u8]) -> (usize, usize) {
    let (srv_in, cli_out, srv_out, cli_in) = primed_pipes().await;
    let region = Region::new(GLOBAL);
    let conn = AgiConnection::new(srv_in, srv_out, Limits::default());
    let session = session::run(conn, ctx, None);
    let (outcome, commands) = tokio::join!(session, asterisk(cli_out, cli_in, block));
    let n = region.change().allocations;
    assert_eq!(outcome, Outcome::Screened);
    (n, commands)
}

/// The same exchange against a server that only frames the block and sends one fixed
/// command (the in-memory "floor"): what the pipes and the fake Asterisk cost.
async fn floor_call(block: &[u8]) -> usize {
    let (mut srv_in, cli_out, mut srv_out, cli_in) = primed_pipes().await;
    let mut buf = Vec::with_capacity(4096);
    let region = Region::new(GLOBAL);
    let server = async {
        loop {
            srv_in.read_buf(&mut buf).await.expect("read");
            if buf.windows(2).any(|w| w == b"\n\n") {
                break;
            }
        }
        srv_out
            .write_all(b"SET VARIABLE STRANGER \"false\"\n")
            .await
            .expect("write");
        let mut reply = [0u8; 64];
        let _ = srv_in.read(&mut reply).await.expect("reply");
        srv_out.shutdown().await.expect("shutdown");
        drop(srv_out);
    };
    let ((), commands) = tokio::join!(server, asterisk(cli_out, cli_in, block));
    assert_eq!(commands, 1);
    region.change().allocations
}

#[test]
fn hot_path_allocations() {
    let rules = vec![
        rule(1, RuleKind::Permit, "203.0.113.0/24"),
        rule(1, RuleKind::Deny, "203.0.113.66"),
        rule(2, RuleKind::Permit, "2001:db8:1::/48"),
    ];
    let policy = Policy::compile(Some(1), rules, Vec::new(), Builtins::On);
    let block = block();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // Lookups and snapshot loads: nothing at all.
    let shared = SharedPolicy::new(Policy::compile(
        Some(1),
        policy.table().rules().to_vec(),
        Vec::new(),
        Builtins::Off,
    ));
    let ips: Vec<IpAddr> = [
        "203.0.113.7",
        "203.0.113.66",
        "198.51.100.9",
        "2001:db8:1::5",
        "::1",
    ]
    .iter()
    .map(|s| s.parse().expect("ip"))
    .collect();
    // arc-swap allocates its per-thread debt list on a thread's first load: warm up.
    std::hint::black_box(shared.load());
    // The count is the whole process's: the fewest of three rounds, so that a stray allocation
    // of the test harness's own thread is not taken for the lookup's (an allocating lookup
    // would count 5,000 or more in every round).
    let n = (0..3)
        .map(|_| {
            allocations(|| {
                for _ in 0..1000 {
                    for ip in &ips {
                        std::hint::black_box(policy.table().lookup(*ip));
                        std::hint::black_box(policy.table().kind(*ip));
                        std::hint::black_box(shared.load().table().kind(*ip));
                    }
                }
            })
        })
        .min()
        .unwrap_or(usize::MAX);
    assert_eq!(n, 0, "lookup, kind and load() must not allocate");

    // The parts of a call, measured alone, each with the count it is known to need.
    let connection = allocations(|| {
        std::hint::black_box(AgiConnection::new(
            tokio::io::empty(),
            tokio::io::sink(),
            Limits::default(),
        ));
    });
    assert!(
        connection <= 1,
        "AgiConnection::new: the read buffer only ({connection})"
    );
    let env_parse = allocations(|| {
        std::hint::black_box(AgiEnv::parse(&block).expect("parses"));
    });
    assert!(
        env_parse <= 3,
        "AgiEnv::parse: the text, the variables, the argument list ({env_parse})"
    );
    let env = AgiEnv::parse(&block).expect("parses");
    let request_build = allocations(|| {
        let call = CallArgs::new(env.args());
        let request = ScreenRequest::parse(&call);
        std::hint::black_box(&request);
    });
    // The nom grammar (the one From parser since the hand-written fast path went) collects
    // the header parameters (`;tag=...`) and the URI's parameter list: two vectors.
    assert!(
        request_build <= 2,
        "CallArgs + ScreenRequest::parse: the From's parameter lists ({request_build})"
    );
    let call = CallArgs::new(env.args());
    let request = ScreenRequest::parse(&call);
    let decide = allocations(|| {
        std::hint::black_box(decision::decide(&policy, &request, Trust::Both, None));
    });
    assert!(decide <= 1, "decide: the list of checks ({decide})");
    let d = decision::decide(&policy, &request, Trust::Both, None);
    let reason_text = allocations(|| {
        std::hint::black_box(d.reason.to_string());
    });
    assert!(reason_text <= 1, "the reason's text ({reason_text})");
    let reason = d.reason.to_string();
    let mut out = Vec::with_capacity(1024);
    let mset_args = allocations(|| {
        let vars = [
            ("STRANGER", "false"),
            ("IPCOUNTRY_VERDICT", "permitted"),
            ("IPCOUNTRY_REASON", reason.as_str()),
        ];
        Command::MSet { vars: &vars }
            .encode(&mut out)
            .expect("encodes");
    });
    assert!(mset_args <= 1, "the MSet argument ({mset_args})");
    let parts = connection + env_parse + request_build + decide + reason_text;

    let shared = Arc::new(SharedPolicy::new(policy));
    let context = |reply| Context {
        policy: shared.clone(),
        resolver: HostResolver::disabled(),
        settings: SessionSettings {
            reply,
            ..SessionSettings::default()
        },
        reload: Arc::new(Notify::new()),
        failures: Default::default(),
        metrics: Default::default(),
        alerts: None,
    };
    let (set_variable, mset, floor) = rt.block_on(async {
        let mut per_mode = Vec::new();
        for mode in [ReplyMode::SetVariable, ReplyMode::MSet] {
            let ctx = context(mode);
            let mut counts = Vec::new();
            for i in 0..CALLS + 20 {
                let (n, commands) = one_call(&ctx, &block).await;
                let want = if mode == ReplyMode::MSet { 1 } else { 3 };
                assert_eq!(commands, want);
                if i >= 20 {
                    counts.push(n); // after warm-up (thread-locals, lazy statics)
                }
            }
            // The median call: a call the machine slowed down can see the runtime allocate
            // (its timer wheel, a task's waker) where a quiet one does not, and that is not
            // the call's own cost; an allocation the call makes shows in every call.
            counts.sort_unstable();
            per_mode.push(counts[counts.len() / 2]);
        }
        // The floor's median too, for the same reason.
        let mut floors = Vec::new();
        for _ in 0..21 {
            floors.push(floor_call(&block).await);
        }
        floors.sort_unstable();
        (per_mode[0], per_mode[1], floors[floors.len() / 2])
    });
    let tracing_off = !tracing::enabled!(tracing::Level::INFO);
    println!("allocations per call (median of {CALLS} calls):");
    println!("  in-memory floor exchange (pipes, fake Asterisk, median of 21): {floor}");
    println!("  session, SET VARIABLE x3: {set_variable} (floor included)");
    println!("  session, EXEC MSet:       {mset} (floor included)");
    println!(
        "  parts: connection {connection}, AgiEnv::parse {env_parse}, \
         CallArgs+ScreenRequest {request_build}, decide {decide}, reason text {reason_text}, \
         MSet argument {mset_args}; no subscriber installed: {tracing_off}"
    );
    assert_eq!(floor, 0, "the in-memory floor exchange allocates nothing");
    assert!(
        set_variable <= parts + SLACK,
        "SET VARIABLE call: {set_variable} > parts {parts} + {SLACK}"
    );
    assert!(
        mset <= parts + mset_args + SLACK,
        "MSet call: {mset} > parts {parts} + mset_args {mset_args} + {SLACK}"
    );
    // The three SET VARIABLEs cost no more allocations than the one EXEC: encoding reuses
    // the connection's buffer.
    assert!(set_variable <= mset, "{set_variable} > {mset}");
}
