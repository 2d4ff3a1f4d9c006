//! Test harness: start a server on an ephemeral port over a fresh database, and play Asterisk's
//! side of FastAGI with raw bytes.
//!
//! The database is a temporary SQLite file, or, with `IPCOUNTRY_TEST_DB=mysql` or `postgres`,
//! a database of its own on the server `IPCOUNTRY_TEST_MYSQL` / `IPCOUNTRY_TEST_POSTGRES` names
//! (`ipcountry::store::testing`): the whole suite runs on each backend that way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipcountry::agi::connection::Limits;
use ipcountry::hosts::HostPattern;
use ipcountry::policy::{Builtins, SharedPolicy};
use ipcountry::ranges::{IpRange, RuleKind, RuleSource};
use ipcountry::resolve::HostResolver;
use ipcountry::session::{Context, ReplyMode, SessionSettings};
use ipcountry::store::Store;
use ipcountry::{reload, server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The recorded FastAGI sessions.
pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/asterisk-agi")
}

/// The data files (`IPCOUNTRY_DATA`, by default `../shared/data` beside the repository).
pub(crate) fn data_dir() -> PathBuf {
    std::env::var_os("IPCOUNTRY_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}

/// The URL of a fresh, empty database for one test, on the suite's backend (a file in `dir`
/// on SQLite).
pub(crate) fn db_url(dir: &Path) -> String {
    ipcountry::store::testing::fresh_db_url(dir)
}

/// A running server over its own database.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) store: Store,
    pub(crate) db_url: String,
    pub(crate) policy: Arc<SharedPolicy>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) handle: JoinHandle<()>,
    /// Where `/metrics` and `/healthz` are, when asked for.
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// The reload watcher's request (what `agi://…/reload` and a knock notify).
    pub(crate) reload: Arc<Notify>,
    /// The server's counters.
    pub(crate) metrics: Arc<ipcountry::metrics::Metrics>,
    _dir: tempfile::TempDir,
}

/// Server settings for tests: short deadlines so stalls show quickly.
pub(crate) struct Options {
    pub(crate) max_sessions: usize,
    pub(crate) env_timeout: Duration,
    pub(crate) reply_timeout: Duration,
    pub(crate) poll: Duration,
    pub(crate) grace: Duration,
    pub(crate) limits: Limits,
    /// Nothing is resolved by default (`.invalid` names are refused, every other name fails
    /// with "DNS disabled"): no DNS traffic leaves the machine.
    pub(crate) resolver: HostResolver,
    /// How the verdict is written back (the default: one `EXEC MSet`).
    pub(crate) reply: ReplyMode,
    /// Monitor mode (every caller let through, the real verdict reported).
    pub(crate) monitor: bool,
    /// Where to listen (loopback, port 0, by default).
    pub(crate) listen: std::net::SocketAddr,
    /// Peers taken besides loopback ones.
    pub(crate) allow_clients: Vec<ipnet::IpNet>,
    /// Serve `/metrics` and `/healthz` (with this snapshot age) on a port of their own.
    pub(crate) healthz_max_age: Option<Duration>,
    /// The `--on-stranger` command's queue.
    pub(crate) alerts: Option<ipcountry::alerts::Alerts>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_sessions: 256,
            env_timeout: Duration::from_millis(500),
            reply_timeout: Duration::from_millis(500),
            poll: Duration::from_millis(100),
            grace: Duration::from_secs(3),
            limits: Limits::default(),
            resolver: HostResolver::disabled(),
            reply: ReplyMode::default(),
            monitor: false,
            listen: ([127, 0, 0, 1], 0).into(),
            allow_clients: Vec::new(),
            healthz_max_age: None,
            alerts: None,
        }
    }
}

/// The toy policy the fixtures were recorded against: permit 203.0.113.0/24 ("office") and
/// 2001:db8:1::/48, deny 203.0.113.66, allow-host sipgate.com.
pub(crate) async fn seed(store: &Store) {
    let add = |kind, r: &str, note: &'static str| {
        let range: IpRange = r.parse().expect("range");
        async move {
            store
                .add_rule(
                    kind,
                    range,
                    "AA",
                    RuleSource::Custom,
                    note,
                    Default::default(),
                )
                .await
                .expect("add rule")
        }
    };
    add(RuleKind::Permit, "203.0.113.0/24", "office").await;
    add(RuleKind::Deny, "203.0.113.66", "").await;
    add(RuleKind::Permit, "2001:db8:1::/48", "").await;
    let p = HostPattern::parse("sipgate.com").expect("pattern");
    store
        .add_allow_host(p.as_str(), "", None)
        .await
        .expect("allow host");
}

pub(crate) async fn start() -> TestServer {
    start_with(Options::default()).await
}

pub(crate) async fn start_with(opts: Options) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_url = db_url(dir.path());
    let store = Store::open(&db_url).await.expect("open store");
    seed(&store).await;
    let policy = reload::build(&store, Builtins::On)
        .await
        .expect("build policy");
    let shared = Arc::new(SharedPolicy::new(policy));
    let listener = TcpListener::bind(opts.listen).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let notify = Arc::new(Notify::new());
    let mut metrics = ipcountry::metrics::Metrics::new();
    metrics.watch(shared.clone(), opts.resolver.clone(), opts.alerts.clone());
    let metrics = Arc::new(metrics);
    let mut metrics_addr = None;
    if let Some(max_age) = opts.healthz_max_age {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind metrics");
        metrics_addr = Some(listener.local_addr().expect("addr"));
        tokio::spawn(ipcountry::metrics::serve(
            listener,
            metrics.clone(),
            shared.clone(),
            max_age,
            shutdown.clone(),
        ));
    }
    let ctx = Arc::new(Context {
        policy: shared.clone(),
        resolver: opts.resolver,
        settings: SessionSettings {
            trust: ipcountry::decision::Trust::Both,
            limits: opts.limits,
            env_timeout: opts.env_timeout,
            reply_timeout: opts.reply_timeout,
            reply: opts.reply,
            monitor: opts.monitor,
        },
        reload: notify.clone(),
        failures: Default::default(),
        metrics: metrics.clone(),
        alerts: opts.alerts,
    });
    tokio::spawn(reload::watch(
        store.clone(),
        shared.clone(),
        Builtins::On,
        opts.poll,
        notify.clone(),
        shutdown.clone(),
    ));
    let options = server::ServerOptions::new(opts.max_sessions, opts.grace)
        .expect("options")
        .allow_clients(opts.allow_clients);
    let handle = tokio::spawn(server::run(vec![listener], ctx, options, shutdown.clone()));
    TestServer {
        addr,
        store,
        db_url,
        policy: shared,
        shutdown,
        handle,
        metrics_addr,
        reload: notify,
        metrics,
        _dir: dir,
    }
}

/// What the fake Asterisk saw.
#[derive(Debug, Default)]
pub(crate) struct Transcript {
    /// Every command line the server sent, in order (with its `\n`).
    pub(crate) commands: Vec<String>,
    /// Whether the server closed the connection (EOF) within the deadline.
    pub(crate) closed: bool,
}

impl Transcript {
    pub(crate) fn bytes(&self) -> String {
        self.commands.concat()
    }
}

/// Plays Asterisk: writes `segments` one write each (with a flush and a yield between, so they
/// travel as separate TCP segments), then answers each command with `answer(n, command)` until
/// the server closes or `deadline` passes.
pub(crate) async fn play(
    addr: SocketAddr,
    segments: &[Vec<u8>],
    answer: impl Fn(usize, &str) -> Vec<u8>,
    deadline: Duration,
) -> Transcript {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    for seg in segments {
        s.write_all(seg).await.expect("write segment");
        s.flush().await.expect("flush");
        tokio::task::yield_now().await;
    }
    let mut t = Transcript::default();
    let mut buf = Vec::new();
    let end = tokio::time::Instant::now() + deadline;
    loop {
        let mut chunk = [0u8; 4096];
        let n = match tokio::time::timeout_at(end, s.read(&mut chunk)).await {
            Err(_) => break,
            Ok(Err(_)) => {
                t.closed = true;
                break;
            }
            Ok(Ok(0)) => {
                t.closed = true;
                break;
            }
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let line = String::from_utf8(line).expect("server sent UTF-8");
            let reply = answer(t.commands.len(), &line);
            t.commands.push(line);
            if !reply.is_empty() {
                // The server may already have closed (e.g. after HANGUP): ignore write errors.
                let _ = s.write_all(&reply).await;
            }
        }
    }
    t
}

/// Asterisk's normal answers: `200 result=0` to `EXEC MSet` (the application's return
/// value), `200 result=1` to `SET VARIABLE` and `VERBOSE`.
pub(crate) fn ok(_: usize, command: &str) -> Vec<u8> {
    if command.starts_with("EXEC ") {
        b"200 result=0\n".to_vec()
    } else {
        b"200 result=1\n".to_vec()
    }
}

/// The TCP reads Asterisk made, as recorded in `sessions/<case>.md` (`<<` lines, Python-escaped),
/// up to and including the end of the environment block.
pub(crate) fn recorded_segments(case: &str) -> Vec<Vec<u8>> {
    let md = std::fs::read_to_string(fixtures().join(format!("sessions/{case}.md"))).expect("md");
    let mut segs = Vec::new();
    let mut total = Vec::new();
    for line in md.lines() {
        let l = line.trim_start();
        let Some(rest) = l.split_once(" << '").map(|(_, r)| r) else {
            continue;
        };
        let Some(body) = rest.strip_suffix('\'') else {
            continue;
        };
        let seg = unescape_py(body);
        total.extend_from_slice(&seg);
        segs.push(seg);
        if total.windows(2).any(|w| w == b"\n\n") {
            break;
        }
    }
    let header =
        std::fs::read(fixtures().join(format!("sessions/{case}.header.raw"))).expect("raw");
    assert!(
        total.starts_with(&header),
        "{case}: recorded segments do not rebuild the header"
    );
    segs
}

fn unescape_py(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'\'' => out.push(b'\''),
                b'"' => out.push(b'"'),
                b'x' if i + 3 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("hex");
                    out.push(u8::from_str_radix(hex, 16).expect("hex digit"));
                    i += 4;
                    continue;
                }
                other => {
                    out.push(b'\\');
                    out.push(other);
                }
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The recorded block `case`, rewritten to the argument order ipcountry requires,
/// `AGI(url,${source},${From})`, as Asterisk would deliver it.
///
/// The recordings were made with `AGI(url,${From},${source})`. Asterisk's splitter
/// (`ipcountry::agi::args`) reads left to right, and its state is neutral again at the comma
/// that ends the source (an address has no quotes and balanced brackets), so the From's text is
/// cut into exactly the pieces it was cut into before; only their place changes:
///
/// * if some argument after the first is an address, it is the source, and the block gets
///   `[source] + the arguments before it + the arguments after it` (arguments after the source,
///   such as `args-from-variable`'s extra ones, now follow the From and become part of it);
/// * if none is, but an argument ends in `,<address>`, the From left a `(` or `[` open and
///   swallowed the source (`hostile-pjsip-paren-display`, `chansip-bad-ipv6`): with the source
///   first nothing follows the From, so the block gets `[source] + the pieces without it`;
/// * otherwise (no source was passed: `legacy-cut-ip`, `args-literal`, URL-style arguments) the
///   block is replayed as recorded.
///
/// Bytes are kept as they are (the hostile blocks are not all UTF-8). Returns the block and
/// whether it was rewritten.
pub(crate) fn source_first(case: &str) -> (Vec<u8>, bool) {
    let raw =
        std::fs::read(fixtures().join(format!("sessions/{case}.header.raw"))).expect("header");
    let lines: Vec<&[u8]> = raw.split_inclusive(|&b| b == b'\n').collect();
    let is_arg = |l: &[u8]| l.starts_with(b"agi_arg_");
    let args: Vec<&[u8]> = lines
        .iter()
        .filter(|l| is_arg(l))
        .map(|l| {
            let value = &l[l.iter().position(|&b| b == b' ').map_or(l.len(), |i| i + 1)..];
            value.strip_suffix(b"\n").unwrap_or(value)
        })
        .collect();
    let is_source = |v: &[u8]| {
        std::str::from_utf8(v)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .is_some_and(|t| ipcountry::request::parse_source(t).is_ok())
    };
    let reordered: Option<Vec<Vec<u8>>> =
        if let Some(k) = (1..args.len()).find(|&k| is_source(args[k])) {
            let mut v = vec![args[k].to_vec()];
            v.extend(args[..k].iter().map(|a| a.to_vec()));
            v.extend(args[k + 1..].iter().map(|a| a.to_vec()));
            Some(v)
        } else {
            args.iter().enumerate().find_map(|(i, a)| {
                let comma = a.iter().rposition(|&b| b == b',')?;
                is_source(&a[comma + 1..]).then(|| {
                    let mut v = vec![a[comma + 1..].to_vec()];
                    v.extend(args[..i].iter().map(|a| a.to_vec()));
                    v.push(a[..comma].to_vec());
                    v.extend(args[i + 1..].iter().map(|a| a.to_vec()));
                    v
                })
            })
        };
    let Some(new_args) = reordered else {
        return (raw, false);
    };
    let mut out: Vec<u8> = Vec::new();
    for line in lines.iter().filter(|l| !is_arg(l) && **l != b"\n") {
        out.extend_from_slice(line);
    }
    for (i, a) in new_args.iter().enumerate() {
        out.extend_from_slice(format!("agi_arg_{}: ", i + 1).as_bytes());
        out.extend_from_slice(a);
        out.push(b'\n');
    }
    out.push(b'\n');
    (out, true)
}

/// A block as Asterisk writes it: one write per line.
pub(crate) fn line_segments(block: &[u8]) -> Vec<Vec<u8>> {
    block
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// The command the server sends for a verdict by default: one `EXEC MSet`. `reason` is as it
/// arrives (after `MSet`'s rewriting: `,` `"` `\\` → `;` `'` `/`).
pub(crate) fn verdict_commands(stranger: bool, verdict: &str, reason: &str) -> String {
    format!(
        "EXEC MSet \"STRANGER={stranger},IPCOUNTRY_VERDICT={verdict},IPCOUNTRY_REASON={reason}\"\n"
    )
}

/// The three commands of `--reply set-variable` for a verdict (`reason` quoted as sent).
pub(crate) fn set_variable_commands(stranger: bool, verdict: &str, reason: &str) -> String {
    format!(
        "SET VARIABLE STRANGER \"{stranger}\"\nSET VARIABLE IPCOUNTRY_VERDICT \"{verdict}\"\nSET VARIABLE IPCOUNTRY_REASON \"{reason}\"\n"
    )
}

/// The error answer: the call could not be screened.
pub(crate) fn error_commands(reason: &str) -> String {
    verdict_commands(true, "error", reason)
}

/// A minimal environment block with the given arguments (source first).
pub(crate) fn block(args: &[&str]) -> Vec<u8> {
    let mut b = String::from(
        "agi_network: yes\nagi_network_script: screen\nagi_request: agi://127.0.0.1:4573/screen\nagi_channel: PJSIP/test-00000001\nagi_uniqueid: 1.1\nagi_callerid: bob\n",
    );
    for (i, a) in args.iter().enumerate() {
        b.push_str(&format!("agi_arg_{}: {}\n", i + 1, a));
    }
    b.push('\n');
    b.into_bytes()
}
